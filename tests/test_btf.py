"""probes/btf.py: offsets of the running kernel, checked against bpftool's dump of the same
BTF, and the reader's handling of anonymous members, modifiers, bitfields and bad input on
small hand-built blobs."""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import time
from pathlib import Path

import pytest

from probes import btf
from probes.kernel import SetupError
from tests.conftest import IN_CI

VMLINUX = Path("/sys/kernel/btf/vmlinux")


# ---- the running kernel, against bpftool

def _bpftool_dump() -> dict[int, tuple[str, str, int, list[tuple[str, int, int]]]]:
    """id -> (kind, name, size_or_type, [(member, type id, bit offset)]) from bpftool's
    raw text dump: an independent parser of the same BTF."""
    if not VMLINUX.exists():
        if IN_CI:
            pytest.fail("no /sys/kernel/btf/vmlinux in CI")
        pytest.skip("no kernel BTF")
    tool = shutil.which("bpftool") or (
        "/usr/sbin/bpftool" if Path("/usr/sbin/bpftool").exists() else None)
    if tool is None:
        if IN_CI:
            pytest.fail("bpftool missing in CI (packaging/apt-packages.txt has it)")
        pytest.skip("bpftool missing")
    out = subprocess.run([tool, "btf", "dump", "file", str(VMLINUX)], check=True,
                         capture_output=True, text=True, errors="replace").stdout
    types: dict[int, tuple[str, str, int, list[tuple[str, int, int]]]] = {}
    cur: list[tuple[str, int, int]] | None = None
    head = re.compile(r"^\[(\d+)\] (\w+) '([^']*)'(?: size=(\d+))?(?: type_id=(\d+))?")
    mem = re.compile(r"^\t'([^']*)' type_id=(\d+) bits_offset=(\d+)")
    for line in out.splitlines():
        if m := head.match(line):
            cur = []
            size_or_type = int(m.group(4) or m.group(5) or 0)
            types[int(m.group(1))] = (m.group(2), m.group(3), size_or_type, cur)
        elif (m := mem.match(line)) and cur is not None:
            cur.append((m.group(1), int(m.group(2)), int(m.group(3))))
    return types


def _bpftool_offset(types: dict, struct_name: str, path: str) -> int:  # type: ignore[type-arg]
    def strip(tid: int) -> int:
        while types[tid][0] in ("TYPEDEF", "CONST", "VOLATILE", "RESTRICT", "TYPE_TAG"):
            tid = types[tid][2]
        return tid

    def find(tid: int, name: str) -> tuple[int, int] | None:
        for mname, mtype, bits in types[strip(tid)][3]:
            if mname == name:
                return bits, mtype
            if mname == "(anon)" and types[strip(mtype)][0] in ("STRUCT", "UNION"):
                inner = find(mtype, name)
                if inner is not None:
                    return bits + inner[0], inner[1]
        return None

    tid = next(i for i, t in types.items() if t[0] == "STRUCT" and t[1] == struct_name
               and t[3])
    bits = 0
    for part in path.split("."):
        found = find(tid, part)
        assert found is not None, f"bpftool: {struct_name}.{path}: no {part}"
        bits += found[0]
        tid = found[1]
    assert bits % 8 == 0
    return bits // 8


@pytest.fixture(scope="module")
def dump() -> dict:  # type: ignore[type-arg]
    return _bpftool_dump()


def test_every_field_the_probes_read_matches_bpftool(dump: dict) -> None:  # type: ignore[type-arg]
    kernel = btf.load()
    assert btf.RESOLVE_FIELDS
    for struct_name, path in btf.RESOLVE_FIELDS:
        assert kernel.offset(struct_name, path) == _bpftool_offset(dump, struct_name, path), (
            f"{struct_name}.{path}")
    for struct_name in {s for s, _ in btf.RESOLVE_FIELDS}:
        want = next(t[2] for t in dump.values() if t[0] == "STRUCT" and t[1] == struct_name
                    and t[3])
        assert kernel.size(struct_name) == want, struct_name


def test_nested_paths_match_bpftool(dump: dict) -> None:  # type: ignore[type-arg]
    kernel = btf.load()
    for struct_name, path in (("dentry", "d_name.name"), ("dentry", "d_name.len"),
                              ("file", "f_path.dentry"), ("mount", "mnt.mnt_sb"),
                              ("task_struct", "thread_info.status"),
                              ("fs_struct", "pwd.mnt")):
        assert kernel.offset(struct_name, path) == _bpftool_offset(dump, struct_name, path), (
            f"{struct_name}.{path}")


def test_cflags_name_every_declared_field() -> None:
    flags = btf.cflags()
    defines = dict(f[2:].split("=") for f in flags)
    for struct_name, path in btf.RESOLVE_FIELDS:
        assert int(defines[btf.define_name(struct_name, path)]) >= 0
    assert btf.define_name("dentry", "d_name.len") == "AW_OFF_dentry__d_name__len"
    assert int(defines["AW_SIZE_dentry"]) > 0


def test_parse_is_cached_and_fast() -> None:
    t0 = time.perf_counter()
    fresh = btf.BTF(VMLINUX.read_bytes(), str(VMLINUX))
    btf.cflags(btf=fresh)
    cold = time.perf_counter() - t0
    first = btf.load()
    t1 = time.perf_counter()
    assert btf.load() is first
    btf.cflags()
    warm = time.perf_counter() - t1
    assert len(fresh) > 1000
    assert cold < 2.0, f"parse + lookups took {cold:.2f} s"
    assert warm < 0.05, f"cached lookups took {warm:.3f} s"


def test_missing_btf_and_member_are_setup_errors(tmp_path: Path) -> None:
    with pytest.raises(SetupError, match="no kernel BTF"):
        btf.load(tmp_path / "absent")
    flags, why = btf.cflags_or_fallback(path=tmp_path / "absent")
    assert flags == ["-DAW_NO_BTF"] and why and "CONFIG_DEBUG_INFO_BTF" in why
    kernel = btf.load()
    with pytest.raises(btf.BTFError, match="no member 'no_such_member'"):
        kernel.offset("task_struct", "no_such_member")
    with pytest.raises(btf.BTFError, match="no struct/union"):
        kernel.offset("no_such_struct_aw", "x")
    bad = tmp_path / "garbage"
    bad.write_bytes(b"\xff" * 64)
    with pytest.raises(btf.BTFError, match="not BTF"):
        btf.load(bad)


# ---- hand-built blobs

class _Builder:
    """Builds a little-endian BTF blob type by type."""

    def __init__(self) -> None:
        self.strs = bytearray(b"\0")
        self.types = bytearray()
        self.n = 0

    def s(self, name: str) -> int:
        if not name:
            return 0
        off = len(self.strs)
        self.strs += name.encode() + b"\0"
        return off

    def add(self, name: str, kind: int, vlen: int, st: int, tail: bytes = b"",
            kflag: int = 0) -> int:
        self.types += struct.pack("<III", self.s(name), (kflag << 31) | (kind << 24) | vlen,
                                  st) + tail
        self.n += 1
        return self.n

    def blob(self) -> bytes:
        hdr = struct.pack("<HBBIIIII", btf.MAGIC, 1, 0, 24, 0, len(self.types),
                          len(self.types), len(self.strs))
        return hdr + bytes(self.types) + bytes(self.strs)


def _sample() -> bytes:
    b = _Builder()
    u32 = b.add("unsigned int", btf.INT, 0, 4, struct.pack("<I", 32))         # 1
    u64 = b.add("long unsigned int", btf.INT, 0, 8, struct.pack("<I", 64))    # 2
    td = b.add("u32_t", btf.TYPEDEF, 0, u32)                                 # 3
    cst = b.add("", btf.CONST, 0, td)                                        # 4
    inner = b.add("", btf.STRUCT, 2, 8, struct.pack(                         # 5 anon
        "<IIIIII", b.s("lo"), u32, 0, b.s("hi"), cst, 32))
    uni = b.add("", btf.UNION, 2, 8, struct.pack(                            # 6 anon
        "<IIIIII", 0, inner, 0, b.s("whole"), u64, 0))
    arr = b.add("", btf.ARRAY, 0, 0, struct.pack("<III", u32, u32, 4))       # 7 u32[4]
    bits = struct.pack("<III", b.s("flag"), u32, (3 << 24) | 128)            # bitfield
    b.add("outer", btf.STRUCT, 4, 40, struct.pack(                           # 8
        "<IIIIIIIII", b.s("a"), u64, 0, 0, uni, 64, b.s("arr"), arr, 192) + bits, kflag=1)
    b.add("outer", btf.FWD, 0, 0)                                            # 9
    return b.blob()


def test_anonymous_members_modifiers_arrays_and_bitfields() -> None:
    t = btf.BTF(_sample())
    assert t.offset("outer", "a") == 0
    assert t.offset("outer", "lo") == 8            # through anon union then anon struct
    assert t.offset("outer", "hi") == 12
    assert t.member("outer", "hi").size == 4       # const -> typedef -> int
    assert t.offset("outer", "whole") == 8
    assert t.offset("outer", "arr") == 24
    assert t.offset("outer", "arr[3]") == 36
    assert t.member("outer", "arr").size == 16
    assert t.size("outer") == 40
    with pytest.raises(btf.BTFError, match="bitfield"):
        t.offset("outer", "flag")
    assert t.member("outer", "flag").bitfield == 3
    with pytest.raises(btf.BTFError, match="past the array"):
        t.offset("outer", "arr[4]")
    with pytest.raises(btf.BTFError, match="bad member path"):
        t.offset("outer", "a..b")
    assert btf.cflags([("outer", "hi")], btf=t) == ["-DAW_OFF_outer__hi=12",
                                                    "-DAW_SIZE_outer=40"]


def test_truncated_and_hostile_blobs_raise_btf_errors() -> None:
    blob = _sample()
    for cut in (0, 10, 24, 40, len(blob) - 3):
        with pytest.raises(btf.BTFError):
            btf.BTF(blob[:cut])
    # An unknown kind in the type section
    bad = bytearray(blob)
    struct.pack_into("<I", bad, 24 + 4, 31 << 24)
    with pytest.raises(btf.BTFError, match="unknown BTF kind"):
        btf.BTF(bytes(bad))


def test_peer_fields_match_bpftool(dump: dict) -> None:  # type: ignore[type-arg]
    """include/aw_peer.h's offsets (a connected unix socket's peer pid, probes/net.py)."""
    from probes import net

    kernel = btf.load()
    for struct_name, path in net.PEER_FIELDS:
        assert kernel.offset(struct_name, path) == _bpftool_offset(dump, struct_name, path), (
            f"{struct_name}.{path}")
    assert "-DAW_NO_PEER_BTF" not in net.peer_cflags()
