"""The state x event grid of one run: the generated cells (testcases/cells/) by state (rows) and segment class
(columns), every distinct cell a square coloured by what the target did there and linked to its evidence.

Rules of this module: pure rendering from results.json case records that carry a ``cell``; every value escaped
(page.escape). One square per distinct cell, its address families folded into it (the worse verdict colours
it): agrees (PASS), deviates (FAIL; a reviewed known deviation is marked as such but stays a deviation),
incomplete (ERROR, INCONCLUSIVE), not run (NOT-RUN). The run's report (html.py) and the cross-target matrix
(matrix.py) both use it; they say where a case's evidence is, as an href per case record.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from ..grading.grade import case_verdict, worst_verdict
from ..oracle.cells import SEGMENT_CLASSES
from ..oracle.machine import State
from .page import escape as _e

GRID_CLASSES = (
    ("agrees", "agrees with the model"),
    ("info", "recorded (INFO: the RFCs leave it open)"),
    ("deviates", "deviates"),
    ("known", "deviates (reviewed known deviation)"),
    ("incomplete", "ERROR / INCONCLUSIVE"),
    ("not-run", "not run"),
)
GRID_CSS = """
table.cellgrid td { padding: .2rem; min-width: 2.2rem; }
table.cellgrid th[scope="row"] { white-space: nowrap; }
a.sq { display: inline-block; width: 11px; height: 11px; margin: 1px; border-radius: 2px; vertical-align: middle;
  -webkit-print-color-adjust: exact; print-color-adjust: exact; }
.g-agrees { background: var(--pass); }
.g-info { background: var(--info); }
.g-deviates { background: var(--fail); }
.g-known { background: repeating-linear-gradient(135deg, var(--fail) 0 3px, #f5a3a9 3px 6px); }
.g-incomplete { background: var(--incomplete); }
.g-not-run { background: repeating-linear-gradient(135deg, #fff 0 3px, #d1d9e0 3px 6px); outline: 1px solid #d1d9e0; }
ul.gridlegend { display: flex; flex-wrap: wrap; gap: .3rem 1rem; list-style: none; padding: 0; margin: .3rem 0; }
ul.gridlegend a.sq { pointer-events: none; }
"""


def grid_class(records: Sequence[Mapping[str, Any]]) -> str:
    """The colour of one distinct cell from its records (one per address family)."""
    verdict = worst_verdict(case_verdict(r) for r in records)
    if verdict == "FAIL":
        return "known" if all(r.get("known_deviation") for r in records if case_verdict(r) == "FAIL") else "deviates"
    if verdict == "PASS" and any(str(r.get("level")) == "INFO" for r in records):
        return "info"
    return {"PASS": "agrees", "NOT-RUN": "not-run"}.get(verdict, "incomplete")


SEQ_ORDER = ("BELOW", "LEFT", "INSIDE", "RIGHT", "BEYOND", "ANY")  # along the window, as the squares are drawn
ACK_ORDER = ("OLD", "UNA", "NXT", "FUTURE", "ANY", "-")


def _place(cell: Mapping[str, Any]) -> tuple[int, int]:
    seq, ack = str(cell.get("seq")), str(cell.get("ack"))
    return (SEQ_ORDER.index(seq) if seq in SEQ_ORDER else 99, ACK_ORDER.index(ack) if ack in ACK_ORDER else 99)


def _title(records: Sequence[Mapping[str, Any]]) -> str:
    first = records[0]
    cell = first["cell"]
    lines = [f"{first.get('id', '?')}: {first.get('title', '')}"]
    lines += [f"[{r.get('family', '?')}] {case_verdict(r)}: {r.get('reason', '')}" for r in records]
    covers = [c for c in cell.get("covers", []) if c != first.get("id")]
    if covers:
        lines.append("also stands for: " + ", ".join(covers))
    return "\n".join(lines)


def _groups(cases: Sequence[tuple[Mapping[str, Any], str]]) -> dict[str, tuple[list[Mapping[str, Any]], str]]:
    """Cell records by case id, each with the href of its worst record (a FAIL in one family links there)."""
    found: dict[str, list[tuple[Mapping[str, Any], str]]] = {}
    for case, href in cases:
        if isinstance(case.get("cell"), Mapping):
            found.setdefault(str(case.get("id")), []).append((case, href))
    out = {}
    for case_id, pairs in found.items():
        worst = worst_verdict(case_verdict(c) for c, _ in pairs)
        href = next(h for c, h in pairs if case_verdict(c) == worst)
        out[case_id] = ([c for c, _ in pairs], href)
    return out


def cell_grid(cases: Sequence[tuple[Mapping[str, Any], str]]) -> str:
    """The grid for (case record, href of its evidence) pairs; empty text when no record is a cell."""
    groups = _groups(cases)
    if not groups:
        return ""
    squares: dict[tuple[str, str], list[str]] = {}
    counts: Counter[str] = Counter()
    for case_id, (records, href) in sorted(groups.items(), key=lambda g: _place(g[1][0][0]["cell"])):
        cell = records[0]["cell"]
        cls = grid_class(records)
        counts[cls] += 1
        square = (
            f'<a class="sq g-{cls}" href="{_e(href)}" title="{_e(_title(records))}" aria-label="{_e(case_id)}"></a>'
        )
        squares.setdefault((str(cell.get("state")), str(cell.get("segment"))), []).append(square)
    states = [s.value for s in State]
    states += sorted({state for state, _ in squares} - set(states))
    segments = [c.name for c in SEGMENT_CLASSES]
    head = "".join(f'<th scope="col">{_e(s)}</th>' for s in segments)
    rows = []
    for state in states:
        tds = "".join(f"<td>{''.join(squares.get((state, seg), []))}</td>" for seg in segments)
        rows.append(f'<tr><th scope="row">{_e(state)}</th>{tds}</tr>')
    legend = "".join(
        f'<li><a class="sq g-{cls}"></a> {_e(text)}: {counts.get(cls, 0)}</li>' for cls, text in GRID_CLASSES
    )
    order = (
        '<p class="muted">In each box the squares run along the window: SEQ at RCV.NXT - 1 (BELOW), RCV.NXT (LEFT), '
        "the middle (INSIDE), RCV.NXT + RCV.WND - 1 (RIGHT), RCV.NXT + RCV.WND (BEYOND); for segments with ACK, "
        "each of those by ACK: SND.UNA - 1 (OLD), SND.UNA (UNA), SND.NXT (NXT), SND.NXT + 1 (FUTURE). Merged cells "
        "show once; hover a square for its cell id and what it stands for.</p>"
    )
    return (
        f'<ul class="gridlegend">{legend}</ul>{order}'
        f'<table class="cellgrid"><thead><tr><th>state \\ segment</th>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def grid_counts(cases: Sequence[Mapping[str, Any]]) -> Counter[str]:
    """How many distinct cells agree, deviate, ... (for summaries)."""
    return Counter(grid_class(records) for records, _ in _groups([(c, "") for c in cases]).values())
