"""open+close loop: what agentwatch costs a traced process, as ratios to an untraced run.

Workload: bench/openloop.c, compiled with `cc -O2` at start into a temporary directory.
`openloop N OUT` does N iterations of open("/dev/null", O_RDONLY) + close() and writes the
time of the loop alone (exec and exit are not in it) to OUT, both elapsed and as the loop
thread's CPU time. That is the worst case for agentwatch: nothing but traced syscalls, each
one an event when watched.

The ratios use the loop's CPU TIME (CLOCK_THREAD_CPUTIME_ID): the BPF programs and the
ring-buffer wake-ups run in the loop's own syscalls and are in it, while the time it waits
for a CPU taken by others is not, so a busy machine (other tests, other tracers' readers,
the collector on the same two cores) moves it much less than elapsed time. `--wall` uses
elapsed time instead; both are in the JSON.

Modes, all measured in one invocation, interleaved round by round so that drift (CPU
frequency, a noisy neighbour) touches every mode alike:

  untraced       no BPF loaded (the collector is closed for it).
  unwatched      the collector loaded and polling, another process (a `sleep`) watched as a
                 session, the loop run outside any session: every openat pays the probes'
                 `watched` lookup at entry and the in-flight lookup at exit.
  watched        the loop run as a session (`service.run.run`); every event is decoded, goes
                 through the process table and to a sink that only counts it.
  watched-jsonl  the same, with a JsonlSink writing JSON Lines to /dev/null as well.
  floor          no agentwatch: a BPF program that does nothing (returns 0) on each of
                 sys_enter_openat and sys_exit_openat. What any tracer of those tracepoints
                 costs at the least: the kernel's tracepoint and BPF entry (bench/README.md).
  peers          opensnoop (libbpf-tools), opensnoop-bpfcc, trace-bpfcc and a bpftrace
                 one-liner (bench/peers.py), each `-p PID` on the same loop with the collector
                 closed, output to a file that is then counted; a peer that cannot run here
                 is reported with its error. `--no-peer` leaves them out.

With `--getpid` the loop makes getpid() calls instead (openloop -g): no probe traces them,
so the traced modes show the price of the syscall tracing slow path alone (floor: an empty
program on sys_enter_openat, which turns that path on for every syscall).

A round loads the collector once (about 2 s: BCC compiles the C), runs the traced modes in a
rotating order, closes it, and runs the untraced modes; every other round does the untraced
modes first. The ratio of a mode is the MEDIAN OVER ROUNDS OF THE PER-ROUND RATIO (mode's
ns/iteration divided by untraced ns/iteration in the same round); the ratio of the medians is
in the JSON too.

Counted per run: events delivered to the sinks (all kinds, the session's start/end and loss
events included), open events of /dev/null (the loop's own: about N when nothing is lost),
events lost by the kernel (deltas of the per-CPU `lost` counters, by cause), and the CPU time
of this process during the run (the collector's user-space cost; divided by events delivered
it gives the cost of one event in Python).

Caveats:
- The loop's own time is what is measured, not the collector's throughput: a consumer that
  falls behind costs the loop nothing once the ring buffer is full (records are then dropped,
  and counted as lost). Read the lost column before the ratio.
- Two cores: the loop and the consumer each get one, so consumer CPU shows up in the loop's
  time only through contention (caches, the ring buffer's wakeups) rather than directly. On a
  busy host the consumer competes with the workload.
- Any other BPF program attached to the syscall tracepoints (another collector, a tracer)
  inflates every mode, the untraced one too; the loaded tracing programs are counted before
  each untraced run and reported.
- The peers filter by pid in the kernel and print one line per event: they do less work
  per event than agentwatch (no session, comm, cgroup or flags decoding) and are reference
  points. BCC's Python opensnoop (opensnoop-bpfcc) needs kprobes or fentry, neither of
  which every host allows (it is tried and its error shown); trace-bpfcc is the bpfcc-tools
  tool of the same design that runs on tracepoints.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.peers import OPEN_PEERS, Peer, PeerError, attach
from collector.events import Event, OpenEvent
from probes.kernel import SetupError
from probes.loader import ProbeConfig
from service.pipeline import Collector, Sink
from service.run import run
from service.sinks import JsonlSink

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "openloop.c"
EXIT_USAGE = 2

UNTRACED, FLOOR, UNWATCHED, WATCHED, WATCHED_JSONL = (
    "untraced", "floor", "unwatched", "watched", "watched-jsonl")
TRACED_MODES = (UNWATCHED, WATCHED, WATCHED_JSONL)
GETPID_MODES = (UNWATCHED, WATCHED)
FLOOR_SRC = {
    False: "TRACEPOINT_PROBE(syscalls, sys_enter_openat) { return 0; }\n"
           "TRACEPOINT_PROBE(syscalls, sys_exit_openat) { return 0; }\n",
    True: "TRACEPOINT_PROBE(syscalls, sys_enter_openat) { return 0; }\n",
}
# Targets from the issue; printed beside the figures, never turned into an exit status.
TARGETS = {UNWATCHED: 1.03, WATCHED: 1.5}
TRACING_PROG_TYPES = {"tracepoint", "raw_tracepoint", "raw_tracepoint_writable", "kprobe",
                      "tracing", "perf_event", "lsm"}


class BenchError(RuntimeError):
    """A reason to stop, in one line (exit status 2)."""


@dataclass
class Sample:
    mode: str
    round: int
    loop_ns: int                  # the loop's own time (CPU or wall: --wall), by openloop
    wall_s: float                 # start to the collector's last drained event
    ns_per_iter: float = 0.0
    events: int = 0               # events delivered to the sinks during the run
    opens: int = 0                # open events of /dev/null that succeeded
    lost: int = 0
    lost_by_cause: dict[str, int] = field(default_factory=dict)
    cpu_s: float = 0.0            # this process's user+sys CPU during the run
    child_cpu_s: float = 0.0      # the loop's user+sys CPU
    foreign_bpf: int | None = None  # tracing BPF programs loaded before an untraced run
    loop_wall_ns: int = 0         # the loop's elapsed time
    loop_cpu_ns: int = 0          # the loop thread's CPU time


class CountingSink:
    """Counts events and the successful opens of /dev/null; writes nothing."""

    def __init__(self) -> None:
        self.events = 0
        self.opens = 0

    def write(self, event: Event) -> None:
        self.events += 1
        if isinstance(event, OpenEvent) and event.path == "/dev/null" and event.ret >= 0:
            self.opens += 1

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


# ---------------------------------------------------------------------- helpers
def compile_openloop(tmp: Path) -> Path:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise BenchError("no C compiler (cc) on PATH to build bench/openloop.c: "
                         "apt-get install gcc")
    exe = tmp / "openloop"
    proc = subprocess.run([cc, "-O2", "-o", str(exe), str(SOURCE)], capture_output=True,
                          text=True)
    if proc.returncode != 0:
        raise BenchError(f"cc failed on {SOURCE}:\n{proc.stderr.strip()}")
    return exe


def read_loop_ns(out: Path) -> tuple[int, int]:
    """(elapsed ns, CPU ns) of the loop, as openloop wrote them."""
    try:
        wall, cpu = out.read_text().split()
        return int(wall), int(cpu)
    except (OSError, ValueError) as e:
        raise BenchError(f"openloop left no timing in {out}: {e}") from e


def cpu_times() -> tuple[float, float]:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, kids.ru_utime + kids.ru_stime


def tracing_program_ids() -> set[int] | None:
    """Ids of the tracing BPF programs loaded now (None without a working bpftool)."""
    bpftool = shutil.which("bpftool")
    if bpftool is None:
        return None
    proc = subprocess.run([bpftool, "-j", "prog", "show"], capture_output=True, text=True)
    if proc.returncode != 0:
        return None
    try:
        progs = json.loads(proc.stdout or "[]")
    except json.JSONDecodeError:
        return None
    return {int(p["id"]) for p in progs if p.get("type") in TRACING_PROG_TYPES and "id" in p}


def foreign_tracing_programs() -> int | None:
    """How many tracing BPF programs are loaded (None if bpftool is missing)."""
    ids = tracing_program_ids()
    return None if ids is None else len(ids)


# ---------------------------------------------------------------------- one run per mode
class Bench:
    def __init__(self, exe: Path, tmp: Path, iterations: int, ringbuf_pages: int,
                 peers: list[Peer], getpid: bool = False) -> None:
        self.exe = exe
        self.tmp = tmp
        self.n = iterations
        self.config = ProbeConfig(ringbuf_pages=ringbuf_pages)
        self.peers = list(peers)
        self.peer_errors: dict[str, str] = {}
        self.getpid = getpid
        self.traced_modes = GETPID_MODES if getpid else TRACED_MODES
        self.collector: Collector | None = None
        self.counter = CountingSink()
        self.jsonl: JsonlSink | None = None
        self.startups: list[float] = []  # seconds from Collector() to probes attached
        self.wall = False  # ratios of elapsed time rather than CPU time

    def argv(self, *extra: str) -> list[str]:
        g = ["-g"] if self.getpid else []
        return [str(self.exe), *g, str(self.n), str(self.tmp / "loop.ns"), *extra]

    def measure(self, mode: str, rnd: int, body: Callable[[], None]) -> Sample:
        out = self.tmp / "loop.ns"
        out.unlink(missing_ok=True)
        c = self.collector
        lost_before: Counter[str] = Counter()
        if c is not None:
            c.check_losses()
            lost_before = Counter(c.stats.lost_total)
        events0, opens0 = self.counter.events, self.counter.opens
        cpu0, kids0 = cpu_times()
        t0 = time.perf_counter()
        body()
        wall = time.perf_counter() - t0
        cpu1, kids1 = cpu_times()
        loop_wall, loop_cpu = read_loop_ns(out)
        sample = Sample(mode=mode, round=rnd, loop_ns=loop_wall if self.wall else loop_cpu,
                        wall_s=wall, cpu_s=cpu1 - cpu0, child_cpu_s=kids1 - kids0,
                        loop_wall_ns=loop_wall, loop_cpu_ns=loop_cpu)
        sample.ns_per_iter = sample.loop_ns / self.n
        if c is not None:
            c.check_losses()
            delta = Counter(c.stats.lost_total)
            delta.subtract(lost_before)
            sample.lost_by_cause = {k: v for k, v in delta.items() if v}
            sample.lost = sum(sample.lost_by_cause.values())
            sample.events = self.counter.events - events0
            sample.opens = self.counter.opens - opens0
        return sample

    # ------------------------------------------------------------ collector closed
    def untraced(self, rnd: int) -> Sample:
        foreign = foreign_tracing_programs()
        s = self.measure(UNTRACED, rnd, lambda: self._plain())
        s.foreign_bpf = foreign
        return s

    def _plain(self) -> None:
        subprocess.run(self.argv(), check=True)

    def floor(self, rnd: int) -> Sample:
        """Empty BPF programs on the workload's tracepoints: the least any tracer pays."""
        from bcc import BPF

        from probes import kernel

        kernel.prepare()  # tracefs, kernel headers for BCC (as the collector's load does)
        prog = BPF(text=FLOOR_SRC[self.getpid])
        try:
            return self.measure(FLOOR, rnd, lambda: self._plain())
        finally:
            prog.cleanup()

    def peer_samples(self, rnd: int) -> list[Sample]:
        out = []
        for peer in self.peers:
            if peer.name in self.peer_errors:
                continue
            result: dict[str, int] = {}

            def body(p: Peer = peer, r: dict[str, int] = result) -> None:
                r.update(self._peer(p, rnd))
            try:
                s = self.measure(peer.name, rnd, body)
            except (BenchError, PeerError) as e:
                self.peer_errors[peer.name] = str(e)
                continue
            s.events, s.opens, s.lost = result["lines"], result["opens"], result["lost"]
            s.lost_by_cause = {peer.name: s.lost} if s.lost else {}
            out.append(s)
        return out

    def _peer(self, peer: Peer, rnd: int) -> dict[str, int]:
        loop = subprocess.Popen(self.argv("wait"), stdin=subprocess.PIPE)
        assert loop.stdin is not None
        try:
            run_ = attach(peer, loop.pid, self.tmp, f"s1-{rnd}")
        except PeerError:
            loop.kill()
            loop.wait()
            raise
        try:
            loop.stdin.write(b"g")
            loop.stdin.close()
            if loop.wait() != 0:
                raise BenchError(f"openloop exited {loop.returncode} under {peer.name}")
            res = run_.finish()
        finally:
            run_.kill()
            if loop.poll() is None:
                loop.kill()
                loop.wait()
        res.out.unlink(missing_ok=True)
        return {"lines": res.lines, "opens": res.matched, "lost": res.lost}

    # ------------------------------------------------------------ collector loaded
    def load(self) -> None:
        t0 = time.perf_counter()
        self.collector = Collector(sinks=[], config=self.config)
        self.collector.start()
        self.startups.append(time.perf_counter() - t0)
        self.jsonl = JsonlSink("/dev/null")

    def unload(self) -> None:
        if self.collector is not None:
            self.collector.sinks = []  # ours: closed here, not by the collector
            self.collector.close()
            self.collector = None
        if self.jsonl is not None:
            self.jsonl.close()
            self.jsonl = None

    def traced(self, mode: str, rnd: int) -> Sample:
        c = self.collector
        assert c is not None and self.jsonl is not None
        if mode == UNWATCHED:
            c.sinks = [self.counter]
            return self.measure(mode, rnd, lambda: self._unwatched(c))
        sinks: list[Sink] = [self.counter]
        if mode == WATCHED_JSONL:
            sinks.append(self.jsonl)
        c.sinks = sinks
        return self.measure(mode, rnd, lambda: self._watched(c))

    def _unwatched(self, c: Collector) -> None:
        # The collector polls as a daemon would while an unwatched process runs, and
        # another process (a sleeping one) is watched, so that the filter has a session
        # to filter for.
        other = subprocess.Popen(["sleep", "3600"])
        try:
            c.attach(other.pid)
            proc = subprocess.Popen(self.argv())
            while proc.poll() is None:
                c.poll(50)
            c.drain()
        finally:
            other.kill()
            other.wait()
        if proc.returncode != 0:
            raise BenchError(f"openloop exited {proc.returncode}")

    def _watched(self, c: Collector) -> None:
        result = run(self.argv(), collector=c)
        if result.exit_status != 0:
            raise BenchError(f"openloop exited {result.exit_status} in a session")


# ---------------------------------------------------------------------- the rounds
def run_rounds(bench: Bench, rounds: int, progress: bool) -> list[Sample]:
    samples: list[Sample] = []

    def note(s: Sample | None) -> None:
        if s is None:
            return
        samples.append(s)
        if progress:
            print(f"  round {s.round}: {s.mode:<14} {s.ns_per_iter:8.1f} ns/iter "
                  f"events={s.events} lost={s.lost}", file=sys.stderr, flush=True)

    def untraced_phase(rnd: int) -> None:
        if rnd % 2 == 0:
            note(bench.untraced(rnd))
        note(bench.floor(rnd))
        for s in bench.peer_samples(rnd):
            note(s)
        if rnd % 2 == 1:
            note(bench.untraced(rnd))

    for rnd in range(rounds):
        if rnd % 2 == 0:
            untraced_phase(rnd)
        bench.load()
        try:
            modes = bench.traced_modes
            k = rnd % len(modes)
            for mode in modes[k:] + modes[:k]:
                note(bench.traced(mode, rnd))
        finally:
            bench.unload()
        if rnd % 2 == 1:
            untraced_phase(rnd)
    return samples


def summarize(samples: list[Sample], n: int) -> dict[str, dict[str, Any]]:
    base = {s.round: s.ns_per_iter for s in samples if s.mode == UNTRACED}
    modes = [UNTRACED, FLOOR, *TRACED_MODES, *OPEN_PEERS]
    base_median = statistics.median(base.values())
    out: dict[str, dict[str, Any]] = {}
    for mode in modes:
        rows = [s for s in samples if s.mode == mode]
        if not rows:
            continue
        ratios = [s.ns_per_iter / base[s.round] for s in rows]
        observed = mode in (WATCHED, WATCHED_JSONL, *OPEN_PEERS)  # modes that see the opens
        median_ns = statistics.median(s.ns_per_iter for s in rows)
        causes: Counter[str] = Counter()
        for s in rows:
            causes.update(s.lost_by_cause)
        events = sum(s.events for s in rows)
        out[mode] = {
            "runs": len(rows),
            "ns_per_iter_median": median_ns,
            "ns_per_iter": [round(s.ns_per_iter, 1) for s in rows],
            "ratio": statistics.median(ratios),      # median of per-round ratios
            "ratio_min": min(ratios),
            "ratio_max": max(ratios),
            "ratio_of_medians": median_ns / base_median,
            "events_per_run": statistics.median_low(s.events for s in rows),
            "opens_per_run": statistics.median_low(s.opens for s in rows),
            "opens_missing": sum(max(0, n - s.opens) for s in rows) if observed else None,
            "lost_total": sum(s.lost for s in rows),
            "lost_by_cause": dict(causes),
            "wall_s_median": statistics.median(s.wall_s for s in rows),
            "cpu_s_median": statistics.median(s.cpu_s for s in rows),
            "child_cpu_s_median": statistics.median(s.child_cpu_s for s in rows),
            "cpu_us_per_event": (sum(s.cpu_s for s in rows) / events * 1e6) if events else None,
            "target": TARGETS.get(mode),
        }
        if mode == UNTRACED:
            foreign = [s.foreign_bpf for s in rows if s.foreign_bpf is not None]
            out[mode]["foreign_tracing_bpf_max"] = max(foreign) if foreign else None
    return out


def print_table(summary: dict[str, dict[str, Any]], meta: dict[str, Any]) -> None:
    print(f"open+close loop: N={meta['iterations']} x {meta['rounds']} rounds, "
          f"{meta['cpus']} CPUs, kernel {meta['kernel']}, ring buffer "
          f"{meta['ringbuf_pages'] * 4} KiB, {meta['date']}")
    print("ratio = median over rounds of (mode ns/iter / untraced ns/iter, same round); "
          f"ns/iter of the loop's {meta.get('clock', 'loop thread CPU time')}\n")
    head = (f"{'mode':<14} {'ns/iter':>8} {'ratio':>6} {'min-max':>11} {'events/run':>11} "
            f"{'opens/run':>10} {'lost':>8} {'wall s':>7} {'CPU µs/ev':>9}  target")
    print(head)
    print("-" * len(head))
    for mode, m in summary.items():
        watched = mode in (WATCHED, WATCHED_JSONL, *OPEN_PEERS)
        target = m["target"]
        verdict = ""
        if target is not None:
            ok = m["ratio"] <= target and (mode == UNWATCHED or m["lost_total"] == 0)
            verdict = f"<= {target}x{' + 0 lost' if mode == WATCHED else ''}: " \
                      f"{'met' if ok else 'NOT met'}"
        per_ev = m["cpu_us_per_event"]
        print(f"{mode:<14} {m['ns_per_iter_median']:8.1f} {m['ratio']:6.3f} "
              f"{m['ratio_min']:5.2f}-{m['ratio_max']:<5.2f} "
              f"{m['events_per_run'] if mode not in (UNTRACED, FLOOR) else '-':>11} "
              f"{m['opens_per_run'] if watched else '-':>10} "
              f"{m['lost_total'] if mode not in (UNTRACED, FLOOR) else '-':>8} "
              f"{m['wall_s_median']:7.2f} "
              f"{f'{per_ev:.2f}' if per_ev and mode in (WATCHED, WATCHED_JSONL) else '-':>9}  "
              f"{verdict}")
    print()
    for mode, m in summary.items():
        if m["lost_by_cause"]:
            print(f"{mode}: lost {m['lost_total']} over {m['runs']} runs, by cause "
                  f"{m['lost_by_cause']}; /dev/null opens missing: {m['opens_missing']}")
    foreign = summary[UNTRACED].get("foreign_tracing_bpf_max")
    if foreign:
        print(f"WARNING: {foreign} tracing BPF programs of others were loaded during untraced "
              "runs: every figure includes their cost")
    for name, err in (meta.get("peer_errors") or {}).items():
        print(f"peer {name} left out: {err}")
    if meta.get("no_peer"):
        print("peers left out: --no-peer")
    print("events/run: all events delivered (session start/end and loss events included); "
          "opens/run: open events of /dev/null; lost: sum over runs; CPU µs/ev: this "
          "process's CPU per delivered event")


def measure_s1(iterations: int, rounds: int, ringbuf_pages: int, peers: list[Peer],
               getpid: bool = False, progress: bool = True, wall: bool = False
               ) -> tuple[dict[str, dict[str, Any]], dict[str, Any], list[Sample], Bench]:
    """S1 for one workload: (summary by mode, meta, samples, the bench with its startups)."""
    with tempfile.TemporaryDirectory(prefix="aw-bench-") as tmpdir:
        tmp = Path(tmpdir)
        exe = compile_openloop(tmp)
        bench = Bench(exe, tmp, iterations, ringbuf_pages, peers, getpid=getpid)
        bench.wall = wall
        # Warm-up, not recorded (page cache, CPU frequency, the first exec): one full run,
        # as a shorter one left the first untraced run of round 0 up to 1.3x slow.
        subprocess.run(bench.argv(), check=True)
        samples = run_rounds(bench, rounds, progress=progress)
    meta: dict[str, Any] = {
        "benchmark": "getpid" if getpid else "open_close", "iterations": iterations,
        "rounds": rounds, "ringbuf_pages": ringbuf_pages, "cpus": os.cpu_count(),
        "kernel": platform.release(), "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "ratio": "median of per-round ratios to untraced",
        "clock": "elapsed" if wall else "loop thread CPU time",
        "peers": [p.name for p in peers], "peer_errors": bench.peer_errors,
        "no_peer": not peers, "startup_s": bench.startups,
    }
    return summarize(samples, iterations), meta, samples, bench


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iterations", "-n", type=int, default=200_000,
                    help="loop iterations per run (default 200000)")
    ap.add_argument("--rounds", "-r", type=int, default=5, help="rounds (default 5)")
    ap.add_argument("--ringbuf-pages", type=int, default=ProbeConfig().ringbuf_pages,
                    help="ring buffer size in 4 KiB pages, a power of two (default %(default)s)")
    ap.add_argument("--getpid", action="store_true",
                    help="loop on getpid() (untraced by every probe) instead of open+close")
    ap.add_argument("--peer", action="append", choices=sorted(OPEN_PEERS),
                    help="peers to run (default: every one installed)")
    ap.add_argument("--no-peer", action="store_true", help="leave the peers out")
    ap.add_argument("--wall", action="store_true",
                    help="ratios of the loop's elapsed time, not its CPU time")
    ap.add_argument("--json", action="store_true", help="print one JSON object, no table")
    ap.add_argument("--quiet", "-q", action="store_true", help="no progress on stderr")
    args = ap.parse_args(argv)
    if args.iterations <= 0 or args.rounds <= 0:
        ap.error("--iterations and --rounds must be positive")
    if os.geteuid() != 0:
        print("bench: must run as root (loads BPF programs)", file=sys.stderr)
        return EXIT_USAGE
    peers = [] if args.no_peer or args.getpid else \
        [OPEN_PEERS[n] for n in (args.peer or OPEN_PEERS) if OPEN_PEERS[n].available()]
    try:
        summary, meta, samples, _ = measure_s1(args.iterations, args.rounds,
                                               args.ringbuf_pages, peers, args.getpid,
                                               progress=not (args.quiet or args.json),
                                               wall=args.wall)
    except (BenchError, SetupError, ValueError, subprocess.CalledProcessError) as e:
        print(f"bench: {e}", file=sys.stderr)
        return EXIT_USAGE
    if args.json:
        print(json.dumps({**meta, "modes": summary,
                          "samples": [asdict(s) for s in samples]}, indent=1))
    else:
        print_table(summary, meta)
    return 0


if __name__ == "__main__":
    sys.exit(main())
