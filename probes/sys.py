"""The generic syscall probe (sys.bpf.c): its table, its attachment and its decoder.

`SYSCALLS` is the single source of truth for what the generic probe pair reports: each
entry names a syscall, its x86_64 number, its arguments with the kind that says how to
decode each one, and what else the kernel copies (a "blob": a socket address, the first
bytes of a send, capset's data, a small struct) or filters on. `install()` writes the
table into the kernel's `sys_spec` map and attaches `aw_sys_enter`/`aw_sys_exit` to the
tracepoints of every entry that exists on the running kernel; what is missing is
returned (and kept by the loader: `probes.loader.attached_syscalls(bpf)`).

Syscall numbers are written down from the kernel's arch/x86/entry/syscalls/syscall_64.tbl
rather than read from headers at run time: they are ABI, and the hosts that run
agentwatch need not have headers of their kernel. The root tests make every listed call
and find its event, which would catch a wrong number.

Decoded arguments: numbers that have names get them (signals, ptrace requests, bpf
commands, flags as lists of names); a value or bit with no name stays a number. Paths and
strings are the bytes the process passed, decoded like every kernel string
(`collector.events.text`). Payload bytes are never put in an event: only the DNS query
name found in them.
"""

from __future__ import annotations

import ctypes
import signal as _signal
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from collector.events import Event, SyscallEvent, errno_name, text
from probes import kernel
from probes.layout import Header, Layout
from probes.net import decode_sockaddr

AW_EV_SYSCALL = 6
AW_PATH_MAX = 4096
AW_SOCKADDR_MAX = 128
STR2_MAX = 256                       # AW_SYS_STR2_MAX: the third string's bound
PAYLOAD_MAX = 320                    # AW_SYS_PAYLOAD_MAX
STRS_MAX = 2 * AW_PATH_MAX + STR2_MAX
DATA_SIZE = STRS_MAX + AW_SOCKADDR_MAX + PAYLOAD_MAX
SPECS = 512                          # AW_SYS_SPECS: numbers below this can be traced
NOARG = 0xFF

# Blob kinds (AW_BLOB_* in sys.bpf.c)
BLOB_NONE, BLOB_SOCKADDR, BLOB_SOCKADDR_EXIT, BLOB_SENDTO = 0, 1, 2, 3
BLOB_MSGHDR, BLOB_CAPSET, BLOB_FDS_EXIT, BLOB_RAW = 4, 5, 6, 7
_SOCKADDR_BLOBS = (BLOB_SOCKADDR, BLOB_SOCKADDR_EXIT, BLOB_SENDTO, BLOB_MSGHDR)
# aw_sys.sys_flags
SF_STR_FAULT, SF_BLOB_FAULT, SF_PAYLOAD, SF_NO_ENTRY = 0x1, 0x2, 0x4, 0x8

SYSCALL = Layout.record("aw_sys", [
    ("ret", "s64"),
    ("arg0", "u64"), ("arg1", "u64"), ("arg2", "u64"), ("arg3", "u64"), ("arg4", "u64"),
    ("arg5", "u64"),
    ("nr", "u32"), ("sys_flags", "u32"),
    ("str0_len", "u32"), ("str1_len", "u32"), ("str2_len", "u32"), ("blob_len", "u32"),
    ("sa_len", "u32"), ("addrlen", "u32"), ("payload_len", "u32"), ("payload_size", "u32"),
], tail=("data", DATA_SIZE))
_SYS = SYSCALL.struct
_TAIL = SYSCALL.fixed_size


# ------------------------------------------------------------------------------ numbers


def _s32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v


def _u32(v: int) -> int:
    return v & 0xFFFFFFFF


def _s64(v: int) -> int:
    return v - (1 << 64) if v & (1 << 63) else v


def _id(v: int) -> int:
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
OPEN_TREE_FLAGS: Names = ((1, "OPEN_TREE_CLONE"), (O_CLOEXEC, "OPEN_TREE_CLOEXEC")) + AT_FLAGS
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
    return [SOCK_TYPES.get(base, base)] + flag_names(v & ~0xF, SOCK_FLAGS)


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
F_DUPFD, F_DUPFD_CLOEXEC = 0, 1030
FCNTL_CMDS = {F_DUPFD: "F_DUPFD", F_DUPFD_CLOEXEC: "F_DUPFD_CLOEXEC"}
TIOCSTI, TIOCLINUX = 0x5412, 0x541C
IOCTL_CMDS = {TIOCSTI: "TIOCSTI", TIOCLINUX: "TIOCLINUX"}

# How each kind of argument is decoded from its raw u64. "path" and "str" are user strings
# (copied by the kernel); "ptr" arguments are left out of `args` (an address means
# nothing to a reader; what it points to, when it matters, is decoded from the blob).
STRING_KINDS = ("path", "str")
KINDS: dict[str, Callable[[int], Any]] = {
    "int": _s32, "uint": _u32, "long": _s64, "ulong": _id, "size": _id,
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
    "perf_flags": _flags(PERF_FLAGS, _id), "pidfd_signal_flags": _flags(PIDFD_SIGNAL_FLAGS),
    "pidfd_flags": _flags(PIDFD_FLAGS), "fsopen_flags": _flags(FSOPEN_FLAGS),
    "fsmount_flags": _flags(FSMOUNT_FLAGS), "finit_flags": _flags(FINIT_FLAGS),
    "family": _enum(ADDRESS_FAMILIES), "sock_type": sock_type,
    "ptrace_request": _enum(PTRACE_REQUESTS, _s64), "bpf_cmd": _enum(BPF_COMMANDS),
    "keyctl_op": _enum(KEYCTL_OPS), "fcntl_cmd": _enum(FCNTL_CMDS, _u32),
    "ioctl_cmd": _enum(IOCTL_CMDS, _u32),
}


# ------------------------------------------------------------------------------ blob decoders

RawDecoder = Callable[[dict[str, Any], bytes], None]


def _ioctl_raw(args: dict[str, Any], blob: bytes) -> None:
    if args.get("cmd") == "TIOCSTI":
        args["char"] = text(blob[:1])      # the byte pushed into the terminal's input
    elif args.get("cmd") == "TIOCLINUX":
        args["subcode"] = blob[0]


def _bpf_raw(args: dict[str, Any], blob: bytes) -> None:
    if len(blob) >= 4:
        first = struct.unpack_from("<I", blob)[0]   # union bpf_attr's first field
        if args.get("cmd") == "BPF_PROG_LOAD":
            args["prog_type"] = first
        elif args.get("cmd") == "BPF_MAP_CREATE":
            args["map_type"] = first


def _perf_raw(args: dict[str, Any], blob: bytes) -> None:
    if len(blob) >= 16:
        typ, _size, config = struct.unpack_from("<IIQ", blob)
        args["type"] = PERF_TYPES.get(typ, typ)
        args["config"] = config


def _io_uring_raw(args: dict[str, Any], blob: bytes) -> None:
    if len(blob) >= 12:
        args["setup_flags"] = flag_names(struct.unpack_from("<I", blob, 8)[0], IORING_SETUP)


def _mount_attr_raw(args: dict[str, Any], blob: bytes) -> None:
    if len(blob) >= 32:    # struct mount_attr
        attr_set, attr_clr, propagation, userns_fd = struct.unpack_from("<4Q", blob)
        args["attr_set"] = flag_names(attr_set, MOUNT_ATTR)
        args["attr_clr"] = flag_names(attr_clr, MOUNT_ATTR)
        args["propagation"] = flag_names(propagation, MOUNT_FLAGS)
        args["userns_fd"] = _s32(userns_fd)


def _capset(args: dict[str, Any], blob: bytes) -> None:
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


# ------------------------------------------------------------------------------ the table


@dataclass(frozen=True)
class Syscall:
    """What the generic probe reports for one syscall."""

    name: str
    nr: int                                  # x86_64 (syscall_64.tbl)
    group: str                               # files | mounts | privilege | kernel | ...
    args: tuple[tuple[str, str], ...]        # (name, kind), in the syscall's order
    blob: int = BLOB_NONE
    blob_a: int = NOARG                      # argument indexes the blob reader uses
    blob_b: int = NOARG
    blob_size: int = 0                       # BLOB_RAW: bytes to copy
    filter: tuple[int, int, int, int] | None = None  # (arg, mask, v1, v2): in-kernel filter
    tracepoint: str = ""                     # syscalls:sys_{enter,exit}_<this> (default name)
    paths: tuple[str, ...] = ()              # args reported as path, path2 (default: the
                                             # first two "path" args)
    raw: RawDecoder | None = None            # decodes a BLOB_RAW into args
    note: str = ""                           # for the docs table

    @property
    def tp(self) -> str:
        return self.tracepoint or self.name

    @property
    def strings(self) -> tuple[int, ...]:
        """Argument indexes copied as strings, in the kernel's slot order."""
        return tuple(i for i, (_, kind) in enumerate(self.args) if kind in STRING_KINDS)

    @property
    def path_args(self) -> tuple[str, ...]:
        if self.paths:
            return self.paths
        return tuple(n for n, kind in self.args if kind == "path")[:2]


def _at(name: str, nr: int, group: str, *args: tuple[str, str], **kw: Any) -> Syscall:
    return Syscall(name, nr, group, tuple(args), **kw)


_PATH = ("path", "path")
_DFD = ("dfd", "dirfd")
_FD = ("fd", "fd")
_XATTR = (("name", "str"), ("value", "ptr"), ("size", "size"), ("flags", "xattr_flags"))
_MOUNT_ATTR_RAW = dict(blob=BLOB_RAW, blob_a=3, blob_size=32, raw=_mount_attr_raw)

SYSCALLS: tuple[Syscall, ...] = (
    # ---- files
    _at("creat", 85, "files", _PATH, ("mode", "perm")),
    _at("unlink", 87, "files", _PATH),
    _at("unlinkat", 263, "files", _DFD, _PATH, ("flags", "at_flags")),
    _at("rename", 82, "files", ("oldpath", "path"), ("newpath", "path")),
    _at("renameat", 264, "files", ("olddfd", "dirfd"), ("oldpath", "path"),
        ("newdfd", "dirfd"), ("newpath", "path")),
    _at("renameat2", 316, "files", ("olddfd", "dirfd"), ("oldpath", "path"),
        ("newdfd", "dirfd"), ("newpath", "path"), ("flags", "rename_flags")),
    _at("mkdir", 83, "files", _PATH, ("mode", "mode")),
    _at("mkdirat", 258, "files", _DFD, _PATH, ("mode", "mode")),
    _at("rmdir", 84, "files", _PATH),
    _at("chmod", 90, "files", _PATH, ("mode", "perm")),
    _at("fchmod", 91, "files", _FD, ("mode", "perm")),
    _at("fchmodat", 268, "files", _DFD, _PATH, ("mode", "perm")),
    _at("fchmodat2", 452, "files", _DFD, _PATH, ("mode", "perm"), ("flags", "at_flags")),
    _at("chown", 92, "files", _PATH, ("uid", "uid"), ("gid", "gid")),
    _at("lchown", 94, "files", _PATH, ("uid", "uid"), ("gid", "gid")),
    _at("fchown", 93, "files", _FD, ("uid", "uid"), ("gid", "gid")),
    _at("fchownat", 260, "files", _DFD, _PATH, ("uid", "uid"), ("gid", "gid"),
        ("flags", "at_flags")),
    _at("link", 86, "files", ("oldpath", "path"), ("newpath", "path")),
    _at("linkat", 265, "files", ("olddfd", "dirfd"), ("oldpath", "path"), ("newdfd", "dirfd"),
        ("newpath", "path"), ("flags", "at_flags")),
    # A symlink's target is text stored in the link, not a path resolved at the call.
    _at("symlink", 88, "files", ("target", "str"), ("linkpath", "path")),
    _at("symlinkat", 266, "files", ("target", "str"), ("newdfd", "dirfd"),
        ("linkpath", "path")),
    _at("truncate", 76, "files", _PATH, ("length", "long")),
    _at("ftruncate", 77, "files", _FD, ("length", "long")),
    _at("setxattr", 188, "files", _PATH, *_XATTR),
    _at("lsetxattr", 189, "files", _PATH, *_XATTR),
    _at("fsetxattr", 190, "files", _FD, *_XATTR),
    _at("setxattrat", 463, "files", _DFD, _PATH, ("at_flags", "at_flags"), ("name", "str"),
        ("uargs", "ptr"), ("usize", "size")),
    _at("chdir", 80, "files", _PATH),
    _at("fchdir", 81, "files", _FD),
    # ---- namespaces and mounts
    _at("unshare", 272, "mounts", ("flags", "clone_flags")),
    _at("setns", 308, "mounts", _FD, ("nstype", "clone_flags")),
    _at("mount", 165, "mounts", ("source", "path"), ("target", "path"), ("fstype", "str"),
        ("flags", "mount_flags"), ("data", "ptr"), paths=("target", "source"),
        note="fstype: at most 255 bytes; data (options) not copied"),
    _at("umount2", 166, "mounts", ("target", "path"), ("flags", "umount_flags"),
        tracepoint="umount", note="tracepoint sys_enter_umount"),
    _at("pivot_root", 155, "mounts", ("new_root", "path"), ("put_old", "path")),
    _at("chroot", 161, "mounts", _PATH),
    _at("fsopen", 430, "mounts", ("fsname", "str"), ("flags", "fsopen_flags")),
    _at("fsmount", 432, "mounts", ("fs_fd", "fd"), ("flags", "fsmount_flags"),
        ("attr_flags", "mount_attr")),
    _at("move_mount", 429, "mounts", ("from_dfd", "dirfd"), ("from_path", "path"),
        ("to_dfd", "dirfd"), ("to_path", "path"), ("flags", "move_mount_flags")),
    _at("open_tree", 428, "mounts", _DFD, _PATH, ("flags", "open_tree_flags")),
    _at("open_tree_attr", 467, "mounts", _DFD, _PATH, ("flags", "open_tree_flags"),
        ("attr", "ptr"), ("size", "size"), **_MOUNT_ATTR_RAW,
        note="struct mount_attr decoded"),
    _at("mount_setattr", 442, "mounts", _DFD, _PATH, ("flags", "at_flags"), ("attr", "ptr"),
        ("size", "size"), **_MOUNT_ATTR_RAW, note="struct mount_attr decoded"),
    # ---- privilege
    _at("setuid", 105, "privilege", ("uid", "uid")),
    _at("setgid", 106, "privilege", ("gid", "gid")),
    _at("setreuid", 113, "privilege", ("ruid", "uid"), ("euid", "uid")),
    _at("setregid", 114, "privilege", ("rgid", "gid"), ("egid", "gid")),
    _at("setresuid", 117, "privilege", ("ruid", "uid"), ("euid", "uid"), ("suid", "uid")),
    _at("setresgid", 119, "privilege", ("rgid", "gid"), ("egid", "gid"), ("sgid", "gid")),
    _at("setfsuid", 122, "privilege", ("uid", "uid")),
    _at("setfsgid", 123, "privilege", ("gid", "gid")),
    _at("capset", 126, "privilege", ("header", "ptr"), ("data", "ptr"), blob=BLOB_CAPSET,
        note="version, pid, effective/permitted/inheritable as CAP_* names"),
    # ---- kernel
    _at("init_module", 175, "kernel", ("image", "ptr"), ("len", "size"), ("params", "str")),
    _at("finit_module", 313, "kernel", _FD, ("params", "str"), ("flags", "finit_flags")),
    _at("delete_module", 176, "kernel", ("name", "str"), ("flags", "o_flags")),
    _at("bpf", 321, "kernel", ("cmd", "bpf_cmd"), ("attr", "ptr"), ("size", "uint"),
        blob=BLOB_RAW, blob_a=1, blob_size=4, raw=_bpf_raw,
        note="prog_type (PROG_LOAD) or map_type (MAP_CREATE)"),
    _at("perf_event_open", 298, "kernel", ("attr", "ptr"), ("pid", "pid"), ("cpu", "int"),
        ("group_fd", "fd"), ("flags", "perf_flags"), blob=BLOB_RAW, blob_a=0, blob_size=16,
        raw=_perf_raw, note="attr's type and config"),
    # ---- processes
    _at("ptrace", 101, "processes", ("request", "ptrace_request"), ("pid", "pid"),
        ("addr", "ulong"), ("data", "ulong")),
    _at("process_vm_readv", 310, "processes", ("pid", "pid"), ("local_iov", "ptr"),
        ("liovcnt", "ulong"), ("remote_iov", "ptr"), ("riovcnt", "ulong"), ("flags", "ulong")),
    _at("process_vm_writev", 311, "processes", ("pid", "pid"), ("local_iov", "ptr"),
        ("liovcnt", "ulong"), ("remote_iov", "ptr"), ("riovcnt", "ulong"), ("flags", "ulong")),
    _at("kill", 62, "processes", ("pid", "pid"), ("sig", "signal")),
    _at("tkill", 200, "processes", ("tid", "pid"), ("sig", "signal")),
    _at("tgkill", 234, "processes", ("tgid", "pid"), ("tid", "pid"), ("sig", "signal")),
    _at("pidfd_open", 434, "processes", ("pid", "pid"), ("flags", "pidfd_flags"),
        note="ret is the pidfd that pidfd_send_signal names"),
    _at("pidfd_send_signal", 424, "processes", ("pidfd", "fd"), ("sig", "signal"),
        ("info", "ptr"), ("flags", "pidfd_signal_flags")),
    _at("memfd_create", 319, "processes", ("name", "str"), ("flags", "memfd_flags")),
    _at("userfaultfd", 323, "processes", ("flags", "uffd_flags")),
    _at("keyctl", 250, "processes", ("op", "keyctl_op"), ("key", "int"), ("arg3", "ptr"),
        ("arg4", "ptr"), ("arg5", "ptr")),
    _at("io_uring_setup", 425, "processes", ("entries", "uint"), ("params", "ptr"),
        blob=BLOB_RAW, blob_a=1, blob_size=12, raw=_io_uring_raw,
        note="setup_flags from struct io_uring_params"),
    _at("ioctl", 16, "processes", _FD, ("cmd", "ioctl_cmd"), ("arg", "ptr"),
        filter=(1, 0xFFFFFFFF, TIOCSTI, TIOCLINUX), blob=BLOB_RAW, blob_a=2, blob_size=1,
        raw=_ioctl_raw,
        note="only TIOCSTI/TIOCLINUX (filtered in the kernel); the injected byte"),
    # ---- sockets
    _at("socket", 41, "sockets", ("family", "family"), ("type", "sock_type"),
        ("protocol", "int")),
    _at("socketpair", 53, "sockets", ("family", "family"), ("type", "sock_type"),
        ("protocol", "int"), ("sv", "ptr"), blob=BLOB_FDS_EXIT, blob_a=3,
        note="fds: the pair, read at exit"),
    _at("bind", 49, "sockets", _FD, ("addr", "ptr"), ("addrlen", "int"),
        blob=BLOB_SOCKADDR, blob_a=1, blob_b=2, note="address"),
    _at("listen", 50, "sockets", _FD, ("backlog", "int")),
    _at("accept", 43, "sockets", _FD, ("addr", "ptr"), ("addrlen", "ptr"),
        blob=BLOB_SOCKADDR_EXIT, blob_a=1, blob_b=2, note="peer address, read at exit"),
    _at("accept4", 288, "sockets", _FD, ("addr", "ptr"), ("addrlen", "ptr"),
        ("flags", "sock_flags"), blob=BLOB_SOCKADDR_EXIT, blob_a=1, blob_b=2,
        note="peer address, read at exit"),
    _at("sendto", 44, "sockets", _FD, ("buf", "ptr"), ("len", "size"),
        ("flags", "msg_flags"), ("addr", "ptr"), ("addrlen", "int"), blob=BLOB_SENDTO,
        note="destination; dns_query; without a destination only DNS-like sends"),
    _at("sendmsg", 46, "sockets", _FD, ("msg", "ptr"), ("flags", "msg_flags"),
        blob=BLOB_MSGHDR, note="destination; dns_query from iov[0]; as sendto"),
    _at("sendmmsg", 307, "sockets", _FD, ("msgvec", "ptr"), ("vlen", "uint"),
        ("flags", "msg_flags"), blob=BLOB_MSGHDR,
        note="the first message only (glibc's resolver sends A and AAAA this way)"),
    _at("dup", 32, "sockets", ("oldfd", "fd")),
    _at("dup2", 33, "sockets", ("oldfd", "fd"), ("newfd", "fd")),
    _at("dup3", 292, "sockets", ("oldfd", "fd"), ("newfd", "fd"), ("flags", "o_flags")),
    _at("fcntl", 72, "sockets", _FD, ("cmd", "fcntl_cmd"), ("arg", "long"),
        filter=(1, 0xFFFFFFFF, F_DUPFD, F_DUPFD_CLOEXEC),
        note="only F_DUPFD/F_DUPFD_CLOEXEC (filtered in the kernel)"),
)
BY_NAME = {s.name: s for s in SYSCALLS}
BY_NR = {s.nr: s for s in SYSCALLS}


def check_table(table: tuple[Syscall, ...] = SYSCALLS) -> None:
    """The table's own rules (tests/test_sys_decode.py runs it; a bad entry fails there,
    not in the kernel)."""
    names, nrs = set(), set()
    for s in table:
        assert s.name not in names and s.nr not in nrs, f"{s.name}: duplicate"
        names.add(s.name)
        nrs.add(s.nr)
        assert 0 <= s.nr < SPECS, f"{s.name}: nr {s.nr} past the kernel's spec array"
        assert len(s.args) <= 6, f"{s.name}: more than 6 arguments"
        for arg, kind in s.args:
            assert kind in KINDS or kind in STRING_KINDS or kind == "ptr", f"{s.name}.{arg}"
        assert len(s.strings) <= 3, f"{s.name}: at most 3 strings"
        argnames = [a for a, _ in s.args]
        assert len(set(argnames)) == len(argnames), f"{s.name}: duplicate argument"
        for p in s.path_args:
            assert p in argnames, f"{s.name}: path {p} is not an argument"
        for i in (s.blob_a, s.blob_b):
            assert i == NOARG or i < len(s.args), f"{s.name}: blob argument {i}"
        assert s.blob_size <= AW_SOCKADDR_MAX, f"{s.name}: blob_size"
        assert (s.blob == BLOB_RAW) == (s.raw is not None), f"{s.name}: raw decoder"
        if s.filter:
            assert s.filter[0] < len(s.args), f"{s.name}: filter argument"


# ------------------------------------------------------------------------------ DNS


def _label(raw: bytes) -> str:
    """One label as in zone files: '.' and '\\' escaped, other unprintables as \\DDD."""
    out = []
    for b in raw:
        if b in (0x2E, 0x5C):
            out.append("\\" + chr(b))
        elif 0x21 <= b <= 0x7E:
            out.append(chr(b))
        else:
            out.append(f"\\{b:03d}")
    return "".join(out)


def dns_name(msg: bytes, off: int) -> str | None:
    """The domain name at `off` of a DNS message, following compression pointers; None
    when it is truncated or malformed (never raises). No trailing dot; the root is "."."""
    labels: list[str] = []
    wire = 0   # bytes of the name on the wire, uncompressed: at most 255
    hops = 0
    end = len(msg)
    while True:
        if off < 0 or off >= end:
            return None
        n = msg[off]
        if n == 0:
            break
        if n & 0xC0 == 0xC0:          # compression pointer
            if off + 1 >= end or hops >= 16:
                return None
            target = ((n & 0x3F) << 8) | msg[off + 1]
            if target >= off:           # only backwards: no loops through the future
                return None
            off, hops = target, hops + 1
            continue
        if n & 0xC0:                    # 0x40/0x80: reserved label types
            return None
        if off + 1 + n > end:
            return None
        wire += n + 1
        if wire > 254:                  # 255 with the root label
            return None
        labels.append(_label(msg[off + 1:off + 1 + n]))
        off += 1 + n
    return ".".join(labels) if labels else "."


def _query_header(msg: bytes) -> bool:
    """A standard query's header: QR=0, opcode QUERY, one question, no answer or authority
    records (the test sys.bpf.c makes on sends without a destination)."""
    return len(msg) >= 12 and not msg[2] & 0xF8 and msg[4:10] == b"\0\1\0\0\0\0"


def dns_query(payload: bytes, size: int | None = None) -> str | None:
    """The first question's name of a DNS query as sent over UDP, or over TCP (2-byte
    length first; `size`, the bytes sent, tells the prefix apart). None if none is found."""
    try:
        if len(payload) >= 14 and (size is None or payload[0] << 8 | payload[1] == size - 2):
            msg = payload[2:]   # TCP first when the prefix is the length of what follows
            if _query_header(msg):
                name = dns_name(msg, 12)
                if name is not None:
                    return name
        if _query_header(payload):
            return dns_name(payload, 12)
    except Exception:  # noqa: BLE001 - bytes from a sandbox: never let them raise
        return None
    return None


# ------------------------------------------------------------------------------ decoding


@dataclass(frozen=True)
class _Plan:
    """A syscall's decoding, computed once."""

    name: str
    values: tuple[tuple[int, str, str, Callable[[int], Any]], ...]  # index, name, kind, fn
    slots: dict[int, int]          # argument index -> string slot
    path_args: tuple[str, ...]
    blob: int
    raw: RawDecoder | None


def _plan(s: Syscall) -> _Plan:
    values = tuple((i, n, k, KINDS.get(k, _id)) for i, (n, k) in enumerate(s.args)
                   if k != "ptr")
    return _Plan(s.name, values, {idx: slot for slot, idx in enumerate(s.strings)},
                 s.path_args, s.blob, s.raw)


_PLANS = {s.nr: _plan(s) for s in SYSCALLS}


def _path_bases(s: Syscall) -> tuple[tuple[str, str | None], ...]:
    """For each reported path argument: the dirfd argument it is relative to (the nearest
    one before it), or None for the cwd."""
    out: list[tuple[str, str | None]] = []
    for path_arg in s.path_args:
        dirfd = None
        for name, kind in s.args:
            if name == path_arg:
                break
            if kind == "dirfd":
                dirfd = name
        out.append((path_arg, dirfd))
    return tuple(out)


# syscall name -> for `path` and `path2` in that order: (argument, its dirfd argument or
# None for the cwd, whether a relative value is a filesystem path). mount's source is a
# device or filesystem name ("tmpfs") unless it is a bind or move source, so a relative
# source is not resolved.
PATH_BASES: dict[str, tuple[tuple[str, str | None, bool], ...]] = {
    s.name: tuple((p, d, (s.name, p) != ("mount", "source")) for p, d in _path_bases(s))
    for s in SYSCALLS
}


def _family_name(name: str) -> str:
    """decode_sockaddr names four families; name the others too."""
    if name[3:].isdigit():
        return ADDRESS_FAMILIES.get(int(name[3:]), name)
    return name


def decode_syscall(hdr: Header, data: bytes) -> Event:
    t = _SYS.unpack_from(data)
    ret, raw_args, nr, sf = t[12], t[13:19], t[19], t[20]
    lens, blob_len, sa_len, _addrlen, payload_len, payload_size = t[21:24], *t[24:29]
    tail = data[_TAIL:]
    strings: list[str | None] = []
    off = 0
    for n in lens:
        raw = tail[off:off + n]  # empty: no string (NULL, unreadable, or past the record)
        strings.append(text(raw.split(b"\0", 1)[0]) if raw else None)
        off += n
    off = min(off, STRS_MAX)
    blob = tail[off:off + blob_len]

    plan = _PLANS.get(nr)
    args: dict[str, Any] = {}
    if plan is None:  # a number user space did not ask for: raw arguments
        name = f"syscall_{nr}"
        args = {f"arg{i}": v for i, v in enumerate(raw_args)}
        path = path2 = None
    else:
        name = plan.name
        for i, arg, kind, fn in plan.values:
            if kind in STRING_KINDS:
                slot = plan.slots[i]
                args[arg] = strings[slot] if slot < len(strings) else None
                continue
            args[arg] = fn(raw_args[i])
            if kind == "perm":
                mode = args[arg]
                args["setuid"] = bool(mode & 0o4000)
                args["setgid"] = bool(mode & 0o2000)
        paths = [args.get(p) for p in plan.path_args] + [None, None]
        path, path2 = paths[0], paths[1]

    family = address = query = None
    port = None
    if plan is not None and blob:
        blob_kind = plan.blob
        if blob_kind in _SOCKADDR_BLOBS:
            if sa_len:
                fam, address, port = decode_sockaddr(blob[:sa_len], sa_len)
                family = _family_name(fam)
            if sf & SF_PAYLOAD:
                payload = blob[AW_SOCKADDR_MAX:AW_SOCKADDR_MAX + payload_len]
                query = dns_query(payload, payload_size)
        elif blob_kind == BLOB_CAPSET:
            _capset(args, blob)
        elif blob_kind == BLOB_FDS_EXIT and len(blob) >= 8:
            args["fds"] = list(struct.unpack_from("<ii", blob))
        elif blob_kind == BLOB_RAW and plan.raw is not None:
            plan.raw(args, blob)
    return SyscallEvent(
        **hdr, ret=ret, error=errno_name(ret), syscall=name, args=args, path=path,
        path2=path2, fault=bool(sf & (SF_STR_FAULT | SF_BLOB_FAULT)), family=family,
        address=address, port=port, dns_query=query, refused_at_entry=bool(sf & SF_NO_ENTRY),
    )


DECODERS = {AW_EV_SYSCALL: (SYSCALL, decode_syscall)}


# ------------------------------------------------------------------------------ attaching


@dataclass(frozen=True)
class AttachResult:
    """Which syscalls of the table the generic probe covers on this kernel."""

    attached: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()    # no syscalls:sys_{enter,exit}_X tracepoint here
    failed: dict[str, str] = field(default_factory=dict)  # tracepoint there, attach failed


def tracepoint_exists(tp: str) -> bool:
    base = kernel.TRACEFS / "events" / "syscalls"
    return (base / f"sys_enter_{tp}").is_dir() and (base / f"sys_exit_{tp}").is_dir()


def write_specs(bpf: Any, table: tuple[Syscall, ...] = SYSCALLS,
                enforce: dict[str, int] | None = None) -> None:
    """Fill the kernel's `sys_spec` array from the table."""
    specs = bpf[b"sys_spec"]
    for s in table:
        leaf = specs.Leaf()
        leaf.on = 1
        leaf.nargs = len(s.args)
        slots = list(s.strings) + [NOARG] * 3
        leaf.str0, leaf.str1, leaf.str2 = slots[:3]
        leaf.blob, leaf.blob_a, leaf.blob_b, leaf.blob_size = (s.blob, s.blob_a, s.blob_b,
                                                               s.blob_size)
        if s.filter:
            leaf.filter_arg, leaf.filter_mask, leaf.filter_v1, leaf.filter_v2 = s.filter
        else:
            leaf.filter_arg = NOARG
        leaf.enforce = enforce.get(s.name, 0) if enforce else 0
        specs[ctypes.c_int(s.nr)] = leaf


def set_enforce(bpf: Any, classes: dict[str, int],
                table: tuple[Syscall, ...] = SYSCALLS) -> None:
    """Which syscalls the kernel may kill for (name -> AW_SE_* class; others: never)."""
    specs = bpf[b"sys_spec"]
    for s in table:
        key = ctypes.c_int(s.nr)
        leaf = specs[key]
        if leaf.on and leaf.enforce != classes.get(s.name, 0):
            leaf.enforce = classes.get(s.name, 0)
            specs[key] = leaf


def install(bpf: Any, table: tuple[Syscall, ...] = SYSCALLS) -> AttachResult:
    """Write the table into the kernel, load the two programs (a verifier refusal raises)
    and attach them to every syscall of the table whose tracepoints exist."""
    from bcc import BPF  # late: unit tests do not need bcc

    write_specs(bpf, table)
    bpf.load_func(b"aw_sys_enter", BPF.TRACEPOINT)
    bpf.load_func(b"aw_sys_exit", BPF.TRACEPOINT)
    attached: list[str] = []
    missing: list[str] = []
    failed: dict[str, str] = {}
    for s in table:
        if not tracepoint_exists(s.tp):
            missing.append(s.name)
            continue
        enter = f"syscalls:sys_enter_{s.tp}".encode()
        try:
            bpf.attach_tracepoint(tp=enter, fn_name=b"aw_sys_enter")
        except Exception as e:  # noqa: BLE001 - BCC raises bare Exception
            failed[s.name] = str(e)
            continue
        try:
            bpf.attach_tracepoint(tp=f"syscalls:sys_exit_{s.tp}".encode(),
                                  fn_name=b"aw_sys_exit")
        except Exception as e:  # noqa: BLE001
            failed[s.name] = str(e)
            bpf.detach_tracepoint(tp=enter)
            continue
        attached.append(s.name)
    return AttachResult(tuple(attached), tuple(missing), failed)


def markdown_table(table: tuple[Syscall, ...] = SYSCALLS) -> str:
    """The covered syscalls as the Markdown table in docs/events.md (kept equal by a test)."""
    rows = ["| group | syscall | args | also |", "| --- | --- | --- | --- |"]
    for s in table:
        args = ", ".join(f"{n} ({k})" for n, k in s.args if k != "ptr")
        rows.append(f"| {s.group} | `{s.name}` | {args} | {s.note} |")
    return "\n".join(rows)
