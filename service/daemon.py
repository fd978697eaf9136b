"""`agentwatch daemon` and `agentwatch attach`: long-running collectors.

The daemon turns on launcher adoption in the kernel: every exec of a configured sandbox
launcher (default `bwrap`, so every bubblewrap sandbox on the host, sandbox-runtime's
included) starts a session with a setup phase. `attach` adopts one running tree. Both run
in the foreground until SIGTERM or SIGINT (attach: or until its session ends), then drain
the ring buffer and flush every sink before exiting.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from types import FrameType

from collector.events import Event, SessionEvent
from collector.sessions import DEFAULT_LAUNCHERS
from detectors.config import Config as DetectionConfig
from probes import kernel
from service.metrics import MetricsServer
from service.pipeline import Collector, Sink
from service.sinks import HumanAlertSink, JsonlSink, SinkError
from service.stream import StreamError, StreamServer, daemon_lock


def _announce(event: Event) -> None:
    if isinstance(event, SessionEvent):
        if event.phase == "start":
            cmd = " ".join(event.argv)[:200].encode("unicode_escape").decode()
            print(f"agentwatch: session {event.session} started ({event.session_kind}, "
                  f"pid {event.root_pid}): {cmd}", file=sys.stderr, flush=True)
        else:
            print(f"agentwatch: session {event.session} ended: exit {event.exit_status}, "
                  f"{event.events} events, {event.lost} lost", file=sys.stderr, flush=True)


def _enforcement(collector: Collector) -> str:
    config = collector.analyzer.engine.config if collector.analyzer else None
    mode = config.mode if config else "monitor"
    return f"mode {mode}; {collector.policy.describe()}; {collector.egress.describe()}"


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
PIN_WAIT = 10.0  # seconds the daemon waits for a `run` that reads the pinned probes


def _pins(collector: Collector) -> str:
    pins = collector.bpf.pins
    if pins is None:
        return ""
    if not pins.reused:
        return f"; probes pinned (build {pins.build})"
    return (f"; pinned probes re-used (build {pins.build}, nothing compiled or attached), "
            f"{len(collector.adopted)} sessions continued")


class _Stop:
    """SIGTERM/SIGINT: stop (drain, flush, exit). SIGHUP: reload, when a handler is given,
    else stop.

    With `session_of` (the daemon), the three signals are blocked and taken from the loop
    (`take()`, sigtimedwait) with their sender's pid: a signal sent by a sandboxed process
    (a session's member) is ignored and reported, so that a sandbox cannot stop the daemon
    or make it exit 0 (which a unit's Restart=on-failure would not restart)."""

    def __init__(self, hup_reloads: bool = False,
                 session_of: Callable[[int], object | None] | None = None) -> None:
        self.requested = False
        self.reload = False
        self.hup_reloads = hup_reloads
        self.session_of = session_of
        self.ignored: list[tuple[int, int, object]] = []  # (signal, sender, its session)
        self._old: dict[int, object] = {}
        self._mask: set[int | signal.Signals] | None = None

    def __enter__(self) -> _Stop:
        if self.session_of is not None:
            self._mask = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
            return self
        for sig in STOP_SIGNALS:
            self._old[sig] = signal.signal(sig, self._handler)
        return self

    def _handler(self, signum: int, _frame: FrameType | None) -> None:
        if signum == signal.SIGHUP and self.hup_reloads:
            self.reload = True
        else:
            self.requested = True

    def take(self) -> None:
        """The stop signals pending now, each judged by who sent it."""
        if self.session_of is None:
            return
        while True:
            info = signal.sigtimedwait(STOP_SIGNALS, 0)
            if info is None:
                return
            session = self.session_of(info.si_pid)
            if session is not None:
                self.ignored.append((info.si_signo, info.si_pid, session))
                print(f"agentwatch: ignored {signal.Signals(info.si_signo).name} from pid "
                      f"{info.si_pid}, a process of session "
                      f"{getattr(session, 'name', session)}", file=sys.stderr, flush=True)
                continue
            self._handler(info.si_signo, None)

    def __exit__(self, *_exc: object) -> None:
        if self._mask is not None:
            # taken, not left pending: unblocked, one would kill us with its default action
            while signal.sigtimedwait(STOP_SIGNALS, 0) is not None:
                pass
            signal.pthread_sigmask(signal.SIG_SETMASK, self._mask)
        for sig, old in self._old.items():
            signal.signal(sig, old)  # type: ignore[arg-type]


def _sinks(events: str | None) -> list[Sink]:
    return [JsonlSink(events)] if events else []


def _alert_sinks(alerts: str | None) -> list[Sink]:
    return [JsonlSink(alerts) if alerts else HumanAlertSink()]


def daemon(events: str | None, launchers: Iterable[str] = DEFAULT_LAUNCHERS,
           detection: DetectionConfig | None = None, alerts: str | None = None,
           log_dir: str | None = None, log_max_bytes: int = 100 << 20,
           log_keep: int = 5, config_path: str | None = None,
           mode_override: str | None = None, metrics: str | None = None,
           events_level: str = "interest") -> int:
    """With `log_dir`: events and alerts to DIR/events.jsonl and DIR/alerts.jsonl, rotated
    at `log_max_bytes` keeping `log_keep` old files, and a one-line summary of each alert
    on stdout (for journald)."""
    sinks = _sinks(events)
    alert_sinks: list[Sink] = []
    if log_dir is not None:
        try:
            os.makedirs(log_dir, mode=0o750, exist_ok=True)
        except OSError as e:
            raise SinkError(f"cannot make log directory {log_dir}: {e.strerror}") from None
        sinks.append(JsonlSink(os.path.join(log_dir, "events.jsonl"), log_max_bytes,
                               log_keep))
        alert_sinks.append(JsonlSink(os.path.join(log_dir, "alerts.jsonl"), log_max_bytes,
                                     log_keep))
        alert_sinks.append(HumanAlertSink(sys.stdout, prefix=""))  # journald
        if alerts is not None:
            alert_sinks.append(JsonlSink(alerts))
    else:
        alert_sinks = _alert_sinks(alerts)
    streams: list[StreamServer] = []
    try:
        lock_fd = daemon_lock()
    except StreamError as e:
        raise SinkError(str(e)) from None
    try:
        streams = [StreamServer("alerts"), StreamServer("events")]
    except StreamError as e:
        for st in streams:
            st.close()
        raise SinkError(str(e)) from None
    sinks.append(streams[1])
    alert_sinks.append(streams[0])
    from service.paths import pinned_probe_config
    from service.run import level_probe_config, own_config_paths

    own = [*own_config_paths(config_path), *([log_dir] if log_dir else [])]

    # Pinned probes (docs/service.md): kernel rules and the watched set outlive this
    # process; a restarted daemon re-uses them. Waits a while for a `run` reading them.
    collector = Collector(sinks, level_probe_config(pinned_probe_config(wait=PIN_WAIT),
                                                    events_level),
                          launchers=launchers, on_event=_announce, detection=detection,
                          alert_sinks=alert_sinks, own_paths=own, events_level=events_level)
    collector.servers.extend(streams)
    alive = kernel.state_dir() / "daemon.alive"
    gap_from = _read_alive(alive)

    def reload() -> tuple[bool, str]:
        from detectors.config import ConfigError, load

        if config_path is None:
            return False, "the daemon runs on built-in defaults (no --config): nothing to reload"
        try:
            new = load(config_path)
        except ConfigError as e:
            return False, f"refused, the configuration in force is unchanged: {e}"
        if mode_override is not None:
            new.mode = mode_override
        return True, f"reloaded {config_path}: {collector.reload(new)}"

    notify = Notifier()
    with _Stop(hup_reloads=True, session_of=collector.session_of) as stop:
        try:
            t0 = time.monotonic()
            collector.start(adopt_launchers=True)
            if collector.bpf.pin_note:
                print(f"agentwatch: {collector.bpf.pin_note}", file=sys.stderr, flush=True)
            adopted = collector.readopt(gap_from)
            problem = collector.serve_control(reload=reload, role="daemon")
            if problem:
                print(f"agentwatch: {problem}", file=sys.stderr, flush=True)
            if metrics is not None:
                server = MetricsServer(collector, metrics)
                collector.servers.append(server)
                print(f"agentwatch: metrics on http://{server.address[0]}:"
                      f"{server.address[1]}/metrics", file=sys.stderr, flush=True)
            print(f"agentwatch: daemon ready in {time.monotonic() - t0:.1f} s, adopting "
                  f"launchers: {', '.join(collector.launchers)}; {_enforcement(collector)}"
                  + (f"; re-adopted {len(adopted)} running sandboxes" if adopted else "")
                  + _pins(collector),
                  file=sys.stderr, flush=True)
            notify.send(f"READY=1\nSTATUS=watching; {_enforcement(collector)}")
            last_alive = 0.0
            while not stop.requested:
                collector.poll(100)
                stop.take()
                if stop.reload:
                    stop.reload = False
                    _ok, text = reload()
                    print(f"agentwatch: SIGHUP: {text}", file=sys.stderr, flush=True)
                if time.monotonic() - last_alive >= 1.0:
                    last_alive = time.monotonic()
                    _write_alive(alive)
                    notify.send("WATCHDOG=1")
            notify.send("STOPPING=1")
            collector.drain()
            collector.check_losses()
        finally:
            collector.close()
            _write_alive(alive)
            os.close(lock_fd)
            notify.close()
    lost = collector.stats.lost
    unwritten = collector.sink_dropped()
    print(f"agentwatch: daemon stopped: {sum(collector.stats.events.values())} events, "
          f"{lost} lost" + (f", {unwritten} NOT WRITTEN" if unwritten else ""),
          file=sys.stderr)
    return 0


class Notifier:
    """systemd's notify protocol (sd_notify, without libsystemd): READY=1 once the probes
    are loaded, WATCHDOG=1 from the loop about once a second, STOPPING=1. With the unit's
    WatchdogSec=, a daemon that stops pinging (stopped by SIGSTOP, or stuck) is killed and
    restarted by systemd. A no-op without $NOTIFY_SOCKET."""

    def __init__(self) -> None:
        import socket

        addr = os.environ.get("NOTIFY_SOCKET", "")
        self.addr = "\0" + addr[1:] if addr.startswith("@") else addr
        self.sock: socket.socket | None = None
        if self.addr:
            try:
                self.sock = socket.socket(socket.AF_UNIX,
                                          socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            except OSError:
                self.sock = None

    def send(self, text: str) -> None:
        if self.sock is None:
            return
        # OSError: systemd gone or the socket full: nothing to do about it here
        with contextlib.suppress(OSError):
            self.sock.sendto(text.encode(), self.addr)

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def _read_alive(path: Path) -> int | None:
    """When the previous daemon was last seen alive (ns since the epoch), if known."""
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _write_alive(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(str(time.time_ns()))
        os.replace(tmp, path)
    except OSError:
        pass


def attach(pid: int, events: str | None, detection: DetectionConfig | None = None,
           alerts: str | None = None, config_path: str | None = None) -> int:
    from service.run import own_config_paths

    collector = Collector(_sinks(events), on_event=_announce, detection=detection,
                          alert_sinks=_alert_sinks(alerts),
                          own_paths=own_config_paths(config_path))
    with _Stop() as stop:
        try:
            collector.start()
            problem = collector.serve_control()
            if problem:
                print(f"agentwatch: {problem}", file=sys.stderr, flush=True)
            session = collector.attach(pid)
            while not stop.requested and not session.ended:
                collector.poll(100)
            collector.drain()
            if not session.ended:
                collector.end_session(session, None)
        finally:
            collector.close()
    return 0
