"""What a session owns, for the file detectors: the files whose content it wrote itself
and the workspace's own secrets (credential_read), and the processes that are git's
transport (protected_read). Pure functions of the detector's context and the event.
"""

from __future__ import annotations

from typing import Any

from collector.events import ExecEvent, ExitEvent, ForkEvent, OpenEvent, SyscallEvent
from detectors.base import Context, path_matches, text_matches, under
from detectors.catalog.common import O_CREAT, O_PATH, O_TRUNC


def severity_of(value: Any) -> str | None:
    return value if value in ("info", "low", "medium", "high", "critical") else None


# Calls that give a file the session created a new name or take it away.
CREATED_MOVES = frozenset({"creat", "unlink", "unlinkat", "rmdir"})
CREATED_MAX = 8192
O_EXCL = 0o200


def track_created(ctx: Context, ev: OpenEvent | SyscallEvent) -> None:
    """The files whose whole content this session wrote: opened with O_TRUNC, or created
    with O_CREAT|O_EXCL or creat() (what `>`, open(..., "w"), ssh-keygen and editors do;
    O_CREAT alone may have opened an existing file), and the new names a rename or hard
    link gives them. A rename or link of anything else over such a name, or an unlink,
    takes the name away (the content there is no longer the session's)."""
    created: dict[str, None] = ctx.state.setdefault("created", {})
    if ev.ret < 0:
        return
    if isinstance(ev, OpenEvent):
        if ev.path and not ev.flags & O_PATH and (
                ev.flags & O_TRUNC or ev.flags & (O_CREAT | O_EXCL) == O_CREAT | O_EXCL):
            created[ev.path] = None
    elif ev.syscall == "creat" and ev.path:
        created[ev.path] = None
    elif ev.syscall.startswith(("rename", "link")):
        own = ev.path in created
        if ev.syscall.startswith("rename") and own:
            created.pop(ev.path or "", None)
        if ev.path2:
            created.pop(ev.path2, None)
            if own:
                created[ev.path2] = None
    elif ev.syscall in ("unlink", "unlinkat", "rmdir", "symlink", "symlinkat") and ev.path:
        created.pop(ev.path, None)
    while len(created) > CREATED_MAX:
        del created[next(iter(created))]


def own_secret(ctx: Context, path: str, ws: str | None) -> str | None:
    """Why a credential-looking file is the session's own, or None.

    In the workspace: a file the session wrote whole (`track_created`: keys made with
    `ssh-keygen -f`), or one the workspace holds that only the anywhere globs (`**/...`:
    `.env`, `.env.*`) match; a file there that a home or system glob matches (a workspace
    that is itself a home: `~/.ssh/id_rsa`) and the session did not write is not.
    Outside the workspace: only a file the session wrote whole that only the anywhere
    globs match (a generated `.env`). Credentials it writes under a home (`~/.ssh/id_*`,
    `~/.aws/credentials`) stay credentials: what is there is what other tools will use."""
    created = path in ctx.state.get("created", ())
    inside = bool(ws) and under(path, [ws] if ws else [])
    if inside and created:
        return "created by the session"
    anchored = tuple(g for g in ctx.params["paths"] if not g.startswith("**/"))
    if (inside or created) and path_matches(path, anchored, ctx.homes) is None:
        return "created by the session" if created else "in the workspace"
    return None


# git's own executables (system paths: a copy elsewhere is not trusted as git)
GIT_EXES = ["/usr/bin/git", "/bin/git", "/usr/local/bin/git", "/usr/bin/git-*",
            "/usr/lib/git-core/*", "/usr/libexec/git-core/*", "/usr/local/libexec/git-core/*"]
# git commands that copy or compare a repository through git's transport (globs over the
# subcommand and its arguments, git's own options before it left out)
GIT_TRANSPORT = ["clone", "clone *", "fetch", "fetch *", "pull", "pull *", "push", "push *",
                 "ls-remote *", "remote update*", "remote show *", "remote prune *",
                 "upload-pack *", "upload-archive *", "receive-pack *", "fetch-pack *",
                 "send-pack *", "remote-* *"]
# git's options that come before the subcommand and take the next word as their value
GIT_OPT_ARGS = frozenset({"-C", "-c", "--git-dir", "--work-tree", "--namespace",
                           "--super-prefix", "--config-env", "--exec-path", "--list-cmds"})
GIT_TRACKED_MAX = 4096


def git_command(argv: list[str]) -> str | None:
    """`subcommand args...` of a git command line (`git -C d -c k=v fetch origin` ->
    `fetch origin`; `git-upload-pack /r` -> `upload-pack /r`), or None."""
    if not argv:
        return None
    name = argv[0].rsplit("/", 1)[-1]
    if name.startswith("git-"):
        return " ".join([name[4:], *argv[1:]])
    i = 1
    while i < len(argv):
        a = argv[i]
        if a in GIT_OPT_ARGS:
            i += 2
        elif a.startswith("-"):
            i += 1
        else:
            return " ".join(argv[i:])
    return None


def track_git(ctx: Context, ev: ExecEvent | ForkEvent | ExitEvent) -> None:
    """Which processes are git's transport (pid -> its command): a git exec whose command
    is one of `transport_commands`, and git programs those run (upload-pack runs
    pack-objects) until one execs anything that is not git.

    A parent's fork event may reach the engine after its child's exec (the parent returns
    from clone after the child ran): the exec takes its parent from its own `ppid`, and a
    late fork event never overrides what a child's exec decided."""
    procs: dict[int, str] = ctx.state.setdefault("git_transport", {})
    execd: dict[int, None] = ctx.state.setdefault("git_execd", {})
    p = ctx.params
    if isinstance(ev, ExecEvent):
        if ev.ret != 0:
            return
        execd[ev.pid] = None
        exe = ev.exe or ev.filename
        inherited = procs.pop(ev.pid, None) or procs.get(ev.ppid)
        if not path_matches(exe, p["git_exes"]):
            return
        cmd = git_command(ev.argv) or ""
        if any(text_matches(cmd, g) for g in p["transport_commands"]):
            procs[ev.pid] = cmd[:200]
        elif inherited:
            procs[ev.pid] = inherited
    elif isinstance(ev, ForkEvent):
        if ev.ret > 0 and not ev.thread and ev.child_pid not in execd:
            if ev.pid in procs:
                procs[ev.child_pid] = procs[ev.pid]
            else:
                procs.pop(ev.child_pid, None)
    elif ev.pid == ev.tid:
        procs.pop(ev.pid, None)
        execd.pop(ev.pid, None)
    for d in (procs, execd):
        while len(d) > GIT_TRACKED_MAX:
            del d[next(iter(d))]
