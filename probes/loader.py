"""Compose, compile and load agentwatch's BPF programs with BCC.

One BPF object holds every concern (`proc`, `file`, `net`, `sys`) so that they share the
`watched` session filter, the ring buffer and the loss counters. The concerns stay separate
files; BCC's rewriter only rewrites the main translation unit (map method calls such as
`watched.lookup()` inside an #included file are not rewritten), so the loader builds that
unit by concatenating the shared header and each concern file, in order. Configuration
goes through cflags (-D), never through editing the C text. `load` returns a `Probes`:
BCC's object with what agentwatch knows of it (which syscalls the generic probe covers,
whether the fd probes are attached), instead of attributes set on BCC's object.
"""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from probes import kernel

if TYPE_CHECKING:
    from bcc import BPF

    from probes import pins, sysprobe

PROBE_DIR = Path(__file__).resolve().parent
INCLUDE_DIR = PROBE_DIR / "include"
CONCERNS = ("proc", "file", "net", "sys", "egress", "uring")
# A concern's files, in order, where it has more than `<concern>.bpf.c`
CONCERN_FILES = {"sys": ("sys", "sys_progs")}
# Concerns whose programs are routes of the syscall dispatcher (dispatch.bpf.c, appended
# after them whenever one is loaded)
SYSCALL_CONCERNS = ("proc", "file", "net", "sys")
# Kernel struct fields the probes read, at offsets from the running kernel's BTF
BTF_FIELDS = (("task_struct", "thread_info.status"),)


@dataclass
class ProbeConfig:
    concerns: tuple[str, ...] = CONCERNS
    ringbuf_pages: int = 1024          # 4 MiB
    max_procs: int = 65536
    extra_cflags: list[str] = field(default_factory=list)
    # Pinning (probes/pins.py): with pin_root, the maps and links are pinned there (and
    # re-used by the next load of the same build); pin_state holds their description and
    # the reader's lock; pin_wait: seconds to wait for another reader's lock
    pin_root: str | None = None
    pin_state: str | None = None
    pin_wait: float = 0.0

    def cflags(self) -> list[str]:
        if self.ringbuf_pages <= 0 or self.ringbuf_pages & (self.ringbuf_pages - 1):
            raise ValueError("ringbuf_pages must be a power of two")
        flags = [
            f"-I{INCLUDE_DIR}",
            f"-DAW_RINGBUF_PAGES={self.ringbuf_pages}",
            f"-DAW_MAX_PROCS={self.max_procs}",
            "-Wno-macro-redefined",
        ]
        if kernel.tracepoint_has_field("sched", "sched_process_exit", "group_dead"):
            flags.append("-DAW_HAVE_GROUP_DEAD")
        from probes import btf, stdio

        try:
            flags += btf.cflags(BTF_FIELDS)
        except btf.BTFError as e:
            raise ProbeLoadError(f"{e}: agentwatch reads the task's syscall ABI through it "
                                 "(32-bit syscalls)") from e
        return (flags + resolve_cflags() + stdio.cflags() + concern_cflags(self.concerns)
                + list(self.extra_cflags))


def concern_cflags(concerns: tuple[str, ...]) -> list[str]:
    """Defines a concern takes from the running kernel: the uring probe's struct offsets
    from BTF (probes/uring.py; a group without them is compiled out and flagged)."""
    out: list[str] = []
    if "net" in concerns or "sys" in concerns:  # include/aw_peer.h
        from probes import net

        out += net.peer_cflags()
    if "uring" not in concerns:
        return out
    from probes import uring

    return out + uring.cflags()[0]


def available_concerns(concerns: tuple[str, ...]) -> tuple[str, ...]:
    """The concerns this kernel can attach: `uring` needs the io_uring tracepoints
    (absent without CONFIG_IO_URING, where there is nothing to see)."""
    if "uring" in concerns and not kernel.tracepoint_has_field(
            "io_uring", "io_uring_submit_req", "req"):
        return tuple(c for c in concerns if c != "uring")
    return concerns


def resolve_cflags() -> list[str]:
    """The struct offsets include/aw_resolve.h reads, from the running kernel's BTF
    (probes/btf.py); without BTF, -DAW_NO_BTF: the probes load with the resolution of
    opened files compiled out and their records flagged unresolved (AW_RF_NO_BTF)."""
    from probes import btf

    flags, why = btf.cflags_or_fallback()
    if why is None:
        proc, pwhy = btf.cflags_or_fallback(btf.PROC_FIELDS)
        if pwhy is None:  # the target process of /proc files (aw_proc_target)
            flags += [f for f in proc if not f.startswith("-DAW_SIZE_task_struct")]
            flags.append("-DAW_HAVE_PROC_TARGET")
    return flags


def source(concerns: tuple[str, ...] = CONCERNS) -> str:
    """The translation unit BCC compiles (what `--ebpf` prints)."""
    # headers with map calls are text of the unit, not #included (BCC rewrites only it)
    parts = [f"/* ---- include/{h} */\n{(INCLUDE_DIR / h).read_text()}"
             for h in ("agentwatch.h", "aw_dispatch.h", "aw_sockw.h", "aw_interest.h")]
    for concern in concerns:
        for name in CONCERN_FILES.get(concern, (concern,)):
            path = PROBE_DIR / f"{name}.bpf.c"
            if not path.is_file():
                raise ValueError(f"unknown probe concern {concern!r}")
            parts.append(f"/* ---- {name}.bpf.c */\n#line 1 \"{path}\"\n{path.read_text()}")
    if any(c in SYSCALL_CONCERNS for c in concerns):
        path = PROBE_DIR / "dispatch.bpf.c"
        parts.append(f"/* ---- dispatch.bpf.c */\n#line 1 \"{path}\"\n{path.read_text()}")
    return "\n".join(parts)


class ProbeLoadError(kernel.SetupError):
    """The probes did not compile or load; the message says why and what to run."""


class Probes:
    """The loaded probes: BCC's BPF object (`bcc`), the generic syscall probe's attach
    result (`syscalls`, None when `sys` is not loaded), whether the close()/close_range()
    probes are attached now (`fd_probes`, response/enforce.py's), and its maps by name
    (`probes[b"watched"]`)."""

    def __init__(self, bcc: BPF | None, syscalls: sysprobe.AttachResult | None = None) -> None:
        self.bcc: Any = bcc  # None: re-used from pins, nothing compiled (`pins.reused`)
        self.syscalls = syscalls
        self.fd_probes = False
        self.pins: pins.PinSet | None = None  # pinned (ProbeConfig.pin_root)
        self.pin_note = ""  # why pins were asked for and not used

    def __getitem__(self, name: bytes) -> Any:
        if self.bcc is None and self.pins is not None:
            return self.pins.table(name)
        return self.bcc[name]

    def close(self) -> None:
        """Detach every program and free the maps (BCC's cleanup), the tracepoints first.
        Pinned: nothing is detached (the pins hold it all), only this process's fds go."""
        if self.bcc is not None:
            self._detach_tracepoints()
            self.bcc.cleanup()
        if self.pins is not None:
            self.pins.close()

    @classmethod
    def reused(cls, syscalls: sysprobe.AttachResult | None) -> Probes:
        """Probes over re-used pins (probes/pins.py sets `pins`): nothing compiled."""
        return cls(None, syscalls)

    # Attachments made after the load (response/enforce.py), pinned when the probes are
    def attach_tracepoint(self, tp: str, fn: str) -> None:
        from probes import pinbcc

        pinbcc.attach_late(self, tp, fn)

    def detach_tracepoint(self, tp: str) -> None:
        from probes import pinbcc

        pinbcc.detach_late(self, tp)

    def attach_cgroup(self, fn: str, kind: str, attach: str, cgroup_fd: int) -> None:
        """Attach program `fn` (BCC's program type and attach type names) to a cgroup."""
        from probes import pinbcc

        pinbcc.attach_cgroup(self, fn, kind, attach, cgroup_fd)

    def _detach_tracepoints(self) -> None:
        """Close the tracepoints' perf events from many threads at once: the kernel waits
        for an RCU grace period at each, one after the other in BCC's cleanup (about 15 s
        for ~180 of them on 2 cores); concurrent waits share grace periods."""
        from concurrent.futures import ThreadPoolExecutor

        from bcc.libbcc import lib

        fds = list(self.bcc.tracepoint_fds.values())
        if not fds:
            return
        with ThreadPoolExecutor(max_workers=min(64, len(fds))) as pool:
            list(pool.map(lib.bpf_close_perf_event_fd, fds))
        self.bcc.tracepoint_fds.clear()


def load(config: ProbeConfig | None = None) -> Probes:
    """Prepare the host (tracefs, headers), compile and attach every probe."""
    config = config or ProbeConfig()
    if os.geteuid() != 0:
        raise ProbeLoadError("loading BPF probes needs root (CAP_BPF, CAP_PERFMON, "
                             "CAP_SYS_ADMIN): run agentwatch as root")
    kernel.prepare()
    try:
        from bcc import BPF  # noqa: F401 - late: unit tests and `--help` need no bcc
    except ImportError as e:
        raise ProbeLoadError(f"the bcc Python module is missing ({e}): install "
                             "python3-bpfcc, or run `make setup`") from e
    text, cflags = source(available_concerns(config.concerns)).encode(), config.cflags()
    if config.pin_root is not None:
        from probes import pins

        probes: Probes = pins.load(config, text, cflags,
                                   lambda cls: _compile(config, text, cflags, cls),
                                   Probes.reused)
    else:
        probes = _compile(config, text, cflags, None)
    from probes import residency

    residency.release()  # the compiler's pages, its freed heap, the parsed BTF
    return probes


def _compile(config: ProbeConfig, text: bytes, cflags: list[str],
             bpf_class: type | None) -> Probes:
    """Compile, load and attach (`bpf_class`: BCC's BPF or pins' subclass of it)."""
    from bcc import BPF

    cls = bpf_class or BPF
    # BCC prints compiler warnings about the kernel's own headers: noise on success, so
    # stderr is silenced; on failure it compiles once more with stderr visible.
    devnull = os.open(os.devnull, os.O_WRONLY)
    saved = os.dup(2)
    try:
        os.dup2(devnull, 2)
        try:
            return _attach_generic(cls(text=text, cflags=cflags), config)
        except Exception:  # noqa: BLE001 - BCC raises bare Exception
            pass
        finally:
            os.dup2(saved, 2)
    finally:
        os.close(saved)
        os.close(devnull)
    try:
        return _attach_generic(cls(text=text, cflags=cflags), config)
    except Exception as e:  # noqa: BLE001
        raise ProbeLoadError(f"cannot load the BPF probes: {e} (the compiler or verifier "
                             "output is above; `agentwatch doctor` checks the host)") from e


def _attach_generic(bpf: BPF, config: ProbeConfig) -> Probes:
    """The syscall dispatcher's tables and route programs (probes/sysprobe.py); the generic
    probe's coverage is kept in Probes.syscalls."""
    if not any(c in SYSCALL_CONCERNS for c in config.concerns):
        return Probes(bpf)
    from probes import sysprobe

    try:
        result = sysprobe.install(bpf, config.concerns)
    except BaseException:
        bpf.cleanup()
        raise
    return Probes(bpf, result)


def attached_syscalls(probes: Probes) -> sysprobe.AttachResult | None:
    """Which syscalls of probes/syscalls.py's table are traced by these probes, which have
    no tracepoint on this kernel, and which failed to attach (None: `sys` not loaded)."""
    return probes.syscalls


def read_lost(bpf: BPF | Probes) -> list[int]:
    """Per-slot loss counters summed over CPUs."""
    table: Any = bpf[b"lost"]
    out = []
    for i in range(len(table)):
        vals = table[ctypes.c_int(i)]
        out.append(sum(int(v) for v in vals))
    return out
