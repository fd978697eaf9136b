"""The detector engine: events in, alerts out.

For each event, every enabled detector that reads its kind runs with its parameters and
its own state for the event's session (an open only reaches the detectors whose
`open_interest` it meets: detectors/openroute.py); each finding not covered by a
configured exception becomes an alert, with the process ancestry up to the session root.
Repeats (same detector, session and key) within `fold_window` seconds of event time are
folded: the first is alerted at once, and when the window closes one `folded` alert
carries the count of the others.

Actions are not carried out here: in `monitor` mode an alert says what would have been
done; in `enforce` mode a freeze or kill is left `pending` for the response engine
(response/responder.py) to carry out and report; a replay reports it as not carried out.
Nothing here does I/O: the caller passes
process and session views (from the collector's process table, or from a recording).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from collector.events import (
    AlertEvent,
    Event,
    ForkEvent,
    LossEvent,
    OpenEvent,
    SessionEvent,
    one_line,
)
from detectors.base import (
    REGISTRY,
    Context,
    Detector,
    Finding,
    ProcView,
    SessionView,
    check_spec,
    normal_homes,
    path_matches,
    text_matches,
)
from detectors.config import Config, DetectorConfig
from detectors.openroute import OpenInterest, OpenRouter

ProcLookup = Callable[[int], ProcView | None]
AncestryLookup = Callable[[int], list[dict[str, Any]]]
SessionLookup = Callable[[str], SessionView | None]


@dataclass
class _Fold:
    first_ts: int
    last_ts: int
    repeats: int
    alert: AlertEvent
    sums: dict[str, int] = field(default_factory=dict)  # DetectorSpec.summed, repeats only


class Engine:
    def __init__(self, config: Config, proc: ProcLookup | None = None,
                 ancestry: AncestryLookup | None = None,
                 session: SessionLookup | None = None, homes: Iterable[str] = ()) -> None:
        self.config = config
        # what `~/` stands for besides /root and /home/*: the host's homes (the caller
        # reads them, e.g. from passwd), and each session's own HOME (its SessionView)
        self.homes = normal_homes(homes)
        self._session_homes: dict[tuple[str, ...], tuple[str, ...]] = {}
        self._proc = proc or (lambda _pid: None)
        self._ancestry = ancestry or (lambda _pid: [])
        self._session = session or (lambda _name: None)
        self.detectors: list[tuple[Detector, DetectorConfig]] = [
            (REGISTRY[did](), dcfg) for did, dcfg in config.detectors.items()
            if dcfg.enabled and did in REGISTRY
        ]
        for det, _cfg in self.detectors:
            check_spec(det.spec)  # no spec without its event kinds
        self._contexts: dict[str, list[Context]] = {}  # session -> one per detector
        self._by_kind: dict[str, list[int]] = {}  # event kind -> detectors that look at it
        # opens: the detectors each one can matter to (detectors/openroute.py); built at
        # the first open, like _by_kind, from the detectors as they are then
        self._opens: OpenRouter | None = None
        # session -> its host pids and tids (Context.hosts), one set for every detector
        self._hosts: dict[str, set[int]] = {}
        self._folds: dict[tuple[str, str, str], _Fold] = {}
        self.window_ns = int(config.fold_window * 1e9)
        self.disabled: dict[str, str] = {}  # detector id -> why (it raised)

    # ------------------------------------------------------------------ events
    def process(self, ev: Event) -> list[AlertEvent]:
        if isinstance(ev, AlertEvent):
            return []
        if ev.session is None and not isinstance(ev, LossEvent):
            return []
        out: list[AlertEvent] = []
        session_name = ev.session or ""
        session = self._session(session_name) if ev.session is not None else None
        contexts = self._contexts.get(session_name)
        if contexts is None:
            # One Context per detector and session, reused: this loop runs for every event.
            hosts = self._hosts[session_name] = set()
            contexts = self._contexts[session_name] = [
                Context(params=dcfg.params, state={}, proc=None, session=None, hosts=hosts)
                for _det, dcfg in self.detectors]
        if ev.session is not None:
            hosts = self._hosts[session_name]
            if len(hosts) < 65536:  # proctarget.session_hosts's bound
                hosts.add(ev.pid)
                hosts.add(ev.tid)
                if isinstance(ev, ForkEvent) and ev.ret > 0:
                    hosts.add(ev.child_pid)
                if session is not None:
                    hosts.add(session.root_pid)
        homes = self.homes if session is None or not session.homes else \
            self._homes_of(session)
        if isinstance(ev, OpenEvent):
            router = self._opens or self.open_router()
            wanted: Sequence[int] = router.route(ev, contexts, homes)
        else:
            wanted = self._by_kind.get(ev.kind)  # type: ignore[assignment]
            if wanted is None:
                wanted = self._by_kind[ev.kind] = [
                    i for i, (det, _cfg) in enumerate(self.detectors)
                    if ev.kind in det.spec.kinds]
        if wanted:
            proc = self._proc(ev.pid) if ev.session is not None else None
            for i in wanted:
                det, dcfg = self.detectors[i]
                ctx = contexts[i]
                if det.spec.id in self.disabled:
                    continue
                ctx.proc = proc
                ctx.session = session
                ctx.homes = homes
                try:
                    findings = list(det.check(ctx, ev))
                except Exception as e:  # noqa: BLE001 - one broken detector must not stop all
                    self.disabled[det.spec.id] = f"{type(e).__name__}: {e}"
                    out.append(self._broken(det, ev, e))
                    continue
                for f in findings:
                    if dcfg.exceptions and self._excepted(dcfg, proc, ev, f, homes):
                        continue
                    out.extend(self._fold(det, dcfg, ev, f))
        if isinstance(ev, SessionEvent) and ev.phase == "end":
            out.extend(self.flush(session=session_name))
            self._contexts.pop(session_name, None)
            self._hosts.pop(session_name, None)
        return out

    def open_router(self) -> OpenRouter:
        """Which detectors each open goes to (detectors/openroute.py), from the detectors
        and their parameters as they are at the first open."""
        if self._opens is None:
            self._opens = OpenRouter(
                [_interest(det, dcfg) for det, dcfg in self.detectors],
                ["open" in det.spec.kinds for det, _cfg in self.detectors])
        return self._opens

    def tick(self, now_ns: int) -> list[AlertEvent]:
        """Folded alerts whose window has closed by `now_ns` (call about once a second)."""
        return self.flush(before_ns=now_ns - self.window_ns)

    def flush(self, session: str | None = None,
              before_ns: int | None = None) -> list[AlertEvent]:
        """Close fold windows (all, a session's, or those that started before a time)."""
        out = []
        for key in list(self._folds):
            fold = self._folds[key]
            if session is not None and key[1] != session:
                continue
            if before_ns is not None and fold.first_ts > before_ns:
                continue
            del self._folds[key]
            if fold.repeats:
                out.append(self._folded(fold))
        return out

    # ------------------------------------------------------------------ helpers
    def _homes_of(self, session: SessionView | None) -> tuple[str, ...]:
        """The host's homes and the session's HOME (one tuple per distinct HOME, so that
        the globs' compiled regexes are shared between sessions)."""
        if session is None or not session.homes:
            return self.homes
        homes = self._session_homes.get(session.homes)
        if homes is None:
            if len(self._session_homes) > 256:
                self._session_homes.clear()
            homes = self._session_homes[session.homes] = normal_homes(
                [*self.homes, *session.homes])
        return homes

    @staticmethod
    def _excepted(dcfg: DetectorConfig, proc: ProcView | None, ev: Event,
                  f: Finding, homes: tuple[str, ...] = ()) -> bool:
        for exc in dcfg.exceptions:
            if "exe" in exc and not (proc and proc.exe and text_matches(proc.exe, exc["exe"])):
                continue
            if "argv" in exc and not (proc and text_matches(" ".join(proc.argv),
                                                            exc["argv"])):
                continue
            if "path" in exc:
                path = f.fields.get("path", getattr(ev, "path", None))
                if not (isinstance(path, str) and path_matches(path, [exc["path"]], homes)):
                    continue
            return True
        return False

    def _action(self, requested: str) -> dict[str, str]:
        if requested == "alert":
            return {"requested": "alert", "taken": "alert", "result": "alerted"}
        if self.config.mode == "monitor":
            return {"requested": requested, "taken": "none",
                    "result": f"monitor mode: would {requested} the session"}
        return {"requested": requested, "taken": "pending", "result": "pending"}

    def _fold(self, det: Detector, dcfg: DetectorConfig, ev: Event,
              f: Finding) -> list[AlertEvent]:
        key = (det.spec.id, ev.session or "", f.key)
        fold = self._folds.get(key)
        if fold is not None and ev.ts - fold.first_ts <= self.window_ns:
            fold.repeats += 1
            fold.last_ts = ev.ts
            for name in det.spec.summed:
                v = f.fields.get(name)
                if isinstance(v, int):
                    fold.sums[name] = fold.sums.get(name, 0) + v
            return []
        out = [self._folded(fold)] if fold is not None and fold.repeats else []
        alert = self._alert(det, dcfg, ev, f)
        self._folds[key] = _Fold(ev.ts, ev.ts, 0, alert)
        out.append(alert)
        return out

    def _alert(self, det: Detector, dcfg: DetectorConfig, ev: Event,
               f: Finding) -> AlertEvent:
        spec = det.spec
        severity = f.severity or dcfg.severity
        requested = f.action or dcfg.action
        try:
            what = (f.output or spec.output).format(**f.fields)
        except (KeyError, IndexError, ValueError):
            what = spec.title
        fields_text = " ".join(f"{k}={_short(v)}" for k, v in f.fields.items())
        summary = f"{what} | {fields_text}" if fields_text else what
        if f.note:
            summary += f" ({f.note})"
        return AlertEvent(
            ts=ev.ts, session=ev.session, pid=ev.pid, tid=ev.tid, ppid=ev.ppid, uid=ev.uid,
            gid=ev.gid, comm=ev.comm, cgroup=ev.cgroup, setup=ev.setup,
            nested_launcher=ev.nested_launcher, detector=spec.id, title=spec.title,
            severity=severity, action=self._action(requested), summary=one_line(summary),
            key=f.key, mitre=list(spec.mitre), fields=dict(f.fields),
            event=orjson.loads(ev.to_json()), ancestry=self._ancestry(ev.pid))

    def _folded(self, fold: _Fold) -> AlertEvent:
        first = fold.alert
        seconds = max(0.0, (fold.last_ts - fold.first_ts) / 1e9)
        return AlertEvent(
            ts=fold.last_ts, session=first.session, pid=first.pid, tid=first.tid,
            ppid=first.ppid, uid=first.uid, gid=first.gid, comm=first.comm,
            cgroup=first.cgroup, detector=first.detector, title=first.title,
            severity=first.severity, action=first.action,
            summary=one_line(f"{first.summary} [repeated {fold.repeats} more times in "
                              f"{seconds:.1f}s]"),
            key=first.key, count=fold.repeats, folded=True, mitre=first.mitre,
            fields={**first.fields, **fold.sums}, event=first.event, ancestry=first.ancestry)

    def _broken(self, det: Detector, ev: Event, e: Exception) -> AlertEvent:
        return AlertEvent(
            ts=ev.ts, session=ev.session, pid=ev.pid, detector=det.spec.id,
            title=det.spec.title, severity="high",
            action={"requested": "alert", "taken": "alert",
                    "result": "detector disabled"},
            summary=one_line(f"Detector {det.spec.id} failed and is disabled | "
                              f"error={type(e).__name__}: {e}"),
            key="detector_error", event=orjson.loads(ev.to_json()))


def _interest(det: Detector, dcfg: DetectorConfig) -> OpenInterest | None:
    """A detector's open interest; every open (None) when it cannot say (a declaration
    that raises, or is not an OpenInterest): its check() then runs, and a broken one is
    disabled there with an alert, as for any other event."""
    try:
        oi = det.open_interest(dcfg.params)
    except Exception:  # noqa: BLE001 - one broken detector must not stop all
        return None
    return oi if isinstance(oi, OpenInterest) else None


def _short(v: Any, limit: int = 160) -> str:
    s = v if isinstance(v, str) else orjson.dumps(v).decode()
    return s if len(s) <= limit else s[: limit - 1] + "…"


def run_over(engine: Engine, events: Iterable[Event]) -> list[AlertEvent]:
    """All alerts for a sequence of events, fold windows closed at the end (replay)."""
    out: list[AlertEvent] = []
    for ev in events:
        out.extend(engine.process(ev))
    out.extend(engine.flush())
    return out
