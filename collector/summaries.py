"""The kernel's counts of opens it did not send, as `summary` events.

At an open's exit the probes count, instead of sending, the opens no enabled detector can
use (probes/include/aw_interest.h; the plan of what those are: detectors/interest.py,
written by the service for each session). The counts are kept by (session, process,
root) in `interest_counts` and in total per session in `interest_totals`. About once a
second, and when a session ends, `Summaries.flush` turns what each key gained since its
last summary into one `summary` event, so the stream says how many opens of which process
below which root were summarised, and a session's summaries add up to the kernel's total
(its end event's `summarised`).

Keys are never reset while their process may count more (a reset would race the
kernel's increments): a key is deleted once its process is no longer in `watched`, after
its last counts were reported. Pure bookkeeping; the maps are passed in.
"""

from __future__ import annotations

import contextlib
import ctypes
from collections.abc import Callable
from typing import Any

from collector.decode import session_name
from collector.events import SummaryEvent
from collector.proctable import ProcessTable


class Summaries:
    def __init__(self, emit: Callable[[SummaryEvent], None],
                 table: ProcessTable | None = None) -> None:
        self.emit = emit
        self.table = table  # the process table: each summary's comm, ppid and uid
        self.counts: Any = None     # BCC tables: interest_counts, interest_totals, watched
        self.totals: Any = None
        self.watched: Any = None
        self.boot_to_epoch = 0
        self.roots: dict[int, str] = {}  # root id -> its directory (the service's plan)
        # (session, pid, root) -> (files, failed) already reported
        self._seen: dict[tuple[int, int, int], tuple[int, int]] = {}
        self.emitted = 0            # opens reported in summary events, all sessions
        self.events = 0             # summary events emitted

    def open(self, probes: Any, boot_to_epoch: int) -> None:
        try:
            self.counts = probes[b"interest_counts"]
            self.totals = probes[b"interest_totals"]
            self.watched = probes[b"watched"]
        except Exception:  # noqa: BLE001 - BCC raises KeyError, pins their own
            self.counts = self.totals = None  # pinned maps of an older sensor
            return
        self.boot_to_epoch = boot_to_epoch

    def flush(self, session: int | None = None, final: bool = False) -> int:
        """Report what each key gained (only `session`'s when given); with `final`, that
        session has ended: its keys and total are deleted after. Returns the events."""
        if self.counts is None:
            return 0
        n = 0
        for key, value in list(self.counts.items()):
            sid, pid, root = int(key.session), int(key.pid), int(key.root)
            if session is not None and sid != session:
                continue
            k = (sid, pid, root)
            now, first_ts, last_ts = _sum(value)
            before = self._seen.get(k, (0, 0))
            delta = tuple(a - b for a, b in zip(now, before, strict=True))
            if any(delta):
                self._report(sid, pid, root, delta, first_ts, last_ts)
                n += 1
                self._seen[k] = now
            if final or not self._alive(pid):
                # its process is gone: nothing can count to this key any more
                if not final and any(a != b for a, b in zip(now, self._current(key),
                                                            strict=True)):
                    continue  # counted meanwhile (a new process with its pid)
                self._delete(key)
                self._seen.pop(k, None)
        return n

    def end_session(self, session: int) -> int | None:
        """A session ended: its last summaries, then the kernel's total for it (None when
        nothing is summarised here), which they add up to."""
        if self.counts is None:
            return None
        self.flush(session, final=True)
        total = self.total(session)
        with contextlib.suppress(KeyError):
            del self.totals[ctypes.c_uint64(session)]
        return total

    def total(self, session: int) -> int:
        """The kernel's count of opens summarised for a session so far."""
        if self.totals is None:
            return 0
        v = self.totals.get(ctypes.c_uint64(session))
        return sum(int(c) for c in v) if v is not None else 0  # per CPU

    # ------------------------------------------------------------------ helpers
    def _report(self, sid: int, pid: int, root: int, delta: tuple[int, ...],
                first_ts: int, last_ts: int) -> None:
        files, failed = delta
        count = files + failed
        self.emitted += count
        self.events += 1
        last = last_ts + self.boot_to_epoch
        proc = self.table.get(pid) if self.table is not None else None
        self.emit(SummaryEvent(
            ts=last, session=session_name(sid), pid=pid, root=self.roots.get(root, f"#{root}"),
            comm=proc.comm if proc else "", ppid=proc.ppid if proc else 0,
            uid=proc.uid if proc else 0,
            count=count, files=files, failed=failed,
            first_ts=first_ts + self.boot_to_epoch, last_ts=last))

    def _alive(self, pid: int) -> bool:
        return self.watched.get(ctypes.c_uint32(pid)) is not None

    def _current(self, key: Any) -> tuple[int, int]:
        v = self.counts.get(key)
        return (0, 0) if v is None else _sum(v)[0]

    def _delete(self, key: Any) -> None:
        with contextlib.suppress(KeyError):
            del self.counts[key]


def _sum(per_cpu: Any) -> tuple[tuple[int, int], int, int]:
    """A per-CPU value's (files, failed), its least first time and greatest last time."""
    files = failed = last = 0
    first = 0
    for v in per_cpu:
        files += int(v.files)
        failed += int(v.failed)
        if v.first_ts and (not first or int(v.first_ts) < first):
            first = int(v.first_ts)
        last = max(last, int(v.last_ts))
    return (files, failed), first, last
