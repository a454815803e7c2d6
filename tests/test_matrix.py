"""The cross-target matrix and the report commands: cells, links, escaping, offline page, one-line errors."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from conformance.__main__ import main
from conformance.report.html import render_html
from conformance.report.matrix import cell_class, load_results, render_matrix, report_href

REPO = Path(__file__).resolve().parent.parent
XSS = '<script>alert("x")</script>'
VOID = {"br", "meta", "input"}


def make_case(id_: str, family: str, verdict: str, level: str = "MUST", **extra: Any) -> dict[str, Any]:
    case = {
        "id": id_,
        "family": family,
        "title": f"Title of {id_}",
        "file": "testcases/handshake/x.yaml",
        "level": level,
        "refs": ["rfc9293:3.5"],
        "requirements": [],
        "tags": ["handshake"],
        "verdict": verdict,
        "reason": f"reason of {id_}",
        "behaviour": None,
        "behaviour_text": None,
        "started": "2026-11-25T20:15:01Z",
    }
    case.update(extra)
    return case


def make_doc(target: str, cases: list[dict[str, Any]], profile: str = "rfc9293") -> dict[str, Any]:
    return {
        "schema": "tcp-conformance/results/1",
        "suite_version": "0.1.0",
        "run_id": f"20261125-201500-{target}",
        "started": "2026-11-25T20:15:00Z",
        "finished": "2026-11-25T20:15:09Z",
        "command": "pytest",
        "target": {"name": target, "kind": "local"},
        "profile": profile,
        "summary": {},
        "cases": cases,
    }


DOC_A = make_doc(
    "linux",
    [
        make_case("HS-SIMOPEN-01", "ipv4", "PASS", requirements=["rfc9293:MUST-10"]),
        make_case("HS-SIMOPEN-01", "ipv6", "FAIL", requirements=["rfc9293:MUST-10"]),
        make_case("OPT-WS-01", "ipv4", "FAIL", "SHOULD", behaviour="no-scaling", behaviour_text="no wscale option"),
        make_case("RST-SYNEST-01", "ipv4", "PASS", "INFO", behaviour="challenge-ack"),
        make_case("RST-CLOSED-01", "ipv4", "ERROR"),
        make_case("RST-CLOSED-02", "ipv4", "INCONCLUSIVE"),
        make_case("ONLY-A-01", "ipv4", "NOT-RUN", reason="target lacks ut.shutdown"),
    ],
)
DOC_B = make_doc(
    "freebsd",
    [
        make_case("HS-SIMOPEN-01", "ipv4", "PASS", requirements=["rfc9293:MUST-10"]),
        make_case("HS-SIMOPEN-01", "ipv6", "PASS", requirements=["rfc9293:MUST-10"]),
        make_case("OPT-WS-01", "ipv4", "PASS", "SHOULD"),
        make_case("RST-SYNEST-01", "ipv4", "PASS", "INFO", behaviour="rst"),
        make_case("RST-CLOSED-01", "ipv4", "PASS"),
        make_case("RST-CLOSED-02", "ipv4", "PASS"),
    ],
    profile="rfc5961",
)


# --------------------------------------------------------------------------- a minimal well-formedness check


class Tree(HTMLParser):
    """Elements as (tag, attrs, text) with strict nesting; fails on any mis-nested or unclosed element."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.elements: list[tuple[str, dict[str, str], list[str]]] = []
        self.open: list[list[str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        text: list[str] = []
        self.elements.append((tag, {k: v or "" for k, v in attrs}, text))
        if tag not in VOID:
            self.stack.append(tag)
            self.open.append(text)

    def handle_endtag(self, tag: str) -> None:
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes {self.stack[-1:]}"
        self.stack.pop()
        self.open.pop()

    def handle_data(self, data: str) -> None:
        for text in self.open:
            text.append(data)

    def find(self, tag: str, **attrs: str) -> list[tuple[dict[str, str], str]]:
        return [
            (a, "".join(t))
            for tg, a, t in self.elements
            if tg == tag and all(a.get(k.replace("_", "-")) == v for k, v in attrs.items())
        ]


def parse(page: str) -> Tree:
    tree = Tree()
    tree.feed(page)
    tree.close()
    assert tree.stack == [], "unclosed elements"
    return tree


@pytest.fixture
def runs(tmp_path: Path) -> tuple[Path, Path, Path]:
    """Two runs in their own directories and the matrix in a third: links go ../run-a/index.html#..."""
    a, b = tmp_path / "run-a" / "results.json", tmp_path / "run-b" / "results.json"
    for path, doc in ((a, DOC_A), (b, DOC_B)):
        path.parent.mkdir()
        path.write_text(json.dumps(doc))
    return a, b, tmp_path / "out" / "matrix.html"


def cells(page: str) -> dict[tuple[str, int], tuple[dict[str, str], str]]:
    """(row key, column) -> (td attributes, cell text); the row's first td is the title, not a cell."""
    out = {}
    for row in re.finditer(r'<tr data-row="([^"]+)".*?</tr>', page, re.S):
        tds = parse(f"<table>{row.group(0)}</table>").find("td")
        for column, cell in enumerate(tds[1:], 1):
            out[(row.group(1), column)] = cell
    return out


# --------------------------------------------------------------------------- the page


def test_merge_two_runs_with_a_case_present_in_one_only(runs: tuple[Path, Path, Path]) -> None:
    a, b, out = runs
    assert main(["report", "merge", str(a), str(b), "-o", str(out)]) == 0
    page = out.read_text()
    tree = parse(page)
    c = cells(page)
    assert len({row for row, _ in c}) == 7
    assert c[("ONLY-A-01[ipv4]", 1)][0]["class"] == "cell c-not-run"
    assert c[("ONLY-A-01[ipv4]", 2)] == ({"class": "cell c-absent", "data-class": "absent", "title": "not in this run"},
                                         "\u2014")  # fmt: skip
    classes = {row: (c[(row, 1)][0]["data-class"], c[(row, 2)][0]["data-class"]) for row, _ in c}
    assert classes == {
        "HS-SIMOPEN-01[ipv4]": ("pass", "pass"),
        "HS-SIMOPEN-01[ipv6]": ("fail", "pass"),
        "OPT-WS-01[ipv4]": ("non-strict", "pass"),
        "RST-SYNEST-01[ipv4]": ("info", "info"),
        "RST-CLOSED-01[ipv4]": ("incomplete", "pass"),
        "RST-CLOSED-02[ipv4]": ("incomplete", "pass"),
        "ONLY-A-01[ipv4]": ("not-run", "absent"),
    }
    # column heads: target, profile, date and grade statement, in the order given
    heads = tree.find("th", scope="col")
    assert [h[1].split("profile")[0] for h in heads] == ["linux", "freebsd"]
    assert "rfc5961" in heads[1][1] and "2026-11-25 20:15 UTC" in heads[1][1]
    assert "not conformant: rfc9293:MUST-10" in heads[0][1]
    assert "freebsd" in heads[1][1] and ": incomplete: conformant on 1 of" in heads[1][1]  # a fraction only


def test_rows_are_grouped_by_level_then_area(runs: tuple[Path, Path, Path]) -> None:
    a, b, out = runs
    page = render_matrix([(a, DOC_A), (b, DOC_B)], out)
    groups = [t for _, t in parse(page).find("th", **{"class": "group"})]
    assert groups == ["MUST \u2014 handshake", "SHOULD \u2014 handshake", "INFO \u2014 handshake"]
    rows = re.findall(r'<tr data-row="([^"]+)"', page)
    assert rows.index("HS-SIMOPEN-01[ipv6]") < rows.index("OPT-WS-01[ipv4]") < rows.index("RST-SYNEST-01[ipv4]")


def test_cells_link_to_the_case_in_the_runs_own_report(runs: tuple[Path, Path, Path]) -> None:
    a, b, out = runs
    page = render_matrix([(a, DOC_A), (b, DOC_B)], out)
    links = [attrs["href"] for attrs, _ in parse(page).find("a") if "#" in attrs.get("href", "")]
    assert "../run-a/index.html#case-hs-simopen-01-ipv6" in links
    assert "../run-b/index.html#case-rst-closed-02-ipv4" in links
    # every anchor the matrix links to exists in that run's report
    for href in links:
        report, anchor = href.split("#")
        doc = DOC_A if report.startswith("../run-a/") else DOC_B
        assert f'id="{anchor}"' in render_html(doc)


def test_hover_shows_behaviour_and_reason(runs: tuple[Path, Path, Path]) -> None:
    a, b, out = runs
    page = render_matrix([(a, DOC_A), (b, DOC_B)], out)
    titles = {attrs["href"]: attrs["title"] for attrs, _ in parse(page).find("a") if "title" in attrs}
    assert titles["../run-a/index.html#case-opt-ws-01-ipv4"] == (
        "FAIL (SHOULD)\nbehaviour: no-scaling (no wscale option)\nreason: reason of OPT-WS-01"
    )
    assert "behaviour: rst" in titles["../run-b/index.html#case-rst-synest-01-ipv4"]


def test_summary_counts_per_run(runs: tuple[Path, Path, Path]) -> None:
    a, b, out = runs
    page = render_matrix([(a, DOC_A), (b, DOC_B)], out)
    row = re.search(r'<tr data-run="1">.*?</tr>', page, re.S)
    assert row
    nums = [t for _, t in parse(f"<table>{row.group(0)}</table>").find("td", **{"class": "num"})]
    # #, then pass non-strict fail info incomplete, then PASS FAIL INCONCLUSIVE ERROR NOT-RUN, then waived
    assert nums == ["1", "1", "1", "1", "1", "3", "2", "2", "1", "1", "1", "0"]


def test_report_href_is_relative_to_the_matrix(tmp_path: Path) -> None:
    results = tmp_path / "reports" / "run 1" / "results.json"
    assert report_href(results, tmp_path / "matrix.html", "case-x-ipv4") == "reports/run%201/index.html#case-x-ipv4"
    assert report_href(results, tmp_path / "reports" / "run 1" / "m.html") == "index.html"


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        (None, "absent"),
        (make_case("X", "ipv4", "PASS"), "pass"),
        (make_case("X", "ipv4", "FAIL"), "fail"),
        (make_case("X", "ipv4", "FAIL", "MAY"), "non-strict"),
        (make_case("X", "ipv4", "FAIL", "INFO"), "info"),
        (make_case("X", "ipv4", "ERROR", "INFO"), "incomplete"),
        (make_case("X", "ipv4", "NOT-RUN", "INFO"), "not-run"),
    ],
)
def test_cell_class(case: dict[str, Any] | None, expected: str) -> None:
    assert cell_class(case) == expected


def test_everything_is_escaped_and_the_page_is_offline(tmp_path: Path) -> None:
    evil = make_doc(
        XSS,
        [
            make_case(
                XSS, XSS, "FAIL", title=XSS, reason=XSS, behaviour=XSS, behaviour_text=XSS, file=f"testcases/{XSS}/x"
            )
        ],
        profile=XSS,
    )
    evil["run_id"] = evil["started"] = XSS
    page = render_matrix([(tmp_path / "r" / "results.json", evil)], tmp_path / "matrix.html")
    tree = parse(page)
    assert "<script>alert" not in page
    assert len(tree.find("script")) == 1
    assert XSS in "".join(t for _, t in tree.find("body"))  # shown as text
    csp = tree.find("meta", http_equiv="Content-Security-Policy")[0][0]["content"]
    assert "default-src 'none'" in csp and "connect-src 'none'" in csp and "img-src 'none'" in csp
    for tag in ("style", "script"):
        source = re.search(rf"<{tag}>(.*?)</{tag}>", page, re.S)
        assert source
        digest = base64.b64encode(hashlib.sha256(source.group(1).encode()).digest()).decode()
        assert f"'sha256-{digest}'" in csp
    assert not re.search(r'(src|href)="(https?:)?//', page)


def test_an_empty_merge_of_runs_without_cases(tmp_path: Path) -> None:
    page = render_matrix([(tmp_path / "results.json", make_doc("t", []))], tmp_path / "m.html")
    assert "No cases in these runs." in page
    assert "nothing tested" in page


# --------------------------------------------------------------------------- report html


def test_report_html_rerenders_beside_the_results(runs: tuple[Path, Path, Path]) -> None:
    a, _, _ = runs
    before = a.read_text()
    assert main(["report", "html", str(a)]) == 0
    page = (a.parent / "index.html").read_text()
    assert 'id="case-hs-simopen-01-ipv6"' in page
    assert a.read_text() == before  # the grade is computed for the page, results.json is left alone


def test_report_html_to_a_chosen_file(runs: tuple[Path, Path, Path], tmp_path: Path) -> None:
    a, _, _ = runs
    assert main(["report", "html", str(a), "-o", str(tmp_path / "x" / "page.html")]) == 0
    assert (tmp_path / "x" / "page.html").read_text().startswith("<!DOCTYPE html>")


# --------------------------------------------------------------------------- errors: one line, exit 2


def bad_inputs(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    files = {
        "invalid.json": ("{not json", "not a results.json (invalid JSON at line 1)"),
        "list.json": ("[1, 2]", "not a results.json (no 'tcp-conformance/results/N' schema)"),
        "other.json": ('{"schema": "something/else"}', "not a results.json"),
        "v9.json": (
            '{"schema": "tcp-conformance/results/9", "cases": []}',
            "unsupported results schema 'tcp-conformance/results/9' (this suite reads 'tcp-conformance/results/1', "
            "'tcp-conformance/results/2')",
        ),
        "cases.json": ('{"schema": "tcp-conformance/results/1", "cases": 3}', "'cases' is not a list of objects"),
        "binary.json": (b"\xff\xfe\x00", "cannot read"),
    }
    out = {}
    for name, (content, message) in files.items():
        path = tmp_path / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
        out[name] = (path, message)
    out["missing.json"] = (tmp_path / "missing.json", "no such file")
    return out


@pytest.mark.parametrize("name", ["invalid.json", "list.json", "other.json", "v9.json", "cases.json", "binary.json",
                                  "missing.json"])  # fmt: skip
@pytest.mark.parametrize("command", ["merge", "html"])
def test_bad_results_are_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, command: str
) -> None:
    path, message = bad_inputs(tmp_path)[name]
    assert main(["report", command, str(path), "-o", str(tmp_path / "out.html")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith(f"error: {path}: ") and message in err
    assert not (tmp_path / "out.html").exists()


def test_a_bad_file_among_good_ones_writes_nothing(runs: tuple[Path, Path, Path], tmp_path: Path) -> None:
    a, _, out = runs
    assert main(["report", "merge", str(a), str(tmp_path / "nope.json"), "-o", str(out)]) == 2
    assert not out.exists()


def test_an_unwritable_output_is_one_line(runs: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    a, _, _ = runs
    blocker = a.parent / "file"
    blocker.write_text("")
    assert main(["report", "merge", str(a), "-o", str(blocker / "matrix.html")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot write" in err


def test_the_real_command_line(runs: tuple[Path, Path, Path], tmp_path: Path) -> None:
    a, b, out = runs

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "conformance", *args], cwd=REPO, capture_output=True, text=True, timeout=60
        )

    ok = run("report", "merge", str(a), str(b), "-o", str(out))
    assert ok.returncode == 0 and out.exists(), ok.stderr
    for args in (("report", "merge", str(tmp_path / "absent.json")), ("report", "html", str(tmp_path))):
        bad = run(*args)
        assert bad.returncode == 2
        assert bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr, bad.stderr
    usage = run("report")
    assert usage.returncode == 2 and "Traceback" not in usage.stderr


def test_load_results_accepts_a_recorded_run(runs: tuple[Path, Path, Path]) -> None:
    assert load_results(runs[0])["target"]["name"] == "linux"
