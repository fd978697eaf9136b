"""Escape, kernel and network detectors against REAL workloads (root): each test runs a
small payload as a watched session through `service.run.run` (the code path of
`agentwatch run`) under the default detectors, and checks the alert it raises: detector
id, severity, requested action and key fields. Techniques that would be harmful on the
host (mounts, namespaces, kernel knobs, a listener under /run) run inside bubblewrap
(private mount, pid and network namespaces; a read-only root). Only loopback addresses
are ever used: the egress test narrows the allowlist to 127.0.0.1/32 and moves the
"metadata" address to 127.0.0.3 rather than touching a real one.

Not covered live: privilege_escalation's set*id-to-0 transition (the tests run as root,
and a root session calling setuid(0) is no transition by design); the chmod u+s case is.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import bpf_unavailable
from tests.syscall_workload import PRELUDE

pytestmark = pytest.mark.bpf
PY = sys.executable
TIMEOUT = ["timeout", "-k", "5", "60"]  # every workload: 60 s at most


def _collector(detection: Any) -> Iterator[tuple[Any, Any]]:
    if os.geteuid() != 0:
        bpf_unavailable("loading BPF needs root")
    from service.pipeline import Collector
    from service.sinks import MemorySink

    alerts = MemorySink()
    c = Collector([], detection=detection, alert_sinks=[alerts])
    try:
        c.start()
    except Exception as e:  # any load failure is reported the same way
        bpf_unavailable(f"cannot load the probes: {e}")
    try:
        yield c, alerts
    finally:
        c.close()


@pytest.fixture(scope="module")
def detecting() -> Iterator[tuple[Any, Any]]:
    from detectors.config import defaults

    yield from _collector(defaults())


def bwrap(*extra: str) -> list[str]:
    path = shutil.which("bwrap")
    if not path:
        bpf_unavailable("bubblewrap is not installed (make setup installs it)")
    # As root, bubblewrap 0.8 keeps every capability in the sandbox and leaves the new
    # /proc/sys writable (kernel.core_pattern could be changed from inside): drop the
    # capabilities and cover /proc/sys read-only, so that every attempt here fails.
    return [str(path), "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
            "--ro-bind", "/proc/sys", "/proc/sys", "--cap-drop", "ALL",
            "--unshare-pid", "--unshare-net", "--die-with-parent", *extra]


SCRIPTS: list[Path] = []


@pytest.fixture(scope="module", autouse=True)
def scripts() -> Iterator[None]:
    """Payloads run from script files (removed at the end): `python -c CODE` would put
    the code in argv, where reverse_shell reads it (the prelude names `socket` and
    `dup2`: an interpreter one-liner with a socket and a shell, by its rules)."""
    SCRIPTS.append(Path(tempfile.mkdtemp(prefix="aw-live-b-")))
    try:
        yield
    finally:
        shutil.rmtree(SCRIPTS.pop())


def py(code: str) -> list[str]:
    script = SCRIPTS[-1] / f"payload-{len(list(SCRIPTS[-1].iterdir()))}.py"
    script.write_text(PRELUDE + textwrap.dedent(code))
    return [PY, str(script)]


def watch(detecting: tuple[Any, Any], argv: list[str]) -> tuple[int, list[Any]]:
    """Run argv (with a timeout) as a session: its exit status and its alerts."""
    from service.run import run

    collector, alerts = detecting
    mark = len(alerts.events)
    result = run(TIMEOUT + argv, collector=collector)
    collector.poll(10)
    return result.exit_status, [a for a in alerts.events[mark:]
                                if a.session == result.session]


def of(alerts: list[Any], detector: str) -> list[Any]:
    return [a for a in alerts if a.detector == detector and not a.folded]


def check(alert: Any, detector: str, severity: str, action: str) -> None:
    assert alert.detector == detector
    assert alert.severity == severity, alert
    assert alert.action["requested"] == action, alert.action


def one(alerts: list[Any], detector: str, **fields: Any) -> Any:
    found = [a for a in of(alerts, detector)
             if all(a.fields.get(k) == v for k, v in fields.items())]
    assert len(found) == 1, (detector, fields, [(a.key, a.fields) for a in alerts])
    return found[0]


# ------------------------------------------------------------------------------ escape


@pytest.mark.e2e
def test_namespace_escape_from_a_bubblewrap_payload(detecting) -> None:
    status, alerts = watch(detecting, bwrap() + py("""
        r1 = sc("unshare", 0x4000000)                       # CLONE_NEWUTS
        ns = os.open("/proc/self/ns/net", os.O_RDONLY)
        r2 = sc("setns", ns, 0x40000000)                    # CLONE_NEWNET: its own netns
        print("unshare", r1, "setns", r2)
    """))
    assert status == 0
    a = one(alerts, "namespace_escape", syscall="unshare")
    check(a, "namespace_escape", "critical", "kill")
    assert a.fields["namespaces"] == "CLONE_NEWUTS" and a.fields["comm"].startswith("python")
    assert a.fields["error"] == "EPERM"  # no capabilities left: the attempt counts
    a = one(alerts, "namespace_escape", syscall="setns")
    check(a, "namespace_escape", "critical", "kill")
    assert a.fields["namespaces"] == "CLONE_NEWNET" and a.fields["error"] == "EPERM"
    # /proc/self arrives resolved: the host pid
    (a,) = [a for a in of(alerts, "namespace_escape") if a.key.startswith("open:")]
    check(a, "namespace_escape", "critical", "kill")
    assert re.fullmatch(r"/proc/\d+/ns/net", a.fields["path"]) and a.fields["ret"] >= 0
    assert a.fields["namespaces"] == "net" and a.fields["syscall"] in ("open", "openat")
    # bubblewrap's own clone(CLONE_NEW*), mounts and pivot_root in this same session:
    # none of it alerted (every escape alert is the payload's, none is marked setup).
    escapes = of(alerts, "namespace_escape") + of(alerts, "mount_escape")
    assert len(escapes) == 3, [(a.detector, a.key) for a in escapes]
    assert all(a.event and not a.event.get("setup") and a.event.get("comm") != "bwrap"
               for a in escapes)


@pytest.mark.e2e
def test_mount_escape_from_a_bubblewrap_payload(detecting) -> None:
    status, alerts = watch(detecting, bwrap() + py("""
        r = sc("mount", "aw-tmpfs", "/tmp", "tmpfs", 0, "size=1m")  # in bwrap's mount ns
        assert r == -1, r                                   # EPERM: no capabilities
    """))
    assert status == 0
    a = one(alerts, "mount_escape")
    check(a, "mount_escape", "critical", "kill")
    assert a.fields["error"] == "EPERM"  # a refused attempt counts
    assert a.fields["syscall"] == "mount" and a.fields["path"] == "/tmp"
    assert a.fields["fstype"] == "tmpfs" and a.fields["source"] == "aw-tmpfs"
    assert not of(alerts, "namespace_escape")  # bubblewrap's setup is not flagged


def test_process_injection_on_an_outside_process(detecting) -> None:
    outsider = subprocess.Popen(["sleep", "30"])
    try:
        status, alerts = watch(detecting, py(f"""
            pid = {outsider.pid}
            assert sc("ptrace", 16, pid, 0, 0) == 0          # PTRACE_ATTACH
            local = buf(bytes(16))
            liov = buf(struct.pack("QQ", ctypes.addressof(local), 8))
            riov = buf(struct.pack("QQ", 8, 8))              # unmapped: EFAULT
            print("readv", sc("process_vm_readv", pid, liov, 1, riov, 1, 0))
            os.close(os.open(f"/proc/{{pid}}/mem", os.O_RDONLY))     # opened, never read
        """))
    finally:
        outsider.kill()
        outsider.wait(timeout=10)
    assert status == 0
    a = one(alerts, "process_injection", syscall="ptrace")
    check(a, "process_injection", "critical", "kill")
    assert a.fields["request"] == "PTRACE_ATTACH" and a.fields["target"] == outsider.pid
    assert a.fields["ret"] == 0
    a = one(alerts, "process_injection", syscall="process_vm_readv")
    check(a, "process_injection", "critical", "kill")
    assert a.fields["target"] == outsider.pid and a.fields["ret"] < 0
    a = one(alerts, "process_injection", request="mem")
    check(a, "process_injection", "critical", "kill")
    assert a.fields["path"] == f"/proc/{outsider.pid}/mem" and a.fields["target"] == outsider.pid
    assert len(of(alerts, "process_injection")) == 3


@pytest.mark.e2e
def test_kernel_tamper_bpf_and_core_pattern_in_bubblewrap(detecting) -> None:
    status, alerts = watch(detecting, bwrap() + py("""
        print("bpf", sc("bpf", 0, buf(bytes(72)), 72))      # BPF_MAP_CREATE, map_type 0
        attr = buf(struct.pack("IIQ", 1, 64, 0) + bytes(48))  # PERF_TYPE_SOFTWARE, CPU_CLOCK
        pfd = sc("perf_event_open", attr, 0, -1, -1, 8)
        if pfd >= 0:
            os.close(pfd)
        for path in ("/proc/sys/kernel/core_pattern",
                     "/proc/self/root/proc/sys/kernel/core_pattern"):
            try:
                os.close(os.open(path, os.O_WRONLY))        # never written
                print("opened", path)
            except OSError as e:
                print(path, e)
    """))
    assert status == 0
    a = one(alerts, "kernel_tamper", syscall="bpf")
    check(a, "kernel_tamper", "critical", "kill")
    assert a.fields["target"] == "BPF_MAP_CREATE" and a.fields["ret"] < 0
    a = one(alerts, "kernel_tamper", path="/proc/sys/kernel/core_pattern")
    check(a, "kernel_tamper", "critical", "kill")
    assert "O_WRONLY" in a.fields["flags"]
    assert a.fields["error"] == "EROFS"  # /proc/sys is covered read-only (see bwrap())
    a = one(alerts, "kernel_tamper", syscall="perf_event_open")
    check(a, "kernel_tamper", "critical", "kill")
    assert a.fields["target"] == "PERF_TYPE_SOFTWARE"
    # the same knob through /proc/self/root: the path arrives as /proc/<pid>/root/...
    (a,) = [a for a in of(alerts, "kernel_tamper") if "/root/" in a.fields["target"]]
    check(a, "kernel_tamper", "critical", "kill")
    assert re.fullmatch(r"/proc/\d+/root/proc/sys/kernel/core_pattern", a.fields["path"])
    assert a.fields["error"] == "EROFS"
    assert len(of(alerts, "kernel_tamper")) == 4


def test_privilege_escalation_setuid_bit(detecting, tmp_path: Path) -> None:
    """chmod u+s (coreutils: fchmodat), chmod(2) and an O_CREAT open with mode 04755.
    A set*id transition to 0 cannot be shown live here: the tests run as root, and a
    root process calling setuid(0) is no transition (by design)."""
    target, other, created = (tmp_path / n for n in ("suid-me", "suid-too", "created"))
    target.write_text("#!/bin/sh\n")
    other.write_text("#!/bin/sh\n")
    mode = target.stat().st_mode & 0o777
    payload = py(f"""
        assert sc("chmod", {str(other)!r}, 0o4755) == 0
        os.close(os.open({str(created)!r}, os.O_CREAT | os.O_WRONLY, 0o4755))
    """)
    try:
        status, alerts = watch(detecting, ["/bin/sh", "-c", f"chmod u+s {target} && "
                                           + " ".join(payload)])
    finally:
        for f in (target, other, created):
            f.unlink(missing_ok=True)
    assert status == 0
    a = one(alerts, "privilege_escalation", syscall="fchmodat")
    check(a, "privilege_escalation", "critical", "kill")
    assert a.fields["path"] == str(target) and a.fields["comm"] == "chmod"
    assert a.fields["what"] == f"setuid mode {0o4000 | mode:o}" and a.fields["ret"] == 0
    a = one(alerts, "privilege_escalation", syscall="chmod")
    check(a, "privilege_escalation", "critical", "kill")
    assert a.fields["path"] == str(other) and a.fields["what"] == "setuid mode 4755"
    (a,) = [a for a in of(alerts, "privilege_escalation") if a.fields["path"] == str(created)]
    check(a, "privilege_escalation", "critical", "kill")
    assert a.fields["what"] == "mode 4755" and a.fields["syscall"] in ("open", "openat")


def test_exploit_primitives(detecting) -> None:
    status, alerts = watch(detecting, py("""
        for fd in (sc("userfaultfd", 0x80000), sc("io_uring_setup", 4, buf(bytes(120)))):
            if fd >= 0:
                os.close(fd)
        sc("keyctl", 0, -3, 0)          # KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING
        master, slave = os.openpty()
        print("tiocsti", sc("ioctl", slave, 0x5412, buf(b"x")))  # into its own pty
        os.close(master); os.close(slave)
    """))
    assert status == 0
    for syscall in ("userfaultfd", "keyctl", "ioctl"):
        a = one(alerts, "exploit_primitive", syscall=syscall)
        check(a, "exploit_primitive", "high", "alert")
    # io_uring_setup is in the never-in-a-sandbox set: killed in enforce mode
    check(one(alerts, "forbidden_syscall", syscall="io_uring_setup"), "forbidden_syscall",
          "critical", "kill")
    assert one(alerts, "exploit_primitive", syscall="keyctl").fields["detail"] == \
        "KEYCTL_GET_KEYRING_ID"
    assert one(alerts, "exploit_primitive", syscall="ioctl").fields["detail"] == "TIOCSTI"
    assert one(alerts, "exploit_primitive", syscall="userfaultfd").fields["detail"] == \
        "O_CLOEXEC"


def test_monitor_tamper_signal_and_config_access(detecting) -> None:
    me = os.getpid()  # the collector's process: the live analyzer lists it
    status, alerts = watch(detecting, py(f"""
        assert sc("kill", {me}, 0) == 0                     # signal 0: a probe, harmless
        try:
            open("/etc/agentwatch/x").close()
        except OSError as e:
            print(e)
    """))
    assert status == 0
    a = one(alerts, "monitor_tamper", syscall="kill")
    check(a, "monitor_tamper", "critical", "kill")
    assert a.fields["target"] == f"pid {me}" and a.fields["ret"] == 0
    a = one(alerts, "monitor_tamper", path="/etc/agentwatch/x")
    check(a, "monitor_tamper", "critical", "kill")
    assert a.fields["error"] == "ENOENT"


@pytest.mark.e2e
def test_runtime_socket_in_bubblewrap(detecting) -> None:
    status, alerts = watch(detecting, bwrap("--tmpfs", "/run") + py("""
        srv = socket.socket(socket.AF_UNIX)
        srv.bind("/run/docker.sock")                        # a tmpfs /run of its own
        srv.listen(2)
        for path in ("/run/docker.sock", "/var/run/docker.sock", "/run/containerd/x"):
            c = socket.socket(socket.AF_UNIX)
            try:
                c.connect(path)
            except OSError as e:
                print(path, e)
            c.close()
        os.mkdir("/run/podman")
        os.chdir("/run")                                    # relative names from here
        pod = socket.socket(socket.AF_UNIX)
        pod.bind("podman/podman.sock")
        pod.listen(1)
        c = socket.socket(socket.AF_UNIX)
        c.connect("podman/podman.sock")
        c.close()
    """))
    assert status == 0
    a = one(alerts, "runtime_socket", syscall="bind", socket="/run/docker.sock")
    check(a, "runtime_socket", "critical", "kill")
    for syscall in ("bind", "connect"):  # resolved from the cwd
        a = one(alerts, "runtime_socket", syscall=syscall, socket="/run/podman/podman.sock")
        check(a, "runtime_socket", "critical", "kill")
        assert a.fields["ret"] == 0
    a = one(alerts, "runtime_socket", syscall="connect", socket="/run/docker.sock")
    check(a, "runtime_socket", "critical", "kill")
    assert a.fields["ret"] == 0
    a = one(alerts, "runtime_socket", syscall="connect", socket="/var/run/docker.sock")
    check(a, "runtime_socket", "critical", "kill")
    assert len(of(alerts, "runtime_socket")) == 5  # /run/containerd/x is not in the list


def test_runtime_socket_missing_docker_socket_attempt(detecting) -> None:
    if os.path.exists("/var/run/docker.sock"):
        pytest.skip("a real docker socket exists here: not connecting to it")
    status, alerts = watch(detecting, py("""
        c = socket.socket(socket.AF_UNIX)
        try:
            c.connect("/var/run//docker.sock")             # spelled oddly: same socket
        except OSError as e:
            print(e)
    """))
    assert status == 0
    a = one(alerts, "runtime_socket", syscall="connect")
    check(a, "runtime_socket", "critical", "kill")
    assert a.fields["socket"] == "/var/run/docker.sock" and a.fields["error"] == "ENOENT"


# ------------------------------------------------------------------------------ network

EXFIL_LABEL = "mzxw6ytboi2dsnrqgeztk5dtmvzhizlemfzwg3dfnz2gs4tfmvzgk3tumnqx"  # 60 chars
ENTROPY_LABEL = "k7q2xv9mzp4wb8ntr6ys3hdj5fgclae"                        # 31 distinct


def test_dns_exfil_long_and_high_entropy_labels(detecting) -> None:
    status, alerts = watch(detecting, py(f"""
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.sendto(dns_query({EXFIL_LABEL + ".x.example"!r}), ("127.0.0.1", 53))
        udp.sendto(dns_query({ENTROPY_LABEL + ".y.example"!r}), ("127.0.0.1", 53))
        udp.sendto(dns_query("www.example.com"), ("127.0.0.1", 53))   # benign: no alert
    """))
    assert status == 0
    a = one(alerts, "dns_exfil", domain="x.example")
    check(a, "dns_exfil", "high", "alert")
    assert a.fields["query"] == EXFIL_LABEL + ".x.example"
    assert a.fields["label_length"] == 60 and a.fields["reason"] == "label of 60 chars"
    a = one(alerts, "dns_exfil", domain="y.example")
    check(a, "dns_exfil", "high", "alert")
    assert a.fields["entropy"] > 4.0 and a.fields["reason"].startswith("label entropy")
    assert len(of(alerts, "dns_exfil")) == 2


def test_reverse_shell_dup2_and_dev_tcp(detecting) -> None:
    if not shutil.which("bash"):
        bpf_unavailable("bash is needed for the /dev/tcp workload")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    try:
        status, alerts = watch(detecting, py(f"""
            import subprocess
            s = socket.create_connection(("127.0.0.1", {port}))
            def redirect():
                assert sc("dup2", s.fileno(), 1) == 1
            child(redirect)
            s.close()
            subprocess.run(["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/{port}"], check=True,
                           timeout=20)
        """))
    finally:
        listener.close()
    assert status == 0
    a = one(alerts, "reverse_shell", syscall="dup2")
    check(a, "reverse_shell", "critical", "kill")
    assert a.fields["fd"] == 1 and "onto fd 1" in a.fields["how"]
    (a,) = [a for a in of(alerts, "reverse_shell") if "filename" in a.fields]
    check(a, "reverse_shell", "critical", "kill")
    assert a.fields["how"] == "shell with a /dev/tcp or /dev/udp redirection"
    assert a.fields["argv"] == ["bash", "-c", f"exec 3<>/dev/tcp/127.0.0.1/{port}"]


@pytest.fixture(scope="module")
def egress_detecting(detecting) -> Iterator[tuple[Any, Any]]:  # after the defaults' tests
    from detectors.config import defaults

    cfg = defaults()
    params = cfg.detectors["egress_violation"].params
    params["allow"] = ["127.0.0.1/32"]
    params["metadata"] = ["127.0.0.3/32"]  # a loopback stand-in: never the real address
    yield from _collector(cfg)


def test_egress_violation_and_metadata_on_loopback(egress_detecting) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.2", 0))
    listener.listen(4)
    port = listener.getsockname()[1]
    try:
        status, alerts = watch(egress_detecting, py(f"""
            socket.create_connection(("127.0.0.2", {port})).close()   # outside the allowlist
            for family, addr in ((socket.AF_INET, "127.0.0.3"),   # the "metadata" address
                                 (socket.AF_INET6, "::ffff:127.0.0.3"),  # v4-mapped
                                 (socket.AF_INET6, "::ffff:127.0.0.1")):  # allowed
                c = socket.socket(family)
                try:
                    c.connect((addr, {port}))
                except OSError as e:
                    print(addr, e)
                c.close()
        """))
    finally:
        listener.close()
    assert status == 0
    a = one(alerts, "egress_violation", address="127.0.0.2")
    check(a, "egress_violation", "high", "alert")
    assert a.fields["port"] == port and a.fields["metadata"] is False and a.fields["ret"] == 0
    assert a.fields["syscall"] == "connect"
    a = one(alerts, "egress_violation", address="127.0.0.3")
    check(a, "egress_violation", "critical", "alert")
    assert a.fields["metadata"] is True and a.fields["error"] == "ECONNREFUSED"
    (a,) = [a for a in of(alerts, "egress_violation") if a.fields["address"].startswith("::")]
    check(a, "egress_violation", "critical", "alert")
    assert a.fields["metadata"] is True and a.key == f"[{a.fields['address']}]:{port}"
    assert len(of(alerts, "egress_violation")) == 3
