"""docs/detectors.md, generated from the registry so that it cannot drift:

    .venv/bin/python -m detectors.docs > docs/detectors.md

(tests/test_docs.py fails when the file differs from what this prints)."""

from __future__ import annotations

import sys

from detectors.base import REGISTRY
from detectors.config import defaults

HEADER = """# Detectors

Each detector is a pure function of (its state for the session, one event) -> findings;
the engine turns findings into alerts (docs/events.md, `alert`). Every knob below has the
built-in default shown, so no configuration file is needed; tune them in TOML:

```toml
mode = "monitor"        # "enforce" carries out freeze/kill actions
fold_window = 60.0      # seconds: repeats of one alert are folded into a count

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
any home directory (`/root` or `/home/<user>`).

Actions are requested, not yet carried out: the response engine (freeze, kill, in-kernel
deny) is the next piece of work; until then every alert's `action.result` says what was
or would have been done.
"""


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
    return "\n".join(out)


if __name__ == "__main__":
    sys.stdout.write(markdown())
