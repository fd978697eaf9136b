"""The response engine against REAL process trees (root, real probes, real signals).

Each tree runs as a watched session (`service.run.run`, the code path of `agentwatch
run`), in its own cgroup or not, builds itself (tests/trees.py), then opens a decoy:
canary_touch asks for a kill. Every member must die, an unrelated process started by the
test must survive, and no signal may go to a process outside the session. Monitor mode
kills nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from collector.events import AlertEvent
from tests.conftest import REPO, bpf_unavailable
from tests.trees import MARK

pytestmark = pytest.mark.bpf
TREES = str(REPO / "tests" / "trees.py")


@pytest.fixture(scope="module")
def decoy() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="aw-response-"))
    (d / "decoy").write_text("bait\n")
    yield d / "decoy"
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def responder(decoy: Path) -> Iterator[tuple[Any, Any]]:
    if os.geteuid() != 0:
        bpf_unavailable("loading BPF needs root")
    from detectors.config import parse
    from service.pipeline import Collector
    from service.sinks import MemorySink

    # the user-space path alone (tests/test_enforce.py covers the kernel's own kills)
    config = parse({"mode": "enforce", "kernel_enforcement": False,
                    "detectors": {"canary_touch": {"paths": [str(decoy)]}}}, "<test>")
    alerts = MemorySink()
    c = Collector([], detection=config, alert_sinks=[alerts])
    try:
        c.start()
    except Exception as e:  # any load failure is reported the same way
        bpf_unavailable(f"cannot load the probes: {e}")
    yield c, alerts
    c.close()


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _bomb_sleepers() -> list[int]:
    out = []
    for p in psutil.process_iter(["cmdline", "status"]):
        if p.info["cmdline"] == ["sleep", MARK] and p.info["status"] != psutil.STATUS_ZOMBIE:
            out.append(p.pid)
    return out


def _run_tree(c: Any, alerts: Any, shape: str, decoy: Path, cgroup: bool,
              hold: float = 300.0) -> tuple[Any, list[int], list[AlertEvent]]:
    from service.run import run

    pidfile = Path(tempfile.mktemp(prefix="aw-tree-"))
    try:
        result = run([sys.executable, TREES, shape, str(pidfile), str(decoy), str(hold)],
                     collector=c, cgroup=cgroup)
        pids = [int(x) for x in pidfile.read_text().split()]
    finally:
        pidfile.unlink(missing_ok=True)
    got = [a for a in alerts.events if a.session == result.session]
    return result, pids, got


@pytest.mark.parametrize("cgroup", [True, False], ids=["cgroup", "pidfd"])
@pytest.mark.parametrize("shape", ["chain", "daemon", "noterm", "bomb"])
def test_kill_takes_the_whole_tree(responder: tuple[Any, Any], decoy: Path,
                                   sibling: subprocess.Popen[bytes], shape: str,
                                   cgroup: bool) -> None:
    c, alerts = responder
    sent_before = len(c.responder.signals_sent)
    result, pids, got = _run_tree(c, alerts, shape, decoy, cgroup)
    assert result.exit_status == 128 + 9, "the session root was not killed"
    # the decoy's canary_touch, or for the bomb fork_bomb, which may come first
    kills = [a for a in got if a.action["taken"] == "kill"]
    assert kills and kills[0].detector in ("canary_touch", "fork_bomb"), got
    action = kills[0].action
    assert action["requested"] == "kill" and action["taken"] == "kill", action
    assert "STILL ALIVE" not in action["result"] and "killed" in action["result"], action
    method = "cgroup.kill" if cgroup else "pidfd"
    assert action["result"].split("(")[1].startswith(method), action
    time.sleep(0.2)  # reparented members are reaped by init
    survivors = [p for p in pids if _alive(p)] + _bomb_sleepers()
    assert not survivors, f"members of the session survived: {survivors}"
    session = c.sessions[result.session]
    assert c.session_members(session.id) == []
    # only members of the session were signalled: every pid signalled was recorded by the
    # tree, or is a sleeper the bomb forked (shell children, not recorded one by one)
    signalled = {pid for pid, _sig in c.responder.signals_sent[sent_before:]}
    assert sibling.pid not in signalled and os.getpid() not in signalled
    assert session.kill is not None and session.kill.died >= len(pids)
    if session.cgroup is not None:
        assert not session.cgroup.path.exists(), "the session cgroup was left behind"
    assert (session.cgroup is not None) == cgroup


def test_monitor_mode_kills_nothing(responder: tuple[Any, Any], decoy: Path,
                                   sibling: subprocess.Popen[bytes]) -> None:
    c, alerts = responder
    engine = c.analyzer.engine
    sent_before = len(c.responder.signals_sent)
    engine.config.mode = "monitor"
    try:
        result, pids, got = _run_tree(c, alerts, "chain", decoy, cgroup=True, hold=0.5)
    finally:
        engine.config.mode = "enforce"
    try:
        assert result.exit_status == 0
        (alert,) = [a for a in got if a.detector == "canary_touch"]
        assert alert.action["taken"] == "none"
        assert alert.action["result"] == "monitor mode: would kill the session"
        assert c.responder.signals_sent[sent_before:] == []
        assert all(_alive(p) for p in pids[1:]), "monitor mode killed a process"
    finally:
        for p in pids[1:]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, 9)
        cg = c.sessions[result.session].cgroup
        assert cg is not None and cg.remove() == ""


def _wait_for(pred: Any, timeout: float = 20.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _ticks(path: Path) -> int:
    try:
        return len(path.read_text())
    except OSError:
        return 0


@pytest.mark.parametrize("cgroup", [True, False], ids=["cgroup", "sigstop"])
def test_freeze_then_thaw_then_kill_from_the_command_line(tmp_path: Path,
                                                          cgroup: bool) -> None:
    """`agentwatch run` (the real CLI) freezes a session on a freeze alert; `agentwatch
    session list/thaw/kill` (another process) see it, thaw it, then kill it."""
    if os.geteuid() != 0:
        bpf_unavailable("needs root")
    aw = str(Path(sys.executable).parent / "agentwatch")
    decoy = tmp_path / "decoy"
    decoy.write_text("bait\n")
    ticks = tmp_path / "ticks"
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'mode = "enforce"\n[detectors.canary_touch]\npaths = ["{decoy}"]\n'
                   'action = "freeze"\n')
    env = {**os.environ, "AGENTWATCH_RUN_DIR": str(tmp_path / "run")}
    # the workload forks, the child opens the decoy, then both tick every 20 ms
    work = textwrap.dedent(f"""
        import os, time
        if os.fork() == 0:
            open({str(decoy)!r}).read()
        while True:
            with open({str(ticks)!r}, "a") as f:
                f.write(".")
            time.sleep(0.02)
    """)
    args = [aw, "run", "--config", str(cfg), "--alerts", str(tmp_path / "alerts.jsonl")]
    if not cgroup:
        args.append("--no-cgroup")
    proc = subprocess.Popen([*args, "--", sys.executable, "-c", work], env=env,
                            stderr=subprocess.PIPE)
    try:
        def listed() -> list[dict[str, Any]]:
            out = subprocess.run([aw, "session", "list", "--json"], env=env,
                                 capture_output=True, text=True, timeout=30).stdout
            return [json.loads(line) for line in out.splitlines()]

        _wait_for(lambda: any(s["state"] == "frozen" for s in listed()), what="the freeze")
        (s,) = listed()
        assert s["members"] == 2 and (s["cgroup"] is not None) == cgroup
        alert = json.loads((tmp_path / "alerts.jsonl").read_text().splitlines()[0])
        assert alert["detector"] == "canary_touch" and alert["action"]["taken"] == "freeze"
        assert "thaw" in alert["action"]["result"], alert["action"]
        before = _ticks(ticks)
        time.sleep(0.5)
        assert _ticks(ticks) == before, "the frozen session kept running"
        out = subprocess.run([aw, "session", "thaw", s["session"]], env=env,
                             capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        _wait_for(lambda: _ticks(ticks) > before + 5, what="the thawed session to run")
        out = subprocess.run([aw, "session", "kill", s["session"]], env=env,
                             capture_output=True, text=True, timeout=30)
        assert out.returncode == 0 and "killed 2 processes" in out.stdout, out
        assert proc.wait(timeout=30) == 128 + 9
        out = subprocess.run([aw, "session", "kill", "0123456789abcdef"], env=env,
                             capture_output=True, text=True, timeout=30)
        assert out.returncode == 1 and "no running agentwatch watches" in out.stderr
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
