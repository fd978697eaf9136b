"""32-bit syscalls (ia32: `int $0x80`, sysenter, 32-bit `syscall`) in native terms.

A 64-bit process on a kernel with CONFIG_IA32_EMULATION can make i386 syscalls: other
numbers, other argument registers (bx cx dx si di bp), 32-bit values. The
`syscalls:sys_enter_*` tracepoints never fire for them; the raw sys_enter tracepoint does,
with the i386 number. The dispatcher (probes/dispatch.bpf.c) maps each to the x86_64
syscall of the same meaning through the `compat_nr` array filled from `COMPAT_TO_NATIVE`,
so that every rule judges `open` whichever door it came through, and marks the event
compat. i386 calls with no native twin (the socketcall and ipc multiplexers, vm86, old
signal calls...) keep their i386 number, offset by COMPAT_BIT, and are reported as such.

socketcall(call, args) is taken apart in the kernel (its `call` gives the native socket
syscall, `args` points to six 32-bit words): SOCKETCALL below is that map.
"""

from __future__ import annotations

from probes.rules import VALUE
from probes.sysnames import I386, X86_64

ABI_NATIVE, ABI_IA32, ABI_X32 = (VALUE["AW_ABI_NATIVE"], VALUE["AW_ABI_IA32"],
                                 VALUE["AW_ABI_X32"])  # aw_call.abi
COMPAT_BIT = 0x8000           # nr | COMPAT_BIT: an i386 number with no native twin
NO_NATIVE = 0xFFFF            # compat_nr's value for "no native twin"
SOCKETCALL_NR = 102           # i386 socketcall

# i386 name -> x86_64 name where they differ but mean the same call (64-bit offsets,
# 32-bit uid variants, y2038 time64 variants, renamed calls)
ALIASES = {
    "_llseek": "lseek", "mmap2": "mmap", "stat64": "stat", "lstat64": "lstat",
    "fstat64": "fstat", "fstatat64": "newfstatat", "fcntl64": "fcntl",
    "truncate64": "truncate", "ftruncate64": "ftruncate", "sendfile64": "sendfile",
    "statfs64": "statfs", "fstatfs64": "fstatfs", "fadvise64_64": "fadvise64",
    "ugetrlimit": "getrlimit", "_newselect": "select", "umount": "umount2",
    "chown32": "chown", "lchown32": "lchown", "fchown32": "fchown",
    "getuid32": "getuid", "getgid32": "getgid", "geteuid32": "geteuid",
    "getegid32": "getegid", "setuid32": "setuid", "setgid32": "setgid",
    "setreuid32": "setreuid", "setregid32": "setregid", "setresuid32": "setresuid",
    "setresgid32": "setresgid", "getresuid32": "getresuid", "getresgid32": "getresgid",
    "setfsuid32": "setfsuid", "setfsgid32": "setfsgid", "getgroups32": "getgroups",
    "setgroups32": "setgroups",
    "clock_gettime64": "clock_gettime", "clock_settime64": "clock_settime",
    "clock_adjtime64": "clock_adjtime", "clock_getres_time64": "clock_getres",
    "clock_nanosleep_time64": "clock_nanosleep", "timer_gettime64": "timer_gettime",
    "timer_settime64": "timer_settime", "timerfd_gettime64": "timerfd_gettime",
    "timerfd_settime64": "timerfd_settime", "utimensat_time64": "utimensat",
    "pselect6_time64": "pselect6", "ppoll_time64": "ppoll",
    "io_pgetevents_time64": "io_pgetevents", "recvmmsg_time64": "recvmmsg",
    "mq_timedsend_time64": "mq_timedsend", "mq_timedreceive_time64": "mq_timedreceive",
    "semtimedop_time64": "semtimedop", "rt_sigtimedwait_time64": "rt_sigtimedwait",
    "futex_time64": "futex", "sched_rr_get_interval_time64": "sched_rr_get_interval",
}

_NATIVE_BY_NAME = {name: nr for nr, name in X86_64.items()}


def _native(name: str) -> int | None:
    return _NATIVE_BY_NAME.get(ALIASES.get(name, name))


# i386 number -> x86_64 number (only where one exists)
COMPAT_TO_NATIVE: dict[int, int] = {
    nr: native for nr, name in I386.items() if (native := _native(name)) is not None
}

# socketcall's `call` (linux/net.h SYS_*) -> the x86_64 socket syscall; send/recv are
# sendto/recvfrom without an address (their first four arguments are the same)
SOCKETCALL = {
    1: "socket", 2: "bind", 3: "connect", 4: "listen", 5: "accept", 6: "getsockname",
    7: "getpeername", 8: "socketpair", 9: "sendto", 10: "recvfrom", 11: "sendto",
    12: "recvfrom", 13: "shutdown", 14: "setsockopt", 15: "getsockopt", 16: "sendmsg",
    17: "recvmsg", 18: "accept4", 19: "recvmmsg", 20: "sendmmsg",
}
SOCKETCALL_NATIVE = {call: _NATIVE_BY_NAME[name] for call, name in SOCKETCALL.items()}


def name_of(nr: int, abi: int = ABI_NATIVE) -> str:
    """A reported syscall number's name: native, or an i386 one with COMPAT_BIT; with a
    32-bit `abi`, the door is named too (`ia32:open`, `x32:getpid`)."""
    if nr & COMPAT_BIT:
        return "ia32:" + I386.get(nr & ~COMPAT_BIT, f"syscall_{nr & ~COMPAT_BIT}")
    name = X86_64.get(nr, f"syscall_{nr}")
    if abi == ABI_IA32:
        return "ia32:" + name
    return "x32:" + name if abi == ABI_X32 else name
