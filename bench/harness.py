"""The one harness for a real `agentwatch daemon`: used by the daemon tests (tests/), the
scenario corpus (tests/scenarios/) and the soak (bench/soak.py). It lives in bench/ because
bench imports nothing from tests/, while tests may import bench.

Each daemon gets directories of its own (run, log, state: `AGENTWATCH_RUN_DIR`,
`AGENTWATCH_LOG_DIR`, `AGENTWATCH_STATE_DIR`), so that it never meets another engineer's
daemon on the same host, and adopts only a launcher of its own: a symlink to bubblewrap
named `LAUNCHER`, unique to this process (the kernel adopts by command name, which an
exec through a symlink takes from the link), or another launcher name its caller chose
(the corpus's renamed copy of bubblewrap). Other people's bubblewrap sandboxes are never
adopted, so an enforce-mode daemon here can only ever kill sandboxes this process
started.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

AW = str(Path(sys.executable).parent / "agentwatch")
# unique per test process: two runs of these tests on one host (two engineers, or CI and
# a developer) must not adopt, re-adopt or kill each other's sandboxes
LAUNCHER = f"awbox{os.getpid()}"  # a command name: at most 15 bytes


def launcher(tmp: Path) -> str:
    """The path of a bubblewrap named LAUNCHER (a symlink in `tmp`)."""
    real = shutil.which("bwrap")
    if real is None:
        raise RuntimeError("bubblewrap is not installed (make setup installs it)")
    link = tmp / LAUNCHER
    if not link.exists():
        link.symlink_to(real)
    return str(link)


def visible_under_tmp() -> list[str]:
    """The checkout and the venv (sys.executable runs in the sandboxes) when they live
    under /tmp, which the sandboxes replace with a tmpfs of their own."""
    out: list[str] = []
    for p in (str(Path(__file__).resolve().parent.parent), sys.prefix):
        if (p == "/tmp" or p.startswith("/tmp/")) and not any(
                p == o or p.startswith(o + "/") for o in out):
            out.append(p)
    return out


def sandbox(tmp: Path, *cmd: str, host_proc: bool = True, binds: tuple[str, ...] = ()) \
        -> list[str]:
    """A bubblewrap sandbox (read-only root, private /tmp but `tmp` read-only, `binds`
    writable, no network) running cmd. With host_proc it shares the host's pid namespace
    (its /proc shows agentwatch)."""
    argv = [launcher(tmp), "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
            "--tmpfs", "/tmp", "--unshare-net", "--unshare-ipc", "--unshare-uts",
            "--die-with-parent"]
    if not host_proc:
        argv.append("--unshare-pid")
    argv += ["--ro-bind", str(tmp), str(tmp)]  # under the private /tmp: scripts are here
    for keep in visible_under_tmp():  # a checkout (and its venv's python) in /tmp
        argv += ["--ro-bind", keep, keep]
    for b in binds:
        argv += ["--bind", b, b]
    return [*argv, "--", *cmd]


def wait(pred: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = pred()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s: {what}")
        time.sleep(0.05)


class Daemon:
    """`agentwatch daemon --config CONFIG --log-dir DIR --launcher NAME [ARGS]`, its stdout
    (one line per alert) and stderr kept in files (appended to across restarts).

    `env` is the environment it starts from (default: this process's), `extra_env` goes
    on top of the directories; `args` are more daemon options (`--metrics`, `--alerts`)."""

    def __init__(self, tmp: Path, config: Path, extra_env: dict[str, str] | None = None,
                 *, launcher: str = LAUNCHER, args: tuple[str, ...] = (),
                 env: dict[str, str] | None = None) -> None:
        self.tmp, self.config = tmp, config
        self.launcher, self.args = launcher, args
        self.log = tmp / "log"
        # A state directory of its own, kernel headers merged there too (about 1 s): the
        # host's /var/lib/agentwatch is shared with every other agentwatch on the machine
        # (and removed by a package purge, tests/test_deb.py's among them).
        state = tmp / "state"
        state.mkdir(exist_ok=True)
        self.env = {**(os.environ if env is None else env),
                    "AGENTWATCH_RUN_DIR": str(tmp / "run"),
                    "AGENTWATCH_LOG_DIR": str(self.log), "AGENTWATCH_STATE_DIR": str(state),
                    **(extra_env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.err = tmp / "daemon.err"
        self.out = tmp / "daemon.out"
        self.starts = 0
        self.started = 0.0  # time.monotonic() of the last spawn
        self.ready_after = 0.0  # seconds from the last start() to `daemon ready`
        self.err_offset = 0  # the size of the stderr file at the last spawn

    def argv(self) -> list[str]:
        return [AW, "daemon", "--config", str(self.config), "--log-dir", str(self.log),
                "--launcher", self.launcher, *self.args]

    def spawn(self) -> subprocess.Popen[bytes]:
        """Start it (stdout and stderr appended to the files); not waited for."""
        self.starts += 1
        self.started = time.monotonic()
        self.err_offset = self.err.stat().st_size if self.err.exists() else 0
        with open(self.err, "ab") as err, open(self.out, "ab") as out:
            self.proc = subprocess.Popen(self.argv(), env=self.env, stdout=out, stderr=err)
        return self.proc

    def start(self, timeout: float = 120) -> None:
        """Spawn it and wait for its `daemon ready` (every probe attached); `ready_after`
        keeps how long that took (the compile dominates: 1.5 to 4 s on the 2-core VMs)."""
        mark = self.stderr().count("daemon ready")
        self.spawn()
        self.ready_after = self.wait_for("daemon ready", timeout, count=mark + 1)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stderr(self, since_spawn: bool = False) -> str:
        """Its stderr, of every start or (since_spawn) of the running one only."""
        if not self.err.exists():
            return ""
        data = self.err.read_bytes()
        return (data[self.err_offset:] if since_spawn else data).decode(errors="replace")

    def wait_for(self, text: str, timeout: float, count: int = 1,
                 since_spawn: bool = False) -> float:
        """Wait until `text` is on its stderr `count` times (of every start, or of the
        running one with since_spawn); the seconds since the last spawn."""
        def seen() -> bool:
            if self.stderr(since_spawn).count(text) >= count:
                return True
            assert self.alive(), f"the daemon died:\n{self.stderr()[-3000:]}"
            return False
        wait(seen, timeout, f"{text!r} on the daemon's stderr:\n{self.stderr()[-3000:]}")
        return time.monotonic() - self.started

    def alerts(self) -> list[dict[str, Any]]:
        path = self.log / "alerts.jsonl"
        if not path.exists():
            return []
        return [json.loads(x) for x in path.read_bytes().splitlines() if x.strip()]

    def cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run([AW, *args], env=self.env, capture_output=True, text=True,
                              timeout=timeout)

    def status(self) -> dict[str, Any]:
        out = self.cli("status", "--json")
        assert out.returncode == 0, out.stderr
        mine = [json.loads(x) for x in out.stdout.splitlines() if x.strip()]
        (st,) = [s for s in mine if s.get("role") == "daemon"]
        return st

    def stop(self, timeout: float = 90) -> int | None:
        """SIGTERM, then SIGKILL after `timeout`; its exit status (None: never started)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.wait()


# ------------------------------------------------------------------------------ supervisor

UNIT = Path(__file__).resolve().parent.parent / "packaging" / "agentwatch.service"
CLEAN_SIGNALS = (signal.SIGHUP, signal.SIGINT, signal.SIGTERM, signal.SIGPIPE)


def _unit_service(unit: Path) -> dict[str, str]:
    import configparser

    cp = configparser.ConfigParser(interpolation=None, strict=False)
    cp.optionxform = str  # type: ignore[assignment,method-assign]
    cp.read_string(unit.read_text())
    return {k: v.split("#")[0].strip() for k, v in cp["Service"].items()} \
        if cp.has_section("Service") else {}


def _seconds(text: str) -> float:
    text = text.strip()
    return float(text[:-2]) / 1000 if text.endswith("ms") else float(text.rstrip("s"))


def unit_restart(unit: Path = UNIT) -> tuple[str, float]:
    """The unit's Restart= and RestartSec= (systemd's defaults: no, 100ms)."""
    svc = _unit_service(unit)
    return svc.get("Restart", "no"), _seconds(svc.get("RestartSec", "100ms"))


def unit_watchdog(unit: Path = UNIT) -> tuple[float, int]:
    """The unit's WatchdogSec= (0: none) and WatchdogSignal= (default SIGABRT)."""
    svc = _unit_service(unit)
    sig = svc.get("WatchdogSignal", "SIGABRT")
    return _seconds(svc.get("WatchdogSec", "0")), int(signal.Signals[sig])


def should_restart(policy: str, returncode: int) -> bool:
    """systemd's Restart= for a main process that exited with `returncode` (Popen's:
    negative for a signal). on-failure: a non-zero exit, or a signal other than the clean
    ones (SIGHUP, SIGINT, SIGTERM, SIGPIPE); always: any exit."""
    clean = returncode == 0 or -returncode in CLEAN_SIGNALS
    return {"always": True, "on-failure": not clean,
            "on-abnormal": returncode < 0 and not clean, "no": False}.get(policy, False)


class Supervisor:
    """PID 1 here is not systemd: this applies the unit's Restart=/RestartSec= and, through
    a notify socket of its own ($NOTIFY_SOCKET), its WatchdogSec=/WatchdogSignal= to the
    real daemon command, in a thread. `restarts` counts the restarts it made, `watchdog`
    the watchdog kills."""

    def __init__(self, daemon: Daemon, unit: Path = UNIT) -> None:
        import socket
        import threading

        self.daemon = daemon
        self.policy, self.delay = unit_restart(unit)
        self.watchdog_sec, self.watchdog_signal = unit_watchdog(unit)
        self.restarts = 0
        self.watchdog = 0
        self.exits: list[int] = []
        self.notes: list[str] = []
        path = daemon.tmp / "notify.sock"
        path.unlink(missing_ok=True)
        self._notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._notify.bind(str(path))
        self._notify.setblocking(False)
        daemon.env["NOTIFY_SOCKET"] = str(path)
        self._last_ping = 0.0
        self._ready = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self.daemon.start()
        self._thread.start()

    def _read_notify(self) -> None:
        while True:
            try:
                msg = self._notify.recv(4096).decode(errors="replace")
            except BlockingIOError:
                return
            self.notes.append(msg)
            if "READY=1" in msg.split("\n"):
                self._ready = True
                self._last_ping = time.monotonic()
            if "WATCHDOG=1" in msg.split("\n"):
                self._last_ping = time.monotonic()

    def _run(self) -> None:
        while not self._stop.is_set():
            proc = self.daemon.proc
            assert proc is not None
            self._read_notify()
            if self.watchdog_sec and self._ready and proc.poll() is None and \
                    time.monotonic() - self._last_ping > self.watchdog_sec:
                self.watchdog += 1
                self._ready = False  # one kill per instance
                proc.send_signal(self.watchdog_signal)
                if self.watchdog_signal != signal.SIGKILL:
                    proc.send_signal(signal.SIGCONT)  # as systemd does after a signal
            try:
                code = proc.wait(timeout=0.2)
            except subprocess.TimeoutExpired:
                continue
            self._ready = False
            if self._stop.is_set():
                return
            self.exits.append(code)
            if not should_restart(self.policy, code):
                return
            if self._stop.wait(self.delay):
                return
            self.daemon.spawn()
            self.restarts += 1  # after: whoever waits on it finds the new process

    def stop(self) -> int | None:
        self._stop.set()
        self._thread.join(timeout=10)
        code = self.daemon.stop()
        self._notify.close()
        return code

