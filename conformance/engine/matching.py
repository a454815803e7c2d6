"""Comparing a received segment with an expectation, and describing both for a person."""

from __future__ import annotations

from collections.abc import Mapping

from ..model.case import ExpectNoneSpec, ExpectSpec
from ..model.expr import ExprError
from ..model.values import Matcher
from ..tcp import ECN_MATCHES, ECN_NAMES, format_flags
from ..wire.segment import Segment


def value_matches(m: Matcher, value: int | None, env: Mapping[str, int], *, wraps: bool = True) -> bool:
    if m.kind == "any":
        return value is not None
    if m.kind == "absent":
        return value is None
    if value is None:
        return False
    if m.kind == "eq":
        return value == m.low.evaluate(env)  # type: ignore[union-attr]
    low, high = m.low.evaluate(env), m.high.evaluate(env)  # type: ignore[union-attr]
    if low <= high:
        return low <= value <= high
    if not wraps:
        raise ExprError(f"empty range {m.describe(env)}: only sequence numbers wrap around 2**32")
    return value >= low or value <= high  # a range that wraps around 2**32


def eol_padding(seg: Segment) -> int:
    """How many bytes after an End of Option List option are not zero (0 without EOL; RFC 9293 MUST-69)."""
    start = ((seg.raw[0] & 0x0F) * 4 if seg.family == "ipv4" else 40) + 20
    raw = seg.raw[start : start - 20 + seg.doff * 4]
    i = 0
    while i < len(raw):
        if raw[i] == 0:
            return sum(1 for b in raw[i + 1 :] if b)
        if raw[i] == 1:
            i += 1
        elif i + 1 < len(raw) and raw[i + 1] >= 2:
            i += raw[i + 1]
        else:
            return 0  # a malformed option ends the walk: there is no EOL to speak of
    return 0


def _option_value(seg: Segment, name: str) -> int | None:
    """The option's value as an int (1 for presence-only options), or None when absent."""
    if name == "eol_padding":
        return eol_padding(seg)
    if name in ("tfo", "tfo_cookie"):  # TCP Fast Open: the cookie's length (0: a request), or its value
        opt = seg.option("tfo")
        if opt is None or opt.malformed:
            return None
        return len(opt.data) if name == "tfo" else int.from_bytes(opt.data, "big")
    if name in ("ts_val", "ts_ecr"):
        opt = seg.option("ts")
        v = opt.value() if opt else None
        return None if not isinstance(v, tuple) else v[0 if name == "ts_val" else 1]
    opt = seg.option(name)
    if opt is None:
        return None
    v = opt.value()
    if isinstance(v, int):
        return v
    return 1


FIELDS = ("seq", "ack", "window", "len", "end_seq", "urgent", "reserved")
WRAPPING = ("seq", "ack", "end_seq", "ts_val", "ts_ecr")  # sequence-space fields: a range may wrap


def segment_field(seg: Segment, name: str, ts_us: int | None = None) -> int | None:
    if name == "time_us":
        return ts_us
    if name == "len":
        return len(seg.payload)
    if name == "flags":
        return seg.flags
    if name == "end_seq":
        return seg.end_seq
    if name.startswith("opt."):
        return _option_value(seg, name[4:])
    return getattr(seg, name)


def mismatches(spec: ExpectSpec | ExpectNoneSpec, seg: Segment, env: Mapping[str, int]) -> list[str]:
    """Every way ``seg`` differs from ``spec``; empty when it matches. Raises ExprError on unbound names."""
    out: list[str] = []
    if spec.flags is not None:
        keep = ~spec.ignore_flags & 0xFF
        if seg.flags & keep != spec.flags & keep:
            out.append(f"flags: expected {format_flags(spec.flags)}, got {format_flags(seg.flags)}")
    for name in FIELDS:
        m: Matcher | None = getattr(spec, name, None)
        if m is None:
            continue
        actual = segment_field(seg, name)
        if not value_matches(m, actual, env, wraps=name in WRAPPING):
            out.append(f"{name}: expected {m.describe(env)}, got {actual}")
    data = getattr(spec, "data", None)
    if data is not None and seg.payload != data.encode():
        out.append(f"data: expected {data.encode()!r}, got {seg.payload[:64]!r}")
    ecn = getattr(spec, "ecn", None)
    if ecn is not None and seg.ecn not in ECN_MATCHES[ecn]:
        out.append(f"ecn: expected {ecn}, got {ECN_NAMES[seg.ecn]}")
    if getattr(spec, "checksum", "any") == "good" and not seg.checksum_ok:
        out.append(f"checksum: expected a correct TCP checksum, got 0x{seg.checksum:04x} (wrong)")
    for name, m in (getattr(spec, "options", None) or {}).items():
        actual = _option_value(seg, name)
        if not value_matches(m, actual, env, wraps=name in WRAPPING):
            shown = "absent" if actual is None else ("present" if name in ("sackok", "sack") else actual)
            out.append(f"option {name}: expected {m.describe(env)}, got {shown}")
    return out


def matches(spec: ExpectSpec | ExpectNoneSpec, seg: Segment, env: Mapping[str, int]) -> bool:
    try:
        return not mismatches(spec, seg, env)
    except ExprError:
        return False


def describe(spec: ExpectSpec | ExpectNoneSpec, env: Mapping[str, int]) -> str:
    """The expectation in the same shape as a segment summary, with expressions and their values."""
    parts = [format_flags(spec.flags) if spec.flags is not None else "(any flags)"]
    for name in FIELDS:
        m = getattr(spec, name, None)
        if m is not None:
            parts.append(f"{'win' if name == 'window' else name} {m.describe(env)}")
    if getattr(spec, "ecn", None) is not None:
        parts.append(f"ecn {spec.ecn}")  # type: ignore[union-attr]
    opts = getattr(spec, "options", None)
    if opts:
        parts.append("<" + ",".join(f"{k} {m.describe(env)}" for k, m in opts.items()) + ">")
    return " ".join(parts)
