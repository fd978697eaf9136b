"""open+close loop: what agentwatch costs a traced process, as ratios to an untraced run.

Workload: bench/openloop.c, compiled with `cc -O2` at start into a temporary directory.
`openloop N OUT` does N iterations of open("/dev/null", O_RDONLY) + close() and writes the
time of the loop alone (CLOCK_MONOTONIC, so exec and exit are not in it) to OUT. That is the
worst case for agentwatch: nothing but traced syscalls, each one an event when watched.

Modes, all measured in one invocation, interleaved round by round so that drift (CPU
frequency, a noisy neighbour) touches every mode alike:

  untraced       no BPF loaded (the collector is closed for it).
  unwatched      the collector loaded and polling, the loop run with subprocess, outside any
                 session: every openat pays the probes' one `watched` lookup at entry and exit.
  watched        the loop run as a session (`collector.run.run`); every event is decoded, goes
                 through the process table and to a sink that only counts it.
  watched-jsonl  the same, with a JsonlSink writing JSON Lines to /dev/null as well.
  opensnoop      a peer: BCC's libbpf-tools `opensnoop -p PID` (a C consumer of a perf
                 buffer) on the same loop, with the collector closed; its output goes to a file
                 that is then counted. Only when `opensnoop` is installed (Debian package
                 libbpf-tools); `--no-peer` leaves it out.

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
- The opensnoop peer filters by pid in the kernel and prints one line per event: it does
  less work per event than agentwatch (no session, comm, cgroup or flags decoding) and is
  only a reference point. BCC's Python opensnoop (opensnoop-bpfcc) needs kprobes or fentry,
  neither of which every host allows; `--opensnoop PATH` picks another binary that takes
  `-p PID`, prints to stdout, reports losses as "Lost N events" on stderr and stops on SIGINT.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shutil
import signal
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

from collector.events import Event, OpenEvent
from collector.run import run
from collector.runtime import Collector, Sink
from collector.sinks import JsonlSink
from probes.kernel import SetupError
from probes.loader import ProbeConfig

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "openloop.c"
EXIT_USAGE = 2

UNTRACED, UNWATCHED, WATCHED, WATCHED_JSONL, OPENSNOOP = (
    "untraced", "unwatched", "watched", "watched-jsonl", "opensnoop")
TRACED_MODES = (UNWATCHED, WATCHED, WATCHED_JSONL)
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
    loop_ns: int                  # the loop's own time, reported by openloop
    wall_s: float                 # start to the collector's last drained event
    ns_per_iter: float = 0.0
    events: int = 0               # events delivered to the sinks during the run
    opens: int = 0                # open events of /dev/null that succeeded
    lost: int = 0
    lost_by_cause: dict[str, int] = field(default_factory=dict)
    cpu_s: float = 0.0            # this process's user+sys CPU during the run
    child_cpu_s: float = 0.0      # the loop's user+sys CPU
    foreign_bpf: int | None = None  # tracing BPF programs loaded before an untraced run


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


def read_loop_ns(out: Path) -> int:
    try:
        return int(out.read_text().strip())
    except (OSError, ValueError) as e:
        raise BenchError(f"openloop left no timing in {out}: {e}") from e


def cpu_times() -> tuple[float, float]:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, kids.ru_utime + kids.ru_stime


def foreign_tracing_programs() -> int | None:
    """How many tracing BPF programs are loaded (None if bpftool is missing)."""
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
    return sum(1 for p in progs if p.get("type") in TRACING_PROG_TYPES)


# ---------------------------------------------------------------------- one run per mode
class Bench:
    def __init__(self, exe: Path, tmp: Path, iterations: int, ringbuf_pages: int,
                 opensnoop: str | None) -> None:
        self.exe = exe
        self.tmp = tmp
        self.n = iterations
        self.config = ProbeConfig(ringbuf_pages=ringbuf_pages)
        self.opensnoop = opensnoop
        self.opensnoop_error: str | None = None
        self.collector: Collector | None = None
        self.counter = CountingSink()
        self.jsonl: JsonlSink | None = None

    def argv(self, *extra: str) -> list[str]:
        return [str(self.exe), str(self.n), str(self.tmp / "loop.ns"), *extra]

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
        sample = Sample(mode=mode, round=rnd, loop_ns=read_loop_ns(out), wall_s=wall,
                        cpu_s=cpu1 - cpu0, child_cpu_s=kids1 - kids0)
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

    def peer(self, rnd: int) -> Sample | None:
        if self.opensnoop is None or self.opensnoop_error is not None:
            return None
        result: dict[str, int] = {}
        try:
            s = self.measure(OPENSNOOP, rnd, lambda: result.update(self._opensnoop()))
        except BenchError as e:
            self.opensnoop_error = str(e)
            return None
        s.events, s.opens, s.lost = result["lines"], result["opens"], result["lost"]
        s.lost_by_cause = {"opensnoop": s.lost} if s.lost else {}
        return s

    def _opensnoop(self) -> dict[str, int]:
        assert self.opensnoop is not None
        out_path, err_path = self.tmp / "opensnoop.out", self.tmp / "opensnoop.err"
        loop = subprocess.Popen(self.argv("wait"), stdin=subprocess.PIPE)
        assert loop.stdin is not None
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            snoop = subprocess.Popen([self.opensnoop, "-p", str(loop.pid)], stdout=out,
                                     stderr=err)
        try:
            self._wait_attached(snoop, err_path)
            loop.stdin.write(b"g")
            loop.stdin.close()
            if loop.wait() != 0:
                raise BenchError(f"openloop exited {loop.returncode} under opensnoop")
            # Let opensnoop catch up: its output stops growing (it writes in 4 KiB blocks).
            size, still = -1, 0
            deadline = time.monotonic() + 60
            while still < 3 and time.monotonic() < deadline:
                time.sleep(0.1)
                now = out_path.stat().st_size
                still = still + 1 if now == size else 0
                size = now
            snoop.send_signal(signal.SIGINT)
            snoop.wait(timeout=10)
        finally:
            for p in (loop, snoop):
                if p.poll() is None:
                    p.kill()
                    p.wait()
        lines = opens = 0
        with open(out_path, "rb") as f:
            next(f, None)  # header
            for line in f:
                lines += 1
                if line.rstrip().endswith(b" /dev/null"):
                    opens += 1
        lost = sum(int(m) for m in re.findall(rb"Lost (\d+) events", err_path.read_bytes()))
        return {"lines": lines, "opens": opens, "lost": lost}

    @staticmethod
    def _wait_attached(snoop: subprocess.Popen[bytes], err_path: Path) -> None:
        """libbpf-tools attach their programs before they make the perf buffer (an epoll
        fd, then one perf event per CPU): the epoll fd means the probes are in place."""
        deadline = time.monotonic() + 30
        fd_dir = Path(f"/proc/{snoop.pid}/fd")
        while time.monotonic() < deadline:
            if snoop.poll() is not None:
                msg = err_path.read_text(errors="replace").strip().splitlines()
                raise BenchError(f"opensnoop exited {snoop.returncode} before attaching: "
                                 f"{msg[-1] if msg else 'no message'}")
            try:
                links = [os.readlink(p) for p in fd_dir.iterdir()]
            except OSError:
                links = []
            if "anon_inode:[eventpoll]" in links:
                time.sleep(0.3)  # the per-CPU perf buffers come just after the epoll fd
                return
            time.sleep(0.02)
        raise BenchError("opensnoop did not attach within 30 s")

    # ------------------------------------------------------------ collector loaded
    def load(self) -> None:
        self.collector = Collector(sinks=[], config=self.config)
        self.collector.start()
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
        # The collector polls as a daemon would while an unwatched process runs.
        proc = subprocess.Popen(self.argv())
        while proc.poll() is None:
            c.poll(50)
        c.drain()
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
        first, second = (bench.untraced, bench.peer) if rnd % 2 == 0 else \
            (bench.peer, bench.untraced)
        note(first(rnd))
        note(second(rnd))

    for rnd in range(rounds):
        if rnd % 2 == 0:
            untraced_phase(rnd)
        bench.load()
        try:
            k = rnd % len(TRACED_MODES)
            for mode in TRACED_MODES[k:] + TRACED_MODES[:k]:
                note(bench.traced(mode, rnd))
        finally:
            bench.unload()
        if rnd % 2 == 1:
            untraced_phase(rnd)
    return samples


def summarize(samples: list[Sample], n: int) -> dict[str, dict[str, Any]]:
    base = {s.round: s.ns_per_iter for s in samples if s.mode == UNTRACED}
    modes = [UNTRACED, *TRACED_MODES, OPENSNOOP]
    base_median = statistics.median(base.values())
    out: dict[str, dict[str, Any]] = {}
    for mode in modes:
        rows = [s for s in samples if s.mode == mode]
        if not rows:
            continue
        ratios = [s.ns_per_iter / base[s.round] for s in rows]
        observed = mode in (WATCHED, WATCHED_JSONL, OPENSNOOP)  # modes that see the opens
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
    print("ratio = median over rounds of (mode ns/iter / untraced ns/iter, same round)\n")
    head = (f"{'mode':<14} {'ns/iter':>8} {'ratio':>6} {'min-max':>11} {'events/run':>11} "
            f"{'opens/run':>10} {'lost':>8} {'wall s':>7} {'CPU µs/ev':>9}  target")
    print(head)
    print("-" * len(head))
    for mode, m in summary.items():
        watched = mode in (WATCHED, WATCHED_JSONL, OPENSNOOP)
        target = m["target"]
        verdict = ""
        if target is not None:
            ok = m["ratio"] <= target and (mode == UNWATCHED or m["lost_total"] == 0)
            verdict = f"<= {target}x{' + 0 lost' if mode == WATCHED else ''}: " \
                      f"{'met' if ok else 'NOT met'}"
        per_ev = m["cpu_us_per_event"]
        print(f"{mode:<14} {m['ns_per_iter_median']:8.1f} {m['ratio']:6.3f} "
              f"{m['ratio_min']:5.2f}-{m['ratio_max']:<5.2f} "
              f"{m['events_per_run'] if mode != UNTRACED else '-':>11} "
              f"{m['opens_per_run'] if watched else '-':>10} "
              f"{m['lost_total'] if mode != UNTRACED else '-':>8} "
              f"{m['wall_s_median']:7.2f} "
              f"{f'{per_ev:.2f}' if per_ev and mode != OPENSNOOP else '-':>9}  {verdict}")
    print()
    for mode, m in summary.items():
        if m["lost_by_cause"]:
            print(f"{mode}: lost {m['lost_total']} over {m['runs']} runs, by cause "
                  f"{m['lost_by_cause']}; /dev/null opens missing: {m['opens_missing']}")
    foreign = summary[UNTRACED].get("foreign_tracing_bpf_max")
    if foreign:
        print(f"WARNING: {foreign} tracing BPF programs of others were loaded during untraced "
              "runs: every figure includes their cost")
    if meta.get("opensnoop_error"):
        print(f"opensnoop peer left out: {meta['opensnoop_error']}")
    elif meta.get("opensnoop") is None:
        why = "--no-peer" if meta.get("no_peer") else \
            "no `opensnoop` on PATH (Debian package libbpf-tools)"
        print(f"opensnoop peer left out: {why}")
    print("events/run: all events delivered (session start/end and loss events included); "
          "opens/run: open events of /dev/null; lost: sum over runs; CPU µs/ev: this "
          "process's CPU per delivered event")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iterations", "-n", type=int, default=200_000,
                    help="open+close iterations per run (default 200000)")
    ap.add_argument("--rounds", "-r", type=int, default=5, help="rounds (default 5)")
    ap.add_argument("--ringbuf-pages", type=int, default=ProbeConfig().ringbuf_pages,
                    help="ring buffer size in 4 KiB pages, a power of two (default %(default)s)")
    ap.add_argument("--opensnoop", default=shutil.which("opensnoop"),
                    help="opensnoop binary for the peer (default: libbpf-tools' if installed)")
    ap.add_argument("--no-peer", action="store_true", help="leave the opensnoop peer out")
    ap.add_argument("--json", action="store_true", help="print one JSON object, no table")
    ap.add_argument("--quiet", "-q", action="store_true", help="no progress on stderr")
    args = ap.parse_args(argv)
    if args.iterations <= 0 or args.rounds <= 0:
        ap.error("--iterations and --rounds must be positive")
    if os.geteuid() != 0:
        print("bench: must run as root (loads BPF programs)", file=sys.stderr)
        return EXIT_USAGE
    opensnoop = None if args.no_peer else args.opensnoop

    with tempfile.TemporaryDirectory(prefix="aw-bench-") as tmpdir:
        tmp = Path(tmpdir)
        try:
            exe = compile_openloop(tmp)
            bench = Bench(exe, tmp, args.iterations, args.ringbuf_pages, opensnoop)
            # Warm-up, not recorded (page cache, CPU frequency, the first exec): one full run,
            # as a shorter one left the first untraced run of round 0 up to 1.3x slow.
            subprocess.run([str(exe), str(args.iterations), str(tmp / "warmup.ns")],
                           check=True)
            samples = run_rounds(bench, args.rounds, progress=not (args.quiet or args.json))
        except (BenchError, SetupError, ValueError, subprocess.CalledProcessError) as e:
            print(f"bench: {e}", file=sys.stderr)
            return EXIT_USAGE

    meta: dict[str, Any] = {
        "benchmark": "open_close", "iterations": args.iterations, "rounds": args.rounds,
        "ringbuf_pages": args.ringbuf_pages, "cpus": os.cpu_count(),
        "kernel": platform.release(), "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "ratio": "median of per-round ratios to untraced",
        "opensnoop": opensnoop, "opensnoop_error": bench.opensnoop_error,
        "no_peer": args.no_peer,
    }
    summary = summarize(samples, args.iterations)
    if args.json:
        print(json.dumps({**meta, "modes": summary,
                          "samples": [asdict(s) for s in samples]}, indent=1))
    else:
        print_table(summary, meta)
    return 0


if __name__ == "__main__":
    sys.exit(main())
