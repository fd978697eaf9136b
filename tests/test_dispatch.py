"""The raw syscall dispatcher (probes/dispatch.bpf.c): every door, every number.

Root tests with the real probes: a 64-bit program making 32-bit syscalls (`int $0x80`,
tests/compat32.c) is seen in native terms and killed at its first 32-bit call in enforce
mode; a call outside the table is reported once per session; the probes attach no
per-syscall tracepoint. The name tables are checked against the uapi headers.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from probes import compat, syscalls, sysnames, sysprobe
from tests.conftest import bpf_unavailable

HERE = Path(__file__).resolve().parent
HEADERS = Path("/usr/include/x86_64-linux-gnu/asm")


# ------------------------------------------------------------------------------ tables


@pytest.mark.parametrize("abi, table", [("64", sysnames.X86_64), ("32", sysnames.I386)])
def test_names_match_the_uapi_headers(abi: str, table: dict[int, str]) -> None:
    header = HEADERS / f"unistd_{abi}.h"
    # linux-libc-dev comes with libc6-dev (packaging/apt-packages.txt)
    assert header.exists(), f"{header} is missing: run `make setup`"
    found = {int(n): name for name, n in
             re.findall(r"#define __NR_(\w+) (\d+)", header.read_text())}
    assert found, header
    for nr, name in found.items():
        assert table.get(nr) == name, (nr, name)


def test_compat_map_means_the_same_calls() -> None:
    native = {v: k for k, v in sysnames.X86_64.items()}
    for i386, name in (("open", "open"), ("socket", "socket"), ("connect", "connect"),
                       ("unshare", "unshare"), ("execve", "execve"), ("mmap2", "mmap"),
                       ("setuid32", "setuid"), ("clock_settime64", "clock_settime")):
        nr32 = {v: k for k, v in sysnames.I386.items()}[i386]
        assert compat.COMPAT_TO_NATIVE[nr32] == native[name], i386
    assert compat.SOCKETCALL_NR not in compat.COMPAT_TO_NATIVE  # taken apart in the kernel
    assert compat.SOCKETCALL_NATIVE[3] == native["connect"]
    assert compat.name_of(compat.COMPAT_BIT | 117) == "ia32:ipc"


def test_every_number_has_a_route() -> None:
    v = sysprobe.V
    routes = sysprobe.routes(("proc", "file", "net", "sys"))
    assert set(routes) == set(range(sysprobe.NR_MAX))
    for s in syscalls.SYSCALLS:
        assert routes[s.nr] == v["AW_RT_SYS"], s.name
    assert routes[257] == v["AW_RT_OPEN"] and routes[59] == v["AW_RT_EXEC"]
    assert routes[0] == v["AW_RT_QUIET"]             # read
    assert routes[162] == v["AW_RT_OTHER"]           # sync: outside the table
    # without `sys`, nothing outside the loaded concerns is reported
    assert set(sysprobe.routes(("file",)).values()) == {v["AW_RT_QUIET"], v["AW_RT_OPEN"]}


# ------------------------------------------------------------------------------ live

@pytest.fixture(scope="module")
def compat32(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.fail("no C compiler (make setup installs gcc)")
    out = tmp_path_factory.mktemp("compat32") / "compat32"
    subprocess.run([cc, "-O1", "-no-pie", "-o", str(out), str(HERE / "compat32.c")],
                   check=True)
    return out


@pytest.fixture(scope="module")
def collector() -> Iterator[tuple[Any, Any, Any]]:
    if os.geteuid() != 0:
        bpf_unavailable("loading BPF needs root")
    from detectors.config import parse
    from service.pipeline import Collector
    from service.sinks import MemorySink

    alerts, events = MemorySink(), MemorySink()
    c = Collector([events], detection=parse({"mode": "monitor"}, "<test>"),
                  alert_sinks=[alerts])
    try:
        c.start()
    except Exception as e:  # any load failure is reported the same way
        bpf_unavailable(f"cannot load the probes: {e}")
    yield c, alerts, events
    c.close()


@pytest.fixture()
def listener() -> Iterator[socket.socket]:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(8)
    yield s
    s.close()


def _mode(c: Any, mode: str) -> None:
    c.analyzer.engine.config.mode = mode
    c.apply_policy()


@pytest.mark.bpf
def test_no_per_syscall_tracepoints(collector: tuple[Any, Any, Any]) -> None:
    c, _, _ = collector
    tps = [tp for tp in c.bpf.bcc.tracepoint_fds if tp.startswith(b"syscalls:")]
    assert tps == [], tps
    # the dispatcher, and SIGSYS deliveries (seccomp kills)
    assert set(c.bpf.bcc.raw_tracepoint_fds) == {b"sys_enter", b"sys_exit", b"signal_deliver"}


@pytest.mark.bpf
def test_32bit_calls_are_seen_as_their_native_twins(collector: tuple[Any, Any, Any],
                                                    compat32: Path, listener: socket.socket,
                                                    tmp_path: Path) -> None:
    from service.run import run

    c, alerts, events = collector
    target = tmp_path / "secret.txt"
    target.write_text("s3cret\n")
    marker = tmp_path / "marker"
    port = listener.getsockname()[1]
    r = run([str(compat32), str(target), str(port), str(marker)], collector=c)
    assert r.exit_status == 0 and marker.read_text() == "after"
    evs = events.session(r.session)
    opens = [e for e in evs if e.kind == "open" and e.path == str(target)]
    assert len(opens) == 1 and opens[0].compat and opens[0].ret >= 0, opens
    conns = [e for e in evs if e.kind == "connect" and e.compat]
    assert len(conns) == 2, conns                    # int 0x80 connect, socketcall's
    assert all(e.address == "127.0.0.1" and e.port == port and e.ret == 0 for e in conns)
    sc = {e.syscall: e for e in evs if e.kind == "syscall" and e.compat}
    assert sc["socket"].args["family"] == "AF_INET"
    assert sc["unshare"].args["flags"] == ["CLONE_NEWUTS"]
    assert sc["read"].first_use                      # quiet natively, never for 32 bits
    # the native calls of the same program are not compat
    assert not [e for e in evs if e.kind == "open" and e.path == str(marker) and e.compat]
    detectors = {a.detector for a in alerts.events if a.session == r.session}
    assert {"compat_syscall", "namespace_escape"} <= detectors


@pytest.mark.bpf
def test_32bit_call_is_killed_at_its_first_entry(collector: tuple[Any, Any, Any],
                                                 compat32: Path, listener: socket.socket,
                                                 tmp_path: Path) -> None:
    from service.run import run

    c, alerts, events = collector
    target = tmp_path / "secret.txt"
    target.write_text("s3cret\n")
    marker = tmp_path / "marker"
    _mode(c, "enforce")
    try:
        r = run([str(compat32), str(target), str(listener.getsockname()[1]), str(marker)],
                collector=c)
    finally:
        _mode(c, "monitor")
    assert r.exit_status == 128 + 9 and not marker.exists()
    killed = [e for e in events.session(r.session) if e.kernel_kill]
    assert len(killed) == 1 and killed[0].kernel_kill == "compat_syscall"
    assert killed[0].compat and killed[0].syscall == "open"
    (a,) = [a for a in alerts.events if a.session == r.session
            and a.detector == "compat_syscall"]
    assert a.action["taken"] == "kill" and a.action["by"] == "kernel", a.action


@pytest.mark.bpf
def test_a_call_outside_the_table_is_reported_once_per_session(
        collector: tuple[Any, Any, Any], tmp_path: Path) -> None:
    from service.run import run

    c, _, events = collector
    code = textwrap.dedent("""
        import ctypes
        L = ctypes.CDLL(None, use_errno=True)
        for _ in range(3):
            L.syscall(162)          # sync: outside the table and the quiet set
            L.syscall(39)           # getpid: quiet
    """)
    sessions = [run([sys.executable, "-c", code], collector=c).session for _ in range(2)]
    for sid in sessions:
        syncs = [e for e in events.session(sid) if getattr(e, "syscall", "") == "sync"]
        assert len(syncs) == 1 and syncs[0].first_use, syncs
        assert not [e for e in events.session(sid) if getattr(e, "syscall", "") == "getpid"]
        # the session's end says how often: the kernel counted all three
        (end,) = [e for e in events.session(sid) if e.kind == "session" and e.phase == "end"]
        assert end.other_syscalls is not None and end.other_syscalls["sync"] == 3


@pytest.mark.bpf
def test_handle_open_is_an_event_with_its_inode(collector: tuple[Any, Any, Any],
                                                tmp_path: Path) -> None:
    """open_by_handle_at {inode 2}: the sandbox escape bubblewrap-as-root allows. In monitor
    mode the call runs (as root here it opens the root file system) and is reported."""
    from service.run import run

    c, alerts, events = collector
    code = textwrap.dedent("""
        import ctypes, os, struct
        L = ctypes.CDLL(None, use_errno=True)
        fh = ctypes.create_string_buffer(struct.pack("IiII", 8, 1, 2, 0))  # FILEID_INO32_GEN
        mfd = os.open("/", os.O_RDONLY)
        print(L.syscall(304, mfd, fh, os.O_RDONLY))
    """)
    r = run([sys.executable, "-c", code], collector=c)
    (e,) = [e for e in events.session(r.session)
            if getattr(e, "syscall", "") == "open_by_handle_at"]
    assert e.args["handle_ino"] == 2 and e.args["handle_type"] == 1
    assert [a for a in alerts.events if a.session == r.session
            and a.detector == "forbidden_syscall"]


SRT = Path(__file__).resolve().parent.parent / ".tools" / "srt" / "node_modules" / ".bin" / "srt"


def _bwrap(*argv: str) -> list[str]:
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        pytest.fail("bubblewrap is not installed (make setup installs it)")
    return [bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--bind",
            "/tmp", "/tmp", "--unshare-pid", "--die-with-parent", "--", *argv]


@pytest.mark.bpf
@pytest.mark.e2e
def test_32bit_calls_in_bubblewrap_are_seen_and_killed(collector: tuple[Any, Any, Any],
                                                       compat32: Path,
                                                       listener: socket.socket) -> None:
    """bubblewrap does not refuse 32-bit syscalls: the monitor must."""
    from service.run import run

    c, _alerts, events = collector
    work = Path(tempfile.mkdtemp(prefix="aw-compat-"))
    try:
        target, marker = work / "secret.txt", work / "marker"
        target.write_text("s3cret\n")
        argv = _bwrap(str(compat32), str(target), str(listener.getsockname()[1]), str(marker))
        r = run(argv, collector=c)
        assert r.exit_status == 0 and marker.exists()
        seen = [e for e in events.session(r.session) if e.compat]
        assert {"open", "connect"} <= {e.kind for e in seen}
        assert not [e for e in seen if e.setup], "bubblewrap's own setup is not compat"
        marker.unlink()
        _mode(c, "enforce")
        try:
            r = run(argv, collector=c)
        finally:
            _mode(c, "monitor")
        assert r.exit_status != 0 and not marker.exists()
        killed = [e for e in events.session(r.session) if e.kernel_kill]
        assert [e.kernel_kill for e in killed] == ["compat_syscall"], killed
    finally:
        shutil.rmtree(work, ignore_errors=True)


@pytest.mark.bpf
@pytest.mark.e2e
def test_32bit_calls_in_sandbox_runtime_never_run(collector: tuple[Any, Any, Any],
                                                  compat32: Path,
                                                  listener: socket.socket) -> None:
    """sandbox-runtime's seccomp filter kills a non-native syscall before the kernel's
    syscall entry: nothing of it runs, the payload dies of SIGSYS, and the refused call is
    reported as it is delivered (seccomp_killed), so compat_syscall still alerts."""
    from service.run import run

    if not SRT.exists():
        pytest.fail(f"{SRT} missing (make test installs sandbox-runtime)")
    c, _alerts, events = collector
    work = Path(tempfile.mkdtemp(prefix="aw-compat-", dir=os.getcwd()))
    try:
        target, marker = work / "secret.txt", work / "marker"
        target.write_text("s3cret\n")
        cmd = f"{compat32} {target} {listener.getsockname()[1]} {marker}; echo rc=$?"
        r = run([str(SRT), "-c", cmd], collector=c)
        assert not marker.exists()
        evs = events.session(r.session)
        assert not [e for e in evs if e.kind == "open" and e.path == str(target)]
        (killed,) = [e for e in evs if getattr(e, "seccomp_killed", False)]
        assert killed.compat and killed.refused_at_entry and killed.syscall == "open"
        assert killed.path == str(target)
        assert [a for a in _alerts.events if a.session == r.session
                and a.detector == "compat_syscall"]
    finally:
        shutil.rmtree(work, ignore_errors=True)
