"""Detectors about files: credentials, decoys, protected data, writes outside the workspace,
persistence.

Shared rules (docs/events.md, "Paths"):
- `path` is absolute where the collector could derive it; a path that is still relative
  (unknown base) cannot be placed and is skipped by the "outside the workspace" checks,
  while globs starting with `**/` still match it.
- Events from a sandbox launcher's setup phase (`setup` true and not `nested_launcher`) are
  bubblewrap building the sandbox, not the agent: every detector here ignores them.
- A failed attempt (`ret` < 0: EACCES, EPERM, EROFS, ENOENT) is reported like a success,
  with `result` saying what happened: a denied attempt is often the signal.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any

from collector.events import (
    ConnectEvent,
    Event,
    ExecEvent,
    ExitEvent,
    ForkEvent,
    OpenEvent,
    SyscallEvent,
    UringEvent,
)
from detectors.base import (
    Context,
    Detector,
    DetectorSpec,
    Finding,
    KernelHalf,
    ReadInterest,
    path_matches,
    register,
    under,
)
from detectors.catalog.common import (
    after_setup,
    is_read_open,
    result_of,
)
from detectors.catalog.exfil import UNIX_ALLOW, outbound
from detectors.catalog.fileops import (
    COPY_SYSCALLS,
    base_fields,
    touched_paths,
    tree_patterns,
    workspace,
    written_paths,
)
from detectors.catalog.ownership import (
    CREATED_MOVES,
    GIT_EXES,
    GIT_TRANSPORT,
    own_secret,
    severity_of,
    track_created,
    track_git,
)
from detectors.catalog.proctarget import is_dir_read
from detectors.openroute import OpenInterest

# ---------------------------------------------------------------------------- credential_read
CREDENTIAL_PATHS = [
    "~/.ssh/id_*", "~/.ssh/*.pem", "~/.ssh/*_key", "/etc/ssh/ssh_host_*_key",
    "~/.aws/credentials", "~/.aws/sso/cache/**", "~/.config/gcloud/**", "~/.azure/**",
    "~/.kube/config", "~/.docker/config.json", "~/.netrc", "~/.npmrc", "~/.pypirc",
    "~/.git-credentials", "~/.config/git/credentials", "~/.config/gh/hosts.yml",
    "~/.config/hub", "~/.cargo/credentials", "~/.cargo/credentials.toml", "~/.gem/credentials",
    "~/.terraform.d/credentials.tfrc.json", "~/.vault-token", "~/.gnupg/private-keys-v1.d/**",
    "~/.gnupg/secring.gpg", "~/.password-store/**", "~/.local/share/keyrings/**",
    "/etc/shadow", "/etc/shadow-", "/etc/gshadow", "/etc/gshadow-", "/etc/sudoers",
    "/etc/sudoers.d/**", "/run/secrets/**", "/var/run/secrets/**",
    "**/.env", "**/.env.*",
]


@register
class CredentialRead(Detector):
    """A read, or attempted read, of a credential file. Then, when the same session makes an
    outbound send (detectors/catalog/exfil.py): connects to an internet address (not in
    `connect_allow`: loopback by default) or sends a datagram to one, connects to a unix
    socket whose peer the kernel names as outside the session (not in `unix_allow`: the
    sandbox's proxy and name-service sockets), or sends by send/write/writev/io_uring on a
    socket it connected to such a destination (DNS queries excepted: `dns_exfil` watches
    those), within
    `connect_window` seconds of a *successful* read (or hard link, rename or absolute
    symlink of the file: new names the globs would miss), a second, critical finding asks
    for a kill: read-then-send is how a secret leaves. Reads of `sequence_exclude` files (project
    `.env`, `~/.npmrc`: tools read them on every run right before going to the network)
    alert but do not arm the sequence. A probe of a missing file (ENOENT/ENOTDIR) is
    reported at `missing_severity` (tools look for their config on every start); a denied
    one (EACCES, EPERM) at the full severity. Not in the sequence, deliberately: unix
    datagrams sent to a path (no peer credentials: the peer's membership is unknown), and
    sends on a socket whose connect the session never showed (inherited or passed in).

    `~/` is each home: /root, /home/NAME, the host's passwd homes and the session's own
    HOME (taken at its start). Not flagged above `own_severity` (info), and never arming
    the sequence: the session's own secrets. In the workspace, a file the session wrote
    whole (O_TRUNC, O_CREAT|O_EXCL, creat, and the names a rename or link of it gives:
    `ssh-keygen -f ./key`) and a file that only the anywhere globs (`**/.env`,
    `**/.env.*`) match: a project's own `.env` is its configuration, not a secret it broke
    into. Outside it, only a `.env`-like file the session wrote whole (a generated one).
    Still high: a `.env` outside the workspace that the session did not write, a
    workspace file that a home or system glob matches (a workspace that is a home), and
    credentials the session writes under a home (`~/.aws/credentials`), which are what
    other tools will use.
    A HOME changed inside the session (`export HOME=/x`) is not known: files under it
    match only the `**/` globs."""

    spec = DetectorSpec(
        id="credential_read",
        # session: workspace(); io_uring: sends (exfil.py)
        kinds=frozenset({"session", "open", "syscall", "connect", "io_uring"}),
        reads=ReadInterest(params=("paths",)),
        title="Credential File Read",
        description="read or attempted read of ssh keys, cloud or tool credentials, "
                    "/etc/shadow, sudoers or .env files; kill when a connect follows",
        severity="high",
        action="alert",
        mitre=("T1552.001", "T1552.004", "T1003.008"),
        not_flagged=(
            "directory listings (find /, du, ls of ~/.gnupg): a listing names files and reads no "
            "secret",
            "the workspace's own `.env` files and the secrets the session wrote itself "
            "(ssh-keygen -f ./key): info, and they never arm the read-then-send sequence",
            "public keys and `.env` templates (`exclude_paths`)",
            "a send to loopback (`connect_allow`) or to a unix peer inside the session, and DNS "
            "queries (dns_exfil's)",
            "unix datagrams sent to a path, and sends on a socket whose connect the session never"
            " showed: the peer is unknown",
        ),
        output="{comm} read credential file {path} ({result})",
        params={
            "paths": list(CREDENTIAL_PATHS),
            "exclude_paths": ["**/*.pub", "**/.env.example", "**/.env.sample",
                              "**/.env.template", "**/.env.dist"],
            "missing_severity": "low",
            "connect_window": 60.0,
            "connect_allow": ["127.0.0.0/8", "::1/128"],
            "sequence_exclude": ["**/.env", "**/.env.*", "~/.npmrc"],
            # unix sockets whose outside peer is the sandbox's own channel (exfil.py)
            "unix_allow": list(UNIX_ALLOW),
            "own_severity": "info",
        },
        # npm reads its own ~/.npmrc on every command (node running npm's CLI script);
        # another program reading it is still reported
        exceptions=tuple({"exe": "**/node*", "argv": argv, "path": "~/.npmrc"} for argv in (
            "* */bin/npm", "* */bin/npm *", "* */bin/npx", "* */bin/npx *",
            "* */npm/bin/npm-cli.js*", "* */npm/bin/npx-cli.js*")),
    )

    def open_interest(self, params: dict[str, Any]) -> OpenInterest:
        # track_created (writes), reads of `paths`
        return OpenInterest(writes=True, globs=tuple(params["paths"]))

    def check(self, ctx: Context, ev: Event) -> Iterable[Finding]:
        ws = workspace(ctx, ev)
        if not after_setup(ev):
            return
        if isinstance(ev, OpenEvent):
            track_created(ctx, ev)  # first: an O_RDWR|O_CREAT|O_TRUNC open reads its own
            yield from self._read(ctx, ev, ws)
        elif isinstance(ev, SyscallEvent) and ev.syscall in COPY_SYSCALLS | CREATED_MOVES:
            if ev.syscall in COPY_SYSCALLS:
                yield from self._copy(ctx, ev, ws)
            track_created(ctx, ev)  # after: a rename of its own file is judged as its own
        elif isinstance(ev, (ConnectEvent, SyscallEvent, UringEvent)):
            yield from self._send(ctx, ev)

    @staticmethod
    def _send(ctx: Context, ev: ConnectEvent | SyscallEvent | UringEvent) -> Iterator[Finding]:
        """The sequence's second half: an outbound send (detectors/catalog/exfil.py: inet
        outside `connect_allow`, a unix peer outside the session, by connect, send,
        write or io_uring) within the window of a successful read."""
        p = ctx.params
        out = outbound(ctx.state, ev, p["connect_allow"], p["unix_allow"])
        if out is None or (isinstance(ev, SyscallEvent) and (out.dns or ev.dns_query)):
            return  # a name lookup precedes every connect; dns_exfil watches DNS
        reads: deque[tuple[int, str, int]] = ctx.state.setdefault("reads", deque())
        window = int(p["connect_window"] * 1e9)
        while reads and ev.ts - reads[0][0] > window:
            reads.popleft()
        recent = [r for r in reads if 0 <= ev.ts - r[0] <= window]
        if not recent:
            return
        ts, path, pid = recent[-1]
        where = "unix socket {address} of pid {peer_pid} outside the session" \
            if out.family == "AF_UNIX" else "{address} port {port}"
        yield Finding(
            key=f"then_connect:{path}",
            fields={"path": path, **out.fields(), "result": result_of(ev), "comm": ev.comm,
                    "seconds_after_read": round((ev.ts - ts) / 1e9, 3), "read_pid": pid,
                    "credentials_read": len({r[1] for r in recent})},
            severity="critical", action="kill",
            output="{comm} sent to " + where + " by {syscall} ({result}) "
                   "{seconds_after_read}s after a read of credential file {path}")

    def _copy(self, ctx: Context, ev: SyscallEvent, ws: str | None) -> Iterator[Finding]:
        """A hard link, rename or symlink to a credential file gives it a name the globs
        do not cover: reported like a read (and arms the sequence when it worked)."""
        p = ctx.params
        source = ev.path if ev.syscall.startswith(("link", "rename")) else \
            ev.args.get("target")
        if not isinstance(source, str) or not source.startswith("/"):
            return
        pattern = path_matches(source, p["paths"], ctx.homes)
        if pattern is None or path_matches(source, p["exclude_paths"], ctx.homes):
            return
        fields = base_fields(ev, source)
        fields.update(pattern=pattern, attempt_only=ev.ret < 0,
                      new_name=ev.path2 if ev.syscall.startswith(("link", "rename"))
                      else ev.path)
        own = own_secret(ctx, source, ws)
        if own:
            fields["own"] = own
        elif ev.ret >= 0 and not path_matches(source, p["sequence_exclude"], ctx.homes):
            self._remember(ctx, ev, source)
        yield Finding(key=source, fields=fields,
                      severity=severity_of(p["own_severity"]) if own else None)

    @staticmethod
    def _remember(ctx: Context, ev: Event, path: str) -> None:
        reads: deque[tuple[int, str, int]] = ctx.state.setdefault("reads", deque())
        reads.append((ev.ts, path, ev.pid))
        while len(reads) > 256:
            reads.popleft()

    def _read(self, ctx: Context, ev: OpenEvent, ws: str | None) -> Iterator[Finding]:
        p = ctx.params
        if not is_read_open(ev) or is_dir_read(ev):
            return  # a directory listing names files, it reads no secret (find /, du)
        pattern = path_matches(ev.path, p["paths"], ctx.homes)
        if pattern is None or path_matches(ev.path, p["exclude_paths"], ctx.homes):
            return
        fields = base_fields(ev, ev.path)
        fields["pattern"] = pattern
        fields["attempt_only"] = ev.ret < 0
        severity = None
        own = own_secret(ctx, ev.path, ws)
        if own:  # the workspace's own, or the session's: not a secret it had no access to
            fields["own"] = own
            severity = severity_of(p["own_severity"])
        elif ev.ret < 0 and ev.error in ("ENOENT", "ENOTDIR"):
            severity = severity_of(p["missing_severity"])
        elif ev.ret >= 0 and not path_matches(ev.path, p["sequence_exclude"], ctx.homes):
            self._remember(ctx, ev, ev.path)
        yield Finding(key=ev.path, fields=fields, severity=severity)


# ---------------------------------------------------------------------------- canary_touch
@register
class CanaryTouch(Detector):
    """Any access to a decoy: an open (any flags, any result), a file-system syscall
    naming it as either path, an exec of it, a unix-socket connect to it. No decoys by
    default; plant some and list them, e.g.
    `paths = ["/home/agent/.aws/credentials.bak", "/srv/decoy/**"]` (`dir/**` also matches
    `dir` itself). Nothing legitimate touches a decoy, so the default is kill."""

    spec = DetectorSpec(
        id="canary_touch",
        kinds=frozenset({"open", "syscall", "exec", "connect"}),  # touched_paths
        reads=ReadInterest(params=("paths",)),
        title="Decoy File Touched",
        description="any access to a configured decoy (canary) file or directory",
        severity="critical",
        action="kill",
        mitre=("T1083", "T1552.001"),
        not_flagged=(
            "anything while `paths` is empty (the default): decoys are the operator's to plant, a"
            " built-in list would be known to attackers",
            "bubblewrap's own setup (binding the decoy into the sandbox is not a touch by the "
            "agent)",
        ),
        output="{comm} touched decoy {path} ({syscall}, {result})",
        params={"paths": []},
        kernel=KernelHalf(reason="AW_WHY_CANARY", deny_paths="paths", deny_below=True,
                          needs_param="paths"),
    )

    def open_interest(self, params: dict[str, Any]) -> OpenInterest:
        # touched_paths: path and raw_path
        return OpenInterest(globs=tuple(tree_patterns(params["paths"])))

    def check(self, ctx: Context, ev: Event) -> Iterable[Finding]:
        patterns = ctx.params["paths"]
        if not patterns or not after_setup(ev):
            return
        patterns = tree_patterns(patterns)
        for path in touched_paths(ev):
            pattern = path_matches(path, patterns, ctx.homes)
            if pattern:
                fields = base_fields(ev, path)
                fields["pattern"] = pattern
                yield Finding(key=path, fields=fields)
                return


# ---------------------------------------------------------------------------- protected_read
@register
class ProtectedRead(Detector):
    """A read (or denied attempt) of protected data: answer keys, hidden tests, eval data
    (`paths`, matched anywhere), and git history of repositories other than the session's
    own (`outside_workspace_paths`, matched only outside the workspace and outside the repo
    that contains the workspace: an agent reads its own repo's `.git` all the time; nor
    in a repository this session has written into, e.g. one it cloned to /tmp). Paths
    under `exclude_paths` (package managers' git checkouts) are never reported, nor are
    missing files (`ignore_errors`): tools probe for them.

    Another repository read by git's transport, `git clone`, `fetch`, `pull`, `push`,
    `ls-remote`, `remote update` and the helpers they run (`git-upload-pack`,
    `pack-objects` below it...: `transport_commands`, and their git children), is
    reported at `transport_severity` (info): that is how a local repository is meant to
    be copied. git is known by its executable as the kernel and /proc name it
    (`git_exes`: system paths only; a copy of git elsewhere, or a program named git, is
    not git), never by its command name. Every other reader of another repository's
    `.git` stays high: cat, python, and git's own history commands (`git -C /other log`,
    `show`, `cat-file`: they read the history itself, which is what this guards)."""

    spec = DetectorSpec(
        id="protected_read",
        # session: workspace(); exec, fork, exit: git's transport processes
        kinds=frozenset({"session", "open", "syscall", "exec", "fork", "exit"}),
        reads=ReadInterest(params=("paths", "outside_workspace_paths")),
        title="Protected Data Read",
        description="read of configured protected paths: answer keys, hidden tests, eval "
                    "data, other repositories' .git history",
        severity="high",
        action="alert",
        mitre=("T1005", "T1213"),
        not_flagged=(
            "the session's own repository's `.git`, and repositories the session wrote into "
            "(cloned): an agent reads them all the time",
            "git's transport (clone, fetch, pull, ls-remote, upload-pack) reading another "
            "repository: info; `git log` there reads history and stays high",
            "listings of another repository's `.git` directories (a tree walk passing them); a "
            "listing inside `paths` trees (hidden tests) stays",
            "missing files (`ignore_errors`) and package managers' git checkouts "
            "(`exclude_paths`)",
        ),
        output="{comm} read protected file {path} ({result})",
        params={
            "paths": ["**/answer_key*", "**/answer-key*", "**/answers.json",
                      "**/answers.jsonl", "**/hidden_tests/**", "**/hidden-tests/**"],
            "outside_workspace_paths": ["**/.git/**"],
            "exclude_paths": ["~/.cache/**", "~/.cargo/git/**", "~/go/pkg/mod/**"],
            "ignore_errors": ["ENOENT", "ENOTDIR"],
            "git_exes": list(GIT_EXES),
            "transport_commands": list(GIT_TRANSPORT),
            "transport_severity": "info",
        },
    )

    def open_interest(self, params: dict[str, Any]) -> OpenInterest:
        # written_paths (own repos), reads of its globs (`exclude_paths` only takes away)
        return OpenInterest(writes=True, globs=(*params["paths"],
                                                *params["outside_workspace_paths"]))

    def check(self, ctx: Context, ev: Event) -> Iterable[Finding]:
        ws = workspace(ctx, ev)
        if isinstance(ev, ExecEvent | ForkEvent | ExitEvent):
            track_git(ctx, ev)
            return
        if not after_setup(ev):
            return
        own: set[str] = ctx.state.setdefault("own_repos", set())
        for path in written_paths(ev):
            if "/.git/" in path and len(own) < 4096:
                own.add(path.split("/.git/", 1)[0])
        if not isinstance(ev, OpenEvent) or not is_read_open(ev):
            return
        p = ctx.params
        if ev.ret < 0 and ev.error in p["ignore_errors"]:
            return
        if path_matches(ev.path, p["exclude_paths"], ctx.homes):
            return
        severity = None
        pattern = path_matches(ev.path, p["paths"], ctx.homes)
        if pattern is None and ev.path.startswith("/"):
            pattern = path_matches(ev.path, p["outside_workspace_paths"], ctx.homes)
            if pattern is not None and (under(ev.path, [ws] if ws else [])
                                        or _own_repo(ev.path, ws)
                                        or ev.path.split("/.git/", 1)[0] in own
                                        or is_dir_read(ev)):
                pattern = None  # (a listing of another repo's .git dirs: a tree walk's)
            transport = ctx.state.get("git_transport", {}).get(ev.pid)
            if pattern is not None and transport:
                severity = severity_of(p["transport_severity"])
        if pattern is None:
            return
        fields = base_fields(ev, ev.path)
        fields["pattern"] = pattern
        if severity is not None:  # its own key: a later reader must not fold into it
            fields["git_transport"] = transport
        # git's transport reads a repository's objects one file each (5,000 alerts for
        # one clone of a 5,000-file repository): its reads fold per repository
        yield Finding(key=f"git:{ev.path.split('/.git/', 1)[0]}" if severity is not None
                      else ev.path, fields=fields, severity=severity)


def _own_repo(path: str, ws: str | None) -> bool:
    """`path` is inside the `.git` of a repository that contains the workspace."""
    if not ws or "/.git/" not in path:
        return False
    repo = path.split("/.git/", 1)[0] or "/"
    return under(ws, [repo])


# ---------------------------------------------------------------------------- write_outside
WRITE_ALLOW = [
    "/tmp/**", "/var/tmp/**", "/usr/tmp/**", "/dev/shm/**", "/dev/null", "/dev/zero",
    "/dev/full", "/dev/tty", "/dev/ptmx", "/dev/pts/*", "/dev/stdout", "/dev/stderr", "/dev/fd/*",
    "/dev/urandom", "/dev/random", "~/.cache/**", "~/.npm/**", "~/.cargo/registry/**",
    "~/.cargo/git/**", "~/go/pkg/**", "~/.local/state/**", "~/.bash_history",
    "~/.python_history", "~/.lesshst", "~/.wget-hsts", "~/.viminfo",
]


@register
class WriteOutsideWorkspace(Detector):
    """A write-intent open (O_WRONLY, O_RDWR, O_CREAT, O_TRUNC, O_APPEND, O_TMPFILE) or a
    file-system change (unlink, rename, mkdir, rmdir, chmod, chown, link, symlink, truncate,
    setxattr: either path) outside the workspace and the `allow` globs, refused attempts
    included. The workspace is the session root's working directory (`allow_workspace`);
    the acting process's own `/proc/<pid>/...` is allowed. A relative path (unknown base)
    is skipped. Above `kill_rate` such writes in `rate_window` seconds (0: never) the
    finding asks for a kill: a burst outside the workspace is vandalism, not a stray log.
    /dev/shm is allowed here; `fileless_exec` watches execs from it."""

    spec = DetectorSpec(
        id="write_outside_workspace",
        kinds=frozenset({"session", "open", "syscall"}),  # session: workspace()
        reads=ReadInterest(),
        title="Write Outside The Workspace",
        description="write-intent open, rename, unlink, chmod, link... outside the workspace "
                    "and allowed paths, denied attempts included",
        severity="medium",
        action="alert",
        mitre=("T1565.001", "T1485"),
        not_flagged=(
            "writes under the workspace, the `allow` globs (/tmp, caches, shell history) and the "
            "process's own /proc/<pid>/",
            "relative paths whose base is unknown: they cannot be placed",
            "`mkdir -p` on existing parents (EEXIST changed nothing)",
        ),
        output="{comm} wrote outside the workspace: {path} ({syscall}, {result})",
        params={
            "allow": list(WRITE_ALLOW),
            "allow_workspace": True,
            "kill_rate": 20,
            "rate_window": 10.0,
        },
        # sandbox-runtime's helper sets the user-namespace limit of the sandbox's OWN user
        # namespace (a namespaced sysctl): not a change to the host
        exceptions=({"exe": "**/sandbox-runtime/vendor/seccomp/*/apply-seccomp",
                     "path": "/proc/sys/user/max_user_namespaces"},),
    )

    def open_interest(self, params: dict[str, Any]) -> OpenInterest:
        # written_paths: write-intent opens
        return OpenInterest(writes=True)

    def check(self, ctx: Context, ev: Event) -> Iterable[Finding]:
        ws = workspace(ctx, ev)
        if not after_setup(ev):
            return
        outside = [path for path in written_paths(ev) if _outside(ctx, ev, path, ws)]
        if not outside:
            return
        p = ctx.params
        times: deque[int] = ctx.state.setdefault("times", deque())
        times.append(ev.ts)
        window = int(p["rate_window"] * 1e9)
        while times and ev.ts - times[0] > window:
            times.popleft()
        path = outside[0]
        fields = base_fields(ev, path)
        fields["workspace"] = ws
        if p["kill_rate"] and len(times) > p["kill_rate"]:
            fields["writes_in_window"] = len(times)
            yield Finding(key="rate", fields=fields, action="kill", severity="high",
                          note=f"more than {p['kill_rate']} writes outside the workspace "
                               f"in {p['rate_window']}s")
            return
        yield Finding(key=path, fields=fields)


def _outside(ctx: Context, ev: Event, path: str, ws: str | None) -> bool:
    if not path.startswith("/"):
        return False
    p = ctx.params
    if p["allow_workspace"] and ws and under(path, [ws]):
        return False
    if path.startswith(f"/proc/{ev.pid}/") or path.startswith(f"/proc/{ev.tid}/"):
        return False
    return path_matches(path, tree_patterns(p["allow"]), ctx.homes) is None


# ---------------------------------------------------------------------------- persistence
PERSISTENCE_PATHS = [
    "~/.bashrc", "~/.bash_profile", "~/.bash_login", "~/.bash_logout", "~/.profile",
    "~/.zshrc", "~/.zshenv", "~/.zprofile", "~/.zlogin", "~/.config/fish/**",
    "~/.pam_environment", "/etc/profile", "/etc/profile.d/**", "/etc/bash.bashrc",
    "/etc/bashrc", "/etc/zsh/**", "/etc/environment",
    "/etc/cron*", "/etc/cron*/**", "/var/spool/cron/**", "/etc/anacrontab",
    "/etc/systemd/**", "/lib/systemd/system/**", "/usr/lib/systemd/**",
    "~/.config/systemd/**", "~/.config/autostart/**", "/etc/xdg/autostart/**",
    "/etc/rc.local", "/etc/init.d/**",
    "**/.ssh/authorized_keys", "**/.ssh/authorized_keys2", "/etc/ssh/sshd_config",
    "/etc/ssh/sshd_config.d/**",
    "**/.git/hooks/**",
    "/etc/ld.so.preload", "/etc/ld.so.conf", "/etc/ld.so.conf.d/**",
    "/etc/passwd", "/etc/group", "/etc/sudoers", "/etc/sudoers.d/**",
]


@register
class PersistenceWrite(Detector):
    """A write-intent open or file-system change of a file that runs code later or grants
    access: shell rc and profile files, cron, systemd units and autostart entries,
    `authorized_keys`, git hooks (any repository, the workspace's included: `git init`'s
    `*.sample` hooks excepted), `ld.so.preload`, accounts and sudoers. Refused attempts
    included. Writing one is how a compromise outlives the session: kill. `~/` is every
    home: /root, /home/NAME, the host's passwd homes and the session's own HOME (a HOME
    exported inside the session is not known: its rc files are not matched)."""

    spec = DetectorSpec(
        id="persistence_write",
        kinds=frozenset({"open", "syscall"}),  # written_paths
        reads=ReadInterest(),
        title="Persistence Location Written",
        description="write to shell rc files, cron, systemd units, authorized_keys, "
                    ".git/hooks, ld.so.preload, accounts",
        severity="critical",
        action="kill",
        mitre=("T1546.004", "T1053.003", "T1543.002", "T1098.004", "T1574.006"),
        not_flagged=(
            "reads of rc files, cron and units: shells read them at every start",
            "git's `*.sample` hooks written by `git init`",
        ),
        output="{comm} wrote persistence location {path} ({syscall}, {result})",
        params={
            "paths": list(PERSISTENCE_PATHS),
            "exclude_paths": ["**/.git/hooks/*.sample"],
        },
    )

    def open_interest(self, params: dict[str, Any]) -> OpenInterest:
        # written_paths: write-intent opens
        return OpenInterest(writes=True)

    def check(self, ctx: Context, ev: Event) -> Iterable[Finding]:
        if not after_setup(ev):
            return
        p = ctx.params
        for path in written_paths(ev):
            pattern = path_matches(path, p["paths"], ctx.homes)
            if pattern and not path_matches(path, p["exclude_paths"], ctx.homes):
                fields = base_fields(ev, path)
                fields["pattern"] = pattern
                yield Finding(key=path, fields=fields)
                return
