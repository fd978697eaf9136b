"""Detectors for leaving the sandbox or reaching past it: namespaces, mounts, other
processes' memory, the kernel, privileges, exploit building blocks (agentwatch itself and
host IPC sockets: monitor.py).

Shared rules:
- A refused attempt (`EPERM`, `ENOENT`...) is flagged like a successful call: a payload
  probing the sandbox's walls is the signal, whether the wall held or not. `ret`/`error` are
  in the alert's fields.
- Bubblewrap builds the sandbox with unshare, mount, pivot_root and capset: events with
  `setup: true` are skipped by the setup-sensitive detectors (namespace, mount, privilege),
  except when `nested_launcher` is true (a sandbox the payload started itself).
- Every list and threshold is a param (detectors/config.py); per-exe/argv/path exceptions go
  in the config's `[[detectors.<id>.exceptions]]`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from collector.events import Event, ForkEvent, OpenEvent, SyscallEvent
from detectors.base import (
    SESSION_KINDS,
    Context,
    Detector,
    DetectorSpec,
    Finding,
    KernelCall,
    KernelHalf,
    ReadInterest,
    path_matches,
    register,
)
from detectors.catalog.common import (
    MOUNT_SYSCALLS,
    PTRACE_WRITES,
    after_setup,
    outcome,
    through_proc_root,
    track_exe,
    write_intent,
)
from detectors.openroute import OpenInterest

# sandbox-runtime's in-sandbox helper: it unshares a pid (and mount) namespace and mounts
# /proc before it applies its seccomp filter and execs the command.
APPLY_SECCOMP = "**/sandbox-runtime/vendor/seccomp/*/apply-seccomp"

CLONE_NEW_BITS = {
    0x20000: "CLONE_NEWNS", 0x2000000: "CLONE_NEWCGROUP", 0x4000000: "CLONE_NEWUTS",
    0x8000000: "CLONE_NEWIPC", 0x10000000: "CLONE_NEWUSER", 0x20000000: "CLONE_NEWPID",
    0x40000000: "CLONE_NEWNET",
}  # CLONE_NEWTIME (0x80) only exists for clone3/unshare: in clone() that byte is a signal
# syscalls whose `path` is a change to the file (creat, truncate, chmod ...), not a read
_PATH_CHANGES = ("creat", "unlink", "unlinkat", "rename", "renameat", "renameat2", "chmod",
                 "fchmodat", "fchmodat2", "chown", "lchown", "fchownat", "link", "linkat",
                 "symlink", "symlinkat", "truncate", "setxattr", "lsetxattr", "setxattrat",
                 "mkdir", "mkdirat", "rmdir")


def fold_key(ev: Event, key: str) -> str:
    """A nested launcher's setup makes dozens of calls: one alert per launcher process
    (the rest fold into it), not one per mount."""
    return f"nested_launcher:{ev.pid}" if ev.setup and ev.nested_launcher else key


def new_ns_names(flags: Iterable[Any]) -> list[str]:
    return [f for f in flags if isinstance(f, str) and f.startswith("CLONE_NEW")]


def _ns_from_bits(flags: int) -> list[str]:
    return [name for bit, name in CLONE_NEW_BITS.items() if flags & bit]


@register
class NamespaceEscape(Detector):
    """setns (joining a namespace: nsenter), unshare and clone/clone3 creating namespaces
    (CLONE_NEW* in `args.flags` or a fork event's `clone_flags`), and opens of namespace
    files (`/proc/*/ns/*`, the handles setns takes), by the sandboxed command: bubblewrap's
    own setup (`setup: true`) is skipped, a nested launcher's is not (one alert per nested
    launcher process, its other calls fold into it). sandbox-runtime's in-sandbox helper
    `apply-seccomp` unshares a pid namespace before it execs the command, so executables
    matching `allowed_exes` may create namespaces (unshare, clone), never join one (setns)
    nor open ns files. The glob names sandbox-runtime's vendored path; a payload able to
    write a file at a matching path could borrow the allowance, so narrow it to your
    install location (e.g. `/usr/lib/node_modules/@anthropic-ai/sandbox-runtime/...`)."""

    spec = DetectorSpec(
        id="namespace_escape",
        kinds=frozenset({"exec", "fork", "syscall", "open"}),  # exec/fork: track_exe
        reads=ReadInterest(params=("ns_paths",)),
        title="Namespace Change After Sandbox Setup",
        description="the sandboxed command joined or created namespaces (setns, unshare, "
                    "clone with CLONE_NEW*) or opened a /proc/*/ns/* handle; bubblewrap's "
                    "own setup is not flagged, a nested launcher's is",
        severity="critical",
        action="kill",
        mitre=("T1611", "T1610"),
        not_flagged=(
            "bubblewrap's own setup (it makes the sandbox's namespaces)",
            "unshare and clone with new namespaces by `allowed_exes` (sandbox-runtime's helper "
            "unshares a pid namespace), never setns or ns-file opens",
        ),
        output="{syscall} {namespaces} by {comm}",
        params={
            # executables allowed to create (not join) namespaces: sandbox-runtime's helper
            "allowed_exes": [APPLY_SECCOMP],
            "ns_paths": ["/proc/*/ns/*", "/proc/*/task/*/ns/*"],
        },
        kernel=KernelHalf(reason="AW_WHY_NS", enable="AW_EN_NS", exempt_exes="allowed_exes",
                          calls=(KernelCall("setns", "AW_SE_NS_JOIN"),
                                 KernelCall("unshare", "AW_SE_NS_NEW"))),
    )

    def open_interest(self, params: dict[str, Any]) -> OpenInterest:
        # ns files only (track_exe keeps nothing from an open)
        return OpenInterest(globs=tuple(params["ns_paths"]))

    def check(self, ctx: Context, ev: Event) -> Iterable[Finding]:
        exe = track_exe(ctx, ev)
        if not after_setup(ev):
            return
        p = ctx.params
        allowed = exe is not None and path_matches(exe, p["allowed_exes"], ctx.homes) is not None
        if isinstance(ev, SyscallEvent):
            if ev.syscall == "setns":
                names = new_ns_names(ev.args.get("nstype") or []) or ["any"]
                yield self._finding(ev, "setns", names, exe)
            elif ev.syscall == "unshare" and not allowed:
                names = new_ns_names(ev.args.get("flags") or [])
                if names:
                    yield self._finding(ev, "unshare", names, exe)
        elif isinstance(ev, ForkEvent) and not allowed:
            names = _ns_from_bits(ev.clone_flags)
            if names:
                yield self._finding(ev, "clone", names, exe)
        elif isinstance(ev, OpenEvent) and path_matches(ev.path, p["ns_paths"], ctx.homes):
            yield Finding(key=f"open:{ev.path}", fields={
                "syscall": ev.syscall, "namespaces": ev.path.rsplit("/", 1)[-1],
                "comm": ev.comm, "path": ev.path, "exe": exe, **outcome(ev)})

    @staticmethod
    def _finding(ev: Event, syscall: str, names: list[str], exe: str | None) -> Finding:
        return Finding(key=fold_key(ev, f"{syscall}:{','.join(names)}"), fields={
            "syscall": syscall, "namespaces": ",".join(names), "comm": ev.comm, "exe": exe,
            **outcome(ev)})


@register
class MountEscape(Detector):
    """The mount family (mount, umount2, fsopen, fsmount, move_mount, open_tree,
    open_tree_attr, mount_setattr), pivot_root and chroot by the sandboxed command:
    remounting, bind-mounting a host path or moving the root changes what the sandbox can
    see. bubblewrap's setup is skipped, a nested launcher's is not (one alert per nested
    launcher process). `allowed_exes` (sandbox-runtime's `apply-seccomp`, which mounts its
    own /proc) may call mount and umount2 only; its pivot_root or chroot still alert."""

    spec = DetectorSpec(
        id="mount_escape",
        kinds=frozenset({"exec", "fork", "syscall"}),  # exec/fork: track_exe
        title="Mount Or Root Change After Sandbox Setup",
        description="the sandboxed command called the mount family, pivot_root or chroot "
                    "after bubblewrap's setup (a nested launcher's setup included)",
        severity="critical",
        action="kill",
        mitre=("T1611",),
        not_flagged=(
            "bubblewrap's own setup mounts (the sandbox being built), while a nested launcher's "
            "are flagged",
            "mount and umount2 by sandbox-runtime's apply-seccomp helper, which mounts its own "
            "/proc (`allowed_exes`); its pivot_root or chroot still are",
        ),
        output="{syscall} {path} by {comm}",
        params={
            "syscalls": list(MOUNT_SYSCALLS),
            # allowed only mount/umount2 (sandbox-runtime's helper mounts its own /proc)
            "allowed_exes": [APPLY_SECCOMP],
        },
        # mount and umount2 spare `allowed_exes` (by command name), the others do not
        kernel=KernelHalf(
            reason="AW_WHY_MOUNT", enable="AW_EN_MOUNT", exempt_exes="allowed_exes",
            calls=tuple(KernelCall(c, "AW_SE_MOUNT_EXEMPT" if c in ("mount", "umount2")
                                   else "AW_SE_MOUNT", listed_in="syscalls")
                        for c in MOUNT_SYSCALLS)),
    )

    def check(self, ctx: Context, ev: Event) -> Iterable[Finding]:
        exe = track_exe(ctx, ev)
        if not isinstance(ev, SyscallEvent) or not after_setup(ev):
            return
        if ev.syscall not in ctx.params["syscalls"]:
            return
        if ev.syscall in ("mount", "umount2") and exe is not None \
                and path_matches(exe, ctx.params["allowed_exes"], ctx.homes):
            return
        flags = ev.args.get("flags")
        yield Finding(key=fold_key(ev, f"{ev.syscall}:{ev.path}"), fields={
            "syscall": ev.syscall, "path": ev.path, "source": ev.path2,
            "fstype": ev.args.get("fstype"), "flags": flags, "comm": ev.comm, "exe": exe,
            **outcome(ev)})


_PROC_MEM = re.compile(r"/proc/(\d+)(?:/task/\d+)?/mem\Z")


@register
class ProcessInjection(Detector):
    """ptrace requests that take control or write (`ptrace_requests`: attach, seize,
    poke, set registers), process_vm_readv/writev, and opens of /proc/<pid>/mem, aimed at
    another process. Without I/O the detector cannot tell which pids are inside the
    session: any target other than the acting process itself (its host pid, or its pid or
    thread ids in the sandbox's numbering as fork events reveal them) counts as outside.
    `allow_children = true` lets a debugger attach to its own children (strace -f, gdb).
    A successful open of /proc/<pid>/mem is judged by the process the kernel names for
    the file (the event's `proc_tgid`: /proc/self/mem through any name is the caller's
    own, a pid namespace's /proc/2/mem is that process), a failed one by the path's
    number."""

    spec = DetectorSpec(
        id="process_injection",
        kinds=frozenset({"fork", "syscall", "open"}),  # fork: own and child pids
        reads=ReadInterest(globs=("/proc/**",)),
        title="Access To Another Process's Memory",
        description="ptrace attach/seize/poke, process_vm_readv/writev, pidfd_getfd, "
                    "process_madvise or an open of /proc/<pid>/mem aimed at a process "
                    "other than the caller",
        severity="critical",
        action="kill",
        mitre=("T1055", "T1055.008"),
        not_flagged=(
            "a process acting on itself or its own threads, under any pid numbering",
            "a debugger on its own children when `allow_children` is set (strace -f, gdb ./prog)",
            "ptrace requests that only read (PTRACE_PEEK*, GETREGS): not in `ptrace_requests`",
        ),
        output="{syscall} {request} on pid {target} by {comm}",
        params={
            "ptrace_requests": list(PTRACE_WRITES),
            "syscalls": ["process_vm_readv", "process_vm_writev"],
            # calls aimed through a pidfd (the target is not in the event): any use
            "pidfd_calls": ["pidfd_getfd", "process_madvise"],
            # true: a debugger on its own child (strace -f, gdb ./prog) is not flagged
            "allow_children": False,
        },
        # in the kernel only from the host pid namespace, where the pids named are host pids
        kernel=KernelHalf(
            reason="AW_WHY_PTRACE", enable="AW_EN_PTRACE", host_pidns=True,
            calls=(KernelCall("ptrace", "AW_SE_PTRACE",
                              requires=("ptrace_requests", tuple(PTRACE_WRITES))),
                   *(KernelCall(c, "AW_SE_PROCESS_VM", listed_in="syscalls")
                     for c in ("process_vm_readv", "process_vm_writev")),
                   *(KernelCall(c, "AW_SE_FD_STEAL", listed_in="pidfd_calls")
                     for c in ("pidfd_getfd", "process_madvise")))),
    )

    def open_interest(self, params: dict[str, Any]) -> OpenInterest:
        # /proc/<pid>/mem
        return OpenInterest(proc=True)

    def check(self, ctx: Context, ev: Event) -> Iterable[Finding]:
        children: set[tuple[int, int]] = ctx.state.setdefault("children", set())
        # host pid -> the ids it is known by in the sandbox's pid numbering: its own pid as
        # its parent saw it, its threads' ids (a process acting on itself is no injection)
        own: dict[int, set[int]] = ctx.state.setdefault("own", {})
        if isinstance(ev, ForkEvent):
            if ev.ret > 0:
                if ev.thread:
                    own.setdefault(ev.pid, set()).add(ev.ret)
                else:
                    children.add((ev.pid, ev.ret))  # ret: the child's pid in the parent's ns
                    children.add((ev.pid, ev.child_pid))  # and its host pid (/proc/N/mem)
                    own.setdefault(ev.child_pid, set()).add(ev.ret)
            return
        p = ctx.params
        target: int | None = None
        request = ""
        syscall = ""
        if isinstance(ev, SyscallEvent):
            syscall = ev.syscall
            if ev.syscall in p["pidfd_calls"] and after_setup(ev):
                # another process's fd or memory through a pidfd: never an agent's need
                yield Finding(key=f"{syscall}:pidfd{ev.args.get('pidfd')}", fields={
                    "syscall": syscall, "request": "pidfd", "target":
                    f"pidfd {ev.args.get('pidfd')}", "comm": ev.comm, **outcome(ev)})
                return
            if ev.syscall == "ptrace" and ev.args.get("request") in p["ptrace_requests"]:
                target, request = ev.args.get("pid"), str(ev.args.get("request"))
            elif ev.syscall in p["syscalls"]:
                target = ev.args.get("pid")
        elif isinstance(ev, OpenEvent):
            m = _PROC_MEM.match(ev.path)
            if m:
                syscall, request = ev.syscall, "mem"
                # the kernel's answer (the inode's process, host ids) when it gave one
                target = ev.proc_tgid or ev.proc_pid or int(m.group(1))
        if target is None or target in (ev.pid, ev.tid, 0) or target in own.get(ev.pid, ()):
            return
        if p["allow_children"] and (ev.pid, target) in children:
            return
        fields: dict[str, Any] = {"syscall": syscall, "request": request or "-",
                                  "target": target, "comm": ev.comm}
        if isinstance(ev, OpenEvent):
            fields["path"] = ev.path
        yield Finding(key=f"{syscall}:{target}", fields={**fields, **outcome(ev)})


@register
class KernelTamper(Detector):
    """Loading or removing kernel modules, kexec, bpf(), perf_event_open, and writes to kernel
    knobs that run code as root on the host (core_pattern, modprobe, binfmt_misc, cgroup
    v1 release_agent) or change it (sysrq, /sys/kernel)."""

    spec = DetectorSpec(
        id="kernel_tamper",
        kinds=frozenset({"syscall", "open"}),
        reads=ReadInterest(),
        title="Kernel Tampering From The Sandbox",
        description="module load/unload, kexec, bpf(), perf_event_open, or a write to "
                    "kernel knobs such as core_pattern, sysrq-trigger or /sys/kernel",
        severity="critical",
        action="kill",
        mitre=("T1547.006", "T1014", "T1611"),
        not_flagged=(
            "reads of /proc/sys, /sys/kernel and /sys/module: every runtime reads kernel knobs "
            "(page size, cpu count, module lists); only writes and changes are tampering",
        ),
        output="{syscall} {target} by {comm}",
        params={
            "syscalls": ["init_module", "finit_module", "delete_module", "bpf",
                         "perf_event_open", "kexec_load", "kexec_file_load"],
            "paths": ["/proc/sys/kernel/**", "/proc/sysrq-trigger", "/sys/kernel/**",
                      "/proc/sys/fs/binfmt_misc/**", "/sys/fs/cgroup/**/release_agent",
                      "/sys/module/**"],
        },
        # the module calls, bpf and perf_event_open of `syscalls`; paths stay user space's
        kernel=KernelHalf(
            reason="AW_WHY_TAMPER", enable="AW_EN_TAMPER", needs_call=True,
            calls=tuple(KernelCall(c, "AW_SE_TAMPER", listed_in="syscalls") for c in (
                "bpf", "perf_event_open", "init_module", "finit_module", "delete_module",
                "kexec_load", "kexec_file_load"))),
    )

    def open_interest(self, params: dict[str, Any]) -> OpenInterest:
        # write-intent opens only
        return OpenInterest(writes=True)

    def check(self, ctx: Context, ev: Event) -> Iterable[Finding]:
        p = ctx.params
        if isinstance(ev, SyscallEvent):
            if ev.syscall in p["syscalls"]:
                a = ev.args
                target = (a.get("cmd") or a.get("name") or a.get("type") or a.get("params")
                          or "-")
                yield Finding(key=f"{ev.syscall}:{target}", fields={
                    "syscall": ev.syscall, "target": target, "comm": ev.comm,
                    **outcome(ev)})
            elif ev.syscall in _PATH_CHANGES \
                    and path_matches(through_proc_root(ev.path), p["paths"], ctx.homes):
                yield Finding(key=f"{ev.syscall}:{ev.path}", fields={
                    "syscall": ev.syscall, "target": ev.path, "path": ev.path,
                    "comm": ev.comm, **outcome(ev)})
        elif isinstance(ev, OpenEvent) and write_intent(ev, by_names=True) \
                and path_matches(through_proc_root(ev.path), p["paths"], ctx.homes):
            yield Finding(key=f"write:{ev.path}", fields={
                "syscall": ev.syscall, "target": ev.path, "path": ev.path,
                "flags": ev.flag_names, "comm": ev.comm, **outcome(ev)})


_UID_CALLS = {"setuid": ("uid",), "setreuid": ("ruid", "euid"),
              "setresuid": ("ruid", "euid", "suid"), "setfsuid": ("uid",)}
_GID_CALLS = {"setgid": ("gid",), "setregid": ("rgid", "egid"),
              "setresgid": ("rgid", "egid", "sgid"), "setfsgid": ("gid",)}
_CHMODS = ("chmod", "fchmod", "fchmodat", "fchmodat2", "creat")
_XATTRS = ("setxattr", "lsetxattr", "fsetxattr", "setxattrat")


def _ids_unknown(ctx: Context, ev: OpenEvent) -> bool:
    """privilege_escalation: an open whose uid or gid is not the one it last recorded for
    the process (it records them from every event it is given)."""
    ids = ctx.state.get("ids")
    return ids is None or ids["uid"].get(ev.pid) != ev.uid or \
        ids["gid"].get(ev.pid) != ev.gid


@register
class PrivilegeEscalation(Detector):
    """chmod/fchmod/fchmodat/creat (and O_CREAT opens) setting the setuid or setgid bit;
    setxattr of `security.capability` (file capabilities); setuid/setreuid/setresuid/
    setfsuid (and the gid family) asking for id 0 from a process whose id was not 0 (from
    the session's earlier events; a root session calling setuid(0) is no transition, so
    root test runs stay quiet); capset putting any of `capabilities` in the effective or
    permitted set. Refused attempts count. bubblewrap's setup (its capset) is skipped.
    Exec of a setuid binary is not visible without a stat of the file and is not covered;
    sudo, su and pkexec show up when they then call setuid(0) from a nonzero real uid."""

    spec = DetectorSpec(
        id="privilege_escalation",
        kinds=SESSION_KINDS,  # each process's last uid/gid, from any event
        reads=ReadInterest(),
        title="Privilege Escalation Attempt",
        description="setuid/setgid bits or file capabilities set, a set*id transition to "
                    "uid/gid 0 from nonzero, or capset with dangerous capabilities",
        severity="critical",
        action="kill",
        mitre=("T1548.001", "T1068"),
        not_flagged=(
            "setuid(0) and the like from a process whose id is already 0: a root test run is no "
            "transition",
            "exec of a setuid binary: not visible without a stat of the file; sudo, su and pkexec"
            " show when they then call setuid(0) from a nonzero uid",
            "capset without any of `capabilities` (dropping capabilities, bubblewrap's setup)",
        ),
        output="{syscall} {what} by {comm}",
        params={
            "capabilities": ["CAP_SYS_ADMIN", "CAP_SYS_PTRACE", "CAP_SYS_MODULE",
                             "CAP_DAC_READ_SEARCH", "CAP_DAC_OVERRIDE", "CAP_SETUID",
                             "CAP_SETGID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_SYS_RAWIO",
                             "CAP_NET_ADMIN", "CAP_BPF", "CAP_PERFMON", "CAP_SYS_CHROOT"],
            "xattrs": ["security.capability"],
        },
    )

    def open_interest(self, params: dict[str, Any]) -> OpenInterest:
        # O_CREAT opens; each pid's last uid/gid (only a change is news)
        return OpenInterest(writes=True, when=_ids_unknown)

    def check(self, ctx: Context, ev: Event) -> Iterable[Finding]:
        ids: dict[str, dict[int, int]] = ctx.state.setdefault("ids", {"uid": {}, "gid": {}})
        try:
            if after_setup(ev):
                yield from self._check(ctx, ev, ids)
        finally:
            ids["uid"][ev.pid] = ev.uid
            ids["gid"][ev.pid] = ev.gid
            if isinstance(ev, ForkEvent) and not ev.thread:
                ids["uid"][ev.child_pid] = ev.uid
                ids["gid"][ev.child_pid] = ev.gid

    def _check(self, ctx: Context, ev: Event,
               ids: dict[str, dict[int, int]]) -> Iterable[Finding]:
        p = ctx.params
        if isinstance(ev, OpenEvent):
            if "O_CREAT" in ev.flag_names and ev.mode & 0o6000:
                yield self._f(ev, ev.syscall, f"mode {ev.mode:o}", ev.path)
            return
        if not isinstance(ev, SyscallEvent):
            return
        a = ev.args
        if ev.syscall in _CHMODS and (a.get("setuid") or a.get("setgid")):
            bits = "+".join(b for b in ("setuid", "setgid") if a.get(b))
            yield self._f(ev, ev.syscall, f"{bits} mode {a.get('mode', 0):o}",
                          ev.path or f"fd {a.get('fd')}")
        elif ev.syscall in _XATTRS and a.get("name") in p["xattrs"]:
            yield self._f(ev, ev.syscall, str(a.get("name")), ev.path or f"fd {a.get('fd')}")
        elif ev.syscall in _UID_CALLS or ev.syscall in _GID_CALLS:
            kind, names = ("uid", _UID_CALLS[ev.syscall]) if ev.syscall in _UID_CALLS \
                else ("gid", _GID_CALLS[ev.syscall])
            before = ids[kind].get(ev.pid, getattr(ev, kind))
            if before != 0 and any(a.get(n) == 0 for n in names):
                yield self._f(ev, ev.syscall, f"{kind} {before} -> 0", None)
        elif ev.syscall == "capset":
            caps = set(a.get("effective") or []) | set(a.get("permitted") or [])
            bad = sorted(c for c in caps if c in p["capabilities"])
            if bad:
                yield self._f(ev, ev.syscall, ",".join(bad), None)

    @staticmethod
    def _f(ev: Event, syscall: str, what: str, path: str | None) -> Finding:
        fields: dict[str, Any] = {"syscall": syscall, "what": what, "comm": ev.comm,
                                  "uid": ev.uid}
        if path is not None:
            fields["path"] = path
        return Finding(key=f"{syscall}:{path or what}", fields={**fields, **outcome(ev)})


@register
class ExploitPrimitive(Detector):
    """Kernel interfaces that local-privilege-escalation exploits lean on and agents
    rarely need: userfaultfd, keyctl, terminal input injection (TIOCSTI,
    TIOCLINUX), raw IP and packet sockets. Alert only: a few runtimes use some of them.
    bubblewrap's own setup calls (setup: true, not nested) are skipped."""

    spec = DetectorSpec(
        id="exploit_primitive",
        kinds=frozenset({"syscall"}),
        title="Exploit Primitive Used",
        description="userfaultfd, keyctl, TIOCSTI/TIOCLINUX ioctls, or a raw/packet socket",
        severity="high",
        action="alert",
        mitre=("T1068",),
        not_flagged=(
            "netlink and other non-IP raw sockets: glibc's getaddrinfo and bubblewrap's loopback "
            "setup use SOCK_RAW netlink",
            "ioctls other than `ioctls`: terminals and editors use TIOCGWINSZ, TCGETS and friends"
            " all the time",
        ),
        output="{syscall} {detail} by {comm}",
        params={
            # io_uring_setup is forbidden_syscall's (killed in enforce mode)
            "syscalls": ["userfaultfd", "keyctl"],
            "ioctls": ["TIOCSTI", "TIOCLINUX"],
            "socket_families": ["AF_PACKET"],          # any type
            "socket_types": ["SOCK_RAW", "SOCK_PACKET"],
            # raw types count in these families only: netlink is always SOCK_RAW (glibc's
            # getaddrinfo, bubblewrap bringing up lo) and is no raw network access
            "raw_families": ["AF_INET", "AF_INET6"],
        },
    )

    def check(self, ctx: Context, ev: Event) -> Iterable[Finding]:
        if not isinstance(ev, SyscallEvent) or not after_setup(ev):
            return
        p = ctx.params
        a = ev.args
        detail: str | None = None
        if ev.syscall in p["syscalls"]:
            value = a.get("op") or a.get("setup_flags") or a.get("flags") or "-"
            detail = ",".join(map(str, value)) if isinstance(value, list) else str(value)
        elif ev.syscall == "ioctl" and a.get("cmd") in p["ioctls"]:
            detail = str(a.get("cmd"))
        elif ev.syscall == "socket":
            types = a.get("type") or []
            base = types[0] if types else None
            if a.get("family") in p["socket_families"] or (
                    base in p["socket_types"] and a.get("family") in p["raw_families"]):
                detail = f"{a.get('family')}/{base}"
        if detail is not None:
            yield Finding(key=f"{ev.syscall}:{detail}", fields={
                "syscall": ev.syscall, "detail": detail, "comm": ev.comm, **outcome(ev)})
