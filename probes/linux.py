"""Names of the Linux ABI the syscall decoder shows: flag bits, enums, signal names, and how
each kind of syscall argument is decoded from its raw u64 (`KINDS`), plus the decoders of
small structs copied as raw blobs (io_uring_params, perf_event_attr, mount_attr, capset's
data). Pure tables and functions of numbers and bytes: nothing here touches the kernel.

Decoded arguments: numbers that have names get them (signals, ptrace requests, bpf
commands, flags as lists of names); a value or bit with no name stays a number.
"""

from __future__ import annotations

import signal as _signal
import struct
from collections.abc import Callable
from typing import Any

# ------------------------------------------------------------------------------ numbers


def _s32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v


def _u32(v: int) -> int:
    return v & 0xFFFFFFFF


def _s64(v: int) -> int:
    return v - (1 << 64) if v & (1 << 63) else v


def identity(v: int) -> int:
    return v


def _dirfd(v: int) -> int | str:
    fd = _s32(v)
    return "AT_FDCWD" if fd == -100 else fd


def _ugid(v: int) -> int:
    """uid_t/gid_t: (uid_t)-1 means "unchanged" and is shown as -1."""
    v = _u32(v)
    return -1 if v == 0xFFFFFFFF else v


Names = tuple[tuple[int, str], ...]


def flag_names(value: int, names: Names) -> list[str | int]:
    """Names of the bits set in `value` (multi-bit names first in `names`); bits without a
    name stay a number, as the last entry."""
    out: list[str | int] = []
    rest = value
    for bits, name in names:
        if bits and rest & bits == bits:
            out.append(name)
            rest &= ~bits
    if rest:
        out.append(rest)
    return out


def _flags(names: Names, width: Callable[[int], int] = _u32) -> Callable[[int], list[str | int]]:
    return lambda v: flag_names(width(v), names)


def _enum(names: dict[int, str], width: Callable[[int], int] = _s32) -> Callable[[int], str | int]:
    return lambda v: names.get(width(v), width(v))


def _bits(prefix: str, names: list[str]) -> Names:
    return tuple((1 << i, prefix + n) for i, n in enumerate(names) if n)


def signal_name(sig: int) -> str | int:
    try:
        return _signal.Signals(sig).name
    except ValueError:
        return sig


CLONE_FLAGS: Names = (
    (0x80, "CLONE_NEWTIME"), (0x100, "CLONE_VM"), (0x200, "CLONE_FS"),
    (0x400, "CLONE_FILES"), (0x800, "CLONE_SIGHAND"), (0x1000, "CLONE_PIDFD"),
    (0x2000, "CLONE_PTRACE"), (0x4000, "CLONE_VFORK"), (0x8000, "CLONE_PARENT"),
    (0x10000, "CLONE_THREAD"), (0x20000, "CLONE_NEWNS"), (0x40000, "CLONE_SYSVSEM"),
    (0x80000, "CLONE_SETTLS"), (0x100000, "CLONE_PARENT_SETTID"),
    (0x200000, "CLONE_CHILD_CLEARTID"), (0x400000, "CLONE_DETACHED"),
    (0x800000, "CLONE_UNTRACED"), (0x1000000, "CLONE_CHILD_SETTID"),
    (0x2000000, "CLONE_NEWCGROUP"), (0x4000000, "CLONE_NEWUTS"), (0x8000000, "CLONE_NEWIPC"),
    (0x10000000, "CLONE_NEWUSER"), (0x20000000, "CLONE_NEWPID"), (0x40000000, "CLONE_NEWNET"),
    (0x80000000, "CLONE_IO"),
)
MS_MGC_MSK, MS_MGC_VAL = 0xFFFF0000, 0xC0ED0000
MOUNT_FLAGS: Names = _bits("MS_", [
    "RDONLY", "NOSUID", "NODEV", "NOEXEC", "SYNCHRONOUS", "REMOUNT", "MANDLOCK", "DIRSYNC",
    "NOSYMFOLLOW", "", "NOATIME", "NODIRATIME", "BIND", "MOVE", "REC", "SILENT", "POSIXACL",
    "UNBINDABLE", "PRIVATE", "SLAVE", "SHARED", "RELATIME", "KERNMOUNT", "I_VERSION",
    "STRICTATIME", "LAZYTIME",
])


def mount_flags(v: int) -> list[str | int]:
    names: list[str | int] = []
    if v & MS_MGC_MSK == MS_MGC_VAL:  # the old magic in the high half: the kernel drops it
        names.append("MS_MGC_VAL")
        v &= ~MS_MGC_MSK
    return names + flag_names(v, MOUNT_FLAGS)


UMOUNT_FLAGS: Names = _bits("", ["MNT_FORCE", "MNT_DETACH", "MNT_EXPIRE", "UMOUNT_NOFOLLOW"])
AT_FLAGS: Names = (
    (0x100, "AT_SYMLINK_NOFOLLOW"), (0x200, "AT_REMOVEDIR"), (0x400, "AT_SYMLINK_FOLLOW"),
    (0x800, "AT_NO_AUTOMOUNT"), (0x1000, "AT_EMPTY_PATH"), (0x8000, "AT_RECURSIVE"),
)
O_CLOEXEC, O_NONBLOCK = 0x80000, 0x800
O_FLAGS: Names = ((O_CLOEXEC, "O_CLOEXEC"), (O_NONBLOCK, "O_NONBLOCK"), (0x200, "O_TRUNC"),
                  (0x80, "O_EXCL"))
OPEN_TREE_FLAGS: Names = ((1, "OPEN_TREE_CLONE"), (O_CLOEXEC, "OPEN_TREE_CLOEXEC"), *AT_FLAGS)
MOVE_MOUNT_FLAGS: Names = (
    (0x1, "MOVE_MOUNT_F_SYMLINKS"), (0x2, "MOVE_MOUNT_F_AUTOMOUNTS"),
    (0x4, "MOVE_MOUNT_F_EMPTY_PATH"), (0x10, "MOVE_MOUNT_T_SYMLINKS"),
    (0x20, "MOVE_MOUNT_T_AUTOMOUNTS"), (0x40, "MOVE_MOUNT_T_EMPTY_PATH"),
    (0x100, "MOVE_MOUNT_SET_GROUP"), (0x200, "MOVE_MOUNT_BENEATH"),
)
MOUNT_ATTR: Names = (
    (0x1, "MOUNT_ATTR_RDONLY"), (0x2, "MOUNT_ATTR_NOSUID"), (0x4, "MOUNT_ATTR_NODEV"),
    (0x8, "MOUNT_ATTR_NOEXEC"), (0x10, "MOUNT_ATTR_NOATIME"), (0x20, "MOUNT_ATTR_STRICTATIME"),
    (0x80, "MOUNT_ATTR_NODIRATIME"), (0x100000, "MOUNT_ATTR_IDMAP"),
    (0x200000, "MOUNT_ATTR_NOSYMFOLLOW"),
)
RENAME_FLAGS: Names = _bits("RENAME_", ["NOREPLACE", "EXCHANGE", "WHITEOUT"])
XATTR_FLAGS: Names = _bits("XATTR_", ["CREATE", "REPLACE"])
MEMFD_FLAGS: Names = _bits("MFD_", ["CLOEXEC", "ALLOW_SEALING", "HUGETLB", "NOEXEC_SEAL",
                                    "EXEC"])
UFFD_FLAGS: Names = ((1, "UFFD_USER_MODE_ONLY"), (O_CLOEXEC, "O_CLOEXEC"),
                     (O_NONBLOCK, "O_NONBLOCK"))
SOCK_FLAGS: Names = ((O_NONBLOCK, "SOCK_NONBLOCK"), (O_CLOEXEC, "SOCK_CLOEXEC"))
SOCK_TYPES = {1: "SOCK_STREAM", 2: "SOCK_DGRAM", 3: "SOCK_RAW", 4: "SOCK_RDM",
              5: "SOCK_SEQPACKET", 6: "SOCK_DCCP", 10: "SOCK_PACKET"}


def sock_type(v: int) -> list[str | int]:
    """socket()'s type: the base type first, then SOCK_NONBLOCK/SOCK_CLOEXEC."""
    v = _u32(v)
    base = v & 0xF
    return [SOCK_TYPES.get(base, base), *flag_names(v & ~0xF, SOCK_FLAGS)]


MSG_FLAGS: Names = (
    (0x1, "MSG_OOB"), (0x2, "MSG_PEEK"), (0x4, "MSG_DONTROUTE"), (0x8, "MSG_CTRUNC"),
    (0x10, "MSG_PROXY"), (0x20, "MSG_TRUNC"), (0x40, "MSG_DONTWAIT"), (0x80, "MSG_EOR"),
    (0x100, "MSG_WAITALL"), (0x200, "MSG_FIN"), (0x400, "MSG_SYN"), (0x800, "MSG_CONFIRM"),
    (0x1000, "MSG_RST"), (0x2000, "MSG_ERRQUEUE"), (0x4000, "MSG_NOSIGNAL"),
    (0x8000, "MSG_MORE"), (0x10000, "MSG_WAITFORONE"), (0x40000, "MSG_BATCH"),
    (0x4000000, "MSG_ZEROCOPY"), (0x20000000, "MSG_FASTOPEN"), (0x40000000, "MSG_CMSG_CLOEXEC"),
)
PERF_FLAGS: Names = _bits("PERF_FLAG_", ["FD_NO_GROUP", "FD_OUTPUT", "PID_CGROUP",
                                         "FD_CLOEXEC"])
PERF_TYPES = {0: "PERF_TYPE_HARDWARE", 1: "PERF_TYPE_SOFTWARE", 2: "PERF_TYPE_TRACEPOINT",
              3: "PERF_TYPE_HW_CACHE", 4: "PERF_TYPE_RAW", 5: "PERF_TYPE_BREAKPOINT"}
PIDFD_SIGNAL_FLAGS: Names = _bits("PIDFD_SIGNAL_", ["THREAD", "THREAD_GROUP",
                                                    "PROCESS_GROUP"])
PIDFD_FLAGS: Names = ((O_NONBLOCK, "PIDFD_NONBLOCK"), (0x80, "PIDFD_THREAD"))
FSOPEN_FLAGS: Names = ((1, "FSOPEN_CLOEXEC"),)
FSMOUNT_FLAGS: Names = ((1, "FSMOUNT_CLOEXEC"),)
FINIT_FLAGS: Names = _bits("MODULE_INIT_", ["IGNORE_MODVERSIONS", "IGNORE_VERMAGIC",
                                            "COMPRESSED_FILE"])
IORING_SETUP: Names = _bits("IORING_SETUP_", [
    "IOPOLL", "SQPOLL", "SQ_AFF", "CQSIZE", "CLAMP", "ATTACH_WQ", "R_DISABLED", "SUBMIT_ALL",
    "COOP_TASKRUN", "TASKRUN_FLAG", "SQE128", "CQE32", "SINGLE_ISSUER", "DEFER_TASKRUN",
    "NO_MMAP", "REGISTERED_FD_ONLY", "NO_SQARRAY",
])
CAPS: Names = _bits("CAP_", [
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID",
    "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW",
    "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE",
    "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME",
    "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP",
    "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ",
    "PERFMON", "BPF", "CHECKPOINT_RESTORE",
])
CAP_VERSIONS = {0x19980330: "_LINUX_CAPABILITY_VERSION_1",
                0x20071026: "_LINUX_CAPABILITY_VERSION_2",
                0x20080522: "_LINUX_CAPABILITY_VERSION_3"}

ADDRESS_FAMILIES = {i: "AF_" + n for i, n in enumerate([
    "UNSPEC", "UNIX", "INET", "AX25", "IPX", "APPLETALK", "NETROM", "BRIDGE", "ATMPVC", "X25",
    "INET6", "ROSE", "DECnet", "NETBEUI", "SECURITY", "KEY", "NETLINK", "PACKET", "ASH",
    "ECONET", "ATMSVC", "RDS", "SNA", "IRDA", "PPPOX", "WANPIPE", "LLC", "IB", "MPLS", "CAN",
    "TIPC", "BLUETOOTH", "IUCV", "RXRPC", "ISDN", "PHONET", "IEEE802154", "CAIF", "ALG", "NFC",
    "VSOCK", "KCM", "QIPCRTR", "SMC", "XDP", "MCTP",
])}
PTRACE_REQUESTS = {
    0: "PTRACE_TRACEME", 1: "PTRACE_PEEKTEXT", 2: "PTRACE_PEEKDATA", 3: "PTRACE_PEEKUSER",
    4: "PTRACE_POKETEXT", 5: "PTRACE_POKEDATA", 6: "PTRACE_POKEUSER", 7: "PTRACE_CONT",
    8: "PTRACE_KILL", 9: "PTRACE_SINGLESTEP", 12: "PTRACE_GETREGS", 13: "PTRACE_SETREGS",
    14: "PTRACE_GETFPREGS", 15: "PTRACE_SETFPREGS", 16: "PTRACE_ATTACH", 17: "PTRACE_DETACH",
    18: "PTRACE_GETFPXREGS", 19: "PTRACE_SETFPXREGS", 24: "PTRACE_SYSCALL",
    25: "PTRACE_GET_THREAD_AREA", 26: "PTRACE_SET_THREAD_AREA", 30: "PTRACE_ARCH_PRCTL",
    31: "PTRACE_SYSEMU", 32: "PTRACE_SYSEMU_SINGLESTEP", 33: "PTRACE_SINGLEBLOCK",
    0x4200: "PTRACE_SETOPTIONS", 0x4201: "PTRACE_GETEVENTMSG", 0x4202: "PTRACE_GETSIGINFO",
    0x4203: "PTRACE_SETSIGINFO", 0x4204: "PTRACE_GETREGSET", 0x4205: "PTRACE_SETREGSET",
    0x4206: "PTRACE_SEIZE", 0x4207: "PTRACE_INTERRUPT", 0x4208: "PTRACE_LISTEN",
    0x4209: "PTRACE_PEEKSIGINFO", 0x420A: "PTRACE_GETSIGMASK", 0x420B: "PTRACE_SETSIGMASK",
    0x420C: "PTRACE_SECCOMP_GET_FILTER", 0x420D: "PTRACE_SECCOMP_GET_METADATA",
    0x420E: "PTRACE_GET_SYSCALL_INFO", 0x420F: "PTRACE_GET_RSEQ_CONFIGURATION",
    0x4210: "PTRACE_SET_SYSCALL_USER_DISPATCH_CONFIG",
    0x4211: "PTRACE_GET_SYSCALL_USER_DISPATCH_CONFIG",
}
BPF_COMMANDS = {i: "BPF_" + n for i, n in enumerate([
    "MAP_CREATE", "MAP_LOOKUP_ELEM", "MAP_UPDATE_ELEM", "MAP_DELETE_ELEM", "MAP_GET_NEXT_KEY",
    "PROG_LOAD", "OBJ_PIN", "OBJ_GET", "PROG_ATTACH", "PROG_DETACH", "PROG_TEST_RUN",
    "PROG_GET_NEXT_ID", "MAP_GET_NEXT_ID", "PROG_GET_FD_BY_ID", "MAP_GET_FD_BY_ID",
    "OBJ_GET_INFO_BY_FD", "PROG_QUERY", "RAW_TRACEPOINT_OPEN", "BTF_LOAD", "BTF_GET_FD_BY_ID",
    "TASK_FD_QUERY", "MAP_LOOKUP_AND_DELETE_ELEM", "MAP_FREEZE", "BTF_GET_NEXT_ID",
    "MAP_LOOKUP_BATCH", "MAP_LOOKUP_AND_DELETE_BATCH", "MAP_UPDATE_BATCH", "MAP_DELETE_BATCH",
    "LINK_CREATE", "LINK_UPDATE", "LINK_GET_FD_BY_ID", "LINK_GET_NEXT_ID", "ENABLE_STATS",
    "ITER_CREATE", "LINK_DETACH", "PROG_BIND_MAP", "TOKEN_CREATE",
])}
KEYCTL_OPS = {i: "KEYCTL_" + n for i, n in enumerate([
    "GET_KEYRING_ID", "JOIN_SESSION_KEYRING", "UPDATE", "REVOKE", "CHOWN", "SETPERM",
    "DESCRIBE", "CLEAR", "LINK", "UNLINK", "SEARCH", "READ", "INSTANTIATE", "NEGATE",
    "SET_REQKEY_KEYRING", "SET_TIMEOUT", "ASSUME_AUTHORITY", "GET_SECURITY",
    "SESSION_TO_PARENT", "REJECT", "INSTANTIATE_IOV", "INVALIDATE", "GET_PERSISTENT",
    "DH_COMPUTE", "PKEY_QUERY", "PKEY_ENCRYPT", "PKEY_DECRYPT", "PKEY_SIGN", "PKEY_VERIFY",
    "RESTRICT_KEYRING", "MOVE", "CAPABILITIES", "WATCH_KEY",
])}
F_DUPFD, F_DUPFD_CLOEXEC, F_SETOWN, F_SETOWN_EX = 0, 1030, 8, 15
FCNTL_CMDS = {F_DUPFD: "F_DUPFD", F_DUPFD_CLOEXEC: "F_DUPFD_CLOEXEC", F_SETOWN: "F_SETOWN",
              F_SETOWN_EX: "F_SETOWN_EX"}
TIOCSTI, TIOCLINUX, FIOSETOWN, SIOCSPGRP = 0x5412, 0x541C, 0x8901, 0x8902
IOCTL_CMDS = {TIOCSTI: "TIOCSTI", TIOCLINUX: "TIOCLINUX", FIOSETOWN: "FIOSETOWN",
              SIOCSPGRP: "SIOCSPGRP"}

# How each kind of argument is decoded from its raw u64. "path" and "str" are user strings
# (copied by the kernel); "ptr" arguments are left out of `args` (an address means
# nothing to a reader; what it points to, when it matters, is decoded from the blob).
STRING_KINDS = ("path", "str")
KINDS: dict[str, Callable[[int], Any]] = {
    "int": _s32, "uint": _u32, "long": _s64, "ulong": identity, "size": identity,
    "fd": _s32, "pid": _s32, "dirfd": _dirfd, "uid": _ugid, "gid": _ugid,
    "mode": _u32, "perm": _u32,  # perm: a mode whose setuid/setgid bits are shown apart
    "signal": lambda v: signal_name(_s32(v)),
    "clone_flags": _flags(CLONE_FLAGS), "mount_flags": lambda v: mount_flags(v),
    "umount_flags": _flags(UMOUNT_FLAGS), "at_flags": _flags(AT_FLAGS),
    "o_flags": _flags(O_FLAGS), "open_tree_flags": _flags(OPEN_TREE_FLAGS),
    "move_mount_flags": _flags(MOVE_MOUNT_FLAGS), "mount_attr": _flags(MOUNT_ATTR),
    "rename_flags": _flags(RENAME_FLAGS), "xattr_flags": _flags(XATTR_FLAGS),
    "memfd_flags": _flags(MEMFD_FLAGS), "uffd_flags": _flags(UFFD_FLAGS),
    "sock_flags": _flags(SOCK_FLAGS), "msg_flags": _flags(MSG_FLAGS),
    "perf_flags": _flags(PERF_FLAGS, identity), "pidfd_signal_flags": _flags(PIDFD_SIGNAL_FLAGS),
    "pidfd_flags": _flags(PIDFD_FLAGS), "fsopen_flags": _flags(FSOPEN_FLAGS),
    "fsmount_flags": _flags(FSMOUNT_FLAGS), "finit_flags": _flags(FINIT_FLAGS),
    "family": _enum(ADDRESS_FAMILIES), "sock_type": sock_type,
    "ptrace_request": _enum(PTRACE_REQUESTS, _s64), "bpf_cmd": _enum(BPF_COMMANDS),
    "keyctl_op": _enum(KEYCTL_OPS), "fcntl_cmd": _enum(FCNTL_CMDS, _u32),
    "ioctl_cmd": _enum(IOCTL_CMDS, _u32),
}


# ------------------------------------------------------------------------------ blob decoders

RawDecoder = Callable[[dict[str, Any], bytes], None]


def ioctl_raw(args: dict[str, Any], blob: bytes) -> None:
    if args.get("cmd") == "TIOCSTI":
        # the byte pushed into the terminal's input, decoded as every kernel string
        args["char"] = blob[:1].decode("utf-8", "backslashreplace")
    elif args.get("cmd") == "TIOCLINUX":
        args["subcode"] = blob[0]
    elif args.get("cmd") in ("FIOSETOWN", "SIOCSPGRP") and len(blob) >= 4:
        # the pid (or -pgrp) that the socket's SIGIO/SIGURG will be sent to
        args["owner"] = struct.unpack_from("<i", blob)[0]


def file_handle_raw(args: dict[str, Any], blob: bytes) -> None:
    """struct file_handle's header and first bytes: for the common handle types, the
    inode number and generation the handle names (e.g. inode 2: a file system's root)."""
    if len(blob) >= 8:
        size, kind = struct.unpack_from("<Ii", blob)
        args["handle_bytes"], args["handle_type"] = size, kind
        if len(blob) >= 16:
            args["handle_ino"], args["handle_gen"] = struct.unpack_from("<II", blob, 8)


def bpf_raw(args: dict[str, Any], blob: bytes) -> None:
    if len(blob) >= 4:
        first = struct.unpack_from("<I", blob)[0]   # union bpf_attr's first field
        if args.get("cmd") == "BPF_PROG_LOAD":
            args["prog_type"] = first
        elif args.get("cmd") == "BPF_MAP_CREATE":
            args["map_type"] = first


def perf_raw(args: dict[str, Any], blob: bytes) -> None:
    if len(blob) >= 16:
        typ, _size, config = struct.unpack_from("<IIQ", blob)
        args["type"] = PERF_TYPES.get(typ, typ)
        args["config"] = config


def io_uring_raw(args: dict[str, Any], blob: bytes) -> None:
    if len(blob) >= 12:
        args["setup_flags"] = flag_names(struct.unpack_from("<I", blob, 8)[0], IORING_SETUP)


def mount_attr_raw(args: dict[str, Any], blob: bytes) -> None:
    if len(blob) >= 32:    # struct mount_attr
        attr_set, attr_clr, propagation, userns_fd = struct.unpack_from("<4Q", blob)
        args["attr_set"] = flag_names(attr_set, MOUNT_ATTR)
        args["attr_clr"] = flag_names(attr_clr, MOUNT_ATTR)
        args["propagation"] = flag_names(propagation, MOUNT_FLAGS)
        args["userns_fd"] = _s32(userns_fd)


def capset(args: dict[str, Any], blob: bytes) -> None:
    if len(blob) < 8:
        return
    version, pid = struct.unpack_from("<Ii", blob)
    args["version"] = CAP_VERSIONS.get(version, version)
    args["pid"] = pid
    if len(blob) >= 32:
        e0, p0, i0, e1, p1, i1 = struct.unpack_from("<6I", blob, 8)
        if version == 0x19980330:  # version 1: 32-bit sets, one struct
            e1 = p1 = i1 = 0
        args["effective"] = flag_names(e0 | e1 << 32, CAPS)
        args["permitted"] = flag_names(p0 | p1 << 32, CAPS)
        args["inheritable"] = flag_names(i0 | i1 << 32, CAPS)
