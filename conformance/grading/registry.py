"""The requirements registry: every reference a case may cite, with its level and a one-line summary.

The data lives in ``requirements.yaml`` beside this module (format in docs/requirements.md). Each entry is one
citable reference: a numbered RFC 9293 requirement (``rfc9293:MUST-13``), a section or numbered rule of an RFC
(``rfc9293:3.10.7.4``, ``rfc6298:5.7``), or a page or figure of RFC 793 (``rfc793:page36``, ``rfc793:fig8``).

``load_registry`` validates the file (errors are one line naming the entry and the field); ``missing_refs`` lists
the references of cases that the registry lacks; ``uncovered_must`` lists the in-scope MUST requirements that no
case cites. ``python -m conformance.grading.registry`` prints that list for the shipped catalogue.

The level rule: a case's ``level`` equals the level of every numbered requirement it cites (MUST NOT counts as
MUST; SHOULD NOT and REC as SHOULD), because a case counts towards every numbered requirement it cites, and an
INFO case cites no numbered requirement at all (it cites sections, e.g. ``rfc9293:3.7.1``). ``ref_problems`` lists
each case reference that breaks the rule or is missing from the registry, with its place in the case file;
``python -m conformance check`` reports them as errors.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

from ..vocabulary import KEYWORD_LEVEL, NUMBERED_REQUIREMENT, REGISTRY_REF_PATTERN
from ..yamlfile import DocumentError, parse_yaml

if TYPE_CHECKING:
    from conformance.model.loader import Case

REGISTRY_FILE = Path(__file__).with_name("requirements.yaml")
# The level a numbered RFC 9293 requirement may have, by its prefix (RECOMMENDED is SHOULD, RFC 2119).
PREFIX_LEVELS: dict[str, frozenset[str]] = {
    "MUST": frozenset({"MUST", "MUST NOT"}),
    "SHLD": frozenset({"SHOULD", "SHOULD NOT"}),
    "MAY": frozenset({"MAY"}),
    "REC": frozenset({"SHOULD"}),
}
MUST_LEVELS = frozenset({"MUST", "MUST NOT"})

Level = Literal["MUST", "MUST NOT", "SHOULD", "SHOULD NOT", "MAY"]
Kind = Literal["requirement", "section", "rule", "page", "figure"]
OneLine = Annotated[str, StringConstraints(min_length=3, max_length=240, pattern=r"^[^\n]+$")]


class RegistryError(ValueError):
    """One line: ``file: entries[i] (id): field: message``."""


class Requirement(BaseModel):
    """One citable reference.

    ``kind`` is ``requirement`` for a numbered RFC 9293 requirement (it then has a level, the section that states
    it, a summary and ``in_scope``), ``section`` or ``rule`` for a part of an RFC, ``page`` or ``figure`` for RFC
    793. ``level`` (with ``summary`` and ``in_scope``) is set where the reference states a rule; for a section
    stating several it is the strongest key word, and the summary says which behaviour it applies to.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    id: str = Field(pattern=REGISTRY_REF_PATTERN)
    kind: Kind
    title: OneLine | None = None
    level: Level | None = None
    section: str | None = Field(default=None, pattern=r"^[0-9A-Z]+(\.[0-9]+)*$")
    summary: OneLine | None = None
    in_scope: bool | None = None
    note: OneLine | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Requirement:
        if self.kind == "requirement":
            match = NUMBERED_REQUIREMENT.match(self.id)
            if not match:
                raise ValueError("a numbered requirement is rfc9293:MUST-n, SHLD-n, MAY-n or REC-n")
            for name in ("level", "section", "summary", "in_scope"):
                if getattr(self, name) is None:
                    raise ValueError(f"a numbered requirement needs '{name}'")
            allowed = PREFIX_LEVELS[match.group(1)]
            if self.level not in allowed:
                raise ValueError(f"level {self.level} does not fit the prefix {match.group(1)}-")
            return self
        if NUMBERED_REQUIREMENT.match(self.id):
            raise ValueError(f"{self.id} is a numbered requirement: kind must be 'requirement'")
        if self.title is None:
            raise ValueError(f"a {self.kind} needs a 'title'")
        if self.level is not None and (self.summary is None or self.in_scope is None):
            raise ValueError("an entry with a level needs a 'summary' and 'in_scope'")
        if self.level is None and self.in_scope is not None:
            raise ValueError("'in_scope' only applies to an entry with a level")
        return self

    @property
    def rfc(self) -> str:
        """The document, e.g. ``rfc9293``."""
        return self.id.split(":", 1)[0]

    @property
    def case_level(self) -> str | None:
        """The level a case citing this entry is graded at (MUST NOT counts as MUST, SHOULD NOT as SHOULD)."""
        return KEYWORD_LEVEL[self.level] if self.level else None

    @property
    def is_must(self) -> bool:
        return self.level in MUST_LEVELS


class Document(BaseModel):
    """An RFC the registry cites: its title, and the few words reports use to name its area."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    title: OneLine
    topic: Annotated[str, StringConstraints(min_length=2, max_length=60, pattern=r"^[^\n]+$")]


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    documents: dict[str, Document] = Field(min_length=1)
    entries: list[Any] = Field(min_length=1)


def _error(source: str, loc: tuple[str | int, ...], message: str, ident: str | None = None) -> RegistryError:
    where = ""
    for part in loc:
        where += f"[{part}]" if isinstance(part, int) else (f".{part}" if where else str(part))
    label = f" ({ident})" if ident else ""
    return RegistryError(f"{source}: {where or '(top)'}{label}: {message}")


def _first(exc: ValidationError) -> tuple[tuple[str | int, ...], str]:
    err = exc.errors()[0]
    loc = tuple(p for p in err["loc"] if p not in ("function-after",))
    return loc, str(err["msg"]).removeprefix("Value error, ")


def _read(path: Path) -> _File:
    source = path.name
    try:
        data = parse_yaml(path.read_bytes().decode("utf-8"), source).data
    except (OSError, UnicodeDecodeError) as exc:
        raise RegistryError(f"{source}: cannot read: {exc}") from None
    except DocumentError as exc:
        message = str(exc).split(": YAML: ", 1)[-1]
        raise RegistryError(f"{source}: YAML: {message}") from None
    try:
        return _File.model_validate(data)
    except ValidationError as exc:
        loc, message = _first(exc)
        raise _error(source, loc, message) from None


@functools.cache
def documents(path: Path = REGISTRY_FILE) -> dict[str, Document]:
    """The RFCs the registry knows, by name (``rfc1337``): the one table of RFC titles and topics."""
    return dict(_read(path).documents)


@functools.cache
def registered_levels(path: Path = REGISTRY_FILE) -> dict[str, str]:
    """The level a case citing each registered id is graded at (MUST NOT as MUST, ...): grading's levels."""
    return {rid: entry.case_level for rid, entry in load_registry(path).items() if entry.case_level is not None}


@functools.cache
def in_scope_requirements(path: Path = REGISTRY_FILE) -> dict[str, str]:
    """The numbered requirements the suite claims to test (``in_scope: true``), each with the level a case citing
    it is graded at: the denominator of every conformance statement."""
    return {rid: entry.case_level for rid, entry in load_registry(path).items()
            if entry.kind == "requirement" and entry.in_scope and entry.case_level is not None}  # fmt: skip


@functools.cache
def registered_summaries(path: Path = REGISTRY_FILE) -> dict[str, str]:
    """Each registered id's one-line summary (or title): what a report calls the requirement."""
    return {rid: entry.summary or entry.title or rid for rid, entry in load_registry(path).items()}


def rfc_topic(number: str) -> str | None:
    """``1337`` -> ``TIME-WAIT assassination hazards``; None for an RFC the registry does not list."""
    document = documents().get(f"rfc{number}")
    return document.topic if document else None


def load_registry(path: Path = REGISTRY_FILE) -> dict[str, Requirement]:
    """Read and validate the registry; the result maps each id to its entry, in file order."""
    source = path.name
    doc = _read(path)
    registry: dict[str, Requirement] = {}
    for index, raw in enumerate(doc.entries):
        ident = raw.get("id") if isinstance(raw, dict) and isinstance(raw.get("id"), str) else None
        try:
            entry = Requirement.model_validate(raw)
        except ValidationError as exc:
            loc, message = _first(exc)
            raise _error(source, ("entries", index, *loc), message, ident) from None
        if entry.id in registry:
            raise _error(source, ("entries", index, "id"), "listed twice", entry.id)
        if entry.rfc not in doc.documents:
            raise _error(source, ("entries", index, "id"), f"{entry.rfc} is not in 'documents'", entry.id)
        registry[entry.id] = entry
    for index, entry in enumerate(registry.values()):
        if entry.section is not None and f"{entry.rfc}:{entry.section}" not in registry:
            message = f"section {entry.section} has no entry {entry.rfc}:{entry.section}"
            raise _error(source, ("entries", index, "section"), message, entry.id)
    return registry


def cited_refs(cases: Iterable[Case]) -> set[str]:
    """Every reference some case cites."""
    return {ref for case in cases for ref in case.meta.refs}


def missing_refs(registry: Mapping[str, Requirement], cases: Iterable[Case]) -> dict[Path, list[str]]:
    """The references of each case that the registry lacks (only cases with at least one)."""
    missing: dict[Path, list[str]] = {}
    for case in cases:
        absent = [ref for ref in case.meta.refs if ref not in registry]
        if absent:
            missing[case.file] = absent
    return missing


def uncovered_must(registry: Mapping[str, Requirement], cases: Iterable[Case]) -> list[Requirement]:
    """The in-scope MUST / MUST NOT entries that no case cites, in registry order."""
    cited = cited_refs(cases)
    return [e for e in registry.values() if e.is_must and e.in_scope and e.id not in cited]


@dataclass(frozen=True)
class RefProblem:
    """A reference of a case that breaks the level rule (``registry_level`` set) or is not in the registry."""

    file: Path
    line: int
    column: int
    index: int  # refs[index]
    case_id: str
    case_level: str
    ref: str
    registry_level: str | None  # the entry's key word (MUST NOT, ...); None: the registry lacks the reference
    section: str | None = None  # the section stating the requirement, for the INFO hint

    @property
    def path(self) -> str:
        return f"refs[{self.index}]"

    def message(self) -> str:
        if self.registry_level is None:
            return f"{self.ref} is not in the requirements registry (conformance/grading/requirements.yaml)"
        if self.case_level == "INFO":
            hint = f" (e.g. rfc9293:{self.section})" if self.section else ""
            return (
                f"{self.ref} is a numbered requirement ({self.registry_level}) and an INFO case cites none: "
                f"cite the section instead{hint}, or make the case {KEYWORD_LEVEL[self.registry_level]}"
            )
        return (
            f"{self.ref} is a {self.registry_level} requirement but the case's level is {self.case_level}: "
            f"a case's level is the level of every numbered requirement it cites"
        )

    def line_text(self, source: str) -> str:
        """``file:line:col: refs[i]: message`` with ``source`` naming the case file."""
        return f"{source}:{self.line}:{self.column}: {self.path}: {self.message()}"


def level_disagreements(registry: Mapping[str, Requirement], cases: Iterable[Case]) -> list[RefProblem]:
    """Every (case, numbered requirement) pair whose levels disagree, in case and refs order.

    A case's level must equal the case level of each numbered requirement it cites (``Requirement.case_level``:
    MUST NOT counts as MUST, SHOULD NOT as SHOULD); an INFO case may cite no numbered requirement.
    """
    out = []
    for case in cases:
        for index, ref in enumerate(case.meta.refs):
            entry = registry.get(ref)
            if entry is None or entry.kind != "requirement" or entry.level is None:
                continue
            if case.meta.level == "INFO" or entry.case_level != case.meta.level:
                line, column = case.ref_place(index)
                out.append(
                    RefProblem(case.file, line, column, index, case.id, str(case.meta.level), ref, entry.level,
                               entry.section)
                )  # fmt: skip
    return out


@functools.cache
def shipped_registry() -> dict[str, Requirement]:
    """The registry of this checkout, read once per process (collection checks every case against it)."""
    return load_registry()


def ref_problems(registry: Mapping[str, Requirement], cases: Iterable[Case]) -> list[RefProblem]:
    """The level disagreements and the references missing from the registry, each at its place, per case."""
    out = []
    for case in cases:
        level = str(case.meta.level)
        for index, ref in enumerate(case.meta.refs):
            if ref not in registry:
                line, column = case.ref_place(index)
                out.append(RefProblem(case.file, line, column, index, case.id, level, ref, None))
        out.extend(level_disagreements(registry, [case]))
    return sorted(out, key=lambda p: (str(p.file), p.index))


def describe(entry: Requirement) -> str:
    """One line for a report: id, level, section and summary."""
    where = f" (section {entry.section})" if entry.section else ""
    return f"{entry.id} [{entry.level}]{where}: {entry.summary or entry.title}"


def main(argv: list[str] | None = None) -> int:
    """Print the in-scope MUST requirements no case under testcases/ (or the given directory) cites."""
    from conformance.model.loader import load_case

    args = sys.argv[1:] if argv is None else argv
    root = Path(args[0]) if args else Path(__file__).resolve().parents[2] / "testcases"
    cases = [load_case(path, root) for path in sorted(root.rglob("*.yaml"))]
    registry = load_registry()
    for path, refs in missing_refs(registry, cases).items():
        print(f"not in the registry: {path}: {', '.join(refs)}")
    uncovered = uncovered_must(registry, cases)
    print(f"{len(uncovered)} in-scope MUST requirements no case cites ({len(cases)} cases):")
    for entry in uncovered:
        print(f"  {describe(entry)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
