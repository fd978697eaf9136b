"""Recorded JSON Lines -> events, and the analysis that turns events into alerts.

`read_events` never raises on a bad line: a recording cut mid-line (a daemon killed), a
line that is not JSON, not UTF-8, of an unknown kind or with wrong fields is skipped and
counted, with its file and line number, in `ReadReport`. `replay` runs the detectors
(service/analysis.py's `Analyzer`) over a recording.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import orjson

from collector.events import EVENT_TYPES, AlertEvent, Event
from detectors.config import Config
from service.analysis import Analyzer

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
