"""The syscall dispatcher's kernel side (dispatch.bpf.c): the table (probes/syscalls.py)
written into the `sys_spec` map with the per-syscall kill classes, every number's route
(`sys_route`), the 32-bit numbers' native twins (`compat_nr`, `socketcall_nr`), and the
route programs loaded into the dispatcher's prog arrays. There is nothing to attach per
syscall: the raw sys_enter/sys_exit pair sees every number, so every table entry is
covered whether or not this kernel has a `syscalls:` tracepoint for it.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass, field
from typing import Any

from probes.compat import COMPAT_TO_NATIVE, NO_NATIVE, SOCKETCALL_NATIVE
from probes.rules import VALUE as V
from probes.syscalls import NOARG, QUIET_NRS, SOCKET_WRITES, SYSCALLS, Syscall

NR_MAX = 512  # AW_NR_MAX: sys_route's and sys_spec's size

# (concern, route, native numbers) routed to a concern's own programs
CONCERN_ROUTES = (
    ("file", "AW_RT_OPEN", (2, 257, 437)),             # open, openat, openat2
    ("proc", "AW_RT_EXEC", (59, 322)),                 # execve, execveat
    ("proc", "AW_RT_FORK", (56, 57, 58, 435)),         # clone, fork, vfork, clone3
    ("proc", "AW_RT_EXIT", (60, 231)),                 # exit, exit_group
    ("net", "AW_RT_CONNECT", (42,)),                   # connect
)
# close, close_range: quiet unless the reverse-shell rule routes them to AW_RT_CLOSE
CLOSE_NRS = (3, 436)

# (concern, route, entry program, exit program or "")
ROUTE_PROGRAMS = (
    ("file", "AW_RT_OPEN", "aw_rt_open_enter", "aw_rt_open_exit"),
    ("proc", "AW_RT_EXEC", "aw_rt_exec_enter", "aw_rt_exec_exit"),
    ("proc", "AW_RT_FORK", "aw_rt_fork_enter", "aw_rt_fork_exit"),
    ("proc", "AW_RT_EXIT", "aw_rt_exit_enter", ""),
    ("net", "AW_RT_CONNECT", "aw_rt_connect_enter", "aw_rt_connect_exit"),
    ("sys", "AW_RT_SYS", "aw_rt_sys_enter", "aw_rt_sys_exit"),
    ("sys", "AW_RT_OTHER", "aw_rt_other_enter", ""),
    ("sys", "AW_RT_CLOSE", "aw_rt_close_enter", ""),
    ("file", "AW_RT_OPEN_FILTER", "", "aw_rt_open_filter"),  # tail-called by open's exit
)


@dataclass(frozen=True)
class AttachResult:
    """Which syscalls of the table the generic probe covers on this kernel."""

    attached: tuple[str, ...] = ()
    # kept for callers of the per-tracepoint design: the dispatcher misses none
    missing: tuple[str, ...] = ()
    failed: dict[str, str] = field(default_factory=dict)


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
            arg, mask, *values = s.filter
            values = (values * 4)[:4]  # unused slots repeat a value
            leaf.filter_arg, leaf.filter_mask = arg, mask
            leaf.filter_v1, leaf.filter_v2, leaf.filter_v3, leaf.filter_v4 = values
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


def routes(concerns: tuple[str, ...], table: tuple[Syscall, ...] = SYSCALLS) -> dict[int, int]:
    """Every native number's route (AW_RT_*) with these concerns loaded. A number no loaded
    concern takes is quiet: without `sys`, calls outside the table are not reported."""
    rt = V["AW_RT_OTHER"] if "sys" in concerns else V["AW_RT_QUIET"]
    out = dict.fromkeys(range(NR_MAX), rt)
    for nr in QUIET_NRS:
        out[nr] = V["AW_RT_QUIET"]
    if "sys" in concerns:
        for s in table:
            out[s.nr] = V["AW_RT_SYS"]
    for concern, route, nrs in CONCERN_ROUTES:
        if concern in concerns:
            for nr in nrs:
                out[nr] = V[route]
    return out


def set_route(bpf: Any, nrs: tuple[int, ...], route: str) -> None:
    """Send these numbers to another route (response/enforce.py: close while the
    reverse-shell rule is on)."""
    table = bpf[b"sys_route"]
    for nr in nrs:
        table[ctypes.c_int(nr)] = ctypes.c_uint8(V[route])


def write_compat(bpf: Any) -> None:
    """i386 numbers' native twins, and socketcall's calls (probes/compat.py)."""
    table = bpf[b"compat_nr"]
    for nr in range(NR_MAX):
        table[ctypes.c_int(nr)] = ctypes.c_uint16(COMPAT_TO_NATIVE.get(nr, NO_NATIVE))
    sock = bpf[b"socketcall_nr"]
    for call, nr in SOCKETCALL_NATIVE.items():
        sock[ctypes.c_int(call)] = ctypes.c_uint16(nr)


def install(bpf: Any, concerns: tuple[str, ...], table: tuple[Syscall, ...] = SYSCALLS
            ) -> AttachResult | None:
    """Write the tables into the kernel and load each loaded concern's route programs into
    the dispatcher's prog arrays (a verifier refusal raises). The dispatcher itself was
    attached by BCC at compile time (RAW_TRACEPOINT_PROBE); until the routes are written
    every number is quiet, and no process is watched yet."""
    from bcc import BPF  # late: unit tests do not need bcc

    if "sys" in concerns:
        write_specs(bpf, table)
        write_specs(bpf, SOCKET_WRITES)  # routed only for AW_PF_SOCKW (aw_sockw.h)
    write_compat(bpf)
    enter, exit_ = bpf[b"enter_routes"], bpf[b"exit_routes"]
    for concern, route, fn_enter, fn_exit in ROUTE_PROGRAMS:
        if concern not in concerns:
            continue
        slot = ctypes.c_int(V[route])
        if fn_enter:
            enter[slot] = ctypes.c_int(bpf.load_func(fn_enter.encode(),
                                                     BPF.RAW_TRACEPOINT).fd)
        if fn_exit:
            exit_[slot] = ctypes.c_int(bpf.load_func(fn_exit.encode(), BPF.RAW_TRACEPOINT).fd)
    route_map = bpf[b"sys_route"]
    for nr, code in routes(concerns, table).items():
        route_map[ctypes.c_int(nr)] = ctypes.c_uint8(code)
    if "sys" not in concerns:
        return None
    return AttachResult(tuple(s.name for s in table))
