"""The process table: what the collector knows of every watched process.

Fed by events in arrival order, which is not always causal order: a child's exec can be
delivered before its parent's fork event (the fork event is sent when clone() returns in
the parent). So a process is created on first sight from any event's header, whose `ppid`
and `session` come from the kernel's watched map and are right from the first event.
Exited processes are kept (bounded, oldest first) so that ancestry still resolves for
their descendants and for late events.
"""

from __future__ import annotations

import os
import re
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from collector.events import (
    ConnectEvent,
    Event,
    ExecEvent,
    ExitEvent,
    ForkEvent,
    OpenEvent,
    SyscallEvent,
    uring_result_known,
)
from probes.syscalls import PATH_BASES

MAX_FDS = 4096  # open file descriptors remembered per process (for dirfd resolution)


@dataclass(slots=True)
class Process:
    pid: int
    ppid: int
    session: str | None
    start_ns: int                      # first seen: fork time for children, else first event
    uid: int = 0
    comm: str = ""
    exe: str | None = None
    argv: list[str] = field(default_factory=list)
    cwd: str | None = None
    ns: dict[str, int] | None = None   # namespace inode numbers, read from /proc
    # fd -> (absolute path, close-on-exec), from this session's opens: resolves dirfds.
    fds: dict[int, tuple[str, bool]] = field(default_factory=dict)
    exited: bool = False
    exit_ns: int | None = None
    exit_code: int | None = None
    exit_signal: int | None = None

    def exit_status(self) -> int | None:
        """As a shell reports it: the code, or 128+N for signal N; None if unknown."""
        if self.exit_signal is not None:
            return 128 + self.exit_signal
        return self.exit_code

    def brief(self) -> dict[str, Any]:
        return {"pid": self.pid, "ppid": self.ppid, "comm": self.comm, "exe": self.exe,
                "argv": self.argv, "uid": self.uid}


def _readlink(path: str) -> str | None:
    try:
        return os.readlink(path)
    except OSError:
        return None


NAMESPACES = ("pid", "mnt", "net", "user")


def read_ns(pid: int) -> dict[str, int] | None:
    """Namespace inode numbers of a live process (`pid:[4026531836]` -> 4026531836)."""
    out: dict[str, int] = {}
    for ns in NAMESPACES:
        link = _readlink(f"/proc/{pid}/ns/{ns}")
        if link is None:
            return None
        out[ns] = int(link[link.index("[") + 1:-1])
    return out


@dataclass(frozen=True)
class ProcStat:
    comm: str
    ppid: int
    flags: int  # task flags (PF_EXITING = 0x4: the process is exiting)


def proc_stat(pid: int) -> ProcStat | None:
    """/proc/<pid>/stat's command name, parent and task flags; None if the process is
    gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        # comm (field 2) may hold spaces and parentheses: parse after the last ')'.
        close = stat.rindex(b")")
        fields = stat[close + 2:].split()
        return ProcStat(stat[stat.index(b"(") + 1: close].decode("utf-8", "replace"),
                        int(fields[1]), int(fields[6]))
    except (OSError, ValueError, IndexError):
        return None


_BOOT_TO_EPOCH_NS = time.time_ns() - time.clock_gettime_ns(time.CLOCK_BOOTTIME)
_TICK_NS = 10**9 // (os.sysconf("SC_CLK_TCK") or 100)


def proc_started_ns(pid: int) -> int | None:
    """When the process now holding `pid` started (ns since the epoch, to a clock tick),
    from /proc/<pid>/stat's starttime; None if there is none."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        ticks = int(stat[stat.rindex(b")") + 2:].split()[19])
    except (OSError, ValueError, IndexError):
        return None
    return ticks * _TICK_NS + _BOOT_TO_EPOCH_NS


def same_process(pid: int, seen_ns: int) -> bool:
    """Is the process now holding `pid` the one an event of time `seen_ns` came from? A
    process that started after that event is another one under a reused pid (a fork
    flood goes through pid_max in seconds): its /proc tells nothing about ours."""
    started = proc_started_ns(pid)
    return started is not None and started <= seen_ns + 2 * _TICK_NS


def proc_stats() -> dict[int, ProcStat]:
    """Every process alive now (a /proc scan)."""
    out: dict[int, ProcStat] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = proc_stat(int(entry))
            if st is not None:
                out[int(entry)] = st
    return out


def proc_ppid(pid: int) -> int | None:
    """The parent pid from /proc/<pid>/stat, or None if the process is gone."""
    st = proc_stat(pid)
    return None if st is None else st.ppid


def proc_argv(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read()
    except OSError:
        return []
    return [a.decode("utf-8", "backslashreplace") for a in raw.split(b"\0")[:-1]]


class ProcessTable:
    def __init__(self, max_exited: int = 8192, read_proc: bool = True) -> None:
        self.live: dict[int, Process] = {}
        self.exited: OrderedDict[int, Process] = OrderedDict()
        self.max_exited = max_exited
        self.read_proc = read_proc        # cwd/exe from /proc at exec (best effort)
        self.roots: dict[str, int] = {}   # session -> root pid

    def __len__(self) -> int:
        return len(self.live)

    def get(self, pid: int) -> Process | None:
        return self.live.get(pid) or self.exited.get(pid)

    def add_root(self, pid: int, ppid: int, session: str, argv: list[str], start_ns: int,
                 uid: int = 0, cwd: str | None = None) -> Process:
        proc = Process(pid=pid, ppid=ppid, session=session, start_ns=start_ns, uid=uid,
                       argv=list(argv), cwd=cwd,
                       ns=read_ns(pid) if self.read_proc else None)
        self.live[pid] = proc
        self.roots[session] = pid
        return proc

    def add_member(self, pid: int, ppid: int, session: str, argv: list[str],
                   start_ns: int) -> Process:
        """A process adopted with its session (attach), not the root."""
        proc = Process(pid=pid, ppid=ppid, session=session, start_ns=start_ns, argv=argv,
                       ns=read_ns(pid) if self.read_proc else None)
        self.live[pid] = proc
        return proc

    def _stale(self, proc: Process | None, ev: Event) -> Process | None:
        """A live entry of another session under this pid: its exit record was lost (a
        flood) and the pid was reused. Retired, so that nothing of it (fds, argv, cwd)
        is taken for the new process's."""
        if proc is not None and ev.session is not None and proc.session != ev.session:
            self._retire(proc, ev.ts)
            return None
        return proc

    def _ensure(self, pid: int, ev: Event) -> Process:
        proc = self._stale(self.live.get(pid), ev)
        if proc is None:
            proc = Process(pid=pid, ppid=ev.ppid, session=ev.session, start_ns=ev.ts,
                           uid=ev.uid, comm=ev.comm)
            parent = self.get(ev.ppid)
            # a parent of another session is a stale entry under a reused pid (records
            # lost to a flood): nothing of it is this process's
            if parent is not None and parent.session == ev.session:
                proc.exe, proc.argv, proc.cwd = parent.exe, parent.argv, parent.cwd
                proc.fds = dict(parent.fds)
            self.live[pid] = proc
        return proc

    def observe(self, ev: Event) -> Process | None:
        """Update the table from one event; returns the acting process."""
        if ev.session is None:
            return None
        proc = self._ensure(ev.pid, ev)
        proc.comm = ev.comm or proc.comm
        proc.uid = ev.uid
        if isinstance(ev, ConnectEvent):
            self._unix_address(proc, ev)
        elif isinstance(ev, SyscallEvent):
            self._syscall(proc, ev)
        elif isinstance(ev, OpenEvent):
            # the kernel's path when it resolved the opened file; else the string's
            resolved = kernel_proc_path(proc, ev) if ev.resolved else resolve_path(
                proc, ev.tid, ev.dfd, ev.raw_path)
            if resolved is not None:
                ev.path = resolved
            if ev.ret >= 0 and _new_fd(ev):
                self.set_fd(proc, ev.ret, resolved, bool(ev.flags & os.O_CLOEXEC))
        elif isinstance(ev, ExecEvent):
            if ev.ret == 0:
                proc.fds = {fd: v for fd, v in proc.fds.items() if not v[1]}
                proc.argv = ev.argv
                live = self.read_proc and same_process(ev.pid, ev.ts)
                exe = _readlink(f"/proc/{ev.pid}/exe") if live else None
                if exe is None:  # gone already, or a replay (which has the recorded exe)
                    exe = ev.exe or resolve_path(proc, ev.tid, ev.dfd, ev.filename) \
                        or ev.filename
                proc.exe = exe
                if live:
                    proc.cwd = _readlink(f"/proc/{ev.pid}/cwd") or proc.cwd
                    proc.ns = read_ns(ev.pid) or proc.ns
        elif isinstance(ev, ForkEvent):
            if ev.ret >= 0 and not ev.thread:
                child = self._stale(self.live.get(ev.child_pid), ev)
                if child is not None and child.start_ns < ev.ts:
                    # of this session but begun before this fork: an earlier process with
                    # the same pid whose exit was never seen (lost, or not yet read); its
                    # exe, cwd, parent and fds must not become the new child's
                    self._retire(child, ev.ts)
                    child = None
                if child is None:
                    child = Process(pid=ev.child_pid, ppid=ev.pid, session=ev.session,
                                    start_ns=ev.ts, uid=ev.uid, comm=ev.comm,
                                    exe=proc.exe, argv=list(proc.argv), cwd=proc.cwd,
                                    ns=proc.ns, fds=dict(proc.fds))
                    self.live[ev.child_pid] = child
                else:
                    child.start_ns = min(child.start_ns, ev.ts)
                    child.cwd = child.cwd or proc.cwd
        elif isinstance(ev, ExitEvent):
            proc.exit_code, proc.exit_signal = ev.exit_code, ev.signal
            self._retire(proc, ev.ts)
        return proc

    def _syscall(self, proc: Process, ev: SyscallEvent) -> None:
        """Paths made absolute; cwd, fd table and socket fds kept from the session's calls."""
        self._unix_address(proc, ev)
        for attr, (arg, dirfd_arg, is_path) in zip(("path", "path2"),
                                                   _path_bases().get(ev.syscall, ()),
                                                   strict=False):
            raw = ev.args.get(arg)
            if not isinstance(raw, str) or not (is_path or raw.startswith("/")):
                continue
            dirfd = ev.args.get(dirfd_arg) if dirfd_arg else None
            resolved = resolve_path(proc, ev.tid, dirfd if isinstance(dirfd, int) else None,
                                    raw)
            if resolved is not None:
                setattr(ev, attr, resolved)
        name, ret, args = ev.syscall, ev.ret, ev.args
        if ret < 0:
            return
        if name == "chdir":
            proc.cwd = ev.path if ev.path and ev.path.startswith("/") else None
        elif name == "fchdir":
            entry = proc.fds.get(args.get("fd", -1))
            proc.cwd = entry[0] if entry and entry[0].startswith("/") else None
        elif name in ("socket", "accept", "accept4"):
            family = args.get("family", ev.family)
            listener = proc.fds.get(args.get("fd", -1)) if name != "socket" else None
            if not family and listener and listener[0].startswith("socket:AF_"):
                family = args["family"] = listener[0][len("socket:"):]  # the listener's
            self.set_fd(proc, ret, f"socket:{family or ''}", False)
        elif name == "socketpair":
            for fd in args.get("fds") or ():
                self.set_fd(proc, fd, f"socket:{args.get('family', '')}", False)
        elif name in ("dup", "dup2", "dup3", "fcntl"):
            old = args.get("oldfd", args.get("fd"))
            entry = proc.fds.get(old) if isinstance(old, int) else None
            # The kernel's answer comes first: it read the new fd at the call's exit
            # (recorded: what was recorded). Without it, what the session's own calls
            # made of the old fd (it is what the fd was at the dup: /proc is read later,
            # when the process may have changed it or be gone; but opens the interest
            # filter counted and untraced closes can leave it stale); then, live, /proc.
            if args.get("socket") is not None:
                is_socket = args.get("socket")
            elif entry is not None:
                is_socket = entry[0].startswith("socket:")
            elif self.read_proc and same_process(ev.pid, ev.ts):
                is_socket = socket_fd(ev.pid, ret)
            else:
                is_socket = None
            args["socket"] = is_socket  # the duplicated fd is a socket (None: unknown)
            if entry is not None and is_socket is not None and \
                    entry[0].startswith("socket:") != is_socket:
                entry = None  # stale: the fd was closed and the number reused
            if is_socket and isinstance(ret, int) and 0 <= ret <= 2:
                # stdio onto a socket: unix (a socketpair, as Node's child stdio) or not
                family = entry[0][len("socket:"):] if entry is not None else ""
                if args.get("unix_socket") is not None:
                    unix = args.get("unix_socket")
                elif family:
                    unix = family == "AF_UNIX"
                else:
                    unix = unix_socket_fd(ev.pid, ret) if self.read_proc else None
                args["unix_socket"] = unix
            cloexec = name == "fcntl" and args.get("cmd") == "F_DUPFD_CLOEXEC"
            path = entry[0] if entry else None
            if path is None and is_socket:
                unix = args.get("unix_socket")
                path = "socket:AF_UNIX" if unix else "socket:"
            self.set_fd(proc, ret, path, cloexec)

    @staticmethod
    def _unix_address(proc: Process, ev: ConnectEvent | SyscallEvent) -> None:
        """A unix socket path made absolute and lexically folded like open paths
        (`docker.sock` from /run, `/var/run//docker.sock`); abstract names (`@...`) stay."""
        if ev.family == "AF_UNIX" and ev.address and not ev.address.startswith("@"):
            ev.address = resolve_path(proc, ev.tid, None, ev.address) or ev.address

    @staticmethod
    def set_fd(proc: Process, fd: int, path: str | None, cloexec: bool) -> None:
        if path is None:
            proc.fds.pop(fd, None)  # unknown now: never resolve through a stale entry
        elif fd in proc.fds or len(proc.fds) < MAX_FDS:
            proc.fds[fd] = (path, cloexec)

    def _retire(self, proc: Process, ts: int) -> None:
        proc.exited = True
        proc.exit_ns = ts
        self.live.pop(proc.pid, None)
        self.exited[proc.pid] = proc
        self.exited.move_to_end(proc.pid)
        while len(self.exited) > self.max_exited:
            self.exited.popitem(last=False)

    def ancestry(self, pid: int) -> list[Process]:
        """The process and its ancestors, up to and including its session's root."""
        chain: list[Process] = []
        seen: set[int] = set()
        proc = self.get(pid)
        while proc is not None and proc.pid not in seen:
            chain.append(proc)
            seen.add(proc.pid)
            if proc.session is not None and self.roots.get(proc.session) == proc.pid:
                break
            proc = self.get(proc.ppid)
        return chain



def _new_fd(ev: OpenEvent) -> bool:
    """An open whose `ret` is a new fd: not an io_uring open whose result is unknown or
    that filled a registered-file slot (a direct descriptor is no fd)."""
    info = ev.io_uring
    return info is None or (uring_result_known(ev) and info.get("direct_slot") is None)


def _path_bases() -> dict[str, tuple[tuple[str, str | None, bool], ...]]:
    """probes/syscalls.py's table of path arguments."""
    return PATH_BASES


def socket_fd(pid: int, fd: int) -> bool | None:
    """Whether a live process's fd is a socket, from /proc (None when it cannot tell)."""
    link = _readlink(f"/proc/{pid}/fd/{fd}")
    return None if link is None else link.startswith("socket:")


def unix_socket_fd(pid: int, fd: int) -> bool | None:
    """Whether a live process's fd is a unix socket (its inode is in the process's
    network namespace's /proc/<pid>/net/unix); None when it cannot tell."""
    link = _readlink(f"/proc/{pid}/fd/{fd}")
    if link is None or not link.startswith("socket:["):
        return None
    inode = link[8:-1].encode()
    try:
        with open(f"/proc/{pid}/net/unix", "rb") as f:
            next(f, None)  # header
            for line in f:
                fields = line.split()
                if len(fields) >= 7 and fields[6] == inode:
                    return True
    except OSError:
        return None
    return False


_PROC_PID = re.compile(r"/proc/\d+(?:/task/\d+)?(?=/|\Z)")


def kernel_proc_path(proc: Process, ev: OpenEvent) -> str:
    """The kernel's resolved path, except for a process's own /proc entries named through
    /proc/self or /proc/thread-self: the kernel names them in the pid numbering of the
    proc mount (a sandbox's own), the collector with the host pid, as for every other path
    (detectors compare them with the event's pid). Only when both name the same entry:
    `/proc/self/root/proc/1/mem` stays the kernel's /proc/1/mem."""
    path = ev.path
    if not ev.raw_path.startswith(("/proc/self", "/proc/thread-self")) \
            or not path.startswith("/proc/"):
        return path
    mine = resolve_path(proc, ev.tid, ev.dfd, ev.raw_path)
    k, u = _PROC_PID.match(path), _PROC_PID.match(mine or "")
    if mine and k and u and path[k.end():] == mine[u.end():]:
        return mine
    return path


def resolve_path(proc: Process, tid: int, dfd: int | None, raw: str) -> str | None:
    """The absolute form of a path a process passed, or None if it cannot be derived.

    Relative paths join the process's cwd (dfd None, i.e. AT_FDCWD) or the path of the
    directory fd it opened earlier in the session. The result is lexical (`..` is folded
    without following symlinks) and `/proc/self` and `/proc/thread-self` become the
    process's own host pid and thread id."""
    if not raw:
        return None
    if raw.startswith("/"):
        if "/." not in raw and "//" not in raw and not raw.startswith("/proc/"):
            return raw  # already absolute and normal: the common case, kept cheap
        full = raw
    else:
        if dfd is None:
            base = proc.cwd
        else:
            entry = proc.fds.get(dfd)
            base = entry[0] if entry else None
        if base is None or not base.startswith("/"):
            return None
        full = base.rstrip("/") + "/" + raw
    full = os.path.normpath(full)
    if full.startswith("//"):
        full = "/" + full.lstrip("/")
    if full == "/proc/self" or full.startswith("/proc/self/"):
        full = f"/proc/{proc.pid}{full[len('/proc/self'):]}"
    elif full == "/proc/thread-self" or full.startswith("/proc/thread-self/"):
        full = f"/proc/{proc.pid}/task/{tid}{full[len('/proc/thread-self'):]}"
    return full
