"""The kernel rules' constants have one source, probes/rules.py: the checked-in C header is
its output, and every number Python uses comes from it."""

from __future__ import annotations

import detectors.catalog  # noqa: F401 - registers the catalogue
from collector.decode import KILL_REASONS
from detectors.base import REGISTRY, KernelHalf
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
    assert {c.value: c.detector for c in rules.REASONS} == KILL_REASONS
    assert len(set(KILL_REASONS.values())) == len(KILL_REASONS)


def test_checks_and_bits_name_known_reasons() -> None:
    for c in (*rules.ENABLE, *rules.CHECKS):
        assert c.reasons and all(r in rules.BY_NAME for r in c.reasons), c.name
    for c in rules.CHECKS:
        assert c.enable in {e.name for e in rules.ENABLE}, c.name
        assert set(c.reasons) <= set(rules.BY_NAME[c.enable].reasons), c.name


# ------------------------------------------------------------------ detectors' kernel halves
def _halves() -> dict[str, KernelHalf]:
    return {did: cls.spec.kernel for did, cls in REGISTRY.items() if cls.spec.kernel}


def test_every_reason_is_declared_by_exactly_the_detector_it_names() -> None:
    halves = _halves()
    declared = [k.reason for k in halves.values()]
    assert len(declared) == len(set(declared)), "a reason code declared twice"
    assert sorted(declared) == sorted(c.name for c in rules.REASONS)
    for did, k in halves.items():
        assert rules.BY_NAME[k.reason].detector == did


def test_kill_reasons_are_what_the_specs_say() -> None:
    halves = _halves()
    assert {rules.VALUE[k.reason]: did
                            for did, k in halves.items()} == KILL_REASONS


def test_every_kernel_half_matches_the_rules_and_its_params() -> None:
    from probes.syscalls import SYSCALLS

    table = {s.name for s in SYSCALLS}
    enable_names = {c.name for c in rules.ENABLE}
    for did, k in _halves().items():
        params = REGISTRY[did].spec.params
        if k.enable:
            assert k.enable in enable_names, did
            assert k.reason in rules.BY_NAME[k.enable].reasons, did
        if k.deny_paths:
            assert k.reason in rules.BY_NAME["AW_EN_PATHS"].reasons, did
        for name in ("deny_paths", "exempt_exes", "protect_pids", "live_limit",
                     "needs_param", "unless_param"):
            param = getattr(k, name)
            assert param is None or param in params, (did, name, param)
        for call in k.calls:
            check = rules.BY_NAME[call.check]
            assert check in rules.CHECKS, (did, call)
            assert call.syscall in table, (did, call.syscall)  # the generic probe sees it
            assert check.enable == k.enable, (did, call)
            assert k.reason in check.reasons, (did, call)
            assert call.listed_in is None or call.listed_in in params, (did, call)
            if call.requires:
                param, values = call.requires
                assert param in params, (did, call)
                if call.check == "AW_SE_PTRACE":  # the requests the C check kills for
                    assert set(values) == set(rules.PTRACE_KILLS) <= set(params[param])
