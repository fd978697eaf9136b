"""Path helpers of the file detectors (files.py) and the process detectors (procs.py):
which paths an event writes or touches, globs over whole trees, the session's workspace,
an alert's common fields. Pure functions: no I/O."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from collector.events import ConnectEvent, Event, ExecEvent, OpenEvent, SessionEvent, SyscallEvent
from detectors.base import Context
from detectors.catalog.common import result_of, write_intent

# Syscalls that change the file system at their path argument(s) (`path`, `path2`).
# fd-only ones (fchmod, fchown, ftruncate, fsetxattr) carry no path and are not here.
WRITE_SYSCALLS = frozenset({
    "creat", "unlink", "unlinkat", "rename", "renameat", "renameat2", "mkdir", "mkdirat",
    "rmdir", "chmod", "fchmodat", "fchmodat2", "chown", "lchown", "fchownat", "link",
    "linkat", "symlink", "symlinkat", "truncate", "setxattr", "lsetxattr", "setxattrat",
})


# A new name for an existing file: link's and rename's first path, symlink's target.
COPY_SYSCALLS = frozenset({"link", "linkat", "rename", "renameat", "renameat2", "symlink",
                           "symlinkat"})

# ---------------------------------------------------------------------------- helpers
def written_paths(ev: Event) -> list[str]:
    """The paths an event writes to (create, truncate, append, remove, rename, chmod...)."""
    if isinstance(ev, OpenEvent):
        return [ev.path] if write_intent(ev) and ev.path else []
    if isinstance(ev, SyscallEvent) and ev.syscall in WRITE_SYSCALLS:
        if ev.error == "EEXIST" and ev.syscall in ("mkdir", "mkdirat"):
            return []  # changed nothing: what `mkdir -p` does to every existing parent
        if ev.syscall in ("link", "linkat"):
            # a hard link adds a name at path2 and leaves its source as it was (a local
            # `git clone` hard-links another repository's objects: no write to it)
            return [ev.path2] if ev.path2 else []
        return [p for p in (ev.path, ev.path2) if p]
    return []


def touched_paths(ev: Event) -> list[str]:
    """Every path an event names (any access)."""
    out: list[str] = []
    if isinstance(ev, OpenEvent):
        out = [ev.path, ev.raw_path]
    elif isinstance(ev, SyscallEvent):
        out = [p for p in (ev.path, ev.path2) if p]
    elif isinstance(ev, ExecEvent):
        out = [ev.filename] + ([ev.exe] if ev.exe else [])
    elif isinstance(ev, ConnectEvent) and ev.family == "AF_UNIX" and ev.address:
        out = [ev.address]
    seen: list[str] = []
    for p in out:
        if p and p not in seen:
            seen.append(p)
    return seen


def tree_patterns(patterns: Iterable[str]) -> list[str]:
    """Globs where `dir/**` also matches `dir` itself."""
    out: list[str] = []
    for p in patterns:
        out.append(p)
        if p.endswith("/**") and len(p) > 3:
            out.append(p[:-3])
    return out


def workspace(ctx: Context, ev: Event) -> str | None:
    """The session's workspace: the session view's, else the session start event's cwd.
    A workspace of `/` would allow everything, so it counts as unknown."""
    if isinstance(ev, SessionEvent) and ev.phase == "start" and ev.cwd:
        ctx.state["workspace"] = ev.cwd
    ws = ctx.session.workspace if ctx.session and ctx.session.workspace else \
        ctx.state.get("workspace")
    if not ws or ws.rstrip("/") == "":
        return None
    return str(ws).rstrip("/")


def syscall_name(ev: Event) -> str:
    return getattr(ev, "syscall", None) or ev.kind


def base_fields(ev: Event, path: str) -> dict[str, Any]:
    fields: dict[str, Any] = {"path": path, "syscall": syscall_name(ev), "result": result_of(ev),
                              "comm": ev.comm}
    if isinstance(ev, OpenEvent):
        fields["flags"] = ",".join(ev.flag_names)
    return fields
