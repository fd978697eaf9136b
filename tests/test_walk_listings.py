"""A tree walk (find /, du, rg) lists directories holding secrets and other repositories'
.git without reading them: credential_read and protected_read judge content, not
listings. Built events through the engine, as `agentwatch replay` runs them; a read of a
file in the same places still alerts (the negatives' positive twins)."""

from __future__ import annotations

import itertools
from typing import Any

from collector.events import EVENT_TYPES, AlertEvent, Event
from detectors.config import parse
from service.replay import Analyzer

S = "0a1b2c3d4e5f6072"
WS = "/home/agent/proj"
O_DIRECTORY = 0o200000
_ts = itertools.count(1795956700000000000, 1_000_000)


def _events(path: str, ftype: str | None, flags: int, exe: str = "/usr/bin/find",
            ret: int = 3) -> list[Event]:
    hdr: dict[str, Any] = dict(session=S, pid=5000, tid=5000, ppid=4999, uid=0, gid=0)
    return [
        EVENT_TYPES["session"](ts=next(_ts), **{**hdr, "tid": 0}, phase="start",
                               session_kind="run", root_pid=5000, argv=["bash"], cwd=WS),
        EVENT_TYPES["exec"](ts=next(_ts), **hdr, comm=exe.rsplit("/", 1)[-1], ret=0,
                            filename=exe, argv=[exe, "/", "-name", "x"], exe=exe, cwd=WS),
        EVENT_TYPES["open"](ts=next(_ts), **hdr, comm=exe.rsplit("/", 1)[-1], ret=ret,
                            error=None if ret >= 0 else "ENOENT", syscall="openat",
                            path=path, raw_path=path.rsplit("/", 1)[-1], dfd=4, flags=flags,
                            resolved=ret >= 0, file_type=ftype if ret >= 0 else None),
    ]


def alerts(events: list[Event]) -> list[AlertEvent]:
    a = Analyzer(parse({"mode": "enforce"}, "<test>"))
    out: list[AlertEvent] = []
    for ev in events:
        out.extend(a.feed(ev))
    return [x for x in out + a.finish() if x.detector in ("credential_read", "protected_read")]


LISTINGS = [
    "/root/.config/gcloud/configurations",
    "/root/.gnupg/private-keys-v1.d",
    "/etc/sudoers.d",
    "/run/secrets/db",
    "/srv/other-repo/.git/objects/pack",
    "/srv/other-repo/.git/refs",
]


def test_directory_listings_of_secret_and_git_dirs_are_not_reads() -> None:
    for path in LISTINGS:
        # the kernel resolved a directory (a successful open) ...
        assert alerts(_events(path, "dir", O_DIRECTORY)) == [], path
        # ... or the open failed and only O_DIRECTORY says what was asked for
        assert alerts(_events(path, None, O_DIRECTORY, ret=-2)) == [], path


def test_reading_a_file_in_the_same_places_still_alerts() -> None:
    for path, det in [("/root/.config/gcloud/credentials.db", "credential_read"),
                      ("/etc/sudoers.d/90-agent", "credential_read"),
                      ("/srv/other-repo/.git/HEAD", "protected_read"),
                      ("/srv/other-repo/.git/objects/pack/pack-1.pack", "protected_read")]:
        got = alerts(_events(path, "file", 0, exe="/usr/bin/cat"))
        assert [(a.detector, a.severity) for a in got] == [(det, "high")], path


def test_a_directory_of_a_protected_answer_key_tree_is_still_judged() -> None:
    # `paths` (answer keys, hidden tests) name protected trees wherever they are: listing
    # hidden_tests reveals what the hidden tests are, so that listing stays an alert
    got = alerts(_events("/srv/eval/hidden_tests/unit", "dir", O_DIRECTORY))
    assert [(a.detector, a.severity) for a in got] == [("protected_read", "high")]
