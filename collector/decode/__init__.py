"""Ring-buffer record -> Event: one dispatch on the header's type code.

Records come from the kernel, but the decoder still treats them as untrusted bytes: a
short or unknown record raises DecodeError (the collector counts it) rather than a
traceback. Kernel boot-clock timestamps become nanoseconds since the Unix epoch.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable

from collector.decode import file, net, proc, syscall, uring
from collector.events import Event, text
from probes import rules
from probes.layout import HDR_FIELDS, Header, Layout

Decoder = Callable[[Header, bytes], Event]

DECODERS: dict[int, tuple[Layout, Decoder]] = {**proc.DECODERS, **file.DECODERS,
                                               **net.DECODERS, **syscall.DECODERS,
                                               **uring.DECODERS}
TYPE_NAMES = {1: "exec", 2: "fork", 3: "exit", 4: "open", 5: "connect", 6: "syscall",
              7: "session", 8: "io_uring"}
# Slots of the kernel's `lost` array (enum aw_lost in include/agentwatch.h).
LOST_NAMES = {**TYPE_NAMES, 13: "enforced_ring_full", 14: "inflight_full",
              15: "untracked_child"}
# AW_WHY_*: why the kernel killed a process at a call's entry, as a detector id
# (probes/rules.py, where each reason names the detector that declares it)
KILL_REASONS = rules.KILL_REASONS

_HDR = Layout("aw_hdr", tuple(HDR_FIELDS), None).struct
_HDR_SIZE = _HDR.size
_TYPE_TS = struct.Struct("<I4xQ")  # type, (size), ts: the header's first 16 bytes
_KEY_AT = _TYPE_TS.size
# Hot path: the minimum size of each type computed once, not per record.
_DISPATCH = {typ: (layout.fixed_size, fn) for typ, (layout, fn) in DECODERS.items()}


class DecodeError(ValueError):
    pass


def session_name(session_id: int) -> str:
    return f"{session_id:016x}"


class RecordDecoder:
    def __init__(self) -> None:
        self._sessions: dict[int, str] = {}
        self._comms: dict[bytes, str] = {}
        self._headers: dict[bytes, Header] = {}  # header bytes past ts -> decoded fields
        self.resync_clock()

    def resync_clock(self) -> None:
        """Offset from the boot clock (bpf_ktime_get_boot_ns) to wall-clock time."""
        self.boot_to_epoch = time.time_ns() - time.clock_gettime_ns(time.CLOCK_BOOTTIME)

    def decode(self, data: bytes) -> Event:
        if len(data) < _HDR_SIZE:
            raise DecodeError(f"record of {len(data)} bytes is shorter than a header")
        typ, ts = _TYPE_TS.unpack_from(data)
        entry = _DISPATCH.get(typ)
        if entry is None:
            raise DecodeError(f"unknown record type {typ}")
        fixed_size, fn = entry
        if len(data) < fixed_size:
            raise DecodeError(f"{TYPE_NAMES.get(typ, typ)} record of {len(data)} bytes, "
                              f"expected at least {fixed_size}")
        if ts >= 1 << 62:  # boot-clock ns: centuries; only a corrupt record gets here
            raise DecodeError(f"{TYPE_NAMES.get(typ, typ)} record with timestamp {ts}")
        # The header past the timestamp (session, ids, flags, cgroup, comm) repeats from
        # record to record (a process's opens): decoded once, then copied.
        key = data[_KEY_AT:_HDR_SIZE]
        base = self._headers.get(key)
        if base is None:
            base = self._header(data)
            if len(self._headers) > 1024:  # a cache, bounded for a long-running daemon
                self._headers.clear()
            self._headers[key] = base
        hdr = base.copy()
        hdr["ts"] = ts + self.boot_to_epoch
        return fn(hdr, data)

    def _header(self, data: bytes) -> Header:
        (_typ, _size, _ts, session, pid, tid, ppid, uid, gid, hf, cgroup,
         comm) = _HDR.unpack_from(data)
        name = self._sessions.get(session)
        if name is None:
            if len(self._sessions) > 4096:  # a cache, bounded for a long-running daemon
                self._sessions.clear()
            name = self._sessions[session] = session_name(session)
        comm_text = self._comms.get(comm)
        if comm_text is None:
            if len(self._comms) > 4096:
                self._comms.clear()
            comm_text = self._comms[comm] = text(comm.split(b"\0", 1)[0])
        hdr = {"ts": 0, "session": name, "pid": pid, "tid": tid,
               "ppid": ppid, "uid": uid, "gid": gid, "comm": comm_text, "cgroup": cgroup,
               "setup": bool(hf & 1), "nested_launcher": bool(hf & 2)}
        if hf & 8:
            hdr["kernel_deny"] = True
        if hf & 0x10:
            hdr["compat"] = True
        if hf & 4:
            hdr["kernel_kill"] = KILL_REASONS.get((hf >> 8) & 0xFF, "unknown")
        return hdr
