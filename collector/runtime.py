"""The collector: ring buffer -> decode -> process table -> sinks, plus loss accounting.

It owns the loaded BPF object and the sessions. A session starts by writing its root pid
into the kernel's `watched` map; the kernel then adds every descendant at fork time.
Every record the kernel could not deliver is counted there (per cause) and reported here
as a `loss` event and in each session's end summary.
"""

from __future__ import annotations

import ctypes
import os
import secrets
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from collector.events import Event, LossEvent, SessionEvent
from collector.proctable import ProcessTable
from probes import loader
from probes.decode import LOST_NAMES, DecodeError, RecordDecoder, session_name


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
                 on_event: Callable[[Event], None] | None = None) -> None:
        self.sinks = list(sinks)
        self.config = config or loader.ProbeConfig()
        self.on_event = on_event
        self.decoder = RecordDecoder()
        self.table = ProcessTable()
        self.stats = Stats()
        self.sessions: dict[str, Session] = {}
        self.bpf: Any = None
        self._callback_error: BaseException | None = None
        self._last_loss_check = 0.0

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self.bpf = loader.load(self.config)
        self.bpf[b"events"].open_ring_buffer(self._on_record)

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()
        if self.bpf is not None:
            self.bpf.cleanup()
            self.bpf = None

    # ------------------------------------------------------------------ sessions
    def add_session(self, root_pid: int, ppid: int, kind: str, argv: list[str]) -> Session:
        """Watch `root_pid` and, through the kernel's fork hook, all its descendants."""
        sid = secrets.randbits(63) | 1
        name = session_name(sid)
        watched = self.bpf[b"watched"]
        leaf = watched.Leaf()
        leaf.session = sid
        leaf.ppid = ppid
        watched[ctypes.c_uint32(root_pid)] = leaf
        now = time.time_ns()
        session = Session(id=sid, name=name, kind=kind, root_pid=root_pid, argv=list(argv),
                          started_ns=now, lost_at_start=self.stats.lost)
        self.sessions[name] = session
        self.table.add_root(root_pid, ppid, name, argv, now, uid=os.getuid(),
                            cwd=os.getcwd())
        self._emit(SessionEvent(ts=now, session=name, pid=root_pid, ppid=ppid,
                                phase="start", session_kind=kind, root_pid=root_pid,
                                argv=list(argv)))
        return session

    def end_session(self, session: Session, exit_status: int | None) -> SessionEvent:
        self.check_losses(force=True)
        session.ended = True
        ev = SessionEvent(ts=time.time_ns(), session=session.name, pid=session.root_pid,
                          phase="end", session_kind=session.kind, root_pid=session.root_pid,
                          argv=session.argv, exit_status=exit_status, events=session.events,
                          lost=self.stats.lost - session.lost_at_start)
        self._emit(ev)
        self.flush()
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

    def _on_record(self, _ctx: Any, data: Any, size: int) -> int:
        # Called by BCC through ctypes: an exception must not escape (ctypes would print
        # and drop it); it is kept and re-raised by poll() in the caller's frame.
        try:
            event = self.decoder.decode(ctypes.string_at(data, size))
            self.table.observe(event)
            self._emit(event)
        except DecodeError:
            self.stats.decode_errors += 1
        except BaseException as e:  # noqa: BLE001
            if self._callback_error is None:
                self._callback_error = e
        return 0

    def poll(self, timeout_ms: int = 100) -> None:
        self.bpf.ring_buffer_poll(timeout_ms)
        if self._callback_error is not None:
            err, self._callback_error = self._callback_error, None
            raise err
        self.check_losses()

    def drain(self) -> None:
        """Consume every record already in the ring buffer."""
        self.bpf.ring_buffer_consume()
        if self._callback_error is not None:
            err, self._callback_error = self._callback_error, None
            raise err

    def flush(self) -> None:
        for sink in self.sinks:
            sink.flush()

    # ------------------------------------------------------------------ losses
    def read_lost(self) -> Counter[str]:
        counts: Counter[str] = Counter()
        for slot, n in enumerate(loader.read_lost(self.bpf)):
            if n:
                counts[LOST_NAMES.get(slot, f"slot{slot}")] += n
        return counts

    def check_losses(self, force: bool = False, interval: float = 1.0) -> LossEvent | None:
        now = time.monotonic()
        if not force and now - self._last_loss_check < interval:
            return None
        self._last_loss_check = now
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
