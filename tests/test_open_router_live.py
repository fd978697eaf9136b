"""The open router (detectors/openroute.py) on REAL events (root, real probes): a search
burst in a bubblewrap sandbox with a credential read, a /proc read of another process and
a write outside the workspace hidden in it. The live collector must alert on each, and
the events it recorded must give the same alerts replayed with the router as with every
open given to every detector that reads opens.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from collector.events import Event, OpenEvent
from detectors.base import REGISTRY
from detectors.config import defaults
from service.analysis import Analyzer
from tests.conftest import detecting
from tests.test_detectors_live_a import agent_sandbox, of, py, session_alerts

pytestmark = pytest.mark.bpf


@pytest.fixture(scope="module")
def recording() -> Iterator[tuple[Any, Any, Any]]:
    """A collector on the built-in defaults keeping every event and every alert; every
    open is sent (the kernel's interest filter would count most of the burst instead:
    the router is what is tested here, on every open)."""
    for c, events, alerts in detecting(events_level="all"):
        yield c, alerts, events


def _replay(events: list[Event]) -> list[tuple[Any, ...]]:
    analyzer = Analyzer(defaults())
    out = []
    for ev in events:
        out.extend(analyzer.feed(ev))
    out.extend(analyzer.finish())
    return [(a.detector, a.severity, a.key, a.summary, a.count, a.folded) for a in out]


@pytest.mark.e2e
def test_a_search_burst_hides_nothing_from_the_router(
        recording: tuple[Any, Any, Any], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    c, alerts, events = recording
    workspace, home = tmp_path / "ws", tmp_path / "home"
    workspace.mkdir()
    home.mkdir()
    argv = agent_sandbox(workspace, home) + py("""
        import os
        n = 0
        for top, dirs, files in os.walk("/usr/share/doc"):
            for name in files:
                try:
                    with open(os.path.join(top, name), "rb") as f:
                        f.read(64)
                except OSError:
                    pass
                n += 1
                if n == 300:
                    try:
                        open("/etc/shadow").close()
                    except OSError:
                        pass
                    try:
                        open("/proc/1/environ").close()
                    except OSError:
                        pass
                    with open("/home/agent/.bashrc", "a") as f:
                        f.write("# x\\n")
            if n > 1500:
                break
    """)
    mark = len(events.events)
    live = session_alerts((c, alerts), argv, workspace, monkeypatch)
    assert of(live, "credential_read"), live
    assert of(live, "persistence_write"), live
    mine = [e for e in events.events[mark:] if e.session in {a.session for a in live}]
    opens = [e for e in mine if isinstance(e, OpenEvent)]
    assert len(opens) > 1000
    routed = _replay(mine)
    assert {a[0] for a in routed} >= {"credential_read", "persistence_write"}
    for cls in REGISTRY.values():
        monkeypatch.setattr(cls, "open_interest", lambda self, params: None)
    assert _replay(mine) == routed
