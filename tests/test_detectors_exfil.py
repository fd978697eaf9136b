"""The outbound send (detectors/catalog/exfil.py) and credential_read's read-then-send
sequence over it, from the fixtures in tests/fixtures/detectors/exfil_sequence (each case
its own session; generate.py there says what each is)."""

from __future__ import annotations

from collector.events import ConnectEvent, SyscallEvent
from detectors.catalog.exfil import UNIX_ALLOW, outbound
from tests.detector_fixtures import alerts_of

ALLOW = ["127.0.0.0/8", "::1/128"]


def _sequence(name: str) -> dict[str, list[tuple[str, str]]]:
    """session -> [(severity, key)] of credential_read's alerts over the fixture."""
    out: dict[str, list[tuple[str, str]]] = {}
    for a in alerts_of("exfil_sequence", name, only="credential_read"):
        out.setdefault(str(a.session), []).append((a.severity, a.key))
    return out


def test_every_positive_case_escalates() -> None:
    seq = _sequence("positive")
    assert len(seq) == 8
    for session, alerts in seq.items():
        assert alerts == [("high", "/home/agent/.ssh/id_rsa"),
                          ("critical", "then_connect:/home/agent/.ssh/id_rsa")], session


def test_no_negative_case_escalates() -> None:
    seq = _sequence("negative")
    assert len(seq) == 9
    for session, alerts in seq.items():
        assert alerts == [("high", "/home/agent/.ssh/id_rsa")], session


def test_the_escalation_names_the_transport() -> None:
    crit = [a for a in alerts_of("exfil_sequence", "positive", only="credential_read")
            if a.severity == "critical"]
    got = {(a.fields["syscall"], a.fields["family"], a.fields.get("via", "syscall"))
           for a in crit}
    assert got == {("connect", "AF_UNIX", "syscall"), ("write", "AF_INET", "syscall"),
                   ("writev", "AF_UNIX", "syscall"), ("sendto", "AF_INET6", "io_uring"),
                   ("sendmsg", "AF_INET", "io_uring"), ("sendto", "AF_INET", "syscall"),
                   ("io_uring WRITE", "AF_INET", "io_uring")}
    unix = next(a for a in crit if a.fields["syscall"] == "connect")
    assert unix.fields["peer_pid"] == 1234
    assert "unix socket /run/host/agent.sock of pid 1234 outside the session" in unix.summary
    assert all(a.action["requested"] == "kill" for a in crit)


def _conn(**kw: object) -> ConnectEvent:
    base: dict[str, object] = dict(ts=1, session="s", pid=10, ret=0, fd=4, family="AF_INET",
                                   address="203.0.113.1", port=443)
    base.update(kw)
    return ConnectEvent(**base)  # type: ignore[arg-type]


def _send(**kw: object) -> SyscallEvent:
    base: dict[str, object] = dict(ts=2, session="s", pid=10, ret=5, syscall="write",
                                   args={"fd": 4})
    base.update(kw)
    return SyscallEvent(**base)  # type: ignore[arg-type]


def test_outbound_remembers_connects_per_pid_and_fd() -> None:
    state: dict[str, object] = {}
    out = outbound(state, _conn(), ALLOW, UNIX_ALLOW)
    assert out is not None and out.address == "203.0.113.1" and not out.dns
    w = outbound(state, _send(), ALLOW, UNIX_ALLOW)
    assert w is not None and (w.syscall, w.address, w.port) == ("write", "203.0.113.1", 443)
    # the fd reconnected to loopback: its sends are no longer outbound
    assert outbound(state, _conn(address="127.0.0.1"), ALLOW, UNIX_ALLOW) is None
    assert outbound(state, _send(), ALLOW, UNIX_ALLOW) is None
    # a call that is not a send, an fd that is not an int, a syscall without fd
    assert outbound(state, _send(syscall="mkdir"), ALLOW, UNIX_ALLOW) is None
    assert outbound(state, _send(args={"fd": None}), ALLOW, UNIX_ALLOW) is None
    assert outbound(state, _send(args={}), ALLOW, UNIX_ALLOW) is None


def test_outbound_bounds_its_memory() -> None:
    state: dict[str, object] = {}
    for fd in range(5000):
        outbound(state, _conn(fd=fd), ALLOW, UNIX_ALLOW)
    socks = state["sockets"]
    assert isinstance(socks, dict) and len(socks) == 4096 and (10, 4999) in socks
    assert (10, 0) not in socks


def test_outbound_unix_needs_a_named_outside_peer() -> None:
    st: dict[str, object] = {}
    unix = dict(family="AF_UNIX", address="/run/x.sock", port=None)
    assert outbound(st, _conn(**unix, peer_pid=3, peer_in_session=False), ALLOW, UNIX_ALLOW)
    assert outbound(st, _conn(**unix, peer_pid=3, peer_in_session=True), ALLOW,
                    UNIX_ALLOW) is None
    assert outbound(st, _conn(**unix), ALLOW, UNIX_ALLOW) is None
    assert outbound(st, _conn(**dict(unix, address="/run/nscd/socket"), peer_pid=3,
                              peer_in_session=False), ALLOW, UNIX_ALLOW) is None
    # an unusual path (non-UTF-8 bytes as the collector escapes them, 4096 bytes)
    odd = "/tmp/\\xff" + "a" * 4090
    assert outbound(st, _conn(**dict(unix, address=odd), peer_pid=3,
                              peer_in_session=False), ALLOW, UNIX_ALLOW) is not None
    # a unix datagram sent to a path: no peer credentials, not outbound
    assert outbound(st, _send(syscall="sendto", family="AF_UNIX", address="/dev/log"),
                    ALLOW, UNIX_ALLOW) is None


def test_outbound_dns_is_told_apart() -> None:
    st: dict[str, object] = {}
    out = outbound(st, _send(syscall="sendto", family="AF_INET", address="8.8.8.8",
                             port=53), ALLOW, UNIX_ALLOW)
    assert out is not None and out.dns
    c = outbound(st, _conn(port=53), ALLOW, UNIX_ALLOW)
    assert c is not None and c.dns
    w = outbound(st, _send(dns_query="x.example"), ALLOW, UNIX_ALLOW)
    assert w is not None and w.dns
    # a bad CIDR in the allowlist is skipped, the others still count
    assert outbound({}, _conn(address="127.0.0.1"), ["nonsense", *ALLOW], UNIX_ALLOW) is None


def test_a_write_with_the_kernel_read_peer_is_judged_by_it() -> None:
    st: dict[str, object] = {}
    w = outbound(st, _send(family="AF_INET", address="203.0.113.8", port=443), ALLOW,
                 UNIX_ALLOW)
    assert w is not None and (w.syscall, w.address) == ("write", "203.0.113.8")
    assert outbound(st, _send(family="AF_INET", address="127.0.0.1", port=443), ALLOW,
                    UNIX_ALLOW) is None
    v = outbound(st, _send(syscall="writev", family="AF_INET6", address="2001:db8::1",
                           port=53, dns_query="q.example"), ALLOW, UNIX_ALLOW)
    assert v is not None and v.dns


def test_connect_records_carry_the_unix_peer() -> None:
    """collector/decode/net.py: peer_pid > 0 names the peer; 0 (none) and the negative
    AW_PEER_* codes leave both fields null; a non-UTF-8 path of 108 bytes decodes."""
    from collector.decode import RecordDecoder
    from probes import net
    from tests.test_decode import record

    dec = RecordDecoder()
    path = b"\x01\x00" + b"/tmp/\xff\xfe" + b"s" * 99
    raw = path.ljust(net.AW_SOCKADDR_MAX, b"\0")
    ev = dec.decode(record(net.CONNECT, raw, type=5, fd=3, addrlen=110, peer_pid=4242,
                           peer_flags=net.AW_PEERF_SESSION))
    assert isinstance(ev, ConnectEvent)
    assert (ev.family, ev.peer_pid, ev.peer_in_session) == ("AF_UNIX", 4242, True)
    assert ev.address is not None and ev.address.startswith("/tmp/")
    for code in (0, net.AW_PEER_NO_FILE, net.AW_PEER_FAULT, net.AW_PEER_NO_BTF):
        ev = dec.decode(record(net.CONNECT, raw, type=5, fd=3, addrlen=110, peer_pid=code))
        assert isinstance(ev, ConnectEvent)
        assert (ev.peer_pid, ev.peer_in_session) == (None, None)
    ev = dec.decode(record(net.CONNECT, raw, type=5, fd=3, addrlen=110, peer_pid=7))
    assert isinstance(ev, ConnectEvent) and ev.peer_in_session is False


def test_socket_write_records_decode_with_their_peer() -> None:
    """A write on a socket (nr 1, AW_BLOB_SOCKWRITE): the sockaddr the kernel read from
    the socket (addrlen 0: not the caller's) is its address with args.connected; a DNS
    payload (TCP length prefix) gives dns_query; a write without peer has neither."""
    import socket as so
    import struct

    from collector.decode import RecordDecoder
    from probes import syscalls
    from probes.syscalls import AW_SOCKADDR_MAX
    from tests.test_decode import record

    dec = RecordDecoder()
    sa = struct.pack("=H", so.AF_INET) + struct.pack("!H", 53) + so.inet_aton("203.0.113.4")
    sa = sa.ljust(16, b"\0")
    labels = b"".join(bytes([len(p)]) + p.encode() for p in ("q", "example"))
    msg = struct.pack("!HHHHHH", 7, 0x0100, 1, 0, 0, 0) + labels + b"\0\0\1\0\1"
    payload = struct.pack("!H", len(msg)) + msg
    blob = sa.ljust(AW_SOCKADDR_MAX, b"\0") + payload
    ev = dec.decode(record(syscalls.SYSCALL, blob, type=syscalls.AW_EV_SYSCALL, ret=40, nr=1,
                           arg0=5, arg2=len(payload), blob_len=len(blob), sa_len=16,
                           addrlen=0, payload_len=len(payload), payload_size=len(payload),
                           sys_flags=syscalls.SF_PAYLOAD))
    assert isinstance(ev, SyscallEvent) and ev.syscall == "write"
    assert (ev.family, ev.address, ev.port, ev.dns_query) == ("AF_INET", "203.0.113.4", 53,
                                                              "q.example")
    assert ev.args["connected"] is True and ev.args["fd"] == 5
    ev = dec.decode(record(syscalls.SYSCALL, b"", type=syscalls.AW_EV_SYSCALL, ret=4, nr=20,
                           arg0=6, arg2=1))
    assert isinstance(ev, SyscallEvent) and ev.syscall == "writev"
    assert (ev.address, ev.dns_query, "connected" in ev.args) == (None, None, False)
