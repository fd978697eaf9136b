"""Recorded JSON Lines -> events, and the analysis that turns events into alerts.

`read_events` never raises on a bad line: a recording cut mid-line (a daemon killed), a
line that is not JSON, not UTF-8, of an unknown kind or with wrong fields is skipped and
counted, with its file and line number, in `ReadReport`. `Analyzer` runs the detector
engine over events, live (sharing the collector's process table) or over a recording
(building its own table from the events, with no /proc reads).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson

from collector.events import EVENT_TYPES, AlertEvent, Event, SessionEvent
from collector.proctable import ProcessTable
from detectors.base import ProcView, SessionView
from detectors.config import Config
from detectors.engine import Engine

_BASE_TYPES: dict[str, tuple[type, ...]] = {"v": (int,), "ts": (int,), "pid": (int,),
                                           "kind": (str,)}


class ReplayError(ValueError):
    pass


@dataclass
class ReadReport:
    lines: int = 0
    events: int = 0
    skipped: int = 0
    problems: list[str] = field(default_factory=list)  # the first few, "file:line: why"

    def note(self, where: str, why: str) -> None:
        self.skipped += 1
        if len(self.problems) < 10:
            self.problems.append(f"{where}: {why}")


def parse_line(raw: bytes) -> Event:
    """One JSON Lines record -> Event; ValueError with a one-line reason otherwise."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise ValueError(f"not JSON ({str(e).split(':')[0]})") from None
    if not isinstance(obj, dict):
        raise ValueError("not a JSON object")
    kind = obj.get("kind")
    cls = EVENT_TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ValueError(f"unknown kind {kind!r}")
    for key, types in _BASE_TYPES.items():
        if key in obj and (not isinstance(obj[key], types) or isinstance(obj[key], bool)):
            raise ValueError(f"{key} is {type(obj[key]).__name__}, expected "
                             f"{types[0].__name__}")
    if not isinstance(obj.get("session"), (str, type(None))):
        raise ValueError("session must be a string or null")
    try:
        return cls(**obj)
    except TypeError as e:
        raise ValueError(f"{kind} event: {e}") from None


def read_events(path: str | Path, report: ReadReport | None = None) -> Iterator[Event]:
    report = report if report is not None else ReadReport()
    try:
        f: IO[bytes] = open(path, "rb")  # noqa: SIM115
    except OSError as e:
        raise ReplayError(f"cannot read {path}: {e.strerror}") from None
    with f:
        for n, raw in enumerate(f, 1):
            report.lines += 1
            raw = raw.strip()
            if not raw:
                continue
            try:
                ev = parse_line(raw)
            except ValueError as e:
                report.note(f"{path}:{n}", str(e))
                continue
            report.events += 1
            yield ev


def protect_self(params: dict[str, Any], own_paths: list[str]) -> None:
    """monitor_tamper's view of this agentwatch: its pid and thread ids (signals, ptrace,
    /proc/<id>), and where it keeps its configuration, state, logs and sockets when they
    are not the default places (`own_paths`: the config file, the log directory; the run
    and state directories from the environment)."""
    from probes.kernel import state_dir
    from response.enforce import own_ids
    from service.control import run_dir

    pids = params.get("monitor_pids")
    if isinstance(pids, list):
        for pid in sorted(own_ids()):
            if str(pid) not in pids:
                pids.append(str(pid))
    paths = params.get("paths")
    if isinstance(paths, list):
        for p in [*own_paths, str(run_dir()), str(state_dir())]:
            p = os.path.abspath(p)
            for pat in (p, p + "/**"):
                if pat not in paths:
                    paths.append(pat)


class Analyzer:
    """Detector engine + the views it needs (process, ancestry, session)."""

    def __init__(self, config: Config, table: ProcessTable | None = None,
                 live: bool = False, own_paths: list[str] | None = None) -> None:
        self.own_table = table is None
        self.live = live
        self.table = table if table is not None else ProcessTable(read_proc=False)
        self.sessions: dict[str, SessionView] = {}
        if live and "monitor_tamper" in config.detectors:
            protect_self(config.detectors["monitor_tamper"].params, own_paths or [])
        self.engine = Engine(config, proc=self._proc, ancestry=self._ancestry,
                             session=self._session)

    def _proc(self, pid: int) -> ProcView | None:
        p = self.table.get(pid)
        if p is None:
            return None
        return ProcView(pid=p.pid, ppid=p.ppid, exe=p.exe, argv=p.argv, cwd=p.cwd,
                        comm=p.comm)

    def _ancestry(self, pid: int) -> list[dict[str, Any]]:
        return [p.brief() for p in self.table.ancestry(pid)]

    def _session(self, name: str) -> SessionView | None:
        return self.sessions.get(name)

    def feed(self, ev: Event) -> list[AlertEvent]:
        if isinstance(ev, SessionEvent) and ev.phase == "start" and ev.session:
            self.sessions[ev.session] = SessionView(ev.session, ev.session_kind,
                                                    ev.root_pid, ev.cwd)
            if self.own_table:
                self.table.add_root(ev.root_pid, ev.ppid, ev.session, ev.argv, ev.ts,
                                    uid=ev.uid, cwd=ev.cwd)
        elif self.own_table and not isinstance(ev, AlertEvent):
            self.table.observe(ev)
        alerts = self.engine.process(ev)
        if not self.live:
            for a in alerts:
                if a.action.get("taken") == "pending":
                    a.action = {**a.action, "taken": "none",
                                "result": f"replay: would {a.action['requested']} the session"}
        if isinstance(ev, SessionEvent) and ev.phase == "end" and ev.session:
            self.sessions.pop(ev.session, None)
        return alerts

    def finish(self) -> list[AlertEvent]:
        return self.engine.flush()


def replay(path: str | Path, config: Config) -> tuple[list[AlertEvent], ReadReport]:
    report = ReadReport()
    analyzer = Analyzer(config)
    alerts: list[AlertEvent] = []
    for ev in read_events(path, report):
        alerts.extend(analyzer.feed(ev))
    alerts.extend(analyzer.finish())
    return alerts, report


def alert_identity(a: AlertEvent) -> tuple[str, str, str, str, bool]:
    """What makes two alerts 'the same' across configs (for --diff)."""
    return (a.detector, a.session or "", a.key, a.severity, a.folded)
