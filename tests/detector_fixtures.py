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

from collector.events import AlertEvent, Event
from detectors.config import Config, defaults, parse
from service.replay import Analyzer, read_events

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "detectors"


def load_events(detector: str, name: str) -> list[Event]:
    return list(read_events(FIXTURES / detector / f"{name}.jsonl"))


def config(overrides: dict[str, Any] | None = None) -> Config:
    """The built-in defaults, or the defaults with `{detector: {key: value}}` applied
    through the same parser a TOML file goes through."""
    if not overrides:
        return defaults()
    return parse({"detectors": overrides}, "<test>")


def replay(events: Iterable[Event], cfg: Config) -> list[AlertEvent]:
    """The engine over recorded events, as `agentwatch replay` runs it."""
    analyzer = Analyzer(cfg)
    alerts: list[AlertEvent] = []
    for ev in events:
        alerts.extend(analyzer.feed(ev))
    alerts.extend(analyzer.finish())
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
