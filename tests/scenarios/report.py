"""The runner's verdicts and report: one Row per scenario and way, the table, the summary
(recall, false positives, survivors, alert latency) and the JSON form."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

from tests.scenarios.corpus import WAYS, Scenario

LOUD = {"medium", "high", "critical"}


@dataclass
class Row:
    scenario: Scenario
    way: str
    expected: str
    fired: list[str] = field(default_factory=list)       # detector ids, first-alert order
    loud: list[str] = field(default_factory=list)        # medium+ detectors
    taken: str = "-"                                     # action of the expected detector
    by: str = ""
    survivors: int = 0
    latency_ms: float | None = None
    exit: int | None = None
    seconds: float = 0.0
    note: str = ""

    @property
    def ok(self) -> bool:
        if self.scenario.kind == "benign":
            return not self.loud and self.survivors == 0
        want = self.scenario.actions[self.way]
        return (self.scenario.expect in self.fired and self.taken == want
                and self.survivors == 0)


def fmt_latency(ms: float | None) -> str:
    return "-" if ms is None else f"{ms:.1f}"


def print_table(rows: list[Row], out: Any = sys.stdout) -> None:
    head = ("scenario", "way", "expected", "fired", "action", "survivors", "alert ms",
            "verdict")
    table = [head]
    for r in rows:
        fired = ",".join(r.fired) or "-"
        if len(fired) > 46:
            fired = fired[:45] + "…"
        action = r.taken if r.scenario.kind == "attack" else "-"
        if r.by and action != "-":
            action += f" ({'kernel' if r.by == 'kernel' else 'user'})"
        verdict = "ok" if r.ok else ("FALSE POSITIVE" if r.scenario.kind == "benign"
                                     else "MISS")
        if r.note:
            verdict += f" ({r.note})"
        table.append((r.scenario.name, r.way, r.expected, fired, action, str(r.survivors),
                      fmt_latency(r.latency_ms) if r.scenario.kind == "attack" else "-",
                      verdict))
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    for i, row in enumerate(table):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip(),
              file=out)
        if i == 0:
            print("  ".join("-" * w for w in widths), file=out)


def summary(rows: list[Row]) -> dict[str, Any]:
    attacks = [r for r in rows if r.scenario.kind == "attack"]
    benign = [r for r in rows if r.scenario.kind == "benign"]
    hits = [r for r in attacks if r.ok]
    fps = [r for r in benign if not r.ok]
    lat = sorted(r.latency_ms for r in attacks if r.latency_ms is not None)
    per_way = {}
    for way in WAYS:
        a = [r for r in attacks if r.way == way]
        if a:
            per_way[way] = {"runs": len(a), "hits": sum(r.ok for r in a),
                            "false_positives": sum(not r.ok for r in benign
                                                   if r.way == way)}
    return {
        "attack_runs": len(attacks), "hits": len(hits),
        "recall": len(hits) / len(attacks) if attacks else 1.0,
        "benign_runs": len(benign), "false_positives": len(fps),
        "survivors": sum(r.survivors for r in attacks if r.scenario.actions[r.way] == "kill"),
        "latency_ms_p50": lat[len(lat) // 2] if lat else None,
        "latency_ms_max": lat[-1] if lat else None,
        "per_way": per_way,
        "misses": [f"{r.scenario.name}/{r.way}" for r in attacks if not r.ok],
        "false_positive_runs": [f"{r.scenario.name}/{r.way}: {','.join(r.loud)}"
                                for r in fps],
    }


def row_json(r: Row) -> dict[str, Any]:
    return {"scenario": r.scenario.name, "kind": r.scenario.kind, "way": r.way,
            "expected": r.expected, "expected_action": r.scenario.actions[r.way],
            "fired": r.fired, "loud": r.loud, "taken": r.taken, "by": r.by,
            "survivors": r.survivors, "alert_latency_ms": r.latency_ms, "exit": r.exit,
            "seconds": round(r.seconds, 3), "ok": r.ok, "note": r.note}
