"""Benign agent-like workloads under the default detectors: no alert of severity medium or
above (a noisy alert stream is a failure: approval fatigue is the problem agentwatch
answers). Real processes in a real workspace, watched by real probes."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import bpf_unavailable

pytestmark = pytest.mark.bpf
LOUD = {"medium", "high", "critical"}

WORKLOADS = {
    "git": "git init -q . && git config user.email a@b.c && git config user.name agent && "
           "echo hi > f.txt && git add f.txt && git commit -qm one && echo more >> f.txt && "
           "git diff >/dev/null && git log --oneline >/dev/null && git status >/dev/null",
    "python-tests": "printf 'import unittest\\nclass T(unittest.TestCase):\\n"
                    "    def test_x(self):\\n        self.assertEqual(1, 1)\\n' > test_x.py && "
                    f"{sys.executable} -m unittest -q test_x 2>/dev/null",
    "c-build": "printf 'int f(void){return 1;}\\n' > a.c && "
               "printf 'int f(void);\\nint main(void){return f()-1;}\\n' > m.c && "
               "printf 'all: app\\napp: a.o m.o\\n\\tcc -o app a.o m.o\\n' > Makefile && "
               "make -s -j2 && ./app",
    "edits": "printf 'a\\nb\\n' > notes.txt && sed -i 's/a/A/' notes.txt && "
             "cp notes.txt copy.txt && mv copy.txt moved.txt && rm moved.txt && mkdir -p d/e",
    "search": "mkdir -p src && echo needle > src/x && grep -rn needle . >/dev/null && "
              "find . -name x >/dev/null",
    "venv": f"{sys.executable} -m venv --without-pip venv && ./venv/bin/python -c 'pass'",
    "tar": "mkdir -p t && echo 1 > t/a && tar cf t.tar t && rm -r t && tar xf t.tar && "
           "test -f t/a",
    "proc-self": "cat /proc/self/status >/dev/null && cat /proc/self/cmdline >/dev/null && "
                 "ls /proc/self/fd >/dev/null",
    "200-processes": "i=0; while [ $i -lt 200 ]; do /bin/true; i=$((i+1)); done",
}


@pytest.fixture(scope="module")
def detecting() -> Iterator[tuple[object, object]]:
    if os.geteuid() != 0:
        bpf_unavailable("loading BPF needs root")
    from detectors.config import defaults
    from service.pipeline import Collector
    from service.sinks import MemorySink

    alerts = MemorySink()
    c = Collector([], detection=defaults(), alert_sinks=[alerts])
    try:
        c.start()
    except Exception as e:
        bpf_unavailable(f"cannot load the probes: {e}")
    yield c, alerts
    c.close()


@pytest.mark.parametrize("name", list(WORKLOADS))
def test_benign_workload_raises_no_loud_alert(detecting, name: str, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    if name == "c-build" and not (shutil.which("cc") and shutil.which("make")):
        bpf_unavailable("cc and make are needed for the C build workload")
    from service.run import run

    collector, alerts = detecting
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    monkeypatch.chdir(workspace)  # the session's workspace is the root's cwd
    mark = len(alerts.events)
    result = run(["/bin/sh", "-c", WORKLOADS[name]], collector=collector)
    assert result.exit_status == 0, f"the {name} workload itself failed"
    mine = [a for a in alerts.events[mark:] if a.session == result.session]
    loud = [f"{a.severity} {a.detector}: {a.summary}" for a in mine if a.severity in LOUD]
    assert loud == [], loud
