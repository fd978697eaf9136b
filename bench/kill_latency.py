"""Kill latency: from a forbidden call's entry to the death of the process that made it.

    .venv/bin/python bench/kill_latency.py [--trials 40] [--json]

The victim (`violate.c`, built with cc at start) runs as a session (`service.run.run`,
the code path of `agentwatch run`, in its own cgroup) under `mode = "enforce"`, calls
unshare(CLONE_NEWUSER) (namespace_escape, action kill), then makes getppid() calls in a
loop, counting in shared memory each one that returns. Two paths:

- kernel: `kernel_enforcement = true`: the probe sends SIGKILL at the call's entry;
- user space: `kernel_enforcement = false`: the event goes through the ring buffer, the
  detector raises the alert, the response engine kills the session (cgroup.kill).

and two loads: idle, and while another watched process (`openloop`, a session of its own)
floods open events as fast as it can. Latency = the exit event's kernel timestamp minus
the forbidden call's (both `bpf_ktime_get_boot_ns`, taken by the probes). `after` = the
victim's syscalls that returned after the forbidden one. A 64 MiB ring buffer is used so
that the flood's events are delivered (late) rather than dropped; trials whose exit or
violation event was lost anyway are counted as `lost`, not timed. A victim gives up after
5 s (`missed`).
"""

from __future__ import annotations

import argparse
import mmap
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from collector.events import ExitEvent, SyscallEvent  # noqa: E402
from detectors.config import parse  # noqa: E402
from probes.loader import ProbeConfig  # noqa: E402
from service.pipeline import Collector  # noqa: E402
from service.run import run  # noqa: E402


class Keep:
    """A sink that keeps the victim sessions' syscall and exit events (not the flood's)."""

    def __init__(self) -> None:
        self.ignore: set[str] = set()
        self.events: list[Any] = []

    def write(self, ev: Any) -> None:
        if ev.session is not None and ev.session not in self.ignore \
                and isinstance(ev, (SyscallEvent, ExitEvent)):
            self.events.append(ev)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


def build(tmp: Path, name: str) -> Path:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        sys.exit("kill_latency: no C compiler (apt-get install gcc)")
    exe = tmp / name
    subprocess.run([cc, "-O2", "-o", str(exe), str(HERE / f"{name}.c")], check=True)
    return exe


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


def trial(c: Collector, keep: Keep, victim: Path, shm: Path) -> dict[str, Any]:
    shm.write_bytes(b"\0" * 16)
    keep.events = []
    r = run([str(victim), str(shm)], collector=c)
    with open(shm, "r+b") as f, mmap.mmap(f.fileno(), 16) as m:
        after = int.from_bytes(m[0:8], "little")
    evs = [e for e in keep.events if e.session == r.session]
    viol = [e for e in evs if isinstance(e, SyscallEvent) and e.syscall == "unshare"]
    exits = [e for e in evs if isinstance(e, ExitEvent)]
    out: dict[str, Any] = {"status": r.exit_status, "after": after}
    if r.exit_status != 128 + 9:
        out["missed"] = True
    elif viol and exits:
        out["latency_us"] = (exits[-1].ts - viol[0].ts) / 1000
    else:
        out["lost"] = True
    return out


def measure(c: Collector, keep: Keep, victim: Path, shm: Path, trials: int,
            kernel: bool) -> dict[str, Any]:
    config = c.analyzer.engine.config  # type: ignore[union-attr]
    config.kernel_enforcement = kernel
    c.apply_policy()
    rows = [trial(c, keep, victim, shm) for _ in range(trials)]
    lat = [r["latency_us"] for r in rows if "latency_us" in r]
    after = [r["after"] for r in rows if not r.get("missed")]
    return {
        "trials": trials, "timed": len(lat),
        "p50_us": pct(lat, 0.5) if lat else None, "p99_us": pct(lat, 0.99) if lat else None,
        "max_us": max(lat) if lat else None,
        "after_p50": pct(after, 0.5) if after else None, "after_max": max(after) if after
        else None,
        "lost": sum(1 for r in rows if r.get("lost")),
        "missed": sum(1 for r in rows if r.get("missed")),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trials", type=int, default=40)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("kill_latency: needs root")
    tmp = Path(tempfile.mkdtemp(prefix="aw-killbench-"))
    try:
        victim = build(tmp, "violate")
        flood_exe = build(tmp, "openloop")
        shm = tmp / "shm"
        keep = Keep()
        config = parse({"mode": "enforce"}, "<bench>")
        c = Collector([keep], ProbeConfig(ringbuf_pages=16384), detection=config,
                      alert_sinks=[Keep()])
        t0 = time.monotonic()
        c.start()
        results: dict[str, Any] = {"startup_s": round(time.monotonic() - t0, 2)}
        try:
            for load in ("idle", "flood"):
                flood = None
                if load == "flood":
                    flood = subprocess.Popen([str(flood_exe), "1000000000", "/dev/null"])
                    fs = c.add_session(flood.pid, os.getpid(), "attach", ["openloop"])
                    keep.ignore.add(fs.name)
                    time.sleep(0.5)
                try:
                    for path, kernel in (("kernel", True), ("user space", False)):
                        results[f"{path} / {load}"] = measure(c, keep, victim, shm,
                                                              args.trials, kernel)
                finally:
                    if flood is not None:
                        flood.kill()
                        flood.wait()
                        deadline = time.monotonic() + 5
                        while time.monotonic() < deadline:
                            c.poll(50)
            results["lost_events_total"] = c.stats.lost
        finally:
            c.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        import json

        print(json.dumps(results, indent=2))
        return 0
    print(f"kill latency, forbidden call's entry -> process death ({args.trials} trials each;"
          f" probes loaded in {results['startup_s']} s)")
    print(f"{'path / load':22} {'timed':>5} {'p50 µs':>9} {'p99 µs':>9} {'max µs':>9} "
          f"{'after p50':>9} {'after max':>9} {'lost':>4} {'missed':>6}")
    for key, r in results.items():
        if not isinstance(r, dict):
            continue

        def f(v: float | None) -> str:
            return "-" if v is None else f"{v:.0f}"
        print(f"{key:22} {r['timed']:>5} {f(r['p50_us']):>9} {f(r['p99_us']):>9} "
              f"{f(r['max_us']):>9} {f(r['after_p50']):>9} {f(r['after_max']):>9} "
              f"{r['lost']:>4} {r['missed']:>6}")
    print("after = the victim's syscalls that returned after the forbidden one "
          f"(0: killed before returning). Ring buffer losses during the run: "
          f"{results['lost_events_total']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
