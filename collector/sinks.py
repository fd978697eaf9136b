"""JSON Lines sinks: one event a line, written with orjson."""

from __future__ import annotations

import sys
from typing import BinaryIO

from collector.events import Event


class SinkError(OSError):
    pass


class JsonlSink:
    """Writes events to a file (appending) or to stdout for `-`."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.written = 0
        self.broken = False
        self._f: BinaryIO
        if path == "-":
            self._f = sys.stdout.buffer
            self._own = False
        else:
            try:
                self._f = open(path, "ab", buffering=1 << 16)  # noqa: SIM115
            except OSError as e:
                raise SinkError(f"cannot open events file {path}: {e.strerror}") from e
            self._own = True

    def write(self, event: Event) -> None:
        if self.broken:
            return
        try:
            self._f.write(event.to_json() + b"\n")
            self.written += 1
        except BrokenPipeError:
            self.broken = True  # the reader went away (e.g. `| head`): stop writing

    def flush(self) -> None:
        if self.broken:
            return
        try:
            self._f.flush()
        except BrokenPipeError:
            self.broken = True

    def close(self) -> None:
        self.flush()
        if self._own:
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
