"""Carrying out alerts' actions on sessions: kill, freeze, thaw, and the kernel's kills.

`SessionActions` wraps response/responder.py's `Responder` around a collector's sessions:
`respond` turns an alert's pending action into what was done (by the kernel or here) and
its result; `kernel_killed` kills the rest of a session whose process the kernel killed.
`kernel_kill_alert` reports a kernel kill that no user-space detector flagged.
"""

from __future__ import annotations

from collections import Counter

import orjson

from collector.events import AlertEvent, Event, one_line
from collector.proctable import ProcessTable
from collector.sessions import Session, SessionManager
from response.responder import Responder


class SessionActions:
    """Kill, freeze and thaw of the sessions of `manager`; `kills` counts the processes
    killed, by "kernel" and by "user space"."""

    def __init__(self, manager: SessionManager) -> None:
        self.manager = manager
        self.responder: Responder | None = None
        self.kills: Counter[str] = Counter()  # by: "kernel" (processes), "user space"

    def start(self) -> None:
        """The probes are loaded: membership can be read from the kernel's maps."""
        self.responder = Responder(self.manager.session_members, self.manager.is_member)

    def kill_session(self, session: Session) -> str:
        if session.state == "killed" and session.kill is not None \
                and not self.manager.session_members(session.id):
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

    def kernel_killed(self, event: Event) -> None:
        """The kernel killed a process at a call's entry: kill the rest of its session
        now, before the event goes through the detectors."""
        session = self.manager.sessions.get(event.session or "")
        if session is None:
            return
        self.manager.note_victim(event.pid, session)
        self.kills["kernel"] += 1
        if session.state != "killed" or self.manager.session_members(session.id):
            self.kill_session(session)

    def respond(self, alert: AlertEvent) -> None:
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
        session = self.manager.sessions.get(alert.session or "")
        if session is None or self.responder is None:
            alert.action = {**action, "taken": "none",
                            "result": "not done: the session is not known to this collector"}
            return
        if trigger.get("kernel_kill") and requested == "kill":
            what = trigger.get("syscall") or trigger.get("kind")
            rest = session.kill.text() if session.kill else "nothing left to kill"
            # an open killed for the file the kernel resolved (its inode is known): at
            # the call's exit, before it returned to user space
            when = "exit" if trigger.get("kind") == "open" and trigger.get("ino") is not None \
                else "entry"
            alert.action = {**action, "taken": "kill", "by": "kernel",
                            "result": f"kernel: SIGKILL at the {when} of {what} (pid "
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


def kernel_kill_alert(event: Event, table: ProcessTable) -> AlertEvent:
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
        ancestry=[p.brief() for p in table.ancestry(event.pid)])
