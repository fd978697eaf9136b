"""/proc judged as the reader sees it (detectors/catalog/proctarget.py) and monitor_tamper
about tampering: host_proc_access, environ_snoop, process_injection and monitor_tamper
over built events, positive and negative, through the engine as `agentwatch replay` runs
it. Open events carry the kernel's answer (proc_pid/proc_tgid); path calls are translated
through the reader's pid namespace."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from collector.events import EVENT_TYPES, AlertEvent, Event
from detectors.base import Context, ProcView
from detectors.catalog.proctarget import ps_listing
from detectors.config import defaults, parse
from service.replay import Analyzer

S = "0a1b2c3d4e5f6071"
WS = "/home/agent/proj"
HOST_NS, SANDBOX_NS = 4026531836, 4026532555
MONITOR = 4242
_ts = itertools.count(1795956700000000000, 1_000_000)
DETS = ("host_proc_access", "environ_snoop", "process_injection", "monitor_tamper")


def _hdr(pid: int, comm: str, tid: int | None = None) -> dict[str, Any]:
    return dict(ts=next(_ts), session=S, pid=pid, tid=tid or pid, ppid=pid - 1, uid=0, gid=0,
                comm=comm)


def start(root: int, kind: str = "run") -> Event:
    return EVENT_TYPES["session"](ts=next(_ts), session=S, pid=root, tid=0, ppid=root - 1,
                                  phase="start", session_kind=kind, root_pid=root,
                                  argv=["bash"], ns={"pid": HOST_NS}, cwd=WS)


def ex(pid: int, exe: str, argv: list[str], ns: int = HOST_NS) -> Event:
    return EVENT_TYPES["exec"](**_hdr(pid, exe.rsplit("/", 1)[-1][:15]), ret=0,
                               filename=exe, argv=argv, exe=exe, cwd=WS, ns={"pid": ns})


def fork(pid: int, child: int, ret: int | None = None, flags: int = 0x1200011) -> Event:
    return EVENT_TYPES["fork"](**_hdr(pid, "bash"), ret=ret or child, child_pid=child,
                               clone_flags=flags)


def op(pid: int, comm: str, path: str, target: int | None = None, raw: str | None = None,
       flags: int = 0, ret: int = 3, dfd: int | None = None, ftype: str = "file") -> Event:
    return EVENT_TYPES["open"](**_hdr(pid, comm), ret=ret, syscall="openat", path=path,
                               raw_path=raw or path, dfd=dfd, flags=flags,
                               resolved=ret >= 0, file_type=ftype if ret >= 0 else None,
                               proc_pid=target if ret >= 0 else None,
                               proc_tgid=target if ret >= 0 else None)


def sc(pid: int, comm: str, name: str, path: str, args: dict[str, Any] | None = None) -> Event:
    return EVENT_TYPES["syscall"](**_hdr(pid, comm), ret=0, syscall=name, args=args or {},
                                  path=path)


def replay(events: list[Event], **params: Any) -> list[AlertEvent]:
    table: dict[str, Any] = {d: {"enabled": False} for d in defaults().detectors
                             if d not in DETS}
    table["monitor_tamper"] = {"monitor_pids": [str(MONITOR)], **params}
    analyzer = Analyzer(parse({"mode": "enforce", "detectors": table}, "<test>"))
    out: list[AlertEvent] = []
    for ev in events:
        out.extend(analyzer.feed(ev))
    return out + analyzer.finish()


def hits(alerts: list[AlertEvent]) -> list[tuple[str, str, str]]:
    return [(a.detector, a.severity, a.action["requested"]) for a in alerts]


def bare(*events: Event) -> list[Event]:
    """A session in the host's pid namespace: bash 5000 (root), its children."""
    return [start(5000), ex(5000, "/usr/bin/bash", ["bash", "task.sh"]), *events]


def sandboxed(*events: Event) -> list[Event]:
    """bubblewrap with --unshare-pid: bwrap 6000 (root, host ns) clones 6001 into a new pid
    namespace (pid 1 there), which execs bash; 6001 forks 6002 (pid 2 there)."""
    return [start(6000, "launcher"), ex(6000, "/usr/bin/bwrap", ["bwrap"]),
            fork(6000, 6001, flags=0x20000011),
            ex(6001, "/usr/bin/bash", ["bash", "task.sh"], ns=SANDBOX_NS),
            fork(6001, 6002, ret=2), *events]


# ------------------------------------------------------------------------- positives
POSITIVE = {
    "host root via chdir": (bare(sc(5000, "bash", "chdir", "/proc/777/root")),
                            ("host_proc_access", "high", "kill")),
    "exec of a host process's exe": (
        bare(EVENT_TYPES["exec"](**_hdr(5000, "bash"), ret=0, filename="/proc/777/exe",
                                 argv=["x"], exe="/usr/sbin/sshd", cwd=WS)),
        ("host_proc_access", "high", "kill")),
    "host fd by open": (bare(op(5000, "ls", "/proc/888/fd", target=888, ftype="dir")),
                        ("host_proc_access", "high", "kill")),
    "host maps": (bare(op(5000, "cat", "/proc/889/maps", target=889)),
                  ("host_proc_access", "high", "kill")),
    "host init environ": (bare(op(5000, "cat", "/proc/1/environ", target=1)),
                          ("host_proc_access", "high", "kill")),
    # in a sandbox, /proc/self/root/proc/... or a dirfd can still reach a host process:
    # the kernel names it (host pid 900), whatever the sandbox's number
    "host process named by the kernel in a pid ns": (
        sandboxed(op(6001, "cat", "/proc/3/environ", target=900, raw="environ", dfd=5)),
        ("environ_snoop", "medium", "alert")),
    "environ of a host process": (bare(op(5000, "cat", "/proc/999/environ", target=999)),
                                  ("environ_snoop", "medium", "alert")),
    "ps eww prints environments": (
        bare(fork(5000, 5010), ex(5010, "/usr/bin/ps", ["ps", "eww"]),
             op(5010, "ps", "/proc/999/environ", target=999)),
        ("environ_snoop", "medium", "alert")),
    "agentwatch's mem": (bare(op(5000, "python3", f"/proc/{MONITOR}/mem", target=MONITOR)),
                         ("monitor_tamper", "critical", "kill")),
    "agentwatch's environ by cat": (
        bare(op(5000, "cat", f"/proc/{MONITOR}/environ", target=MONITOR)),
        ("monitor_tamper", "critical", "kill")),
    "agentwatch's thread fd through task/": (
        bare(op(5000, "ls", f"/proc/{MONITOR}/task/{MONITOR + 1}/fd", target=MONITOR,
                ftype="dir")),
        ("monitor_tamper", "critical", "kill")),
    "a write to agentwatch's oom_score_adj": (
        bare(op(5000, "sh", f"/proc/{MONITOR}/oom_score_adj", target=MONITOR, flags=1)),
        ("monitor_tamper", "critical", "kill")),
    "an explicit listing of agentwatch's fd/": (
        bare(op(5000, "ls", f"/proc/{MONITOR}/fd", target=MONITOR, flags=0o200000,
                ftype="dir")),
        ("monitor_tamper", "critical", "kill")),
    "agentwatch's fd/N through the magic link": (
        bare(op(5000, "cat", "/run/x.sock", raw=f"/proc/{MONITOR}/fd/7", ftype="socket")),
        ("monitor_tamper", "critical", "kill")),
    "an explicit listing of /sys/fs/bpf": (
        bare(op(5000, "ls", "/sys/fs/bpf", flags=0o200000, ftype="dir")),
        ("monitor_tamper", "critical", "kill")),
    "a pinned object": (bare(op(5000, "cat", "/sys/fs/bpf/agentwatch/maps/events")),
                        ("monitor_tamper", "critical", "kill")),
    "another session process's mem in a pid ns": (
        sandboxed(op(6001, "python3", "/proc/2/mem", target=6002)),
        ("process_injection", "critical", "kill")),
}


@pytest.mark.parametrize("name", sorted(POSITIVE))
def test_positive(name: str) -> None:
    events, want = POSITIVE[name]
    got = hits(replay(events))
    assert want in got, got


# ------------------------------------------------------------------------- negatives
PS = "/usr/bin/ps"
NEGATIVE = {
    "ps aux in the host pid ns": bare(
        fork(5000, 5010), ex(5010, PS, ["ps", "aux"]),
        *[op(5010, "ps", f"/proc/{n}/{e}", target=n) for n in (1, 777, MONITOR)
          for e in ("stat", "status", "cmdline", "environ")],
        op(5010, "ps", "/proc/1/environ", ret=-13)),
    "ps -ef -o pid,user": bare(
        fork(5000, 5010), ex(5010, PS, ["ps", "-ef", "-o", "pid,user"]),
        op(5010, "ps", "/proc/777/environ", target=777)),
    "top reads agentwatch's stat and statm": bare(
        fork(5000, 5011), ex(5011, "/usr/bin/top", ["top", "-b", "-n", "1"]),
        op(5011, "top", "/proc", ftype="dir"),
        op(5011, "top", f"/proc/{MONITOR}/stat", target=MONITOR),
        op(5011, "top", f"/proc/{MONITOR}/statm", target=MONITOR),
        op(5011, "top", f"/proc/{MONITOR}/task", target=MONITOR, ftype="dir")),
    "readlink of exe and cwd (htop, ps -f)": bare(
        sc(5000, "htop", "readlinkat", "/proc/777/exe"),
        sc(5000, "htop", "readlinkat", f"/proc/{MONITOR}/cwd"),
        sc(5000, "ls", "newfstatat", "/proc/1/root")),
    "own /proc through self and thread-self": bare(
        op(5000, "cat", "/proc/5000/environ", target=5000, raw="/proc/self/environ"),
        op(5000, "cat", "/proc/5000/task/5001/maps", target=5000,
           raw="/proc/thread-self/maps"),
        op(5000, "cat", "/proc/5000/mem", target=5000, raw="/proc/self/mem")),
    "re-exec of itself through /proc/self/exe": bare(
        EVENT_TYPES["exec"](**_hdr(5000, "node"), ret=0, filename="/proc/self/exe",
                            argv=["node"], exe="/usr/bin/node", cwd=WS),
        EVENT_TYPES["exec"](**_hdr(5000, "node"), ret=0, filename="/proc/5000/exe",
                            argv=["node"], exe="/usr/bin/node", cwd=WS)),
    "a session child's entries": bare(
        fork(5000, 5020), op(5000, "cat", "/proc/5020/environ", target=5020),
        op(5000, "ls", "/proc/5020/fd", target=5020, ftype="dir")),
    # in the sandbox's pid namespace /proc/1 is its own first process
    "find / in a pid namespace": sandboxed(
        op(6002, "find", "/proc/1/fd", target=6001, raw="fd", dfd=7, ftype="dir"),
        op(6002, "find", "/proc/1/root", target=6001, raw="root", dfd=7, ftype="dir"),
        sc(6002, "find", "newfstatat", "/proc/1/cwd"),
        sc(6002, "bash", "chdir", "/proc/1/root"),
        op(6002, "cat", "/proc/1/environ", ret=-13)),
    "find / past /sys/fs/bpf (dirfd-relative)": bare(
        op(5000, "find", "/sys/fs/bpf", raw="bpf", dfd=5, flags=0o200000, ftype="dir"),
        op(5000, "find", "/sys/fs/bpf/agentwatch", raw="agentwatch", dfd=6,
           flags=0o200000, ftype="dir"),
        sc(5000, "find", "newfstatat", "/sys/fs/bpf/agentwatch/maps")),
    "find / in the host pid ns lists fd/ of every process": bare(
        op(5000, "find", "/proc/777", raw="777", dfd=4, flags=0o200000, ftype="dir",
           target=777),
        op(5000, "find", "/proc/777/fd", raw="fd", dfd=5, flags=0o200000, ftype="dir",
           target=777),
        op(5000, "find", "/proc/777/map_files", raw="map_files", dfd=5, flags=0o200000,
           ftype="dir", target=777),
        op(5000, "find", f"/proc/{MONITOR}/fd", raw="fd", dfd=6, flags=0o200000,
           ftype="dir", target=MONITOR),
        op(5000, "find", f"/proc/{MONITOR}/task/{MONITOR}/fdinfo", raw="fdinfo", dfd=7,
           flags=0o200000, ftype="dir", target=MONITOR)),
    "ls -R / past /sys/fs/bpf (absolute, parent listed first)": bare(
        op(5000, "ls", "/sys", flags=0o200000, ftype="dir"),
        op(5000, "ls", "/sys/fs", flags=0o200000, ftype="dir"),
        op(5000, "ls", "/sys/fs/bpf", flags=0o200000, ftype="dir"),
        op(5000, "ls", "/sys/fs/bpf/agentwatch", flags=0o200000, ftype="dir")),
}


@pytest.mark.parametrize("name", sorted(NEGATIVE))
def test_negative(name: str) -> None:
    got = [(a.detector, a.summary) for a in replay(NEGATIVE[name])]
    assert not got, got


def test_a_session_attached_inside_a_container_maps_its_numbers() -> None:
    """The session's root is in a pid namespace it did not make (attached inside a
    container): its numbers are not host pids; fork events map them (ret -> host)."""
    cont_ns = 4026532777

    def ex_c(pid: int) -> Event:
        return ex(pid, "/usr/bin/bash", ["bash"], ns=cont_ns)
    start_ev = EVENT_TYPES["session"](ts=next(_ts), session=S, pid=7000, tid=0, ppid=6999,
                                      phase="start", session_kind="attach", root_pid=7000,
                                      argv=["bash"], ns={"pid": cont_ns}, cwd=WS)
    base = [start_ev, ex_c(7000), fork(7000, 7001, ret=12)]
    # /proc/12/root is the session's own child (host 7001): quiet
    quiet = replay([*base, sc(7000, "bash", "chdir", "/proc/12/root")])
    assert not quiet, [a.summary for a in quiet]
    # /proc/40/root names nothing the session made: outside, as in the host namespace
    loud = hits(replay([*base, sc(7000, "bash", "chdir", "/proc/40/root")]))
    assert ("host_proc_access", "high", "kill") in loud


def test_ps_listing_options() -> None:
    def ctx(argv: list[str], exe: str = PS) -> Context:
        return Context(params={}, state={}, session=None,
                       proc=ProcView(pid=1, ppid=0, exe=exe, argv=argv, cwd=None))
    for argv in (["ps", "aux"], ["ps", "-ef"], ["ps", "-o", "pid,user,etime"], ["ps"],
                 ["ps", "-eo", "pid,comm"], ["ps", "--sort", "-pcpu", "aux"],
                 ["ps", "-eo", "pid,ppid,user,etime,args"], ["ps", "-p", "1", "-o", "user="]):
        assert ps_listing(ctx(argv)), argv
    for argv in (["ps", "e"], ["ps", "auxe"], ["ps", "eww"], ["ps", "-o", "pid", "axe"]):
        assert not ps_listing(ctx(argv)), argv
    assert not ps_listing(ctx(["ps", "aux"], exe="/tmp/ps"))  # a copy is not procps


def test_hostile_paths_do_not_raise() -> None:
    long = "/proc/777/" + "a" * 4090
    events = bare(op(5000, "x", long, target=777), op(5000, "x", "/proc/\udcff/environ"),
                  sc(5000, "x", "chdir", "/proc/99999999999999999999/root"),
                  op(5000, "x", "/proc/777/fd/" + "9" * 300, target=777))
    alerts = replay(events)
    assert all(a.detector in DETS for a in alerts)
