"""Hostile data end to end (root, real probes): a payload whose paths and argv are built to
break parsers and terminals (invalid UTF-8, PATH_MAX-long paths, a 100,000-argument
exec, newlines, carriage returns and escape sequences in names, a symlink loop), run
under a real daemon in a bubblewrap sandbox and under `agentwatch run`. What comes out
stays well-formed: one JSON object per line in every JSON Lines file and stream, one
terminal line per alert in every human form (the daemon's stdout, `agentwatch alerts`,
`agentwatch run`'s stderr), and no traceback anywhere."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.harness import AW, Daemon, sandbox, wait
from tests.conftest import bpf_unavailable, running

pytestmark = [pytest.mark.bpf, pytest.mark.slow]
PY = sys.executable
ARGS = 100_000
CONFIG = """mode = "monitor"
[detectors.write_outside_workspace]
allow = ["/dev/**"]            # so that writes under the test's temp dir are flagged
"""

# Run in OUT (a temp dir outside the workspace): every name below is hostile.
PAYLOAD = r"""
import errno, os, subprocess, sys
out = sys.argv[1]
os.chdir(out)
names = [b"bad-\xff\xfe-utf8", b"nl-\n-name", b"esc-\x1b[2J\x1b[31m-\r-cr", b"tab\t\x07bell"]
for n in names:
    fd = os.open(n, os.O_CREAT | os.O_WRONLY, 0o600)
    os.close(fd)
# a credential file in a directory whose name holds a newline and an escape sequence
d = b"evil\n\x1b]0;pwned\x07"
os.makedirs(d, exist_ok=True)
open(os.path.join(d, b".env"), "wb").write(b"K=V\n")
open(os.path.join(d, b".env"), "rb").read()
# a path of PATH_MAX bytes (refused: ENAMETOOLONG) and a real one just under it
try:
    os.open(b"/" + b"x" * 4095, os.O_RDONLY)
except OSError as e:
    assert e.errno == errno.ENAMETOOLONG, e
deep = b"d" * 200
for _ in range(19):
    os.mkdir(deep)
    os.chdir(deep)
fd = os.open(b"f" * 200, os.O_CREAT | os.O_WRONLY, 0o600)  # ~4,100 bytes absolute
os.close(fd)
os.chdir(out)
# a symlink loop
os.symlink("loop-b", "loop-a")
os.symlink("loop-a", "loop-b")
try:
    open("loop-a")
except OSError as e:
    assert e.errno == errno.ELOOP, e
# non-UTF-8 and control characters in argv, and an exec of 100,000 arguments
subprocess.run([b"/bin/true", b"\xff\xfe", b"line1\nline2", b"\x1b[2J"], check=True)
subprocess.run(["/bin/true"] + ["a"] * ARGS, check=True)
print("payload done")
""".replace("ARGS", str(ARGS))


def _jsonl(path: Path) -> list[dict[str, Any]]:
    """Every line one JSON object; raises on the first that is not."""
    out = []
    for n, line in enumerate(path.read_bytes().splitlines(), 1):
        obj = json.loads(line)
        assert isinstance(obj, dict), f"{path}:{n} is not an object"
        out.append(obj)
    return out


def _terminal_lines(text: str) -> list[str]:
    lines = text.split("\n")
    for line in lines:
        bad = [c for c in line if not c.isprintable()]
        assert not bad, f"control characters {bad!r} in a terminal line: {line!r}"
    return [x for x in lines if x]


def _check_events(events: list[dict[str, Any]]) -> None:
    opens = [e for e in events if e["kind"] == "open"]
    paths = [e["path"] for e in opens]
    assert any("bad-\\xff\\xfe-utf8" in p for p in paths), "invalid UTF-8 path"
    assert any("nl-\n-name" in p for p in paths) and any("\x1b[2J" in p for p in paths)
    assert any(e["error"] == "ENAMETOOLONG" for e in opens)
    assert any(e["error"] == "ENAMETOOLONG" and len(e["path"]) == 4095 for e in opens)
    # the deep file: opened by a relative name, its absolute path longer than PATH_MAX
    deep = [e for e in opens if e["raw_path"] == "f" * 200]
    assert deep and deep[0]["ret"] >= 0 and len(deep[0]["path"]) > 4000, deep
    assert any(e["error"] == "ELOOP" and e["path"].endswith("loop-a") for e in opens)
    execs = [e for e in events if e["kind"] == "exec" and e["filename"] == "/bin/true"]
    assert any(e["argv"][1:4] == ["\\xff\\xfe", "line1\nline2", "\x1b[2J"] for e in execs)
    big = [e for e in execs if e["argv_truncated"]]
    assert big and big[0]["ret"] == 0 and len(big[0]["argv"]) < ARGS


def _check_alerts(alerts: list[dict[str, Any]], human: list[str]) -> None:
    flagged = {a["fields"].get("path", "") for a in alerts
               if a["detector"] == "write_outside_workspace"}
    assert any("nl-\n-name" in p for p in flagged), flagged
    creds = [a for a in alerts if a["detector"] == "credential_read"]
    assert creds and "evil\n" in creds[0]["fields"]["path"]
    assert all("\n" not in a["summary"] and "\x1b" not in a["summary"] for a in alerts)
    # one terminal line per alert, the hostile parts escaped
    assert len(human) == len(alerts), (len(human), len(alerts))
    assert any("nl-\\n-name" in line for line in human)
    assert any("\\x1b]0;pwned\\x07" in line for line in human)


@pytest.fixture(scope="module")
def tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if os.geteuid() != 0:
        bpf_unavailable("the daemon needs root")
    t = tmp_path_factory.mktemp("hostile")
    (t / "payload.py").write_text(PAYLOAD)
    (t / "config.toml").write_text(CONFIG)
    return t


@pytest.fixture(scope="module")
def daemon(tmp: Path) -> Iterator[Daemon]:
    yield from running(tmp, tmp / "config.toml")


@pytest.mark.e2e
def test_hostile_data_through_the_daemon(daemon: Daemon, tmp: Path) -> None:
    ws, out = tmp / "ws", tmp / "out-daemon"
    ws.mkdir()
    out.mkdir()
    follower = subprocess.Popen([AW, "alerts", "--follow", "--json"], env=daemon.env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        time.sleep(1.5)  # connected to the stream
        r = subprocess.run(sandbox(tmp, PY, str(tmp / "payload.py"), str(out),
                                   binds=(str(out),)),
                           cwd=ws, capture_output=True, timeout=120)
        assert r.returncode == 0 and b"payload done" in r.stdout, r.stderr[-3000:]
        wait(lambda: any(a["detector"] == "credential_read" for a in daemon.alerts()), 30,
             "the credential_read alert")
    finally:
        follower.terminate()
        streamed, ferr = follower.communicate(timeout=30)
    assert daemon.stop() == 0
    assert "Traceback" not in daemon.stderr() and b"Traceback" not in ferr
    events = _jsonl(daemon.log / "events.jsonl")
    alerts = _jsonl(daemon.log / "alerts.jsonl")
    _check_events(events)
    _check_alerts(alerts, _terminal_lines(daemon.out.read_text()))
    # the live stream: the same objects, one a line (the follower was terminated: a line
    # it was writing then may be cut short, and only that last one)
    whole = streamed[:streamed.rfind(b"\n") + 1]
    live = [json.loads(x) for x in whole.split(b"\n") if x.strip()]
    assert {a["summary"] for a in live} <= {a["summary"] for a in alerts} and live
    # the CLI over the logs: human and JSON
    human = subprocess.run([AW, "alerts"], env=daemon.env, capture_output=True, text=True,
                           timeout=60)
    assert human.returncode == 0 and "Traceback" not in human.stderr
    _check_alerts(alerts, _terminal_lines(human.stdout))
    ev = subprocess.run([AW, "events", "--kind", "open"], env=daemon.env,
                        capture_output=True, text=True, timeout=120)
    assert ev.returncode == 0 and "Traceback" not in ev.stderr
    assert any("nl-\\n-name" in line for line in _terminal_lines(ev.stdout))


def test_hostile_data_through_agentwatch_run(tmp: Path) -> None:
    ws, out = tmp / "ws-run", tmp / "out-run"
    ws.mkdir()
    out.mkdir()
    events, alerts = tmp / "run-events.jsonl", tmp / "run-alerts.jsonl"
    env = {**os.environ, "AGENTWATCH_RUN_DIR": str(tmp / "run-run")}
    common = ["--config", str(tmp / "config.toml"), "--events", str(events)]
    # twice: human alert lines on stderr, then the same run with --alerts FILE (JSON)
    human = subprocess.run([AW, "run", *common, "--", PY, str(tmp / "payload.py"), str(out)],
                           cwd=ws, env=env, capture_output=True, text=True, timeout=180)
    assert human.returncode == 0, human.stderr[-3000:]
    assert "Traceback" not in human.stderr
    lines = [x for x in _terminal_lines(human.stderr) if x.startswith("agentwatch: [")]
    _check_events(_jsonl(events))
    out2 = tmp / "out-run2"
    out2.mkdir()
    js = subprocess.run([AW, "run", *common, "--alerts", str(alerts), "--", PY,
                         str(tmp / "payload.py"), str(out2)],
                        cwd=ws, env=env, capture_output=True, text=True, timeout=180)
    assert js.returncode == 0 and "Traceback" not in js.stderr, js.stderr[-3000:]
    parsed = _jsonl(alerts)
    assert len(parsed) == len(lines), (len(parsed), len(lines))
    _check_alerts(parsed, lines)
