"""What `~` stands for: the host's home directories and a session's own HOME.

The detectors' `~/` globs match /root and /home/NAME always; these add the passwd homes
(service accounts under /var/lib, CI users, /opt/...) read once at start and at each
reload, and the HOME of each session's root, read once at the session's start:

- `agentwatch run`: the HOME agentwatch passes to CMD (its own environment);
- a launcher the daemon adopts, or a tree `attach` adopts: /proc/<root>/environ (the
  environment the root was exec'd with; bounded, non-UTF-8 safe, best effort: a root
  already gone gives none), and a bubblewrap `--setenv HOME DIR` in its argv (the HOME
  the sandboxed command gets).

Not seen: a HOME changed inside the session (`export HOME=/x; cmd`, `env HOME=/x cmd`):
the exec events do not carry the environment (docs/events.md, "Sessions").
"""

from __future__ import annotations

import os
import pwd
from collections.abc import Iterable

from collector.events import text

ENVIRON_MAX = 256 << 10   # bytes of /proc/<pid>/environ read at most
HOMES_MAX = 4096          # passwd entries and /home/* directories taken at most


def host_homes() -> list[str]:
    """/root, each existing /home/NAME and each passwd home that is an existing directory
    other than `/` (bounded)."""
    out: list[str] = []

    def add(h: str) -> None:
        h = h.rstrip("/")
        if h and h not in out and len(out) < HOMES_MAX and os.path.isdir(h):
            out.append(h)

    add("/root")
    try:
        with os.scandir("/home") as it:
            for i, e in enumerate(it):
                if i >= HOMES_MAX:
                    break
                add(os.path.join("/home", e.name))
    except OSError:
        pass
    try:
        entries = pwd.getpwall()
    except (OSError, KeyError):
        entries = []
    for entry in entries[:HOMES_MAX]:
        if entry.pw_dir and entry.pw_dir != "/":
            add(entry.pw_dir)
    return out


def environ_value(pid: int, name: bytes, limit: int = ENVIRON_MAX) -> str | None:
    """One variable of a live process's initial environment, or None (gone, unreadable,
    absent). Invalid UTF-8 becomes \\xNN escapes, as in every event."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            raw = f.read(limit)
    except OSError:
        return None
    value = None
    for entry in raw.split(b"\0"):
        if entry.startswith(name + b"="):
            value = entry[len(name) + 1:]  # the last one wins, as getenv's callers see
    return text(value) if value is not None else None


def setenv_home(argv: Iterable[str]) -> str | None:
    """The HOME a bubblewrap command line gives its sandbox (`--setenv HOME DIR`)."""
    args = list(argv)
    home = None
    for i, a in enumerate(args[:-2]):
        if a == "--":
            break
        if a == "--setenv" and args[i + 1] == "HOME":
            home = args[i + 2]
    return home


def session_homes(home: str | None, argv: Iterable[str] = ()) -> list[str] | None:
    """A session's homes: its root's HOME, the HOME a launcher's argv sets, each also
    resolved when it is a symlink (opens report resolved paths, other calls the string)."""
    out: list[str] = []
    for h in (home, setenv_home(argv)):
        if not h or not h.startswith("/"):
            continue
        for v in (os.path.normpath(h), os.path.realpath(h)):
            if v != "/" and v not in out:
                out.append(v)
    return out or None
