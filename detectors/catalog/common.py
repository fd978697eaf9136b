"""Helpers the catalogue's families share: a call's outcome, the setup-phase test, the
acting process's executable, /proc/<pid>/root paths, write intent, IP addresses against
CIDR lists, and the syscall and ptrace lists that a detector's parameters and its kernel
half (response/enforce.py) both use. Pure functions: no I/O.
"""

from __future__ import annotations

import ipaddress
import re
from functools import lru_cache
from typing import Any

from collector.events import Event, ExecEvent, ForkEvent, OpenEvent
from detectors.base import Context

IPNet = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddr = ipaddress.IPv4Address | ipaddress.IPv6Address

# The mount family, pivot_root and chroot (mount_escape's `syscalls`; in the kernel,
# mount and umount2 spare exempt processes, the others do not).
MOUNT_SYSCALLS = ["mount", "umount2", "move_mount", "fsopen", "fsmount", "open_tree",
                  "open_tree_attr", "mount_setattr", "pivot_root", "chroot"]
# ptrace requests that take control of a process or write to it (process_injection's
# `ptrace_requests`; the kernel kills for these same ones: probes/rules.py PTRACE_KILLS).
PTRACE_WRITES = ["PTRACE_ATTACH", "PTRACE_SEIZE", "PTRACE_POKETEXT", "PTRACE_POKEDATA",
                 "PTRACE_POKEUSER", "PTRACE_SETREGS", "PTRACE_SETFPREGS", "PTRACE_SETREGSET"]


def after_setup(ev: Event) -> bool:
    """The event is the session's own doing, not a sandbox launcher's setup (bubblewrap
    building the sandbox); a nested launcher's setup is the session's doing."""
    return not ev.setup or ev.nested_launcher


_PROC_ROOT = re.compile(r"/proc/\d+(?:/task/\d+)?/root(?=/)")


def through_proc_root(path: str | None) -> str | None:
    """`/proc/<pid>/root/X` names X in that process's root: the path the globs are for
    (`/proc/self/root/proc/sys/kernel/core_pattern` is core_pattern)."""
    if not path:
        return path
    m = _PROC_ROOT.match(path)
    return path[m.end():] if m else path


def track_exe(ctx: Context, ev: Event) -> str | None:
    """The acting process's executable: from the process table when the engine has one,
    else from this detector's own record of the session's execs (inherited at fork)."""
    exes: dict[int, str | None] = ctx.state.setdefault("exes", {})
    if isinstance(ev, ExecEvent) and ev.ret == 0:
        exes[ev.pid] = ev.exe or ev.filename
    elif isinstance(ev, ForkEvent) and ev.ret > 0 and not ev.thread and ev.pid in exes:
        exes[ev.child_pid] = exes[ev.pid]
    if ctx.proc is not None and ctx.proc.exe:
        return ctx.proc.exe
    return exes.get(ev.pid)


def outcome(ev: Event) -> dict[str, Any]:
    """A call's result as alert fields: `ret` and `error` (None where the event has none)."""
    return {"ret": getattr(ev, "ret", None), "error": getattr(ev, "error", None)}


def result_of(ev: Event) -> str:
    """A call's result as one word for a summary: `ok`, or `failed <errno name>`."""
    out = outcome(ev)
    ret = out["ret"]
    if ret is None or ret >= 0:
        return "ok"
    return f"failed {out['error'] or ret}"


# open(2) flag bits (x86_64, as in the kernel's uapi)
O_ACCMODE = 0o3
O_WRONLY = 0o1
O_RDWR = 0o2
O_CREAT = 0o100
O_TRUNC = 0o1000
O_APPEND = 0o2000
O_PATH = 0o10000000
O_TMPFILE = 0o20000000
WRITE_BITS = O_WRONLY | O_RDWR | O_CREAT | O_TRUNC | O_APPEND | O_TMPFILE
WRITE_FLAGS = ("O_WRONLY", "O_RDWR", "O_CREAT", "O_TRUNC", "O_APPEND")


def is_read_open(ev: OpenEvent) -> bool:
    """An open that can read the file's content (O_RDONLY or O_RDWR, not O_PATH)."""
    return not ev.flags & O_PATH and (ev.flags & O_ACCMODE) in (0, O_RDWR)


def write_intent(ev: OpenEvent, *, by_names: bool = False) -> bool:
    """An open that can change the file: O_WRONLY, O_RDWR, O_CREAT, O_TRUNC, O_APPEND or
    O_TMPFILE in `flags`, and not O_PATH (which makes the kernel ignore them).

    `by_names=True` is kernel_tamper's test, kept as it was: any of WRITE_FLAGS among the
    decoded `flag_names`. For the team: it differs from the bits on opens no real writer
    makes, O_PATH with a write flag (a write by names), O_TMPFILE without O_WRONLY/O_RDWR
    and access mode 3 (writes by bits only), and on recorded events whose `flag_names`
    disagree with `flags`. One of the two should go; until then each caller keeps its own.
    """
    if by_names:
        return any(f in ev.flag_names for f in WRITE_FLAGS)
    return bool(ev.flags & WRITE_BITS) and not ev.flags & O_PATH


def parse_ip(address: str | None) -> IPAddr | None:
    """An IP address from an event (IPv6 `%scope` dropped, IPv4-mapped IPv6 unwrapped)."""
    if not address:
        return None
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


@lru_cache(maxsize=256)
def _networks(cidrs: tuple[str, ...], skip_bad: bool) -> tuple[IPNet, ...] | None:
    out = []
    for c in cidrs:
        try:
            out.append(ipaddress.ip_network(c, strict=False))
        except ValueError:
            if not skip_bad:
                return None
    return tuple(out)


def in_any(ip: IPAddr, cidrs: list[str], *, skip_bad: bool = False) -> bool:
    """`ip` is in one of the networks `cidrs`.

    A CIDR that does not parse: by default the whole list matches nothing (what
    egress_violation has always done: a bad `allow` entry flags every address, a bad
    `metadata` entry turns the metadata check off); with `skip_bad=True` only that entry is
    ignored (credential_read's `connect_allow`). Kept apart so that neither detector
    changes; for the team: the config should rather refuse a bad CIDR at load time.
    """
    nets = _networks(tuple(cidrs), skip_bad)
    if nets is None:
        return False
    return any(ip.version == n.version and ip in n for n in nets)
