"""Record layouts and constants of proc.bpf.c: exec, fork/clone, exit and session records
(decoded by collector/decode/proc.py)."""

from __future__ import annotations

from probes.layout import Layout
from probes.stdio import fd_fields

AW_EV_EXEC, AW_EV_FORK, AW_EV_EXIT, AW_EV_SESSION = 1, 2, 3, 7
SESSION_KINDS = {1: "run", 2: "launcher", 3: "attach"}
SESSION_PHASES = {1: "start", 2: "end"}
AW_PATH_MAX, AW_ARGV_BYTES = 4096, 4096
AT_FDCWD = -100
CLONE_THREAD = 0x00010000

XF_FILENAME_FAULT, XF_ARGV_FAULT, XF_ARGV_TRUNC, XF_ARG_CUT = 0x1, 0x2, 0x4, 0x8
PF_EXIT_CODE, PF_EXIT_SIGNAL, EF_CORE = 0x1, 0x2, 0x100

FORK = Layout.record("aw_fork", [
    ("ret", "s64"), ("clone_flags", "u64"), ("child_pid", "u32"), ("_pad", "u32"),
])
EXEC = Layout.record("aw_exec", [
    ("ret", "s64"), ("dfd", "s32"), ("at_flags", "u32"), ("filename_len", "u32"),
    ("argv_len", "u32"), ("argc", "u32"), ("exec_flags", "u32"),
    *fd_fields(0), *fd_fields(1), *fd_fields(2),
], tail=("data", AW_PATH_MAX + 2 * AW_ARGV_BYTES))
EXIT = Layout.record("aw_exit", [
    ("exit_code", "s32"), ("exit_signal", "s32"), ("exit_flags", "u32"), ("_pad", "u32"),
])

SESSION = Layout.record("aw_session_rec", [
    ("phase", "u32"), ("kind", "u32"), ("root", "u32"), ("_pad", "u32"),
])
