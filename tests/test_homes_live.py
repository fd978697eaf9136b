"""Issue 16 items 3, 4, 5, 9 against REAL workloads (root, real probes): a HOME outside
/root and /home, the workspace's own `.env`, `git clone` of a local repository next to
`cat` of its history, and `agentwatch run --config F` killing a reader of F in the kernel.

Everything written lives in temporary directories under /var/tmp (not /tmp: the tests
must see paths outside the usual allowances), removed at the end.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from collector.events import AlertEvent
from tests.conftest import REPO, bpf_unavailable

pytestmark = pytest.mark.bpf
TIMEOUT = 60


@pytest.fixture(scope="module")
def watching() -> Iterator[tuple[Any, Any]]:
    if os.geteuid() != 0:
        bpf_unavailable("loading BPF needs root")
    from detectors.config import defaults
    from service.pipeline import Collector
    from service.sinks import MemorySink

    alerts = MemorySink()
    c = Collector([], None, detection=defaults(), alert_sinks=[alerts])
    try:
        c.start()
    except Exception as e:  # noqa: BLE001 - any load failure is reported the same way
        bpf_unavailable(f"cannot load the probes: {e}")
    yield c, alerts
    c.close()


@pytest.fixture
def scratch() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="aw-i16-", dir="/var/tmp"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


def session_alerts(watch: tuple[Any, Any], argv: list[str], cwd: Path,
                   monkeypatch: pytest.MonkeyPatch, home: str) -> list[AlertEvent]:
    from service.run import run

    collector, alerts = watch
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("HOME", home)  # the HOME `run` passes to CMD: the session's
    mark = len(alerts.events)
    result = run(["timeout", "-k", "5", str(TIMEOUT), *argv], collector=collector)
    assert result.exit_status == 0
    for _ in range(5):
        collector.poll(20)
    return [a for a in alerts.events[mark:] if a.session == result.session and not a.folded]


def test_credentials_under_the_sessions_own_home(watching: tuple[Any, Any], scratch: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    home = scratch / "agent-home"   # /var/tmp/aw-i16-*/agent-home: no /root, no /home
    ws = home / "proj"
    ws.mkdir(parents=True)
    (home / ".aws").mkdir()
    (home / ".aws" / "credentials").write_text("[default]\naws_access_key_id = AKIAFAKE\n")
    (home / ".ssh").mkdir()
    (home / ".ssh" / "id_ed25519").write_text("fake key\n")
    (ws / ".env").write_text("API_TOKEN=fake\n")
    (ws / ".env.local").write_text("DEBUG=1\n")
    script = (f"cat {home}/.aws/credentials {home}/.ssh/id_ed25519 >/dev/null; "
              "set -a; . ./.env; cat .env.local >/dev/null; "
              "ssh_key=./deploy_key; printf 'k' > $ssh_key.tmp; mv $ssh_key.tmp .env.gen; "
              "cat .env.gen > /dev/null")
    alerts = session_alerts(watching, ["/bin/sh", "-c", script], ws, monkeypatch, str(home))
    creds = {a.key: a for a in alerts if a.detector == "credential_read"}
    assert creds[f"{home}/.aws/credentials"].severity == "high"
    assert creds[f"{home}/.aws/credentials"].fields["pattern"] == "~/.aws/credentials"
    assert creds[f"{home}/.ssh/id_ed25519"].severity == "high"
    for own in (ws / ".env", ws / ".env.local", ws / ".env.gen"):
        assert creds[str(own)].severity == "info", creds[str(own)].summary
    # the same files, the session's HOME being /root: not credentials any more (~ is /root)
    again = session_alerts(watching, ["/bin/cat", f"{home}/.aws/credentials"], ws,
                           monkeypatch, "/root")
    assert not [a for a in again if a.detector == "credential_read"]


def test_git_clone_of_a_local_repository_is_info(watching: tuple[Any, Any], scratch: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    other = scratch / "other"
    other.mkdir()
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@invalid",
           "-c", "init.defaultBranch=main"]
    subprocess.run([*git, "init", "-q"], cwd=other, check=True)
    (other / "README").write_text("x\n")
    subprocess.run([*git, "add", "README"], cwd=other, check=True)
    subprocess.run([*git, "commit", "-qm", "one"], cwd=other, check=True)
    ws = scratch / "ws"
    ws.mkdir()
    script = (f"git clone -q {other} mine && git clone -q --no-local file://{other} mine2 "
              f"&& git -C mine fetch -q {other} && cat {other}/.git/HEAD > /dev/null")
    alerts = session_alerts(watching, ["/bin/sh", "-c", script], ws, monkeypatch, "/root")
    prot = [a for a in alerts if a.detector == "protected_read"]
    by_git = [a for a in prot if a.fields.get("git_transport")]
    assert by_git and {a.severity for a in by_git} == {"info"}
    assert {a.fields["comm"] for a in by_git} >= {"git"}
    loud = [a for a in prot if a.severity != "info"]
    assert [(a.key, a.fields["comm"]) for a in loud] == [(f"{other}/.git/HEAD", "cat")]


def test_run_config_file_is_denied_in_the_kernel(scratch: Path) -> None:
    """The real CLI, enforce mode: reading the --config file is killed in the kernel and
    the session with it (137); a file next to it is not protected."""
    if os.geteuid() != 0:
        bpf_unavailable("loading BPF needs root")
    cfg = scratch / "aw.toml"
    cfg.write_text('mode = "enforce"\n')
    (scratch / "sibling.txt").write_text("hello\n")
    alerts = scratch / "alerts.jsonl"
    env = {k: v for k, v in os.environ.items() if k != "AGENTWATCH_PIN_ROOT"}
    env["AGENTWATCH_PIN_ROOT"] = "off"
    out = subprocess.run(
        [str(Path(sys.executable).parent / "agentwatch"), "run", "--config", str(cfg),
         "--alerts", str(alerts), "--events", "/dev/null", "--", "/bin/sh", "-c",
         f"cat {scratch}/sibling.txt; cat {cfg}; sleep 10; echo survived"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
    if out.returncode == 1 and ("cannot load" in out.stderr or "BPF" in out.stderr):
        bpf_unavailable(out.stderr.strip())
    assert out.returncode == 137, out.stderr
    assert "hello" in out.stdout and "survived" not in out.stdout
    lines = [orjson.loads(x) for x in alerts.read_text().splitlines()]
    tamper = [a for a in lines if a["detector"] == "monitor_tamper"]
    assert tamper and tamper[0]["fields"]["target"] == str(cfg)
    assert tamper[0]["action"]["requested"] == "kill"
    assert not [a for a in lines if str(scratch / "sibling.txt") in a["summary"]]


@pytest.fixture(scope="module")
def adopting(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from tests.conftest import running

    tmp = tmp_path_factory.mktemp("homes-daemon")
    config = tmp / "config.toml"
    config.write_text('mode = "monitor"\n')
    yield from running(tmp, config)


def test_daemon_takes_a_launchers_home_from_its_environ_and_setenv(
        adopting: Any, scratch: Path) -> None:
    """A sandbox the daemon adopts: its HOME from the launcher's environment, or the one
    `bwrap --setenv HOME` gives the sandboxed command (known from the launcher's exec
    event even when the sandbox is gone before its session start reads /proc); each
    makes `~` match there."""
    from bench.harness import sandbox, wait

    homes = []
    for name in ("env-home", "setenv-home"):
        h = scratch / name
        (h / ".aws").mkdir(parents=True)
        (h / ".aws" / "credentials").write_text("[default]\n")
        homes.append(h)
    # the root's environ is read when its session starts: a sandbox alive by then
    by_env = sandbox(adopting.tmp, "/bin/sh", "-c",
                     f"sleep 1; cat {homes[0]}/.aws/credentials")
    subprocess.run(by_env, env={**os.environ, "HOME": str(homes[0])}, check=True,
                   capture_output=True, timeout=TIMEOUT)
    by_setenv = sandbox(adopting.tmp, "/bin/cat", f"{homes[1]}/.aws/credentials")
    cut = by_setenv.index("--")
    by_setenv[cut:cut] = ["--setenv", "HOME", str(homes[1])]
    subprocess.run(by_setenv, env={**os.environ, "HOME": "/root"}, check=True,
                   capture_output=True, timeout=TIMEOUT)
    want = {f"{h}/.aws/credentials" for h in homes}

    def found() -> set[str]:
        return {a["fields"]["path"] for a in adopting.alerts()
                if a["detector"] == "credential_read" and a["severity"] == "high"} & want

    assert wait(lambda: found() == want, 20, f"credential_read for {sorted(want)}")
