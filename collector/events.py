"""The event model: the only place where an event's shape is defined.

Every event is a small typed record; `to_json()` gives one JSON Lines line. Each line has
`v` (schema version), `ts` (nanoseconds since the Unix epoch), `kind`, `session` (16 hex
digits, or null for collector-wide events) and `pid` (global thread group id). Strings
that came from the kernel (paths, argv, comm) are decoded as UTF-8; bytes that are not
UTF-8 appear as `\\xNN` escapes, so every line stays valid JSON whatever the sandbox
passed. docs/events.md shows a real example of each kind.
"""

from __future__ import annotations

import errno as _errno
from dataclasses import dataclass, field
from typing import Any

import orjson

SCHEMA_VERSION = 1


def errno_name(ret: int) -> str | None:
    """`-111` -> `"ECONNREFUSED"`; None for a non-negative return."""
    if ret >= 0:
        return None
    return _errno.errorcode.get(-ret, f"E{-ret}")


def one_line(s: str) -> str:
    """One terminal line: control characters (newlines, escapes) made visible."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in s)


def text(raw: bytes) -> str:
    """Kernel bytes to str, never failing: invalid UTF-8 becomes \\xNN escapes."""
    return raw.decode("utf-8", "backslashreplace")


@dataclass(slots=True, kw_only=True)
class Event:
    v: int = SCHEMA_VERSION
    ts: int
    kind: str = "event"
    session: str | None
    pid: int
    tid: int = 0
    ppid: int = 0
    uid: int = 0
    gid: int = 0
    comm: str = ""
    cgroup: int = 0
    setup: bool = False            # the process was building a sandbox (launcher setup)
    nested_launcher: bool = False  # a launcher started by a sandboxed payload (untrusted)
    # the detector whose in-kernel rule killed the process at this call's entry (enforce
    # mode): the call was not waited for, so `ret` is 0 and says nothing
    kernel_kill: str | None = None
    kernel_deny: bool = False      # a cgroup egress program refused this call (EPERM)
    compat: bool = False           # made through a 32-bit door (ia32 int 0x80/sysenter, x32)

    def to_json(self) -> bytes:
        return orjson.dumps(self)


@dataclass(slots=True, kw_only=True)
class ExecEvent(Event):
    kind: str = "exec"
    ret: int
    error: str | None = None
    filename: str
    argv: list[str]
    argv_truncated: bool = False  # entries or bytes past the probe's bounds were not copied
    dfd: int | None = None        # execveat's dirfd; None for execve
    at_flags: int = 0
    fault: bool = False           # the filename or argv could not be read from user memory
    exe: str | None = None        # /proc/<pid>/exe right after the exec (best effort)
    cwd: str | None = None        # the process's working directory (best effort)
    ns: dict[str, int] | None = None  # namespace inode numbers: pid, mnt, net, user
    # fds 0, 1, 2 of the new image, read from its fd table by the kernel at the exec
    # (collector/decode/proc.py stdio_entry): type socket/pipe/fifo/tty/chr/file/dir/none
    stdio: list[dict[str, Any]] | None = None


@dataclass(slots=True, kw_only=True)
class ForkEvent(Event):
    kind: str = "fork"
    ret: int                       # in the parent: the child's pid in the parent's pid ns
    error: str | None = None
    child_pid: int                 # global pid (a thread id when thread is true)
    clone_flags: int = 0
    thread: bool = False


@dataclass(slots=True, kw_only=True)
class ExitEvent(Event):
    kind: str = "exit"
    exit_code: int | None = None   # exit()/exit_group() argument, & 0xff as a parent sees it
    signal: int | None = None      # the fatal signal, when a signal ended it
    core: bool = False             # the signal's default action dumps core


@dataclass(slots=True, kw_only=True)
class OpenEvent(Event):
    kind: str = "open"
    ret: int                       # the new fd, or -errno
    error: str | None = None
    syscall: str                   # open | openat | openat2
    # the file the kernel opened (`resolved` true), else the caller's string made
    # absolute where derivable (cwd, dirfd), else as passed
    path: str
    raw_path: str                  # exactly as the process passed it (read at entry)
    dfd: int | None = None         # None means AT_FDCWD
    flags: int
    flag_names: list[str] = field(default_factory=list)
    mode: int = 0
    resolve: int = 0               # openat2 RESOLVE_* bits
    fault: bool = False
    # the opened file as the kernel has it (successful opens; null otherwise)
    resolved: bool = False         # `path` is the kernel's: d_path's view for the caller
    dev: int | None = None         # the file's device, as os.stat().st_dev reports it
    ino: int | None = None         # its inode number
    file_type: str | None = None   # file | dir | symlink | char | block | fifo | socket
    file_mode: int | None = None   # its inode's mode (type and permission bits)
    # truncated, unreachable, disconnected, deleted, no_file, no_btf, fault
    resolve_flags: list[str] = field(default_factory=list)
    via: str = "syscall"           # "io_uring": an io_uring operation (see `io_uring`)
    io_uring: dict[str, Any] | None = None  # with via io_uring: op, sqe_flags, result, ...
    # a /proc file's process as the kernel has it (successful opens under a procfs):
    # `proc_pid` its host-global id (a thread id for task/<tid> entries), `proc_tgid` that
    # task's process; null for other files, /proc/meminfo and the like, or unresolved
    proc_pid: int | None = None
    proc_tgid: int | None = None


@dataclass(slots=True, kw_only=True)
class ConnectEvent(Event):
    kind: str = "connect"
    ret: int
    error: str | None = None
    fd: int
    family: str                    # AF_INET | AF_INET6 | AF_UNIX | AF_<n>
    address: str | None = None     # IP address, or the unix socket path (@name if abstract)
    port: int | None = None
    addrlen: int = 0
    via: str = "syscall"           # "io_uring": an io_uring operation (see `io_uring`)
    io_uring: dict[str, Any] | None = None  # with via io_uring: op, sqe_flags, result, ...
    # a connected unix socket: the peer's host pid as the kernel recorded it (the listener's
    # process), and whether it was then a process of this session
    peer_pid: int | None = None
    peer_in_session: bool | None = None


@dataclass(slots=True, kw_only=True)
class SyscallEvent(Event):
    """One syscall of the generic probe (probes/syscalls.py lists them), failed ones included."""

    kind: str = "syscall"
    ret: int
    error: str | None = None
    syscall: str                   # its name, e.g. "unlinkat", "mount", "sendto"
    args: dict[str, Any] = field(default_factory=dict)  # argument name -> decoded value
    path: str | None = None        # the first path argument: absolute where derivable
    path2: str | None = None       # the second (rename's newpath, mount's source, ...)
    # (`args` keeps every path exactly as passed; docs/events.md, "Paths")
    fault: bool = False            # user memory the probe had to read was unreadable
    family: str | None = None      # with a socket address: AF_INET | AF_INET6 | AF_UNIX ...
    address: str | None = None
    port: int | None = None
    dns_query: str | None = None   # the name a DNS query in a send asks for
    # refused before the syscall entry tracepoint (a sandbox's seccomp filter): seen at
    # exit only, arguments read from the saved registers, no socket address or payload
    refused_at_entry: bool = False
    # a call outside the probe's table, reported at its first use by the session (raw
    # arguments; later uses are counted in the kernel, not reported)
    first_use: bool = False
    # refused by a seccomp filter that kills (SIGSYS) rather than fails the call: seen at
    # the signal's delivery, arguments from the registers as the process made the call
    seccomp_killed: bool = False
    via: str = "syscall"           # "io_uring": an io_uring operation (see `io_uring`)
    io_uring: dict[str, Any] | None = None  # with via io_uring: op, sqe_flags, result, ...


@dataclass(slots=True, kw_only=True)
class UringEvent(Event):
    """An io_uring operation that is not an open, connect or send (those become `open`,
    `connect` and `syscall` events with `via: "io_uring"`)."""

    kind: str = "io_uring"
    ret: int                       # the completion's result; 0 when `io_uring.result`
    error: str | None = None       #   says it is unknown
    op: str                        # IORING_OP_* without the prefix: READ, WRITE, ...
    fd: int | None = None          # the file it acts on (a registered index if fixed_file)
    len: int | None = None         # bytes asked for (READ, WRITE and their _FIXED forms)
    via: str = "io_uring"
    io_uring: dict[str, Any] | None = None


def uring_result_known(ev: Event) -> bool:
    """False for an io_uring op whose completion was not seen (its `ret` is 0, not the
    result): submitted with IOSQE_CQE_SKIP_SUCCESS, in-flight table full, or lost."""
    info = getattr(ev, "io_uring", None)
    return info is None or info.get("result") in ("complete", "prep_failed")


@dataclass(slots=True, kw_only=True)
class LossEvent(Event):
    """Events the kernel could not deliver since the previous loss event (deltas), and
    the totals since the collector started. A security tool must not drop silently."""

    kind: str = "loss"
    session: str | None = None
    pid: int = 0
    lost: dict[str, int]
    total: dict[str, int]


@dataclass(slots=True, kw_only=True)
class SessionEvent(Event):
    """A session starts or ends (written by the collector, not a probe)."""

    kind: str = "session"
    phase: str                      # start | end
    session_kind: str = "run"       # run | launcher | attach
    root_pid: int
    argv: list[str] = field(default_factory=list)
    ns: dict[str, int] | None = None  # on start: the root's namespace inode numbers
    cwd: str | None = None            # on start: the root's working directory (workspace)
    exit_status: int | None = None  # on end: the status `agentwatch run` exits with
    events: int | None = None       # on end: events of this session written
    lost: int | None = None         # on end: events lost (all sessions) while it ran
    # on end: the calls outside the probe's table it made (each reported at its first use,
    # a `first_use` syscall event), with how many times, as the kernel counted them
    other_syscalls: dict[str, int] | None = None
    # on start: the root's HOME (and a launcher's `--setenv HOME`), resolved too when a
    # symlink: what `~/` stands for in this session besides /root, /home/* and passwd's
    homes: list[str] | None = None
    # on end: opens the kernel counted instead of sending (the sum of its `summary`
    # events' counts, as the kernel's per-session counter has it)
    summarised: int | None = None


@dataclass(slots=True, kw_only=True)
class SummaryEvent(Event):
    """Opens the kernel counted instead of sending one event each (interest filtering,
    probes/include/aw_interest.h): read-only opens of regular files, and failed read-only
    opens, under a directory no enabled detector can use (a read-only
    system root, the session's workspace), whose names match no detector's glob. One per
    process and root, for the opens since its previous summary; the counts are the
    kernel's, so together they account for every open not sent."""

    kind: str = "summary"
    root: str                      # the directory the opens were below
    count: int                     # opens summarised: files + failed
    files: int = 0                 # successful opens of regular files
    failed: int = 0                # failed opens (caller's absolute path under `root`)
    first_ts: int = 0              # the first and last of them (epoch ns)
    last_ts: int = 0


@dataclass(slots=True, kw_only=True)
class AlertEvent(Event):
    """A detector's finding (detectors/): the contract other tools rely on.

    `action` says what was asked (`requested`: alert, freeze or kill, from the config),
    what was done (`taken`) and how it went (`result`). Repeats of one detector, session and
    key within the fold window are not re-alerted: the first is, and a `folded` alert with
    their `count` follows when the window closes."""

    kind: str = "alert"
    detector: str
    title: str = ""
    severity: str
    action: dict[str, Any]  # strings, and `pids` (a list) for a kill
    summary: str                     # one line, for a person
    key: str = ""                    # what repeats fold on
    count: int = 1                   # occurrences this alert stands for
    folded: bool = False             # a summary of repeats, not a first occurrence
    mitre: list[str] = field(default_factory=list)
    fields: dict[str, Any] = field(default_factory=dict)
    event: dict[str, Any] | None = None        # the triggering event, as written
    ancestry: list[dict[str, Any]] = field(default_factory=list)  # up to the session root


EVENT_TYPES: dict[str, type[Event]] = {
    cls.__dataclass_fields__["kind"].default: cls  # type: ignore[misc]
    for cls in (ExecEvent, ForkEvent, ExitEvent, OpenEvent, ConnectEvent, SyscallEvent,
                UringEvent, LossEvent, SessionEvent, SummaryEvent, AlertEvent)
}
