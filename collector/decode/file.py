"""Decoder for file.bpf.c's records: open, openat and openat2, with the open flags named,
and for successful opens the file the kernel opened (collector/decode/resolved.py)."""

from __future__ import annotations

import os
import stat

from collector.decode.resolved import file_type, resolved
from collector.events import Event, OpenEvent, errno_name, text
from probes.file import (
    AT_FDCWD,
    AW_EV_OPEN,
    AW_PATH_MAX,
    OF_HOW_FAULT,
    OF_PATH_FAULT,
    OPEN,
    RF_OK,
    SYSCALLS,
    user_dev,
)
from probes.layout import Header

_OPEN = OPEN.struct
_TAIL = OPEN.fixed_size


_ACCMODE = {os.O_RDONLY: "O_RDONLY", os.O_WRONLY: "O_WRONLY", os.O_RDWR: "O_RDWR"}
# Composite flags first so that their bits are not named twice.
_FLAG_BITS: list[tuple[int, str]] = [
    (getattr(os, "O_TMPFILE", 0), "O_TMPFILE"), (os.O_SYNC, "O_SYNC"),
] + [
    (getattr(os, name), name) for name in (
        "O_CREAT", "O_EXCL", "O_NOCTTY", "O_TRUNC", "O_APPEND", "O_NONBLOCK", "O_DSYNC",
        "O_ASYNC", "O_DIRECT", "O_LARGEFILE", "O_DIRECTORY", "O_NOFOLLOW", "O_NOATIME",
        "O_CLOEXEC", "O_PATH",
    ) if getattr(os, name, 0)
]


_NAMES_CACHE: dict[int, tuple[str, ...]] = {}


def flag_names(flags: int) -> list[str]:
    """O_* names of open flags, access mode first; unknown bits as one hex entry."""
    names = _NAMES_CACHE.get(flags)
    if names is None:
        if len(_NAMES_CACHE) > 1024:  # a process can pass any bits: keep it bounded
            _NAMES_CACHE.clear()
        names = _NAMES_CACHE[flags] = tuple(_flag_names(flags))
    return list(names)


def _flag_names(flags: int) -> list[str]:
    names = [_ACCMODE.get(flags & os.O_ACCMODE, f"O_ACCMODE_{flags & os.O_ACCMODE}")]
    rest = flags & ~os.O_ACCMODE
    for bits, name in _FLAG_BITS:
        if bits and rest & bits == bits:
            names.append(name)
            rest &= ~bits
    if rest:
        names.append(hex(rest))
    return names


_DEVS: dict[int, int] = {}  # the kernel's dev_t -> os.stat()'s (a few devices per host)
_FILE_TYPES = {stat.S_IFREG: "file", stat.S_IFDIR: "dir", stat.S_IFLNK: "symlink",
               stat.S_IFCHR: "char", stat.S_IFBLK: "block", stat.S_IFIFO: "fifo",
               stat.S_IFSOCK: "socket"}


def decode_open(hdr: Header, data: bytes) -> Event:
    t = _OPEN.unpack_from(data)
    ret, dfd, sys, flags, mode, resolve, path_len, of = t[12:20]
    r_ino, r_magic, r_dev, r_mode, r_flags, r_len = t[20:26]
    path_len = min(path_len, AW_PATH_MAX)
    raw = data[_TAIL:_TAIL + path_len].split(b"\0", 1)[0]
    path = text(raw)
    ev = OpenEvent(
        **hdr, ret=ret, error=errno_name(ret) if ret < 0 else None,
        syscall=SYSCALLS[sys] if sys < len(SYSCALLS) else str(sys), path=path,
        raw_path=path,
        dfd=None if dfd == AT_FDCWD else dfd, flags=flags, flag_names=flag_names(flags),
        mode=mode, resolve=resolve, fault=bool(of & (OF_PATH_FAULT | OF_HOW_FAULT)),
    )
    if not r_flags:
        return ev  # nothing resolved (a failed open)
    start = _TAIL + path_len
    if r_flags == RF_OK:  # the common case, resolved() inlined: a whole path, no flags
        if r_mode:
            dev = _DEVS.get(r_dev)
            if dev is None:
                if len(_DEVS) > 4096:
                    _DEVS.clear()
                dev = _DEVS[r_dev] = user_dev(r_dev)
            ev.dev, ev.ino, ev.file_mode = dev, r_ino, r_mode
            ev.file_type = _FILE_TYPES.get(stat.S_IFMT(r_mode))
        name = data[start:start + min(r_len, AW_PATH_MAX)].split(b"\0", 1)[0]
        ev.path = path if name == raw else text(name)  # mostly the caller's own string
        ev.resolved = True
    else:
        res = resolved(data[start:start + min(r_len, AW_PATH_MAX)], r_flags, r_magic, r_dev,
                       r_ino, r_mode)
        if res is None:
            return ev
        ev.resolve_flags = res.flags
        if res.mode:
            ev.dev, ev.ino, ev.file_mode = res.dev, res.ino, res.mode
            ev.file_type = file_type(res.mode)
        if res.path is not None and res.complete:
            ev.path, ev.resolved = res.path, True
    proc_pid, proc_tgid = t[28:30]
    if proc_pid:
        ev.proc_pid, ev.proc_tgid = proc_pid, proc_tgid or None
    return ev


DECODERS = {AW_EV_OPEN: (OPEN, decode_open)}
