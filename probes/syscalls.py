"""The generic syscall probe's table (sys.bpf.c): what it reports for each syscall.

`SYSCALLS` is the single source of truth for what the generic probe pair reports: each
entry names a syscall, its x86_64 number, its arguments with the kind that says how to
decode each one (probes/linux.py), and what else the kernel copies (a "blob": a socket
address, the first bytes of a send, capset's data, a small struct) or filters on.
probes/sysprobe.py writes it into the kernel's `sys_spec` map and attaches the probe;
collector/decode/syscall.py decodes its records.

Syscall numbers are written down from the kernel's arch/x86/entry/syscalls/syscall_64.tbl
rather than read from headers at run time: they are ABI, and the hosts that run
agentwatch need not have headers of their kernel. The root tests make every listed call
and find its event, which would catch a wrong number.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from probes.layout import Layout
from probes.linux import (
    F_DUPFD,
    F_DUPFD_CLOEXEC,
    F_SETOWN,
    F_SETOWN_EX,
    FIOSETOWN,
    KINDS,
    SIOCSPGRP,
    STRING_KINDS,
    TIOCLINUX,
    TIOCSTI,
    RawDecoder,
    bpf_raw,
    file_handle_raw,
    io_uring_raw,
    ioctl_raw,
    mount_attr_raw,
    perf_raw,
)
from probes.sysnames import X86_64

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
BLOB_SOCKWRITE, BLOB_SOCKWRITEV = 8, 9   # write/writev on a socket (include/aw_sockw.h)
SOCKADDR_BLOBS = (BLOB_SOCKADDR, BLOB_SOCKADDR_EXIT, BLOB_SENDTO, BLOB_MSGHDR,
                  BLOB_SOCKWRITE, BLOB_SOCKWRITEV)
# aw_sys.sys_flags
SF_STR_FAULT, SF_BLOB_FAULT, SF_PAYLOAD, SF_NO_ENTRY, SF_FIRST_USE = 0x1, 0x2, 0x4, 0x8, 0x10
SF_SECCOMP_KILLED = 0x20
SF_FD_FILE, SF_FD_SOCKET, SF_FD_UNIX = 0x40, 0x80, 0x100  # dup family: the new fd, read

SYSCALL = Layout.record("aw_sys", [
    ("ret", "s64"),
    ("arg0", "u64"), ("arg1", "u64"), ("arg2", "u64"), ("arg3", "u64"), ("arg4", "u64"),
    ("arg5", "u64"),
    ("nr", "u32"), ("sys_flags", "u32"),
    ("str0_len", "u32"), ("str1_len", "u32"), ("str2_len", "u32"), ("blob_len", "u32"),
    ("sa_len", "u32"), ("addrlen", "u32"), ("payload_len", "u32"), ("payload_size", "u32"),
], tail=("data", DATA_SIZE))

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
    # (arg, mask, v1[, v2, v3, v4]): reported only if (arg & mask) is one of the values
    filter: tuple[int, ...] | None = None
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
_MOUNT_ATTR_RAW = dict(blob=BLOB_RAW, blob_a=3, blob_size=32, raw=mount_attr_raw)

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
    # A file handle opens a file by (inode, generation) through any mount of its file
    # system: with CAP_DAC_READ_SEARCH, files the caller's mount namespace cannot name.
    _at("name_to_handle_at", 303, "files", _DFD, _PATH, ("handle", "ptr"),
        ("mount_id", "ptr"), ("flags", "at_flags")),
    _at("open_by_handle_at", 304, "files", ("mount_fd", "fd"), ("handle", "ptr"),
        ("flags", "o_flags"), blob=BLOB_RAW, blob_a=1, blob_size=16, raw=file_handle_raw,
        note="the handle's type, and its inode and generation"),
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
        blob=BLOB_RAW, blob_a=1, blob_size=4, raw=bpf_raw,
        note="prog_type (PROG_LOAD) or map_type (MAP_CREATE)"),
    _at("kexec_load", 246, "kernel", ("entry", "ulong"), ("nr_segments", "ulong"),
        ("segments", "ptr"), ("flags", "ulong")),
    _at("kexec_file_load", 320, "kernel", ("kernel_fd", "fd"), ("initrd_fd", "fd"),
        ("cmdline_len", "ulong"), ("cmdline", "str"), ("flags", "ulong")),
    _at("iopl", 172, "kernel", ("level", "int")),
    _at("ioperm", 173, "kernel", ("from", "ulong"), ("num", "ulong"), ("on", "int")),
    _at("reboot", 169, "kernel", ("magic1", "uint"), ("magic2", "uint"), ("cmd", "uint"),
        ("arg", "ptr")),
    _at("swapon", 167, "kernel", _PATH, ("flags", "int")),
    _at("swapoff", 168, "kernel", _PATH),
    _at("acct", 163, "kernel", _PATH),
    _at("settimeofday", 164, "kernel", ("tv", "ptr"), ("tz", "ptr")),
    _at("clock_settime", 227, "kernel", ("clockid", "int"), ("tp", "ptr")),
    _at("vhangup", 153, "kernel"),
    _at("perf_event_open", 298, "kernel", ("attr", "ptr"), ("pid", "pid"), ("cpu", "int"),
        ("group_fd", "fd"), ("flags", "perf_flags"), blob=BLOB_RAW, blob_a=0, blob_size=16,
        raw=perf_raw, note="attr's type and config"),
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
    _at("rt_sigqueueinfo", 129, "processes", ("tgid", "pid"), ("sig", "signal"),
        ("info", "ptr")),
    _at("rt_tgsigqueueinfo", 297, "processes", ("tgid", "pid"), ("tid", "pid"),
        ("sig", "signal"), ("info", "ptr")),
    _at("pidfd_getfd", 438, "processes", ("pidfd", "fd"), ("targetfd", "int"),
        ("flags", "uint"), note="a copy of another process's fd"),
    _at("process_madvise", 440, "processes", ("pidfd", "fd"), ("vec", "ptr"),
        ("vlen", "ulong"), ("advice", "int"), ("flags", "uint")),
    _at("pidfd_send_signal", 424, "processes", ("pidfd", "fd"), ("sig", "signal"),
        ("info", "ptr"), ("flags", "pidfd_signal_flags")),
    _at("memfd_create", 319, "processes", ("name", "str"), ("flags", "memfd_flags")),
    _at("userfaultfd", 323, "processes", ("flags", "uffd_flags")),
    _at("keyctl", 250, "processes", ("op", "keyctl_op"), ("key", "int"), ("arg3", "ptr"),
        ("arg4", "ptr"), ("arg5", "ptr")),
    _at("io_uring_setup", 425, "processes", ("entries", "uint"), ("params", "ptr"),
        blob=BLOB_RAW, blob_a=1, blob_size=12, raw=io_uring_raw,
        note="setup_flags from struct io_uring_params"),
    _at("ioctl", 16, "processes", _FD, ("cmd", "ioctl_cmd"), ("arg", "ptr"),
        filter=(1, 0xFFFFFFFF, TIOCSTI, TIOCLINUX, FIOSETOWN, SIOCSPGRP), blob=BLOB_RAW,
        blob_a=2, blob_size=4, raw=ioctl_raw,
        note="only TIOCSTI/TIOCLINUX (the injected byte) and FIOSETOWN/SIOCSPGRP (the "
             "signal owner), filtered in the kernel"),
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
        filter=(1, 0xFFFFFFFF, F_DUPFD, F_DUPFD_CLOEXEC, F_SETOWN, F_SETOWN_EX),
        note="only F_DUPFD/F_DUPFD_CLOEXEC and F_SETOWN/F_SETOWN_EX (filtered in the "
             "kernel)"),
)
BY_NAME = {s.name: s for s in SYSCALLS}
# Quiet calls the generic probe takes only for processes flagged AW_PF_SOCKW (a connect
# that matters: include/aw_sockw.h), and only on sockets: their specs are written into
# `sys_spec`, their numbers stay quiet in `sys_route`.
SOCKET_WRITES: tuple[Syscall, ...] = (
    _at("write", 1, "sockets", _FD, ("buf", "ptr"), ("count", "size"), blob=BLOB_SOCKWRITE,
        note="on a socket, by a process that connected outside loopback, to port 53 or to "
             "a unix peer outside its session: DNS queries, others at most once a second "
             "per fd unless the session opened a file since; the socket's inet peer"),
    _at("writev", 20, "sockets", _FD, ("iov", "ptr"), ("iovcnt", "int"),
        blob=BLOB_SOCKWRITEV, note="as write, from iov[0]"),
)
# The opens have a probe and record of their own (file.bpf.c); a generic record carries one
# only when a seccomp filter killed the caller at it (seccomp_killed), decoded with these.
OPEN_CALLS: tuple[Syscall, ...] = (
    _at("open", 2, "files", _PATH, ("flags", "o_flags"), ("mode", "mode")),
    _at("openat", 257, "files", _DFD, _PATH, ("flags", "o_flags"), ("mode", "mode")),
    _at("openat2", 437, "files", _DFD, _PATH, ("how", "ptr"), ("size", "size")),
)

# Routine calls the dispatcher does not report (AW_RT_QUIET): reading and writing open
# files, memory, time, waiting, signals' own handling, identity queries. A number in
# neither list nor any probe's own route is reported at its first use by each session
# (AW_RT_OTHER), and a 32-bit call is never quiet.
QUIET = frozenset({
    "read", "write", "pread64", "pwrite64", "readv", "writev", "preadv", "pwritev",
    "preadv2", "pwritev2", "close", "close_range", "lseek", "stat", "fstat", "lstat",
    "newfstatat", "statx", "statfs", "fstatfs", "access", "faccessat", "faccessat2",
    "readlink", "readlinkat", "getdents64", "getdents", "getcwd", "poll", "ppoll", "select",
    "pselect6", "epoll_create", "epoll_create1", "epoll_ctl", "epoll_wait", "epoll_pwait",
    "epoll_pwait2", "mmap", "mprotect", "munmap", "mremap", "madvise", "brk", "msync",
    "mincore", "mlock", "munlock", "rt_sigaction", "rt_sigprocmask", "rt_sigreturn",
    "rt_sigsuspend", "rt_sigtimedwait", "rt_sigpending", "sigaltstack", "pipe", "pipe2",
    "sched_yield", "sched_getaffinity", "sched_setaffinity", "sched_getparam",
    "sched_getscheduler", "sched_get_priority_max", "sched_get_priority_min", "nanosleep",
    "clock_nanosleep", "clock_gettime", "clock_getres", "gettimeofday", "time", "getitimer",
    "setitimer", "alarm", "timer_create", "timer_settime", "timer_gettime", "timer_delete",
    "timerfd_create", "timerfd_settime", "timerfd_gettime", "getpid", "gettid", "getppid",
    "getuid", "geteuid", "getgid", "getegid", "getresuid", "getresgid", "getgroups",
    "getpgrp", "getpgid", "getsid", "setpgid", "setsid", "getpriority", "setpriority",
    "getrlimit", "setrlimit", "prlimit64", "getrusage", "times", "sysinfo", "uname",
    "umask", "futex", "futex_waitv", "set_robust_list", "get_robust_list",
    "set_tid_address", "rseq", "arch_prctl", "prctl", "getrandom", "wait4", "waitid",
    "pause", "fsync", "fdatasync", "sync_file_range", "flock", "fadvise64", "readahead",
    "fallocate", "sendfile", "copy_file_range", "splice", "tee", "vmsplice",
    "eventfd", "eventfd2", "signalfd", "signalfd4", "inotify_init", "inotify_init1",
    "inotify_add_watch", "inotify_rm_watch", "fanotify_mark", "getsockname", "getpeername",
    "getsockopt", "setsockopt", "recvfrom", "recvmsg", "recvmmsg", "shutdown", "utime",
    "utimes", "utimensat", "futimesat", "getxattr", "lgetxattr", "fgetxattr", "listxattr",
    "llistxattr", "flistxattr", "getxattrat", "listxattrat", "membarrier", "capget",
    "get_mempolicy", "getcpu", "ioprio_get", "sched_getattr", "statmount", "listmount",
    "cachestat", "map_shadow_stack", "futex_wake", "futex_wait", "futex_requeue",
    "restart_syscall", "io_uring_enter", "memfd_secret", "mseal", "personality",
    "sched_rr_get_interval", "lsm_get_self_attr", "lsm_list_modules", "file_getattr",
})
QUIET_NRS = tuple(nr for nr, name in X86_64.items() if name in QUIET)
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
            assert 3 <= len(s.filter) <= 6, f"{s.name}: filter of 1 to 4 values"
        assert s.name not in QUIET and X86_64.get(s.nr) == s.name, f"{s.name}: nr"


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
