"""Value types of the case format: TCP flags, durations and matchers for expected fields."""

from __future__ import annotations

import errno
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, PlainSerializer, PlainValidator, WithJsonSchema

from ..tcp import format_flags, parse_flags
from ..vocabulary import CAPABILITIES, TCP_STATES
from .expr import Expr, ExprError
from .suggest import did_you_mean

Flags = Annotated[
    int,
    BeforeValidator(parse_flags),
    PlainSerializer(format_flags, return_type=str),
    WithJsonSchema({"type": "string", "pattern": "^[FSRPAUEC.]*$|^none$", "description": "TCP flags"}),
]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(us|ms|s|min)?\s*$")
_UNIT = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "min": 60.0, None: 1.0}


def parse_duration(value: Any) -> float:
    """``300ms``, ``1.5s``, ``2min`` or a number of seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION.match(value)):
        seconds = float(m.group(1)) * _UNIT[m.group(2)]
    else:
        raise ValueError(f"bad duration {value!r}: write e.g. 300ms, 1.5s or 2min")
    if seconds < 0 or seconds > 3600:
        raise ValueError(f"duration {value!r} out of range (0 to 1 hour)")
    return seconds


Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    WithJsonSchema({"anyOf": [{"type": "number"}, {"type": "string", "pattern": r"^\d+(\.\d+)?(us|ms|s|min)?$"}]}),
]


def parse_expr(value: Any) -> Expr:
    if isinstance(value, Expr):
        return value
    try:
        return Expr.parse(value)
    except ExprError as exc:
        raise ValueError(str(exc)) from None


Expression = Annotated[
    Expr,
    PlainValidator(parse_expr),
    PlainSerializer(str, return_type=str),
    WithJsonSchema({"anyOf": [{"type": "integer"}, {"type": "string"}], "description": "expression mod 2^32"}),
]


@dataclass(frozen=True)
class Matcher:
    """What an expected field may be: any value, absent, one value, or an inclusive range.

    Written as ``any``, ``absent``, an integer or expression (``t_isn + 1``), or a range ``1..14``
    whose ends are expressions too (``l_isn..l_isn + 100``).
    """

    kind: str  # "any" | "absent" | "eq" | "range"
    low: Expr | None = None
    high: Expr | None = None

    def describe(self, env: Mapping[str, int] | None = None) -> str:
        def show(e: Expr) -> str:
            if env is None or e.text.lstrip("-").isdigit():
                return e.text
            try:
                return f"{e.text}(={e.evaluate(env)})"
            except ExprError:
                return e.text

        if self.kind in ("any", "absent"):
            return self.kind
        if self.kind == "eq":
            return show(self.low)  # type: ignore[arg-type]
        return f"{show(self.low)}..{show(self.high)}"  # type: ignore[arg-type]

    def __str__(self) -> str:
        return self.describe()


def parse_matcher(value: Any) -> Matcher:
    if isinstance(value, Matcher):
        return value
    if isinstance(value, str):
        text = value.strip()
        if text.lower() in ("any", "*"):
            return Matcher("any")
        if text.lower() == "absent":
            return Matcher("absent")
        if ".." in text:
            low, _, high = text.partition("..")
            return Matcher("range", parse_expr(low), parse_expr(high))
    return Matcher("eq", parse_expr(value))


Match = Annotated[
    Matcher,
    PlainValidator(parse_matcher),
    PlainSerializer(str, return_type=str),
    WithJsonSchema(
        {"anyOf": [{"type": "integer"}, {"type": "string"}], "description": "any | absent | N | expr | a..b"}
    ),
]


def _known_capability(name: str) -> str:
    if name not in CAPABILITIES:
        raise ValueError(
            f"unknown capability '{name}'{did_you_mean(name, CAPABILITIES)}: the capabilities are ut, ut.<call>, "
            "tcp.<feature>, timers.<name>, net.broadcast, target.restart, flood and svc.echo (docs/case-format.md)"
        )
    return name


# A capability a case requires or a target declares: a typo would make a case NOT-RUN everywhere, silently.
Capability = Annotated[str, AfterValidator(_known_capability)]


def _known_state(name: str) -> str:
    if name not in TCP_STATES:
        hint = did_you_mean(name, TCP_STATES)
        raise ValueError(f"unknown state '{name}'{hint}: the states are {', '.join(TCP_STATES)}")
    return name


# A connection state the upper tester reports (RFC 9293 section 3.3.2): a typo would FAIL every target.
State = Annotated[str, AfterValidator(_known_state)]


def check_fits(expr: Expr, bits: int, what: str) -> Expr:
    """A literal value (an expression without names) must fit its header field: a typo such as 1e38 or a window
    of 70000 is an error of the case, not a segment the tester silently truncates. Expressions with names are
    evaluated modulo 2^32 when the step runs."""
    limit = (1 << bits) - 1
    if not expr.names:
        value = expr.evaluate({}, wrap=False)
        if not 0 <= value <= limit:
            raise ValueError(f"{what} is {bits} bits: 0..{limit}, not {value}")
    return expr


def _bounded(bits: int) -> Any:
    return Annotated[
        Expr,
        PlainValidator(lambda raw: check_fits(parse_expr(raw), bits, "this field")),
        PlainSerializer(str, return_type=str),
        WithJsonSchema({"anyOf": [{"type": "integer"}, {"type": "string"}], "description": f"{bits}-bit value"}),
    ]


Expression16 = _bounded(16)  # window, urgent pointer, ports
Expression32 = _bounded(32)  # sequence and acknowledgment numbers


def check_matcher_fits(matcher: Matcher, bits: int) -> Matcher:
    """An expected value or range written with literals fits its field, and a literal range is not reversed: a
    FAIL for ack 4294967296 or an ERROR for 5..2 would be the case's typo, not the target's deviation."""
    for bound in (matcher.low, matcher.high):
        if bound is not None:
            check_fits(bound, bits, "this field")
    low, high = matcher.low, matcher.high
    constant = low is not None and high is not None and not low.names and not high.names
    if matcher.kind == "range" and constant and low.evaluate({}, wrap=False) > high.evaluate({}, wrap=False):  # type: ignore[union-attr]
        raise ValueError(f"the range {low.text}..{high.text} is empty (its low end is above its high end)")  # type: ignore[union-attr]
    return matcher


def _bounded_match(bits: int) -> Any:
    return Annotated[
        Matcher,
        PlainValidator(lambda raw: check_matcher_fits(parse_matcher(raw), bits)),
        PlainSerializer(str, return_type=str),
        WithJsonSchema({"anyOf": [{"type": "integer"}, {"type": "string"}], "description": f"{bits}-bit match"}),
    ]


Match16 = _bounded_match(16)  # window, urgent pointer, payload length
Match32 = _bounded_match(32)  # sequence and acknowledgment numbers


def _known_result(name: str) -> str:
    if name not in UT_RESULTS:
        hint = did_you_mean(name, UT_RESULTS)
        raise ValueError(f"unknown result '{name}'{hint}: ok, any, or an errno name such as ECONNREFUSED")
    return name


# What an upper-tester call may end with: ok, any, or an errno name (a misspelt one would FAIL every target).
UT_RESULTS = frozenset({"ok", "any", *(name for name in dir(errno) if name.startswith("E") and name.isupper())})
UtResult = Annotated[str, AfterValidator(_known_result)]
