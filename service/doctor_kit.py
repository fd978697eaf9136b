"""What `agentwatch doctor`'s checks are made of: the `Check` record and its one-line format,
and the trials' plumbing: compiling and loading a small BPF program with BCC's compiler output
captured (`bpf_object`, its gist in `reason`), a child process waited for or killed and reaped, a
throw-away cgroup, and the cleanup errors added to a check's detail.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from response.cgroup import remove_cgroup

Status = Literal["ok", "missing", "unavailable"]
Level = Literal["must", "recommended", "optional"]
NAME_WIDTH = 24
STATUS_WIDTH = 12
_REASON_MAX = 200


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    status: Status
    level: Level
    detail: str
    fix: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def format_check(c: Check) -> str:
    """One line: status, name, detail, and for a failed check its level and the fix."""
    if c.status == "ok":
        label = "ok"
    elif c.level == "must":
        label = c.status.upper()
    else:
        label = c.status
    text = f"{label:<{STATUS_WIDTH - 1}} {c.name:<{NAME_WIDTH - 1}} {_one_line(c.detail)}"
    if c.status != "ok":
        text += f" [{c.level}]"
        if c.fix:
            text += f" -> fix: {_one_line(c.fix)}"
    return text.rstrip()


def _one_line(text: str) -> str:
    return " ".join(text.split())


# --------------------------------------------------------------------------- helpers


class StderrCapture:
    """Redirects file descriptor 2 (where libbcc and clang write) to a temporary file."""

    def __init__(self) -> None:
        self.text = ""
        self._saved = -1
        self._tmp: Any = None

    def __enter__(self) -> StderrCapture:
        sys.stderr.flush()
        self._tmp = tempfile.TemporaryFile()
        self._saved = os.dup(2)
        os.dup2(self._tmp.fileno(), 2)
        return self

    def __exit__(self, *exc: object) -> None:
        sys.stderr.flush()
        os.dup2(self._saved, 2)
        os.close(self._saved)
        self._tmp.seek(0)
        self.text = self._tmp.read().decode(errors="replace")
        self._tmp.close()


def short(text: str, limit: int = _REASON_MAX) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def reason(exc: BaseException, stderr: str = "") -> str:
    """The gist of a BCC failure, from its exception and what it wrote to stderr."""
    msg = str(exc).strip() or type(exc).__name__
    if msg == "Need super-user privileges to run":
        # BCC's wording for any EPERM from BPF_PROG_LOAD, even when we are root.
        who = "as root" if os.geteuid() == 0 else "not root"
        return f"program load refused with EPERM ({who})"
    if msg.startswith("Failed to compile BPF module"):
        for line in stderr.splitlines():
            if "error:" in line:
                return short("compile failed: " + line.split("error:", 1)[1].strip())
        return short("compile failed: " + (stderr.strip().splitlines() or [msg])[-1])
    if "kprobe_events" in stderr and "No such file" in stderr:
        return "the kernel has no kprobes (tracefs has no kprobe_events)"
    return short(msg.splitlines()[0] if msg.splitlines() else msg)


@contextmanager
def bpf_object(text: str, cflags: list[str] | None = None) -> Iterator[Any]:
    """A BPF object that is cleaned up afterwards, even when its constructor fails half-way
    (the constructor auto-attaches TRACEPOINT_PROBE/KFUNC_PROBE/LSM_PROBE functions)."""
    from bcc import BPF

    b = BPF.__new__(BPF)
    try:
        b.__init__(text=text.encode(), cflags=cflags or [])  # cflags: str (BCC encodes them)
        yield b
    finally:
        with contextlib.suppress(Exception):  # partially built object; nothing more to free
            b.cleanup()


def wait_child(pid: int, timeout: float) -> int | None:
    """waitpid with a timeout: the wait status, or None if the child is still running."""
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.01)


def kill_and_reap(pid: int) -> None:
    with suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    with suppress(ChildProcessError):
        os.waitpid(pid, 0)


@contextmanager
def temp_cgroup(root: Path, errors: list[str]) -> Iterator[Path]:
    """A new empty child cgroup of `root`, removed afterwards (a failure goes to `errors`)."""
    path = root / f"agentwatch-doctor-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    path.mkdir()
    try:
        yield path
    finally:
        err = remove_cgroup(path)
        if err:
            errors.append(err)


def with_cleanup_errors(c: Check, errors: list[str]) -> Check:
    if not errors:
        return c
    return replace(c, detail=f"{c.detail}; cleanup: {'; '.join(errors)}")
