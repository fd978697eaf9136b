"""JSON Lines sinks: one event a line, written with orjson."""

from __future__ import annotations

import contextlib
import os
import stat
import sys
from typing import BinaryIO, TextIO

import orjson

from collector.events import Event, one_line


class SinkError(OSError):
    pass


class JsonlSink:
    """Writes events to a file (appending) or to stdout for `-`. With `max_bytes`, a file
    that would grow past it is rotated first (`path` -> `path.1` -> ... -> `path.KEEP`,
    the oldest removed): a line is never split across two files."""

    def __init__(self, path: str, max_bytes: int = 0, keep: int = 5) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.keep = max(1, keep)
        self.rotations = 0
        self._size = 0
        self.written = 0
        self.dropped = 0
        self._pending = 0  # written into the buffer, not yet flushed
        self.broken = False
        self._f: BinaryIO
        if path == "-":
            self._f = sys.stdout.buffer
            self._own = False
        else:
            try:
                self._f = open(path, "ab", buffering=1 << 16)  # noqa: SIM115
                # a FIFO or a device (--alerts /dev/stderr, a named pipe) has no size
                # and is never rotated
                regular = stat.S_ISREG(os.fstat(self._f.fileno()).st_mode)
                self._size = self._f.tell() if regular else 0
                if not regular:
                    self.max_bytes = 0
            except OSError as e:
                raise SinkError(f"cannot open events file {path}: {e.strerror}") from e
            self._own = True

    def _rotate(self) -> None:
        self._f.flush()
        self._pending = 0
        self._f.close()
        for i in range(self.keep - 1, 0, -1):
            src = f"{self.path}.{i}"
            if os.path.exists(src):
                os.replace(src, f"{self.path}.{i + 1}")
        os.replace(self.path, f"{self.path}.1")
        self._f = open(self.path, "ab", buffering=1 << 16)  # noqa: SIM115
        self._size = 0
        self.rotations += 1

    def write(self, event: Event) -> None:
        if self.broken:
            self.dropped += 1
            return
        try:
            # Event.to_json()'s bytes with the newline appended by orjson (no copy)
            line = orjson.dumps(event, option=orjson.OPT_APPEND_NEWLINE)
            if self.max_bytes and self._own and self._size and \
                    self._size + len(line) > self.max_bytes:
                self._rotate()
            self._f.write(line)
            self._size += len(line)
            self.written += 1
            self._pending += 1
        except OSError as e:
            self._fail(e)
            self.dropped += 1

    def _fail(self, e: OSError) -> None:
        """The reader went away (`| head`) or the disk is full: stop writing, say so once,
        and count every event not written from then on (`dropped`)."""
        self.broken = True
        # What sat in the buffer since the last good flush is gone too.
        self.written -= self._pending
        self.dropped += self._pending
        self._pending = 0
        if not isinstance(e, BrokenPipeError):
            print(f"agentwatch: cannot write events to {self.path}: {e.strerror}; "
                  "events are no longer written there (counted as dropped)", file=sys.stderr)

    def flush(self) -> None:
        if self.broken:
            return
        try:
            self._f.flush()
            self._pending = 0
        except OSError as e:
            self._fail(e)

    def close(self) -> None:
        self.flush()
        if self._own:
            with contextlib.suppress(OSError):  # already reported by flush()
                self._f.close()


class MemorySink:
    """Keeps every event in a list (tests, tools, embedding agentwatch in a program)."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def write(self, event: Event) -> None:
        self.events.append(event)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    def session(self, name: str) -> list[Event]:
        return [e for e in self.events if e.session == name]


SEVERITY_COLOURS = {"critical": "1;31", "high": "31", "medium": "33", "low": "36",
                    "info": "37"}


def alert_line(alert: Event, colour: bool = False) -> str:
    """One terminal line for an alert: severity, detector, session, pid, summary, action."""
    sev = str(getattr(alert, "severity", "?"))
    det = getattr(alert, "detector", "?")
    summary = getattr(alert, "summary", "")
    action = getattr(alert, "action", {}) or {}
    what = action.get("result") or action.get("taken") or ""
    head = one_line(f"[{sev.upper()}]")
    if colour and sev in SEVERITY_COLOURS:
        head = f"\033[{SEVERITY_COLOURS[sev]}m{head}\033[0m"
    # escaped again here: a line read back from a log file is not trusted to be clean
    return head + one_line(f" {det} session={alert.session} pid={alert.pid}: {summary}"
                           f" | action={what}")


class HumanAlertSink:
    """Alerts as one readable line each on stderr (the default of `agentwatch run`), or on
    another stream (the daemon's stdout, for journald: no prefix)."""

    def __init__(self, stream: TextIO | None = None, prefix: str = "agentwatch: ") -> None:
        self.stream = stream or sys.stderr
        self.prefix = prefix
        self.colour = self.stream.isatty()
        self.dropped = 0

    def write(self, event: Event) -> None:
        try:
            print(self.prefix + alert_line(event, self.colour), file=self.stream,
                  flush=True)
        except OSError:
            self.dropped += 1

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass
