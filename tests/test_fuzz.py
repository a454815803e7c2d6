"""Property-based fuzzing (hypothesis) of everything that reads untrusted input.

- case files: ``parse_case`` returns a Case or raises CaseFormatError, one line ``source:line:col: path: message``;
- targets.yaml and expectations files: ``load_targets`` / ``load_expectations`` return or raise TargetConfigError,
  one line in the same format;
- the upper-tester agent (run inside a private network namespace, connect refused): every request line gets
  exactly one JSON response, a failure carries an errno-like name, and the agent keeps answering;
- raw frames: ``parse_packet``, ``flow_key`` and ``parse_options`` never raise.

The number of examples per test is modest by default (CI); a deeper run:

    TCPCONF_FUZZ_EXAMPLES=10000 .venv/bin/pytest tests/test_fuzz.py

What the fuzzers found is pinned by regression tests at the end; the ones still open are marked
``xfail(strict=True)``, and the fuzzers tolerate exactly those crashes (KNOWN_BUGS, matched by the frames the
exception passed through) so that they keep looking for new ones. When an open bug is fixed its regression test
XPASSes, which fails the run: then remove the mark and its KNOWN_BUGS entry.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import queue
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, assume, event, given, reject, settings
from hypothesis import strategies as st

from conformance.model.fragment import load_fragments
from conformance.model.loader import Case, CaseFormatError, load_case, parse_case
from conformance.targets.config import TargetConfig, TargetConfigError, load_expectations, load_targets
from conformance.wire.build import OutOption, OutSegment, build_packet
from conformance.wire.segment import flow_key, parse_options, parse_packet

ROOT = Path(__file__).resolve().parent.parent
AGENT = ROOT / "conformance" / "agent.py"
SOURCE = "fuzz.yaml"

EXAMPLES = int(os.environ.get("TCPCONF_FUZZ_EXAMPLES", "200"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,  # nothing is written into the work tree (.hypothesis/)
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)


# ---- open bugs -------------------------------------------------------------------------------------


def _raised_in(exc: BaseException, file_fragment: str, function: str | None = None) -> bool:
    return any(
        file_fragment in frame.filename.replace("\\", "/") and (function is None or frame.name == function)
        for frame in traceback.extract_tb(exc.__traceback__)
    )


# Crashes found by this file and not fixed yet: (id, how to recognise one). Reproducers: the xfail tests at the end.
KNOWN_BUGS: list[tuple[str, Callable[[BaseException], bool]]] = []


def tolerate_known_bug(exc: BaseException) -> None:
    """Re-raise ``exc`` unless it is one of KNOWN_BUGS (then only count it in hypothesis' statistics)."""
    for name, matches in KNOWN_BUGS:
        if matches(exc):
            event(f"known bug: {name.split(':')[0]}")
            return
    raise exc


# ---- the one-line error format -------------------------------------------------------------------------


def _line_breaks(text: str) -> int:
    """Line breaks as YAML counts them (\\n, lone \\r, NEL, LS, PS); an upper bound for the error's line."""
    return sum(text.count(ch) for ch in "\n\r\x85\u2028\u2029")


def assert_one_line_error(message: str, source: str, text: str | None = None) -> None:
    """``source:line:col: path: message`` on one line, with a line number inside the document."""
    assert "\n" not in message and "\r" not in message, f"error is not one line: {message!r}"
    m = re.fullmatch(rf"{re.escape(source)}:(\d+):(\d+): (.+?): (.+)", message)
    assert m, f"error is not 'source:line:col: path: message': {message!r}"
    line, col = int(m.group(1)), int(m.group(2))
    assert line >= 1 and col >= 1, message
    if text is not None:
        assert line <= _line_breaks(text) + 1, f"line {line} is past the end of the document: {message!r}"


def as_text(content: str | bytes) -> str:
    return content if isinstance(content, str) else content.decode("utf-8", "replace")


# ---- YAML documents from Python values ------------------------------------------------------------------

_PLAIN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+\-/ ]*[A-Za-z0-9_.]|[A-Za-z0-9_]")
_NOT_PRINTABLE = re.compile("[\x7f-\x84\x86-\x9f\ufffe\uffff]")


def _scalar_text(value: Any) -> str:
    """A scalar as a human would type it: plain where possible (so YAML resolves it), else double-quoted."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    text = str(value)
    if _PLAIN.fullmatch(text):
        return text
    # JSON's double-quoted string is YAML's too, once the characters YAML cannot carry raw are escaped.
    return _NOT_PRINTABLE.sub(lambda m: f"\\u{ord(m.group()):04x}", json.dumps(text, ensure_ascii=False))


def hand_dump(value: Any, indent: int = 0) -> str:
    """A block mapping at the top (one key per line), flow style inside: as case files are written."""
    pad = " " * indent
    if isinstance(value, dict) and value and indent < 8:
        out = ""
        for key, item in value.items():
            if isinstance(item, dict) and item:
                out += f"{pad}{_scalar_text(key)}:\n{hand_dump(item, indent + 2)}"
            elif isinstance(item, list) and item:
                out += f"{pad}{_scalar_text(key)}:\n"
                out += "".join(f"{pad}  - {_flow(element)}\n" for element in item)
            else:
                out += f"{pad}{_scalar_text(key)}: {_flow(item)}\n"
        return out
    return pad + _flow(value) + "\n"


def _flow(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_scalar_text(k)}: {_flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_flow(v) for v in value) + "]"
    return _scalar_text(value)


def safe_dump(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=None, allow_unicode=True, sort_keys=False)


def dump(value: Any, style: str) -> str:
    return safe_dump(value) if style == "safe" else hand_dump(value)


# ---- strategies: values that look like cases ------------------------------------------------------------

CASE_KEYS = ["id", "title", "refs", "requirement", "level", "requires", "tags", "families", "timeout", "steps"]
STEP_KINDS = [
    "send", "expect", "expect_none", "expect_count", "expect_one_of", "ut", "wait", "bind", "check", "isn_sample",
    "syn_flood", "use", "note",
]  # fmt: skip
FRAGMENTS = load_fragments()
FIELD_KEYS = [
    "flags", "seq", "ack", "window", "urgent", "options", "data", "len", "checksum", "doff", "ttl", "from_port",
    "to_port", "from_addr", "to_addr", "reserved", "ignore_flags", "end_seq", "timeout", "bind", "for", "reason",
    "count", "record", "op", "sock", "as", "nowait", "result", "how", "state", "eof", "expect_len", "expect_data",
    "backlog", "rcvbuf", "max", "value", "in", "spacing", "rate", "sources", "settle", "label", "behaviour",
    "expect", "none", "conforms", "then", "values", "name", "kind", "length",
    "fragment", "syn_options", "syn_note", "synack_options", "ack_options", "call", "note",
]  # fmt: skip
OPTION_NAMES = ["mss", "wscale", "sackok", "ts", "nop", "eol", "sack", "raw", "ts_val", "ts_ecr", "clamp"]
SPECIAL_STRINGS = [
    "SA", "S", "R", "RA", "FA", "PA", "A", ".", "SQ", "none", "-", "", " ", "PEC",
    "l_isn", "l_isn + 1", "t_isn + 1", "l_nxt", "t_nxt - 1", "(l_isn - 1) >> 1", "1 << 64", "1 // 0", "x" * 201,
    "max(1, 2)", "min()", "max", "__import__('os')", "l_isn +* 1", "(" * 300,
    "1..14", "1..", "..", "..5", "0..65535", "l_isn..l_isn + 100", "any", "absent", "*", "ANY",
    "300ms", "1.5s", "2min", "61min", "3 fortnights", "0us", "1e3s", "-1s",
    "ok", "any", "ECONNREFUSED", "listen", "accept", "connect", "send", "recv", "shutdown", "close", "abort",
    "state", "await", "fly", "ipv4", "ipv6", "ipv5", "good", "bad", "tester", "target", "broadcast", "multicast",
    "wr", "rd", "rdwr", "seq", "opt.mss", "opt.ts_val", "time_us", "00ff", "0", "zz", "abc",
    "rfc9293:3.5", "RFC793", "rfc5961", "rfc1337", "MUST", "SHOULD", "MAY", "INFO", "MAYBE", "FUZZ-01", "fmt_01",
    "2001-13-01", "2001-12-14 21:59:43.10 -5", "2001-02-30", "true", "yes", "null", "~", "0x10", "0o17", "1e400",
    ".nan", "-.inf", "1_000", "a: b", "- x", "[x", "{x", "&a", "*a", "!tag", "%YAML", "#", "|", ">",
    "S\nA", "se\nq", "rfc\n1", "lo\ncal", "a\r\nb", "x\x85y", "line\u2028sep", "\n", "1..\n2",
]  # fmt: skip
SEND_OPTIONS = st.one_of(
    st.sampled_from(OPTION_NAMES),
    st.fixed_dictionaries({}, optional={"mss": st.integers(-1, 70000), "wscale": st.integers(-1, 300)}),
    st.builds(lambda v: {"ts": v}, st.lists(st.integers(-1, 2**33), max_size=3)),
    st.builds(lambda v: {"sack": v}, st.lists(st.lists(st.integers(0, 2**32), max_size=3), max_size=4)),
    st.builds(
        lambda kind, data, length: {"raw": {"kind": kind, "data": data, "length": length}},
        st.integers(-1, 300),
        st.sampled_from(["", "00", "0102", "zz", "abc", "00" * 41]),
        st.none() | st.integers(-1, 300),
    ),
)

long_strings = st.integers(200, 5000).map(lambda n: "A" * n) | st.integers(50, 400).map(lambda n: "l_isn + 1 " * n)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(-70000, 70000),
    st.floats(),
    st.sampled_from(SPECIAL_STRINGS),
    st.text(max_size=20),
    long_strings,
)
# Keys: the real vocabulary or short text, now and then with a line break (which the error must escape).
key_text = st.text(max_size=8) | st.sampled_from(["a\nb", "x\r\ny", "\x85\x85", "net.a\nb", "X\nY"])
keys = st.sampled_from(CASE_KEYS + STEP_KINDS + FIELD_KEYS + OPTION_NAMES) | key_text
values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=4),
    max_leaves=20,
)
field_values = st.one_of(values, st.lists(SEND_OPTIONS, max_size=4), st.sampled_from(SPECIAL_STRINGS))


# Valid values of the fields most bodies need first, so that validation gets past them to the fuzzed ones.
SEED_FIELDS = st.fixed_dictionaries(
    {},
    optional={
        "flags": st.sampled_from(["S", "SA", "A", "R", "FA"]),
        "for": st.sampled_from(["10ms", "1s"]),
        "reason": st.just("a reason"),
        "op": st.sampled_from(["listen", "accept", "connect", "send", "recv", "await", "state"]),
        "count": st.sampled_from([1, "1..3"]),
        "value": st.sampled_from(["1", "l_isn + 1"]),
        "in": st.sampled_from(["0..5", 3]),
    },
)


def body_of(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A step body: usually a mapping of real field names, sometimes any value at all."""
    fields = st.dictionaries(st.sampled_from(FIELD_KEYS) | keys, children, max_size=5)
    seeded = st.builds(lambda seed, more: {**seed, **more}, SEED_FIELDS, fields)
    return st.one_of(seeded, seeded, fields, values)


ACTIONS = [kind for kind in STEP_KINDS if kind not in ("expect_one_of", "note")]
single_steps = st.builds(lambda kind, body: {kind: body}, st.sampled_from(ACTIONS), body_of(field_values))
alternative = st.builds(
    lambda label, behaviour, more: {"label": label, "behaviour": behaviour, **more},
    st.sampled_from(["a", "b", "twin", "Bad_Label", ""]) | values,
    st.sampled_from(["what it did"]) | values,
    st.fixed_dictionaries(
        {},
        optional={
            "expect": body_of(field_values),
            "none": body_of(field_values),
            "conforms": st.lists(st.sampled_from(["rfc9293", "rfc5961", "rfc793", "rfc1337", "rfc0"])) | values,
            "then": st.lists(single_steps, max_size=2) | values,
        },
    ),
)
use_steps = st.builds(
    lambda body: {"use": body},
    st.sampled_from([*FRAGMENTS, "pasive-open", ""])
    | st.builds(
        lambda name, more: {"fragment": name, **more},
        st.sampled_from([*FRAGMENTS, "pasive-open"]) | values,
        st.dictionaries(st.sampled_from(FIELD_KEYS), field_values, max_size=3),
    )
    | values,
)
step = st.one_of(
    single_steps,
    single_steps,
    single_steps,
    use_steps,
    st.builds(lambda one, note: {**one, "note": note}, single_steps, st.sampled_from(["a note"]) | values),
    st.builds(lambda alts: {"expect_one_of": alts}, st.lists(alternative, max_size=4)),
    st.dictionaries(st.sampled_from(STEP_KINDS) | keys, body_of(field_values), max_size=3),
    values,
)
OPTIONAL_META: dict[str, st.SearchStrategy[Any]] = {
    "requires": st.lists(st.sampled_from(["ut", "ut.listen", "flood", "tcp.sack"]) | values, max_size=3) | values,
    "tags": st.lists(st.sampled_from(["fuzz", "a_b", "Bad", "9", "handshake", "timewait"]) | values, max_size=3)
    | values,
    "families": st.lists(st.sampled_from(["ipv4", "ipv6", "ipv5"]) | values, max_size=3) | values,
    "timeout": st.sampled_from(["30s", "1.5s", "61min", "0", "-1s"]) | values,
}
VALID_META = {
    "id": "FUZZ-01",
    "title": "a fuzzed case",
    "refs": ["rfc9293:3.5"],
    "requirement": "a requirement written out in words",
    "level": "MUST",
}


@st.composite
def case_documents(draw: st.DrawFn) -> Any:
    """Half the time valid metadata (so that the steps get validated), fuzzed steps, now and then junk keys."""
    if draw(st.booleans()) and draw(st.booleans()) and draw(st.booleans()):
        return draw(values)
    doc: dict[Any, Any] = dict(VALID_META)
    if draw(st.booleans()) and draw(st.booleans()):
        for key in draw(st.lists(st.sampled_from(sorted(VALID_META)), unique=True, min_size=1, max_size=2)):
            if draw(st.booleans()):
                del doc[key]
            else:
                doc[key] = draw(values | st.sampled_from(SPECIAL_STRINGS))
    if draw(st.booleans()) and draw(st.booleans()):
        for key in draw(st.lists(st.sampled_from(sorted(OPTIONAL_META)), unique=True, min_size=1, max_size=2)):
            doc[key] = draw(OPTIONAL_META[key])
    doc["steps"] = draw(st.lists(step, min_size=1, max_size=6) if draw(st.integers(0, 7)) else values)
    if draw(st.booleans()) and draw(st.booleans()):
        extra = draw(st.dictionaries(keys, values, min_size=1, max_size=2))
        return {**doc, **extra} if draw(st.booleans()) else {**extra, **doc}
    return doc


YAML_FRAGMENTS = [
    "id: FUZZ-01\n", "title: fuzz\n", "refs: [rfc9293:3.5]\n", "level: MUST\n", "steps:\n", "  - ", "    ",
    "send: ", "expect: ", "ut: ", "expect_one_of:\n", "{", "}", "[", "]", ", ", ": ", "- ", "\n", "\t", "'", '"',
    "&a ", "*a", "<<: ", "? ", "!!int ", "!!str ", "!!float ", "!!bool ", "!!binary ", "!!timestamp ", "!!set ",
    "!!omap ", "!!map ", "!!seq ", "!foo ", "%YAML 1.2\n", "%TAG ! tag:x,2000:\n", "---\n", "...\n", "|\n",
    ">-\n", "# c\n", "flags: SA", "seq: l_isn + 1", "1..14", "2001-13-01", "0x", "~", "\x00", "\ufeff", "\x85",
    "\u2028", "\\", "%", "@", "`",
]  # fmt: skip
yaml_like_text = st.lists(st.sampled_from(YAML_FRAGMENTS) | st.text(max_size=5), max_size=40).map("".join)


def expanded_length(step: Any) -> int:
    """How many steps a step of a document that loaded becomes: a fragment's length for a use step, else one."""
    if isinstance(step, dict) and "use" in step:
        body = step["use"]
        return len(FRAGMENTS[body if isinstance(body, str) else body["fragment"]].steps)
    return 1


def check_case_text(text: str) -> Case | None:
    try:
        return parse_case(text, SOURCE)
    except CaseFormatError as exc:
        assert_one_line_error(str(exc), SOURCE, text)
    except Exception as exc:
        tolerate_known_bug(exc)
    return None


# ---- 1. case files -----------------------------------------------------------------------------------


@FUZZ
@given(text=st.text())
def test_arbitrary_text_is_a_case_or_one_error_line(text: str) -> None:
    check_case_text(text)


@FUZZ
@given(text=yaml_like_text)
def test_yaml_like_text_is_a_case_or_one_error_line(text: str) -> None:
    check_case_text(text)


@FUZZ
@given(doc=case_documents(), style=st.sampled_from(["safe", "hand"]))
def test_case_like_documents_are_a_case_or_one_error_line(doc: Any, style: str) -> None:
    text = dump(doc, style)
    case = check_case_text(text)
    if case is not None:
        assert case.id == doc["id"] and len(case.steps) == sum(expanded_length(step) for step in doc["steps"])


@FUZZ
@given(data=st.binary(max_size=300) | yaml_like_text.map(lambda t: t.encode("utf-8", "surrogatepass")))
def test_case_file_bytes_are_a_case_or_one_error_line(data: bytes) -> None:
    with tempfile.TemporaryDirectory(prefix="tcpconf-fuzz-") as tmp:
        path = Path(tmp) / SOURCE
        path.write_bytes(data)
        try:
            load_case(path, Path(tmp))
        except CaseFormatError as exc:
            assert_one_line_error(str(exc), SOURCE, as_text(data))
        except Exception as exc:
            tolerate_known_bug(exc)


# ---- 2. targets.yaml and expectations files -----------------------------------------------------------

TARGET_KEYS = [
    "name", "kind", "description", "sysctls", "nft", "ipv4", "ipv6", "families", "capabilities", "allow_flood",
    "flood_rate_cap", "expectations",
]  # fmt: skip
ADDRESSES = [
    "198.18.0.1", "198.18.0.2", "198.19.0.2", "2001:2::1", "2001:2::2", "::1", "::", "0.0.0.0", "255.255.255.255",
    "fe80::1%eth0", "::ffff:198.18.0.2", "1.2.3.4.5", "198.18.0.1/24", "localhost", "", "01.2.3.4", "2001:2::1::",
]  # fmt: skip
# What 'expectations' may name: files in the test's own temporary directory (or nothing), never anything else.
EXPECTATION_NAMES = [None, "e.yaml", "missing.yaml", ".", "", "sub/../e.yaml"]
address_blocks = st.fixed_dictionaries(
    {},
    optional={
        "target": st.sampled_from(ADDRESSES) | values,
        "tester": st.sampled_from(ADDRESSES) | values,
        "prefix": st.integers(-1, 200) | values,
        "gateway": values,
    },
)
TARGET_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "name": values,
    "kind": st.sampled_from(["local", "remote", "LOCAL", "", "lo\ncal"]) | values,
    "description": values,
    "sysctls": st.dictionaries(
        st.sampled_from(["net.ipv4.tcp_sack", "net.ipv4.tcp_timestamps", "kernel.panic", "net.", "net.a b"]) | key_text,
        st.integers() | st.sampled_from(["0", "1", ""]) | values,
        max_size=3,
    )
    | values,
    "nft": values,
    "ipv4": address_blocks | values,
    "ipv6": address_blocks | values,
    "families": st.lists(st.sampled_from(["ipv4", "ipv6", "ipv5"]) | values, max_size=3) | values,
    "capabilities": st.lists(st.sampled_from(["ut", "ut.listen", "flood", "tcp.sack"]) | values) | st.none(),
    "allow_flood": st.booleans() | values,
    "flood_rate_cap": st.integers(-1, 2_000_000) | values,
    "expectations": st.sampled_from(EXPECTATION_NAMES) | st.integers() | st.lists(st.integers(), max_size=2),
}
target_names = st.sampled_from(["local", "local-no-wscale", "a", "a.b_c-d", "Local", "-x", "x y", ""]) | key_text


@st.composite
def target_entries(draw: st.DrawFn) -> Any:
    if draw(st.integers(0, 9)) == 0:
        return draw(values)
    entry = {"kind": "local"} if draw(st.booleans()) else {}
    for key in draw(st.lists(st.sampled_from(TARGET_KEYS), unique=True, max_size=6)):
        entry[key] = draw(TARGET_VALUES[key])
    junk = draw(st.dictionaries(key_text.filter(lambda k: k not in TARGET_KEYS), values, max_size=1))
    return {**entry, **junk}


targets_documents = st.one_of(
    st.builds(lambda t: {"targets": t}, st.dictionaries(target_names, target_entries(), max_size=4)),
    st.dictionaries(st.sampled_from(["targets", "target"]) | key_text, values, max_size=3),
    values,
)
deviation_ids = st.sampled_from(["X", "ISN-01", "HS-03[ipv4]", "HS-03[ipv6]", "HS-03[ipv5]", "x", "7", "A-"]) | key_text
expectations_documents = st.one_of(
    st.builds(
        lambda d: {"deviations": d},
        st.dictionaries(
            deviation_ids,
            st.fixed_dictionaries(
                {},
                optional={
                    "verdict": st.sampled_from(["FAIL", "ERROR", "INCONCLUSIVE", "PASS", "fail"]) | values,
                    "reason": st.sampled_from(["a reviewed deviation", "too short", ""]) | values,
                    "ticket": values,
                },
            )
            | values,
            max_size=4,
        ),
    ),
    values,
)


def check_targets_file(tmp: Path, targets_text: str | bytes, expectations_text: str | bytes) -> None:
    """load_targets, then load_expectations of every entry: results or one TargetConfigError line each."""
    targets_file = tmp / "targets.yaml"
    expectations_file = tmp / "e.yaml"
    for path, content in ((targets_file, targets_text), (expectations_file, expectations_text)):
        path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8", "surrogatepass"))
    try:
        targets = load_targets(targets_file)
    except TargetConfigError as exc:
        assert_one_line_error(str(exc), str(targets_file), as_text(targets_text))
        return
    except Exception as exc:
        tolerate_known_bug(exc)
        return
    assert all(isinstance(entry, TargetConfig) for entry in targets.values())
    for entry in targets.values():
        assert entry.expectations in EXPECTATION_NAMES, "the generator must not name files outside tmp"
        try:
            load_expectations(targets_file, entry)
        except TargetConfigError as exc:
            text = str(exc)
            if text.startswith(f"{targets_file}: targets."):  # the file itself cannot be read
                assert "\n" not in text and "\r" not in text, text
            else:
                assert_one_line_error(text, str(expectations_file.resolve()), as_text(expectations_text))
        except Exception as exc:
            tolerate_known_bug(exc)


@FUZZ
@given(doc=targets_documents, style=st.sampled_from(["safe", "hand"]), expectations=expectations_documents)
def test_targets_documents_load_or_fail_in_one_line(doc: Any, style: str, expectations: Any) -> None:
    with tempfile.TemporaryDirectory(prefix="tcpconf-fuzz-") as tmp:
        check_targets_file(Path(tmp), dump(doc, style), dump(expectations, style))


@FUZZ
@given(
    targets_text=st.binary(max_size=200) | yaml_like_text,
    expectations_text=st.binary(max_size=200) | yaml_like_text,
)
def test_targets_and_expectations_bytes_load_or_fail_in_one_line(
    targets_text: str | bytes, expectations_text: str | bytes
) -> None:
    # A fixed valid head, so that the expectations file is read too.
    head = "targets:\n  local:\n    kind: local\n    expectations: e.yaml\n"
    with tempfile.TemporaryDirectory(prefix="tcpconf-fuzz-") as tmp:
        check_targets_file(Path(tmp), targets_text, expectations_text)
        check_targets_file(Path(tmp), head, expectations_text)


# ---- 3. the upper-tester agent ---------------------------------------------------------------------------

AGENT_OPS = [
    "hello", "listen", "accept", "connect", "send", "recv", "shutdown", "close", "abort", "state", "sockopt", "bye",
]  # fmt: skip
ERROR_NAME = re.compile(r"[A-Z][A-Z0-9-]*")
SYNC_BASE = -(10**15)  # ids of the sync hellos; the fuzzer never uses this range
_sync_ids = itertools.count(SYNC_BASE)
DEEP = 400  # brackets from which on a line may be too deeply nested for json.loads, here or in the agent


def _netns_unavailable() -> str | None:
    if os.name != "posix" or os.geteuid() != 0:
        return "the agent fuzzer runs the agent in a network namespace: needs root"
    if shutil.which("ip") is None:
        return "the agent fuzzer needs iproute2 ('ip' not found)"
    probe = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        return f"'ip netns' is unavailable: {probe.stderr.strip()}"
    return None


class FuzzedAgent:
    """One stdio agent (restarted only if it died), its responses read by a thread into a queue."""

    def __init__(self, netns: str) -> None:
        self.netns = netns
        self.proc: subprocess.Popen[bytes] | None = None
        self.responses: queue.Queue[bytes | None] = queue.Queue()
        self.stderr: Any = None
        self.restarts = 0

    def start(self) -> None:
        self.stderr = tempfile.TemporaryFile()  # noqa: SIM115 (lives as long as the process; closed in stop)
        argv = ["ip", "netns", "exec", self.netns, sys.executable, str(AGENT), "--stdio"]
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr)
        self.responses = queue.Queue()
        reader = threading.Thread(target=self._read, args=(self.proc.stdout, self.responses), daemon=True)
        reader.start()

    @staticmethod
    def _read(stream: Any, into: queue.Queue[bytes | None]) -> None:
        for line in stream:
            into.put(line)
        into.put(None)

    def restart_if_gone(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            self.stop()
            self.restarts += 1
            self.start()

    def stderr_tail(self) -> str:
        if self.stderr is None:
            return ""
        self.stderr.seek(0)
        return self.stderr.read().decode("utf-8", "replace")[-3000:]

    def send(self, line: bytes) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        try:
            self.proc.stdin.write(line + b"\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass  # the agent is gone: the read that follows reports it

    def response(self, timeout: float, line: bytes) -> dict[str, Any]:
        try:
            raw = self.responses.get(timeout=max(timeout, 0.0))
        except queue.Empty:
            raise AssertionError(f"no response within the time limit to {line[:300]!r}") from None
        if raw is None:
            assert self.proc is not None
            self.proc.wait(5)
            raise AssertionError(
                f"the agent exited ({self.proc.returncode}) after {line[:300]!r}; its stderr:\n{self.stderr_tail()}"
            )
        assert raw.endswith(b"\n"), raw
        response = json.loads(raw)
        assert isinstance(response, dict), raw
        assert isinstance(response.get("ok"), bool), raw
        if not response["ok"]:
            assert isinstance(response.get("error"), str) and ERROR_NAME.fullmatch(response["error"]), raw
            assert isinstance(response.get("message"), str), raw
        return response

    def exchange(self, line: bytes, limit: float = 10.0) -> list[dict[str, Any]]:
        """Send one line and a sync hello; the responses to the line (sync excluded), checked for count."""
        expected = 0 if not line.strip() else 1
        sync_id = next(_sync_ids)
        self.send(line)
        self.send(json.dumps({"id": sync_id, "op": "hello"}).encode())
        got: list[dict[str, Any]] = []
        synced = False
        deadline = time.monotonic() + limit
        while not synced or len(got) < expected:
            response = self.response(deadline - time.monotonic(), line)
            if response.get("id") == sync_id:
                assert response["ok"] is True and response.get("protocol") == 1, response
                synced = True
            else:
                got.append(response)
            assert len(got) <= expected, f"{len(got)} responses to {line[:300]!r}: {got}"
        return got

    def stop(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(OSError):
            assert self.proc.stdin is not None
            self.proc.stdin.close()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        if self.stderr is not None:
            self.stderr.close()


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@pytest.fixture(scope="module")
def fuzzed_agent() -> Iterator[FuzzedAgent]:
    """One agent for the module, in a namespace of its own (lo up, no other address; connect refused)."""
    reason = _netns_unavailable()
    if reason:
        pytest.skip(reason)
    # tcpconf-test-*: the prefix the suite's leftover checks (tests/support.py) leave to the tests themselves.
    name = f"tcpconf-test-fuzz-{os.getpid()}"
    _ip("netns", "add", name)
    agent = FuzzedAgent(name)
    try:
        _ip("-n", name, "link", "set", "lo", "up")
        agent.start()
        yield agent
    finally:
        agent.stop()
        pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True, check=False).stdout
        for pid in pids.split():  # only the agents this module started can live in its namespace
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), 9)
        subprocess.run(["ip", "netns", "delete", name], check=False, capture_output=True)


class KnownHandle:
    """Placeholder for ``sock``: replaced by a handle the agent handed out in this example (if any)."""

    def __init__(self, index: int) -> None:
        self.index = index


json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),  # NaN and Infinity: see timeouts
    st.text(max_size=20),
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=10,
)
not_numbers = st.one_of(st.booleans(), st.text(max_size=10), st.lists(json_scalars, max_size=2))
# Never a long wait: small, negative, non-finite or absurd numbers, or ill-typed values (never null: null means
# the default, seconds long).
timeouts = st.one_of(
    st.integers(-3, 20),
    st.floats(-1.0, 20.0),
    st.sampled_from([float("nan"), float("inf"), float("-inf"), 1e12, 10**400]),
    not_numbers,
)
# Addresses are only ever bound (listen, connect's local_addr) inside the namespace, or refused (connect).
ADDR_ARGS = ["0.0.0.0", "::", "127.0.0.1", "::1", "198.18.0.1", "2001:2::1", "fe80::1%lo", "localhost", "256.1.1.1",
             "", "1.2.3.4\x00", "::ffff:127.0.0.1"]  # fmt: skip
ARG_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "family": st.sampled_from(["ipv4", "ipv6", "IPV4", "inet", ""]) | json_values,
    "addr": st.sampled_from(ADDR_ARGS) | json_values,
    "port": st.integers(-2, 70000) | json_values,
    "backlog": st.integers(-2, 100) | json_values,
    "rcvbuf": st.integers(-1, 1 << 20) | json_values,
    "sndbuf": st.integers(-1, 1 << 20) | json_values,
    "nodelay": st.booleans() | json_values,
    "sock": st.integers(0, 3).map(KnownHandle) | st.integers(-1, 6) | json_values,
    "local_addr": st.sampled_from(["0.0.0.0", "::", ""]) | json_values,
    "local_port": st.integers(-2, 70000) | json_values,
    "data": st.text(max_size=50) | json_values,
    "data_b64": st.sampled_from(["", "AAAA", "AA==", "A", "!!", "QUJD\n"]) | json_values,
    "len": st.integers(-5, 100_000) | not_numbers,  # no gigabyte payloads
    "max": st.integers(-5, 100_000) | not_numbers,
    "how": st.sampled_from(["rd", "wr", "rdwr", "RD", ""]) | json_values,
    "name": st.sampled_from(["nodelay", "keepalive", "rcvbuf", "sndbuf", "linger", "cork"]) | json_values,
    "value": st.none() | st.booleans() | st.integers(-2, 1 << 20) | json_values,
    "token": json_values,
}
int_ids = st.integers().filter(lambda i: not SYNC_BASE <= i < SYNC_BASE + 10**12)
request_ids = st.one_of(st.integers(0, 1000), int_ids, json_values.filter(lambda v: not isinstance(v, int)))
ops = st.sampled_from([op for op in AGENT_OPS if op != "bye"]) | json_values.filter(lambda v: v != "bye")
known_handles = st.integers(0, 3).map(KnownHandle)
listen_args = st.sampled_from(
    [{"family": "ipv4", "addr": "127.0.0.1"}, {"family": "ipv6", "addr": "::1"}, {"family": "ipv4"}, {"family": "ipv6"}]
).map(lambda args: {**args, "port": 0})
# Well-formed arguments of each op (on a handle of this example), which the fuzzer then breaks here and there.
WELL_FORMED: dict[str, st.SearchStrategy[dict[str, Any]]] = {
    "hello": st.just({}),
    "listen": listen_args,
    "accept": st.builds(lambda sock: {"sock": sock}, known_handles),
    "connect": st.builds(
        lambda family, port: {"family": family, "addr": "127.0.0.1" if family == "ipv4" else "::1", "port": port},
        st.sampled_from(["ipv4", "ipv6"]),
        st.integers(1, 65535),
    ),  # refused before any packet: the agent runs without --allow-connect
    "send": st.builds(
        lambda sock, payload: {"sock": sock, **payload},
        known_handles,
        st.sampled_from([{"data": "x"}, {"len": 10}, {"data_b64": "QUJD"}, {"data": ""}]),
    ),
    "recv": st.builds(lambda sock, limit: {"sock": sock, "max": limit}, known_handles, st.integers(1, 100)),
    "shutdown": st.builds(
        lambda sock, how: {"sock": sock, "how": how}, known_handles, st.sampled_from(["rd", "wr", "rdwr"])
    ),
    "close": st.builds(lambda sock: {"sock": sock}, known_handles),
    "abort": st.builds(lambda sock: {"sock": sock}, known_handles),
    "state": st.builds(lambda sock: {"sock": sock}, known_handles),
    "sockopt": st.builds(
        lambda sock, option: {"sock": sock, **option},
        known_handles,
        st.sampled_from(
            [
                {"name": "nodelay", "value": True},
                {"name": "keepalive", "value": False},
                {"name": "rcvbuf", "value": 4096},
                {"name": "sndbuf", "value": 4096},
                {"name": "linger", "value": None},
                {"name": "linger", "value": 0},
            ]
        ),
    ),
}


@st.composite
def agent_requests(draw: st.DrawFn) -> dict[str, Any]:
    """A request of a real op with well-formed arguments, or not: some arguments broken, some junk added."""
    op = draw(st.sampled_from(sorted(WELL_FORMED)))
    req: dict[str, Any] = {"id": draw(st.integers(0, 1000)), "op": op, **draw(WELL_FORMED[op])}
    if draw(st.booleans()):  # break it
        if draw(st.integers(0, 9)) == 0:
            del req["id"]
        elif draw(st.integers(0, 4)) == 0:
            req["id"] = draw(request_ids)
        if draw(st.integers(0, 9)) == 0:
            del req["op"]
        elif draw(st.integers(0, 4)) == 0:
            req["op"] = draw(ops)
        for name in draw(st.lists(st.sampled_from(sorted(ARG_VALUES)), unique=True, max_size=4)):
            req[name] = draw(ARG_VALUES[name])
        reserved = {"id", "op", "timeout_ms", *ARG_VALUES}
        junk = st.text(max_size=8).filter(lambda k: k not in reserved)
        req.update(draw(st.dictionaries(junk, json_values, max_size=2)))
    req["timeout_ms"] = draw(timeouts)
    return req


def _no_newline(data: bytes) -> bytes:
    return data.replace(b"\n", b" ")


ODD_LINES = [b"", b" ", b"\r", b"\t \x0b\x0c", b"{}", b"[]", b"null", b'{"id": true, "op": "hello"}', b"\xff\xfe"]


def _cut(request: dict[str, Any], at: int) -> bytes:
    return _no_newline(json.dumps(request, default=str)[:at].encode())


agent_lines = st.one_of(
    agent_requests(),
    agent_requests(),
    agent_requests(),
    st.binary(max_size=120).map(_no_newline),
    st.text(max_size=80).map(lambda t: _no_newline(t.encode("utf-8"))),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.builds(_cut, agent_requests(), st.integers(0, 200)),
    st.integers(1, 1200).map(lambda n: b"[" * n),
    st.integers(1, 1200).map(lambda n: b'{"id": 7, "op": "hello", "x": ' + b"[" * n + b"]" * n + b"}"),
    st.sampled_from(ODD_LINES),
)


def encode_request(item: Any, handles: list[int]) -> bytes:
    if isinstance(item, bytes):
        return item
    req = dict(item)
    if isinstance(req.get("sock"), KnownHandle):
        req["sock"] = handles[req["sock"].index % len(handles)] if handles else 0
    return json.dumps(req, default=str).encode()


def says_bye(line: bytes) -> bool:
    try:
        req = json.loads(line)
    except (ValueError, RecursionError):
        return False
    return isinstance(req, dict) and req.get("op") == "bye"


def expected_reply(line: bytes) -> tuple[Any, str | None]:
    """The id the agent must answer ``line`` with, and the error it must give (None: any outcome)."""
    try:
        req = json.loads(line.strip().decode("utf-8"))
    except (ValueError, RecursionError):
        return None, "EINVAL"
    if not isinstance(req, dict):
        return None, "EINVAL"
    req_id = req.get("id")
    if not isinstance(req_id, int) or isinstance(req_id, bool):
        return None, "EINVAL"
    if req.get("op") not in AGENT_OPS:
        return req_id, "EINVAL"
    return req_id, None


@FUZZ
@given(listen=st.none() | st.builds(lambda args: {"id": 0, "op": "listen", **args}, listen_args),
       items=st.lists(agent_lines, min_size=1, max_size=8))  # fmt: skip
def test_agent_answers_every_line_and_survives(
    fuzzed_agent: FuzzedAgent, listen: dict[str, Any] | None, items: list[Any]
) -> None:
    agent = fuzzed_agent
    if listen is not None:  # a socket for the requests on handles to work on
        items = [listen, *items]
    assume(not any(isinstance(item, bytes) and says_bye(item) for item in items))  # bye ends the session
    handles: list[int] = []
    try:
        for item in items:
            line = encode_request(item, handles)
            responses = agent.exchange(line)
            if not line.strip():
                assert responses == [], f"an empty line is ignored, got {responses}"
                continue
            (response,) = responses
            req_id, error = expected_reply(line)
            if line.count(b"[") + line.count(b"{") >= DEEP and response["id"] != req_id:
                # Nesting too deep for one side only (hypothesis runs tests with a raised recursion limit).
                req_id, error = None, "EINVAL"
            assert response.get("id") == req_id, (line[:300], response)
            if error is not None:
                assert response["ok"] is False and response["error"] == error, (line[:300], response)
            if response["ok"] and isinstance(response.get("sock"), int):
                handles.append(response["sock"])
        for handle in handles:  # leave no socket behind for the next example
            (response,) = agent.exchange(json.dumps({"id": 2, "op": "close", "sock": handle}).encode())
            assert response["ok"] or response["error"] == "EBADF", response
        (response,) = agent.exchange(b'{"id": 1, "op": "hello"}')
        assert response["id"] == 1 and response["ok"] is True, response
    finally:
        agent.restart_if_gone()  # after a crash: a fresh agent for the next example (and the shrinker)


# ---- 4. raw frames -------------------------------------------------------------------------------------

out_options = st.lists(
    st.one_of(
        st.builds(OutOption, st.just("mss"), st.integers(0, 0xFFFF)),
        st.builds(OutOption, st.just("wscale"), st.integers(0, 0xFF)),
        st.builds(OutOption, st.just("sackok")),
        st.builds(OutOption, st.just("nop")),
        st.builds(OutOption, st.just("ts"), st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1))),
        st.builds(OutOption, st.just("sack"), st.lists(st.integers(0, 2**32 - 1), max_size=4).map(tuple)),
        st.builds(
            lambda kind, data, length: OutOption("raw", kind=kind, data=data, length=length),
            st.integers(0, 255),
            st.binary(max_size=6),
            st.none() | st.integers(0, 255),
        ),
    ),
    max_size=4,
)


@st.composite
def valid_packets(draw: st.DrawFn) -> tuple[OutSegment, bytes]:
    family = draw(st.sampled_from(["ipv4", "ipv6"]))
    src, dst = ("198.18.0.2", "198.18.0.1") if family == "ipv4" else ("2001:2::2", "2001:2::1")
    options = draw(out_options)
    seg = OutSegment(
        family=family,
        src=src,
        dst=dst,
        sport=draw(st.integers(0, 0xFFFF)),
        dport=draw(st.integers(0, 0xFFFF)),
        seq=draw(st.integers(0, 2**32 - 1)),
        ack=draw(st.integers(0, 2**32 - 1)),
        flags=draw(st.integers(0, 0xFF)),
        window=draw(st.integers(0, 0xFFFF)),
        urgent=draw(st.integers(0, 0xFFFF)),
        options=options,
        payload=draw(st.binary(max_size=40)),
        bad_checksum=draw(st.booleans()),
        doff=draw(st.none() | st.integers(0, 15)),
        ttl=draw(st.integers(1, 255)),
        reserved=draw(st.integers(0, 15)),
    )
    try:
        return seg, build_packet(seg)
    except ValueError:  # options longer than 40 bytes: the builder refuses them
        reject()


def mutate(packet: bytes, edits: list[tuple[str, int, int, bytes]]) -> bytes:
    data = bytearray(packet)
    for kind, where, value, extra in edits:
        at = where % (len(data) + 1)
        if kind == "flip" and data:
            data[at % len(data)] ^= 1 << (value % 8)
        elif kind == "set" and data:
            data[at % len(data)] = value % 256
        elif kind == "truncate":
            del data[at:]
        elif kind == "extend":
            data += extra
        elif kind == "insert":
            data[at:at] = extra
        elif kind == "delete":
            del data[at : at + 1 + value % 8]
    return bytes(data)


edits = st.lists(
    st.tuples(
        st.sampled_from(["flip", "set", "truncate", "extend", "insert", "delete"]),
        st.integers(0, 200),
        st.integers(0, 255),
        st.binary(max_size=20),
    ),
    min_size=1,
    max_size=6,
)


def check_frame(packet: bytes) -> None:
    """Decoding never raises; what decodes is self-consistent and agrees with the fast flow key."""
    seg = parse_packet(packet)
    key = flow_key(packet)
    if seg is None:
        return
    seg.summary()
    for opt in seg.options:
        opt.describe()
    assert 0 <= seg.doff <= 15 and 0 <= seg.flags <= 0xFF and 0 <= seg.reserved <= 15
    assert key is not None, f"parse_packet decoded {seg.summary()!r} but flow_key did not: {packet.hex()}"
    af = socket.AF_INET if seg.family == "ipv4" else socket.AF_INET6
    assert (socket.inet_ntop(af, key[0]), socket.inet_ntop(af, key[1]), key[2], key[3]) == (
        seg.src, seg.dst, seg.sport, seg.dport
    )  # fmt: skip


@FUZZ
@given(packet=st.binary(max_size=200))
def test_arbitrary_bytes_never_break_the_decoder(packet: bytes) -> None:
    check_frame(packet)
    parse_options(packet)


@FUZZ
@given(packet=st.tuples(st.sampled_from([0x45, 0x46, 0x4F, 0x40, 0x60, 0x65]), st.binary(min_size=19, max_size=120)))
def test_ip_looking_bytes_never_break_the_decoder(packet: tuple[int, bytes]) -> None:
    first, rest = packet
    data = bytes([first]) + rest
    if first >> 4 == 4 and len(data) > 9:
        data = data[:9] + b"\x06" + data[10:]  # protocol TCP
    elif len(data) > 6:
        data = data[:6] + b"\x06" + data[7:]  # next header TCP
    check_frame(data)


@FUZZ
@given(built=valid_packets(), edits=edits)
def test_mutated_packets_never_break_the_decoder(built: tuple[OutSegment, bytes], edits: list[Any]) -> None:
    seg, packet = built
    decoded = parse_packet(packet)
    assert decoded is not None
    assert (decoded.sport, decoded.dport, decoded.seq, decoded.ack, decoded.flags, decoded.window) == (
        seg.sport, seg.dport, seg.seq, seg.ack, seg.flags, seg.window
    )  # fmt: skip
    check_frame(mutate(packet, edits))


@FUZZ
@given(
    raw=st.binary(max_size=60)
    | st.lists(st.sampled_from([b"\x00", b"\x01", b"\x02\x04\x05\xb4", b"\x08"]), max_size=10).map(b"".join)
)
def test_arbitrary_options_never_break_the_option_parser(raw: bytes) -> None:
    options = parse_options(raw)
    for opt in options:
        opt.value()
        opt.describe()
    assert all(not opt.malformed for opt in options[:-1]), "only the last option can be malformed"


# ---- regressions: what the fuzzers found (open ones xfail, strict: a fix makes them fail until unmarked) ------

CASE = """\
id: FUZZ-01
title: a fuzzed case
refs: [rfc9293:3.5]
requirement: a requirement written out in words
level: MUST
steps:
  - send: {flags: S, seq: l_isn}
"""


def case_error(text: str) -> str:
    with pytest.raises(CaseFormatError) as info:
        parse_case(text, SOURCE)
    message = str(info.value)
    assert_one_line_error(message, SOURCE, text)
    return message


def config_error(targets: str | bytes, expectations: str | bytes = "deviations: {}\n") -> tuple[str, Path, Path]:
    """The TargetConfigError of loading ``targets`` and the expectations of each entry (file e.yaml)."""
    with tempfile.TemporaryDirectory(prefix="tcpconf-fuzz-") as tmp:
        targets_file, expectations_file = Path(tmp) / "targets.yaml", Path(tmp) / "e.yaml"
        for path, content in ((targets_file, targets), (expectations_file, expectations)):
            path.write_bytes(content if isinstance(content, bytes) else content.encode())
        with pytest.raises(TargetConfigError) as info:
            for entry in load_targets(targets_file).values():
                load_expectations(targets_file, entry)
        return str(info.value), targets_file, expectations_file.resolve()


WITH_EXPECTATIONS = "targets:\n  local: {kind: local, expectations: e.yaml}\n"


@pytest.mark.parametrize(
    "text",
    [
        "a: !!timestamp 2001-13-01\n",  # was ValueError: month must be in 1..12
        "a: !!timestamp 2001-12-14 25:59:43\n",  # was ValueError: hour must be in 0..23
        "a: !!timestamp 2001-12-14t21:59:43.10-25:00\n",  # was ValueError: offset must be a timedelta ...
        "a: !!int x\n",  # was ValueError: invalid literal for int() with base 10: 'x'
        "a: !!float .\n",  # was ValueError: could not convert string to float: '.'
        "!!str [1]\n",  # was TypeError in _Positions.walk: argument of type 'NoneType' is not iterable
        "a: !!str [1]\n",
        pytest.param("a: !!bool x\n"),  # KeyError: 'x'
        pytest.param("!!int\n"),  # IndexError: string index out of range
        pytest.param("a: !!int 0x_\n"),  # IndexError: string index out of range
        pytest.param("!!set \n"),  # AttributeError: 'ScalarNode' ... 'flow_style'
    ],
    ids=["month-13", "hour-25", "offset-25h", "int-tag", "float-tag", "str-seq", "str-seq-value",
         "bool-tag", "empty-int", "int-0x_", "set-scalar"],
)  # fmt: skip
def test_a_node_yaml_cannot_build_is_a_case_format_error(text: str) -> None:
    case_error(text)


@pytest.mark.parametrize("which", ["targets", "expectations"])
def test_a_node_yaml_cannot_build_is_a_target_config_error(which: str) -> None:
    if which == "targets":
        message, source, _ = config_error("targets:\n  local: {kind: local, description: !!timestamp 2001-13-01}\n")
    else:
        text = "deviations:\n  X: {verdict: FAIL, reason: !!timestamp 2001-13-01}\n"
        message, _, source = config_error(WITH_EXPECTATIONS, text)
    assert_one_line_error(message, str(source))


@pytest.mark.parametrize(
    ("kind", "text"),
    [
        ("case", CASE + '"a\\nb": 1\n'),  # was: fuzz.yaml:8:1: a<LF>b: unknown key
        ("case", CASE + "'\x85\x85': 1\n"),  # a quoted NEL NEL folds into the key "\n"
        ("case", CASE + '  - {"a\\nb": 1}\n'),  # ... unknown step 'a<LF>b' ...
        ("case", CASE + '  - send: {flags: S, "x\\ny": 1}\n'),
        ("case", CASE + '  - expect: {flags: A, options: {"a\\nb": 1}}\n'),
        ("case", CASE + '  - send: {flags: "S\\nA"}\n'),  # ... unknown flag '<LF>' ...
        ("case", CASE + '  - expect: {bind: {x: "se\\nq"}}\n'),  # ... cannot bind 'se<LF>q' ...
        ("case", CASE + "  - expect_one_of:\n"
         '      - {label: a, behaviour: b, expect: {flags: R}, conforms: ["rfc\\n1"]}\n'
         "      - {label: b, behaviour: b, expect: {flags: R}}\n"),  # ... unknown profile 'rfc<LF>1' ...
        ("case", "!!timestamp |\n  id: FUZZ-01\n"),  # ... YAML: failed to construct timestamp from "id: FUZZ-01<LF>"
        ("case", "a: |\n  x\n  y\na: 1\n"),  # ... found duplicate key "a" with value "1" (original value: "x<LF>y<LF>")
        ("case", '"a\\nb": 1\n"a\\nb": 2\n'),  # ... found duplicate key "a<LF>b" ...
        ("targets", 'targets:\n  "a\\nb": {kind: local}\n'),  # ... bad target name 'a<LF>b' ...
        ("targets", 'targets:\n  a: {kind: "lo\\ncal"}\n'),  # ... unknown kind 'lo<LF>cal' ...
        ("targets", 'targets:\n  a: {kind: local, sysctls: {"net.a\\nb": 1}}\n'),
        ("expectations", 'deviations: {"X\\nY": 1}\n'),  # ... 'X<LF>Y' is not a case id ...
    ],
    ids=["case-key", "nel-key", "step-name", "send-key", "option-name", "flags", "bind", "conforms", "timestamp",
         "duplicate-key-value", "duplicate-key", "target-name", "target-kind", "sysctl", "deviation-id"],
)  # fmt: skip
def test_text_with_a_line_break_gives_one_error_line(kind: str, text: str) -> None:
    """Keys and values used to be copied into the error unescaped: a line break in them split the error."""
    if kind == "case":
        case_error(text)
    elif kind == "targets":
        message, source, _ = config_error(text)
        assert_one_line_error(message, str(source))
    else:
        message, _, source = config_error(WITH_EXPECTATIONS, text)
        assert_one_line_error(message, str(source))


@pytest.mark.parametrize(
    ("extra", "path"),
    [
        ("Bogus: 1\n", "Bogus"),  # was reported as '(top)' at 1:1
        ("  - send: {flags: S, Seq: 1}\n", "steps[1].send.Seq"),  # was reported at the send body
        pytest.param("Level: 1\n", "Level"),
        pytest.param("SendSpec: 1\n", "SendSpec"),
        pytest.param("x[1]: 1\n", "x[1]"),
        pytest.param("  - send: {flags: S, Level: 1}\n", "steps[1].send.Level"),
    ],
    ids=["upper-case", "upper-case-field", "model-name", "model-name-2", "bracket", "model-name-field"],
)
def test_an_unknown_key_is_named_where_it_is(extra: str, path: str) -> None:
    message = case_error(CASE + extra)
    assert f": {path}: unknown key" in message and message.startswith(f"{SOURCE}:8:"), message


@pytest.mark.parametrize("which", ["targets", "expectations"])
def test_a_non_utf8_config_file_is_one_error_line(which: str) -> None:
    """Was: UnicodeDecodeError escaped load_targets and load_expectations."""
    targets = "targets:\n  local: {kind: local, description: caf\xe9, expectations: e.yaml}\n"
    expectations = "deviations:\n  X: {verdict: FAIL, reason: caf\xe9 au lait}\n".encode("latin-1")
    if which == "targets":
        message, source, _ = config_error(targets.encode("latin-1"), expectations)
    else:
        message, _, source = config_error(targets.encode(), expectations)
    assert_one_line_error(message, str(source))
    assert message.startswith(f"{source}:2:"), message  # where the byte 0xe9 is


def test_the_agent_answers_a_deeply_nested_line(fuzzed_agent: FuzzedAgent) -> None:
    """Was: json.loads raised RecursionError, which nothing caught: the agent died with a traceback."""
    agent = FuzzedAgent(fuzzed_agent.netns)  # a process of its own: the module's agent is not put at risk
    agent.start()
    try:
        for deep in (b"[" * 1000, b'{"a":' * 100_000):
            (response,) = agent.exchange(deep)
            assert (response["id"], response["ok"], response["error"]) == (None, False, "EINVAL"), response
        (hello,) = agent.exchange(b'{"id": 1, "op": "hello"}')
        assert hello["ok"] is True
    finally:
        agent.stop()


@pytest.mark.parametrize("timeout", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_the_agent_answers_a_non_finite_timeout(fuzzed_agent: FuzzedAgent, timeout: str) -> None:
    """Was, for NaN: poll() raised ValueError, which wait_ready swallowed; the thread spun, never answering."""
    agent = FuzzedAgent(fuzzed_agent.netns)
    agent.start()
    try:
        (listener,) = agent.exchange(b'{"id": 1, "op": "listen", "family": "ipv4", "addr": "127.0.0.1", "port": 0}')
        line = b'{"id": 2, "op": "accept", "sock": %d, "timeout_ms": %s}' % (listener["sock"], timeout.encode())
        (response,) = agent.exchange(line, limit=1.5)  # a healthy agent answers within milliseconds
        assert (response["id"], response["ok"], response["error"]) == (2, False, "EINVAL"), response
    finally:
        agent.stop()
