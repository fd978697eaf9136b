"""The collector: ring buffer -> decode -> process table -> sinks, plus loss accounting.

It owns the loaded BPF object and the sessions. A session starts by writing its root pid
into the kernel's `watched` map; the kernel then adds every descendant at fork time.
Every record the kernel could not deliver is counted there (per cause) and reported here
as a `loss` event and in each session's end summary.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import secrets
import select
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from collector import ringbuf
from collector.decode import LOST_NAMES, DecodeError, RecordDecoder, session_name
from collector.events import AlertEvent, Event, ExecEvent, LossEvent, SessionEvent, one_line
from collector.proctable import (
    ProcessTable,
    proc_argv,
    proc_ppid,
    proc_stats,
    same_process,
)
from detectors.config import Config as DetectionConfig
from probes import loader
from response import enforce
from response.cgroup import SessionCgroup, prune_stale
from response.responder import KillReport, Responder
from service.analysis import Analyzer

SESSION_KIND_CODES = {"run": 1, "launcher": 2, "attach": 3}
DEFAULT_LAUNCHERS = ("bwrap",)
MAX_ENDED_SESSIONS = 1024
ADOPT_LAUNCHERS_SLOT = 0  # AW_CFG_ADOPT_LAUNCHERS
POLL_BUDGET = 4096  # records handled per poll before the loop gets control back
# While records flow, poll() waits at most this long: the probes wake the reader at most
# once per 250 µs per CPU (AW_WAKE_NS in probes/include/agentwatch.h) and send the records
# in between without a wake-up, so this bounds how long such a record can wait. An idle
# collector waits the caller's full timeout: the first record after a quiet spell wakes it.
ACTIVE_POLL_MS = 1


class SessionError(RuntimeError):
    """A session could not be started (the message says why)."""


class Sink(Protocol):
    def write(self, event: Event) -> None: ...
    def flush(self) -> None: ...
    def close(self) -> None: ...


@dataclass
class Session:
    id: int
    name: str
    kind: str
    root_pid: int
    argv: list[str]
    started_ns: int
    events: int = 0
    lost_at_start: int = 0
    ended: bool = False
    cgroup: SessionCgroup | None = None
    state: str = "running"            # running | frozen | killed
    kill: KillReport | None = None     # the kill that ended it
    egress: bool = False               # cgroup egress programs attached
    kernel_live: bool = True           # the kernel counts its processes and ends it


@dataclass
class Stats:
    events: Counter[str] = field(default_factory=Counter)
    decode_errors: int = 0
    lost_total: Counter[str] = field(default_factory=Counter)

    @property
    def lost(self) -> int:
        return sum(self.lost_total.values())


class Collector:
    def __init__(self, sinks: Iterable[Sink] = (), config: loader.ProbeConfig | None = None,
                 on_event: Callable[[Event], None] | None = None,
                 launchers: Iterable[str] = DEFAULT_LAUNCHERS,
                 detection: DetectionConfig | None = None,
                 alert_sinks: Iterable[Sink] = (),
                 own_paths: Iterable[str] = ()) -> None:
        self.sinks = list(sinks)
        self.own_paths = list(own_paths)  # config file, log directory: monitor_tamper's
        self.alert_sinks = list(alert_sinks)
        self.analyzer: Analyzer | None = None
        self.launchers = list(launchers)
        self.config = config or loader.ProbeConfig()
        self.on_event = on_event
        self.decoder = RecordDecoder()
        self.table = ProcessTable()
        if detection is not None:
            self.analyzer = Analyzer(detection, table=self.table, live=True,
                                     own_paths=self.own_paths)
        self.stats = Stats()
        self.sessions: dict[str, Session] = {}
        self._ended: deque[str] = deque()  # ended sessions, oldest first (kept for late events)
        self.bpf: Any = None  # probes.loader.Probes, from start() to close()
        self.responder: Responder | None = None
        self.policy = enforce.Policy()
        self.egress = enforce.Egress()
        self._egress_attacher: enforce.EgressAttacher | None = None
        self.control: Any = None  # service.control.ControlServer, when serving
        self.servers: list[Any] = []  # more things served from the poll loop (.serve())
        self.started = time.time()
        self.alert_counts: Counter[tuple[str, str]] = Counter()  # (detector, severity)
        self.kills: Counter[str] = Counter()  # by: "kernel" (processes), "user space"
        self.sessions_started = 0
        self._alerted: set[tuple[str, str]] = set()  # (session, detector) alerted so far
        self._callback_error: BaseException | None = None
        self._last_tick = 0.0
        self._budget = POLL_BUDGET
        self._active = False  # the last poll handled records: poll again soon
        self._enforced_mgr: Any = None
        # pids the kernel killed, and their sessions: a signal such a process sent to
        # agentwatch as it died must still be known as a session's (session_of)
        self.kernel_victims: OrderedDict[int, str] = OrderedDict()
        self._lib: Any = None
        self._reader: ringbuf.RingReader | None = None  # the events ring, read in bulk
        self._epoll: select.epoll | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self, adopt_launchers: bool = False) -> None:
        """Load the probes. With adopt_launchers, every exec of a launcher on the host
        (default: bwrap) starts a new session in the kernel (the daemon's mode)."""
        self.bpf = loader.load(self.config)
        self._open_rings()
        table = self.bpf[b"launchers"]
        for name in self.launchers:
            raw = name.encode()
            if not raw or len(raw) > 15 or b"/" in raw:
                raise SessionError(f"launcher name {name!r}: a command name (comm) of 1 to "
                                   "15 bytes without '/' is expected")
            key = table.Key()
            key.name = raw
            table[key] = ctypes.c_uint32(1)
        self.set_adopt_launchers(adopt_launchers)
        self.responder = Responder(self.session_members, self.is_member)
        prune_stale()
        self.apply_policy()

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
        self.apply_policy()
        return f"mode {detection.mode}; {self.policy.describe()}; {self.egress.describe()}"

    def ring_fill(self) -> float | None:
        """How full the events ring buffer is now (0..1), from its producer and consumer
        positions (the pages BPF_RINGBUF maps share with user space)."""
        import mmap

        try:
            table = self.bpf[b"events"]
            fd = table.map_fd
            size = self.config.ringbuf_pages * mmap.PAGESIZE
            with mmap.mmap(fd, mmap.PAGESIZE, mmap.MAP_SHARED, mmap.PROT_READ, offset=0) as c, \
                    mmap.mmap(fd, mmap.PAGESIZE, mmap.MAP_SHARED, mmap.PROT_READ,
                              offset=mmap.PAGESIZE) as p:
                cons = int.from_bytes(c[:8], "little")
                prod = int.from_bytes(p[:8], "little")
        except (OSError, ValueError, KeyError):
            return None
        return max(0.0, min(1.0, (prod - cons) / size)) if size else None

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

    def _open_rings(self) -> None:
        """The events ring is read in bulk through its pages (collector/ringbuf.py) where the
        machine allows it, else through BCC's callback; the enforced ring through a BCC
        reader of its own (_open_enforced_first). One epoll waits on both."""
        events, enforced = self.bpf[b"events"], self.bpf[b"enforced"]
        if ringbuf.supported():
            self._reader = ringbuf.RingReader(events.map_fd,
                                              self.config.ringbuf_pages * mmap.PAGESIZE)
            self._epoll = select.epoll()
            self._epoll.register(events.map_fd, select.EPOLLIN)
            self._epoll.register(enforced.map_fd, select.EPOLLIN)
        else:
            events.open_ring_buffer(self._on_record)
            enforced.open_ring_buffer(self._on_record)  # wakes poll() up
        self._open_enforced_first()

    def _open_enforced_first(self) -> None:
        """A second consumer of the `enforced` ring, drained before every poll: BCC's one
        manager serves its rings in a fixed order and stops at the events ring's budget,
        so under a flood the kernel's kill records could otherwise wait behind it."""
        from bcc.libbcc import _RINGBUF_CB_TYPE, lib

        def on_enforced(_ctx: Any, data: Any, size: int) -> int:
            self._handle_record(data, size)
            return 0

        self._enforced_cb = _RINGBUF_CB_TYPE(on_enforced)  # kept: ctypes must not free it
        self._enforced_mgr = lib.bpf_new_ringbuf(self.bpf[b"enforced"].map_fd,
                                                 self._enforced_cb, None)
        self._lib = lib

    def _consume_enforced(self) -> None:
        if self._enforced_mgr:
            self._lib.bpf_consume_ringbuf(self._enforced_mgr)

    def set_adopt_launchers(self, adopt: bool) -> None:
        """Turn launcher adoption (a new session per launcher exec) on or off."""
        self.bpf[b"config"][ctypes.c_int(ADOPT_LAUNCHERS_SLOT)] = ctypes.c_uint64(
            1 if adopt else 0)

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
        if self.control is not None:
            self.control.close()
            self.control = None
        if self.analyzer is not None:
            self._alerts(self.analyzer.finish())
        for sink in self.sinks + self.alert_sinks:
            sink.close()
        if self._enforced_mgr:
            self._lib.bpf_free_ringbuf(self._enforced_mgr)
            self._enforced_mgr = None
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        if self._epoll is not None:
            self._epoll.close()
            self._epoll = None
        if self.bpf is not None:
            self.bpf.close()
            self.bpf = None

    # ------------------------------------------------------------------ sessions
    def _watch(self, pid: int, ppid: int, sid: int) -> None:
        watched = self.bpf[b"watched"]
        leaf = watched.Leaf()
        leaf.session = sid
        leaf.ppid = ppid
        watched[ctypes.c_uint32(pid)] = leaf

    def _new_session(self, kind: str, root_pid: int, live: int | None) -> tuple[int, str]:
        """A session id; with `live`, the kernel counts its processes and sends its end."""
        sid = secrets.randbits(63) | 1
        if live is None:
            return sid, session_name(sid)
        sessions = self.bpf[b"sessions"]
        entry = sessions.Leaf()
        entry.live = live
        entry.root = root_pid
        entry.kind = SESSION_KIND_CODES[kind]
        sessions[ctypes.c_uint64(sid)] = entry
        return sid, session_name(sid)

    def _register(self, sid: int, name: str, kind: str, root_pid: int, ppid: int,
                  argv: list[str], ts: int, uid: int, cwd: str | None) -> Session:
        session = Session(id=sid, name=name, kind=kind, root_pid=root_pid, argv=list(argv),
                          started_ns=ts, lost_at_start=self.stats.lost)
        self.sessions_started += 1
        self.sessions[name] = session
        root = self.table.add_root(root_pid, ppid, name, argv, ts, uid=uid, cwd=cwd)
        self._emit(SessionEvent(ts=ts, session=name, pid=root_pid, ppid=ppid, uid=uid,
                                phase="start", session_kind=kind, root_pid=root_pid,
                                argv=list(argv), ns=root.ns, cwd=cwd))
        return session

    def add_session(self, root_pid: int, ppid: int, kind: str, argv: list[str]) -> Session:
        """Watch `root_pid` and, through the kernel's fork hook, all its descendants."""
        sid, name = self._new_session(kind, root_pid, live=1)
        self._watch(root_pid, ppid, sid)
        return self._register(sid, name, kind, root_pid, ppid, argv, time.time_ns(),
                              os.getuid(), os.getcwd())

    def attach(self, pid: int, kind: str = "attach") -> Session:
        """Adopt a running process and all its descendants as a session.

        The root goes in first; from then on the kernel adds its new children at fork.
        Children forked before that are found by scanning /proc, again until a scan finds
        nothing new, so a tree that forks during the attach is still covered."""
        if pid in (0, 1, os.getpid()):
            raise SessionError(f"refusing to attach pid {pid}: not an agent's process tree")
        argv = proc_argv(pid)
        ppid = proc_ppid(pid)
        if ppid is None:
            raise SessionError(f"no such process: {pid}")
        if ctypes.c_uint32(pid) in self.bpf[b"watched"]:
            raise SessionError(f"pid {pid} is already watched in a session")
        # No kernel live count: user space cannot update it atomically against forks and
        # exits happening during the scan. poll() ends the session when `watched` holds
        # none of its processes any more.
        sid, name = self._new_session(kind, pid, live=None)
        watched: set[int] = set()
        for _ in range(100):
            todo = [p for p in descendants(pid) if p not in watched]
            if not todo:
                break
            for p in todo:  # parents before children: a fork in between is inherited
                parent = proc_ppid(p)
                if parent is None:
                    continue
                self._watch(p, parent, sid)
                watched.add(p)
        session = self._register(sid, name, kind, pid, ppid, argv, time.time_ns(),
                                 _proc_uid(pid), _readlink(f"/proc/{pid}/cwd"))
        session.kernel_live = False
        for p in watched - {pid}:
            parent = proc_ppid(p)
            self.table.add_member(p, parent if parent is not None else pid, name,
                                  proc_argv(p), time.time_ns())
        return session

    def readopt(self, gap_from_ns: int | None = None) -> list[Session]:
        """After a restart: adopt the sandboxes still running (the outermost process of
        each launcher tree found in /proc) as launcher sessions, each with an alert that
        its events between the two runs were not seen."""
        procs = proc_stats()
        launchers = set(self.launchers)
        found = []
        for pid, st in procs.items():
            if st.comm not in launchers or pid == os.getpid():
                continue
            p, outermost = st.ppid, True
            while p > 1:  # inside another launcher's tree: adopted with it
                parent = procs.get(p)
                if parent is None:
                    break
                if parent.comm in launchers:
                    outermost = False
                    break
                p = parent.ppid
            if outermost:
                found.append(pid)
        comms = {pid: st.comm for pid, st in procs.items()}
        adopted = []
        now = time.time_ns()
        for pid in sorted(found):
            try:
                session = self.attach(pid, kind="launcher")
            except SessionError:
                continue  # gone, or adopted by the kernel meanwhile
            adopted.append(session)
            since = "the previous agentwatch stopped" if gap_from_ns is None else \
                time.strftime("%H:%M:%S", time.localtime(gap_from_ns / 1e9))
            self._alerts([AlertEvent(
                ts=now, session=session.name, pid=pid, comm=comms.get(pid, ""),
                detector="event_loss", title="Events Lost Between Kernel And Collector",
                severity="high",
                action={"requested": "alert", "taken": "alert", "result": "alerted"},
                summary=f"Sandbox re-adopted after agentwatch restarted: its events since "
                        f"{since} were not seen | pid={pid} "
                        f"processes={len(self.session_members(session.id))}",
                key="restart_gap",
                fields={"gap_from_ns": gap_from_ns, "gap_to_ns": now, "root_pid": pid,
                        "processes": len(self.session_members(session.id))})])
        return adopted

    def end_session(self, session: Session, exit_status: int | None) -> SessionEvent:
        self.check_losses()
        session.ended = True
        ev = SessionEvent(ts=time.time_ns(), session=session.name, pid=session.root_pid,
                          phase="end", session_kind=session.kind, root_pid=session.root_pid,
                          argv=session.argv, exit_status=exit_status, events=session.events,
                          lost=self.stats.lost - session.lost_at_start)
        self._emit(ev)
        self.flush()
        self._ended.append(session.name)
        while len(self._ended) > MAX_ENDED_SESSIONS:  # a daemon runs for months
            old = self._ended.popleft()
            self.sessions.pop(old, None)
            self.table.roots.pop(old, None)
        return ev

    # ------------------------------------------------------------------ event flow
    def _emit(self, event: Event) -> None:
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
                alerts.append(self._kernel_kill_alert(event))
            self._alerts(alerts)

    def _kernel_kill_alert(self, event: Event) -> AlertEvent:
        """The kernel killed, and no detector said why (their views differ, e.g. an exe
        allowance only user space checks): the kill is still reported."""
        from detectors.base import REGISTRY

        did = event.kernel_kill or "unknown"
        spec = REGISTRY.get(did)
        what = getattr(event, "syscall", None) or event.kind
        path = getattr(event, "path", None) or getattr(event, "address", None)
        summary = f"Killed in the kernel at the entry of {what} by {event.comm}" + \
            (f" | path={path}" if path else "") + " (the user-space detector did not " \
            "flag this event)"
        return AlertEvent(
            ts=event.ts, session=event.session, pid=event.pid, tid=event.tid,
            ppid=event.ppid, uid=event.uid, gid=event.gid, comm=event.comm,
            cgroup=event.cgroup, detector=did, title=spec.spec.title if spec else did,
            severity="critical",
            action={"requested": "kill", "taken": "pending", "result": "pending"},
            summary=one_line(summary),
            key=f"kernel:{what}", event=orjson.loads(event.to_json()),
            ancestry=[p.brief() for p in self.table.ancestry(event.pid)])

    def _kernel_killed(self, event: Event) -> None:
        """The kernel killed a process at a call's entry: kill the rest of its session
        now, before the event goes through the detectors."""
        session = self.sessions.get(event.session or "")
        if session is None:
            return
        self.kernel_victims[event.pid] = session.name
        while len(self.kernel_victims) > MAX_ENDED_SESSIONS:
            self.kernel_victims.popitem(last=False)
        self.kills["kernel"] += 1
        if session.state != "killed" or self.session_members(session.id):
            self.kill_session(session)

    # ------------------------------------------------------------------ response
    def session_members(self, sid: int) -> list[int]:
        """Thread groups of session `sid` alive now, from the kernel's `watched` map."""
        return [int(k.value) for k, v in self.bpf[b"watched"].items()
                if int(v.session) == sid]

    def session_of(self, pid: int) -> Session | None:
        """The session `pid` belongs to: from the kernel's `watched` map, or (it may have
        just exited, e.g. killed by the kernel) from the process table."""
        if pid <= 0:
            return None
        # The kernel's kill record of a sender is in the `enforced` ring before its
        # signal is even sent (it is written at the call's entry): read it first. The
        # sender is then gone from `watched`, and under a flood the process table may
        # never have heard of it.
        self._consume_enforced()
        if pid in self.kernel_victims:
            return self.sessions.get(self.kernel_victims[pid])
        try:
            sid = int(self.bpf[b"watched"][ctypes.c_uint32(pid)].session)
        except (KeyError, TypeError):
            proc = self.table.get(pid)
            return self.sessions.get(proc.session) if proc and proc.session else None
        return next((s for s in self.sessions.values() if s.id == sid), None)

    def is_member(self, pid: int, sid: int) -> bool:
        try:
            return int(self.bpf[b"watched"][ctypes.c_uint32(pid)].session) == sid
        except KeyError:
            return False

    def kill_session(self, session: Session) -> str:
        if session.state == "killed" and session.kill is not None:
            if not self.session_members(session.id):
                return f"already killed: {session.kill.text()}"
        assert self.responder is not None
        report = self.responder.kill(session.id, session.cgroup)
        session.state, session.kill = "killed", report
        self.kills["user space"] += report.died
        return report.text()

    def freeze_session(self, session: Session) -> str:
        if session.state == "killed":
            return "not frozen: the session was killed"
        if session.state == "frozen":
            return "already frozen"
        assert self.responder is not None
        result = self.responder.freeze(session.id, session.cgroup)
        session.state = "frozen"
        return result + f"; `agentwatch session thaw {session.name}` or " \
                        f"`agentwatch session kill {session.name}` ends it"

    def thaw_session(self, session: Session) -> str:
        assert self.responder is not None
        result = self.responder.thaw(session.id, session.cgroup)
        if session.state == "frozen":
            session.state = "running"
        return result

    def _respond(self, alert: AlertEvent) -> None:
        """Carry out a pending freeze or kill (enforce mode) and say how it went."""
        action = alert.action
        requested = action.get("requested", "")
        trigger = alert.event or {}
        if trigger.get("kernel_deny") and requested != "kill" and not alert.folded:
            alert.action = {**action, "taken": "deny", "by": "kernel",
                            "result": "refused (EPERM) by the session's cgroup egress "
                                      "program before any packet left"}
            return
        if action.get("taken") != "pending":
            return
        session = self.sessions.get(alert.session or "")
        if session is None or self.responder is None:
            alert.action = {**action, "taken": "none",
                            "result": "not done: the session is not known to this collector"}
            return
        if trigger.get("kernel_kill") and requested == "kill":
            what = trigger.get("syscall") or trigger.get("kind")
            rest = session.kill.text() if session.kill else "nothing left to kill"
            alert.action = {**action, "taken": "kill", "by": "kernel",
                            "result": f"kernel: SIGKILL at the entry of {what} (pid "
                                      f"{trigger.get('pid')}); then user space: {rest}",
                            "pids": [trigger.get("pid"),
                                     *(session.kill.pids if session.kill else [])]}
            return
        try:
            if requested == "kill":
                result = self.kill_session(session)
            else:
                result = self.freeze_session(session)
        except Exception as e:  # noqa: BLE001 - the alert is written whatever happens
            alert.action = {**action, "taken": "none",
                            "result": f"FAILED: {type(e).__name__}: {e}"}
            return
        alert.action = {**action, "taken": requested, "by": "user space", "result": result}
        if requested == "kill" and session.kill is not None:
            alert.action["pids"] = list(session.kill.pids)  # whom it signalled: auditable

    def _alerts(self, alerts: list[AlertEvent]) -> None:
        for alert in alerts:
            self._respond(alert)
            self.alert_counts[(alert.detector, alert.severity)] += 1
            if alert.session is not None:
                self._alerted.add((alert.session, alert.detector))
            self.stats.events["alert"] += 1
            if self.on_event is not None:
                self.on_event(alert)
            for sink in self.alert_sinks:
                sink.write(alert)
                sink.flush()  # alerts are rare: each is on disk before anything else

    def _kernel_session(self, ev: SessionEvent) -> None:
        """Session records from the kernel: a launcher adopted, or a session's end."""
        name = ev.session or ""
        if ev.phase == "start":
            if name in self.sessions:
                return
            # The kernel could not know the root's parent: /proc tells, and _on_record fills
            # it into the root's events (the kernel entry is not rewritten: its phase flags
            # may change at any moment).
            # (unless the pid is another process's by now: then nothing from /proc)
            live = same_process(ev.root_pid, ev.ts)
            ppid = (proc_ppid(ev.root_pid) or 0) if live else 0
            self._register(int(name, 16), name, ev.session_kind, ev.root_pid, ppid,
                           proc_argv(ev.root_pid) if live else [], ev.ts, ev.uid,
                           _readlink(f"/proc/{ev.root_pid}/cwd") if live else None)
            return
        session = self.sessions.get(name)
        if session is None or session.ended or session.kind == "run" \
                or not session.kernel_live:
            return  # `agentwatch run` ends its sessions itself, with CMD's status
        root = self.table.get(session.root_pid)
        self.end_session(session, root.exit_status() if root else None)

    def _on_record(self, _ctx: Any, data: Any, size: int) -> int:
        """One ring-buffer record (BCC calls this through ctypes). Returns -1 when this
        poll's budget is spent: libbpf then stops (the record is consumed) and control
        comes back to the loop, which a steady flood would otherwise never give back."""
        self._handle_record(data, size)
        self._budget -= 1
        return -1 if self._budget <= 0 else 0

    def _handle_record(self, data: Any, size: int) -> None:
        self._handle_bytes(ctypes.string_at(data, size))

    def _handle_bytes(self, raw: bytes) -> None:
        # An exception must not escape into ctypes (it would print and drop it) nor stop a
        # batch: it is kept and re-raised by poll() in the caller's frame.
        try:
            event = self.decoder.decode(raw)
            if event.kernel_kill is not None:
                self._kernel_killed(event)
            if isinstance(event, SessionEvent):
                self._kernel_session(event)
                return
            proc = self.table.observe(event)
            if proc is not None:
                if event.ppid == 0:  # an adopted launcher's first records: the kernel
                    event.ppid = proc.ppid  # could not know its parent, /proc did
                if isinstance(event, ExecEvent) and event.ret == 0:
                    event.exe, event.cwd, event.ns = proc.exe, proc.cwd, proc.ns
            self._emit(event)
        except DecodeError:
            self.stats.decode_errors += 1
        except BaseException as e:  # noqa: BLE001
            if self._callback_error is None:
                self._callback_error = e

    def poll(self, timeout_ms: int = 100) -> None:
        self._budget = POLL_BUDGET
        self._consume_enforced()
        timeout = min(timeout_ms, ACTIVE_POLL_MS) if self._active else timeout_ms
        if self._reader is not None and self._epoll is not None:
            if not self._reader.pending():
                self._epoll.poll(timeout / 1000)
            self._consume_enforced()
            self._budget -= self._reader.read(self._handle_bytes, self._budget)
        else:
            self.bpf.bcc.ring_buffer_poll(timeout)
            if self._budget > 0:
                # epoll reports the ring only after a wake-up: records sent without one
                # (BPF_RB_NO_WAKEUP) are read here
                self.bpf.bcc.ring_buffer_consume()
        self._active = self._budget < POLL_BUDGET
        self._consume_enforced()
        if self._callback_error is not None:
            err, self._callback_error = self._callback_error, None
            raise err
        if self.control is not None:
            self.control.serve()
        for server in self.servers:
            server.serve()
        now = time.monotonic()
        if now - self._last_tick >= 1.0:  # once a second: losses, attached sessions' end
            self._last_tick = now
            self.check_losses()
            self._end_attached_sessions()
            if self.analyzer is not None:
                self._alerts(self.analyzer.engine.tick(time.time_ns()))

    def _end_attached_sessions(self) -> None:
        """Attached sessions end when the kernel's `watched` map has none of their
        processes left (the map is the truth: exit events can be lost). So do launcher
        sessions whose end record was lost to a full ring (a `session` loss): checked
        only once such a loss was counted, and only after a drain found no end."""
        lost_ends = self.stats.lost_total.get("session", 0) > 0
        active = {s.id: s for s in self.sessions.values() if not s.ended and (
            not s.kernel_live or (lost_ends and s.kind == "launcher"))}
        if not active:
            return
        alive = {int(v.session) for v in self.bpf[b"watched"].values()}
        gone = [s for sid, s in active.items() if sid not in alive]
        if gone:
            self.drain()
        for session in gone:
            if session.ended:
                continue  # its end record was in the ring after all
            root = self.table.get(session.root_pid)
            self.end_session(session, root.exit_status() if root else None)

    def drain(self, max_seconds: float = 2.0) -> None:
        """Consume the records in the ring buffers, until they are empty or, under a
        flood that keeps them full, for at most `max_seconds`."""
        deadline = time.monotonic() + max_seconds
        while True:
            self._budget = POLL_BUDGET
            self._consume_enforced()
            if self._reader is not None:
                self._budget -= self._reader.read(self._handle_bytes, self._budget)
            else:
                self.bpf.bcc.ring_buffer_consume()
            if self._budget > 0 or time.monotonic() > deadline \
                    or self._callback_error is not None:
                break
        if self._callback_error is not None:
            err, self._callback_error = self._callback_error, None
            raise err

    def flush(self) -> None:
        for sink in self.sinks + self.alert_sinks:
            sink.flush()

    def sink_dropped(self) -> int:
        """Events a sink could not write (full disk, closed pipe): reported, not hidden."""
        return sum(int(getattr(sink, "dropped", 0)) for sink in self.sinks + self.alert_sinks)

    # ------------------------------------------------------------------ losses
    def read_lost(self) -> Counter[str]:
        counts: Counter[str] = Counter()
        for slot, n in enumerate(loader.read_lost(self.bpf)):
            if n:
                counts[LOST_NAMES.get(slot, f"slot{slot}")] += n
        return counts

    def check_losses(self) -> LossEvent | None:
        """Read the kernel's loss counters; a `loss` event when they grew."""
        current = self.read_lost()
        if self.stats.decode_errors:
            current["undecodable"] = self.stats.decode_errors
        delta = {k: v - self.stats.lost_total.get(k, 0) for k, v in current.items()
                 if v != self.stats.lost_total.get(k, 0)}
        if not delta:
            return None
        self.stats.lost_total = current
        ev = LossEvent(ts=time.time_ns(), lost=delta, total=dict(current))
        self._emit(ev)
        return ev


def _readlink(path: str) -> str | None:
    try:
        return os.readlink(path)
    except OSError:
        return None


def _proc_uid(pid: int) -> int:
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return 0


def descendants(root: int) -> list[int]:
    """root and every descendant alive now, parents before children (from /proc)."""
    children: dict[int, list[int]] = {}
    for pid, st in proc_stats().items():
        children.setdefault(st.ppid, []).append(pid)
    order, queue = [], [root]
    while queue:
        pid = queue.pop(0)
        if pid in order:
            continue
        order.append(pid)
        queue.extend(children.get(pid, []))
    return order
