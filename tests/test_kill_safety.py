"""Kill safety, as a property: over many generated process trees in which processes exit,
fork and have their pids reused by processes OUTSIDE the session at any moment between
the responder's steps, a whole-session kill never signals a process outside the session,
never a protected pid, and leaves no member of the session alive unless it says so.

The kernel is not mocked for a test about events here: this checks the responder's
algorithm (response/responder.py) against a model of the two facts it relies on, which
the root tests show on the real kernel (tests/test_response.py): a pidfd holds the process
it was opened on, whatever happens to the number; and a process leaves the `watched` map
at exit, before its pid can be freed and reused.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass, field

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from response.responder import Responder

SID = 7
PIDS = list(range(100, 124))  # few pids: reuse is frequent


@dataclass
class Proc:
    ident: int
    pid: int
    member: bool
    alive: bool = True
    stopped: bool = False


@dataclass
class World:
    draw: object
    procs: dict[int, Proc] = field(default_factory=dict)
    owner: dict[int, int] = field(default_factory=dict)     # pid -> identity (alive)
    watched: dict[int, int] = field(default_factory=dict)   # pid -> session
    handles: dict[int, int] = field(default_factory=dict)   # handle -> identity
    signalled: list[tuple[int, int, int]] = field(default_factory=list)  # (ident, pid, sig)
    forks_left: int = 30
    next_ident: int = 1
    next_handle: int = 1000

    def spawn(self, pid: int, member: bool) -> Proc:
        p = Proc(self.next_ident, pid, member)
        self.next_ident += 1
        self.procs[p.ident] = p
        self.owner[pid] = p.ident
        if member:
            self.watched[pid] = SID
        return p

    def die(self, p: Proc) -> None:
        # the kernel's order: out of `watched` at exit, the pid freed after
        p.alive = False
        self.watched.pop(p.pid, None)
        self.owner.pop(p.pid, None)

    def free_pids(self) -> list[int]:
        return [pid for pid in PIDS if pid not in self.owner]

    def step(self) -> None:
        """Whatever the rest of the system does between two of the responder's steps."""
        what = self.draw(st.integers(0, 5))  # type: ignore[operator]
        alive = [p for p in self.procs.values() if p.alive]
        free = self.free_pids()
        if what == 1 and alive:  # a process exits by itself
            self.die(self.draw(st.sampled_from(alive)))  # type: ignore[operator]
        elif what in (2, 3) and free:  # an outsider takes a freed pid
            self.spawn(self.draw(st.sampled_from(free)), member=False)  # type: ignore[operator]
        elif what == 4 and free and self.forks_left:  # a running member forks
            running = [p for p in alive if p.member and not p.stopped]
            if running:
                self.forks_left -= 1
                self.spawn(self.draw(st.sampled_from(free)), member=True)  # type: ignore[operator]

    # --- what the responder sees
    def members(self, sid: int) -> list[int]:
        self.step()
        return [pid for pid, s in self.watched.items() if s == sid]

    def is_member(self, pid: int, sid: int) -> bool:
        self.step()
        return self.watched.get(pid) == sid


class ModelPidfds:
    def __init__(self, world: World) -> None:
        self.w = world

    def open(self, pid: int) -> int | None:
        self.w.step()
        ident = self.w.owner.get(pid)
        if ident is None:
            return None
        h = self.w.next_handle
        self.w.next_handle += 1
        self.w.handles[h] = ident
        return h

    def send(self, handle: int, sig: int) -> bool:
        self.w.step()
        p = self.w.procs[self.w.handles[handle]]
        if not p.alive:
            return False
        self.w.signalled.append((p.ident, p.pid, sig))
        if sig == signal.SIGKILL:
            self.w.die(p)
        elif sig == signal.SIGSTOP:
            p.stopped = True
        elif sig == signal.SIGCONT:
            p.stopped = False
        return True

    def close(self, handle: int) -> None:
        self.w.handles.pop(handle, None)

    def wait_dead(self, handles: dict[int, int], timeout: float) -> set[int]:
        return {pid for pid, h in handles.items()
                if h in self.w.handles and not self.w.procs[self.w.handles[h]].alive}


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_a_kill_never_signals_outside_the_session(data: st.DataObject) -> None:
    w = World(draw=data.draw)
    n_members = data.draw(st.integers(1, 10), label="members")
    n_outside = data.draw(st.integers(0, 8), label="outsiders")
    pids = data.draw(st.permutations(PIDS), label="pids")
    for pid in pids[:n_members]:
        w.spawn(pid, member=True)
    for pid in pids[n_members:n_members + n_outside]:
        w.spawn(pid, member=False)
    # a protected pid (agentwatch, init...) that the map wrongly lists as a member
    protected = {pids[0]} if data.draw(st.booleans(), label="protected member") else set()
    responder = Responder(w.members, w.is_member, protected=protected, ops=ModelPidfds(w))
    if data.draw(st.booleans(), label="freeze first"):
        responder.freeze(SID)
    report = responder.kill(SID)

    for ident, pid, _sig in w.signalled:
        assert w.procs[ident].member, f"signalled pid {pid}, a process outside the session"
        assert pid not in protected, f"signalled protected pid {pid}"
    alive_members = [p for p in w.procs.values() if p.member and p.alive]
    spared = [p for p in alive_members if p.pid in protected]
    unreported = [p.pid for p in alive_members if p not in spared
                  and p.pid not in report.survivors]
    assert not unreported, f"members left alive and not reported: {unreported}"
    # a protected pid found in the session is spared, and said so
    assert {p.pid for p in spared} <= set(report.refused)
