"""In-kernel enforcement against REAL calls (root, real probes, bpf_send_signal, cgroup
sock_addr programs).

Each workload runs as a watched session (`service.run.run`), makes one forbidden call,
then tries to write a marker file. With the kernel path the process is killed at the
call's entry, so the marker never appears; the alert says the kernel acted. Sandboxes'
own setup (bubblewrap, sandbox-runtime's helper) is not killed; a nested launcher is.
Egress runs inside a network namespace this test makes (no packet can leave it): the
cgroup programs refuse everything outside the allowlist with EPERM.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, bpf_unavailable

pytestmark = pytest.mark.bpf
PY = sys.executable
SRT = REPO / ".tools" / "srt" / "node_modules" / ".bin" / "srt"
CLONE_NEWNET = 0x40000000


@pytest.fixture(scope="module")
def tmp() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="aw-enforce-"))
    (d / "decoys").mkdir()
    (d / "decoys" / "inner.txt").write_text("bait\n")
    (d / "decoy.txt").write_text("bait\n")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def runtime_sock(tmp: Path) -> Iterator[str]:
    path = str(tmp / "docker.sock")
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(path)
    srv.listen()
    yield path
    srv.close()


@pytest.fixture(scope="module")
def enforcing(tmp: Path, runtime_sock: str) -> Iterator[tuple[Any, Any]]:
    if os.geteuid() != 0:
        bpf_unavailable("loading BPF needs root")
    from detectors.catalog.monitor import RUNTIME_SOCKETS
    from detectors.config import parse
    from service.pipeline import Collector
    from service.sinks import MemorySink

    config = parse({"mode": "enforce", "detectors": {
        "canary_touch": {"paths": [str(tmp / "decoy.txt"), str(tmp / "decoys/**")]},
        "runtime_socket": {"sockets": [*RUNTIME_SOCKETS, runtime_sock]},
    }}, "<test>")
    alerts = MemorySink()
    events = MemorySink()
    c = Collector([events], detection=config, alert_sinks=[alerts])
    try:
        c.start()
    except Exception as e:  # any load failure is reported the same way
        bpf_unavailable(f"cannot load the probes: {e}")
    yield c, alerts, events
    c.close()


def _run(c: Any, code: str, marker: Path) -> Any:
    from service.run import run

    marker.unlink(missing_ok=True)
    prog = "import ctypes, os, socket, sys, time\nL = ctypes.CDLL(None, use_errno=True)\n" \
        + textwrap.dedent(code) + f"\nopen({str(marker)!r}, 'w').write('after')\n"
    # a script file, not `-c`: reverse_shell flags one-liners that name sockets and dup2
    script = marker.with_suffix(".py")
    script.write_text(prog)
    return run([PY, str(script)], collector=c)


def _alerts(alerts: Any, session: str) -> list[Any]:
    return [a for a in alerts.events if a.session == session]


CASES = {
    "unshare": ("L.unshare(0x10000000)", "namespace_escape", "unshare"),
    "setns": ("L.setns(99, 0)", "namespace_escape",  # a bad fd: killed at entry anyway
              "setns"),
    "mount": ("L.mount(b'none', b'/nonexistent-aw', b'tmpfs', 0, None)", "mount_escape",
              "mount"),
    "chroot": ("L.chroot(b'/nonexistent-aw')", "mount_escape", "chroot"),
    "bpf": ("L.syscall(321, 0, 0, 0)", "kernel_tamper", "bpf"),
    "perf_event_open": ("L.syscall(298, 0, 0, -1, -1, 0)", "kernel_tamper",
                        "perf_event_open"),
    "canary": ("open({decoy!r}).read()", "canary_touch", "openat"),
    "canary_dir": ("open({inner!r}).read()", "canary_touch", "openat"),
    "runtime_socket": ("socket.socket(socket.AF_UNIX).connect({sock!r})", "runtime_socket",
                       None),
    "ptrace_seize": ("L.ptrace(0x4206, {sibling}, 0, 0)", "process_injection", "ptrace"),
    "process_vm_readv": ("L.syscall(310, {sibling}, 0, 0, 0, 0, 0)", "process_injection",
                         "process_vm_readv"),
    # calls outside the old per-syscall table: the dispatcher sees every number
    "open_by_handle_at": ("L.syscall(304, 3, 0, 0)", "forbidden_syscall",
                          "open_by_handle_at"),
    "name_to_handle_at": ("L.syscall(303, -100, b'/', 0, 0, 0)", "forbidden_syscall",
                          "name_to_handle_at"),
    "io_uring_setup": ("L.syscall(425, 8, 0)", "forbidden_syscall", "io_uring_setup"),
    "kexec_load": ("L.syscall(246, 0, 0, 0, 0)", "kernel_tamper", "kexec_load"),
    "pidfd_getfd": ("L.syscall(438, 0, 0, 0)", "process_injection", "pidfd_getfd"),
    "process_madvise": ("L.syscall(440, 0, 0, 0, 0, 0)", "process_injection",
                        "process_madvise"),
    # signals to agentwatch (this process) by the doors the old table did not watch; a
    # NULL siginfo makes the call fail with EFAULT if it is not stopped
    "rt_sigqueueinfo": ("L.syscall(129, {me}, 10, 0)", "monitor_tamper", "rt_sigqueueinfo"),
    "rt_tgsigqueueinfo": ("L.syscall(297, {me}, {me}, 10, 0)", "monitor_tamper",
                          "rt_tgsigqueueinfo"),
    "f_setown": ("s = socket.socket(); L.fcntl(s.fileno(), 8, {me})", "monitor_tamper",
                 "fcntl"),
    "fiosetown": ("s = socket.socket(); v = ctypes.c_int({me}); "
                  "L.ioctl(s.fileno(), 0x8901, ctypes.byref(v))", "monitor_tamper", "ioctl"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_kernel_kills_at_the_calls_entry(enforcing: tuple[Any, Any, Any], tmp: Path,
                                         runtime_sock: str, sibling: subprocess.Popen[bytes],
                                         case: str) -> None:
    c, alerts, events = enforcing
    code, detector, syscall = CASES[case]
    code = code.format(decoy=str(tmp / "decoy.txt"), inner=str(tmp / "decoys/inner.txt"),
                       sock=runtime_sock, sibling=sibling.pid, me=os.getpid())
    marker = tmp / f"marker-{case}"
    r = _run(c, code, marker)
    assert r.exit_status == 128 + 9, f"{case}: not killed (exit {r.exit_status})"
    assert not marker.exists(), f"{case}: the process ran on after the forbidden call"
    killed = [e for e in events.session(r.session) if e.kernel_kill]
    assert [e.kernel_kill for e in killed] == [detector], killed
    if syscall:
        assert getattr(killed[0], "syscall", None) == syscall
    # reported once, at entry: not again from its exit as a call whose entry went unseen
    assert not [e for e in events.session(r.session) if getattr(e, "refused_at_entry", 0)]
    got = [a for a in _alerts(alerts, r.session)
           if a.detector == detector and (a.event or {}).get("kernel_kill")]
    assert got, f"{case}: no {detector} alert for the killed call"
    action = got[0].action
    assert action["taken"] == "kill" and action["by"] == "kernel", action
    assert action["result"].startswith("kernel: SIGKILL at the entry of"), action
    assert c.session_members(c.sessions[r.session].id) == []


def test_clone_of_new_namespaces_kills_the_parent_and_user_space_the_child(
        enforcing: tuple[Any, Any, Any], tmp: Path) -> None:
    c, _alerts, events = enforcing
    marker = tmp / "marker-clone"
    # raw clone(CLONE_NEWUTS | SIGCHLD): the child is made before the parent dies
    r = _run(c, """
        pid = L.syscall(56, 0x04000000 | 17, 0, 0, 0, 0)
        if pid == 0:
            time.sleep(30)
            os._exit(0)
    """, marker)
    assert r.exit_status == 128 + 9 and not marker.exists()
    (fork,) = [e for e in events.session(r.session) if e.kernel_kill]
    assert fork.kind == "fork" and fork.kernel_kill == "namespace_escape"
    assert c.session_members(c.sessions[r.session].id) == [], "the clone child survived"


def test_user_space_path_when_kernel_enforcement_is_off(enforcing: tuple[Any, Any, Any],
                                                       tmp: Path) -> None:
    c, alerts, events = enforcing
    config = c.analyzer.engine.config
    config.kernel_enforcement = False
    c.apply_policy()
    try:
        r = _run(c, "L.unshare(0x10000000)\ntime.sleep(30)", tmp / "marker-user")
    finally:
        config.kernel_enforcement = True
        c.apply_policy()
    assert r.exit_status == 128 + 9
    assert not [e for e in events.session(r.session) if e.kernel_kill]
    (a,) = [a for a in _alerts(alerts, r.session) if a.detector == "namespace_escape"]
    assert a.action["taken"] == "kill" and a.action["by"] == "user space", a.action


def test_fork_bomb_past_the_process_limit_is_killed_in_the_kernel(
        enforcing: tuple[Any, Any, Any], tmp: Path) -> None:
    """fork_bomb's max_live decided in the kernel: the fork that takes the session past
    the limit kills the forker before clone() returns; user space kills the children."""
    c, alerts, events = enforcing
    params = c.analyzer.engine.config.detectors["fork_bomb"].params
    old = params["max_live"]
    params["max_live"] = 40
    c.apply_policy()
    try:
        r = _run(c, """
            for _ in range(300):
                if os.fork() == 0:
                    time.sleep(30)
                    os._exit(0)
        """, tmp / "marker-forkbomb")
    finally:
        params["max_live"] = old
        c.apply_policy()
    assert r.exit_status == 128 + 9, f"not killed (exit {r.exit_status})"
    evs = events.session(r.session)
    killed = [e for e in evs if e.kernel_kill]
    assert killed and {e.kernel_kill for e in killed} == {"fork_bomb"}
    children = [e.child_pid for e in evs if e.kind == "fork" and not e.thread]
    assert 38 <= len(children) <= 45, len(children)  # stopped at the limit, not at 300
    deadline = time.monotonic() + 5
    while any(os.path.exists(f"/proc/{pid}") for pid in children) and \
            time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [pid for pid in children if os.path.exists(f"/proc/{pid}")]
    got = [a for a in _alerts(alerts, r.session) if a.detector == "fork_bomb"]
    assert got and got[0].action["by"] == "kernel", [a.action for a in got]


def test_monitor_mode_kills_nothing_in_the_kernel(enforcing: tuple[Any, Any, Any],
                                                  tmp: Path) -> None:
    c, alerts, _events = enforcing
    config = c.analyzer.engine.config
    config.mode = "monitor"
    c.apply_policy()
    try:
        marker = tmp / "marker-monitor"
        r = _run(c, "L.unshare(0x10000000)\nL.syscall(321, 0, 0, 0)", marker)
    finally:
        config.mode = "enforce"
        c.apply_policy()
    assert r.exit_status == 0 and marker.exists()
    got = _alerts(alerts, r.session)
    assert {a.detector for a in got} >= {"namespace_escape", "kernel_tamper"}
    assert all(a.action["taken"] == "none" and "monitor mode: would kill"
               in a.action["result"] for a in got if a.action["requested"] == "kill")


def _bwrap(*cmd: str) -> list[str]:
    if shutil.which("bwrap") is None:
        pytest.fail("bubblewrap is not installed (make test installs it)")
    return ["bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
            "--tmpfs", "/tmp", "--unshare-all", "--die-with-parent", "--", *cmd]


@pytest.mark.e2e
def test_sandbox_setup_is_not_killed(enforcing: tuple[Any, Any, Any]) -> None:
    from service.run import run

    c, alerts, _events = enforcing
    r = run(_bwrap("sh", "-c", "echo inside"), collector=c)
    assert r.exit_status == 0
    assert not [a for a in _alerts(alerts, r.session) if a.action["taken"] == "kill"]


@pytest.mark.e2e
def test_sandbox_runtime_is_not_killed(enforcing: tuple[Any, Any, Any]) -> None:
    from service.run import run

    if not SRT.exists():
        pytest.fail(f"{SRT} missing (make test installs sandbox-runtime)")
    c, alerts, _events = enforcing
    r = run([str(SRT), "-c", "echo inside srt"], collector=c)
    kills = [a for a in _alerts(alerts, r.session) if a.action["taken"] == "kill"]
    assert r.exit_status == 0 and not kills, [(a.detector, a.summary) for a in kills]
    # nor flagged: Node's socketpair stdio is no reverse shell, and the helper's write of
    # its own user namespace's limit is no write outside the workspace
    loud = [a for a in _alerts(alerts, r.session)
            if a.severity in ("medium", "high", "critical")]
    assert not loud, [(a.detector, a.summary) for a in loud]


@pytest.mark.e2e
def test_a_nested_launcher_is_killed(enforcing: tuple[Any, Any, Any]) -> None:
    from service.run import run

    c, _alerts, events = enforcing
    # the payload (a shell) starts a sandbox of its own: not the outer sandbox's setup
    inner = " ".join(_bwrap("true"))
    r = run(_bwrap("sh", "-c", f"{inner}; sleep 30"), collector=c)  # user space: the rest
    assert r.exit_status == 128 + 9
    killed = [e for e in events.session(r.session) if e.kernel_kill]
    assert killed and killed[0].nested_launcher and killed[0].comm == "bwrap", killed


def test_egress_is_refused_in_the_kernel(enforcing: tuple[Any, Any, Any], tmp: Path) -> None:
    """In a network namespace of the test's own (only loopback, no route anywhere)."""
    from pyroute2 import IPRoute, netns

    from service.run import run

    c, alerts, _events = enforcing
    name = f"aw-egress-{os.getpid()}"
    netns.create(name)
    libc = ctypes.CDLL(None, use_errno=True)
    home = os.open("/proc/self/ns/net", os.O_RDONLY)
    out = tmp / "egress.txt"
    code = textwrap.dedent(f"""
        import errno, socket
        srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen()
        res = []
        for addr in (srv.getsockname(), ("10.0.0.1", 80), ("169.254.169.254", 80),
                     ("2001:db8::1", 443), ("::ffff:10.0.0.3", 80)):
            s = socket.socket(socket.AF_INET6 if ":" in addr[0] else socket.AF_INET)
            try:
                s.connect(addr); res.append("ok")
            except OSError as e:
                res.append(errno.errorcode[e.errno])
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            u.sendto(b"x", ("10.0.0.2", 53)); res.append("ok")
        except OSError as e:
            res.append(errno.errorcode[e.errno])
        open({str(out)!r}, "w").write(" ".join(res))
    """)
    try:
        # this thread only (the main one: run() handles signals) enters the namespace;
        # the session's process is forked from it
        netns.setns(name)
        with IPRoute() as ipr:
            ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
        r = run([PY, "-c", code], collector=c)
    finally:
        assert libc.setns(home, CLONE_NEWNET) == 0
        os.close(home)
        netns.remove(name)
    assert r.exit_status == 0
    assert out.read_text().split() == ["ok", "EPERM", "EPERM", "EPERM", "EPERM", "EPERM"]
    denied = [a for a in _alerts(alerts, r.session) if a.detector == "egress_violation"]
    assert {a.fields["address"] for a in denied} == {
        "10.0.0.1", "169.254.169.254", "2001:db8::1", "::ffff:a00:3", "10.0.0.2"}
    for a in denied:
        assert a.action["taken"] == "deny" and a.action["by"] == "kernel", a.action


@pytest.fixture(scope="module")
def listener() -> Iterator[int]:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    yield srv.getsockname()[1]
    srv.close()


def test_reverse_shell_dup_is_killed_in_the_kernel(enforcing: tuple[Any, Any, Any],
                                                  tmp: Path, listener: int) -> None:
    c, alerts, events = enforcing
    marker = tmp / "marker-revshell"
    r = _run(c, f"""
        s = socket.create_connection(("127.0.0.1", {listener}))
        os.dup2(s.fileno(), 1)
    """, marker)
    assert r.exit_status == 128 + 9 and not marker.exists()
    (ev,) = [e for e in events.session(r.session) if e.kernel_kill]
    assert ev.kernel_kill == "reverse_shell" and ev.syscall == "dup2"
    (a,) = [a for a in _alerts(alerts, r.session) if a.detector == "reverse_shell"]
    assert a.action["by"] == "kernel", a.action


def test_bash_dev_tcp_is_killed_in_the_kernel(enforcing: tuple[Any, Any, Any],
                                              tmp: Path, listener: int) -> None:
    from service.run import run

    c, _alerts, events = enforcing
    # a script, so that no command line names /dev/tcp: only the dup is there to see
    script = tmp / "revshell.sh"
    script.write_text(f"echo hi >& /dev/tcp/127.0.0.1/{listener}\necho after\n")
    r = run(["bash", str(script)], collector=c)
    assert r.exit_status == 128 + 9
    assert [e.kernel_kill for e in events.session(r.session) if e.kernel_kill] == \
        ["reverse_shell"]


def test_fds_that_are_not_inet_sockets_are_not_killed(enforcing: tuple[Any, Any, Any],
                                                      tmp: Path, listener: int) -> None:
    """A closed socket's fd number reused by a file, a unix socketpair, a pipe, a socket
    dup'ed above 2, and a forked child's copy closed: none is a reverse shell."""
    c, _alerts, events = enforcing
    marker = tmp / "marker-benign-dup"
    r = _run(c, f"""
        s = socket.create_connection(("127.0.0.1", {listener}))
        n = s.fileno()
        s.close()
        f = os.open("/dev/null", os.O_WRONLY)
        assert f == n
        os.dup2(f, 1)
        a, b = socket.socketpair()
        os.dup2(a.fileno(), 0)
        r_, w_ = os.pipe()
        os.dup2(w_, 2)
        t = socket.create_connection(("127.0.0.1", {listener}))
        os.dup2(t.fileno(), 9)
        os.closerange(3, 64)
        g = os.open("/dev/null", os.O_RDONLY)
        os.dup2(g, 0)
        pid = os.fork()
        if pid == 0:
            os.dup2(g, 1)
            os._exit(0)
        os.waitpid(pid, 0)
    """, marker)
    assert r.exit_status == 0 and marker.exists(), r
    assert not [e for e in events.session(r.session) if e.kernel_kill]


def test_socket_and_accept_onto_stdio_are_killed_in_the_kernel(
        enforcing: tuple[Any, Any, Any], tmp: Path, listener: int) -> None:
    c, _alerts, events = enforcing
    marker = tmp / "marker-placed"
    r = _run(c, f"""
        os.close(0)
        s = socket.socket()
        s.connect(("127.0.0.1", {listener}))
    """, marker)
    assert r.exit_status == 128 + 9 and not marker.exists()
    (ev,) = [e for e in events.session(r.session) if e.kernel_kill]
    assert ev.kernel_kill == "reverse_shell" and ev.syscall == "socket" and ev.ret == 0
    r = _run(c, """
        srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(1)
        cl = socket.create_connection(srv.getsockname())
        os.close(1)
        conn, _ = srv.accept()
    """, marker)
    assert r.exit_status == 128 + 9 and not marker.exists()
    (ev,) = [e for e in events.session(r.session) if e.kernel_kill]
    assert ev.kernel_kill == "reverse_shell" and ev.syscall in ("accept", "accept4")


def test_exec_with_an_inherited_inet_socket_is_killed_in_the_kernel(
        enforcing: tuple[Any, Any, Any], listener: int) -> None:
    """A socket on stdio that no call of the session put there (it came with the session's
    root, from this process): found in the fd table at exec."""
    from service.run import run

    c, _alerts, events = enforcing
    s = socket.create_connection(("127.0.0.1", listener))
    saved = os.dup(0)
    try:
        os.dup2(s.fileno(), 0)
        r = run(["true"], collector=c)
    finally:
        os.dup2(saved, 0)
        os.close(saved)
        s.close()
    assert r.exit_status == 128 + 9
    kills = [e for e in events.session(r.session) if e.kernel_kill]
    assert [(e.kind, e.kernel_kill) for e in kills] == [("exec", "reverse_shell")]
    assert kills[0].stdio[0]["type"] == "socket" and kills[0].stdio[0]["family"] == "AF_INET"
