"""What the probes' load leaves resident in the process, given back once they are loaded.

Measured on a daemon on its defaults (Linux 6.18, BCC 0.26 over LLVM 14, issue 17): 180 MB
RSS idle, of which ~75 MB were the pages of libLLVM's and libclang-cpp's code that the
compile touched, ~28 MB the parsed kernel BTF (probes/btf.py's cache, needed only for
the cflags) and ~12 MB BCC's compiled module (kept by private loads: BCC's tables and
load_func use it; a pinned load forgets it, probes/pins.py).

`release()` gives back what no longer serves, honestly, i.e. the pages really leave the
process (VmRSS counts them no more; nothing is hidden by swapping, there is no swap here):

- the BTF cache is dropped and Python's garbage collected, then glibc returns its free
  heap to the system (`malloc_trim`);
- the compiler libraries' file mappings that hold nothing of the process's own (not
  writable, no private copy-on-write page: `Anonymous: 0` in smaps) are unmapped from the
  page tables with MADV_DONTNEED. For such a mapping that is exactly dropping clean
  page-cache pages: a later access (another compile) faults the same file bytes back in.
  MADV_PAGEOUT / MADV_COLD would not do: the kernel skips pages another process maps too
  (any other BCC tool on the host), so the result would depend on who else runs.
  Writable mappings and those with private pages (relocated data, .got) are never
  touched: MADV_DONTNEED would revert them to the file's bytes.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import os
import re

# Libraries mapped in only for BCC's compiler (libbcc links them): their code is not run
# again once the object is loaded. libbcc itself stays (the ring buffer and map calls).
COMPILER_LIBS = ("libLLVM", "libclang", "libz3", "libicu", "libxml2")
MADV_DONTNEED = 4
_MAPPING = re.compile(r"^([0-9a-f]+)-([0-9a-f]+) (\S{4}) \S+ \S+ \S+\s*(.*)$")


def status(pid: int | str = "self") -> dict[str, int]:
    """VmRSS, VmHWM, RssAnon, RssFile of a process, in kB (empty where unreadable)."""
    out: dict[str, int] = {}
    with contextlib.suppress(OSError), \
            open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                with contextlib.suppress(ValueError, IndexError):
                    out[key] = int(value.split()[0])
    return out


def droppable(smaps_text: str, libs: tuple[str, ...] = COMPILER_LIBS) -> list[tuple[int, int]]:
    """The address ranges of `libs`' file mappings that MADV_DONTNEED may drop: not
    writable and holding no private (anonymous, copy-on-write) page."""
    out: list[tuple[int, int]] = []
    current: list[int | str] | None = None
    ranges: list[list[int | str]] = []
    for line in smaps_text.splitlines():
        m = _MAPPING.match(line)
        if m:
            current = [int(m[1], 16), int(m[2], 16), m[3], os.path.basename(m[4]), -1]
            ranges.append(current)
        elif line.startswith("Anonymous:") and current is not None:
            with contextlib.suppress(ValueError, IndexError):
                current[4] = int(line.split()[1])
    for lo, hi, perms, name, anon in ranges:
        assert isinstance(perms, str) and isinstance(name, str)
        if "w" in perms or anon != 0 or not name.startswith(libs):
            continue  # anon == -1: smaps said nothing, so nothing is known: kept
        out.append((int(lo), int(hi)))
    return out


def drop_compiler_pages() -> int:
    """MADV_DONTNEED on the compiler libraries' droppable mappings; the kB dropped."""
    try:
        with open("/proc/self/smaps", encoding="ascii", errors="replace") as f:
            ranges = droppable(f.read())
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return 0
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    before = status().get("RssFile", 0)
    for lo, hi in ranges:
        libc.madvise(lo, hi - lo, MADV_DONTNEED)  # an error leaves the pages: harmless
    return max(0, before - status().get("RssFile", 0))


def trim_heap() -> None:
    """Give glibc's free heap back to the system (clang/LLVM leave ~40 MB of it)."""
    with contextlib.suppress(OSError, AttributeError):  # AttributeError: not glibc
        ctypes.CDLL(None).malloc_trim(0)


def release() -> None:
    """After a load: drop the BTF cache, collect, trim the heap, drop the compiler's pages."""
    from probes import btf

    btf.forget()
    gc.collect()
    trim_heap()
    drop_compiler_pages()
