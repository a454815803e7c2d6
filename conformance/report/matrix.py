"""A cross-target matrix: cases (rows) by runs (columns), merged from several results.json files.

The page skeleton and its rules (offline, one hashed inline style and script under a Content-Security-Policy, the
shared look, every value escaped, atomic writing) are those of conformance/report/page.py; this module adds only the
matrix's own CSS, its filter script and its content. Each cell links to the case's details in that run's own report
(``<dir of results.json>/index.html#<case anchor>``, the ids of html.case_anchors), by a path relative to the matrix
file.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any
from urllib.parse import quote

from ..grading.grade import case_category, case_level, case_verdict, grade
from ..results import READABLE_SCHEMAS
from ..vocabulary import CATEGORIES, LEVELS, VERDICTS
from .cellgrid import GRID_CSS, cell_grid
from .html import case_anchors, write_html
from .page import escape as _e
from .page import render_page, write_page

SCHEMA_PREFIX = "tcp-conformance/results/"
ABSENT = "\u2014"
LEGEND = (
    ("pass", "PASS"),
    ("fail", "FAIL (MUST)"),
    ("non-strict", "FAIL (SHOULD/MAY): non-strict"),
    ("info", "INFO: behaviour recorded"),
    ("incomplete", "ERROR / INCONCLUSIVE"),
    ("not-run", "NOT-RUN"),
    ("absent", "not in that run"),
)

# The matrix's own rules, after page.BASE_CSS.
_CSS = """
h2 { margin-top: 1.6rem; }
.statement { font-weight: 400; font-size: 12px; }
#matrix thead th[scope="col"] { min-width: 10rem; max-width: 20rem; }
th.group { background: #eaeef2; }
#matrix tbody th[scope="row"] { white-space: nowrap; font-weight: 400; }
td.cell { text-align: center; white-space: nowrap; min-width: 7rem;
  -webkit-print-color-adjust: exact; print-color-adjust: exact; }
td.cell a { color: inherit; display: block; text-decoration: none; }
td.cell .behaviour { display: block; font-size: 11px; font-weight: 400; }
.c-pass { background: var(--pass); color: #fff; font-weight: 600; }
.c-fail { background: var(--fail); color: #fff; font-weight: 600; }
.c-non-strict { background: var(--non-strict); color: var(--fg); font-weight: 600; }
.c-info { background: var(--info); color: #fff; font-weight: 600; }
.c-incomplete { background: var(--incomplete); color: #fff; font-weight: 600; }
.c-not-run { background: repeating-linear-gradient(135deg, #fff 0 6px, #eaeef2 6px 12px); color: var(--fg); }
.c-absent { background: #fff; color: var(--muted); }
ul.legend { display: flex; flex-wrap: wrap; gap: .4rem .8rem; list-style: none; padding: 0; margin: .3rem 0 .8rem; }
ul.legend li { border: 1px solid var(--line); padding: .1rem .5rem; border-radius: 3px; }
#filters { margin: .4rem 0; }
#filters label { margin-right: 1rem; }
"""

_JS = """
(function () {
  "use strict";
  var bar = document.getElementById("filters");
  var differ = document.getElementById("only-differ");
  var problems = document.getElementById("only-problems");
  var rows = Array.prototype.slice.call(document.querySelectorAll("#matrix tbody tr[data-row]"));
  function apply() {
    rows.forEach(function (row) {
      var hide = (differ.checked && row.dataset.differ !== "1") ||
        (problems.checked && row.dataset.problem !== "1");
      row.hidden = hide;
    });
  }
  bar.addEventListener("change", apply);
  bar.hidden = false;
  apply();
})();
"""


class ResultsError(Exception):
    """A results file that cannot be used; the message is one line naming the file."""


@dataclass(frozen=True)
class Row:
    """One case in one address family, as it appears across the runs."""

    id: str
    family: str
    level: str
    area: str
    title: str

    @property
    def key(self) -> tuple[str, str]:
        return self.id, self.family


@dataclass
class Run:
    """One results.json: its document, its grade and its cases by (id, family) with their report anchors."""

    path: Path
    doc: dict
    grade: dict = field(init=False)
    cases: dict[tuple[str, str], tuple[Mapping[str, Any], str]] = field(init=False)

    def __post_init__(self) -> None:
        self.grade = grade(self.doc)
        listed = self.doc.get("cases")
        cases = [c for c in listed if isinstance(c, Mapping)] if isinstance(listed, list) else []
        self.cases = {}
        for case, anchor in zip(cases, case_anchors(cases), strict=True):
            self.cases.setdefault(_key(case), (case, anchor))

    @property
    def target(self) -> str:
        target = self.doc.get("target")
        return str(target.get("name") or "?") if isinstance(target, Mapping) else "?"


# --------------------------------------------------------------------------- loading


def load_results(path: Path) -> dict:
    """Read and check a results.json; any problem raises ResultsError with a one-line message."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ResultsError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ResultsError(f"{path}: cannot read: {_one_line(exc)}") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ResultsError(f"{path}: not a results.json (invalid JSON at line {exc.lineno})") from None
    check_results(doc, path)
    return doc


def check_results(doc: Any, path: PurePath) -> None:
    """A results.json is an object with our schema (version 1) and a list of case objects."""
    schema = doc.get("schema") if isinstance(doc, dict) else None
    if not isinstance(schema, str) or not schema.startswith(SCHEMA_PREFIX):
        raise ResultsError(f"{path}: not a results.json (no '{SCHEMA_PREFIX}N' schema)")
    if schema not in READABLE_SCHEMAS:
        readable = "', '".join(READABLE_SCHEMAS)
        raise ResultsError(f"{path}: unsupported results schema '{schema}' (this suite reads '{readable}')")
    cases = doc.get("cases")
    if not isinstance(cases, list) or not all(isinstance(c, dict) for c in cases):
        raise ResultsError(f"{path}: not a results.json ('cases' is not a list of objects)")


def _one_line(exc: BaseException) -> str:
    return " ".join(str(getattr(exc, "strerror", None) or exc).split())


# --------------------------------------------------------------------------- rows and cells


def _key(case: Mapping[str, Any]) -> tuple[str, str]:
    return str(case.get("id", "?")), str(case.get("family") or "")


def case_area(case: Mapping[str, Any]) -> str:
    """The case's area: the folder of its case file (``handshake``), else its first tag."""
    folder = PurePath(str(case.get("file") or "")).parent.name
    tags = case.get("tags")
    first_tag = str(tags[0]) if isinstance(tags, list) and tags else ""
    return folder or first_tag or "other"


def collect_rows(runs: Sequence[Run]) -> list[Row]:
    """Every (case, family) of any run, ordered by level, area, id and family."""
    rows: dict[tuple[str, str], Row] = {}
    for run in runs:
        for key, (case, _) in run.cases.items():
            if key not in rows:
                rows[key] = Row(key[0], key[1], case_level(case), case_area(case), str(case.get("title") or ""))
    return sorted(rows.values(), key=lambda r: (LEVELS.index(r.level), r.area, r.id, r.family))


def cell_class(case: Mapping[str, Any] | None) -> str:
    """Colour class of one cell (see LEGEND); a case a run lacks is 'absent'."""
    if case is None:
        return "absent"
    verdict = case_verdict(case)
    if verdict == "NOT-RUN":
        return "not-run"
    if verdict in ("ERROR", "INCONCLUSIVE"):
        return "incomplete"
    return case_category(case)


def cell_title(case: Mapping[str, Any]) -> str:
    """Hover text: verdict, behaviour label (and its description) and reason."""
    lines = [f"{case_verdict(case)} ({case_level(case)})"]
    if case.get("behaviour"):
        text = f" ({case['behaviour_text']})" if case.get("behaviour_text") else ""
        lines.append(f"behaviour: {case['behaviour']}{text}")
    if case.get("reason"):
        lines.append(f"reason: {case['reason']}")
    return "\n".join(lines)


def report_href(results_path: Path, out: Path, anchor: str = "") -> str:
    """URL of ``<dir of results_path>/index.html[#anchor]``, relative to the directory of ``out``."""
    report = Path(os.path.abspath(results_path)).parent / "index.html"
    try:
        href = quote(PurePath(os.path.relpath(report, os.path.abspath(Path(out).parent))).as_posix(), safe="/")
    except ValueError:  # another drive (Windows): no relative path exists
        href = report.as_uri()
    return f"{href}#{quote(anchor, safe='')}" if anchor else href


def _cell(run: Run, row: Row, out: Path) -> str:
    found = run.cases.get(row.key)
    if found is None:
        return f'<td class="cell c-absent" data-class="absent" title="not in this run">{ABSENT}</td>'
    case, anchor = found
    cls = cell_class(case)
    behaviour = case.get("behaviour")
    extra = f'<span class="behaviour">{_e(behaviour)}</span>' if behaviour else ""
    return (
        f'<td class="cell c-{cls}" data-class="{cls}">'
        f'<a href="{_e(report_href(run.path, out, anchor))}" title="{_e(cell_title(case))}">'
        f"{_e(case_verdict(case))}{extra}</a></td>"
    )


def _row(runs: Sequence[Run], row: Row, out: Path) -> str:
    classes = [cell_class(run.cases.get(row.key, (None, ""))[0]) for run in runs]
    differ = "1" if len(set(classes)) > 1 else "0"
    problem = "1" if any(c in ("fail", "non-strict", "incomplete", "absent") for c in classes) else "0"
    cells = "".join(_cell(run, row, out) for run in runs)
    return (
        f'<tr data-row="{_e(row.id)}[{_e(row.family)}]" data-differ="{differ}" data-problem="{problem}">'
        f'<th scope="row"><code>{_e(row.id)}</code> <span class="muted">[{_e(row.family)}]</span></th>'
        f"<td>{_e(row.title)}</td>{cells}</tr>"
    )


# --------------------------------------------------------------------------- page


def _date(run: Run) -> str:
    started = str(run.doc.get("started") or "")
    return started[:16].replace("T", " ") + " UTC" if len(started) >= 16 else started


def _column_head(run: Run, n: int, out: Path) -> str:
    return (
        f'<th scope="col" data-run="{n}"><a href="{_e(report_href(run.path, out))}">{_e(run.target)}</a><br>'
        f'<span class="muted">profile <code>{_e(run.doc.get("profile", ""))}</code><br>{_e(_date(run))}</span><br>'
        f'<span class="statement">{_e(run.grade["statement"])}</span></th>'
    )


def _summary_row(run: Run, n: int, out: Path) -> str:
    verdicts = Counter(case_verdict(c) for c, _ in run.cases.values())
    categories = run.grade["categories"]
    counts = [categories.get(c, 0) for c in CATEGORIES] + [verdicts.get(v, 0) for v in VERDICTS]
    counts.append(sum(1 for c, _ in run.cases.values() if c.get("waiver") == "waived"))
    return (
        f'<tr data-run="{n}"><td class="num">{n}</td>'
        f'<td><a href="{_e(report_href(run.path, out))}">{_e(run.target)}</a></td>'
        f"<td><code>{_e(run.doc.get('run_id', ''))}</code></td>"
        f"<td><code>{_e(run.doc.get('profile', ''))}</code></td><td>{_e(_date(run))}</td>"
        f'<td class="statement">{_e(run.grade["statement"])}</td>'
        + "".join(f'<td class="num">{count}</td>' for count in counts)
        + "</tr>"
    )


def _summary(runs: Sequence[Run], out: Path) -> str:
    """Per run: its identification, its grade statement and its counts per category and per verdict."""
    head = "<th>#</th><th>Target</th><th>Run</th><th>Profile</th><th>Date</th><th>Statement</th>"
    head += "".join(f'<th class="num">{_e(h)}</th>' for h in (*CATEGORIES, *VERDICTS, "waived"))
    rows = "".join(_summary_row(run, n, out) for n, run in enumerate(runs, 1))
    return f'<h2>Runs</h2><table id="runs"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>'


def _legend() -> str:
    items = "".join(f'<li class="c-{cls}">{_e(text)}</li>' for cls, text in LEGEND)
    return f'<ul class="legend">{items}</ul>'


def _group_head(row: Row, width: int) -> str:
    return f'<tr class="group"><th class="group" colspan="{width}">{_e(row.level)} \u2014 {_e(row.area)}</th></tr>'


def _matrix(runs: Sequence[Run], rows: Sequence[Row], out: Path) -> str:
    heads = "".join(_column_head(run, n, out) for n, run in enumerate(runs, 1))
    body: list[str] = []
    group = None
    for row in rows:
        if (row.level, row.area) != group:
            group = (row.level, row.area)
            # a group header has no data-row: the filters never hide it
            body.append(_group_head(row, len(runs) + 2))
        body.append(_row(runs, row, out))
    if not rows:
        body.append(f'<tr><td colspan="{len(runs) + 2}" class="muted">No cases in these runs.</td></tr>')
    filters = (
        '<div id="filters" hidden><label><input type="checkbox" id="only-differ"> only cases where the runs differ'
        '</label><label><input type="checkbox" id="only-problems"> only cases not passed everywhere</label></div>'
    )
    return (
        f"<h2>Cases</h2>{_legend()}{filters}"
        f'<table id="matrix"><thead><tr><th>Case</th><th>Title</th>{heads}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>"
    )


def render_matrix(runs: Sequence[tuple[Path, dict]], out: Path) -> str:
    """The matrix page for (results.json path, document) pairs, with links relative to ``out``."""
    loaded = [Run(Path(path), doc) for path, doc in runs]
    rows = collect_rows(loaded)
    title = "TCP conformance matrix \u2014 " + ", ".join(run.target for run in loaded)
    header = (
        f'<header><h1>TCP conformance matrix</h1><p class="muted">{len(loaded)} runs, {len(rows)} cases '
        "(each case once per address family). Hover a cell for the behaviour and reason; click it for the "
        "case's details in that run's report.</p></header>"
    )
    main = f"<main>{_summary(loaded, out)}{_grids(loaded, out)}{_matrix(loaded, rows, out)}</main>"
    return render_page(title, f"{header}\n{main}", css=_CSS + GRID_CSS, script=_JS)


def _grids(runs: Sequence[Run], out: Path) -> str:
    """The state x event grid of every run that ran the generated cells, one under the other."""
    parts = []
    for n, run in enumerate(runs, 1):
        grid = cell_grid([(case, report_href(run.path, out, anchor)) for case, anchor in run.cases.values()])
        if grid:
            parts.append(f'<h3 data-run="{n}">{_e(run.target)} <span class="muted">(run {n}, profile '
                         f'<code>{_e(run.doc.get("profile", ""))}</code>)</span></h3>{grid}')  # fmt: skip
    if not parts:
        return ""
    return (
        '<h2 id="state-event">State \u00d7 event matrix, per target</h2><p class="muted">The generated cells '
        "(testcases/cells/) as each target answered them; every square links to the evidence in that run's "
        "report.</p>" + "".join(parts)
    )


def write_matrix(results_paths: Sequence[Path], out: Path) -> None:
    """Load every results.json (ResultsError on the first bad one) and write the matrix page to ``out``."""
    docs = [(Path(p), load_results(Path(p))) for p in results_paths]
    write_page(Path(out), render_matrix(docs, Path(out)))


def write_report(results_path: Path, out: Path | None = None) -> Path:
    """Re-render a run's HTML report from its results.json (beside it by default); grade it if ungraded."""
    results_path = Path(results_path)
    doc = load_results(results_path)
    if "grade" not in doc:
        doc["grade"] = grade(doc)
    target = Path(out) if out is not None else results_path.parent / "index.html"
    write_html(doc, target)
    return target
