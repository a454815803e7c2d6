"""Step fragments: named, parameterised sequences of steps that a case writes as one ``use`` step.

Rules of this module:

- A fragment is one YAML file in ``conformance/model/fragments/``, shipped with the package: ``name`` (the file's
  name without ``.yaml``), ``description`` (one line), ``parameters`` (each with a one-line ``description`` and a
  ``default``; a parameter without ``default`` must be given by every case that uses the fragment) and ``steps``
  in the ordinary step syntax.
- A parameter is referenced by a whole value written ``$name``: the value the case gives (or the default) replaces
  it, whatever it is (a number, an expression, a list of options, a mapping, a whole step body). Only a value that
  begins with ``$`` is a reference: ``$$`` at its start writes a literal ``$``, and a ``$`` anywhere else is text.
  Keys are never substituted. A mapping entry whose parameter is null is left out, so the field takes its
  default; that is how an optional note or matcher is written (``note: $syn_note`` with ``default: null``).
- A fragment uses every parameter it declares and declares every one it uses, never uses another fragment
  (expansion is one level deep, so there are no cycles), and its steps with the defaults are valid steps. A broken
  fragment file is one error line ``file:line:col: path: message`` naming the fragment file.
- ``use: name`` or ``use: {fragment: name, parameter: value, ...}`` in a case expands (``expand``, called by the
  loader) into the fragment's steps, each built exactly as if it had been written out in the case, with the
  line of the ``use`` step and ``origin`` ``"name[index]"`` (0-based index of the step in the fragment); its
  path is ``steps[i].use[index]``. An error is one line at the case's ``use`` step, at the parameter's value
  when a parameter caused it, naming the fragment step that broke: an unknown fragment or parameter comes with
  a did-you-mean.
"""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, StringConstraints

from ..yamlfile import DocumentError, Located, Path_, format_path, one_line, read_yaml_file
from .builder import CaseBuilder, CaseFormatError, Step
from .case import USE_STEP, Strict
from .suggest import did_you_mean

FRAGMENTS_DIR = Path(__file__).with_name("fragments")
FRAGMENT_NAME = r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$"
PARAMETER_NAME = r"^[a-z][a-z0-9_]*$"
REFERENCE = re.compile(r"^\$([a-z][a-z0-9_]*)$")
NAME_KEY = "fragment"  # the key of a use step that names the fragment; no parameter may be called so
OneLine = Annotated[str, StringConstraints(min_length=10, max_length=200, pattern=r"^[^\n]+$")]


class FragmentError(CaseFormatError):
    """One line: ``fragment-file:line:col: path: message`` (a broken fragment file)."""


class _ParameterFile(Strict):
    description: OneLine
    default: Any = None


class _FragmentFile(Strict):
    name: str = Field(pattern=FRAGMENT_NAME)
    description: OneLine
    parameters: dict[Annotated[str, Field(pattern=PARAMETER_NAME)], _ParameterFile] = {}
    steps: list[Any] = Field(min_length=1)


@dataclass(frozen=True)
class Parameter:
    name: str
    description: str
    default: Any = None
    required: bool = False  # no default: every use must give it


@dataclass(frozen=True)
class Fragment:
    """A validated fragment: its steps are raw step data holding ``$name`` references."""

    name: str
    description: str
    parameters: dict[str, Parameter]
    steps: tuple[Any, ...]
    source: str
    located: Located = field(repr=False, compare=False)


# ---- reading fragment files ---------------------------------------------------------------------------------


def load_fragments(directory: Path = FRAGMENTS_DIR) -> dict[str, Fragment]:
    """Every fragment of ``directory`` by name, sorted (read and checked once per process)."""
    return dict(_load(directory.resolve()))


@functools.cache
def _load(directory: Path) -> tuple[tuple[str, Fragment], ...]:
    fragments = [read_fragment(path) for path in sorted(directory.glob("*.yaml"))]
    return tuple((f.name, f) for f in sorted(fragments, key=lambda f: f.name))


def _source(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path(__file__).resolve().parents[2]))
    except ValueError:
        return str(path)


def read_fragment(path: Path) -> Fragment:
    """One fragment file, checked; every problem is one FragmentError line naming the place in the file."""
    document = read_yaml_file(path, _source(path), FragmentError)
    located = document.located(FragmentError)
    data = document.data
    if not isinstance(data, dict):
        raise located.at((), "a fragment file is a mapping (name, description, parameters, steps)")
    declared = data.get("parameters")
    for key in declared if isinstance(declared, dict) else {}:
        if not re.match(PARAMETER_NAME, key):
            message = "a parameter's name is lower-case letters, digits and _, starting with a letter"
            raise located.at(("parameters", key), message, at_key=True)
    spec: _FragmentFile = located.validate(_FragmentFile, data, ())
    if spec.name != path.stem:
        raise located.at(("name",), f"the fragment's name is its file's name: '{path.stem}'")
    if NAME_KEY in spec.parameters:
        raise located.at(("parameters", NAME_KEY), f"'{NAME_KEY}' names the fragment in a use step", at_key=True)
    parameters = {
        name: Parameter(name, p.description, p.default, required="default" not in p.model_fields_set)
        for name, p in spec.parameters.items()
    }
    used: set[str] = set()
    for i, step in enumerate(spec.steps):
        for where, name in references(step, ("steps", i), located):
            if name not in parameters:
                hint = did_you_mean(name, parameters)
                raise located.at(where, f"${name} is not a parameter of this fragment{hint}")
            used.add(name)
    for name in parameters:
        if name not in used:
            raise located.at(("parameters", name), f"parameter '{name}' is never used in the steps", at_key=True)
    fragment = Fragment(spec.name, spec.description, parameters, tuple(spec.steps), located.source, located)
    if not any(p.required for p in parameters.values()):
        defaults = {name: p.default for name, p in parameters.items()}
        builder = CaseBuilder(located, origin=fragment.name)
        for i, step in enumerate(fragment.steps):
            builder.step(substitute(step, defaults)[0], ("steps", i))
    return fragment


def references(value: Any, path: Path_, located: Located) -> list[tuple[Path_, str]]:
    """Every ``$name`` in ``value`` with its place; a malformed reference or a ``$`` key is an error."""
    found: list[tuple[Path_, str]] = []
    if isinstance(value, str) and value.startswith("$") and not value.startswith("$$"):
        match = REFERENCE.match(value)
        if not match:
            raise located.at(path, f"'{value}': a parameter is written $name (a-z, 0-9, _); $$ writes a literal $")
        found.append((path, match.group(1)))
    elif isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str) and key.startswith("$"):
                raise located.at((*path, key), "a parameter stands for a value, never for a key", at_key=True)
            found.extend(references(item, (*path, key), located))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found.extend(references(item, (*path, i), located))
    return found


def substitute(value: Any, values: Mapping[str, Any], path: Path_ = ()) -> tuple[Any, dict[Path_, str]]:
    """``value`` with every ``$name`` replaced (a copy), and which parameter went where (path -> name).

    A mapping entry whose parameter is null is left out; ``$$text`` becomes ``$text``.
    """
    where: dict[Path_, str] = {}

    def walk(item: Any, at: Path_) -> Any:
        if isinstance(item, str) and item.startswith("$"):
            if item.startswith("$$"):
                return item[1:]
            name = item[1:]
            where[at] = name
            return copy.deepcopy(values[name])
        if isinstance(item, dict):
            out = {}
            for key, sub in item.items():
                if _is_reference(sub) and values[sub[1:]] is None:
                    continue
                out[key] = walk(sub, (*at, key))
            return out
        if isinstance(item, list):
            return [walk(sub, (*at, i)) for i, sub in enumerate(item)]
        return item

    return walk(value, path), where


def _is_reference(value: Any) -> bool:
    return isinstance(value, str) and REFERENCE.match(value) is not None


# ---- expanding a case's use step ----------------------------------------------------------------------------


@dataclass
class _Expansion(Located):
    """The places of one fragment step expanded in a case: every error goes to the case's ``use`` step.

    An error inside a value a parameter put there points at that parameter's value in the case (when the case
    gave it); any other error points at the ``use`` step. The message names the fragment step and the field.
    """

    fragment: str = ""
    index: int = 0
    use_path: Path_ = ()
    placed: dict[Path_, str] = field(default_factory=dict)
    given: frozenset[str] = frozenset()
    line: int = 1

    def at(self, path: Path_, message: str, *, at_key: bool = False) -> DocumentError:
        prefix = (*self.use_path, USE_STEP, self.index)
        rest = path[len(prefix) :] if path[: len(prefix)] == prefix else ()
        target: Path_ = (*self.use_path, USE_STEP)
        for end in range(len(rest), -1, -1):
            name = self.placed.get(rest[:end])
            if name is not None:
                if name in self.given:
                    target = (*self.use_path, USE_STEP, name, *rest[end:])
                break
        at_key = at_key and target != (*self.use_path, USE_STEP)
        line, col = self.positions.find_key(target) if at_key else self.positions.find(target)
        step = f"{self.fragment}[{self.index}]"
        detail = f"{step} ({format_path(rest)})" if rest else step
        return self.error(one_line(f"{self.source}:{line}:{col}: {format_path(target)}: {detail}: {message}"))

    def line_of(self, path: Path_) -> int:
        return self.line


def expand(builder: CaseBuilder, raw: dict[str, Any], path: Path_, fragments: Mapping[str, Fragment]) -> list[Step]:
    """The steps of the fragment a case's ``use`` step names, built as if written out at that step."""
    located = builder.located
    body_path = (*path, USE_STEP)
    if "note" in raw:
        raise located.at((*path, "note"), "a use step takes no note: notes are the fragment's parameters", at_key=True)
    name, given = _parse_use(located, raw[USE_STEP], body_path)
    fragment = fragments.get(name)
    if fragment is None:
        where = (*body_path, NAME_KEY) if isinstance(raw[USE_STEP], dict) else body_path
        known = ", ".join(fragments) or "none"
        raise located.at(where, f"unknown fragment '{name}'{did_you_mean(name, fragments)}; the fragments: {known}")
    values = _bind(located, fragment, given, body_path)
    line = located.line_of(path)
    steps: list[Step] = []
    for index, raw_step in enumerate(fragment.steps):
        data, placed = substitute(raw_step, values)
        where = _Expansion(
            located.source, located.positions, located.error,
            fragment=fragment.name, index=index, use_path=path, placed=placed, given=frozenset(given), line=line,
        )  # fmt: skip
        sub = CaseBuilder(where, origin=f"{fragment.name}[{index}]")
        steps.append(sub.step(data, (*body_path, index)))
    return steps


def _parse_use(located: Located, body: Any, path: Path_) -> tuple[str, dict[str, Any]]:
    """``use: name`` or ``use: {fragment: name, parameter: value, ...}``: the name and the parameters given."""
    if isinstance(body, str):
        return body, {}
    if not isinstance(body, dict):
        raise located.at(path, f"use takes a fragment's name or {{{NAME_KEY}: name, parameter: value, ...}}")
    name = body.get(NAME_KEY)
    if name is None:
        raise located.at(path, f"a use step names its fragment: {{{NAME_KEY}: name, parameter: value, ...}}")
    if not isinstance(name, str):
        raise located.at((*path, NAME_KEY), "a fragment's name is text")
    return name, {key: value for key, value in body.items() if key != NAME_KEY}


def _bind(located: Located, fragment: Fragment, given: dict[str, Any], path: Path_) -> dict[str, Any]:
    """Each parameter's value: the one given, else the default; unknown and missing ones are errors."""
    names = list(fragment.parameters)
    for key in given:
        if key not in fragment.parameters:
            known = f"its parameters: {', '.join(names)}" if names else "it takes no parameters"
            hint = did_you_mean(key, names)
            raise located.at((*path, key), f"{fragment.name} has no parameter '{key}'{hint}; {known}", at_key=True)
    for param in fragment.parameters.values():
        if param.required and param.name not in given:
            raise located.at(path, f"{fragment.name} needs parameter '{param.name}': {param.description}")
    return {name: given.get(name, param.default) for name, param in fragment.parameters.items()}
