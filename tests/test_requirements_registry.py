"""The requirements registry: it is well-formed, every case reference is in it, and it reports uncovered MUSTs.

``pytest tests/test_requirements_registry.py -s`` prints the in-scope MUST requirements no case cites yet.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from conformance.grading.registry import (
    MUST_LEVELS,
    PREFIX_LEVELS,
    REGISTRY_FILE,
    RegistryError,
    Requirement,
    cited_refs,
    describe,
    level_disagreements,
    load_registry,
    missing_refs,
    ref_problems,
    uncovered_must,
)
from conformance.model.loader import Case, load_case, parse_case
from conformance.vocabulary import NUMBERED_REQUIREMENT
from conformance.yamlfile import parse_yaml

ROOT = Path(__file__).resolve().parent.parent
CASES_DIR = ROOT / "testcases"
LEVELS = {"MUST", "MUST NOT", "SHOULD", "SHOULD NOT", "MAY"}
# How many numbered requirements RFC 9293 has, by prefix (Appendix B): MUST-1..69, SHLD-1..31, MAY-1..18, REC-1.
RFC9293_COUNTS = {"MUST": 69, "SHLD": 31, "MAY": 18, "REC": 1}


@pytest.fixture(scope="module")
def registry() -> dict[str, Requirement]:
    return load_registry()


@pytest.fixture(scope="module")
def cases() -> list[Case]:
    found = [load_case(path, ROOT) for path in sorted(CASES_DIR.rglob("*.yaml"))]
    assert len(found) >= 10
    return found


# ---- (a) the registry is well-formed ----------------------------------------------------------------


def test_registry_loads_with_unique_ids(registry: dict[str, Requirement]) -> None:
    raw = parse_yaml(REGISTRY_FILE.read_text(encoding="utf-8"), "requirements.yaml").data
    ids = [entry["id"] for entry in raw["entries"]]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    assert not duplicates, f"ids listed more than once: {duplicates}"
    assert len(registry) == len(ids)


def test_levels_are_valid(registry: dict[str, Requirement]) -> None:
    bad = [f"{e.id}: {e.level}" for e in registry.values() if e.level is not None and e.level not in LEVELS]
    assert not bad
    unsummarised = [e.id for e in registry.values() if e.level is not None and not e.summary]
    assert not unsummarised, f"entries with a level but no summary: {unsummarised}"


def test_rfc9293_ids_match_their_level(registry: dict[str, Requirement]) -> None:
    for entry in registry.values():
        numbered = NUMBERED_REQUIREMENT.match(entry.id)
        assert (entry.kind == "requirement") == bool(numbered), entry.id
        if numbered:
            assert entry.level in PREFIX_LEVELS[numbered.group(1)], f"{entry.id} has level {entry.level}"
            assert entry.in_scope is not None and entry.section, entry.id
            assert f"rfc9293:{entry.section}" in registry, f"{entry.id}: no entry for section {entry.section}"


def test_every_numbered_rfc9293_requirement_is_listed(registry: dict[str, Requirement]) -> None:
    expected = {f"rfc9293:{prefix}-{n}" for prefix, count in RFC9293_COUNTS.items() for n in range(1, count + 1)}
    listed = {e.id for e in registry.values() if e.kind == "requirement"}
    assert listed == expected, f"missing {sorted(expected - listed)}, unexpected {sorted(listed - expected)}"


def test_summaries_are_one_line_and_not_empty(registry: dict[str, Requirement]) -> None:
    for entry in registry.values():
        for text in (entry.title, entry.summary, entry.note):
            assert text is None or (text.strip() == text and "\n" not in text and len(text) >= 3), entry.id


BROKEN = {
    "duplicate id": (
        "entries:\n  - {id: rfc9293:3.1, kind: section, title: header}\n"
        "  - {id: rfc9293:3.1, kind: section, title: header again}\n",
        r"entries\[1\]\.id \(rfc9293:3\.1\): listed twice",
    ),
    "level against prefix": (
        "entries:\n  - {id: rfc9293:3.1, kind: section, title: header}\n  - {id: rfc9293:MUST-1, kind: requirement,"
        ' level: MAY, section: "3.1", in_scope: true, summary: the window is unsigned}\n',
        r"entries\[1\] \(rfc9293:MUST-1\): level MAY does not fit the prefix MUST-",
    ),
    "unknown level": (
        'entries:\n  - {id: rfc9293:MUST-1, kind: requirement, level: REQUIRED, section: "3.1", in_scope: true,'
        " summary: the window is unsigned}\n",
        r"entries\[0\]\.level \(rfc9293:MUST-1\): Input should be 'MUST'",
    ),
    "section as a number": (
        "entries:\n  - {id: rfc9293:MUST-1, kind: requirement, level: MUST, section: 3.1, in_scope: true,"
        " summary: the window is unsigned}\n",
        r"entries\[0\]\.section \(rfc9293:MUST-1\): Input should be a valid string",
    ),
    "section without an entry": (
        'entries:\n  - {id: rfc9293:MUST-1, kind: requirement, level: MUST, section: "3.1", in_scope: true,'
        " summary: the window is unsigned}\n",
        r"entries\[0\]\.section \(rfc9293:MUST-1\): section 3\.1 has no entry rfc9293:3\.1",
    ),
    "numbered id as a section": (
        "entries:\n  - {id: rfc9293:MUST-1, kind: section, title: the window}\n",
        r"entries\[0\] \(rfc9293:MUST-1\): rfc9293:MUST-1 is a numbered requirement",
    ),
    "undeclared document": (
        "entries:\n  - {id: rfc1234:5, kind: section, title: something}\n",
        r"entries\[0\]\.id \(rfc1234:5\): rfc1234 is not in 'documents'",
    ),
    "level without summary": (
        "entries:\n  - {id: rfc9293:3.1, kind: section, title: header, level: MUST, in_scope: true}\n",
        r"entries\[0\] \(rfc9293:3\.1\): an entry with a level needs a 'summary' and 'in_scope'",
    ),
    "unknown field": (
        "entries:\n  - {id: rfc9293:3.1, kind: section, title: header, colour: red}\n",
        r"entries\[0\]\.colour \(rfc9293:3\.1\): Extra inputs are not permitted",
    ),
    "multi-line summary": (
        "entries:\n  - {id: rfc9293:3.1, kind: section, title: header}\n  - {id: rfc9293:MUST-1, kind: requirement,"
        ' level: MUST, section: "3.1", in_scope: true, summary: "two\\nlines"}\n',
        r"entries\[1\]\.summary \(rfc9293:MUST-1\): String should match pattern",
    ),
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_malformed_registry_gives_one_line_error(name: str, tmp_path: Path) -> None:
    body, expected = BROKEN[name]
    path = tmp_path / "requirements.yaml"
    path.write_text("documents: {rfc9293: {title: TCP, topic: connection management}}\n" + body, encoding="utf-8")
    with pytest.raises(RegistryError) as info:
        load_registry(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("requirements.yaml: ")
    assert re.search(expected, message), message


def test_yaml_syntax_error_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "requirements.yaml"
    path.write_text("documents: {rfc9293: TCP\nentries: [\n", encoding="utf-8")
    with pytest.raises(RegistryError, match=r"^requirements\.yaml: YAML: [^\n]+$"):
        load_registry(path)


# ---- (b) every reference of every case is in the registry -------------------------------------------


def test_every_case_reference_is_in_the_registry(registry: dict[str, Requirement], cases: list[Case]) -> None:
    missing = missing_refs(registry, cases)
    lines = [f"{path.relative_to(ROOT)}: {', '.join(refs)}" for path, refs in sorted(missing.items())]
    assert not lines, "references missing from conformance/grading/requirements.yaml:\n" + "\n".join(lines)


def test_missing_refs_names_the_file_and_the_ref(registry: dict[str, Requirement], cases: list[Case]) -> None:
    case = cases[0]
    bogus = case.meta.model_copy(update={"refs": [*case.meta.refs, "rfc9293:MUST-999"]})
    broken = Case(meta=bogus, steps=case.steps, file=case.file)
    assert missing_refs(registry, [broken]) == {case.file: ["rfc9293:MUST-999"]}


# ---- (c) the report: in-scope MUST requirements no case covers yet ----------------------------------


def test_report_uncovered_must_requirements(registry: dict[str, Requirement], cases: list[Case]) -> None:
    uncovered = uncovered_must(registry, cases)
    print(f"\n{len(uncovered)} in-scope MUST requirements no case cites yet ({len(cases)} cases):")
    for entry in uncovered:
        print(f"  {describe(entry)}")
    cited = cited_refs(cases)
    expected = [e.id for e in registry.values() if e.level in MUST_LEVELS and e.in_scope and e.id not in cited]
    assert [e.id for e in uncovered] == expected
    for entry in uncovered:
        assert entry.in_scope and entry.is_must and entry.id not in cited, entry.id
    # Every in-scope MUST of RFC 9293 is either cited by some case or reported here.
    in_scope_musts = {e.id for e in registry.values() if e.kind == "requirement" and e.is_must and e.in_scope}
    assert in_scope_musts <= cited | {e.id for e in uncovered}


def test_uncovered_must_ignores_cited_and_out_of_scope(registry: dict[str, Requirement], cases: list[Case]) -> None:
    ids = {e.id for e in uncovered_must(registry, cases)}
    assert "rfc9293:MUST-10" not in ids  # simultaneous open: cited by the handshake cases
    assert "rfc9293:MUST-30" not in ids  # urgent data: out of scope
    assert {e.id for e in uncovered_must(registry, [])} >= {"rfc9293:MUST-10", "rfc9293:MUST-13"}


# ---- (d) the level rule: a case's level is the level of every numbered requirement it cites ----------------

LEVEL_CASE = """\
id: LEVEL-01
title: level test
refs: [{refs}]
requirement: a requirement written out in words
level: {level}
steps:
  - ut: listen
"""


def level_case(level: str, refs: str) -> Case:
    return parse_case(LEVEL_CASE.format(level=level, refs=refs), "level.yaml")


def test_every_case_level_agrees_with_the_requirements_it_cites(
    registry: dict[str, Requirement], cases: list[Case]
) -> None:
    lines = [p.line_text(str(p.file.relative_to(ROOT))) for p in level_disagreements(registry, cases)]
    assert not lines, "levels that disagree with conformance/grading/requirements.yaml:\n" + "\n".join(lines)


@pytest.mark.parametrize(
    ("level", "refs"),
    [
        ("MUST", "rfc9293:3.4.1, rfc9293:MUST-8"),
        ("MUST", "rfc9293:MUST-9"),  # MUST NOT counts as MUST
        ("SHOULD", "rfc9293:SHLD-1, rfc6528:3"),  # a section's own level does not count
        ("SHOULD", "rfc9293:REC-1"),  # RECOMMENDED counts as SHOULD
        ("MAY", "rfc9293:MAY-2"),
        ("INFO", "rfc9293:3.7.1, rfc793:page69"),
    ],
)
def test_agreeing_levels_give_no_problem(registry: dict[str, Requirement], level: str, refs: str) -> None:
    assert ref_problems(registry, [level_case(level, refs)]) == []


def test_a_disagreement_names_the_case_the_place_and_both_levels(registry: dict[str, Requirement]) -> None:
    case = level_case("SHOULD", "rfc9293:3.4.1, rfc9293:MUST-8, rfc9293:SHLD-1, rfc9293:MUST-9")
    problems = level_disagreements(registry, [case])
    assert [(p.index, p.ref, p.case_level, p.registry_level) for p in problems] == [
        (1, "rfc9293:MUST-8", "SHOULD", "MUST"),
        (3, "rfc9293:MUST-9", "SHOULD", "MUST NOT"),
    ]
    first = problems[0]
    assert (first.file, first.line, first.column, first.case_id) == (Path("level.yaml"), 3, 23, "LEVEL-01")
    assert first.line_text("level.yaml") == (
        "level.yaml:3:23: refs[1]: rfc9293:MUST-8 is a MUST requirement but the case's level is SHOULD: "
        "a case's level is the level of every numbered requirement it cites"
    )


def test_an_info_case_cites_no_numbered_requirement(registry: dict[str, Requirement]) -> None:
    (problem,) = level_disagreements(registry, [level_case("INFO", "rfc9293:3.7.1, rfc9293:MUST-16")])
    assert (problem.line, problem.column, problem.index) == (3, 23, 1)
    assert problem.message() == (
        "rfc9293:MUST-16 is a numbered requirement (MUST) and an INFO case cites none: cite the section instead "
        "(e.g. rfc9293:3.7.1), or make the case MUST"
    )


def test_ref_problems_also_name_references_missing_from_the_registry(registry: dict[str, Requirement]) -> None:
    problems = ref_problems(registry, [level_case("MUST", "rfc9293:MUST-999, rfc9293:MAY-2")])
    assert [p.line_text("level.yaml") for p in problems] == [
        "level.yaml:3:8: refs[0]: rfc9293:MUST-999 is not in the requirements registry "
        "(conformance/grading/requirements.yaml)",
        "level.yaml:3:26: refs[1]: rfc9293:MAY-2 is a MAY requirement but the case's level is MUST: "
        "a case's level is the level of every numbered requirement it cites",
    ]


def test_check_reports_each_level_problem_in_one_line(tmp_path: Path) -> None:
    good = LEVEL_CASE.format(level="MUST", refs="rfc9293:MUST-8").replace("LEVEL-01", "LEVEL-02")  # ids are unique
    (tmp_path / "good.yaml").write_text(good)
    (tmp_path / "bad.yaml").write_text(LEVEL_CASE.format(level="SHOULD", refs="rfc9293:MUST-8, rfc9293:MUST-999"))
    proc = subprocess.run(
        [sys.executable, "-m", "conformance", "check", "."], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.splitlines() == [
        "bad.yaml:3:8: refs[0]: rfc9293:MUST-8 is a MUST requirement but the case's level is SHOULD: "
        "a case's level is the level of every numbered requirement it cites",
        "bad.yaml:3:24: refs[1]: rfc9293:MUST-999 is not in the requirements registry "
        "(conformance/grading/requirements.yaml)",
        "1 valid, 1 invalid",
    ]


def test_the_registry_command_still_runs() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "conformance.grading.registry"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert "in-scope MUST requirements no case cites" in proc.stdout
    assert "not in the registry" not in proc.stdout
