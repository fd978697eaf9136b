"""Escape-family detectors over recorded-shape fixtures (no root): namespace, mount,
process injection, kernel, privilege, exploit primitives, monitor tamper, runtime sockets.

Each fixture is a launcher session: bubblewrap's setup (setup: true unshare, mounts,
pivot_root, capset), sandbox-runtime's apply-seccomp (unshare + /proc mount), then the
payload. Negatives add a benign agent (git, pip through the loopback proxy, curl to
loopback, DNS for pypi.org) and near misses."""

from __future__ import annotations

from typing import Any

import pytest

from tests.detector_fixtures import alerts_of, load_events, summary

MONITOR = {"monitor_tamper": {"monitor_pids": ["812", "813"]}}

EXPECTED: dict[str, list[tuple[str, str, str]]] = {  # severity, requested action, key
    "namespace_escape": [
        ("critical", "kill", "unshare:CLONE_NEWUSER,CLONE_NEWNS"),
        ("critical", "kill", "setns:CLONE_NEWNS"),
        ("critical", "kill", "clone:CLONE_NEWNET"),
        ("critical", "kill", "open:/proc/1/ns/mnt"),
        # a bwrap the payload started: its setup is the payload's own doing
        ("critical", "kill", "nested_launcher:30021"),
    ],
    "mount_escape": [
        ("critical", "kill", "mount:/mnt"),
        ("critical", "kill", "chroot:/mnt"),
        ("critical", "kill", "open_tree:/"),
        ("critical", "kill", "pivot_root:/tmp/r"),  # apply-seccomp may mount, not pivot
    ],
    "process_injection": [
        ("critical", "kill", "ptrace:31"),
        ("critical", "kill", "process_vm_readv:4242"),
        ("critical", "kill", "openat:31"),
    ],
    "kernel_tamper": [
        ("critical", "kill", "finit_module:-"),
        ("critical", "kill", "bpf:BPF_PROG_LOAD"),
        ("critical", "kill", "write:/proc/sys/kernel/core_pattern"),
        ("critical", "kill", "write:/proc/sysrq-trigger"),
    ],
    "privilege_escalation": [
        ("critical", "kill", "chmod:/tmp/sh"),
        ("critical", "kill", "setuid:uid 1000 -> 0"),
        ("critical", "kill", "capset:CAP_SYS_ADMIN"),
        ("critical", "kill", "setxattr:/tmp/py"),
    ],
    "exploit_primitive": [
        ("high", "alert", "userfaultfd:O_CLOEXEC"),
        ("high", "alert", "ioctl:TIOCSTI"),
        ("high", "alert", "socket:AF_PACKET/SOCK_RAW"),
        ("high", "alert", "socket:AF_INET/SOCK_RAW"),
    ],
    "monitor_tamper": [
        ("critical", "kill", "kill:812"),
        ("critical", "kill", "pidfd_send_signal:813"),
        ("critical", "kill", "open:/etc/agentwatch/agentwatch.toml"),
        ("critical", "kill", "unlink:/sys/fs/bpf/agentwatch/watched"),
    ],
    "runtime_socket": [
        ("critical", "kill", "connect:/var/run/docker.sock"),
        ("critical", "kill", "sendto:/run/dbus/system_bus_socket"),
        ("critical", "kill", "openat:/run/containerd/containerd.sock"),
    ],
}


@pytest.mark.parametrize("detector", list(EXPECTED))
def test_positive_fixture_raises_exactly_the_expected_alerts(detector: str) -> None:
    alerts = alerts_of(detector, "positive", MONITOR if detector == "monitor_tamper" else None)
    assert summary(alerts) == [(detector, *e) for e in EXPECTED[detector]]
    for a in alerts:
        assert a.summary.split(" | ")[0] and a.event is not None and a.mitre
        assert a.action["taken"] == ("alert" if a.action["requested"] == "alert" else "none")


@pytest.mark.parametrize("detector", list(EXPECTED))
def test_negative_fixture_raises_nothing(detector: str) -> None:
    # bubblewrap's setup and apply-seccomp are in every negative: none of them may alert
    events = load_events(detector, "negative")
    assert any(ev.setup for ev in events)
    assert alerts_of(detector, "negative", MONITOR) == []


def test_monitor_tamper_without_monitor_pids_flags_only_paths() -> None:
    keys = [a.key for a in alerts_of("monitor_tamper", "positive")]
    assert keys == ["open:/etc/agentwatch/agentwatch.toml",
                    "unlink:/sys/fs/bpf/agentwatch/watched"]


def test_apply_seccomp_allowance_is_a_param() -> None:
    # without the default allowance, sandbox-runtime's helper's unshare and /proc mount alert
    ns = alerts_of("namespace_escape", "negative",
                   {"namespace_escape": {"allowed_exes": []}})
    assert [a.key for a in ns] == ["unshare:CLONE_NEWNS,CLONE_NEWPID"]
    mnt = alerts_of("mount_escape", "negative", {"mount_escape": {"allowed_exes": []}})
    assert [a.key for a in mnt] == ["mount:/proc"]


def test_process_injection_children_allowance() -> None:
    # with PEEKDATA counted: bash's PEEKDATA on its own child (pid 6 in its namespace)
    # alerts unless allow_children
    flagged = alerts_of("process_injection", "positive",
                        {"process_injection": {"allow_children": True,
                                               "ptrace_requests": ["PTRACE_PEEKDATA"]}})
    assert [a.key for a in flagged] == ["process_vm_readv:4242", "openat:31"]
    peek = alerts_of("process_injection", "negative",
                     {"process_injection": {"ptrace_requests": ["PTRACE_PEEKDATA"]}})
    assert [a.key for a in peek] == ["ptrace:6"]
    assert alerts_of("process_injection", "negative",
                     {"process_injection": {"ptrace_requests": ["PTRACE_PEEKDATA"],
                                            "allow_children": True}}) == []


def test_exception_by_path_suppresses() -> None:
    cfg = {"kernel_tamper": {"exceptions": [{"path": "/proc/sysrq-trigger"}]}}
    keys = [a.key for a in alerts_of("kernel_tamper", "positive", cfg)]
    assert "write:/proc/sysrq-trigger" not in keys and len(keys) == 3


def test_exception_by_exe_suppresses() -> None:
    # the engine matches exe exceptions on the process view (built from the exec events)
    cfg = {"namespace_escape": {"exceptions": [{"exe": "/usr/bin/bwrap"}]}}
    keys = [a.key for a in alerts_of("namespace_escape", "positive", cfg)]
    assert "nested_launcher:30021" not in keys and len(keys) == 4


def test_action_and_severity_come_from_config() -> None:
    cfg = {"runtime_socket": {"action": "freeze", "severity": "high"}}
    alerts = alerts_of("runtime_socket", "positive", cfg)
    assert {(a.severity, a.action["requested"]) for a in alerts} == {("high", "freeze")}


def _payload_like(last: Any, cls: type, **kw: Any) -> Any:
    """An event of the positive fixture's payload process (same session, pid, comm)."""
    base = {k: getattr(last, k) for k in ("session", "pid", "tid", "ppid", "uid", "gid",
                                           "comm", "cgroup")}
    return cls(ts=last.ts + 1000, **base, **kw)


def test_monitor_tamper_covers_threads_sockets_and_its_own_files() -> None:
    """The routes added for the live daemon: tkill of one of agentwatch's threads, its
    control socket under /run/agentwatch, and a config file and log directory outside
    the default places (the live analyzer adds the daemon's own ones: protect_self)."""
    from collector.events import ConnectEvent, OpenEvent, SyscallEvent
    from service.analysis import protect_self
    from tests.detector_fixtures import config, replay

    events = load_events("monitor_tamper", "positive")
    last = events[-1]
    events += [
        _payload_like(last, SyscallEvent, ret=-1, syscall="tkill",
                      args={"tid": 814, "sig": "SIGSTOP"}),
        _payload_like(last, ConnectEvent, ret=0, family="AF_UNIX",
                      address="/run/agentwatch/control-812.sock", fd=4),
        _payload_like(last, OpenEvent, ret=3, syscall="openat", path="/srv/aw/config.toml",
                      raw_path="/srv/aw/config.toml", flags=0o1),
        _payload_like(last, OpenEvent, ret=3, syscall="openat", path="/srv/aw/log/x.jsonl",
                      raw_path="/srv/aw/log/x.jsonl", flags=0),
        _payload_like(last, OpenEvent, ret=3, syscall="openat", path="/srv/aw/other.toml",
                      raw_path="/srv/aw/other.toml", flags=0),
    ]
    cfg = config({"monitor_tamper": {"monitor_pids": ["812", "813", "814"]}})
    protect_self(cfg.detectors["monitor_tamper"].params, ["/srv/aw/config.toml",
                                                           "/srv/aw/log"])
    keys = [a.key for a in replay(events, cfg)
            if a.detector == "monitor_tamper" and not a.folded]
    assert keys[-4:] == ["tkill:814", "connect:/run/agentwatch/control-812.sock",
                         "open:/srv/aw/config.toml", "open:/srv/aw/log/x.jsonl"]


def test_monitor_tamper_in_the_kernel_policy() -> None:
    """enforce mode: signals and pidfd_open aimed at agentwatch, and its literal paths,
    are the kernel's to kill for; monitor mode or an exception: user space's."""
    import os

    from detectors.config import parse
    from response import enforce

    pol = enforce.policy_for(parse({"mode": "enforce", "detectors": {"monitor_tamper": {
        "monitor_pids": ["4242"], "paths": ["/srv/aw/config.toml", "/etc/agentwatch/**",
                                            "~/x/*"]}}}, "<t>"))
    assert "monitor_tamper" in pol.detectors
    assert 4242 in pol.protected and os.getpid() in pol.protected
    if enforce._host_pid_ns() is not None:
        assert pol.mask & enforce.EN_MONITOR
        signals = ("kill", "tkill", "tgkill", "pidfd_open")
        assert {c: pol.syscalls[c] for c in signals} == dict.fromkeys(signals,
                                                                      enforce.SE_SIGNAL)
    why = enforce.WHY_CODE["monitor_tamper"] | enforce.DENY_DIR | enforce.DENY_LIST
    assert pol.deny_paths["/srv/aw/config.toml"] == why
    assert pol.deny_paths["/etc/agentwatch"] == why
    # only the sensitive entries of its /proc (ps and top read stat, status, cmdline)
    me = os.getpid()
    assert f"/proc/{me}" not in pol.deny_paths and f"/proc/{me}/stat" not in pol.deny_paths
    proc_why = enforce.WHY_CODE["monitor_tamper"] | enforce.DENY_DIR
    for entry in ("mem", "fd", "root", "cwd", "map_files", "maps", "pagemap"):
        # fd/ and map_files/ may be listed by a tree walk (read-only O_DIRECTORY opens)
        want = proc_why | (enforce.DENY_LIST if entry in ("fd", "map_files") else 0)
        assert pol.deny_paths[f"/proc/{me}/{entry}"] == want
        assert pol.deny_paths[f"/proc/{me}/task/{me}/{entry}"] == want
    assert f"/proc/{me}/environ" not in pol.deny_paths  # procps ps opens it: user space's
    assert not [p for p in pol.deny_paths if p.endswith("/*")]  # globs: user space's
    off = enforce.policy_for(parse({"mode": "monitor"}, "<t>"))
    assert not off.mask and not off.protected
    excepted = enforce.policy_for(parse({"mode": "enforce", "detectors": {"monitor_tamper": {
        "exceptions": [{"exe": "/usr/bin/ps"}]}}}, "<t>"))
    assert "monitor_tamper" not in excepted.detectors and not excepted.protected
