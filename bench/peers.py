"""Peer tracers run on the same workloads as agentwatch, and the parsing of their output.

A peer is started for one workload process (its pid, while the workload waits on stdin
for a go byte), writes one line per event to a file, and is stopped with SIGINT once its
output has stopped growing. What is counted from it: the lines that are the workload's
events, the losses it reports itself, its CPU time from attach to stop (its start-up,
a BCC compile for the Python tools, is not in it) and its resident memory at the end.

Peers (each is tried; one that cannot run here is reported with its own error):
  opensnoop        libbpf-tools (C, perf buffer, tracepoints sys_{enter,exit}_openat)
  opensnoop-bpfcc  bpfcc-tools (Python, perf buffer; needs fentry or kprobes)
  trace-bpfcc      bpfcc-tools' `trace` on tracepoint syscalls:sys_exit_openat (Python,
                   perf buffer): the bpfcc-tools tool of opensnoop-bpfcc's design that runs
                   on a host with neither fentry nor kprobes
  bpftrace         a one-liner on tracepoint syscalls:sys_enter_openat (path read with
                   str()), output to a file with -o
  execsnoop        libbpf-tools (tracepoints sys_{enter,exit}_execve)
  execsnoop-bpfcc  bpfcc-tools (Python; needs kprobes)
  bpftrace-exec    sched:sched_process_exec and sched:sched_process_exit, one line each
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

LOST_PATTERNS = (
    rb"Lost (\d+) events",              # libbpf-tools (stderr), bpftrace
    rb"Possibly lost (\d+) samples",    # BCC's Python perf buffer (stderr)
)


class PeerError(RuntimeError):
    """The peer did not start or attach; the message says why, in one line."""


def count_lost(text: bytes) -> int:
    """Sum of the losses a peer reported, in any of the known phrasings."""
    return sum(int(m) for pat in LOST_PATTERNS for m in re.findall(pat, text))


def last_line(text: bytes) -> str:
    lines = [ln for ln in text.decode(errors="replace").splitlines() if ln.strip()]
    return lines[-1].strip() if lines else "no message"


def count_matching(path: Path, match: Callable[[bytes], bool]) -> tuple[int, int]:
    """(lines, matching lines) of a peer's output file; loss notices are not lines."""
    lines = matched = 0
    with open(path, "rb") as f:
        for line in f:
            if not line.strip() or re.match(rb"\s*(Lost|Possibly lost) \d+", line):
                continue
            lines += 1
            if match(line):
                matched += 1
    return lines, matched


def exec_exit_pairs(path: Path) -> tuple[int, int]:
    """bpftrace-exec's output ("exec PID" / "exit PID" lines): (execs, execs whose
    process's exit was also seen)."""
    execs: set[bytes] = set()
    exits: set[bytes] = set()
    with open(path, "rb") as f:
        for line in f:
            parts = line.split()
            if len(parts) == 2 and parts[0] == b"exec":
                execs.add(parts[1])
            elif len(parts) == 2 and parts[0] == b"exit":
                exits.add(parts[1])
    return len(execs), len(execs & exits)


@dataclass
class Peer:
    name: str
    argv: Callable[[int, Path], list[str]]   # (workload pid, output file) -> command
    match: Callable[[bytes], bool]           # an output line that is a workload event
    writes_file: bool = False                # it writes the output file itself (-o)

    def available(self) -> bool:
        return shutil.which(self.argv(0, Path("x"))[0]) is not None


def _bpftrace(prog: str) -> Callable[[int, Path], list[str]]:
    return lambda pid, out: ["bpftrace", "-o", str(out), "-e", prog.replace("PID", str(pid))]


OPEN_PEERS = {
    "opensnoop": Peer("opensnoop", lambda pid, _o: ["opensnoop", "-p", str(pid)],
                      lambda ln: ln.rstrip().endswith(b" /dev/null")),
    "opensnoop-bpfcc": Peer("opensnoop-bpfcc",
                            lambda pid, _o: ["opensnoop-bpfcc", "-p", str(pid)],
                            lambda ln: ln.rstrip().endswith(b" /dev/null")),
    "trace-bpfcc": Peer("trace-bpfcc",
                        lambda pid, _o: ["trace-bpfcc", "-p", str(pid),
                                         't:syscalls:sys_exit_openat "%d", args->ret'],
                        lambda ln: b"sys_exit_openat" in ln),
    "bpftrace": Peer("bpftrace", _bpftrace(
        'tracepoint:syscalls:sys_enter_openat /pid == PID/ '
        '{ printf("%d %s\\n", tid, str(args->filename)); }'),
        lambda ln: ln.rstrip().endswith(b" /dev/null"), writes_file=True),
}

EXEC_PEERS = {
    "execsnoop": Peer("execsnoop", lambda _p, _o: ["execsnoop"],
                      lambda ln: b"execloop -" in ln),
    "execsnoop-bpfcc": Peer("execsnoop-bpfcc", lambda _p, _o: ["execsnoop-bpfcc"],
                            lambda ln: b"execloop -" in ln),
    "bpftrace-exec": Peer("bpftrace-exec", _bpftrace(
        'tracepoint:sched:sched_process_exec /comm == "execloop"/ '
        '{ printf("exec %d\\n", pid); } '
        'tracepoint:sched:sched_process_exit /comm == "execloop" && pid == tid/ '
        '{ printf("exit %d\\n", pid); }'),
        lambda ln: ln.startswith(b"exec "), writes_file=True),
}


@dataclass
class PeerResult:
    lines: int
    matched: int
    lost: int
    cpu_s: float          # from attach to stop
    rss: int              # bytes, at stop
    attach_s: float       # start to attached
    out: Path


def _perf_fds(pid: int) -> int:
    try:
        return sum(1 for p in Path(f"/proc/{pid}/fd").iterdir()
                   if os.readlink(p) == "anon_inode:[perf_event]")
    except OSError:
        return 0


def _cpu_rss(pid: int) -> tuple[float, int]:
    """(user+system CPU seconds, resident bytes) of a live process, from /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2:].split()
        tick = os.sysconf("SC_CLK_TCK")
        cpu = (int(fields[11]) + int(fields[12])) / tick
        rss = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
        return cpu, rss
    except (OSError, ValueError, IndexError):
        return 0.0, 0


class PeerRun:
    """One peer process traced over one workload process."""

    def __init__(self, peer: Peer, pid: int, tmp: Path, tag: str) -> None:
        self.peer = peer
        self.out = tmp / f"{peer.name}-{tag}.out"
        self.err = tmp / f"{peer.name}-{tag}.err"
        self.out.unlink(missing_ok=True)
        env = {**os.environ, "BPFTRACE_STRLEN": "64"}
        with open(self.err, "wb") as err:
            if peer.writes_file:
                self.proc = subprocess.Popen(peer.argv(pid, self.out), stdout=err, stderr=err,
                                             env=env)
            else:
                with open(self.out, "wb") as out:
                    self.proc = subprocess.Popen(peer.argv(pid, self.out), stdout=out,
                                                 stderr=err, env=env)
        self.t0 = time.monotonic()
        self.attach_s = 0.0
        self.cpu0 = 0.0
        self.rss0 = 0  # resident bytes once attached (idle)

    def wait_attached(self, timeout: float = 60.0) -> None:
        """Attached: its tracepoint and per-CPU perf buffers are open (perf_event fds,
        one more than CPUs at least) and their number has stopped growing."""
        need = (os.cpu_count() or 1) + 1
        deadline = time.monotonic() + timeout
        seen, stable = -1, 0
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise PeerError(f"{self.peer.name} exited {self.proc.returncode} before "
                                f"attaching: {last_line(self.err.read_bytes())}")
            n = _perf_fds(self.proc.pid)
            stable = stable + 1 if n == seen and n >= need else 0
            seen = n
            if stable >= 3:
                self.attach_s = time.monotonic() - self.t0
                self.cpu0, self.rss0 = _cpu_rss(self.proc.pid)
                return
            time.sleep(0.05)
        self.kill()
        raise PeerError(f"{self.peer.name} did not attach within {timeout:.0f} s")

    def finish(self, settle: float = 0.3, timeout: float = 60.0) -> PeerResult:
        """Wait until its output stops growing (it has caught up), then stop it."""
        size, still = -1, 0
        deadline = time.monotonic() + timeout
        while still < 3 and time.monotonic() < deadline and self.proc.poll() is None:
            time.sleep(settle / 3)
            try:
                now = self.out.stat().st_size
            except OSError:
                now = 0
            still = still + 1 if now == size else 0
            size = now
        cpu1, rss = _cpu_rss(self.proc.pid)
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.kill()
        if not self.out.exists():
            self.out.write_bytes(b"")
        lines, matched = count_matching(self.out, self.peer.match)
        lost = count_lost(self.err.read_bytes()) + count_lost(self.out.read_bytes())
        return PeerResult(lines=lines, matched=matched, lost=lost,
                          cpu_s=max(0.0, cpu1 - self.cpu0), rss=rss,
                          attach_s=self.attach_s, out=self.out)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def attach(peer: Peer, pid: int, tmp: Path, tag: str, tries: int = 2) -> PeerRun:
    """A peer attached to `pid` (waiting for its go byte), started again once if it failed
    to start: on a shared machine a BCC compile can fail for a passing reason (another
    tool rebuilding the kernel headers it reads). Its last error otherwise."""
    for attempt in range(tries):
        run = PeerRun(peer, pid, tmp, tag)
        try:
            run.wait_attached()
            return run
        except PeerError:
            run.kill()
            if attempt == tries - 1:
                raise
            time.sleep(1.0)
    raise AssertionError("unreachable")
