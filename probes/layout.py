"""Flat C struct layouts described once in Python, checked against the compiled C.

Each probe's record is declared here as the list of its C fields; `Layout` computes the
offsets with C's natural alignment and a `struct.Struct` that unpacks every fixed field in
one call (the hot path decodes with `struct`, not one ctypes object per event).
tests/test_layout.py compiles the probes and compares these offsets and sizes with the
ones BCC's ctypes reports for the same C structs.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from functools import cached_property
from typing import Any

_SCALARS = {"u8": ("B", 1), "u16": ("H", 2), "u32": ("I", 4), "s32": ("i", 4),
            "u64": ("Q", 8), "s64": ("q", 8)}
_ARRAY = re.compile(r"^(char|u8)\[(\d+)\]$")

# Decoded header fields, passed as keyword arguments to each Event record.
Header = dict[str, Any]

# The header every record starts with (AW_HDR_FIELDS in include/agentwatch.h).
HDR_FIELDS: list[tuple[str, str]] = [
    ("type", "u32"), ("size", "u32"), ("ts", "u64"), ("session", "u64"),
    ("pid", "u32"), ("tid", "u32"), ("ppid", "u32"), ("uid", "u32"), ("gid", "u32"),
    ("hdr_flags", "u32"), ("cgroup", "u64"), ("comm", "char[16]"),
]


@dataclass(frozen=True)
class Layout:
    cname: str                      # C struct name, e.g. "aw_open"
    fields: tuple[tuple[str, str], ...]
    tail: tuple[str, int] | None    # trailing variable-length byte array (name, capacity)

    @classmethod
    def record(cls, cname: str, fields: list[tuple[str, str]],
               tail: tuple[str, int] | None = None) -> Layout:
        return cls(cname, tuple(HDR_FIELDS + fields), tail)

    @cached_property
    def _computed(self) -> tuple[dict[str, int], str, int, int]:
        return self._walk()

    def _walk(self) -> tuple[dict[str, int], str, int, int]:
        offsets: dict[str, int] = {}
        fmt = "<"
        off = 0
        align_max = 1
        for name, ctype in self.fields:
            if ctype in _SCALARS:
                code, size = _SCALARS[ctype]
                align = size
            else:
                m = _ARRAY.match(ctype)
                if not m:
                    raise ValueError(f"{self.cname}.{name}: unsupported type {ctype}")
                size = int(m.group(2))
                code, align = f"{size}s", 1
            pad = (-off) % align
            if pad:
                fmt += f"{pad}x"
                off += pad
            offsets[name] = off
            fmt += code
            off += size
            align_max = max(align_max, align)
        fixed = off
        if self.tail:
            offsets[self.tail[0]] = off
            off += self.tail[1]
        off += (-off) % align_max
        return offsets, fmt, fixed, off

    @staticmethod
    def type_size(ctype: str) -> int:
        if ctype in _SCALARS:
            return _SCALARS[ctype][1]
        m = _ARRAY.match(ctype)
        if not m:
            raise ValueError(f"unsupported type {ctype}")
        return int(m.group(2))

    @property
    def offsets(self) -> dict[str, int]:
        return dict(self._computed[0])

    @cached_property
    def struct(self) -> struct.Struct:
        return struct.Struct(self._computed[1])

    @property
    def fixed_size(self) -> int:
        """Bytes before the variable tail (the smallest valid record)."""
        return self._computed[2]

    @property
    def c_size(self) -> int:
        """sizeof() of the C struct, tail capacity and trailing padding included."""
        return self._computed[3]
