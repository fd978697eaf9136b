"""The control socket: `agentwatch session list|freeze|thaw|kill` talk to running collectors.

Each running `agentwatch run`, `daemon` or `attach` serves a unix socket in the run
directory (`/run/agentwatch`, or `$AGENTWATCH_RUN_DIR`), named `control-<pid>.sock`, mode
0600 in a 0700 directory, and answers only peers with uid 0 (SO_PEERCRED). A request is one
JSON line, `{"op": "sessions"|"status"|"reload"}` or `{"op": "freeze"|"thaw"|"kill",
"session": ID}`; the
answer is one JSON line, `{"ok": true, ...}` or `{"ok": false, "error": "..."}`. The
collector serves it from its poll loop (about every 100 ms), never blocking on a client
for more than half a second.

The client asks every socket in the directory (stale ones, of collectors that died, are
skipped and removed); a session that no collector knows but that has a cgroup of its own
(`agentwatch run`) can still be thawed or killed through the cgroup.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from response import cgroup as cgroups
from service.paths import run_dir

if TYPE_CHECKING:
    from collector.ingest import Stats
    from collector.sessions import Session
    from response.enforce import Egress, Policy
    from service.analysis import Analyzer

MAX_REQUEST = 4096
OPS = ("sessions", "freeze", "thaw", "kill", "status", "reload")


class ControlError(RuntimeError):
    pass


def listen_unix(path: Path, backlog: int) -> socket.socket:
    """A non-blocking listening unix socket at `path` (replacing a stale one), mode 0600
    in a directory made 0700: only root reaches it. OSError when it cannot be made."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    path.unlink(missing_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        sock.bind(str(path))
    except OSError:
        sock.close()
        raise
    finally:
        os.umask(old)
    sock.listen(backlog)
    sock.setblocking(False)
    return sock


def peer_is_root(conn: socket.socket) -> bool:
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    uid: int = struct.unpack("3i", creds)[1]
    return uid == 0


class Controlled(Protocol):
    """What the control socket, `status` and the metrics use of a running collector
    (service/pipeline.py's Collector, which serves them from its poll loop)."""

    started: float
    analyzer: Analyzer | None
    policy: Policy
    egress: Egress
    stats: Stats
    sessions: dict[str, Session]
    alert_counts: Counter[tuple[str, str]]

    @property
    def kills(self) -> Counter[str]: ...
    @property
    def sessions_started(self) -> int: ...
    def session_members(self, sid: int) -> list[int]: ...
    def kill_session(self, session: Session) -> str: ...
    def freeze_session(self, session: Session) -> str: ...
    def thaw_session(self, session: Session) -> str: ...
    def ring_fill(self) -> float | None: ...
    def sink_dropped(self) -> int: ...
    def interest_status(self) -> dict[str, Any]: ...


class ControlServer:
    def __init__(self, collector: Controlled, directory: Path | None = None,
                 reload: Callable[[], tuple[bool, str]] | None = None,
                 role: str = "run") -> None:
        self.collector = collector
        self.reload = reload
        self.role = role
        self.dir = directory or run_dir()
        self.path = self.dir / f"control-{os.getpid()}.sock"
        try:
            self.sock = listen_unix(self.path, 8)
        except OSError as e:
            raise ControlError(f"control socket {self.path}: {e.strerror}") from None

    def close(self) -> None:
        self.sock.close()
        with contextlib.suppress(OSError):
            self.path.unlink()

    def serve(self) -> None:
        """Answer every client waiting now (called from the poll loop)."""
        while True:
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            with conn:
                conn.settimeout(0.5)
                try:
                    reply = self._handle(conn)
                except Exception as e:  # noqa: BLE001 - a bad request never stops the loop
                    reply = {"ok": False, "error": f"{type(e).__name__}: {e}"}
                with contextlib.suppress(OSError):
                    conn.sendall(orjson.dumps(reply) + b"\n")

    def _handle(self, conn: socket.socket) -> dict[str, Any]:
        if not peer_is_root(conn):
            return {"ok": False, "error": "only root may control sessions"}
        data = b""
        while not data.endswith(b"\n") and len(data) < MAX_REQUEST:
            chunk = conn.recv(MAX_REQUEST)
            if not chunk:
                break
            data += chunk
        try:
            req = orjson.loads(data)
        except orjson.JSONDecodeError:
            return {"ok": False, "error": "request is not JSON"}
        if not isinstance(req, dict) or req.get("op") not in OPS:
            return {"ok": False, "error": f"op must be one of {', '.join(OPS)}"}
        c = self.collector
        if req["op"] == "sessions":
            return {"ok": True, "pid": os.getpid(), "sessions": self._sessions()}
        if req["op"] == "status":
            return {"ok": True, **status(c, self.role), "sessions": self._sessions()}
        if req["op"] == "reload":
            if self.reload is None:
                return {"ok": False, "error": f"this agentwatch ({self.role}) has no "
                                              "configuration file to reload"}
            ok, text = self.reload()
            return {"ok": ok, "result": text} if ok else {"ok": False, "error": text}
        name = req.get("session")
        session = c.sessions.get(name) if isinstance(name, str) else None
        if session is None or session.ended:
            return {"ok": False, "error": f"no running session {name!r} here"}
        if req["op"] == "kill":
            result = c.kill_session(session)
        elif req["op"] == "freeze":
            result = c.freeze_session(session)
        else:
            result = c.thaw_session(session)
        return {"ok": True, "session": session.name, "result": result}


    def _sessions(self) -> list[dict[str, Any]]:
        c = self.collector
        return [{"session": s.name, "kind": s.kind, "root_pid": s.root_pid,
                 "state": s.state, "argv": s.argv[:8], "cgroup": str(s.cgroup.path)
                 if s.cgroup else None, "members": len(c.session_members(s.id)),
                 "events": s.events, "started_ns": s.started_ns}
                for s in c.sessions.values() if not s.ended]


def status(c: Controlled, role: str) -> dict[str, Any]:
    """What `agentwatch status` and the metrics show: counters since start."""
    import time

    config = c.analyzer.engine.config if c.analyzer is not None else None
    return {
        "pid": os.getpid(), "role": role, "uptime_s": round(time.time() - c.started, 1),
        "mode": config.mode if config else "monitor",
        "config": config.source if config else None,
        "enforcement": c.policy.describe(), "egress": c.egress.describe(),
        "events": dict(c.stats.events), "lost": dict(c.stats.lost_total),
        "alerts": [{"detector": d, "severity": sev, "count": n}
                   for (d, sev), n in sorted(c.alert_counts.items())],
        "kills": dict(c.kills), "sessions_started": c.sessions_started,
        "ring_fill": c.ring_fill(), "unwritten": c.sink_dropped(),
        "interest": c.interest_status(),
        **_memory(),
    }


def _memory() -> dict[str, int | None]:
    """This process's resident memory now and at its peak (the compile), in kB."""
    from probes.residency import status as mem

    m = mem()
    return {"rss_kb": m.get("VmRSS"), "hwm_kb": m.get("VmHWM")}


# ------------------------------------------------------------------------------ client


def _sockets(directory: Path) -> Iterator[Path]:
    try:
        yield from sorted(directory.glob("control-*.sock"))
    except OSError:
        return


def request(path: Path, req: dict[str, Any], timeout: float = 10.0) -> dict[str, Any] | None:
    """One request to one collector; None if nobody listens there (the file is removed)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(str(path))
    except (ConnectionRefusedError, FileNotFoundError):
        s.close()
        with contextlib.suppress(OSError):
            path.unlink()  # a collector that died without cleaning up
        return None
    except OSError as e:
        s.close()
        raise ControlError(f"{path}: {e.strerror}") from None
    with s:
        try:
            s.sendall(orjson.dumps(req) + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        except OSError as e:
            raise ControlError(f"{path}: {e.strerror or e}") from None
    try:
        reply = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise ControlError(f"{path}: the collector's answer is not JSON") from None
    return reply if isinstance(reply, dict) else None


def list_sessions(directory: Path | None = None) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for path in _sockets(directory or run_dir()):
        reply = request(path, {"op": "sessions"})
        if reply and reply.get("ok"):
            for s in reply.get("sessions", []):
                out.append({**s, "collector_pid": reply.get("pid")})
    return out


def collectors(directory: Path | None = None, op: str = "status") -> list[dict[str, Any]]:
    """Ask every running collector (`status` or `reload`); their answers."""
    out = []
    for path in _sockets(directory or run_dir()):
        reply = request(path, {"op": op}, timeout=60.0)
        if reply is not None:
            out.append(reply)
    return out


def act(op: str, session: str, directory: Path | None = None) -> str:
    """freeze/thaw/kill a session wherever it is watched; the result, or ControlError."""
    errors = []
    for path in _sockets(directory or run_dir()):
        reply = request(path, {"op": op, "session": session})
        if reply is None:
            continue
        if reply.get("ok"):
            return str(reply.get("result"))
        errors.append(str(reply.get("error")))
    cg = cgroups.find(session)
    if cg is not None and op in ("thaw", "kill", "freeze"):
        # no collector knows it (e.g. `agentwatch run` was killed): its cgroup still works
        if op == "kill":
            n = len(cg.procs())
            cg.kill()
            cg.wait_empty(2.0)
            return f"killed {n} processes through {cg.path}/cgroup.kill (no collector)"
        cg.freeze(op == "freeze")
        return f"{op} done through {cg.path}/cgroup.freeze (no collector)"
    if not errors:
        raise ControlError(f"no running agentwatch watches session {session!r}")
    raise ControlError("; ".join(sorted(set(errors))))
