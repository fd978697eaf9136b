"""The outbound send: the one notion of "data left for somewhere outside" that the
read-then-send sequences use (credential_read's escalation), whatever the transport.

An event is an outbound send when it puts bytes (or asks to) on a way out of the session:
- a connect to an IPv4/IPv6 address outside the allowlist (loopback by default: the
  sandbox's proxies live there), refused and failed attempts included, as before;
- a connect of a unix stream socket whose peer the kernel names (`peer_pid`, the
  listener's process) as outside the session (`peer_in_session` false), unless its path
  is one of `unix_allow` (the sandbox's own proxy and name-service sockets);
- a sendto/sendmsg/sendmmsg with an IPv4/IPv6 destination outside the allowlist;
- a send without destination, by send()/sendmsg(), write()/writev() on a socket (the
  kernel reports those of processes that connected somewhere user space cares about,
  include/aw_sockw.h, with the socket's inet peer as their address) or io_uring's SEND
  family, and io_uring's WRITE family (reported in steps: the 1st, 2nd, 4th... of a
  process): judged by that address, or, without one (a unix socket, io_uring), when the
  session showed the socket's connect and it was itself outbound: the connect is
  remembered per (pid, fd).

DNS (destination port 53) is told apart (`dns`): the sequences leave name lookups to
dns_exfil, which reads their query names.

The kernel reports socket writes only of processes that connected outside loopback, to
port 53 or to a unix peer outside the session: an allowlist narrower than loopback still
judges connects and addressed sends, but not writes on a loopback connection.

Not outbound, deliberately: unix datagrams sent to a path (the kernel records no peer
credentials for them, so the peer's membership is unknown), a unix peer the kernel could
not name (socketpair's, a connect that failed), and a send on a socket whose connect the
session never showed (inherited, passed over SCM_RIGHTS, or dup'ed into another process):
the (pid, fd) memory knows only the connecting process's own fds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from collector.events import ConnectEvent, Event, SyscallEvent, UringEvent
from detectors.base import path_matches
from detectors.catalog.common import in_any, parse_ip

INET = ("AF_INET", "AF_INET6")
ADDRESSED_SENDS = ("sendto", "sendmsg", "sendmmsg")
# sends on a connected socket, without a destination of their own
UNADDRESSED_SENDS = ("sendto", "sendmsg", "sendmmsg", "write", "writev")
URING_WRITES = ("WRITE", "WRITEV", "WRITE_FIXED", "WRITEV_FIXED")
SOCKETS_MAX = 4096   # remembered connects per session: the oldest go first

# The sandbox's own channels to the host: sandbox-runtime's proxy bridges (its host-side
# socat listens on these; every proxied request of the sandbox goes through them, as inet
# traffic goes through its loopback proxies) and the host's name and log services.
UNIX_ALLOW = ["**/claude-http-*.sock", "**/claude-socks-*.sock", "**/srt-mux-*.sock",
              "/run/nscd/socket", "/var/run/nscd/socket", "/run/systemd/userdb/*",
              "/run/systemd/resolve/*", "/run/systemd/journal/*", "/dev/log"]


@dataclass(frozen=True)
class Outbound:
    """Where an outbound send goes."""

    syscall: str            # connect, sendto, write, ... as the event names it
    family: str             # AF_INET | AF_INET6 | AF_UNIX
    address: str            # IP address, or the unix socket's path
    port: int | None
    peer_pid: int | None    # unix: the peer's host pid
    via: str                # "syscall" | "io_uring"
    dns: bool               # to port 53: a name lookup

    def fields(self) -> dict[str, Any]:
        out: dict[str, Any] = {"address": self.address, "port": self.port,
                               "family": self.family, "syscall": self.syscall}
        if self.peer_pid is not None:
            out["peer_pid"] = self.peer_pid
        if self.via != "syscall":
            out["via"] = self.via
        return out


def _inet_outside(address: str | None, allow: list[str]) -> bool:
    # an allow CIDR that does not parse is skipped, the others still count
    ip = parse_ip(address)
    return ip is not None and not in_any(ip, allow, skip_bad=True)


def _remember(state: dict[str, Any], ev: ConnectEvent, out: Outbound | None) -> None:
    socks: dict[tuple[int, int], Outbound | None] = state.setdefault("sockets", {})
    key = (ev.pid, ev.fd)
    socks.pop(key, None)  # re-inserted last: the newest
    socks[key] = out
    while len(socks) > SOCKETS_MAX:
        del socks[next(iter(socks))]


def outbound(state: dict[str, Any], ev: Event, allow: list[str],
             unix_allow: list[str]) -> Outbound | None:
    """The outbound send `ev` is, or None. `state`: the calling detector's session state
    (connects are remembered there, so call this on every connect and send event)."""
    via = getattr(ev, "via", "syscall")
    if isinstance(ev, ConnectEvent):
        out: Outbound | None = None
        if ev.family in INET and ev.address and _inet_outside(ev.address, allow):
            out = Outbound("connect", ev.family, ev.address, ev.port, None, via,
                           ev.port == 53)
        elif ev.family == "AF_UNIX" and ev.peer_pid and ev.peer_in_session is False \
                and ev.address is not None \
                and path_matches(ev.address, unix_allow) is None:
            out = Outbound("connect", ev.family, ev.address, None, ev.peer_pid, via, False)
        if ev.fd >= 0:
            _remember(state, ev, out)
        return out
    if isinstance(ev, UringEvent):
        # io_uring's writes (reported in steps: the 1st, 2nd, 4th... of a process) on a
        # remembered socket; a registered file's index is not an fd
        info = ev.io_uring or {}
        if ev.op not in URING_WRITES or ev.fd is None or info.get("fixed_file"):
            return None
        known = state.get("sockets", {}).get((ev.pid, ev.fd))
        if known is None:
            return None
        return Outbound(f"io_uring {ev.op}", known.family, known.address, known.port,
                        known.peer_pid, via, known.dns)
    if not isinstance(ev, SyscallEvent):
        return None
    if ev.address and ev.syscall in UNADDRESSED_SENDS:
        # its destination, or (a send on a connected socket) the socket's peer as the
        # kernel read it
        if ev.family in INET and _inet_outside(ev.address, allow):
            return Outbound(ev.syscall, ev.family or "", ev.address, ev.port, None, via,
                            ev.port == 53)
        return None
    if ev.syscall in UNADDRESSED_SENDS and not ev.address:
        fd = ev.args.get("fd")
        if not isinstance(fd, int):
            return None
        known = state.get("sockets", {}).get((ev.pid, fd))
        if known is None:
            return None
        return Outbound(ev.syscall, known.family, known.address, known.port, known.peer_pid,
                        via, known.dns)
    return None
