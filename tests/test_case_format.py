"""The case format: every shipped case loads; malformed cases fail with one line naming file:line:col and field."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conformance.model.case import SendSpec, UtSpec, WaitSpec
from conformance.model.loader import CaseFormatError, load_case, parse_case

ROOT = Path(__file__).resolve().parent.parent
CASE_FILES = sorted((ROOT / "testcases").rglob("*.yaml"))
ERROR_LINE = re.compile(r"^(?P<source>[^:\s]+):(?P<line>\d+):(?P<col>\d+): (?P<path>\S+): (?P<message>.+)$")

BASE = """\
id: FMT-01
title: format test
refs: [rfc9293:3.5]
requirement: a requirement written out in words
level: MUST
steps:
  - send: {flags: S, seq: l_isn}
  - expect: {flags: RA, seq: 0, ack: l_isn + 1}
"""


def at(doc: str, marker: str, nth: int = 0) -> tuple[int, int]:
    """1-based line and column of the nth occurrence of ``marker`` in ``doc``."""
    assert doc.count(marker) > nth, f"marker {marker!r} occurs {doc.count(marker)} times"
    index = -1
    for _ in range(nth + 1):
        index = doc.index(marker, index + 1)
    line = doc.count("\n", 0, index) + 1
    col = index - (doc.rfind("\n", 0, index) + 1) + 1
    return line, col


def format_error(doc: str, source: str = "inline.yaml") -> str:
    with pytest.raises(CaseFormatError) as info:
        parse_case(doc, source)
    return str(info.value)


def parts(message: str) -> dict[str, str]:
    m = ERROR_LINE.match(message)
    assert m, f"not 'source:line:col: path: message': {message!r}"
    return m.groupdict()


# ---- valid cases -----------------------------------------------------------------------------------


def test_the_suite_has_cases() -> None:
    assert len(CASE_FILES) >= 10


@pytest.mark.parametrize("path", CASE_FILES, ids=lambda p: str(p.relative_to(ROOT / "testcases")))
def test_every_shipped_case_loads(path: Path) -> None:
    case = load_case(path, ROOT)
    assert re.fullmatch(r"[A-Z][A-Z0-9]*(-[A-Z0-9]+)*", case.id)
    assert case.steps
    lines = path.read_text(encoding="utf-8").splitlines()
    # Each step's recorded line is where the step's action is written, in file order; a step expanded from a
    # fragment carries the line of the case's `use` step.
    assert [s.line for s in case.steps] == sorted(s.line for s in case.steps)
    for step in case.steps:
        written = "use" if step.origin else step.kind
        assert written in lines[step.line - 1], (step.path, step.line, lines[step.line - 1])


# The rfc1337 profile is RFC 9293 with TIME-WAIT protection: whatever conforms under rfc9293 conforms under it,
# except that a RST may not end TIME-WAIT. These are the behaviours that end it.
ENDS_TIME_WAIT_ON_RST = {("TW-RST-01", "assassinated"), ("TW-RST-INWIN-01", "ended")}  # RFC 1337 keeps TIME-WAIT


def _alternatives(steps: list) -> list:  # type: ignore[type-arg]
    out = []
    for step in steps:
        if step.kind == "expect_one_of":
            for parsed in step.spec:
                out.append(parsed)
                out += _alternatives(parsed.then)
    return out


def test_what_conforms_under_rfc9293_conforms_under_rfc1337_but_a_time_wait_reset() -> None:
    missing = []
    for path in CASE_FILES:
        case = load_case(path)
        for parsed in _alternatives(case.steps):
            conforms = parsed.alt.conforms
            if conforms is not None and "rfc9293" in conforms and "rfc1337" not in conforms:
                missing.append((case.id, parsed.alt.label))
    assert set(missing) == ENDS_TIME_WAIT_ON_RST


def test_shipped_case_ids_are_unique() -> None:
    ids = [load_case(p).id for p in CASE_FILES]
    assert len(ids) == len(set(ids))


def test_valid_inline_case_is_parsed_into_typed_steps() -> None:
    doc = BASE + (
        "  - wait: {for: 1.5s, reason: let the timer run}\n"
        "  - ut: listen\n"
        "  - expect_none: {for: 50ms, flags: R, reason: nothing resets}\n"
        "    note: quiet\n"
        "  - expect: {flags: A, ack: l_isn + 1, window: 1..65535, options: {wscale: absent}, timeout: 250ms}\n"
    )
    case = parse_case(doc, "inline.yaml")
    assert case.id == "FMT-01"
    assert [s.kind for s in case.steps] == ["send", "expect", "wait", "ut", "expect_none", "expect"]
    assert [s.path for s in case.steps] == [f"steps[{i}]" for i in range(6)]
    assert [s.line for s in case.steps] == [7, 8, 9, 10, 11, 13]
    send, _, wait, ut, none, expect = (s.spec for s in case.steps)
    assert isinstance(send, SendSpec) and send.flags == 0x02 and send.seq.evaluate({"l_isn": 9}) == 9
    assert isinstance(wait, WaitSpec) and wait.for_ == 1.5
    assert isinstance(ut, UtSpec) and ut.op == "listen"
    assert none.for_ == pytest.approx(0.05) and none.flags == 0x04 and case.steps[4].note == "quiet"
    assert expect.timeout == pytest.approx(0.25)
    assert expect.window.kind == "range" and expect.options["wscale"].kind == "absent"


# ---- malformed cases: exact line, column, field path and message -----------------------------------

ALT = "        behaviour: {b}\n        expect: {{flags: R}}\n"
MALFORMED = [
    # (id, document, marker where the error is, nth occurrence, field path, message pattern)
    ("unknown-flag", BASE + "  - expect: {flags: SQ, ack: l_isn + 1}\n", "SQ", 0,
     "steps[2].expect.flags", r"unknown flag 'Q' \(known: F S R P A U E C\)"),
    ("unknown-flag-block", BASE + "  - expect:\n      len: 0\n      flags: Q\n", "Q\n", 0,
     "steps[2].expect.flags", r"unknown flag 'Q'"),
    ("bad-expression", BASE + "  - expect: {flags: A, ack: l_isn +* 1}\n", "l_isn +*", 0,
     "steps[2].expect.ack", r"cannot parse expression 'l_isn \+\* 1'"),
    ("forbidden-expression", BASE + "  - send: {flags: A, seq: __import__('os')}\n", "__import__", 0,
     "steps[2].send.seq", r"only min\(\.\.\.\) and max\(\.\.\.\) may be called"),
    ("bad-range-matcher", BASE + "  - expect: {flags: A, seq: 1..}\n", "1..}", 0,
     "steps[2].expect.seq", r"empty expression"),
    ("two-actions", BASE + "  - send: {flags: A}\n    expect: {flags: R}\n", "send: {flags: A}", 0,
     "steps[2]", r"a step has exactly one action, found 2: send, expect"),
    ("step-not-mapping", BASE + "  - 5\n", "5\n", 0,
     "steps[2]", r"a step is a mapping with one action"),
    ("wait-without-reason", BASE + "  - wait: {for: 100ms}\n", "{for: 100ms}", 0,
     "steps[2].wait.reason", r"Field required"),
    ("wait-shorthand", BASE + "  - wait: 100ms\n", "100ms", 0,
     "steps[2].wait", r"every wait has a reason"),
    ("unknown-option", BASE + "  - expect: {flags: SA, options: {mss: any, clamp: 5}}\n", "{mss: any", 0,
     "steps[2].expect.options", r"unknown option 'clamp' \(known: mss, wscale, sackok, ts, ts_val, ts_ecr, sack, tfo, "
     r"tfo_cookie, eol_padding\)"),
    ("unknown-expect-field", BASE + "  - expect: {flags: R, flagz: S}\n", "flagz", 0,
     "steps[2].expect.flagz", r"unknown key"),
    ("bad-duration", BASE + "  - expect: {flags: R, timeout: 3 fortnights}\n", "3 fortnights", 0,
     "steps[2].expect.timeout", r"bad duration '3 fortnights': write e\.g\. 300ms, 1\.5s or 2min"),
    ("duration-out-of-range", BASE + "  - wait: {for: 61min, reason: too long}\n", "61min", 0,
     "steps[2].wait.for", r"duration '61min' out of range"),
    ("bad-bind-field", BASE + "  - expect: {flags: SA, bind: {x: nope}}\n", "{x: nope}", 0,
     "steps[2].expect.bind", r"cannot bind 'nope'"),
    ("data-and-len", BASE + "  - send: {flags: PA, data: x, len: 3}\n", "{flags: PA", 0,
     "steps[2].send", r"give either data or len, not both"),
    ("unknown-ut-op", BASE + "  - ut: fly\n", "fly", 0,
     "steps[2].ut.op", r"Input should be 'listen'"),
    ("await-without-as", BASE + "  - ut: {op: await}\n", "{op: await}", 0,
     "steps[2].ut", r"await needs 'as'"),
    ("note-not-text", BASE + "  - send: {flags: A}\n    note: 5\n", "5\n", 0,
     "steps[2].note", r"note must be text"),
    ("missing-id", BASE.replace("id: FMT-01\n", ""), "title", 0,
     "id", r"Field required"),
    ("bad-id-pattern", BASE.replace("id: FMT-01", "id: fmt_01"), "fmt_01", 0,
     "id", r"String should match pattern"),
    ("short-title", BASE.replace("title: format test", "title: ab"), "ab\n", 0,
     "title", r"at least 3 characters"),
    ("refs-empty", BASE.replace("refs: [rfc9293:3.5]", "refs: []"), "[]", 0,
     "refs", r"List should have at least 1 item"),
    ("bad-ref", BASE.replace("refs: [rfc9293:3.5]", "refs: [rfc9293:3.5, RFC793]"), "RFC793", 0,
     "refs[1]", r"String should match pattern"),
    ("unknown-level", BASE.replace("level: MUST", "level: MAYBE"), "MAYBE", 0,
     "level", r"Input should be 'MUST', 'SHOULD', 'MAY' or 'INFO'"),
    ("steps-not-list", BASE.split("steps:")[0] + "steps: 5\n", "5\n", 0,
     "steps", r"Input should be a valid list"),
    ("steps-empty", BASE.split("steps:")[0] + "steps: []\n", "[]", 0,
     "steps", r"List should have at least 1 item"),
    ("one-alternative", BASE + "  - expect_one_of:\n      - label: only\n" + ALT.format(b="one"), "- label: only", 0,
     "steps[2].expect_one_of", r"expect_one_of needs a list of at least two alternatives"),
    ("duplicate-labels",
     BASE + "  - expect_one_of:\n      - label: twin\n" + ALT.format(b="one")
     + "      - label: twin\n" + ALT.format(b="two"),
     "twin", 1, "steps[2].expect_one_of[1].label", r"duplicate label 'twin'"),
    ("alternative-expect-and-none",
     BASE + "  - expect_one_of:\n      - label: both\n" + ALT.format(b="one") + "        none: {for: 10ms}\n"
     "      - label: other\n" + ALT.format(b="two"),
     "label: both", 0, "steps[2].expect_one_of[0]", r"an alternative has exactly one of expect or none"),
    ("alternative-neither",
     BASE + "  - expect_one_of:\n      - label: empty\n        behaviour: nothing\n      - label: other\n"
     + ALT.format(b="two"),
     "label: empty", 0, "steps[2].expect_one_of[0]", r"an alternative has exactly one of expect or none"),
    ("error-inside-then",
     BASE + "  - expect_one_of:\n      - label: first\n" + ALT.format(b="one") + "        then:\n"
     "          - send: {flags: XA}\n      - label: other\n" + ALT.format(b="two"),
     "XA", 0, "steps[2].expect_one_of[0].then[0].send.flags", r"unknown flag 'X'"),
    ("yaml-syntax", BASE + "  - send: {flags: S]\n", "]", 1,
     "YAML", r"expected ',' or '}', but got ']'"),
    ("yaml-tab", BASE + "\t- send: {flags: S}\n", "\t", 0,
     "YAML", r"found character '\\t' that cannot start any token"),
    ("duplicate-yaml-key", BASE.replace("level: MUST\n", "level: MUST\ntitle: again\n"), "title: again", 0,
     "YAML", r'found duplicate key "title"'),
]  # fmt: skip


@pytest.mark.parametrize(("doc", "marker", "nth", "path", "message"), [m[1:] for m in MALFORMED],
                         ids=[m[0] for m in MALFORMED])  # fmt: skip
def test_malformed_case_names_line_column_and_field(doc: str, marker: str, nth: int, path: str, message: str) -> None:
    text = format_error(doc)
    assert "\n" not in text
    got = parts(text)
    line, col = at(doc, marker, nth)
    assert (got["source"], int(got["line"]), int(got["col"]), got["path"]) == ("inline.yaml", line, col, path), text
    assert re.search(message, got["message"]), text


def test_unknown_step_key_names_the_step_and_its_line() -> None:
    doc = BASE + "  - frobnicate: {x: 1}\n"
    got = parts(format_error(doc))
    assert int(got["line"]) == at(doc, "frobnicate")[0]
    assert got["path"] == "steps[2].frobnicate"
    assert got["message"].startswith("unknown step 'frobnicate' (known: send, expect, expect_none, expect_count,")


@pytest.mark.parametrize(
    ("doc", "marker"),
    [
        (BASE + "  - frobnicate:\n      x: 1\n", "frobnicate"),
        (BASE + "bogus:\n  a: 1\n", "bogus"),
        (BASE + "  - expect:\n      flagz:\n        - S\n", "flagz"),
    ],
    ids=["unknown-step", "unknown-top-level-key", "unknown-expect-field"],
)
def test_unknown_key_error_points_at_the_key(doc: str, marker: str) -> None:
    got = parts(format_error(doc))
    assert (int(got["line"]), int(got["col"])) == at(doc, marker)


def test_top_level_list_is_rejected() -> None:
    text = format_error("- id: X\n- title: y\n")
    assert text.startswith("inline.yaml:1:1: ")
    assert "a case file is a mapping" in text


def test_non_utf8_file_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(BASE.replace("title: format test", "title: caf\xe9 test").encode("latin-1"))
    with pytest.raises(CaseFormatError) as info:
        load_case(path, tmp_path)
    text = str(info.value)
    assert text.startswith("latin1.yaml:") and "\n" not in text
    assert "utf-8" in text.lower()


@pytest.mark.parametrize(
    ("data", "line", "col"),
    [
        (b"- id: X\n- title: y\n", 1, 1),
        (BASE.replace("title: format test", "title: caf\xe9 test").encode("latin-1"), 2, 11),
        (BASE.encode() + b"  - send: {flags: S\x00}\n", 9, 20),
    ],
    ids=["top-level-list", "non-utf8", "control-character"],
)
def test_every_error_has_the_one_line_format(tmp_path: Path, data: bytes, line: int, col: int) -> None:
    path = tmp_path / "bad.yaml"
    path.write_bytes(data)
    with pytest.raises(CaseFormatError) as info:
        load_case(path, tmp_path)
    got = parts(str(info.value))
    assert (got["source"], int(got["line"]), int(got["col"])) == ("bad.yaml", line, col)


@pytest.mark.parametrize(
    ("step", "path"),
    [
        ("  - expect: {flags: A, ack: 1.5}\n", "steps[2].expect.ack"),
        ("  - send: {flags: S, options: [mss]}\n", "steps[2].send.options[0]"),
        ("  - send: {flags: S, window: null}\n", "steps[2].send.window"),
        ("  - bind: {x: " + "+".join(["1"] * 1200) + "}\n", "steps[2].bind.values.x"),
    ],
    ids=["float", "option-without-value", "null", "deep"],
)
def test_odd_values_give_case_format_errors(step: str, path: str) -> None:
    got = parts(format_error(BASE + step))
    assert got["line"] == "9" and got["path"].startswith(path.rsplit(".", 1)[0])


# ---- command line ----------------------------------------------------------------------------------


def cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "conformance", *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def test_schema_command_prints_json_schema() -> None:
    proc = cli("schema")
    assert proc.returncode == 0, proc.stderr
    schema = json.loads(proc.stdout)
    assert "$defs" in schema and "ExpectSpec" in schema["$defs"]
    steps = schema["properties"]["steps"]
    assert steps["type"] == "array"
    actions = {key for variant in steps["items"]["anyOf"] for key in variant["required"]}
    assert actions == {
        "send", "expect", "expect_none", "expect_count", "expect_one_of", "ut", "wait", "bind", "check", "isn_sample",
        "syn_flood", "restart", "use",
    }  # fmt: skip
    assert set(schema["required"]) >= {"id", "title", "refs", "requirement", "level", "steps"}


def test_check_accepts_the_shipped_cases() -> None:
    proc = cli("check", "testcases")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == f"{len(CASE_FILES)} valid, 0 invalid"


def test_check_reports_a_bad_file_in_one_line(tmp_path: Path) -> None:
    cases = tmp_path / "cases"
    cases.mkdir()
    (cases / "good.yaml").write_text(BASE)
    bad = BASE + "  - expect: {flags: SQ}\n"
    (cases / "bad.yaml").write_text(bad)
    proc = cli("check", "cases", cwd=tmp_path)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    line, col = at(bad, "SQ")
    assert proc.stderr.splitlines() == [
        f"cases/bad.yaml:{line}:{col}: steps[2].expect.flags: unknown flag 'Q' (known: F S R P A U E C)",
        "1 valid, 1 invalid",
    ]


def test_check_never_prints_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "float.yaml").write_text(BASE + "  - expect: {flags: A, ack: 1.5}\n")
    proc = cli("check", "float.yaml", cwd=tmp_path)
    assert "Traceback" not in proc.stderr
    assert proc.returncode == 1
