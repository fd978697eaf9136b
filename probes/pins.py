"""Pinned probes: the kernel rules and the watched set outlive the process that loaded them.

With `ProbeConfig.pin_root` (the daemon's and `run`'s choice; library use and most tests
load privately), every map and every attachment of the loaded BPF object is pinned on a
bpffs:

    <pin_root>/<build>/maps/<map name>       every map of the object
    <pin_root>/<build>/links/<n>_<what>      every attachment, as a bpf_link
    <pin_root>/<build>/progs/<name>          programs attached later (LATE_PROGRAMS)

and a description of them (each map's type, sizes and BCC's key/leaf type description,
each link's and program's id, the generic syscall probe's attach result) is written to
`<pin_state>/<build>.json` (bpffs holds no files). `<build>` hashes everything the loaded
object depends on: the C text BCC compiles, the cflags, the probes' Python (which fills
tables at load), the kernel release, the running kernel's BTF and BCC's version.

A load that finds a complete pin set of its own build opens it (BPF_OBJ_GET) instead of
compiling: nothing is detached or attached, the kernel never stops enforcing, and the
maps (`watched`, `sessions`, the rings with what they hold) are the same ones. Anything
else under pin_root (another build, a half-made set) is removed once a new set is
complete: stale state is replaced, never trusted.

Attachments become links generically, whatever the object holds: BCC's raw tracepoint
(and fentry/LSM) fds are links already; tracepoints, which BCC attaches with
perf_event_open + PERF_EVENT_IOC_SET_BPF (not pinnable), are attached here instead as
BPF_LINK_CREATE(BPF_PERF_EVENT) links (`PinningBPF.attach_tracepoint`). An object with
an attachment of another kind (kprobes, uprobes) is refused (ProbeLoadError).

One reader at a time: a flock on the pin root directory is held by whoever opened the
pins, until `Probes.close()`. A load that cannot take it within `pin_wait` seconds falls back
to a private load and says why in `Probes.pin_note`.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from probes import bpfsys
from probes.pinbcc import (
    PinError,
    _map_desc,
    _module_functions,
    _module_tables,
    _name,
    make_table,
    pinning_bpf_class,
)

if TYPE_CHECKING:
    from probes.sysprobe import AttachResult

FORMAT = 1  # bump when the layout of a pin set or of its description changes
DEFAULT_ROOT = "/sys/fs/bpf/agentwatch"
DEFAULT_STATE = "/run/agentwatch/pins"
BTF = Path("/sys/kernel/btf/vmlinux")
PROBE_DIR = Path(__file__).resolve().parent

# Programs of the object that user space attaches later, by name: loaded (with their
# type and expected attach type, BCC's names) and pinned with the set, so that a daemon
# that re-uses the pins can attach them without compiling: response/enforce.py's cgroup
# egress programs (tests/test_pins.py checks the two lists agree). The dispatcher's route
# programs need no pin of their own: the prog arrays, pinned maps, hold them.
LATE_PROGRAMS: tuple[tuple[str, str, str | None], ...] = (
    ("aw_egress_connect4", "CGROUP_SOCK_ADDR", "CGROUP_INET4_CONNECT"),
    ("aw_egress_connect6", "CGROUP_SOCK_ADDR", "CGROUP_INET6_CONNECT"),
    ("aw_egress_sendmsg4", "CGROUP_SOCK_ADDR", "CGROUP_UDP4_SENDMSG"),
    ("aw_egress_sendmsg6", "CGROUP_SOCK_ADDR", "CGROUP_UDP6_SENDMSG"),
)
# BCC's records of attachments that are bpf_links (pinnable as they are)
LINK_FDS = ("raw_tracepoint_fds", "kfunc_entry_fds", "kfunc_exit_fds", "lsm_fds")
# ... and of those that are not (a pin set cannot hold them)
UNPINNABLE_FDS = ("kprobe_fds", "uprobe_fds", "tracepoint_fds", "open_perf_events")


def build_id(text: bytes, cflags: list[str]) -> str:
    """What the loaded object depends on, hashed (see the module's docstring)."""
    h = hashlib.sha256()
    h.update(f"agentwatch-pins {FORMAT}\n".encode())
    h.update(text)
    h.update("\0".join(cflags).encode())
    for path in sorted(PROBE_DIR.glob("*.py")):
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    h.update(platform.release().encode())
    with contextlib.suppress(OSError):
        h.update(hashlib.sha256(BTF.read_bytes()).digest())
    with contextlib.suppress(ImportError):
        from bcc import version

        h.update(str(getattr(version, "__version__", "")).encode())
    return h.hexdigest()[:20]


def state_dir(config: Any) -> Path:
    return Path(config.pin_state or DEFAULT_STATE)


# ------------------------------------------------------------------------------ bpffs
def ensure_bpffs(root: Path) -> None:
    """A bpffs must hold `root`: /sys/fs/bpf is mounted when it is not (as tracefs is)."""
    mounts: list[tuple[str, str]] = []
    with contextlib.suppress(OSError), open("/proc/self/mounts") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3:
                mounts.append((parts[1].replace("\\040", " "), parts[2]))
    best = ("", "")
    for point, fstype in mounts:
        if (str(root) == point or str(root).startswith(point.rstrip("/") + "/")) \
                and len(point) > len(best[0]):
            best = (point, fstype)
    if best[1] == "bpf":
        return
    top = Path("/sys/fs/bpf")
    if top not in (root, *root.parents):
        raise PinError(f"{root} is not on a bpf file system")
    import subprocess

    try:
        subprocess.run(["mount", "-t", "bpf", "bpf", str(top)], check=True,
                       capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError) as e:
        err = getattr(e, "stderr", "") or str(e)
        raise PinError(f"no bpffs at {top} and mounting one failed: {err.strip()}") from e


def remove_tree(path: Path) -> None:
    """Remove pins and directories below `path` and `path` itself (bpffs has no rmtree:
    pins are unlinked, directories removed bottom-up)."""
    if not path.exists() and not path.is_symlink():
        return
    if path.is_dir() and not path.is_symlink():
        for child in path.iterdir():
            remove_tree(child)
        with contextlib.suppress(FileNotFoundError):
            path.rmdir()
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def remove_stale(root: Path, state: Path, keep: str | None) -> list[str]:
    """Everything under `root` and every description in `state` but build `keep`."""
    gone = []
    with contextlib.suppress(FileNotFoundError):
        for child in root.iterdir():
            if child.name != keep:
                remove_tree(child)
                gone.append(child.name)
    with contextlib.suppress(FileNotFoundError):
        for child in state.glob("*.json"):
            if child.stem != keep:
                child.unlink()
    return gone


# ------------------------------------------------------------------------------ lock
class ReaderLock:
    """flock on the pin root directory itself (so that two agentwatch with different state
    directories still exclude each other): who reads the pinned rings. The holder's pid is
    written to `<pin_state>/reader` for the message of the one that finds it taken."""

    def __init__(self, root: Path, state: Path) -> None:
        self.root = root
        self.who = state / "reader"
        self.fd: int | None = None

    def acquire(self, wait: float) -> str | None:
        """Take the lock within `wait` seconds; None, or who holds it."""
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    try:
                        return f"pid {int(self.who.read_text())}"
                    except (OSError, ValueError):
                        return "another agentwatch"
                time.sleep(0.05)
        self.fd = fd
        with contextlib.suppress(OSError):
            self.who.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            self.who.write_text(f"{os.getpid()}\n")
        return None

    def release(self) -> None:
        if self.fd is not None:
            with contextlib.suppress(OSError):
                if self.who.read_text().strip() == str(os.getpid()):
                    self.who.unlink()
            os.close(self.fd)  # the flock goes with the last fd
            self.fd = None


def reader_active(root: Path) -> bool:
    """Does someone hold the reader's lock of `root` now?"""
    try:
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


# ------------------------------------------------------------------------------ making
def create(probes: Any, build: str, root: Path, state: Path,
           extra: dict[str, Any]) -> PinSet:
    """Pin the maps, links and late programs of a freshly compiled object, describe them
    in <state>/<build>.json (written last: a set without it is incomplete) and remove
    every other build's pins."""
    from bcc import BPF, BPFAttachType

    bpf: Any = probes.bcc
    for attr in UNPINNABLE_FDS:
        if getattr(bpf, attr, None):
            raise PinError(f"the object has attachments that cannot be pinned ({attr})")
    top = root / build
    remove_tree(top)  # a half-made set of this build (a crash while pinning)
    for sub in ("maps", "links", "progs"):
        (top / sub).mkdir(parents=True)
    desc: dict[str, Any] = {"format": FORMAT, "build": build, "created_ns": time.time_ns(),
                            "creator": os.getpid(), "maps": {}, "links": {}, "progs": {},
                            **extra}
    from bcc.libbcc import lib

    for name in _module_tables(bpf):
        fd = lib.bpf_table_fd(bpf.module, name)  # not bpf[name]: BCC has no class for some
        if fd < 0:
            raise PinError(f"map {name.decode()} has no fd")
        bpfsys.obj_pin(fd, top / "maps" / _name(name.decode()))
        desc["maps"][name.decode()] = {"pin": _name(name.decode()),
                                       **_map_desc(bpf, name, fd)}
    links: list[tuple[str, int]] = [
        (f"tp {tp.decode()}", fd) for tp, (_fn, fd) in getattr(bpf, "perf_links", {}).items()]
    for attr in LINK_FDS:
        for key, fd in getattr(bpf, attr, {}).items():
            links.append((f"{attr.removesuffix('_fds')} {key.decode()}", fd))
    for i, (what, fd) in enumerate(links):
        pin = f"{i}_{_name(what)}"
        bpfsys.obj_pin(fd, top / "links" / pin)
        ltype, lid, lprog = bpfsys.link_info(fd)
        desc["links"][pin] = {"what": what, "type": ltype, "id": lid, "prog_id": lprog}
    have = _module_functions(bpf)
    for prog, kind, attach in LATE_PROGRAMS:
        if prog.encode() not in have:
            continue
        kw = {"attach_type": getattr(BPFAttachType, attach)} if attach else {}
        fn = bpf.load_func(prog.encode(), getattr(BPF, kind), **kw)
        bpfsys.obj_pin(fn.fd, top / "progs" / prog)
        desc["progs"][prog] = {"id": bpfsys.prog_id(fn.fd), "type": kind, "attach": attach}
    state.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = state / f".{build}.json.tmp{os.getpid()}"
    tmp.write_text(json.dumps(desc, indent=1))
    os.replace(tmp, state / f"{build}.json")
    remove_stale(root, state, build)
    return PinSet(build, top, desc, reused=False)


# ------------------------------------------------------------------------------ re-using
class PinSet:
    """One build's pins: its directory, its description, and the maps opened so far."""

    def __init__(self, build: str, top: Path, desc: dict[str, Any], reused: bool) -> None:
        self.build = build
        self.dir = top
        self.desc = desc
        self.reused = reused
        self.lock: ReaderLock | None = None
        self._fds: dict[str, int] = {}
        self._tables: dict[bytes, Any] = {}

    def link_ids(self) -> dict[str, int]:
        """Pin name -> the id of the link pinned there now (what the kernel runs)."""
        out = {}
        for pin in sorted(self.desc["links"]):
            fd = bpfsys.obj_get(self.dir / "links" / pin)
            try:
                out[pin] = bpfsys.link_info(fd)[1]
            finally:
                os.close(fd)
        return out

    def map_fd(self, name: str) -> int:
        if name not in self._fds:
            m = self.desc["maps"].get(name)
            if m is None:
                raise KeyError(name)
            self._fds[name] = bpfsys.obj_get(self.dir / "maps" / m["pin"])
        return self._fds[name]

    def table(self, name: bytes) -> Any:
        if name not in self._tables:
            m = self.desc["maps"].get(name.decode())
            if m is None:
                raise KeyError(name)
            self._tables[name] = make_table(name, self.map_fd(name.decode()), m)
        return self._tables[name]

    def prog_fd(self, name: str) -> int:
        if name not in self.desc["progs"]:
            raise PinError(f"program {name} is not pinned with this build")
        key = f"prog:{name}"
        if key not in self._fds:
            self._fds[key] = bpfsys.obj_get(self.dir / "progs" / name)
        return self._fds[key]

    def dynamic_link(self, tp: str) -> Path:
        """Where a tracepoint attached later (Probes.attach_tracepoint) is pinned."""
        return self.dir / "links" / f"late_{_name(tp)}"

    def verify(self) -> None:
        """Every pin of the description is there and is what it says (PinError if not)."""
        for name, m in self.desc["maps"].items():
            try:
                info = bpfsys.map_info(self.map_fd(name))
            except OSError as e:
                raise PinError(f"map {name}: {e.strerror}") from None
            want = (m["type"], m["key_size"], m["value_size"], m["max_entries"])
            if (info.type, info.key_size, info.value_size, info.max_entries) != want:
                raise PinError(f"map {name} is not the one described")
        try:
            ids = self.link_ids()
        except OSError as e:
            raise PinError(f"a link is missing: {e.strerror}") from None
        for pin, link in self.desc["links"].items():
            if ids.get(pin) != link["id"]:
                raise PinError(f"link {pin} is not the one described")
        for name in self.desc["progs"]:
            try:
                self.prog_fd(name)
            except OSError as e:
                raise PinError(f"program {name}: {e.strerror}") from None

    def close(self) -> None:
        for fd in self._fds.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds.clear()
        self._tables.clear()
        if self.lock is not None:
            self.lock.release()
            self.lock = None


def open_set(root: Path, state: Path, build: str) -> PinSet | None:
    """The complete, verified pin set of `build`, or None."""
    try:
        desc = json.loads((state / f"{build}.json").read_text())
    except (OSError, ValueError):
        return None
    if desc.get("format") != FORMAT or desc.get("build") != build \
            or not (root / build).is_dir():
        return None
    pins = PinSet(build, root / build, desc, reused=True)
    try:
        pins.verify()
    except PinError:
        pins.close()
        return None
    return pins


# ------------------------------------------------------------------------------ loading
def load(config: Any, text: bytes, cflags: list[str], compile_: Callable[[type | None], Any],
         reuse: Callable[[AttachResult | None], Any]) -> Any:
    """probes.loader's Probes: the pins of this build opened (`reuse(attach_result)` makes
    the object), or compiled (`compile_(bpf_class)`) and pinned; a private load
    (compile_(None)) when another reader holds the lock."""

    root, state = Path(config.pin_root or DEFAULT_ROOT), state_dir(config)
    lock = ReaderLock(root, state)
    try:
        ensure_bpffs(root)
        holder = lock.acquire(config.pin_wait)
        why = f"are in use by {holder}" if holder else ""
    except (OSError, PinError) as e:
        why = f"cannot be used ({e})"
    if why:
        probes = compile_(None)
        probes.pin_note = (f"the pinned probes under {root} {why}: loading private probes "
                           "(slower to start and stop, gone with this process)")
        return probes
    try:
        build = build_id(text, cflags)
        pins = open_set(root, state, build)
        if pins is not None:
            from probes.sysprobe import AttachResult

            sc = pins.desc.get("syscalls")
            result = AttachResult(tuple(sc["attached"]), tuple(sc["missing"]),
                                  dict(sc["failed"])) if sc else None
            probes = reuse(result)
            probes.fd_probes = any(pins.dynamic_link(tp).exists()
                                   for tp in ("syscalls:sys_enter_close",
                                              "syscalls:sys_enter_close_range"))
        else:
            probes = compile_(pinning_bpf_class())
            sc = probes.syscalls
            extra = {"syscalls": {"attached": list(sc.attached), "missing": list(sc.missing),
                                  "failed": dict(sc.failed)} if sc else None,
                     "ringbuf_pages": config.ringbuf_pages}
            try:
                pins = create(probes, build, root, state, extra)
            except (OSError, PinError) as e:  # loaded and attached all the same: private
                remove_tree(root / build)
                lock.release()
                probes.pin_note = f"cannot pin the probes under {root} ({e}): private probes"
                return probes
            _forget_compiled(probes)
        pins.lock = lock
        probes.pins = pins
        return probes
    except BaseException:
        lock.release()
        raise


def _forget_compiled(probes: Any) -> None:
    """Once pinned, the compiled object is used as a re-using load uses the pins (maps and
    programs opened from them): BCC's module, with the compiler's state (~12 MB), is
    freed. Its fds go; the pins hold every map, link and late program."""
    bpf, probes.bcc = probes.bcc, None
    bpf.cleanup()  # closes links and maps: each is pinned, nothing is detached


def release_held(root: Path, state: Path) -> list[int]:
    """SIGCONT to every process fail_closed holds in the pinned `watched` maps (before
    an unload: once the programs are gone, nothing would ever release them)."""
    import signal

    from probes import rules

    held = []
    with contextlib.suppress(FileNotFoundError):
        for child in root.iterdir():
            try:
                desc = json.loads((state / f"{child.name}.json").read_text())
                pins = PinSet(child.name, child, desc, reused=True)
            except (OSError, ValueError):
                continue
            try:
                for k, v in pins.table(b"watched").items():
                    if int(v.flags) & rules.VALUE["AW_PF_HELD"]:
                        with contextlib.suppress(OSError):
                            os.kill(int(k.value), signal.SIGCONT)
                            held.append(int(k.value))
            except (OSError, KeyError, PinError):
                pass
            finally:
                pins.close()
    return held


def unload(root: Path, state: Path) -> list[str]:
    """Remove every pin under `root` and every description in `state` (the kernel detaches
    the programs once nothing holds them): `agentwatch sensor unload`, the package purge.
    The processes fail_closed holds are released first."""
    release_held(root, state)
    gone = remove_stale(root, state, None)
    with contextlib.suppress(OSError):
        root.rmdir()
    return gone


def describe(root: Path, state: Path) -> list[dict[str, Any]]:
    """The pin sets present: build, whether described, created when, by whom."""
    out = []
    with contextlib.suppress(FileNotFoundError):
        for child in sorted(root.iterdir()):
            entry: dict[str, Any] = {"build": child.name, "described": False}
            with contextlib.suppress(OSError, ValueError):
                desc = json.loads((state / f"{child.name}.json").read_text())
                entry.update(described=True, created_ns=desc.get("created_ns"),
                             creator=desc.get("creator"), maps=len(desc.get("maps", {})),
                             links=len(desc.get("links", {})))
            out.append(entry)
    return out


