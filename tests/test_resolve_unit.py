"""The user-space half of the kernel's path resolution, without BPF: decoding the open
record's resolved fields, the process table's use of them, the (dev, inode) deny list."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from collector.decode import RecordDecoder
from collector.decode.resolved import PIPEFS_MAGIC, resolved
from collector.events import OpenEvent
from collector.proctable import ProcessTable
from probes import file
from response import enforce
from tests.test_decode import record

REG = stat.S_IFREG | 0o644


def _dec() -> RecordDecoder:
    d = RecordDecoder()
    d.boot_to_epoch = 10**18
    return d


def test_open_record_with_a_resolved_path() -> None:
    raw, res = b"/proc/self/root/etc/shadow\0", b"/etc/shadow\0"
    kdev = (254 << 20) | 3
    ev = _dec().decode(record(file.OPEN, raw + res, type=4, ret=3, dfd=-100, syscall=1,
                              path_len=len(raw), r_path_len=len(res), r_ino=77,
                              r_dev=kdev, r_mode=REG, r_flags=file.RF_OK,
                              r_magic=0xEF53))
    assert isinstance(ev, OpenEvent)
    assert ev.path == "/etc/shadow" and ev.raw_path == "/proc/self/root/etc/shadow"
    assert ev.resolved and ev.resolve_flags == []
    assert ev.dev == os.makedev(254, 3) and file.kernel_dev(ev.dev) == kdev
    assert ev.ino == 77 and ev.file_type == "file" and ev.file_mode == REG


def test_truncated_no_btf_and_hostile_lengths_fall_back_to_the_string() -> None:
    raw = b"/a/b\0"
    ev = _dec().decode(record(file.OPEN, raw + b"/deep/part\0", type=4, ret=3,
                              path_len=len(raw), r_path_len=11, r_ino=5, r_dev=1,
                              r_mode=REG, r_flags=file.RF_OK | file.RF_TRUNCATED))
    assert ev.path == "/a/b" and not ev.resolved and ev.resolve_flags == ["truncated"]
    assert ev.ino == 5
    ev = _dec().decode(record(file.OPEN, raw, type=4, ret=3, path_len=len(raw),
                              r_flags=file.RF_NO_BTF))
    assert ev.path == "/a/b" and not ev.resolved and ev.resolve_flags == ["no_btf"]
    assert ev.dev is None and ev.ino is None
    # lengths past the record: clamped, never a traceback
    ev = _dec().decode(record(file.OPEN, raw, type=4, ret=3, path_len=99999,
                              r_path_len=99999, r_flags=file.RF_OK, r_mode=REG))
    assert ev.raw_path == "/a/b"


def test_pseudo_files_are_named_as_d_path_names_them() -> None:
    r = resolved(b"/\0", file.RF_OK | file.RF_DISCONNECTED, PIPEFS_MAGIC, 12, 4242,
                 stat.S_IFIFO | 0o600)
    assert r is not None and r.path == "pipe:[4242]" and r.complete
    r = resolved(b"/[eventfd]\0", file.RF_OK | file.RF_DISCONNECTED, 0x09041934, 13, 1, 0)
    assert r is not None and r.path == "anon_inode:[eventfd]"
    # a namespace file keeps the caller's /proc/<pid>/ns/<type> as the event's path
    r = resolved(b"/\0", file.RF_OK | file.RF_DISCONNECTED, 0x6E736673, 4, 4026531840, REG)
    assert r is not None and not r.complete and r.ino == 4026531840
    r = resolved(b"/\xff\xfe\0", file.RF_OK, 0xEF53, 1, 1, REG)
    assert r is not None and r.path == "/\\xff\\xfe"
    assert resolved(b"", 0, 0, 0, 0, 0) is None


def _open(path: str, raw: str, resolved_: bool) -> OpenEvent:
    return OpenEvent(ts=1, session="s", pid=100, tid=100, syscall="openat", path=path,
                     raw_path=raw, flags=0, ret=3, resolved=resolved_)


def test_proc_self_keeps_the_host_pid_unless_it_names_another_entry() -> None:
    table = ProcessTable(read_proc=False)
    table.observe(OpenEvent(ts=0, session="s", pid=100, tid=100, syscall="openat",
                            path="/", raw_path="/", flags=0, ret=-2))
    # in a sandbox's pid namespace the kernel names the entry /proc/2/...
    ev = _open("/proc/2/status", "/proc/self/status", True)
    table.observe(ev)
    assert ev.path == "/proc/100/status"
    ev = _open("/proc/1/mem", "/proc/self/root/proc/1/mem", True)
    table.observe(ev)
    assert ev.path == "/proc/1/mem"  # another process's entry: the kernel's path stays
    ev = _open("/etc/shadow", "../../etc/shadow", True)
    table.observe(ev)
    assert ev.path == "/etc/shadow"
    assert table.get(100).fds[3][0] == "/etc/shadow"  # the fd table takes the kernel's


def test_deny_inodes_files_dirs_symlinks_and_bounds(tmp_path: Path) -> None:
    (tmp_path / "cred").write_text("x")
    os.symlink(tmp_path / "cred", tmp_path / "link")
    d = tmp_path / "dir"
    (d / "sub").mkdir(parents=True)
    for i in range(5):
        (d / "sub" / f"f{i}").write_text("x")
    why, wdir = 5, 5 | enforce.DENY_DIR
    inodes, skipped = enforce.deny_inodes({str(tmp_path / "link"): why, str(d): wdir,
                                           str(tmp_path / "absent"): why,
                                           "/proc/1": wdir})
    st = os.stat(tmp_path / "cred")
    assert inodes[(file.kernel_dev(st.st_dev), st.st_ino)] == why  # the symlink's target
    for p in (d, d / "sub", d / "sub" / "f4"):
        s = os.stat(p)
        assert inodes[(file.kernel_dev(s.st_dev), s.st_ino)] == why, p
    assert len(inodes) == 1 + 7 and skipped == 0
    inodes, skipped = enforce.deny_inodes({str(d): wdir}, per_dir=3)
    assert len(inodes) == 4 and skipped == 3
    inodes, skipped = enforce.deny_inodes({str(d): wdir}, limit=2)
    assert len(inodes) == 2 and skipped == 5


def test_kernel_dev_round_trip() -> None:
    for st_dev in (os.stat("/").st_dev, os.makedev(259, 70000), 0):
        assert file.user_dev(file.kernel_dev(st_dev)) == st_dev
    assert file.kernel_dev(os.makedev(254, 0)) == 254 << 20
