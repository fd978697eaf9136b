"""Whose /proc entry a process touched, judged in the reader's pid namespace.

The kernel names the target of a successful open of a procfs file itself
(OpenEvent.proc_pid / proc_tgid: the host-global ids, from the inode's struct pid), so
/proc/self, /proc/thread-self, dirfd-relative opens, a pid namespace's own numbers and
/proc/self/root/proc/... all name the right process. Other path calls (readlink, chdir,
stat, execve of /proc/N/exe) and failed opens carry only the number in the path, in the
reader's pid namespace: it is translated here.

Translation (`ProcNs`, kept in a detector's session state): each process's pid namespace
inode comes from its exec event (`ns["pid"]`, read by the collector at exec) and is
inherited at fork; a fork with CLONE_NEWPID puts the child in a namespace made by the
session. The session's outer namespace is its root's. A reader in a pid namespace that
the session made sees only what the session started there (everything in a pid namespace
made by the session is the session's), so any /proc/N it names is inside, /proc/1
included (bubblewrap's --unshare-pid: /proc/1 is the sandbox's first process). A reader in
the outer namespace names pids in that numbering: fork events map (outer ns pid ->
host pid) where the two differ (a session attached inside a container), otherwise the
number is the host pid.

Entries: what ps, top, pgrep and htop read (stat, status, cmdline, comm, statm, io, ...,
the /proc/<pid> and task directories) is `LISTING`: not judged. `SENSITIVE` are the ways
into another process's memory, files, environment and roots.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from collector.events import (
    Event,
    ExecEvent,
    ForkEvent,
    OpenEvent,
    SessionEvent,
    SyscallEvent,
)
from detectors.base import Context

CLONE_NEWPID = 0x20000000
PID_MAX_LIMIT = 1 << 22  # include/linux/threads.h: no pid reaches it
_PROC = re.compile(r"/proc/(\d+)(?:/task/(\d+))?(?:/([^/]+))?(/.*)?\Z")

# Entries that give another process's memory, open files, roots, environment or
# execution state. Everything else under /proc/<pid> is what process listers read.
SENSITIVE = frozenset({
    "environ", "mem", "fd", "fdinfo", "root", "cwd", "map_files", "pagemap", "syscall",
    "stack", "auxv", "exe", "maps", "smaps", "smaps_rollup", "numa_maps", "ns",
})
# The entries the kernel denies for agentwatch's own pids (monitor_tamper's kernel half):
# SENSITIVE but `environ` (procps 4's ps opens every process's environ, without showing
# it: the kernel cannot tell `ps aux` from `cat`; user space judges it) and `ns`
# (namespace_escape's)
KERNEL_MONITOR_ENTRIES = tuple(sorted(SENSITIVE - {"environ", "ns"}))
# Directory entries whose listing shows numbers only (fd numbers, mapped ranges): a tree
# walk's read-only directory open of one is not judged (what is below them still is)
LISTABLE = frozenset({"fd", "fdinfo", "map_files", "ns"})
O_DIRECTORY = 0o200000
WALK_MEMORY = 100_000  # directory paths remembered per session for `walked`
_NOT_LISTING = 0o3 | 0o100 | 0o1000  # O_ACCMODE, O_CREAT, O_TRUNC
# Calls that only read a /proc entry's metadata or link text (ls -l, readlink of exe/cwd,
# as htop and ps -f do): the entry named exactly, nothing through it
METADATA_CALLS = frozenset({"readlink", "readlinkat", "stat", "lstat", "newfstatat", "statx",
                            "access", "faccessat", "faccessat2", "getxattr", "lgetxattr"})


@dataclass(frozen=True)
class ProcTarget:
    number: int          # N of /proc/N/... as the reader wrote it (its namespace's)
    entry: str           # the entry below /proc/N (or task/T): "" for the directory
    rest: str            # what follows the entry ("/3" of fd/3), "" if nothing
    host_pid: int | None  # the target's host-global process id, None if not known
    exact: bool          # named by the kernel (the open's inode), not translated
    inside_ns: bool      # the reader is in a pid namespace the session made
    path: str


class ProcNs:
    """The per-session translation state (see the module docstring), in a detector's
    state dict: feed every event to `see`, then ask `target`."""

    def __init__(self, state: dict[str, Any]) -> None:
        ns = state.get("pidns")  # (get, not setdefault: no new dict per event)
        if ns is None:
            ns = state["pidns"] = {}
        outer = state.get("outer_map")
        if outer is None:
            outer = state["outer_map"] = {}
        self.ns: dict[int, Any] = ns          # host pid -> ns | "made"
        self.outer: dict[int, int] = outer    # outer ns pid -> host
        self.state = state

    def see(self, ctx: Context, ev: Event) -> None:
        if len(self.ns) > 65536:
            self.ns.clear()
            self.outer.clear()
        root = ctx.session.root_pid if ctx.session else None
        if isinstance(ev, SessionEvent) and ev.phase == "start" and ev.ns and ev.ns.get("pid"):
            self.state["root_ns"] = ev.ns["pid"]  # the root's at the start: the outer one
        elif isinstance(ev, ExecEvent) and ev.ns and ev.ns.get("pid"):
            if ev.pid == root and "root_ns" not in self.state:
                self.state["root_ns"] = ev.ns["pid"]
            if self.ns.get(ev.pid) != "made":
                self.ns[ev.pid] = ev.ns["pid"]
        elif isinstance(ev, ForkEvent) and ev.ret > 0 and not ev.thread:
            mine = self.ns.get(ev.pid)
            made = mine == "made" or (mine is not None and "root_ns" in self.state
                                      and mine != self.state["root_ns"])
            new = ev.clone_flags & CLONE_NEWPID or ev.pid in self.state.get("unshared_pid", ())
            self.ns[ev.child_pid] = "made" if (made or new) else mine
            if not made and ev.ret != ev.child_pid:
                self.outer[ev.ret] = ev.child_pid
        elif isinstance(ev, SyscallEvent) and ev.syscall == "unshare" and ev.ret == 0:
            flags = ev.args.get("flags") or []
            if "CLONE_NEWPID" in flags or (isinstance(flags, int) and flags & CLONE_NEWPID):
                self.state.setdefault("unshared_pid", set()).add(ev.pid)

    def inside_ns(self, pid: int) -> bool:
        """The process is in a pid namespace the session made."""
        mine = self.ns.get(pid)
        if mine == "made":
            return True
        root_ns = self.state.get("root_ns")
        return mine is not None and root_ns is not None and mine != root_ns

    def target(self, ev: Event, path: str) -> ProcTarget | None:
        m = _PROC.match(path)
        if not m:
            return None
        number = int(m.group(1)) if len(m.group(1)) <= 8 else PID_MAX_LIMIT
        if number >= PID_MAX_LIMIT:
            return None  # no process has that number (the kernel's bound, 2^22)
        entry = m.group(3) or ""
        if m.group(2) is None and entry == "task":
            entry = ""  # /proc/N/task: the threads' listing
        rest = m.group(4) or ""
        inside = self.inside_ns(ev.pid)
        if isinstance(ev, OpenEvent) and ev.proc_pid and path == ev.path and ev.resolved:
            host = ev.proc_tgid or ev.proc_pid
            return ProcTarget(number, entry, rest, host, True, inside, path)
        if inside:
            return ProcTarget(number, entry, rest, None, False, True, path)
        host = self.outer.get(number, number)
        return ProcTarget(number, entry, rest, host, False, False, path)


def metadata_only(ev: Event, t: ProcTarget) -> bool:
    """A metadata call (stat, readlink ...) of the entry itself, nothing below it."""
    return isinstance(ev, SyscallEvent) and ev.syscall in METADATA_CALLS and not t.rest


def is_outside(t: ProcTarget, session_hosts: set[int], ev: Event) -> bool:
    """The target is a process outside the session (unknown counts as outside, except in
    a pid namespace the session made)."""
    if t.inside_ns and not t.exact:
        return False
    if t.host_pid is None:
        return True
    return t.host_pid not in session_hosts and t.host_pid not in (ev.pid, ev.tid)


def session_hosts(ctx: Context, ev: Event) -> set[int]:
    """Host pids seen in this session: events' pids and tids, forks' children, the root.
    The engine keeps one such set per session for every detector (`ctx.hosts`, updated
    from every event of the session before any detector runs); without an engine (a
    Context built by hand) the detector's state keeps its own, from the events it sees.
    Either way it is also `ctx.state["hosts"]` (stdio.outside_unix reads it there)."""
    if ctx.hosts is not None:
        ctx.state["hosts"] = ctx.hosts
        return ctx.hosts
    hosts: set[int] = ctx.state.setdefault("hosts", set())
    if len(hosts) < 65536:
        hosts.update((ev.pid, ev.tid))
        if isinstance(ev, ForkEvent) and ev.ret > 0:
            hosts.add(ev.child_pid)
        if ctx.session:
            hosts.add(ctx.session.root_pid)
    return hosts


# procps `ps` options after which the next word is a value (a format list, a pid ...)
_PS_VALUE_OPTS = frozenset({
    "-o", "o", "-O", "O", "--format", "-p", "p", "--pid", "-q", "q", "--quick-pid", "-u",
    "U", "-U", "--user", "--User", "-C", "-g", "-G", "--group", "--Group", "-t", "t",
    "--tty", "-s", "--sid", "--ppid", "--sort", "k", "-k", "--cols", "--columns",
    "--width", "--lines", "--rows", "-D",
})
# short options that take the next word as their value when last in a dash cluster (-eo)
_PS_VALUE_SHORT = frozenset("oOpqugGtsUCkD")
PS_EXES = ("/usr/bin/ps", "/bin/ps")


def ps_listing(ctx: Context) -> bool:
    """The acting process is procps `ps` (its executable as the kernel ran it) asked for
    no environment: procps 4 opens every process's /proc/<pid>/environ whatever it was
    asked, and shows it only with the BSD `e` option (`ps e`, `ps auxe`, `ps eww`)."""
    proc = ctx.proc
    if proc is None or proc.exe not in PS_EXES:
        return False
    skip = False
    for word in proc.argv[1:]:
        if skip:
            skip = False
            continue
        if word in _PS_VALUE_OPTS or (word.startswith("-") and not word.startswith("--")
                                      and word[-1] in _PS_VALUE_SHORT):
            skip = True  # `-o FORMAT`, `-eo FORMAT`, `-p PID` ...: the next word is a value
            continue
        if word.startswith("--"):
            continue
        if not word.startswith("-") and "e" in word:
            return False  # BSD options with `e`: show the environment
        if word.startswith(("-o", "-O", "o", "O")) and "env" in word:
            return False
    return True


def is_dir_read(ev: OpenEvent) -> bool:
    """A read-only open of a directory (the kernel's file type; O_DIRECTORY when the open
    failed), with no write intent."""
    if ev.flags & _NOT_LISTING:
        return False
    return ev.file_type == "dir" or (ev.file_type is None and bool(ev.flags & O_DIRECTORY))


def walked(state: dict[str, Any], ev: OpenEvent) -> bool:
    """A read-only directory open made by a tree walk: relative to a directory fd (find,
    du, grep -r), or a directory whose parent this process opened as a directory before
    (ls -R, rg, os.walk). Every read-only directory open is remembered for the next, in
    bounded memory per process."""
    if not is_dir_read(ev):
        return False
    dirs: dict[int, set[str]] | None = state.get("dirs")
    if dirs is None:
        dirs = state["dirs"] = {}
    if state.get("dirs_n", 0) > WALK_MEMORY:  # a bound for the session, not per process
        dirs.clear()
        state["dirs_n"] = 0
    mine = dirs.get(ev.pid)
    if mine is None:
        mine = dirs[ev.pid] = set()
    path = ev.path.rstrip("/") or "/"
    cut = path.rfind("/")
    parent = (path[:cut] if cut >= 0 else path) or "/"  # path.rsplit("/", 1)[0] or "/"
    walk = (ev.dfd is not None and not ev.raw_path.startswith("/")) or parent in mine
    if path not in mine:
        mine.add(path)
        state["dirs_n"] = state.get("dirs_n", 0) + 1
    return walk
