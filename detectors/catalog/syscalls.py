"""Detectors of syscall doors rather than acts: 32-bit syscalls, and the calls no agent in
a sandbox makes. The sensor sees every syscall number through one raw tracepoint pair
(probes/dispatch.bpf.c), so these judge the door itself, whatever the call would do.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from collector.events import Event, SyscallEvent
from detectors.base import (
    Context,
    Detector,
    DetectorSpec,
    Finding,
    KernelCall,
    KernelHalf,
    ReadInterest,
    register,
)
from detectors.catalog.common import after_setup, outcome
from detectors.openroute import OpenInterest

# Never in a sandbox: each one either reaches past the sandbox's file system (file
# handles open any file of a mounted file system by inode number, with
# CAP_DAC_READ_SEARCH, which bubblewrap run as root keeps), changes the whole host (swap,
# accounting, the clock, reboot, raw I/O ports, hanging up terminals), or is an exploit's
# favourite kernel surface that container runtimes' default seccomp profiles refuse
# (io_uring_setup). Kernel modules, kexec, bpf and perf_event_open are kernel_tamper's.
FORBIDDEN = ["name_to_handle_at", "open_by_handle_at", "io_uring_setup", "iopl", "ioperm",
             "reboot", "swapon", "swapoff", "acct", "settimeofday", "clock_settime",
             "vhangup"]


@register
class CompatSyscall(Detector):
    """A 32-bit syscall (ia32 `int $0x80` or sysenter, or x32) by a 64-bit sandbox. The
    sensor maps each to its native meaning, so every other detector judges it too; this
    one flags the door: an agent has no business there, and 32-bit doors are where
    monitors and seccomp filters that list only native numbers go blind. In enforce mode
    the kernel kills at the first such call. A sandbox that runs 32-bit programs on
    purpose sets the action to alert or adds an exception for them."""

    spec = DetectorSpec(
        id="compat_syscall",
        kinds=frozenset({"syscall", "open", "exec", "fork", "connect"}),
        reads=ReadInterest(),
        title="32-bit Syscall From The Sandbox",
        description="a syscall made through the ia32 or x32 entry (int 0x80, sysenter), "
                    "which per-number allowlists of 64-bit calls do not cover",
        severity="high",
        action="kill",
        mitre=("T1562.001", "T1211"),
        not_flagged=(
            "64-bit calls: every other detector judges them; 32-bit calls are also judged by "
            "them, as their native twins",
            "bubblewrap's setup phase (the launcher is trusted until it execs the payload)",
        ),
        output="32-bit {syscall} by {comm}",
        kernel=KernelHalf(reason="AW_WHY_COMPAT", enable="AW_EN_COMPAT"),
    )

    def open_interest(self, params: dict[str, Any]) -> OpenInterest:
        # 32-bit calls only
        return OpenInterest(compat=True)

    def check(self, ctx: Context, ev: Event) -> Iterable[Finding]:
        if not ev.compat or not after_setup(ev):
            return
        syscall = getattr(ev, "syscall", None) or ev.kind
        yield Finding(key=f"compat:{syscall}", fields={
            "syscall": syscall, "comm": ev.comm, **outcome(ev)})


@register
class ForbiddenSyscall(Detector):
    """A call from the never-in-a-sandbox set (`calls`): file handles
    (name_to_handle_at, open_by_handle_at), io_uring_setup, raw I/O ports (iopl, ioperm),
    reboot, swap, process accounting, setting the clock, vhangup. Each is killed at its
    entry in enforce mode; refused attempts count too (the wall held, but the payload was
    looking for a door)."""

    spec = DetectorSpec(
        id="forbidden_syscall",
        kinds=frozenset({"syscall"}),
        title="Syscall No Sandbox Needs",
        description="file handle calls, io_uring_setup, iopl/ioperm, reboot, swapon/off, "
                    "acct, settimeofday/clock_settime or vhangup from a sandbox",
        severity="critical",
        action="kill",
        mitre=("T1611", "T1068"),
        not_flagged=(
            "calls outside `calls`, even rare ones: they are reported at their first use "
            "(`first_use` events) and counted at session end, not alerted, because runtimes use "
            "odd calls legitimately",
        ),
        output="{syscall} by {comm}",
        params={"calls": list(FORBIDDEN)},
        kernel=KernelHalf(
            reason="AW_WHY_FORBIDDEN", enable="AW_EN_FORBIDDEN", needs_call=True,
            calls=tuple(KernelCall(c, "AW_SE_FORBIDDEN", listed_in="calls")
                        for c in FORBIDDEN)),
    )

    def check(self, ctx: Context, ev: Event) -> Iterable[Finding]:
        if not isinstance(ev, SyscallEvent) or not after_setup(ev):
            return
        if ev.syscall in ctx.params["calls"]:
            fields = {"syscall": ev.syscall, "comm": ev.comm, **outcome(ev)}
            if "handle_ino" in ev.args:
                fields["handle_ino"] = ev.args["handle_ino"]
            yield Finding(key=ev.syscall, fields=fields)
