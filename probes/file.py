"""Record layout and constants of file.bpf.c: open, openat and openat2 (decoded by
collector/decode/file.py)."""

from __future__ import annotations

from probes.layout import Layout

AW_EV_OPEN = 4
AW_PATH_MAX = 4096
AT_FDCWD = -100
OF_PATH_FAULT, OF_HOW_FAULT = 0x1, 0x2
SYSCALLS = ("open", "openat", "openat2")

# include/aw_resolve.h: AW_RF_* flags of a resolution, by name (the event's resolve_flags)
RF_OK, RF_NO_FILE, RF_TRUNCATED, RF_UNREACHABLE = 0x1, 0x2, 0x4, 0x8
RF_DISCONNECTED, RF_DELETED, RF_NO_BTF, RF_FAULT = 0x10, 0x20, 0x40, 0x80
RF_NAMES = ((RF_NO_FILE, "no_file"), (RF_TRUNCATED, "truncated"),
            (RF_UNREACHABLE, "unreachable"), (RF_DISCONNECTED, "disconnected"),
            (RF_DELETED, "deleted"), (RF_NO_BTF, "no_btf"), (RF_FAULT, "fault"))

# AW_RESOLVED_FIELDS (include/aw_resolve.h), in its order
RESOLVED_FIELDS = [
    ("r_ino", "u64"), ("r_magic", "u64"), ("r_dev", "u32"), ("r_mode", "u32"),
    ("r_flags", "u32"), ("r_path_len", "u32"), ("r_start", "u32"), ("r_pad", "u32"),
    ("r_proc_pid", "u32"), ("r_proc_tgid", "u32"),
]

# `path` holds the caller's string (path_len bytes), then the resolved path (r_path_len)
OPEN = Layout.record("aw_open", [
    ("ret", "s64"), ("dfd", "s32"), ("syscall", "u32"), ("flags", "u64"), ("mode", "u64"),
    ("resolve", "u64"), ("path_len", "u32"), ("open_flags", "u32"), *RESOLVED_FIELDS,
], tail=("path", 2 * AW_PATH_MAX))


def kernel_dev(st_dev: int) -> int:
    """os.stat().st_dev (glibc's encoding) -> the kernel's dev_t, MAJOR << 20 | MINOR: the
    super block's s_dev that the probes report and `deny_inodes` is keyed by."""
    import os

    return (os.major(st_dev) << 20) | os.minor(st_dev)


def user_dev(k_dev: int) -> int:
    """The kernel's dev_t -> the st_dev os.stat() reports for the same device."""
    import os

    return os.makedev(k_dev >> 20, k_dev & 0xFFFFF)
