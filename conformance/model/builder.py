"""Building a case document's steps: the ``Step`` the engine runs, and the errors that name their place.

Rules of this module: every step of a case (and of a fragment) is built here from plain YAML data into a validated
``Step``, or exactly one ``CaseFormatError`` line ``file:line:col: path: message`` at the first problem. A ``use``
step is handed to the expander the caller gives (conformance/model/loader.py passes the fragments'), so this
module knows nothing of fragments; it knows nothing of files either.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from ..yamlfile import DocumentError, Located, Path_, format_path
from .case import PRECONDITION_KINDS, STEP_MODELS, STEP_REMARKS, USE_STEP, Alternative, CaseMeta


class CaseFormatError(DocumentError):
    """One line: ``file:line:col: field.path: message``."""


@dataclass(frozen=True)
class Step:
    """A validated step with its place in the file."""

    kind: str
    spec: Any  # the action model, or a list of ParsedAlternative for expect_one_of
    path: str
    line: int
    note: str | None = None
    origin: str | None = None  # expanded from a fragment: "fragment-name[index]"
    precondition: str | None = None  # the step sets up what the case needs: failing it is INCONCLUSIVE, not FAIL


@dataclass(frozen=True)
class ParsedAlternative:
    alt: Alternative
    then: list[Step]
    line: int


@dataclass(frozen=True)
class Case:
    meta: CaseMeta
    steps: list[Step]
    file: Path
    line: int = 1
    extra: dict[str, Any] = field(default_factory=dict)
    ref_places: tuple[tuple[int, int], ...] = ()  # line and column of each entry of meta.refs

    def ref_place(self, index: int) -> tuple[int, int]:
        """Where ``refs[index]`` is written (the case's first line when unknown)."""
        return self.ref_places[index] if index < len(self.ref_places) else (self.line, 1)

    @property
    def id(self) -> str:
        return self.meta.id


class CaseBuilder:
    """Builds the steps of one case document, with errors at their places.

    ``expand`` turns a ``use`` step into the fragment's steps (the loader passes conformance/model/fragment.py's;
    without it a ``use`` is an error); ``origin`` is set while building the steps of one fragment step
    ("passive-open[2]"): such steps carry it, and a ``use`` among them is refused (fragments do not use fragments).
    """

    def __init__(self, located: Located, expand: Expander | None = None, origin: str | None = None) -> None:
        self.located = located
        self.expand = expand
        self.origin = origin

    def error(self, path: Path_, message: str, *, at_key: bool = False) -> DocumentError:
        return self.located.at(path, message, at_key=at_key)

    def validate(self, model: type[BaseModel], data: Any, path: Path_) -> Any:
        return self.located.validate(model, data, path)

    def steps(self, raw: Any, path: Path_) -> list[Step]:
        if not isinstance(raw, list):
            raise self.error(path, "steps must be a list")
        out: list[Step] = []
        for i, item in enumerate(raw):
            if isinstance(item, dict) and [k for k in item if k != "note"] == [USE_STEP]:
                out.extend(self.use(item, (*path, i)))
            else:
                out.append(self.step(item, (*path, i)))
        return out

    def use(self, raw: dict[str, Any], path: Path_) -> list[Step]:
        """A ``use`` step: the fragment's steps, expanded with the parameters given."""
        if self.origin is not None or self.expand is None:
            raise self.error((*path, USE_STEP), "a fragment does not use other fragments", at_key=True)
        return self.expand(self, raw, path)

    def step(self, raw: Any, path: Path_) -> Step:
        known = ", ".join([*STEP_MODELS, USE_STEP])
        if not isinstance(raw, dict):
            raise self.error(path, f"a step is a mapping with one action ({known})")
        note = raw.get("note")
        precondition = raw.get("precondition")
        actions = [k for k in raw if k not in STEP_REMARKS]
        unknown = [k for k in actions if k not in STEP_MODELS and k != USE_STEP]
        if unknown:
            raise self.error((*path, unknown[0]), f"unknown step '{unknown[0]}' (known: {known})", at_key=True)
        if len(actions) != 1:
            raise self.error(path, f"a step has exactly one action, found {len(actions)}: {', '.join(actions)}")
        kind = actions[0]
        if kind == USE_STEP:
            raise self.error((*path, kind), "a fragment does not use other fragments", at_key=True)
        body_path = (*path, kind)
        line = self.located.line_of(path)
        if note is not None and not isinstance(note, str):
            raise self.error((*path, "note"), "note must be text")
        if precondition is not None:
            if not isinstance(precondition, str) or not precondition.strip():
                raise self.error((*path, "precondition"), "precondition must say what the step sets up (text)")
            if kind not in PRECONDITION_KINDS:
                raise self.error((*path, "precondition"), "only an expect or a check can be a precondition: the "
                                 "step whose failure means the case's situation was not reached")  # fmt: skip
        if kind == "expect_one_of":
            spec = self.alternatives(raw[kind], body_path)
        else:
            spec = self.validate(STEP_MODELS[kind], raw[kind], body_path)
        return Step(kind, spec, format_path(path), line, note, self.origin, precondition)

    def alternatives(self, raw: Any, path: Path_) -> list[ParsedAlternative]:
        if not isinstance(raw, list) or len(raw) < 2:
            raise self.error(path, "expect_one_of needs a list of at least two alternatives")
        out, labels = [], set()
        for i, item in enumerate(raw):
            alt = self.validate(Alternative, item, (*path, i))
            if alt.label in labels:
                raise self.error((*path, i, "label"), f"duplicate label '{alt.label}'")
            labels.add(alt.label)
            if alt.none is not None and any(a.alt.none is not None for a in out):
                raise self.error((*path, i, "none"), "at most one alternative can be silence")
            then = self.steps(alt.then, (*path, i, "then")) if alt.then else []
            out.append(ParsedAlternative(alt, then, self.located.line_of((*path, i))))
        return out


Expander = Callable[[CaseBuilder, dict[str, Any], Path_], list[Step]]
