"""The live stream: the daemon's events and alerts to `agentwatch alerts|events --follow`.

The daemon serves two unix sockets in the run directory (`/run/agentwatch`, or
`$AGENTWATCH_RUN_DIR`): `alerts.sock` and `events.sock`, mode 0600 in a 0700 directory,
peers checked to be uid 0. Connecting subscribes: every alert (event) written from then on
is sent as one JSON line. A client that does not keep up has its lines queued up to
`MAX_QUEUE` bytes, then is disconnected (and told so by the end of its stream): the
daemon never blocks on a reader, and the reader can resume from the log files.

The client reads the log files first (`/var/log/agentwatch/{alerts,events}.jsonl` and their
rotated copies, oldest first), then the socket; without a daemon it follows the file
itself (rotation included). Lines it cannot parse are skipped and counted.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from collector.events import AlertEvent, Event, one_line
from collector.proctable import proc_stat
from detectors.base import SEVERITIES
from service.control import listen_unix, peer_is_root
from service.paths import run_dir
from service.replay import parse_line

MAX_QUEUE = 8 << 20
LOG_DIR_ENV = "AGENTWATCH_LOG_DIR"
DEFAULT_LOG_DIR = "/var/log/agentwatch"


class StreamError(RuntimeError):
    pass


def log_dir() -> Path:
    return Path(os.environ.get(LOG_DIR_ENV, DEFAULT_LOG_DIR))


# ------------------------------------------------------------------------------ server


class _Client:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.queue = bytearray()


class StreamServer:
    """A sink (write/flush/close) that also accepts subscribers (serve())."""

    def __init__(self, name: str, directory: Path | None = None) -> None:
        self.dir = directory or run_dir()
        self.path = self.dir / f"{name}.sock"
        self.clients: list[_Client] = []
        self.dropped_clients = 0
        try:
            self.sock = listen_unix(self.path, 16)  # one daemon at a time: daemon_lock()
        except OSError as e:
            raise StreamError(f"stream socket {self.path}: {e.strerror}") from None

    def serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                break
            if not peer_is_root(conn):
                conn.close()
                continue
            conn.setblocking(False)
            self.clients.append(_Client(conn))
        for c in list(self.clients):
            if c.queue:
                self._send(c)

    def _send(self, c: _Client) -> None:
        try:
            n = c.sock.send(c.queue)
            del c.queue[:n]
        except BlockingIOError:
            pass
        except OSError:
            self._drop(c)

    def _drop(self, c: _Client) -> None:
        with contextlib.suppress(OSError):
            c.sock.close()
        if c in self.clients:
            self.clients.remove(c)

    def write(self, event: Event) -> None:
        if not self.clients:
            return
        line = event.to_json() + b"\n"
        for c in list(self.clients):
            c.queue += line
            if len(c.queue) > MAX_QUEUE:
                self.dropped_clients += 1
                self._drop(c)  # too slow: it resumes from the log files
                continue
            self._send(c)

    def flush(self) -> None:
        for c in list(self.clients):
            if c.queue:
                self._send(c)

    def close(self) -> None:
        for c in list(self.clients):
            with contextlib.suppress(OSError):
                c.sock.setblocking(True)
                c.sock.settimeout(1.0)
                c.sock.sendall(c.queue)
            self._drop(c)
        self.sock.close()
        with contextlib.suppress(OSError):
            self.path.unlink()


def _exiting(pid: int) -> bool:
    """True when pid is gone or in the middle of exiting (PF_EXITING in its task flags:
    a SIGKILLed daemon spends seconds detaching its BPF programs before its files close)."""
    st = proc_stat(pid)
    return st is None or bool(st.flags & 0x4)


def daemon_lock(directory: Path | None = None) -> int:
    """One daemon per host: an flock on the run directory's daemon.lock (which holds the
    owner's pid), taken before anything else. A lock whose owner is exiting (killed, still
    tearing down) is taken over: the file is replaced, so the restart does not wait.
    Returns the lock's fd (kept open for the daemon's life)."""
    import fcntl

    d = directory or run_dir()
    path = d / "daemon.lock"
    for _ in range(3):
        try:
            d.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as e:
            raise StreamError(f"{path}: {e.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            try:
                owner = int(os.pread(fd, 32, 0).decode().strip() or 0)
            except (OSError, ValueError):
                owner = 0
            os.close(fd)
            if owner and _exiting(owner):
                with contextlib.suppress(OSError):
                    path.unlink()  # a new file, a new lock: the dying owner keeps the old
                continue
            raise StreamError(f"another agentwatch daemon is running (pid {owner or '?'}, "
                              f"{path} is held)") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        return fd
    raise StreamError(f"{path}: could not be taken")


# ------------------------------------------------------------------------------ client


@dataclass
class Filter:
    since_ns: int | None = None
    severity: str | None = None      # minimum
    session: str | None = None
    detector: str | None = None
    kind: str | None = None

    def __call__(self, ev: Event) -> bool:
        if self.since_ns is not None and ev.ts < self.since_ns:
            return False
        if self.session is not None and ev.session != self.session:
            return False
        if self.kind is not None and ev.kind != self.kind:
            return False
        if isinstance(ev, AlertEvent):
            if self.detector is not None and ev.detector != self.detector:
                return False
            if self.severity is not None and \
                    SEVERITIES.index(ev.severity) < SEVERITIES.index(self.severity):
                return False
        elif self.detector is not None or self.severity is not None:
            return False
        return True


_RELATIVE = re.compile(r"(\d+(?:\.\d+)?)([smhd])")


def parse_since(text: str, now: float | None = None) -> int:
    """`10m`, `2h`, `1d`, `30s` ago; an ISO 8601 time; or Unix seconds -> ns since epoch."""
    now = time.time() if now is None else now
    m = _RELATIVE.fullmatch(text.strip())
    if m:
        unit = {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
        return int((now - float(m.group(1)) * unit) * 1e9)
    try:
        return int(float(text) * 1e9)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise StreamError(f"--since {text!r}: expected 10m, 2h, 1d, an ISO time "
                          "(2026-11-29T14:00:00) or Unix seconds") from None
    return int(dt.timestamp() * 1e9)


def log_files(directory: Path, name: str) -> list[Path]:
    """name.jsonl and its rotated copies, oldest first."""
    base = directory / f"{name}.jsonl"
    rotated = []
    for p in directory.glob(f"{name}.jsonl.*"):
        suffix = p.name.rsplit(".", 1)[-1]
        if suffix.isdigit():
            rotated.append((int(suffix), p))
    return [p for _, p in sorted(rotated, reverse=True)] + ([base] if base.exists() else [])


def _parse(raw: bytes, bad: list[int]) -> Event | None:
    raw = raw.strip()
    if not raw:
        return None
    try:
        return parse_line(raw)
    except ValueError:
        bad[0] += 1
        return None


def read_logs(directory: Path, name: str, bad: list[int]) -> Iterator[Event]:
    for path in log_files(directory, name):
        try:
            with open(path, "rb") as f:
                for raw in f:
                    ev = _parse(raw, bad)
                    if ev is not None:
                        yield ev
        except OSError:
            continue


def connect(name: str, directory: Path | None = None) -> socket.socket | None:
    path = (directory or run_dir()) / f"{name}.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(str(path))
    except OSError:
        s.close()
        return None
    return s


def _socket_lines(s: socket.socket) -> Iterator[bytes]:
    buf = b""
    while True:
        try:
            chunk = s.recv(65536)
        except OSError:
            return
        if not chunk:
            return
        buf += chunk
        *lines, buf = buf.split(b"\n")
        yield from lines


def follow(name: str, flt: Filter, emit: Callable[[Event], None], logs: Path,
           history: bool = True, tail_lines: int = 10, follow_live: bool = True,
           stop: Callable[[], bool] = lambda: False) -> int:
    """Print the logs (all that pass the filter, or the last `tail_lines` of them when no
    --since is given and following), then new lines live: from the daemon's socket, else
    from the log file. Returns how many lines could not be parsed."""
    bad = [0]
    sock = connect(name) if follow_live else None
    last_ts = -1
    size_at_start = 0
    base = logs / f"{name}.jsonl"
    with contextlib.suppress(OSError):
        size_at_start = base.stat().st_size
    if history:
        kept: list[Event] = []
        for ev in read_logs(logs, name, bad):
            if flt(ev):
                kept.append(ev)
                if follow_live and flt.since_ns is None and len(kept) > tail_lines:
                    kept.pop(0)
            last_ts = max(last_ts, ev.ts)
        for ev in kept:
            emit(ev)
    if not follow_live:
        return bad[0]
    while not stop():
        if sock is not None:
            for raw in _socket_lines(sock):
                live = _parse(raw, bad)
                if live is not None and live.ts > last_ts and flt(live):
                    emit(live)
                if stop():
                    break
            sock.close()
            sock = None
            print("agentwatch: the daemon's stream ended; following the log file",
                  file=sys.stderr)
            with contextlib.suppress(OSError):
                size_at_start = base.stat().st_size
        # no daemon: follow the file from where it is now (or from the start of history)
        lines = _tail_from(base, size_at_start, stop)
        for raw in lines:
            tailed = _parse(raw, bad)
            if tailed is not None and tailed.ts > last_ts and flt(tailed):
                emit(tailed)
                last_ts = tailed.ts
            if sock is None and (s := connect(name)) is not None:
                sock = s  # the daemon is back: its socket from now on
                break
    return bad[0]


def _tail_from(path: Path, start: int, stop: Callable[[], bool]) -> Iterator[bytes]:
    f = None
    ino = None
    pos = start
    buf = b""
    idle = 0
    while not stop():
        try:
            st = path.stat()
        except OSError:
            time.sleep(0.2)
            idle += 1
            if idle % 5 == 0:
                yield b""  # let the caller look for the daemon's socket
            continue
        if f is None or st.st_ino != ino:
            if f is not None:
                f.close()
                pos = 0  # rotated: the new file from its start
            f = open(path, "rb")  # noqa: SIM115
            ino = st.st_ino
            f.seek(min(pos, st.st_size))
        data = f.read()
        if data:
            buf += data
            *lines, buf = buf.split(b"\n")
            yield from lines
        else:
            time.sleep(0.2)
            idle += 1
            if idle % 5 == 0:
                yield b""
    if f is not None:
        f.close()


def event_line(ev: Event) -> str:
    """One terminal line for an event."""
    stamp = datetime.fromtimestamp(ev.ts / 1e9).strftime("%H:%M:%S.%f")[:-3]
    d: dict[str, Any] = {}
    for key in ("syscall", "filename", "path", "address", "port", "ret", "error", "phase",
                "child_pid", "exit_code", "signal", "lost"):
        v = getattr(ev, key, None)
        if v is not None and v != "" and not (key == "ret" and v == 0):
            d[key] = v
    detail = " ".join(f"{k}={v}" for k, v in d.items())
    text = f"{stamp} {ev.kind:7} {ev.session or '-'} pid={ev.pid} {ev.comm}: {detail}"
    return one_line(text)
