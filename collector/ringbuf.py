"""Read a BPF ring buffer in bulk from Python, through its shared pages.

BCC's reader (libbpf's ring_buffer__poll) calls back into Python once per record through a
ctypes trampoline, and the callback copies the record with ctypes.string_at: about a
microsecond per record before any decoding. This reader maps the consumer page read-write
and the producer page and the data pages read-only, and hands out the records of one batch
as `bytes` from plain slices, then moves the consumer position once per batch.

The data pages are mapped once, not twice in a row as libbpf maps them (so that a record
that wraps around is contiguous): the kernel populates every page of the mapping at mmap
time, so the second copy added the ring's whole size to the process's RSS from the start
(4 MiB on the default ring, 64 MiB on a 64 MiB one; issue 17). A record that wraps (its
data only: headers are 8-byte aligned and never straddle the end) is joined from two
slices.

Record layout (kernel/bpf/ringbuf.c): an 8-byte header, u32 length with BUSY (bit 31, not
yet committed) and DISCARD (bit 30) flags and u32 page offset, then the data, each record
rounded up to 8 bytes. Positions are u64 byte counters, taken modulo the data size.

Positions and headers are read and written as whole native words, through memoryview
casts ('Q', 'I'), which CPython copies with one fixed-size memcpy, a single load or store:
struct's little-endian '<Q' packs byte by byte, and a torn consumer position read by the
kernel mid-write made it see a full ring and drop records.

Memory ordering: the producer publishes a record by clearing BUSY with a release store,
and the reader must load that header with acquire semantics before the data. Python cannot
issue barriers; on x86-64 (TSO) ordinary loads are not reordered with older loads, which
is enough. `supported()` says False elsewhere, and the collector then uses BCC's reader.
"""

from __future__ import annotations

import mmap
import platform
from collections.abc import Callable

BUSY = 1 << 31
DISCARD = 1 << 30
HDR_SIZE = 8


def supported() -> bool:
    """Plain loads are acquire loads only on a TSO machine (see the module's docstring)."""
    return platform.machine() in ("x86_64", "AMD64")


class RingReader:
    """The consumer side of one BPF_MAP_TYPE_RINGBUF map of `size` data bytes."""

    def __init__(self, map_fd: int, size: int) -> None:
        page = mmap.PAGESIZE
        if size <= 0 or size & (size - 1) or size % page:
            raise ValueError(f"ring buffer size {size}: a power of two of whole pages")
        self.fd = map_fd
        self.size = size
        self.mask = size - 1
        self._cons = mmap.mmap(map_fd, page, mmap.MAP_SHARED,
                               mmap.PROT_READ | mmap.PROT_WRITE, offset=0)
        # the producer page, then the data pages once (the kernel would map them twice)
        self._data = mmap.mmap(map_fd, page + size, mmap.MAP_SHARED, mmap.PROT_READ,
                               offset=page)
        self._base = page
        self._end = page + size
        self._cons_q = memoryview(self._cons).cast("Q")   # [0]: consumer position
        self._data_q = memoryview(self._data).cast("Q")   # [0]: producer position
        self._data_i = memoryview(self._data).cast("I")   # record headers, by 4-byte index

    def pending(self) -> int:
        """Bytes written by the producer and not consumed yet."""
        prod: int = self._data_q[0]
        cons: int = self._cons_q[0]
        return prod - cons

    def read(self, handle: Callable[[bytes], object], budget: int) -> int:
        """Hand up to `budget` committed records to `handle`, oldest first; returns how
        many were handled. The consumer position moves once, after the batch (a producer
        that finds the ring full meanwhile counts its record as lost, as always)."""
        data, words, base, mask, end = self._data, self._data_i, self._base, self.mask, \
            self._end
        cons: int = self._cons_q[0]
        prod: int = self._data_q[0]
        n = 0
        try:
            while cons < prod and n < budget:
                at = base + (cons & mask)
                head: int = words[at >> 2]
                if head & BUSY:
                    break  # reserved, not committed yet: later records must wait for it
                length = head & ~DISCARD
                cons += (length + HDR_SIZE + 7) & ~7  # past it first: a raising handler
                if not head & DISCARD:                 # must not see it again
                    n += 1
                    start = at + HDR_SIZE
                    stop = start + length
                    if stop <= end:
                        handle(data[start:stop])
                    else:  # wraps: its tail is at the start of the data pages
                        handle(data[start:end] + data[base:base + stop - end])
        finally:
            self._cons_q[0] = cons
        return n

    def close(self) -> None:
        for view in (self._cons_q, self._data_q, self._data_i):
            view.release()
        self._data.close()
        self._cons.close()
