"""bench/sensors.py without BPF or root: its arguments, the summary of its samples, the
Markdown table, the rewrite of its section of docs/performance.md, the pin check, and the
sensor process's refusal of a tree whose modules it cannot import from that tree."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench import sensors
from bench.sensors_report import (
    BEGIN,
    END,
    GETPID,
    GETPID_UNWATCHED,
    NEW,
    OLD,
    OPEN,
    OPEN_UNWATCHED,
    OPEN_WATCHED,
    UNTRACED,
    Sample,
    Timing,
    render_markdown,
    rewrite_section,
    summarize,
    verdicts,
)

ROOT = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------------- arguments
def test_defaults_are_the_full_run_against_the_merge_base() -> None:
    a = sensors.parse_args([])
    assert (a.old_ref, a.new_ref) == ("62ee690", None)
    assert (a.iterations, a.n_getpid, a.rounds, a.ringbuf_pages) == (200_000, 1_000_000, 5,
                                                                     16384)
    assert a.threshold == 0.05 and a.write_doc is None and not a.strict and a.repeat == 3
    assert a.pin_dir == "/sys/fs/bpf/agentwatch" and not a.remove_pins


def test_quick_shrinks_what_is_not_given() -> None:
    a = sensors.parse_args(["--quick", "-n", "1000", "--old-ref", "main~3"])
    assert (a.iterations, a.n_getpid, a.rounds, a.ringbuf_pages) == (1000, 300_000, 1, 4096)
    assert a.repeat == 2
    assert a.old_ref == "main~3"


def test_write_doc_defaults_to_the_performance_page() -> None:
    assert sensors.parse_args(["--write-doc"]).write_doc == str(ROOT / "docs/performance.md")
    assert sensors.parse_args(["--write-doc", "x.md"]).write_doc == "x.md"
    assert sensors.parse_args(["--shared"]).note == sensors.SHARED_NOTE


@pytest.mark.parametrize("bad", [["-r", "0"], ["-n", "-5"], ["--n-getpid", "0"],
                                 ["--ringbuf-pages", "3"], ["--ringbuf-pages", "0"],
                                 ["--threshold", "-0.1"], ["-k", "0"],
                                 ["--old-ref", "--upload-pack=x"], ["--old-ref", ""],
                                 ["-n", "many"]])
def test_bad_arguments_are_a_usage_error(bad: list[str],
                                         capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        sensors.parse_args(bad)
    assert e.value.code == 2
    assert "Traceback" not in capsys.readouterr().err


# ---------------------------------------------------------------------- summary
def fake_run() -> tuple[list[Sample], list[Timing]]:
    """Two rounds, two runs of each mode per design and round (one 100 ns slower: the
    best counts). Untraced open+close 1000 and 1200 ns in round 0, 900 and 1100 in round 1
    (the best: 1000, 900); getpid 100."""
    s: list[Sample] = []
    for rnd, (a, b) in enumerate(((1000.0, 1200.0), (900.0, 1100.0))):
        for ns in (a, b):
            s.append(Sample("", rnd, UNTRACED, OPEN, ns, loadavg=1.5 + rnd, foreign_bpf=3))
            s.append(Sample("", rnd, UNTRACED, GETPID, 100.0, loadavg=2.0,
                            foreign_bpf=7 - 4 * rnd))
        for rep in (0, 1):
            slow = 100.0 * (rep != rnd)
            s += [Sample(OLD, rnd, OPEN_UNWATCHED, OPEN, a * 1.10 + slow),
                  Sample(NEW, rnd, OPEN_UNWATCHED, OPEN, a * (1.12 + 0.02 * rnd) + slow),
                  Sample(OLD, rnd, GETPID_UNWATCHED, GETPID, 102.0 + slow),
                  Sample(NEW, rnd, GETPID_UNWATCHED, GETPID, 110.0 + slow),
                  Sample(OLD, rnd, OPEN_WATCHED, OPEN, a * 1.4 + slow, events=10, opens=8,
                         lost=2, agent_cpu_s=0.00005),
                  Sample(NEW, rnd, OPEN_WATCHED, OPEN, a * 1.3 + slow, events=10, opens=10)]
    for x in s:
        x.loadavg = x.loadavg or 2.0
    t = [Timing(OLD, 0, spawn_s=2.0, load_s=1.8, close_s=6.5, run_true_s=8.0,
                run_true_warm_s=8.0),
         Timing(OLD, 1, spawn_s=2.2, load_s=2.0, close_s=6.7, run_true_s=8.4,
                run_true_warm_s=8.4),
         Timing(NEW, 0, spawn_s=1.0, load_s=0.8, close_s=0.2, run_true_s=9.0,
                run_true_warm_s=1.5),
         Timing(NEW, 1, spawn_s=1.2, load_s=1.0, close_s=0.4, run_true_s=9.0,
                run_true_warm_s=2.5, pins_removed=4)]
    return s, t


def test_ratios_are_medians_of_per_round_best_over_the_rounds_best_untraced() -> None:
    summary = summarize(*fake_run())
    m = summary["modes"]
    assert m[OPEN_UNWATCHED][OLD]["ratio"] == pytest.approx(1.10)
    assert m[OPEN_UNWATCHED][OLD]["ns_per_iter_median"] == pytest.approx(1045.0)
    assert m[OPEN_UNWATCHED][NEW]["ratios"] == [1.12, 1.14]
    assert m[OPEN_UNWATCHED][NEW]["ratio"] == pytest.approx(1.13)
    assert m[OPEN_UNWATCHED][NEW]["runs"] == 4
    assert m[OPEN_UNWATCHED]["delta"] == pytest.approx(0.03)
    assert m[OPEN_UNWATCHED]["delta_paired_median"] == pytest.approx(0.03)
    assert m[GETPID_UNWATCHED]["delta"] == pytest.approx(0.08)
    assert m[OPEN_WATCHED][OLD]["lost_total"] == 8
    assert m[OPEN_WATCHED][OLD]["agent_cpu_us_per_event"] == pytest.approx(5.0)
    assert m[OPEN_WATCHED][NEW]["agent_cpu_us_per_event"] == 0.0
    assert m[OPEN_UNWATCHED][NEW]["agent_cpu_us_per_event"] is None  # no event
    assert summary["timings"][OLD]["close_s"] == {"median": 6.6, "min": 6.5, "max": 6.7}
    assert summary["untraced_ns_per_iter"] == {OPEN: 950.0, GETPID: 100.0}
    assert (summary["loadavg_min"], summary["loadavg_max"]) == (1.5, 2.5)
    assert (summary["foreign_bpf_min"], summary["foreign_bpf_max"]) == (3, 7)
    assert (summary["rounds_foreign_changed"], summary["rounds"]) == (1, 2)
    assert summary["pins_removed"] == {OLD: 0, NEW: 4}


def test_the_requirement_is_new_minus_old_at_most_the_threshold() -> None:
    summary = summarize(*fake_run())
    assert verdicts(summary, 0.05) == {OPEN_UNWATCHED: True, GETPID_UNWATCHED: False}
    assert verdicts(summary, 0.08) == {OPEN_UNWATCHED: True, GETPID_UNWATCHED: True}
    assert verdicts(summarize([], []), 0.05) == {}


def meta() -> dict[str, object]:
    return {"date": "2026-12-03 12:00 UTC", "rounds": 2, "n_open": 200_000,
            "n_getpid": 1_000_000, "ringbuf_pages": 16384, "cpus": 2, "kernel": "6.18",
            "clock": "thread CPU time", "repeat": 3, "old": {"label": "`62ee690` (old)"},
            "new": {"label": "the working tree"}, "note": "Not publishable."}


def test_the_table_shows_both_designs_the_difference_and_the_verdicts() -> None:
    text = render_markdown(summarize(*fake_run()), meta(), 0.05)
    rows = {line.split(" | ")[0].lstrip("| "): line for line in text.splitlines()
            if line.startswith("| ")}
    assert "1.10x (1.10-1.10)" in rows["open+close unwatched / untraced"]
    assert "+0.030 | <= +0.05: met" in rows["open+close unwatched / untraced"]
    assert "+0.080 | <= +0.05: NOT met" in rows["getpid unwatched / untraced"]
    assert "1.40x (1.40-1.40), 8 lost" in rows["open+close watched / untraced"]
    assert "1.30x (1.30-1.30), 0 lost" in rows["open+close watched / untraced"]
    assert "| 8.20 (8.00-8.40) | 2.00 (1.50-2.50) | -6.20 | new <= 2 s (issue 15): met |" \
        in rows["`agentwatch run -- true`, second (re-uses pins), wall s"]
    assert "| 6.60 (6.50-6.70) | 0.30 (0.20-0.40) | -6.30 | new <= 1 s (issue 15): met |" \
        in rows["stop: `Collector.close()` (probes detached), s"]
    assert "Load average (1 min) at the runs' starts: 1.50-2.50" in text
    assert "tracing BPF programs of others loaded at the runs' starts: 3-7" in text
    assert "rounds in which that count changed: 1 of 2" in text
    assert "best of 3 runs" in text
    assert "The new design left 4 pins" in text
    assert "**Not publishable.**" in text
    assert "open+close N=200,000, getpid N=1,000,000" in text and "64 MiB" in text


def test_a_design_that_did_not_run_leaves_dashes() -> None:
    samples, timings = fake_run()
    samples = [s for s in samples if s.design != NEW]
    timings = [t for t in timings if t.design != NEW]
    text = render_markdown(summarize(samples, timings), meta(), 0.05)
    assert "| open+close unwatched / untraced | 1.10x (1.10-1.10) | - | - |  |" in text


# ---------------------------------------------------------------------- the doc
def test_rewrite_replaces_only_what_lies_between_the_markers() -> None:
    text = f"head\n{BEGIN}\nold table\n{END}\ntail\n"
    out = rewrite_section(text, "| new |\n")
    assert out == f"head\n{BEGIN}\n| new |\n{END}\ntail\n"
    assert rewrite_section(out, "| new |") == out  # idempotent
    for broken in ("no markers", f"{END}\n{BEGIN}\n", f"{BEGIN} only"):
        with pytest.raises(ValueError):
            rewrite_section(broken, "x")


def test_the_performance_page_has_the_markers_once() -> None:
    text = (ROOT / "docs" / "performance.md").read_text()
    assert text.count(BEGIN) == 1 and text.count(END) == 1
    rewrite_section(text, "x")


# ---------------------------------------------------------------------- pins
def test_pins_are_found_and_removed_deepest_first(tmp_path: Path) -> None:
    pin = tmp_path / "agentwatch"
    assert sensors.pins_left(pin) == []
    (pin / "links").mkdir(parents=True)
    (pin / "links" / "sys_enter").write_text("")
    (pin / "watched").write_text("")
    assert [p.name for p in sensors.pins_left(pin)] == ["sys_enter", "watched"]
    assert sensors.remove_pins(pin) == 2
    assert not pin.exists()


def test_the_sensors_own_programs_are_read_from_its_fdinfo(tmp_path: Path) -> None:
    fdinfo = tmp_path / "42" / "fdinfo"
    fdinfo.mkdir(parents=True)
    (fdinfo / "3").write_text("pos:\t0\nflags:\t02000002\nprog_type:\t5\nprog_id:\t117\n")
    (fdinfo / "4").write_text("pos:\t0\nmap_type:\t27\nmap_id:\t9\n")
    (fdinfo / "5").write_bytes(b"prog_id:\t118\n\xff\xfe garbage\n")
    assert sensors.own_program_ids(42, tmp_path) == {117, 118}
    assert sensors.own_program_ids(43, tmp_path) == set()


# ---------------------------------------------------------------------- the sensor process
def test_the_sensor_refuses_modules_from_outside_its_tree(tmp_path: Path) -> None:
    """A tree without the product: its imports would come from the installed (editable)
    one, which would measure the wrong design. One protocol line, no traceback."""
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-P", str(sensors.AGENT), "--tree", str(tmp_path)],
                          env=env, capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 1
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(sensors.PREFIX)]
    assert len(lines) == 1
    reply = json.loads(lines[0][len(sensors.PREFIX):])
    assert reply["ready"] is False
    assert "not from" in reply["error"] or "ModuleNotFoundError" in reply["error"]
    assert "Traceback" not in proc.stderr
