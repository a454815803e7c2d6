"""Reading the suite's YAML files (cases, fragments, targets, expectations, registries) in one way.

Rules of this module: every YAML file of the project is read here and nowhere else; a document comes back as
plain Python data plus the line and column of every node, and every problem (syntax, encoding, a value that
cannot be built, a model that rejects the data) is one line ``file:line:col: path: message``. It knows nothing
of what the files mean: callers pass the pydantic models that validate them.

Theory of operation: libyaml (PyYAML's C parser) composes the node tree, so marks are exact and parsing the
whole catalogue costs ~50 ms instead of ~1.5 s; scalars are resolved by the YAML 1.2 core schema (``yes`` and
``on`` stay text, ``0o17`` is octal, ``1:30`` is text), anchors and ``<<`` merge keys work, duplicate keys are
errors. A syntax error is parsed once more by the pure-Python parser, whose messages say what was expected.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

Path_ = tuple[str | int, ...]
MERGE_TAG = "tag:yaml.org,2002:merge"


class DocumentError(ValueError):
    """One line: ``file:line:col: field.path: message`` (or ``file: message`` when no place applies)."""


def one_line(text: str) -> str:
    """Errors are one line even when a key or value of the input holds line breaks."""
    return text.replace("\r", "\\r").replace("\n", "\\n").replace("\x85", "\\x85")


def format_path(path: Path_) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top)"


# ---- the YAML 1.2 core schema on top of libyaml ------------------------------------------------------------
def _core_schema(base: type) -> type:
    class Loader(base):  # type: ignore[misc, valid-type]
        pass

    Loader.yaml_implicit_resolvers = {}
    Loader.add_implicit_resolver("tag:yaml.org,2002:null", re.compile(r"^(?:~|null|Null|NULL|)$"), list("~nN"))
    Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                                 list("tTfF"))  # fmt: skip
    Loader.add_implicit_resolver(
        "tag:yaml.org,2002:int", re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"), list("-+0123456789")
    )
    Loader.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(
            r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
        ),
        list("-+.0123456789"),
    )
    Loader.add_implicit_resolver(MERGE_TAG, re.compile(r"^<<$"), ["<"])
    Loader.add_constructor("tag:yaml.org,2002:int", _construct_int)
    return Loader


def _construct_int(loader: Any, node: yaml.ScalarNode) -> int:
    text = str(loader.construct_scalar(node))
    if text.startswith("0o"):
        return int(text[2:], 8)
    if text.startswith("0x"):
        return int(text[2:], 16)
    return int(text)


FastLoader = _core_schema(yaml.CSafeLoader if getattr(yaml, "__with_libyaml__", False) else yaml.SafeLoader)
ExplainingLoader = _core_schema(yaml.SafeLoader)  # slower, and its syntax errors say what was expected


# ---- positions ------------------------------------------------------------------------------------------------
@dataclass
class Positions:
    """Line and column (1-based) of every node of a document, keyed by path; ``keys`` where a key is written."""

    at: dict[Path_, tuple[int, int]] = field(default_factory=dict)
    keys: dict[Path_, tuple[int, int]] = field(default_factory=dict)

    def find(self, path: Path_) -> tuple[int, int]:
        """The place of ``path``, or of its nearest ancestor that has one."""
        for end in range(len(path), -1, -1):
            if path[:end] in self.at:
                return self.at[path[:end]]
        return (1, 1)

    def find_key(self, path: Path_) -> tuple[int, int]:
        return self.keys.get(path) or self.find(path)


@dataclass
class Document:
    """A parsed file: its data as plain Python, where each node is written, and the name errors use."""

    data: Any
    positions: Positions
    source: str

    def located(self, error: type[DocumentError] = DocumentError) -> Located:
        return Located(self.source, self.positions, error)


def _mark(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


class _Walker:
    """Turns a composed node tree into plain data, recording positions and refusing duplicate keys."""

    def __init__(self, loader: Any, source: str, error: type[DocumentError]) -> None:
        self.loader = loader
        self.source = source
        self.error = error
        self.positions = Positions()
        self._depth = 0

    def fail(self, node: yaml.Node, message: str) -> DocumentError:
        line, col = _mark(node)
        return self.error(one_line(f"{self.source}:{line}:{col}: YAML: {message}"))

    def walk(self, node: yaml.Node, path: Path_) -> Any:
        self._depth += 1
        if self._depth > 200:
            raise self.error(f"{self.source}:1:1: (top): YAML nested too deeply")
        try:
            if isinstance(node, yaml.MappingNode):
                return self._mapping(node, path)
            if isinstance(node, yaml.SequenceNode):
                out = []
                for i, item in enumerate(node.value):
                    self.positions.at[(*path, i)] = _mark(item)
                    out.append(self.walk(item, (*path, i)))
                return out
            return self._scalar(node)
        finally:
            self._depth -= 1

    def _scalar(self, node: yaml.Node) -> Any:
        try:
            return self.loader.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise self.fail(node, f"a value cannot be read: {problem}") from None
        except Exception as exc:  # a constructor that cannot build the scalar (a !!timestamp that is not a date)
            raise self.fail(node, f"a value cannot be read: {exc}") from None

    def _pairs(self, node: yaml.MappingNode) -> list[tuple[yaml.Node, yaml.Node]]:
        """Explicit pairs first, then the pairs merged in by ``<<`` that the mapping does not set itself."""
        explicit, merged = [], []
        for key, value in node.value:
            if key.tag == MERGE_TAG:
                sources = value.value if isinstance(value, yaml.SequenceNode) else [value]
                for source in sources:
                    if not isinstance(source, yaml.MappingNode):
                        raise self.fail(source, "a merge key (<<) takes a mapping or a list of mappings")
                    merged.extend(self._pairs(source))
            else:
                explicit.append((key, value))
        return explicit + merged

    def _mapping(self, node: yaml.MappingNode, path: Path_) -> dict[str, Any]:
        out: dict[str, Any] = {}
        explicit = {id(k) for k, _ in node.value}
        for key_node, value_node in self._pairs(node):
            if not isinstance(key_node, yaml.ScalarNode):
                raise self.fail(key_node, "a key must be a plain value, not a list or a mapping")
            key = str(self._scalar(key_node))
            if key in out:
                if id(key_node) in explicit:
                    raise self.fail(key_node, f'found duplicate key "{key}"')
                continue  # a merged key the mapping sets itself
            self.positions.at[(*path, key)] = _mark(value_node)
            self.positions.keys[(*path, key)] = _mark(key_node)
            out[key] = self.walk(value_node, (*path, key))
        return out


def parse_yaml(text: str, source: str, error: type[DocumentError] = DocumentError) -> Document:
    """Parse YAML text (one document); every problem becomes one ``error`` line naming the place."""
    try:
        loader = FastLoader(text)
    except yaml.reader.ReaderError as exc:
        raise _reader_error(exc, text, source, error) from None
    try:
        try:
            root = loader.get_single_node()
        except yaml.reader.ReaderError as exc:
            raise _reader_error(exc, text, source, error) from None
        except yaml.YAMLError:
            _explain_syntax(text, source, error)
            raise
        if root is None:
            return Document(None, Positions({(): (1, 1)}), source)
        walker = _Walker(loader, source, error)
        walker.positions.at[()] = _mark(root)
        data = walker.walk(root, ())
        return Document(data, walker.positions, source)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else f"{source}:1:1"
        raise error(one_line(f"{where}: YAML: {exc.problem or exc.context or 'invalid YAML'}")) from None
    except yaml.YAMLError as exc:
        raise error(one_line(f"{source}:1:1: (top): YAML: {str(exc).splitlines()[0]}")) from None
    except RecursionError:
        raise error(f"{source}:1:1: (top): YAML nested too deeply") from None
    finally:
        loader.dispose()


def _explain_syntax(text: str, source: str, error: type[DocumentError]) -> None:
    """Re-parse with the pure-Python parser for its clearer message; raises that error if it finds one."""
    try:
        slow = ExplainingLoader(text)
    except yaml.reader.ReaderError as exc:
        raise _reader_error(exc, text, source, error) from None
    try:
        slow.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else f"{source}:1:1"
        raise error(one_line(f"{where}: YAML: {exc.problem or exc.context or 'invalid YAML'}")) from None
    except RecursionError:
        raise error(f"{source}:1:1: (top): YAML nested too deeply") from None
    except yaml.YAMLError:
        return
    finally:
        slow.dispose()


def _reader_error(exc: yaml.reader.ReaderError, text: str, source: str, error: type[DocumentError]) -> DocumentError:
    """A character YAML does not allow (NUL, other control characters), at its place."""
    line, col = _line_col(text, exc.position)
    char = chr(exc.character) if isinstance(exc.character, int) else exc.character
    return error(f"{source}:{line}:{col}: (top): character {char!r} is not allowed in YAML")


def _line_col(text: str, index: int) -> tuple[int, int]:
    before = text[:index]
    return before.count("\n") + 1, index - (before.rfind("\n") + 1) + 1


def read_yaml_file(path: Path, source: str | None = None, error: type[DocumentError] = DocumentError) -> Document:
    """Read and parse a file; ``source`` is the name errors give it (default: the path as given)."""
    name = source or str(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise error(f"{name}: file not found") from None
    except OSError as exc:
        raise error(f"{name}: cannot read: {exc.strerror}") from None
    return parse_yaml(decode_utf8(raw, name, error), name, error)


def decode_utf8(raw: bytes, source: str, error: type[DocumentError] = DocumentError) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        col = exc.start - (raw[: exc.start].rfind(b"\n") + 1) + 1
        raise error(f"{source}:{line}:{col}: (top): not UTF-8: byte 0x{raw[exc.start]:02x}") from None


# ---- validation against models, with places ---------------------------------------------------------------------
_PYDANTIC_TAGS = {"str", "int", "float", "bool", "list", "dict", "tuple", "set", "bytes", "none", "is-instance"}


def input_path(data: Any, loc: tuple[Any, ...]) -> Path_:
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


def clean_message(message: str) -> str:
    for prefix in ("Value error, ", "Assertion failed, "):
        if message.startswith(prefix):
            return message[len(prefix) :]
    return message


@dataclass
class Located:
    """Makes errors about places of one document, and validates parts of it against pydantic models."""

    source: str
    positions: Positions
    error: type[DocumentError] = DocumentError

    def at(self, path: Path_, message: str, *, at_key: bool = False) -> DocumentError:
        """An error about the value at ``path`` (or, with ``at_key``, about the key itself)."""
        line, col = self.positions.find_key(path) if at_key else self.positions.find(path)
        return self.error(one_line(f"{self.source}:{line}:{col}: {format_path(path)}: {message}"))

    def line_of(self, path: Path_) -> int:
        return self.positions.find(path)[0]

    def validate(self, model: type[BaseModel], data: Any, path: Path_, context: dict[str, Any] | None = None) -> Any:
        """``model`` validated from ``data``; the first problem becomes one error line at its place."""
        try:
            return model.model_validate(data, context=context)
        except ValidationError as exc:
            raise self.from_validation(exc, data, path) from None

    def from_validation(self, exc: ValidationError, data: Any, path: Path_) -> DocumentError:
        first = exc.errors()[0]
        loc = input_path(data, first["loc"])
        at_key = first["type"] == "extra_forbidden"
        message = "unknown key" if at_key else clean_message(first["msg"])
        return self.at((*path, *loc), message, at_key=at_key)

    def all_errors(self, exc: ValidationError, data: Any, path: Path_) -> list[DocumentError]:
        """Every problem pydantic found, each as its own error line (for checks that report them all)."""
        out = []
        for err in exc.errors():
            loc = input_path(data, err["loc"])
            at_key = err["type"] == "extra_forbidden"
            message = "unknown key" if at_key else clean_message(err["msg"])
            out.append(self.at((*path, *loc), message, at_key=at_key))
        return out


def load_validated(path: Path, build: Callable[[Document], Any], error: type[DocumentError] = DocumentError,
                   source: str | None = None) -> Any:  # fmt: skip
    """Read ``path`` and hand the document to ``build``; a RecursionError anywhere is one error line."""
    document = read_yaml_file(path, source, error)
    try:
        return build(document)
    except RecursionError:
        raise error(f"{document.source}:1:1: (top): YAML nested too deeply") from None
