"""Which opens the kernel may count instead of send: the interest filter's plan.

The detectors' specs say which read-only opens each can use (`DetectorSpec.reads`: the
path globs of some of its params, and fixed globs). From those, with the session's homes
and workspace, `plan()` derives what the probes need to decide by themselves, at an open's
exit, that no enabled detector can use an open (probes/include/aw_interest.h):

- boring roots: directories (read-only system roots, the workspace) below which no glob can
  match a file, except where the two parts below say;
- carve-outs: literal prefixes below a root where some glob can match (`/etc/shadow`,
  `/etc/ssh/ssh_host_`): longest-prefix match sends what is below them;
- name keys: for globs that can match anywhere below a root (`**/.env`, `**/.git/**`,
  `**/answer_key*`, `~/.ssh/*.pem` below a home that is a root), the first two or last two
  bytes of a component any match must have; a path with such a component is sent.

Everything here is conservative: a glob whose matches cannot be pinned to a prefix or a
name key removes its root from the plan (say why in `dropped`), and a detector that reads
opens without declaring which (`reads` None) turns the filter off (`off`). Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache

from detectors.base import REGISTRY, normal_homes
from detectors.config import Config

# Read-only system roots: what every process reads (libraries, headers, data, configs).
SYSTEM_ROOTS = ("/usr", "/lib", "/lib32", "/lib64", "/libx32", "/bin", "/sbin", "/etc",
                "/opt")
IPFX = 240           # AW_IPFX: path bytes the kernel compares; longer paths are sent
HOME_GLOBS = ("/root", "/home/*")  # what `~` stands for besides the homes we know
DOT_KEYS = (ord(".") << 8, (ord(".") << 8) | ord("."))  # ".", ".." (and names "..x")


@dataclass
class Plan:
    roots: list[str] = field(default_factory=list)      # boring roots, no trailing "/"
    carve: list[str] = field(default_factory=list)      # literal prefixes sent in full
    first2: set[int] = field(default_factory=set)       # (b0 << 8) | b1 of a component
    last2: set[int] = field(default_factory=set)        # (b[-2] << 8) | b[-1]
    dropped: dict[str, str] = field(default_factory=dict)  # root -> why not a root
    off: str | None = None                              # why nothing is filtered

    def describe(self) -> str:
        if self.off:
            return f"interest filter off: {self.off}"
        return (f"interest filter: {len(self.roots)} roots ({', '.join(self.roots)}), "
                f"{len(self.carve)} carve-outs, {len(self.first2) + len(self.last2)} "
                f"name keys")


def read_globs(config: Config) -> tuple[list[str], str | None]:
    """Every path glob an enabled detector judges read-only opens by, or why there is no
    such list (a detector that reads every open)."""
    globs: list[str] = []
    for did, dcfg in config.detectors.items():
        cls = REGISTRY.get(did)
        if cls is None or not dcfg.enabled or "open" not in cls.spec.kinds:
            continue
        reads = cls.spec.reads
        if reads is None:
            return [], f"detector {did} reads every open"
        globs.extend(reads.globs)
        for name in reads.params:
            value = dcfg.params.get(name)
            if isinstance(value, str):
                value = [value]
            if not isinstance(value, (list, tuple)):
                continue
            globs.extend(v for v in value if isinstance(v, str))
    return globs, None


def expand_home(glob: str, homes: tuple[str, ...]) -> list[str]:
    """`~/x` as the globs take it: /root/x, /home/*/x and each home's x."""
    if not glob.startswith("~/"):
        return [glob]
    rest = glob[2:]
    return [f"{h}/{rest}" for h in (*HOME_GLOBS, *homes)]


@lru_cache(maxsize=4096)
def _seg_re(seg: str) -> re.Pattern[str]:
    out = "".join("[^/]*" if c == "*" else "[^/]" if c == "?" else re.escape(c) for c in seg)
    return re.compile(out + r"\Z", re.DOTALL)


def _literal_prefix(text: str) -> str:
    m = re.search(r"[*?]", text)
    return text if m is None else text[: m.start()]


def _name_keys(seg: str) -> tuple[set[int], set[int]] | None:
    """The first-two or last-two byte keys a component matching `seg` must have (the
    stronger of the two), or None when it has no literal start or end."""
    raw = seg.encode("utf-8", "surrogateescape")
    if b"*" not in raw and b"?" not in raw:  # a literal name: its first two bytes
        return ({(raw[0] << 8) | (raw[1] if len(raw) > 1 else 0)}, set()) if raw else None
    pre = raw[: min(i for i in (raw.find(b"*"), raw.find(b"?")) if i >= 0)]
    cut = max(raw.rfind(b"*"), raw.rfind(b"?"))
    suf = raw[cut + 1:]
    if len(pre) >= 2:
        return {(pre[0] << 8) | pre[1]}, set()
    if len(suf) >= 2:
        return set(), {(suf[-2] << 8) | suf[-1]}
    if len(pre) == 1:
        return {(pre[0] << 8) | b for b in range(256)}, set()
    if len(suf) == 1:
        return set(), {(b << 8) | suf[0] for b in range(256)}
    return None


def _names_for(segs: list[str], root_segs: list[str]) -> tuple[set[int], set[int]] | None:
    """Name keys for a glob tail that can match anywhere below the root: from a segment
    that must match a component below the root (the last one always does, being the
    file's own name; another only if it cannot match any of the root's components)."""
    best: tuple[set[int], set[int]] | None = None
    for k, seg in enumerate(segs):
        if seg == "**" or "**" in seg:
            continue
        below = k == len(segs) - 1 or not any(_seg_re(seg).match(r) for r in root_segs)
        if not below:
            continue
        keys = _name_keys(seg)
        if keys is not None and (best is None or
                                 len(keys[0]) + len(keys[1]) < len(best[0]) + len(best[1])):
            best = keys
    return best


Keys = tuple[set[int], set[int]]


def classify(glob: str, root: str) -> tuple[str, str | Keys | None]:
    """What `glob` asks of the files strictly below `root`: ("no", None) none can match;
    ("carve", prefix) any match is below that literal prefix; ("names", keys) any match
    has a component with one of those name keys; ("drop", why) cannot be pinned down."""
    gsegs = glob.split("/")
    rsegs = root.rstrip("/").split("/") if root != "/" else [""]
    if any("**" in s and s != "**" for s in gsegs):
        return "drop", f"glob {glob!r} has ** inside a name"
    i = j = 0
    while True:
        if j == len(gsegs):
            return "no", None  # the glob ends at or above the root
        if gsegs[j] == "**":
            keys = _names_for(gsegs[j + 1:], rsegs[i:])
            if keys is None:
                return "drop", f"glob {glob!r} can match anything below {root}"
            return "names", keys
        if i == len(rsegs):  # below the root: its literal part is a carve-out
            lit = _literal_prefix("/".join(gsegs[j:]))
            if lit:
                return "carve", (root.rstrip("/") + "/" + lit).rstrip("/")
            keys = _names_for(gsegs[j:], [])
            if keys is None:
                return "drop", f"glob {glob!r} can match anything below {root}"
            return "names", keys
        if not _seg_re(gsegs[j]).match(rsegs[i]):
            return "no", None
        i += 1
        j += 1


def plan(config: Config, homes: Iterable[str] = (), workspace: str | None = None,
         roots: Iterable[str] = SYSTEM_ROOTS) -> Plan:
    """The plan for one session: `homes` (the host's and the session's) stand for `~/`,
    `workspace` (its root's working directory) is a root too unless it is `/`."""
    out = Plan()
    globs, off = read_globs(config)
    if off:
        out.off = off
        return out
    hs = normal_homes(homes)
    expanded = [g for glob in globs for g in expand_home(glob, hs)]
    candidates = [r.rstrip("/") for r in roots if r.startswith("/") and r.rstrip("/")]
    if workspace and workspace.startswith("/") and workspace.rstrip("/"):
        candidates.append(workspace.rstrip("/"))
    out.first2.update(DOT_KEYS)
    for root in dict.fromkeys(candidates):
        if len(root.encode("utf-8", "surrogateescape")) + 1 >= IPFX:
            out.dropped[root] = f"longer than {IPFX - 2} bytes"
            continue
        carve: list[str] = []
        first2: set[int] = set()
        last2: set[int] = set()
        why = None
        for glob in expanded:
            what, arg = classify(glob, root)
            if what == "drop":
                why = str(arg)
                break
            if what == "carve" and isinstance(arg, str):
                carve.append(arg[: IPFX - 1])
            elif what == "names" and isinstance(arg, tuple):
                first2 |= arg[0]
                last2 |= arg[1]
        if why:
            out.dropped[root] = why
            continue
        out.roots.append(root)
        out.carve.extend(c for c in carve if c not in out.carve)
        out.first2 |= first2
        out.last2 |= last2
    return out
