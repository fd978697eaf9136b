"""The process a /proc file belongs to, as the kernel has it (include/aw_resolve.h,
aw_proc_target): real probes, a watched process in its own pid namespace, its /proc
naming processes by that namespace's numbers. The open event's `proc_pid` must be the
host-global id of the process the file is about, whatever name the opener used."""

from __future__ import annotations

import os
import shutil
import sys
import textwrap

import pytest

pytestmark = pytest.mark.bpf
PY = sys.executable


def test_proc_pid_is_the_host_pid_in_a_pid_namespace(run_session) -> None:  # type: ignore[no-untyped-def]
    if not shutil.which("unshare"):
        pytest.skip("unshare (util-linux) not installed")
    # In the new namespace the python process is pid 1 (unshare -f forks it); it starts a
    # child (pid 2 there) and opens /proc/2/stat, /proc/2/environ, /proc/self/status,
    # /proc/thread-self/comm, a dirfd-relative stat and /proc/self/root/proc/2/cmdline.
    code = textwrap.dedent("""
        import os, subprocess, sys
        c = subprocess.Popen(["sleep", "30"])
        print("CHILD", c.pid, flush=True)
        for p in (f"/proc/{c.pid}/stat", f"/proc/{c.pid}/environ", "/proc/self/status",
                  "/proc/thread-self/comm", f"/proc/self/root/proc/{c.pid}/cmdline"):
            os.close(os.open(p, os.O_RDONLY))
        d = os.open(f"/proc/{c.pid}", os.O_RDONLY | os.O_DIRECTORY)
        os.close(os.open("statm", os.O_RDONLY, dir_fd=d))
        c.kill()
        c.wait()
    """)
    r = run_session(["unshare", "-p", "-f", "--mount-proc", PY, "-c", code])
    assert r.exit_status == 0
    opens = [e for e in r.of("open") if e.ret >= 0 and e.comm.startswith("python")]
    forks = [e for e in r.of("fork") if e.ret > 0 and not e.thread]
    by_raw = {e.raw_path: e for e in opens}
    stat = next(e for raw, e in by_raw.items() if raw.endswith("/stat") and "self" not in raw)
    ns_child = int(stat.raw_path.split("/")[2])
    assert ns_child == 2  # the namespace's numbering, not the host's
    # the child's host pid: the fork whose ret (the parent's view) is that number
    host_child = next(f.child_pid for f in forks if f.ret == ns_child and f.pid == stat.pid)
    assert host_child != ns_child
    for raw, e in by_raw.items():
        if f"/{ns_child}" in raw or raw == "statm":
            assert (e.proc_pid, e.proc_tgid) == (host_child, host_child), e
    own = by_raw["/proc/self/status"]
    assert own.proc_pid == own.pid and own.proc_tgid == own.pid
    ts = by_raw["/proc/thread-self/comm"]
    assert ts.proc_pid == ts.tid and ts.proc_tgid == ts.pid


def test_no_target_for_other_files(run_session) -> None:  # type: ignore[no-untyped-def]
    r = run_session([PY, "-c", "open('/proc/meminfo').close(); open('/etc/hostname').close()"])
    assert r.exit_status == 0
    opens = {e.raw_path: e for e in r.of("open") if e.ret >= 0}
    assert opens["/proc/meminfo"].proc_pid is None
    assert opens["/etc/hostname"].proc_pid is None
    assert os.path.exists("/proc/meminfo")
