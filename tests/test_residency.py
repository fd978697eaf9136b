"""The daemon's resident memory (issue 17: at most 100 MB): probes/residency.py gives back
what the probes' load leaves resident (the compiler's code pages, its free heap, the
parsed BTF; a pinned load also BCC's compiled module).

Units: which mappings may be dropped (never a writable one, never one with a private
page). Root: a real daemon, private (compiled in its own process, the module kept) and
pinned (compiled, pinned, the module forgotten), each on its defaults, after start-up
and after a burst that cycles its whole ring buffer; its RSS is under the bound, `status`
reports it, and a SIGHUP reload still works (into enforce mode: the kernel then kills a
sandbox's namespace escape)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.harness import AW, Daemon, sandbox
from probes import residency
from tests.conftest import bpf_unavailable

# The bound of issue 17. Headroom: measured on the 2-core VM (Linux 6.18, BCC 0.26, LLVM
# 14) at ~75 MB private and ~64 MB pinned, after start and after the burst alike; what
# is left is Python and its imports (~25 MB), libLLVM's and libclang's relocated data
# and static initialisers (~22 MB, which no madvise can give back without swap), the
# rings (the kernel populates their mapping at mmap: 4.25 MB, collector/ringbuf.py maps
# the data once) and the heap. It does not grow with events (the process table and
# sessions are bounded); a bigger default ring adds its size, one for one.
RSS_BOUND_KB = 100 * 1024

LLVM = "/usr/lib/x86_64-linux-gnu/libLLVM-14.so.1"


def _smaps(*maps: tuple[str, str, str, int | None]) -> str:
    out = []
    for rng, perms, path, anon in maps:
        out.append(f"{rng} {perms} 00000000 08:01 1234 {path}")
        out.append("Size:               1024 kB")
        if anon is not None:
            out.append(f"Anonymous:          {anon} kB")
    return "\n".join(out) + "\n"


# ------------------------------------------------------------------------------ units
def test_only_clean_read_only_mappings_of_the_compiler_are_dropped() -> None:
    text = _smaps(("1000-3000", "r-xp", LLVM, 0),                         # code: dropped
                  ("3000-4000", "r--p", LLVM, 0),                         # rodata: dropped
                  ("4000-5000", "r--p", LLVM, 4),          # relro, relocated: private pages
                  ("5000-6000", "rw-p", LLVM, 0),                         # data: writable
                  ("6000-7000", "r-xp", "/usr/lib/llvm-14/lib/libclang-cpp.so.14", 0),
                  ("7000-8000", "r-xp", "/usr/lib/x86_64-linux-gnu/libc.so.6", 0),
                  ("8000-9000", "r-xp", "/usr/lib/x86_64-linux-gnu/libbcc.so.0.26.0", 0),
                  ("9000-a000", "r-xp", "/usr/lib/x86_64-linux-gnu/libz3.so.4", None),
                  ("a000-b000", "rw-p", "", 0),                            # anonymous heap
                  ("b000-c000", "r-xp", "/opt/evil/libLLVM (deleted)", 0))
    assert residency.droppable(text) == [(0x1000, 0x3000), (0x3000, 0x4000),
                                         (0x6000, 0x7000), (0xb000, 0xc000)]
    # a mapping smaps says nothing of (no Anonymous line) is kept: nothing is known of it
    assert (0x9000, 0xA000) not in residency.droppable(text)
    assert residency.droppable("") == []
    assert residency.droppable("garbage\n\xff\xfe line\nAnonymous: x kB\n") == []


def test_status_reads_this_process_and_survives_a_missing_one() -> None:
    me = residency.status()
    assert me["VmRSS"] > 0 and me["VmHWM"] >= me["VmRSS"]
    assert residency.status(2**22 + 12345) == {}


def _mapped(prefix: str) -> tuple[str | None, int]:
    """The path of the first mapped library whose name starts with `prefix`, and the kB
    of all its mappings resident now."""
    path, rss, current = None, 0, ""
    with open("/proc/self/smaps", encoding="ascii", errors="replace") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 5 and "-" in parts[0] and ":" in parts[3]:
                current = parts[5] if len(parts) > 5 else ""
                if os.path.basename(current).startswith(prefix) and path is None:
                    path = current
            elif line.startswith("Rss:") and os.path.basename(current).startswith(prefix):
                rss += int(parts[1])
    return path, rss


def test_dropped_compiler_pages_leave_the_process_and_fault_back_when_run() -> None:
    """MADV_DONTNEED on libLLVM's clean mappings while it is loaded (as after a compile):
    its resident pages go, and its code still runs (the pages fault back from the file)."""
    import ctypes

    try:
        import bcc  # noqa: F401 - maps libbcc and, through it, libLLVM
    except ImportError:
        pytest.skip("no bcc here (python3-bpfcc)")
    path, _ = _mapped("libLLVM")
    assert path is not None, "libbcc maps libLLVM"
    llvm = ctypes.CDLL(path)
    llvm.LLVMContextCreate.restype = ctypes.c_void_p
    llvm.LLVMContextDispose.argtypes = [ctypes.c_void_p]
    llvm.LLVMContextDispose(llvm.LLVMContextCreate())
    _, before = _mapped("libLLVM")
    assert residency.drop_compiler_pages() > 0
    _, after = _mapped("libLLVM")
    # what stays: its relocated data (private pages, never dropped)
    assert after < before, (before, after)
    llvm.LLVMContextDispose(llvm.LLVMContextCreate())  # runs from the file again
    assert residency.drop_compiler_pages() >= 0


def test_btf_forget_drops_the_parsed_kernel_types() -> None:
    from probes import btf

    if not btf.VMLINUX.exists():
        pytest.skip("no kernel BTF here")
    a = btf.load()
    assert btf.load() is a
    btf.forget()
    assert btf.load() is not a


# ------------------------------------------------------------------------------ root
@pytest.fixture(params=["private", "pinned"])
def daemon(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Daemon]:
    if os.geteuid() != 0:
        bpf_unavailable("the daemon needs root")
    from probes import pins

    env: dict[str, str] = {"AGENTWATCH_PIN_ROOT": "off"}
    root = Path(f"/sys/fs/bpf/awtest_rss_{os.getpid()}_{tmp_path.name}"[:100])
    if request.param == "pinned":
        try:
            pins.ensure_bpffs(root)
        except pins.PinError as e:
            bpf_unavailable(str(e))
        env["AGENTWATCH_PIN_ROOT"] = str(root)
    cfg = tmp_path / "config.toml"
    cfg.write_text('mode = "monitor"\n')
    d = Daemon(tmp_path, cfg, extra_env=env)
    try:
        d.start()
    except AssertionError as e:
        bpf_unavailable(f"the daemon did not start: {e}")
    try:
        yield d
    finally:
        d.stop()
        if request.param == "pinned":
            pins.unload(root, tmp_path / "run" / "pins")


BURST = """
import os
for i in range(60000):
    os.close(os.open("/etc/hostname", os.O_RDONLY))
"""


@pytest.mark.bpf
@pytest.mark.slow
@pytest.mark.e2e
def test_the_daemon_stays_under_100_mb_and_still_reloads(daemon: Daemon) -> None:
    pinned = "probes pinned" in daemon.stderr()
    assert pinned == (daemon.env["AGENTWATCH_PIN_ROOT"] != "off"), daemon.stderr()
    after_start = residency.status(daemon.pid)
    # 60,000 opens of ~300-byte records: the 4 MiB ring cycled several times over, and
    # the engine, process table and sinks in steady use
    subprocess.run(sandbox(daemon.tmp, sys.executable, "-c", BURST), check=True,
                   timeout=120)
    daemon.wait_for("session", 10)
    after_burst = residency.status(daemon.pid)
    print(f"\nRSS after start {after_start['VmRSS'] // 1024} MB, after the burst "
          f"{after_burst['VmRSS'] // 1024} MB, peak {after_burst['VmHWM'] // 1024} MB "
          f"({'pinned' if pinned else 'private'})")
    assert after_start["VmRSS"] <= RSS_BOUND_KB, after_start
    assert after_burst["VmRSS"] <= RSS_BOUND_KB, after_burst
    status = subprocess.run([AW, "status"], env=daemon.env, capture_output=True, text=True,
                            timeout=30)
    assert status.returncode == 0 and " MB resident, peak " in status.stdout, status
    # a reload after the compiler's memory is gone: into enforce mode, the kernel's rules
    # written into the (pinned or private) maps; a namespace escape is then killed
    daemon.config.write_text('mode = "enforce"\n')
    assert daemon.proc is not None
    mark = daemon.stderr().count("SIGHUP: reloaded")
    daemon.proc.send_signal(signal.SIGHUP)
    daemon.wait_for("SIGHUP: reloaded", 30, count=mark + 1)
    escape = subprocess.run(sandbox(daemon.tmp, "sh", "-c", "unshare -U true && echo out"),
                            capture_output=True, text=True, timeout=60)
    assert "out" not in escape.stdout, (escape, daemon.stderr())
    deadline = time.monotonic() + 10
    while not any(a.get("detector") == "namespace_escape" and "kernel" in json.dumps(a)
                  for a in daemon.alerts()):
        assert time.monotonic() < deadline, daemon.alerts()
        time.sleep(0.05)
    assert residency.status(daemon.pid)["VmRSS"] <= RSS_BOUND_KB
