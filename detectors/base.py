"""What a detector is: metadata (like a Falco rule), parameters with built-in defaults, and a
pure function of (per-session state, event) -> findings.

A detector never does I/O and never imports bcc or psutil: everything it knows comes from
the event and from the `Context` the engine builds (its parameters, its own state for this
session, the acting process as the collector's process table saw it, the session). So it
can be tested, and tuned, over recorded JSON Lines.

A spec also declares the event kinds its detector reads (`kinds`, mandatory: the engine
calls it for those only) and, when the probes can decide its condition by themselves, its
kernel half (`kernel`: syscalls and their C checks, enable bit, reason code, by the names
of probes/rules.py). So a new alert-only detector is one file in detectors/catalog/ plus
its fixtures, and a new kernel rule is its spec's `kernel` plus at most one C branch.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, ClassVar

from collector.events import EVENT_TYPES, Event

SEVERITIES = ("info", "low", "medium", "high", "critical")
ACTIONS = ("alert", "freeze", "kill")
# Every kind a session's events have (all but `loss`, which has no session, `alert`, which
# the engine never passes to a detector, and `summary`, the kernel's counts of opens no
# detector uses, whose header has no credentials): for a detector that keeps state from
# any event (the pids a session has shown, the uid each process last had).
SESSION_KINDS = frozenset(EVENT_TYPES) - {"loss", "alert", "summary"}
DETECTOR_KINDS = SESSION_KINDS | {"loss"}


@dataclass(frozen=True)
class KernelCall:
    """A syscall the probes check at its entry, and the C check (`AW_SE_*`) that decides."""

    syscall: str
    check: str                          # AW_SE_* (probes/rules.py)
    listed_in: str | None = None        # only when the syscall is in this param's list
    # only when this param lists every one of these values (ptrace requests)
    requires: tuple[str, tuple[str, ...]] | None = None
    host_pidns: bool = False            # only when agentwatch runs in the host pid namespace


@dataclass(frozen=True)
class KernelHalf:
    """What the probes decide by themselves for a detector in enforce mode (its action
    `kill`, no configured exceptions): response/enforce.py turns this into the kernel's
    maps. Names, not numbers: their values are probes/rules.py's, which detectors may not
    import; tests/test_rules.py checks every declaration against it."""

    reason: str                         # AW_WHY_*: the reason its kills carry (one each)
    enable: str | None = None           # AW_EN_* bit it turns on
    calls: tuple[KernelCall, ...] = ()
    deny_paths: str | None = None       # param: literal paths whose opens/connects kill
    deny_below: bool = False            # ... and what is below them (AW_DENY_DIR)
    deny_list_ok: bool = False          # read-only directory opens there pass (AW_DENY_LIST)
    # protect_pids: the /proc/<pid>/<entry> entries denied for them (the rest is ps's)
    protect_proc_entries: tuple[str, ...] = ()
    exempt_exes: str | None = None      # param: exe globs whose command names are exempt
    protect_pids: str | None = None     # param: pids nothing may signal (with agentwatch's)
    live_limit: str | None = None       # param: live processes per session (AW_CFG_FORK_MAX)
    # when the rule is on at all
    needs_call: bool = False            # off when none of `calls` applies
    needs_param: str | None = None      # off when this param is empty, false or <= 0
    unless_param: str | None = None     # off when this param is true
    host_pidns: bool = False            # off outside the host pid namespace
    enable_needs_call: bool = False     # `enable` only when one of `calls` applies


@dataclass(frozen=True)
class ReadInterest:
    """The read-only opens a detector can use, for the kernel's interest filter
    (detectors/interest.py): those of files matching its `params`' path globs or `globs`.
    Others (read-only opens of regular files and directories elsewhere, and failed ones)
    it never judges, so the kernel may count them instead of sending them. Write-intent,
    32-bit, O_PATH and non-regular opens are always sent, whatever this says."""

    params: tuple[str, ...] = ()        # names of params holding path globs
    globs: tuple[str, ...] = ()         # fixed path globs


@dataclass(frozen=True)
class DetectorSpec:
    id: str                       # stable id (DESIGN.md's catalogue)
    title: str                    # Title Case, reads like a rule name
    description: str
    severity: str                 # default severity, one of SEVERITIES
    action: str                   # default action, one of ACTIONS
    mitre: tuple[str, ...]        # ATT&CK technique ids
    output: str                   # "what happened | key={key} ..." (str.format over fields)
    # The event kinds check() looks at, state-keeping included: the engine calls a detector
    # for these only (most events are opens, and most detectors never look at one).
    # Mandatory and never empty (check_spec).
    kinds: frozenset[str]
    params: dict[str, Any] = field(default_factory=dict)  # knobs with built-in defaults
    # built-in exceptions (exe/argv/path globs, as in the config); a configured
    # `exceptions` list replaces them
    exceptions: tuple[dict[str, str], ...] = ()
    # numeric fields that a folded alert reports as the sum over the repeats it stands for
    # (event_loss's `lost`: the first alert and its folded one together count every loss)
    summed: tuple[str, ...] = ()
    # its kernel half (in-kernel enforcement), if the probes can decide it by themselves
    kernel: KernelHalf | None = None
    # what it deliberately does not flag, each "what: why" (docs/detectors.md shows them;
    # tests/test_docs.py wants every detector to say)
    not_flagged: tuple[str, ...] = ()
    # for a detector with "open" in `kinds`: the read-only opens it can use. None (the
    # default) means every one: while such a detector is enabled, the kernel sends every
    # open (no interest filtering), so a new detector is never blinded by it.
    reads: ReadInterest | None = None


@dataclass
class ProcView:
    """The acting process as the process table knows it (no I/O for the detector)."""

    pid: int
    ppid: int
    exe: str | None
    argv: list[str]
    cwd: str | None
    comm: str = ""


@dataclass
class SessionView:
    name: str
    kind: str                     # run | launcher | attach
    root_pid: int
    workspace: str | None         # the session root's working directory
    # the session root's HOME (taken once at its start; a symlinked one also resolved)
    homes: tuple[str, ...] = ()


@dataclass
class Context:
    params: dict[str, Any]
    state: dict[str, Any]         # this detector's state for this session (starts empty)
    proc: ProcView | None
    session: SessionView | None
    # what `~/` stands for in globs besides /root and /home/*: the host's passwd homes
    # and the session's HOME (the engine fills it in; pass it to path_matches)
    homes: tuple[str, ...] = ()
    # the session's host pids and tids seen so far (every event's, forks' children, the
    # root): one set per session kept by the engine (proctarget.session_hosts reads it)
    hosts: set[int] | None = None


@dataclass
class Finding:
    key: str                      # what repeats fold on (same detector, session and key)
    fields: dict[str, Any]        # for the output template and the alert's `fields`
    severity: str | None = None   # override the detector's severity
    action: str | None = None     # override its action (e.g. a sequence escalates to kill)
    note: str = ""                # appended to the summary
    output: str | None = None     # this finding's own template (default: the spec's)


class Detector:
    spec: ClassVar[DetectorSpec]

    def check(self, ctx: Context, ev: Event) -> Iterable[Finding]:
        raise NotImplementedError

    def open_interest(self, params: dict[str, Any]) -> Any:
        """The opens check() can use, from its parameters: a detectors/openroute.py
        OpenInterest (not imported here: openroute.py builds on this module), or None for
        every open (the default)."""
        return None


REGISTRY: dict[str, type[Detector]] = {}


def check_spec(spec: DetectorSpec) -> None:
    """A spec the engine can run: known severity and action, and the event kinds it looks
    at (a spec without them would run on nothing, or be assumed to run on everything)."""
    if spec.severity not in SEVERITIES or spec.action not in ACTIONS:
        raise ValueError(f"detector {spec.id}: bad default severity or action")
    kinds = getattr(spec, "kinds", None)
    if not isinstance(kinds, frozenset) or not kinds or not kinds <= DETECTOR_KINDS:
        raise ValueError(f"detector {spec.id}: `kinds` must be a non-empty frozenset of "
                         f"{sorted(DETECTOR_KINDS)}, not {kinds!r}")


def register(cls: type[Detector]) -> type[Detector]:
    spec = cls.spec
    if spec.id in REGISTRY:
        raise ValueError(f"detector {spec.id} registered twice")
    check_spec(spec)
    REGISTRY[spec.id] = cls
    return cls


HOME_RE = r"/root|/home/[^/]+"  # what `~` stands for with no other home known


@lru_cache(maxsize=4096)
def _glob_re(pattern: str, homes: tuple[str, ...] = ()) -> re.Pattern[str]:
    """A glob where `**` crosses directories and `*` does not; `~/` matches /root, any
    /home/NAME and each of `homes` (absolute directories, matched literally)."""
    if pattern.startswith("~/"):
        pattern = "{home}/" + pattern[2:]
    home_re = "(?:" + "|".join([HOME_RE, *(re.escape(h) for h in homes)]) + ")"
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("{home}", i):
            out += home_re
            i += len("{home}")
        elif pattern.startswith("**/", i):
            out += r"(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            out += r".*"
            i += 2
        elif pattern[i] == "*":
            out += r"[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += r"[^/]"
            i += 1
        else:
            out += re.escape(pattern[i])
            i += 1
    # DOTALL: a newline is a legal byte of a file name; without it a directory named
    # "x\n" would hide everything below it from every `**` glob
    return re.compile(out + r"\Z", re.DOTALL)


@lru_cache(maxsize=1024)
def _any_glob_re(patterns: tuple[str, ...], homes: tuple[str, ...] = ()) -> re.Pattern[str]:
    """One regex for a whole list of globs: most paths match none, and one search is much
    cheaper than one per glob (this runs for every open of every watched process)."""
    return re.compile("|".join(f"(?:{_glob_re(p, homes).pattern})" for p in patterns),
                      re.DOTALL)


def path_matches(path: str | None, patterns: Iterable[str],
                 homes: tuple[str, ...] = ()) -> str | None:
    """The first glob of `patterns` that `path` matches, or None. `homes`: what `~/`
    stands for besides /root and /home/* (a detector passes `ctx.homes`)."""
    if not path:
        return None
    globs = tuple(patterns)
    if not globs or not _any_glob_re(globs, homes).match(path):
        return None
    for pattern in globs:
        if _glob_re(pattern, homes).match(path):
            return pattern
    return None


def normal_homes(homes: Iterable[str | None]) -> tuple[str, ...]:
    """Homes as the globs take them: absolute, without a trailing `/`, neither `/` itself
    (a HOME of `/` would make every `~/` glob a top-level one) nor /root or /home/NAME
    (always matched), each once, in order."""
    out: list[str] = []
    for h in homes:
        if not isinstance(h, str) or not h.startswith("/"):
            continue
        h = h.rstrip("/")
        if not h or "\0" in h or re.fullmatch(HOME_RE, h) or h in out:
            continue
        out.append(h)
    return tuple(out)


def text_matches(value: str, pattern: str) -> bool:
    """Shell-style match for argv strings and exe names (no path semantics)."""
    return fnmatch.fnmatchcase(value, pattern)


def under(path: str | None, roots: Iterable[str]) -> bool:
    if not path:
        return False
    for root in roots:
        root = root.rstrip("/") or "/"
        if root == "/" or path == root or path.startswith(root + "/"):
            return True
    return False
