"""Crashes (root, the real daemon under a supervisor that applies the packaged unit's
Restart=/RestartSec=, since PID 1 here is not systemd): the daemon is killed with SIGKILL
at random moments while a sandbox is busy and alerting. Every alert a client had already
received from alerts.sock is in alerts.jsonl afterwards (alerts are on disk before they
are streamed), each restart re-adopts the running sandbox (status lists it) and reports the
gap (`event_loss`, key `restart_gap`). A detector that raises inside the live daemon is
disabled with an alert, and the daemon carries on."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.harness import (
    Daemon,
    Supervisor,
    sandbox,
    should_restart,
    unit_restart,
    unit_watchdog,
    wait,
)
from tests.conftest import bpf_unavailable

PY = sys.executable
KILLS = 3

BUSY = """
import ctypes, os, sys, time
L = ctypes.CDLL(None, use_errno=True)
end = time.monotonic() + float(sys.argv[1])
while time.monotonic() < end:
    for _ in range(200):
        os.close(os.open("/dev/null", os.O_RDONLY))
    if os.fork() == 0:          # a child that tries a user namespace: an alert each time
        L.unshare(0x10000000)
        os._exit(0)
    os.wait()
    time.sleep(0.1)
"""


def test_the_unit_restart_policy_is_read_and_applied() -> None:
    policy, delay = unit_restart()
    assert policy == "on-failure" and delay == 2.0
    assert unit_watchdog() == (10.0, signal.SIGKILL)
    assert should_restart("on-failure", -signal.SIGKILL)
    assert should_restart("on-failure", 1)
    assert not should_restart("on-failure", 0)
    assert not should_restart("on-failure", -signal.SIGTERM)
    assert should_restart("always", 0) and not should_restart("no", -9)


class AlertReader:
    """A client of alerts.sock, reconnecting across restarts: every line it received."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lines: list[bytes] = []
        self.connects = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            s = socket.socket(socket.AF_UNIX)
            try:
                s.connect(str(self.path))
            except OSError:
                s.close()
                time.sleep(0.05)
                continue
            self.connects += 1
            s.settimeout(0.2)
            buf = b""
            with s:
                while not self._stop.is_set():
                    try:
                        chunk = s.recv(65536)
                    except TimeoutError:
                        continue
                    except OSError:
                        break
                    if not chunk:
                        break
                    buf += chunk
                    *done, buf = buf.split(b"\n")
                    self.lines.extend(x for x in done if x.strip())

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


@pytest.fixture
def supervised(tmp_path: Path) -> Iterator[tuple[Supervisor, Path]]:
    if os.geteuid() != 0:
        bpf_unavailable("the daemon needs root")
    config = tmp_path / "config.toml"
    config.write_text('mode = "monitor"\nfold_window = 0.05\n')
    (tmp_path / "busy.py").write_text(BUSY)
    sup = Supervisor(Daemon(tmp_path, config))
    try:
        sup.start()
    except AssertionError as e:
        bpf_unavailable(f"the daemon did not start: {e}")
    yield sup, tmp_path
    sup.stop()


def _restart_gaps(d: Daemon) -> list[dict[str, Any]]:
    return [a for a in d.alerts() if a.get("key") == "restart_gap"]


@pytest.mark.slow
@pytest.mark.bpf
@pytest.mark.e2e
def test_sigkill_at_random_moments_loses_no_reported_alert(
        supervised: tuple[Supervisor, Path]) -> None:
    sup, tmp = supervised
    d = sup.daemon
    reader = AlertReader(tmp / "run" / "alerts.sock")
    busy = subprocess.Popen(sandbox(tmp, PY, str(tmp / "busy.py"), "240"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    rng = random.Random(os.getpid())
    try:
        wait(lambda: len(reader.lines) >= 3, 30, "alerts from the busy sandbox")
        for k in range(1, KILLS + 1):
            time.sleep(rng.uniform(0.5, 4.0))  # a random moment of the busy session
            old = d.proc
            assert old is not None and old.poll() is None
            seen_before = list(reader.lines)
            old.kill()
            # the supervisor restarts it after the unit's RestartSec; it re-adopts
            wait(lambda k=k: sup.restarts >= k, 60, f"restart {k}")
            d.wait_for("daemon ready", 120, count=k + 1)
            d.wait_for("re-adopted 1 running sandboxes", 10, count=k)
            on_disk = set((d.log / "alerts.jsonl").read_bytes().splitlines())
            missing = [x for x in seen_before if x not in on_disk]
            assert not missing, f"kill {k}: {len(missing)} streamed alerts not in the log"
            gaps = _restart_gaps(d)
            assert len(gaps) == k, gaps
            st = d.status()
            (s,) = [s for s in st["sessions"] if s["session"] == gaps[-1]["session"]]
            assert s["kind"] == "launcher" and s["root_pid"] == busy.pid and s["members"] >= 2
            # alerts of the re-adopted session come again
            n = len(reader.lines)
            name = s["session"]
            wait(lambda n=n, name=name: any(json.loads(x)["session"] == name
                                            for x in reader.lines[n:]), 30,
                 "an alert of the re-adopted session")
        assert busy.poll() is None, "the sandbox died with the daemon"
        assert sup.exits == [-signal.SIGKILL] * KILLS
    finally:
        busy.kill()
        busy.wait()
        reader.stop()
    on_disk = set((d.log / "alerts.jsonl").read_bytes().splitlines())
    assert reader.lines and all(x in on_disk for x in reader.lines)
    assert "Traceback" not in d.stderr()
    for g in _restart_gaps(d):
        assert g["detector"] == "event_loss" and g["fields"]["gap_to_ns"] > \
            g["fields"]["gap_from_ns"] > 0, g
    print(f"{KILLS} kills, {sup.restarts} restarts, {len(reader.lines)} alerts streamed, "
          f"all in alerts.jsonl; {reader.connects} stream connections")


@pytest.mark.slow
@pytest.mark.bpf
@pytest.mark.e2e
def test_a_stopped_daemon_is_killed_by_the_watchdog_and_restarted(
        supervised: tuple[Supervisor, Path]) -> None:
    """SIGSTOP cannot be refused or caught (tests/test_tamper.py: a sandbox that sees the
    daemon can send it, dying in the kernel as it does): without pings for the unit's
    WatchdogSec, the daemon is killed and restarted, re-adopting the running sandbox."""
    sup, tmp = supervised
    d = sup.daemon
    wait(lambda: any("WATCHDOG=1" in n for n in sup.notes), 10, "watchdog pings")
    assert any(n.startswith("READY=1") for n in sup.notes)
    box = subprocess.Popen(sandbox(tmp, "sleep", "120"))
    try:
        wait(lambda: d.status()["sessions"], 10, "the sandbox's session")
        old = d.proc
        assert old is not None
        t0 = time.monotonic()
        old.send_signal(signal.SIGSTOP)
        wait(lambda: sup.restarts >= 1, 60, "the watchdog's kill and the restart")
        took = time.monotonic() - t0
        assert sup.watchdog == 1 and sup.exits == [-signal.SIGKILL], sup.exits
        assert sup.watchdog_sec <= took < sup.watchdog_sec + 30, took
        d.wait_for("re-adopted 1 running sandboxes", 120)
        (gap,) = _restart_gaps(d)
        assert [s["session"] for s in d.status()["sessions"]] == [gap["session"]]
    finally:
        box.kill()
        box.wait()


SITECUSTOMIZE = '''
# Injected into the daemon for tests/test_crash.py: credential_read raises on one path.
import detectors.catalog.files as _f

_orig = _f.CredentialRead.check


def _check(self, ctx, ev):
    if "aw-boom" in (getattr(ev, "path", None) or ""):
        raise RuntimeError("injected fault")
    return _orig(self, ctx, ev)


_f.CredentialRead.check = _check
'''


@pytest.mark.slow
@pytest.mark.bpf
@pytest.mark.e2e
def test_a_detector_that_raises_in_the_live_daemon_is_disabled(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        bpf_unavailable("the daemon needs root")
    inject = tmp_path / "inject"
    inject.mkdir()
    (inject / "sitecustomize.py").write_text(SITECUSTOMIZE)
    config = tmp_path / "config.toml"
    config.write_text('mode = "monitor"\n')
    d = Daemon(tmp_path, config, extra_env={"PYTHONPATH": str(inject)})
    try:
        d.start()
    except AssertionError as e:
        bpf_unavailable(f"the daemon did not start: {e}")
    try:
        script = "open('/tmp/aw-boom', 'w').close(); open('/tmp/.env', 'w').close(); " \
                 "open('/tmp/.env').read(); import ctypes; ctypes.CDLL(None).unshare(0x10000000)"
        r = subprocess.run(sandbox(tmp_path, PY, "-c", script), timeout=60,
                           capture_output=True)
        assert r.returncode == 0, r.stderr
        got = wait(lambda: [a for a in d.alerts() if a.get("key") == "detector_error"], 20,
                   "the detector_error alert")
        (a,) = got
        assert a["detector"] == "credential_read" and "injected fault" in a["summary"]
        assert a["action"]["result"] == "detector disabled"
        # the others carry on; the disabled one stays quiet (.env read after it failed)
        wait(lambda: any(x["detector"] == "namespace_escape" for x in d.alerts()), 20,
             "the namespace_escape alert after the failure")
        assert not [x for x in d.alerts() if x["detector"] == "credential_read"
                    and x.get("key") != "detector_error"]
        assert d.alive() and d.status()["mode"] == "monitor"
        assert "Traceback" not in d.stderr()
    finally:
        assert d.stop() == 0
