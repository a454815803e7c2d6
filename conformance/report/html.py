"""One self-contained HTML conformance report rendered from results.json (schema `tcp-conformance/results/1`).

The page is laid out like an ISO/IEC 9646 test report (identification, IUT, summary, per-case results), headed
by the conformance statement when results.json carries a grade; every case's details show a ladder diagram of
its frames (conformance/report/ladder.py). The page skeleton and its rules (offline, one hashed inline style and
script under a Content-Security-Policy, the shared look, every value escaped, atomic writing) are those of
conformance/report/page.py; this module adds only the report's own CSS, its little vanilla JS and its content.
Case data is untrusted: every value goes through `_e` (page.escape). It also names each case's element id
(`case_anchors`), the ``index.html#case-...`` targets that the matrix (conformance/report/matrix.py) links to.
"""

from __future__ import annotations

import pathlib
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlsplit

from ..vocabulary import CATEGORIES, LEVELS, VERDICTS
from .cellgrid import GRID_CSS, cell_grid
from .ladder import ladder_svg
from .page import escape as _e
from .page import page_chunks, write_page

DIRECTIONS = {"out": "tester \u2192 target", "in": "target \u2192 tester"}
NO_LEVEL = "-"
CATEGORY_TEXT = {
    "pass": ("Pass", "requirement met"),
    "non-strict": ("Non-strict", "a SHOULD or MAY not met"),
    "fail": ("Fail", "a MUST broken"),
    "info": ("Info", "behaviour recorded (INFO level)"),
    "incomplete": ("Incomplete", "ERROR, INCONCLUSIVE or NOT-RUN"),
}
_RFC = re.compile(r"\brfc[\s-]*0*(\d{1,5})", re.IGNORECASE)

# The report's own rules, after page.BASE_CSS.
_CSS = """
body { margin: 0 auto; max-width: 1280px; }
h3 { font-size: 1rem; margin: 1rem 0 .4rem; }
pre { margin: 0; padding: .5rem .7rem; background: var(--head); border: 1px solid var(--line);
  border-radius: 4px; white-space: pre-wrap; overflow-wrap: anywhere; }
table { width: 100%; }
table.kv th { width: 14rem; }
td.num, th.num { white-space: nowrap; }
.subtitle { color: var(--muted); margin: 0 0 1rem; }
.notice { border: 1px solid #d4a72c; background: #fff8c5; padding: .4rem .7rem; border-radius: 4px; }
.badge { display: inline-block; min-width: 6.5em; padding: .05rem .45rem; border-radius: 3px; color: #fff;
  font-weight: 600; font-size: 12px; text-align: center; white-space: nowrap;
  -webkit-print-color-adjust: exact; print-color-adjust: exact; }
.v-pass { background: var(--pass); }
.v-fail { background: var(--fail); }
.v-inconclusive { background: #9a6700; }
.v-error { background: #8250df; }
.v-not-run, .v-other { background: #6e7781; }
.cards { display: flex; flex-wrap: wrap; gap: .6rem; margin: .3rem 0 .8rem; padding: 0; list-style: none; }
.cards li { border: 1px solid var(--line); border-radius: 4px; padding: .4rem .8rem; min-width: 8rem; }
.cards .n { display: block; font-size: 1.4rem; font-weight: 600; }
#filters { display: flex; flex-wrap: wrap; gap: .4rem 1.4rem; align-items: center; padding: .5rem .7rem;
  margin-bottom: .5rem; border: 1px solid var(--line); border-radius: 4px; background: var(--head); }
#filters fieldset { border: 0; margin: 0; padding: 0; }
#filters legend { float: left; font-weight: 600; margin-right: .5rem; }
#filters label { margin-right: .6rem; white-space: nowrap; }
#filter-text { min-width: 16rem; padding: .2rem .4rem; }
#cases td:first-child { white-space: nowrap; }
tr.out-fail td, tr.hit td { background: #ffebe9; }
details.case { border: 1px solid var(--line); border-radius: 4px; margin: .5rem 0; }
details.case > summary { cursor: pointer; padding: .4rem .7rem; background: var(--head); }
details.case[open] > summary { border-bottom: 1px solid var(--line); }
details.case > .body { padding: .3rem .9rem .8rem; }
.sxs { display: grid; grid-template-columns: 1fr 1fr; gap: .6rem; }
.sxs h4 { margin: .2rem 0; font-size: .85rem; }
.toolbar { margin: .4rem 0; }
.badge.c-pass { background: var(--pass); }
.badge.c-fail { background: var(--fail); }
.badge.c-non-strict { background: var(--non-strict); color: var(--fg); }
.badge.c-info { background: var(--info); }
.badge.c-incomplete, .badge.c-other { background: var(--incomplete); }
header { border-bottom: 3px solid var(--accent); margin-bottom: 1rem; padding-bottom: .4rem; }
#grade h2 { margin-top: 1rem; }
.statement { display: flex; gap: 1.2rem; align-items: center; margin: .4rem 0 1rem; padding: .8rem 1.1rem;
  border: 1px solid; border-left-width: 8px; border-radius: 6px; font-size: 1.05rem;
  -webkit-print-color-adjust: exact; print-color-adjust: exact; }
.statement .word { font-size: 1.25rem; font-weight: 700; letter-spacing: .04em; white-space: nowrap; }
.statement p { margin: 0; }
.st-conformant { border-color: #1a7f37; background: #dafbe1; }
.st-conformant .word { color: #116329; }
.st-not-conformant { border-color: #cf222e; background: #ffebe9; }
.st-not-conformant .word { color: #a40e26; }
.st-incomplete { border-color: #d4a72c; background: #fff8c5; }
.st-incomplete .word { color: #7d4e00; }
.grade-grid { display: flex; flex-wrap: wrap; gap: 0 2rem; align-items: flex-start; }
.grade-grid > div:first-child { flex: 1 1 40rem; }
.grade-grid > div:last-child { flex: 0 1 24rem; }
.cards.categories { flex-wrap: nowrap; }
.cards.categories li { flex: 1 1 0; border-top: 5px solid var(--incomplete); min-width: 7.5rem; }
.cards.categories li.cat-pass { border-top-color: var(--pass); }
.cards.categories li.cat-non-strict { border-top-color: var(--non-strict); }
.cards.categories li.cat-fail { border-top-color: var(--fail); }
.cards.categories li.cat-info { border-top-color: var(--info); }
.cards .what { display: block; font-size: 12px; color: var(--muted); }
#matrix td:first-child, #matrix td.cases code { white-space: nowrap; }
#matrix td.cases { width: 30%; }
#matrix tr.cat-fail td { background: #fff5f5; }
.ladder-wrap { overflow-x: auto; margin: .3rem 0 .8rem; padding: .3rem; border: 1px solid var(--line);
  border-radius: 4px; background: #fff; }
.ladder-wrap svg { display: block; max-width: 100%; height: auto; }
@media print {
  body { max-width: none; padding: 0; font-size: 11px; }
  #filters, .toolbar { display: none !important; }
  a { color: inherit; text-decoration: none; }
  h2 { break-after: avoid; }
  tr, pre, .sxs { break-inside: avoid; }
  details.case > summary { list-style: none; }
}
"""

_JS = """
(function () {
  "use strict";
  var bar = document.getElementById("filters");
  var query = document.getElementById("filter-text");
  var count = document.getElementById("filter-count");
  var rows = Array.prototype.slice.call(document.querySelectorAll("#cases tbody tr[data-case]"));
  var cases = Array.prototype.slice.call(document.querySelectorAll("details.case"));
  function enabled(group) {
    var set = {};
    bar.querySelectorAll('input[data-filter="' + group + '"]').forEach(function (box) {
      if (box.checked) { set[box.value] = true; }
    });
    return set;
  }
  // filter group -> [row attribute, several space-separated values per row]
  var groups = {verdict: ["verdict", false], level: ["level", false], area: ["areas", true], topic: ["topics", true]};
  function passes(row, group, set) {
    if (!bar.querySelector('input[data-filter="' + group + '"]')) { return true; }
    var raw = row.getAttribute("data-" + groups[group][0]) || "";
    var values = groups[group][1] ? raw.split(" ") : [raw];
    return values.some(function (v) { return set[v] === true; });
  }
  function apply() {
    var sets = {};
    Object.keys(groups).forEach(function (g) { sets[g] = enabled(g); });
    var q = query.value.trim().toLowerCase(), shown = 0;
    rows.forEach(function (row) {
      var ok = Object.keys(groups).every(function (g) { return passes(row, g, sets[g]); }) &&
        row.dataset.text.indexOf(q) !== -1;
      row.hidden = !ok;
      var det = document.getElementById(row.dataset.case);
      if (det) { det.hidden = !ok; }
      if (ok) { shown += 1; }
    });
    count.textContent = shown + " of " + rows.length + " cases shown";
  }
  function openTarget() {
    var id = decodeURIComponent(location.hash.slice(1));
    var el = id ? document.getElementById(id) : null;
    if (el && el.tagName === "DETAILS") { el.hidden = false; el.open = true; }
  }
  function setAll(open) { cases.forEach(function (d) { d.open = open; }); }
  var wasOpen = [];
  window.addEventListener("beforeprint", function () {
    wasOpen = cases.map(function (d) { return d.open; });
    setAll(true);
  });
  window.addEventListener("afterprint", function () {
    cases.forEach(function (d, i) { d.open = wasOpen[i]; });
  });
  document.getElementById("expand-all").addEventListener("click", function () { setAll(true); });
  document.getElementById("collapse-all").addEventListener("click", function () { setAll(false); });
  document.getElementById("filter-reset").addEventListener("click", function () {
    bar.querySelectorAll("input[data-filter]").forEach(function (box) { box.checked = true; });
    query.value = "";
    apply();
  });
  bar.addEventListener("input", apply);
  bar.addEventListener("change", apply);
  window.addEventListener("hashchange", openTarget);
  bar.hidden = false;
  document.querySelector(".toolbar").hidden = false;
  apply();
  openTarget();
})();
"""


# --------------------------------------------------------------------------- small helpers


def _as_list(value: Any) -> list[Any]:
    """Lenient list coercion: a crashed or hand-edited results.json may hold a string or null."""
    if value is None:
        return []
    if isinstance(value, str | bytes) or not isinstance(value, Iterable) or isinstance(value, Mapping):
        return [value]
    return list(value)


def _as_map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _slug(value: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", value.lower()).strip("-") or "other"


def _verdict(case: Mapping[str, Any]) -> str:
    return str(case.get("verdict") or "UNKNOWN").upper()


def _level(case: Mapping[str, Any]) -> str:
    return str(case.get("level") or NO_LEVEL).upper()


def _label(case: Mapping[str, Any]) -> str:
    """Case id plus its family: the same id runs once per family (ipv4, ipv6)."""
    family = case.get("family")
    return f"{case.get('id', '?')} [{family}]" if family else str(case.get("id", "?"))


def _grade_label(case: Mapping[str, Any]) -> str:
    """How the grade names a case: `ID[family]`."""
    family = case.get("family")
    return f"{case.get('id', '?')}[{family}]" if family else str(case.get("id", "?"))


def _ordered(known: Sequence[str], seen: Iterable[str]) -> list[str]:
    """Known values in their canonical order, then any unexpected values found in the data."""
    seen = list(dict.fromkeys(seen))
    return [v for v in known if v in seen] + sorted(v for v in seen if v not in known)


def _areas(case: Mapping[str, Any]) -> list[str]:
    """The RFCs a case belongs to (`RFC 793`, `RFC 9293`, ...), from its refs and tags, in numeric order."""
    numbers = {
        int(m[1])
        for text in [*_as_list(case.get("refs")), *_as_list(case.get("tags"))]
        for m in _RFC.finditer(str(text))
    }
    return [f"RFC {n}" for n in sorted(numbers)]


def _topics(case: Mapping[str, Any]) -> list[str]:
    """The case's tags that do not name an RFC (those count as areas)."""
    return list(dict.fromkeys(str(t) for t in _as_list(case.get("tags")) if t and not _RFC.search(str(t))))


def _values(labels: Sequence[str]) -> str:
    """Space-separated filter values of a multi-valued group; `-` stands for none."""
    return " ".join(dict.fromkeys(_slug(v) for v in labels)) or NO_LEVEL


def _badge(verdict: str) -> str:
    cls = f"v-{_slug(verdict)}" if verdict in VERDICTS else "v-other"
    return f'<span class="badge {cls}">{_e(verdict)}</span>'


def _float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _ms(t: Any) -> str:
    """Trace time: seconds since case start, shown in milliseconds with 3 decimals."""
    f = _float(t)
    return _e(t) if f is None else f"{f * 1000:.3f}"


def _seconds(value: Any) -> str:
    f = _float(value)
    return _e(value) if f is None else f"{f:.3f}\u00a0s"


def _elapsed(started: Any, finished: Any) -> str:
    try:
        delta = datetime.fromisoformat(str(finished)) - datetime.fromisoformat(str(started))
    except ValueError:
        return ""
    return f"{delta.total_seconds():.1f}\u00a0s"


def case_anchors(cases: Sequence[Mapping[str, Any]]) -> list[str]:
    """The element id of each case's details in the report, in the order of ``cases``.

    Readable, from the case's id and family (``case-simopen-01-ipv4``), so a link ``index.html#case-...`` can be
    written by hand or by another page (the matrix links its cells to them); unique within the run: a repeated
    id and family gets ``-2``, ``-3``, ... in order. The same cases in the same order always get the same ids.
    """
    out: list[str] = []
    used: set[str] = set()
    for case in cases:
        base = "case-" + _slug(f"{case.get('id', '')}-{case.get('family') or ''}")
        anchor, n = base, 2
        while anchor in used:
            anchor, n = f"{base}-{n}", n + 1
        used.add(anchor)
        out.append(anchor)
    return out


def _kv_table(rows: Iterable[tuple[str, str]]) -> str:
    """Two-column table; values are already-rendered HTML, keys are escaped here."""
    body = "".join(f"<tr><th>{_e(k)}</th><td>{v}</td></tr>" for k, v in rows)
    return f'<table class="kv"><tbody>{body}</tbody></table>'


def _table(cls: str, head: str, rows: Iterable[str]) -> str:
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def _mapping_table(mapping: Mapping[str, Any], empty: str) -> str:
    if not mapping:
        return f'<span class="muted">{_e(empty)}</span>'
    return _kv_table((str(k), f'<span class="mono">{_e(v)}</span>') for k, v in mapping.items())


def _codes(values: Iterable[Any], sep: str = " ") -> str:
    return sep.join(f"<code>{_e(v)}</code>" for v in values)


def _pre(text: Any) -> str:
    return f"<pre>{_e(text)}</pre>"


def _pcap(path: Any) -> str:
    """Link the capture by its relative path; anything with a scheme or host is shown as text only."""
    if not path:
        return '<span class="muted">no capture recorded</span>'
    text = str(path)
    parts = urlsplit(text)
    if parts.scheme or parts.netloc or text.startswith(("/", "\\")):
        return f'<code>{_e(text)}</code> <span class="muted">(not a relative path, not linked)</span>'
    return f'<a href="{_e(quote(text, safe="/"))}"><code>{_e(text)}</code></a>'


# --------------------------------------------------------------------------- page sections


def _statement_state(grade: Mapping[str, Any]) -> tuple[str, str]:
    """(css class, word): red when not conformant, amber when incomplete or unknown, green otherwise."""
    if grade.get("conformant") is False:
        return "st-not-conformant", "NOT CONFORMANT"
    if grade.get("conformant") is True and grade.get("complete") is True:
        return "st-conformant", "CONFORMANT"
    return "st-incomplete", "INCOMPLETE"


def _category_badge(category: Any) -> str:
    cat = str(category or "")
    cls = f"c-{cat}" if cat in CATEGORIES else "c-other"
    label = CATEGORY_TEXT[cat][0] if cat in CATEGORIES else cat or "?"
    return f'<span class="badge {cls}">{_e(label)}</span>'


def _categories(counts: Mapping[str, Any]) -> str:
    """Case counts per Autobahn|Testsuite-style category."""
    names = _ordered(CATEGORIES, [*CATEGORIES, *counts])
    items = "".join(
        f'<li class="cat-{_slug(c)}"><span class="muted">{_e(CATEGORY_TEXT.get(c, (c, ""))[0])}</span>'
        f'<span class="n" data-category="{_e(c)}">{_e(counts.get(c, 0))}</span>'
        f'<span class="what">{_e(CATEGORY_TEXT.get(c, ("", ""))[1])}</span></li>'
        for c in names
    )
    return f'<h3>Cases by category</h3><ul class="cards categories">{items}</ul>'


def _grade_levels(levels: Mapping[str, Any]) -> str:
    """Requirements passed per level; levels with no requirement are left out."""
    rows = []
    for level in _ordered(LEVELS, levels):
        counts = _as_map(levels.get(level))
        if not counts.get("total"):
            continue
        cells = "".join(f'<td class="num">{_e(counts.get(k, 0))}</td>' for k in ("pass", "fail", "other", "total"))
        rows.append(f'<tr data-level="{_e(level)}"><td>{_e(level)}</td>{cells}</tr>')
    if not rows:
        return ""
    head = "<th>Level</th>" + "".join(f'<th class="num">{h}</th>' for h in ("Pass", "Fail", "Other", "Total"))
    return "<h3>Requirements by level</h3>" + _table("grade-levels", head, rows)


def _scope(scope: Mapping[str, Any]) -> str:
    """The in-scope requirements of the registry (what the suite claims to test) that the run decided, per level,
    and those it did not run: the denominator of the statement, so no reader takes a fraction for the whole."""
    rows, missing = [], []
    for level in ("MUST", "SHOULD", "MAY"):
        counts = _as_map(scope.get(level))
        if not counts.get("in_scope"):
            continue
        keys = ("passed", "failed", "undecided", "not_run", "in_scope")
        cells = "".join(f'<td class="num">{_e(counts.get(k, 0))}</td>' for k in keys)
        rows.append(f'<tr data-level="{_e(level)}"><td>{_e(level)}</td>{cells}</tr>')
        missing += [(level, rid) for rid in _as_list(counts.get("not_run_ids"))]
    if not rows:
        return ""
    head = "<th>Level</th>" + "".join(
        f'<th class="num">{h}</th>' for h in ("Passed", "Failed", "Undecided", "Not run", "In scope")
    )
    text = ""
    if missing:
        ids = ", ".join(f"<code>{_e(rid)}</code>" for _, rid in missing)
        text = f'<p class="not-run-scope">In scope, not run in this run ({len(missing)}): {ids}</p>'
    return "<h3>In-scope requirements decided</h3>" + _table("grade-scope", head, rows) + text


def _case_links(labels: Iterable[Any], links: Mapping[str, str]) -> str:
    """Case labels (`ID[family]`) linked to their details; an unknown label stays plain text."""
    out = []
    for label in (str(x) for x in labels):
        anchor = links.get(label)
        code = f"<code>{_e(label)}</code>"
        out.append(f'<a href="#{anchor}">{code}</a>' if anchor else code)
    return " ".join(out)


def _matrix(requirements: Sequence[Any], links: Mapping[str, str]) -> str:
    requirements = [r for r in requirements if isinstance(r, Mapping)]
    if not requirements:
        return '<h3>Requirement matrix</h3><p class="muted">No requirement graded.</p>'
    rows = []
    for req in requirements:
        cat, verdict = str(req.get("category") or ""), str(req.get("verdict") or "?").upper()
        rows.append(
            f'<tr class="cat-{_slug(cat)}" data-requirement="{_e(req.get("id"))}" data-category="{_e(cat)}">'
            f"<td><code>{_e(req.get('id', '?'))}</code></td><td>{_e(req.get('level', ''))}</td>"
            f"<td>{_e(req.get('title', ''))}</td><td>{_category_badge(cat)}</td><td>{_badge(verdict)}</td>"
            f'<td class="cases">{_case_links(_as_list(req.get("cases")), links)}</td></tr>'
        )
    head = "".join(f"<th>{h}</th>" for h in ("Requirement", "Level", "Title", "Category", "Verdict", "Cases"))
    return (
        '<h3>Requirement matrix</h3><table id="matrix">'
        + f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _grade(grade: Mapping[str, Any], links: Mapping[str, str]) -> str:
    """The conformance statement, the categories and the requirement matrix, from results["grade"]."""
    cls, word = _statement_state(grade)
    statement = (
        f'<div class="statement {cls}" data-conformant="{_e(grade.get("conformant"))}" '
        f'data-complete="{_e(grade.get("complete"))}"><span class="word">{word}</span>'
        f'<p class="statement-text">{_e(grade.get("statement", ""))}</p></div>'
    )
    return (
        '<section id="grade"><h2>Conformance statement</h2>'
        + statement
        + '<div class="grade-grid"><div>'
        + _categories(_as_map(grade.get("categories")))
        + "</div><div>"
        + _scope(_as_map(grade.get("scope")))
        + _grade_levels(_as_map(grade.get("levels")))
        + "</div></div>"
        + _waived(_as_list(grade.get("waived")), links)
        + _matrix(_as_list(grade.get("requirements")), links)
        + "</section>"
    )


def _waived(waived: Sequence[Any], links: Mapping[str, str]) -> str:
    """The reviewed known deviations: a tier of their own, each with its reason; their FAIL stands in every count."""
    if not waived:
        return ""
    rows = []
    for item in (_as_map(w) for w in waived):
        rows.append(
            f"<tr><td>{_case_links([item.get('case', '?')], links)}</td><td>{_badge(str(item.get('verdict', '')))}</td>"
            f"<td>{_e(item.get('reason', ''))}</td></tr>"
        )
    head = "".join(f"<th>{h}</th>" for h in ("Case", "Verdict", "Reviewed reason (the target's expectations file)"))
    return (
        f'<h3 id="waived">Waived: {len(rows)} known deviations</h3><p class="muted">Failures the target\'s vendor has '
        "reviewed and listed: their verdict stands in every count above and they are named in the statement; "
        "they do not fail the run (pytest shows them as xfail, allure as failed with the label waived).</p>"
        + _table("grade-waived", head, rows)
    )


def _identification(results: Mapping[str, Any]) -> str:
    started, finished = results.get("started"), results.get("finished")
    elapsed = _elapsed(started, finished)
    rows = [
        ("Test suite", f"tcp-conformance {_e(results.get('suite_version', '?'))}"),
        ("Results schema", f"<code>{_e(results.get('schema', '?'))}</code>"),
        ("Run id", f"<code>{_e(results.get('run_id', '?'))}</code>"),
        ("Started", _e(started)),
        ("Finished", _e(finished) + (f' <span class="muted">({elapsed})</span>' if elapsed else "")),
        ("Command", f"<code>{_e(results.get('command', ''))}</code>"),
        ("Profile", f"<code>{_e(results.get('profile', ''))}</code>"),
    ]
    notice = ""
    if results.get("schema") not in (None, "tcp-conformance/results/1"):
        notice = '<p class="notice">Unexpected results schema: the report may be incomplete.</p>'
    return f"<section><h2>1. Test report identification</h2>{notice}{_kv_table(rows)}</section>"


def _iut(target: Mapping[str, Any]) -> str:
    caps = _as_list(target.get("capabilities"))
    nft = target.get("nft")
    rows = [
        ("Name", f"<strong>{_e(target.get('name', '?'))}</strong>"),
        ("Kind", _e(target.get("kind", ""))),
        ("Description", _e(target.get("description", ""))),
        ("Declared capabilities", _codes(caps) if caps else '<span class="muted">none declared</span>'),
        ("Declared timers", _mapping_table(_timers(target.get("timers")), "none declared")),
        ("Sysctls", _mapping_table(_as_map(target.get("sysctls")), "none set")),
        ("nft rules", _pre(nft) if nft else '<span class="muted">none</span>'),
    ]
    return f"<section><h2>2. Implementation under test</h2>{_kv_table(rows)}</section>"


def _timers(value: Any) -> dict[str, str]:
    """targets.yaml `timers` as recorded: durations in seconds (floats), counts as integers."""
    return {str(name): f"{v:g} s" if isinstance(v, float) else str(v) for name, v in _as_map(value).items()}


def _environment(env: Mapping[str, Any]) -> str:
    return f"<section><h2>3. Test environment</h2>{_mapping_table(env, 'not recorded')}</section>"


def _verdict_summary(cases: Sequence[Mapping[str, Any]], stored: Mapping[str, Any]) -> str:
    counts = Counter(_verdict(c) for c in cases)
    items = "".join(
        f'<li>{_badge(v)}<span class="n" data-count="{_e(v)}">{counts.get(v, 0)}</span></li>'
        for v in _ordered(VERDICTS, [*VERDICTS, *counts])
    )
    total = len(cases)
    items += f'<li><span class="muted">TOTAL</span><span class="n" data-count="TOTAL">{total}</span></li>'
    waived = sum(1 for c in cases if c.get("waiver") == "waived")
    if waived:
        items += (
            f'<li><a href="#waived" class="muted">WAIVED (of the above)</a>'
            f'<span class="n" data-count="WAIVED">{waived}</span></li>'
        )
    notice = ""
    if stored and any(int(_float(stored.get(v)) or 0) != counts.get(v, 0) for v in {*stored, *counts}):
        notice = (
            '<p class="notice">The summary stored in results.json ('
            + _e(", ".join(f"{k} {v}" for k, v in stored.items()))
            + ") differs from the cases it lists; the counts above are recomputed from the cases.</p>"
        )
    return f'<h3>Verdicts</h3><ul class="cards">{items}</ul>{notice}'


def _level_summary(cases: Sequence[Mapping[str, Any]]) -> str:
    by_level: dict[str, Counter[str]] = {}
    for case in cases:
        by_level.setdefault(_level(case), Counter())[_verdict(case)] += 1
    if not by_level:
        return '<h3>Requirement levels</h3><p class="muted">No cases.</p>'
    items = []
    for level in _ordered(LEVELS, by_level):
        counts = by_level[level]
        total, passed = sum(counts.values()), counts.get("PASS", 0)
        others = ", ".join(f"{n} {v}" for v, n in counts.items() if v != "PASS")
        items.append(
            f'<li data-level="{_e(level)}" data-passed="{passed}" data-total="{total}">'
            f"<strong>{_e(level)}</strong> {passed}/{total} passed"
            + (f' <span class="muted">({_e(others)})</span>' if others else "")
            + "</li>"
        )
    return f'<h3>Requirement levels</h3><ul class="levels">{"".join(items)}</ul>'


def _failed_refs(cases: Sequence[Mapping[str, Any]], anchors: Sequence[str]) -> str:
    """Every requirement ref of a FAIL case, with links to the cases that failed it."""
    failed: dict[str, list[str]] = {}
    for case, anchor in zip(cases, anchors, strict=True):
        if _verdict(case) == "FAIL":
            link = f'<a href="#{anchor}">{_e(_label(case))}</a>'
            for ref in _as_list(case.get("refs")) or ["(no ref)"]:
                failed.setdefault(str(ref), []).append(link)
    if not failed:
        return '<h3>Requirements failed</h3><p class="muted">None.</p>'
    items = "".join(
        f'<li data-ref="{_e(ref)}"><code>{_e(ref)}</code> \u2014 {", ".join(links)}</li>'
        for ref, links in sorted(failed.items())
    )
    return f'<h3>Requirements failed</h3><ul class="failed-refs">{items}</ul>'


def _summary(results: Mapping[str, Any], cases: Sequence[Mapping[str, Any]], anchors: Sequence[str]) -> str:
    return (
        '<section id="summary"><h2>4. Summary of results</h2>'
        + _verdict_summary(cases, _as_map(results.get("summary")))
        + _level_summary(cases)
        + _failed_refs(cases, anchors)
        + "</section>"
    )


def _checkboxes(group: str, legend: str, values: Iterable[str | tuple[str, str]]) -> str:
    """One group of filter boxes; a value is either shown as is or given as (value, label)."""
    boxes = []
    for item in values:
        value, label = item if isinstance(item, tuple) else (item, item)
        boxes.append(
            f'<label><input type="checkbox" data-filter="{group}" value="{_e(value)}" checked> '
            f"{_e('(none)' if value == NO_LEVEL else label)}</label>"
        )
    return f'<fieldset data-group="{group}"><legend>{legend}</legend>{"".join(boxes)}</fieldset>'


def _multi(
    cases: Sequence[Mapping[str, Any]],
    labels: Callable[[Mapping[str, Any]], list[str]],
    key: Callable[[str], Any] | None = None,
) -> list[tuple[str, str]]:
    """(value, label) of a multi-valued group in `key` order (else by name), plus `-` when a case has none."""
    seen: dict[str, str] = {}
    none = False
    for case in cases:
        found = labels(case)
        none = none or not found
        for label in found:
            seen.setdefault(_slug(label), label)
    items = sorted(seen.items(), key=lambda kv: key(kv[1]) if key else kv[1].lower())
    return items + ([(NO_LEVEL, NO_LEVEL)] if none and items else [])


def _rfc_number(label: str) -> int:
    return int(label.split()[-1])


def _filters(cases: Sequence[Mapping[str, Any]]) -> str:
    """Filter bar, hidden until the script runs so that a page without JS shows no dead controls.

    Verdict and level hold one value per case; a case is in several RFC areas and topics, and is shown
    while any of them is ticked.
    """
    verdicts = _ordered(VERDICTS, [*VERDICTS, *(_verdict(c) for c in cases)])
    levels = _ordered(LEVELS, [*LEVELS, *(_level(c) for c in cases)])
    areas, topics = _multi(cases, _areas, _rfc_number), _multi(cases, _topics)
    return (
        '<div id="filters" hidden>'
        + _checkboxes("verdict", "Verdict", verdicts)
        + _checkboxes("level", "Level", levels)
        + (_checkboxes("area", "RFC area", areas) if areas else "")
        + (_checkboxes("topic", "Topic", topics) if topics else "")
        + '<label>Search <input type="search" id="filter-text" placeholder="id, title, ref or tag"></label>'
        + '<button type="button" id="filter-reset">Reset</button>'
        + '<span id="filter-count" class="muted"></span></div>'
    )


def _search_text(case: Mapping[str, Any]) -> str:
    parts = [case.get(k) for k in ("id", "family", "title", "nodeid")]
    parts += _as_list(case.get("refs")) + _as_list(case.get("tags"))
    return " ".join(str(p) for p in parts if p).lower()


def _case_row(case: Mapping[str, Any], anchor: str) -> str:
    verdict, level = _verdict(case), _level(case)
    return (
        f'<tr data-case="{anchor}" data-verdict="{_e(verdict)}" data-level="{_e(level)}" '
        f'data-areas="{_e(_values(_areas(case)))}" data-topics="{_e(_values(_topics(case)))}" '
        f'data-text="{_e(_search_text(case))}">'
        f'<td><a href="#{anchor}"><code>{_e(case.get("id", "?"))}</code></a></td>'
        f"<td>{_e(case.get('family', ''))}</td>"
        f"<td>{_e(case.get('title', ''))}</td>"
        f"<td>{_e(level)}</td>"
        f"<td>{_codes(_as_list(case.get('refs')), '<br>')}</td>"
        f"<td>{_badge(verdict)}</td>"
        f"<td>{_e(case.get('behaviour') or '')}</td>"
        f'<td class="num">{_seconds(case.get("duration_s"))}</td></tr>'
    )


def _case_table(cases: Sequence[Mapping[str, Any]], anchors: Sequence[str]) -> str:
    head = "".join(f"<th>{h}</th>" for h in ("Id", "Family", "Title", "Level", "Refs", "Verdict"))
    head += '<th>Behaviour</th><th class="num">Duration</th>'
    if cases:
        body = "".join(_case_row(c, a) for c, a in zip(cases, anchors, strict=True))
    else:
        body = '<tr><td colspan="8" class="muted">No cases in this run.</td></tr>'
    return (
        '<section id="case-list"><h2>5. Test case results</h2>'
        + _filters(cases)
        + f'<table id="cases"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></section>'
    )


def _failure(failure: Mapping[str, Any]) -> str:
    """Expected vs actual side by side, the mismatches and where in the case file it failed."""
    where = ", ".join(f"{k} {_e(failure[k])}" for k in ("step", "line", "kind") if failure.get(k) is not None)
    mismatches = _as_list(failure.get("mismatches"))
    parts = [
        "<h3>Failure</h3>",
        f'<p class="failure-where">Failed at {where}</p>' if where else "",
        '<div class="sxs">',
        f'<div><h4>Expected</h4><pre class="expected">{_e(failure.get("expected", ""))}</pre></div>',
        f'<div><h4>Actual</h4><pre class="actual">{_e(failure.get("actual", ""))}</pre></div>',
        "</div>",
    ]
    if mismatches:
        parts.append('<ul class="mismatches">' + "".join(f"<li>{_e(m)}</li>" for m in mismatches) + "</ul>")
    if failure.get("requirement"):
        parts.append(f"<p><strong>Requirement:</strong> {_e(failure['requirement'])}</p>")
    return "".join(parts)


def _steps(steps: Sequence[Any]) -> str:
    if not steps:
        return '<h3>Steps</h3><p class="muted">No steps recorded.</p>'
    rows = []
    for step in (_as_map(s) for s in steps):
        outcome = str(step.get("outcome") or "")
        detail = step.get("detail")
        summary = f"<code>{_e(step.get('summary', ''))}</code>"
        if detail:
            summary += f'<br><span class="muted">{_e(detail)}</span>'
        origin = step.get("origin")
        origin_cell = f'<code class="origin">{_e(origin)}</code>' if origin else ""
        rows.append(
            f'<tr class="out-{_slug(outcome)}"><td class="num">{_e(step.get("index"))}</td>'
            f'<td class="num">{_e(step.get("line"))}</td><td>{origin_cell}</td><td>{_e(step.get("kind", ""))}</td>'
            f"<td>{summary}</td><td>{_e(outcome)}</td></tr>"
        )
    head = (
        '<th class="num">#</th><th class="num">Line</th><th title="the fragment step a use: step expanded into">'
        "From fragment</th><th>Kind</th><th>Summary</th><th>Outcome</th>"
    )
    return "<h3>Steps</h3>" + _table("steps", head, rows)


def _behaviours(case: Mapping[str, Any]) -> str:
    """Each behaviour the target showed where a step accepts several, and the profiles under which it conforms."""
    items = []
    for behaviour in (_as_map(b) for b in _as_list(case.get("behaviours"))):
        conforms = behaviour.get("conforms")
        where = "every profile" if conforms is None else (", ".join(map(str, conforms)) or "no profile")
        items.append(
            f"<li>step {_e(behaviour.get('step'))}: <code>{_e(behaviour.get('label'))}</code> "
            f"({_e(behaviour.get('text'))}); conforms under {_e(where)}</li>"
        )
    return f'<ul class="behaviours">{"".join(items)}</ul>' if items else ""


def _by_profile(case: Mapping[str, Any]) -> str:
    """The case's verdict under every profile (what ``report regrade`` would give), from the same facts."""
    verdicts = _as_map(case.get("verdicts"))
    return " ".join(f"{_e(p)} {_badge(str(v))}" for p, v in verdicts.items())


def _trace(trace: Sequence[Any], failed_step: Any) -> str:
    if not trace:
        return '<h3>Trace</h3><p class="muted">No packets captured.</p>'
    rows = []
    for pkt in (_as_map(p) for p in trace):
        direction = DIRECTIONS.get(str(pkt.get("dir")), str(pkt.get("dir", "")))
        step = pkt.get("step")
        hit = ' class="hit"' if failed_step is not None and step == failed_step else ""
        rows.append(
            f'<tr{hit}><td class="num">{_ms(pkt.get("t"))}</td><td>{_e(direction)}</td>'
            f'<td><code>{_e(pkt.get("summary", ""))}</code></td><td class="num">{_e(step)}</td></tr>'
        )
    head = '<th class="num">t (ms)</th><th>Direction</th><th>Segment</th><th class="num">Step</th>'
    return "<h3>Trace</h3>" + _table("trace", head, rows)


_LADDER_LEGEND = (
    "Time flows down; the numbers left of the tester are the step indexes. Upper-tester actions are the notes "
    "on the target's side; grey frames follow the case (clean-up)."
)
_LADDER_FAILED = " Red: the segment that failed the step; dashed green: what the step expected."


def _ladder(case: Mapping[str, Any]) -> str:
    legend = _LADDER_LEGEND + (_LADDER_FAILED if case.get("failure") else "")
    return (
        f'<h3>Ladder diagram</h3><p class="muted">{_e(legend)}</p>'
        f'<div class="ladder-wrap">{ladder_svg(dict(case))}</div>'
    )


def _known(case: Mapping[str, Any]) -> str:
    """A reviewed deviation listed in the target's expectations file: the verdict stands, with this note."""
    known = _as_map(case.get("known_deviation"))
    if not known:
        return ""
    verdict, reason = _e(known.get("verdict", "")), _e(known.get("reason", ""))
    return f"listed in the target's expectations as a known {verdict}: {reason}"


def _case_details(case: Mapping[str, Any], anchor: str) -> str:
    verdict = _verdict(case)
    failure = _as_map(case.get("failure"))
    tags = _as_list(case.get("tags"))
    info = [
        ("Level", _e(_level(case))),
        ("Refs", _codes(_as_list(case.get("refs")))),
        ("Requirement", _e(case.get("requirement", ""))),
        ("Verdict", _badge(verdict)),
        ("Reason", _e(case.get("reason", ""))),
        ("Known deviation", _known(case)),
        ("Behaviour observed", _behaviours(case) or _e(case.get("behaviour_text") or case.get("behaviour") or "")),
        ("Verdict by profile", _by_profile(case)),
        ("RFC areas", _e(", ".join(_areas(case)))),
        ("Tags", _codes(tags) if tags else ""),
        ("Case file", f"<code>{_e(case.get('file', ''))}</code>"),
        ("Node id", f"<code>{_e(case.get('nodeid', ''))}</code>"),
        ("Started", _e(case.get("started", ""))),
        ("Duration", _seconds(case.get("duration_s"))),
        ("Protocol wait", _seconds(case.get("protocol_wait_s"))),
        ("Capture", _pcap(case.get("pcap"))),
    ]
    message = case.get("message")
    return (
        f'<details class="case" id="{anchor}" data-verdict="{_e(verdict)}">'
        f"<summary>{_badge(verdict)} <strong><code>{_e(_label(case))}</code></strong> "
        f"{_e(case.get('title', ''))}</summary>"
        '<div class="body">'
        + _kv_table((k, v) for k, v in info if v)
        + (_failure(failure) if failure else "")
        + _ladder(case)
        + (f'<h3>Message</h3><pre class="message">{_e(message)}</pre>' if message else "")
        + _steps(_as_list(case.get("steps")))
        + _trace(_as_list(case.get("trace")), failure.get("step"))
        + f'<h3>Rerun</h3><pre><code class="rerun">{_e(case.get("rerun", ""))}</code></pre>'
        + "</div></details>"
    )


def _details(cases: Sequence[Mapping[str, Any]], anchors: Sequence[str]) -> Iterator[str]:
    """The details section, a case at a time (the report's largest part by far)."""
    toolbar = (
        '<div class="toolbar" hidden><button type="button" id="expand-all">Expand all</button> '
        '<button type="button" id="collapse-all">Collapse all</button></div>'
    )
    yield f'<section id="case-details"><h2>6. Test case details</h2>{toolbar}'
    for case, anchor in zip(cases, anchors, strict=True):
        yield _case_details(case, anchor)
    yield "</section>"


# --------------------------------------------------------------------------- public API


def _state_event_grid(cases: Sequence[Mapping[str, Any]], anchors: Sequence[str]) -> list[str]:
    """The state x event matrix's cells of this run as a grid (none when the run had no cells)."""
    grid = cell_grid([(c, f"#{a}") for c, a in zip(cases, anchors, strict=True)])
    if not grid:
        return []
    return [
        '<section id="state-event"><h2>State \u00d7 event matrix</h2><p class="muted">The generated cells '
        "(testcases/cells/): the target's answer to each class of segment in each state, against the reference "
        "model. One square per distinct cell, both address families folded in; hover for the verdicts, click for "
        f"the evidence.</p>{grid}</section>"
    ]


def render_html(results: dict) -> str:
    """Render a results.json document (as loaded by `json.load`) into one self-contained HTML page."""
    return "".join(html_chunks(results))


def html_chunks(results: dict) -> Iterator[str]:
    """`render_html` in the order of the page, a piece at a time (`write_html` writes them as they come)."""
    cases = [_as_map(c) for c in _as_list(results.get("cases"))]
    anchors = case_anchors(cases)
    target = _as_map(results.get("target"))
    header = (
        "<header><h1>TCP conformance test report</h1>"
        f'<p class="subtitle">Run <code>{_e(results.get("run_id", "?"))}</code> against '
        f"<strong>{_e(target.get('name', '?'))}</strong>, "
        f"profile <code>{_e(results.get('profile', ''))}</code></p></header>"
    )
    links = {_grade_label(c): a for c, a in zip(cases, anchors, strict=True)}
    grade = results.get("grade")
    sections = [
        *([_grade(grade, links)] if isinstance(grade, Mapping) else []),
        _identification(results),
        _iut(target),
        _environment(_as_map(results.get("environment"))),
        _summary(results, cases, anchors),
        *_state_event_grid(cases, anchors),
        _case_table(cases, anchors),
    ]

    def body() -> Iterator[str]:
        yield f"{header}\n<main>\n" + "\n".join(sections) + "\n"
        yield from _details(cases, anchors)
        yield "\n</main>"

    title = f"TCP conformance test report \u2014 {results.get('run_id', '')}"
    generator = f"tcp-conformance {results.get('suite_version', '')}"
    return page_chunks(title, body(), css=_CSS + GRID_CSS, script=_JS, meta={"generator": generator})


def write_html(results: dict, path: pathlib.Path) -> None:
    """Write the report atomically, so a reader never sees a half-written page; written as it is rendered."""
    write_page(pathlib.Path(path), html_chunks(results))
