"""Network detectors over recorded-shape fixtures (no root): egress allowlist, DNS
exfiltration, reverse shells. Negatives hold bubblewrap's setup and a benign agent: pip
through sandbox-runtime's loopback proxy, DNS to 127.0.0.53 for pypi.org and GitHub's
release-asset host, curl to loopback, shell redirections, `nc -z`, `grep /dev/tcp/`."""

from __future__ import annotations

import pytest

from detectors.catalog.network import entropy, labels
from tests.detector_fixtures import alerts_of, load_events, summary

EXPECTED: dict[str, list[tuple[str, str, str]]] = {  # severity, requested action, key
    "egress_violation": [
        ("high", "alert", "203.0.113.7:443"),
        ("critical", "alert", "169.254.169.254:80"),   # cloud metadata: always, critical
        ("high", "alert", "[2001:db8::53]:53"),
    ],
    "dns_exfil": [
        ("high", "alert", "long:exfil.example"),
        ("high", "alert", "entropy:exfil.example"),
        ("high", "alert", "rate"),       # 61 distinct names (+2 above) within the window
    ],
    "reverse_shell": [
        ("critical", "kill", "exec:bash"),
        ("critical", "kill", "dup:0"),
        ("critical", "kill", "exec:nc"),
        ("critical", "kill", "exec:socat"),
        ("critical", "kill", "exec:python3"),
        ("critical", "kill", "exec:sh"),        # mkfifo | sh -i | nc
        ("critical", "kill", "exec:perl"),
        ("critical", "kill", "placed:0"),       # socket() on a closed fd 0
        ("critical", "kill", "placed:1"),       # accept4() on a closed fd 1
        ("critical", "kill", "stdio:30053:sh"),  # sh exec'd on an inherited inet socket
        ("critical", "kill", "stdio:30054:sh"),  # ... on a unix socket, peer outside
        ("critical", "kill", "relay:30055"),    # mkfifo + nc, exec then connect
        ("critical", "kill", "relay:30058"),    # nc | bash | socat, connects first
        ("critical", "kill", "relay:30071"),    # fifos opened by path by the relay
    ],
}


@pytest.mark.parametrize("detector", list(EXPECTED))
def test_positive_fixture_raises_exactly_the_expected_alerts(detector: str) -> None:
    alerts = alerts_of(detector, "positive")
    assert summary(alerts) == [(detector, *e) for e in EXPECTED[detector]]


@pytest.mark.parametrize("detector", list(EXPECTED))
def test_negative_fixture_raises_nothing(detector: str) -> None:
    assert any(ev.setup for ev in load_events(detector, "negative"))
    assert alerts_of(detector, "negative") == []


def test_egress_kill_count_turns_the_action_to_kill() -> None:
    alerts = alerts_of("egress_violation", "positive", {"egress_violation": {"kill_count": 2}})
    assert [a.action["requested"] for a in alerts] == ["alert", "alert", "kill"]


def test_egress_metadata_is_flagged_even_when_allowed() -> None:
    cfg = {"egress_violation": {"allow_all_other": True}}
    assert [a.key for a in alerts_of("egress_violation", "positive", cfg)] == \
        ["169.254.169.254:80"]
    cfg = {"egress_violation": {"allow": ["0.0.0.0/0", "::/0"]}}
    assert [a.key for a in alerts_of("egress_violation", "positive", cfg)] == \
        ["169.254.169.254:80"]


def test_egress_allowlist_is_a_param() -> None:
    cfg = {"egress_violation": {"allow": ["127.0.0.0/8", "::1/128", "203.0.113.0/24"]}}
    keys = [a.key for a in alerts_of("egress_violation", "positive", cfg)]
    assert keys == ["169.254.169.254:80", "[2001:db8::53]:53"]


def test_dns_thresholds_are_params() -> None:
    # a longer limit lets the 60-char hex label through (its entropy is low: 12 symbols)
    cfg = {"dns_exfil": {"max_label_length": 63}}
    assert [a.key for a in alerts_of("dns_exfil", "positive", cfg)] == \
        ["entropy:exfil.example", "rate"]
    # the rate check off
    assert [a.key for a in alerts_of("dns_exfil", "positive", {"dns_exfil": {"max_names": 0}})] \
        == ["long:exfil.example", "entropy:exfil.example"]
    # at most 2 distinct names per window: the benign agent's third name alerts, once
    cfg = {"dns_exfil": {"max_names": 2}}
    rate = alerts_of("dns_exfil", "negative", cfg)
    assert [a.key for a in rate] == ["rate"]
    assert rate[0].fields["names"] == 3
    # repeats of one name count once
    assert alerts_of("dns_exfil", "negative", {"dns_exfil": {"max_names": 5}}) == []
    assert [a.key for a in alerts_of("dns_exfil", "negative",
                                     {"dns_exfil": {"max_names": 4}})] == ["rate"]


def test_dns_entropy_ignores_hyphenated_words() -> None:
    assert entropy("github-production-release-asset-2e65be") > 4.0  # why runs are used
    assert labels(r"a\.b.example.org") == [r"a\.b", "example", "org"]


def test_reverse_shell_exception_by_exe_suppresses() -> None:
    cfg = {"reverse_shell": {"exceptions": [{"exe": "/usr/bin/socat"}]}}
    keys = [a.key for a in alerts_of("reverse_shell", "positive", cfg)]
    assert keys == ["exec:bash", "dup:0", "exec:nc", "exec:python3", "exec:sh", "exec:perl",
                    "placed:0", "placed:1", "stdio:30053:sh", "stdio:30054:sh", "relay:30055",
                    "relay:30058", "relay:30071"]


def test_dns_exception_by_argv_suppresses() -> None:
    cfg = {"dns_exfil": {"exceptions": [{"argv": "*bash -c npm test"}]}}
    assert alerts_of("dns_exfil", "positive", cfg) == []


def test_reverse_shell_ignores_unix_socket_stdio_unless_told() -> None:
    """Node gives children socketpair stdio: a unix socket dup'ed onto fd 0-2 is not a
    reverse shell by default; `ignore_unix_sockets = false` flags it like a TCP one."""
    events = load_events("reverse_shell", "positive")
    dups = [e for e in events if getattr(e, "syscall", None) in ("dup2", "dup3")
            and e.args.get("socket")]  # type: ignore[attr-defined]
    assert dups
    for e in dups:
        e.args["unix_socket"] = True  # type: ignore[attr-defined]
    from service.replay import Analyzer
    from tests.detector_fixtures import config

    def dup_keys(cfg: dict[str, dict[str, object]] | None) -> list[str]:
        analyzer = Analyzer(config(cfg))
        out = []
        for ev in events:
            out.extend(a.key for a in analyzer.feed(ev)
                       if a.detector == "reverse_shell" and a.key.startswith("dup:"))
        return out

    assert dup_keys(None) == []
    assert dup_keys({"reverse_shell": {"ignore_unix_sockets": False}}) != []
