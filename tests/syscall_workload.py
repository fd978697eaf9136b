"""The workloads of the syscall probe's root tests (tests/test_syscalls.py and
tests/test_syscalls_sockets.py): syscall numbers, a Python prelude that makes exactly the
syscall meant (libc's syscall()), and finders for the session's syscall events."""

from __future__ import annotations

import glob
import re
import sys
import textwrap
from pathlib import Path
from typing import Any

from collector.events import SyscallEvent
from probes import syscalls

PY = sys.executable


def _numbers() -> dict[str, int]:
    nrs = {s.name: s.nr for s in syscalls.SYSCALLS}
    nrs.update(fchmodat2=452, setxattrat=463, open_tree_attr=467, fsconfig=431, capget=125)
    for path in sorted(glob.glob("/usr/src/linux-headers-*/arch/x86/include/generated/uapi/"
                                 "asm/unistd_64.h"))[-1:]:
        text = Path(path).read_text()
        nrs.update({m[0]: int(m[1]) for m in re.findall(r"#define __NR_(\w+) (\d+)", text)})
    return nrs


NR = _numbers()

PRELUDE = f"""
import ctypes, json, os, socket, struct, sys, time
NR = {NR!r}
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long

def sc(name, *args):
    conv = []
    for a in args:
        if isinstance(a, bytes):
            conv.append(ctypes.c_char_p(a))
        elif isinstance(a, str):
            conv.append(ctypes.c_char_p(a.encode()))
        elif a is None:
            conv.append(ctypes.c_void_p(None))
        elif isinstance(a, int):
            conv.append(ctypes.c_long(a))
        else:
            conv.append(a)
    ctypes.set_errno(0)
    r = libc.syscall(ctypes.c_long(NR[name]), *conv)
    return -ctypes.get_errno() if r == -1 else r

def buf(data, size=None):
    return ctypes.create_string_buffer(data, size or len(data))

def sin(ip, port):
    return buf(struct.pack("=H", 2) + struct.pack("!H", port) + socket.inet_aton(ip) + bytes(8))

def child(fn):
    pid = os.fork()
    if pid == 0:
        try:
            fn()
            os._exit(0)
        except BaseException as e:
            print("child failed:", repr(e), file=sys.stderr)
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert status == 0, status
    return pid

def dns_query(name, qid=0x4242):
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split("."))
    return struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + labels + b"\\0\\0\\1\\0\\1"
"""


def py(code: str) -> list[str]:
    return [PY, "-c", PRELUDE + textwrap.dedent(code)]


def calls(r: Any, name: str, **want: Any) -> list[SyscallEvent]:
    """The session's events of syscall `name` whose args (or, for a name that is not an
    argument, event fields) equal `want`."""
    out = []
    for e in r.of("syscall"):
        if e.syscall != name:
            continue
        if all((e.args[k] if k in e.args else getattr(e, k, "<absent>")) == v
               for k, v in want.items()):
            out.append(e)
    return out


def one(r: Any, name: str, **want: Any) -> SyscallEvent:
    found = calls(r, name, **want)
    assert len(found) == 1, (name, want, [(e.args, e.ret) for e in r.of("syscall")
                                          if e.syscall == name])
    return found[0]


def ok(r: Any) -> None:
    assert r.exit_status == 0, "the workload failed (its stderr is above)"
    assert all(isinstance(e, SyscallEvent) for e in r.of("syscall"))
