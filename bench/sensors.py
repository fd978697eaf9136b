"""The old and the new sensor side by side, in one run, by the same harness.

    bench/sensors.py [--old-ref REF] [--new-ref REF] [-n N] [--n-getpid N] [-r ROUNDS]
                     [--quick] [--json FILE] [--write-doc [FILE]] [--strict]

The OLD design is the code at a git ref (default 62ee690, the merge base of issue 15's
sensor v2), exported with `git archive` into a temporary directory; the NEW one is this
working tree as it is (uncommitted changes included), or another ref with --new-ref. Each
is loaded in a process of its own (bench/sensor_agent.py, with that tree alone on
PYTHONPATH) and driven through the collector's public entry points, so both are measured
by this harness in the same run, on the same loops, interleaved.

Workloads (bench/openloop.c, compiled at start), the method of bench/open_close.py: the
loop's thread CPU time per iteration, as a ratio to untraced runs of the same round, the
median over rounds of the per-round ratio.

  untraced              no sensor loaded by us (run at the start and at the end of each
                        round; the round's base is their mean)
  open+close unwatched  the sensor loaded, another process (a `sleep`) watched, the loop not
  getpid unwatched      the same with getpid(): no probe of the old design traces it
  open+close watched    the loop run as a session, every event decoded (counted, lost too)

Also per design and round: start (the sensor's process started -> probes attached, and
`Collector()` -> attached), stop (`Collector.close()`), and `agentwatch run -- true` wall
time. A round: untraced, each design in turn (old first in even rounds, new first in odd
ones; its modes in an order that rotates by round), untraced. Recorded with the figures: the
load average at each run's start and the tracing BPF programs of others loaded before each
untraced run.

The requirement checked (issue 15): for unwatched open+close and getpid, the new design's
ratio is at most 0.05 (--threshold) above the old one's. It is printed, and turned into
exit status 1 only with --strict.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import select
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.open_close import (
    BenchError,
    compile_openloop,
    read_loop_ns,
    tracing_program_ids,
)
from bench.sensors_report import (
    DESIGNS,
    FLOOR,
    GETPID,
    NEW,
    OLD,
    OPEN,
    SENSOR_MODES,
    UNTRACED,
    Sample,
    Timing,
    render_markdown,
    rewrite_section,
    summarize,
    verdicts,
)

ROOT = Path(__file__).resolve().parent.parent
AGENT = Path(__file__).resolve().parent / "sensor_agent.py"
DOC = ROOT / "docs" / "performance.md"
DEFAULT_OLD_REF = "62ee690"
DEFAULT_PIN_DIR = "/sys/fs/bpf/agentwatch"
PREFIX = "AWBENCH "
EXIT_USAGE = 2
REPLY_TIMEOUT_S = 600.0
FLOOR_PROGRAM = ("RAW_TRACEPOINT_PROBE(sys_enter) { return 0; }\n"
                 "RAW_TRACEPOINT_PROBE(sys_exit) { return 0; }\n")
RUN_TRUE = ("import sys; sys.argv[0] = 'agentwatch'; from service.cli import main; main()")
SHARED_NOTE = ("Measured while others used the same CPUs: not publishable, a check of the "
               "harness only.")


# ---------------------------------------------------------------------- arguments
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--old-ref", default=DEFAULT_OLD_REF,
                    help="git ref of the old design (default %(default)s)")
    ap.add_argument("--new-ref", default=None,
                    help="git ref of the new design (default: the working tree as it is)")
    ap.add_argument("--iterations", "-n", type=int, default=None,
                    help="open+close iterations per run (default 200000; --quick 50000)")
    ap.add_argument("--n-getpid", type=int, default=None,
                    help="getpid iterations per run (default 1000000; --quick 300000)")
    ap.add_argument("--rounds", "-r", type=int, default=None,
                    help="rounds (default 5; --quick 1)")
    ap.add_argument("--ringbuf-pages", type=int, default=None,
                    help="ring buffer size in 4 KiB pages, a power of two (default 16384 = "
                         "64 MiB, so that a watched run's burst fits; --quick 4096)")
    ap.add_argument("--repeat", "-k", type=int, default=None,
                    help="runs of each loop per round and design; a round's figure is their "
                         "minimum (default 3; --quick 2)")
    ap.add_argument("--threshold", type=float, default=0.05,
                    help="new - old ratio allowed for the unwatched modes (default 0.05)")
    ap.add_argument("--quick", action="store_true", help="small runs, to check the harness")
    ap.add_argument("--pin-dir", default=DEFAULT_PIN_DIR,
                    help="where a design pins its programs (default %(default)s); checked "
                         "empty after each sensor stops")
    ap.add_argument("--remove-pins", action="store_true",
                    help="remove what a design left pinned there after it stopped (else that "
                         "stops the bench: every later run would pay for those programs)")
    ap.add_argument("--wall", action="store_true",
                    help="ratios of the loop's elapsed time, not its CPU time")
    ap.add_argument("--json", metavar="FILE", help="write every figure and sample to FILE")
    ap.add_argument("--write-doc", metavar="FILE", nargs="?", const=str(DOC), default=None,
                    help="rewrite the table between the markers of FILE "
                         "(default docs/performance.md)")
    ap.add_argument("--note", default=None,
                    help="a line printed in bold under the table (e.g. the machine was busy)")
    ap.add_argument("--shared", action="store_const", dest="note", const=SHARED_NOTE,
                    help=f"the note: {SHARED_NOTE!r}")
    ap.add_argument("--strict", action="store_true",
                    help="exit 1 when the requirement is not met")
    ap.add_argument("--quiet", "-q", action="store_true", help="no progress on stderr")
    args = ap.parse_args(argv)
    quick = args.quick
    for name, full, small in (("iterations", 200_000, 50_000), ("n_getpid", 1_000_000, 300_000),
                              ("rounds", 5, 1), ("ringbuf_pages", 16384, 4096), ("repeat", 3, 2)):
        if getattr(args, name) is None:
            setattr(args, name, small if quick else full)
    if min(args.iterations, args.n_getpid, args.rounds, args.repeat) <= 0:
        ap.error("--iterations, --n-getpid, --rounds and --repeat must be positive")
    pages = args.ringbuf_pages
    if pages <= 0 or pages & (pages - 1):
        ap.error("--ringbuf-pages must be a power of two")
    if args.threshold < 0:
        ap.error("--threshold must not be negative")
    if not args.old_ref or args.old_ref.startswith("-"):
        ap.error("--old-ref must name a git ref")
    return args


# ---------------------------------------------------------------------- the two trees
def git(*args: str) -> str:
    proc = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise BenchError(f"git {' '.join(args)}: {proc.stderr.strip() or proc.returncode}")
    return proc.stdout.strip()


def export_ref(ref: str, dest: Path) -> dict[str, str]:
    """The tree of `ref` under dest (git archive: no worktree is registered)."""
    commit = git("rev-parse", "--verify", "--end-of-options", f"{ref}^{{commit}}")
    subject = git("log", "-1", "--format=%s", commit)
    tar = dest.with_suffix(".tar")
    git("archive", "--format=tar", "-o", str(tar), commit)
    dest.mkdir(parents=True)
    proc = subprocess.run(["tar", "-x", "-f", str(tar), "-C", str(dest)], capture_output=True,
                          text=True)
    tar.unlink()
    if proc.returncode != 0:
        raise BenchError(f"tar -x of {ref}: {proc.stderr.strip()}")
    return {"path": str(dest), "ref": ref, "commit": commit,
            "label": f"`{commit[:7]}` ({subject})"}


def working_tree() -> dict[str, str]:
    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
        label = f"the working tree at `{commit[:7]}`" + (" with uncommitted changes"
                                                           if dirty else "")
    except (BenchError, OSError):
        commit, label = "", "the working tree"
    return {"path": str(ROOT), "ref": "", "commit": commit, "label": label}


# ---------------------------------------------------------------------- one sensor process
class Agent:
    """bench/sensor_agent.py with one tree on PYTHONPATH: load, commands, close."""

    def __init__(self, tree: Path, pages: int, tmp: Path, name: str) -> None:
        self.log = tmp / f"agent-{name}.log"
        env = {**os.environ, "PYTHONPATH": str(tree),
               "AGENTWATCH_RUN_DIR": str(tmp / f"run-{name}")}
        self._stderr = self.log.open("a")
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(
            [sys.executable, "-P", str(AGENT), "--tree", str(tree), "--ringbuf-pages",
             str(pages)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr,
            env=env, cwd=str(tmp))
        self._buf = b""
        ready = self.reply()
        self.spawn_s = time.perf_counter() - t0
        if not ready.get("ready"):
            self.kill()
            raise BenchError(f"the sensor of {tree} did not load: {ready.get('error')}\n"
                             f"{ready.get('trace', '')}")
        self.ready = ready

    def reply(self, timeout: float = REPLY_TIMEOUT_S) -> dict[str, Any]:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while True:
            while b"\n" in self._buf:
                line, self._buf = self._buf.split(b"\n", 1)
                text = line.decode("utf-8", "replace")
                if text.startswith(PREFIX):
                    reply: dict[str, Any] = json.loads(text[len(PREFIX):])
                    return reply
            left = deadline - time.monotonic()
            if left <= 0:
                raise BenchError(f"no answer from the sensor in {timeout:.0f} s "
                                 f"(its log: {self.log})")
            r, _, _ = select.select([fd], [], [], left)
            if not r:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                raise BenchError(f"the sensor's process ended (status {self.proc.wait()}): "
                                 f"{self._tail()}")
            self._buf += chunk

    def _tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def command(self, cmd: str, argv: list[str]) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps({"cmd": cmd, "argv": argv}) + "\n").encode())
        self.proc.stdin.flush()
        reply = self.reply()
        if "error" in reply:
            raise BenchError(f"sensor: {reply['error']}\n{reply.get('trace', '')}")
        return reply

    def close(self) -> tuple[float, float]:
        """(close_s as the sensor measured it, close asked -> process gone)."""
        assert self.proc.stdin is not None
        t0 = time.perf_counter()
        self.proc.stdin.write(b'{"cmd": "close"}\n')
        self.proc.stdin.close()
        reply = self.reply()
        self.proc.wait(timeout=REPLY_TIMEOUT_S)
        self._stderr.close()
        return float(reply["close_s"]), time.perf_counter() - t0

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._stderr.close()


def own_program_ids(pid: int, proc_dir: Path = Path("/proc")) -> set[int]:
    """Ids of the BPF programs process `pid` holds open (its fdinfo's `prog_id:` lines):
    the sensor's own, left out of the count of others'."""
    ids = set()
    try:
        entries = list((proc_dir / str(pid) / "fdinfo").iterdir())
    except OSError:
        return set()
    for entry in entries:
        try:
            text = entry.read_text(errors="replace")
        except OSError:
            continue  # closed since the listing
        for line in text.splitlines():
            key, _, value = line.partition(":")
            if key == "prog_id" and value.strip().isdigit():
                ids.add(int(value))
    return ids


def pins_left(pin_dir: Path) -> list[Path]:
    """What is pinned under pin_dir (files, deepest first), [] if nothing or no such dir."""
    if not pin_dir.is_dir():
        return []
    found = [Path(d) / f for d, _, files in os.walk(pin_dir) for f in files]
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def remove_pins(pin_dir: Path) -> int:
    """Unpin everything under pin_dir (a link or map goes when its last reference does)."""
    left = pins_left(pin_dir)
    for path in left:
        path.unlink()
    for d, _, _ in sorted(os.walk(pin_dir), key=lambda w: len(Path(w[0]).parts),
                          reverse=True):
        Path(d).rmdir()
    return len(left)


# ---------------------------------------------------------------------- the runs
class Run:
    def __init__(self, args: argparse.Namespace, trees: dict[str, dict[str, str]],
                 exe: Path, tmp: Path) -> None:
        self.args = args
        self.trees = trees
        self.exe = exe
        self.tmp = tmp
        self.out = tmp / "loop.ns"
        self.samples: list[Sample] = []
        self.timings: list[Timing] = []

    def log(self, msg: str) -> None:
        if not self.args.quiet:
            print(msg, file=sys.stderr, flush=True)

    def loop_argv(self, workload: str) -> list[str]:
        n = self.args.n_getpid if workload == GETPID else self.args.iterations
        g = ["-g"] if workload == GETPID else []
        return [str(self.exe), *g, str(n), str(self.out)]

    def _sample(self, design: str, rnd: int, rep: int, mode: str, workload: str,
                before: tuple[float, int | None]) -> Sample:
        wall, cpu = read_loop_ns(self.out)
        n = self.args.n_getpid if workload == GETPID else self.args.iterations
        s = Sample(design=design, round=rnd, rep=rep, mode=mode, workload=workload,
                   ns_per_iter=(wall if self.args.wall else cpu) / n, loop_wall_ns=wall,
                   loop_cpu_ns=cpu, loadavg=before[0], foreign_bpf=before[1])
        self.samples.append(s)
        return s

    def conditions(self, agent: Agent | None = None) -> tuple[float, int | None]:
        """(1-minute load average, tracing BPF programs loaded by others) now."""
        ids = tracing_program_ids()
        own = own_program_ids(agent.proc.pid) if agent is not None else set()
        return os.getloadavg()[0], None if ids is None else len(ids - own)

    def untraced(self, rnd: int) -> None:
        for rep in range(self.args.repeat):
            for workload in (OPEN, GETPID):
                before = self.conditions()
                self.out.unlink(missing_ok=True)
                subprocess.run(self.loop_argv(workload), check=True)
                s = self._sample("", rnd, rep, UNTRACED, workload, before)
                self.log(f"  round {rnd}: {'untraced ' + workload:<28} {s.ns_per_iter:8.1f} "
                         f"ns/iter  load {before[0]:.2f}  others' tracing BPF {before[1]}")

    def sensor(self, design: str, rnd: int) -> None:
        tree = Path(self.trees[design]["path"])
        agent = Agent(tree, self.args.ringbuf_pages, self.tmp, design)
        t = Timing(design=design, round=rnd, spawn_s=agent.spawn_s,
                   import_s=float(agent.ready["import_s"]),
                   load_s=float(agent.ready["load_s"]))
        try:
            modes = list(SENSOR_MODES)
            k = rnd % len(modes)
            for rep in range(self.args.repeat):
                for mode in modes[k:] + modes[:k]:
                    self.sensor_run(agent, design, rnd, rep, mode)
            t.close_s, t.exit_s = agent.close()
        except BaseException:
            agent.kill()
            raise
        t.pins_removed = self.check_pins(f"the {design}", "its collector closed")
        t.run_true_s, t.run_true_warm_s = self.run_true(tree, design)
        t.pins_removed += self.check_pins(f"the {design}", "`agentwatch run -- true`")
        self.timings.append(t)
        self.log(f"  round {rnd}: {design} start {t.spawn_s:.2f} s (load {t.load_s:.2f}), "
                 f"close {t.close_s:.2f} s, `agentwatch run -- true` {t.run_true_s:.2f} s, "
                 f"again {t.run_true_warm_s:.2f} s")

    def sensor_run(self, agent: Agent, design: str, rnd: int, rep: int, mode: str) -> None:
        workload, cmd = SENSOR_MODES[mode]
        before = self.conditions(agent)
        self.out.unlink(missing_ok=True)
        reply = agent.command(cmd, self.loop_argv(workload))
        if reply["exit"] != 0:
            raise BenchError(f"openloop exited {reply['exit']} ({design}, {mode})")
        s = self._sample(design, rnd, rep, mode, workload, before)
        s.events, s.opens, s.lost = reply["events"], reply["opens"], reply["lost"]
        s.lost_by_cause = dict(reply["lost_by_cause"])
        s.agent_cpu_s = float(reply["cpu_s"])
        self.log(f"  round {rnd}: {design + ' ' + mode:<28} {s.ns_per_iter:8.1f} ns/iter  "
                 f"events {s.events} opens {s.opens} lost {s.lost}  load {before[0]:.2f}  "
                 f"others' tracing BPF {before[1]}")

    def check_pins(self, design: str, after: str) -> int:
        """Nothing of a stopped design may stay in the kernel: the runs after it would pay
        for it. Returns how many pins were removed (--remove-pins), else stops the bench."""
        pin_dir = Path(self.args.pin_dir)
        left = pins_left(pin_dir)
        if not left:
            return 0
        if not self.args.remove_pins:
            raise BenchError(f"{design} agentwatch left {len(left)} pins under {pin_dir} "
                             f"after {after} (e.g. {left[0]}): every later run would pay "
                             "for them; --remove-pins to unpin them after each stop")
        return remove_pins(pin_dir)

    def run_true(self, tree: Path, design: str) -> tuple[float, float]:
        """`agentwatch run -- true`, twice: cold, then warm. A design that pins its probes
        pins them in a root of the bench's own (removed after), so that the second run
        re-uses what the first pinned, as a user's second run does; the old design pins
        nothing and compiles both times."""
        pin_root = Path(f"/sys/fs/bpf/aw-bench-{os.getpid()}-{design}")
        env = {**os.environ, "PYTHONPATH": str(tree), "AGENTWATCH_PIN_ROOT": str(pin_root),
               "AGENTWATCH_RUN_DIR": str(self.tmp / f"run-{design}")}
        walls = []
        try:
            for _ in range(2):
                t0 = time.perf_counter()
                proc = subprocess.run([sys.executable, "-P", "-c", RUN_TRUE, "run", "--",
                                       "true"], env=env, cwd=str(self.tmp),
                                      capture_output=True, text=True, timeout=REPLY_TIMEOUT_S)
                walls.append(time.perf_counter() - t0)
                if proc.returncode != 0:
                    raise BenchError(f"`agentwatch run -- true` of the {design} design exited "
                                     f"{proc.returncode}: {proc.stderr.strip()[-2000:]}")
        finally:
            if pin_root.exists():
                remove_pins(pin_root)
        return walls[0], walls[1]

    def floor(self, rnd: int) -> None:
        """What any tracer of every syscall pays at the least: an empty BPF program on each
        of raw_syscalls sys_enter and sys_exit (the new design's attachment), no map."""
        from bcc import BPF

        from probes import kernel

        kernel.prepare()  # BCC's kernel headers, as the product's loader finds them
        bpf = BPF(text=FLOOR_PROGRAM)
        try:
            for workload in (OPEN, GETPID):
                before = self.conditions()
                self.out.unlink(missing_ok=True)
                subprocess.run(self.loop_argv(workload), check=True)
                s = self._sample(FLOOR, rnd, 0, FLOOR, workload, before)
                self.log(f"  round {rnd}: {'floor ' + workload:<28} {s.ns_per_iter:8.1f} "
                         "ns/iter")
        finally:
            bpf.cleanup()

    def rounds(self) -> None:
        if pins_left(Path(self.args.pin_dir)):  # another agentwatch's: it would tax every run
            self.check_pins("an earlier", "its stop, before this bench started")
        for rnd in range(self.args.rounds):
            self.untraced(rnd)
            order = DESIGNS if rnd % 2 == 0 else DESIGNS[::-1]
            for design in order:
                self.sensor(design, rnd)
            self.floor(rnd)
            self.untraced(rnd)


def measure(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any], Run]:
    with tempfile.TemporaryDirectory(prefix="aw-sensors-") as tmpdir:
        tmp = Path(tmpdir)
        trees = {OLD: export_ref(args.old_ref, tmp / "old"),
                 NEW: export_ref(args.new_ref, tmp / "new") if args.new_ref
                 else working_tree()}
        exe = compile_openloop(tmp)
        run = Run(args, trees, exe, tmp)
        for workload in (OPEN, GETPID):  # warm-up, not recorded
            subprocess.run(run.loop_argv(workload), check=True)
        run.rounds()
    meta: dict[str, Any] = {
        "benchmark": "sensors", "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "rounds": args.rounds, "repeat": args.repeat, "n_open": args.iterations,
        "n_getpid": args.n_getpid,
        "ringbuf_pages": args.ringbuf_pages, "threshold": args.threshold,
        "cpus": os.cpu_count(), "kernel": platform.release(),
        "clock": "elapsed time" if args.wall else "thread CPU time",
        "old": {k: v for k, v in trees[OLD].items() if k != "path"},
        "new": {k: v for k, v in trees[NEW].items() if k != "path"},
        "note": args.note,
    }
    return summarize(run.samples, run.timings), meta, run


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        print("bench: must run as root (loads BPF programs)", file=sys.stderr)
        return EXIT_USAGE
    try:
        summary, meta, run = measure(args)
    except (BenchError, OSError, subprocess.SubprocessError, ValueError) as e:
        print(f"bench: {e}", file=sys.stderr)
        return EXIT_USAGE
    table = render_markdown(summary, meta, args.threshold)
    print(table)
    if args.json:
        Path(args.json).write_text(json.dumps(
            {**meta, **summary, "samples": [asdict(s) for s in run.samples],
             "timings_per_round": [asdict(t) for t in run.timings]}, indent=1) + "\n")
    if args.write_doc:
        doc = Path(args.write_doc)
        try:
            doc.write_text(rewrite_section(doc.read_text(), table))
        except (OSError, ValueError) as e:
            print(f"bench: --write-doc {doc}: {e}", file=sys.stderr)
            return EXIT_USAGE
    met = verdicts(summary, args.threshold)
    return 1 if args.strict and not all(met.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
