"""The command line: clear one-line errors, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

AW = str(Path(sys.executable).parent / "agentwatch")


def aw(*args: str, user: int | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [AW, *args]
    if user is not None:
        cmd = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def test_help_lists_commands() -> None:
    out = aw("--help")
    assert out.returncode == 0
    assert "run" in out.stdout and "doctor" in out.stdout


@pytest.mark.parametrize(("args", "code", "message"), [
    (("run",), 2, "no command given"),
    (("run", "--", "/nonexistent/cmd"), 127, "command not found: /nonexistent/cmd"),
    (("run", "--", "no-such-command-anywhere"), 127, "command not found"),
    (("run", "--events", "/nonexistent-dir/e.jsonl", "--", "true"), 1,
     "cannot open events file /nonexistent-dir/e.jsonl"),
])
def test_bad_invocations(args: tuple[str, ...], code: int, message: str) -> None:
    out = aw(*args)
    assert out.returncode == code
    assert message in out.stderr
    assert "Traceback" not in out.stderr + out.stdout


def test_not_root_is_a_clear_error() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to drop to another user")
    out = aw("run", "--", "true", user=65534)
    assert out.returncode == 1
    assert "needs root" in out.stderr and "Traceback" not in out.stderr


def test_ebpf_prints_every_probe_source() -> None:
    out = aw("run", "--ebpf")
    assert out.returncode == 0
    for name in ("proc.bpf.c", "file.bpf.c", "net.bpf.c"):
        assert f"---- {name}" in out.stdout
    assert "TRACEPOINT_PROBE(sched, sched_process_fork)" in out.stdout


def test_a_full_disk_is_reported_not_a_traceback(tmp_path: Path) -> None:
    """/dev/full fails every write with ENOSPC: one clear line, events counted as dropped."""
    from collector.events import OpenEvent
    from service.sinks import JsonlSink

    sink = JsonlSink("/dev/full")
    for _ in range(3):
        sink.write(OpenEvent(ts=1, session="s", pid=1, ret=3, syscall="openat", path="/x",
                             raw_path="/x", flags=0))
        sink.flush()
    sink.close()
    assert sink.broken and sink.dropped >= 2
    if os.geteuid() == 0:
        out = aw("run", "--events", "/dev/full", "--", "/bin/true")
        assert out.returncode == 0, out.stderr
        assert "cannot write events to /dev/full" in out.stderr
        assert "NOT WRITTEN" in out.stderr  # the summary counts what was not written
        assert "Traceback" not in out.stderr
