"""Replaying JSON Lines fixtures through the detector engine, for the detector tests.

`tests/fixtures/detectors/<detector id>/{positive,negative}.jsonl` hold events in the exact
shape of docs/events.md (a session start with its `cwd`, bubblewrap's setup, the payload).
The process view the engine's exceptions match on (exe, argv) is built from the fixture's
own exec events, inherited at fork, as the collector's process table would.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson

from collector.events import EVENT_TYPES, AlertEvent, Event, ExecEvent, ForkEvent
from detectors.base import ProcView
from detectors.config import Config, defaults, parse
from detectors.engine import Engine

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "detectors"


def load_events(detector: str, name: str) -> list[Event]:
    path = FIXTURES / detector / f"{name}.jsonl"
    out = []
    for line in path.read_bytes().splitlines():
        if line.strip():
            obj = orjson.loads(line)
            out.append(EVENT_TYPES[obj["kind"]](**obj))
    return out


def config(overrides: dict[str, Any] | None = None) -> Config:
    """The built-in defaults, or the defaults with `{detector: {key: value}}` applied
    through the same parser a TOML file goes through."""
    if not overrides:
        return defaults()
    return parse({"detectors": overrides}, "<test>")


def replay(events: Iterable[Event], cfg: Config) -> list[AlertEvent]:
    procs: dict[int, ProcView] = {}
    engine = Engine(cfg, proc=procs.get)
    alerts: list[AlertEvent] = []
    for ev in events:
        if isinstance(ev, ExecEvent) and ev.ret == 0:
            procs[ev.pid] = ProcView(pid=ev.pid, ppid=ev.ppid, exe=ev.exe, argv=ev.argv,
                                     cwd=ev.cwd, comm=ev.comm)
        elif isinstance(ev, ForkEvent) and not ev.thread and ev.pid in procs:
            parent = procs[ev.pid]
            procs[ev.child_pid] = ProcView(pid=ev.child_pid, ppid=ev.pid, exe=parent.exe,
                                           argv=list(parent.argv), cwd=parent.cwd,
                                           comm=parent.comm)
        alerts.extend(engine.process(ev))
    alerts.extend(engine.flush())
    return alerts


def alerts_of(detector: str, name: str, overrides: dict[str, Any] | None = None,
              only: str | None = None) -> list[AlertEvent]:
    """The first (not folded) alerts of detector `only` (default: `detector`) over that
    detector's fixture."""
    only = only or detector
    return [a for a in replay(load_events(detector, name), config(overrides))
            if a.detector == only and not a.folded]


def summary(alerts: Iterable[AlertEvent]) -> list[tuple[str, str, str, str]]:
    """(detector, severity, requested action, key) of each alert, in order."""
    return [(a.detector, a.severity, a.action["requested"], a.key) for a in alerts]
