"""`agentwatch doctor`: what this host can do for agentwatch, found by trying each thing.

Every capability is tested by doing it, never by reading a kernel version or a config
option: a real BPF program is compiled, loaded and attached and seen to act, a real cgroup is
made, bubblewrap is really run. One line per capability, in this order:

 1. root and capabilities  (must)         euid 0 and CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN,
                                           CAP_KILL in the effective set: needed to load BPF.
 2. BTF                    (optional)     /sys/kernel/btf/vmlinux: needed by fentry and LSM.
 3. tracefs                (must)         BCC reads tracepoint formats from it (mounted if not).
 4. kernel headers         (must)         BCC compiles C at load time; a tracepoint program is
                                           compiled, loaded and attached.
 5. ring buffer            (must)         how events reach user space: one event is sent and read.
 6. bpf_send_signal        (recommended)  enforcement: a forked child is killed from a tracepoint.
 7. cgroup v2              (recommended)  a child cgroup with cgroup.kill and cgroup.freeze.
 8. cgroup sock_addr hooks (recommended)  a connect4 program refuses a loopback connect (EPERM).
 9. kprobes                (optional)     attach to a kernel function.
10. fentry                 (optional)     KFUNC_PROBE: cheaper kernel-function probes (needs BTF).
11. BPF LSM                (optional)     LSM_PROBE: in-kernel policy decisions (needs BTF).
12. bubblewrap             (recommended)  the sandbox that agents are run in.

Each check cleans up whatever it made (BPF objects, cgroups, child processes), catches its own
errors and reports a one-line reason; the compiler and verifier output that BCC writes to
stderr is captured and only its gist is shown. `main()` returns 1 when a must-have is missing.
"""

from __future__ import annotations

import contextlib
import ctypes as ct
import errno
import json
import os
import platform
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from probes import kernel
from response.cgroup import cgroup2_mount
from service.doctor_kit import (
    Check,
    Level,
    Status,
    StderrCapture,
    bpf_object,
    format_check,
    kill_and_reap,
    reason,
    short,
    temp_cgroup,
    wait_child,
    with_cleanup_errors,
)

BTF_PATH = Path("/sys/kernel/btf/vmlinux")
BTF_MAGIC = 0xEB9F
# Bit numbers in the capability sets of /proc/<pid>/status (linux/capability.h).
REQUIRED_CAPS = {"CAP_BPF": 39, "CAP_PERFMON": 38, "CAP_SYS_ADMIN": 21, "CAP_KILL": 5}


# --------------------------------------------------------------------------- checks


def check_root() -> Check:
    name = "root and capabilities"
    euid = os.geteuid()
    try:
        status_text = Path("/proc/self/status").read_text()
        m = re.search(r"^CapEff:\s*([0-9a-fA-F]+)$", status_text, re.M)
        capeff = int(m.group(1), 16) if m else 0
    except OSError as e:
        return Check(name, "missing", "must", f"cannot read /proc/self/status: {e.strerror}",
                     "run as root")
    lacking = [cap for cap, bit in REQUIRED_CAPS.items() if not capeff >> bit & 1]
    if euid == 0 and not lacking:
        return Check(name, "ok", "must", "euid 0; effective " + ", ".join(REQUIRED_CAPS))
    problems = []
    if euid != 0:
        problems.append(f"euid is {euid}, not 0")
    if lacking:
        problems.append("effective set lacks " + ", ".join(lacking))
    return Check(name, "missing", "must", "; ".join(problems),
                 "run as root with full capabilities (sudo agentwatch doctor)")


def check_btf() -> Check:
    name = "BTF"
    try:
        with BTF_PATH.open("rb") as f:
            head = f.read(2)
        size = BTF_PATH.stat().st_size
    except OSError as e:
        return Check(name, "unavailable", "optional", f"{BTF_PATH}: {e.strerror}",
                     "a kernel built with CONFIG_DEBUG_INFO_BTF (only fentry/LSM need it)")
    if len(head) < 2 or struct.unpack("=H", head)[0] != BTF_MAGIC:
        return Check(name, "unavailable", "optional", f"{BTF_PATH} does not start with the "
                     "BTF magic 0xeB9F", "a kernel built with CONFIG_DEBUG_INFO_BTF")
    detail = f"{BTF_PATH} readable, BTF magic 0xeB9F"
    if size:
        detail += f", {size / 2**20:.1f} MiB"
    return Check(name, "ok", "optional", detail)


def check_tracefs() -> Check:
    try:
        return Check("tracefs", "ok", "must", kernel.ensure_tracefs())
    except kernel.SetupError as e:
        return Check("tracefs", "missing", "must", short(str(e)),
                     f"as root: mount -t tracefs nodev {kernel.TRACEFS}")
    except OSError as e:  # e.g. EACCES on /sys/kernel/tracing when not root
        return Check("tracefs", "missing", "must",
                     f"cannot use {kernel.TRACEFS}: {e.strerror or e}", "run as root")


def _headers_fix() -> str:
    arch = kernel._DEB_ARCH.get(platform.machine(), platform.machine())
    return ("install the distribution's kernel headers "
            f"(Debian: apt-get install linux-headers-{arch})")


def check_kernel_headers(tracefs_ok: bool = True) -> Check:
    name = "kernel headers"
    try:
        where = kernel.ensure_kernel_headers()
    except kernel.SetupError as e:
        return Check(name, "missing", "must", short(str(e)), _headers_fix())
    except OSError as e:  # the merged tree goes under the state directory
        return Check(name, "missing", "must", f"cannot prepare headers under "
                     f"{kernel.state_dir()}: {e.strerror or e}", "run as root")
    if not tracefs_ok:
        return Check(name, "missing", "must", f"{where}; compile not tried: "
                     "tracepoint programs need tracefs", f"mount tracefs at {kernel.TRACEFS}")
    text = "TRACEPOINT_PROBE(syscalls, sys_enter_getppid) { return 0; }"
    cap = StderrCapture()
    try:
        with cap, bpf_object(text):
            pass
    except Exception as e:  # BCC raises plain Exception
        return Check(name, "missing", "must", f"{reason(e, cap.text)} (headers: "
                     f"{short(where, 100)})", _headers_fix())
    return Check(name, "ok", "must",
                 f"a tracepoint program compiled, loaded and attached; headers: {where}")


_RINGBUF_TEXT = r"""
BPF_RINGBUF_OUTPUT(events, 1);
TRACEPOINT_PROBE(syscalls, sys_enter_getppid) {
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    if (tgid != TARGET_PID)
        return 0;
    events.ringbuf_output(&tgid, sizeof(tgid), 0);
    return 0;
}
"""


def check_ring_buffer() -> Check:
    name = "ring buffer"
    me = os.getpid()
    got: list[int] = []

    def on_event(_ctx: Any, data: Any, _size: int) -> None:
        got.append(ct.cast(data, ct.POINTER(ct.c_uint32)).contents.value)

    cap = StderrCapture()
    try:
        with cap, bpf_object(_RINGBUF_TEXT, [f"-DTARGET_PID={me}"]) as b:
            b[b"events"].open_ring_buffer(on_event)
            deadline = time.monotonic() + 2.0
            while me not in got and time.monotonic() < deadline:
                os.getppid()
                b.ring_buffer_poll(200)
    except Exception as e:
        return Check(name, "missing", "must", reason(e, cap.text),
                     "a kernel with BPF ring buffers (BPF_MAP_TYPE_RINGBUF, Linux 5.8+)")
    if me in got:
        return Check(name, "ok", "must", "event received through a 4 KiB BPF ring buffer")
    return Check(name, "missing", "must", "program attached but no event arrived within 2 s",
                 "a kernel with working BPF ring buffers and syscall tracepoints")


_SIGNAL_TEXT = r"""
TRACEPOINT_PROBE(syscalls, sys_enter_getppid) {
    if ((bpf_get_current_pid_tgid() >> 32) == TARGET_PID)
        bpf_send_signal(9);
    return 0;
}
"""


def _loop_getppid(seconds: float) -> None:
    """Body of a forked child: call getppid() until killed, then give up on its own."""
    code = 0
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            os.getppid()
            time.sleep(0.005)
    except BaseException:  # a forked child must never return into the caller
        code = 1
    finally:
        os._exit(code)


def check_send_signal() -> Check:
    name = "bpf_send_signal"
    pid = os.fork()
    if pid == 0:
        _loop_getppid(15.0)
    reaped = False
    cap = StderrCapture()
    try:
        with cap, bpf_object(_SIGNAL_TEXT, [f"-DTARGET_PID={pid}"]):
            status = wait_child(pid, 3.0)
        if status is None:
            return Check(name, "unavailable", "recommended",
                         "child still alive 3 s after the program was attached",
                         "a kernel with bpf_send_signal (Linux 5.3+)")
        reaped = True
        if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL:
            return Check(name, "ok", "recommended",
                         "a child calling getppid() was killed with SIGKILL from a tracepoint")
        return Check(name, "unavailable", "recommended",
                     f"child ended without SIGKILL (wait status {status:#x})",
                     "a kernel with bpf_send_signal (Linux 5.3+)")
    except Exception as e:
        return Check(name, "unavailable", "recommended", reason(e, cap.text),
                     "a kernel with bpf_send_signal (Linux 5.3+)")
    finally:
        if not reaped:
            kill_and_reap(pid)


def check_cgroup_v2() -> Check:
    name = "cgroup v2"
    root = cgroup2_mount()
    if root is None:
        return Check(name, "missing", "recommended", "no cgroup2 file system in /proc/self/mounts",
                     "mount -t cgroup2 none /sys/fs/cgroup (or /sys/fs/cgroup/unified)")
    errors: list[str] = []
    try:
        with temp_cgroup(root, errors) as cg:
            absent = [f for f in ("cgroup.kill", "cgroup.freeze") if not (cg / f).exists()]
    except OSError as e:
        return Check(name, "missing", "recommended",
                     f"{root}: cannot make a child cgroup: {e.strerror}",
                     f"run as root with {root} writable")
    if absent:
        result = Check(name, "unavailable", "recommended",
                       f"{root}: a child cgroup has no {' or '.join(absent)}",
                       "a kernel with cgroup.kill (5.14+) and cgroup.freeze (5.2+)")
    else:
        result = Check(name, "ok", "recommended",
                       f"{root}: a child cgroup has cgroup.kill and cgroup.freeze")
    return with_cleanup_errors(result, errors)


_SOCK_ADDR_TEXT = r"""
int deny_connect4(struct bpf_sock_addr *ctx) {
    return 0;  /* 0 = refuse: connect() fails with EPERM */
}
"""


def _connect_from_cgroup(cg: Path, port: int, wfd: int) -> None:
    """Body of a forked child: join `cg`, connect to 127.0.0.1:port, report through `wfd`."""
    code = 0
    try:
        (cg / "cgroup.procs").write_text(str(os.getpid()))
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(2.0)
        try:
            s.connect(("127.0.0.1", port))
            msg = "connected"
        except OSError as e:
            msg = "EPERM" if e.errno == errno.EPERM else f"connect failed: {e}"
        finally:
            s.close()
        os.write(wfd, msg.encode())
    except BaseException as e:  # a forked child must never return into the caller
        code = 1
        with contextlib.suppress(OSError):
            os.write(wfd, f"child failed: {e}".encode())
    finally:
        os._exit(code)


def _read_with_timeout(fd: int, timeout: float) -> str:
    ready, _, _ = select.select([fd], [], [], timeout)
    return os.read(fd, 512).decode(errors="replace") if ready else ""


def check_sock_addr() -> Check:
    name = "cgroup sock_addr hooks"
    fix = "a kernel with BPF_PROG_TYPE_CGROUP_SOCK_ADDR (4.17+) and cgroup v2"
    root = cgroup2_mount()
    if root is None:
        return Check(name, "unavailable", "recommended", "not tried: no cgroup v2 mounted",
                     "mount cgroup v2 (see cgroup v2)")
    from bcc import BPF, BPFAttachType

    attach_type = BPFAttachType.CGROUP_INET4_CONNECT
    cap = StderrCapture()
    errors: list[str] = []
    outcome = ""
    try:
        with cap, bpf_object(_SOCK_ADDR_TEXT) as b, temp_cgroup(root, errors) as cg, \
                socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen(1)
            port = listener.getsockname()[1]
            # BCC 0.26: the expected attach type must be given at load time, or the kernel
            # refuses to attach a sock_addr program anywhere but bind4.
            fn = b.load_func(b"deny_connect4", BPF.CGROUP_SOCK_ADDR, attach_type=attach_type)
            cg_fd = os.open(cg, os.O_RDONLY | os.O_DIRECTORY)
            try:
                b.attach_func(fn, cg_fd, attach_type)
                try:
                    outcome = _run_connect_child(cg, port)
                finally:
                    b.detach_func(fn, cg_fd, attach_type)
            finally:
                os.close(cg_fd)
    except Exception as e:
        result = Check(name, "unavailable", "recommended", reason(e, cap.text), fix)
    else:
        if outcome == "EPERM":
            result = Check(name, "ok", "recommended", "a connect4 program on a temporary cgroup "
                           "made a loopback connect() fail with EPERM")
        else:
            result = Check(name, "unavailable", "recommended", "connect4 program attached, but "
                           f"the child got: {outcome or 'no answer'}", fix)
    return with_cleanup_errors(result, errors)


def _run_connect_child(cg: Path, port: int) -> str:
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(rfd)
        _connect_from_cgroup(cg, port, wfd)
    os.close(wfd)
    reaped = False
    try:
        outcome = _read_with_timeout(rfd, 3.0)
        reaped = wait_child(pid, 1.0) is not None
        return outcome
    finally:
        os.close(rfd)
        if not reaped:
            kill_and_reap(pid)


_HIT_COUNTER = r"""
BPF_ARRAY(hits, u64, 1);
static __always_inline void count_hit(void) {
    if ((bpf_get_current_pid_tgid() >> 32) != TARGET_PID)
        return;
    int zero = 0;
    u64 *v = hits.lookup(&zero);
    if (v)
        __sync_fetch_and_add(v, 1);
}
"""


def _try_hook(name: str, body: str, attach: Callable[[Any], None] | None,
              trigger: Callable[[], object], fix: str, never_ran: str) -> Check:
    """Load (and attach) an optional kind of probe that counts calls by this process, do
    something that should fire it, and check that it ran."""
    cap = StderrCapture()
    try:
        with cap, bpf_object(_HIT_COUNTER + body, [f"-DTARGET_PID={os.getpid()}"]) as b:
            if attach is not None:
                attach(b)
            for _ in range(3):
                trigger()
            hits = sum(v.value for v in b[b"hits"].values())
    except Exception as e:
        return Check(name, "unavailable", "optional", reason(e, cap.text), fix)
    if hits:
        return Check(name, "ok", "optional", f"loaded, attached and ran ({hits} hits)")
    return Check(name, "unavailable", "optional", never_ran, fix)


def _read_a_file() -> None:
    fd = os.open("/proc/self/stat", os.O_RDONLY)
    try:
        os.read(fd, 64)
    finally:
        os.close(fd)


def check_kprobes() -> Check:
    def attach(b: Any) -> None:
        b.attach_kprobe(event=b.get_syscall_fnname(b"getpid"), fn_name=b"on_getpid")

    return _try_hook("kprobes", "int on_getpid(struct pt_regs *ctx) { count_hit(); return 0; }",
                     attach, os.getpid, "a kernel built with CONFIG_KPROBES (not required)",
                     "kprobe attached on getpid but never ran")


def check_fentry() -> Check:
    return _try_hook("fentry", "KFUNC_PROBE(vfs_read) { count_hit(); return 0; }", None,
                     _read_a_file, "a kernel with BPF trampolines and BTF that allows "
                     "BPF_PROG_TYPE_TRACING (not required)", "fentry on vfs_read never ran")


def check_lsm() -> Check:
    # A program can load even when "bpf" is not an active LSM; then the hook never runs.
    return _try_hook("BPF LSM",
                     "LSM_PROBE(file_open, struct file *file) { count_hit(); return 0; }",
                     None, _read_a_file, "boot with 'bpf' in lsm= and allow BPF_PROG_TYPE_LSM "
                     "(not required)", "LSM_PROBE(file_open) loaded but never ran: "
                     "'bpf' is not among the active LSMs")


def check_agentwatch_probes() -> Check:
    """Load agentwatch's own probes, all of them, as `run` and `daemon` do."""
    name = "agentwatch probes"
    from probes import loader

    try:
        probes = loader.load()
    except kernel.SetupError as e:
        return Check(name, "missing", "must", str(e).splitlines()[0][:300],
                     "the compiler or verifier output is on stderr; `agentwatch run "
                     "--ebpf` prints the program")
    try:
        progs = len(probes.bcc.funcs)
        result = probes.syscalls
    finally:
        probes.bcc.cleanup()
    detail = f"{progs} programs loaded and attached"
    if result is not None:
        total = len(result.attached) + len(result.missing) + len(result.failed)
        detail += f"; generic syscall probe on {len(result.attached)} of {total} syscalls"
        if result.missing:
            detail += f" (no tracepoint here: {', '.join(result.missing)})"
        if result.failed:
            detail += f" (attach failed: {', '.join(sorted(result.failed))})"
    return Check(name, "ok", "must", detail)


def check_bubblewrap() -> Check:
    name = "bubblewrap"
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return Check(name, "missing", "recommended", "bwrap not found in PATH",
                     "apt-get install bubblewrap")
    cmd = [bwrap, "--ro-bind", "/", "/", "--unshare-pid", "--dev", "/dev", "--proc", "/proc",
           "true"]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    except subprocess.TimeoutExpired:
        return Check(name, "missing", "recommended", "bwrap did not finish within 10 s",
                     "check that user and PID namespaces are allowed")
    except OSError as e:
        return Check(name, "missing", "recommended", f"cannot run {bwrap}: {e.strerror}",
                     "apt-get install bubblewrap")
    if r.returncode != 0:
        err = (r.stderr.strip().splitlines() or [f"exit {r.returncode}"])[-1]
        return Check(name, "missing", "recommended", short(f"bwrap failed: {err}"),
                     "allow namespaces for bwrap (e.g. kernel.unprivileged_userns_clone=1, "
                     "AppArmor profile)")
    return Check(name, "ok", "recommended",
                 f"{bwrap} ran `true` with a new PID namespace, /dev and /proc")


# --------------------------------------------------------------------------- driver

def _guarded(name: str, level: Level, fn: Callable[[], Check]) -> Check:
    """Run one check; an unexpected error becomes that check's line, never a traceback."""
    try:
        return fn()
    except Exception as e:
        status: Status = "missing" if level == "must" else "unavailable"
        return Check(name, status, level, short(f"check failed: {type(e).__name__}: {e}"),
                     "report this as an agentwatch bug")


def _not_tried(name: str, level: Level) -> Check:
    status: Status = "unavailable" if level == "optional" else "missing"
    return Check(name, status, level, "not tried: BCC cannot compile programs here "
                 "(see tracefs and kernel headers)", "fix the must-have lines first")


def run_checks() -> list[Check]:
    """Every check, in the documented order. The BPF checks are only tried once BCC has been
    seen to compile and attach a program (tracefs and kernel headers)."""
    root = _guarded("root and capabilities", "must", check_root)
    btf = _guarded("BTF", "optional", check_btf)
    tracefs = _guarded("tracefs", "must", check_tracefs)
    headers = _guarded("kernel headers", "must", lambda: check_kernel_headers(tracefs.ok))
    bcc_works = tracefs.ok and headers.ok
    rest: list[tuple[str, Level, Callable[[], Check], bool]] = [
        # name, level, check, needs BCC
        ("ring buffer", "must", check_ring_buffer, True),
        ("bpf_send_signal", "recommended", check_send_signal, True),
        ("cgroup v2", "recommended", check_cgroup_v2, False),
        ("cgroup sock_addr hooks", "recommended", check_sock_addr, True),
        ("kprobes", "optional", check_kprobes, True),
        ("fentry", "optional", check_fentry, True),
        ("BPF LSM", "optional", check_lsm, True),
        ("bubblewrap", "recommended", check_bubblewrap, False),
        ("agentwatch probes", "must", check_agentwatch_probes, True),
    ]
    return [root, btf, tracefs, headers] + [
        _guarded(name, level, fn) if bcc_works or not needs_bcc else _not_tried(name, level)
        for name, level, fn, needs_bcc in rest
    ]


def main(json_output: bool = False) -> int:
    """Print one line per check (or a JSON list); 1 if a must-have is missing, else 0."""
    checks = run_checks()
    if json_output:
        print(json.dumps([asdict(c) for c in checks], indent=2))
    else:
        for c in checks:
            print(format_check(c))
    sys.stdout.flush()
    failed = [c for c in checks if c.level == "must" and not c.ok]
    if failed:
        print("agentwatch cannot run on this host: fix " + ", ".join(c.name for c in failed)
              + " (see the '-> fix:' hints above)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(json_output="--json" in sys.argv[1:]))
