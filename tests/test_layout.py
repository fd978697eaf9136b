"""Every Python decoder's layout against the C struct it decodes (cf. Tetragon's
alignchecker): the probes are compiled, and BCC's ctypes view of each map leaf type gives
the C compiler's offsets and sizes."""

from __future__ import annotations

import ctypes
import os

import pytest

from probes import file, net, proc, syscalls, uring
from probes.layout import Layout
from tests.conftest import bpf_unavailable

pytestmark = pytest.mark.bpf

# map whose leaf type is the struct -> the Python layout that decodes it
CASES: list[tuple[str, Layout]] = [
    ("fork_inflight", proc.FORK),
    ("exec_inflight", proc.EXEC),
    ("layout_exit", proc.EXIT),
    ("layout_session", proc.SESSION),
    ("layout_open", file.OPEN),
    ("connect_inflight", net.CONNECT),
    ("sys_inflight", syscalls.SYSCALL),
    ("layout_uring", uring.URING),
]
# struct aw_proc, written by user space when a session starts (collector/sessions.py)
PROC_FIELDS = {"session": 0, "ppid": 8, "flags": 12, "exit_code": 16, "exit_signal": 20}


@pytest.fixture(scope="module")
def compiled():  # type: ignore[no-untyped-def]
    if os.geteuid() != 0:
        bpf_unavailable("loading BPF needs root")
    from probes.loader import ProbeConfig, load

    try:
        bpf = load(ProbeConfig(extra_cflags=["-DAW_LAYOUT_CHECK"]))
    except Exception as e:
        bpf_unavailable(f"cannot compile the probes: {e}")
    yield bpf
    bpf.close()


@pytest.mark.parametrize(("table", "layout"), CASES, ids=[c[0] for c in CASES])
def test_python_layout_matches_c(compiled, table: str, layout: Layout) -> None:
    leaf = compiled[table.encode()].Leaf
    c_offsets = {name: getattr(leaf, name).offset for name, *_ in leaf._fields_}
    py_offsets = layout.offsets
    assert set(py_offsets) == set(c_offsets), f"{layout.cname}: field names differ"
    for name, off in py_offsets.items():
        assert c_offsets[name] == off, f"{layout.cname}.{name}: C {c_offsets[name]}, py {off}"
    assert ctypes.sizeof(leaf) == layout.c_size
    c_types = {name: ctype for name, ctype, *_ in leaf._fields_}
    for name, ctype in layout.fields:
        assert ctypes.sizeof(c_types[name]) == Layout.type_size(ctype), f"{name} size"
    if layout.tail:
        assert ctypes.sizeof(c_types[layout.tail[0]]) == layout.tail[1]


def test_session_entry_layout(compiled) -> None:
    leaf = compiled[b"watched"].Leaf
    assert {n: getattr(leaf, n).offset for n, *_ in leaf._fields_} == PROC_FIELDS
    assert ctypes.sizeof(leaf) == 24


def test_header_is_common_prefix() -> None:
    names = [n for n, _ in proc.FORK.fields[:12]]
    for _, layout in CASES:
        assert [n for n, _ in layout.fields[:12]] == names
        assert layout.offsets["comm"] == 56
