"""The scenario corpus: each script's header (what it expects, where it applies) parsed
into a Scenario. tests/scenarios/runner.py runs them; tests/test_scenarios.py checks them."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
WAYS = ("bwrap", "srt", "bare")
PY = "/usr/bin/python3"


class ScenarioError(RuntimeError):
    pass


@dataclass
class Scenario:
    name: str
    path: Path
    kind: str                       # attack | benign
    expect: str | None              # detector id; None for benign
    actions: dict[str, str]         # way -> expected action
    ways: tuple[str, ...]
    srt_settings: dict[str, Any]
    about: str
    outside: tuple[str, ...] = ()   # peers the runner starts outside the session: unix
    excluded: dict[str, str] | None = None  # way left out of `ways` -> why (`# not-in:`)

    def argv(self) -> list[str]:
        return [PY, str(self.path)] if self.path.suffix == ".py" else ["/bin/bash",
                                                                         str(self.path)]


OUTSIDE_KINDS = ("unix",)
_HEADER = re.compile(r"^#\s*([a-z@-]+):\s*(.*?)\s*$")


def parse_scenario(path: Path, kind: str) -> Scenario:
    """The header of one scenario script (its leading comment lines)."""
    meta: dict[str, str] = {}
    for line in path.read_text(errors="replace").splitlines()[:20]:
        m = _HEADER.match(line)
        if m:
            meta[m.group(1)] = m.group(2)
    expect = meta.get("expect")
    if expect is None:
        raise ScenarioError(f"{path}: no `# expect:` line")
    if (kind == "benign") != (expect == "none"):
        raise ScenarioError(f"{path}: a {kind} scenario cannot expect {expect!r}")
    action = meta.get("action", "none" if kind == "benign" else "")
    if action not in ("kill", "alert", "deny", "none"):
        raise ScenarioError(f"{path}: action must be kill, alert or deny, not {action!r}")
    actions = {way: meta.get(f"action@{way}", action) for way in WAYS}
    ways = tuple(meta.get("ways", " ".join(WAYS)).split())
    if not ways or set(ways) - set(WAYS):
        raise ScenarioError(f"{path}: ways must be among {', '.join(WAYS)}")
    try:
        settings = json.loads(meta.get("srt-settings", "{}"))
    except ValueError as e:
        raise ScenarioError(f"{path}: srt-settings is not JSON: {e}") from None
    # `# not-in: srt: why`: a way left out of `ways` must say why
    excluded: dict[str, str] = {}
    for line in path.read_text(errors="replace").splitlines()[:20]:
        m = re.match(r"^#\s*not-in:\s*([a-z]+):\s*(.+?)\s*$", line)
        if m:
            excluded[m.group(1)] = m.group(2)
    if set(ways) | set(excluded) != set(WAYS) or set(ways) & set(excluded):
        raise ScenarioError(f"{path}: each way left out of `ways` needs a `# not-in: WAY: "
                            "reason` line, and only those")
    outside = tuple(meta.get("outside", "").split())
    if set(outside) - set(OUTSIDE_KINDS):
        raise ScenarioError(f"{path}: outside must be among {', '.join(OUTSIDE_KINDS)}")
    return Scenario(name=path.stem, path=path, kind=kind,
                    expect=None if expect == "none" else expect, actions=actions, ways=ways,
                    srt_settings=settings, about=meta.get("about", ""), outside=outside,
                    excluded=excluded)


def load_scenarios(root: Path = HERE) -> list[Scenario]:
    out = []
    for kind, sub in (("attack", "attacks"), ("benign", "benign")):
        for path in sorted((root / sub).iterdir()):
            if path.suffix in (".sh", ".py"):
                out.append(parse_scenario(path, kind))
    return out
