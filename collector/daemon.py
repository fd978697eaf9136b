"""`agentwatch daemon` and `agentwatch attach`: long-running collectors.

The daemon turns on launcher adoption in the kernel: every exec of a configured sandbox
launcher (default `bwrap`, so every bubblewrap sandbox on the host, sandbox-runtime's
included) starts a session with a setup phase. `attach` adopts one running tree. Both run
in the foreground until SIGTERM or SIGINT (attach: or until its session ends), then drain
the ring buffer and flush every sink before exiting.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterable
from types import FrameType

from collector.events import Event, SessionEvent
from collector.runtime import DEFAULT_LAUNCHERS, Collector, Sink
from collector.sinks import HumanAlertSink, JsonlSink, SinkError
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


class StdoutSummarySink:
    """One line per alert on stdout (journald's view of the service), flushed at once."""

    def __init__(self) -> None:
        self.dropped = 0

    def write(self, event: Event) -> None:
        from collector.sinks import alert_line

        try:
            print(alert_line(event), flush=True)
        except OSError:
            self.dropped += 1

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


def daemon(events: str | None, launchers: Iterable[str] = DEFAULT_LAUNCHERS,
           detection: DetectionConfig | None = None, alerts: str | None = None,
           log_dir: str | None = None, log_max_bytes: int = 100 << 20,
           log_keep: int = 5) -> int:
    """With `log_dir`: events and alerts to DIR/events.jsonl and DIR/alerts.jsonl, rotated
    at `log_max_bytes` keeping `log_keep` old files, and a one-line summary of each alert
    on stdout (for journald)."""
    sinks = _sinks(events)
    alert_sinks: list[Sink] = []
    if log_dir is not None:
        try:
            os.makedirs(log_dir, mode=0o750, exist_ok=True)
        except OSError as e:
            raise SinkError(f"cannot make log directory {log_dir}: {e.strerror}") from None
        sinks.append(JsonlSink(os.path.join(log_dir, "events.jsonl"), log_max_bytes,
                               log_keep))
        alert_sinks.append(JsonlSink(os.path.join(log_dir, "alerts.jsonl"), log_max_bytes,
                                     log_keep))
        alert_sinks.append(StdoutSummarySink())
        if alerts is not None:
            alert_sinks.append(JsonlSink(alerts))
    else:
        alert_sinks = _alert_sinks(alerts)
    collector = Collector(sinks, launchers=launchers, on_event=_announce,
                          detection=detection, alert_sinks=alert_sinks)
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
