"""Regenerate the examples in docs/events.md from a real run (needs root).

    .venv/bin/python docs/examples.py

Runs a small workload as a session with a deliberately tiny ring buffer (so a `loss`
event happens), and a bubblewrap sandbox so that launcher setup shows, then replaces the
```json block under each `## <kind>` heading of docs/events.md with one real event of that
kind. tests/test_docs.py checks the result against collector/events.py.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from collector.events import Event  # noqa: E402
from detectors.config import defaults  # noqa: E402
from probes.loader import ProbeConfig  # noqa: E402
from service.pipeline import Collector  # noqa: E402
from service.run import run  # noqa: E402
from service.sinks import MemorySink  # noqa: E402

WORKLOAD = r"""
import os, socket
fd = os.open("/etc/hostname", os.O_RDONLY | os.O_CLOEXEC); os.close(fd)
socket.socket().connect_ex(("127.0.0.1", 9))
try:
    os.unlink("/etc/agentwatch-example-missing")
except OSError:
    pass
if os.fork() == 0:
    os.execv("/bin/true", ["true", "--version"])
os.wait()
for _ in range(3000):
    os.close(os.open("/dev/null", os.O_RDONLY))
"""


def pick(events: list[Event]) -> dict[str, Event]:
    """One representative event per kind."""
    want = {
        "exec": lambda e: e.filename == "/bin/true",
        "open": lambda e: e.path == "/etc/hostname",
        "exit": lambda e: e.comm == "true",
        "session": lambda e: e.phase == "start" and e.session_kind == "launcher",
        "syscall": lambda e: getattr(e, "syscall", "") in ("unlink", "unlinkat"),
    }
    out: dict[str, Event] = {}
    for e in events:
        if e.kind not in out and want.get(e.kind, lambda _e: True)(e):
            out[e.kind] = e
    return out


def main() -> int:
    keep = MemorySink()
    c = Collector([keep], ProbeConfig(ringbuf_pages=1), detection=defaults(),
                  alert_sinks=[keep])
    c.start(adopt_launchers=True)
    try:
        run([sys.executable, "-c", WORKLOAD], collector=c, poll_ms=1000)
        bwrap = shutil.which("bwrap")
        if bwrap:  # started outside any session: the kernel adopts it as a launcher
            sandbox = subprocess.Popen([bwrap, "--ro-bind", "/", "/", "--dev", "/dev",
                                        "--proc", "/proc", "--unshare-pid", "/bin/true"])
            while sandbox.poll() is None:
                c.poll(50)
            for _ in range(10):
                c.poll(50)
    finally:
        c.close()
    examples = pick(keep.events)
    doc_path = REPO / "docs" / "events.md"
    doc = doc_path.read_text()
    for kind, event in examples.items():
        block = "```json\n" + event.to_json().decode() + "\n```"
        pattern = re.compile(rf"(## {kind}\n.*?)```json\n.*?\n```", re.S)
        doc, n = pattern.subn(lambda m, b=block: m.group(1) + b, doc, count=1)
        if n == 0:
            print(f"no `## {kind}` section with a json block in {doc_path}", file=sys.stderr)
    doc_path.write_text(doc)
    print(f"updated {len(examples)} examples: {', '.join(sorted(examples))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
