"""Load YAML case files into validated cases, with errors that name file:line:col and the field."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.reader import ReaderError

from .case import STEP_MODELS, Alternative, CaseMeta

Path_ = tuple[str | int, ...]


class CaseFormatError(ValueError):
    """One line: ``file:line:col: field.path: message``."""


@dataclass(frozen=True)
class Step:
    """A validated step with its place in the file."""

    kind: str
    spec: Any  # the action model, or a list of ParsedAlternative for expect_one_of
    path: str
    line: int
    note: str | None = None


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


def one_line(text: str) -> str:
    """Errors are one line even when a key or value of the input holds line breaks."""
    return text.replace("\r", "\\r").replace("\n", "\\n")


def format_path(path: Path_) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top)"


class _Positions:
    """Line/column of every node of a ruamel document, keyed by path."""

    def __init__(self) -> None:
        self.at: dict[Path_, tuple[int, int]] = {}
        self.keys: dict[Path_, tuple[int, int]] = {}  # where a mapping key itself is written

    def walk(self, node: Any, path: Path_ = ()) -> Any:
        """Record positions and return the node as plain Python data."""
        if isinstance(node, CommentedMap):
            if path == ():
                self.at[()] = (node.lc.line + 1, node.lc.col + 1)
            out = {}
            for key, value in node.items():
                known = key in (node.lc.data or {})
                line, col = node.lc.value(key) if known else (node.lc.line, node.lc.col)
                self.at[(*path, str(key))] = (line + 1, col + 1)
                if known:
                    key_line, key_col = node.lc.key(key)
                    self.keys[(*path, str(key))] = (key_line + 1, key_col + 1)
                out[str(key)] = self.walk(value, (*path, str(key)))
            return out
        if isinstance(node, CommentedSeq):
            out_list = []
            for i, value in enumerate(node):
                line, col = node.lc.item(i) if i in (node.lc.data or {}) else (node.lc.line, node.lc.col)
                self.at[(*path, i)] = (line + 1, col + 1)
                out_list.append(self.walk(value, (*path, i)))
            return out_list
        return node

    def find_key(self, path: Path_) -> tuple[int, int]:
        return self.keys.get(path) or self.find(path)

    def find(self, path: Path_) -> tuple[int, int]:
        for end in range(len(path), -1, -1):
            if path[:end] in self.at:
                return self.at[path[:end]]
        return (1, 1)


_PYDANTIC_TAGS = {"str", "int", "float", "bool", "list", "dict", "tuple", "set", "bytes", "none", "is-instance"}


def _input_path(data: Any, loc: tuple[Any, ...]) -> tuple[str | int, ...]:
    """The part of pydantic's error location that names places in the input.

    pydantic also puts validator and union-member names into a location ('function-plain[...]', 'str').
    A part found in the input is always kept, whatever the key is called; a part that is not (a field
    after a shorthand was expanded, a missing field) is kept unless it looks like such a tag.
    """
    out: list[str | int] = []
    current: Any = data
    for part in loc:
        in_dict = isinstance(current, dict) and part in current
        in_list = isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current)
        if in_dict or in_list:
            current = current[part]
        elif isinstance(part, str) and ("[" in part or part.startswith("function-") or part in _PYDANTIC_TAGS):
            continue
        else:
            current = None
        out.append(part)
    return tuple(out)


def _clean_message(message: str) -> str:
    for prefix in ("Value error, ", "Assertion failed, "):
        if message.startswith(prefix):
            return message[len(prefix) :]
    return message


class _Builder:
    def __init__(self, source: str, positions: _Positions) -> None:
        self.source = source
        self.pos = positions

    def error(self, path: Path_, message: str, *, at_key: bool = False) -> CaseFormatError:
        """An error about the value at ``path`` (or, with ``at_key``, about the key itself)."""
        line, col = self.pos.find_key(path) if at_key else self.pos.find(path)
        return CaseFormatError(one_line(f"{self.source}:{line}:{col}: {format_path(path)}: {message}"))

    def validate(self, model: type[BaseModel], data: Any, path: Path_) -> Any:
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            loc = _input_path(data, first["loc"])
            at_key = first["type"] == "extra_forbidden"
            message = "unknown key" if at_key else _clean_message(first["msg"])
            raise self.error((*path, *loc), message, at_key=at_key) from None

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
        line = self.pos.find(path)[0]
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
            out.append(ParsedAlternative(alt, then, self.pos.find((*path, i))[0]))
        return out


def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.allow_duplicate_keys = False
    return yaml


def load_yaml_with_positions(text: str, source: str) -> tuple[Any, _Positions]:
    """Parse YAML text; syntax errors become one-line CaseFormatErrors."""
    try:
        doc = _yaml().load(text)
    except RecursionError:
        raise CaseFormatError(f"{source}:1:1: (top): YAML nested too deeply") from None
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        problem = exc.problem or exc.context or "invalid YAML"
        raise CaseFormatError(one_line(f"{where}: YAML: {problem}")) from None
    except ReaderError as exc:  # a character YAML does not allow (NUL, other control characters)
        line, col = _line_col(text, exc.position)
        message = f"(top): character {exc.character!r} is not allowed in YAML"
        raise CaseFormatError(f"{source}:{line}:{col}: {message}") from None
    except YAMLError as exc:
        raise CaseFormatError(one_line(f"{source}:1:1: (top): YAML: {str(exc).splitlines()[0]}")) from None
    except Exception as exc:  # ruamel's constructor fails in many ways on scalars it cannot build (2024-13-01)
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CaseFormatError(one_line(f"{source}:1:1: (top): YAML: a value cannot be read: {detail}")) from None
    positions = _Positions()
    try:
        return positions.walk(doc), positions
    except RecursionError:
        raise CaseFormatError(f"{source}:1:1: (top): YAML nested too deeply") from None


def _line_col(text: str, index: int) -> tuple[int, int]:
    before = text[:index]
    return before.count("\n") + 1, index - (before.rfind("\n") + 1) + 1


def parse_case(text: str, source: str, file: Path | None = None) -> Case:
    data, positions = load_yaml_with_positions(text, source)
    builder = _Builder(source, positions)
    if not isinstance(data, dict):
        raise builder.error((), "a case file is a mapping (id, title, refs, ..., steps)")
    meta = builder.validate(CaseMeta, data, ())
    steps = builder.steps(data["steps"], ("steps",))
    return Case(meta=meta, steps=steps, file=file or Path(source), line=positions.find(())[0])


def load_case(path: Path, root: Path | None = None) -> Case:
    """Read and validate one case file; the error text names the path relative to ``root``."""
    try:
        source = str(path.relative_to(root)) if root else str(path)
    except ValueError:
        source = str(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CaseFormatError(f"{source}: cannot read: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        col = exc.start - (raw[: exc.start].rfind(b"\n") + 1) + 1
        raise CaseFormatError(f"{source}:{line}:{col}: (top): not UTF-8: byte 0x{raw[exc.start]:02x}") from None
    return parse_case(text, source, path)
