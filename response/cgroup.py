"""cgroup v2 for sessions: a cgroup of its own per `agentwatch run` session.

A session in its own cgroup can be killed whole and at once (`cgroup.kill`), frozen and
thawed (`cgroup.freeze`), and given egress programs (cgroup sock_addr hooks). The v2
hierarchy is found in the mount table, never assumed: `/sys/fs/cgroup` on most hosts,
`/sys/fs/cgroup/unified` on hybrid ones. Session cgroups live under `<v2>/agentwatch/`
(or `$AGENTWATCH_CGROUP_PARENT`), a directory with no controllers enabled, so that its
children may hold processes.
"""

from __future__ import annotations

import errno
import os
import re
import time
from pathlib import Path

PARENT_ENV = "AGENTWATCH_CGROUP_PARENT"


class CgroupError(RuntimeError):
    """A session cgroup could not be made or used (the message says why)."""


def _decode_mount_field(field: str) -> str:
    """/proc/self/mounts escapes space, tab, newline and backslash as octal."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def cgroup2_mount(mounts: Path = Path("/proc/self/mounts")) -> Path | None:
    """Mount point of the cgroup v2 hierarchy, from the mount table (never assumed)."""
    try:
        lines = mounts.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        if len(fields) >= 3 and fields[2] == "cgroup2":
            return Path(_decode_mount_field(fields[1]))
    return None


def remove_cgroup(path: Path, timeout: float = 2.0) -> str:
    """rmdir a cgroup, retrying while it is still busy; returns an error or ''."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            path.rmdir()
            return ""
        except FileNotFoundError:
            return ""
        except OSError as e:
            if e.errno != errno.EBUSY or time.monotonic() >= deadline:
                return f"could not remove {path}: {e.strerror}"
            time.sleep(0.02)


def parent_dir() -> Path:
    """Where session cgroups are made (created on first use)."""
    explicit = os.environ.get(PARENT_ENV)
    if explicit:
        return Path(explicit)
    root = cgroup2_mount()
    if root is None:
        raise CgroupError("no cgroup2 file system in /proc/self/mounts")
    return root / "agentwatch"


def find(name: str) -> SessionCgroup | None:
    """The cgroup of session `name`, if one exists (for `agentwatch session`)."""
    if not re.fullmatch(r"[0-9a-f]{1,16}", name):
        return None
    try:
        path = parent_dir() / name
    except CgroupError:
        return None
    return SessionCgroup(path) if path.is_dir() else None


def prune_stale() -> int:
    """Remove empty session cgroups left by earlier runs (a crash, or processes that
    outlived their session and have since exited); returns how many were removed."""
    try:
        parent = parent_dir()
        entries = list(parent.iterdir()) if parent.is_dir() else []
    except (CgroupError, OSError):
        return 0
    removed = 0
    for path in entries:
        if path.is_dir() and re.fullmatch(r"[0-9a-f]{1,16}", path.name):
            cg = SessionCgroup(path)
            if not cg.procs() and not cg.remove(timeout=0):
                removed += 1
    return removed


class SessionCgroup:
    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def create(cls, name: str) -> SessionCgroup:
        parent = parent_dir()
        try:
            parent.mkdir(mode=0o755, exist_ok=True)
            path = parent / name
            path.mkdir(mode=0o755)
        except OSError as e:
            raise CgroupError(f"cannot make a cgroup under {parent}: {e.strerror}") from None
        cg = cls(path)
        missing = [f for f in ("cgroup.kill", "cgroup.freeze", "cgroup.procs")
                   if not (path / f).exists()]
        if missing:
            cg.remove(timeout=0)
            raise CgroupError(f"{path}: no {', '.join(missing)} (kernel older than 5.14?)")
        return cg

    def __repr__(self) -> str:
        return f"SessionCgroup({str(self.path)!r})"

    def _write(self, name: str, value: str) -> None:
        try:
            with open(self.path / name, "w") as f:
                f.write(value)
        except OSError as e:
            raise CgroupError(f"{self.path / name}: {e.strerror}") from None

    def add(self, pid: int) -> None:
        self._write("cgroup.procs", str(pid))

    def procs(self) -> list[int]:
        try:
            text = (self.path / "cgroup.procs").read_text()
        except OSError:
            return []
        return [int(x) for x in text.split()]

    def kill(self) -> None:
        """SIGKILL every process of the cgroup and its children, atomically against forks."""
        self._write("cgroup.kill", "1")

    def frozen(self) -> bool:
        try:
            for line in (self.path / "cgroup.events").read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "frozen":
                    return value.strip() == "1"
        except OSError:
            pass
        return False

    def freeze(self, on: bool = True, timeout: float = 2.0) -> bool:
        """Freeze (or thaw) and wait until the kernel says it is done; False on timeout."""
        self._write("cgroup.freeze", "1" if on else "0")
        deadline = time.monotonic() + timeout
        while self.frozen() != on:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.005)
        return True

    def wait_empty(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.procs():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.005)
        return True

    def open_fd(self) -> int:
        return os.open(self.path, os.O_RDONLY | os.O_DIRECTORY)

    def remove(self, timeout: float = 2.0) -> str:
        return remove_cgroup(self.path, timeout)
