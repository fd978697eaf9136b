"""The Debian package, end to end, as root on this host.

Builds build/agentwatch_<version>_<arch>.deb (or reuses one that `make deb` built from the
current sources), installs it with dpkg, checks its files, verifies the installed unit
with systemd-analyze, starts the unit's own ExecStart command line (systemd need not be
PID 1), makes a bubblewrap sandbox try a namespace escape and expects the alert in
/var/log/agentwatch/alerts.jsonl and on the daemon's stdout, stops the daemon with
SIGTERM, then purges the package and checks that it left nothing behind.

It refuses to run (fails, removes nothing) when a package named agentwatch is already
on the host, and purges what it installed in any case.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import threading
import time
import tomllib
from pathlib import Path
from typing import IO, Any

import orjson
import pytest

from tests.conftest import REPO, bpf_unavailable

pytestmark = [pytest.mark.bpf, pytest.mark.deb, pytest.mark.e2e, pytest.mark.slow]

UNIT = Path("/lib/systemd/system/agentwatch.service")
CONFIG = Path("/etc/agentwatch/config.toml")
PREFIX = Path("/opt/agentwatch")
VENV_SCRIPT = PREFIX / "venv" / "bin" / "agentwatch"
LINK = Path("/usr/bin/agentwatch")
ALERTS = Path("/var/log/agentwatch/alerts.jsonl")
# What the package is built from: a .deb older than any of these is rebuilt.
INPUTS = ["pyproject.toml", "packaging", "probes", "collector", "detectors"]
# The environment of a systemd service: no PYTHONPATH or virtual environment of the test
# run leaks into the daemon, so it can only import what the package installed.
SERVICE_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
               "LANG": "C.UTF-8"}
ESCAPE = ["bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
          "--unshare-all", "--die-with-parent", "--", "sh", "-c", "unshare -U true"]


def _run(argv: list[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                          env=SERVICE_ENV, cwd="/")


def _explain(what: str, proc: subprocess.CompletedProcess[str]) -> str:
    return (f"{what} exited {proc.returncode}\n--- stdout ---\n{proc.stdout}"
            f"\n--- stderr ---\n{proc.stderr}")


def _deb_path() -> Path:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    arch = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True,
                          check=True).stdout.strip()
    return REPO / "build" / f"agentwatch_{project['version']}_{arch}.deb"


def _newest_input() -> float:
    newest = 0.0
    for name in INPUTS:
        path = REPO / name
        files = [path] if path.is_file() else [p for p in path.rglob("*")
                                                if p.is_file() and "__pycache__" not in p.parts]
        newest = max([newest, *(p.stat().st_mtime for p in files)])
    return newest


def _build_deb() -> tuple[Path, str]:
    deb = _deb_path()
    if deb.is_file() and deb.stat().st_mtime > _newest_input():
        return deb, f"reused {deb.name} (newer than its sources)"
    t0 = time.monotonic()
    proc = subprocess.run(["bash", str(REPO / "packaging" / "build-deb.sh")],
                          capture_output=True, text=True, timeout=600, cwd=REPO)
    if proc.returncode != 0 or not deb.is_file():
        pytest.fail(_explain("packaging/build-deb.sh", proc), pytrace=False)
    return deb, f"built {deb.name} in {time.monotonic() - t0:.1f} s"


def _installed_status() -> str | None:
    proc = subprocess.run(["dpkg-query", "-W", "-f=${Status}", "agentwatch"],
                          capture_output=True, text=True)
    return proc.stdout.strip() if proc.returncode == 0 and proc.stdout.strip() else None


def _exec_start(unit: Path) -> list[str]:
    lines = [ln.split("=", 1)[1].strip() for ln in unit.read_text().splitlines()
             if ln.strip().startswith("ExecStart=")]
    assert len(lines) == 1, f"{unit}: expected one ExecStart= line, found {lines}"
    return shlex.split(lines[0])


class Daemon:
    """The ExecStart command line, with its stdout and stderr read by two threads."""

    def __init__(self, argv: list[str]) -> None:
        self.argv = argv
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, env=SERVICE_ENV, cwd="/")
        self.out: list[str] = []
        self.err: list[str] = []
        self.ready = threading.Event()
        self._threads = [threading.Thread(target=self._read, args=(self.proc.stdout, self.out),
                                          daemon=True),
                         threading.Thread(target=self._read, args=(self.proc.stderr, self.err),
                                          daemon=True)]
        for t in self._threads:
            t.start()

    def _read(self, stream: IO[str], into: list[str]) -> None:
        for line in stream:
            into.append(line.rstrip("\n"))
            if into is self.err and "daemon ready" in line:
                self.ready.set()

    def wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.ready.wait(0.2):
                return True
            if self.proc.poll() is not None:
                for t in self._threads:
                    t.join(2)
                return self.ready.is_set()
        return False

    def report(self) -> str:
        for t in self._threads:
            if self.proc.poll() is not None:
                t.join(2)
        return (f"daemon: {shlex.join(self.argv)} (exit status {self.proc.poll()})"
                f"\n--- daemon stderr ---\n" + "\n".join(self.err)
                + "\n--- daemon stdout ---\n" + "\n".join(self.out))

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def _new_alerts(offset: int) -> list[dict[str, Any]]:
    try:
        with ALERTS.open("rb") as f:
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return []
    alerts = []
    for line in data.splitlines():
        with contextlib.suppress(orjson.JSONDecodeError):  # a line being written
            alerts.append(orjson.loads(line))
    return alerts


def _escape_alert(alerts: list[dict[str, Any]], bwrap_pid: int) -> dict[str, Any] | None:
    for alert in alerts:
        if alert.get("detector") != "namespace_escape":
            continue
        ancestry = alert.get("ancestry")
        if ancestry is None or any(a.get("pid") == bwrap_pid for a in ancestry):
            return alert
    return None


def _purge() -> subprocess.CompletedProcess[str]:
    return _run(["dpkg", "--purge", "agentwatch"], timeout=120)


def test_deb_installs_runs_the_unit_command_detects_an_escape_and_purges() -> None:
    if os.geteuid() != 0:
        bpf_unavailable("installing a .deb and loading BPF need root")
    for tool in ("dpkg", "dpkg-deb", "systemd-analyze", "bwrap"):
        if shutil.which(tool) is None:
            bpf_unavailable(f"{tool} is not installed (packaging/apt-packages.txt)")
    status = _installed_status()
    if status is not None:
        pytest.fail(f"a package named agentwatch is already on this host ({status}): this "
                    "test installs and purges its own; remove it first "
                    "(dpkg --purge agentwatch), nothing was touched", pytrace=False)
    for path in (PREFIX, CONFIG):
        if path.exists():
            pytest.fail(f"{path} exists but belongs to no package: the test would overwrite "
                        "and then delete it; move it away first, nothing was touched",
                        pytrace=False)

    deb, how = _build_deb()
    print(f"deb: {how}, {deb.stat().st_size / 2**20:.1f} MiB")
    installed = False
    daemon: Daemon | None = None
    try:
        installed = True  # from here on, even a half-done install is purged
        t0 = time.monotonic()
        proc = _run(["dpkg", "-i", str(deb)], timeout=300)
        assert proc.returncode == 0, _explain(f"dpkg -i {deb}", proc)
        print(f"dpkg -i: {time.monotonic() - t0:.1f} s")

        # Files.
        assert os.access(VENV_SCRIPT, os.X_OK), f"{VENV_SCRIPT} is missing or not executable"
        assert LINK.is_symlink() and LINK.resolve() == VENV_SCRIPT.resolve(), \
            f"{LINK} should be a symlink to {VENV_SCRIPT}"
        assert UNIT.is_file(), f"{UNIT} is missing"
        conffiles = _run(["dpkg-query", "-W", "-f=${Conffiles}", "agentwatch"]).stdout
        assert str(CONFIG) in conffiles.split(), \
            f"{CONFIG} is not a conffile of the package: {conffiles!r}"
        assert CONFIG.is_file(), f"{CONFIG} is missing"
        where = _run([str(PREFIX / "venv" / "bin" / "python"), "-c",
                      "import bcc, collector, detectors.catalog, probes; "
                      "print(collector.__file__); print(bcc.__file__)"])
        assert where.returncode == 0, _explain("importing agentwatch from the venv", where)
        assert where.stdout.split()[0].startswith(str(PREFIX / "venv")), \
            f"agentwatch is imported from outside the package's venv: {where.stdout}"
        check = _run([str(LINK), "config", "check", str(CONFIG)])
        assert check.returncode == 0, _explain("agentwatch config check", check)

        # The installed unit.
        verify = _run(["systemd-analyze", "verify", str(UNIT)])
        assert verify.returncode == 0, _explain(f"systemd-analyze verify {UNIT}", verify)
        argv = _exec_start(UNIT)
        assert argv[0] == str(VENV_SCRIPT), f"ExecStart does not run {VENV_SCRIPT}: {argv}"

        # The unit's command line, started as systemd would (without its sandboxing).
        offset = ALERTS.stat().st_size if ALERTS.exists() else 0
        t0 = time.monotonic()
        daemon = Daemon(argv)
        assert daemon.wait_ready(90), "no 'daemon ready' on stderr within 90 s\n" + \
            daemon.report()
        print(f"daemon ready: {time.monotonic() - t0:.1f} s")

        # A sandboxed escape attempt.
        bwrap = subprocess.Popen(ESCAPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 text=True, env=SERVICE_ENV, cwd="/")
        sandbox_out, _ = bwrap.communicate(timeout=30)
        deadline = time.monotonic() + 5
        alert = None
        while time.monotonic() < deadline:
            alert = _escape_alert(_new_alerts(offset), bwrap.pid)
            if alert and any("namespace_escape" in ln for ln in daemon.out):
                break
            time.sleep(0.1)
        assert alert is not None, (
            f"no namespace_escape alert in {ALERTS} within 5 s of the sandbox's end "
            f"(sandbox exit {bwrap.returncode}: {sandbox_out.strip()!r}); new alerts: "
            f"{_new_alerts(offset)}\n" + daemon.report())
        assert any("namespace_escape" in ln for ln in daemon.out), \
            "the namespace_escape alert is not on the daemon's stdout\n" + daemon.report()

        # SIGTERM: the daemon drains, flushes and exits 0.
        t0 = time.monotonic()
        daemon.proc.send_signal(signal.SIGTERM)
        try:
            rc = daemon.proc.wait(30)
        except subprocess.TimeoutExpired:
            pytest.fail("the daemon did not exit within 30 s of SIGTERM\n" + daemon.report(),
                        pytrace=False)
        assert rc == 0, f"the daemon exited {rc} on SIGTERM\n" + daemon.report()
        print(f"daemon stopped: {time.monotonic() - t0:.1f} s after SIGTERM")

        # Purge: nothing of the package is left.
        t0 = time.monotonic()
        purge = _purge()
        assert purge.returncode == 0, _explain("dpkg --purge agentwatch", purge)
        installed = False
        print(f"dpkg --purge: {time.monotonic() - t0:.1f} s")
        left = [str(p) for p in (PREFIX, LINK, UNIT, CONFIG.parent)
                if p.exists() or p.is_symlink()]
        assert not left, f"dpkg --purge left {left}"
        assert _installed_status() is None, "dpkg still lists agentwatch after the purge"
    finally:
        if daemon is not None:
            daemon.kill()
        if installed:
            purge = _purge()
            if purge.returncode != 0:
                print(_explain("dpkg --purge agentwatch (cleanup)", purge))
