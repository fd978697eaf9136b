"""Pinned probes (probes/pins.py): kernel rules and the watched set outlive the daemon.

Root tests load the real probes under a pin root of their own below /sys/fs/bpf (removed
at the end) and run the real daemon (bench.harness.Daemon) and `agentwatch run`:
- a daemon in enforce mode is SIGKILLed while a sandbox runs; during the gap the kernel
  still kills the sandbox's namespace escape; the restarted daemon re-uses the pins (no
  compile, the very same links) and reports the gap's kill and the session's later acts;
- a pin set of another build, a half-made one and stray entries are replaced, not trusted;
- `agentwatch run -- true` with warm pins (its wall time is printed, not asserted), and
  with the pins held by another reader (a private load, said in one line);
- fail_closed: a sandbox that starts while no daemon reads is stopped, and the daemon
  that takes over releases it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.harness import AW, Daemon, sandbox, wait
from tests.conftest import bpf_unavailable

PY = sys.executable


# ------------------------------------------------------------------------------ unit
def test_late_programs_cover_what_enforce_attaches_later() -> None:
    from probes.pins import LATE_PROGRAMS
    from response.enforce import EGRESS_HOOKS

    late = {name: (kind, attach) for name, kind, attach in LATE_PROGRAMS}
    for name, attach in EGRESS_HOOKS:
        assert late[name] == ("CGROUP_SOCK_ADDR", attach)
    assert len(late) == len(EGRESS_HOOKS)


def test_fail_closed_is_an_enforce_mode_option() -> None:
    from detectors.config import ConfigError, parse
    from response import enforce

    cfg = parse({"mode": "enforce", "fail_closed": True}, "t.toml")
    pol = enforce.policy_for(cfg)
    assert pol.fail_closed_ns == enforce.FAIL_CLOSED_GRACE_NS
    assert "fail_closed" in pol.describe()
    assert enforce.policy_for(parse({"fail_closed": True}, "t.toml")).fail_closed_ns == 0
    off = parse({"mode": "enforce", "kernel_enforcement": False, "fail_closed": True}, "t")
    assert enforce.policy_for(off).fail_closed_ns and not enforce.policy_for(off).mask
    with pytest.raises(ConfigError, match="fail_closed"):
        parse({"fail_closed": "yes"}, "t.toml")


def test_the_pin_directory_is_guarded_by_monitor_tamper() -> None:
    from detectors.config import parse
    from response import enforce

    pol = enforce.policy_for(parse({"mode": "enforce"}, "t.toml"))
    # a deny_paths entry covering everything below it (AW_DENY_DIR)
    assert pol.deny_paths["/sys/fs/bpf"] & enforce.DENY_DIR


def test_build_id_follows_the_source_and_flags() -> None:
    from probes import pins

    a = pins.build_id(b"int x;", ["-DA=1"])
    assert a == pins.build_id(b"int x;", ["-DA=1"])
    assert a != pins.build_id(b"int x;", ["-DA=2"])
    assert a != pins.build_id(b"int y;", ["-DA=1"])
    assert all(c in "0123456789abcdef" for c in a)


# ------------------------------------------------------------------------------ root
@pytest.fixture
def pin_root(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """A pin root of this test's own under /sys/fs/bpf and its state directory; every pin
    there is removed afterwards."""
    if os.geteuid() != 0:
        bpf_unavailable("pinning needs root")
    from probes import pins

    root = Path(f"/sys/fs/bpf/awtest_{os.getpid()}_{tmp_path.name}"[:100])
    state = tmp_path / "run" / "pins"
    try:
        pins.ensure_bpffs(root)
    except pins.PinError as e:
        bpf_unavailable(str(e))
    yield root, state
    pins.unload(root, state)
    assert not root.exists()


def _config(root: Path, state: Path, **kw: Any) -> Any:
    from probes.loader import ProbeConfig

    return ProbeConfig(pin_root=str(root), pin_state=str(state), **kw)


def _load(config: Any) -> Any:
    from probes import loader

    try:
        return loader.load(config)
    except loader.ProbeLoadError as e:
        bpf_unavailable(f"cannot load the probes: {e}")


def _same_table(a: Any, b: Any) -> None:
    import ctypes

    assert type(a) is type(b)
    skip = {"bpf", "map_id", "map_fd", "_cbs", "Key", "Leaf", "sLeaf"}
    assert {k: v for k, v in vars(a).items() if k not in skip} == \
        {k: v for k, v in vars(b).items() if k not in skip}
    for attr in ("Key", "Leaf"):
        ta, tb = getattr(a, attr), getattr(b, attr)
        assert ctypes.sizeof(ta) == ctypes.sizeof(tb)
        assert [f[0] for f in getattr(ta, "_fields_", [])] == \
            [f[0] for f in getattr(tb, "_fields_", [])]


@pytest.mark.bpf
@pytest.mark.slow
def test_stale_pins_are_replaced_and_a_build_reused_untouched(
        pin_root: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    import ctypes

    from probes import bpfsys, loader, pins

    root, state = pin_root
    # a fresh set forgets BCC's compiled object once pinned (probes/residency.py): kept
    # here, to compare BCC's tables with those made over the pins, then forgotten
    forget = pins._forget_compiled
    monkeypatch.setattr(pins, "_forget_compiled", lambda probes: None)
    first = _load(_config(root, state, extra_cflags=["-DAW_PINS_TEST=1"]))
    monkeypatch.setattr(pins, "_forget_compiled", forget)
    try:
        assert first.pins is not None and not first.pins.reused and not first.pin_note
        old = first.pins.build
        # BCC's tables and the ones made over the pins behave the same (every map the
        # project reads or writes)
        for name in (b"watched", b"sessions", b"config", b"lost", b"launchers",
                     b"deny_paths", b"exempt_comms", b"protected", b"inet_fds",
                     b"sys_spec", b"egress_allow4", b"events", b"enforced"):
            m = first.pins.desc["maps"][name.decode()]
            _same_table(first.bcc[name], pins.make_table(name, first.bcc[name].map_fd, m))
        forget(first)  # what a fresh set does: the maps are the pinned ones from then on
        assert first.bcc is None and first.pins.link_ids()
        first[b"config"][ctypes.c_int(0)] = first[b"config"][ctypes.c_int(0)]
    finally:
        first.close()
    (root / "stray").mkdir()
    second = _load(_config(root, state))
    try:
        assert second.pins is not None and not second.pins.reused
        new = second.pins.build
        assert new != old
        assert sorted(p.name for p in root.iterdir()) == [new]  # old build, stray: gone
        assert sorted(p.name for p in state.glob("*.json")) == [f"{new}.json"]
        ids = second.pins.link_ids()
        assert len(ids) >= 5  # sched, signal, sock tracepoints and the syscalls' links
    finally:
        second.close()
    # the same build again: re-used, nothing compiled, the very same links and maps
    t0 = time.monotonic()
    third = _load(_config(root, state))
    took = time.monotonic() - t0
    try:
        assert third.bcc is None and third.pins.reused and third.pins.build == new
        assert third.pins.link_ids() == ids
        watched = third[b"watched"]
        leaf = watched.Leaf()
        leaf.session = 7
        watched[ctypes.c_uint32(999999)] = leaf
        assert int(watched[ctypes.c_uint32(999999)].session) == 7
        del watched[ctypes.c_uint32(999999)]
        assert len(loader.read_lost(third)) == len(loader.read_lost(third))
        print(f"\nre-used pinned probes in {took:.3f} s")
    finally:
        third.close()
    # a set missing a pin is not trusted: compiled and pinned again
    map_pin = next((root / new / "maps").iterdir())
    map_pin.unlink()
    fourth = _load(_config(root, state))
    try:
        assert fourth.bcc is None and not fourth.pins.reused  # compiled, pinned, forgotten
        assert (root / new / "maps" / map_pin.name).exists()
        fd = bpfsys.obj_get(root / new / "maps" / map_pin.name)
        os.close(fd)
    finally:
        fourth.close()


def _aw(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([AW, *args], env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.bpf
@pytest.mark.slow
def test_run_reuses_warm_pins_and_goes_private_when_they_are_taken(
        pin_root: tuple[Path, Path], tmp_path: Path) -> None:
    from probes import pins

    root, state = pin_root
    env = {**os.environ, "AGENTWATCH_PIN_ROOT": str(root),
           "AGENTWATCH_RUN_DIR": str(tmp_path / "run"),
           "AGENTWATCH_STATE_DIR": str(tmp_path / "state")}
    t0 = time.monotonic()
    cold = _aw(env, "run", "--", "true")
    cold_s = time.monotonic() - t0
    assert cold.returncode == 0, cold.stderr
    (desc,) = state.glob("*.json")
    created = json.loads(desc.read_text())["created_ns"]
    warm = []
    for _ in range(3):
        t0 = time.monotonic()
        out = _aw(env, "run", "--", "true")
        warm.append(time.monotonic() - t0)
        assert out.returncode == 0, out.stderr
        assert "pinned" not in out.stderr and "0 lost" in out.stderr
    assert json.loads(desc.read_text())["created_ns"] == created  # re-used, not re-made
    # losses in the pinned counters are reported once, by the next reader, not again by
    # every reader after it: 5 opens lost on each CPU, written into the pinned map
    (lost_map,) = root.glob("*/maps/lost")
    subprocess.run(["bpftool", "map", "update", "pinned", str(lost_map), "key", "4", "0",
                    "0", "0", "value", "5", "0", "0", "0", "0", "0", "0", "0"], check=True)
    from bcc.utils import get_possible_cpus

    ncpu = len(get_possible_cpus())  # a per-CPU map has a slot for each possible CPU
    first, second = (_aw(env, "run", "--", "true") for _ in range(2))
    assert f"{5 * ncpu} LOST" in first.stderr, first.stderr
    assert "0 lost" in second.stderr, second.stderr
    print(f"\nagentwatch run -- true: cold {cold_s:.2f} s (compile and pin), warm "
          + ", ".join(f"{w:.2f}" for w in warm) + " s")
    # another reader holds the pins: a private load, said in one line
    lock = pins.ReaderLock(root, state)
    assert lock.acquire(0) is None
    try:
        out = _aw(env, "run", "--", "true")
    finally:
        lock.release()
    assert out.returncode == 0, out.stderr
    notes = [x for x in out.stderr.splitlines() if "pinned probes" in x]
    assert len(notes) == 1 and f"in use by pid {os.getpid()}" in notes[0], out.stderr


# ------------------------------------------------------------------------------ daemon
GAP_SCRIPT = """
import ctypes, os, sys, time
L = ctypes.CDLL(None, use_errno=True)
out = sys.argv[1]
open(os.path.join(out, "a_ready"), "w").close()
while not os.path.exists(os.path.join(out, "go1")):
    time.sleep(0.05)
pid = os.fork()
if pid == 0:                   # a new network namespace: killed in the kernel
    L.unshare(0x40000000)
    os._exit(0)
status = os.waitpid(pid, 0)[1]
with open(os.path.join(out, "status1"), "w") as f:
    f.write(str(status))
time.sleep(60)                 # the next daemon kills the rest of the session
"""
LATER_SCRIPT = """
import os, subprocess, sys, time
out = sys.argv[1]
open(os.path.join(out, "b_ready"), "w").close()
while not os.path.exists(os.path.join(out, "go2")):
    time.sleep(0.05)
subprocess.run(["/bin/true", "after-the-restart"], check=True)
"""


def _events(d: Daemon) -> list[dict[str, Any]]:
    path = d.log / "events.jsonl"
    if not path.exists():
        return []
    return [json.loads(x) for x in path.read_bytes().splitlines() if x.strip()]


def _pinned_daemon(tmp: Path, root: Path, config: str) -> Daemon:
    cfg = tmp / "config.toml"
    cfg.write_text(config)
    return Daemon(tmp, cfg, extra_env={"AGENTWATCH_PIN_ROOT": str(root)})


def _start(d: Daemon) -> None:
    try:
        d.start()
    except AssertionError as e:
        bpf_unavailable(f"the daemon did not start: {e}")


def _links_now(root: Path, desc: dict[str, Any]) -> dict[str, int]:
    from probes import bpfsys

    out = {}
    for pin in desc["links"]:
        fd = bpfsys.obj_get(root / desc["build"] / "links" / pin)
        try:
            out[pin] = bpfsys.link_info(fd)[1]
        finally:
            os.close(fd)
    return out


@pytest.mark.bpf
@pytest.mark.slow
@pytest.mark.e2e
def test_kernel_rules_outlive_a_killed_daemon_and_the_next_one_reuses_them(
        pin_root: tuple[Path, Path], tmp_path: Path) -> None:
    root, state = pin_root
    d = _pinned_daemon(tmp_path, root, 'mode = "enforce"\n')
    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "gap.py").write_text(GAP_SCRIPT)
    (tmp_path / "later.py").write_text(LATER_SCRIPT)
    _start(d)
    assert "probes pinned" in d.stderr()
    boxes = [subprocess.Popen(sandbox(tmp_path, PY, str(tmp_path / script), str(out),
                                      binds=(str(out),))) for script in ("gap.py", "later.py")]
    a, b = boxes
    try:
        wait(lambda: (out / "a_ready").exists() and (out / "b_ready").exists(), 60,
             "the sandboxes' scripts to start")

        def session_of(box: subprocess.Popen[bytes]) -> str | None:
            return next((e["session"] for e in _events(d) if e.get("kind") == "session"
                         and e.get("phase") == "start" and e.get("root_pid") == box.pid),
                        None)
        sid_a = wait(lambda: session_of(a), 30, "session A's start")
        sid_b = wait(lambda: session_of(b), 30, "session B's start")
        (desc_path,) = state.glob("*.json")
        desc = json.loads(desc_path.read_text())
        links = _links_now(root, desc)
        assert {p: link["id"] for p, link in desc["links"].items()} == links
        d.proc.kill()  # type: ignore[union-attr]
        d.proc.wait()  # type: ignore[union-attr]
        # the gap: no daemon, the kernel rules still kill
        (out / "go1").touch()
        status = int(wait(lambda: (out / "status1").exists() and
                          (out / "status1").read_text(), 30, "the escape in the gap"))
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, status
        # the next daemon: the same pins, nothing compiled or attached, sessions go on
        _start(d)
        err = d.stderr(since_spawn=True)
        assert "pinned probes re-used" in err and "2 sessions continued" in err, err
        assert _links_now(root, desc) == links
        assert json.loads(desc_path.read_text())["created_ns"] == desc["created_ns"]
        # the gap's kill (its record waited in the pinned ring) is reported, and the
        # session that made it is killed whole, as under the first daemon
        wait(lambda: any(x.get("detector") == "namespace_escape" and x.get("session") ==
                         sid_a for x in d.alerts()), 30, "the gap's kill, reported")
        assert a.wait(timeout=30) != 0
        # the other session's later acts are the new daemon's events, and its end
        (out / "go2").touch()
        assert b.wait(timeout=30) == 0
        wait(lambda: any(e.get("kind") == "exec" and e.get("session") == sid_b and
                         "after-the-restart" in e.get("argv", []) for e in _events(d)), 30,
             "session B's exec after the restart")
        wait(lambda: any(e.get("kind") == "session" and e.get("phase") == "end"
                         and e.get("session") == sid_b for e in _events(d)), 30,
             "session B's end, seen by the new daemon")
    finally:
        for box in boxes:
            if box.poll() is None:
                box.kill()
                box.wait()
        t0 = time.monotonic()
        d.stop()
        print(f"\ndaemon with pins stopped in {time.monotonic() - t0:.2f} s")


HELD_SCRIPT = """
import os, sys
with open(os.path.join(sys.argv[1], "ran"), "w") as f:
    f.write("1")
"""


def _tree(pid: int) -> list[int]:
    from collector.sessions import descendants

    return descendants(pid)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return ""


@pytest.mark.bpf
@pytest.mark.slow
@pytest.mark.e2e
def test_fail_closed_holds_new_sessions_until_a_daemon_reads(
        pin_root: tuple[Path, Path], tmp_path: Path) -> None:
    root, _state_dir = pin_root
    d = _pinned_daemon(tmp_path, root, 'mode = "enforce"\nfail_closed = true\n')
    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "held.py").write_text(HELD_SCRIPT)
    _start(d)
    assert "fail_closed" in d.stderr()
    d.proc.kill()  # type: ignore[union-attr]
    d.proc.wait()  # type: ignore[union-attr]
    time.sleep(2.5)  # past the grace (response.enforce.FAIL_CLOSED_GRACE_NS)
    box = subprocess.Popen(sandbox(tmp_path, PY, str(tmp_path / "held.py"), str(out),
                                   binds=(str(out),)))
    try:
        wait(lambda: any(_state(p) == "T" for p in _tree(box.pid)), 30,
             "the new session's processes to be stopped")
        time.sleep(1)
        assert not (out / "ran").exists() and box.poll() is None
        _start(d)  # the reader is back: it releases them
        wait(lambda: (out / "ran").exists(), 30, "the held sandbox to run")
        assert box.wait(timeout=30) == 0
    finally:
        if box.poll() is None:
            for p in _tree(box.pid):
                os.kill(p, signal.SIGCONT)
            box.kill()
            box.wait()
        d.stop()
