"""Detectors about processes: other processes' /proc entries, environment snooping,
fileless execution, fork bombs."""

from __future__ import annotations

import posixpath
import re
from collections import deque
from collections.abc import Iterable
from typing import Any

from collector.events import Event, ExecEvent, ExitEvent, ForkEvent, OpenEvent, SyscallEvent
from detectors.base import (
    SESSION_KINDS,
    Context,
    Detector,
    DetectorSpec,
    Finding,
    KernelHalf,
    ReadInterest,
    path_matches,
    register,
)
from detectors.catalog.common import after_setup, is_read_open, result_of
from detectors.catalog.fileops import (
    base_fields,
    touched_paths,
    tree_patterns,
    workspace,
    written_paths,
)
from detectors.catalog.proctarget import (
    LISTABLE,
    ProcNs,
    is_outside,
    metadata_only,
    ps_listing,
    session_hosts,
    walked,
)
from detectors.openroute import OpenInterest

AT_EMPTY_PATH = 0x1000
_FD_PATH = re.compile(r"/(?:proc/(?:\d+|self|thread-self)(?:/task/\d+)?|dev)/fd/\d+\Z")


# ---------------------------------------------------------------------------- host_proc_access
def _proc_paths(ev: Event) -> list[str]:
    """The paths to judge: the kernel's own when it named the /proc file's process (a
    successful open: `proc_pid`), else every path the event names."""
    if isinstance(ev, OpenEvent) and ev.proc_pid and ev.resolved:
        return [ev.path]
    return touched_paths(ev)


@register
class HostProcAccess(Detector):
    """An open, path syscall (chdir, readlink ...) or exec through `/proc/<N>/<entry>` for an
    `entries` entry (root, cwd, exe, fd, fdinfo, map_files, maps, pagemap, syscall, stack,
    auxv: a way into another process's file system, open files or memory layout) of a
    process outside the session, and through the host's pid 1 for `pid1_entries`.

    Whose entry it is, is the kernel's answer for a successful open (the inode's process,
    in host ids: /proc/self, /proc/thread-self, dirfd-relative names, a pid namespace's
    numbers and /proc/self/root/proc/... all name the right process); for other calls the
    number is read in the caller's pid namespace (detectors/catalog/proctarget.py): in a
    pid namespace the session made (bubblewrap's --unshare-pid), everything visible is
    the session's own, /proc/1 included, so nothing there matches; in the session's outer
    namespace an unknown number counts as outside.

    Deliberately not flagged: what ps, top, pgrep, htop and pkill read (stat, status,
    cmdline, comm, statm, io, wchan, sched ..., the /proc and /proc/<pid>/task listings):
    process listing is everyday work and shows nothing a process could not learn from
    ps; a metadata-only call on an entry itself (stat, lstat, readlink of exe or cwd, as
    ls -l, ps -f and htop do), which reaches nothing through it; a tree walk's listing
    of fd/, fdinfo/ or map_files/ (find / and du / open them as directories, relative to
    the parent's fd or after listing the parent: fd numbers only; an explicit
    `ls /proc/N/fd` and anything below them are still flagged); the session's own
    processes; the host init's environ opened by procps `ps` asked for no environment
    (see `environ_snoop`). `environ`, `mem` and `ns` are left to `environ_snoop`,
    `process_injection` and `namespace_escape`."""

    spec = DetectorSpec(
        id="host_proc_access",
        kinds=SESSION_KINDS,  # session_hosts: every event's pid and tid
        reads=ReadInterest(globs=("/proc/**",)),
        title="Another Process's Proc Entries Accessed",
        description="/proc/<pid>/root, cwd, exe, fd, maps ... of a process outside the "
                    "session, the host's /proc/1/...",
        severity="high",
        action="kill",
        mitre=("T1611", "T1083"),
        not_flagged=(
            "what ps, top, pgrep and htop read (stat, status, cmdline, comm, statm, io, the /proc"
            " and task listings): process listing is everyday work",
            "metadata-only calls on an entry (stat, readlink of exe or cwd, as ls -l and ps -f "
            "make), and a tree walk's listing of fd/, fdinfo/, map_files/",
            "everything inside a pid namespace the session made (bubblewrap --unshare-pid): all "
            "it can see is its own, /proc/1 included",
        ),
        output="{comm} accessed {path} of pid {target_pid} outside the session "
               "({syscall}, {result})",
        params={
            "entries": ["root", "cwd", "exe", "fd", "fdinfo", "map_files", "maps", "smaps",
                        "pagemap", "syscall", "stack", "auxv"],
            "pid1_entries": ["root", "cwd", "exe", "fd", "fdinfo", "map_files", "environ",
                             "maps", "smaps", "pagemap", "syscall", "stack", "auxv"],
        },
    )

    def open_interest(self, params: dict[str, Any]) -> OpenInterest:
        # /proc targets; walked() remembers every directory read
        return OpenInterest(dir_reads=True, proc=True)

    def check(self, ctx: Context, ev: Event) -> Iterable[Finding]:
        hosts = session_hosts(ctx, ev)
        pns = ProcNs(ctx.state)
        pns.see(ctx, ev)
        if not after_setup(ev) or not isinstance(ev, (OpenEvent, SyscallEvent, ExecEvent)):
            return
        p = ctx.params
        walk = isinstance(ev, OpenEvent) and walked(ctx.state, ev)
        for path in _proc_paths(ev):
            t = pns.target(ev, path)
            if t is not None and walk and t.entry in LISTABLE and not t.rest:
                continue  # find / lists /proc/<pid>/fd on its way: fd numbers only
            if t is None or not t.entry or metadata_only(ev, t) or \
                    (t.entry == "environ" and ps_listing(ctx)):
                continue
            host_init = t.host_pid == 1 and (t.exact or not t.inside_ns)
            hit = (host_init and t.entry in p["pid1_entries"]) or \
                (t.entry in p["entries"] and is_outside(t, hosts, ev))
            if hit:
                fields = base_fields(ev, path)
                fields.update(target_pid=t.host_pid if t.host_pid is not None else t.number,
                              entry=t.entry)
                yield Finding(key=f"{fields['target_pid']}/{t.entry}", fields=fields)
                return


# ---------------------------------------------------------------------------- environ_snoop
@register
class EnvironSnoop(Detector):
    """A read (or refused attempt) of `/proc/<N>/environ` of a process outside the session
    (whose it is: as `host_proc_access` decides it, the kernel's answer for a successful
    open): other processes' environments hold tokens and keys. `include_session = true`
    also reports reads of the session's other processes.

    Deliberately not flagged: a process's own environment (/proc/self/environ under any
    name); the session's processes (by default); procps `ps` run without an option that
    shows environments (its executable as the kernel ran it, /usr/bin/ps, and no BSD `e`
    option): procps 4 opens every process's environ for `ps aux` and `ps -ef` without
    printing it; `ps e`, `ps auxe`, `ps eww` print it and are flagged."""

    spec = DetectorSpec(
        id="environ_snoop",
        kinds=SESSION_KINDS,  # session_hosts: every event's pid and tid
        reads=ReadInterest(globs=("/proc/**",)),
        title="Another Process's Environment Read",
        description="reading /proc/<pid>/environ of another process",
        severity="medium",
        action="alert",
        mitre=("T1552", "T1057"),
        not_flagged=(
            "a process's own environment and, by default, the session's other processes "
            "(`include_session`)",
            "procps `ps` without an option that prints environments: procps 4 opens every "
            "process's environ for `ps aux` without showing it",
        ),
        output="{comm} read the environment of pid {target_pid} ({result})",
        params={"include_session": False},
    )

    def open_interest(self, params: dict[str, Any]) -> OpenInterest:
        # /proc/<pid>/environ
        return OpenInterest(proc=True)

    def check(self, ctx: Context, ev: Event) -> Iterable[Finding]:
        hosts = session_hosts(ctx, ev)
        pns = ProcNs(ctx.state)
        pns.see(ctx, ev)
        if not isinstance(ev, OpenEvent) or not after_setup(ev) or not is_read_open(ev):
            return
        t = pns.target(ev, ev.path)
        if t is None or t.entry != "environ":
            return
        if t.host_pid in (ev.pid, ev.tid) or (t.exact is False and t.number in (ev.pid, ev.tid)
                                              and not t.inside_ns):
            return
        if not is_outside(t, hosts, ev) and not ctx.params["include_session"]:
            return
        if ps_listing(ctx):
            return
        fields = base_fields(ev, ev.path)
        fields["target_pid"] = t.host_pid if t.host_pid is not None else t.number
        yield Finding(key=str(fields["target_pid"]), fields=fields)


# ---------------------------------------------------------------------------- fileless_exec
@register
class FilelessExec(Detector):
    """An exec of code that is not an ordinary file: a memfd (`exe` is `/memfd:...`, or the
    filename is `/proc/<pid>/fd/N` or `/dev/fd/N`, or `execveat` with AT_EMPTY_PATH: an
    fexecve), a file under `exec_dirs` (/dev/shm), or a file this session itself wrote
    outside the workspace at most `written_window` seconds before (kept in state:
    write-intent opens, creat, and the new name of a rename/link of such a file) except
    under `written_exclude` (build and test directories whose binaries are run as a matter
    of course). Failed exec attempts included. An agent that writes a script to /tmp and
    runs it directly (not `sh /tmp/x.sh`) is flagged: add its directory to
    `written_exclude` or an exception if that is expected.
    The dynamic loader (ld-linux*.so*, ld.so, by resolved exe) run as a program is judged
    by the program it is told to run and the files its `--preload` and `--audit` options
    load (its other options and their values skipped): a memfd, `/proc/*/fd/*`,
    `/dev/fd/*`, `exec_dirs`, a deleted file, or a file the session just wrote."""

    spec = DetectorSpec(
        id="fileless_exec",
        kinds=frozenset({"session", "syscall", "fork", "exec", "open"}),  # session: workspace()
        reads=ReadInterest(),
        title="Fileless Or Dropped Binary Executed",
        description="memfd_create then exec, exec from /dev/shm, exec of a file the session "
                    "wrote outside the workspace",
        severity="high",
        action="kill",
        mitre=("T1620", "T1027.011", "T1105"),
        output="{comm} executed {path}: {how} ({result})",
        params={
            "exec_dirs": ["/dev/shm/**", "/run/shm/**"],
            "written_exclude": ["/tmp/go-build*/**", "/tmp/pip-*/**", "/tmp/pytest-of-*/**",
                                "~/.cache/**"],
            "written_window": 600.0,
            "max_written": 4096,
        },
        not_flagged=(
            "the dynamic loader run on an ordinary file (`ld.so /usr/bin/true`, "
            "`ld.so --list`, as ldd and build tools do), and the loader's own "
            "`--library-path`/`--argv0` values and the program's arguments",
            "(not seen) a process mapping a memfd it loads itself (dlopen of "
            "/proc/self/fd/N is no exec); mmap with PROT_EXEC is not traced",
        ),
    )

    def open_interest(self, params: dict[str, Any]) -> OpenInterest:
        # written_paths: write-intent opens
        return OpenInterest(writes=True)

    def check(self, ctx: Context, ev: Event) -> Iterable[Finding]:
        ws = workspace(ctx, ev)
        if not after_setup(ev):
            return
        p = ctx.params
        state = ctx.state
        written: dict[str, int] = state.setdefault("written", {})
        if isinstance(ev, SyscallEvent) and ev.syscall == "memfd_create" and ev.ret >= 0:
            memfds: dict[int, str] = state.setdefault("memfds", {})
            memfds[ev.pid] = str(ev.args.get("name"))
            return
        if isinstance(ev, ForkEvent) and ev.ret > 0 and not ev.thread:
            inherited = state.get("memfds", {}).get(ev.pid)
            if inherited is not None:  # the child inherits the memfd (fork, then fexecve)
                state["memfds"][ev.child_pid] = inherited
            return
        if isinstance(ev, SyscallEvent) and ev.syscall.startswith(("rename", "link")):
            if ev.path in written and ev.path2:
                written[ev.path2] = ev.ts
            return
        if not isinstance(ev, ExecEvent):
            for path in written_paths(ev):
                if (isinstance(ev, OpenEvent) or getattr(ev, "syscall", "") == "creat") \
                        and path.startswith("/") and not (ws and _under(path, ws)) \
                        and not path_matches(path, p["written_exclude"], ctx.homes):
                    written[path] = ev.ts
                    while len(written) > p["max_written"]:
                        del written[next(iter(written))]
            return
        state.pop("loader_target", None)
        how = self._how(ctx, ev, written)
        if how is None:
            return
        path = _absolute(ctx, ev, ev.exe) if ev.exe else _absolute(ctx, ev, ev.filename)
        if state.get("loader_target"):
            path = state.pop("loader_target")  # what the loader was told to run
        fields: dict[str, Any] = {"path": path, "filename": ev.filename, "how": how,
                                  "argv": " ".join(ev.argv), "result": result_of(ev),
                                  "comm": ev.comm}
        yield Finding(key=path, fields=fields)

    def _how(self, ctx: Context, ev: ExecEvent, written: dict[str, int]) -> str | None:
        memfd = ctx.state.get("memfds", {}).get(ev.pid)
        if ev.exe and ev.exe.startswith("/memfd:"):
            return "memfd exec"
        if (ev.dfd is not None and ev.at_flags & AT_EMPTY_PATH and not ev.filename) or \
                _FD_PATH.match(ev.filename):
            if memfd is None:
                return "fd exec (fexecve)"
            return f"fd exec after memfd_create ({memfd})"
        loader = _loader_how(ctx, ev, written)
        if loader is not None:
            ctx.state["loader_target"] = loader[1]
            return loader[0]
        dirs = tree_patterns(ctx.params["exec_dirs"])
        paths = _exec_paths(ctx, ev)
        for path in paths:
            if path_matches(path, dirs, ctx.homes):
                return "exec from " + path.rsplit("/", 1)[0]
        window = int(ctx.params["written_window"] * 1e9)
        for path in paths:
            if path in written and ev.ts - written[path] <= window:
                return "exec of a file the session wrote outside the workspace"
        return None


# The dynamic loader run as a program (`ld.so [OPTIONS] PROGRAM [ARGS]`): its file names
_LOADER = re.compile(r"(?:ld-linux[\w.-]*\.so[\d.]*|ld\.so[\d.]*|ld64\.so[\d.]*|"
                     r"ld-[\w.-]*\.so[\d.]*)\Z")
# ld.so's options that take a value (glibc rtld.c); the rest take none
_LOADER_VALUE_OPTS = frozenset({"--library-path", "--inhibit-rpath", "--audit", "--preload",
                                "--argv0", "--glibc-hwcaps-prepend", "--glibc-hwcaps-mask"})
_LOADER_FILE_OPTS = frozenset({"--audit", "--preload"})  # their values are loaded


def _loader_targets(ev: ExecEvent) -> list[str] | None:
    """For an exec of the dynamic loader (by resolved exe, else by filename/argv[0]): the
    program it is told to run and the files its options load (`--preload`, `--audit`);
    None when this is not the loader."""
    names = [n.rsplit("/", 1)[-1] for n in (ev.exe, ev.filename) if n]
    if not ev.exe and ev.argv:
        names.append(ev.argv[0].rsplit("/", 1)[-1])
    if not any(_LOADER.match(n) for n in names):
        return None
    out: list[str] = []
    args = ev.argv[1:]
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--":
            i += 1
            break
        if not a.startswith("--"):
            break
        name, eq, value = a.partition("=")
        if name in _LOADER_VALUE_OPTS:
            if not eq and i + 1 < len(args):
                value = args[i + 1]
                i += 1
            if name in _LOADER_FILE_OPTS:
                out.extend(v for v in value.replace(" ", ":").split(":") if v)
        i += 1
    if i < len(args):
        out.append(args[i])
    return out


def _loader_how(ctx: Context, ev: ExecEvent,
                written: dict[str, int]) -> tuple[str, str] | None:
    """The loader told to run (or preload) a memfd, an fd path, a file under `exec_dirs`,
    a deleted file, or a file the session just wrote outside the workspace."""
    targets = _loader_targets(ev)
    if not targets:
        return None
    cwd = ev.cwd or (ctx.proc.cwd if ctx.proc is not None else None)
    dirs = tree_patterns(ctx.params["exec_dirs"])
    window = int(ctx.params["written_window"] * 1e9)
    for t in targets:
        full = t if t.startswith("/") or not cwd else posixpath.normpath(
            posixpath.join(cwd, t))
        if t.startswith("/memfd:") or "memfd:" in t:
            return f"the dynamic loader run on a memfd ({t})", full
        if _FD_PATH.match(full):
            return f"the dynamic loader run on an fd path ({t})", full
        if full.endswith(" (deleted)"):
            return f"the dynamic loader run on a deleted file ({t})", full
        if path_matches(full, dirs):
            return f"the dynamic loader run on {full}", full
        if full in written and ev.ts - written[full] <= window:
            return f"the dynamic loader run on a file the session wrote ({full})", full
    return None


def _absolute(ctx: Context, ev: ExecEvent, path: str) -> str:
    """A relative exec filename (`./x`, and `exe` when /proc/<pid>/exe could not be read:
    the program had already exited) joined to the process's working directory."""
    if not path or path.startswith("/") or ev.dfd is not None:
        return path
    cwd = ev.cwd or (ctx.proc.cwd if ctx.proc is not None else None)
    if not cwd or not cwd.startswith("/"):
        return path
    return posixpath.normpath(posixpath.join(cwd, path))


def _exec_paths(ctx: Context, ev: ExecEvent) -> list[str]:
    out: list[str] = []
    for p in touched_paths(ev):
        full = _absolute(ctx, ev, p)
        if full not in out:
            out.append(full)
    return out


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


# ---------------------------------------------------------------------------- fork_bomb
@register
class ForkBomb(Detector):
    """More than `max_forks` process creations (failed ones included: a bomb hits
    EAGAIN) in `rate_window` seconds, or more than `max_live` live processes in the session
    (forks minus exits). Threads are not counted unless `count_threads`. The defaults are
    far above a `make -j` build or a burst of a few hundred short processes; each finding
    is raised once per crossing of its threshold."""

    spec = DetectorSpec(
        id="fork_bomb",
        kinds=frozenset({"fork", "exit"}),
        title="Fork Bomb",
        description="process creation rate or live process count of a session above limits",
        severity="high",
        action="kill",
        mitre=("T1499.001",),
        not_flagged=(
            "threads (unless `count_threads`): runtimes start dozens of worker threads",
            "bursts below `max_forks` per `rate_window` and sessions below `max_live` live "
            "processes: `make -j` and test runners make hundreds of short processes",
        ),
        output="{comm}: {what}",
        params={"max_forks": 2000, "rate_window": 5.0, "max_live": 1500,
                "count_threads": False},
        # the live count only (the kernel counts thread groups); the rate stays user space's
        kernel=KernelHalf(reason="AW_WHY_FORKBOMB", enable="AW_EN_FORKBOMB",
                          live_limit="max_live", needs_param="max_live",
                          unless_param="count_threads"),
    )

    def check(self, ctx: Context, ev: Event) -> Iterable[Finding]:
        p = ctx.params
        st = ctx.state
        live: set[int] = st.setdefault("live", set())
        early: set[int] = st.setdefault("early_exits", set())
        if isinstance(ev, ExitEvent):
            if ev.pid in live:
                live.discard(ev.pid)
            elif len(early) < 65536:
                early.add(ev.pid)  # its exit arrived before its parent's fork event
            if len(live) <= p["max_live"]:
                st["live_over"] = False
            return
        if not isinstance(ev, ForkEvent) or (ev.thread and not p["count_threads"]):
            return
        if ev.ret > 0 and not ev.thread:
            if ev.child_pid in early:
                early.discard(ev.child_pid)
            else:
                live.add(ev.child_pid)
        times: deque[int] = st.setdefault("times", deque())
        times.append(ev.ts)
        window = int(p["rate_window"] * 1e9)
        while times and ev.ts - times[0] > window:
            times.popleft()
        if len(times) > p["max_forks"]:
            if not st.get("rate_over"):
                st["rate_over"] = True
                yield Finding(key="rate", fields={
                    "what": f"{len(times)} forks in {p['rate_window']}s",
                    "forks": len(times), "window": p["rate_window"], "live": len(live),
                    "comm": ev.comm, "result": result_of(ev)})
        else:
            st["rate_over"] = False
        if len(live) > p["max_live"] and not st.get("live_over"):
            st["live_over"] = True
            yield Finding(key="live", fields={
                "what": f"{len(live)} live processes", "live": len(live),
                "forks": len(times), "window": p["rate_window"], "comm": ev.comm,
                "result": result_of(ev)})
