"""Shared fixtures.

Root tests load the real probes once per test session (`collector`) and run small real
workloads as sessions through `service.run.run`, the code path of `agentwatch run`.
Without root or a loadable kernel they skip on a developer's machine, but with CI=true
they FAIL: a BPF test that cannot load is a hidden failure, never a pass.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.harness import Daemon  # noqa: E402
from collector.events import Event  # noqa: E402
from service.sinks import MemorySink  # noqa: E402

IN_CI = os.environ.get("CI", "").lower() == "true"
# The daemon and `run` pin their probes under /sys/fs/bpf/agentwatch by default, which
# every agentwatch on the host shares: the tests' own runs and daemons load privately
# unless a test names a pin root of its own (tests/test_pins.py does).
os.environ.setdefault("AGENTWATCH_PIN_ROOT", "off")


def bpf_unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"BPF test cannot run in CI: {reason}", pytrace=False)
    pytest.skip(reason)


RecordingSink = MemorySink


def running(tmp: Path, config: Path, **kw: object) -> Iterator[Daemon]:
    """A module fixture's body: a bench.harness.Daemon started (or the test failed under
    CI=true / skipped without BPF), yielded, stopped. `kw` goes to Daemon."""
    if os.geteuid() != 0:
        bpf_unavailable("the daemon needs root")
    d = Daemon(tmp, config, **kw)  # type: ignore[arg-type]
    try:
        d.start()
    except AssertionError as e:
        bpf_unavailable(f"the daemon did not start: {e}")
    yield d
    d.stop()


@contextmanager
def busy_outsider(code: str) -> Iterator[subprocess.Popen[bytes]]:
    """A Python process OUTSIDE any session, running `code` (which should loop for a
    second or two) while the body of the `with` runs; waited for on exit."""
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)])
    try:
        time.sleep(0.3)  # let it get busy first
        yield proc
    finally:
        assert proc.wait(timeout=60) == 0, "the outsider workload failed"


@pytest.fixture
def sibling() -> Iterator[subprocess.Popen[bytes]]:
    """An unrelated process, outside every session: it must survive every kill."""
    proc = subprocess.Popen(["sleep", "600"])
    yield proc
    assert proc.poll() is None, "a process outside the session was killed"
    proc.kill()
    proc.wait()


@pytest.fixture(scope="session")
def loaded() -> Iterator[tuple[object, RecordingSink]]:
    if os.geteuid() != 0:
        bpf_unavailable("loading BPF needs root")
    from service.pipeline import Collector

    sink = RecordingSink()
    collector = Collector([sink])
    try:
        collector.start()
    except Exception as e:  # any load failure is reported the same way
        bpf_unavailable(f"cannot load the probes: {e}")
    yield collector, sink
    collector.close()


def detecting(detection: object = None, events_level: str = "interest"
              ) -> Iterator[tuple[object, MemorySink, MemorySink]]:
    """A module fixture's body: a Collector with detection (the built-in defaults unless
    given) started, yielded with its events sink and its alerts sink, closed after; any
    load failure fails the test under CI=true (bpf_unavailable)."""
    if os.geteuid() != 0:
        bpf_unavailable("loading BPF needs root")
    from detectors.config import defaults
    from service.pipeline import Collector

    events, alerts = MemorySink(), MemorySink()
    c = Collector([events], detection=detection or defaults(),  # type: ignore[arg-type]
                  alert_sinks=[alerts], events_level=events_level)
    try:
        c.start()
    except Exception as e:  # any load failure is reported the same way
        bpf_unavailable(f"cannot load the probes: {e}")
    yield c, events, alerts
    c.close()


@dataclass
class SessionRun:
    exit_status: int
    session: str
    root_pid: int
    events: list[Event]

    def of(self, kind: str) -> list[Event]:
        return [e for e in self.events if e.kind == kind]


@pytest.fixture
def run_session(loaded: tuple[object, RecordingSink]):  # type: ignore[no-untyped-def]
    """run_session(argv) -> SessionRun: argv run as a watched session, its events."""
    from service.run import run

    collector, sink = loaded

    def _run(argv: list[str]) -> SessionRun:
        result = run(argv, collector=collector)  # type: ignore[arg-type]
        events = sink.session(result.session)
        start = next(e for e in events if e.kind == "session")
        return SessionRun(result.exit_status, result.session, start.pid, events)

    return _run


@pytest.fixture
def bpf_collector(loaded: tuple[object, RecordingSink]):  # type: ignore[no-untyped-def]
    return loaded
