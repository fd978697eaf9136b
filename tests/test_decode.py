"""Unit tests: decoders over records built with the same layouts the probes use
(test_layout.py proves those layouts equal the C structs)."""

from __future__ import annotations

import os
import socket
import struct

import orjson
import pytest

from collector.decode import DecodeError, RecordDecoder
from collector.decode import file as file_decode
from collector.decode import net as net_decode
from collector.events import EVENT_TYPES, ExecEvent, errno_name
from probes import file, net, proc
from probes.layout import Layout

HDR = dict(type=0, size=0, ts=1_000_000_000, session=0xABC, pid=42, tid=43, ppid=1, uid=1000,
           gid=1000, hdr_flags=0, cgroup=77, comm=b"agent\0")


def record(layout: Layout, tail: bytes = b"", **values: object) -> bytes:
    fields = {**{n: 0 for n, _ in layout.fields}, **HDR, **values}
    packed = layout.struct.pack(*(fields[n] for n, _ in layout.fields))
    return packed + tail


@pytest.fixture
def dec() -> RecordDecoder:
    d = RecordDecoder()
    d.boot_to_epoch = 10**18
    return d


def test_header_fields(dec: RecordDecoder) -> None:
    ev = dec.decode(record(proc.FORK, type=2, ret=5, child_pid=99, clone_flags=0x11))
    assert ev.kind == "fork" and ev.session == "0000000000000abc"
    assert (ev.pid, ev.tid, ev.ppid, ev.uid, ev.cgroup) == (42, 43, 1, 1000, 77)
    assert ev.ts == 10**18 + 1_000_000_000 and ev.comm == "agent"
    assert ev.child_pid == 99 and ev.thread is False


def test_exec_tail(dec: RecordDecoder) -> None:
    data = b"/bin/ls\0" + b"ls\0-la\0\xff\xfe\0"
    ev = dec.decode(record(proc.EXEC, data, type=1, ret=0, dfd=-100, filename_len=8,
                           argv_len=len(data) - 8, argc=3, exec_flags=proc.XF_ARGV_TRUNC))
    assert isinstance(ev, ExecEvent)
    assert ev.filename == "/bin/ls" and ev.argv == ["ls", "-la", "\\xff\\xfe"]
    assert ev.argv_truncated and ev.dfd is None and not ev.fault
    orjson.loads(ev.to_json())


def test_exec_lengths_past_the_record_are_clamped(dec: RecordDecoder) -> None:
    ev = dec.decode(record(proc.EXEC, b"/x\0a\0", type=1, filename_len=9999, argv_len=9999))
    assert ev.filename == "/x" and ev.argv == []


def test_exit_code_and_signal(dec: RecordDecoder) -> None:
    ev = dec.decode(record(proc.EXIT, type=3, exit_code=256 + 3, exit_flags=proc.PF_EXIT_CODE))
    assert ev.exit_code == 3 and ev.signal is None
    ev = dec.decode(record(proc.EXIT, type=3, exit_signal=11,
                           exit_flags=proc.PF_EXIT_SIGNAL | proc.EF_CORE))
    assert ev.signal == 11 and ev.core and ev.exit_code is None
    ev = dec.decode(record(proc.EXIT, type=3))
    assert ev.exit_code is None and ev.signal is None


def test_open(dec: RecordDecoder) -> None:
    path = b"/etc/shadow\0"
    ev = dec.decode(record(file.OPEN, path, type=4, ret=-13, dfd=-100, syscall=1,
                           flags=os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, mode=0o600,
                           path_len=len(path)))
    assert ev.path == "/etc/shadow" and ev.error == "EACCES" and ev.syscall == "openat"
    assert ev.flag_names == ["O_RDWR", "O_CREAT", "O_CLOEXEC"] and ev.dfd is None


def _resolved_open(dec: RecordDecoder, raw: bytes, kernel: bytes, r_flags: int,
                   **kw: object) -> object:
    st = os.stat("/etc/hostname")
    return dec.decode(record(file.OPEN, raw + kernel, type=4, ret=3, dfd=-100, syscall=1,
                             path_len=len(raw), r_ino=st.st_ino, r_magic=0xEF53,
                             r_dev=file.kernel_dev(st.st_dev), r_mode=st.st_mode,
                             r_flags=r_flags, r_path_len=len(kernel), **kw))


def test_open_resolved_whole_path_fast_path(dec: RecordDecoder) -> None:
    # the common case (AW_RF_OK alone) is decoded inline: the same fields resolved() gives
    st = os.stat("/etc/hostname")
    ev = _resolved_open(dec, b"x/../h\0", b"/etc/hostname\0", file.RF_OK)
    assert (ev.path, ev.raw_path, ev.resolved) == ("/etc/hostname", "x/../h", True)
    assert (ev.dev, ev.ino, ev.file_type, ev.resolve_flags) == (st.st_dev, st.st_ino, "file",
                                                                 [])
    same = _resolved_open(dec, b"/etc/hostname\0", b"/etc/hostname\0", file.RF_OK)
    assert same.path == same.raw_path == "/etc/hostname"
    # and a second record with the same header is decoded from the cached header
    again = _resolved_open(dec, b"/etc/hostname\0", b"/etc/hostname\0", file.RF_OK, ts=7)
    assert again.ts == 7 + dec.boot_to_epoch and again.comm == "agent" and again.pid == 42
    bad = _resolved_open(dec, b"/a\0", b"/\xff\0", file.RF_OK)
    assert bad.path == "/\\xff"


def test_open_resolved_with_flags_keeps_the_general_path(dec: RecordDecoder) -> None:
    ev = _resolved_open(dec, b"/a/b\0", b"/a/b-long\0", file.RF_OK | file.RF_TRUNCATED)
    assert (ev.path, ev.resolved, ev.resolve_flags) == ("/a/b", False, ["truncated"])
    gone = _resolved_open(dec, b"/a\0", b"", file.RF_NO_FILE)
    assert (gone.path, gone.resolved, gone.resolve_flags) == ("/a", False, ["no_file"])


def test_flag_names_unknown_bits_and_composites() -> None:
    assert file_decode.flag_names(os.O_WRONLY | os.O_SYNC) == ["O_WRONLY", "O_SYNC"]
    assert file_decode.flag_names(os.O_RDONLY | (1 << 30))[-1] == hex(1 << 30)


def _sa_in(ip: str, port: int) -> bytes:
    return struct.pack("=H", socket.AF_INET) + struct.pack("!H", port) + \
        socket.inet_aton(ip) + b"\0" * 8


def test_sockaddr_families() -> None:
    assert net_decode.decode_sockaddr(_sa_in("10.0.0.1", 443), 16) == ("AF_INET", "10.0.0.1", 443)
    six = (struct.pack("=H", socket.AF_INET6) + struct.pack("!H", 53) + b"\0" * 4
           + socket.inet_pton(socket.AF_INET6, "fe80::1") + struct.pack("=I", 2))
    assert net_decode.decode_sockaddr(six, 28) == ("AF_INET6", "fe80::1%2", 53)
    unix = struct.pack("=H", socket.AF_UNIX) + b"/run/docker.sock\0"
    assert net_decode.decode_sockaddr(unix, len(unix)) == ("AF_UNIX", "/run/docker.sock", None)
    abstract = struct.pack("=H", socket.AF_UNIX) + b"\0name\0x"
    # Abstract names may hold NULs: kept, and JSON escapes them (\\u0000).
    assert net_decode.decode_sockaddr(abstract, len(abstract)) == ("AF_UNIX", "@name\x00x", None)


def test_sockaddr_short_and_odd() -> None:
    assert net_decode.decode_sockaddr(b"", 0) == ("AF_UNSPEC", None, None)
    assert net_decode.decode_sockaddr(_sa_in("1.2.3.4", 1), 4) == ("AF_INET", None, None)
    assert net_decode.decode_sockaddr(struct.pack("=H", 38) + b"x" * 20, 22)[0] == "AF_38"
    assert net_decode.decode_sockaddr(_sa_in("1.2.3.4", 1), 10**6)[1] == "1.2.3.4"


def test_connect_record(dec: RecordDecoder) -> None:
    raw = _sa_in("127.0.0.1", 9).ljust(net.AW_SOCKADDR_MAX, b"\0")
    ev = dec.decode(record(net.CONNECT, raw, type=5, ret=-111, fd=3, addrlen=16))
    assert (ev.family, ev.address, ev.port, ev.error) == ("AF_INET", "127.0.0.1", 9,
                                                          "ECONNREFUSED")


@pytest.mark.parametrize("data", [b"", b"\x01\x00", b"\x63" + b"\0" * 200])
def test_bad_records_raise_decode_error(dec: RecordDecoder, data: bytes) -> None:
    with pytest.raises(DecodeError):
        dec.decode(data)


def test_truncated_fixed_part_raises(dec: RecordDecoder) -> None:
    full = record(file.OPEN, b"/x\0", type=4, path_len=3)
    with pytest.raises(DecodeError):
        dec.decode(full[: file.OPEN.fixed_size - 1])


def test_every_kind_serializes_with_the_contract_keys() -> None:
    samples = {
        "exec": dict(ret=0, filename="/x", argv=[]), "fork": dict(ret=1, child_pid=2),
        "exit": {}, "open": dict(ret=3, syscall="openat", path="/p", raw_path="p", flags=0),
        "connect": dict(ret=0, fd=3, family="AF_INET"),
        "syscall": dict(ret=-2, syscall="unlink", args={"path": "/p"}, path="/p"),
        "io_uring": dict(ret=5, op="READ", fd=3),
        "loss": dict(lost={"open": 1}, total={"open": 1}),
        "session": dict(phase="start", root_pid=1),
        "summary": dict(root="/usr", count=3, files=2, failed=1),
        "alert": dict(detector="event_loss", severity="medium",
                      action={"requested": "alert", "taken": "alert", "result": "alerted"},
                      summary="3 events lost"),
    }
    assert set(samples) == set(EVENT_TYPES)
    for kind, extra in samples.items():
        base = {} if kind == "loss" else dict(session="s", pid=1)
        obj = orjson.loads(EVENT_TYPES[kind](ts=1, **base, **extra).to_json())
        assert obj["kind"] == kind and obj["v"] == 1
        assert list(obj)[:5] == ["v", "ts", "kind", "session", "pid"]


def test_errno_name() -> None:
    assert errno_name(0) is None and errno_name(5) is None
    assert errno_name(-2) == "ENOENT" and errno_name(-4000) == "E4000"
