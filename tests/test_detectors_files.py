"""File and process detectors (detectors/catalog/files.py, procs.py) over recorded events.

Fixtures: tests/fixtures/detectors/<detector_id>/positive.jsonl and negative.jsonl, events
in the exact shape of docs/events.md, each starting with a session start event whose `cwd`
is the workspace (/home/agent/proj, home /home/agent). `benign/negative.jsonl` is an agent
doing ordinary work (git, venv, pip, pytest) under a bubblewrap setup phase.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from collector.events import EVENT_TYPES, AlertEvent, Event, SessionEvent
from detectors.config import Config, defaults, parse
from service.replay import Analyzer, read_events

FIXTURES = Path(__file__).parent / "fixtures" / "detectors"
MINE = ("credential_read", "canary_touch", "protected_read", "write_outside_workspace",
        "persistence_write", "host_proc_access", "environ_snoop", "fileless_exec", "fork_bomb")
HOME = "/home/agent"
WS = "/home/agent/proj"


def load(path: Path) -> list[Event]:
    return list(read_events(path))


def replay(events: list[Event], config: Config, flush: bool = True) -> list[AlertEvent]:
    """The engine over recorded events, as `agentwatch replay` runs it."""
    analyzer = Analyzer(config)
    out: list[AlertEvent] = []
    for ev in events:
        out.extend(analyzer.feed(ev))
    if flush:
        out.extend(analyzer.finish())
    return out


def config_for(did: str | None, params: dict[str, Any] | None = None,
               extra: dict[str, Any] | None = None) -> Config:
    """Only `did` enabled (all of mine for None), with parameter overrides."""
    table: dict[str, Any] = {}
    for other in defaults().detectors:
        if other != did and not (did is None and other in MINE):
            table[other] = {"enabled": False}
    if did is not None:
        table[did] = {**(params or {}), **(extra or {})}
    return parse({"detectors": table}, "<test>")


def run_fixture(did: str, name: str, params: dict[str, Any] | None = None,
                extra: dict[str, Any] | None = None) -> list[AlertEvent]:
    alerts = replay(load(FIXTURES / did / f"{name}.jsonl"), config_for(did, params, extra))
    assert all(a.detector == did for a in alerts), [a.summary for a in alerts]
    return alerts


def brief(alerts: list[AlertEvent]) -> list[tuple[str, str, str]]:
    return [(a.severity, a.action["requested"], a.key) for a in alerts]


DECOYS = {"paths": [f"{HOME}/.aws/credentials.bak", "/srv/decoy/**"]}
SMALL_FORKS = {"max_forks": 50, "max_live": 40}

# detector -> (params for the fixtures, [(severity, requested action, key)] in order)
EXPECTED: dict[str, tuple[dict[str, Any], list[tuple[str, str, str]]]] = {
    "credential_read": ({"connect_allow": []}, [
        ("high", "alert", f"{HOME}/.ssh/id_rsa"),
        ("high", "alert", "/etc/shadow"),
        ("low", "alert", f"{HOME}/.aws/credentials"),
        ("critical", "kill", f"then_connect:{HOME}/.ssh/id_rsa"),
    ]),
    "canary_touch": (DECOYS, [
        ("critical", "kill", f"{HOME}/.aws/credentials.bak"),
        ("critical", "kill", "/srv/decoy/notes.txt"),
        ("critical", "kill", "/srv/decoy"),
    ]),
    "protected_read": ({}, [
        ("high", "alert", "/data/eval/answer_key.json"),
        ("high", "alert", f"{HOME}/other-repo/.git/objects/ab/cdef0123456789"),
        ("high", "alert", "/srv/hidden_tests/test_solution.py"),
    ]),
    "write_outside_workspace": ({}, [
        ("medium", "alert", "/etc/hosts"),
        ("medium", "alert", f"{HOME}/notes/todo.md"),
        ("medium", "alert", "/opt/build.log"),
        ("medium", "alert", "/usr/local/evil"),
    ]),
    "persistence_write": ({}, [
        ("critical", "kill", f"{HOME}/.bashrc"),
        ("critical", "kill", "/etc/cron.d/backdoor"),
        ("critical", "kill", f"{WS}/.git/hooks/pre-commit"),
        ("critical", "kill", f"{HOME}/.config/systemd/user/evil.service"),
        ("critical", "kill", "/etc/ld.so.preload"),
        ("critical", "kill", f"{HOME}/.ssh/authorized_keys"),
    ]),
    "host_proc_access": ({}, [
        ("high", "kill", "1/root"),
        ("high", "kill", "777/cwd"),
        ("high", "kill", "888/fd"),
    ]),
    "environ_snoop": ({}, [
        ("medium", "alert", "999"),
        ("medium", "alert", "1"),
    ]),
    "fileless_exec": ({}, [
        ("high", "kill", "/memfd:x (deleted)"),
        ("high", "kill", "/dev/shm/payload"),
        ("high", "kill", f"{HOME}/.local/bin/helper"),
        ("high", "kill", "/proc/self/fd/3"),      # ld.so /proc/self/fd/3
        ("high", "kill", "/dev/fd/4"),            # ld.so --library-path X --argv0 Y /dev/fd/4
        ("high", "kill", "/dev/shm/evil.so"),     # ld.so --preload /dev/shm/evil.so
    ]),
    "compat_syscall": ({}, [
        ("high", "kill", "compat:openat"),
        ("high", "kill", "compat:socket"),
        ("high", "kill", "compat:ia32:ipc"),
    ]),
    "forbidden_syscall": ({}, [
        ("critical", "kill", "open_by_handle_at"),
        ("critical", "kill", "name_to_handle_at"),
        ("critical", "kill", "io_uring_setup"),
        ("critical", "kill", "iopl"),
    ]),
    "fork_bomb": (SMALL_FORKS, [
        ("high", "kill", "live"),
        ("high", "kill", "rate"),
    ]),
}


@pytest.mark.parametrize("did", sorted(EXPECTED))
def test_positive(did: str) -> None:
    params, expected = EXPECTED[did]
    alerts = run_fixture(did, "positive", params)
    assert brief(alerts) == expected, [a.summary for a in alerts]
    for a in alerts:
        assert a.title and a.mitre and "\n" not in a.summary
        assert a.fields["comm"]
        # monitor mode (the default): a kill is reported as what would have been done
        if a.action["requested"] == "kill":
            assert a.action["taken"] == "none"


@pytest.mark.parametrize("did", sorted(EXPECTED))
def test_negative(did: str) -> None:
    # the fork_bomb negative (200 short processes, threads) runs on the real defaults
    params = {} if did == "fork_bomb" else EXPECTED[did][0]
    alerts = run_fixture(did, "negative", params)
    assert alerts == [], [a.summary for a in alerts]


def test_fields_say_what_happened() -> None:
    params, _ = EXPECTED["credential_read"]
    alerts = {a.key: a for a in run_fixture("credential_read", "positive", params)}
    shadow = alerts["/etc/shadow"]
    assert shadow.fields["attempt_only"] is True
    assert shadow.fields["result"] == "failed EACCES"
    assert "read credential file /etc/shadow (failed EACCES)" in shadow.summary
    seq = alerts[f"then_connect:{HOME}/.ssh/id_rsa"]
    assert seq.fields["address"] == "127.0.0.1" and seq.fields["port"] == 8080
    assert alerts[f"{HOME}/.ssh/id_rsa"].fields["attempt_only"] is False
    fileless = run_fixture("fileless_exec", "positive")
    assert [a.fields["how"] for a in fileless] == [
        "memfd exec", "exec from /dev/shm",
        "exec of a file the session wrote outside the workspace",
        "the dynamic loader run on an fd path (/proc/self/fd/3)",
        "the dynamic loader run on an fd path (/dev/fd/4)",
        "the dynamic loader run on /dev/shm/evil.so"]


def test_benign_agent_raises_nothing_medium_or_above() -> None:
    alerts = replay(load(FIXTURES / "benign" / "negative.jsonl"), config_for(None))
    loud = [a.summary for a in alerts
            if a.detector in MINE and a.severity not in ("info", "low")]
    assert loud == []
    # the probes of missing ~/.netrc and ~/.git-credentials are recorded, quietly
    assert {a.key for a in alerts} <= {f"{HOME}/.netrc", f"{HOME}/.git-credentials"}


# ------------------------------------------------------------------ param changes
def test_param_changes_outcome() -> None:
    # loopback allowed (the default): the read-then-connect sequence does not fire
    alerts = run_fixture("credential_read", "positive")
    assert "critical" not in {a.severity for a in alerts} and len(alerts) == 3
    # no decoys by default: nothing is a canary
    assert run_fixture("canary_touch", "positive") == []
    # the default fork thresholds are far above 60 forks
    assert run_fixture("fork_bomb", "positive") == []
    # a short connect window: the connect came 3 ms after the read
    alerts = run_fixture("credential_read", "positive",
                         {"connect_allow": [], "connect_window": 0.001})
    assert "critical" not in {a.severity for a in alerts}
    # the missing-file severity is a knob too
    alerts = run_fixture("credential_read", "positive", {"missing_severity": "medium"})
    assert [a.severity for a in alerts if a.key.endswith("/.aws/credentials")] == ["medium"]


def _writes(n: int, same_path: bool = False) -> list[Event]:
    events = load(FIXTURES / "write_outside_workspace" / "positive.jsonl")[:4]  # no writes
    proto = next(e for e in load(FIXTURES / "write_outside_workspace" / "positive.jsonl")
                 if e.kind == "open")
    ts = events[-1].ts
    for i in range(n):
        obj = orjson.loads(proto.to_json())
        obj["ts"] = ts + (i + 1) * 10_000_000  # 10 ms apart
        obj["path"] = obj["raw_path"] = "/etc/hosts" if same_path else f"/etc/x{i}.conf"
        events.append(EVENT_TYPES["open"](**obj))
    return events


def test_write_rate_escalates_to_kill() -> None:
    alerts = replay(_writes(25), config_for("write_outside_workspace"))
    actions = [a.action["requested"] for a in alerts if not a.folded]
    assert actions == ["alert"] * 20 + ["kill"]
    kill = next(a for a in alerts if a.key == "rate")
    assert kill.fields["writes_in_window"] == 21
    folded = [a for a in alerts if a.folded]
    assert [(f.key, f.count) for f in folded] == [("rate", 4)]
    # kill_rate = 0 turns escalation off
    alerts = replay(_writes(25), config_for("write_outside_workspace", {"kill_rate": 0}))
    assert {a.action["requested"] for a in alerts} == {"alert"} and len(alerts) == 25


# ------------------------------------------------------------------ folding
def _repeats(n: int) -> list[Event]:
    events = load(FIXTURES / "credential_read" / "positive.jsonl")[:5]  # up to the first read
    read = events[-1]
    assert read.kind == "open"
    for i in range(1, n):
        obj = orjson.loads(read.to_json())
        obj["ts"] = read.ts + i * 100_000_000  # 0.1 s apart: 4.9 s, inside the window
        events.append(EVENT_TYPES["open"](**obj))
    return events


def test_repeats_fold() -> None:
    events = _repeats(50)
    alerts = replay(events, config_for("credential_read"), flush=False)
    assert len(alerts) == 1 and not alerts[0].folded
    engine_alerts = replay(events, config_for("credential_read"))
    assert len(engine_alerts) == 2
    first, folded = engine_alerts
    assert folded.folded and folded.count == 49 and folded.key == first.key
    assert "repeated 49 more times" in folded.summary


# ------------------------------------------------------------------ exceptions
def test_exceptions_suppress() -> None:
    params, expected = EXPECTED["credential_read"]
    exc = {"exceptions": [{"path": "~/.ssh/id_*"}]}
    alerts = run_fixture("credential_read", "positive", params, exc)
    assert [a.key for a in alerts] == [k for _, _, k in expected if not k.endswith("id_rsa")]
    exc = {"exceptions": [{"exe": "/usr/bin/python3*"}]}
    assert run_fixture("credential_read", "positive", params, exc) == []
    exc = {"exceptions": [{"path": "/etc/cron.d/*"}, {"argv": "python3 task.py",
                                                      "path": "~/.bashrc"}]}
    alerts = run_fixture("persistence_write", "positive", {}, exc)
    assert len(alerts) == 4
    assert not {"/etc/cron.d/backdoor", f"{HOME}/.bashrc"} & {a.key for a in alerts}


# ------------------------------------------------------------------ unit checks
def test_own_repo_history_is_not_protected() -> None:
    """A workspace inside a repository: that repository's .git is the agent's own."""
    events = load(FIXTURES / "protected_read" / "negative.jsonl")
    start = events[0]
    assert isinstance(start, SessionEvent)
    start.cwd = f"{WS}/sub"
    assert replay(events, config_for("protected_read")) == []


def test_setup_phase_is_ignored_but_nested_launcher_is_not() -> None:
    events = load(FIXTURES / "persistence_write" / "positive.jsonl")
    for ev in events[3:]:
        ev.setup = True
    assert replay(events, config_for("persistence_write")) == []
    for ev in events[3:]:
        ev.nested_launcher = True
    assert len(replay(events, config_for("persistence_write"))) == 6


def test_specs_are_complete() -> None:
    from detectors.base import ACTIONS, REGISTRY, SEVERITIES
    for did in MINE:
        spec = REGISTRY[did].spec
        assert spec.id == did and all(w[0].isupper() for w in spec.title.split())
        assert spec.severity in SEVERITIES and spec.action in ACTIONS and spec.mitre
        assert spec.output and spec.params and spec.description
    assert REGISTRY["canary_touch"].spec.params["paths"] == []


def _like(ev: Event, **changes: Any) -> Event:
    """A copy of a fixture event with some fields changed (the JSON shape kept)."""
    obj = orjson.loads(ev.to_json())
    obj.update(changes)
    return EVENT_TYPES[obj["kind"]](**obj)


def test_a_repo_the_session_cloned_is_its_own() -> None:
    events = load(FIXTURES / "protected_read" / "positive.jsonl")
    start, read = events[:4], events[5]
    assert read.kind == "open" and "/.git/objects/" in read.path  # type: ignore[attr-defined]
    clone = "/tmp/pip-req-build-x1"
    wrote = _like(read, ts=read.ts - 1000, path=f"{clone}/.git/HEAD",
                  raw_path=f"{clone}/.git/HEAD", flags=0o1101,
                  flag_names=["O_WRONLY", "O_CREAT", "O_TRUNC"])
    reread = _like(read, path=f"{clone}/.git/objects/ab/cd", raw_path=f"{clone}/.git/objects/ab/cd")
    assert replay([*start, wrote, reread], config_for("protected_read")) == []
    assert len(replay([*start, reread], config_for("protected_read"))) == 1


def test_fexecve_through_proc_self_and_dns_sends() -> None:
    events = load(FIXTURES / "fileless_exec" / "positive.jsonl")
    start, ex = events[:4], events[5]
    assert ex.kind == "exec"
    fexecve = _like(ex, filename="/proc/self/fd/7", exe="/usr/bin/true")
    alerts = replay([*start, fexecve], config_for("fileless_exec"))
    assert [a.fields["how"] for a in alerts] == ["fd exec (fexecve)"]
    # a DNS query after a credential read does not count as the connect of the sequence
    cred = load(FIXTURES / "credential_read" / "positive.jsonl")[:5]
    unlink = load(FIXTURES / "write_outside_workspace" / "positive.jsonl")[5]
    assert unlink.kind == "syscall"
    dns = _like(unlink, ts=cred[-1].ts + 1000, syscall="sendto", ret=40,
                args={"fd": 4, "len": 40, "flags": [], "addrlen": 16}, path=None,
                family="AF_INET", address="10.0.2.3", port=53, dns_query="example.com")
    assert [a.key for a in replay([*cred, dns], config_for("credential_read"))] == \
        [f"{HOME}/.ssh/id_rsa"]
    sent = _like(dns, port=443, dns_query=None)
    assert [a.severity for a in replay([*cred, sent], config_for("credential_read"))] == \
        ["high", "critical"]


def test_a_new_name_for_a_credential_counts_as_a_read() -> None:
    cred = load(FIXTURES / "credential_read" / "positive.jsonl")
    unlink = load(FIXTURES / "write_outside_workspace" / "positive.jsonl")[5]
    link = _like(unlink, ts=cred[4].ts, syscall="link",
                 args={"oldpath": f"{HOME}/.ssh/id_rsa", "newpath": "/tmp/k"},
                 path=f"{HOME}/.ssh/id_rsa", path2="/tmp/k")
    events = [*cred[:4], link, cred[-1]]  # then the loopback connect
    alerts = replay(events, config_for("credential_read", {"connect_allow": []}))
    assert [(a.key, a.fields["syscall"]) for a in alerts] == [
        (f"{HOME}/.ssh/id_rsa", "link"), (f"then_connect:{HOME}/.ssh/id_rsa", "connect")]
    assert alerts[0].fields["new_name"] == "/tmp/k"


def test_an_old_write_is_not_a_dropped_binary() -> None:
    events = load(FIXTURES / "fileless_exec" / "positive.jsonl")
    later = [_like(e, ts=e.ts + 700 * 10**9) if e.kind == "exec" and e.pid == 4005 else e
             for e in events]
    keys = [a.key for a in replay(later, config_for("fileless_exec"))]
    assert keys == ["/memfd:x (deleted)", "/dev/shm/payload", "/proc/self/fd/3", "/dev/fd/4",
                    "/dev/shm/evil.so"]
    keys = [a.key for a in replay(later, config_for("fileless_exec",
                                                    {"written_window": 800.0}))]
    assert keys[2] == f"{HOME}/.local/bin/helper"


def test_no_fixture_breaks_these_detectors() -> None:
    """Every recorded fixture (other families' too) through the whole default catalogue:
    none of these detectors raises (a raising detector is disabled with an alert)."""
    for path in sorted(FIXTURES.glob("*/*.jsonl")):
        alerts = replay(load(path), defaults())
        broken = [a.summary for a in alerts if a.detector in MINE
                  and a.action.get("result") == "detector disabled"]
        assert broken == [], path
