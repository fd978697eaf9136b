"""Tampering with agentwatch from a sandbox (root, a real daemon in enforce mode, real
bubblewrap sandboxes that share the host's pid namespace, so that agentwatch is in their
/proc): signals, ptrace, /proc/<pid>/mem, its config file, /sys/fs/bpf, and bpf() calls
that would find and detach its programs. Each attempt is caught and its sandbox killed;
agentwatch survives every one but SIGKILL, which no monitor can refuse (the kernel still
kills the sender at the call's entry; test_crash.py shows the restart)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.harness import Daemon, sandbox, wait
from tests.conftest import bpf_unavailable, running

pytestmark = [pytest.mark.bpf, pytest.mark.e2e]
PY = sys.executable


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    if os.geteuid() != 0:
        bpf_unavailable("the daemon needs root")
    tmp = tmp_path_factory.mktemp("tamper")
    (tmp / "etc").mkdir()
    config = tmp / "etc" / "config.toml"
    config.write_text('mode = "enforce"\n')
    yield from running(tmp, config)


def _attempt(d: Daemon, name: str, code: str, binds: tuple[str, ...] = (),
             then: Callable[[], None] | None = None,
             user_space: bool = False) -> tuple[int, list[dict[str, Any]]]:
    """Run `code` (Python, with `L` = libc and AW = the daemon's pid) in a sandbox, then
    try to write a marker: (the sandbox's exit status, the alerts of its session).
    `user_space`: the kill comes from user space, after the call: the marker may be
    written first, and the script then waits to be killed."""
    marker = d.tmp / f"marker-{name}"
    script = d.tmp / f"{name}.py"
    script.write_text("import ctypes, os, signal, sys, time\n"
                      "L = ctypes.CDLL(None, use_errno=True)\n"
                      f"AW = {d.pid}\n" + textwrap.dedent(code) +
                      f"\nopen({str(marker)!r}, 'w').write('after')\n"
                      + ("time.sleep(30)\n" if user_space else ""))
    before = len(d.alerts())
    r = subprocess.run(sandbox(d.tmp, PY, str(script), binds=(str(d.tmp), *binds)),
                       timeout=60, capture_output=True)
    assert user_space or not marker.exists(), \
        f"{name}: ran on after the attempt: {r.stderr[-2000:]!r}"
    if then is not None:
        then()

    def session_alerts() -> list[dict[str, Any]]:
        new = d.alerts()[before:]
        kills = [a for a in new if a["action"].get("taken") == "kill"]
        return [a for a in new if a["session"] == kills[0]["session"]] if kills else []

    alerts = wait(session_alerts, 10, f"{name}: a kill alert")
    time.sleep(0.5)  # the session's other alerts (a second detector) follow the first
    alerts = session_alerts()
    assert d.alive(), f"{name}: the daemon died:\n{d.stderr()[-3000:]}"
    return r.returncode, alerts


def killed(status: int) -> bool:
    """The sandbox died of SIGKILL: its payload (bubblewrap says 128+9) or bubblewrap
    itself, when user space killed the rest of the session first."""
    return status in (128 + 9, -9)


def _detectors(alerts: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {a["detector"]: a for a in alerts}


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGHUP", "SIGINT", "SIGSTOP"])
def test_a_signal_to_agentwatch_kills_the_sender_and_agentwatch_carries_on(
        daemon: Daemon, sig: str) -> None:
    # SIGSTOP cannot be refused or ignored: the daemon stays stopped until someone sends
    # SIGCONT, as an operator (or a watchdog) would; the kernel's kills go on meanwhile.
    cont = (lambda: os.kill(daemon.pid, signal.SIGCONT)) if sig == "SIGSTOP" else None
    status, alerts = _attempt(daemon, f"signal-{sig}", f"os.kill(AW, signal.{sig})",
                              then=cont)
    assert killed(status), status
    a = _detectors(alerts)["monitor_tamper"]
    assert a["action"]["by"] == "kernel" and a["event"]["kernel_kill"] == "monitor_tamper"
    assert a["event"]["syscall"] == "kill" and f"pid {daemon.pid}" in a["summary"]
    if sig != "SIGSTOP":  # delivered, and ignored: its sender was a session's process
        daemon.wait_for(f"ignored {sig} from pid", 10)
    assert daemon.status()["mode"] == "enforce"  # still answering


def test_tkill_of_agentwatch_and_pidfd_open(daemon: Daemon) -> None:
    status, alerts = _attempt(daemon, "tkill", "L.syscall(200, AW, 15)")  # tkill(tid, SIGTERM)
    assert killed(status), status
    assert _detectors(alerts)["monitor_tamper"]["event"]["syscall"] == "tkill"
    status, alerts = _attempt(daemon, "pidfd", "L.syscall(434, AW, 0)")  # pidfd_open
    a = _detectors(alerts)["monitor_tamper"]
    assert killed(status) and a["event"]["syscall"] == "pidfd_open"
    assert a["action"]["by"] == "kernel"


def test_ptrace_of_agentwatch(daemon: Daemon) -> None:
    status, alerts = _attempt(daemon, "ptrace", "L.ptrace(0x4206, AW, 0, 0)")  # SEIZE
    assert killed(status), status
    got = _detectors(alerts)
    assert got["process_injection"]["action"]["by"] == "kernel"
    assert "monitor_tamper" in got  # also flagged as aimed at agentwatch
    assert "TracerPid:\t0" in Path(f"/proc/{daemon.pid}/status").read_text()


def test_proc_mem_of_agentwatch(daemon: Daemon) -> None:
    status, alerts = _attempt(daemon, "mem", """
        fd = os.open(f"/proc/{AW}/mem", os.O_RDWR)
        os.pwrite(fd, b"\\xcc", 0x400000)
    """)
    assert killed(status), status
    a = _detectors(alerts)["monitor_tamper"]
    assert a["action"]["by"] == "kernel" and a["event"]["path"] == f"/proc/{daemon.pid}/mem"


def test_writing_its_config_file(daemon: Daemon) -> None:
    before = daemon.config.read_bytes()
    etc = str(daemon.config.parent)
    status, alerts = _attempt(daemon, "config", f"""
        open({str(daemon.config)!r}, "a").write('mode = "monitor"\\n')
    """, binds=(etc,))
    assert killed(status), status
    a = _detectors(alerts)["monitor_tamper"]
    assert a["action"]["by"] == "kernel" and a["event"]["path"] == str(daemon.config)
    assert daemon.config.read_bytes() == before, "the config was changed"


def test_touching_sys_fs_bpf(daemon: Daemon) -> None:
    # an explicit listing: the kernel lets read-only directory opens there through (a
    # tree walk passes them), user space kills for one that is no walk
    status, alerts = _attempt(daemon, "bpffs", "os.listdir('/sys/fs/bpf')",
                              user_space=True)
    assert killed(status), status
    assert _detectors(alerts)["monitor_tamper"]["action"]["by"] == "user space"
    # anything but a directory listing is the kernel's to kill at the call
    status, alerts = _attempt(daemon, "bpffs-create", "open('/sys/fs/bpf/aw-x', 'w')")
    assert killed(status), status
    assert _detectors(alerts)["monitor_tamper"]["action"]["by"] == "kernel"
    assert not os.path.exists("/sys/fs/bpf/aw-x")


def test_pidfd_send_signal_through_its_proc_directory(daemon: Daemon) -> None:
    # a /proc/<pid> directory fd is a pidfd to pidfd_send_signal: opening the directory
    # is what ps does (not denied), the signal through it is killed at its entry
    status, alerts = _attempt(daemon, "proc-pidfd", """
        d = os.open(f"/proc/{AW}", os.O_RDONLY | os.O_DIRECTORY)
        L.syscall(424, d, 15, None, 0)
    """)
    assert killed(status), status
    a = _detectors(alerts)["monitor_tamper"]
    assert a["action"]["by"] == "kernel" and a["event"]["syscall"] == "pidfd_send_signal"


def test_its_fds_through_a_dirfd_on_its_proc(daemon: Daemon) -> None:
    # opening /proc/<pid> and its fd/ as directories is what ps and find do; following a
    # magic link out of them (fd/N) through the dirfd is killed at the open's exit
    status, alerts = _attempt(daemon, "proc-fd-dirfd", """
        d = os.open(f"/proc/{AW}", os.O_RDONLY | os.O_DIRECTORY)
        f = os.open("fd", os.O_RDONLY | os.O_DIRECTORY, dir_fd=d)
        for n in sorted(int(x) for x in os.listdir(f)):
            try:
                os.close(os.open(str(n), os.O_RDONLY, dir_fd=f))
            except OSError:
                pass
    """)
    assert killed(status), status
    a = _detectors(alerts)["monitor_tamper"]
    assert a["action"]["by"] == "kernel"


def test_environ_of_agentwatch(daemon: Daemon) -> None:
    # the kernel leaves environ to user space (procps ps opens every process's)
    status, alerts = _attempt(daemon, "environ", "open(f'/proc/{AW}/environ', 'rb').read()",
                              user_space=True)
    assert killed(status), status
    a = _detectors(alerts)["monitor_tamper"]
    assert a["event"]["proc_tgid"] == daemon.pid


def test_ps_top_and_walks_past_agentwatch_are_not_tamper(daemon: Daemon) -> None:
    """What ps, top and pgrep read of agentwatch's /proc, and a tree walk passing
    /sys/fs/bpf (find, os.walk), in enforce mode: nothing killed, no monitor_tamper."""
    marker = daemon.tmp / "marker-benign"
    script = daemon.tmp / "benign.py"
    script.write_text(textwrap.dedent(f"""
        import os, subprocess
        AW = {daemon.pid}
        for e in ("stat", "status", "cmdline", "comm", "statm", "io", "wchan"):
            try:
                open(f"/proc/{{AW}}/{{e}}", "rb").read()
            except OSError:
                pass
        os.listdir(f"/proc/{{AW}}/task")
        os.listdir("/proc")
        subprocess.run(["find", "/sys/fs", "-maxdepth", "3", "-name", "nothing-*"],
                       check=False, capture_output=True)
        subprocess.run(["du", "-s", "/sys/fs"], check=False, capture_output=True)
        # agentwatch's /proc/<pid>/fd, fdinfo, map_files listed on the way
        subprocess.run(["find", "/proc", "-maxdepth", "3", "-name", "nothing-*"],
                       check=False, capture_output=True)
        for _ in os.walk("/sys/fs"):
            pass
        subprocess.run(["ps", "aux"], check=True, capture_output=True)
        subprocess.run(["top", "-b", "-n", "1"], check=False, capture_output=True)
        open({str(marker)!r}, "w").write("after")
    """))
    before = len(daemon.alerts())
    r = subprocess.run(sandbox(daemon.tmp, PY, str(script), binds=(str(daemon.tmp),)),
                       timeout=120, capture_output=True)
    time.sleep(1.0)
    new = daemon.alerts()[before:]
    assert r.returncode == 0, [(a["detector"], a["summary"], a["action"]) for a in new]
    assert marker.exists()
    assert not [a for a in new if a["detector"] == "monitor_tamper"], [a["summary"] for a in new]
    assert not [a for a in new if a["action"].get("taken") == "kill"], [a["summary"] for a in new]


@pytest.mark.parametrize("cmd", [("BPF_PROG_GET_NEXT_ID", 11), ("BPF_LINK_DETACH", 34)])
def test_bpf_calls_to_find_or_detach_probes(daemon: Daemon, cmd: tuple[str, int]) -> None:
    name, nr = cmd
    status, alerts = _attempt(daemon, f"bpf-{name}", f"""
        attr = ctypes.create_string_buffer(128)
        L.syscall(321, {nr}, attr, 128)
    """)
    assert killed(status), status
    a = _detectors(alerts)["kernel_tamper"]
    assert a["action"]["by"] == "kernel" and a["event"]["syscall"] == "bpf"
    assert a["event"]["args"]["cmd"] == name


def test_agentwatch_survived_all_of_it(daemon: Daemon) -> None:
    assert daemon.alive()
    st = daemon.status()
    assert st["kills"], st
    assert "Traceback" not in daemon.stderr()
