"""The layers hold: no module imports a higher layer, no import cycle, no private name crosses packages.

The layers are those of docs/architecture.md; this test reads every import of conformance/ (also those inside
functions) with ``ast``, so a change that breaks the layering fails here, naming the import.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from support import REPO

PACKAGE = REPO / "conformance"
# Lowest first. A module may import from its own layer's units (packages without cycles) and from lower layers.
LAYERS: list[set[str]] = [
    {"tcp", "vocabulary", "yamlfile"},
    {"model", "wire", "upper_tester", "agent", "oracle"},
    {"targets", "grading"},
    {"engine"},
    {"results"},
    {"report"},
    {"run", "lab", "mutation", "cellfiles"},
    {"plugin", "__main__"},
]
RANK = {unit: rank for rank, units in enumerate(LAYERS) for unit in units}


def unit_of(path: Path) -> str:
    """``conformance/engine/steps.py`` -> ``engine``; ``conformance/run.py`` -> ``run``."""
    rel = path.relative_to(PACKAGE)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def module_of(path: Path) -> str:
    rel = path.relative_to(PACKAGE).with_suffix("")
    parts = [p for p in rel.parts if p != "__init__"]
    return ".".join(["conformance", *parts])


def imports(path: Path) -> list[tuple[str, list[str], int]]:
    """(imported module, names taken from it, line) for every import of the file, resolved to absolute names."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    here = module_of(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                target = ".".join([*base, *(node.module.split(".") if node.module else [])])
            else:
                target = node.module or ""
            out.append((target, [a.name for a in node.names], node.lineno))
        elif isinstance(node, ast.Import):
            out += [(a.name, [], node.lineno) for a in node.names]
    return out


FILES = sorted(p for p in PACKAGE.rglob("*.py"))


def test_every_unit_has_a_layer() -> None:
    units = {unit_of(p) for p in FILES} - {"__init__"}
    assert units <= set(RANK), f"units without a layer in docs/architecture.md: {sorted(units - set(RANK))}"


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(PACKAGE)) for p in FILES])
def test_no_module_imports_a_higher_layer_or_a_private_name_of_another_package(path: Path) -> None:
    unit = unit_of(path)
    problems = []
    for target, names, line in imports(path):
        if not target.startswith("conformance"):
            continue
        parts = target.split(".")
        other = parts[1] if len(parts) > 1 else "__init__"
        if other == "__init__":
            continue  # the package's face (its version)
        if RANK[other] > RANK.get(unit, 99):
            problems.append(f"line {line}: {unit} (layer {RANK[unit]}) imports {target} (layer {RANK[other]})")
        if other != unit:
            private = [n for n in names if n.startswith("_")]
            if private:
                problems.append(f"line {line}: takes private names {private} from {target}")
    assert problems == []


def test_no_import_cycle_between_modules() -> None:
    graph: dict[str, set[str]] = {}
    for path in FILES:
        edges = set()
        for target, names, _ in imports(path):
            if target.startswith("conformance."):
                edges.add(target)
                edges.update(f"{target}.{n}" for n in names)  # `from . import netns` names a module
        graph[module_of(path)] = edges & {module_of(p) for p in FILES}
    seen: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, trail: list[str]) -> None:
        seen[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if seen.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*trail[trail.index(nxt) :], nxt]))
            if nxt not in seen:
                visit(nxt, [*trail, nxt])
        seen[node] = 2

    for module in sorted(graph):
        if module not in seen:
            visit(module, [module])
