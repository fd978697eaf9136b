"""The layers import in one direction only, with no cycle (CONTRIBUTING.md):

    probes -> collector -> detectors -> response -> service

Each layer may import the layers below it and itself, never one above; `detectors` takes
only the event schema (`collector.events`) from below. `bench` may import the product but
nothing from `tests`. Every import counts: at module level, inside a function, or under
TYPE_CHECKING (a lazy import that dodges a cycle at run time is still the cycle).
Also: no source file over 600 lines.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LAYERS = ("probes", "collector", "detectors", "response", "service")
RANK = {name: i for i, name in enumerate(LAYERS)}
PROJECT = (*LAYERS, "bench", "tests")
# What a layer may take from a lower one, where it is not everything.
NARROW = {"detectors": {"collector": ("collector.events",)}}
MAX_LINES = 600


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def sources(*tops: str) -> list[Path]:
    return sorted(p for top in tops for p in (ROOT / top).rglob("*.py")
                  if "__pycache__" not in p.parts)


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import of a project module in `path`; `from pkg import mod`
    names the submodule when there is one."""
    tree = ast.parse(path.read_text(), str(path))
    here = module_name(path)
    is_pkg = path.name == "__init__.py"
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here.split(".")
                base = base if is_pkg else base[:-1]
                base = base[:len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            for a in node.names:
                sub = f"{mod}.{a.name}"
                sub_path = ROOT / Path(*sub.split("."))
                is_mod = sub_path.with_suffix(".py").is_file() or \
                    (sub_path / "__init__.py").is_file()
                out.append((node.lineno, sub if is_mod else mod))
    return [(line, m) for line, m in out if m.split(".")[0] in PROJECT]


def layer_violations() -> list[str]:
    bad = []
    for path in sources(*LAYERS, "bench"):
        here = module_name(path)
        top = here.split(".")[0]
        for line, mod in imports(path):
            other = mod.split(".")[0]
            where = f"{path.relative_to(ROOT)}:{line}: {here} imports {mod}"
            if top == "bench":
                if other == "tests":
                    bad.append(f"{where} (bench imports nothing from tests)")
                continue
            if other not in RANK:
                bad.append(f"{where} (not a layer)")
            elif RANK[other] > RANK[top]:
                bad.append(f"{where} (up a layer: {top} is below {other})")
            elif other != top and other in NARROW.get(top, {}) and \
                    not mod.startswith(NARROW[top][other]):
                bad.append(f"{where} ({top} takes only {NARROW[top][other]} from {other})")
    return bad


def cycles() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    graph: dict[str, set[str]] = {}
    for path in sources(*LAYERS):
        graph.setdefault(module_name(path), set()).update(
            m for _, m in imports(path) if m.split(".")[0] in RANK)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w == v:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_goes_up_a_layer() -> None:
    assert layer_violations() == []


def test_no_import_cycle() -> None:
    assert cycles() == []


def test_no_source_file_over_600_lines() -> None:
    long = [f"{p.relative_to(ROOT)}: {n}" for p in sources(*LAYERS, "bench", "tests")
            for n in [len(p.read_text().splitlines())] if n > MAX_LINES]
    long += [f"{p.relative_to(ROOT)}: {n}" for top in LAYERS
             for p in sorted((ROOT / top).rglob("*.bpf.c"))
             for n in [len(p.read_text().splitlines())] if n > MAX_LINES]
    assert long == []


# The check must be able to fail: each rule is run on a small tree that breaks it.
@pytest.fixture
def fake_tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for top in (*LAYERS, "bench", "tests"):
        (tmp_path / top).mkdir()
        (tmp_path / top / "__init__.py").write_text("")
    (tmp_path / "collector" / "events.py").write_text("")
    (tmp_path / "collector" / "proctable.py").write_text("")
    monkeypatch.setitem(globals(), "ROOT", tmp_path)  # the checks read the module global
    return tmp_path


def test_the_checks_catch_what_they_forbid(fake_tree: Path) -> None:
    (fake_tree / "probes" / "a.py").write_text("from collector import events\n")
    (fake_tree / "detectors" / "b.py").write_text(
        "from collector.events import Event\n"
        "def f():\n    from collector.proctable import ProcessTable\n")
    (fake_tree / "bench" / "c.py").write_text("import tests.awdaemon\n")
    (fake_tree / "service" / "x.py").write_text("from service import y\n")
    (fake_tree / "service" / "y.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from service.x import X\n")
    bad = layer_violations()
    assert any("probes.a imports collector.events" in b and "up a layer" in b for b in bad)
    assert any("detectors.b imports collector.proctable" in b for b in bad)
    assert not any("detectors.b imports collector.events" in b for b in bad)
    assert any("bench.c imports tests" in b for b in bad)
    assert cycles() == [["service.x", "service.y"]]
