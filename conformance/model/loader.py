"""Load YAML case files into validated cases, with errors that name file:line:col and the field."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from ..yamlfile import Document, DocumentError, Located, Path_, format_path, load_validated, parse_yaml
from .case import STEP_MODELS, Alternative, CaseMeta


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

    @property
    def id(self) -> str:
        return self.meta.id


class CaseBuilder:
    """Builds the steps of one case document, with errors at their places."""

    def __init__(self, located: Located) -> None:
        self.located = located

    def error(self, path: Path_, message: str, *, at_key: bool = False) -> DocumentError:
        return self.located.at(path, message, at_key=at_key)

    def validate(self, model: type[BaseModel], data: Any, path: Path_) -> Any:
        return self.located.validate(model, data, path)

    def steps(self, raw: Any, path: Path_) -> list[Step]:
        if not isinstance(raw, list):
            raise self.error(path, "steps must be a list")
        return [self.step(item, (*path, i)) for i, item in enumerate(raw)]

    def step(self, raw: Any, path: Path_) -> Step:
        if not isinstance(raw, dict):
            raise self.error(path, f"a step is a mapping with one action ({', '.join(STEP_MODELS)})")
        note = raw.get("note")
        actions = [k for k in raw if k != "note"]
        unknown = [k for k in actions if k not in STEP_MODELS]
        if unknown:
            raise self.error(
                (*path, unknown[0]), f"unknown step '{unknown[0]}' (known: {', '.join(STEP_MODELS)})", at_key=True
            )
        if len(actions) != 1:
            raise self.error(path, f"a step has exactly one action, found {len(actions)}: {', '.join(actions)}")
        kind = actions[0]
        body_path = (*path, kind)
        line = self.located.line_of(path)
        if note is not None and not isinstance(note, str):
            raise self.error((*path, "note"), "note must be text")
        if kind == "expect_one_of":
            return Step(kind, self.alternatives(raw[kind], body_path), format_path(path), line, note)
        spec = self.validate(STEP_MODELS[kind], raw[kind], body_path)
        return Step(kind, spec, format_path(path), line, note)

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


def parse_case(text: str, source: str, file: Path | None = None) -> Case:
    document = parse_yaml(text, source, CaseFormatError)
    try:
        return build_case(document, file or Path(source))
    except RecursionError:
        raise CaseFormatError(f"{source}:1:1: (top): YAML nested too deeply") from None


def build_case(document: Document, file: Path) -> Case:
    located = document.located(CaseFormatError)
    builder = CaseBuilder(located)
    data = document.data
    if not isinstance(data, dict):
        raise builder.error((), "a case file is a mapping (id, title, refs, ..., steps)")
    meta = builder.validate(CaseMeta, data, ())
    steps = builder.steps(data["steps"], ("steps",))
    return Case(meta=meta, steps=steps, file=file, line=located.line_of(()))


def load_case(path: Path, root: Path | None = None) -> Case:
    """Read and validate one case file; the error text names the path relative to ``root``."""
    try:
        source = str(path.relative_to(root)) if root else str(path)
    except ValueError:
        source = str(path)
    return load_validated(path, lambda document: build_case(document, path), CaseFormatError, source)
