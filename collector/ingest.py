"""The ingest loop: ring buffers -> decoded events -> process table -> one handler.

`Ingest` reads the probes' two rings: the `events` ring in bulk through its pages
(collector/ringbuf.py) where the machine allows it, else through BCC's callback; the
`enforced` ring (the kernel's kill records) through a BCC reader of its own, drained before
every poll. Each record is decoded, a kernel kill is announced to `on_kernel_kill` first,
session records go to `on_session`, and every other event is observed in the process table
(and enriched from it) before it is handed to `emit`. It also keeps the counters (`Stats`)
and the loss accounting: every record the kernel could not deliver is counted there (per
cause) and reported here as a `loss` event.

It knows nothing of detectors, responses or sinks: whoever composes it sets the hooks.
"""

from __future__ import annotations

import ctypes
import mmap
import select
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from collector import ringbuf
from collector.decode import LOST_NAMES, DecodeError, RecordDecoder
from collector.events import Event, ExecEvent, LossEvent, SessionEvent
from collector.proctable import ProcessTable
from probes import loader, rules

HEARTBEAT_SLOT = rules.VALUE["AW_CFG_HEARTBEAT"]
HEARTBEAT_EVERY = 0.1  # seconds: the reader's heartbeat in the kernel (fail_closed)
POLL_BUDGET = 4096  # records handled per poll before the loop gets control back
# While records flow, poll() waits at most this long: the probes wake the reader at most
# once per 250 µs per CPU (AW_WAKE_NS in probes/include/agentwatch.h) and send the records
# in between without a wake-up, so this bounds how long such a record can wait. An idle
# collector waits the caller's full timeout: the first record after a quiet spell wakes it.
ACTIVE_POLL_MS = 1


@dataclass
class Stats:
    events: Counter[str] = field(default_factory=Counter)
    decode_errors: int = 0
    lost_total: Counter[str] = field(default_factory=Counter)

    @property
    def lost(self) -> int:
        return sum(self.lost_total.values())


def _ignore(_event: Event) -> None:
    return None


class Ingest:
    """The rings of loaded probes, read into events handed to `emit`.

    `on_kernel_kill(event)` runs for an event the kernel killed its caller for, before
    anything else sees it; `on_session(event)` takes the kernel's session records (a
    launcher adopted, a session's end), which are not emitted here."""

    def __init__(self, emit: Callable[[Event], None], table: ProcessTable,
                 config: loader.ProbeConfig,
                 on_kernel_kill: Callable[[Event], None] = _ignore,
                 on_session: Callable[[SessionEvent], None] = _ignore) -> None:
        self.emit = emit
        self.on_kernel_kill = on_kernel_kill
        self.on_session = on_session
        self.table = table
        self.config = config
        self.decoder = RecordDecoder()
        self.stats = Stats()
        self.probes: Any = None  # probes.loader.Probes, from open() to close()
        self._callback_error: BaseException | None = None
        self._budget = POLL_BUDGET
        self._active = False  # the last poll handled records: poll again soon
        self._enforced_mgr: Any = None
        self._lib: Any = None
        self._reader: ringbuf.RingReader | None = None  # the events ring, read in bulk
        self._epoll: select.epoll | None = None
        self._beat_at = 0.0

    # ------------------------------------------------------------------ rings
    def open(self, probes: loader.Probes) -> None:
        """The events ring is read in bulk through its pages (collector/ringbuf.py) where the
        machine allows it, else through BCC's callback; the enforced ring through a BCC
        reader of its own (_open_enforced_first). One epoll waits on both."""
        self.probes = probes
        events, enforced = probes[b"events"], probes[b"enforced"]
        if ringbuf.supported():
            self._reader = ringbuf.RingReader(events.map_fd,
                                              self.config.ringbuf_pages * mmap.PAGESIZE)
            self._epoll = select.epoll()
            self._epoll.register(events.map_fd, select.EPOLLIN)
            self._epoll.register(enforced.map_fd, select.EPOLLIN)
        else:
            events.open_ring_buffer(self._on_record)
            enforced.open_ring_buffer(self._on_record)  # wakes poll() up
        self._open_enforced_first()

    def _open_enforced_first(self) -> None:
        """A second consumer of the `enforced` ring, drained before every poll: BCC's one
        manager serves its rings in a fixed order and stops at the events ring's budget,
        so under a flood the kernel's kill records could otherwise wait behind it."""
        from bcc.libbcc import _RINGBUF_CB_TYPE, lib

        def on_enforced(_ctx: Any, data: Any, size: int) -> int:
            self._handle_record(data, size)
            return 0

        self._enforced_cb = _RINGBUF_CB_TYPE(on_enforced)  # kept: ctypes must not free it
        self._enforced_mgr = lib.bpf_new_ringbuf(self.probes[b"enforced"].map_fd,
                                                 self._enforced_cb, None)
        self._lib = lib

    def consume_enforced(self) -> None:
        if self._enforced_mgr:
            self._lib.bpf_consume_ringbuf(self._enforced_mgr)

    def ring_fill(self) -> float | None:
        """How full the events ring buffer is now (0..1), from its producer and consumer
        positions (the pages BPF_RINGBUF maps share with user space)."""
        try:
            table = self.probes[b"events"]
            fd = table.map_fd
            size = self.config.ringbuf_pages * mmap.PAGESIZE
            with mmap.mmap(fd, mmap.PAGESIZE, mmap.MAP_SHARED, mmap.PROT_READ, offset=0) as c, \
                    mmap.mmap(fd, mmap.PAGESIZE, mmap.MAP_SHARED, mmap.PROT_READ,
                              offset=mmap.PAGESIZE) as p:
                cons = int.from_bytes(c[:8], "little")
                prod = int.from_bytes(p[:8], "little")
        except (OSError, ValueError, KeyError):
            return None
        return max(0.0, min(1.0, (prod - cons) / size)) if size else None

    def close(self) -> None:
        """Stop reading the rings (the probes themselves are closed by their owner)."""
        self._hand_over_losses()
        if self._enforced_mgr:
            self._lib.bpf_free_ringbuf(self._enforced_mgr)
            self._enforced_mgr = None
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        if self._epoll is not None:
            self._epoll.close()
            self._epoll = None
        self.probes = None

    # ------------------------------------------------------------------ records
    def _on_record(self, _ctx: Any, data: Any, size: int) -> int:
        """One ring-buffer record (BCC calls this through ctypes). Returns -1 when this
        poll's budget is spent: libbpf then stops (the record is consumed) and control
        comes back to the loop, which a steady flood would otherwise never give back."""
        self._handle_record(data, size)
        self._budget -= 1
        return -1 if self._budget <= 0 else 0

    def _handle_record(self, data: Any, size: int) -> None:
        self._handle_bytes(ctypes.string_at(data, size))

    def _handle_bytes(self, raw: bytes) -> None:
        # An exception must not escape into ctypes (it would print and drop it) nor stop a
        # batch: it is kept and re-raised by poll() in the caller's frame.
        try:
            event = self.decoder.decode(raw)
            if event.kernel_kill is not None:
                self.on_kernel_kill(event)
            if isinstance(event, SessionEvent):
                self.on_session(event)
                return
            proc = self.table.observe(event)
            if proc is not None:
                if event.ppid == 0:  # an adopted launcher's first records: the kernel
                    event.ppid = proc.ppid  # could not know its parent, /proc did
                if isinstance(event, ExecEvent) and event.ret == 0:
                    event.exe, event.cwd, event.ns = proc.exe, proc.cwd, proc.ns
            self.emit(event)
        except DecodeError:
            self.stats.decode_errors += 1
        except BaseException as e:  # noqa: BLE001
            if self._callback_error is None:
                self._callback_error = e

    def _reraise(self) -> None:
        if self._callback_error is not None:
            err, self._callback_error = self._callback_error, None
            raise err

    def poll(self, timeout_ms: int = 100) -> None:
        """Wait for records (at most timeout_ms) and handle up to a budget of them; an
        exception raised while handling one is raised here."""
        self._budget = POLL_BUDGET
        self.heartbeat()
        self.consume_enforced()
        timeout = min(timeout_ms, ACTIVE_POLL_MS) if self._active else timeout_ms
        if self._reader is not None and self._epoll is not None:
            if not self._reader.pending():
                self._epoll.poll(timeout / 1000)
            self.consume_enforced()
            self._budget -= self._reader.read(self._handle_bytes, self._budget)
        else:
            self.probes.bcc.ring_buffer_poll(timeout)
            if self._budget > 0:
                # epoll reports the ring only after a wake-up: records sent without one
                # (BPF_RB_NO_WAKEUP) are read here
                self.probes.bcc.ring_buffer_consume()
        self._active = self._budget < POLL_BUDGET
        self.consume_enforced()
        self._reraise()

    def heartbeat(self) -> None:
        """Tell the kernel a reader reads the rings (AW_CFG_HEARTBEAT, boot ns): with
        fail_closed, sessions that begin without one are held (probes/include/agentwatch.h)."""
        now = time.monotonic()
        if now - self._beat_at < HEARTBEAT_EVERY or self.probes is None:
            return
        self._beat_at = now
        self.probes[b"config"][ctypes.c_int(HEARTBEAT_SLOT)] = ctypes.c_uint64(
            time.clock_gettime_ns(time.CLOCK_BOOTTIME))

    def drain(self, max_seconds: float = 2.0) -> None:
        """Consume the records in the ring buffers, until they are empty or, under a
        flood that keeps them full, for at most `max_seconds`."""
        deadline = time.monotonic() + max_seconds
        while True:
            self._budget = POLL_BUDGET
            self.heartbeat()  # a long drain is still a reader at work (fail_closed)
            self.consume_enforced()
            if self._reader is not None:
                self._budget -= self._reader.read(self._handle_bytes, self._budget)
            else:
                self.probes.bcc.ring_buffer_consume()
            if self._budget > 0 or time.monotonic() > deadline \
                    or self._callback_error is not None:
                break
        self._reraise()

    # ------------------------------------------------------------------ losses
    def read_lost(self) -> Counter[str]:
        counts: Counter[str] = Counter()
        for slot, n in enumerate(loader.read_lost(self.probes)):
            if n:
                counts[LOST_NAMES.get(slot, f"slot{slot}")] += n
        return counts

    def _hand_over_losses(self) -> None:
        """Pinned probes outlive this reader, their `lost` counters too: leave in them only
        what this reader has not reported, so that the next reader's deltas start from
        there (without this, every `run` re-using the pins reported the losses of the
        readers before it again). A reader that dies without closing leaves its reported
        losses in place, and the next one reports them again: counted twice, never lost.
        An increment that lands between the read and the write here is lost to the count
        (a window of microseconds, at close)."""
        probes = self.probes
        if probes is None or getattr(probes, "pins", None) is None:
            return
        reported = {k: v for k, v in self.stats.lost_total.items() if k != "undecodable"}
        try:
            table = probes[b"lost"]
            for slot in range(len(table)):
                key = ctypes.c_int(slot)
                total = sum(int(v) for v in table[key])
                if not total:
                    continue
                name = LOST_NAMES.get(slot, f"slot{slot}")
                leaf = table.Leaf()
                leaf[0] = max(0, total - reported.get(name, 0))
                table[key] = leaf
        except (KeyError, OSError, TypeError, ValueError):
            return  # the next reader then reports these again: more, never fewer

    def check_losses(self) -> LossEvent | None:
        """Read the kernel's loss counters; a `loss` event when they grew."""
        current = self.read_lost()
        if self.stats.decode_errors:
            current["undecodable"] = self.stats.decode_errors
        delta = {k: v - self.stats.lost_total.get(k, 0) for k, v in current.items()
                 if v != self.stats.lost_total.get(k, 0)}
        if not delta:
            return None
        self.stats.lost_total = current
        ev = LossEvent(ts=time.time_ns(), lost=delta, total=dict(current))
        self.emit(ev)
        return ev
