"""S2 throughput and S3 churn: what the collector sustains, beside its peers.

S2: `openrate` (bench/openrate.c) offers open+close at a paced rate for a few seconds,
from one process (THREADS threads). The rate doubles from --start while every open event
arrives (none lost by the kernel, none missing from what was delivered, the events drained
at most 2 s after the load ends), then bisects once between the last good and the first
lossy rate (bench/rates.py). Reported: the highest rate measured with zero loss, and the
tracer's CPU use (cores) and resident memory at that rate. agentwatch runs the load as a
session (`service.run.run`) with every event decoded, put through the process table and
written as JSON Lines (to /dev/null: the serialising is paid, the disk is not); peers run
`-p PID` with their output to a file.

S3: `execloop` (bench/execloop.c) forks, execs itself (`execloop -`, which exits at once)
and waits, N times. Reported: the exec rate untraced and traced (ratio in the same round)
and the share of execs whose process's exit event also arrived.

S4 figures (start-up, RSS) are taken by bench/suite.py around these runs.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.peers import Peer, PeerError, exec_exit_pairs
from bench.peers import attach as attach_peer
from bench.rates import Search, Step, zero_loss_search
from collector.events import Event, ExecEvent, ExitEvent, OpenEvent
from service.pipeline import Collector
from service.run import run

HERE = Path(__file__).resolve().parent


class BenchError(RuntimeError):
    """A reason to stop, in one line."""


def build(tmp: Path, name: str, *flags: str) -> Path:
    exe = tmp / name
    proc = subprocess.run(["cc", "-O2", *flags, "-o", str(exe), str(HERE / f"{name}.c")],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise BenchError(f"cc failed on bench/{name}.c: {proc.stderr.strip()}")
    return exe


def own_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def own_rss() -> int:
    """Resident bytes of this process now (the collector runs in it)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def read_two(path: Path) -> tuple[int, int]:
    try:
        a, b = path.read_text().split()
        return int(a), int(b)
    except (OSError, ValueError) as e:
        raise BenchError(f"no result in {path}: {e}") from e


class Counter:
    """Sink: the /dev/null opens delivered, and the execs and exits of execloop's children."""

    def __init__(self) -> None:
        self.opens = 0
        self.exec_pids: set[int] = set()
        self.exit_pids: set[int] = set()

    def write(self, ev: Event) -> None:
        if isinstance(ev, OpenEvent):
            if ev.path == "/dev/null" and ev.ret >= 0:
                self.opens += 1
        elif isinstance(ev, ExecEvent):
            if ev.ret == 0 and ev.argv[-1:] == ["-"]:
                self.exec_pids.add(ev.pid)
        elif isinstance(ev, ExitEvent):
            self.exit_pids.add(ev.pid)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


# ---------------------------------------------------------------------- S2
@dataclass
class S2Config:
    seconds: float = 2.0
    threads: int = 1
    start: float = 16_000
    ceiling: float = 4_096_000
    bisections: int = 1


def agentwatch_step(c: Collector, counter: Counter, exe: Path, tmp: Path, cfg: S2Config,
                    rate: float) -> Step:
    out = tmp / "rate.out"
    out.unlink(missing_ok=True)
    c.check_losses()
    lost0, opens0, cpu0 = dict(c.stats.lost_total), counter.opens, own_cpu()
    t0 = time.perf_counter()
    r = run([str(exe), f"{rate:.0f}", str(cfg.seconds), str(cfg.threads), str(out)],
            collector=c, cgroup=False)
    wall = time.perf_counter() - t0
    if r.exit_status != 0:
        raise BenchError(f"openrate exited {r.exit_status} in a session")
    c.check_losses()
    generated, ns = read_two(out)
    causes = {k: v - lost0.get(k, 0) for k, v in c.stats.lost_total.items()
              if v != lost0.get(k, 0)}
    return Step(offered=rate, generated=generated, seconds=ns / 1e9,
                delivered=counter.opens - opens0, lost=sum(causes.values()),
                cpu_s=own_cpu() - cpu0, rss=own_rss(), wall_s=wall, causes=causes)


def peer_step(peer: Peer, exe: Path, tmp: Path, cfg: S2Config, rate: float,
              attach: list[tuple[float, int]]) -> Step:
    out = tmp / "rate.out"
    out.unlink(missing_ok=True)
    gen = subprocess.Popen([str(exe), f"{rate:.0f}", str(cfg.seconds), str(cfg.threads),
                            str(out), "wait"], stdin=subprocess.PIPE)
    assert gen.stdin is not None
    try:
        pr = attach_peer(peer, gen.pid, tmp, "s2")
    except PeerError:
        gen.kill()
        gen.wait()
        raise
    try:
        attach.append((pr.attach_s, pr.rss0))
        t0 = time.perf_counter()
        gen.stdin.write(b"g")
        gen.stdin.close()
        if gen.wait() != 0:
            raise BenchError(f"openrate exited {gen.returncode} under {peer.name}")
        res = pr.finish()
        wall = time.perf_counter() - t0
    finally:
        pr.kill()
        if gen.poll() is None:
            gen.kill()
            gen.wait()
    res.out.unlink(missing_ok=True)
    generated, ns = read_two(out)
    return Step(offered=rate, generated=generated, seconds=ns / 1e9, delivered=res.matched,
                lost=res.lost, cpu_s=res.cpu_s, rss=res.rss, wall_s=wall)


def report(search: Search) -> dict[str, Any]:
    best = search.best
    return {
        "zero_loss_rate": best.achieved if best else 0.0,
        "offered": best.offered if best else None,
        "cpu_cores": best.cpu_share if best else None,
        "rss": best.rss if best else None,
        "limited_by": search.limited_by,
        "steps": [{"offered": s.offered, "achieved": round(s.achieved), "generated":
                   s.generated, "delivered": s.delivered, "lost": s.lost,
                   "cpu_cores": round(s.cpu_share, 3), "rss": s.rss, "causes": s.causes}
                  for s in search.steps],
    }


def progress(name: str, step: Step) -> Step:
    print(f"  S2 {name:<16} offered {step.offered:>9.0f}/s achieved {step.achieved:>9.0f}/s "
          f"delivered {step.delivered}/{step.generated} lost {step.lost} "
          f"cpu {step.cpu_share:.2f}{f' lost by cause {step.causes}' if step.causes else ''}",
          file=sys.stderr, flush=True)
    return step


def measure_s2_agentwatch(c: Collector, counter: Counter, tmp: Path, cfg: S2Config
                         ) -> dict[str, Any]:
    exe = build(tmp, "openrate", "-pthread")
    return report(zero_loss_search(
        lambda r: progress("agentwatch", agentwatch_step(c, counter, exe, tmp, cfg, r)),
        cfg.start, cfg.ceiling, cfg.bisections))


def measure_s2_peers(peers: list[Peer], tmp: Path, cfg: S2Config) -> dict[str, dict[str, Any]]:
    """Each peer's search, with the collector closed (its probes would tax the load)."""
    exe = build(tmp, "openrate", "-pthread")
    out: dict[str, dict[str, Any]] = {}
    for peer in peers:
        attach: list[tuple[float, int]] = []

        def step(rate: float, p: Peer = peer, a: list[tuple[float, int]] = attach) -> Step:
            return progress(p.name, peer_step(p, exe, tmp, cfg, rate, a))
        try:
            search = zero_loss_search(step, cfg.start, cfg.ceiling, cfg.bisections)
        except (PeerError, BenchError) as e:
            out[peer.name] = {"error": str(e)}
            continue
        out[peer.name] = report(search)
        if attach:
            out[peer.name]["attach_s"] = sorted(a for a, _ in attach)[len(attach) // 2]
            out[peer.name]["rss_idle"] = attach[0][1]
    return out


# ---------------------------------------------------------------------- delivery latency
def delivery_latency(c: Collector, tmp: Path, rates: tuple[int, ...] = (100, 20_000),
                     seconds: float = 1.0) -> dict[str, dict[str, float]]:
    """How long an open event takes from the syscall's entry (the record's kernel
    timestamp) to the collector's hands, at a sporadic and a steady rate: the wake-up
    batching (AW_WAKE_NS, ACTIVE_POLL_MS) must keep this within about a millisecond."""
    exe = build(tmp, "openrate", "-pthread")
    lat: list[float] = []

    def on_event(ev: Event) -> None:
        if isinstance(ev, OpenEvent) and ev.path == "/dev/null":
            lat.append((time.time_ns() - ev.ts) / 1000)
    out: dict[str, dict[str, float]] = {}
    saved, c.on_event = c.on_event, on_event
    try:
        for rate in rates:
            lat.clear()
            c.decoder.resync_clock()
            run([str(exe), str(rate), str(seconds), "1", str(tmp / "lat.out")], collector=c,
                cgroup=False)
            s = sorted(lat)
            if s:
                out[str(rate)] = {"n": len(s), "p50_us": s[len(s) // 2],
                                  "p99_us": s[min(len(s) - 1, int(len(s) * 0.99))],
                                  "max_us": s[-1]}
    finally:
        c.on_event = saved
    return out


# ---------------------------------------------------------------------- S3
@dataclass
class S3Result:
    rates: dict[str, list[float]] = field(default_factory=dict)   # execs/s per round
    ratios: dict[str, list[float]] = field(default_factory=dict)  # traced / untraced
    seen: dict[str, list[int]] = field(default_factory=dict)      # execs seen per round
    exits: dict[str, list[int]] = field(default_factory=dict)     # of those, exits seen
    errors: dict[str, str] = field(default_factory=dict)

    def add(self, mode: str, rate: float, seen: int | None = None,
            exits: int | None = None) -> None:
        self.rates.setdefault(mode, []).append(rate)
        if seen is not None:
            self.seen.setdefault(mode, []).append(seen)
            self.exits.setdefault(mode, []).append(exits or 0)


def exec_untraced(exe: Path, tmp: Path, n: int) -> float:
    out = tmp / "exec.out"
    subprocess.run([str(exe), str(n), str(out)], check=True)
    done, ns = read_two(out)
    return done / (ns / 1e9)


def exec_watched(c: Collector, counter: Counter, exe: Path, tmp: Path, n: int
                 ) -> tuple[float, int, int]:
    out = tmp / "exec.out"
    counter.exec_pids.clear()
    counter.exit_pids.clear()
    r = run([str(exe), str(n), str(out)], collector=c, cgroup=False)
    if r.exit_status != 0:
        raise BenchError(f"execloop exited {r.exit_status} in a session")
    done, ns = read_two(out)
    return (done / (ns / 1e9), len(counter.exec_pids),
            len(counter.exec_pids & counter.exit_pids))


def exec_peer(peer: Peer, exe: Path, tmp: Path, n: int) -> tuple[float, int, int | None]:
    out = tmp / "exec.out"
    gen = subprocess.Popen([str(exe), str(n), str(out), "wait"], stdin=subprocess.PIPE)
    assert gen.stdin is not None
    try:
        pr = attach_peer(peer, gen.pid, tmp, "s3")
    except PeerError:
        gen.kill()
        gen.wait()
        raise
    try:
        gen.stdin.write(b"g")
        gen.stdin.close()
        if gen.wait() != 0:
            raise BenchError(f"execloop exited {gen.returncode} under {peer.name}")
        res = pr.finish()
    finally:
        pr.kill()
        if gen.poll() is None:
            gen.kill()
            gen.wait()
    done, ns = read_two(out)
    exits: int | None = None
    seen = res.matched
    if peer.name == "bpftrace-exec":
        seen, exits = exec_exit_pairs(res.out)
    res.out.unlink(missing_ok=True)
    return done / (ns / 1e9), seen, exits
