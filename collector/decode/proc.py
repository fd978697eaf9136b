"""Decoders for proc.bpf.c's records: exec, fork/clone, exit and session."""

from __future__ import annotations

import socket
import struct
from typing import Any

from collector.events import (
    Event,
    ExecEvent,
    ExitEvent,
    ForkEvent,
    SessionEvent,
    errno_name,
    text,
)
from probes import stdio as io
from probes.file import user_dev
from probes.layout import Header
from probes.linux import ADDRESS_FAMILIES, SOCK_TYPES
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
_STDIO_AT = 19  # the first stdio field in an unpacked exec record


def stdio_entry(fd: int, f: tuple[int, ...]) -> dict[str, Any]:
    """One fd of aw_stdio.h's description, named: {fd, type, ...}. type: socket (family,
    sock_type; inet: peer "addr:port"; unix: peer_pid when the kernel knows it), pipe (ino),
    fifo (dev, ino), tty, chr (rdev), file, dir (dev, ino), other, none (no file at the fd),
    unknown (the probe was compiled without the kernel's offsets)."""
    ino, magic, dev, mode, rdev, peer_pid, daddr, family, stype, dport, flags, _pad = f
    if flags & io.IO_UNKNOWN:
        return {"fd": fd, "type": "unknown"}
    if not flags & io.IO_FILE:
        return {"fd": fd, "type": "none"}
    fmt = mode & io.S_IFMT
    dev = user_dev(dev)  # as os.stat() and open events report it
    out: dict[str, Any] = {"fd": fd}
    if fmt == io.S_IFSOCK:
        out.update(type="socket", ino=ino,
                   family=ADDRESS_FAMILIES.get(family, family) if flags & io.IO_SOCKET
                   else None,
                   sock_type=SOCK_TYPES.get(stype, stype) if flags & io.IO_SOCKET else None)
        port = socket.ntohs(dport)
        if family == socket.AF_INET and (daddr or port):
            out["peer"] = f"{socket.inet_ntoa(struct.pack('<I', daddr))}:{port}"
        elif family == socket.AF_INET6 and port:
            out["peer"] = f"[?]:{port}"
        if family == socket.AF_UNIX and peer_pid:
            out["peer_pid"] = peer_pid
    elif fmt == io.S_IFIFO:
        if magic == io.PIPEFS_MAGIC:
            out.update(type="pipe", ino=ino)
        else:
            out.update(type="fifo", dev=dev, ino=ino)
    elif fmt == io.S_IFCHR:
        out.update(type="tty" if rdev >> 20 in io.TTY_MAJORS else "chr", rdev=user_dev(rdev))
    elif fmt == io.S_IFREG:
        out.update(type="file", dev=dev, ino=ino)
    elif fmt == io.S_IFDIR:
        out.update(type="dir", dev=dev, ino=ino)
    else:
        out.update(type="other", mode=mode, dev=dev, ino=ino)
    if flags & io.IO_FAULT:
        out["fault"] = True
    return out


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
        stdio=[stdio_entry(n, t[_STDIO_AT + n * io.FIELDS_PER_FD:
                                _STDIO_AT + (n + 1) * io.FIELDS_PER_FD]) for n in range(3)]
        if ret == 0 else None,
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
