"""S5, agent workloads: an agent's heaviest ordinary work, each in a bubblewrap sandbox,
untraced, under the real default daemon and under the peers, in one run.

    .venv/bin/python bench/workloads.py [--quick] [--json FILE] [--only rg,make]
        [--daemon-args ARGS ...] [--no-peer] [--rounds N]          (make bench-workloads)

Workloads (inputs generated locally by bench/workload_gen.py; no network):
  rg    `rg -c needle /usr/lib /usr/share` (ripgrep; Claude Code's search)
  make  `make -j2` of a generated C project of 200 .c files and 20 headers
  pip   `python3 -m venv`, `pip install --no-index --find-links` of 20 local wheels, then
        `python -m compileall` of the standard library (PYTHONPYCACHEPREFIX: /usr is
        read-only in the sandbox)
  git   `git clone --no-hardlinks` of a generated local repository of 5,000 files

Per workload: one warm-up run (the page cache), then untraced rounds, then for each
agentwatch variant a fresh `agentwatch daemon` (built-in defaults, monitor mode, its own
log directory; `--daemon-args` adds a variant with more options, e.g. "--events-level
all") over the rounds, then each peer over the rounds, then untraced rounds again. The
ratio is the median traced elapsed over the median of all untraced ones.

From the daemon, per round: the kernel's loss counters and the events delivered (its
status, before and after, over the control socket), events summarised (the `count` of
`summary` events in its events log, when the sensor sends them), its CPU (utime+stime of
/proc/PID/stat) from the workload's start until it has caught up (its events count has
stopped moving) over that window, and at the end its VmRSS and VmHWM.

Peers trace the sandbox's whole process tree through a cgroup v2 made for the run (every
workload run is started in it): trace-bpfcc (-c) and bpftrace (cgroupid()) on the openat
tracepoints; opensnoop-bpfcc (--cgroupmap) is tried and reported with its error when it
cannot run. libbpf-tools' opensnoop is not run: it filters one pid (-p) or a comm
substring (-n), not a process tree.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import workload_gen as gen
from bench.harness import Daemon, sandbox
from bench.peers import Peer, PeerError, PeerRun, attach
from bench.workloads_report import table

RG_PATTERN = "needle"
NAMES = ("rg", "make", "pip", "git")
SANDBOX_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


class BenchError(RuntimeError):
    pass


# ------------------------------------------------------------------------------ workloads
@dataclass
class Workload:
    name: str
    title: str
    argv: list[str]                      # inside the sandbox
    binds: tuple[str, ...]               # writable
    reset: Callable[[], None]            # before each run, from outside
    ok: tuple[int, ...] = (0,)
    inputs: dict[str, Any] | None = None
    cwd: str | None = None               # the workspace (default: its first bind)


def python3() -> str:
    p = shutil.which("python3", path="/usr/bin:/bin")
    if p is None:
        raise BenchError("no /usr/bin/python3 (python3-venv: make setup installs it)")
    return p


def make_workloads(base: Path, names: list[str]) -> list[Workload]:
    """Generate the inputs under BASE (read-only in the sandbox) and BASE/work (writable)."""
    work = base / "work"
    work.mkdir(exist_ok=True)
    out: list[Workload] = []
    if "rg" in names:
        if shutil.which("rg") is None:
            raise BenchError("no rg (ripgrep): make bench-setup installs it")
        out.append(Workload("rg", f"rg -c {RG_PATTERN} /usr/lib /usr/share",
                            ["rg", "-c", RG_PATTERN, "/usr/lib", "/usr/share"], (),
                            lambda: None, ok=(0, 1), inputs={"roots": ["/usr/lib", "/usr/share"]}))
    if "make" in names:
        proj = work / "cproj"
        counts = gen.c_project(proj)
        out.append(Workload("make", f"make -j2 of {counts['c_files']} .c files, "
                            f"{counts['headers']} headers", ["make", "-s", "-j2", "-C", str(proj)],
                            (str(proj),), lambda: gen.c_clean(proj), inputs=counts))
    if "pip" in names:
        wheels = base / "wheels"
        made = gen.wheels(wheels)
        py = python3()
        stdlib = subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_path("
                                 "'stdlib'))"], capture_output=True, text=True,
                                check=True).stdout.strip()
        pipdir = work / "pip"
        venv = pipdir / "venv"
        script = base / "pip.sh"
        script.write_text(
            "set -e\n"
            f'{py} -m venv "{venv}"\n'
            f'"{venv}/bin/pip" install -q --no-index --no-cache-dir '
            f'--disable-pip-version-check --find-links "{wheels}" '
            + " ".join(gen.wheel_names(len(made))) + "\n"
            f'PYTHONPYCACHEPREFIX="{pipdir}/pycache" "{venv}/bin/python" -m compileall -q '
            f'"{stdlib}" >/dev/null\n')

        def reset_pip() -> None:
            shutil.rmtree(pipdir, ignore_errors=True)
            pipdir.mkdir()
        reset_pip()
        out.append(Workload("pip", f"venv, pip install of {len(made)} local wheels, "
                            f"compileall of {stdlib}", ["sh", str(script)], (str(pipdir),),
                            reset_pip, inputs={"wheels": len(made), "stdlib": stdlib}))
    if "git" in names:
        repo = base / "repo"
        n = gen.git_repo(repo)
        dest = work / "git"

        def reset_git() -> None:
            shutil.rmtree(dest, ignore_errors=True)
            dest.mkdir()
        reset_git()
        out.append(Workload("git", f"git clone --no-hardlinks of {n:,} files",
                            ["git", "clone", "-q", "--no-hardlinks", str(repo),
                             str(dest / "clone")], (str(dest),), reset_git,
                            inputs={"files": n}))
    return out


# ------------------------------------------------------------------------------ cgroup
def cgroup2_root() -> Path | None:
    for line in Path("/proc/self/mounts").read_text().splitlines():
        parts = line.split()
        if len(parts) > 2 and parts[2] == "cgroup2":
            return Path(parts[1])
    return None


class Runner:
    """Runs a workload in its sandbox, in the run's cgroup v2 (when there is one)."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.home = base / "home"
        self.home.mkdir(exist_ok=True)
        root = cgroup2_root()
        self.cgroup: Path | None = None
        if root is not None:
            cg = root / f"aw-bench-{os.getpid()}"
            try:
                cg.mkdir(exist_ok=True)
                self.cgroup = cg
            except OSError as e:
                log(f"no cgroup for the peers ({cg}: {e.strerror})")

        # opensnoop-bpfcc's --cgroupmap: a pinned hash of cgroup ids (BCC creates it at
        # that path when missing, and leaves it there); ours is made here, holding the
        # run's cgroup, and removed by close()
        self.cgroupmap = Path(f"/sys/fs/bpf/aw_bench_cgroupmap_{os.getpid()}")
        if self.cgroup is not None and shutil.which("bpftool"):
            key = self.cgroup.stat().st_ino.to_bytes(8, "little")
            made = subprocess.run(["bpftool", "map", "create", str(self.cgroupmap), "type",
                                   "hash", "key", "8", "value", "8", "entries", "1024",
                                   "name", "cgroupset"], capture_output=True)
            if made.returncode == 0:
                subprocess.run(["bpftool", "map", "update", "pinned", str(self.cgroupmap),
                                "key", *map(str, key), "value", *["0"] * 8],
                               capture_output=True)

    def _enter(self) -> None:  # in the child, before exec
        if self.cgroup is not None:
            (self.cgroup / "cgroup.procs").write_text("0")

    def run(self, wl: Workload) -> float:
        wl.reset()
        argv = sandbox(self.base, *wl.argv, binds=wl.binds)
        # a home of its own, read-only in the sandbox; the workspace is not under it
        env = {"PATH": SANDBOX_PATH, "HOME": str(self.home), "LANG": "C.UTF-8"}
        # started in its workspace, as an agent's tools are (the detectors judge paths
        # against the session's workspace: its cwd)
        cwd = wl.cwd or (wl.binds[0] if wl.binds else str(self.base / "work"))
        t0 = time.monotonic()
        p = subprocess.run(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE,
                           preexec_fn=self._enter)  # no threads here
        took = time.monotonic() - t0
        if p.returncode not in wl.ok:
            raise BenchError(f"{wl.name} exited {p.returncode}: "
                             f"{p.stderr.decode(errors='replace')[-800:]}")
        return took

    def close(self) -> None:
        self.cgroupmap.unlink(missing_ok=True)
        if self.cgroup is not None:
            with contextlib.suppress(OSError):
                self.cgroup.rmdir()


# ------------------------------------------------------------------------------ daemon
def proc_cpu(pid: int) -> float:
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_mem(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) in bytes."""
    got = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        k, _, v = line.partition(":")
        if k in ("VmRSS", "VmHWM"):
            got[k] = int(v.split()[0]) * 1024
    return got.get("VmRSS", 0), got.get("VmHWM", 0)


def status(d: Daemon) -> dict[str, Any]:
    """The daemon's status over its control socket (no CLI start-up per poll)."""
    from service import control

    for path in sorted((d.tmp / "run").glob("control-*.sock")):
        try:
            reply = control.request(path, {"op": "status"}, timeout=30)
        except control.ControlError as e:
            raise BenchError(f"status: {e}") from None
        if reply and reply.get("ok", True) and "events" in reply:
            return reply
    raise BenchError(f"the daemon does not answer status: {d.stderr()[-1000:]}")


def delivered(st: dict[str, Any]) -> Counter[str]:
    return Counter({k: int(v) for k, v in st["events"].items()
                    if k not in ("alert", "summary")})


class SummaryScan:
    """Sums the `count` of `summary` events in a daemon's events log as it grows,
    rotated files included (by inode: a rotation renames, the bytes already read stay
    read)."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.done: dict[int, int] = {}
        self.total = 0
        self.events = 0

    def scan(self) -> int:
        for path in sorted(self.log_dir.glob("events.jsonl*")):
            try:
                with open(path, "rb") as f:
                    ino = os.fstat(f.fileno()).st_ino
                    f.seek(self.done.get(ino, 0))
                    data = f.read()
            except OSError:
                continue
            end = data.rfind(b"\n") + 1  # a line being written is read next time
            self.done[ino] = self.done.get(ino, 0) + end
            for line in data[:end].splitlines():
                if b'"summary"' not in line:
                    continue
                try:
                    ev = json.loads(line)
                except ValueError:
                    continue
                if ev.get("kind") == "summary":
                    self.events += 1
                    self.total += int(ev.get("count") or 0)
        return self.total


def caught_up(d: Daemon, settle: float, timeout: float = 120) -> tuple[dict[str, Any], float]:
    """Poll its status until its event count stops moving; (status, monotonic time of
    the last change)."""
    st = status(d)
    n, last, still = sum(st["events"].values()), time.monotonic(), 0
    deadline = time.monotonic() + timeout
    while still < 3 and time.monotonic() < deadline:
        time.sleep(settle)
        st = status(d)
        m = sum(st["events"].values())
        if m != n:
            n, last, still = m, time.monotonic(), 0
        else:
            still += 1
    return st, last


def run_daemon(runner: Runner, wl: Workload, base: Path, label: str, args: list[str],
               rounds: int, idx: int = 0) -> dict[str, Any]:
    dtmp = base / f"daemon-{wl.name}-{idx}"
    dtmp.mkdir()
    config = dtmp / "config.toml"
    config.write_text("# built-in defaults\n")
    d = Daemon(dtmp, config, args=tuple(args))
    out: dict[str, Any] = {"args": args, "samples": []}
    try:
        d.start()
        out["ready_s"] = d.ready_after
        scan = SummaryScan(d.log)
        st0, _ = caught_up(d, 0.2)
        for _ in range(rounds):
            summ0 = scan.scan()
            cpu0 = proc_cpu(d.pid)
            t0 = time.monotonic()
            elapsed = runner.run(wl)
            st1, last = caught_up(d, 0.2)
            cpu1 = proc_cpu(d.pid)
            lost = sum(st1["lost"].values()) - sum(st0["lost"].values())
            kinds = delivered(st1) - delivered(st0)
            out["samples"].append({
                "elapsed": elapsed, "window": max(last - t0, elapsed), "cpu_s": cpu1 - cpu0,
                "lost": lost, "lost_by_cause": dict(Counter(st1["lost"]) - Counter(st0["lost"])),
                "delivered": sum(kinds.values()), "by_kind": dict(kinds),
                "summarised": scan.scan() - summ0, "ring_fill": st1.get("ring_fill")})
            st0 = st1
        out["rss"], out["hwm"] = proc_mem(d.pid)
        out["summary_events"] = scan.events
        alerts = d.alerts()
        out["alerts"] = dict(Counter(f"{a['detector']}:{a.get('severity')}" for a in alerts))
        out["alert_examples"] = {a["detector"]: a.get("summary") for a in reversed(alerts)}
    except (BenchError, AssertionError, OSError) as e:
        out["error"] = str(e).splitlines()[0] if str(e) else repr(e)
        log(f"{label} on {wl.name}: {out['error']}")
    finally:
        code = d.stop()
        out["exit"] = code
    return out


# ------------------------------------------------------------------------------ peers
def tree_peers(cgroup: Path | None, cgroupmap: Path | None = None) -> dict[str, Peer]:
    """The open tracers that can follow a process tree, filtered on the run's cgroup
    (opensnoop-bpfcc: through CGROUPMAP, a pinned map holding its id)."""
    cg = str(cgroup) if cgroup else "/nonexistent"
    cmap = str(cgroupmap) if cgroupmap else "/sys/fs/bpf/aw_bench_cgroupmap"
    return {
        "opensnoop-bpfcc": Peer("opensnoop-bpfcc", lambda _p, _o: [
            "opensnoop-bpfcc", "--cgroupmap", cmap],
            lambda ln: ln[:1].isdigit()),
        "trace-bpfcc": Peer("trace-bpfcc", lambda _p, _o: [
            "trace-bpfcc", "-c", cg, 't:syscalls:sys_exit_openat "%d", args->ret'],
            lambda ln: b"sys_exit_openat" in ln),
        "bpftrace": Peer("bpftrace", lambda _p, out: [
            "bpftrace", "-o", str(out), "-e",
            f'tracepoint:syscalls:sys_enter_openat /cgroup == cgroupid("{cg}")/ '
            '{ printf("open %d %s\\n", tid, str(args->filename)); }'],
            lambda ln: ln.startswith(b"open "), writes_file=True),
    }


def run_peer(runner: Runner, wl: Workload, base: Path, peer: Peer,
             rounds: int) -> dict[str, Any]:
    out: dict[str, Any] = {"samples": []}
    try:
        for r in range(rounds):
            pr: PeerRun = attach(peer, 0, base, f"{wl.name}-{r}")
            try:
                elapsed = runner.run(wl)
            except BaseException:
                pr.kill()
                raise
            res = pr.finish()
            out["samples"].append({"elapsed": elapsed, "lines": res.matched,
                                   "all_lines": res.lines, "lost": res.lost,
                                   "cpu_s": res.cpu_s, "attach_s": res.attach_s})
            out["rss"] = max(out.get("rss", 0), res.rss)
            res.out.unlink(missing_ok=True)
    except (PeerError, BenchError, OSError) as e:
        out["error"] = str(e)
        log(f"{peer.name} on {wl.name}: did not run: {e}")
    return out


# ------------------------------------------------------------------------------ main
def measure(args: argparse.Namespace, base: Path) -> dict[str, Any]:
    names = [n for n in NAMES if n in args.only]
    log(f"generating the inputs in {base}")
    wls = make_workloads(base, names)
    runner = Runner(base)
    try:
        peers = {} if args.no_peer else tree_peers(runner.cgroup, runner.cgroupmap)
        peers = {k: p for k, p in peers.items() if p.available()}
        if runner.cgroup is None:
            peers = {}
        if peers:
            from probes import kernel

            kernel.prepare()  # BCC's kernel headers for the bpfcc tools, as bench/open_close.py
        variants = [("agentwatch", [])] + [
            (f"agentwatch {a}", shlex.split(a)) for a in args.daemon_args]
        res: dict[str, Any] = {"variants": [v for v, _ in variants], "peers": list(peers),
                               "workloads": {}, "peer_notes": {
                                   "opensnoop": "not run: filters one pid (-p) or a comm "
                                                "substring (-n), not a process tree",
                                   "opensnoop-bpfcc": "needs fentry or kprobes; here BCC says "
                                                      "'Need super-user privileges' when the "
                                                      "kernel refuses its fentry program "
                                                      "(docs/performance.md, Peers)"}}
        for wl in wls:
            untraced: list[float] = []
            tracers: dict[str, Any] = {}
            res["workloads"][wl.name] = entry = {"title": wl.title, "inputs": wl.inputs,
                                                 "untraced": untraced, "tracers": tracers}
            try:  # a workload that fails untraced is reported, the others still run
                log(f"{wl.name}: {wl.title}: warm-up, {args.rounds} untraced")
                runner.run(wl)
                untraced += [runner.run(wl) for _ in range(args.rounds)]
                for i, (label, dargs) in enumerate(variants):
                    log(f"{wl.name}: {label}, {args.rounds} rounds")
                    tracers[label] = run_daemon(runner, wl, base, label, dargs, args.rounds,
                                                i)
                for name, peer in peers.items():
                    log(f"{wl.name}: {name}, {args.peer_rounds} rounds")
                    tracers[name] = run_peer(runner, wl, base, peer, args.peer_rounds)
                log(f"{wl.name}: {args.rounds} untraced")
                untraced += [runner.run(wl) for _ in range(args.rounds)]
            except BenchError as e:
                entry["error"] = str(e)
                log(f"{wl.name}: {e}")
    finally:
        runner.close()
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="one round of each (a check)")
    ap.add_argument("--json", metavar="FILE", help="also write every sample as JSON")
    ap.add_argument("--only", default=",".join(NAMES),
                    help=f"comma-separated workloads (default {','.join(NAMES)})")
    ap.add_argument("--rounds", type=int, help="rounds per mode (default 3, quick 1)")
    ap.add_argument("--daemon-args", action="append", default=[], metavar="ARGS",
                    help="one more agentwatch column: the daemon with these options "
                         "(e.g. \"--events-level all\"); repeatable")
    ap.add_argument("--no-peer", action="store_true", help="agentwatch alone")
    args = ap.parse_args(argv)
    args.only = [x.strip() for x in args.only.split(",") if x.strip()]
    bad = [x for x in args.only if x not in NAMES]
    if bad:
        ap.error(f"unknown workloads {bad}: choose from {', '.join(NAMES)}")
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.peer_rounds = 1 if args.quick else max(1, args.rounds - 1)
    if os.geteuid() != 0:
        print("workloads: must run as root (loads BPF programs)", file=sys.stderr)
        return 2
    before = loadavg()
    t0 = time.monotonic()
    # not under /tmp: the sandboxes have a private /tmp (harness.sandbox binds BASE back)
    with tempfile.TemporaryDirectory(prefix="aw-s5-", dir="/var/tmp") as tmpdir:
        try:
            res = measure(args, Path(tmpdir))
        except (BenchError, subprocess.CalledProcessError) as e:
            print(f"workloads: {e}", file=sys.stderr)
            return 2
    res["meta"] = {"date": time.strftime("%Y-%m-%d %H:%M %Z"), "cpus": os.cpu_count(),
                   "kernel": platform.release(), "quick": args.quick,
                   "rounds": args.rounds, "peer_rounds": args.peer_rounds,
                   "elapsed_s": time.monotonic() - t0, "loadavg_before": before,
                   "loadavg_after": loadavg()}
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1, default=str))
    print()
    print(table(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
