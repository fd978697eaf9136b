"""bench/sensors.py's figures: the samples it records, their summary, the Markdown table and
the rewrite of that table's section in docs/performance.md. Pure: no BPF, no root."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

OLD, NEW = "old", "new"
DESIGNS = (OLD, NEW)
OPEN, GETPID = "open+close", "getpid"
UNTRACED = "untraced"
FLOOR = "floor"  # an empty program pair on raw_syscalls: design and mode of its samples
OPEN_UNWATCHED, GETPID_UNWATCHED, OPEN_WATCHED = (
    "open+close unwatched", "getpid unwatched", "open+close watched")
# mode -> (workload, agent command)
SENSOR_MODES: dict[str, tuple[str, str]] = {
    OPEN_UNWATCHED: (OPEN, "unwatched"),
    GETPID_UNWATCHED: (GETPID, "unwatched"),
    OPEN_WATCHED: (OPEN, "watched"),
}
# The requirement: new ratio - old ratio, same run, at most this (unwatched modes).
BOUNDED = (OPEN_UNWATCHED, GETPID_UNWATCHED)
# Issue 15's targets for the new design's start and stop, printed beside the figures.
TIME_TARGETS = {"run_true_warm_s": 2.0, "close_s": 1.0}
TIMINGS = (
    ("spawn_s", "start: process start to probes attached, s"),
    ("load_s", "start: `Collector()` to probes attached, s"),
    ("close_s", "stop: `Collector.close()` (probes detached), s"),
    ("run_true_s", "`agentwatch run -- true`, first, wall s"),
    ("run_true_warm_s", "`agentwatch run -- true`, second (re-uses pins), wall s"),
)
BEGIN = "<!-- bench/sensors.py --write-doc: begin -->"
END = "<!-- bench/sensors.py --write-doc: end -->"


@dataclass
class Sample:
    design: str                   # "old", "new", or "" for an untraced run
    round: int
    mode: str                     # UNTRACED or one of SENSOR_MODES
    workload: str                 # OPEN or GETPID
    ns_per_iter: float            # of the loop's CPU time (or elapsed with --wall)
    rep: int = 0                  # the run's repetition in its round
    loop_wall_ns: int = 0
    loop_cpu_ns: int = 0
    events: int = 0               # events delivered to the agent's sink during the run
    opens: int = 0                # open events of /dev/null among them
    lost: int = 0                 # kernel loss counters' growth during the run
    lost_by_cause: dict[str, int] = field(default_factory=dict)
    agent_cpu_s: float = 0.0      # the sensor process's CPU during the run
    loadavg: float = 0.0          # 1-minute load average at the run's start
    foreign_bpf: int | None = None  # tracing BPF programs of others at the run's start


@dataclass
class Timing:
    design: str
    round: int
    spawn_s: float = 0.0          # the sensor's process started -> probes attached
    import_s: float = 0.0         # of which: Python imports
    load_s: float = 0.0           # of which: Collector() + start()
    close_s: float = 0.0          # Collector.close(), as the sensor's process measured it
    exit_s: float = 0.0           # close asked -> the sensor's process gone
    run_true_s: float = 0.0       # `agentwatch run -- true`, start to exit
    run_true_warm_s: float = 0.0  # the same again right after (pins re-used where pinned)
    pins_removed: int = 0         # pins the design left (removed with --remove-pins)


def _med(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def summarize(samples: list[Sample], timings: list[Timing]) -> dict[str, Any]:
    """Per design and mode: the median over rounds of the per-round ratio of the best
    (minimum) run of the mode in the round to the best untraced run of the same round and
    workload (run at the round's start and end); the new-minus-old difference of each; the
    medians of the timings; the conditions (load, others' tracing programs)."""
    base: dict[tuple[int, str], float] = {}
    for s in samples:
        if s.mode == UNTRACED:
            key = (s.round, s.workload)
            base[key] = min(base.get(key, s.ns_per_iter), s.ns_per_iter)
    untraced = {wl: _med([v for (_, w), v in base.items() if w == wl]) for wl in (OPEN, GETPID)}
    modes: dict[str, dict[str, Any]] = {}
    for mode, (workload, _) in SENSOR_MODES.items():
        per: dict[str, Any] = {}
        by_round: dict[str, dict[int, float]] = {}
        for design in DESIGNS:
            rows = [s for s in samples if s.design == design and s.mode == mode
                    and (s.round, workload) in base]
            if not rows:
                continue
            best: dict[int, float] = {}
            for s in rows:
                best[s.round] = min(best.get(s.round, s.ns_per_iter), s.ns_per_iter)
            ratio = {r: ns / base[(r, workload)] for r, ns in best.items()}
            by_round[design] = ratio
            events = sum(s.events for s in rows)
            per[design] = {
                "runs": len(rows),
                "ratio": statistics.median(ratio.values()),
                "ratio_min": min(ratio.values()), "ratio_max": max(ratio.values()),
                "ratios": [round(ratio[r], 4) for r in sorted(ratio)],
                "ns_per_iter_median": statistics.median(best.values()),
                "events_per_run": statistics.median_low(s.events for s in rows),
                "opens_per_run": statistics.median_low(s.opens for s in rows),
                "lost_total": sum(s.lost for s in rows),
                "agent_cpu_us_per_event":
                    sum(s.agent_cpu_s for s in rows) / events * 1e6 if events else None,
            }
        if OLD in per and NEW in per:
            per["delta"] = per[NEW]["ratio"] - per[OLD]["ratio"]
            paired = [by_round[NEW][r] - by_round[OLD][r]
                      for r in by_round[NEW] if r in by_round[OLD]]
            per["delta_paired_median"] = _med(paired)
        modes[mode] = per
    times: dict[str, dict[str, Any]] = {}
    for design in DESIGNS:
        rows_t = [t for t in timings if t.design == design]
        if rows_t:
            times[design] = {key: {"median": _med([getattr(t, key) for t in rows_t]),
                                   "min": min(getattr(t, key) for t in rows_t),
                                   "max": max(getattr(t, key) for t in rows_t)}
                             for key in ("spawn_s", "import_s", "load_s", "close_s",
                                         "exit_s", "run_true_s", "run_true_warm_s")}
    pins = {design: sum(t.pins_removed for t in timings if t.design == design)
            for design in DESIGNS}
    loads = [s.loadavg for s in samples]
    foreign = [s.foreign_bpf for s in samples if s.foreign_bpf is not None]
    seen: dict[int, set[int]] = {}
    for s in samples:
        if s.foreign_bpf is not None:
            seen.setdefault(s.round, set()).add(s.foreign_bpf)
    floor: dict[str, float | None] = {}
    for wl in (OPEN, GETPID):
        fr = [s.ns_per_iter / base[(s.round, wl)] for s in samples
              if s.mode == FLOOR and s.workload == wl and (s.round, wl) in base]
        floor[wl] = _med(fr)
    return {"modes": modes, "timings": times, "untraced_ns_per_iter": untraced,
            "floor_ratio": floor,
            "pins_removed": pins,
            "loadavg_min": min(loads) if loads else None,
            "loadavg_max": max(loads) if loads else None,
            "foreign_bpf_min": min(foreign) if foreign else None,
            "foreign_bpf_max": max(foreign) if foreign else None,
            "rounds": len({s.round for s in samples}),
            "rounds_foreign_changed": sum(1 for v in seen.values() if len(v) > 1)}


def verdicts(summary: dict[str, Any], threshold: float) -> dict[str, bool]:
    """The issue's requirement, per bounded mode: new ratio - old ratio <= threshold."""
    out = {}
    for mode in BOUNDED:
        delta = summary["modes"].get(mode, {}).get("delta")
        if delta is not None:
            out[mode] = delta <= threshold + 1e-12
    return out


def _ratio_cell(m: dict[str, Any] | None, lost: bool) -> str:
    if m is None:
        return "-"
    cell = f"{m['ratio']:.2f}x ({m['ratio_min']:.2f}-{m['ratio_max']:.2f})"
    if lost:
        cell += f", {m['lost_total']} lost"
    return cell


def _range(lo: float | None, hi: float | None, fmt: str) -> str:
    if lo is None or hi is None:
        return "unknown"
    return format(lo, fmt) if lo == hi else f"{format(lo, fmt)}-{format(hi, fmt)}"


def render_markdown(summary: dict[str, Any], meta: dict[str, Any], threshold: float) -> str:
    """The table of docs/performance.md's side-by-side section, with the run's conditions."""
    ok = verdicts(summary, threshold)
    lines = [
        f"`bench/sensors.py`, {meta['date']}: {meta['rounds']} "
        f"round{'' if meta['rounds'] == 1 else 's'}, open+close "
        f"N={meta['n_open']:,}, getpid N={meta['n_getpid']:,}, ring buffer "
        f"{meta['ringbuf_pages'] * 4 // 1024} MiB; {meta['cpus']} CPUs, kernel "
        f"{meta['kernel']}. Old: {meta['old']['label']}. New: {meta['new']['label']}.",
        "",
        "| figure | old | new | new - old | requirement |",
        "| --- | --- | --- | ---: | --- |",
    ]
    for mode in SENSOR_MODES:
        per = summary["modes"].get(mode, {})
        delta = per.get("delta")
        need = ""
        if mode in ok:
            need = f"<= +{threshold:.2f}: {'met' if ok[mode] else 'NOT met'}"
        lines.append(f"| {mode} / untraced | {_ratio_cell(per.get(OLD), mode == OPEN_WATCHED)} "
                     f"| {_ratio_cell(per.get(NEW), mode == OPEN_WATCHED)} "
                     f"| {'-' if delta is None else f'{delta:+.3f}'} | {need} |")
    times = summary["timings"]
    for key, label in TIMINGS:
        cells = []
        for design in DESIGNS:
            t = times.get(design, {}).get(key)
            cells.append("-" if t is None else
                         f"{t['median']:.2f} ({_range(t['min'], t['max'], '.2f')})")
        target = TIME_TARGETS.get(key)
        need = ""
        new_t = times.get(NEW, {}).get(key)
        if target is not None and new_t is not None:
            need = f"new <= {target:g} s (issue 15): " \
                   f"{'met' if new_t['median'] <= target else 'NOT met'}"
        d = ""
        if all(times.get(x, {}).get(key) for x in DESIGNS):
            d = f"{times[NEW][key]['median'] - times[OLD][key]['median']:+.2f}"
        lines.append(f"| {label} | {cells[0]} | {cells[1]} | {d} | {need} |")
    fl = summary.get("floor_ratio", {})
    if fl.get(OPEN) is not None and fl.get(GETPID) is not None:
        lines.append(f"| floor: empty program pair on raw_syscalls sys_enter/sys_exit, "
                     f"open+close / getpid | | {fl[OPEN]:.2f}x / {fl[GETPID]:.2f}x | | what "
                     "any tracer of every syscall pays at the least |")
    u = summary["untraced_ns_per_iter"]
    u_open = "-" if u.get(OPEN) is None else f"{u[OPEN]:.1f}"
    u_getpid = "-" if u.get(GETPID) is None else f"{u[GETPID]:.1f}"
    lines += [
        "",
        f"Ratios: the median over rounds of the per-round ratio of the loop's {meta['clock']} "
        f"per iteration, best of {meta.get('repeat', 1)} runs, to the best untraced run of "
        "the same round (min-max over rounds in brackets); untraced: open+close "
        f"{u_open} ns, getpid {u_getpid} ns per iteration (median of the rounds' best). "
        "Times: median (min-max) over rounds.",
        "",
        f"Load average (1 min) at the runs' starts: "
        f"{_range(summary['loadavg_min'], summary['loadavg_max'], '.2f')}; tracing BPF "
        "programs of others loaded at the runs' starts: "
        f"{_range(summary['foreign_bpf_min'], summary['foreign_bpf_max'], 'd')}"
        " (every figure includes their cost); rounds in which that count changed: "
        f"{summary.get('rounds_foreign_changed', 0)} of {summary.get('rounds', 0)}.",
    ]
    for design, n in summary.get("pins_removed", {}).items():
        if n:
            lines.append(f"The {design} design left {n} pins after stopping, removed by the "
                         "bench before the next run (--remove-pins).")
    if meta.get("note"):
        lines += ["", f"**{meta['note']}**"]
    return "\n".join(lines) + "\n"


def rewrite_section(text: str, table: str) -> str:
    """`text` with what lies between the BEGIN and END markers replaced by `table`."""
    start = text.find(BEGIN)
    end = text.find(END)
    if start < 0 or end < 0 or end < start:
        raise ValueError(f"markers {BEGIN!r} ... {END!r} not found in order")
    return text[: start + len(BEGIN)] + "\n" + table.rstrip("\n") + "\n" + text[end:]
