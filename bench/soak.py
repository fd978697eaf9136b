#!/usr/bin/env python3
"""soak: floods, benign work and escapes in bubblewrap sandboxes under the real daemon.

    make soak                      # about 3 minutes
    SOAK_SECONDS=600 make soak     # longer

Runs `agentwatch daemon` in enforce mode (its own run, log and state directories; it
adopts only sandboxes started through a bubblewrap named `awbox<pid>`, so no one else's
sandbox on the host is touched) under a supervisor that applies the packaged unit's
Restart= policy, and for SOAK_SECONDS keeps a random mix of jobs running, each in a
sandbox of its own:

- floods: bench/forkflood.c (vfork/fork + _exit as fast as it can) or a Python open()
  loop, a few seconds each;
- benign work in a temp workspace: git init/add/commit, make, tar, python;
- searches: `rg -c needle /usr/lib /usr/share` (ripgrep, an agent's search: S5's rg
  workload, bench/workloads.py), one at a time, over and over;
- escapes: unshare, setns, mount, bpf(), a signal to agentwatch, a decoy file, a runtime
  socket, a reverse shell's dup onto stdout; each must be killed.

Meanwhile processes OUTSIDE every session (one of them running `unshare -U true` in a
loop, which inside a session would be killed) must live to the end.

The summary reports the searches: how many, how long, and the events the kernel lost
while each ran (the daemon's loss counters before and after it; losses are counted per
cause, not per session, so a flood running at the same time adds its own: the searches
that overlapped none are reported apart).

The verdict, printed with a summary, exits 1 on any failure:
- every escape caught: its expected alert seen, its sandbox killed, its marker unwritten;
- every benign job exited 0 and no session of benign work was killed; every search
  exited 0 or 1 (no match) and was not killed;
- no event lost while a search ran that no flood overlapped;
- every loss counted: the `lost` of all event_loss alerts adds up to the daemon's own
  loss total (the kernel's counters by cause plus undecodable records), as it reports
  when it stops;
- no traceback in the daemon's output; the daemon never crashed (no restart); every
  session ended (even one whose end record a flood made the kernel drop);
- no process outside the sessions was signalled: the outsiders are alive, and no kill in
  any alert's `action.pids` names an outsider, the daemon, the soak or pid 1.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.harness import Daemon, Supervisor, sandbox  # noqa: E402
from bench.workloads import RG_PATTERN, BenchError  # noqa: E402
from bench.workloads import status as daemon_status  # noqa: E402

PY = sys.executable
PRELUDE = "import ctypes, os, signal, socket, sys, time\nL = ctypes.CDLL(None, use_errno=True)\n"
ESCAPES: dict[str, tuple[str, str]] = {
    "unshare": ("L.unshare(0x10000000)", "namespace_escape"),
    "setns": ("L.setns(os.open('/proc/self/ns/net', os.O_RDONLY), 0)", "namespace_escape"),
    "mount": ("L.mount(b'none', b'/tmp', b'tmpfs', 0, None)", "mount_escape"),
    "bpf": ("L.syscall(321, 11, ctypes.create_string_buffer(128), 128)", "kernel_tamper"),
    "signal": ("os.kill(AW, signal.SIGTERM)", "monitor_tamper"),
    "canary": ("open(CANARY).read()", "canary_touch"),
    "runtime_socket": ("socket.socket(socket.AF_UNIX).connect(RUNTIME)", "runtime_socket"),
    "reverse_shell": ("srv = socket.socket(); srv.bind(('127.0.0.1', 0)); srv.listen()\n"
                      "c = socket.create_connection(srv.getsockname())\n"
                      "os.dup2(c.fileno(), 1)", "reverse_shell"),
}
BENIGN = """set -e
cd "$1"
git init -q .
echo "hello $2" > a.txt
git add a.txt
git -c user.email=soak@example.invalid -c user.name=soak commit -qm "job $2"
printf 'all:\\n\\t@echo made\\n' > Makefile
make -s >/dev/null
tar czf /tmp/ws.tgz .
tar tzf /tmp/ws.tgz >/dev/null
python3 -c 'import json, hashlib; print(json.dumps({"sha": hashlib.sha256(b"x").hexdigest()}))'
"""
OPEN_FLOOD = """
import os, sys, time
end = time.monotonic() + float(sys.argv[1])
while time.monotonic() < end:
    for _ in range(1000):
        os.close(os.open("/dev/null", os.O_RDONLY))
"""


@dataclass
class Job:
    kind: str          # flood | benign | escape | rg
    name: str          # flood: fork|open; escape: a key of ESCAPES; benign: "work"; rg: "rg"
    token: str         # unique: names its scripts and markers
    pid: int = 0       # the sandbox's launcher, its session's root
    err_offset: int = 0  # the daemon's stderr size when the job started
    started: float = 0.0
    took: float = 0.0
    status: int | None = None
    marker: Path | None = None
    error: str = ""
    lost: dict[str, int] | None = None  # rg: the kernel's losses while it ran, by cause


@dataclass
class Soak:
    tmp: Path
    seconds: float
    rng: random.Random
    daemon: Daemon
    jobs: list[Job] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    n: int = 0

    def token(self, kind: str) -> str:
        with self.lock:
            self.n += 1
            return f"soakjob-{kind}-{self.n}"

    def run(self, job: Job, argv: list[str], cwd: Path | None = None,
            timeout: float = 120, ok: tuple[int, ...] = (0, 137, -9)) -> None:
        job.started = time.monotonic()
        job.err_offset = self.daemon.err.stat().st_size  # its session's line comes after
        proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        job.pid = proc.pid  # the launcher: its session's root
        try:
            _out, err = proc.communicate(timeout=timeout)
            job.status = proc.returncode
            if proc.returncode not in ok:
                job.error = err.decode(errors="replace")[-500:]
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            job.error = "timed out"
        job.took = time.monotonic() - job.started
        with self.lock:
            self.jobs.append(job)

    # ---------------------------------------------------------------- jobs
    def flood(self) -> None:
        name = self.rng.choice(["fork", "open"])
        job = Job("flood", name, self.token("flood"))
        secs = self.rng.uniform(3, 6)
        if name == "fork":
            argv = sandbox(self.tmp, "sh", "-c", f"{self.tmp}/forkflood {secs:.1f} >/dev/null "
                           f"# {job.token}")
        else:
            script = self.tmp / f"{job.token}.py"
            script.write_text(OPEN_FLOOD)
            one = f"{PY} {script} {secs:.1f}"
            argv = sandbox(self.tmp, "sh", "-c", f"{one} & {one}; wait")  # two cores
        self.run(job, argv)

    def benign(self) -> None:
        job = Job("benign", "work", self.token("benign"))
        ws = self.tmp / "ws" / job.token
        ws.mkdir(parents=True)
        script = self.tmp / f"{job.token}.sh"
        script.write_text(BENIGN)
        self.run(job, sandbox(self.tmp, "sh", str(script), str(ws), job.token,
                              binds=(str(ws),)), cwd=ws)

    def rg(self) -> None:
        """A search over /usr/lib and /usr/share (about 120,000 opens in a second or
        two), the kernel's loss counters read before and after it."""
        job = Job("rg", "rg", self.token("rg"))
        try:
            before = daemon_status(self.daemon)["lost"]
        except (BenchError, OSError) as e:
            before, job.error = None, f"no status before the search: {e}"
        self.run(job, sandbox(self.tmp, "rg", "-c", RG_PATTERN, "/usr/lib", "/usr/share"),
                 ok=(0, 1))
        time.sleep(1.0)  # the daemon reads the counters on its poll; let it catch up
        try:
            after = daemon_status(self.daemon)["lost"]
        except (BenchError, OSError) as e:
            after, job.error = None, f"no status after the search: {e}"
        if before is None or after is None:
            return
        job.lost = {k: int(v) - int(before.get(k, 0)) for k, v in after.items()
                    if int(v) - int(before.get(k, 0))}

    def escape(self) -> None:
        name = self.rng.choice(sorted(ESCAPES))
        job = Job("escape", name, self.token(f"escape-{name}"))
        job.marker = self.tmp / "markers" / job.token
        code, _detector = ESCAPES[name]
        script = self.tmp / f"{job.token}.py"
        script.write_text(PRELUDE + f"AW = {self.daemon.pid}\n"
                          f"CANARY = {str(self.tmp / 'canary.txt')!r}\n"
                          f"RUNTIME = {str(self.tmp / 'runtime.sock')!r}\n"
                          + textwrap.dedent(code) +
                          f"\nopen({str(job.marker)!r}, 'w').write('after')\n")
        self.run(job, sandbox(self.tmp, PY, str(script),
                              binds=(str(self.tmp / "markers"),)))


def build_forkflood(tmp: Path) -> Path:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        sys.exit("soak: no C compiler for bench/forkflood.c (make setup installs gcc)")
    out = tmp / "forkflood"
    subprocess.run([cc, "-O2", "-o", str(out), str(REPO / "bench" / "forkflood.c")],
                   check=True)
    return out


def outsiders() -> list[subprocess.Popen[bytes]]:
    """Processes outside every session; one of them does what a session would be killed
    for (a user namespace), over and over."""
    loop = "import subprocess, time\nwhile True:\n" \
           "    subprocess.run(['unshare', '-U', 'true'])\n    time.sleep(1)\n"
    return [subprocess.Popen(["sleep", "100000"]),
            subprocess.Popen([PY, "-c", loop]),
            subprocess.Popen([PY, "-c", "import time\nwhile True: time.sleep(0.05)"])]


def quiet_searches(jobs: list[Job]) -> list[Job]:
    """The searches no flood overlapped (a flood's own losses are counted by the same
    counters, per cause, not per session)."""
    floods = [(j.started, j.started + j.took) for j in jobs if j.kind == "flood"]
    return [j for j in jobs if j.kind == "rg" and
            not any(a < j.started + j.took and j.started < b for a, b in floods)]


def rg_report(jobs: list[Job]) -> str:
    """One line on the searches: how many, how long, the losses while they ran, and
    those of the searches no flood overlapped."""
    rgs = [j for j in jobs if j.kind == "rg"]
    lost = Counter[str]()
    for j in rgs:
        lost.update(j.lost or {})
    quiet = quiet_searches(jobs)
    took = sorted(j.took for j in rgs)
    return (f"  rg jobs: {len(rgs)}"
            + (f", {took[len(took) // 2]:.1f} s each (median)" if took else "")
            + f"; events lost while they ran: {sum(lost.values())} {dict(lost)}; "
            f"in the {len(quiet)} with no flood at the same time: "
            f"{sum(sum((j.lost or {}).values()) for j in quiet)}")


def session_of_job(daemon_err: str, job: Job) -> str | None:
    """The session the daemon started for the job's launcher: the first session line
    naming its pid after the job started (pids are reused: pid_max can be 32768, and a
    fork flood goes through them in seconds). Argv and ancestry cannot tell: they can be
    empty for sessions started during a flood (their exec records were lost)."""
    m = re.search(rf"session (\w+) started \(launcher, pid {job.pid}\)",
                  daemon_err[job.err_offset:])
    return m.group(1) if m else None


def verdict(soak: Soak, alerts: list[dict[str, Any]], daemon_err: str, daemon_out: str,
            outs: list[subprocess.Popen[bytes]], sup: Supervisor,
            stop_code: int | None) -> list[str]:
    failures: list[str] = []
    by_kind = Counter(j.kind for j in soak.jobs)
    for job in soak.jobs:
        session = session_of_job(daemon_err, job)
        if session is None:
            failures.append(f"{job.token}: its sandbox (pid {job.pid}) was never a session")
        mine = [a for a in alerts if a["session"] == session]
        if job.error:
            failures.append(f"{job.token}: {job.error}")
        if job.kind == "escape":
            detector = ESCAPES[job.name][1]
            caught = [a for a in mine if a["detector"] == detector
                      and a["action"].get("taken") == "kill"]
            if job.status not in (137, -9):
                failures.append(f"{job.token}: not killed (exit {job.status})")
            if job.marker is not None and job.marker.exists():
                failures.append(f"{job.token}: ran on after the escape")
            if not caught:
                failures.append(f"{job.token}: no {detector} kill alert in session "
                                f"{session} (pid {job.pid}; got "
                                f"{sorted({a['detector'] for a in mine})})")
        elif job.kind == "rg":
            if job.status not in (0, 1):
                failures.append(f"{job.token}: the search exited {job.status}")
            killed = [a["detector"] for a in mine if a["action"].get("taken") == "kill"]
            if killed:
                failures.append(f"{job.token}: the search was killed by {killed} (session "
                                f"{session}, pid {job.pid})")
        elif job.kind == "benign":
            if job.status != 0:
                failures.append(f"{job.token}: benign work exited {job.status}")
            killed = [a["detector"] for a in mine if a["action"].get("taken") == "kill"]
            if killed:
                failures.append(f"{job.token}: benign work killed by {killed} (session "
                                f"{session}, pid {job.pid})")
    # a search alone (no flood at the same time) loses nothing: the kernel counts the
    # opens no detector can use instead of sending them (issue 17)
    for job in quiet_searches(soak.jobs):
        lost = job.lost or {}
        if sum(lost.values()):
            failures.append(f"{job.token}: {sum(lost.values())} events lost during a "
                            f"search no flood overlapped: {lost}")
    # losses: every one in an event_loss alert
    alerted = sum(int(a["fields"].get("lost", 0)) for a in alerts
                  if a["detector"] == "event_loss" and a.get("key") == "loss")
    m = re.findall(r"daemon stopped: (\d+) events, (\d+) lost", daemon_err)
    kernel = sum(int(x[1]) for x in m)
    if not m:
        failures.append("the daemon did not report its totals (no clean stop)")
    elif alerted != kernel:
        failures.append(f"losses: {kernel} counted by the daemon, {alerted} in event_loss "
                        "alerts")
    if "Traceback" in daemon_err or "Traceback" in daemon_out:
        failures.append("a traceback in the daemon's output")
    if sup.restarts or stop_code != 0:
        failures.append(f"the daemon crashed or stopped badly: {sup.restarts} restarts, "
                        f"exits {sup.exits}, last {stop_code}")
    dead = [p.args for p in outs if p.poll() is not None]
    if dead:
        failures.append(f"outsiders died: {dead}")
    forbidden = {1, os.getpid(), *(p.pid for p in outs)}
    if soak.daemon.proc is not None:
        forbidden.add(soak.daemon.proc.pid)
    for a in alerts:
        named = set(a["action"].get("pids") or []) & forbidden
        if named:
            failures.append(f"a kill named pids outside the sessions: {named} in {a['summary']}")
    if not all(by_kind[k] for k in ("escape", "flood", "benign", "rg")):
        failures.append(f"too short to mix every kind of job: {dict(by_kind)}")
    return failures


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float,
                    default=float(os.environ.get("SOAK_SECONDS", "180")))
    ap.add_argument("--seed", type=int, default=int(time.time()))
    ap.add_argument("--keep", action="store_true", help="keep the temp directory")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("soak: needs root (the daemon loads BPF)")
    tmp = Path(tempfile.mkdtemp(prefix="aw-soak-"))
    (tmp / "markers").mkdir()
    (tmp / "canary.txt").write_text("decoy\n")
    build_forkflood(tmp)
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(str(tmp / "runtime.sock"))
    srv.listen(64)
    from detectors.catalog.monitor import RUNTIME_SOCKETS

    config = tmp / "config.toml"
    config.write_text(
        'mode = "enforce"\n'
        '[detectors.fork_bomb]\naction = "alert"   # the floods are meant to last\n'
        f'[detectors.canary_touch]\npaths = [{json.dumps(str(tmp / "canary.txt"))}]\n'
        f'[detectors.runtime_socket]\nsockets = '
        f'{json.dumps([*RUNTIME_SOCKETS, str(tmp / "runtime.sock")])}\n')
    daemon = Daemon(tmp, config)
    sup = Supervisor(daemon)
    print(f"soak: {args.seconds:.0f} s, seed {args.seed}, in {tmp}", flush=True)
    sup.start()
    outs = outsiders()
    try:
        return _soak(args, tmp, daemon, sup, outs, srv)
    finally:  # whatever happened: no outsider, flooder or daemon is left behind
        for p in outs:
            if p.poll() is None:
                p.kill()
            p.wait()
        if sup.daemon.alive():
            sup.stop()


def _soak(args: argparse.Namespace, tmp: Path, daemon: Daemon, sup: Supervisor,
          outs: list[subprocess.Popen[bytes]], srv: socket.socket) -> int:
    soak = Soak(tmp, args.seconds, random.Random(args.seed), daemon)
    t0 = time.monotonic()
    deadline = t0 + args.seconds
    threads: list[threading.Thread] = []
    floods = threading.Semaphore(1)
    searches = threading.Semaphore(1)  # one search at a time: its loss window is its own
    slots = threading.Semaphore(3)

    def start(fn: Any, sem: threading.Semaphore | None = None) -> None:
        def body() -> None:
            try:
                fn()
            finally:
                slots.release()
                if sem is not None:
                    sem.release()
        th = threading.Thread(target=body, daemon=True)
        threads.append(th)
        th.start()

    try:
        while time.monotonic() < deadline - 8:
            slots.acquire()
            roll = soak.rng.random()
            if roll < 0.2 and floods.acquire(blocking=False):
                start(soak.flood, floods)
            elif roll < 0.4 and searches.acquire(blocking=False):
                start(soak.rg, searches)
            elif roll < 0.6:
                start(soak.benign)
            else:
                start(soak.escape)
            time.sleep(soak.rng.uniform(0.2, 1.0))
        for th in threads:
            th.join(timeout=180)
        time.sleep(3)  # the last records and alerts; sessions whose end was lost end too
        try:
            status = daemon.status()
        except (AssertionError, ValueError, OSError) as e:
            status = {"events": {}, "lost": {}, "kills": {}, "sessions": [],
                      "error": f"the daemon did not answer status: {e!r}"}
    finally:
        stop_code = sup.stop()
        srv.close()
    alerts = daemon.alerts()
    alive = sum(p.poll() is None for p in outs)
    failures = verdict(soak, alerts, daemon.stderr(), daemon.out.read_text(errors="replace"),
                       outs, sup, stop_code)
    if "error" in status:
        failures.append(status["error"])
    if status["sessions"]:  # every sandbox has exited: none may stay "running"
        failures.append(f"{len(status['sessions'])} sessions never ended: "
                        f"{[x['session'] for x in status['sessions']][:10]}")

    kinds = Counter(f"{j.kind}:{j.name}" for j in soak.jobs)
    escapes = [j for j in soak.jobs if j.kind == "escape"]
    lost_alerted = sum(int(a["fields"].get("lost", 0)) for a in alerts
                       if a["detector"] == "event_loss" and a.get("key") == "loss")
    detectors = Counter(a["detector"] for a in alerts)
    print(f"soak: {time.monotonic() - t0:.0f} s, {len(soak.jobs)} jobs: "
          + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())))
    failed = {f.split(":")[0] for f in failures}
    caught = [j for j in escapes if j.token not in failed]
    benign = [j for j in soak.jobs if j.kind == "benign"]
    print(f"  escapes: {len(caught)}/{len(escapes)} caught and killed ("
          + ", ".join(f"{k} {v}" for k, v in sorted(Counter(j.name for j in caught).items()))
          + f"); benign jobs clean: {len([j for j in benign if j.token not in failed])}/"
          f"{len(benign)}")
    print(rg_report(soak.jobs))
    print(f"  events: {sum(status['events'].values())} ({dict(status['events'])})")
    print(f"  lost (kernel, by cause): {status['lost']}; in event_loss alerts: {lost_alerted}")
    print(f"  kills: {status['kills']}; alerts by detector: {dict(detectors)}")
    print(f"  outsiders alive at the end: {alive}/{len(outs)}; daemon restarts: "
          f"{sup.restarts}")
    if failures:
        print(f"soak: FAIL ({len(failures)})")
        for f in failures[:50]:
            print(f"  - {f}")
    else:
        print("soak: PASS")
    if not args.keep and not failures:
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        print(f"soak: kept {tmp}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
