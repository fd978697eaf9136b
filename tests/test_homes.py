"""Issue 16 items 3, 4, 5, 9 without BPF: what `~` stands for (homes of the host, the
session's HOME), the workspace's own secrets, git's transport reading another repository,
and the config of `agentwatch run --config` protected like the daemon's.

Fixtures: tests/fixtures/detectors/{credential_read,protected_read}/ (written by
tests/fixtures/detectors/generate_homes.py). Live tests: tests/test_homes_live.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from collector.events import EVENT_TYPES, Event, OpenEvent, SessionEvent
from collector.homes import environ_value, host_homes, session_homes, setenv_home
from detectors.base import normal_homes, path_matches
from detectors.catalog.ownership import git_command
from detectors.config import defaults
from detectors.engine import Engine
from service.analysis import Analyzer, protect_self
from service.run import own_config_paths
from tests.detector_fixtures import alerts_of, config, load_events, replay, summary

LOUD = {"medium", "high", "critical"}


def _loud(alerts: list) -> list:
    return [a for a in alerts if a.severity in LOUD]


# ------------------------------------------------------------------------------ globs


def test_tilde_matches_the_given_homes_and_the_usual_ones() -> None:
    assert path_matches("/home/ann/.ssh/id_rsa", ["~/.ssh/id_*"]) == "~/.ssh/id_*"
    assert path_matches("/root/.aws/credentials", ["~/.aws/credentials"])
    assert path_matches("/var/lib/jenkins/.aws/credentials", ["~/.aws/credentials"]) is None
    homes = ("/var/lib/jenkins", "/tmp/home-123")
    assert path_matches("/var/lib/jenkins/.aws/credentials", ["~/.aws/credentials"], homes)
    assert path_matches("/tmp/home-123/.ssh/id_ed25519", ["~/.ssh/id_*"], homes)
    assert path_matches("/root/.ssh/id_rsa", ["~/.ssh/id_*"], homes)  # still
    # a home is literal: regex characters in it match only themselves
    odd = ("/opt/a.b+(c)",)
    assert path_matches("/opt/a.b+(c)/.netrc", ["~/.netrc"], odd)
    assert path_matches("/opt/aXb+(c)/.netrc", ["~/.netrc"], odd) is None
    # below a home's subdirectory is not the home
    assert path_matches("/var/lib/jenkins/x/.netrc", ["~/.netrc"], homes) is None


def test_homes_are_normalised() -> None:
    assert normal_homes(["/opt/x/", "/", "", None, "rel/dir", "/root", "/home/ann",
                         "/opt/x", "/srv/\\xff-home"]) == ("/opt/x", "/srv/\\xff-home")


def test_engine_homes_and_session_home() -> None:
    """Host homes (given to the engine) and the session's HOME (its start event) both
    count; a replay without them does not invent any."""
    cfg = defaults()
    start = SessionEvent(ts=1, session="s1", pid=10, phase="start", root_pid=10,
                         cwd="/work/p", homes=["/opt/agent-home"])

    def read(path: str) -> OpenEvent:
        return OpenEvent(ts=2, session="s1", pid=11, comm="cat", ret=3, syscall="openat",
                         path=path, raw_path=path, flags=0)

    def creds(engine_homes: tuple[str, ...], ev_home: list[str] | None) -> list[str]:
        an = Analyzer(cfg)
        an.engine = Engine(cfg, proc=an._proc, ancestry=an._ancestry, session=an._session,
                           homes=engine_homes)
        s = SessionEvent(**{**{f: getattr(start, f) for f in ("ts", "session", "pid",
                                                               "phase", "root_pid", "cwd")},
                            "homes": ev_home})
        out = an.feed(s)
        for p in ("/opt/agent-home/.aws/credentials", "/var/lib/svc/.ssh/id_ed25519"):
            out += an.feed(read(p))
        return [a.key for a in out if a.detector == "credential_read" and a.severity == "high"]

    assert creds((), None) == []
    assert creds((), ["/opt/agent-home"]) == ["/opt/agent-home/.aws/credentials"]
    assert creds(("/var/lib/svc",), None) == ["/var/lib/svc/.ssh/id_ed25519"]
    assert creds(("/var/lib/svc",), ["/opt/agent-home"]) == [
        "/opt/agent-home/.aws/credentials", "/var/lib/svc/.ssh/id_ed25519"]


# ------------------------------------------------------------------------------ collector


def test_host_homes_has_root_home_dirs_and_passwd() -> None:
    homes = host_homes()
    assert homes[0] == "/root" or not os.path.isdir("/root")
    assert "/" not in homes
    if os.path.isdir("/home"):
        for e in os.scandir("/home"):
            if e.is_dir():
                assert e.path in homes


def _sleeper(env: dict[bytes, bytes]) -> subprocess.Popen[bytes]:
    """A process with this environment, once it runs (Popen may return while the kernel
    is still setting up the exec: its environ reads empty for a moment)."""
    p = subprocess.Popen([sys.executable, "-c", "print(1, flush=True); import time; "
                          "time.sleep(30)"], env=env, stdout=subprocess.PIPE)
    assert p.stdout is not None and p.stdout.readline() == b"1\n"
    return p


def test_environ_home_of_a_live_process_bounded_and_non_utf8() -> None:
    big = {f"X{i}".encode(): b"y" * 100_000 for i in range(3)}  # 300 kB in all
    env = {b"HOME": b"/srv/h\xffme", b"PATH": b"/usr/bin", **big}
    p = _sleeper(env)
    try:
        assert environ_value(p.pid, b"HOME") == "/srv/h\\xffme"
        assert environ_value(p.pid, b"NOPE") is None
        # HOME past the bound is not read (and nothing fails)
        env2 = {**big, b"HOME": b"/far"}
        q = _sleeper(env2)
        try:
            assert environ_value(q.pid, b"HOME") is None
            assert environ_value(q.pid, b"HOME", limit=400_000) == "/far"
        finally:
            q.kill()
            q.wait()
    finally:
        p.kill()
        p.wait()
    assert environ_value(2 ** 22 + 7, b"HOME") is None  # no such process


def test_launcher_setenv_home_and_symlinked_home(tmp_path: Path) -> None:
    argv = ["bwrap", "--ro-bind", "/", "/", "--setenv", "HOME", "/sandbox/home", "--",
            "sh", "-c", "x", "--setenv", "HOME", "/not/bwrap"]
    assert setenv_home(argv) == "/sandbox/home"
    assert setenv_home(["bwrap", "--setenv", "HOME"]) is None
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real)
    assert session_homes(str(link)) == [str(link), str(real)]
    assert session_homes("/", ["bwrap", "--setenv", "HOME", "/x/"]) == ["/x"]
    assert session_homes("relative", []) is None


def test_literal_paths_expand_tilde_over_host_homes(monkeypatch) -> None:
    from response import enforce

    monkeypatch.setattr(enforce, "host_homes", lambda: ["/root", "/home/ci", "/var/lib/j"])
    assert enforce.literal_paths(["~/.aws/credentials.bak", "/srv/x/**"]) == [
        "/root/.aws/credentials.bak", "/home/ci/.aws/credentials.bak",
        "/var/lib/j/.aws/credentials.bak", "/srv/x"]


# ------------------------------------------------------------------------------ fixtures


def test_credentials_under_another_home_are_high() -> None:
    assert summary(alerts_of("credential_read", "other_home_positive")) == [
        ("credential_read", "high", "alert", "/opt/agent-home/.aws/credentials"),
        ("credential_read", "high", "alert", "/opt/agent-home/.ssh/id_ed25519"),
        ("credential_read", "high", "alert", "/srv/other-project/.env"),
        ("credential_read", "high", "alert", "/opt/agent-home/.git-credentials"),
        ("credential_read", "high", "alert", "/tmp/stage/.env"),
        ("credential_read", "high", "alert", "/opt/agent-home/.ssh/id_fresh"),
    ]


def test_workspace_and_session_secrets_are_info() -> None:
    alerts = alerts_of("credential_read", "other_home_negative")
    assert alerts and all(a.severity == "info" for a in alerts), summary(alerts)
    assert {a.fields["own"] for a in alerts} == {"in the workspace", "created by the session"}
    assert not any(a.key.startswith("then_connect") for a in alerts)
    # the whole fixture, every detector but egress (its connect is to a TEST-NET address
    # on purpose) and write_outside_workspace (the key is written to ~/.ssh on purpose):
    # nothing medium or above
    everything = [a for a in replay(load_events("credential_read", "other_home_negative"),
                                    defaults())
                  if a.detector not in ("egress_violation", "write_outside_workspace")]
    assert _loud(everything) == [], [a.summary for a in _loud(everything)]
    # own_severity = high turns the exemption off
    high = alerts_of("credential_read", "other_home_negative",
                     {"credential_read": {"own_severity": "high"}})
    assert {a.severity for a in high} == {"high"}


def _ev(kind: str, **kw: object) -> str:
    base = dict(ts=kw.pop("ts"), session="s9", pid=kw.pop("pid", 70), comm="x")
    return EVENT_TYPES[kind](**base, **kw).to_json().decode()


def _run_lines(lines: list[str]) -> list:
    import tempfile

    from service.replay import read_events

    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as f:
        f.write("\n".join(lines) + "\n")
    try:
        return [a for a in replay(list(read_events(Path(f.name))), defaults())
                if a.detector == "credential_read"]
    finally:
        os.unlink(f.name)


def test_a_workspace_that_is_a_home_protects_its_credentials() -> None:
    start = _ev("session", ts=1, phase="start", root_pid=70, cwd="/home/agent",
                homes=["/home/agent"])
    rd = [_ev("open", ts=2 + i, ret=3, syscall="openat", path=p, raw_path=p, flags=0)
          for i, p in enumerate(["/home/agent/.ssh/id_rsa", "/home/agent/.env",
                                 "/home/agent/.aws/credentials"])]
    got = {a.key: a.severity for a in _run_lines([start, *rd])}
    assert got == {"/home/agent/.ssh/id_rsa": "high", "/home/agent/.env": "info",
                   "/home/agent/.aws/credentials": "high"}
    # a key the session makes there itself is its own (ssh-keygen in the workspace)
    key = "/home/agent/.ssh/id_new"
    made = [_ev("open", ts=10, ret=3, syscall="openat", path=key, raw_path=key,
                flags=0o1 | 0o100 | 0o200),
            _ev("open", ts=11, ret=3, syscall="openat", path=key, raw_path=key, flags=0)]
    got = {a.key: a.severity for a in _run_lines([start, *made])}
    assert got == {key: "info"}


def test_appending_or_plain_create_is_not_owning() -> None:
    """O_CREAT without O_TRUNC/O_EXCL (and O_APPEND) may open an existing file: its content
    is not the session's; an unlink takes a created name away."""
    start = _ev("session", ts=1, phase="start", root_pid=70, cwd="/work/p")
    p = "/tmp/x/.env"
    lines = [start,
             _ev("open", ts=2, ret=3, syscall="openat", path=p, raw_path=p,
                 flags=0o1 | 0o100 | 0o2000),
             _ev("open", ts=3, ret=3, syscall="openat", path=p, raw_path=p, flags=0),
             _ev("open", ts=4, ret=3, syscall="openat", path="/tmp/y/.env",
                 raw_path="/tmp/y/.env", flags=0o1 | 0o100 | 0o1000),
             _ev("syscall", ts=5, ret=0, syscall="unlink", path="/tmp/y/.env"),
             _ev("open", ts=6, ret=3, syscall="openat", path="/tmp/y/.env",
                 raw_path="/tmp/y/.env", flags=0)]
    got = [(a.key, a.severity) for a in _run_lines(lines)]
    assert got == [(p, "high"), ("/tmp/y/.env", "high")]


def test_git_transport_is_info_and_other_readers_are_high() -> None:
    neg = alerts_of("protected_read", "git_negative")
    assert neg and {a.severity for a in neg} == {"info"}, summary(neg)
    assert all(a.fields.get("git_transport") for a in neg)
    pos = alerts_of("protected_read", "git_positive")
    assert summary(pos) == [
        ("protected_read", "high", "alert", "/srv/repos/other/.git/HEAD"),
        ("protected_read", "high", "alert", "/srv/repos/other/.git/config"),
        ("protected_read", "high", "alert", "/srv/repos/other/.git/packed-refs"),
        ("protected_read", "high", "alert", "/srv/repos/other/.git/objects/pack/pack-1.idx"),
        ("protected_read", "high", "alert", "/srv/repos/other/.git/objects/pack/pack-2.idx"),
    ]
    # transport_commands = [] makes clone as loud as any other read
    loud = alerts_of("protected_read", "git_negative",
                     {"protected_read": {"transport_commands": []}})
    assert {a.severity for a in loud} == {"high"}


def test_git_command_line() -> None:
    assert git_command(["git", "-C", "/x", "-c", "a=b", "--no-pager", "fetch", "o"]) == \
        "fetch o"
    assert git_command(["/usr/lib/git-core/git-upload-pack", "/r"]) == "upload-pack /r"
    assert git_command(["git", "--git-dir", "/r/.git", "log"]) == "log"
    assert git_command(["git", "--version"]) is None
    assert git_command([]) is None


# ------------------------------------------------------------------------------ run --config


def test_run_config_is_protected_like_the_daemons(tmp_path: Path) -> None:
    cfg_file = tmp_path / "aw.toml"
    cfg_file.write_text('mode = "monitor"\n')
    link = tmp_path / "link.toml"
    link.symlink_to(cfg_file)
    assert own_config_paths(None) == []
    assert own_config_paths(str(link)) == [str(link), str(cfg_file)]
    cfg = config()
    params = cfg.detectors["monitor_tamper"].params
    protect_self(params, own_config_paths(str(cfg_file)))
    assert str(cfg_file) in params["paths"]
    an = Analyzer(cfg)

    def opened(path: str, ts: int) -> Event:
        return OpenEvent(ts=ts, session="s2", pid=80, comm="cat", ret=3, syscall="openat",
                         path=path, raw_path=path, flags=0)

    out = an.feed(SessionEvent(ts=1, session="s2", pid=80, phase="start", root_pid=80,
                               cwd=str(tmp_path / "ws")))
    out += an.feed(opened(str(tmp_path / "sibling.txt"), 2))  # the file, not its directory
    out += an.feed(opened(str(cfg_file), 3))
    tamper = [a for a in out if a.detector == "monitor_tamper"]
    assert [(a.fields["path"], a.severity, a.action["requested"]) for a in tamper] == [
        (str(cfg_file), "critical", "kill")]
    # and the kernel's literal paths and inodes get it in enforce mode
    from response import enforce

    cfg.mode = "enforce"
    pol = enforce.policy_for(cfg)
    assert str(cfg_file) in pol.deny_paths
    st = cfg_file.stat()
    from probes.file import kernel_dev

    assert (kernel_dev(st.st_dev), st.st_ino) in pol.deny_inodes


def test_a_launchers_setenv_home_from_its_exec_event() -> None:
    """The session start of a sandbox gone before /proc was read has no argv: the root's
    exec event gives its `--setenv HOME`; another process's exec does not."""
    start = _ev("session", ts=1, pid=70, phase="start", session_kind="launcher",
                root_pid=70, cwd="/work/p")
    ex = [_ev("exec", ts=2, pid=pid, ret=0, filename="/usr/bin/bwrap",
              argv=["bwrap", "--setenv", "HOME", home, "--", "cat", "x"], exe="/usr/bin/bwrap")
          for pid, home in ((70, "/srv/sbx-home"), (71, "/srv/not-root"))]
    rd = [_ev("open", ts=3 + i, pid=72, ret=3, syscall="openat", path=p, raw_path=p, flags=0)
          for i, p in enumerate(["/srv/sbx-home/.netrc", "/srv/not-root/.netrc"])]
    assert [(a.key, a.severity) for a in _run_lines([start, *ex, *rd])] == [
        ("/srv/sbx-home/.netrc", "high")]


def test_shell_profiles_and_allowances_under_the_sessions_home() -> None:
    """persistence_write and write_outside_workspace use the same homes: the session's
    ~/.bashrc is a persistence location, its ~/.cache an allowed place to write."""
    from service.replay import read_events

    def alerts(homes: list[str] | None) -> list[tuple[str, str, str]]:
        lines = [_ev("session", ts=1, phase="start", root_pid=70, cwd="/work/p", homes=homes)]
        for i, p in enumerate(["/opt/agent-home/.bashrc", "/opt/agent-home/.cache/pip/x"]):
            lines.append(_ev("open", ts=2 + i, ret=3, syscall="openat", path=p, raw_path=p,
                             flags=0o1 | 0o100 | 0o1000))
        import tempfile

        with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as f:
            f.write("\n".join(lines) + "\n")
        try:
            out = replay(list(read_events(Path(f.name))), defaults())
        finally:
            os.unlink(f.name)
        return sorted((a.detector, a.severity, a.key) for a in out if not a.folded)

    assert alerts(["/opt/agent-home"]) == [
        ("persistence_write", "critical", "/opt/agent-home/.bashrc"),
        ("write_outside_workspace", "medium", "/opt/agent-home/.bashrc")]
    assert alerts(None) == [
        ("write_outside_workspace", "medium", "/opt/agent-home/.bashrc"),
        ("write_outside_workspace", "medium", "/opt/agent-home/.cache/pip/x")]
