"""Root tests of the generic syscall probe for the socket syscalls (the rest is in
tests/test_syscalls.py, whose docstring says how): a small real workload makes each call
on loopback only, and the test finds its event with its arguments and its return value."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.syscall_workload import calls, ok, one, py

pytestmark = pytest.mark.bpf


# ------------------------------------------------------------------------------ sockets

LONG_NAME = ".".join(["a" * 63, "b" * 63, "exfil-" + "c" * 50, "example"])


def test_socket_syscalls(run_session, tmp_path: Path) -> None:
    out_path = tmp_path / "out.json"
    r = run_session(py(f"""
        pk = sc("socket", 17, 3, 0x0300)         # AF_PACKET, SOCK_RAW, htons(ETH_P_ALL)
        if pk >= 0:
            os.close(pk)
        pair = (ctypes.c_int * 2)()
        assert sc("socketpair", 1, 1, 0, pair) == 0
        srv = socket.socket()
        assert sc("bind", srv.fileno(), sin("127.0.0.1", 0), 16) == 0
        assert sc("listen", srv.fileno(), 4) == 0
        port = srv.getsockname()[1]
        cli = socket.socket(); cli.connect(("127.0.0.1", port))
        peer = buf(bytes(128)); plen = ctypes.c_int(128)
        a4 = sc("accept4", srv.fileno(), peer, ctypes.byref(plen), 0x80000)
        cli2 = socket.socket(); cli2.connect(("127.0.0.1", port))
        plen = ctypes.c_int(128)
        a = sc("accept", srv.fileno(), peer, ctypes.byref(plen))
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        q = dns_query({LONG_NAME!r})
        udp.sendto(q, ("127.0.0.1", 53))          # nothing listens there: the send happens
        rcv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        rcv.bind(("127.0.0.1", 0))
        rport = rcv.getsockname()[1]
        udp.sendmsg([b"hello"], [], 0, ("127.0.0.1", rport))
        udp.sendmsg([dns_query("msg.example")], [], 0, ("127.0.0.1", 53))
        mq = dns_query("mmsg.example")
        mqb = buf(mq)
        iov = buf(struct.pack("QQ", ctypes.addressof(mqb), len(mq)))
        name = sin("127.0.0.1", 53)
        mm = buf(struct.pack("<QiIQQQQiIII", ctypes.addressof(name), 16, 0,
                             ctypes.addressof(iov), 1, 0, 0, 0, 0, 0, 0))
        assert sc("sendmmsg", udp.fileno(), mm, 1, 0) == 1
        conn = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        conn.connect(("127.0.0.1", 53))           # as glibc's resolver does
        conn.send(dns_query("connected.example"))
        try:
            conn.send(b"not a dns query, only some bytes")
        except OSError:
            pass
        d1 = sc("dup", udp.fileno())
        d3 = sc("dup3", udp.fileno(), 40, 0x80000)
        f1 = sc("fcntl", udp.fileno(), 0, 50)      # F_DUPFD
        f2 = sc("fcntl", udp.fileno(), 1030, 60)   # F_DUPFD_CLOEXEC
        sc("fcntl", udp.fileno(), 1, 0)            # F_GETFD: not reported
        f3 = sc("fcntl", udp.fileno(), 1 << 32, 70)  # F_DUPFD once the kernel truncates cmd
        def redirect():
            assert sc("dup2", cli.fileno(), 1) == 1
        kid = child(redirect)
        json.dump(dict(pk=pk, pair=list(pair), port=port, cport=cli.getsockname()[1],
                       c2port=cli2.getsockname()[1], a4=a4, a=a, rport=rport, qlen=len(q),
                       udp=udp.fileno(), d1=d1, d3=d3, f1=f1, f2=f2, f3=f3, kid=kid,
                       cli=cli.fileno(), srv=srv.fileno()),
                  open({str(out_path)!r}, "w"))
    """))
    ok(r)
    out = json.loads(out_path.read_text())
    e = one(r, "socket", family="AF_PACKET")
    assert e.args["type"] == ["SOCK_RAW"] and e.args["protocol"] == 0x0300
    assert e.ret == out["pk"] and (e.ret >= 0 or e.error == "EPERM")
    e = one(r, "socketpair")
    assert e.ret == 0 and e.args["fds"] == out["pair"] and e.args["family"] == "AF_UNIX"
    assert e.args["type"] == ["SOCK_STREAM"]
    e = one(r, "bind", fd=out["srv"])
    assert (e.family, e.address, e.port, e.ret) == ("AF_INET", "127.0.0.1", 0, 0)
    assert one(r, "listen").args == {"fd": out["srv"], "backlog": 4}
    e = one(r, "accept4")
    assert e.ret == out["a4"] >= 0 and e.args["flags"] == ["SOCK_CLOEXEC"]
    assert (e.family, e.address, e.port) == ("AF_INET", "127.0.0.1", out["cport"])
    e = one(r, "accept")
    assert e.ret == out["a"] >= 0
    assert (e.family, e.address, e.port) == ("AF_INET", "127.0.0.1", out["c2port"])

    e = one(r, "sendto", port=53, address="127.0.0.1", connected="<absent>")
    assert e.dns_query == LONG_NAME and e.ret == out["qlen"] and e.args["len"] == out["qlen"]
    assert e.family == "AF_INET" and e.args["fd"] == out["udp"]
    e = one(r, "sendmsg", port=out["rport"])
    assert e.address == "127.0.0.1" and e.dns_query is None and e.ret == 5
    assert one(r, "sendmsg", port=53).dns_query == "msg.example"
    e = one(r, "sendmmsg")
    assert (e.port, e.dns_query, e.ret) == (53, "mmsg.example", 1)
    # On the connected socket (its connect to port 53 flags the process: aw_sockw.h): the
    # DNS-looking send, then the other as the first non-DNS send on that fd, each with
    # the socket's peer as the kernel read it (args.connected).
    connected = calls(r, "sendto", connected=True)
    assert [(e.dns_query, e.family, e.address, e.port) for e in connected] == [
        ("connected.example", "AF_INET", "127.0.0.1", 53),
        (None, "AF_INET", "127.0.0.1", 53)]
    assert not [e for e in r.of("syscall") if e.syscall.startswith("send")
                and e.dns_query is None and e.port is None]
    raw = b"".join(e.to_json() for e in r.of("syscall"))
    assert b"only some bytes" not in raw and b"hello" not in raw  # no payload in events

    # Every duplicated fd here is a socket: `socket` says so (from /proc or the fd table).
    assert one(r, "dup").args == {"oldfd": out["udp"], "socket": True}
    assert one(r, "dup").ret == out["d1"]
    e = one(r, "dup3")
    assert e.args == {"oldfd": out["udp"], "newfd": 40, "flags": ["O_CLOEXEC"],
                      "socket": True}
    assert e.ret == 40 == out["d3"]
    fcntls = calls(r, "fcntl")
    assert [(e.args["cmd"], e.args["arg"], e.ret) for e in fcntls] == [
        ("F_DUPFD", 50, out["f1"]), ("F_DUPFD_CLOEXEC", 60, out["f2"]),
        ("F_DUPFD", 70, out["f3"])]
    assert all(e.args["socket"] is True for e in fcntls)
    e = one(r, "dup2")
    # a TCP socket onto stdout: told apart from a unix one (Node's socketpair stdio)
    assert e.args == {"oldfd": out["cli"], "newfd": 1, "socket": True,
                      "unix_socket": False} and e.ret == 1
    assert e.pid == out["kid"] != r.root_pid
