"""`agentwatch run -- CMD`: run CMD as a watched session and exit with its status.

CMD is forked, parked on a pipe until its pid is in the kernel's `watched` map, then
exec'd: nothing it does, its first exec included, happens before it is watched.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import signal
import sys
from dataclasses import dataclass

from detectors.config import Config as DetectionConfig
from probes.loader import ProbeConfig
from response.cgroup import CgroupError, SessionCgroup
from service.pipeline import Collector, Sink
from service.sinks import HumanAlertSink, JsonlSink

EXIT_NOT_FOUND = 127
EXIT_CANNOT_EXEC = 126
ALL_RING_PAGES = 16384  # 64 MiB: `--events-level all`


class RunError(RuntimeError):
    """A problem to report in one line (exit code attached)."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class RunResult:
    exit_status: int
    session: str
    events: int
    lost: int
    unwritten: int = 0  # events a sink could not write (e.g. a full disk)


def wait_status_to_exit(status: int) -> int:
    """Shell convention: the exit code, or 128+N when killed by signal N."""
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.waitstatus_to_exitcode(status)


def _spawn_parked(path: str, argv: list[str]) -> tuple[int, int]:
    """Fork a child that execs `path` once released; returns (pid, release fd)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: only async-signal-safe work until exec
        try:
            os.close(w)
            for sig in (signal.SIGINT, signal.SIGQUIT, signal.SIGTERM, signal.SIGHUP):
                signal.signal(sig, signal.SIG_DFL)
            if os.read(r, 1) != b"g":
                os._exit(EXIT_CANNOT_EXEC)  # the collector died before releasing us
            os.close(r)
            os.execv(path, argv)
        except OSError as e:
            os.write(2, f"agentwatch: cannot run {argv[0]}: {e.strerror}\n".encode())
        finally:
            os._exit(EXIT_CANNOT_EXEC)
    os.close(r)
    return pid, w


def level_probe_config(config: ProbeConfig | None, events_level: str) -> ProbeConfig | None:
    """`--events-level all` keeps every event: a ring sized for a search's burst (64 MiB;
    what still overflows it is counted, as always)."""
    if events_level != "all":
        return config
    return dataclasses.replace(config or ProbeConfig(), ringbuf_pages=ALL_RING_PAGES)


def run(argv: list[str], events: str | None = None, config: ProbeConfig | None = None,
        collector: Collector | None = None, poll_ms: int = 50,
        detection: DetectionConfig | None = None, alerts: str | None = None,
        cgroup: bool = True, config_path: str | None = None,
        events_level: str = "interest") -> RunResult:
    """Run argv as a session. With `collector` given (already started), it is used and
    left open, so that several runs can share one loaded BPF object (tests, benchmarks).
    `config_path`: the --config file, protected as the daemon protects its own
    (monitor_tamper's `paths`: the detector, and in enforce mode the kernel's literal
    paths and inodes)."""
    if not argv:
        raise RunError("no command given: agentwatch run -- CMD [ARGS...]")
    path = shutil.which(argv[0]) if "/" not in argv[0] else argv[0]
    if path is None or not os.path.exists(path):
        raise RunError(f"command not found: {argv[0]}", EXIT_NOT_FOUND)
    own = collector is None
    if collector is None:
        sinks: list[Sink] = [JsonlSink(events)] if events else []
        alert_sinks: list[Sink] = [JsonlSink(alerts) if alerts else HumanAlertSink()]
        collector = Collector(sinks, level_probe_config(config, events_level),
                              detection=detection, alert_sinks=alert_sinks,
                              own_paths=own_config_paths(config_path),
                              events_level=events_level)
    try:
        if own:
            collector.start()
            if collector.bpf.pin_note:
                print(f"agentwatch: {collector.bpf.pin_note}", file=sys.stderr)
            problem = collector.serve_control()
            if problem:
                print(f"agentwatch: {problem}; `agentwatch session` cannot reach this run",
                      file=sys.stderr)
        return _run_session(collector, path, argv, poll_ms, cgroup)
    finally:
        if own:
            collector.close()


def _session_cgroup(name: str, pid: int) -> SessionCgroup | None:
    """CMD's own cgroup v2 (kill and freeze whole, egress programs), where one can be made."""
    try:
        cg = SessionCgroup.create(name)
    except CgroupError as e:
        print(f"agentwatch: no cgroup for the session ({e}); kill and freeze use signals",
              file=sys.stderr)
        return None
    try:
        cg.add(pid)
    except CgroupError as e:
        print(f"agentwatch: no cgroup for the session ({e}); kill and freeze use signals",
              file=sys.stderr)
        cg.remove(timeout=0)
        return None
    return cg


def _run_session(collector: Collector, path: str, argv: list[str], poll_ms: int,
                 cgroup: bool = True) -> RunResult:
    pid, release = _spawn_parked(path, argv)

    def forward(signum: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)

    # The terminal sends SIGINT/SIGQUIT to the whole foreground group, CMD included:
    # agentwatch stays up to record how CMD reacts. SIGTERM/SIGHUP are passed on.
    previous = {sig: signal.signal(sig, handler) for sig, handler in (
        (signal.SIGINT, signal.SIG_IGN), (signal.SIGQUIT, signal.SIG_IGN),
        (signal.SIGTERM, forward), (signal.SIGHUP, forward))}
    try:
        try:
            session = collector.add_session(pid, os.getpid(), "run", argv)
        except BaseException:
            os.close(release)  # the parked child reads EOF and exits without exec'ing
            os.waitpid(pid, 0)
            raise
        if cgroup:
            session.cgroup = _session_cgroup(session.name, pid)
            problem = collector.session_cgroup_ready(session)
            if problem:
                print(f"agentwatch: {problem}", file=sys.stderr)
        os.write(release, b"g")
        os.close(release)
        status = None
        while status is None:
            collector.poll(poll_ms)
            wpid, wstatus = os.waitpid(pid, os.WNOHANG)
            if wpid == pid:
                status = wstatus
        collector.drain()
        exit_status = wait_status_to_exit(status)
        end = collector.end_session(session, exit_status)
        if session.cgroup is not None:
            err = session.cgroup.remove(timeout=0.5)
            if err:
                left = len(session.cgroup.procs())
                print(f"agentwatch: {err} ({left} processes of the session still in it)",
                      file=sys.stderr)
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
    return RunResult(exit_status=exit_status, session=session.name, events=end.events or 0,
                     lost=end.lost or 0, unwritten=collector.sink_dropped())


def own_config_paths(config_path: str | None) -> list[str]:
    """The config file as monitor_tamper protects it: its path, and the file a symlink
    names. The file only, not its directory: a config kept in a project (or in /tmp) would
    otherwise make the agent's own workspace untouchable; a rename or link over it names
    it, and is caught as well."""
    if not config_path:
        return []
    out = [os.path.abspath(config_path)]
    real = os.path.realpath(config_path)
    if real not in out:
        out.append(real)
    return out


def main(argv: list[str], events: str | None, detection: DetectionConfig | None = None,
         alerts: str | None = None, cgroup: bool = True,
         config_path: str | None = None, events_level: str = "interest") -> int:
    from service.paths import pinned_probe_config

    # Pinned probes, re-used when a previous run or daemon left them: no compile, no
    # detach (docs/service.md); a private load when a daemon reads them now.
    result = run(argv, events, config=pinned_probe_config(wait=0.0), detection=detection,
                 alerts=alerts, cgroup=cgroup, config_path=config_path,
                 events_level=events_level)
    lost = f", {result.lost} LOST" if result.lost else ", 0 lost"
    unwritten = f", {result.unwritten} NOT WRITTEN" if result.unwritten else ""
    print(f"agentwatch: session {result.session} ended: exit {result.exit_status}, "
          f"{result.events} events{lost}{unwritten}", file=sys.stderr)
    return result.exit_status
