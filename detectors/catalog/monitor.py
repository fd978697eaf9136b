"""Detectors for reaching what stands outside every sandbox: agentwatch itself (its
processes, config, state and pinned maps) and the host's IPC sockets (container runtimes,
D-Bus, systemd). The shared rules of escape.py's opening comment hold here too.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from collector.events import ConnectEvent, Event, OpenEvent, SyscallEvent
from detectors.base import (
    Context,
    Detector,
    DetectorSpec,
    Finding,
    KernelCall,
    KernelHalf,
    ReadInterest,
    path_matches,
    register,
)
from detectors.catalog.common import outcome, write_intent
from detectors.catalog.proctarget import (
    KERNEL_MONITOR_ENTRIES,
    LISTABLE,
    METADATA_CALLS,
    SENSITIVE,
    ProcNs,
    ps_listing,
    walked,
)
from detectors.openroute import OpenInterest

MONITOR_PATHS = ["/etc/agentwatch", "/etc/agentwatch/**", "/var/lib/agentwatch",
                 "/var/lib/agentwatch/**", "/var/log/agentwatch", "/var/log/agentwatch/**",
                 "/run/agentwatch", "/run/agentwatch/**", "/var/run/agentwatch",
                 "/var/run/agentwatch/**", "/sys/fs/bpf", "/sys/fs/bpf/**"]


@register
class MonitorTamper(Detector):
    """kill/tkill/tgkill/rt_sigqueueinfo/rt_tgsigqueueinfo (a process group too), a file's
    signal owner set to it (fcntl F_SETOWN/F_SETOWN_EX, ioctl FIOSETOWN/SIOCSPGRP: SIGIO
    and SIGURG go there), ptrace and process_vm_* aimed at
    agentwatch's own pids (`monitor_pids`, strings: empty by default, filled in by the
    engine's caller), pidfd_send_signal through a pidfd the session opened on one of them
    (pidfd_open, or an open of its /proc/<pid> directory: the kernel checks the fd's
    process itself),
    a kill(-1, sig) broadcast (`broadcast_kill`; harmless inside a pid namespace, but
    nothing an agent needs), and any access (open, change, unix connect) to its config,
    state, logs, sockets or pinned BPF maps (`paths`; `dir/**` does not match `dir`
    itself, so both are listed). A running agentwatch adds its own pid and thread ids to
    `monitor_pids`, and its config file, log, run and state directories to `paths` when
    they are not the default ones. In enforce mode the kernel kills the signals,
    pidfd_open and literal paths at the call's entry (docs/response.md).

    agentwatch's /proc/<pid> (any of its pids or thread ids, judged by the process the
    kernel names for the opened file, detectors/catalog/proctarget.py): write-intent
    opens of any entry, and reads of the entries that reach its memory, fds, roots or
    environment (`SENSITIVE`: mem, environ, fd, fdinfo, map_files, root, cwd, exe, maps,
    pagemap, syscall, stack, auxv ..., task/<tid>/ forms included). The kernel denies the
    same entries but environ (see below).

    Deliberately not flagged: ps-style reads of agentwatch's /proc/<pid> (stat, status,
    cmdline, comm, statm, io ..., the directory itself): `ps`, `top` and `pgrep` read
    them for every process and learn nothing a process list does not show; procps `ps`
    opening agentwatch's environ without an option that prints it (procps 4 opens every
    process's environ; see `environ_snoop`), which is why the kernel leaves environ to
    user space (a `cat` of it is killed after the open, not before); a read-only open of
    a directory under the monitored paths made by a tree walk (relative to a directory
    fd, as find, du and grep -r do, or a directory whose parent the same process opened
    as a directory before, as ls -R and rg do): `find /` passes /sys/fs/bpf on its way
    and learns names only; the kernel lets every read-only directory open there through
    (AW_DENY_LIST) and still kills any other open of a pinned object; metadata calls
    (stat, lstat, readlink, access) on the paths; a tree walk's listing of agentwatch's
    fd/, fdinfo/ or map_files/ (fd numbers only; the kernel lets read-only O_DIRECTORY
    opens of them through, and still kills /proc/<pid>/fd/N, the file itself). An
    explicit listing (`ls /sys/fs/bpf`, an absolute open whose parent the process never
    opened) is still flagged."""

    spec = DetectorSpec(
        id="monitor_tamper",
        # session, exec, fork: the pid namespaces (proctarget.ProcNs)
        kinds=frozenset({"open", "connect", "syscall", "exec", "fork", "session"}),
        reads=ReadInterest(params=("paths",), globs=("/proc/**", "/sys/fs/bpf/**")),
        title="Tampering With agentwatch",
        description="signals or ptrace aimed at agentwatch's processes, or access to its "
                    "config, state, logs or pinned BPF maps",
        severity="critical",
        action="kill",
        mitre=("T1562.001", "T1489"),
        not_flagged=(
            "ps-style reads of agentwatch's /proc/<pid> (stat, status, cmdline, comm): ps and top"
            " read them for every process",
            "a tree walk passing /sys/fs/bpf or the state directories (read-only directory opens "
            "relative to the parent, as find / and du make); an explicit listing and any pinned "
            "object stay",
            "signals to the session's own processes (pkill -f of its own child): `agentwatch run`"
            " blanks its own command line so such patterns no longer name it",
        ),
        output="{syscall} {target} by {comm}",
        params={
            "monitor_pids": [],          # strings: agentwatch's own pids (set at start)
            "paths": list(MONITOR_PATHS),
            "broadcast_kill": True,      # kill(-1, sig) reaches every process it may signal
        },
        # signals and pidfd_open only from the host pid namespace; /proc/<pid> of the
        # protected pids and the literal `paths` (and below) from anywhere
        kernel=KernelHalf(
            reason="AW_WHY_MONITOR", enable="AW_EN_MONITOR", enable_needs_call=True,
            protect_pids="monitor_pids", deny_paths="paths", deny_below=True,
            deny_list_ok=True, protect_proc_entries=KERNEL_MONITOR_ENTRIES,
            calls=(*(KernelCall(c, "AW_SE_SIGNAL", host_pidns=True)
                     for c in ("kill", "tkill", "tgkill", "pidfd_open", "rt_sigqueueinfo",
                               "rt_tgsigqueueinfo", "fcntl", "ioctl")),
                   # through a /proc/<pid> directory fd: the kernel names its process
                   KernelCall("pidfd_send_signal", "AW_SE_SIGNAL"))),
    )

    def open_interest(self, params: dict[str, Any]) -> OpenInterest:
        # `paths`, its /proc entries and pidfds; walked() remembers every directory read
        return OpenInterest(dir_reads=True, proc=True, globs=tuple(params["paths"]))

    def check(self, ctx: Context, ev: Event) -> Iterable[Finding]:
        p = ctx.params
        pids = _pids(ctx.state, p["monitor_pids"])
        pidfds: dict[tuple[int, int], int] | None = ctx.state.get("pidfds")
        if pidfds is None:
            pidfds = ctx.state["pidfds"] = {}
        pns = ProcNs(ctx.state)
        pns.see(ctx, ev)
        if isinstance(ev, OpenEvent):
            if ev.ret >= 0 and ev.file_type == "dir" and ev.proc_tgid in pids \
                    and ev.proc_pid is not None and len(pidfds) < 65536:
                pidfds[(ev.pid, ev.ret)] = ev.proc_tgid  # pidfd_send_signal takes it
            walk = walked(ctx.state, ev)
            hit = path_matches(ev.path, p["paths"], ctx.homes) and not walk
            if not hit and pids:
                hit = _monitor_proc(ctx, ev, pns, pids, walk)
            if hit:
                yield Finding(key=f"open:{ev.path}", fields={
                    "syscall": ev.syscall, "target": ev.path, "path": ev.path,
                    "comm": ev.comm, **outcome(ev)})
            return
        if isinstance(ev, ConnectEvent):
            if ev.family == "AF_UNIX" and path_matches(ev.address, p["paths"], ctx.homes):
                yield Finding(key=f"connect:{ev.address}", fields={
                    "syscall": "connect", "target": ev.address, "comm": ev.comm,
                    **outcome(ev)})
            return
        if not isinstance(ev, SyscallEvent):
            return
        a = ev.args
        if ev.syscall == "pidfd_open" and ev.ret >= 0 and isinstance(a.get("pid"), int):
            pidfds[(ev.pid, ev.ret)] = a["pid"]
            return
        target: int | None = None
        if ev.syscall in ("kill", "ptrace", "process_vm_readv", "process_vm_writev"):
            target = a.get("pid")
        elif ev.syscall == "tkill":
            target = a.get("tid")
        elif ev.syscall in ("tgkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo"):
            target = a.get("tgid")
        elif ev.syscall == "fcntl" and a.get("cmd") == "F_SETOWN":
            target = a.get("arg")  # the pid (or -pgrp) SIGIO/SIGURG will go to
        elif ev.syscall == "ioctl" and a.get("cmd") in ("FIOSETOWN", "SIOCSPGRP"):
            target = a.get("owner")
        elif ev.syscall == "pidfd_send_signal":
            target = pidfds.get((ev.pid, a.get("pidfd", -1)))
        if isinstance(target, int):
            what = f"{a.get('sig') or a.get('request') or ''} pid {target}".strip()
            if abs(target) in pids or (ev.syscall == "kill" and target == -1
                                       and p["broadcast_kill"] and a.get("sig") != 0):
                yield Finding(key=f"{ev.syscall}:{target}", fields={
                    "syscall": ev.syscall, "target": what, "comm": ev.comm, **outcome(ev)})
            return
        for path in (ev.path, ev.path2):
            if path and ev.syscall != "chdir" and ev.syscall not in METADATA_CALLS \
                    and path_matches(path, p["paths"], ctx.homes):
                yield Finding(key=f"{ev.syscall}:{path}", fields={
                    "syscall": ev.syscall, "target": path, "path": path, "comm": ev.comm,
                    **outcome(ev)})
                return
        if ev.family == "AF_UNIX" and path_matches(ev.address, p["paths"], ctx.homes):
            yield Finding(key=f"{ev.syscall}:{ev.address}", fields={
                "syscall": ev.syscall, "target": ev.address, "comm": ev.comm, **outcome(ev)})


def _pids(state: dict[str, Any], listed: list[Any]) -> set[int]:
    """`monitor_pids` as numbers, parsed again only when the list changes (it is read
    for every event this detector sees)."""
    key = tuple(listed)
    cached = state.get("monitor_pids")
    if cached is None or cached[0] != key:
        cached = state["monitor_pids"] = (
            key, {int(x) for x in listed if str(x).lstrip("-").isdigit()})
    return cached[1]


def _monitor_proc(ctx: Context, ev: OpenEvent, pns: ProcNs, pids: set[int],
                  walk: bool) -> bool:
    """An open of agentwatch's /proc/<pid>/<entry> that is tampering: any write intent, a
    read of a SENSITIVE entry (environ by a ps listing, and a tree walk's listing of fd/,
    fdinfo/, map_files/ excepted). The caller's string too: /proc/<pid>/fd/N opens the
    file the link names, not a /proc file."""
    for path in dict.fromkeys((ev.path, ev.raw_path)):
        t = pns.target(ev, path)
        if t is None or (not t.exact and t.inside_ns) or t.host_pid is None:
            continue
        exact_ids = {ev.proc_pid, ev.proc_tgid} if t.exact else {t.host_pid}
        if not exact_ids & pids or not t.entry:
            continue
        if write_intent(ev):
            return True
        if t.entry not in SENSITIVE or (walk and t.entry in LISTABLE and not t.rest):
            continue
        if not (t.entry == "environ" and ps_listing(ctx)):
            return True
    return False


RUNTIME_SOCKETS = [
    "/var/run/docker.sock", "/run/docker.sock", "/run/user/*/docker.sock",
    "/run/containerd/containerd.sock", "/var/run/containerd/containerd.sock",
    "/run/containerd/containerd.sock.ttrpc", "/run/k3s/containerd/containerd.sock",
    "@/containerd-shim/**",
    "/run/crio/crio.sock", "/var/run/crio/crio.sock",
    "/run/podman/podman.sock", "/var/run/podman/podman.sock", "/run/user/*/podman/podman.sock",
    "/run/dbus/system_bus_socket", "/var/run/dbus/system_bus_socket", "/run/user/*/bus",
    "@/tmp/dbus-*",
    "/run/systemd/private", "/run/user/*/systemd/private",
    "/run/snapd.socket", "/run/snapd-snap.socket", "/var/snap/lxd/common/lxd/unix.socket",
    "/var/lib/lxd/unix.socket",
]


@register
class RuntimeSocket(Detector):
    """A connect, bind, send (with an address), open or path syscall on a container
    runtime's API socket (docker, containerd and its shims' abstract sockets, cri-o,
    podman, rootless ones under /run/user) or another host IPC socket (system and session
    D-Bus, systemd's private socket, snapd, lxd): each can start processes on the host,
    outside any sandbox. Both /run and /var/run spellings are listed (paths are compared
    lexically). journald's sockets are not in the list (programs log through them)."""

    spec = DetectorSpec(
        id="runtime_socket",
        kinds=frozenset({"connect", "syscall", "open"}),
        reads=ReadInterest(params=("sockets",)),
        title="Container Runtime Or Host IPC Socket Access",
        description="connect/bind/send/open of docker, containerd, cri-o or podman "
                    "sockets, or of host IPC sockets (D-Bus, systemd)",
        severity="critical",
        action="kill",
        mitre=("T1610", "T1611", "T1559"),
        not_flagged=(
            "journald's sockets (/run/systemd/journal/*): programs log through them",
            "the sandbox's own unix sockets (only the listed host sockets are judged)",
        ),
        output="{syscall} {socket} by {comm}",
        params={"sockets": list(RUNTIME_SOCKETS)},
        kernel=KernelHalf(reason="AW_WHY_RUNTIME_SOCKET", deny_paths="sockets"),
    )

    def open_interest(self, params: dict[str, Any]) -> OpenInterest:
        # the sockets' paths
        return OpenInterest(globs=tuple(params["sockets"]))

    def check(self, ctx: Context, ev: Event) -> Iterable[Finding]:
        socks = ctx.params["sockets"]
        hit: tuple[str, str] | None = None
        address = getattr(ev, "address", None)  # unix paths: absolute, folded (collector)
        if isinstance(ev, ConnectEvent):
            if ev.family == "AF_UNIX" and path_matches(address, socks, ctx.homes):
                hit = ("connect", address or "")
        elif isinstance(ev, SyscallEvent):
            if ev.family == "AF_UNIX" and path_matches(address, socks, ctx.homes):
                hit = (ev.syscall, address or "")
            elif ev.syscall != "chdir" and path_matches(ev.path, socks, ctx.homes):
                hit = (ev.syscall, ev.path or "")
        elif isinstance(ev, OpenEvent) and path_matches(ev.path, socks, ctx.homes):
            hit = (ev.syscall, ev.path)
        if hit:
            yield Finding(key=f"{hit[0]}:{hit[1]}", fields={
                "syscall": hit[0], "socket": hit[1], "comm": ev.comm, **outcome(ev)})
