"""The kernel rules' constants have one source, probes/rules.py: the checked-in C header is
its output, and every number Python uses comes from it."""

from __future__ import annotations

from collector.decode import KILL_REASONS
from probes import rules


def test_the_checked_in_header_is_the_generators_output() -> None:
    assert rules.HEADER.read_text() == rules.header(), \
        "probes/include/agentwatch_rules.h is stale: run `python -m probes.rules --write`"


def test_the_shared_header_includes_it() -> None:
    text = (rules.HEADER.parent / "agentwatch.h").read_text()
    assert '#include "agentwatch_rules.h"' in text
    for c in rules.ALL:  # defined once, in the generated header
        assert f"#define {c.name} " not in text, c.name


def test_names_and_values_are_unique_within_a_group() -> None:
    assert len(rules.BY_NAME) == len(rules.ALL)
    for _doc, group in rules.GROUPS:
        if group is not rules.LIMITS:
            assert len({c.value for c in group}) == len(group)
    assert all(c.value and not c.value & (c.value - 1) for c in rules.ENABLE)  # one bit each
    assert all(0 < c.value <= 0xFF for c in rules.REASONS)  # hdr_flags bits 8-15


def test_kill_reasons_come_from_the_rules() -> None:
    assert KILL_REASONS == {c.value: c.detector for c in rules.REASONS}
    assert len(set(KILL_REASONS.values())) == len(KILL_REASONS)


def test_checks_and_bits_name_known_reasons() -> None:
    for c in (*rules.ENABLE, *rules.CHECKS):
        assert c.reasons and all(r in rules.BY_NAME for r in c.reasons), c.name
    for c in rules.CHECKS:
        assert c.enable in {e.name for e in rules.ENABLE}, c.name
        assert set(c.reasons) <= set(rules.BY_NAME[c.enable].reasons), c.name
