"""What fds 0, 1 and 2 of a process are at exec (include/aw_stdio.h): the kernel struct
fields the probe reads (offsets from BTF), the per-fd record fields, and the constants to
name them (collector/decode/proc.py)."""

from __future__ import annotations

# Kernel fields aw_stdio.h reads, besides aw_resolve.h's (probes/btf.py RESOLVE_FIELDS)
STDIO_FIELDS: tuple[tuple[str, str], ...] = (
    ("file", "f_inode"),
    ("file", "private_data"),
    ("socket", "sk"),
    ("sock", "__sk_common.skc_family"),
    ("sock", "__sk_common.skc_daddr"),
    ("sock", "__sk_common.skc_dport"),
    ("sock", "sk_type"),
    ("sock", "sk_peer_pid"),
    ("pid", "numbers"),
    ("upid", "nr"),
    ("inode", "i_rdev"),
)

IO_FILE, IO_SOCKET, IO_FAULT, IO_UNKNOWN = 0x1, 0x2, 0x4, 0x8
PIPEFS_MAGIC, SOCKFS_MAGIC = 0x50495045, 0x534F434B
S_IFMT, S_IFSOCK, S_IFIFO, S_IFCHR, S_IFREG, S_IFDIR = (0o170000, 0o140000, 0o010000,
                                                        0o020000, 0o100000, 0o040000)
# character devices that are terminals: tty/console (4, 5), pty slaves (136-143)
TTY_MAJORS = frozenset({4, 5, *range(136, 144)})


def fd_fields(n: int) -> list[tuple[str, str]]:
    """AW_STDIO_FIELDS(n) of aw_stdio.h, for probes/layout.py"""
    return [(f"s{n}_ino", "u64"), (f"s{n}_magic", "u64"), (f"s{n}_dev", "u32"),
            (f"s{n}_mode", "u32"), (f"s{n}_rdev", "u32"), (f"s{n}_peer_pid", "u32"),
            (f"s{n}_daddr", "u32"), (f"s{n}_family", "u16"), (f"s{n}_stype", "u16"),
            (f"s{n}_dport", "u16"), (f"s{n}_flags", "u16"), (f"s{n}_pad", "u32")]


FIELDS_PER_FD = len(fd_fields(0))


def cflags() -> list[str]:
    """The offsets as -D flags; -DAW_NO_STDIO when the kernel's BTF lacks one (the exec
    records then say `unknown` for each fd)."""
    from probes import btf

    flags, _why = btf.cflags_or_fallback(STDIO_FIELDS)
    return ["-DAW_NO_STDIO"] if flags == ["-DAW_NO_BTF"] else flags
