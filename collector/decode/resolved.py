"""What the kernel resolved for an fd (include/aw_resolve.h's fields): the path as d_path
would print it for the caller, the file's (dev, inode) and type, and how far to trust it.

Pseudo files (pipes, sockets, anon inodes: a dentry with no parent, AW_RF_DISCONNECTED) are
named the way the kernel's d_path names them, from the file system's magic and the inode
number or the dentry's name: pipe:[ino], socket:[ino], anon_inode:[eventfd].
"""

from __future__ import annotations

import stat
from dataclasses import dataclass

from collector.events import text
from probes.file import RF_DISCONNECTED, RF_NAMES, RF_OK, RF_TRUNCATED, user_dev

PIPEFS_MAGIC, SOCKFS_MAGIC, ANON_INODE_FS_MAGIC = 0x50495045, 0x534F434B, 0x09041934
NSFS_MAGIC, PID_FS_MAGIC = 0x6E736673, 0x50494446

_TYPES = ((stat.S_IFREG, "file"), (stat.S_IFDIR, "dir"), (stat.S_IFLNK, "symlink"),
          (stat.S_IFCHR, "char"), (stat.S_IFBLK, "block"), (stat.S_IFIFO, "fifo"),
          (stat.S_IFSOCK, "socket"))


def file_type(mode: int) -> str | None:
    fmt = stat.S_IFMT(mode)
    for bits, name in _TYPES:
        if fmt == bits:
            return name
    return None


def flag_names(flags: int) -> list[str]:
    return [name for bit, name in RF_NAMES if flags & bit]


@dataclass(frozen=True, slots=True)
class Resolved:
    path: str | None      # the kernel's path; None when nothing usable was resolved
    dev: int              # as os.stat().st_dev reports it
    ino: int
    mode: int             # the inode's i_mode (type and permission bits)
    flags: list[str]
    complete: bool        # path is the whole path (not truncated), usable as `path`


def resolved(raw: bytes, r_flags: int, magic: int, dev: int, ino: int,
             mode: int) -> Resolved | None:
    """None when the kernel resolved nothing (a failed open)."""
    if not r_flags:
        return None
    names = flag_names(r_flags)
    if not r_flags & RF_OK:
        return Resolved(None, user_dev(dev) if dev else 0, ino, mode, names, False)
    name = text(raw.split(b"\0", 1)[0])
    if r_flags & RF_DISCONNECTED:
        base = name.rsplit("/", 1)[-1]
        if magic == PIPEFS_MAGIC:
            name = f"pipe:[{ino}]"
        elif magic == SOCKFS_MAGIC:
            name = f"socket:[{ino}]"
        elif magic in (ANON_INODE_FS_MAGIC, PID_FS_MAGIC):
            name = f"anon_inode:{base}"
        elif magic == NSFS_MAGIC:
            # a namespace (d_path: "net:[4026531840]"), reached only through a magic link
            # such as /proc/<pid>/ns/net: the link is what says whose namespace it is, so
            # the caller's path stays the event's path
            return Resolved(base or None, user_dev(dev), ino, mode, names, False)
    return Resolved(name, user_dev(dev), ino, mode, names, not r_flags & RF_TRUNCATED)
