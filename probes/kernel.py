"""Host prerequisites for loading BCC programs: kernel headers and tracefs.

BCC compiles C at load time against kernel headers. When the running kernel ships no
headers (`/lib/modules/$(uname -r)/build` missing), a private tree is merged from the
distribution's header packages under the state directory and `BCC_KERNEL_SOURCE` is
pointed at it. Headers of another kernel version are only safe because no probe reads a
kernel struct through its offsets (tracepoint arguments and helpers only).

tracefs is mounted at /sys/kernel/tracing when it is not: BCC reads tracepoint formats
from it. Nothing else on the host is changed.
"""

from __future__ import annotations

import glob
import os
import platform
import re
import shutil
import subprocess
from pathlib import Path

TRACEFS = Path("/sys/kernel/tracing")
DEFAULT_STATE_DIR = Path("/var/lib/agentwatch")
_DEB_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "armhf", "ppc64le": "ppc64el",
             "s390x": "s390x", "riscv64": "riscv64"}


class SetupError(RuntimeError):
    """A prerequisite is missing; the message says what to do."""


def state_dir() -> Path:
    return Path(os.environ.get("AGENTWATCH_STATE_DIR", str(DEFAULT_STATE_DIR)))


def _version_key(path: str) -> tuple[int, ...]:
    m = re.search(r"linux-headers-(\d+)\.(\d+)\.(\d+)-(\d+)", path)
    return tuple(int(x) for x in m.groups()) if m else (0,)


def find_distribution_headers(src: Path = Path("/usr/src")) -> tuple[Path, Path] | None:
    """Newest pair of Debian header folders (common, arch-specific), or None."""
    arch = _DEB_ARCH.get(platform.machine(), platform.machine())
    best: tuple[Path, Path] | None = None
    for common in sorted(glob.glob(str(src / "linux-headers-*-common")), key=_version_key):
        specific = Path(common[: -len("-common")] + "-" + arch)
        if specific.is_dir():
            best = (Path(common), specific)
    return best


def _merge_tree(common: Path, specific: Path, dest: Path) -> None:
    """Symlink farm: every file of `common`, then every file of `specific` over it."""
    tmp = dest.with_name(dest.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    for root in (common, specific):
        for dirpath, dirnames, filenames in os.walk(root):
            rel = os.path.relpath(dirpath, root)
            out = tmp / rel
            out.mkdir(parents=True, exist_ok=True)
            # Directory symlinks (e.g. scripts -> ../../lib/...) are walked as links.
            links = [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]
            for name in filenames + links:
                target = out / name
                if target.is_symlink() or target.exists():
                    if target.is_dir() and not target.is_symlink():
                        continue
                    target.unlink()
                os.symlink(os.path.realpath(os.path.join(dirpath, name)), target)
    # Atomic publication: a reader sees either no tree or a complete one.
    try:
        os.rename(tmp, dest)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not dest.is_dir():
            raise


def ensure_kernel_headers() -> str:
    """Make BCC find kernel headers; returns a one-line description of what is used."""
    release = platform.release()
    build = Path("/lib/modules") / release / "build"
    if (build / "include").is_dir():
        os.environ.pop("BCC_KERNEL_SOURCE", None)
        return f"{build} (headers of the running kernel)"
    pair = find_distribution_headers()
    if pair is None:
        raise SetupError(
            f"no kernel headers: neither {build} nor /usr/src/linux-headers-*-common exists; "
            "install the distribution's headers (Debian: apt-get install linux-headers-"
            f"{_DEB_ARCH.get(platform.machine(), platform.machine())})"
        )
    common, specific = pair
    dest = state_dir() / "kernel-headers" / specific.name
    if not (dest / "include").is_dir():
        dest.parent.mkdir(parents=True, exist_ok=True)
        _merge_tree(common, specific, dest)
    os.environ["BCC_KERNEL_SOURCE"] = str(dest)
    return f"{dest} (merged from {specific.name}; running kernel {release})"


def tracefs_mounted() -> bool:
    try:
        return os.path.isdir(TRACEFS / "events") and os.access(TRACEFS / "events", os.R_OK)
    except OSError:
        return False


def ensure_tracefs() -> str:
    if os.geteuid() != 0 and not tracefs_mounted():
        raise SetupError(f"tracefs at {TRACEFS} is not readable: run agentwatch as root")
    if tracefs_mounted():
        return f"{TRACEFS} mounted"
    try:
        subprocess.run(["mount", "-t", "tracefs", "nodev", str(TRACEFS)], check=True,
                       capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError) as e:
        err = getattr(e, "stderr", "") or str(e)
        raise SetupError(f"tracefs is not mounted and mounting it failed: {err.strip()}; "
                         f"run as root: mount -t tracefs nodev {TRACEFS}") from e
    if not tracefs_mounted():
        raise SetupError(f"mounted tracefs at {TRACEFS} but it has no events/ folder")
    return f"{TRACEFS} (mounted by agentwatch)"


def tracepoint_has_field(category: str, event: str, field: str) -> bool:
    try:
        fmt = (TRACEFS / "events" / category / event / "format").read_text()
    except OSError:
        return False
    return re.search(rf"\b{re.escape(field)};", fmt) is not None


def prepare() -> list[str]:
    """Everything needed before BPF(): returns human-readable notes."""
    return [ensure_tracefs(), ensure_kernel_headers()]
