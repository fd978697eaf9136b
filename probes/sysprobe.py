"""The generic syscall probe's kernel side: the table (probes/syscalls.py) written into the
`sys_spec` map, the per-syscall kill classes, and the programs attached to the tracepoints
of every syscall of the table that this kernel has (what is missing is returned and kept
by the loader: `probes.loader.Probes.syscalls`).
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass, field
from typing import Any

from probes import kernel
from probes.syscalls import NOARG, SYSCALLS, Syscall


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
