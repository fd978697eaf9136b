"""BCC's side of pinning (probes/pins.py): what BCC's Python module does not offer.

- `pinning_bpf_class()`: BCC's BPF with tracepoints attached as bpf_links
  (BPF_LINK_CREATE with BPF_PERF_EVENT, pinnable) instead of perf events with
  PERF_EVENT_IOC_SET_BPF (not pinnable);
- the module's every map and function by name (BCC's `tables` holds only those used);
- `make_table()`: BCC's own table class over a pinned map's fd, without a compiled module;
- attachments made after the load (`attach_late`, `detach_late`, `attach_cgroup`), pinned
  when the probes are.
"""

from __future__ import annotations

import contextlib
import os
import re
from typing import Any

from probes import bpfsys, kernel


class PinError(RuntimeError):
    """The pins cannot be used or made (the message says why)."""


def _name(text: str) -> str:
    """A file name for bpffs: letters, digits and _ only."""
    return re.sub(r"[^A-Za-z0-9_]", "_", text)[:200]


# ------------------------------------------------------------------------------ BCC side
def pinning_bpf_class() -> type:
    """BCC's BPF, with tracepoints attached as bpf_links (pinnable), not perf events."""
    from bcc import BPF

    class PinningBPF(BPF):  # type: ignore[misc]
        perf_links: dict[bytes, tuple[bytes, int]]

        def attach_tracepoint(self, tp: bytes = b"", tp_re: bytes = b"",
                              fn_name: bytes = b"") -> Any:
            if not hasattr(self, "perf_links"):
                self.perf_links = {}
            if isinstance(tp, str):
                tp = tp.encode()
            if isinstance(fn_name, str):
                fn_name = fn_name.encode()
            if tp_re:
                raise PinError("tracepoints by regular expression cannot be pinned")
            fn = self.load_func(fn_name, BPF.TRACEPOINT)
            category, event = tp.decode().split(":")
            try:
                link = bpfsys.perf_link(fn.fd, kernel.TRACEFS, category, event)
            except OSError as e:
                raise Exception(f"Failed to attach BPF program {fn_name!r} to tracepoint "
                                f"{tp!r}: {e}") from e
            self.perf_links[tp] = (fn_name, link)
            return self

        def detach_tracepoint(self, tp: bytes = b"") -> None:
            if isinstance(tp, str):
                tp = tp.encode()
            links = getattr(self, "perf_links", {})
            if tp in links:
                os.close(links.pop(tp)[1])
                return
            super().detach_tracepoint(tp)

        def cleanup(self) -> None:
            for _fn, link in getattr(self, "perf_links", {}).values():
                with contextlib.suppress(OSError):
                    os.close(link)
            self.perf_links = {}
            super().cleanup()

    return PinningBPF


def _module_tables(bpf: Any) -> list[bytes]:
    """Every map of the compiled module (BCC's `tables` holds only those used so far)."""
    import ctypes

    from bcc.libbcc import lib

    lib.bpf_num_tables.restype = ctypes.c_size_t
    lib.bpf_num_tables.argtypes = [ctypes.c_void_p]
    lib.bpf_table_name.restype = ctypes.c_char_p
    lib.bpf_table_name.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    return [lib.bpf_table_name(bpf.module, i) for i in range(lib.bpf_num_tables(bpf.module))]


def _module_functions(bpf: Any) -> set[bytes]:
    from bcc.libbcc import lib

    return {lib.bpf_function_name(bpf.module, i)
            for i in range(lib.bpf_num_functions(bpf.module))}


def _map_desc(bpf: Any, name: bytes, fd: int) -> dict[str, Any]:
    from bcc.libbcc import lib

    info = bpfsys.map_info(fd)
    map_id = lib.bpf_table_id(bpf.module, name)
    return {"type": info.type, "id": info.id, "key_size": info.key_size,
            "value_size": info.value_size, "max_entries": info.max_entries,
            "flags": int(lib.bpf_table_flags_id(bpf.module, map_id)),
            "key_desc": lib.bpf_table_key_desc(bpf.module, name).decode(),
            "leaf_desc": lib.bpf_table_leaf_desc(bpf.module, name).decode()}


def make_table(name: bytes, fd: int, m: dict[str, Any]) -> Any:
    """A BCC table object over a pinned map, without a compiled module: BCC's own class
    for the map type (so every method the project calls behaves as on a compiled
    object), its attributes set as BCC's constructors set them from the module."""
    import json as _json

    from bcc import BPF
    from bcc import table as bt

    classes = {bt.BPF_MAP_TYPE_HASH: bt.HashTable, bt.BPF_MAP_TYPE_ARRAY: bt.Array,
               bt.BPF_MAP_TYPE_PROG_ARRAY: bt.ProgArray,
               bt.BPF_MAP_TYPE_PERCPU_HASH: bt.PerCpuHash,
               bt.BPF_MAP_TYPE_PERCPU_ARRAY: bt.PerCpuArray,
               bt.BPF_MAP_TYPE_LPM_TRIE: bt.LpmTrie, bt.BPF_MAP_TYPE_LRU_HASH: bt.LruHash,
               bt.BPF_MAP_TYPE_LRU_PERCPU_HASH: bt.LruPerCpuHash,
               bt.BPF_MAP_TYPE_RINGBUF: bt.RingBuf}
    cls = classes.get(m["type"])
    if cls is None:
        raise PinError(f"map {name!r}: type {m['type']} has no table class here")
    t = cls.__new__(cls)
    t.bpf, t.map_id, t.map_fd = None, -1, fd
    t.Key = BPF._decode_table_type(_json.loads(m["key_desc"]))
    t.Leaf = BPF._decode_table_type(_json.loads(m["leaf_desc"]))
    named = isinstance(t, bt.RingBuf)  # BCC's Table() names only these (and perf arrays)
    t.ttype, t.flags, t._cbs, t._name = m["type"], m["flags"], {}, name if named else None
    t.max_entries = m["max_entries"]
    if isinstance(t, bt.PerCpuArray | bt.PerCpuHash):  # as their constructors do
        t.reducer = None
        t.sLeaf = t.Leaf
        t.total_cpu = len(bt.get_possible_cpus())
        t.alignment = ct_sizeof(t.sLeaf) % 8
        if t.alignment == 0:
            t.Leaf = t.sLeaf * t.total_cpu
        else:
            import ctypes

            wide = {ctypes.c_uint: ctypes.c_uint64, ctypes.c_int: ctypes.c_int64}
            if t.sLeaf not in wide:
                raise PinError(f"map {name!r}: per-CPU leaf not aligned to 8 bytes")
            t.Leaf = wide[t.sLeaf] * t.total_cpu
    if isinstance(t, bt.RingBuf):
        t._ringbuf, t._event_class = None, None
    return t


def ct_sizeof(t: Any) -> int:
    import ctypes

    return ctypes.sizeof(t)


# ------------------------------------------------------------------------------ later
def attach_late(probes: Any, tp: str, fn: str) -> None:
    """Attach program `fn` to tracepoint `tp` after the load: a pinned link when the
    probes are pinned (it stays, as the others do, until detach_late or an unload)."""
    if probes.pins is None:
        assert probes.bcc is not None
        probes.bcc.attach_tracepoint(tp=tp.encode(), fn_name=fn.encode())
        return
    path = probes.pins.dynamic_link(tp)
    if path.exists():
        return
    category, event = tp.split(":")
    link = bpfsys.perf_link(probes.pins.prog_fd(fn), kernel.TRACEFS, category, event)
    try:
        bpfsys.obj_pin(link, path)
    finally:
        os.close(link)


def detach_late(probes: Any, tp: str) -> None:
    if probes.pins is None:
        assert probes.bcc is not None
        probes.bcc.detach_tracepoint(tp=tp.encode())
        return
    with contextlib.suppress(FileNotFoundError):
        probes.pins.dynamic_link(tp).unlink()


def attach_cgroup(probes: Any, fn: str, kind: str, attach: str, cgroup_fd: int) -> None:
    """BPF_PROG_ATTACH of program `fn` to a cgroup (it stays while the cgroup does)."""
    import ctypes

    from bcc import BPF, BPFAttachType
    from bcc.libbcc import lib

    attach_type = getattr(BPFAttachType, attach)
    if probes.pins is not None:
        fd = probes.pins.prog_fd(fn)
    else:
        assert probes.bcc is not None
        fd = probes.bcc.load_func(fn.encode(), getattr(BPF, kind), attach_type=attach_type).fd
    if lib.bpf_prog_attach(fd, cgroup_fd, attach_type, 0) < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"cannot attach {fn} to the cgroup: {os.strerror(err)}")
