"""`make scenarios`: the attack and benign corpus run in real sandboxes, with recall and false
positives.

Every script under tests/scenarios/attacks and tests/scenarios/benign is run three ways:

  bwrap  inside a plain bubblewrap sandbox (read-only root, the workspace bound writable, its
         own network, IPC and UTS namespaces, the host's pid namespace), watched by
         `agentwatch daemon`, which adopts the sandbox as a launcher session;
  srt    inside Anthropic's sandbox-runtime (`srt`, from npm; its own bubblewrap with pid,
         user and network namespaces, seccomp, writes only to the workspace), watched by the
         same daemon;
  bare   directly under `agentwatch run` (its own cgroup, egress programs), no sandbox.

Everything is real: real processes in real sandboxes, the real daemon and CLI with their
probes loaded, alerts read as the daemon and `agentwatch run` write them (through a FIFO, so
the time an alert reaches a reader is known). Nothing is replayed.

The runner protects the host from the corpus. It runs in mount and network namespaces of its
own (re-executing itself under `unshare -m -n` when started outside them): only loopback
exists, so no packet leaves the machine, and overlays on /etc, /root, /home and /var/spool
catch what the bare runs write there (persistence into ~/.bashrc or /etc/cron.d lands in a
tmpfs that disappears with the runner). Every run is in a pids cgroup of its own (a cap on
fork bombs, and the record of which processes were the run's: any left after a kill are
survivors). The daemon adopts only its own renamed copy of bubblewrap (`awscen-bwrap`), so
sandboxes of anyone else on the host are never watched, let alone killed.

A scenario is a script whose header says what it expects:

    # expect: credential_read          detector id, or `none` for a benign workload
    # action: kill                     kill | alert | deny
    # action@bare: deny                (optional) another action for one way
    # ways: bwrap srt bare             (optional) where it applies, default all three
    # srt-settings: {...}              (optional) JSON merged into the srt settings
    # outside: unix                    (optional) a peer outside the watched session
    # about: one line for the table

`# outside: unix` makes the runner start, before the run and in its own process tree (never
the sandbox's, never the run's cgroup), a unix stream listener inside the run's workspace
(bwrap and srt bind it at the same path), passed to the script as $AW_OUTSIDE_UNIX: it
accepts connections, sends "echo reverse-shell-ran\nexit\n" on each, reads until EOF, and
is killed with the run (tests/scenarios/lib/outside_peer.py).

Verdicts: an attack run is a hit when the expected detector alerted, the action taken is the
expected one and, for kill, no process of the run survived. A benign run is a false positive
when any alert of severity medium or above was raised. Exit status 0 only with recall 100%,
no false positive and no survivor.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import orjson

from bench.harness import Daemon
from tests.scenarios.corpus import REPO, WAYS, Scenario, ScenarioError, load_scenarios
from tests.scenarios.host import (
    LAUNCHER,
    Fixtures,
    in_own_namespaces,
    isolate,
    make_fixtures,
    reexec_isolated,
)
from tests.scenarios.report import LOUD, Row, fmt_latency, print_table, row_json, summary

SRT = REPO / ".tools" / "srt" / "node_modules" / ".bin" / "srt"
GRACE = 1.5           # seconds after a run's last process for its last alerts
RUN_TIMEOUT = 90.0
SCRATCH_ROOT = "/var/lib/aw-scenarios"
PIDS_MAX = 6000       # per run: a fork bomb that is not stopped stops here


# ------------------------------------------------------------------------------ alerts


class AlertReader:
    """Reads JSON lines from a FIFO in a thread and stamps each with its arrival time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        os.mkfifo(path, 0o600)
        self.lines: list[tuple[int, dict[str, Any]]] = []
        self.bad = 0
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        with open(self.path, "rb") as f:  # blocks until the writer opens it
            for line in f:
                now = time.time_ns()
                try:
                    obj = orjson.loads(line)
                except orjson.JSONDecodeError:
                    self.bad += 1
                    continue
                with self._lock:
                    self.lines.append((now, obj))

    def since(self, index: int) -> list[tuple[int, dict[str, Any]]]:
        with self._lock:
            return self.lines[index:]

    def count(self) -> int:
        with self._lock:
            return len(self.lines)

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)


# ------------------------------------------------------------------------------ runs


class Runs:
    def __init__(self, fx: Fixtures, agentwatch: str) -> None:
        self.fx = fx
        self.agentwatch = agentwatch
        self.seq = 0
        self.daemon: Daemon | None = None
        self.daemon_alerts: AlertReader | None = None
        self.seen_sessions: set[str] = set()

    # -- daemon ---------------------------------------------------------------------------

    def start_daemon(self) -> None:
        """The daemon of the bwrap and srt ways: bench.harness.Daemon (the one the daemon
        tests and the soak use), adopting only the corpus's launcher, its alerts also
        written to a FIFO so that the time each reaches a reader is known."""
        fifo = self.fx.base / "daemon-alerts.fifo"
        self.daemon_alerts = AlertReader(fifo)
        self.daemon = Daemon(self.fx.base, self.fx.config, launcher=LAUNCHER,
                             args=("--alerts", str(fifo)), env=self.fx.env(self.fx.base))
        try:
            # ready = every probe attached and the launcher table filled
            self.daemon.start(timeout=60)
        except AssertionError as e:
            raise ScenarioError(f"agentwatch daemon did not start: {e}") from None

    def stop_daemon(self) -> int:
        if self.daemon is None:
            return 0
        code = self.daemon.stop(timeout=60) or 0
        if self.daemon_alerts is not None:
            self.daemon_alerts.join(5)
        return code

    # -- one run --------------------------------------------------------------------------

    def _cgroup(self) -> Path | None:
        if self.fx.cgroups is None:
            return None
        cg = self.fx.cgroups / f"run{self.seq}"
        cg.mkdir()
        (cg / "pids.max").write_text(str(PIDS_MAX))
        return cg

    def _command(self, sc: Scenario, way: str, ws: Path, fifo: Path | None) -> list[str]:
        inner = sc.argv()
        if way == "bwrap":
            keep = [] if not str(REPO).startswith("/tmp/") else \
                ["--ro-bind", str(REPO), str(REPO)]  # a checkout under /tmp: its scripts
            return [str(self.fx.shim / "bwrap"), "--ro-bind", "/", "/", "--dev", "/dev",
                    "--proc", "/proc", "--tmpfs", "/tmp", *keep, "--bind", str(ws), str(ws),
                    "--chdir", str(ws), "--unshare-ipc", "--unshare-uts", "--unshare-net",
                    "--die-with-parent", "--", *inner]
        if way == "srt":
            settings = {"filesystem": {"denyRead": [], "allowWrite": [str(ws)],
                                       "denyWrite": []},
                        "network": {"allowedDomains": [], "deniedDomains": []}}
            for key, value in sc.srt_settings.items():
                settings.setdefault(key, {}).update(value)
            path = ws.parent / f"{ws.name}.srt.json"
            path.write_text(json.dumps(settings))
            return [str(SRT), "--settings", str(path), "-c",
                    " ".join(_shell_quote(a) for a in inner)]
        assert fifo is not None
        return [self.agentwatch, "run", "--config", str(self.fx.config), "--alerts",
                str(fifo), "--events", "/dev/null", "--", *inner]

    def run(self, sc: Scenario, way: str) -> Row:
        self.seq += 1
        ws = self.fx.base / "ws" / f"{self.seq:03d}-{sc.name}-{way}"
        ws.mkdir(parents=True)
        cg = self._cgroup()
        reader: AlertReader | None
        if way == "bare":
            reader = AlertReader(self.fx.base / f"run{self.seq}.fifo")
            start_index = 0
        else:
            reader = self.daemon_alerts
            assert reader is not None
            start_index = reader.count()
        argv = self._command(sc, way, ws, reader.path if way == "bare" else None)
        env = self.fx.env(ws)
        peers = [_outside_peer(kind, ws, env) for kind in sc.outside]
        if cg is not None:  # join the run's cgroup, then become the command
            argv = ["/bin/sh", "-c", 'echo $$ > "$0" && exec "$@"',
                    str(cg / "cgroup.procs"), *argv]
        out = open(ws.parent / f"{ws.name}.out", "wb")  # noqa: SIM115
        t0 = time.monotonic()
        proc = subprocess.Popen(argv, cwd=ws, env=env, stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        note = ""
        try:
            code = proc.wait(RUN_TIMEOUT)
        except subprocess.TimeoutExpired:
            note = f"timed out after {RUN_TIMEOUT:.0f} s"
            _kill_cgroup(cg)
            proc.kill()
            code = proc.wait()
        seconds = time.monotonic() - t0
        out.close()
        time.sleep(GRACE)
        for peer in peers:
            peer.kill()
            peer.wait()
        survivors = _kill_cgroup(cg) if cg is not None else 0
        if way == "bare":
            reader.join(5)
        alerts = self._alerts_of_run(reader.since(start_index), way)
        row = Row(scenario=sc, way=way, expected=sc.expect or "none", exit=code,
                  seconds=seconds, survivors=survivors, note=note)
        self._fill(row, alerts)
        if cg is not None:
            _rmdir(cg)
        return row

    def _alerts_of_run(self, lines: list[tuple[int, dict[str, Any]]],
                       way: str) -> list[tuple[int, dict[str, Any]]]:
        out = []
        for recv, alert in lines:
            if alert.get("kind") != "alert" or alert.get("folded"):
                continue
            session = alert.get("session")
            if way != "bare" and session is not None:
                # the daemon's stream: a session first seen now is this run's
                if session in self.seen_sessions and not any(
                        a.get("session") == session for _, a in out):
                    continue
                self.seen_sessions.add(session)
            out.append((recv, alert))
        return out

    def _fill(self, row: Row, alerts: list[tuple[int, dict[str, Any]]]) -> None:
        for recv, alert in alerts:
            det = str(alert.get("detector"))
            if det not in row.fired:
                row.fired.append(det)
            if alert.get("severity") in LOUD and det not in row.loud:
                row.loud.append(det)
            action = alert.get("action") or {}
            want = row.scenario.actions.get(row.way)
            # the expected detector's first alert, or a later one of it that took the
            # expected action (a sequence: credential_read alerts on the read, kills on
            # the send that follows)
            if det == row.scenario.expect and (row.taken == "-" or (
                    row.taken != want and action.get("taken") == want)):
                row.taken = str(action.get("taken", "-"))
                row.by = str(action.get("by", ""))
                ts = (alert.get("event") or {}).get("ts") or alert.get("ts")
                if isinstance(ts, int):
                    row.latency_ms = (recv - ts) / 1e6


def _outside_peer(kind: str, ws: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Start the `# outside:` peer of a run (a child of the runner, outside the session) and
    put its address in `env`."""
    assert kind == "unix"
    path = ws / ".aw-outside.sock"
    if len(os.fsencode(path)) > 107:  # sun_path's 108 bytes, NUL included
        raise ScenarioError(f"{path}: too long for a unix socket address")
    peer = subprocess.Popen([sys.executable, str(REPO / "tests/scenarios/lib/outside_peer.py"),
                             str(path), str(RUN_TIMEOUT)], stdout=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    assert peer.stdout is not None
    if peer.stdout.readline().strip() != b"ready":
        peer.kill()
        peer.wait()
        raise ScenarioError("the outside unix peer did not start")
    peer.stdout.close()
    env["AW_OUTSIDE_UNIX"] = str(path)
    return peer


def _shell_quote(s: str) -> str:
    return "'" + s.replace("'", "'\\''") + "'"


def _procs(cg: Path) -> list[int]:
    try:
        return [int(x) for x in (cg / "cgroup.procs").read_text().split()]
    except OSError:
        return []


def _kill_cgroup(cg: Path | None) -> int:
    """Processes left in a run's cgroup (the survivors), then kill them."""
    if cg is None:
        return 0
    left = _procs(cg)
    for _ in range(50):
        pids = _procs(cg)
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)
    return len(left)


def _rmdir(cg: Path) -> None:
    for _ in range(40):
        try:
            cg.rmdir()
            return
        except OSError:
            time.sleep(0.05)


# ------------------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="make scenarios", description=__doc__.split("\n\n")[0])
    ap.add_argument("--ways", default=",".join(WAYS),
                    help="comma-separated subset of bwrap,srt,bare")
    ap.add_argument("--only", default="", help="regex: scenarios whose name matches")
    ap.add_argument("--json", metavar="FILE", help="also write every row and the summary")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--list", action="store_true", help="list the scenarios and exit")
    args = ap.parse_args(argv)
    try:
        scenarios = load_scenarios()
        ways = [w for w in args.ways.split(",") if w]
        if set(ways) - set(WAYS):
            raise ScenarioError(f"--ways: choose among {', '.join(WAYS)}")
        if args.only:
            scenarios = [s for s in scenarios if re.search(args.only, s.name)]
        if args.list:
            for s in scenarios:
                print(f"{s.kind:6}  {s.name:32}  {s.expect or 'none':24}  {s.about}")
            return 0
        if os.geteuid() != 0:
            raise ScenarioError("the corpus needs root (BPF, bubblewrap, cgroups)")
        if not in_own_namespaces():
            reexec_isolated(sys.argv[1:] if argv is None else argv)
        if "srt" in ways and not SRT.exists():
            raise ScenarioError(f"sandbox-runtime is not installed at {SRT} (make setup)")
        return _run_all(scenarios, ways, args)
    except ScenarioError as e:
        print(f"scenarios: {e}", file=sys.stderr)
        return 2


def _run_all(scenarios: list[Scenario], ways: list[str], args: argparse.Namespace) -> int:
    # not under /tmp or /var/tmp: write_outside_workspace allows those, and the other
    # projects the corpus writes to must count as outside
    os.makedirs(SCRATCH_ROOT, exist_ok=True)
    base = Path(tempfile.mkdtemp(prefix="run-", dir=SCRATCH_ROOT))
    isolate(base)
    fx = make_fixtures(base)
    agentwatch = str(Path(sys.executable).parent / "agentwatch")
    runs = Runs(fx, agentwatch)
    rows: list[Row] = []
    t0 = time.monotonic()
    try:
        daemon_ways = [w for w in ways if w != "bare"]
        if daemon_ways:
            # no pins: a pinned probe set outlives the daemon and its run directory, and
            # its kernel rules went on killing other sandboxes on the host afterwards
            os.environ["AGENTWATCH_PIN_ROOT"] = "off"
            runs.start_daemon()
        for way in ways:
            if way == "bare" and runs.daemon is not None:
                code = runs.stop_daemon()
                runs.daemon = None
                if code != 0:
                    print(f"scenarios: the daemon exited {code} on SIGTERM", file=sys.stderr)
            for sc in scenarios:
                if way not in sc.ways:
                    continue
                row = runs.run(sc, way)
                rows.append(row)
                print(f"  {'ok ' if row.ok else 'BAD'} {sc.name} / {way}: "
                      f"fired={','.join(row.fired) or '-'} taken={row.taken} "
                      f"survivors={row.survivors} exit={row.exit} ({row.seconds:.1f} s)",
                      file=sys.stderr, flush=True)
    finally:
        runs.stop_daemon()
        fx.outsider.kill()
        fx.outsider.wait()
        if fx.cgroups is not None:
            _rmdir(fx.cgroups)
        cg2 = base / "cg2"
        if cg2.is_symlink():
            _rmdir(cg2.resolve())
    print()
    print_table(rows)
    s = summary(rows)
    elapsed = time.monotonic() - t0
    print()
    for way, w in s["per_way"].items():
        print(f"{way:6} recall {w['hits']}/{w['runs']}, false positives {w['false_positives']}")
    print(f"recall {s['hits']}/{s['attack_runs']} = {100 * s['recall']:.1f}%   "
          f"false positives {s['false_positives']}/{s['benign_runs']} benign runs   "
          f"survivors after kills {s['survivors']}   alert latency p50 "
          f"{fmt_latency(s['latency_ms_p50'])} ms, max {fmt_latency(s['latency_ms_max'])} ms"
          f"   ({elapsed:.0f} s)")
    for m in s["misses"]:
        print(f"  MISS {m}")
    for m in s["false_positive_runs"]:
        print(f"  FALSE POSITIVE {m}")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": [row_json(r) for r in rows],
                                               "summary": s}, indent=1))
    if not args.keep:
        subprocess.run(["umount", "-R", str(base / "overlays")], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)
    else:
        print(f"work directory kept: {base}")
    bad = s["recall"] < 1.0 or s["false_positives"] or s["survivors"]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
