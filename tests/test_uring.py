"""io_uring operations as events (root, the real probes, real sessions).

tests/uring_ops.c, built here with the host's C compiler, makes io_uring operations from
the raw syscalls (no liburing): an OPENAT of a credential file gives an `open` event with
the path, `via: "io_uring"` and the new fd, and credential_read alerts on it; a CONNECT to
a loopback listener gives a `connect` event, a SEND on it a `sendto` event; a SEND with a
destination carries it; other ops are `io_uring` events. Who does the work is checked
too: an op run by an io-wq worker (IOSQE_ASYNC) and one submitted by the SQPOLL thread
are the session's, and a process outside every session gives nothing.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from collector.events import AlertEvent, ConnectEvent, Event, OpenEvent, SyscallEvent
from tests.conftest import REPO, bpf_unavailable, detecting

pytestmark = pytest.mark.bpf


@pytest.fixture(scope="module")
def uring_ops(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.fail("no C compiler for tests/uring_ops.c (make setup installs gcc)")
    out = tmp_path_factory.mktemp("uring") / "uring_ops"
    subprocess.run([cc, "-O2", "-Wall", "-o", str(out), str(REPO / "tests" / "uring_ops.c")],
                   check=True)
    return out


@pytest.fixture(scope="module")
def watch() -> Iterator[tuple[Any, Any, Any]]:
    """A collector on the built-in detectors: (collector, events sink, alerts sink)."""
    yield from detecting()


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    s.listen(4)
    yield s
    s.close()


def session(watch: tuple[Any, Any, Any], binary: Path, steps: list[str],
            tmp_path: Path) -> tuple[list[Event], list[AlertEvent], dict[str, str]]:
    """Run uring_ops STEPS as a session: its events, alerts and printed results."""
    from service.run import run

    collector, events, alerts = watch
    out = tmp_path / "out.txt"
    mark = len(alerts.events)
    cmd = " ".join([str(binary), *steps]) + f" > {out}"
    result = run(["sh", "-c", cmd], collector=collector)
    assert result.exit_status == 0, out.read_text() if out.exists() else "no output"
    for _ in range(5):
        collector.poll(20)
    printed = {}
    for line in out.read_text().splitlines():
        step, _, value = line.partition(" ")
        printed[step] = value
    mine = [a for a in alerts.events[mark:] if a.session == result.session]
    return events.session(result.session), mine, printed


def uring(events: list[Event], kind: str) -> list[Any]:
    return [e for e in events if e.kind == kind and getattr(e, "via", "") == "io_uring"]


def test_openat_of_a_credential_is_an_open_event_and_alerts(watch, uring_ops: Path,
                                                            tmp_path: Path) -> None:
    events, alerts, printed = session(watch, uring_ops,
                                      ["open:/etc/shadow", "read:64", "open2:/etc/hostname"],
                                      tmp_path)
    opens = uring(events, "open")
    shadow = [e for e in opens if e.path == "/etc/shadow"]
    assert len(shadow) == 1, opens
    ev = shadow[0]
    assert isinstance(ev, OpenEvent)
    assert ev.ret == int(printed["open"]) >= 0   # the fd the completion returned
    assert ev.syscall == "openat" and ev.error is None
    # as the kernel's prep left them: O_LARGEFILE (0x8000 here) is added by the kernel
    assert ev.flag_names[:2] == ["O_RDONLY", "O_CLOEXEC"]
    assert ev.io_uring is not None
    assert ev.io_uring["op"] == "OPENAT" and ev.io_uring["result"] == "complete"
    assert ev.io_uring["user_data"] == 0x1234 and not ev.io_uring.get("unreadable")
    assert ev.comm == "uring_ops"
    (two,) = [e for e in opens if e.syscall == "openat2"]
    assert two.path == "/etc/hostname" and two.ret == int(printed["open2"])
    assert two.resolve == 0x2  # RESOLVE_NO_MAGICLINKS
    (read,) = [e for e in events if e.kind == "io_uring" and e.op == "READ"]
    assert read.fd == ev.ret and read.len == 64 and read.ret == int(printed["read"]) > 0
    assert read.io_uring["count"] == 1  # a bulk op: the first of its kind is sent
    cred = [a for a in alerts if a.detector == "credential_read" and not a.folded]
    assert cred, [a.summary for a in alerts]
    assert cred[0].fields["path"] == "/etc/shadow"
    assert cred[0].severity == "high"


def test_connect_and_sends(watch, uring_ops: Path, tmp_path: Path,
                           listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    uport = udp.getsockname()[1]
    try:
        events, _alerts, printed = session(
            watch, uring_ops,
            [f"connect:{port}", "send:hello", "sendmsg:world", f"udp:{uport}:ping"], tmp_path)
        assert udp.recv(16) == b"ping"
    finally:
        udp.close()
    (conn,) = uring(events, "connect")
    assert isinstance(conn, ConnectEvent)
    assert (conn.family, conn.address, conn.port) == ("AF_INET", "127.0.0.1", port)
    assert conn.ret == int(printed["connect"]) == 0 and conn.fd >= 0
    assert conn.io_uring["copy"] == "kernel" and not conn.io_uring.get("addr_race")
    sends = uring(events, "syscall")
    by_op = {e.io_uring["op"]: e for e in sends if e.address is None}
    send, smsg = by_op["SEND"], by_op["SENDMSG"]
    assert isinstance(send, SyscallEvent) and send.syscall == "sendto"
    assert send.args["fd"] == conn.fd and send.args["len"] == 5 and send.ret == 5
    assert send.address is None  # a connected socket: no destination in the op
    assert send.io_uring["count"] == 1  # so a bulk op, counted (the first one is sent)
    assert smsg.syscall == "sendmsg" and smsg.args["len"] == 5 and smsg.ret == 5
    dgram = [e for e in sends if e.address is not None]
    assert len(dgram) == 1, sends
    assert (dgram[0].family, dgram[0].address, dgram[0].port) == ("AF_INET", "127.0.0.1",
                                                                  uport)
    assert dgram[0].syscall == "sendto" and dgram[0].ret == 4


def test_worker_sqpoll_skip_and_prep_failures(watch, uring_ops: Path, tmp_path: Path) -> None:
    events, _alerts, printed = session(
        watch, uring_ops,
        ["async:/etc/hostname", "skip:/etc/hostname", "badptr", "long:5000", "tasks"],
        tmp_path)
    root = next(e for e in events if e.kind == "exec" and e.comm == "uring_ops")
    tasks = dict(t.split("=", 1) for t in printed["tasks"].split())
    opens = uring(events, "open")
    (async_open,) = [e for e in opens if "ASYNC" in e.io_uring["sqe_flags"]]
    assert async_open.ret == int(printed["async"]) >= 0
    worker = async_open.io_uring["completed_by"]
    # the io-wq worker that ran it is a thread of the session's process
    assert tasks.get(str(worker), "").startswith("iou-wrk-"), (worker, tasks)
    assert async_open.pid == root.pid
    (skipped,) = [e for e in opens if "CQE_SKIP_SUCCESS" in e.io_uring["sqe_flags"]]
    assert skipped.io_uring["result"] == "cqe_skipped" and skipped.path == "/etc/hostname"
    failed = [e for e in opens if e.io_uring["result"] == "prep_failed"]
    assert {e.error for e in failed} == {"EFAULT", "ENAMETOOLONG"}, failed
    long = next(e for e in failed if e.error == "ENAMETOOLONG")
    assert len(long.raw_path) == 4095 and long.raw_path.startswith("////")  # bounded

    events, _alerts, printed = session(watch, uring_ops,
                                       ["--sqpoll", "open:/etc/hostname", "tasks"], tmp_path)
    tasks = dict(t.split("=", 1) for t in printed["tasks"].split())
    (sq,) = uring(events, "open")
    assert sq.io_uring["sq_thread"] and sq.comm.startswith("iou-sqp-")
    assert str(sq.tid) in tasks and sq.ret == int(printed["open"])


def test_a_flood_of_bulk_ops_is_counted_not_sent(watch, uring_ops: Path,
                                                 tmp_path: Path) -> None:
    """5000 NOPs: sent at the 1st, 2nd, 4th ... 1024th, then every 1024th op, each with
    the count so far; an open after the flood is still an event of its own."""
    events, _alerts, printed = session(watch, uring_ops,
                                       ["nop:5000", "open:/etc/hostname"], tmp_path)
    nops = [e for e in events if e.kind == "io_uring" and e.op == "NOP"]
    assert [e.io_uring["count"] for e in nops] == [1 << i for i in range(11)] + [2048, 3072,
                                                                                 4096]
    assert all(e.ret == 0 and e.io_uring["result"] == "complete" for e in nops)
    (op,) = [e for e in uring(events, "open") if e.path == "/etc/hostname"]
    assert op.ret == int(printed["open"]) and "count" not in op.io_uring


def test_unwatched_process_gives_nothing(watch, uring_ops: Path) -> None:
    collector, events, _alerts = watch
    mark = len(events.events)
    proc = subprocess.run([str(uring_ops), "open:/etc/hostname", "async:/etc/hostname",
                           "read:8"], capture_output=True, text=True, check=True)
    assert "open" in proc.stdout
    for _ in range(5):
        collector.poll(20)
    mine = [e for e in events.events[mark:] if getattr(e, "via", "") == "io_uring"]
    assert mine == []
    # nothing of the outsider waits in the kernel's in-flight table either
    assert len(collector.bpf[b"uring_inflight"].items()) == 0


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-v"]))


def test_io_uring_setup_and_a_decoy_open_through_a_ring_are_killed(uring_ops: Path,
                                                                    tmp_path: Path) -> None:
    """Enforce mode: io_uring_setup is forbidden_syscall's (killed at entry); with it
    allowed, an IORING_OP_OPENAT of a decoy is killed by the kernel's path rule at submit,
    as open() is."""
    from detectors.catalog.syscalls import FORBIDDEN
    from detectors.config import parse
    from service.pipeline import Collector
    from service.run import run
    from service.sinks import MemorySink

    decoy = tmp_path / "decoy.txt"
    decoy.write_text("bait\n")
    events = MemorySink()
    c = Collector([events], detection=parse({"mode": "enforce", "detectors": {
        "canary_touch": {"paths": [str(decoy)]}}}, "<test>"), alert_sinks=[MemorySink()])
    try:
        c.start()
    except Exception as e:  # any load failure is reported the same way
        bpf_unavailable(f"cannot load the probes: {e}")
    try:
        out = tmp_path / "out.txt"
        r = run(["sh", "-c", f"{uring_ops} open:{decoy} > {out}"], collector=c)
        killed = [e for e in events.session(r.session) if e.kernel_kill]
        assert [(e.kernel_kill, getattr(e, "syscall", "")) for e in killed] == [
            ("forbidden_syscall", "io_uring_setup")], killed
        assert "open" not in out.read_text()
        params = c.analyzer.engine.config.detectors["forbidden_syscall"].params
        params["calls"] = [x for x in FORBIDDEN if x != "io_uring_setup"]
        c.apply_policy()
        r = run(["sh", "-c", f"{uring_ops} open:{decoy} > {out}"], collector=c)
        killed = [e for e in events.session(r.session) if e.kernel_kill]
        assert [(e.kernel_kill, e.kind, getattr(e, "path", "")) for e in killed] == [
            ("canary_touch", "open", str(decoy))], killed
        assert "open" not in out.read_text()
    finally:
        c.close()
