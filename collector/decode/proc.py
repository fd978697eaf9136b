"""Decoders for proc.bpf.c's records: exec, fork/clone, exit and session."""

from __future__ import annotations

from collector.events import (
    Event,
    ExecEvent,
    ExitEvent,
    ForkEvent,
    SessionEvent,
    errno_name,
    text,
)
from probes.layout import Header
from probes.proc import (
    AT_FDCWD,
    AW_EV_EXEC,
    AW_EV_EXIT,
    AW_EV_FORK,
    AW_EV_SESSION,
    CLONE_THREAD,
    EF_CORE,
    EXEC,
    EXIT,
    FORK,
    PF_EXIT_CODE,
    PF_EXIT_SIGNAL,
    SESSION,
    SESSION_KINDS,
    SESSION_PHASES,
    XF_ARG_CUT,
    XF_ARGV_FAULT,
    XF_ARGV_TRUNC,
    XF_FILENAME_FAULT,
)

_FORK, _EXEC, _EXIT, _SESSION = FORK.struct, EXEC.struct, EXIT.struct, SESSION.struct
_EXEC_TAIL = EXEC.fixed_size


def decode_fork(hdr: Header, data: bytes) -> Event:
    t = _FORK.unpack_from(data)
    ret = t[12]
    return ForkEvent(**hdr, ret=ret, error=errno_name(ret), clone_flags=t[13],
                     child_pid=t[14], thread=bool(t[13] & CLONE_THREAD))


def decode_exec(hdr: Header, data: bytes) -> Event:
    t = _EXEC.unpack_from(data)
    ret, dfd, at_flags, fn_len, argv_len, _argc, xf = t[12:19]
    tail = data[_EXEC_TAIL:]
    fn_len = min(fn_len, len(tail))
    filename = tail[:fn_len].split(b"\0", 1)[0]
    raw_argv = tail[fn_len:fn_len + argv_len]
    argv = [text(a) for a in raw_argv.split(b"\0")[:-1]] if raw_argv else []
    return ExecEvent(
        **hdr, ret=ret, error=errno_name(ret), filename=text(filename), argv=argv,
        argv_truncated=bool(xf & (XF_ARGV_TRUNC | XF_ARG_CUT)),
        dfd=None if dfd == AT_FDCWD else dfd, at_flags=at_flags,
        fault=bool(xf & (XF_FILENAME_FAULT | XF_ARGV_FAULT)),
    )


def decode_exit(hdr: Header, data: bytes) -> Event:
    t = _EXIT.unpack_from(data)
    code, sig, flags = t[12:15]
    if flags & PF_EXIT_SIGNAL:
        return ExitEvent(**hdr, signal=sig, core=bool(flags & EF_CORE))
    return ExitEvent(**hdr, exit_code=(code & 0xFF) if flags & PF_EXIT_CODE else None)


def decode_session(hdr: Header, data: bytes) -> Event:
    """Kernel session record: a launcher adopted (start) or a session's last exit (end).
    The collector completes it (argv, namespaces, counts) before writing it."""
    t = _SESSION.unpack_from(data)
    phase, kind, root = t[12:15]
    return SessionEvent(**hdr, phase=SESSION_PHASES.get(phase, str(phase)),
                        session_kind=SESSION_KINDS.get(kind, str(kind)), root_pid=root)


DECODERS = {
    AW_EV_EXEC: (EXEC, decode_exec),
    AW_EV_FORK: (FORK, decode_fork),
    AW_EV_EXIT: (EXIT, decode_exit),
    AW_EV_SESSION: (SESSION, decode_session),
}
