"""Unit tests of the process table: arrival order, ancestry, retirement."""

from __future__ import annotations

from collector.events import ExecEvent, ExitEvent, ForkEvent, OpenEvent, SyscallEvent
from collector.proctable import ProcessTable

S = "00000000000000aa"


def table() -> ProcessTable:
    t = ProcessTable(max_exited=3, read_proc=False)
    t.add_root(100, 1, S, ["agent"], start_ns=1)
    return t


def test_fork_then_exec_builds_ancestry() -> None:
    t = table()
    t.observe(ForkEvent(ts=2, session=S, pid=100, ppid=1, ret=101, child_pid=101))
    t.observe(ExecEvent(ts=3, session=S, pid=101, ppid=100, comm="sh", ret=0,
                        filename="/bin/sh", argv=["sh", "-c", "x"]))
    t.observe(ForkEvent(ts=4, session=S, pid=101, ppid=100, ret=102, child_pid=102))
    chain = [p.pid for p in t.ancestry(102)]
    assert chain == [102, 101, 100]
    assert t.get(102).argv == ["sh", "-c", "x"]  # inherited until it execs
    assert t.get(101).exe == "/bin/sh" and t.get(101).start_ns == 2


def test_child_events_before_the_fork_event() -> None:
    # The fork event is sent when clone() returns in the parent: the child may be first.
    t = table()
    t.observe(ExecEvent(ts=5, session=S, pid=101, ppid=100, comm="cat", ret=0,
                        filename="/bin/cat", argv=["cat"]))
    t.observe(ForkEvent(ts=4, session=S, pid=100, ppid=1, ret=101, child_pid=101))
    assert t.get(101).ppid == 100 and t.get(101).argv == ["cat"]
    assert t.get(101).start_ns == 4
    assert [p.pid for p in t.ancestry(101)] == [101, 100]


def test_a_reused_pid_whose_exit_was_never_seen_is_not_the_new_child() -> None:
    # pid 101 ran bash in /old, and its exit was lost; then 100 forks a new 101 that
    # execs nothing yet: it must not inherit the dead process's exe, cwd or parent.
    t = table()
    t.observe(ForkEvent(ts=2, session=S, pid=100, ppid=1, ret=50, child_pid=50))
    t.observe(ForkEvent(ts=3, session=S, pid=50, ppid=100, ret=101, child_pid=101))
    t.observe(ExecEvent(ts=4, session=S, pid=101, ppid=50, comm="bash", ret=0,
                        filename="/bin/bash", argv=["bash"], exe="/bin/bash"))
    t.observe(SyscallEvent(ts=5, session=S, pid=101, ppid=50, ret=0, syscall="chdir",
                           args={"path": "/old"}, path="/old"))
    t.observe(ForkEvent(ts=10, session=S, pid=100, ppid=1, ret=101, child_pid=101))
    new = t.get(101)
    assert new.ppid == 100 and new.start_ns == 10
    assert new.exe != "/bin/bash" and new.cwd != "/old"
    assert [p.pid for p in t.ancestry(101)] == [101, 100]


def test_failed_exec_changes_nothing_and_threads_are_not_processes() -> None:
    t = table()
    t.observe(ExecEvent(ts=2, session=S, pid=100, ppid=1, ret=-2, filename="/nope",
                        argv=["nope"]))
    assert t.get(100).argv == ["agent"]
    t.observe(ForkEvent(ts=3, session=S, pid=100, ppid=1, ret=555, child_pid=555,
                        thread=True))
    assert t.get(555) is None


def test_exit_retires_and_bounds_history() -> None:
    t = table()
    for pid in range(101, 106):
        t.observe(OpenEvent(ts=pid, session=S, pid=pid, ppid=100, ret=3, syscall="openat",
                            path="/x", raw_path="/x", flags=0))
        t.observe(ExitEvent(ts=pid, session=S, pid=pid, ppid=100, exit_code=0))
    assert len(t) == 1  # only the root is alive
    assert t.get(101) is None and t.get(105).exited  # oldest forgotten, max_exited=3
    assert [p.pid for p in t.ancestry(105)] == [105, 100]


def test_ancestry_survives_cycles_and_unknowns() -> None:
    t = table()
    t.observe(OpenEvent(ts=1, session=S, pid=7, ppid=8, ret=3, syscall="openat", path="/",
                        raw_path="/", flags=0))
    t.observe(OpenEvent(ts=1, session=S, pid=8, ppid=7, ret=3, syscall="openat", path="/",
                        raw_path="/", flags=0))
    assert [p.pid for p in t.ancestry(7)] == [7, 8]
    assert t.ancestry(12345) == []


def test_relative_paths_resolve_through_cwd_and_dirfds() -> None:
    from collector.proctable import resolve_path

    t = table()
    root = t.get(100)
    root.cwd = "/work/repo"
    # openat(AT_FDCWD, "src", O_DIRECTORY) -> fd 5, then openat(5, "../.git/config")
    t.observe(OpenEvent(ts=2, session=S, pid=100, ppid=1, ret=5, syscall="openat",
                        path="src", raw_path="src", flags=0))
    ev = OpenEvent(ts=3, session=S, pid=100, ppid=1, ret=6, syscall="openat", dfd=5,
                   path="../.git/config", raw_path="../.git/config", flags=0)
    t.observe(ev)
    assert ev.path == "/work/repo/.git/config" and ev.raw_path == "../.git/config"
    # fds are inherited at fork; close-on-exec ones vanish at exec
    t.observe(OpenEvent(ts=4, session=S, pid=100, ppid=1, ret=7, syscall="openat",
                        path="/etc", raw_path="/etc", flags=0o2000000))
    t.observe(ForkEvent(ts=5, session=S, pid=100, ppid=1, ret=101, child_pid=101))
    child = t.get(101)
    assert child.fds[5][0] == "/work/repo/src" and 7 in child.fds
    t.observe(ExecEvent(ts=6, session=S, pid=101, ppid=100, ret=0, filename="/bin/sh",
                        argv=["sh"]))
    assert 7 not in child.fds and 5 in child.fds
    # unknown dirfd: not derivable, the raw path stays
    ev = OpenEvent(ts=7, session=S, pid=100, ppid=1, ret=-2, syscall="openat", dfd=42,
                   path="x", raw_path="x", flags=0)
    t.observe(ev)
    assert ev.path == "x"
    assert resolve_path(root, 100, None, "/proc/self/environ") == "/proc/100/environ"
    assert resolve_path(root, 123, None, "/proc/thread-self/comm") == "/proc/100/task/123/comm"
    assert resolve_path(root, 100, None, "a/../../b") == "/work/b"
    assert resolve_path(root, 100, None, "") is None


def sys_ev(name: str, ret: int = 0, **args: object) -> SyscallEvent:
    return SyscallEvent(ts=1, session=S, pid=100, ppid=1, ret=ret, syscall=name,
                        args=dict(args))


def test_syscall_paths_follow_chdir_and_dirfds() -> None:
    t = table()
    t.get(100).cwd = "/home/agent"
    ev = sys_ev("unlink", ret=-2, path="notes.txt")
    ev.path = "notes.txt"
    t.observe(ev)
    assert ev.path == "/home/agent/notes.txt" and ev.args["path"] == "notes.txt"
    t.observe(sys_ev("chdir", path="../other"))
    assert t.get(100).cwd == "/home/other"
    t.observe(sys_ev("chdir", ret=-2, path="/nope"))  # failed: cwd unchanged
    assert t.get(100).cwd == "/home/other"
    t.observe(OpenEvent(ts=2, session=S, pid=100, ppid=1, ret=9, syscall="openat",
                        path="/srv", raw_path="/srv", flags=0))
    ev = sys_ev("renameat2", olddfd=9, oldpath="a", newdfd="AT_FDCWD", newpath="b")
    t.observe(ev)
    assert (ev.path, ev.path2) == ("/srv/a", "/home/other/b")
    t.observe(sys_ev("fchdir", fd=9))
    assert t.get(100).cwd == "/srv"
    ev = sys_ev("mount", target="mnt", source="tmpfs", fstype="tmpfs")
    t.observe(ev)
    assert ev.path == "/srv/mnt" and ev.path2 is None  # a device name is not a path


def test_dup_of_a_socket_is_recognised_from_the_fd_table() -> None:
    t = table()
    t.observe(sys_ev("socket", ret=3, family="AF_INET"))
    ev = sys_ev("dup2", ret=1, oldfd=3, newfd=1)
    t.observe(ev)
    assert ev.args["socket"] is True
    assert t.get(100).fds[1][0] == "socket:AF_INET"
    t.observe(OpenEvent(ts=2, session=S, pid=100, ppid=1, ret=4, syscall="openat",
                        path="/tmp/f", raw_path="/tmp/f", flags=0))
    ev = sys_ev("dup2", ret=2, oldfd=4, newfd=2)
    t.observe(ev)
    assert ev.args["socket"] is False
    ev = sys_ev("dup2", ret=0, oldfd=77, newfd=0)  # an fd from before the session
    t.observe(ev)
    assert ev.args["socket"] is None


def test_exe_of_a_relative_exec_is_made_absolute_when_proc_is_gone() -> None:
    t = table()
    t.get(100).cwd = "/tmp/work"
    t.observe(ExecEvent(ts=2, session=S, pid=100, ppid=1, ret=0, filename="./dropper",
                        argv=["./dropper"]))
    assert t.get(100).exe == "/tmp/work/dropper"


def test_unix_socket_addresses_are_made_absolute_like_paths() -> None:
    from collector.events import ConnectEvent

    t = table()
    t.get(100).cwd = "/run"
    rel = ConnectEvent(ts=2, session=S, pid=100, ppid=1, ret=-2, fd=3, family="AF_UNIX",
                       address="docker.sock")
    dbl = ConnectEvent(ts=3, session=S, pid=100, ppid=1, ret=-2, fd=3, family="AF_UNIX",
                       address="/var/run//docker.sock")
    abstract = ConnectEvent(ts=4, session=S, pid=100, ppid=1, ret=0, fd=3,
                            family="AF_UNIX", address="@x/../y")
    for ev in (rel, dbl, abstract):
        t.observe(ev)
    assert (rel.address, dbl.address, abstract.address) == (
        "/run/docker.sock", "/var/run/docker.sock", "@x/../y")


def test_a_reused_pid_from_another_session_starts_clean() -> None:
    """Under a flood a process's exit record can be lost and its pid reused by a process
    of another session: nothing of the old one (its socket fds above all: a reverse
    shell's dup would be judged by them) may be taken for the new one's."""
    t = table()
    t.observe(ForkEvent(ts=2, session=S, pid=100, ppid=1, ret=101, child_pid=101))
    t.observe(SyscallEvent(ts=3, session=S, pid=101, ppid=100, ret=4, syscall="socket",
                           args={"family": "AF_INET"}))
    assert t.get(101).fds[4][0].startswith("socket:")
    other = "00000000000000bb"
    t.add_root(200, 1, other, ["bwrap"], start_ns=5)
    # pid 101's exit was lost; 101 is now a child of the other session's root
    t.observe(ForkEvent(ts=6, session=other, pid=200, ppid=1, ret=101, child_pid=101))
    new = t.get(101)
    assert new.session == other and new.ppid == 200 and 4 not in new.fds
    # an event of a reused pid whose fork was lost too
    t.observe(SyscallEvent(ts=7, session=S, pid=102, ppid=100, ret=5, syscall="socket",
                           args={"family": "AF_INET"}))
    t.observe(OpenEvent(ts=8, session=other, pid=102, ppid=200, ret=3, syscall="openat",
                        path="/x", raw_path="/x", flags=0))
    assert t.get(102).session == other and 5 not in t.get(102).fds


def test_nothing_is_inherited_from_a_parent_of_another_session() -> None:
    """A process first seen by one of its own events (its fork record lost) inherits its
    parent's view only if that parent is of its session: a parent entry of another
    session is a stale one under a reused pid."""
    t = table()
    t.observe(SyscallEvent(ts=2, session=S, pid=100, ppid=1, ret=4, syscall="socket",
                           args={"family": "AF_INET"}))
    t.observe(SyscallEvent(ts=3, session=S, pid=100, ppid=1, ret=0, syscall="chdir",
                           args={"path": "/"}, path="/"))
    other = "00000000000000bb"
    t.observe(OpenEvent(ts=4, session=other, pid=300, ppid=100, ret=3, syscall="openat",
                        path="x", raw_path="x", flags=0))
    child = t.get(300)
    assert child.cwd is None and 4 not in child.fds
    assert t.get(300).session == other


def test_proc_is_read_only_for_the_process_an_event_came_from() -> None:
    """/proc/<pid> is read late (the event waited in the ring): by then the pid may be
    another process's. One that started after the event is not the event's."""
    import subprocess
    import time

    from collector.proctable import same_process

    child = subprocess.Popen(["sleep", "30"])
    try:
        now = time.time_ns()
        assert same_process(child.pid, now)
        assert not same_process(child.pid, now - 60 * 10**9)  # an event from before it
    finally:
        child.kill()
        child.wait()
    assert not same_process(child.pid, time.time_ns())  # gone
