"""Writes each session's interest plan (detectors/interest.py) into the probes' maps.

`interest_roots` (longest-prefix match on (session, path)) gets the session's boring roots,
each with an id that `summary` events name it by (collector/summaries.py), and its
carve-outs with 0; `interest_names` gets the name keys of every plan so far (a union:
bits are only ever added between reloads, so a session is never filtered by fewer keys
than its plan has). A session's entries are written when its start event passes, before
anything else sees it, and removed at its end. Until then, and with `--events-level all`,
the kernel sends every open.
"""

from __future__ import annotations

import contextlib
import ctypes
from typing import Any

from collector.events import SessionEvent
from collector.homes import host_homes
from collector.summaries import Summaries
from detectors.config import Config
from detectors.interest import IPFX, Plan, plan

EVENTS_LEVELS = ("interest", "all")
NAME_WORDS = 2048  # AW_INAMES_WORDS


class InterestInstaller:
    def __init__(self, summaries: Summaries, level: str = "interest") -> None:
        if level not in EVENTS_LEVELS:
            raise ValueError(f"events level must be one of {', '.join(EVENTS_LEVELS)}")
        self.level = level
        self.summaries = summaries
        self.bpf: Any = None
        self.config: Config | None = None
        self.root_ids: dict[str, int] = {}
        self.plans: dict[int, Plan] = {}           # session id -> its plan
        self._entries: dict[int, list[bytes]] = {}  # session id -> prefixes written
        self._views: dict[int, tuple[tuple[str, ...], str | None]] = {}  # homes, workspace
        self._words = [0] * NAME_WORDS
        self.last: Plan | None = None              # the latest plan (status, doctor)
        # plans by (homes, workspace) for this config: sandbox-runtime starts a session per
        # `bwrap --version`, and a plan is ~20 ms of glob analysis on the event loop
        self._plans: dict[tuple[tuple[str, ...], str | None], Plan] = {}

    @property
    def enabled(self) -> bool:
        return self.level == "interest" and self.bpf is not None and self.config is not None

    def start(self, bpf: Any, config: Config | None) -> None:
        try:
            bpf[b"interest_roots"]
            bpf[b"interest_names"]
        except Exception:  # noqa: BLE001 - pinned maps of an older sensor: no filter
            bpf = None
        self.bpf = bpf
        self.config = config

    def reload(self, config: Config | None) -> None:
        """A new detection config: every live session's plan again, name keys anew."""
        self.config = config
        self._plans.clear()
        views = dict(self._views)
        for sid in list(self._entries):
            self.remove(sid)
        self._words = [0] * NAME_WORDS
        if self.enabled:
            self._write_words(range(NAME_WORDS))
        for sid, (homes, workspace) in views.items():
            self._install(sid, homes, workspace)

    def session_started(self, ev: SessionEvent) -> None:
        sid = _session_id(ev)
        if sid is not None:
            self._install(sid, tuple(ev.homes or ()), ev.cwd)

    def session_ended(self, ev: SessionEvent) -> None:
        sid = _session_id(ev)
        if sid is not None:
            self.remove(sid)

    def remove(self, sid: int) -> None:
        self._views.pop(sid, None)
        self.plans.pop(sid, None)
        prefixes = self._entries.pop(sid, [])
        if not prefixes or self.bpf is None:
            return
        table = self.bpf[b"interest_roots"]
        for prefix in prefixes:
            with contextlib.suppress(KeyError):
                del table[self._key(table, sid, prefix)]

    # ------------------------------------------------------------------ helpers
    def _install(self, sid: int, homes: tuple[str, ...], workspace: str | None) -> None:
        self._views[sid] = (homes, workspace)
        if not self.enabled or self.config is None:
            return
        all_homes = (*host_homes(), *homes)
        p = self._plans.get((all_homes, workspace))
        if p is None:
            if len(self._plans) > 256:
                self._plans.clear()
            p = self._plans[(all_homes, workspace)] = plan(self.config, all_homes, workspace)
        self.plans[sid] = p
        self.last = p
        if p.off or not p.roots:
            return
        changed = set()
        for key in p.first2:
            changed.add(self._set_bit(key))
        for key in p.last2:
            changed.add(self._set_bit(65536 + key))
        self._write_words(changed)  # the names first: a root is live once written
        table = self.bpf[b"interest_roots"]
        written: list[bytes] = []
        for carve in p.carve:
            prefix = carve.encode("utf-8", "surrogateescape")[: IPFX - 1]
            table[self._key(table, sid, prefix)] = ctypes.c_uint32(0)
            written.append(prefix)
        for root in p.roots:
            rid = self.root_ids.setdefault(root, len(self.root_ids) + 1)
            self.summaries.roots[rid] = root
            prefix = (root + "/").encode("utf-8", "surrogateescape")
            table[self._key(table, sid, prefix)] = ctypes.c_uint32(rid)
            written.append(prefix)
        self._entries[sid] = written

    @staticmethod
    def _key(table: Any, sid: int, prefix: bytes) -> Any:
        key = table.Key()
        key.prefixlen = 64 + 8 * len(prefix)
        key.s_lo = sid & 0xFFFFFFFF
        key.s_hi = sid >> 32
        ctypes.memmove(ctypes.addressof(key) + type(key).path.offset, prefix, len(prefix))
        return key

    def _set_bit(self, bit: int) -> int:
        word = bit >> 6
        self._words[word] |= 1 << (bit & 63)
        return word

    def _write_words(self, words: Any) -> None:
        """The whole bitmap, one value (the kernel reads it with one lookup per scan);
        `words`: those that changed (none: nothing to write)."""
        if not words:
            return
        table = self.bpf[b"interest_names"]
        leaf = table.Leaf()
        for i, w in enumerate(self._words):
            leaf.w[i] = w
        table[ctypes.c_int(0)] = leaf



def _session_id(ev: SessionEvent) -> int | None:
    """The kernel's id of a session (its name is 16 hex digits); None for another name."""
    try:
        return int(ev.session or "", 16)
    except ValueError:
        return None
