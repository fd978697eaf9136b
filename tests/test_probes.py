"""Root tests: real probes, real syscalls from small workloads run as sessions.

Each workload runs through `service.run.run` (the code of `agentwatch run`) and the test
finds the event its syscall must produce, with the fields and the return value.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from tests.conftest import busy_outsider

pytestmark = pytest.mark.bpf
PY = sys.executable


def py(code: str) -> list[str]:
    return [PY, "-c", textwrap.dedent(code)]


# ------------------------------------------------------------------------------ exec


def test_exec_filename_argv_and_ret(run_session) -> None:
    r = run_session(["/bin/echo", "hello", "wörld", ""])
    assert r.exit_status == 0
    execs = r.of("exec")
    assert len(execs) == 1
    e = execs[0]
    assert e.filename == "/bin/echo"
    assert e.argv == ["/bin/echo", "hello", "wörld", ""]
    assert e.ret == 0 and e.error is None
    assert e.pid == r.root_pid and e.comm == "echo"
    assert e.argv_truncated is False and e.fault is False


def test_failed_exec_has_errno(run_session) -> None:
    r = run_session(py("""
        import os
        try:
            os.execv("/nonexistent/agentwatch-test", ["x", "y"])
        except FileNotFoundError:
            pass
    """))
    failed = [e for e in r.of("exec") if e.filename == "/nonexistent/agentwatch-test"]
    assert len(failed) == 1
    assert failed[0].ret == -2 and failed[0].error == "ENOENT"
    assert failed[0].argv == ["x", "y"]


def test_exec_argv_bound_is_flagged(run_session) -> None:
    many = [str(i) for i in range(200)]
    r = run_session(["/bin/true", *many])
    e = r.of("exec")[0]
    assert e.argv_truncated is True
    assert e.argv[:5] == ["/bin/true", "0", "1", "2", "3"]
    assert len(e.argv) == 64  # AW_ARGV_MAX entries are copied
    big = "A" * 6000
    r = run_session(["/bin/true", big])
    e = r.of("exec")[0]
    assert e.argv_truncated is True
    assert e.argv[1] == "A" * 4095  # one argument is cut at AW_ARGV_BYTES


def test_exec_non_utf8_argv_stays_valid_json(run_session) -> None:
    r = run_session(py("""
        import os
        os.execv(b"/bin/true", [b"/bin/true", b"\\xff\\xfe-bad", b"ok"])
    """))
    e = next(e for e in r.of("exec") if e.filename == "/bin/true")
    assert e.argv == ["/bin/true", "\\xff\\xfe-bad", "ok"]
    assert b"\\\\xff\\\\xfe-bad" in e.to_json()


# ------------------------------------------------------------------------------ fork / exit


def test_fork_links_parent_and_child(run_session) -> None:
    r = run_session(["/bin/sh", "-c", "/bin/true; exit 0"])
    forks = [e for e in r.of("fork") if not e.thread]
    assert forks, "sh forks before exec'ing /bin/true"
    f = forks[0]
    assert f.pid == r.root_pid and f.ret > 0 and f.child_pid > 0
    child_exec = [e for e in r.of("exec") if e.pid == f.child_pid]
    assert child_exec and child_exec[0].filename == "/bin/true"
    assert child_exec[0].ppid == r.root_pid
    child_exit = [e for e in r.of("exit") if e.pid == f.child_pid]
    assert child_exit and child_exit[0].exit_code == 0


def test_exit_code_and_signal(run_session) -> None:
    r = run_session(["/bin/sh", "-c", "exit 7"])
    assert r.exit_status == 7
    (ex,) = [e for e in r.of("exit") if e.pid == r.root_pid]
    assert ex.exit_code == 7 and ex.signal is None

    r = run_session(["/bin/sh", "-c", "kill -9 $$"])
    assert r.exit_status == 128 + 9
    (ex,) = [e for e in r.of("exit") if e.pid == r.root_pid]
    assert ex.signal == 9 and ex.exit_code is None

    r = run_session(py("import os; os.abort()"))
    assert r.exit_status == 128 + 6
    ex = [e for e in r.of("exit") if e.pid == r.root_pid][-1]
    assert ex.signal == 6 and ex.core is True


def test_threads_share_the_process_and_exit_once(run_session, tmp_path: Path) -> None:
    target = tmp_path / "from-thread"
    r = run_session(py(f"""
        import threading
        def work():
            open({str(target)!r}, "w").close()
        t = threading.Thread(target=work); t.start(); t.join()
    """))
    opens = [e for e in r.of("open") if e.path == str(target)]
    assert len(opens) == 1
    assert opens[0].pid == r.root_pid and opens[0].tid != r.root_pid
    threads = [e for e in r.of("fork") if e.thread]
    assert threads and threads[0].child_pid == opens[0].tid
    assert len([e for e in r.of("exit") if e.pid == r.root_pid]) == 1


def test_children_that_fork_at_once_are_watched(run_session, tmp_path: Path) -> None:
    # Each generation forks immediately: inheritance in the kernel at fork time means
    # none of them can run unwatched.
    marker = tmp_path / "gen"
    r = run_session(py(f"""
        import os
        depth = 0
        while depth < 6:
            pid = os.fork()
            if pid:
                os.waitpid(pid, 0)
                os._exit(0)
            depth += 1
        open({str(marker)!r} + str(depth), "w").close()
    """))
    opens = [e for e in r.of("open") if e.path == f"{marker}6"]
    assert len(opens) == 1
    pids = {e.pid for e in r.of("exit")}
    assert opens[0].pid in pids
    # The chain of ppids from the opener leads back to the session root.
    by_child = {e.child_pid: e.pid for e in r.of("fork")}
    pid, hops = opens[0].pid, 0
    while pid != r.root_pid and hops < 10:
        pid, hops = by_child[pid], hops + 1
    assert pid == r.root_pid and hops == 6


# ------------------------------------------------------------------------------ open


def test_open_path_flags_mode_ret(run_session, tmp_path: Path) -> None:
    target = tmp_path / "created.txt"
    r = run_session(py(f"""
        import os
        fd = os.open({str(target)!r}, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
        os.close(fd)
        try:
            os.open({str(tmp_path / "missing")!r}, os.O_RDONLY)
        except FileNotFoundError:
            pass
    """))
    (ok,) = [e for e in r.of("open") if e.path == str(target)]
    assert ok.ret >= 3 and ok.error is None
    assert ok.syscall == "openat"
    assert {"O_WRONLY", "O_CREAT", "O_EXCL"} <= set(ok.flag_names)
    assert ok.flags & os.O_CREAT and ok.mode == 0o640
    (missing,) = [e for e in r.of("open") if e.path == str(tmp_path / "missing")]
    assert missing.ret == -2 and missing.error == "ENOENT"
    assert missing.flag_names[0] == "O_RDONLY"


def test_open_and_openat2_syscalls(run_session, tmp_path: Path) -> None:
    (tmp_path / "a").write_text("a")
    (tmp_path / "b").write_text("b")
    # open(2) (x86_64 nr 2) and openat2(2) (nr 437) through libc's syscall().
    r = run_session(py(f"""
        import ctypes, os, struct
        libc = ctypes.CDLL(None, use_errno=True)
        libc.syscall.restype = ctypes.c_long
        fd = libc.syscall(2, {str(tmp_path / "a")!r}.encode(), os.O_RDONLY, 0)
        assert fd >= 0, ctypes.get_errno()
        how = struct.pack("QQQ", os.O_RDONLY, 0, 0x04)  # RESOLVE_NO_SYMLINKS
        dfd = os.open({str(tmp_path)!r}, os.O_RDONLY | os.O_DIRECTORY)
        fd2 = libc.syscall(437, dfd, b"b", how, len(how))
        assert fd2 >= 0, ctypes.get_errno()
    """))
    assert r.exit_status == 0
    (o,) = [e for e in r.of("open") if e.path == str(tmp_path / "a")]
    assert o.syscall == "open" and o.ret >= 0 and o.dfd is None
    (o2,) = [e for e in r.of("open") if e.syscall == "openat2"]
    assert o2.raw_path == "b" and o2.path == str(tmp_path / "b")  # dirfd resolved
    assert o2.ret >= 0 and o2.resolve == 0x04
    dirs = [e for e in r.of("open") if e.path == str(tmp_path)]
    assert o2.dfd == dirs[0].ret


def test_long_and_hostile_paths(run_session, tmp_path: Path) -> None:
    long_path = "/" + "x" * 4200
    r = run_session(py(f"""
        import os
        for p in ({long_path!r}.encode(), b"/tmp/aw-\\xff\\nline"):
            try:
                os.open(p, os.O_RDONLY)
            except OSError:
                pass
    """))
    (longev,) = [e for e in r.of("open") if e.path.startswith("/xxxx")]
    assert longev.error == "ENAMETOOLONG"
    assert len(longev.raw_path) == 4095  # read bound: PATH_MAX with its NUL
    (hostile,) = [e for e in r.of("open") if e.path.startswith("/tmp/aw-")]
    assert hostile.path == "/tmp/aw-\\xff\nline"
    assert b"\\n" in hostile.to_json() and b"\n" not in hostile.to_json()


# ------------------------------------------------------------------------------ connect


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_connect_inet_refused(run_session) -> None:
    port = _free_port()
    r = run_session(py(f"""
        import socket
        socket.socket().connect_ex(("127.0.0.1", {port}))
    """))
    (c,) = r.of("connect")
    assert c.family == "AF_INET" and c.address == "127.0.0.1" and c.port == port
    assert c.ret == -111 and c.error == "ECONNREFUSED"
    assert c.fd >= 3 and c.addrlen == 16


def test_connect_inet6_and_unix(run_session, tmp_path: Path) -> None:
    srv6 = socket.socket(socket.AF_INET6)
    srv6.bind(("::1", 0))
    srv6.listen()
    port6 = srv6.getsockname()[1]
    path = str(tmp_path / "srv.sock")
    srvu = socket.socket(socket.AF_UNIX)
    srvu.bind(path)
    srvu.listen()
    abstract = f"agentwatch-test-{os.getpid()}"
    srva = socket.socket(socket.AF_UNIX)
    srva.bind("\0" + abstract)
    srva.listen()
    try:
        r = run_session(py(f"""
            import socket
            socket.socket(socket.AF_INET6).connect(("::1", {port6}))
            socket.socket(socket.AF_UNIX).connect({path!r})
            socket.socket(socket.AF_UNIX).connect("\\0" + {abstract!r})
        """))
    finally:
        for s in (srv6, srvu, srva):
            s.close()
    assert r.exit_status == 0
    conns = r.of("connect")
    six = [c for c in conns if c.family == "AF_INET6"]
    assert six and six[0].address == "::1" and six[0].port == port6 and six[0].ret == 0
    unix = [c for c in conns if c.family == "AF_UNIX"]
    assert [c.address for c in unix] == [path, "@" + abstract]
    assert all(c.ret == 0 and c.port is None for c in unix)


# ------------------------------------------------------------------------------ filtering


def test_unwatched_processes_never_appear(bpf_collector, run_session, tmp_path: Path) -> None:
    collector, sink = bpf_collector
    marker = tmp_path / "unwatched-marker"
    # A process outside any session, busy with the same syscalls during a session.
    with busy_outsider(f"""
        import os, socket, time
        end = time.time() + 1.5
        while time.time() < end:
            fd = os.open({str(marker)!r}, os.O_WRONLY | os.O_CREAT, 0o600); os.close(fd)
            socket.socket().connect_ex(("127.0.0.1", 9))
    """) as outsider:
        r = run_session(["/bin/sh", "-c", "sleep 0.5; cat /etc/hostname > /dev/null"])
    collector.poll(10)
    assert r.exit_status == 0
    assert marker.exists(), "the outsider really made its syscalls"
    assert not [e for e in sink.events if getattr(e, "path", None) == str(marker)]
    assert not [e for e in sink.events if e.pid == outsider.pid]
    assert [e for e in r.events if e.kind == "open"], "the session itself was traced"


def test_header_fields(run_session) -> None:
    r = run_session(["/bin/cat", "/etc/hostname"])
    (o,) = [e for e in r.of("open") if e.path == "/etc/hostname"]
    assert o.uid == os.getuid() and o.gid == os.getgid()
    assert o.comm == "cat" and o.cgroup > 0
    assert abs(o.ts - time.time_ns()) < 60 * 10**9
    assert o.session == r.session and o.ppid == os.getpid()


def test_session_start_and_end_events(run_session) -> None:
    r = run_session(["/bin/true"])
    kinds = [e.kind for e in r.events]
    assert kinds[0] == "session" and kinds[-1] == "session"
    start, end = r.events[0], r.events[-1]
    assert start.phase == "start" and end.phase == "end"
    assert end.exit_status == 0 and end.events == len(r.events) - 1
    assert end.lost == 0


# ------------------------------------------------------------------------------ losses


def test_lost_events_are_counted_and_reported() -> None:
    """A one-page ring buffer that nobody reads while 20,000 opens happen: the kernel
    counts each record it could not deliver and the collector reports every one."""
    if os.geteuid() != 0:
        from tests.conftest import bpf_unavailable
        bpf_unavailable("loading BPF needs root")
    from probes.loader import ProbeConfig
    from service.pipeline import Collector
    from service.run import run
    from tests.conftest import RecordingSink

    sink = RecordingSink()
    c = Collector([sink], ProbeConfig(ringbuf_pages=1))
    c.start()
    try:
        # A long poll interval: the buffer fills while the workload runs.
        res = run(py("""
            import os
            for _ in range(20000):
                os.close(os.open("/dev/null", os.O_RDONLY))
        """), collector=c, poll_ms=2000)
    finally:
        c.close()
    opens = [e for e in sink.events if e.kind == "open" and e.path == "/dev/null"]
    losses = [e for e in sink.events if e.kind == "loss"]
    assert res.lost > 0 and losses
    assert losses[-1].total.get("open", 0) == sum(e.lost.get("open", 0) for e in losses)
    # Every one of the 20,000 opens is either delivered or counted as lost.
    assert len(opens) + losses[-1].total["open"] >= 20000
    end = next(e for e in sink.events if e.kind == "session" and e.phase == "end")
    assert end.lost == res.lost


def test_signal_forwarding_to_the_session(tmp_path: Path) -> None:
    """SIGTERM to `agentwatch run` reaches CMD; run exits with 128+15."""
    if os.geteuid() != 0:
        from tests.conftest import bpf_unavailable
        bpf_unavailable("loading BPF needs root")
    aw = Path(sys.executable).parent / "agentwatch"
    proc = subprocess.Popen([str(aw), "run", "--", "/bin/sleep", "30"],
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 30
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
    while time.time() < deadline:
        kids = children.read_text().split()
        if kids and Path(f"/proc/{kids[0]}/comm").read_text().strip() == "sleep":
            break
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 128 + 15, err
    assert "Traceback" not in err


def test_cli_end_to_end_check_command() -> None:
    """The issue's check: the CLI prints exec, fork, exit, open and connect events for the
    tree only, with return values, and exits 0. With `--events-level all`: on the default
    level the kernel counts the read of /etc/hostname in a summary instead (below)."""
    if os.geteuid() != 0:
        from tests.conftest import bpf_unavailable
        bpf_unavailable("loading BPF needs root")
    import orjson

    aw = Path(sys.executable).parent / "agentwatch"
    with tempfile.TemporaryDirectory() as d:
        out = subprocess.run(
            [str(aw), "run", "--events", "-", "--events-level", "all", "--", "sh", "-c",
             f'cat /etc/hostname; {PY} -c "import socket; '
             f'socket.socket().connect_ex((\\"127.0.0.1\\", 9))"'],
            capture_output=True, timeout=120, cwd=d)
    assert out.returncode == 0, out.stderr.decode()
    hostname = Path("/etc/hostname").read_text().strip().encode()
    lines = [ln for ln in out.stdout.splitlines() if ln and ln != hostname]
    events = [orjson.loads(ln) for ln in lines]
    kinds = {e["kind"] for e in events}
    assert {"exec", "fork", "exit", "open", "connect", "session"} <= kinds
    sessions = {e["session"] for e in events}
    assert len(sessions) == 1
    for e in events:
        assert {"v", "ts", "kind", "session", "pid"} <= e.keys()
    (conn,) = [e for e in events if e["kind"] == "connect"]
    assert conn["ret"] == -111 and conn["error"] == "ECONNREFUSED" and conn["port"] == 9
    assert any(e["kind"] == "open" and e["path"] == "/etc/hostname" and e["ret"] >= 0
               for e in events)
    assert b"Traceback" not in out.stderr
