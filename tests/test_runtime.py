"""Unit tests of the collector's bookkeeping (no kernel involved: no events here)."""

from __future__ import annotations

import pytest

from collector import sessions
from service.pipeline import Collector, Session
from service.sinks import MemorySink


def test_ended_sessions_are_pruned_for_a_long_running_daemon(
        monkeypatch: pytest.MonkeyPatch) -> None:
    sink = MemorySink()
    c = Collector([sink])
    monkeypatch.setattr(c.ingest, "check_losses", lambda: None)  # reads the kernel's counters
    monkeypatch.setattr(sessions, "MAX_ENDED_SESSIONS", 3)
    for i in range(5):
        s = Session(id=i, name=f"s{i}", kind="attach", root_pid=100 + i, argv=["x"],
                    started_ns=0)
        c.sessions[s.name] = s
        c.table.roots[s.name] = s.root_pid
        c.end_session(s, 0)
    assert list(c.sessions) == ["s2", "s3", "s4"]
    assert set(c.table.roots) == {"s2", "s3", "s4"}
    assert [e.session for e in sink.events] == [f"s{i}" for i in range(5)]
    assert all(e.phase == "end" and e.exit_status == 0 for e in sink.events)
