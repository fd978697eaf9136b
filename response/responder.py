"""The response engine: kill a session's whole tree, freeze it, thaw it.

Who is in a session is the kernel's `watched` map (thread group -> session), filled at
fork in the parent's context before a child can run, emptied at exit. Nothing outside
that map is ever signalled, nor pid 1, nor agentwatch itself or its ancestors.

Kill, for a session with a cgroup of its own: `cgroup.kill` (atomic against forks), then
the sweep below for anything of the session that left the cgroup. Without a cgroup:

1. stop: every member gets SIGSTOP through a pidfd, round after round, until a round finds
   no member not already stopped (a stopped process cannot fork, so the tree stops growing);
2. kill: SIGKILL through the same pidfds, and to any member that appeared meanwhile;
3. repeat until the session has no member left in `watched` (or a deadline passes, which
   is reported with the count of survivors).

Pid reuse: a pidfd is opened first, and only then is the pid checked to be in the session.
A map entry is removed at exit, before the pid can be freed and reused, so a pid still in
the session after its pidfd was opened names a process of the session: the pidfd holds
that process, not whatever gets the number later.

Freeze: `cgroup.freeze` when the session has a cgroup, else the stop step above (thaw:
SIGCONT to the members, through pidfds).
"""

from __future__ import annotations

import os
import select
import signal
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from collector.proctable import proc_ppid
from response.cgroup import CgroupError, SessionCgroup

Members = Callable[[int], Iterable[int]]        # session id -> its tgids now
IsMember = Callable[[int, int], bool]           # (pid, session id) -> in the session now?

KILL_DEADLINE = 5.0   # seconds before a kill gives up and reports survivors
STOP_ROUNDS = 200


def _ancestors(pid: int) -> set[int]:
    out: set[int] = set()
    while pid > 1 and pid not in out:
        out.add(pid)
        ppid = proc_ppid(pid)
        if ppid is None:
            break
        pid = ppid
    return out


def protected_pids() -> set[int]:
    """Never signalled, whatever a map says: pid 0 and 1, agentwatch and its ancestors."""
    return {0, 1} | _ancestors(os.getpid())


class Pidfds:
    """The operations the responder signals through: pidfds of the running kernel.
    (Tests substitute a model of processes with pid reuse to check that nothing outside
    a session is ever signalled.)"""

    def open(self, pid: int) -> int | None:
        try:
            return os.pidfd_open(pid)
        except OSError:
            return None  # gone already

    def send(self, handle: int, sig: int) -> bool:
        try:
            signal.pidfd_send_signal(handle, sig)
        except OSError:
            return False  # exited meanwhile (ESRCH)
        return True

    def close(self, handle: int) -> None:
        os.close(handle)

    def wait_dead(self, handles: dict[int, int], timeout: float) -> set[int]:
        return _wait_dead(handles, timeout)


@dataclass
class KillReport:
    method: str                      # "cgroup.kill", "pidfd" or "cgroup.kill+pidfd"
    signalled: int = 0               # processes that got SIGKILL from us
    died: int = 0                    # of those (or of the cgroup's), seen dead
    survivors: list[int] = field(default_factory=list)
    seconds: float = 0.0
    refused: list[int] = field(default_factory=list)  # protected pids found in the session
    pids: list[int] = field(default_factory=list)     # the pids it sent SIGKILL to

    def text(self) -> str:
        if not self.died and not self.signalled and not self.survivors:
            return f"no process of the session was left alive ({self.method}, " \
                   f"{self.seconds * 1000:.0f} ms)"
        s = f"killed {self.died} process{'es' if self.died != 1 else ''} ({self.method}, " \
            f"{self.seconds * 1000:.0f} ms)"
        if self.survivors:
            s += f"; {len(self.survivors)} STILL ALIVE: {self.survivors[:10]}"
        if self.refused:
            s += f"; refused to signal protected pids {self.refused}"
        return s


class Responder:
    def __init__(self, members: Members, is_member: IsMember,
                 protected: set[int] | None = None, ops: Pidfds | None = None) -> None:
        self.members = members
        self.is_member = is_member
        self.ops = ops or Pidfds()
        self.protected = protected if protected is not None else protected_pids()
        self.signals_sent: list[tuple[int, int]] = []   # (pid, signal): an audit trail
        self._stopped: dict[int, dict[int, int]] = {}   # session -> pid -> pidfd

    # ------------------------------------------------------------------ pidfds
    def _open(self, pid: int, sid: int) -> int | None:
        """A pidfd for `pid` if, once opened, it is a member of session `sid`."""
        if pid in self.protected:
            return None
        fd = self.ops.open(pid)
        if fd is None:
            return None
        if not self.is_member(pid, sid):
            self.ops.close(fd)
            return None
        return fd

    def _signal(self, fd: int, pid: int, sig: int) -> bool:
        if not self.ops.send(fd, sig):
            return False
        self.signals_sent.append((pid, sig))
        return True

    def _stop_all(self, sid: int, fds: dict[int, int], deadline: float) -> None:
        """SIGSTOP every member, until a round finds none new."""
        for _ in range(STOP_ROUNDS):
            new = 0
            for pid in list(self.members(sid)):
                if pid in fds:
                    continue
                fd = self._open(pid, sid)
                if fd is None:
                    continue
                fds[pid] = fd
                self._signal(fd, pid, signal.SIGSTOP)
                new += 1
            if not new or time.monotonic() > deadline:
                return

    # ------------------------------------------------------------------ actions
    def kill(self, sid: int, cgroup: SessionCgroup | None = None) -> KillReport:
        t0 = time.monotonic()
        deadline = t0 + KILL_DEADLINE
        refused = sorted(p for p in self.members(sid) if p in self.protected)
        report = KillReport(method="pidfd", refused=refused)
        before: set[int] = set()
        if cgroup is not None:
            before = set(cgroup.procs())
            try:
                cgroup.kill()
                report.method = "cgroup.kill"
                cgroup.wait_empty(min(2.0, KILL_DEADLINE))
            except CgroupError:
                pass
        fds: dict[int, int] = dict(self._stopped.pop(sid, {}))
        try:
            self._stop_all(sid, fds, deadline)
            killed: dict[int, int] = {}
            while True:
                for pid, fd in list(fds.items()):
                    if pid not in killed and self._signal(fd, pid, signal.SIGKILL):
                        killed[pid] = fd
                left = [p for p in self.members(sid) if p not in self.protected]
                if not left or time.monotonic() > deadline:
                    break
                for pid in left:  # appeared after the stop rounds (or not stopped yet)
                    if pid not in fds:
                        new_fd = self._open(pid, sid)
                        if new_fd is not None:
                            fds[pid] = new_fd
                time.sleep(0.001)
            if killed and report.method == "cgroup.kill":
                report.method = "cgroup.kill+pidfd"
            report.signalled = len(killed)
            report.pids = sorted(killed)
            died = self.ops.wait_dead(killed, max(0.0, deadline - time.monotonic()))
            report.survivors = sorted(set(killed) - died)
            now = list(self.members(sid))
            still = [p for p in now if p not in self.protected]
            report.survivors = sorted(set(report.survivors) | set(still))
            report.refused = sorted(set(report.refused) |
                                    {p for p in now if p in self.protected})
            report.died = len(died) + len(before - set(killed))
            if cgroup is not None:
                report.survivors = sorted(set(report.survivors) | set(cgroup.procs()))
        finally:
            for fd in fds.values():
                self.ops.close(fd)
        report.seconds = time.monotonic() - t0
        return report

    def freeze(self, sid: int, cgroup: SessionCgroup | None = None) -> str:
        if cgroup is not None:
            try:
                if cgroup.freeze(True):
                    return f"froze the session's cgroup ({len(cgroup.procs())} processes)"
                return "cgroup.freeze did not complete within 2 s"
            except CgroupError as e:
                return f"cgroup freeze failed: {e}"
        fds = self._stopped.setdefault(sid, {})
        self._stop_all(sid, fds, time.monotonic() + KILL_DEADLINE)
        return f"stopped {len(fds)} processes with SIGSTOP"

    def thaw(self, sid: int, cgroup: SessionCgroup | None = None) -> str:
        if cgroup is not None:
            try:
                cgroup.freeze(False)
                return "thawed the session's cgroup"
            except CgroupError as e:
                return f"cgroup thaw failed: {e}"
        fds = self._stopped.pop(sid, {})
        for pid in self.members(sid):
            if pid not in fds:
                fd = self._open(pid, sid)
                if fd is not None:
                    fds[pid] = fd
        n = sum(1 for pid, fd in fds.items() if self._signal(fd, pid, signal.SIGCONT))
        for fd in fds.values():
            self.ops.close(fd)
        return f"continued {n} processes with SIGCONT"


def _wait_dead(fds: dict[int, int], timeout: float) -> set[int]:
    """The pids whose pidfd became readable (the process exited) within `timeout`."""
    dead: set[int] = set()
    pending = dict(fds)
    deadline = time.monotonic() + timeout
    poller = select.poll()
    by_fd = {fd: pid for pid, fd in pending.items()}
    for fd in by_fd:
        poller.register(fd, select.POLLIN)
    while by_fd:
        left_ms = max(0, int((deadline - time.monotonic()) * 1000))
        for fd, _ev in poller.poll(left_ms):
            dead.add(by_fd.pop(fd))
            poller.unregister(fd)
        if time.monotonic() >= deadline:
            break
    return dead
