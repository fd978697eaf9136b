"""`agentwatch daemon` and `agentwatch attach`: long-running collectors.

The daemon turns on launcher adoption in the kernel: every exec of a configured sandbox
launcher (default `bwrap`, so every bubblewrap sandbox on the host, sandbox-runtime's
included) starts a session with a setup phase. `attach` adopts one running tree. Both run
in the foreground until SIGTERM or SIGINT (attach: or until its session ends), then drain
the ring buffer and flush every sink before exiting.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterable
from types import FrameType

from collector.events import Event, SessionEvent
from collector.runtime import DEFAULT_LAUNCHERS, Collector, Sink
from collector.sinks import HumanAlertSink, JsonlSink
from detectors.config import Config as DetectionConfig


def _announce(event: Event) -> None:
    if isinstance(event, SessionEvent):
        if event.phase == "start":
            cmd = " ".join(event.argv)[:200].encode("unicode_escape").decode()
            print(f"agentwatch: session {event.session} started ({event.session_kind}, "
                  f"pid {event.root_pid}): {cmd}", file=sys.stderr, flush=True)
        else:
            print(f"agentwatch: session {event.session} ended: exit {event.exit_status}, "
                  f"{event.events} events, {event.lost} lost", file=sys.stderr, flush=True)


def _enforcement(collector: Collector) -> str:
    config = collector.analyzer.engine.config if collector.analyzer else None
    mode = config.mode if config else "monitor"
    return f"mode {mode}; {collector.policy.describe()}; {collector.egress.describe()}"


class _Stop:
    def __init__(self) -> None:
        self.requested = False
        self._old: dict[int, object] = {}

    def __enter__(self) -> _Stop:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            self._old[sig] = signal.signal(sig, self._handler)
        return self

    def _handler(self, _signum: int, _frame: FrameType | None) -> None:
        self.requested = True

    def __exit__(self, *_exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)  # type: ignore[arg-type]


def _sinks(events: str | None) -> list[Sink]:
    return [JsonlSink(events)] if events else []


def _alert_sinks(alerts: str | None) -> list[Sink]:
    return [JsonlSink(alerts) if alerts else HumanAlertSink()]


def daemon(events: str | None, launchers: Iterable[str] = DEFAULT_LAUNCHERS,
           detection: DetectionConfig | None = None, alerts: str | None = None) -> int:
    collector = Collector(_sinks(events), launchers=launchers, on_event=_announce,
                          detection=detection, alert_sinks=_alert_sinks(alerts))
    with _Stop() as stop:
        try:
            collector.start(adopt_launchers=True)
            problem = collector.serve_control()
            if problem:
                print(f"agentwatch: {problem}", file=sys.stderr, flush=True)
            print(f"agentwatch: daemon ready, adopting launchers: "
                  f"{', '.join(collector.launchers)}; {_enforcement(collector)}",
                  file=sys.stderr, flush=True)
            while not stop.requested:
                collector.poll(100)
            collector.drain()
            collector.check_losses()
        finally:
            collector.close()
    lost = collector.stats.lost
    unwritten = collector.sink_dropped()
    print(f"agentwatch: daemon stopped: {sum(collector.stats.events.values())} events, "
          f"{lost} lost" + (f", {unwritten} NOT WRITTEN" if unwritten else ""),
          file=sys.stderr)
    return 0


def attach(pid: int, events: str | None, detection: DetectionConfig | None = None,
           alerts: str | None = None) -> int:
    collector = Collector(_sinks(events), on_event=_announce, detection=detection,
                          alert_sinks=_alert_sinks(alerts))
    with _Stop() as stop:
        try:
            collector.start()
            problem = collector.serve_control()
            if problem:
                print(f"agentwatch: {problem}", file=sys.stderr, flush=True)
            session = collector.attach(pid)
            while not stop.requested and not session.ended:
                collector.poll(100)
            collector.drain()
            if not session.ended:
                collector.end_session(session, None)
        finally:
            collector.close()
    return 0
