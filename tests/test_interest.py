"""The interest filter's plan (detectors/interest.py): pure, no BPF.

The plan is what lets the kernel count an open instead of sending it, so every case here
is about one thing: no path a detector's glob can match may be left boring. Positive
cases (what is filtered) and negative ones (what must be sent) side by side.
"""

from __future__ import annotations

import re

import pytest

from detectors.base import REGISTRY, DetectorSpec, ReadInterest, path_matches
from detectors.config import defaults
from detectors.interest import IPFX, classify, plan, read_globs


def boring(p, path: str) -> bool:
    """What the kernel decides, in Python: below a root by longest prefix and no
    component with a marked name key (aw_interest.h)."""
    if len(path.encode()) >= IPFX:
        return False
    best = None
    for r in p.roots:
        if path.startswith(r + "/") and (best is None or len(r) + 1 > len(best[0])):
            best = (r + "/", True)
    for c in p.carve:
        if path.startswith(c) and (best is None or len(c) > len(best[0])):
            best = (c, False)
    if best is None or not best[1]:
        return False
    for comp in (c for c in path.split("/") if c):
        b = comp.encode()
        if comp in (".", ".."):
            return False
        if ((b[0] << 8) | (b[1] if len(b) > 1 else 0)) in p.first2:
            return False
        if ((b[-2] if len(b) > 1 else 0) << 8 | b[-1]) in p.last2:
            return False
    return True


def test_classify() -> None:
    assert classify("/etc/shadow", "/etc") == ("carve", "/etc/shadow")
    assert classify("/etc/ssh/ssh_host_*_key", "/etc") == ("carve", "/etc/ssh/ssh_host_")
    assert classify("/etc/agentwatch/**", "/etc") == ("carve", "/etc/agentwatch")
    assert classify("/etc/shadow", "/usr") == ("no", None)
    assert classify("/home/*/.ssh/id_*", "/home/u/work") == ("no", None)
    assert classify("/etc", "/etc") == ("no", None)           # the root itself, not below
    assert classify("/proc/**", "/usr") == ("no", None)
    what, keys = classify("**/.env", "/usr")
    assert what == "names" and keys == ({(ord(".") << 8) | ord("e")}, set())
    what, keys = classify("**/*.pem", "/usr")                 # a suffix
    assert what == "names" and keys == (set(), {(ord("e") << 8) | ord("m")})
    assert classify("/usr/**", "/usr")[0] == "drop"             # everything below
    assert classify("**", "/usr")[0] == "drop"
    assert classify("**/*", "/usr")[0] == "drop"
    assert classify("/usr/lib/**/x", "/usr") == ("carve", "/usr/lib")
    assert classify("/u*/lib/**", "/usr") == ("carve", "/usr/lib")
    assert classify("/*/x", "/usr")[0] == "carve"              # /usr/x
    assert classify("/usr/a**b", "/usr")[0] == "drop"           # ** inside a name


def test_names_from_a_segment_below_the_root() -> None:
    # `usr` could match the root's own component: the last segment is the file's name
    what, keys = classify("**/usr/secret*", "/usr")
    assert what == "names" and keys == ({(ord("s") << 8) | ord("e")}, set())
    # ... and a trailing `**` after a segment that may be the root's: nothing pins it
    assert classify("**/usr/**", "/usr")[0] == "drop"


def test_default_plan_filters_system_roots_and_workspace() -> None:
    p = plan(defaults(), ("/home/agent",), "/work/proj")
    assert p.off is None and not p.dropped
    for root in ("/usr", "/etc", "/work/proj"):
        assert root in p.roots
    assert boring(p, "/usr/lib/python3.11/os.py")
    assert boring(p, "/usr/include/stdio.h")
    assert boring(p, "/work/proj/src/main.c")
    assert boring(p, "/etc/passwd")


@pytest.mark.parametrize("path", [
    "/etc/shadow", "/etc/gshadow", "/etc/ssh/ssh_host_rsa_key", "/etc/sudoers",
    "/work/proj/.env", "/work/proj/.env.local", "/work/proj/sub/.git/config",
    "/usr/share/x/.git/HEAD", "/work/proj/answer_key.json", "/work/proj/hidden_tests/t.py",
    "/etc/agentwatch/agentwatch.toml", "/usr/lib/../../root/.ssh/id_rsa",
    "/proc/1/root/etc/passwd", "/home/agent/.ssh/id_rsa", "/sys/kernel/notes",
])
def test_what_a_detector_can_use_is_never_boring(path: str) -> None:
    p = plan(defaults(), ("/home/agent",), "/work/proj")
    assert not boring(p, path)


def test_every_default_read_glob_match_is_sent() -> None:
    """A property over every glob a detector reads by: a path built from each glob (its
    wildcards filled in) and placed under each root it can reach is never boring."""
    homes = ("/home/agent", "/work/proj")  # a HOME that is the workspace too
    p = plan(defaults(), homes, "/work/proj")
    globs, off = read_globs(defaults())
    assert off is None and globs
    for glob in globs:
        for root in p.roots:
            for g in ([glob] if not glob.startswith("~/") else
                      [h + "/" + glob[2:] for h in homes]):
                text = g.replace("**/", "deep/x/").replace("**", "deep/x")
                text = re.sub(r"\*", "zz", text).replace("?", "q")
                if text.startswith("deep/"):
                    text = root + "/" + text
                if path_matches(text, [g]) and text.startswith(root + "/"):
                    assert not boring(p, text), (glob, root, text)


def test_configured_globs_reach_the_plan() -> None:
    cfg = defaults()
    cfg.detectors["canary_touch"].params["paths"] = ["/usr/share/decoy/**", "**/*secret*"]
    p = plan(cfg, (), "/work/proj")
    # `*secret*` has no literal start or end: no name key can stand for it, so no root
    # can be boring below which it may match
    assert not p.roots and set(p.dropped) >= {"/usr", "/work/proj"}
    cfg.detectors["canary_touch"].params["paths"] = ["/usr/share/decoy/**", "**/secret*"]
    p = plan(cfg, (), "/work/proj")
    assert "/usr/share/decoy" in p.carve
    assert not boring(p, "/usr/share/decoy")           # the directory itself
    assert not boring(p, "/usr/share/decoy/a.txt")
    assert not boring(p, "/work/proj/secrets.txt")
    assert boring(p, "/usr/share/doc/a.txt")


def test_a_detector_without_reads_turns_the_filter_off() -> None:
    cfg = defaults()
    cls = REGISTRY["canary_touch"]
    spec = cls.spec
    try:
        cls.spec = DetectorSpec(**{**spec.__dict__, "reads": None})
        p = plan(cfg, (), "/work/proj")
        assert p.off and "canary_touch" in p.off and not p.roots
    finally:
        cls.spec = spec
    cfg.detectors["canary_touch"].enabled = False
    assert plan(cfg, (), "/w").off is None


def test_workspace_root_and_long_paths() -> None:
    p = plan(defaults(), (), "/")
    assert "/" not in p.roots                          # a workspace of / is no root
    long = "/w/" + "d" * 300
    p = plan(defaults(), (), long)
    assert long not in p.roots and long in p.dropped
    p = plan(defaults(), (), "/work/proj")
    assert not boring(p, "/usr/" + "a/" * 130 + "x.h")  # longer than the kernel compares


def test_every_open_reading_detector_declares_reads() -> None:
    """A new detector that reads opens must say which (or accept turning the filter off):
    the built-in ones all declare."""
    for did, cls in REGISTRY.items():
        if "open" in cls.spec.kinds:
            assert isinstance(cls.spec.reads, ReadInterest), did


def test_the_kernels_reads_cover_the_user_space_routers() -> None:
    """Two declarations of what a detector reads: `DetectorSpec.reads` for the kernel's
    filter, `open_interest` for the engine's router (detectors/openroute.py). Every
    read-only regular-file open the router would give a detector must be one the kernel
    sends: its globs among the reads', /proc covered, and no state test (`when`) but the
    one privilege_escalation keeps (a uid change, seen on any later event too)."""
    from detectors.catalog.fileops import tree_patterns

    cfg = defaults()
    for did, dcfg in cfg.detectors.items():
        cls = REGISTRY[did]
        if "open" not in cls.spec.kinds:
            continue
        oi = cls().open_interest(dcfg.params)
        assert oi is not None, f"{did}: the router gives it every open, the kernel does not"
        reads = cls.spec.reads
        assert reads is not None
        kernel = [*reads.globs, *(g for p in reads.params for g in dcfg.params[p])]
        for g in oi.globs:
            assert g in tree_patterns(kernel) or path_matches(g, ["/proc/**"]), (did, g)
        if oi.proc:
            assert "/proc/**" in kernel, did
        if oi.when is not None:
            assert did == "privilege_escalation", did
