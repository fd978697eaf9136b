"""In-kernel enforcement: which detectors' conditions the probes decide by themselves.

In `enforce` mode (and with `kernel_enforcement = true`), a detector whose action is
`kill`, that is enabled and has no configured exceptions (the kernel cannot evaluate exe,
argv or path globs), has its condition checked by the probes at the syscall's entry; a
match gets SIGKILL from `bpf_send_signal` before the process returns to user space:

| detector | in the kernel |
| --- | --- |
| kernel_tamper | bpf, perf_event_open, init/finit/delete_module (of its `syscalls`) |
| namespace_escape | setns; unshare, clone, clone3 with new-namespace flags |
| mount_escape | its `syscalls` (mount family, pivot_root, chroot) |
| process_injection | ptrace attach/seize/poke/set-regs, process_vm_*: of a process |
|                   | outside the session, by a caller in the host pid namespace |
| canary_touch | opens of a decoy path or anything below it (literal absolute paths); |
|              | at the open's exit, the opened file by (dev, inode) or resolved path |
| runtime_socket | connects to a runtime socket path (literal absolute paths) |
| reverse_shell | an AF_INET/AF_INET6 socket dup'ed (dup, dup2, dup3, fcntl F_DUPFD) |
|               | onto fd 0, 1 or 2: killed at the dup's exit, before it returns |
| monitor_tamper | kill/tkill/tgkill with a signal, and pidfd_open, aimed at agentwatch's |
|                | own pids (`protected`), kill(-1, sig): by a caller in the host pid |
|                | namespace; opens of its literal config/state/log/run paths |

Each row is the detector's own declaration, `kernel=KernelHalf(...)` in its spec
(detectors/base.py): which syscalls with which C check (`AW_SE_*`), which enable bit
(`AW_EN_*`), which reason its kills carry (`AW_WHY_*`), which params hold literal paths,
exempt executables, protected pids or a limit. `policy_for` reads those declarations; the
numbers come from probes/rules.py, the one source the C header is generated from. A new
kernel rule is its spec's `kernel` (and its names in probes/rules.py) plus at most one C
branch that tests them; a detector without a kernel half touches nothing here.

Files are also known by (dev, inode): `deny_inodes` holds each listed path's inode (the
target of a symlink) and, for a listed directory (`dir/**`), the inodes of what is below
it, up to DENY_WALK_MAX entries per directory (a directory's own inode is not enough: a
bind mount of it, or a hardlink to a file in it, reaches the files without passing
through it). At the exit of every successful open the kernel looks up the opened file's
(dev, inode) there and its resolved path in `deny_paths` (directories as prefixes), so a
hardlink, bind mount, /proc/self/root/..., /dev/fd/N/... or symlink to a denied file is
killed before the process returns to user space. Both are computed again at each reload;
a file created below a denied directory after that is caught by its resolved path, not
by its inode (a bind mount of the directory is then the remaining way around). /proc
paths are left to the path check (their inode numbers are not stable).

Everything else (relative paths, globs, `..`, abstract sockets, calls from inside a
sandbox's pid namespace for ptrace) stays with the user-space detectors, which kill the
tree a few milliseconds later. Processes of a sandbox's own setup are never killed by the
kernel; the `allowed_exes` of namespace_escape and mount_escape are matched in the kernel
by command name only (user space still checks their full path).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import detectors.catalog  # noqa: F401 - registers the specs whose kernel halves are read here
from collector.homes import host_homes
from detectors.base import REGISTRY, KernelCall
from detectors.config import Config
from probes import rules
from probes.file import kernel_dev

if TYPE_CHECKING:
    from probes.loader import Probes

# The kernel's numbers, from probes/rules.py (also generated into agentwatch_rules.h)
V = rules.VALUE
EN_TAMPER, EN_NS, EN_MOUNT, EN_PTRACE = (V["AW_EN_TAMPER"], V["AW_EN_NS"], V["AW_EN_MOUNT"],
                                         V["AW_EN_PTRACE"])
EN_PATHS, EN_REVSHELL, EN_MONITOR, EN_FORKBOMB = (V["AW_EN_PATHS"], V["AW_EN_REVSHELL"],
                                                  V["AW_EN_MONITOR"], V["AW_EN_FORKBOMB"])
CFG_ENFORCE, CFG_PIDNS_DEV, CFG_PIDNS_INO, CFG_FORK_MAX = (
    V["AW_CFG_ENFORCE"], V["AW_CFG_PIDNS_DEV"], V["AW_CFG_PIDNS_INO"], V["AW_CFG_FORK_MAX"])
CFG_FAIL_CLOSED = V["AW_CFG_FAIL_CLOSED"]
# fail_closed: no ring reader is assumed after this long without its heartbeat (the
# collector writes it at every poll, at least every 100 ms while it runs)
FAIL_CLOSED_GRACE_NS = 2_000_000_000
WHY_CODE = {c.detector: c.value for c in rules.REASONS}  # detector id -> AW_WHY_*
DENY_DIR = V["AW_DENY_DIR"]
DENY_LIST = V["AW_DENY_LIST"]  # read-only opens of directories there pass (listings)
HASH_MAX = V["AW_HASH_MAX"]  # longer paths are left to user space
DENY_INODES_MAX = V["AW_DENY_INODES_MAX"]
DENY_WALK_MAX = 512  # inodes listed below one denied directory
PROTECTED_MAX = V["AW_PROTECTED_MAX"]

# aw_sys_spec.enforce checks (AW_SE_*)
SE_TAMPER, SE_NS_JOIN, SE_NS_NEW, SE_MOUNT, SE_MOUNT_EXEMPT = (
    V["AW_SE_TAMPER"], V["AW_SE_NS_JOIN"], V["AW_SE_NS_NEW"], V["AW_SE_MOUNT"],
    V["AW_SE_MOUNT_EXEMPT"])
SE_PTRACE, SE_PROCESS_VM, SE_SIGNAL = (V["AW_SE_PTRACE"], V["AW_SE_PROCESS_VM"],
                                       V["AW_SE_SIGNAL"])
_GLOB = re.compile(r"[*?\[]")


def fnv1a64(data: bytes) -> int:
    h = V["AW_FNV_OFFSET"]
    for b in data:
        h = ((h ^ b) * V["AW_FNV_PRIME"]) & 0xFFFFFFFFFFFFFFFF
    return h


@dataclass
class Policy:
    mask: int = 0
    syscalls: dict[str, int] = field(default_factory=dict)   # name -> AW_SE_* class
    deny_paths: dict[str, int] = field(default_factory=dict)  # path -> why | DENY_DIR
    exempt_comms: list[str] = field(default_factory=list)
    detectors: list[str] = field(default_factory=list)       # enforced in the kernel
    protected: list[int] = field(default_factory=list)       # agentwatch's pids and tids
    fork_max: int = 0                                        # live processes per session
    fail_closed_ns: int = 0                                  # AW_CFG_FAIL_CLOSED (0: off)
    # (kernel dev, inode) -> AW_WHY_*: the deny_paths' files (and what is below the dirs)
    deny_inodes: dict[tuple[int, int], int] = field(default_factory=dict)
    inodes_skipped: int = 0                                  # past DENY_WALK_MAX / the map

    def describe(self) -> str:
        closed = "; fail_closed" if self.fail_closed_ns else ""
        if not self.mask:
            return "kernel enforcement off" + closed
        text = "kernel enforcement: " + ", ".join(self.detectors)
        if self.deny_paths:
            text += f" ({len(self.deny_paths)} literal paths, {len(self.deny_inodes)} inodes"
            text += f", {self.inodes_skipped} not listed)" if self.inodes_skipped else ")"
        return text + closed


def literal_paths(patterns: list[str]) -> list[str]:
    """The patterns the kernel can compare literally: absolute (or ~/ expanded over the
    homes on this host: /root, /home/*, passwd's; collector.homes.host_homes), no glob,
    shorter than HASH_MAX. `dir/**` stands for the dir.

    The kernel's rules are the host's, not a session's: a session whose HOME is none of
    these (`run` under HOME=/opt/x) has its `~/` paths checked by the user-space
    detectors only (a kill a few milliseconds later, not at the call)."""
    out: list[str] = []
    homes = host_homes() if any(p.startswith("~/") for p in patterns) else []
    for pat in patterns:
        if pat.endswith("/**"):
            pat = pat[:-3]
        pats = [h + pat[1:] for h in homes] if pat.startswith("~/") else [pat]
        for p in pats:
            p = p.rstrip("/") or "/"
            if not p.startswith("/") or _GLOB.search(p) or len(p.encode()) >= HASH_MAX \
                    or "/./" in p or "/../" in p or "//" in p:
                continue
            out.append(p)
    return out


def policy_for(config: Config) -> Policy:
    """The kernel's rules for `config`: the kernel half (DetectorSpec.kernel) of every
    detector that kills, is enabled and has no configured exceptions, in the order of
    their reason codes."""
    pol = Policy()
    if config.mode != "enforce":
        return pol
    if config.fail_closed:
        pol.fail_closed_ns = FAIL_CLOSED_GRACE_NS
    if not config.kernel_enforcement:
        return pol
    exempt: set[str] = set()
    host_pidns = _host_pid_ns() is not None  # read once: several rules ask
    halves = sorted(((cls.spec.id, cls.spec.kernel) for cls in REGISTRY.values()
                     if cls.spec.kernel is not None),
                    key=lambda dk: V[dk[1].reason])
    for did, k in halves:
        d = config.detectors.get(did)
        if d is None or not d.enabled or d.action != "kill" or d.exceptions:
            continue  # exceptions are exe/argv/path globs: user space's
        p = d.params
        if (k.needs_param and not _present(p.get(k.needs_param))) \
                or (k.unless_param and p.get(k.unless_param)) \
                or (k.host_pidns and not host_pidns):
            continue
        calls = {c.syscall: V[c.check] for c in k.calls if _applies(c, p, host_pidns)}
        if k.needs_call and not calls:
            continue
        why = V[k.reason]
        if k.protect_pids:
            pids = {int(x) for x in p.get(k.protect_pids, []) if str(x).isdigit()}
            pol.protected = sorted(pids | own_ids())
            for path, flags in protected_proc_paths(pol.protected, k.protect_proc_entries):
                pol.deny_paths.setdefault(path, why | DENY_DIR | flags)
        pol.syscalls.update(calls)
        if k.enable and (calls or not k.enable_needs_call):
            pol.mask |= V[k.enable]
        if k.deny_paths:
            for path in literal_paths(list(p.get(k.deny_paths, []))):
                flags = (DENY_DIR if k.deny_below else 0) | (DENY_LIST if k.deny_list_ok else 0)
                pol.deny_paths.setdefault(path, why | flags)
        if k.exempt_exes:
            exempt.update(_comms(p.get(k.exempt_exes, [])))
        if k.live_limit:  # the rate limit (max_forks) stays user space's
            pol.fork_max = int(p[k.live_limit])
        pol.detectors.append(did)
    if pol.deny_paths:
        pol.mask |= EN_PATHS
        pol.deny_inodes, pol.inodes_skipped = deny_inodes(pol.deny_paths)
    pol.exempt_comms = sorted(exempt)
    return pol


def deny_inodes(deny_paths: dict[str, int], limit: int = DENY_INODES_MAX,
                per_dir: int | None = None) -> tuple[dict[tuple[int, int], int], int]:
    """(kernel dev, inode) -> why for each existing path of `deny_paths` (symlinks
    followed: the file they name is the one to protect) and, for an AW_DENY_DIR entry, for
    every file and directory below it on the same device (not following symlinks), at
    most `per_dir` per listed directory, `limit` in all. /proc is skipped: its inode numbers
    are made per lookup. Returns the map and how many were left out by the bounds."""
    per_dir = DENY_WALK_MAX if per_dir is None else per_dir
    out: dict[tuple[int, int], int] = {}
    skipped = 0

    def add(st: os.stat_result, why: int) -> bool:
        nonlocal skipped
        key = (kernel_dev(st.st_dev), st.st_ino)
        if key in out:
            return True
        if len(out) >= limit:
            skipped += 1
            return False
        out[key] = why
        return True

    for path, value in deny_paths.items():
        if path == "/proc" or path.startswith("/proc/"):
            continue
        try:
            st = os.stat(path)
        except OSError:
            continue  # absent now: the path check still applies
        why = value & (0xFF | DENY_LIST)  # a listing's flag goes with each inode
        add(st, why)
        if not (value & DENY_DIR and stat.S_ISDIR(st.st_mode)):
            continue
        budget = per_dir
        for entry in _below(path, st.st_dev):
            if budget <= 0:
                skipped += 1
                continue
            budget -= 1
            add(entry, why)
    return out, skipped


def _below(top: str, dev: int) -> Iterator[os.stat_result]:
    """stat of everything below `top` on device `dev`, breadth first, symlinks not
    followed (lstat), unreadable directories skipped."""
    queue = [top]
    while queue:
        d = queue.pop(0)
        try:
            entries = list(os.scandir(d))
        except OSError:
            continue
        for e in entries:
            try:
                st = e.stat(follow_symlinks=False)
            except OSError:
                continue
            if st.st_dev != dev or stat.S_ISLNK(st.st_mode):
                continue
            yield st
            if stat.S_ISDIR(st.st_mode):
                queue.append(e.path)


# entries whose listing shows numbers only (fd numbers, mapped ranges): a tree walk
# (find /, du /) opens them as directories; what is below them is still denied
LISTABLE_PROC = ("fd", "fdinfo", "map_files")


def protected_proc_paths(pids: Iterable[int],
                         entries: Iterable[str]) -> list[tuple[str, int]]:
    """(/proc/<id>/<entry>, flags) for each protected pid or thread id, and
    /proc/<id>/task/<tid>/<entry> for each of its threads (read now): what the kernel
    denies of agentwatch's /proc. Only the sensitive entries (memory, fds, root, cwd ...):
    stat, status, cmdline and the directory itself are what ps and top read. The
    LISTABLE_PROC ones carry AW_DENY_LIST: a read-only O_DIRECTORY open of them passes."""
    entries = list(entries)
    out: list[tuple[str, int]] = []
    for pid in pids:
        tids: list[int] = []
        with contextlib.suppress(OSError):
            tids = [int(t) for t in os.listdir(f"/proc/{pid}/task") if t.isdigit()]
        for e in entries:
            flags = DENY_LIST if e in LISTABLE_PROC else 0
            out.append((f"/proc/{pid}/{e}", flags))
            out += [(f"/proc/{pid}/task/{t}/{e}", flags) for t in tids]
    return out


def _present(v: Any) -> bool:
    """A param that turns a rule on: a non-empty list, true, a number above 0."""
    if isinstance(v, int | float) and not isinstance(v, bool):
        return v > 0
    return bool(v)


def _applies(call: KernelCall, params: dict[str, Any], host_pidns: bool) -> bool:
    if call.listed_in and call.syscall not in params.get(call.listed_in, []):
        return False
    if call.requires and not set(call.requires[1]) <= set(params.get(call.requires[0], [])):
        return False
    return not (call.host_pidns and not host_pidns)


def own_ids() -> set[int]:
    """This process's pid and its threads' ids (tkill names a thread)."""
    ids = {os.getpid()}
    with contextlib.suppress(OSError):
        ids.update(int(t) for t in os.listdir("/proc/self/task"))
    return ids


def _comms(globs: list[str]) -> list[str]:
    """Command names (comm, 15 bytes) of `allowed_exes` globs whose last part is literal."""
    out = []
    for g in globs:
        base = g.rsplit("/", 1)[-1]
        if base and not _GLOB.search(base):
            out.append(base.encode()[:15].decode(errors="ignore"))
    return out


def _host_pid_ns() -> tuple[int, int] | None:
    """(dev, inode) of our pid namespace when it is the host's (one NSpid entry)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("NSpid:") and len(line.split()) != 2:
                    return None
        st = os.stat("/proc/self/ns/pid")
    except OSError:
        return None
    return st.st_dev, st.st_ino


def apply(bpf: Probes, pol: Policy) -> None:
    """Write the policy into the kernel's maps (a previous one is replaced)."""
    from probes import sysprobe

    cfg = bpf[b"config"]
    cfg[ctypes.c_int(CFG_ENFORCE)] = ctypes.c_uint64(0)  # off while the maps change
    ns = _host_pid_ns() if pol.mask & EN_PTRACE else None
    cfg[ctypes.c_int(CFG_PIDNS_DEV)] = ctypes.c_uint64(ns[0] if ns else 0)
    cfg[ctypes.c_int(CFG_PIDNS_INO)] = ctypes.c_uint64(ns[1] if ns else 0)
    cfg[ctypes.c_int(CFG_FORK_MAX)] = ctypes.c_uint64(pol.fork_max)
    cfg[ctypes.c_int(CFG_FAIL_CLOSED)] = ctypes.c_uint64(pol.fail_closed_ns)
    sysprobe.set_enforce(bpf, pol.syscalls)
    deny = bpf[b"deny_paths"]
    deny.clear()
    for path, value in pol.deny_paths.items():
        deny[ctypes.c_uint64(fnv1a64(path.encode()))] = ctypes.c_uint32(value)
    inodes = bpf[b"deny_inodes"]
    inodes.clear()
    for (dev, ino), why in pol.deny_inodes.items():
        key = inodes.Key()
        key.dev, key.ino = dev, ino
        inodes[key] = ctypes.c_uint32(why)
    comms = bpf[b"exempt_comms"]
    comms.clear()
    for name in pol.exempt_comms:
        key = comms.Key()
        key.name = name.encode()[:15]
        comms[key] = ctypes.c_uint32(1)
    prot = bpf[b"protected"]
    prot.clear()
    for pid in pol.protected[:PROTECTED_MAX]:
        prot[ctypes.c_uint32(pid)] = ctypes.c_uint32(1)
    _fd_probes(bpf, bool(pol.mask & EN_REVSHELL))
    cfg[ctypes.c_int(CFG_ENFORCE)] = ctypes.c_uint64(pol.mask)


def _fd_probes(probes: Probes, on: bool) -> None:
    """close()/close_range() (inet socket fds tracking): routed by the syscall dispatcher
    to their program only while the reverse-shell rule is on, so that no one else pays
    for them."""
    from probes import sysprobe

    # written every time: re-used pins may hold another daemon's choice
    sysprobe.set_route(probes, sysprobe.CLOSE_NRS, "AW_RT_CLOSE" if on else "AW_RT_QUIET")
    if not on:
        probes[b"inet_fds"].clear()
    probes.fd_probes = on


# ------------------------------------------------------------------------------ egress

EGRESS_HOOKS = (("aw_egress_connect4", "CGROUP_INET4_CONNECT"),
                ("aw_egress_connect6", "CGROUP_INET6_CONNECT"),
                ("aw_egress_sendmsg4", "CGROUP_UDP4_SENDMSG"),
                ("aw_egress_sendmsg6", "CGROUP_UDP6_SENDMSG"))


@dataclass
class Egress:
    """What the cgroup programs let through: allow tries, and deny tries checked first."""

    enabled: bool = False
    allow: list[str] = field(default_factory=list)
    deny: list[str] = field(default_factory=list)

    def describe(self) -> str:
        if not self.enabled:
            return "egress enforcement off"
        return f"egress: only {', '.join(self.allow)}; never {', '.join(self.deny)}"


def egress_for(config: Config) -> Egress:
    d = config.detectors.get("egress_violation")
    if config.mode != "enforce" or not config.egress_enforcement or d is None \
            or not d.enabled:
        return Egress()
    p = d.params
    allow = ["0.0.0.0/0", "::/0"] if p.get("allow_all_other") else list(p.get("allow", []))
    return Egress(True, allow, list(p.get("metadata", [])))


def apply_egress(bpf: Probes, eg: Egress) -> None:
    import ipaddress

    tries = {name: bpf[name.encode()] for name in
             ("egress_allow4", "egress_allow6", "egress_deny4", "egress_deny6")}
    for t in tries.values():
        t.clear()
    for kind, cidrs in (("allow", eg.allow), ("deny", eg.deny)):
        for cidr in cidrs:
            net = ipaddress.ip_network(cidr, strict=False)
            table = tries[f"egress_{kind}{net.version}"]
            key = table.Key()
            key.prefixlen = net.prefixlen
            for i, b in enumerate(net.network_address.packed):
                key.addr[i] = b
            table[key] = ctypes.c_uint32(1)


class EgressAttacher:
    """Attaches the four cgroup programs to session cgroups (loaded once, or pinned)."""

    def __init__(self, probes: Probes) -> None:
        self.probes = probes

    def attach(self, cgroup_fd: int) -> None:
        for name, attach in EGRESS_HOOKS:
            self.probes.attach_cgroup(name, "CGROUP_SOCK_ADDR", attach, cgroup_fd)
