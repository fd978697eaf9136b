"""Record layout, constants and kernel offsets of uring.bpf.c: io_uring operations
(decoded by collector/decode/uring.py).

The probe reads the request's fields after the kernel's prep (`struct io_kiocb` and the
per-op structs in its command area), so every offset comes from the running kernel's BTF
(probes/btf.py). Fields are grouped by what they serve; a group this kernel lacks is
compiled out (no -DAW_URING_<GROUP>) and its ops' records carry AW_UF_NO_BTF, which the
decoder reports, instead of reading at a guessed offset.
"""

from __future__ import annotations

from probes.layout import Layout

AW_EV_URING = 8
AW_PATH_MAX = 4096
AW_SOCKADDR_MAX = 128
AT_FDCWD = -100
INFLIGHT_MAX, PATHS_MAX = 4096, 1024  # AW_URING_INFLIGHT, AW_URING_PATHS

# aw_uring.uflags (AW_UF_* in uring.bpf.c)
UF_RESULT, UF_CQE_SKIP, UF_NO_SLOT, UF_STALE = 0x1, 0x2, 0x4, 0x8
UF_PREP_FAILED, UF_NO_BTF, UF_PATH_FAULT, UF_ADDR_FAULT = 0x10, 0x20, 0x40, 0x80
UF_HAS_ADDR, UF_USER_COPY, UF_HAS_PATH, UF_HAS_LEN = 0x100, 0x200, 0x400, 0x800
UF_NO_FD, UF_ADDR_RACE = 0x1000, 0x2000

URING = Layout.record("aw_uring", [
    ("res", "s64"), ("user_data", "u64"), ("req_flags", "u64"), ("ring", "u64"),
    ("op_flags", "u64"), ("mode", "u64"), ("resolve", "u64"), ("len", "u64"), ("count", "u64"),
    ("fd", "s32"), ("dfd", "s32"), ("file_slot", "u32"), ("ctid", "u32"), ("cpid", "u32"),
    ("uflags", "u32"), ("path_len", "u32"), ("addrlen", "u16"), ("opcode", "u8"),
    ("sq_thread", "u8"), ("addr", f"u8[{AW_SOCKADDR_MAX}]"),
], tail=("path", AW_PATH_MAX))

# IORING_OP_* (uapi/linux/io_uring.h, ABI): names without the prefix
OPS = (
    "NOP", "READV", "WRITEV", "FSYNC", "READ_FIXED", "WRITE_FIXED", "POLL_ADD",
    "POLL_REMOVE", "SYNC_FILE_RANGE", "SENDMSG", "RECVMSG", "TIMEOUT", "TIMEOUT_REMOVE",
    "ACCEPT", "ASYNC_CANCEL", "LINK_TIMEOUT", "CONNECT", "FALLOCATE", "OPENAT", "CLOSE",
    "FILES_UPDATE", "STATX", "READ", "WRITE", "FADVISE", "MADVISE", "SEND", "RECV",
    "OPENAT2", "EPOLL_CTL", "SPLICE", "PROVIDE_BUFFERS", "REMOVE_BUFFERS", "TEE",
    "SHUTDOWN", "RENAMEAT", "UNLINKAT", "MKDIRAT", "SYMLINKAT", "LINKAT", "MSG_RING",
    "FSETXATTR", "SETXATTR", "FGETXATTR", "GETXATTR", "SOCKET", "URING_CMD", "SEND_ZC",
    "SENDMSG_ZC", "READ_MULTISHOT", "WAITID", "FUTEX_WAIT", "FUTEX_WAKE", "FUTEX_WAITV",
    "FIXED_FD_INSTALL", "FTRUNCATE", "BIND", "LISTEN", "RECV_ZC", "EPOLL_WAIT",
    "READV_FIXED", "WRITEV_FIXED", "PIPE",
)
OP_NUMBERS = {name: nr for nr, name in enumerate(OPS)}
OPENS = {OP_NUMBERS["OPENAT"]: "openat", OP_NUMBERS["OPENAT2"]: "openat2"}
CONNECT = OP_NUMBERS["CONNECT"]
# the SEND family, as the syscall whose event it becomes
SENDS = {OP_NUMBERS["SEND"]: "sendto", OP_NUMBERS["SEND_ZC"]: "sendto",
         OP_NUMBERS["SENDMSG"]: "sendmsg", OP_NUMBERS["SENDMSG_ZC"]: "sendmsg"}
# Ops whose SQE fd names the file they act on (io_issue_defs[].needs_file in
# io_uring/opdef.c); for the others the request's fd field holds nothing of theirs.
NEEDS_FILE = frozenset(OP_NUMBERS[n] for n in (
    "READV", "WRITEV", "FSYNC", "READ_FIXED", "WRITE_FIXED", "POLL_ADD", "SYNC_FILE_RANGE",
    "SENDMSG", "RECVMSG", "ACCEPT", "CONNECT", "FALLOCATE", "READ", "WRITE", "FADVISE",
    "SEND", "RECV", "EPOLL_CTL", "SPLICE", "TEE", "SHUTDOWN", "MSG_RING", "FSETXATTR",
    "FGETXATTR", "URING_CMD", "SEND_ZC", "SENDMSG_ZC", "READ_MULTISHOT",
    "FIXED_FD_INSTALL", "FTRUNCATE", "BIND", "LISTEN", "RECV_ZC", "EPOLL_WAIT",
    "READV_FIXED", "WRITEV_FIXED",
))
# Ops with nothing a detector judges, cheap to repeat: counted per thread group and
# reported in steps (AW_URING_BULK in uring.bpf.c), so that a flood of them cannot fill
# the ring. Sends without a destination are treated alike in the kernel.
BULK = frozenset(OP_NUMBERS[n] for n in (
    "NOP", "READV", "WRITEV", "FSYNC", "READ_FIXED", "WRITE_FIXED", "POLL_ADD",
    "POLL_REMOVE", "SYNC_FILE_RANGE", "RECVMSG", "TIMEOUT", "TIMEOUT_REMOVE",
    "ASYNC_CANCEL", "LINK_TIMEOUT", "FALLOCATE", "CLOSE", "STATX", "READ", "WRITE",
    "FADVISE", "MADVISE", "RECV", "EPOLL_CTL", "SPLICE", "PROVIDE_BUFFERS",
    "REMOVE_BUFFERS", "TEE", "READ_MULTISHOT", "WAITID", "FUTEX_WAIT", "FUTEX_WAKE",
    "FUTEX_WAITV", "FTRUNCATE", "RECV_ZC", "EPOLL_WAIT", "READV_FIXED", "WRITEV_FIXED",
))
# IOSQE_* (the low byte of the request's flags, copied from the SQE)
SQE_FLAGS = ((0x1, "FIXED_FILE"), (0x2, "IO_DRAIN"), (0x4, "IO_LINK"), (0x8, "IO_HARDLINK"),
             (0x10, "ASYNC"), (0x20, "BUFFER_SELECT"), (0x40, "CQE_SKIP_SUCCESS"))
IOSQE_FIXED_FILE = 0x1


def op_name(opcode: int) -> str:
    return OPS[opcode] if opcode < len(OPS) else f"OP_{opcode}"


# The fields uring.bpf.c reads, by group: each resolved group becomes -DAW_URING_<GROUP>
# and its -DAW_OFF_<struct>__<member> defines (probes/btf.py's naming).
FIELD_GROUPS: dict[str, tuple[tuple[str, str], ...]] = {
    "REQ": (("io_kiocb", "cmd"), ("io_kiocb", "cqe.fd"), ("io_kiocb", "async_data")),
    "OPEN": (("io_open", "dfd"), ("io_open", "file_slot"), ("io_open", "filename"),
             ("io_open", "how.flags"), ("io_open", "how.mode"), ("io_open", "how.resolve"),
             ("filename", "name")),
    "NET": (("io_connect", "addr"), ("io_connect", "addr_len"), ("io_sr_msg", "len"),
            ("io_sr_msg", "msg_flags"),
            ("io_async_msghdr", "addr"), ("io_async_msghdr", "msg.msg_name"),
            ("io_async_msghdr", "msg.msg_namelen"),
            ("io_async_msghdr", "msg.msg_iter.count")),
    "RW": (("io_rw", "len"),),
}


def cflags() -> tuple[list[str], dict[str, str]]:
    """The defines for this kernel, and each group that could not be resolved with why
    (its ops' records say AW_UF_NO_BTF). A kernel without BTF gives no group at all."""
    from probes import btf

    try:
        types = btf.load()
    except btf.BTFError as e:
        return [], dict.fromkeys(FIELD_GROUPS, str(e))
    flags: list[str] = []
    missing: dict[str, str] = {}
    for group, fields in FIELD_GROUPS.items():
        try:
            defines = [f"-D{btf.define_name(s, m)}={types.offset(s, m)}" for s, m in fields]
        except btf.BTFError as e:
            missing[group] = str(e)
            continue
        flags += [*defines, f"-DAW_URING_{group}=1"]
    bulk = sum(1 << op for op in BULK if op < 64)
    return [*flags, f"-DAW_URING_BULK={bulk:#x}ULL"], missing
