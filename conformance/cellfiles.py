"""The state x event matrix's case files: written from the reference model, and checked to be in step with it.

Rules of this module: testcases/cells/<state>/<id>.yaml are generated, never edited by hand. ``render`` turns
one purpose of conformance/oracle/cells.py into the text of its file (the case format, steps one per line where
they fit); ``write`` replaces the directory's files with the model's; ``stale`` lists what differs, for the test
that keeps the files in step with the model. Nothing here runs a case.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .oracle.cells import Purpose, purposes, raw_cell_count

CELLS_DIR = Path("testcases") / "cells"
HEADER = (
    "# Generated from the reference model by `python -m conformance cells --write`: do not edit.\n"
    "# One distinct cell of the state x event matrix (docs/reference-model.md, The state x event matrix).\n"
)
WIDTH = 118


def file_of(purpose: Purpose) -> Path:
    """Where a purpose's file lives, relative to the checkout."""
    return CELLS_DIR / purpose.cell.state.value.lower() / f"{purpose.cell.id.lower()}.yaml"


def _flow(value: Any) -> str:
    return (
        str(yaml.safe_dump(value, default_flow_style=True, width=10_000, sort_keys=False)).strip().removesuffix("\n...")
    )


def _mapping(data: dict[str, Any], indent: int, first: str = "") -> list[str]:
    """A mapping in block style, its values in flow style (lists of mappings in block)."""
    lines = []
    pad = " " * indent
    for i, (key, value) in enumerate(data.items()):
        lead = first if i == 0 and first else pad
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value) and key in (
            "steps", "expect_one_of", "then",
        ):  # fmt: skip
            lines.append(f"{lead}{key}:")
            for item in value:
                lines += _mapping(item, indent + 4, " " * (indent + 2) + "- ")
        else:
            text = _flow(value)
            if len(lead) + len(key) + 2 + len(text) > WIDTH and isinstance(value, str):
                text = ">-\n" + "\n".join(_wrapped(value, indent + 2))
            lines.append(f"{lead}{key}: {text}")
    return lines


def _wrapped(text: str, indent: int) -> list[str]:
    words, lines, line = text.split(), [], ""
    for word in words:
        if line and len(line) + 1 + len(word) + indent > WIDTH:
            lines.append(" " * indent + line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    return [*lines, " " * indent + line] if line else lines


def render(purpose: Purpose) -> str:
    """The text of a purpose's case file."""
    return HEADER + "\n".join(_mapping(purpose.document, 0)) + "\n"


@dataclass(frozen=True)
class Files:
    """The model's files (path -> text) and the matrix's size."""

    texts: dict[Path, str]
    raw_cells: int


def expected() -> Files:
    return Files({file_of(p): render(p) for p in purposes()}, raw_cell_count())


def write(root: Path) -> Files:
    """Replace root/testcases/cells with the model's files."""
    files = expected()
    base = root / CELLS_DIR
    for old in sorted(base.rglob("*.yaml")) if base.is_dir() else []:
        if old.relative_to(root) not in files.texts:
            old.unlink()
    for rel, text in files.texts.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.is_file() or path.read_text() != text:
            path.write_text(text)
    return files


def stale(root: Path) -> list[str]:
    """What differs between root/testcases/cells and the model: missing, changed and extra files."""
    files = expected()
    base = root / CELLS_DIR
    present = {p.relative_to(root) for p in base.rglob("*.yaml")} if base.is_dir() else set()
    problems = [f"missing: {p}" for p in sorted(set(files.texts) - present)]
    problems += [f"extra: {p}" for p in sorted(present - set(files.texts))]
    problems += [
        f"changed: {p}" for p in sorted(set(files.texts) & present) if (root / p).read_text() != files.texts[p]
    ]
    return problems
