"""The few bpf() and perf_event_open() calls pinning needs, through libc's syscall().

BCC's Python module has no call for pinning an object, opening a pinned one, making a
bpf_link of a perf event or asking the kernel about an object; libbpf does, but agentwatch
depends on BCC only. Each function here is one system call with its attribute struct laid
out as the kernel's uapi header says (include/uapi/linux/bpf.h, perf_event.h); an error is
an OSError with the kernel's errno. Nothing here knows agentwatch's programs or maps.
"""

from __future__ import annotations

import ctypes
import os
import platform
import struct
from dataclasses import dataclass
from pathlib import Path

# syscall numbers: bpf, perf_event_open
_NR = {"x86_64": (321, 298), "aarch64": (280, 241), "riscv64": (280, 241),
       "ppc64le": (361, 319), "s390x": (351, 331)}

BPF_OBJ_PIN, BPF_OBJ_GET, BPF_OBJ_GET_INFO_BY_FD = 6, 7, 15
BPF_PROG_GET_FD_BY_ID, BPF_MAP_GET_FD_BY_ID, BPF_LINK_CREATE = 13, 14, 28
BPF_PERF_EVENT = 41            # enum bpf_attach_type: a perf event's bpf_link
PERF_TYPE_TRACEPOINT = 2
PERF_SAMPLE_RAW = 1 << 10
PERF_FLAG_FD_CLOEXEC = 1 << 3
PERF_EVENT_IOC_ENABLE = 0x2400
BPF_F_RDONLY, BPF_F_WRONLY = 1 << 3, 1 << 4

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def _nr() -> tuple[int, int]:
    try:
        return _NR[platform.machine()]
    except KeyError:
        raise OSError(f"no bpf() syscall number known for {platform.machine()}") from None


def _bpf(cmd: int, attr: ctypes.Array[ctypes.c_char]) -> int:
    ret = _libc.syscall(ctypes.c_long(_nr()[0]), ctypes.c_long(cmd), attr,
                        ctypes.c_long(len(attr)))
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return int(ret)


def obj_pin(fd: int, path: str | Path) -> None:
    """BPF_OBJ_PIN: `fd` (a map, program or link) stays alive at `path` on a bpffs."""
    name = ctypes.create_string_buffer(os.fsencode(path))
    attr = ctypes.create_string_buffer(struct.pack("=QII", ctypes.addressof(name), fd, 0), 24)
    _bpf(BPF_OBJ_PIN, attr)


def obj_get(path: str | Path, flags: int = 0) -> int:
    """BPF_OBJ_GET: a new fd (close-on-exec) on the object pinned at `path`."""
    name = ctypes.create_string_buffer(os.fsencode(path))
    attr = ctypes.create_string_buffer(struct.pack("=QII", ctypes.addressof(name), 0, flags),
                                       24)
    return _bpf(BPF_OBJ_GET, attr)


def _info(fd: int, size: int) -> bytes:
    buf = ctypes.create_string_buffer(size)
    attr = ctypes.create_string_buffer(struct.pack("=IIQ", fd, size, ctypes.addressof(buf)),
                                       16)
    _bpf(BPF_OBJ_GET_INFO_BY_FD, attr)
    return buf.raw


@dataclass(frozen=True)
class MapInfo:
    type: int
    id: int
    key_size: int
    value_size: int
    max_entries: int
    flags: int
    name: str


def map_info(fd: int) -> MapInfo:
    """struct bpf_map_info's first fields."""
    raw = _info(fd, 80)
    t, i, ks, vs, me, fl = struct.unpack_from("=6I", raw)
    name = raw[24:40].split(b"\0", 1)[0].decode(errors="replace")
    return MapInfo(t, i, ks, vs, me, fl, name)


def link_info(fd: int) -> tuple[int, int, int]:
    """(link type, link id, program id) of a bpf_link (struct bpf_link_info)."""
    t, i, prog = struct.unpack_from("=3I", _info(fd, 64))
    return t, i, prog


def prog_id(fd: int) -> int:
    """The id of a loaded program (struct bpf_prog_info.id)."""
    return int(struct.unpack_from("=2I", _info(fd, 228))[1])


def link_create(prog_fd: int, target_fd: int, attach_type: int) -> int:
    """BPF_LINK_CREATE: a bpf_link fd attaching `prog_fd` to `target_fd`."""
    attr = ctypes.create_string_buffer(struct.pack("=IIIIQ", prog_fd, target_fd,
                                                   attach_type, 0, 0), 64)
    return _bpf(BPF_LINK_CREATE, attr)


def tracepoint_id(tracefs: Path, category: str, event: str) -> int:
    return int((tracefs / "events" / category / event / "id").read_text())


def perf_tracepoint(tp_id: int) -> int:
    """perf_event_open() of tracepoint `tp_id` on all tasks, CPU 0, as BCC opens the ones
    it attaches programs to (the program runs on every CPU), with no program set."""
    attr = bytearray(128)  # PERF_ATTR_SIZE_VER7
    struct.pack_into("=IIQQQ", attr, 0, PERF_TYPE_TRACEPOINT, len(attr), tp_id, 1,
                     PERF_SAMPLE_RAW)
    struct.pack_into("=I", attr, 48, 1)  # wakeup_events
    buf = ctypes.create_string_buffer(bytes(attr), len(attr))
    ret = _libc.syscall(ctypes.c_long(_nr()[1]), buf, ctypes.c_int(-1), ctypes.c_int(0),
                        ctypes.c_int(-1), ctypes.c_ulong(PERF_FLAG_FD_CLOEXEC))
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return int(ret)


def perf_link(prog_fd: int, tracefs: Path, category: str, event: str) -> int:
    """A pinnable bpf_link of `prog_fd` on tracepoint category:event (kernel >= 5.15): the
    perf event is opened, linked and enabled; its own fd is closed (the link holds it)."""
    pfd = perf_tracepoint(tracepoint_id(tracefs, category, event))
    try:
        link = link_create(prog_fd, pfd, BPF_PERF_EVENT)
        import fcntl

        fcntl.ioctl(pfd, PERF_EVENT_IOC_ENABLE, 0)
        return link
    finally:
        os.close(pfd)
