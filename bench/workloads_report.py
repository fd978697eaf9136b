"""S5's summary and table (bench/workloads.py): pure functions of the result JSON, so
that tests/test_bench_workloads.py can check them without a kernel.

The result (`--json`) is
    {"meta": {...}, "variants": [agentwatch labels], "peers": [peer names],
     "workloads": {name: {"title": str, "inputs": {...}, "untraced": [seconds, ...],
                          "tracers": {label: {"samples": [...], "error": str,
                                              "rss": bytes, "hwm": bytes, ...}}}}}
An agentwatch sample has elapsed, window (workload start to the daemon caught up),
cpu_s, lost, delivered, summarised; a peer's has elapsed, lines, lost, cpu_s.
"""

from __future__ import annotations

import statistics
from typing import Any

MB = 1 << 20
# issue 17's targets for the default daemon
TARGETS = {"rg_ratio": 1.3, "cores": 1.0, "rss_mb": 100.0}


def ratio(wl: dict[str, Any], label: str) -> float | None:
    """Median traced elapsed over the median untraced one of the same workload."""
    t = wl["tracers"].get(label) or {}
    el = [s["elapsed"] for s in t.get("samples", [])]
    if not el or not wl["untraced"]:
        return None
    return statistics.median(el) / statistics.median(wl["untraced"])


def total(wl: dict[str, Any], label: str, key: str) -> int | None:
    t = wl["tracers"].get(label) or {}
    s = t.get("samples") or []
    return sum(int(x.get(key) or 0) for x in s) if s else None


def cores(wl: dict[str, Any], label: str) -> float | None:
    """The tracer's highest CPU use over a run, in cores: its CPU seconds over the run's
    window (for agentwatch: workload start to the daemon caught up)."""
    s = (wl["tracers"].get(label) or {}).get("samples") or []
    vals = [x["cpu_s"] / max(x.get("window") or x["elapsed"], 1e-9) for x in s]
    return max(vals) if vals else None


def zero_loss(res: dict[str, Any], label: str) -> tuple[int, int]:
    """(workloads this tracer ran with 0 lost, workloads it ran)."""
    ran = [wl for wl in res["workloads"].values()
           if (wl["tracers"].get(label) or {}).get("samples")]
    return sum(total(wl, label, "lost") == 0 for wl in ran), len(ran)


def verdict(ok: bool | None, miss: str = "") -> str:
    if ok is None:
        return "n/a"
    return "met" if ok else f"MISSED{': ' + miss if miss else ''}"


def _cell(wl: dict[str, Any], label: str, fn: Any) -> str:
    t = wl["tracers"].get(label)
    if t is None:
        return ""
    if t.get("error"):
        return "did not run"
    try:
        return str(fn(wl, label))
    except (TypeError, ZeroDivisionError, KeyError):
        return "-"


def rows(res: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """(tracer columns, rows: figure, tracers..., target, verdict). The verdict is the
    first agentwatch variant's (the default daemon's)."""
    cols = [*res["variants"], *res["peers"]]
    main = res["variants"][0] if res["variants"] else None
    out: list[list[str]] = []

    def row(fig: str, cells: dict[str, str], target: str = "", v: str = "") -> None:
        out.append([fig, *[cells.get(c, "") for c in cols], target, v])

    for name, wl in res["workloads"].items():
        u = wl["untraced"]
        row(f"S5 {name}: untraced, s (median of {len(u)})",
            {main: f"{statistics.median(u):.2f}"} if u and main else {},
            "", "FAILED" if wl.get("error") else "")
        r = {c: _cell(wl, c, lambda w, c: f"{ratio(w, c):.2f}x") for c in cols}
        ours = ratio(wl, main) if main else None
        tgt = TARGETS["rg_ratio"] if name == "rg" else None
        row(f"S5 {name}: traced / untraced", r,
            f"<= {tgt}x" if tgt else "",
            verdict(ours <= tgt, f"{ours:.2f}x") if tgt and ours is not None else "")

        def lost_cell(w: dict[str, Any], c: str) -> str:
            key = "delivered" if c in res["variants"] else "lines"
            s = f"{total(w, c, 'lost'):,} / {total(w, c, key):,}"
            summ = total(w, c, "summarised") if c in res["variants"] else 0
            return s + (f" (+{summ:,} summarised)" if summ else "")
        lost = total(wl, main, "lost") if main else None
        row(f"S5 {name}: lost / delivered", {c: _cell(wl, c, lost_cell) for c in cols},
            "0 lost", verdict(lost == 0, f"{lost:,} lost") if lost is not None else "n/a")
        cpu = cores(wl, main) if main else None
        row(f"S5 {name}: tracer CPU, cores (max)",
            {c: _cell(wl, c, lambda w, c: f"{cores(w, c):.2f}") for c in cols},
            f"<= {TARGETS['cores']:.0f}", verdict(cpu <= TARGETS["cores"], f"{cpu:.2f}")
            if cpu is not None else "n/a")

        def rss_cell(w: dict[str, Any], c: str) -> str:
            t = w["tracers"][c]
            hwm = f" (peak {t['hwm'] / MB:.0f})" if t.get("hwm") else ""
            return f"{t['rss'] / MB:.0f}{hwm}"
        t_main = wl["tracers"].get(main) or {} if main else {}
        rss = t_main.get("rss")
        row(f"S5 {name}: RSS at end, MB", {c: _cell(wl, c, rss_cell) for c in cols},
            f"<= {TARGETS['rss_mb']:.0f}",
            verdict(rss / MB <= TARGETS["rss_mb"], f"{rss / MB:.0f} MB") if rss else "n/a")
    zl = {c: zero_loss(res, c) for c in cols}
    cells = {c: (f"{z}/{n}" if n else "did not run") for c, (z, n) in zl.items()}
    peers_best = max((z / n for c, (z, n) in zl.items() if c in res["peers"] and n),
                     default=None)
    ours_z = zl[main] if main else (0, 0)
    ours_rate = ours_z[0] / ours_z[1] if ours_z[1] else None
    row("S5 workloads with 0 lost", cells, "above every peer (or all)",
        verdict(ours_rate > peers_best or ours_rate == 1, f"{ours_z[0]}/{ours_z[1]}")
        if ours_rate is not None and peers_best is not None else "n/a")
    return cols, out


def table(res: dict[str, Any]) -> str:
    cols, body = rows(res)
    head = ["figure", *cols, "target", "verdict"]
    widths = [max(len(r[i]) for r in [head, *body]) for i in range(len(head))]
    m = res["meta"]
    lines = [f"agentwatch S5 agent workloads: {m['date']}, {m['cpus']} CPUs, Linux "
             f"{m['kernel']}, {'quick' if m['quick'] else 'full'} run, "
             f"{m['elapsed_s']:.0f} s, load average before {m['loadavg_before']}, "
             f"after {m['loadavg_after']}",
             "  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in body]
    lines.append("")
    lines.append("lost / delivered: agentwatch = the kernel's loss counters / events "
                 "delivered (summarised: counted in summary events, not sent one by one); "
                 "peers = the losses they report / their output lines.")
    for name, wl in res["workloads"].items():
        lines.append(f"{name}: {wl['title']}; inputs {wl.get('inputs', {})}")
        if wl.get("error"):
            lines.append(f"  FAILED: {wl['error']}")
        for c, t in wl["tracers"].items():
            if t.get("error"):
                lines.append(f"  {c} did not run: {t['error']}")
            elif t.get("alerts"):
                lines.append(f"  {c} alerts: {t['alerts']}")
    for p, why in res.get("peer_notes", {}).items():
        lines.append(f"{p}: {why}")
    return "\n".join(lines)


def markdown(res: dict[str, Any]) -> str:
    """The same rows as a Markdown table (for docs/performance.md)."""
    cols, body = rows(res)
    head = ["figure", *cols, "target", "verdict"]
    out = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    out += ["| " + " | ".join(r) + " |" for r in body]
    return "\n".join(out)
