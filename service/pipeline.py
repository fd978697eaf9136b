"""The collector: the probes, the ingest loop, sessions, detection and response composed.

`Collector` owns the loaded probes (probes/loader.py's `Probes`) and wires the layers:
collector/ingest.py reads the rings into events, collector/sessions.py keeps the sessions,
every event goes to the sinks and the live detectors (service/analysis.py), and each alert's
action is carried out by response/actions.py before the alert is written. It also serves
the control socket and other servers from its poll loop, and keeps the counts `agentwatch
status` and the metrics show.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from collector.decode import RecordDecoder
from collector.events import AlertEvent, Event, LossEvent, SessionEvent
from collector.ingest import Ingest, Stats
from collector.proctable import ProcessTable
from collector.sessions import DEFAULT_LAUNCHERS, Session, SessionError, SessionManager
from collector.summaries import Summaries
from detectors.config import Config as DetectionConfig
from probes import loader
from response import enforce
from response.actions import SessionActions, kernel_kill_alert
from response.cgroup import prune_stale
from response.responder import Responder
from service.analysis import Analyzer
from service.interest import InterestInstaller


class Sink(Protocol):
    def write(self, event: Event) -> None: ...
    def flush(self) -> None: ...
    def close(self) -> None: ...


class Collector:
    def __init__(self, sinks: Iterable[Sink] = (), config: loader.ProbeConfig | None = None,
                 on_event: Callable[[Event], None] | None = None,
                 launchers: Iterable[str] = DEFAULT_LAUNCHERS,
                 detection: DetectionConfig | None = None,
                 alert_sinks: Iterable[Sink] = (),
                 own_paths: Iterable[str] = (), events_level: str = "interest") -> None:
        self.sinks = list(sinks)
        self.own_paths = list(own_paths)  # config file, log directory: monitor_tamper's
        self.alert_sinks = list(alert_sinks)
        self.analyzer: Analyzer | None = None
        self.config = config or loader.ProbeConfig()
        self.on_event = on_event
        self.table = ProcessTable()
        if detection is not None:
            self.analyzer = Analyzer(detection, table=self.table, live=True,
                                     own_paths=self.own_paths)
        self.ingest = Ingest(self._emit, self.table, self.config)
        self.manager = SessionManager(self.ingest, self.table, self._emit, self.flush,
                                      launchers)
        # the kernel's interest filter: what no detector can use is counted, not sent
        # (collector/summaries.py, service/interest.py); events_level "all" sends all
        self.summaries = Summaries(self._emit, self.table)
        self.manager.summaries = self.summaries
        self.interest = InterestInstaller(self.summaries, events_level)
        self.actions = SessionActions(self.manager)
        self.ingest.on_kernel_kill = self.actions.kernel_killed
        self.ingest.on_session = self.manager.kernel_session
        # The same objects as the ingest's and the manager's: read on every event.
        self.stats: Stats = self.ingest.stats
        self.sessions: dict[str, Session] = self.manager.sessions
        self.bpf: Any = None  # probes.loader.Probes, from start() to close()
        self.policy = enforce.Policy()
        self.egress = enforce.Egress()
        self._egress_attacher: enforce.EgressAttacher | None = None
        self.control: Any = None  # service.control.ControlServer, when serving
        self.servers: list[Any] = []  # more things served from the poll loop (.serve())
        self.started = time.time()
        self.alert_counts: Counter[tuple[str, str]] = Counter()  # (detector, severity)
        self._alerted: set[tuple[str, str]] = set()  # (session, detector) alerted so far
        self._last_tick = 0.0
        self.adopted: list[Session] = []  # sessions found in re-used pinned maps

    # ------------------------------------------------------------------ the parts' state
    @property
    def decoder(self) -> RecordDecoder:
        return self.ingest.decoder

    @property
    def launchers(self) -> list[str]:
        return self.manager.launchers

    @property
    def responder(self) -> Responder | None:
        return self.actions.responder

    @property
    def kills(self) -> Counter[str]:
        return self.actions.kills

    @property
    def sessions_started(self) -> int:
        return self.manager.sessions_started

    @property
    def kernel_victims(self) -> dict[int, str]:
        return self.manager.kernel_victims

    # ------------------------------------------------------------------ lifecycle
    def start(self, adopt_launchers: bool = False) -> None:
        """Load the probes. With adopt_launchers, every exec of a launcher on the host
        (default: bwrap) starts a new session in the kernel (the daemon's mode)."""
        self.bpf = loader.load(self.config)
        self.ingest.open(self.bpf)
        self.summaries.open(self.bpf, self.decoder.boot_to_epoch)
        self.interest.start(self.bpf, self.analyzer.engine.config if self.analyzer else None)
        self.manager.start(self.bpf, adopt_launchers)
        self.actions.start()
        prune_stale()
        self.apply_policy()
        if self.bpf.pins is not None:
            self._take_over_pins(adopt_launchers)

    def _take_over_pins(self, adopt_sessions: bool) -> None:
        """Pinned probes: the sessions the kernel watches are adopted (the daemon, when it
        re-uses a previous reader's pins), the heartbeat is written and what fail_closed
        held while no one read is released."""
        from response.cgroup import CgroupError, SessionCgroup, parent_dir

        if adopt_sessions and self.bpf.pins.reused:
            self.adopted = self.manager.adopt_kernel_sessions()
            for session in self.adopted:
                with contextlib.suppress(CgroupError, OSError):
                    path = parent_dir() / session.name
                    if path.is_dir():
                        session.cgroup = SessionCgroup(path)
        self.ingest.heartbeat()
        self.manager.thaw_held(force=True)

    def reload(self, detection: DetectionConfig) -> str:
        """Apply a new configuration (already validated) without losing sessions: a new
        detector engine over the same process table and sessions (detectors' per-session
        counters start again), and the kernel's rules rewritten."""
        old = self.analyzer
        self.analyzer = Analyzer(detection, table=self.table, live=True,
                                 own_paths=self.own_paths)
        if old is not None:
            self._alerts(old.finish())  # close the old engine's fold windows
            self.analyzer.sessions.update(old.sessions)
        self.interest.reload(detection)
        self.apply_policy()
        return f"mode {detection.mode}; {self.policy.describe()}; {self.egress.describe()}"

    def ring_fill(self) -> float | None:
        """How full the events ring buffer is now (0..1)."""
        return self.ingest.ring_fill()

    def apply_policy(self) -> enforce.Policy:
        """Write the detection config's in-kernel enforcement into the probes' maps."""
        detection = self.analyzer.engine.config if self.analyzer is not None else None
        self.policy = enforce.policy_for(detection) if detection else enforce.Policy()
        enforce.apply(self.bpf, self.policy)
        self.egress = enforce.egress_for(detection) if detection else enforce.Egress()
        enforce.apply_egress(self.bpf, self.egress)
        return self.policy

    def session_cgroup_ready(self, session: Session) -> str | None:
        """A session got a cgroup of its own: attach the egress programs (enforce mode).
        Returns why they could not be attached, or None."""
        if session.cgroup is None or not self.egress.enabled:
            return None
        if self._egress_attacher is None:
            self._egress_attacher = enforce.EgressAttacher(self.bpf)
        try:
            fd = session.cgroup.open_fd()
        except OSError as e:
            return f"cannot open {session.cgroup.path}: {e.strerror}"
        try:
            self._egress_attacher.attach(fd)
        except Exception as e:  # noqa: BLE001 - BCC raises bare Exception
            return f"egress programs not attached: {e}"
        finally:
            os.close(fd)
        session.egress = True
        return None

    def set_adopt_launchers(self, adopt: bool) -> None:
        """Turn launcher adoption (a new session per launcher exec) on or off."""
        self.manager.set_adopt_launchers(adopt)

    def serve_control(self, reload: Callable[[], tuple[bool, str]] | None = None,
                      role: str = "run") -> str | None:
        """Serve the control socket (`agentwatch session ...`); why not, or None."""
        from service.control import ControlError, ControlServer

        try:
            self.control = ControlServer(self, reload=reload, role=role)
        except ControlError as e:
            return str(e)
        return None

    def close(self) -> None:
        if self.bpf is not None:
            self.summaries.flush()  # what was counted since the last tick
        if self.control is not None:
            self.control.close()
            self.control = None
        if self.analyzer is not None:
            self._alerts(self.analyzer.finish())
        for sink in self.sinks + self.alert_sinks:
            sink.close()
        self.ingest.close()
        self.manager.close()
        if self.bpf is not None:
            self.bpf.close()
            self.bpf = None

    # ------------------------------------------------------------------ sessions
    def add_session(self, root_pid: int, ppid: int, kind: str, argv: list[str]) -> Session:
        """Watch `root_pid` and, through the kernel's fork hook, all its descendants."""
        return self.manager.add_session(root_pid, ppid, kind, argv)

    def attach(self, pid: int, kind: str = "attach") -> Session:
        """Adopt a running process and all its descendants as a session
        (collector/sessions.py)."""
        return self.manager.attach(pid, kind)

    def readopt(self, gap_from_ns: int | None = None) -> list[Session]:
        """After a restart: adopt the sandboxes still running (the outermost process of
        each launcher tree found in /proc) as launcher sessions, each with an alert that
        its events between the two runs were not seen."""
        found, comms = self.manager.running_launchers()
        adopted = []
        now = time.time_ns()
        for pid in found:
            try:
                session = self.attach(pid, kind="launcher")
            except SessionError:
                continue  # gone, or adopted by the kernel meanwhile
            adopted.append(session)
            since = "the previous agentwatch stopped" if gap_from_ns is None else \
                time.strftime("%H:%M:%S", time.localtime(gap_from_ns / 1e9))
            members = len(self.session_members(session.id))  # one walk of `watched`
            self._alerts([AlertEvent(
                ts=now, session=session.name, pid=pid, comm=comms.get(pid, ""),
                detector="event_loss", title="Events Lost Between Kernel And Collector",
                severity="high",
                action={"requested": "alert", "taken": "alert", "result": "alerted"},
                summary=f"Sandbox re-adopted after agentwatch restarted: its events since "
                        f"{since} were not seen | pid={pid} "
                        f"processes={members}",
                key="restart_gap",
                fields={"gap_from_ns": gap_from_ns, "gap_to_ns": now, "root_pid": pid,
                        "processes": members})])
        return adopted

    def end_session(self, session: Session, exit_status: int | None) -> SessionEvent:
        return self.manager.end_session(session, exit_status)

    def session_members(self, sid: int) -> list[int]:
        """Thread groups of session `sid` alive now, from the kernel's `watched` map."""
        return self.manager.session_members(sid)

    def session_of(self, pid: int) -> Session | None:
        """The session `pid` belongs to (collector/sessions.py)."""
        return self.manager.session_of(pid)

    def is_member(self, pid: int, sid: int) -> bool:
        return self.manager.is_member(pid, sid)

    # ------------------------------------------------------------------ response
    def kill_session(self, session: Session) -> str:
        return self.actions.kill_session(session)

    def freeze_session(self, session: Session) -> str:
        return self.actions.freeze_session(session)

    def thaw_session(self, session: Session) -> str:
        return self.actions.thaw_session(session)

    # ------------------------------------------------------------------ event flow
    def _emit(self, event: Event) -> None:
        if isinstance(event, SessionEvent) and event.phase == "start":
            self.interest.session_started(event)  # before any of its opens is judged
        self.stats.events[event.kind] += 1
        session = self.sessions.get(event.session) if event.session else None
        if session is not None:
            session.events += 1
        if self.on_event is not None:
            self.on_event(event)
        for sink in self.sinks:
            sink.write(event)
        if self.analyzer is not None:
            alerts = self.analyzer.feed(event)
            if event.kernel_kill is not None and event.session is not None and \
                    (event.session, event.kernel_kill) not in self._alerted and \
                    not any(a.detector == event.kernel_kill for a in alerts):
                alerts.append(kernel_kill_alert(event, self.table))
            self._alerts(alerts)
        if isinstance(event, SessionEvent) and event.phase == "end" and event.session:
            self.interest.session_ended(event)

    def _alerts(self, alerts: list[AlertEvent]) -> None:
        for alert in alerts:
            self.actions.respond(alert)
            self.alert_counts[(alert.detector, alert.severity)] += 1
            if alert.session is not None:
                self._alerted.add((alert.session, alert.detector))
            self.stats.events["alert"] += 1
            if self.on_event is not None:
                self.on_event(alert)
            for sink in self.alert_sinks:
                sink.write(alert)
                sink.flush()  # alerts are rare: each is on disk before anything else

    def poll(self, timeout_ms: int = 100) -> None:
        self.ingest.poll(timeout_ms)
        if self.control is not None:
            self.control.serve()
        for server in self.servers:
            server.serve()
        now = time.monotonic()
        if now - self._last_tick >= 1.0:  # once a second: losses, attached sessions' end
            self._last_tick = now
            self.check_losses()
            self.summaries.flush()
            self.manager.end_attached_sessions()
            self.manager.thaw_held()  # fail_closed: what the kernel held, if anything
            if self.analyzer is not None:
                self._alerts(self.analyzer.engine.tick(time.time_ns()))

    def drain(self, max_seconds: float = 2.0) -> None:
        """Consume the records in the ring buffers, until they are empty or, under a
        flood that keeps them full, for at most `max_seconds`."""
        self.ingest.drain(max_seconds)

    def flush(self) -> None:
        for sink in self.sinks + self.alert_sinks:
            sink.flush()

    def interest_status(self) -> dict[str, Any]:
        """The interest filter: its level, the latest plan, the opens summarised so far."""
        plan = self.interest.last
        return {"level": self.interest.level,
                "plan": plan.describe() if plan is not None else
                ("interest filter off: no detection" if self.analyzer is None else
                 "no session yet" if self.interest.level == "interest" else
                 "interest filter off: --events-level all"),
                "summarised": self.summaries.emitted, "summaries": self.summaries.events}

    def sink_dropped(self) -> int:
        """Events a sink could not write (full disk, closed pipe): reported, not hidden."""
        return sum(int(getattr(sink, "dropped", 0)) for sink in self.sinks + self.alert_sinks)

    # ------------------------------------------------------------------ losses
    def read_lost(self) -> Counter[str]:
        return self.ingest.read_lost()

    def check_losses(self) -> LossEvent | None:
        """Read the kernel's loss counters; a `loss` event when they grew."""
        return self.ingest.check_losses()
