"""The scenario corpus itself (tests/scenarios/): every header parses, the corpus covers
every detector id with the counts issue 7 asks for, and the runner's verdicts follow
what a run saw. The runs themselves are `make scenarios` (real sandboxes, real probes)."""

from __future__ import annotations

from pathlib import Path

import pytest

from detectors.config import defaults
from tests.scenarios.corpus import WAYS, ScenarioError, load_scenarios, parse_scenario
from tests.scenarios.report import Row, summary


def test_the_corpus_covers_every_detector_with_enough_scenarios() -> None:
    scenarios = load_scenarios()
    attacks = [s for s in scenarios if s.kind == "attack"]
    benign = [s for s in scenarios if s.kind == "benign"]
    assert len(attacks) >= 30 and len(benign) >= 12
    assert {s.expect for s in attacks} == set(defaults().detectors)
    assert all(s.ways == WAYS for s in benign), "every benign scenario runs all three ways"
    # an attack may leave out a way where the act cannot happen: it says why
    # (`# not-in: WAY: reason`)
    assert all(set(s.ways) | set(s.excluded or {}) == set(WAYS) for s in scenarios)
    assert len({s.name for s in scenarios}) == len(scenarios)
    for s in attacks:
        assert all(a in ("kill", "alert", "deny") for a in s.actions.values()), s.name
        assert s.about, s.name


@pytest.mark.parametrize("header, problem", [
    ("# action: kill\n", "no `# expect:`"),
    ("# expect: none\n", "cannot expect"),
    ("# expect: fork_bomb\n# action: explode\n", "action must be"),
    ("# expect: fork_bomb\n# action: kill\n# ways: docker\n", "ways must be"),
    ("# expect: fork_bomb\n# action: kill\n# srt-settings: {nope\n", "not JSON"),
    ("# expect: fork_bomb\n# action: kill\n# ways: bwrap bare\n", "not-in"),
    ("# expect: fork_bomb\n# action: kill\n# outside: tcp\n", "outside must be"),
])
def test_bad_headers_are_clear_errors(tmp_path: Path, header: str, problem: str) -> None:
    p = tmp_path / "x.sh"
    p.write_text(header)
    with pytest.raises(ScenarioError, match=problem):
        parse_scenario(p, "attack")


def test_verdicts(tmp_path: Path) -> None:
    p = tmp_path / "a.sh"
    p.write_text("# expect: fork_bomb\n# action: kill\n# action@bare: alert\n")
    attack = parse_scenario(p, "attack")
    b = tmp_path / "b.sh"
    b.write_text("# expect: none\n")
    benign = parse_scenario(b, "benign")
    hit = Row(attack, "bwrap", "fork_bomb", fired=["fork_bomb"], taken="kill")
    survivor = Row(attack, "srt", "fork_bomb", fired=["fork_bomb"], taken="kill",
                   survivors=2)
    wrong_action = Row(attack, "bare", "fork_bomb", fired=["fork_bomb"], taken="kill")
    other_detector = Row(attack, "bwrap", "fork_bomb", fired=["mount_escape"], taken="-")
    quiet = Row(benign, "bwrap", "none", fired=["credential_read"])  # low severity only
    loud = Row(benign, "srt", "none", fired=["credential_read"], loud=["credential_read"])
    assert hit.ok and quiet.ok
    assert not survivor.ok and not wrong_action.ok and not other_detector.ok
    assert not loud.ok
    s = summary([hit, survivor, wrong_action, other_detector, quiet, loud])
    assert (s["hits"], s["attack_runs"], s["false_positives"], s["survivors"]) == (1, 4, 1, 2)
