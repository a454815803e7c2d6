"""Step fragments: shipped fragments load and expand to exactly the steps written out by hand; a use step's
expanded steps carry its line and their origin; every mistake (in a case's use step or in a fragment file) is
one error line ``file:line:col: path: message`` at the right place."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from conformance.model.expr import Expr
from conformance.model.fragment import FRAGMENTS_DIR, Fragment, FragmentError, load_fragments, read_fragment
from conformance.model.loader import CaseFormatError, ParsedAlternative, Step, load_case, parse_case
from conformance.model.schema import json_schema
from conformance.model.values import Matcher
from conformance.yamlfile import read_yaml_file

ROOT = Path(__file__).resolve().parent.parent
ERROR_LINE = re.compile(r"^(?P<source>[^:\s]+):(?P<line>\d+):(?P<col>\d+): (?P<path>\S+): (?P<message>.+)$")

HEAD = """\
id: FRAG-01
title: fragment test
refs: [rfc9293:3.5]
requirement: a requirement written out in words
level: MUST
steps:
"""

PASSIVE_OPEN_BY_HAND = """\
  - ut: listen
  - send: {flags: S, seq: l_isn, options: [{mss: 1460}]}
  - expect: {flags: SA, ack: l_isn + 1}
  - send: {flags: A}
  - ut: accept
"""


def canon(value: Any) -> Any:
    """A comparable form of a step's spec: every field's value and which fields were written."""
    if isinstance(value, BaseModel):
        fields = {name: canon(getattr(value, name)) for name in type(value).model_fields}
        return type(value).__name__, fields, sorted(value.model_fields_set)
    if isinstance(value, Expr):
        return "expr", value.text
    if isinstance(value, Matcher):
        return "match", value.kind, canon(value.low), canon(value.high)
    if isinstance(value, ParsedAlternative):
        return "alt", canon(value.alt), [same(s) for s in value.then]
    if isinstance(value, list | tuple):
        return [canon(v) for v in value]
    if isinstance(value, dict):
        return {k: canon(v) for k, v in value.items()}
    return value


def same(step: Step) -> tuple[Any, ...]:
    """What must be identical between an expanded step and the hand-written one (not line, path, origin)."""
    return step.kind, canon(step.spec), step.note


def at(doc: str, marker: str) -> tuple[int, int]:
    index = doc.index(marker)
    return doc.count("\n", 0, index) + 1, index - (doc.rfind("\n", 0, index) + 1) + 1


def error(doc: str, fragments: dict[str, Fragment] | None = None) -> dict[str, str]:
    with pytest.raises(CaseFormatError) as info:
        parse_case(doc, "inline.yaml", fragments=fragments)
    text = str(info.value)
    assert "\n" not in text
    match = ERROR_LINE.match(text)
    assert match, f"not 'source:line:col: path: message': {text!r}"
    return match.groupdict()


def write_fragment(directory: Path, name: str, body: str) -> Path:
    directory.mkdir(exist_ok=True)
    path = directory / f"{name}.yaml"
    path.write_text(body, encoding="utf-8")
    return path


# ---- the shipped fragments ---------------------------------------------------------------------------------


SHIPPED = load_fragments()


def test_the_shipped_fragments() -> None:
    assert set(SHIPPED) == {"passive-open", "active-open", "target-close", "time-wait"}
    assert sorted(p.stem for p in FRAGMENTS_DIR.glob("*.yaml")) == sorted(SHIPPED)


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_a_shipped_fragment_is_documented_and_complete(name: str) -> None:
    fragment = SHIPPED[name]
    assert fragment.source == f"conformance/model/fragments/{name}.yaml"
    assert fragment.description and "\n" not in fragment.description
    for param in fragment.parameters.values():
        assert param.description and not param.required, param.name
    docs = (ROOT / "docs" / "case-format.md").read_text(encoding="utf-8")
    assert f"`{name}`" in docs, f"docs/case-format.md does not list the fragment {name}"
    for param in fragment.parameters:
        assert f"`{param}`" in docs, f"docs/case-format.md does not describe {name}'s parameter {param}"


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_a_shipped_fragment_expands_with_its_line_and_origin(name: str) -> None:
    # an expect first: the fragments that close a connection use what the target's segments bound (t_nxt)
    doc = (
        HEAD + "  - ut: listen\n  - expect: {flags: SA}\n" + f"  - use: {name}\n" + "  - wait: {for: 1ms, reason: x}\n"
    )
    case = parse_case(doc, "inline.yaml")
    expanded = case.steps[2:-1]
    assert len(expanded) == len(SHIPPED[name].steps)
    line = at(doc, "use:")[0]
    assert [s.line for s in expanded] == [line] * len(expanded)
    assert [s.origin for s in expanded] == [f"{name}[{i}]" for i in range(len(expanded))]
    assert [s.path for s in expanded] == [f"steps[2].use[{i}]" for i in range(len(expanded))]
    assert case.steps[0].origin is None and case.steps[-1].origin is None
    assert case.steps[-1].path == "steps[3]"


def test_passive_open_is_the_prologue_written_by_hand() -> None:
    by_hand = parse_case(HEAD + PASSIVE_OPEN_BY_HAND, "inline.yaml").steps
    used = parse_case(HEAD + "  - use: passive-open\n", "inline.yaml").steps
    assert [same(s) for s in used] == [same(s) for s in by_hand]
    assert [s.kind for s in used] == ["ut", "send", "expect", "send", "ut"]


@pytest.mark.parametrize(
    ("use", "by_hand"),
    [
        (
            "  - use: active-open\n",
            "  - ut: {op: connect, nowait: true, as: open}\n"
            "  - expect: {flags: S, len: 0}\n"
            "  - send: {flags: SA, seq: l_isn, ack: t_isn + 1, options: [{mss: 1460}]}\n"
            "  - expect: {flags: A, seq: t_isn + 1, ack: l_isn + 1, len: 0}\n"
            "  - ut: {op: await, as: open}\n",
        ),
        (
            "  - use: {fragment: target-close, call: {op: shutdown, how: wr}, ack_note: acked}\n",
            "  - ut: {op: shutdown, how: wr}\n"
            "  - expect: {flags: FA, seq: t_nxt, ack: l_nxt, len: 0}\n"
            "  - send: {flags: A}\n"
            "    note: acked\n",
        ),
        (
            "  - use: {fragment: time-wait, bind: {t_tw: time_us}, note: TIME-WAIT begins}\n",
            "  - ut: close\n"
            "  - expect: {flags: FA, seq: t_nxt, ack: l_nxt, len: 0}\n"
            "  - send: {flags: A}\n"
            "  - send: {flags: FA}\n"
            "  - expect: {flags: A, seq: t_nxt, ack: l_nxt, len: 0, bind: {t_tw: time_us}}\n"
            "    note: TIME-WAIT begins\n",
        ),
        (
            "  - use:\n"
            "      fragment: passive-open\n"
            "      syn_options: [{mss: 9000}]\n"
            "      syn_note: a large offer\n"
            "      synack_options: {mss: 1..1460}\n"
            "      ack_options: [nop, {wscale: 7}]\n"
            "      ack_note: a late option\n",
            "  - ut: listen\n"
            "  - send: {flags: S, seq: l_isn, options: [{mss: 9000}]}\n"
            "    note: a large offer\n"
            "  - expect: {flags: SA, ack: l_isn + 1, options: {mss: 1..1460}}\n"
            "  - send: {flags: A, options: [nop, {wscale: 7}]}\n"
            "    note: a late option\n"
            "  - ut: accept\n",
        ),
        (
            "  - use: {fragment: passive-open, syn_options: null}\n",
            "  - ut: listen\n"
            "  - send: {flags: S, seq: l_isn}\n"
            "  - expect: {flags: SA, ack: l_isn + 1}\n"
            "  - send: {flags: A}\n"
            "  - ut: accept\n",
        ),
    ],
    ids=["active-open", "target-close-shutdown", "time-wait-bind", "passive-open-every-parameter", "null-leaves-out"],
)
def test_parameters_give_the_steps_written_by_hand(use: str, by_hand: str) -> None:
    prior = "  - expect: {flags: SA}\n"  # binds t_nxt, which the closing fragments use
    used = parse_case(HEAD + prior + use, "inline.yaml").steps
    written = parse_case(HEAD + prior + by_hand, "inline.yaml").steps
    assert [same(s) for s in used] == [same(s) for s in written]


def test_a_null_parameter_leaves_its_key_out() -> None:
    (_, send, *_) = parse_case(HEAD + "  - use: {fragment: passive-open, syn_options: null}\n", "x.yaml").steps
    assert "options" not in send.spec.model_fields_set and send.spec.options == []
    assert send.note is None


def test_use_steps_expand_inside_alternatives() -> None:
    doc = HEAD + (
        "  - ut: {op: connect, nowait: true, as: open}\n"
        "  - expect_one_of:\n"
        "      - label: syn\n"
        "        behaviour: a SYN\n"
        "        expect: {flags: S}\n"
        "        then:\n"
        "          - use: {fragment: target-close, call: abort}\n"
        "      - label: quiet\n"
        "        behaviour: nothing\n"
        "        none: {for: 10ms}\n"
    )
    case = parse_case(doc, "inline.yaml")
    then = case.steps[1].spec[0].then
    assert [s.origin for s in then] == ["target-close[0]", "target-close[1]", "target-close[2]"]
    assert then[0].spec.op == "abort"
    assert {s.line for s in then} == {at(doc, "- use")[0]}


def test_shipped_cases_use_fragments() -> None:
    """The catalogue's prologues are written as use steps (measured: about 70 passive opens)."""
    origins = [
        s.origin.split("[")[0]
        for path in sorted((ROOT / "testcases").rglob("*.yaml"))
        for s in load_case(path, ROOT).steps
        if s.origin and s.origin.endswith("[0]")
    ]
    assert origins.count("passive-open") >= 70
    assert {"active-open", "target-close", "time-wait"} <= set(origins)


# ---- errors in a case's use step ----------------------------------------------------------------------------


CASE_ERRORS = [
    # (id, step text, marker of the place, path, message pattern)
    ("unknown-fragment", "  - use: pasive-open\n", "pasive-open", "steps[0].use",
     r"^unknown fragment 'pasive-open' \(did you mean 'passive-open'\?\); the fragments: active-open, passive-open"),
    ("unknown-fragment-mapping", "  - use: {fragment: time_wait}\n", "time_wait", "steps[0].use.fragment",
     r"^unknown fragment 'time_wait' \(did you mean 'time-wait'\?\)"),
    ("unknown-parameter", "  - use: {fragment: passive-open, syn_option: []}\n", "syn_option",
     "steps[0].use.syn_option",
     r"^passive-open has no parameter 'syn_option' \(did you mean 'syn_options'\?\); its parameters: syn_options, "),
    ("parameter-value-breaks-a-step", "  - use: {fragment: passive-open, syn_options: [mss]}\n", "mss]",
     "steps[0].use.syn_options[0]", r"^passive-open\[1\] \(send\.options\[0\]\): expected a number or an expression"),
    ("parameter-key-unknown", "  - use: {fragment: target-close, call: {op: shutdown, hw: wr}}\n", "hw",
     "steps[0].use.call.hw", r"^target-close\[0\] \(ut\.hw\): unknown key$"),
    ("parameter-bad-value", "  - use: {fragment: target-close, call: fly}\n", "fly", "steps[0].use.call.op",
     r"^target-close\[0\] \(ut\.op\): Input should be 'listen'"),
    ("bind-name", "  - use: {fragment: time-wait, bind: {T: seq}}\n", "{T: seq}", "steps[0].use.bind",
     r"^time-wait\[4\] \(expect\.bind\): bad name 'T'"),
    ("no-fragment-key", "  - use: {syn_options: []}\n", "{syn_options", "steps[0].use",
     r"^a use step names its fragment: \{fragment: name, parameter: value, \.\.\.\}$"),
    ("fragment-name-not-text", "  - use: {fragment: [a]}\n", "[a]", "steps[0].use.fragment",
     r"^a fragment's name is text$"),
    ("use-not-a-name", "  - use: 5\n", "5\n", "steps[0].use", r"^use takes a fragment's name or \{fragment: name"),
    ("note-on-use", "  - use: passive-open\n    note: hello\n", "note", "steps[0].note",
     r"^a use step takes no note: notes are the fragment's parameters$"),
    ("use-and-send", "  - use: passive-open\n    send: {flags: S}\n", "use", "steps[0]",
     r"^a step has exactly one action, found 2: use, send$"),
]  # fmt: skip


@pytest.mark.parametrize(("step", "marker", "path", "message"), [c[1:] for c in CASE_ERRORS],
                         ids=[c[0] for c in CASE_ERRORS])  # fmt: skip
def test_a_use_step_error_is_one_line_at_its_place(step: str, marker: str, path: str, message: str) -> None:
    doc = HEAD + step
    got = error(doc)
    assert (got["source"], (int(got["line"]), int(got["col"])), got["path"]) == ("inline.yaml", at(doc, marker), path)
    assert re.search(message, got["message"]), got["message"]


def test_an_error_from_a_default_points_at_the_use_step_and_names_the_fragment_step(tmp_path: Path) -> None:
    write_fragment(
        tmp_path,
        "payload",
        "name: payload\ndescription: a segment with text or a length\n"
        "parameters:\n"
        "  data: {default: null, description: the text of the segment}\n"
        "  size: {default: 3, description: the length of the segment}\n"
        "steps:\n  - send: {flags: PA, data: $data, len: $size}\n",
    )
    fragments = {"payload": read_fragment(tmp_path / "payload.yaml")}
    assert len(parse_case(HEAD + "  - use: payload\n", "x.yaml", fragments=fragments).steps) == 1
    doc = HEAD + "  - use: {fragment: payload, data: hello}\n"
    got = error(doc, fragments)
    assert ((int(got["line"]), int(got["col"])), got["path"]) == (at(doc, "{fragment"), "steps[0].use")
    assert got["message"] == "payload[0] (send): give either data or len, not both"


def test_a_missing_parameter_names_it(tmp_path: Path) -> None:
    write_fragment(
        tmp_path,
        "to-port",
        "name: to-port\ndescription: a SYN to a given port of the target\n"
        "parameters:\n  port: {description: the port the SYN goes to}\n"
        "steps:\n  - send: {flags: S, to_port: $port}\n",
    )
    fragments = {"to-port": read_fragment(tmp_path / "to-port.yaml")}
    assert fragments["to-port"].parameters["port"].required
    doc = HEAD + "  - use: to-port\n"
    got = error(doc, fragments)
    assert (int(got["line"]), got["path"]) == (at(doc, "use")[0], "steps[0].use")
    assert got["message"] == "to-port needs parameter 'port': the port the SYN goes to"
    case = parse_case(HEAD + "  - use: {fragment: to-port, port: t_port + 1}\n", "x.yaml", fragments=fragments)
    assert case.steps[0].spec.to_port.text == "t_port + 1"


def test_a_dollar_dollar_value_is_a_literal_dollar(tmp_path: Path) -> None:
    write_fragment(
        tmp_path,
        "priced",
        "name: priced\ndescription: a wait whose reason starts with a dollar\n"
        "steps:\n  - wait: {for: 1ms, reason: $$5 a wait}\n",
    )
    fragments = {"priced": read_fragment(tmp_path / "priced.yaml")}
    (step,) = parse_case(HEAD + "  - use: priced\n", "x.yaml", fragments=fragments).steps
    assert step.spec.reason == "$5 a wait"


def test_a_fragment_step_that_needs_alone_names_the_use_step(tmp_path: Path) -> None:
    write_fragment(
        tmp_path,
        "sample",
        "name: sample\ndescription: sample the target's ISNs\nsteps:\n  - isn_sample: {count: 3}\n",
    )
    fragments = {"sample": read_fragment(tmp_path / "sample.yaml")}
    doc = HEAD + "  - use: sample\n"
    got = error(doc, fragments)
    assert (int(got["line"]), got["path"]) == (at(doc, "use")[0], "steps[0].use[0]")
    assert "declare `alone: <why>`" in got["message"]


# ---- errors in a fragment file -----------------------------------------------------------------------------


GOOD = "name: {name}\ndescription: a fragment for the tests\n"
FRAGMENT_ERRORS = [
    # (id, file body, marker, path, message pattern)
    ("name-not-file-name", "name: other\ndescription: a fragment for the tests\nsteps:\n  - ut: listen\n", "other",
     "name", r"^the fragment's name is its file's name: 'frag'$"),
    ("undeclared-parameter", GOOD + "parameters:\n  window: {default: 1, description: the window field}\n"
     "steps:\n  - send: {flags: S, window: $windw}\n", "$windw", "steps[0].send.window",
     r"^\$windw is not a parameter of this fragment \(did you mean 'window'\?\)$"),
    ("unused-parameter", GOOD + "parameters:\n  window: {default: 1, description: the window field}\n"
     "steps:\n  - ut: listen\n", "window", "parameters.window", r"^parameter 'window' is never used in the steps$"),
    ("malformed-reference", GOOD + "steps:\n  - send: {flags: S, window: $Window}\n", "$Window",
     "steps[0].send.window", r"a parameter is written \$name"),
    ("reference-as-key", GOOD + "steps:\n  - send: {$flags: S}\n", "$flags", "steps[0].send.$flags",
     r"^a parameter stands for a value, never for a key$"),
    ("nested-use", GOOD + "steps:\n  - use: passive-open\n", "use", "steps[0].use",
     r"^a fragment does not use other fragments$"),
    ("nested-use-in-alternative", GOOD + "steps:\n  - expect_one_of:\n"
     "      - {label: a, behaviour: b, expect: {flags: R}, then: [{use: passive-open}]}\n"
     "      - {label: c, behaviour: d, none: {for: 1s}}\n", "use",
     "steps[0].expect_one_of[0].then[0].use", r"^a fragment does not use other fragments$"),
    ("invalid-step", GOOD + "steps:\n  - send: {flags: SQ}\n", "SQ", "steps[0].send.flags", r"^unknown flag 'Q'"),
    ("invalid-default", GOOD + "parameters:\n  flags: {default: SQ, description: the flags to send}\n"
     "steps:\n  - send: {flags: $flags}\n", "$flags", "steps[0].send.flags", r"^unknown flag 'Q'"),
    ("parameter-named-fragment", GOOD + "parameters:\n  fragment: {default: 1, description: a reserved word}\n"
     "steps:\n  - send: {flags: S, window: $fragment}\n", "fragment:", "parameters.fragment",
     r"names the fragment in a use step"),
    ("bad-parameter-name", GOOD + "parameters:\n  Window: {default: 1, description: the window field}\n"
     "steps:\n  - send: {flags: S}\n", "Window", "parameters.Window", r"^a parameter's name is lower-case letters"),
    ("parameter-without-description", GOOD + "parameters:\n  window: {default: 1}\nsteps:\n  - send: {flags: S}\n",
     "{default: 1}", "parameters.window.description", r"Field required"),
    ("no-steps", GOOD + "steps: []\n", "[]", "steps", r"at least 1 item"),
    ("not-a-mapping", "- ut: listen\n", "- ut", "(top)", r"^a fragment file is a mapping"),
    ("unknown-key", GOOD + "step:\n  - ut: listen\nsteps:\n  - ut: listen\n", "step:", "step", r"^unknown key$"),
]  # fmt: skip


@pytest.mark.parametrize(("body", "marker", "path", "message"), [c[1:] for c in FRAGMENT_ERRORS],
                         ids=[c[0] for c in FRAGMENT_ERRORS])  # fmt: skip
def test_a_broken_fragment_file_is_one_error_line(tmp_path: Path, body: str, marker: str, path: str,
                                                  message: str) -> None:  # fmt: skip
    text = body.replace("{name}", "frag")
    file = write_fragment(tmp_path, "frag", text)
    with pytest.raises(FragmentError) as info:
        read_fragment(file)
    got = ERROR_LINE.match(str(info.value))
    assert got, str(info.value)
    assert (got["source"], got["path"]) == (str(file), path)
    assert (int(got["line"]), int(got["col"])) == at(text, marker)
    assert re.search(message, got["message"]), got["message"]


def test_loading_the_fragments_stops_at_a_broken_file_in_one_line(tmp_path: Path) -> None:
    directory = tmp_path / "fragments"
    write_fragment(directory, "bad", "name: bad\ndescription: a fragment for the tests\nsteps: [{send: {flags: Q}}]\n")
    with pytest.raises(CaseFormatError) as info:
        load_fragments(directory)
    assert str(info.value).startswith(f"{directory / 'bad.yaml'}:3:")


# ---- the JSON schema and the check command ------------------------------------------------------------------


def _matches(schema: dict[str, Any], value: Any) -> bool:
    """The few JSON-schema words the use step's schema is made of (anyOf, type, enum, const, properties)."""
    if "anyOf" in schema:
        return any(_matches(s, value) for s in schema["anyOf"])
    kind = schema.get("type")
    if (kind == "string" and not isinstance(value, str)) or (kind == "object" and not isinstance(value, dict)):
        return False
    if "enum" in schema and value not in schema["enum"]:
        return False
    if "const" in schema and value != schema["const"]:
        return False
    if isinstance(value, dict):
        props = schema.get("properties", {})
        if any(key not in value for key in schema.get("required", [])):
            return False
        if schema.get("additionalProperties") is False and any(key not in props for key in value):
            return False
        return all(_matches(props[key], item) for key, item in value.items() if key in props)
    return True


def test_the_json_schema_accepts_use_steps() -> None:
    schema = json_schema()
    variants = schema["properties"]["steps"]["items"]["anyOf"]
    (use,) = [v for v in variants if v["required"] == ["use"]]
    assert _matches(use, {"use": "passive-open"})
    assert _matches(use, {"use": {"fragment": "passive-open", "syn_options": [{"mss": 700}], "syn_note": "x"}})
    assert _matches(use, {"use": {"fragment": "time-wait", "bind": {"t_tw": "time_us"}}})
    assert not _matches(use, {"use": "pasive-open"})
    assert not _matches(use, {"use": {"fragment": "time-wait", "syn_options": []}})
    assert not _matches(use, {"use": {"syn_options": []}})
    assert not _matches(use, {"use": "passive-open", "note": "x"})
    shipped = [
        step
        for path in sorted((ROOT / "testcases").rglob("*.yaml"))
        for step in read_yaml_file(path).data["steps"]
        if isinstance(step, dict) and "use" in step
    ]
    assert len(shipped) >= 90 and all(_matches(use, step) for step in shipped)


def test_check_accepts_a_case_that_uses_fragments(tmp_path: Path) -> None:
    (tmp_path / "case.yaml").write_text(HEAD + "  - use: passive-open\n  - use: time-wait\n")
    (tmp_path / "bad.yaml").write_text(HEAD + "  - use: {fragment: passive-open, window: 1}\n")
    proc = subprocess.run(
        [sys.executable, "-m", "conformance", "check", "case.yaml", "bad.yaml"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    line, col = at(HEAD + "  - use: {fragment: passive-open, window: 1}\n", "window")
    assert proc.stderr.splitlines() == [
        f"bad.yaml:{line}:{col}: steps[0].use.window: passive-open has no parameter 'window'; its parameters: "
        "syn_options, syn_note, synack_options, synack_note, ack_options, ack_note",
        "1 valid, 1 invalid",
    ]
