"""Record layout and constants of file.bpf.c: open, openat and openat2 (decoded by
collector/decode/file.py)."""

from __future__ import annotations

from probes.layout import Layout

AW_EV_OPEN = 4
AW_PATH_MAX = 4096
AT_FDCWD = -100
OF_PATH_FAULT, OF_HOW_FAULT = 0x1, 0x2
SYSCALLS = ("open", "openat", "openat2")

OPEN = Layout.record("aw_open", [
    ("ret", "s64"), ("dfd", "s32"), ("syscall", "u32"), ("flags", "u64"), ("mode", "u64"),
    ("resolve", "u64"), ("path_len", "u32"), ("open_flags", "u32"),
], tail=("path", AW_PATH_MAX))
