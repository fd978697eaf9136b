"""Unit tests: collector/decode/uring.py over records built with probes/uring.py's layout
(test_layout.py proves it equal to the C struct): which event each op becomes, results
known and unknown, and hostile bytes (non-UTF-8, 4096-byte paths, short records)."""

from __future__ import annotations

import socket
import struct

import orjson
import pytest

from collector.decode import DecodeError, RecordDecoder
from collector.events import (
    ConnectEvent,
    OpenEvent,
    SyscallEvent,
    UringEvent,
    uring_result_known,
)
from collector.proctable import ProcessTable
from probes import uring
from tests.test_decode import record

OP = uring.OP_NUMBERS


def rec(tail: bytes = b"", **values: object) -> bytes:
    return record(uring.URING, tail, **{"type": uring.AW_EV_URING, "addr": b"", **values})


@pytest.fixture
def dec() -> RecordDecoder:
    d = RecordDecoder()
    d.boot_to_epoch = 10**18
    return d


def test_openat_is_an_open_event(dec: RecordDecoder) -> None:
    path = b"/home/agent/.aws/credentials\0"
    ev = dec.decode(rec(path, opcode=OP["OPENAT"], res=7, dfd=-100, op_flags=0o2000000,
                        path_len=len(path), user_data=9, ctid=43,
                        uflags=uring.UF_RESULT | uring.UF_HAS_PATH))
    assert isinstance(ev, OpenEvent) and ev.kind == "open"
    assert ev.via == "io_uring" and ev.syscall == "openat"
    assert ev.path == ev.raw_path == "/home/agent/.aws/credentials"
    assert ev.ret == 7 and ev.error is None and ev.dfd is None
    assert ev.flag_names == ["O_RDONLY", "O_CLOEXEC"]
    assert ev.io_uring == {"op": "OPENAT", "opcode": 18, "user_data": 9, "sqe_flags": [],
                           "fixed_file": False, "sq_thread": False, "result": "complete",
                           "completed_by": 43, "copy": "kernel", "direct_slot": None}
    assert uring_result_known(ev)
    orjson.loads(ev.to_json())


def test_unknown_result_is_not_an_fd(dec: RecordDecoder) -> None:
    """CQE_SKIP_SUCCESS: ret is 0 but says nothing; the fd table must not learn fd 0."""
    ev = dec.decode(rec(b"/etc/passwd\0", opcode=OP["OPENAT"], res=0, dfd=-100,
                        path_len=12, req_flags=0x40,
                        uflags=uring.UF_CQE_SKIP | uring.UF_HAS_PATH))
    assert isinstance(ev, OpenEvent)
    assert ev.io_uring["result"] == "cqe_skipped" and not uring_result_known(ev)
    assert ev.io_uring["sqe_flags"] == ["CQE_SKIP_SUCCESS"]
    table = ProcessTable(read_proc=False)
    table.add_root(42, 1, ev.session or "", [], 0)
    table.observe(ev)
    proc = table.get(42)
    assert proc is not None and 0 not in proc.fds


def test_direct_slot_open_is_no_fd(dec: RecordDecoder) -> None:
    ev = dec.decode(rec(b"/x\0", opcode=OP["OPENAT2"], res=0, dfd=5, file_slot=3,
                        path_len=3, resolve=0x8,
                        uflags=uring.UF_RESULT | uring.UF_HAS_PATH))
    assert isinstance(ev, OpenEvent) and ev.syscall == "openat2"
    assert ev.io_uring["direct_slot"] == 2 and ev.dfd == 5 and ev.resolve == 0x8


def test_prep_failed_open_with_hostile_path(dec: RecordDecoder) -> None:
    path = b"/" * 4000 + b"\xff\xfe" + b"a" * 93 + b"\0"
    assert len(path) == 4096
    ev = dec.decode(rec(path, opcode=OP["OPENAT"], res=-36, path_len=4096,
                        uflags=uring.UF_PREP_FAILED | uring.UF_RESULT | uring.UF_NO_FD
                        | uring.UF_USER_COPY | uring.UF_HAS_PATH))
    assert isinstance(ev, OpenEvent)
    assert ev.error == "ENAMETOOLONG" and ev.io_uring["result"] == "prep_failed"
    assert ev.io_uring["copy"] == "process" and ev.io_uring["dfd_unknown"]
    assert "\\xff\\xfe" in ev.raw_path and len(ev.raw_path) == 4000 + 8 + 93
    orjson.loads(ev.to_json())


def test_path_longer_than_the_record_is_clamped(dec: RecordDecoder) -> None:
    ev = dec.decode(rec(b"/etc/sh", opcode=OP["OPENAT"], path_len=9999,
                        uflags=uring.UF_RESULT | uring.UF_HAS_PATH))
    assert isinstance(ev, OpenEvent) and ev.raw_path == "/etc/sh"


def test_unreadable_fields_are_said(dec: RecordDecoder) -> None:
    ev = dec.decode(rec(opcode=OP["OPENAT"], res=3, uflags=uring.UF_RESULT | uring.UF_NO_BTF))
    assert isinstance(ev, OpenEvent) and ev.fault and ev.path == ""
    assert ev.io_uring["unreadable"]


def test_connect(dec: RecordDecoder) -> None:
    sa = struct.pack("=H", socket.AF_INET) + struct.pack("!H", 443) + bytes([169, 254, 169,
                                                                            254]) + bytes(8)
    ev = dec.decode(rec(opcode=OP["CONNECT"], res=-115, fd=4, addr=sa, addrlen=16,
                        uflags=uring.UF_RESULT | uring.UF_HAS_ADDR | uring.UF_ADDR_RACE))
    assert isinstance(ev, ConnectEvent) and ev.via == "io_uring"
    assert (ev.family, ev.address, ev.port, ev.fd) == ("AF_INET", "169.254.169.254", 443, 4)
    assert ev.error == "EINPROGRESS" and ev.io_uring["addr_race"]


def test_sends(dec: RecordDecoder) -> None:
    sa = struct.pack("=H", socket.AF_INET) + struct.pack("!H", 53) + bytes([8, 8, 8, 8])
    ev = dec.decode(rec(opcode=OP["SEND_ZC"], res=30, fd=5, len=30, op_flags=0x4000,
                        addr=sa, addrlen=16,
                        uflags=uring.UF_RESULT | uring.UF_HAS_ADDR | uring.UF_HAS_LEN))
    assert isinstance(ev, SyscallEvent) and ev.syscall == "sendto"
    assert ev.args == {"fd": 5, "len": 30, "flags": ["MSG_NOSIGNAL"], "addrlen": 16}
    assert (ev.family, ev.address, ev.port) == ("AF_INET", "8.8.8.8", 53)
    ev = dec.decode(rec(opcode=OP["SENDMSG"], res=5, fd=5, len=5,
                        uflags=uring.UF_RESULT | uring.UF_HAS_LEN))
    assert isinstance(ev, SyscallEvent) and ev.syscall == "sendmsg"
    assert ev.address is None and ev.family is None and ev.args["len"] == 5


def test_other_ops_and_unknown_numbers(dec: RecordDecoder) -> None:
    ev = dec.decode(rec(opcode=OP["READ"], res=100, fd=3, len=4096, req_flags=0x11,
                        uflags=uring.UF_RESULT | uring.UF_HAS_LEN))
    assert isinstance(ev, UringEvent) and ev.kind == "io_uring"
    assert (ev.op, ev.fd, ev.len, ev.ret) == ("READ", 3, 4096, 100)
    assert ev.io_uring["fixed_file"] and ev.io_uring["sqe_flags"] == ["FIXED_FILE", "ASYNC"]
    ev = dec.decode(rec(opcode=OP["TIMEOUT"], fd=77, uflags=uring.UF_STALE))
    assert isinstance(ev, UringEvent) and ev.fd is None and ev.len is None
    assert ev.io_uring["result"] == "not_seen"
    ev = dec.decode(rec(opcode=250, res=-22, uflags=uring.UF_RESULT))
    assert isinstance(ev, UringEvent) and ev.op == "OP_250" and ev.error == "EINVAL"


def test_short_record_raises(dec: RecordDecoder) -> None:
    with pytest.raises(DecodeError):
        dec.decode(rec(opcode=OP["OPENAT"])[: uring.URING.fixed_size - 1])


def test_detectors_judge_io_uring_acts_without_knowing_io_uring(dec: RecordDecoder) -> None:
    """A CONNECT to the metadata address and a SEND with a destination, decoded from io_uring
    records, raise egress_violation like their syscalls; so does the JSON line, replayed."""
    from service.replay import parse_line
    from tests.detector_fixtures import config, replay

    sa = struct.pack("=H", socket.AF_INET) + struct.pack("!H", 80) + bytes([169, 254, 169,
                                                                           254]) + bytes(8)
    dst = struct.pack("=H", socket.AF_INET) + struct.pack("!H", 443) + bytes([203, 0, 113,
                                                                            7]) + bytes(8)
    ok = uring.UF_RESULT | uring.UF_HAS_ADDR
    events = [
        dec.decode(rec(opcode=OP["CONNECT"], res=-115, fd=4, addr=sa, addrlen=16, uflags=ok)),
        dec.decode(rec(opcode=OP["SEND"], res=5, fd=5, len=5, addr=dst, addrlen=16,
                       uflags=ok | uring.UF_HAS_LEN)),
    ]
    events = [parse_line(e.to_json()) for e in events]  # a recording replays the same
    alerts = [a for a in replay(events, config()) if a.detector == "egress_violation"]
    assert [(a.severity, a.key) for a in alerts] == [("critical", "169.254.169.254:80"),
                                                     ("high", "203.0.113.7:443")]
