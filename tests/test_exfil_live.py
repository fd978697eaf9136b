"""Root tests of the read-then-send transports (issue 16 item 8) with real BPF: a connected
unix socket's peer as the kernel names it, writes on sockets, io_uring sends, and the
detectors' verdicts on the events the probes really made."""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

import pytest

from collector.events import ConnectEvent
from tests.syscall_workload import py

pytestmark = pytest.mark.bpf


def _unix_listener(path: Path) -> tuple[socket.socket, threading.Thread]:
    """A unix stream listener in this (unwatched) test process: outside every session."""
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(str(path))
    srv.listen(4)
    srv.settimeout(20)

    def serve() -> None:
        try:
            while True:
                conn, _ = srv.accept()
                with conn:
                    conn.settimeout(5)
                    while conn.recv(4096):
                        pass
        except OSError:
            pass

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    return srv, t


def test_unix_connect_names_its_peer(run_session, tmp_path: Path) -> None:
    outside = tmp_path / "outside.sock"
    srv, _ = _unix_listener(outside)
    inside = tmp_path / "inside.sock"
    try:
        r = run_session(py(f"""
            import socket, os
            c = socket.socket(socket.AF_UNIX); c.connect({str(outside)!r}); c.sendall(b"x")
            c.close()
            s = socket.socket(socket.AF_UNIX); s.bind({str(inside)!r}); s.listen(1)
            kid = os.fork()
            if kid == 0:
                c2 = socket.socket(socket.AF_UNIX); c2.connect({str(inside)!r}); os._exit(0)
            a, _ = s.accept(); os.waitpid(kid, 0)
            d = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); d.bind({str(tmp_path / 'd')!r})
            e = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); e.connect({str(tmp_path / 'd')!r})
        """))
    finally:
        srv.close()
    assert r.exit_status == 0
    conns = [e for e in r.of("connect") if isinstance(e, ConnectEvent)
             and e.family == "AF_UNIX"]
    out = next(e for e in conns if e.address == str(outside))
    assert out.ret == 0 and out.peer_pid == os.getpid() and out.peer_in_session is False
    ins = next(e for e in conns if e.address == str(inside))
    assert ins.peer_pid == r.root_pid and ins.peer_in_session is True
    dg = next(e for e in conns if e.address == str(tmp_path / "d"))
    assert dg.ret == 0 and dg.peer_pid is None  # datagram sockets carry no peer credentials
