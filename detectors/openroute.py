"""Which detectors an open can matter to, decided once per open for all of them.

Opens are most of the events (a search opens every file it reads) and most are read-only
opens of ordinary files that no detector flags or remembers. A detector that reads opens
may say which ones its check() can use, as an `OpenInterest` (Detector.open_interest,
from its parameters): every open with write intent, read-only directory opens (tree-walk
bookkeeping), opens naming a /proc file, fifos, 32-bit calls, paths matching its globs,
and a test of its own state (`when`). The engine calls it only for those; a detector
that declares nothing gets every open.

`OpenRouter` turns the declarations into one lookup per open: the open's traits (write,
directory read, /proc, fifo, compat) select a precomputed list of detectors, and every
detector's globs are compiled into one regex, so a path that no glob can match costs one
search however many detectors have globs (the globs of the detectors it matches are then
tried one detector at a time, which is rare). A declaration must be a superset of what
check() reads from an open: the router may only leave out opens on which check() would
neither find anything nor change its state.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from collector.events import OpenEvent
from detectors.base import Context, _any_glob_re, _glob_re

# open(2) bits that can change a file (x86_64 uapi; detectors/catalog/common.py's)
WRITE_BITS = 0o1 | 0o2 | 0o100 | 0o1000 | 0o2000 | 0o20000000
WRITE_NAMES = frozenset({"O_WRONLY", "O_RDWR", "O_CREAT", "O_TRUNC", "O_APPEND", "O_TMPFILE"})
O_DIRECTORY = 0o200000

# trait bits of an open
T_WRITE, T_DIR, T_PROC, T_FIFO, T_COMPAT = 1, 2, 4, 8, 16
TRAIT_COMBOS = 32


@dataclass(frozen=True)
class OpenInterest:
    """The opens a detector's check() can use (any one of these is enough)."""

    writes: bool = False        # write intent: any of WRITE_BITS, or of WRITE_NAMES named
    dir_reads: bool = False     # a directory (file_type dir, or O_DIRECTORY asked)
    proc: bool = False          # path or raw_path under /proc/, or a procfs file (proc_pid)
    fifos: bool = False         # file_type fifo
    compat: bool = False        # made through a 32-bit door
    globs: tuple[str, ...] = ()  # path or raw_path matching one (base.path_matches globs)
    # anything else, from the detector's state: called with its context (params, state)
    when: Callable[[Context, OpenEvent], bool] | None = None


def traits(ev: OpenEvent) -> int:
    flags = ev.flags
    t = 0
    if flags & WRITE_BITS or not WRITE_NAMES.isdisjoint(ev.flag_names):
        t = T_WRITE
    ftype = ev.file_type
    if ftype == "dir" or flags & O_DIRECTORY:
        t |= T_DIR
    elif ftype == "fifo":
        t |= T_FIFO
    if ev.path.startswith("/proc/") or ev.raw_path.startswith("/proc/") or \
            ev.proc_pid is not None:
        t |= T_PROC
    if ev.compat:
        t |= T_COMPAT
    return t


class OpenRouter:
    """The detectors (by their index in the engine's list) an open goes to, in order.

    `interests[i]`: detector i's declaration, None for every open; detectors that do not
    read opens at all are left out by the caller (`reads_opens[i]` false)."""

    def __init__(self, interests: Sequence[OpenInterest | None],
                 reads_opens: Sequence[bool]) -> None:
        self.interests = list(interests)
        self._base: list[tuple[int, ...]] = []
        for t in range(TRAIT_COMBOS):
            self._base.append(tuple(
                i for i, (oi, reads) in enumerate(zip(self.interests, reads_opens, strict=True))
                if reads and (oi is None or (oi.writes and t & T_WRITE)
                              or (oi.dir_reads and t & T_DIR) or (oi.proc and t & T_PROC)
                              or (oi.fifos and t & T_FIFO) or (oi.compat and t & T_COMPAT))))
        self._globbed = [(i, oi.globs) for i, (oi, reads)
                         in enumerate(zip(self.interests, reads_opens, strict=True))
                         if reads and oi is not None and oi.globs]
        self._all_globs = tuple(dict.fromkeys(g for _i, globs in self._globbed for g in globs))
        self._when = [(i, oi.when) for i, (oi, reads)
                      in enumerate(zip(self.interests, reads_opens, strict=True))
                      if reads and oi is not None and oi.when is not None]
        self._any: dict[tuple[str, ...], _Prefilter] = {}  # homes -> all the globs

    def route(self, ev: OpenEvent, contexts: Sequence[Context],
              homes: tuple[str, ...]) -> tuple[int, ...]:
        base = self._base[traits(ev)]
        extra: set[int] | None = None
        if self._all_globs:
            pf = self._any.get(homes)
            if pf is None:
                if len(self._any) > 256:
                    self._any.clear()
                pf = self._any[homes] = _Prefilter(self._all_globs, homes)
            path, raw = ev.path, ev.raw_path
            hit = [path] if path and pf.may_match(path) else []
            if raw and raw != path and pf.may_match(raw):
                hit.append(raw)
            if hit:
                for i, globs in self._globbed:
                    if i not in base:
                        one = _any_glob_re(globs, homes)
                        if any(one.match(p) for p in hit):
                            extra = extra or set()
                            extra.add(i)
        for i, when in self._when:
            if i in base or (extra is not None and i in extra):
                continue
            try:
                wanted = when(contexts[i], ev)
            except Exception:  # noqa: BLE001 - then its check() decides (and may be disabled)
                wanted = True
            if wanted:
                extra = extra or set()
                extra.add(i)
        if extra is None:
            return base
        return tuple(sorted(extra.union(base)))


class _Prefilter:
    """A quick test that a path may match one of the globs: never false for a path that
    one of them matches (base.path_matches), rarely true for one that none does. One
    `startswith` over the anchored globs' literal prefixes, one regex over the last
    component for the `**/NAME` globs, a substring test for the other `**/` globs."""

    def __init__(self, globs: tuple[str, ...], homes: tuple[str, ...]) -> None:
        prefixes: list[str] = []
        names: list[str] = []
        inner: list[str] = []
        self.always = False
        home_prefixes = ["/root/", "/home/", *(h + "/" for h in homes)]
        for g in globs:
            if g.startswith("~/"):
                prefixes.extend(home_prefixes)  # {home}/: /root, /home/NAME or a home
            elif g.startswith("**/"):
                rest = g[3:]
                lit = _literal(rest)
                if "/" not in rest and "**" not in rest and "{home}" not in rest:
                    names.append(_glob_re(rest).pattern)  # the last component, whole
                elif lit:
                    inner.append(lit)  # `(?:.*/)?LIT...`: LIT is in the path
                else:
                    self.always = True
            else:
                lit = _literal(g)
                if lit:
                    prefixes.append(lit)
                else:
                    self.always = True
        # prefixes by their first component ("/etc/" for "/etc/shadow"): one dict lookup
        # on the path's first component, then `startswith` over those few
        self.by_head: dict[str, tuple[str, ...]] = {}
        loose: list[str] = []
        for pre in dict.fromkeys(prefixes):
            cut = pre.find("/", 1)
            if pre.startswith("/") and cut > 0:
                head = pre[:cut + 1]
                self.by_head[head] = (*self.by_head.get(head, ()), pre)
            else:
                loose.append(pre)
        self.loose = tuple(loose)
        self.names = re.compile("|".join(f"(?:{n})" for n in names), re.DOTALL) \
            if names else None
        self.inner = tuple(dict.fromkeys(inner))

    def may_match(self, path: str) -> bool:
        if self.always or (self.loose and path.startswith(self.loose)):
            return True
        cut = path.find("/", 1)
        if cut > 0:
            pres = self.by_head.get(path[:cut + 1])
            if pres is not None and path.startswith(pres):
                return True
        if self.names is not None and self.names.match(path[path.rfind("/") + 1:]):
            return True
        for lit in self.inner:  # noqa: SIM110 - a loop: no generator per path
            if lit in path:
                return True
        return False


def _literal(glob: str) -> str:
    """The glob's text up to its first wildcard (`*`, `?`) or `{home}`."""
    end = len(glob)
    for ch in ("*", "?", "{"):
        i = glob.find(ch)
        if i >= 0:
            end = min(end, i)
    return glob[:end]
