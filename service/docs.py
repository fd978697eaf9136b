"""Generated documentation. docs/detectors.md, from the registry so that it cannot drift:

    .venv/bin/python -m service.docs > docs/detectors.md

(tests/test_docs.py fails when the file differs from what this prints); and the syscall
table of docs/events.md from probes/syscalls.py (`markdown_table`, kept equal by a test)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from detectors.base import REGISTRY
from detectors.config import defaults
from probes.syscalls import SYSCALLS, Syscall

HEADER = """# Detectors

Each detector is a pure function of (its state for the session, one event) -> findings;
the engine turns findings into alerts (docs/events.md, `alert`). Every knob below has the
built-in default shown, so no configuration file is needed; tune them in TOML:

```toml
mode = "monitor"        # "enforce" carries out freeze/kill actions
fold_window = 60.0      # seconds: repeats of one alert are folded into a count
kernel_enforcement = true   # enforce mode: the kernel kills at the entry of calls it can judge
egress_enforcement = true   # enforce mode: cgroup programs refuse egress outside the allowlist
fail_closed = false         # enforce mode: sessions that begin while no daemon reads are stopped

[detectors.event_loss]
enabled = true
action = "alert"        # alert | freeze | kill
severity = "medium"     # info | low | medium | high | critical
min_lost = 1            # a detector's own knob (same type as its default)

[[detectors.event_loss.exceptions]]   # never alert when all the given globs match
exe = "/usr/bin/backup"                # the process's executable
argv = "backup --full *"               # its command line, joined by spaces
path = "/srv/backups/**"               # the event's path
```

`agentwatch config defaults` prints the whole default configuration, `agentwatch config
check FILE` validates one (the file, key and reason of the first problem), `agentwatch
detectors` lists the catalogue, and `agentwatch replay EVENTS.jsonl --config A --diff B`
shows which alerts a change makes appear or disappear on a recording.

Path globs: `*` stays within a directory, `**` crosses directories, a leading `~/` means
each home directory: `/root`, `/home/<user>`, every home in the host's passwd file and the
session's own HOME (taken from its root's environment at its start; a HOME changed later
inside the session is not known). The kernel's literal paths expand `~/` over the host's
homes only.

In `monitor` mode (the default) nothing is acted on and each alert's `action.result` says
what would have been done. In `enforce` mode each detector's action is carried out: `kill`
takes the whole session tree, `freeze` stops it until `agentwatch session thaw|kill ID`;
the kill detectors whose condition the kernel can decide alone (and that have no
exceptions) are enforced at the syscall's entry by the probes themselves. See
[response.md](response.md).
"""


FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "detectors"
# Knobs the recorded positive fixtures need where the defaults do not fire (no decoys are
# configured by default; the fork fixture is a small burst).
EXAMPLE_PARAMS: dict[str, dict[str, Any]] = {
    "canary_touch": {"paths": ["/home/agent/.aws/credentials.bak", "/srv/decoy/**"]},
    "fork_bomb": {"max_forks": 50, "max_live": 40},
}


def example_alert(did: str) -> str | None:
    """The first alert the detector raises over its recorded positive fixture."""
    from service.replay import replay
    from service.sinks import alert_line

    fixture = FIXTURES / did / "positive.jsonl"
    if not fixture.is_file():
        return None
    cfg = defaults()
    cfg.detectors[did].params.update(EXAMPLE_PARAMS.get(did, {}))
    alerts, _ = replay(fixture, cfg)
    mine = [a for a in alerts if a.detector == did]
    return alert_line(mine[0]) if mine else None


def _reads(spec: Any) -> str:
    reads = spec.reads
    if reads is None:
        return "every one (while it is enabled, the filter is off)"
    parts = [f"the globs of `{p}`" for p in reads.params]
    parts += [f"`{g}`" for g in reads.globs]
    return ", ".join(parts) if parts else "none (it judges writes, other kinds or fifos)"


def markdown() -> str:
    cfg = defaults()
    out = [HEADER]
    out.append("| id | title | severity | action | MITRE ATT&CK |")
    out.append("| --- | --- | --- | --- | --- |")
    for did, d in cfg.detectors.items():
        spec = REGISTRY[did].spec
        out.append(f"| [`{did}`](#{did}) | {spec.title} | {d.severity} | {d.action} | "
                   f"{', '.join(spec.mitre)} |")
    out.append("")
    for did, d in cfg.detectors.items():
        spec = REGISTRY[did].spec
        out.append(f"## {did}")
        out.append("")
        out.append(f"**{spec.title}**: {spec.description}.")
        out.append("")
        out.append(f"Default severity `{d.severity}`, action `{d.action}`; MITRE ATT&CK "
                   f"{', '.join(spec.mitre) or '-'}. Alert summary: `{spec.output} | "
                   "key=value ...`.")
        out.append("")
        doc = (REGISTRY[did].__doc__ or "").strip()
        if doc:
            out.append(" ".join(doc.split()))
            out.append("")
        if spec.not_flagged:
            out.append("Deliberately not flagged:")
            out.append("")
            out.extend(f"- {item}" for item in spec.not_flagged)
            out.append("")
        if "open" in spec.kinds:
            out.append("Read-only opens it can use (the kernel's interest filter sends these "
                       "and counts the rest: docs/events.md, `summary`): "
                       + _reads(spec) + ".")
            out.append("")
        example = example_alert(did)
        if example:
            out.append("Example alert (replayed from tests/fixtures/detectors/"
                       f"{did}/positive.jsonl):")
            out.append("")
            out.append("```")
            out.append(example)
            out.append("```")
            out.append("")
        if d.params:
            out.append("| knob | default |")
            out.append("| --- | --- |")
            for k, v in d.params.items():
                if isinstance(v, list):
                    shown = ", ".join(f"`{x}`" for x in v) if v else "(empty)"
                else:
                    shown = f"`{v}`"
                out.append(f"| `{k}` | {shown} |")
            out.append("")
        if d.exceptions:
            out.append("Built-in exceptions (a configured `exceptions` list replaces them):")
            out.append("")
            for exc in d.exceptions:
                out.append("- " + ", ".join(f"{k} `{v}`" for k, v in exc.items()))
            out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    sys.stdout.write(markdown())


def markdown_table(table: tuple[Syscall, ...] = SYSCALLS) -> str:
    """The covered syscalls as the Markdown table in docs/events.md (kept equal by a test)."""
    rows = ["| group | syscall | args | also |", "| --- | --- | --- | --- |"]
    for s in table:
        args = ", ".join(f"{n} ({k})" for n, k in s.args if k != "ptr")
        rows.append(f"| {s.group} | `{s.name}` | {args} | {s.note} |")
    return "\n".join(rows)
