"""The kernel's interest filter, live: what no detector can use is counted in the kernel and
reported in `summary` events that account for every open not sent; what a detector can
use is sent in full, whatever spelling reached it.

Real probes, real sessions (service.run.run, the path of `agentwatch run`), the built-in
detection config. Not a timing test: the checks are counts and events.
"""

from __future__ import annotations

import os
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from collector.events import OpenEvent, SessionEvent, SummaryEvent
from service.sinks import MemorySink
from tests.conftest import detecting

# The workload: reads below /usr/lib (files, directory listings, missing files), in its
# workspace (relative names), then the opens a detector can use.
WORKLOAD = textwrap.dedent("""
    import os, sys
    lib = "/usr/lib/python3." + str(sys.version_info[1])
    n = 0
    for name in sorted(os.listdir(lib)):
        p = os.path.join(lib, name)
        if name.endswith(".py") and n < 300:
            with open(p, "rb"):
                n += 1
    for d in sorted(os.listdir(lib))[:200]:
        if os.path.isdir(os.path.join(lib, d)):
            os.listdir(os.path.join(lib, d))
    for i in range(20):
        try:
            open(f"/usr/lib/agentwatch-missing-{i}", "rb")
        except OSError:
            pass
    for i in range(100):
        with open(f"src/f{i}.c", "rb"):
            pass
    # what detectors use: sent in full
    open(".env", "rb").close()                          # own secret (a dot name)
    open("/proc/self/root" + lib + "/os.py", "rb").close()  # a /proc spelling of a boring file
    open("lib-link", "rb").close()                      # a symlink to a boring file
    open("../" * 30 + lib.lstrip("/") + "/io.py", "rb").close()  # dots in the caller's string
    open("src/out.o", "wb").close()                     # a write
    try:
        open("/etc/shadow", "rb").close()               # a carve-out of a boring root
    except OSError:
        pass
""")


@pytest.fixture(scope="module")
def filtered() -> Iterator[tuple[object, MemorySink]]:
    """The built-in detection config; events and alerts in one sink."""
    for c, events, alerts in detecting():
        alerts.events = events.events  # one list: the alerts among the session's events
        yield c, events


def _workspace(tmp: Path) -> Path:
    ws = tmp / "ws" / "a" / "b"
    (ws / "src").mkdir(parents=True)
    for i in range(100):
        (ws / "src" / f"f{i}.c").write_text("int x;\n")
    (ws / ".env").write_text("TOKEN=1\n")
    lib = f"/usr/lib/python3.{sys.version_info[1]}"
    (ws / "lib-link").symlink_to(f"{lib}/abc.py")
    (ws / "w.py").write_text(WORKLOAD)
    return ws


def _run(collector: object, ws: Path) -> tuple[str, list[object]]:
    from service.run import run

    cwd = os.getcwd()
    os.chdir(ws)
    try:
        result = run([sys.executable, "w.py"], collector=collector)  # type: ignore[arg-type]
    finally:
        os.chdir(cwd)
    assert result.exit_status == 0
    return result.session, []


def test_summaries_account_for_every_open_not_sent(filtered, tmp_path: Path) -> None:
    collector, sink = filtered
    ws = _workspace(tmp_path)
    session, _ = _run(collector, ws)
    events = sink.session(session)
    summaries = [e for e in events if isinstance(e, SummaryEvent)]
    end = next(e for e in events if isinstance(e, SessionEvent) and e.phase == "end")
    # the kernel's per-session counter equals the sum of the summary events
    assert end.summarised is not None and end.summarised > 0
    assert sum(s.count for s in summaries) == end.summarised
    assert all(s.count == s.files + s.failed for s in summaries)
    lib = f"/usr/lib/python3.{sys.version_info[1]}"
    by_root: dict[str, list[SummaryEvent]] = {}
    for s in summaries:
        by_root.setdefault(s.root, []).append(s)
    usr = by_root["/usr"]
    py = [n for n in os.listdir(lib) if n.endswith(".py")]
    assert sum(s.files for s in usr) >= min(len(py), 300)
    assert sum(s.failed for s in usr) >= 20
    assert sum(s.files for s in by_root[str(ws)]) >= 100
    # ... and those opens were not sent one by one
    opens = [e for e in events if isinstance(e, OpenEvent)]
    sent = [e for e in opens if e.path.startswith(lib + "/") and e.path.endswith(".py")
                and e.raw_path == e.path and e.flags & 3 == 0 and "os.py" not in e.path
                and "io.py" not in e.path and "abc.py" not in e.path]
    # (but for names that share their first two bytes with a glob's, e.g. antigravity.py
    # with **/answer_key*: sent, the filter errs on the side of sending)
    keys = collector.interest.last.first2  # type: ignore[attr-defined]
    assert not [e.path for e in sent
                if not any(((b[0] << 8) | (b[1] if len(b) > 1 else 0)) in keys
                           for b in (c.encode() for c in e.path.split("/") if c))]
    assert not [e for e in opens if e.raw_path.startswith("src/f")]
    assert not [e for e in opens if "agentwatch-missing" in e.raw_path]
    # directories are sent (their fds are dirfds of later *at calls)
    assert len([e for e in opens if e.file_type == "dir" and e.path.startswith(lib + "/")
                and e.flags & 0o200000]) >= 10
    # what a detector can use is sent, whatever the spelling
    raws = {e.raw_path for e in opens}
    assert ".env" in raws
    assert f"/proc/self/root{lib}/os.py" in raws
    assert "lib-link" in raws
    assert any(r.startswith("../../../") and r.endswith("/io.py") for r in raws)
    assert "src/out.o" in raws
    assert "/etc/shadow" in raws


def test_events_level_all_sends_every_open(filtered, tmp_path: Path) -> None:
    collector, sink = filtered
    ws = _workspace(tmp_path)
    level = collector.interest.level  # type: ignore[attr-defined]
    collector.interest.level = "all"  # type: ignore[attr-defined]
    try:
        session, _ = _run(collector, ws)
    finally:
        collector.interest.level = level  # type: ignore[attr-defined]
    events = sink.session(session)
    assert not [e for e in events if isinstance(e, SummaryEvent)]
    end = next(e for e in events if isinstance(e, SessionEvent) and e.phase == "end")
    assert not end.summarised
    opens = [e for e in events if isinstance(e, OpenEvent)]
    assert len([e for e in opens if e.raw_path.startswith("src/f")]) == 100
    assert len([e for e in opens if "agentwatch-missing" in e.raw_path]) == 20


STALE_FD = textwrap.dedent("""
    import os, socket, sys
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    n = s.fileno()
    s.close()                                   # not traced: the table keeps "socket"
    fd = os.open(os.path.realpath(sys.executable), os.O_RDONLY)  # counted, not sent
    assert fd == n, (fd, n)
    os.dup2(fd, 0)                              # a file onto stdin: no reverse shell
    os.execv("/bin/sh", ["sh", "-c", "true"])
""")


def test_a_dup_is_judged_by_the_kernels_fd_not_a_stale_table(filtered, tmp_path: Path) -> None:
    """An fd number the table last saw as a socket, closed (untraced) and reused by an
    open the filter counted: the dup's event says what the kernel found at the fd."""
    collector, sink = filtered
    (tmp_path / "s.py").write_text(STALE_FD)
    from service.run import run

    result = run([sys.executable, str(tmp_path / "s.py")], collector=collector)  # type: ignore[arg-type]
    assert result.exit_status == 0
    events = sink.session(result.session)
    dups = [e for e in events if getattr(e, "syscall", "") == "dup2"]
    assert dups and dups[-1].args["socket"] is False  # type: ignore[attr-defined]
    assert not [e for e in events if e.kind == "alert"
                and getattr(e, "detector", "") == "reverse_shell"]
