"""The kernel rules' constants: the one source for C and Python.

The in-kernel enforcement (response/enforce.py writes it, the .bpf.c files check it) shares
numbers between C and Python: the `AW_EN_*` bits of the `config` map's enforce slot, the
`AW_SE_*` check a syscall's `sys_spec` entry names, the `AW_WHY_*` reason a kill carries in
its record's header (and the detector id user space reports it as), the `config` slots, and
the limits of the `deny_paths` and `protected` maps. They are defined here once;
`python -m probes.rules --write` generates probes/include/agentwatch_rules.h from them (the
header is checked in, included by agentwatch.h, and kept equal to this module's output by
tests/test_rules.py). Python takes the values from here (`VALUE`, `REASONS`).

A detector declares its kernel half by these names (detectors.base.KernelHalf: detectors
may not import probes); tests/test_rules.py checks every declaration against this module.
A new kernel rule is: its names here (a reason, and an enable bit or a check when it needs
one), its spec's `kernel`, and at most one C branch that tests them.

Nothing here imports the rest of the project except probes.linux (ptrace request numbers).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from probes.linux import PTRACE_REQUESTS

HEADER = Path(__file__).resolve().parent / "include" / "agentwatch_rules.h"


@dataclass(frozen=True)
class Const:
    name: str                   # the C name (AW_...), the same in Python
    value: int
    doc: str = ""
    hex: bool = False           # written as 0x... in C
    suffix: str = ""            # C literal suffix (ULL)
    # AW_SE_* and AW_EN_*: the AW_EN_* bit a check needs, the AW_WHY_* reasons it kills for
    enable: str = ""
    reasons: tuple[str, ...] = ()
    detector: str = ""          # AW_WHY_*: the detector id a kill is reported as


CONFIG = (
    Const("AW_CFG_ADOPT_LAUNCHERS", 0, "1: every exec of a launcher starts a session"),
    Const("AW_CFG_ENFORCE", 1, "AW_EN_*: what the kernel kills for (enforce mode)"),
    Const("AW_CFG_PIDNS_DEV", 2, "the host pid namespace's dev, for the ptrace and signal "
          "checks"),
    Const("AW_CFG_PIDNS_INO", 3, "its inode (0: no ptrace enforcement)"),
    Const("AW_CFG_FORK_MAX", 4, "AW_EN_FORKBOMB: live processes a session may have"),
    Const("AW_CFG_HEARTBEAT", 5, "boot ns of the ring reader's last poll (its heartbeat)"),
    Const("AW_CFG_FAIL_CLOSED", 6, "fail_closed: ns without a heartbeat after which no "
          "reader is assumed (0: off)"),
    Const("AW_CFG_HELD", 7, "fail_closed: how many times the kernel held (SIGSTOP) a "
          "process of a session begun with no reader; user space thaws them"),
    Const("AW_CFG_SLOTS", 8),
)

# fail_closed (aw_fail_closed in agentwatch.h): a process flag user space reads too
HOLD = (
    Const("AW_PF_HELD", 0x400, "its session began while no reader read the rings: stopped "
          "(SIGSTOP) at its syscalls until one does", hex=True),
)

# `detector`: the id user space reports the kernel's kill as (KILL_REASONS)
REASONS = (
    Const("AW_WHY_TAMPER", 1, detector="kernel_tamper"),
    Const("AW_WHY_NS", 2, detector="namespace_escape"),
    Const("AW_WHY_MOUNT", 3, detector="mount_escape"),
    Const("AW_WHY_PTRACE", 4, detector="process_injection"),
    Const("AW_WHY_CANARY", 5, detector="canary_touch"),
    Const("AW_WHY_RUNTIME_SOCKET", 6, detector="runtime_socket"),
    Const("AW_WHY_REVSHELL", 7, detector="reverse_shell"),
    Const("AW_WHY_MONITOR", 8, detector="monitor_tamper"),
    Const("AW_WHY_FORKBOMB", 9, detector="fork_bomb"),
    Const("AW_WHY_COMPAT", 10, detector="compat_syscall"),
    Const("AW_WHY_FORBIDDEN", 11, detector="forbidden_syscall"),
)

# `reasons`: what each bit's checks kill for (the C that tests it returns one of them)
ENABLE = (
    Const("AW_EN_TAMPER", 0x1, "bpf, perf_event_open, module calls", hex=True,
          reasons=("AW_WHY_TAMPER",)),
    Const("AW_EN_NS", 0x2, "setns; unshare/clone of new namespaces (not by exempt comms)",
          hex=True, reasons=("AW_WHY_NS",)),
    Const("AW_EN_MOUNT", 0x4, "mount family, pivot_root, chroot (mount/umount2: not exempt)",
          hex=True, reasons=("AW_WHY_MOUNT",)),
    Const("AW_EN_PTRACE", 0x8, "ptrace attach/poke, process_vm_*: of a process outside",
          hex=True, reasons=("AW_WHY_PTRACE",)),
    Const("AW_EN_PATHS", 0x10, "opens and unix connects of `deny_paths` (literal, absolute; "
          "at an open's exit also its resolved path) and opens of a `deny_inodes` file",
          hex=True, reasons=("AW_WHY_CANARY", "AW_WHY_RUNTIME_SOCKET", "AW_WHY_MONITOR")),
    Const("AW_EN_REVSHELL", 0x20, "an inet socket placed on fd 0, 1 or 2: dup'ed there, "
          "made there by socket()/accept() (`inet_fds`), or found there at exec",
          hex=True, reasons=("AW_WHY_REVSHELL",)),
    Const("AW_EN_MONITOR", 0x40, "a signal (kill, tkill, tgkill; kill(-1)) or pidfd_open "
          "aimed at a `protected` pid (agentwatch), by a host-pid-ns caller", hex=True,
          reasons=("AW_WHY_MONITOR",)),
    Const("AW_EN_FORKBOMB", 0x80, "a fork that takes its session past AW_CFG_FORK_MAX live "
          "processes: the forking process (its new child is killed with the rest of the "
          "tree by user space)", hex=True, reasons=("AW_WHY_FORKBOMB",)),
    Const("AW_EN_COMPAT", 0x100, "any 32-bit (ia32 or x32) syscall, at its entry", hex=True,
          reasons=("AW_WHY_COMPAT",)),
    Const("AW_EN_FORBIDDEN", 0x200, "the calls marked AW_SE_FORBIDDEN: never in a sandbox",
          hex=True, reasons=("AW_WHY_FORBIDDEN",)),
)

# A syscall's `sys_spec` entry names its check (0: never killed); `enable`, `reasons`:
# the bit it is under and what it kills for (aw_sys_enforce in sys.bpf.c)
CHECKS = (
    Const("AW_SE_TAMPER", 1, "any call", enable="AW_EN_TAMPER", reasons=("AW_WHY_TAMPER",)),
    Const("AW_SE_NS_JOIN", 2, "setns", enable="AW_EN_NS", reasons=("AW_WHY_NS",)),
    Const("AW_SE_NS_NEW", 3, "unshare with new-namespace flags in arg 0, not exempt",
          enable="AW_EN_NS", reasons=("AW_WHY_NS",)),
    Const("AW_SE_MOUNT", 4, "any call", enable="AW_EN_MOUNT", reasons=("AW_WHY_MOUNT",)),
    Const("AW_SE_MOUNT_EXEMPT", 5, "mount, umount2: not by an exempt process",
          enable="AW_EN_MOUNT", reasons=("AW_WHY_MOUNT",)),
    Const("AW_SE_PTRACE", 6, "ptrace: request in arg 0 (AW_PTRACE_KILLS), target in arg 1",
          enable="AW_EN_PTRACE", reasons=("AW_WHY_PTRACE",)),
    Const("AW_SE_PROCESS_VM", 7, "process_vm_readv/writev: target pid in arg 0",
          enable="AW_EN_PTRACE", reasons=("AW_WHY_PTRACE",)),
    Const("AW_SE_SIGNAL", 8, "kill, tkill (target arg 0, signal arg 1), tgkill (tgid arg 0, "
          "signal arg 2), pidfd_open (pid arg 0): of a protected pid",
          enable="AW_EN_MONITOR", reasons=("AW_WHY_MONITOR",)),
    Const("AW_SE_FORBIDDEN", 9, "any call (the never-in-a-sandbox set)",
          enable="AW_EN_FORBIDDEN", reasons=("AW_WHY_FORBIDDEN",)),
    Const("AW_SE_FD_STEAL", 10, "pidfd_getfd, process_madvise: any call (their target is a "
          "pidfd, which the kernel rule cannot name)", enable="AW_EN_PTRACE",
          reasons=("AW_WHY_PTRACE",)),
)

# The dispatcher's routes (probes/dispatch.bpf.c): what `sys_route[nr]` sends a watched
# task's syscall to (a tail call into the prog arrays `enter_routes`/`exit_routes`)
ROUTES = (
    Const("AW_RT_QUIET", 0, "routine calls (read, mmap, futex...): nothing to record"),
    Const("AW_RT_OTHER", 1, "outside the table: the first use per session is an event"),
    Const("AW_RT_SYS", 2, "the generic probe's table (sys_spec), and every killed compat call"),
    Const("AW_RT_OPEN", 3, "open, openat, openat2"),
    Const("AW_RT_EXEC", 4, "execve, execveat"),
    Const("AW_RT_FORK", 5, "clone, clone3, fork, vfork"),
    Const("AW_RT_EXIT", 6, "exit, exit_group"),
    Const("AW_RT_CONNECT", 7, "connect"),
    Const("AW_RT_CLOSE", 8, "close, close_range: only while the reverse-shell rule is on"),
    Const("AW_RT_OPEN_FILTER", 9, "exit_routes only: the open's interest filter, tail-called "
          "by the open's exit (file.bpf.c, include/aw_interest.h)"),
    Const("AW_RT_SLOTS", 10),
)

# aw_call.abi: the door a syscall came through (include/aw_dispatch.h sets it)
ABIS = (
    Const("AW_ABI_NATIVE", 0, "64-bit `syscall`"),
    Const("AW_ABI_IA32", 1, "ia32: int $0x80, sysenter, 32-bit `syscall` (TS_COMPAT)"),
    Const("AW_ABI_X32", 2, "x32: 64-bit `syscall` with __X32_SYSCALL_BIT"),
)

LIMITS = (
    Const("AW_DENY_DIR", 0x100, "deny_paths value flag: the entry covers everything below it",
          hex=True),
    Const("AW_DENY_LIST", 0x200, "deny_paths/deny_inodes value flag: a read-only open of a "
          "directory there is a listing, not denied (monitor_tamper's bpffs walk)", hex=True),
    Const("AW_HASH_MAX", 256, "deny_paths: longer paths are left to user space"),
    Const("AW_DENY_INODES_MAX", 4096, "deny_inodes: (dev, inode) of the denied files, and "
          "of the files below denied directories (response/enforce.py, deny_inodes)"),
    Const("AW_PROTECTED_MAX", 256, "`protected`: agentwatch's pids and thread ids"),
    Const("AW_FNV_OFFSET", 0xCBF29CE484222325, hex=True, suffix="ULL"),
    Const("AW_FNV_PRIME", 0x100000001B3, hex=True, suffix="ULL"),
)

# The ptrace requests AW_SE_PTRACE kills for (take control, or write): a detector that
# asks the kernel to kill for ptrace must flag all of them in user space too.
PTRACE_KILLS = ("PTRACE_POKETEXT", "PTRACE_POKEDATA", "PTRACE_POKEUSER", "PTRACE_SETREGS",
                "PTRACE_SETFPREGS", "PTRACE_ATTACH", "PTRACE_SETREGSET", "PTRACE_SEIZE")

GROUPS = (("Configuration slots (array map `config`), written by user space.", CONFIG),
          ("Why the kernel killed (AW_HF_KILLED's reason, a `deny_paths` value's low byte; "
           "user space maps it to a detector id).", REASONS),
          ("In-kernel enforcement bits (AW_CFG_ENFORCE): a watched process past its "
           "sandbox's setup that makes one of these calls gets SIGKILL from bpf_send_signal "
           "at the syscall's entry. The call itself still runs (a tracepoint cannot stop it) "
           "but the process never returns to user space; the record goes to the `enforced` "
           "ring, which ordinary events cannot fill.", ENABLE),
          ("Enforcement checks (aw_sys_spec.enforce), each under an AW_EN_* bit.", CHECKS),
          ("Map limits and the path hash (deny_paths: FNV-1a 64).", LIMITS),
          ("Syscall routes of the raw sys_enter/sys_exit dispatcher.", ROUTES),
          ("Syscall ABIs (aw_call.abi).", ABIS),
          ("fail_closed: while no reader reads the rings, new sessions' processes are "
           "held.", HOLD))

ALL = tuple(c for _doc, group in GROUPS for c in group)
BY_NAME = {c.name: c for c in ALL}
VALUE = {c.name: c.value for c in ALL}
# AW_WHY_* code -> the detector id its kill is reported as
KILL_REASONS = {c.value: c.detector for c in REASONS}


def _literal(c: Const) -> str:
    return (f"0x{c.value:x}" if c.hex else str(c.value)) + c.suffix


def _comment(text: str, indent: str = "") -> list[str]:
    """A C block comment wrapped at 92 columns."""
    words, lines, line = text.split(), [], ""
    for w in words:
        if line and len(indent) + 3 + len(line) + 1 + len(w) > 89:
            lines.append(line)
            line = w
        else:
            line = f"{line} {w}" if line else w
    lines.append(line)
    if len(lines) == 1:
        return [f"{indent}/* {lines[0]} */"]
    return ([f"{indent}/* {lines[0]}"] + [f"{indent} * {x}" for x in lines[1:]]
            + [f"{indent} */"])


def header() -> str:
    """The text of probes/include/agentwatch_rules.h."""
    out = ["/* agentwatch_rules.h: generated by `python -m probes.rules --write` from",
           " * probes/rules.py, do not edit (tests/test_rules.py checks it). */",
           "#ifndef AGENTWATCH_RULES_H", "#define AGENTWATCH_RULES_H", ""]
    for doc, group in GROUPS:
        out += _comment(doc)
        for c in group:
            if c.doc:
                out += _comment(c.doc)
            out.append(f"#define {c.name} {_literal(c)}")
        out.append("")
    numbers = {name: nr for nr, name in PTRACE_REQUESTS.items()}
    out += _comment("Is ptrace request `req` one AW_SE_PTRACE kills for? (" +
                    " ".join(r.removeprefix("PTRACE_") for r in PTRACE_KILLS) + ")")
    tests = [f"(req) == {numbers[r]:#x}" if numbers[r] > 0xff else f"(req) == {numbers[r]}"
             for r in PTRACE_KILLS]
    out.append("#define AW_PTRACE_KILLS(req) \\")
    for i in range(0, len(tests), 4):
        last = i + 4 >= len(tests)
        text = " || ".join(tests[i:i + 4])
        out.append("    " + ("(" if i == 0 else " ") + text + (")" if last else " || \\"))
    out += ["", "#endif /* AGENTWATCH_RULES_H */", ""]
    return "\n".join(out)


def main(argv: list[str]) -> int:
    if argv == ["--write"]:
        HEADER.write_text(header())
        return 0
    if argv:
        print("usage: python -m probes.rules [--write]", file=sys.stderr)
        return 2
    sys.stdout.write(header())
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
