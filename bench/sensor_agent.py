"""One sensor design, loaded and driven for bench/sensors.py, in a process of its own.

    PYTHONPATH=TREE python -P bench/sensor_agent.py --tree TREE [--ringbuf-pages N]

TREE is a checkout of agentwatch (the old design's, exported from a git ref, or the working
tree); `-P` keeps this file's directory off sys.path, so that every product module comes
from TREE. It loads TREE's collector (`service.pipeline.Collector`, probes attached), says
so on stdout, then obeys one JSON command per line on stdin and answers each with one line
on stdout. Every line of the protocol starts with `AWBENCH ` (BCC and the product may print
other lines, which the harness ignores):

  start-up   -> {"ready": true, "import_s", "load_s", "tree", "modules"}
                or {"ready": false, "error"}
  {"cmd": "unwatched", "argv": [...]}
             -> runs argv outside any session while another process (a `sleep`) is watched
                and the collector polls: {"exit", "events", "opens", "lost", "lost_by_cause",
                "cpu_s", "wall_s"}
  {"cmd": "watched", "argv": [...]}
             -> runs argv as a session (`service.run.run` on the loaded collector), every
                event decoded and through the process table to a sink that counts: same keys
  {"cmd": "close"}
             -> {"close_s"}: the collector closed (probes detached), then this process exits

Only the collector's public entry points are used (Collector(sinks, config), start, attach,
poll, drain, check_losses, stats.lost_total, close, and service.run.run), so that a tree of
either design can be driven; a missing one is reported as an error line, not a traceback.
The loop's own timing is in the file the loop writes, which the harness reads.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable
from typing import Any

T_IMPORT = time.perf_counter()
PREFIX = "AWBENCH "


def say(obj: dict[str, Any]) -> None:
    sys.stdout.write(PREFIX + json.dumps(obj) + "\n")
    sys.stdout.flush()


def own_cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class CountingSink:
    """Counts events and the successful opens of /dev/null (by either path field the
    design reports: the caller's string or the kernel's resolved path); writes nothing."""

    def __init__(self) -> None:
        self.events = 0
        self.opens = 0

    def write(self, event: Any) -> None:
        self.events += 1
        path = getattr(event, "path", None)
        raw = getattr(event, "raw_path", None)
        if "/dev/null" in (path, raw) and type(event).__name__ == "OpenEvent" \
                and int(getattr(event, "ret", -1)) >= 0:
            self.opens += 1

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


def lost_now(c: Any) -> Counter[str]:
    c.check_losses()
    return Counter({str(k): int(v) for k, v in dict(c.stats.lost_total).items()})


def measured(c: Any, sink: CountingSink, body: Callable[[Any, list[str]], int],
             argv: list[str]) -> dict[str, Any]:
    lost0 = lost_now(c)
    events0, opens0 = sink.events, sink.opens
    cpu0 = own_cpu_s()
    t0 = time.perf_counter()
    status = body(c, argv)
    wall = time.perf_counter() - t0
    cpu = own_cpu_s() - cpu0
    delta = lost_now(c)
    delta.subtract(lost0)
    by_cause = {k: v for k, v in delta.items() if v}
    return {"exit": status, "events": sink.events - events0, "opens": sink.opens - opens0,
            "lost": sum(by_cause.values()), "lost_by_cause": by_cause, "cpu_s": cpu,
            "wall_s": wall}


def unwatched(c: Any, argv: list[str]) -> int:
    other = subprocess.Popen(["sleep", "3600"])
    try:
        c.attach(other.pid)
        proc = subprocess.Popen(argv)
        while proc.poll() is None:
            c.poll(50)
        c.drain()
    finally:
        other.kill()
        other.wait()
    return int(proc.returncode)


def watched(c: Any, argv: list[str]) -> int:
    from service.run import run

    return int(run(argv, collector=c).exit_status)


def modules_from(tree: str) -> dict[str, str]:
    """Where each product package was imported from: all must be under TREE."""
    out = {}
    for name in ("probes", "collector", "detectors", "response", "service"):
        mod = sys.modules.get(name)
        if mod is not None:
            out[name] = str(getattr(mod, "__file__", None) or next(iter(mod.__path__)))
    bad = {k: v for k, v in out.items() if not os.path.realpath(v).startswith(tree + os.sep)}
    if bad:
        raise RuntimeError(f"product modules not from {tree}: {bad}")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tree", required=True, help="the checkout being measured")
    ap.add_argument("--ringbuf-pages", type=int, default=0,
                    help="ring buffer size in 4 KiB pages (0: the tree's default)")
    args = ap.parse_args(argv)
    tree = os.path.realpath(args.tree)
    try:
        from probes.loader import ProbeConfig
        from service.pipeline import Collector

        import_s = time.perf_counter() - T_IMPORT
        modules = modules_from(tree)
        sink = CountingSink()
        config = ProbeConfig(ringbuf_pages=args.ringbuf_pages) if args.ringbuf_pages \
            else ProbeConfig()
        t0 = time.perf_counter()
        c = Collector(sinks=[sink], config=config)
        c.start()
        load_s = time.perf_counter() - t0
    except Exception as e:  # any failure of the tree under test is a reported line
        say({"ready": False, "error": f"{type(e).__name__}: {e}",
             "trace": traceback.format_exc(limit=5)})
        return 1
    say({"ready": True, "import_s": import_s, "load_s": load_s, "tree": tree,
         "modules": modules})
    try:
        for line in sys.stdin:
            try:
                cmd = json.loads(line)
            except json.JSONDecodeError as e:
                say({"error": f"bad command line: {e}"})
                continue
            if not isinstance(cmd, dict):
                say({"error": "a command is a JSON object"})
                continue
            what = cmd.get("cmd")
            try:
                if what == "close":
                    break
                run = {"unwatched": unwatched, "watched": watched}.get(str(what))
                loop = cmd.get("argv")
                if run is None:
                    say({"error": f"unknown command {what!r}"})
                elif not (isinstance(loop, list) and loop and
                          all(isinstance(a, str) for a in loop)):
                    say({"error": f"{what}: argv must be a list of strings"})
                else:
                    say(measured(c, sink, run, loop))
            except Exception as e:
                say({"error": f"{what}: {type(e).__name__}: {e}",
                     "trace": traceback.format_exc(limit=5)})
    finally:
        c.sinks = []  # ours, nothing to close
        t0 = time.perf_counter()
        c.close()
        say({"close_s": time.perf_counter() - t0})
    return 0


if __name__ == "__main__":
    sys.exit(main())
