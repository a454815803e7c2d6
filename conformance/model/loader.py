"""Load YAML case files into validated cases, with errors that name file:line:col and the field.

Rules of this module: a case file becomes a ``Case`` (its metadata and a flat list of ``Step``) or exactly one
``CaseFormatError`` line ``file:line:col: path: message`` at the first problem. A ``use`` step is expanded here into
the fragment's steps (conformance/model/fragment.py), each carrying the ``use`` step's line and its ``origin``; the
engine never sees a ``use``. Tags must be in the tag registry (conformance/model/tags.py). A step that changes what
other cases see (restart, syn_flood, isn_sample) needs the case to declare ``alone``. Every name an expression
uses is bound before its step (by the engine, an earlier step, or a target's declared timer).
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import functools
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from ..vocabulary import TIMER_NAMES
from ..yamlfile import Document, Path_, load_validated, parse_yaml
from .builder import Case, CaseBuilder, CaseFormatError, ParsedAlternative, Step
from .cache import CaseCache
from .case import CaseMeta
from .expr import Expr
from .fragment import Fragment, expand, load_fragments
from .suggest import did_you_mean
from .tags import TAGS_FILE, load_tags, tags_source

__all__ = ["Case", "CaseFormatError", "ParsedAlternative", "Step", "build_case", "load_case", "parse_case"]


def parse_case(
    text: str, source: str, file: Path | None = None, fragments: Mapping[str, Fragment] | None = None
) -> Case:
    """A case from YAML text; ``fragments`` replaces the shipped fragments (for tests)."""
    document = parse_yaml(text, source, CaseFormatError)
    try:
        return build_case(document, file or Path(source), fragments)
    except RecursionError:
        raise CaseFormatError(f"{source}:1:1: (top): YAML nested too deeply") from None


def build_case(document: Document, file: Path, fragments: Mapping[str, Fragment] | None = None) -> Case:
    located = document.located(CaseFormatError)
    known = load_fragments() if fragments is None else fragments
    builder = CaseBuilder(located, lambda b, raw, path: expand(b, raw, path, known))
    data = document.data
    if not isinstance(data, dict):
        raise builder.error((), "a case file is a mapping (id, title, refs, ..., steps)")
    meta = builder.validate(CaseMeta, data, ())
    _check_tags(builder, meta.tags)
    steps = builder.steps(data["steps"], ("steps",))
    if meta.alone is None:
        _require_alone(builder, steps)
    _check_names(builder, steps)
    ref_places = tuple(located.positions.find(("refs", i)) for i in range(len(meta.refs)))
    return Case(meta=meta, steps=steps, file=file, line=located.line_of(()), ref_places=ref_places)


def _check_tags(builder: CaseBuilder, tags: list[str]) -> None:
    """Every tag is in the registry (with a did-you-mean), and each at most once."""
    known = load_tags()
    for i, tag in enumerate(tags):
        if tag not in known:
            message = f"unknown tag '{tag}'{did_you_mean(tag, known)}: the tags are listed in {tags_source(TAGS_FILE)}"
            raise builder.error(("tags", i), message)
        if tag in tags[:i]:
            raise builder.error(("tags", i), f"tag '{tag}' is given twice")


ALONE_STEPS = {
    "restart": "restarts the stack (every connection of other cases would go)",
    "syn_flood": "floods the stack (other cases would meet its load and its SYN cookies)",
    "isn_sample": "samples the stack's ISNs (other cases' connections would move a counter-based ISN)",
}


def _require_alone(builder: CaseBuilder, steps: list[Step]) -> None:
    """A step that changes what other cases see needs the case to say so (``alone:``), so it runs alone."""
    for step in steps:
        if step.kind == "isn_sample" and step.spec.same_port:
            continue  # one 4-tuple again and again: other connections only add to a counter's increase
        if step.kind in ALONE_STEPS:
            raise builder.error(
                _parse_path(step.path),
                f"this step {ALONE_STEPS[step.kind]}: declare `alone: <why>` so the case runs with no other in flight",
            )
        if step.kind == "expect_one_of":
            for alternative in step.spec:
                _require_alone(builder, alternative.then)


def _parse_path(text: str) -> Path_:
    """``steps[3].expect_one_of[0].then[1]`` back into its parts."""
    parts: list[str | int] = []
    for name, index in re.findall(r"([A-Za-z_]+)|\[(\d+)\]", text):
        parts.append(name if name else int(index))
    return tuple(parts)


def load_case(path: Path, root: Path | None = None, fragments: Mapping[str, Fragment] | None = None) -> Case:
    """Read and validate one case file; the error text names the path relative to ``root``. A file parsed before
    and unchanged since comes from the cache of parsed cases (conformance/model/cache.py)."""
    try:
        source = str(path.relative_to(root)) if root else str(path)
    except ValueError:
        source = str(path)
    cache, key = (_cache(), None) if fragments is None else (None, None)
    if cache is not None:
        with contextlib.suppress(OSError):
            key = cache.file_key(path, path.read_bytes())
            hit = cache.get(path, key)
            if hit is not None:
                return dataclasses.replace(hit, file=path)
    case = load_validated(path, lambda document: build_case(document, path, fragments), CaseFormatError, source)
    if cache is not None and key is not None:
        cache.put(path, key, case)
    return case


@functools.cache
def _cache() -> CaseCache | None:
    """The process's cache of parsed cases, written back when the process ends; None when disabled
    (TCPCONF_NO_CASE_CACHE=1)."""
    if os.environ.get("TCPCONF_NO_CASE_CACHE"):
        return None
    cache = CaseCache()
    atexit.register(cache.save)
    return cache


# ---- names: an expression may use only what the run has bound before it ------------------------------------------
INITIAL_NAMES = frozenset({"l_isn", "l_nxt", "l_port", "t_port", "l_tsval"})  # conformance/engine/steps.py
# A target's declared timers (targets.yaml `timers:`, TimersConfig.env): durations in microseconds with their
# tolerance window (_low_us, _high_us), counts as they are.
TIMER_UNITS = ("", "_us", "_low_us", "_high_us")
TIMER_NAMES_BOUND = frozenset(f"timer_{name}{unit}" for name in TIMER_NAMES for unit in TIMER_UNITS)
# What accepting one of the target's segments binds (conformance/engine/lower.py): its ISN, next sequence number,
# window scale, MSS, timestamp value, window and acknowledgment (each when the segment carries it).
SEGMENT_NAMES = frozenset({"t_isn", "t_nxt", "t_ws", "t_mss", "t_tsval", "t_win", "t_ack"})
SEGMENT_STEPS = ("expect", "expect_one_of", "expect_count")
ISN_NAMES = frozenset(f"isn_{k}" for k in ("count", "gcd", "isr", "sp", "repeats", "increases"))
FLOOD_NAMES = frozenset({"flood_sent", "flood_rate", "flood_synacks", "flood_capture_drops"})


def _check_names(builder: CaseBuilder, steps: list[Step], bound: set[str] | None = None) -> set[str]:
    """Every name an expression uses is bound before it (by the engine, an earlier step or a declared timer);
    a name nothing binds is a typo (``l_isnn``), reported at its step with a did-you-mean. Returns what is bound
    after the steps (what an ``expect_one_of`` branch binds counts only within the branch)."""
    bound = set(INITIAL_NAMES) if bound is None else bound
    for step in steps:
        if step.kind == "expect_one_of":
            for alternative in step.spec:
                _check_names_in(builder, step, alternative.alt, bound)
                _check_names(builder, alternative.then, bound | SEGMENT_NAMES | _binds(alternative.alt))
            bound |= SEGMENT_NAMES
            continue
        _check_names_in(builder, step, step.spec, bound)
        if step.kind in SEGMENT_STEPS:
            bound |= SEGMENT_NAMES
        bound |= _bound_by(step)
    return bound


def _check_names_in(builder: CaseBuilder, step: Step, spec: Any, bound: set[str]) -> None:
    known = bound | _binds(spec)  # an expect may use what its own bind takes (checks after the match)
    for name in sorted(_names_used(spec)):
        if name not in known and name not in TIMER_NAMES_BOUND:
            hint = did_you_mean(name, known | TIMER_NAMES_BOUND)
            raise builder.error(
                _parse_path(step.path),
                f"'{name}' is not bound before this step{hint}: the names are {', '.join(sorted(known))}, "
                "a declared timer's timer_<name>_us or timer_<count>, and what bind, record, isn_sample and syn_flood "
                "steps set",
            )


def _bound_by(step: Step) -> set[str]:
    names = _binds(step.spec)
    if step.kind == "bind":
        names |= set(step.spec.values)
    if step.kind == "isn_sample":
        names |= ISN_NAMES
    if step.kind == "syn_flood":
        names |= FLOOD_NAMES
    return names


def _binds(spec: Any) -> set[str]:
    """The names a spec binds itself: an expect's ``bind:`` (also within an alternative), a count's ``record:``."""
    if not isinstance(spec, BaseModel):
        return set()
    names: set[str] = set()
    bind, record = getattr(spec, "bind", None), getattr(spec, "record", None)
    if isinstance(bind, dict):
        names |= set(bind)
    if isinstance(record, str):
        names.add(record)
    for field in type(spec).model_fields:
        if field not in ("bind", "record"):
            names |= _binds(getattr(spec, field))
    return names


def _names_used(value: Any) -> set[str]:
    """The names of every expression in a step's spec, however deep."""
    if isinstance(value, Expr):
        return set(value.names)
    if isinstance(value, BaseModel):
        return set().union(*(_names_used(getattr(value, f)) for f in type(value).model_fields))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):  # a Matcher: its bounds are expressions
        return set().union(*(_names_used(getattr(value, f.name)) for f in dataclasses.fields(value)))
    if isinstance(value, list | tuple | set | frozenset):
        return set().union(*(_names_used(v) for v in value))
    if isinstance(value, dict):
        return set().union(*(_names_used(v) for v in value.values()))
    return set()
