"""Reverse shells seen through the stdio the kernel reported at exec (ExecEvent.stdio,
include/aw_stdio.h): the session-wide bookkeeping of reverse_shell (detectors/catalog/
network.py) for sockets on fds 0-2 and for relays that join a shell to a socket through
pipes and fifos. Pure: everything lives in the detector's per-session state."""

from __future__ import annotations

from typing import Any

from collector.events import (
    ConnectEvent,
    Event,
    ExecEvent,
    OpenEvent,
    SyscallEvent,
)

INET = ("AF_INET", "AF_INET6")
MAX_TRACKED = 4096     # processes whose stdio ends are remembered


def _state(st: dict[str, Any]) -> dict[str, Any]:
    if "ends" not in st:
        st.update(inherited=set(), ends={}, holders={}, shells={}, flagged=set(),
                  first_exec=True)
    return st


def channel(e: dict[str, Any]) -> str | None:
    """The key of a pipe or fifo end: what two processes' stdio can share."""
    if e.get("type") == "pipe":
        return f"pipe:{e.get('ino')}"
    if e.get("type") == "fifo":
        return f"fifo:{e.get('dev')}:{e.get('ino')}"
    return None


def outside_unix(st: dict[str, Any], e: dict[str, Any]) -> bool:
    """A unix socket whose peer is known and is not a process of the session, and that the
    session did not inherit from whoever started it (a launcher's parent, such as an
    agent's Node process, gives the sandbox socketpair stdio: its peer is outside, and
    expected)."""
    s = _state(st)
    peer = e.get("peer_pid")
    return (e.get("type") == "socket" and e.get("family") == "AF_UNIX"
            and isinstance(peer, int) and peer > 0 and peer not in st.get("hosts", ())
            and e.get("ino") not in s["inherited"])


def socket_what(st: dict[str, Any], e: dict[str, Any]) -> str | None:
    """'inet' / 'unix with an outside peer' for a stdio entry that makes a holder."""
    if e.get("type") != "socket":
        return None
    if e.get("family") in INET:
        return f"{e.get('family')} socket{' to ' + e['peer'] if e.get('peer') else ''}"
    if outside_unix(st, e):
        return f"unix socket whose peer (pid {e.get('peer_pid')}) is outside the session"
    return None


def exec_seen(st: dict[str, Any], ev: ExecEvent, shell: bool) -> None:
    """Remember what this exec's stdio is: channel ends, sockets held, the shell."""
    s = _state(st)
    stdio = ev.stdio or []
    if s["first_exec"] or ev.setup:
        # what the session was started with is inherited from outside, on purpose
        s["first_exec"] = False
        for e in stdio:
            if e.get("type") == "socket" and e.get("family") == "AF_UNIX":
                s["inherited"].add(e.get("ino"))
        return
    ends: dict[int, tuple[set[str], set[str]]] = s["ends"]
    ins = {k for e in stdio if e.get("fd") == 0 and (k := channel(e))}
    outs = {k for e in stdio if e.get("fd") in (1, 2) and (k := channel(e))}
    if len(ends) < MAX_TRACKED or ev.pid in ends:
        ends[ev.pid] = (ins, outs)
    s["shells"].pop(ev.pid, None)
    if shell and ins and outs and (len(s["shells"]) < MAX_TRACKED):
        s["shells"][ev.pid] = {"filename": ev.filename, "argv": ev.argv, "comm": ev.comm}
    for e in stdio:
        what = socket_what(st, e)
        if what:
            s["holders"][ev.pid] = what


def fifo_opened(st: dict[str, Any], ev: OpenEvent) -> bool:
    """A fifo opened by path (not stdio: `socat TCP:... PIPE:f`, a relay script): one more
    channel end of this process, read (O_RDONLY), written (O_WRONLY) or both (O_RDWR)."""
    if ev.ret < 0 or ev.file_type != "fifo" or ev.dev is None or ev.ino is None:
        return False
    s = _state(st)
    ends: dict[int, tuple[set[str], set[str]]] = s["ends"]
    if ev.pid not in ends:
        if len(ends) >= MAX_TRACKED:
            return False
        ends[ev.pid] = (set(), set())
    key = f"fifo:{ev.dev}:{ev.ino}"
    acc = ev.flags & 3
    if acc in (0, 2):
        ends[ev.pid][0].add(key)
    if acc in (1, 2):
        ends[ev.pid][1].add(key)
    return True


def holder_seen(st: dict[str, Any], ev: Event) -> bool:
    """An inet socket connected or accepted by this process: it holds a network peer."""
    s = _state(st)
    if isinstance(ev, ConnectEvent):
        if ev.family not in INET or not (ev.ret >= 0 or ev.error == "EINPROGRESS"):
            return False
        what = f"{ev.family} connect to {ev.address}:{ev.port}"
    elif isinstance(ev, SyscallEvent) and ev.syscall in ("accept", "accept4"):
        if ev.ret < 0 or ev.args.get("family", ev.family) not in INET:
            return False
        what = f"{ev.args.get('family', ev.family)} connection accepted"
    else:
        return False
    if len(s["holders"]) < MAX_TRACKED or ev.pid in s["holders"]:
        s["holders"][ev.pid] = what
    return True


def relays(st: dict[str, Any]) -> list[dict[str, Any]]:
    """Shells joined to socket holders both ways and not yet flagged: a holder writes the
    shell's stdin (the channel on the holder's fd 1/2 and the shell's fd 0) and a holder
    reads the shell's output (the channel on the shell's fd 1/2 and the holder's fd 0).
    `curl | sh` feeds input only; `sh | curl -T -` carries output only: neither is one."""
    s = _state(st)
    out = []
    ends, holders = s["ends"], s["holders"]
    for pid, info in s["shells"].items():
        if pid in s["flagged"] or pid not in ends:
            continue
        ins, outs = ends[pid]
        feeders = [h for h in holders if h != pid and h in ends and ends[h][1] & ins]
        drains = [h for h in holders if h != pid and h in ends and ends[h][0] & outs]
        if feeders and drains:
            s["flagged"].add(pid)
            out.append({**info, "shell_pid": pid, "feeder": feeders[0], "drain": drains[0],
                        "socket": holders[feeders[0]]})
    return out
