"""docs/ stays true to the code: every example in docs/events.md has exactly the fields of
its kind's record in collector/events.py, and every kind has an example."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import orjson

from collector.events import EVENT_TYPES

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_every_event_kind_has_a_matching_example() -> None:
    text = (DOCS / "events.md").read_text()
    examples = [orjson.loads(b) for b in re.findall(r"```json\n(.*?)\n```", text, re.S)]
    kinds = {e["kind"] for e in examples}
    assert kinds == set(EVENT_TYPES)
    for ex in examples:
        fields = [f.name for f in dataclasses.fields(EVENT_TYPES[ex["kind"]])]
        assert list(ex) == fields, ex["kind"]
        assert ex["v"] == 1


def test_readme_quick_start_has_exactly_two_commands() -> None:
    readme = (DOCS.parent / "README.md").read_text()
    quick = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```(?:sh|bash)?\n(.*?)\n```", quick, re.S)
    assert block is not None
    commands = [ln for ln in block.group(1).splitlines() if ln and not ln.startswith("#")]
    assert commands == ["make run", "make test"]


def test_detectors_md_is_generated_from_the_registry() -> None:
    from service.docs import markdown

    text = (DOCS / "detectors.md").read_text()
    assert text == markdown(), "regenerate: .venv/bin/python -m service.docs > docs/detectors.md"


def test_every_detector_says_what_it_deliberately_does_not_flag() -> None:
    from detectors.base import REGISTRY
    from service.docs import markdown

    text = markdown()
    for did, cls in REGISTRY.items():
        items = cls.spec.not_flagged
        assert items and all(isinstance(i, str) and len(i) > 20 for i in items), did
        section = text.split(f"## {did}\n", 1)[1].split("\n## ", 1)[0]
        assert "Deliberately not flagged:" in section and items[0] in section, did
