"""The open router (detectors/openroute.py): which detectors an open goes to.

The router may only leave a detector out of an open on which its check() would neither
find anything nor change its state: every detector fixture (and variants of its opens
with other flags and file types) must give exactly the same alerts with the router as
with every open given to every detector that reads opens.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from collector.events import AlertEvent, Event, OpenEvent, SessionEvent
from detectors.base import REGISTRY
from detectors.config import defaults
from detectors.engine import Engine
from detectors.openroute import OpenInterest, OpenRouter, _Prefilter, traits
from service.replay import Analyzer, read_events
from tests.detector_fixtures import FIXTURES

S = "00000000000000aa"
FILES = sorted(FIXTURES.rglob("*.jsonl"))


def _open(path: str, flags: int = 0, ftype: str | None = "file", raw: str | None = None,
          **kw: Any) -> OpenEvent:
    kw.setdefault("pid", 10)
    return OpenEvent(ts=1, session=S, tid=10, ret=3, syscall="openat", path=path,
                     raw_path=raw if raw is not None else path, flags=flags,
                     file_type=ftype, resolved=True, **kw)


def _routed(ev: Event, homes: tuple[str, ...] = ()) -> set[str]:
    engine = Engine(defaults())
    engine.process(SessionEvent(ts=0, session=S, pid=10, phase="start", root_pid=10,
                                cwd="/work/ws"))
    ctxs = engine._contexts[S]
    assert isinstance(ev, OpenEvent)
    router = engine.open_router()
    return {engine.detectors[i][0].spec.id for i in router.route(ev, ctxs, homes)}


# ------------------------------------------------------------------ unit: positive
def test_a_search_read_goes_to_no_detector() -> None:
    # pid 10 (the session's start) has its uid recorded: nothing here for anyone
    assert _routed(_open("/usr/lib/python3/dist-packages/x.py", 0o2000000)) == set()


def test_a_new_uid_goes_to_the_uid_keeper() -> None:
    # privilege_escalation records each process's uid and gid: a pid it has not seen, or
    # a changed uid, is news to it (and only to it)
    assert _routed(_open("/usr/lib/x.py", pid=11)) == {"privilege_escalation"}
    assert _routed(_open("/usr/lib/x.py", uid=1000)) == {"privilege_escalation"}


def test_write_intent_goes_to_the_writers() -> None:
    got = _routed(_open("/usr/lib/x", 0o1 | 0o100 | 0o1000))
    assert {"write_outside_workspace", "persistence_write", "fileless_exec",
            "kernel_tamper", "credential_read", "protected_read",
            "privilege_escalation"} <= got


def test_write_named_only_in_flag_names_still_goes_to_the_writers() -> None:
    ev = _open("/usr/lib/x", 0)
    ev.flag_names = ["O_WRONLY"]  # a recorded event whose names disagree with its bits
    assert "kernel_tamper" in _routed(ev)


@pytest.mark.parametrize(("path", "detector"), [
    ("/root/.ssh/id_rsa", "credential_read"),
    ("/home/u/.aws/credentials", "credential_read"),
    ("/work/ws/.env", "credential_read"),
    ("/etc/shadow", "credential_read"),
    ("/srv/repo/.git/config", "protected_read"),
    ("/tmp/answers.json", "protected_read"),
    ("/proc/1/ns/net", "namespace_escape"),
    ("/proc/55/environ", "environ_snoop"),
    ("/proc/55/mem", "process_injection"),
    ("/var/run/docker.sock", "runtime_socket"),
    ("/etc/agentwatch/config.toml", "monitor_tamper"),
])
def test_a_glob_or_proc_path_goes_to_its_detector(path: str, detector: str) -> None:
    assert detector in _routed(_open(path))


def test_the_callers_string_counts_too() -> None:
    # the kernel resolved a symlink elsewhere: the string the caller passed is judged too
    assert "credential_read" in _routed(_open("/tmp/x", raw="/root/.ssh/id_ed25519"))


def test_a_session_home_is_a_home() -> None:
    assert "credential_read" in _routed(_open("/srv/agent/.netrc"), homes=("/srv/agent",))


def test_directories_fifos_and_compat_calls() -> None:
    assert {"host_proc_access", "monitor_tamper"} <= _routed(_open("/usr/lib", 0, "dir"))
    assert "reverse_shell" in _routed(_open("/tmp/f", 0, "fifo"))
    assert "compat_syscall" in _routed(_open("/usr/lib/x", 0, compat=True))


def test_a_procfs_file_named_elsewhere_goes_to_the_proc_detectors() -> None:
    got = _routed(_open("/mnt/p/1/environ", proc_pid=1, proc_tgid=1))
    assert {"environ_snoop", "host_proc_access", "process_injection"} <= got


# ------------------------------------------------------------------ unit: negative
def test_a_read_goes_to_no_writer_and_no_glob_detector() -> None:
    got = _routed(_open("/usr/share/doc/x/README", 0))
    assert not got & {"write_outside_workspace", "persistence_write", "fileless_exec",
                      "kernel_tamper", "credential_read", "protected_read", "runtime_socket",
                      "namespace_escape", "environ_snoop", "reverse_shell", "canary_touch"}


def test_env_like_names_are_only_candidates_when_the_name_matches() -> None:
    assert "credential_read" not in _routed(_open("/usr/lib/x/.envrc.d/a", 0))
    assert "credential_read" not in _routed(_open("/usr/lib/x/env", 0))


def test_a_detector_that_declares_nothing_gets_every_open() -> None:
    router = OpenRouter([None, OpenInterest(writes=True)], [True, True])
    assert router.route(_open("/usr/lib/x"), [], ()) == (0,)
    assert router.route(_open("/usr/lib/x", 0o1), [], ()) == (0, 1)
    assert router.route(_open("/usr/lib/x", 0o1), [], ()) == (0, 1)


def test_a_detector_that_reads_no_opens_gets_none() -> None:
    router = OpenRouter([None], [False])
    assert router.route(_open("/x", 0o1, "fifo", compat=True), [], ()) == ()


def test_a_broken_declaration_gets_every_open_and_its_check_decides() -> None:
    from detectors.base import Context, Detector, DetectorSpec, Finding
    from detectors.config import Config, DetectorConfig

    class Odd(Detector):
        spec = DetectorSpec(id="odd", title="Odd", description="", severity="low",
                            action="alert", mitre=(), output="odd", kinds=frozenset({"open"}))

        def open_interest(self, params: dict[str, Any]) -> OpenInterest:
            raise KeyError("no such param")

        def check(self, ctx: Context, ev: Event) -> Iterator[Finding]:
            yield Finding(key="k", fields={})

    engine = Engine(Config())
    engine.detectors = [(Odd(), DetectorConfig(True, "alert", "low", {}, []))]
    assert [a.detector for a in engine.process(_open("/usr/lib/x"))] == ["odd"]


def test_a_state_test_that_raises_routes_the_open() -> None:
    def boom(ctx: Any, ev: Any) -> bool:
        raise RuntimeError("state")

    router = OpenRouter([OpenInterest(when=boom)], [True])
    assert router.route(_open("/usr/lib/x"), [None], ()) == (0,)  # type: ignore[list-item]


def test_long_and_non_utf8_paths() -> None:
    long = "/usr/lib/" + "a/" * 2040 + "x"  # past PATH_MAX's 4096 bytes
    assert _routed(_open(long)) == set()
    assert "credential_read" in _routed(_open("/root/.ssh/id_" + "\\xff" * 1000))
    assert "credential_read" in _routed(_open("/srv/x\n/.env"))  # a newline in a name
    assert _routed(_open("")) == set()  # an empty string (a fault) reaches no glob


def test_traits() -> None:
    assert traits(_open("/usr/lib/x")) == 0
    assert traits(_open("/usr/lib", 0, "dir")) == 2
    assert traits(_open("/proc/1/stat")) == 4


@pytest.mark.parametrize("glob", [
    "~/.ssh/id_*", "/etc/shadow", "**/.env", "**/.env.*", "**/hidden_tests/**", "**/.git/**",
    "@/tmp/dbus-*", "/run/user/*/bus", "*.sock", "**", "rel/x", "**/a*b/**", "/x/{home}/y",
])
def test_the_prefilter_never_misses_a_match(glob: str) -> None:
    from detectors.base import path_matches

    pf = _Prefilter((glob,), ("/srv/h",))
    paths = ["/root/.ssh/id_rsa", "/srv/h/.ssh/id_x", "/etc/shadow", "/a/.env", ".env",
             "/a/.env.local", "/x/hidden_tests/t.py", "hidden_tests/a", "/r/.git/HEAD",
             "@/tmp/dbus-abc", "/run/user/1000/bus", "x.sock", "/a/b", "rel/x",
             "/q/a1b/z", "/x/root/y", "/x/home/u/y", "/a\n/.env", "/usr/lib/x"]
    for p in paths:
        if path_matches(p, [glob], ("/srv/h",)):
            assert pf.may_match(p), (glob, p)


# ------------------------------------------------------------------ same alerts
def _variants(events: list[Event]) -> Iterator[Event]:
    """Each event, and for each open three more: read-only, write-intent, a directory
    read, and the same as a fifo (other pids' views of the same path)."""
    for ev in events:
        yield ev
        if isinstance(ev, OpenEvent):
            for flags, ftype in ((0, "file"), (0o1 | 0o100 | 0o1000, "file"),
                                 (0o200000, "dir"), (0, "fifo")):
                yield dataclasses.replace(ev, flags=flags, file_type=ftype,
                                          flag_names=[], ts=ev.ts + 1)


def _alerts(events: list[Event]) -> list[tuple[Any, ...]]:
    analyzer = Analyzer(defaults())
    out: list[AlertEvent] = []
    for ev in events:
        out.extend(analyzer.feed(ev))
    out.extend(analyzer.finish())
    return [(a.detector, a.severity, a.key, a.summary, a.count, a.folded, a.pid, a.ts)
            for a in out]


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(Path(p).relative_to(FIXTURES)))
def test_the_router_changes_no_alert(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    events = list(_variants(list(read_events(path))))
    routed = _alerts(events)
    for cls in REGISTRY.values():
        monkeypatch.setattr(cls, "open_interest", lambda self, params: None)
    assert _alerts(events) == routed
