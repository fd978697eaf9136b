"""Sessions: what is watched, in the kernel and here.

A session starts by writing its root pid into the kernel's `watched` map; the kernel then
adds every descendant at fork time. `SessionManager` writes the `watched` and `sessions`
maps, gives out session ids, registers sessions started here (`add_session`, `attach`) or
by the kernel (a launcher's exec: `kernel_session`), finds the sandboxes still running
after a restart (`running_launchers`), ends sessions (with their event and loss counts),
and answers who belongs to which session (`session_members`, `session_of`, `is_member`),
the pids the kernel killed included (`kernel_victims`).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import signal
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from collector.decode import session_name
from collector.events import Event, SessionEvent
from collector.homes import environ_value, session_homes
from collector.ingest import Ingest
from collector.proctable import ProcessTable, proc_argv, proc_ppid, proc_stats, same_process
from collector.summaries import Summaries
from probes import loader, rules
from probes.compat import name_of

SESSION_KIND_CODES = {"run": 1, "launcher": 2, "attach": 3}
SESSION_KINDS = {code: kind for kind, code in SESSION_KIND_CODES.items()}
DEFAULT_LAUNCHERS = ("bwrap",)
MAX_ENDED_SESSIONS = 1024
ADOPT_LAUNCHERS_SLOT = rules.VALUE["AW_CFG_ADOPT_LAUNCHERS"]
HELD_SLOT = rules.VALUE["AW_CFG_HELD"]
PF_HELD = rules.VALUE["AW_PF_HELD"]
BPF_EXIST = 2  # bpf_update_elem: only an entry that is there (never re-create one)


class SessionError(RuntimeError):
    """A session could not be started (the message says why)."""


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
    cgroup: Any = None                 # response.cgroup.SessionCgroup, when it has one
    state: str = "running"            # running | frozen | killed
    kill: Any = None                   # response.responder.KillReport: the kill that ended it
    egress: bool = False               # cgroup egress programs attached
    kernel_live: bool = True           # the kernel counts its processes and ends it
    adopted: bool = False              # found in pinned maps, begun under another reader


class SessionManager:
    """The sessions of one collector. `emit` takes the session start and end events,
    `flush` is called after a session's end; `ingest` is read for the loss counts and
    drained before a session is declared gone."""

    def __init__(self, ingest: Ingest, table: ProcessTable, emit: Callable[[Event], None],
                 flush: Callable[[], None],
                 launchers: Iterable[str] = DEFAULT_LAUNCHERS) -> None:
        self.ingest = ingest
        self.table = table
        self.emit = emit
        self.flush = flush
        self.launchers = list(launchers)
        self.probes: Any = None  # probes.loader.Probes, from start() to close()
        self.sessions: dict[str, Session] = {}
        self.sessions_started = 0
        self._ended: deque[str] = deque()  # ended sessions, oldest first (kept for late events)
        # pids the kernel killed, and their sessions: a signal such a process sent to
        # agentwatch as it died must still be known as a session's (session_of)
        self.kernel_victims: OrderedDict[int, str] = OrderedDict()
        self._adopt_before: int | None = None  # pinned: the launcher slot as found
        self._held_seen = -1
        # the kernel's counts of unsent opens (collector/summaries.py): a session's last
        # summaries go out before its end event, which carries their total
        self.summaries: Summaries | None = None

    def start(self, probes: loader.Probes, adopt_launchers: bool) -> None:
        """Write the launcher names into the kernel; with adopt_launchers, every exec of one
        on the host (default: bwrap) starts a new session in the kernel (the daemon's mode).
        On pinned probes without it (`run`), the slot is put back as found at close."""
        self.probes = probes
        if getattr(probes, "pins", None) is not None and not adopt_launchers:
            self._adopt_before = int(probes[b"config"][ctypes.c_int(ADOPT_LAUNCHERS_SLOT)]
                                     .value)
        table = probes[b"launchers"]
        for name in self.launchers:
            raw = name.encode()
            if not raw or len(raw) > 15 or b"/" in raw:
                raise SessionError(f"launcher name {name!r}: a command name (comm) of 1 to "
                                   "15 bytes without '/' is expected")
            key = table.Key()
            key.name = raw
            table[key] = ctypes.c_uint32(1)
        self.set_adopt_launchers(adopt_launchers)

    def close(self) -> None:
        if self._adopt_before is not None and self.probes is not None:
            self.set_adopt_launchers(bool(self._adopt_before))
            self._adopt_before = None
        self.probes = None

    def set_adopt_launchers(self, adopt: bool) -> None:
        """Turn launcher adoption (a new session per launcher exec) on or off."""
        self.probes[b"config"][ctypes.c_int(ADOPT_LAUNCHERS_SLOT)] = ctypes.c_uint64(
            1 if adopt else 0)

    # ------------------------------------------------------------------ starting
    def _watch(self, pid: int, ppid: int, sid: int) -> None:
        watched = self.probes[b"watched"]
        leaf = watched.Leaf()
        leaf.session = sid
        leaf.ppid = ppid
        watched[ctypes.c_uint32(pid)] = leaf

    def _new_session(self, kind: str, root_pid: int, live: int | None) -> tuple[int, str]:
        """A session id; with `live`, the kernel counts its processes and sends its end."""
        sid = secrets.randbits(63) | 1
        if live is None:
            return sid, session_name(sid)
        sessions = self.probes[b"sessions"]
        entry = sessions.Leaf()
        entry.live = live
        entry.root = root_pid
        entry.kind = SESSION_KIND_CODES[kind]
        sessions[ctypes.c_uint64(sid)] = entry
        return sid, session_name(sid)

    def _register(self, sid: int, name: str, kind: str, root_pid: int, ppid: int,
                  argv: list[str], ts: int, uid: int, cwd: str | None,
                  home: str | None = None) -> Session:
        """`home`: the root's HOME (None: read from its /proc environ, best effort)."""
        if home is None and root_pid > 0:
            home = environ_value(root_pid, b"HOME")
        session = Session(id=sid, name=name, kind=kind, root_pid=root_pid, argv=list(argv),
                          started_ns=ts, lost_at_start=self.ingest.stats.lost)
        self.sessions_started += 1
        self.sessions[name] = session
        root = self.table.add_root(root_pid, ppid, name, argv, ts, uid=uid, cwd=cwd)
        self.emit(SessionEvent(ts=ts, session=name, pid=root_pid, ppid=ppid, uid=uid,
                               phase="start", session_kind=kind, root_pid=root_pid,
                               argv=list(argv), ns=root.ns, cwd=cwd,
                               homes=session_homes(home, argv)))
        return session

    def add_session(self, root_pid: int, ppid: int, kind: str, argv: list[str]) -> Session:
        """Watch `root_pid` and, through the kernel's fork hook, all its descendants."""
        sid, name = self._new_session(kind, root_pid, live=1)
        self._watch(root_pid, ppid, sid)
        # CMD is exec'd with this process's environment: its HOME is ours
        return self._register(sid, name, kind, root_pid, ppid, argv, time.time_ns(),
                              os.getuid(), os.getcwd(), os.environ.get("HOME", ""))

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
        if ctypes.c_uint32(pid) in self.probes[b"watched"]:
            raise SessionError(f"pid {pid} is already watched in a session")
        # No kernel live count: user space cannot update it atomically against forks and
        # exits happening during the scan. The collector's poll ends the session when
        # `watched` holds none of its processes any more (end_attached_sessions).
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

    def running_launchers(self) -> tuple[list[int], dict[int, str]]:
        """After a restart: the sandboxes still running, as the outermost process of each
        launcher tree found in /proc (sorted), and the command name of every process."""
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
        return sorted(found), comms

    def kernel_session(self, ev: SessionEvent) -> None:
        """Session records from the kernel: a launcher adopted, or a session's end."""
        name = ev.session or ""
        if ev.phase == "start":
            if name in self.sessions:
                return
            # The kernel could not know the root's parent: /proc tells, and the ingest
            # fills it into the root's events (the kernel entry is not rewritten: its phase
            # flags may change at any moment).
            # (unless the pid is another process's by now: then nothing from /proc)
            live = same_process(ev.root_pid, ev.ts)
            ppid = (proc_ppid(ev.root_pid) or 0) if live else 0
            self._register(int(name, 16), name, ev.session_kind, ev.root_pid, ppid,
                           proc_argv(ev.root_pid) if live else [], ev.ts, ev.uid,
                           _readlink(f"/proc/{ev.root_pid}/cwd") if live else None,
                           None if live else "")
            return
        session = self.sessions.get(name)
        if session is None or session.ended or (session.kind == "run" and not session.adopted) \
                or not session.kernel_live:
            return  # `agentwatch run` ends its sessions itself, with CMD's status
        root = self.table.get(session.root_pid)
        self.end_session(session, root.exit_status() if root else None)

    # ------------------------------------------------------------------ pinned probes
    def adopt_kernel_sessions(self) -> list[Session]:
        """Pinned probes re-used (a daemon restarted): the sessions the kernel still
        watches become this collector's, under their own ids, so that their records,
        which the previous reader left in the rings, and all later ones continue them."""
        members: dict[int, list[tuple[int, int]]] = {}
        for k, v in self.probes[b"watched"].items():
            members.setdefault(int(v.session), []).append((int(k.value), int(v.ppid)))
        counted = {int(k.value): v for k, v in self.probes[b"sessions"].items()}
        adopted = []
        now = time.time_ns()
        for sid in sorted(members):
            name = session_name(sid)
            if name in self.sessions:
                continue
            pids = sorted(members[sid])
            inside = {p for p, _ in pids}
            entry = counted.get(sid)
            root = int(entry.root) if entry is not None else 0
            if root not in inside:  # the root is gone: the oldest member stands for it
                root = next((p for p, pp in pids if pp not in inside), pids[0][0])
            kind = SESSION_KINDS.get(int(entry.kind), "launcher") if entry is not None \
                else "attach"
            ppid = proc_ppid(root) or 0
            session = self._register(sid, name, kind, root, ppid, proc_argv(root), now,
                                     _proc_uid(root), _readlink(f"/proc/{root}/cwd"))
            session.adopted = True
            session.kernel_live = entry is not None
            for pid, pp in pids:
                if pid != root:
                    self.table.add_member(pid, pp, name, proc_argv(pid), now)
            adopted.append(session)
        return adopted

    def thaw_held(self, force: bool = False) -> list[int]:
        """fail_closed: the processes the kernel held while no reader read the rings
        (AW_PF_HELD) are released: the flag cleared, SIGCONT sent. Walks `watched` only
        when the kernel's held count moved (or `force`, at a reader's start)."""
        from bcc.libbcc import lib

        held = int(self.probes[b"config"][ctypes.c_int(HELD_SLOT)].value)
        if held == self._held_seen and not force:
            return []
        self._held_seen = held
        watched = self.probes[b"watched"]
        thawed = []
        for k, v in watched.items():
            if not int(v.flags) & PF_HELD:
                continue
            v.flags = int(v.flags) & ~PF_HELD
            lib.bpf_update_elem(watched.map_fd, ctypes.byref(k), ctypes.byref(v), BPF_EXIST)
            try:
                os.kill(int(k.value), signal.SIGCONT)
            except OSError:
                continue
            thawed.append(int(k.value))
        return thawed

    # ------------------------------------------------------------------ ending
    def _other_syscalls(self, session_id: int) -> dict[str, int]:
        """The session's uses of calls outside the table (the kernel's `sys_seen`, which
        counts them after reporting the first), taken out of the map."""
        if self.probes is None:
            return {}
        try:
            seen = self.probes[b"sys_seen"]
            mine = [(k, int(v.value)) for k, v in seen.items() if k.session == session_id]
        except (KeyError, OSError):
            return {}  # no `sys` probe loaded
        out: dict[str, int] = {}
        for k, n in mine:
            name = name_of(k.nr, k.abi)
            out[name] = out.get(name, 0) + n
            with contextlib.suppress(KeyError):
                del seen[k]
        return dict(sorted(out.items()))

    def end_session(self, session: Session, exit_status: int | None) -> SessionEvent:
        self.ingest.check_losses()
        session.ended = True
        # its last summaries first (they are its events), then the kernel's total of them
        summarised = self.summaries.end_session(session.id) if self.summaries else None
        ev = SessionEvent(ts=time.time_ns(), session=session.name, pid=session.root_pid,
                          phase="end", session_kind=session.kind, root_pid=session.root_pid,
                          argv=session.argv, exit_status=exit_status, events=session.events,
                          lost=self.ingest.stats.lost - session.lost_at_start,
                          other_syscalls=self._other_syscalls(session.id) or None,
                          summarised=summarised)
        self.emit(ev)
        self.flush()
        self._ended.append(session.name)
        while len(self._ended) > MAX_ENDED_SESSIONS:  # a daemon runs for months
            old = self._ended.popleft()
            self.sessions.pop(old, None)
            self.table.roots.pop(old, None)
        return ev

    def end_attached_sessions(self) -> None:
        """Attached sessions end when the kernel's `watched` map has none of their
        processes left (the map is the truth: exit events can be lost). So do launcher
        sessions whose end record was lost to a full ring (a `session` loss): checked
        only once such a loss was counted, and only after a drain found no end."""
        lost_ends = self.ingest.stats.lost_total.get("session", 0) > 0
        active = {s.id: s for s in self.sessions.values() if not s.ended and (
            not s.kernel_live or (lost_ends and s.kind == "launcher"))}
        if not active:
            return
        alive = {int(v.session) for v in self.probes[b"watched"].values()}
        gone = [s for sid, s in active.items() if sid not in alive]
        if gone:
            self.ingest.drain()
        for session in gone:
            if session.ended:
                continue  # its end record was in the ring after all
            root = self.table.get(session.root_pid)
            self.end_session(session, root.exit_status() if root else None)

    # ------------------------------------------------------------------ membership
    def note_victim(self, pid: int, session: Session) -> None:
        """The kernel killed `pid` of `session` (kept for session_of, boundedly)."""
        self.kernel_victims[pid] = session.name
        while len(self.kernel_victims) > MAX_ENDED_SESSIONS:
            self.kernel_victims.popitem(last=False)

    def session_members(self, sid: int) -> list[int]:
        """Thread groups of session `sid` alive now, from the kernel's `watched` map."""
        return [int(k.value) for k, v in self.probes[b"watched"].items()
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
        self.ingest.consume_enforced()
        if pid in self.kernel_victims:
            return self.sessions.get(self.kernel_victims[pid])
        try:
            sid = int(self.probes[b"watched"][ctypes.c_uint32(pid)].session)
        except (KeyError, TypeError):
            proc = self.table.get(pid)
            return self.sessions.get(proc.session) if proc and proc.session else None
        return next((s for s in self.sessions.values() if s.id == sid), None)

    def is_member(self, pid: int, sid: int) -> bool:
        try:
            return int(self.probes[b"watched"][ctypes.c_uint32(pid)].session) == sid
        except KeyError:
            return False


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
