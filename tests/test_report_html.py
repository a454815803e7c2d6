"""The HTML report: well-formed, self-contained (no network), escaped, and faithful to results.json."""

from __future__ import annotations

import base64
import copy
import hashlib
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import pytest

from conformance.report.html import render_html, write_html

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
# Elements whose content is raw text, not markup or data.
RAW = {"script", "style"}
XSS = "<script>alert(1)</script>"


@dataclass
class Node:
    tag: str
    attrs: dict[str, str | None]
    children: list[Node | str] = field(default_factory=list)

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def iter(self):
        yield self
        for c in self.children:
            if isinstance(c, Node):
                yield from c.iter()

    def find_all(self, tag: str | None = None, **attrs: str) -> list[Node]:
        return [
            n
            for n in self.iter()
            if (tag is None or n.tag == tag) and all(n.attrs.get(k.replace("_", "-")) == v for k, v in attrs.items())
        ]

    def find(self, tag: str | None = None, **attrs: str) -> Node:
        found = self.find_all(tag, **attrs)
        assert len(found) == 1, (tag, attrs, len(found))
        return found[0]


class TreeBuilder(HTMLParser):
    """Builds a tree and fails on any mis-nested or unclosed element, so the page must be well-formed."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {})
        self.stack = [self.root]
        self.decl: list[str] = []

    def handle_decl(self, decl: str) -> None:
        self.decl.append(decl)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = [k for k, _ in attrs]
        assert len(names) == len(set(names)), f"duplicate attribute in <{tag}>: {names}"
        node = Node(tag, dict(attrs))
        self.stack[-1].children.append(node)
        if tag not in VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack[-1].children.append(Node(tag, dict(attrs)))

    def handle_endtag(self, tag: str) -> None:
        assert tag not in VOID, f"end tag for void element {tag}"
        assert self.stack[-1].tag == tag, f"</{tag}> closes <{self.stack[-1].tag}>"
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.stack[-1].children.append(data)


def parse(page: str) -> Node:
    builder = TreeBuilder()
    builder.feed(page)
    builder.close()
    assert [n.tag for n in builder.stack] == ["#document"], "unclosed elements"
    assert builder.decl == ["DOCTYPE html"]
    return builder.root


def data_text(root: Node) -> str:
    """All text a reader sees: text nodes outside <script>/<style>, whitespace collapsed."""
    parts: list[str] = []

    def walk(node: Node) -> None:
        for c in node.children:
            if isinstance(c, str):
                parts.append(c)
            elif c.tag not in RAW:
                walk(c)

    walk(root)
    return re.sub(r"\s+", " ", "".join(parts))


# --------------------------------------------------------------------------- sample data


def make_case(id_: str, family: str, verdict: str, level: str = "MUST", **extra) -> dict:
    case = {
        "id": id_,
        "family": family,
        "nodeid": f"testcases/handshake/x.yaml::{id_}[{family}]",
        "title": f"Title of {id_}",
        "file": "testcases/handshake/x.yaml",
        "level": level,
        "refs": ["rfc9293:3.5", f"rfc9293:{id_}-ref"],
        "requirement": f"Requirement text of {id_}",
        "tags": ["handshake"],
        "verdict": verdict,
        "reason": f"reason of {id_}",
        "behaviour": None,
        "started": "2026-11-25T20:15:01Z",
        "duration_s": 0.42,
        "protocol_wait_s": 0.3,
        "failure": None,
        "message": "",
        "steps": [],
        "trace": [],
        "pcap": f"cases/{id_}-{family}.pcap",
        "rerun": f"pytest --target=local 'testcases/handshake/x.yaml::{id_}[{family}]'",
    }
    case.update(extra)
    return case


FAILURE = {
    "step": 2,
    "line": 14,
    "kind": "expect",
    "expected": "S. seq 123 ack 457 win 65535",
    "actual": "R. seq 0 ack 457 win 0",
    "mismatches": ["flags: expected SA, got RA", "win: expected 65535, got 0"],
    "requirement": "RFC 9293 MUST-10 (MUST): simultaneous open",
}


@pytest.fixture
def results() -> dict:
    steps = [
        {"index": 1, "line": 9, "kind": "ut", "summary": "ut connect", "outcome": "ok", "detail": ""},
        {
            "index": 2,
            "line": 14,
            "kind": "expect",
            "summary": "expect S.",
            "outcome": "fail",
            "detail": "got R.",
        },
        {"index": 3, "line": 15, "kind": "send", "summary": "send A", "outcome": "skipped", "detail": ""},
    ]
    trace = [
        {"t": 0.000123, "dir": "out", "summary": "198.18.0.2:40000 > 198.18.0.1:5000 S seq 1", "step": 1},
        {
            "t": 0.0015,
            "dir": "in",
            "summary": "198.18.0.1:5000 > 198.18.0.2:40000 R. seq 0 ack 457",
            "step": 2,
        },
    ]
    cases = [
        make_case("SIMOPEN-01", "ipv4", "PASS", behaviour="challenge-ack"),
        make_case("SIMOPEN-01", "ipv6", "PASS", trace=[{"t": 0.25, "dir": "out", "summary": "fd00::2 > fd00::1 S"}]),
        make_case(
            "RST-03",
            "ipv4",
            "FAIL",
            failure=FAILURE,
            steps=steps,
            trace=trace,
            message="x.yaml:14: error handling packet\nscript packet: S. 123:123(0) ack 457",
        ),
        make_case("TIMEWAIT-02", "ipv6", "NOT-RUN", level="SHOULD", reason="target lacks capability"),
        make_case("OPTS-09", "ipv4", "ERROR", level="MAY", reason="engine crashed: KeyError"),
        make_case("WIN-01", "ipv4", "INCONCLUSIVE", level="INFO"),
    ]
    return {
        "schema": "tcp-conformance/results/1",
        "suite_version": "0.1.0",
        "run_id": "20261125-201500-local",
        "started": "2026-11-25T20:15:00Z",
        "finished": "2026-11-25T20:15:09Z",
        "command": "pytest --target=local",
        "target": {
            "name": "local",
            "kind": "local",
            "description": "Linux kernel in a network namespace",
            "sysctls": {"net.ipv4.tcp_syncookies": "0", "net.ipv4.tcp_timestamps": "1"},
            "nft": "table inet t { chain c { type filter hook output priority 0; } }",
            "capabilities": ["ipv6", "timestamps"],
            "timers": {"time_wait": 60.0, "syn_retransmissions": 10},
        },
        "profile": "rfc9293",
        "environment": {"python": "3.11.7", "platform": "Linux-6.18-x86_64", "hostname": "builder-7"},
        "summary": {"PASS": 2, "FAIL": 1, "INCONCLUSIVE": 1, "ERROR": 1, "NOT-RUN": 1},
        "cases": cases,
    }


# --------------------------------------------------------------------------- tests


def test_page_is_well_formed_and_self_contained(results: dict) -> None:
    page = render_html(results)
    root = parse(page)
    # no URL anywhere: the sample data holds none, so any would come from the template.
    assert "http://" not in page and "https://" not in page
    assert not root.find_all("link") and not root.find_all("img") and not root.find_all("iframe")
    for tag in ("script", "style"):
        for node in root.find_all(tag):
            assert "src" not in node.attrs and "href" not in node.attrs
            assert "@import" not in node.text() and "url(" not in node.text()
    assert len(root.find_all("script")) == 1 and len(root.find_all("style")) == 1
    for node in root.iter():
        for name, value in node.attrs.items():
            if name in ("href", "src", "action", "srcset", "data"):
                assert value is not None and "//" not in value and ":" not in value, (node.tag, name, value)


def test_csp_allows_exactly_the_inline_script_and_style(results: dict) -> None:
    root = parse(render_html(results))
    csp = root.find("meta", http_equiv="Content-Security-Policy").attrs["content"]
    assert "default-src 'none'" in csp and "unsafe-inline" not in csp
    for tag, directive in (("script", "script-src"), ("style", "style-src")):
        body = root.find(tag).text().encode()
        digest = base64.b64encode(hashlib.sha256(body).digest()).decode()
        assert f"{directive} 'sha256-{digest}'" in csp, f"CSP hash of <{tag}> is stale, the browser would block it"


def test_header_identifies_run_target_and_environment(results: dict) -> None:
    text = data_text(parse(render_html(results)))
    for needle in (
        "0.1.0",
        "20261125-201500-local",
        "2026-11-25T20:15:00Z",
        "2026-11-25T20:15:09Z",
        "(9.0 s)",
        "pytest --target=local",
        "Linux kernel in a network namespace",
        "net.ipv4.tcp_syncookies",
        "type filter hook output",
        "timestamps",
        "rfc9293",
        "builder-7",
        "Linux-6.18-x86_64",
        "time_wait",
        "60 s",
        "syn_retransmissions",
    ):
        assert needle in text, needle


def test_every_case_appears_in_table_and_details(results: dict) -> None:
    root = parse(render_html(results))
    rows = root.find("table", id="cases").find("tbody").find_all("tr")
    assert len(rows) == len(results["cases"])
    details = root.find_all("details")
    assert len(details) == len(results["cases"])
    ids = {d.attrs["id"] for d in details}
    assert len(ids) == len(details), "anchors must be unique (same id runs for ipv4 and ipv6)"
    for row, case in zip(rows, results["cases"], strict=True):
        assert case["id"] in row.text() and case["family"] in row.text() and case["title"] in row.text()
        assert row.attrs["data-verdict"] == case["verdict"] and row.attrs["data-level"] == case["level"]
        assert row.attrs["data-case"] in ids
        assert row.find("a").attrs["href"] == "#" + row.attrs["data-case"]
        assert row.find("span", **{"class": f"badge v-{case['verdict'].lower()}"}).text() == case["verdict"]
    assert "challenge-ack" in rows[0].text() and "0.420" in rows[0].text()


def test_summary_counts(results: dict) -> None:
    root = parse(render_html(results))
    counts = {n.attrs["data-count"]: n.text() for n in _counts(root)}
    assert counts == {
        "PASS": "2",
        "FAIL": "1",
        "INCONCLUSIVE": "1",
        "ERROR": "1",
        "NOT-RUN": "1",
        "TOTAL": "6",
    }
    text = data_text(root.find("section", id="summary"))
    assert "MUST 2/3 passed (1 FAIL)" in text
    assert "SHOULD 0/1 passed (1 NOT-RUN)" in text
    assert "MAY 0/1 passed (1 ERROR)" in text
    assert "INFO 0/1 passed (1 INCONCLUSIVE)" in text
    failed = [li.attrs["data-ref"] for li in root.find("ul", **{"class": "failed-refs"}).find_all("li")]
    assert failed == ["rfc9293:3.5", "rfc9293:RST-03-ref"]
    assert "differs from the cases" not in text


def _counts(root: Node) -> list[Node]:
    return [n for n in root.iter() if "data-count" in n.attrs]


def test_stored_summary_mismatch_is_flagged(results: dict) -> None:
    results["summary"]["PASS"] = 5
    text = data_text(parse(render_html(results)))
    assert "differs from the cases" in text


def test_failure_block_shows_expected_actual_mismatches_and_step(results: dict) -> None:
    root = parse(render_html(results))
    det = root.find("details", id="case-rst-03-ipv4")
    assert det.find("pre", **{"class": "expected"}).text() == FAILURE["expected"]
    assert det.find("pre", **{"class": "actual"}).text() == FAILURE["actual"]
    assert [li.text() for li in det.find("ul", **{"class": "mismatches"}).find_all("li")] == FAILURE["mismatches"]
    text = data_text(det)
    assert "Failed at step 2, line 14, kind expect" in text
    assert FAILURE["requirement"] in text and "Requirement text of RST-03" in text
    assert "script packet: S. 123:123(0) ack 457" in det.find("pre", **{"class": "message"}).text()
    steps = det.find("table", **{"class": "steps"}).find("tbody").find_all("tr")
    assert [[td.text() for td in tr.find_all("td")] for tr in steps][1] == [
        "2",
        "14",
        "",  # written in the case itself, not expanded from a fragment
        "expect",
        "expect S.got R.",
        "fail",
    ]
    assert steps[1].attrs["class"] == "out-fail"


def test_trace_times_in_ms_and_directions(results: dict) -> None:
    root = parse(render_html(results))
    rows = root.find("details", id="case-rst-03-ipv4").find("table", **{"class": "trace"}).find_all("tr")[1:]
    cells = [[td.text() for td in tr.find_all("td")] for tr in rows]
    assert cells[0][:2] == ["0.123", "tester \u2192 target"] and cells[0][3] == "1"
    assert cells[1][:2] == ["1.500", "target \u2192 tester"] and cells[1][3] == "2"
    assert rows[1].attrs.get("class") == "hit"  # packet of the failed step
    v6 = root.find("details", id="case-simopen-01-ipv6").find("table", **{"class": "trace"})
    assert "250.000" in v6.text() and "fd00::2 > fd00::1 S" in v6.text()


def test_pcap_link_and_rerun_command(results: dict) -> None:
    root = parse(render_html(results))
    det = root.find("details", id="case-simopen-01-ipv6")
    hrefs = [a.attrs["href"] for a in det.find_all("a")]
    assert hrefs == ["cases/SIMOPEN-01-ipv6.pcap"]
    rerun = det.find("code", **{"class": "rerun"}).text()
    assert rerun == "pytest --target=local 'testcases/handshake/x.yaml::SIMOPEN-01[ipv6]'"


def test_untrusted_data_is_escaped(results: dict) -> None:
    evil = results["cases"][0]
    evil["title"] = XSS
    evil["id"] = 'X" onmouseover="alert(2)'
    evil["refs"] = ["</code></td></tr></table><img src=x onerror=alert(3)>"]
    evil["pcap"] = "javascript:alert(4)"
    results["cases"][1]["pcap"] = "http://evil.example/x.pcap"
    results["target"]["description"] = "see https://example.org/doc & <b>bold</b>"
    page = render_html(results)
    root = parse(page)  # still well-formed: nothing broke out of its element
    assert XSS not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert len(root.find_all("script")) == 1 and "alert" not in root.find("script").text()
    assert not root.find_all("img") and not root.find_all("b")
    for node in root.iter():
        assert not any(name.startswith("on") for name in node.attrs), node
        for name in ("href", "src"):
            value = node.attrs.get(name) or ""
            assert not re.match(r"\s*(javascript|https?):", value, re.I), value
    text = data_text(root)
    assert XSS in text and "<img src=x onerror=alert(3)>" in text and 'X" onmouseover="alert(2)' in text
    assert "javascript:alert(4)" in text and "http://evil.example/x.pcap" in text
    assert "see https://example.org/doc & <b>bold</b>" in text


def test_empty_case_list(results: dict) -> None:
    results["cases"] = []
    results["summary"] = {v: 0 for v in results["summary"]}
    root = parse(render_html(results))
    assert not root.find_all("details")
    assert "No cases in this run." in root.find("table", id="cases").text()
    assert {n.attrs["data-count"]: n.text() for n in _counts(root)}["TOTAL"] == "0"
    assert "None." in data_text(root.find("section", id="summary"))


def test_minimal_and_sparse_results_render() -> None:
    """A crashed run may leave only some keys; the report must still render, not raise."""
    root = parse(render_html({"cases": [{"id": "A-1"}, {"id": "A-1", "verdict": "weird", "refs": "r1"}]}))
    assert len(root.find_all("details")) == 2
    assert "WEIRD" in data_text(root)


def test_input_is_not_mutated(results: dict) -> None:
    before = copy.deepcopy(results)
    render_html(results)
    assert results == before


def test_write_html(results: dict, tmp_path: Path) -> None:
    out = tmp_path / "run" / "report.html"
    write_html(results, out)
    assert out.read_text(encoding="utf-8") == render_html(results)
    assert [p.name for p in out.parent.iterdir()] == ["report.html"]


# --------------------------------------------------------------------------- v2: grade, areas, ladder


def _grade(conformant: bool | None = False, complete: bool | None = True) -> dict:
    def req(rid: str, level: str, verdict: str, category: str, *cases: str) -> dict:
        return {"id": rid, "level": level, "title": f"title {rid}", "cases": list(cases), "verdict": verdict,
                "category": category}  # fmt: skip

    return {
        "profile": "rfc9293",
        "statement": "RFC 9293 connection management (profile rfc9293): 1/2 MUST, 0/1 SHOULD, 0/1 MAY; "
        "not conformant: RST-03",
        "conformant": conformant,
        "complete": complete,
        "levels": {
            "MUST": {"pass": 1, "fail": 1, "other": 0, "total": 2},
            "SHOULD": {"pass": 0, "fail": 0, "other": 1, "total": 1},
            "MAY": {"pass": 0, "fail": 0, "other": 1, "total": 1},
            "INFO": {"pass": 0, "fail": 0, "other": 0, "total": 0},
        },
        "categories": {"pass": 2, "non-strict": 0, "fail": 1, "info": 1, "incomplete": 2},
        "requirements": [
            req("rfc9293:MUST-10", "MUST", "PASS", "pass", "SIMOPEN-01[ipv4]", "SIMOPEN-01[ipv6]"),
            req("RST-03", "MUST", "FAIL", "fail", "RST-03[ipv4]"),
            req("TIMEWAIT-02", "SHOULD", "NOT-RUN", "incomplete", "TIMEWAIT-02[ipv6]"),
            req("OPTS-09", "MAY", "ERROR", "incomplete", "OPTS-09[ipv4]", "GHOST-99[ipv4]"),
            req("WIN-01", "INFO", "INCONCLUSIVE", "info", "WIN-01[ipv4]"),
        ],
    }


@pytest.fixture
def graded(results: dict) -> dict:
    results["grade"] = _grade()
    results["cases"][2]["refs"] = ["rfc793:page71", "rfc5961:4.2", "RFC 9293 section 3.10.7.4"]
    results["cases"][2]["tags"] = ["reset", "rfc5961"]
    results["cases"][4]["refs"] = []
    results["cases"][4]["tags"] = []
    return results


def test_no_grade_no_grade_block(results: dict) -> None:
    root = parse(render_html(results))
    assert not root.find_all("section", id="grade") and not root.find_all("table", id="matrix")


def test_grade_block_comes_first_with_the_statement(graded: dict) -> None:
    root = parse(render_html(graded))
    sections = [s.attrs.get("id") for s in root.find("main").children if isinstance(s, Node)]
    assert sections[0] == "grade"
    block = root.find("section", id="grade")
    statement = block.find("div", **{"data-conformant": "False"})
    assert "st-not-conformant" in statement.attrs["class"]
    assert "NOT CONFORMANT" in statement.text() and graded["grade"]["statement"] in statement.text()


@pytest.mark.parametrize(
    ("conformant", "complete", "cls", "word"),
    [
        (True, True, "st-conformant", "CONFORMANT"),
        (False, True, "st-not-conformant", "NOT CONFORMANT"),
        (False, False, "st-not-conformant", "NOT CONFORMANT"),
        (True, False, "st-incomplete", "INCOMPLETE"),
        (None, None, "st-incomplete", "INCOMPLETE"),
    ],
)
def test_statement_colour(results: dict, conformant: bool | None, complete: bool | None, cls: str, word: str) -> None:
    results["grade"] = _grade(conformant, complete)
    block = parse(render_html(results)).find("section", id="grade")
    statement = next(n for n in block.iter() if "statement" in (n.attrs.get("class") or "").split())
    assert statement.attrs["class"] == f"statement {cls}"
    assert statement.find("span", **{"class": "word"}).text() == word


def test_grade_categories_in_autobahn_order(graded: dict) -> None:
    block = parse(render_html(graded)).find("section", id="grade")
    counts = [
        (n.attrs["data-category"], n.text()) for n in block.iter() if "data-category" in n.attrs and n.tag == "span"
    ]
    assert counts == [("pass", "2"), ("non-strict", "0"), ("fail", "1"), ("info", "1"), ("incomplete", "2")]
    levels = block.find("table", **{"class": "grade-levels"}).find("tbody").find_all("tr")
    assert [[td.text() for td in tr.find_all("td")] for tr in levels] == [
        ["MUST", "1", "1", "0", "2"],
        ["SHOULD", "0", "0", "1", "1"],
        ["MAY", "0", "0", "1", "1"],
    ], "INFO has no requirement: left out"


def test_requirement_matrix_links_cases_to_their_details(graded: dict) -> None:
    root = parse(render_html(graded))
    anchors = {d.attrs["id"] for d in root.find_all("details")}
    rows = root.find("table", id="matrix").find("tbody").find_all("tr")
    assert [r.attrs["data-requirement"] for r in rows] == [r["id"] for r in graded["grade"]["requirements"]]
    first = [td.text() for td in rows[0].find_all("td")]
    assert first[:5] == ["rfc9293:MUST-10", "MUST", "title rfc9293:MUST-10", "Pass", "PASS"]
    assert [a.attrs["href"] for a in rows[0].find_all("a")] == ["#case-simopen-01-ipv4", "#case-simopen-01-ipv6"]
    assert rows[1].find("span", **{"class": "badge c-fail"}).text() == "Fail"
    assert rows[1].find("span", **{"class": "badge v-fail"}).text() == "FAIL"
    for row in rows:
        assert all(a.attrs["href"][1:] in anchors for a in row.find_all("a"))
    assert "GHOST-99[ipv4]" in rows[3].text() and len(rows[3].find_all("a")) == 1, "unknown case: text, no link"


def test_hostile_grade_is_escaped(graded: dict) -> None:
    graded["grade"]["statement"] = XSS
    graded["grade"]["requirements"][0].update(id=XSS, title="<img src=x onerror=alert(1)>", cases=[XSS])
    graded["grade"]["categories"] = {XSS: 1}
    page = render_html(graded)
    root = parse(page)
    assert XSS not in page and not root.find_all("img") and len(root.find_all("script")) == 1
    assert XSS in data_text(root.find("section", id="grade"))


def test_sparse_grade_renders(results: dict) -> None:
    results["grade"] = {"statement": "x", "requirements": "oops", "levels": None, "categories": []}
    block = parse(render_html(results)).find("section", id="grade")
    assert "No requirement graded." in data_text(block)


def test_area_filter_from_refs_and_tags(graded: dict) -> None:
    root = parse(render_html(graded))
    bar = root.find("div", id="filters")
    areas = bar.find("fieldset", **{"data-group": "area"})
    boxes = [(i.attrs["value"], lbl.text().strip()) for lbl in areas.find_all("label") for i in lbl.find_all("input")]
    assert boxes == [("rfc-793", "RFC 793"), ("rfc-5961", "RFC 5961"), ("rfc-9293", "RFC 9293"), ("-", "(none)")]
    assert all(i.attrs["data-filter"] == "area" and "checked" in i.attrs for i in areas.find_all("input"))
    topics = bar.find("fieldset", **{"data-group": "topic"})
    assert [i.attrs["value"] for i in topics.find_all("input")] == ["handshake", "reset", "-"]
    rows = {r.attrs["data-case"]: r for r in root.find("table", id="cases").find("tbody").find_all("tr")}
    assert rows["case-rst-03-ipv4"].attrs["data-areas"] == "rfc-793 rfc-5961 rfc-9293"
    assert rows["case-rst-03-ipv4"].attrs["data-topics"] == "reset"
    assert rows["case-simopen-01-ipv4"].attrs["data-areas"] == "rfc-9293"
    assert (
        rows["case-opts-09-ipv4"].attrs["data-areas"] == "-" and rows["case-opts-09-ipv4"].attrs["data-topics"] == "-"
    )
    assert "rfc5961" in rows["case-rst-03-ipv4"].attrs["data-text"], "tags are searchable"
    script = root.find("script").text()
    assert 'area: ["areas", true]' in script and 'topic: ["topics", true]' in script


def test_ladder_embedded_in_each_case(graded: dict) -> None:
    root = parse(render_html(graded))
    for det in root.find_all("details"):
        svg = det.find("svg")
        assert "ladder" in svg.attrs["class"] and "xmlns" not in svg.attrs
    fail = root.find("details", id="case-rst-03-ipv4").find("svg")
    arrows = [g for g in fail.find_all("g") if "arrow" in (g.attrs.get("class") or "").split()]
    assert [g.attrs["data-dir"] for g in arrows] == ["out", "in"]
    actual = [g for g in fail.find_all("g") if "actual" in g.attrs["class"].split()]
    assert len(actual) == 1 and actual[0].attrs["data-step"] == "2"
    ghost = [g for g in fail.find_all("g") if "ghost" in (g.attrs.get("class") or "").split()]
    assert len(ghost) == 1 and "expected: S. seq 123 ack 457 win 65535" in ghost[0].text()
    # the decoded segments stay in the trace table beside the diagram
    assert root.find("details", id="case-rst-03-ipv4").find("table", **{"class": "trace"})


def test_ladder_needs_nothing_the_csp_forbids(graded: dict) -> None:
    """No style attribute, <style>, id, link or event handler inside the diagrams: the CSP would block them."""
    root = parse(render_html(graded))
    assert len(root.find_all("style")) == 1
    for svg in root.find_all("svg"):
        for node in svg.iter():
            assert node.tag not in ("style", "script", "a", "image", "foreignobject", "use")
            assert not {"style", "id", "href", "xlink:href"} & set(node.attrs), node.attrs
            assert not any(name.startswith("on") for name in node.attrs)
    test_csp_allows_exactly_the_inline_script_and_style(graded)
    test_page_is_well_formed_and_self_contained(graded)


def test_a_step_expanded_from_a_fragment_names_it_and_the_profiles_of_each_behaviour_are_shown() -> None:
    case = {
        "id": "FRAG-01", "family": "ipv4", "title": "t", "level": "MUST", "verdict": "PASS", "reason": "ok",
        "steps": [{"index": 1, "line": 12, "kind": "ut", "summary": "ut listen", "outcome": "ok", "detail": "ok",
                   "origin": "passive-open[0]"}],
        "behaviours": [{"step": 6, "label": "challenge-ack", "text": "challenge ACK",
                        "conforms": ["rfc9293", "rfc5961"]}],
        "verdicts": {"rfc9293": "PASS", "rfc793": "FAIL"},
    }  # fmt: skip
    html = render_html({"schema": "tcp-conformance/results/2", "profile": "rfc9293", "cases": [case]})
    assert '<code class="origin">passive-open[0]</code>' in html
    assert "challenge-ack</code> (challenge ACK); conforms under rfc9293, rfc5961" in html
    assert "rfc793 " in html and "Verdict by profile" in html


def test_waived_known_deviations_are_a_tier_of_their_own(results: dict) -> None:
    doc = copy.deepcopy(results)
    case = doc["cases"][0]
    case.update(verdict="FAIL", waiver="waived", known_deviation={"verdict": "FAIL", "reason": "reviewed: off by one"})
    label = f"{case['id']}[{case['family']}]"
    doc["grade"] = {"statement": "s", "conformant": False, "complete": True,
                    "waived": [{"case": label, "verdict": "FAIL", "reason": "reviewed: off by one"}]}  # fmt: skip
    root = parse(render_html(doc))
    assert root.find("span", data_count="WAIVED").text() == "1"
    waived = root.find("table", **{"class": "grade-waived"})
    assert "reviewed: off by one" in waived.text() and label in waived.text()
    assert root.find("h3", id="waived").text() == "Waived: 1 known deviations"
