"""Floods (root, a real enforce-mode daemon, real bubblewrap sandboxes): a session that
creates processes and threads as fast as it can, and one that opens files in a tight loop
on every core, each together with a forbidden call. Events may be lost (the Python
consumer cannot keep up with a process that does nothing but make syscalls), but:

- every loss is counted in the kernel and raised as `event_loss` alerts whose `lost`
  fields add up to the kernel's counters;
- the forbidden call is killed in the kernel at its entry and reported: its record goes
  through the `enforced` ring, which ordinary events cannot fill;
- the daemon is not stalled: the kill's alert arrives within seconds, a later session's
  events arrive, the control socket answers.

fork_bomb is set to `alert` here so that the flood lasts (by default it would kill the
flooding sandbox, which is the point of fork_bomb but not of this test). The fork flood is
bench/forkflood.c (vfork/fork + _exit in a loop), built with the host's C compiler: a
Python loop forks too slowly to flood anything."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.harness import Daemon, sandbox, wait
from tests.conftest import REPO, bpf_unavailable, running

pytestmark = [pytest.mark.bpf, pytest.mark.e2e, pytest.mark.slow]
PY = sys.executable
CORES = os.cpu_count() or 2

OPEN_FLOOD = """
import os, sys, time
end = time.monotonic() + float(sys.argv[1])
while time.monotonic() < end:
    for _ in range(1000):
        os.close(os.open("/dev/null", os.O_RDONLY))
"""

ESCAPE = """
import ctypes, sys
ctypes.CDLL(None, use_errno=True).unshare(0x10000000)   # CLONE_NEWUSER
open(sys.argv[1], "w").write("after")
"""


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    if os.geteuid() != 0:
        bpf_unavailable("the daemon needs root")
    tmp = tmp_path_factory.mktemp("flood")
    config = tmp / "config.toml"
    from detectors.catalog.monitor import RUNTIME_SOCKETS

    (tmp / "decoy.txt").write_text("bait\n")
    config.write_text('mode = "enforce"\nfold_window = 2\n'
                      '[detectors.fork_bomb]\naction = "alert"\n'
                      f'[detectors.canary_touch]\npaths = ["{tmp}/decoy.txt"]\n'
                      '[detectors.runtime_socket]\nsockets = '
                      f'{json.dumps([*RUNTIME_SOCKETS, str(tmp / "runtime.sock")])}\n')
    for name, code in (("open_flood", OPEN_FLOOD), ("escape", ESCAPE)):
        (tmp / f"{name}.py").write_text(code)
    build_forkflood(tmp)
    yield from running(tmp, config)


def build_forkflood(tmp: Path) -> Path:
    """bench/forkflood.c, compiled: a Python loop forks about 1,000 times a second, which
    the collector keeps up with; the flood has to come from C."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.fail("no C compiler for the fork flood (make setup installs gcc)")
    out = tmp / "forkflood"
    subprocess.run([cc, "-O2", "-o", str(out), str(REPO / "bench" / "forkflood.c")],
                   check=True, timeout=120)
    return out


def _new(d: Daemon, before: int, pred: Any) -> list[dict[str, Any]]:
    return [a for a in d.alerts()[before:] if pred(a)]


def _escape_caught(d: Daemon, before: int, marker: Path) -> dict[str, Any]:
    assert not marker.exists(), "the escaping process ran on after unshare()"
    (a,) = wait(lambda: _new(d, before, lambda a: a["detector"] == "namespace_escape"
                             and a["event"].get("kernel_kill")), 10,
                "the kernel's namespace_escape kill reported during the flood")
    assert a["action"]["taken"] == "kill" and a["action"]["by"] == "kernel", a["action"]
    return a


def _losses_counted(d: Daemon, before: int) -> int:
    """Wait for an event_loss alert with a count, then for the kernel's counters (status)
    and the sum of the alerts' `lost` to agree (folded alerts come at the fold window's
    end). Returns the count."""
    wait(lambda: _new(d, before, lambda a: a["detector"] == "event_loss"
                      and a["fields"].get("lost", 0) > 0), 30, "an event_loss alert")

    def agree() -> int | None:
        kernel = sum(d.status()["lost"].values())
        alerted = sum(a["fields"]["lost"] for a in d.alerts()
                      if a["detector"] == "event_loss" and a.get("key") == "loss")
        return kernel if kernel == alerted and kernel > 0 else None
    return int(wait(agree, 20, "event_loss alerts adding up to the kernel's loss counters"))


def _losses_counted_or_none(d: Daemon, before: int, made: int) -> int:
    """Whether a flood overflows the ring depends on the machine (seen here: 120,000 forks
    in 13 s all delivered on one day, thousands lost on another). Either every fork of the
    flood arrived (fork and exit events at least the processes made, no loss counted, no event_loss
    alert), or the loss is counted and alerted (_losses_counted). Never a silent gap."""
    def settled() -> tuple[str, int] | None:
        st = d.status()
        if sum(st["lost"].values()):
            return ("lost", 0)
        ev = st["events"]
        return ("seen", ev.get("fork", 0)) \
            if min(ev.get("fork", 0), ev.get("exit", 0)) >= made else None
    how, forks = wait(settled, 30, f"the flood's {made} forks seen, or their loss counted")
    if how == "lost":
        return _losses_counted(d, before)
    assert not _new(d, before, lambda a: a["detector"] == "event_loss"), \
        "an event_loss alert with no loss counted by the kernel"
    print(f"fork flood: all {made} forks delivered ({forks} fork events), none lost")
    return 0


def _still_responsive(d: Daemon) -> None:
    """A later session's events arrive and the control socket answers."""
    tag = f"after-flood-{time.monotonic_ns()}"
    t0 = time.monotonic()
    r = subprocess.run(sandbox(d.tmp, "sh", "-c", f"echo {tag}"), timeout=60,
                       capture_output=True)
    assert r.returncode == 0, r.stderr

    def seen() -> bool:
        for line in (d.log / "events.jsonl").read_bytes().splitlines()[-2000:]:
            if tag.encode() in line and json.loads(line)["kind"] == "exec":
                return True
        return False
    wait(seen, 20, "the later session's exec event")
    assert time.monotonic() - t0 < 25
    st = d.status()
    assert st["mode"] == "enforce" and st["uptime_s"] > 0
    assert d.alive() and "Traceback" not in d.stderr()


def test_fork_flood_with_an_escape_in_a_second_session(daemon: Daemon) -> None:
    d = daemon
    before = len(d.alerts())
    flooders = " & ".join(f"{d.tmp}/forkflood 8" for _ in range(CORES))
    flood = subprocess.Popen(sandbox(d.tmp, "sh", "-c", f"{flooders}; wait"),
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        time.sleep(3)  # flooding
        assert flood.poll() is None
        marker = d.tmp / "marker-fork"
        r = subprocess.run(sandbox(d.tmp, PY, f"{d.tmp}/escape.py", str(marker),
                                   binds=(str(d.tmp),)), timeout=60, capture_output=True)
        assert r.returncode in (137, -9), r
        _escape_caught(d, before, marker)
        assert flood.poll() is None, "the flood's session was killed for another's escape"
        out, _ = flood.communicate(timeout=60)  # the flood ends by itself
    finally:
        if flood.poll() is None:
            flood.kill()
        flood.wait()
    made = sum(int(x) for x in out.split())
    lost = _losses_counted_or_none(d, before, made)
    st = d.status()
    print(f"fork flood: {made} processes made; events {st['events']}; {lost} events lost "
          f"in all ({st['lost']}), each counted")
    _still_responsive(d)


def test_open_flood_on_every_core_with_an_escape_in_the_same_session(
        daemon: Daemon) -> None:
    d = daemon
    before = len(d.alerts())
    lost_before = sum(d.status()["lost"].values())
    marker = d.tmp / "marker-open"
    flooders = " & ".join(f"{PY} {d.tmp}/open_flood.py 30" for _ in range(CORES))
    t0 = time.monotonic()
    r = subprocess.run(sandbox(d.tmp, "sh", "-c",
                               f"{flooders} & sleep 3; {PY} {d.tmp}/escape.py {marker}; wait",
                               binds=(str(d.tmp),)), timeout=90, capture_output=True)
    took = time.monotonic() - t0
    assert r.returncode in (137, -9), r
    assert took < 20, f"the session ran {took:.0f} s: the flooders were not killed with it"
    a = _escape_caught(d, before, marker)
    killed = a["action"]["result"]
    assert "then user space" in killed, killed
    lost = _losses_counted(d, before)
    assert lost > lost_before, "the open flood lost nothing: not a flood"
    print(f"open flood: {lost - lost_before} events lost, each counted; {killed}")
    _still_responsive(d)


KERNEL_RULES = {  # each killed in the kernel at the call's entry (response/enforce.py)
    "setns": ("L.setns(os.open('/proc/self/ns/net', os.O_RDONLY), 0)", "namespace_escape"),
    "mount": ("L.mount(b'none', b'/tmp', b'tmpfs', 0, None)", "mount_escape"),
    "bpf": ("L.syscall(321, 11, ctypes.create_string_buffer(128), 128)", "kernel_tamper"),
    "canary": ("open(TMP + '/decoy.txt').read()", "canary_touch"),
    "runtime_socket": ("socket.socket(socket.AF_UNIX).connect(TMP + '/runtime.sock')",
                       "runtime_socket"),
    "reverse_shell": ("srv = socket.socket(); srv.bind(('127.0.0.1', 0)); srv.listen()\n"
                      "c = socket.create_connection(srv.getsockname())\n"
                      "os.dup2(c.fileno(), 1)", "reverse_shell"),
    # the daemon must know the (dead, never seen exec'ing) sender as a session's, and
    # ignore its SIGTERM: the kernel's kill record tells it
    "signal": ("os.kill(AW, 15)", "monitor_tamper"),
}


def test_every_kernel_rule_holds_during_a_flood(daemon: Daemon) -> None:
    """While another sandbox floods open() on every core, each kind of call the kernel
    decides is killed at its entry and reported, none lost."""
    d = daemon
    before = len(d.alerts())
    flooders = " & ".join(f"{PY} {d.tmp}/open_flood.py 20" for _ in range(CORES))
    flood = subprocess.Popen(sandbox(d.tmp, "sh", "-c", f"{flooders}; wait"),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    caught: dict[str, str] = {}
    try:
        time.sleep(2)
        for name, (code, detector) in KERNEL_RULES.items():
            assert flood.poll() is None, "the flood ended early"
            marker = d.tmp / f"marker-rule-{name}"
            script = d.tmp / f"rule-{name}.py"
            script.write_text("import ctypes, os, socket\n"
                              "L = ctypes.CDLL(None, use_errno=True)\n"
                              f"TMP = {str(d.tmp)!r}\nAW = {d.pid}\n{code}\n"
                              f"open({str(marker)!r}, 'w').write('after')\n")
            mark = len(d.alerts())
            r = subprocess.run(sandbox(d.tmp, PY, str(script), binds=(str(d.tmp),)),
                               timeout=60, capture_output=True)
            assert r.returncode in (137, -9), (name, r)
            assert not marker.exists(), f"{name}: ran on after the call"
            (a,) = wait(lambda mark=mark, detector=detector: [
                x for x in d.alerts()[mark:] if x["detector"] == detector
                and x["event"].get("kernel_kill")], 10, f"{name}: the kernel's kill reported")
            assert a["action"]["by"] == "kernel", a["action"]
            caught[name] = a["event"].get("syscall") or a["event"]["kind"]
    finally:
        try:  # the flooders end by themselves (killing the launcher would not stop them)
            flood.wait(timeout=60)
        except subprocess.TimeoutExpired:
            flood.kill()
            flood.wait()
    assert sorted(caught) == sorted(KERNEL_RULES)
    d.wait_for("ignored SIGTERM from pid", 10)
    assert d.alive(), "a sandbox's SIGTERM stopped the daemon"
    lost = _losses_counted(d, before)
    print(f"kernel rules under a flood: {caught}; {lost} events lost in all, each counted")
