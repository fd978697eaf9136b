"""Struct offsets of the running kernel, read from its BTF (/sys/kernel/btf/vmlinux).

BCC compiles against the distribution's headers, which may be of another kernel version
(Debian 6.1 headers on a 6.18 kernel here): a probe that reads a kernel struct through
those headers reads the wrong bytes. Every offset a probe reads is therefore taken from
the running kernel's BTF by this pure-Python reader and passed to the compiler as
`-DAW_OFF_<struct>__<member>=N` (`cflags`). The C side reads memory at those offsets with
bpf_probe_read_kernel and never dereferences a struct of the headers.

Format (linux/btf.h, Documentation/bpf/btf.rst): a header (magic 0xeB9F, version, flags,
hdr_len, type_off, type_len, str_off, str_len; offsets counted from the header's end), a
type section (`struct btf_type` {name_off, info, size|type} followed by a kind-specific
tail), a string section. Type ids start at 1 in section order; 0 is void.

API: `load()` (the running kernel's, parsed once per process), `BTF.offset(struct,
"dotted.member.path")` in bytes, `BTF.size(struct)`, `BTF.member(...)`, `cflags(fields)`.
A missing BTF, struct or member raises `BTFError` (a `kernel.SetupError`); a caller that
can run without offsets compiles with `-DAW_NO_BTF` instead (`cflags_or_fallback`).
"""

from __future__ import annotations

import functools
import os
import re
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from probes.kernel import SetupError

VMLINUX = Path("/sys/kernel/btf/vmlinux")
MAGIC = 0xEB9F

# BTF kinds (linux/btf.h)
INT, PTR, ARRAY, STRUCT, UNION, ENUM, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT = range(1, 12)
FUNC, FUNC_PROTO, VAR, DATASEC, FLOAT, DECL_TAG, TYPE_TAG, ENUM64 = range(12, 20)
_MODIFIERS = (TYPEDEF, VOLATILE, CONST, RESTRICT, TYPE_TAG)
_KIND_NAMES = {INT: "int", PTR: "ptr", ARRAY: "array", STRUCT: "struct", UNION: "union",
               ENUM: "enum", FWD: "fwd", TYPEDEF: "typedef", VOLATILE: "volatile",
               CONST: "const", RESTRICT: "restrict", FUNC: "func", FUNC_PROTO: "func_proto",
               VAR: "var", DATASEC: "datasec", FLOAT: "float", DECL_TAG: "decl_tag",
               TYPE_TAG: "type_tag", ENUM64: "enum64"}

# The fields agentwatch's probes read (probes/include/aw_resolve.h): each becomes
# -DAW_OFF_<struct>__<member, dots as __>=<bytes>. tests/test_btf.py checks every one
# against bpftool's dump of the same BTF.
RESOLVE_FIELDS: tuple[tuple[str, str], ...] = (
    ("task_struct", "files"),
    ("task_struct", "fs"),
    ("files_struct", "fdt"),
    ("fdtable", "max_fds"),
    ("fdtable", "fd"),
    ("file", "f_path"),
    ("file", "f_inode"),
    ("path", "mnt"),
    ("path", "dentry"),
    ("fs_struct", "root"),
    ("fs_struct", "pwd"),
    ("dentry", "d_parent"),
    ("dentry", "d_hash.pprev"),
    ("dentry", "d_name"),
    ("dentry", "d_inode"),
    ("dentry", "d_sb"),
    ("qstr", "len"),
    ("qstr", "name"),
    ("vfsmount", "mnt_root"),
    ("vfsmount", "mnt_sb"),
    ("mount", "mnt"),
    ("mount", "mnt_parent"),
    ("mount", "mnt_mountpoint"),
    ("inode", "i_mode"),
    ("inode", "i_ino"),
    ("inode", "i_sb"),
    ("super_block", "s_dev"),
    ("super_block", "s_magic"),
)

# The target process of a /proc file (include/aw_resolve.h, aw_proc_target): procfs inodes
# are embedded in struct proc_inode, whose `pid` names the process (a thread's for
# task/<tid> entries). Optional: without them the loader leaves AW_HAVE_PROC_TARGET
# undefined and the records carry no target (user space falls back to the path's number).
PROC_FIELDS: tuple[tuple[str, str], ...] = (
    ("proc_inode", "pid"),
    ("proc_inode", "vfs_inode"),
    ("pid", "numbers"),
    ("pid", "tasks"),
    ("upid", "nr"),
    ("task_struct", "pid_links"),
    ("task_struct", "tgid"),
)


class BTFError(SetupError):
    """The kernel's BTF is missing or unreadable, or lacks a struct or member."""


@dataclass(frozen=True)
class Member:
    """A member found by `BTF.member`: byte offset from the outer struct's start, size in
    bytes of its type, the type's id, the bitfield width (0: not one) and the offset in
    bits."""

    offset: int
    size: int
    type_id: int
    bitfield: int = 0
    bit_offset: int = 0


class BTF:
    """A parsed BTF blob. Types are indexed once (kind, name offset, size/type, where the
    tail starts); names are decoded only for the types looked up."""

    def __init__(self, data: bytes, source: str = "<bytes>") -> None:
        self.source = source
        if len(data) < 24:
            raise BTFError(f"{source}: too short for a BTF header ({len(data)} bytes)")
        magic, version, _flags, hdr_len = struct.unpack_from("<HBBI", data, 0)
        if magic != MAGIC:
            raise BTFError(f"{source}: not BTF (magic {magic:#x}, want {MAGIC:#x}); "
                           "big-endian BTF is not supported")
        if version != 1:
            raise BTFError(f"{source}: BTF version {version} (only 1 is known)")
        type_off, type_len, str_off, str_len = struct.unpack_from("<IIII", data, 8)
        base = hdr_len
        if base + max(type_off + type_len, str_off + str_len) > len(data):
            raise BTFError(f"{source}: sections run past the end of the file")
        self._data = data
        self._strs = data[base + str_off: base + str_off + str_len]
        self._types_start = base + type_off
        self._types_end = base + type_off + type_len
        # Per type id (index 0 is void): (kind, kind_flag, vlen, name_off, size_or_type, tail)
        self._kind: list[int] = [0]
        self._info: list[int] = [0]
        self._name: list[int] = [0]
        self._st: list[int] = [0]
        self._tail: list[int] = [0]
        self._index()
        self._by_name: dict[tuple[str, tuple[int, ...]], list[int]] = {}
        self._by_off: dict[int, list[int]] | None = None

    # ---- indexing
    def _index(self) -> None:
        data, pos, end = self._data, self._types_start, self._types_end
        unpack = struct.Struct("<III").unpack_from
        kinds, infos, names, sts, tails = (self._kind, self._info, self._name, self._st,
                                          self._tail)
        # Bytes after the 12-byte common part: fixed per kind, or per member (vlen).
        fixed = {INT: 4, ARRAY: 12, VAR: 4, DECL_TAG: 4}
        per_member = {STRUCT: 12, UNION: 12, ENUM: 8, FUNC_PROTO: 8, DATASEC: 12, ENUM64: 12}
        while pos < end:
            name_off, info, st = unpack(data, pos)
            kind = (info >> 24) & 0x1F
            pos += 12
            kinds.append(kind)
            infos.append(info)
            names.append(name_off)
            sts.append(st)
            tails.append(pos)
            if kind in per_member:
                pos += per_member[kind] * (info & 0xFFFF)
            elif kind in fixed:
                pos += fixed[kind]
            elif kind not in _KIND_NAMES:
                raise BTFError(f"{self.source}: unknown BTF kind {kind} at type "
                               f"{len(kinds) - 1}")
        if pos != end:
            raise BTFError(f"{self.source}: type section does not end on a type boundary")

    def __len__(self) -> int:
        return len(self._kind) - 1

    def name_of(self, type_id: int) -> str:
        return self._str(self._name[type_id])

    def _str(self, off: int) -> str:
        if off >= len(self._strs):
            raise BTFError(f"{self.source}: string offset {off} out of range")
        end = self._strs.index(b"\0", off)
        return self._strs[off:end].decode("utf-8", "replace")

    def find(self, name: str, kinds: tuple[int, ...] = (STRUCT, UNION)) -> int:
        """The id of the first type of one of `kinds` named `name` (BTFError if none).
        The string section is deduplicated: the name's offset is found once by a byte
        search, then ids are compared by offset, without decoding other names."""
        key = (name, kinds)
        ids = self._by_name.get(key)
        if ids is None:
            ids = []
            needle = b"\0" + name.encode() + b"\0"
            start = 0
            offs: set[int] = set()
            while (at := self._strs.find(needle, start)) >= 0:
                offs.add(at + 1)
                start = at + 1
            for off in offs:
                ids += [i for i in self._named().get(off, ()) if self._kind[i] in kinds]
            # structs before unions, then in id order
            ids.sort(key=lambda i: (kinds.index(self._kind[i]), i))
            self._by_name[key] = ids
        # A complete definition, not a forward declaration, is what callers want.
        if not ids:
            what = "/".join(_KIND_NAMES[k] for k in kinds)
            raise BTFError(f"{self.source}: no {what} {name!r} in the kernel's BTF")
        return ids[0]

    def _named(self) -> dict[int, list[int]]:
        """Name offset -> ids of the named structs, unions and typedefs (built once)."""
        if self._by_off is None:
            by_off: dict[int, list[int]] = {}
            wanted = (STRUCT, UNION, TYPEDEF)
            for i, (kind, name) in enumerate(zip(self._kind, self._name, strict=True)):
                if name and kind in wanted:
                    by_off.setdefault(name, []).append(i)
            self._by_off = by_off
        return self._by_off

    # ---- types
    def resolve(self, type_id: int) -> int:
        """Follow typedef/const/volatile/restrict/type_tag to the underlying type."""
        for _ in range(64):
            if self._kind[type_id] not in _MODIFIERS:
                return type_id
            type_id = self._st[type_id]
        raise BTFError(f"{self.source}: modifier chain too long at type {type_id}")

    def kind(self, type_id: int) -> int:
        return self._kind[type_id]

    def type_size(self, type_id: int) -> int:
        """Size in bytes of a type (modifiers resolved; arrays multiplied out)."""
        tid = self.resolve(type_id)
        kind = self._kind[tid]
        if kind in (INT, STRUCT, UNION, ENUM, ENUM64, FLOAT, DATASEC):
            return self._st[tid]
        if kind == PTR:
            return 8
        if kind == ARRAY:
            elem, _index, nelems = struct.unpack_from("<III", self._data, self._tail[tid])
            return int(self.type_size(elem) * nelems)
        raise BTFError(f"{self.source}: type {tid} ({_KIND_NAMES.get(kind, kind)}) has "
                       "no size")

    def members(self, type_id: int) -> list[tuple[str, int, int, int]]:
        """(name, type id, bit offset, bitfield size) of a struct's or union's members."""
        tid = self.resolve(type_id)
        kind, info = self._kind[tid], self._info[tid]
        if kind not in (STRUCT, UNION):
            raise BTFError(f"{self.source}: type {tid} is a {_KIND_NAMES.get(kind, kind)}, "
                           "not a struct or union")
        kflag = info >> 31
        out = []
        pos = self._tail[tid]
        for _ in range(info & 0xFFFF):
            name_off, mtype, moff = struct.unpack_from("<III", self._data, pos)
            pos += 12
            if kflag:
                out.append((self._str(name_off), mtype, moff & 0xFFFFFF, moff >> 24))
            else:
                out.append((self._str(name_off), mtype, moff, 0))
        return out

    def _find_member(self, type_id: int, name: str,
                     depth: int = 0) -> tuple[int, int, int] | None:
        """(bit offset, type id, bitfield) of `name` in a struct/union, searching
        anonymous struct/union members too (as C does)."""
        if depth > 16:
            return None
        for mname, mtype, bitoff, bitsize in self.members(type_id):
            if mname == name:
                return bitoff, mtype, bitsize
            if not mname and self._kind[self.resolve(mtype)] in (STRUCT, UNION):
                inner = self._find_member(mtype, name, depth + 1)
                if inner is not None:
                    return bitoff + inner[0], inner[1], inner[2]
        return None

    def member(self, struct_name: str, path: str) -> Member:
        """The member at `path` ("a.b.c", array elements as "a[2]") of `struct struct_name`
        (a union of that name is accepted when no struct has it)."""
        tid = self._find_struct(struct_name)
        bits, bitfield = 0, 0
        for part in path.split("."):
            m = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)(?:\[(\d+)\])?", part)
            if m is None:
                raise BTFError(f"bad member path {path!r} (at {part!r})")
            if bitfield:
                raise BTFError(f"struct {struct_name}: {path!r} goes through a bitfield")
            if self._kind[self.resolve(tid)] not in (STRUCT, UNION):
                raise BTFError(f"struct {struct_name}: {path!r}: {part!r} is not inside a "
                               "struct or union")
            found = self._find_member(tid, m.group(1))
            if found is None:
                raise BTFError(f"{self.source}: struct {struct_name} has no member "
                               f"{path!r} (missing: {m.group(1)!r}); this kernel's layout "
                               "differs from what agentwatch knows")
            bitoff, tid, bitfield = found
            bits += bitoff
            if m.group(2) is not None:
                arr = self.resolve(tid)
                if self._kind[arr] != ARRAY:
                    raise BTFError(f"struct {struct_name}: {part!r} is not an array")
                elem, _ix, nelems = struct.unpack_from("<III", self._data, self._tail[arr])
                index = int(m.group(2))
                if index >= nelems:
                    raise BTFError(f"struct {struct_name}: {part!r} is past the array's "
                                   f"{nelems} elements")
                bits += 8 * index * self.type_size(elem)
                tid = elem
        size = (bitfield + 7) // 8 if bitfield else self.type_size(tid)
        return Member(offset=bits // 8, size=size, type_id=tid, bitfield=bitfield,
                      bit_offset=bits)

    def _find_struct(self, name: str) -> int:
        return self.find(name, (STRUCT, UNION))

    def offset(self, struct_name: str, path: str) -> int:
        """Byte offset of `path` inside `struct struct_name` (BTFError for a bitfield)."""
        m = self.member(struct_name, path)
        if m.bitfield or m.bit_offset % 8:
            raise BTFError(f"struct {struct_name}: {path!r} is a bitfield (no byte offset)")
        return m.offset

    def size(self, struct_name: str) -> int:
        return self.type_size(self._find_struct(struct_name))


def define_name(struct_name: str, path: str) -> str:
    """`AW_OFF_<struct>__<member>` with dots and brackets as `__` / `_`."""
    member = re.sub(r"\[(\d+)\]", r"_\1", path).replace(".", "__")
    return f"AW_OFF_{struct_name}__{member}"


@functools.lru_cache(maxsize=4)
def _load_cached(path: str, mtime_ns: int, size: int) -> BTF:
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise BTFError(f"cannot read the kernel's BTF at {path}: {e.strerror}; the kernel "
                       "needs CONFIG_DEBUG_INFO_BTF=y") from e
    return BTF(data, path)


def load(path: Path | str = VMLINUX) -> BTF:
    """The BTF at `path` (default: the running kernel's), parsed once per process."""
    p = str(path)
    try:
        st = os.stat(p)
    except OSError as e:
        raise BTFError(f"no kernel BTF at {p} ({e.strerror}): the kernel needs "
                       "CONFIG_DEBUG_INFO_BTF=y; agentwatch's resolution of opened files "
                       "is off without it") from e
    return _load_cached(p, st.st_mtime_ns, st.st_size)


def forget() -> None:
    """Drop the parsed BTF (~28 MB for a 6.18 vmlinux): kept only while the cflags of a
    load are made; the next load() parses it again (probes/residency.py)."""
    _load_cached.cache_clear()


def cflags(fields: Iterable[tuple[str, str]] = RESOLVE_FIELDS,
           btf: BTF | None = None) -> list[str]:
    """`-DAW_OFF_<struct>__<member>=N` for each (struct, member path) in `fields`, plus
    `-DAW_SIZE_<struct>=N` for each struct named. Raises BTFError if any is missing."""
    btf = btf or load()
    out: list[str] = []
    sizes: dict[str, int] = {}
    for struct_name, path in fields:
        out.append(f"-D{define_name(struct_name, path)}={btf.offset(struct_name, path)}")
        if struct_name not in sizes:
            sizes[struct_name] = btf.size(struct_name)
    out += [f"-DAW_SIZE_{s}={n}" for s, n in sizes.items()]
    return out


def cflags_or_fallback(fields: Iterable[tuple[str, str]] = RESOLVE_FIELDS,
                       path: Path | str = VMLINUX) -> tuple[list[str], str | None]:
    """(cflags, None) when every field resolves; (["-DAW_NO_BTF"], reason) otherwise, for a
    loader that compiles the resolution out and flags its records unresolved."""
    try:
        return cflags(fields, load(path)), None
    except BTFError as e:
        return ["-DAW_NO_BTF"], str(e)


if __name__ == "__main__":  # python -m probes.btf: the defines for this kernel
    import sys
    import time

    t0 = time.perf_counter()
    flags = cflags()
    dt = time.perf_counter() - t0
    print("\n".join(flags))
    print(f"# {len(load())} types, parsed and looked up in {dt * 1000:.0f} ms", file=sys.stderr)
