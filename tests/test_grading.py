"""Grading a run: requirements grouped across cases and families, worst verdict, categories, statement."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from conformance.grading.grade import area, coverage_gate, grade, worst_verdict
from conformance.grading.registry import registered_summaries


def case(
    id_: str,
    verdict: str = "PASS",
    *,
    family: str = "ipv4",
    level: str = "MUST",
    requirements: list[str] | None = None,
    refs: list[str] | None = None,
    title: str | None = None,
) -> dict[str, Any]:
    return {
        "id": id_,
        "family": family,
        "title": title or f"Title of {id_}",
        "level": level,
        "refs": refs if refs is not None else ["rfc9293:3.5", *(requirements or [])],
        "requirements": requirements or [],
        "verdict": verdict,
        "reason": "",
    }


def both(id_: str, v4: str = "PASS", v6: str = "PASS", **kw: Any) -> list[dict[str, Any]]:
    return [case(id_, v4, family="ipv4", **kw), case(id_, v6, family="ipv6", **kw)]


def doc(*cases: dict[str, Any], profile: str = "rfc9293") -> dict[str, Any]:
    return {"schema": "tcp-conformance/results/1", "profile": profile, "cases": list(cases)}


def requirement(grade_: dict[str, Any], rid: str) -> dict[str, Any]:
    found = [r for r in grade_["requirements"] if r["id"] == rid]
    assert len(found) == 1, (rid, grade_["requirements"])
    return found[0]


# --------------------------------------------------------------------------- grouping


def test_cases_citing_a_requirement_are_grouped_across_cases_and_families() -> None:
    g = grade(
        doc(
            *both("HS-SIMOPEN-01", requirements=["rfc9293:MUST-10"]),
            *both("HS-SIMOPEN-02", requirements=["rfc9293:MUST-10"], title="Second"),
            *both("HS-PASSIVE-01"),
        )
    )
    assert [r["id"] for r in g["requirements"]] == ["rfc9293:MUST-10", "HS-PASSIVE-01"]
    must10 = requirement(g, "rfc9293:MUST-10")
    assert must10 == {
        "id": "rfc9293:MUST-10",
        "level": "MUST",
        "title": registered_summaries()["rfc9293:MUST-10"],  # the registry's words, whatever its cases' titles
        "cases": ["HS-SIMOPEN-01[ipv4]", "HS-SIMOPEN-01[ipv6]", "HS-SIMOPEN-02[ipv4]", "HS-SIMOPEN-02[ipv6]"],
        "verdict": "PASS",
        "category": "pass",
    }
    assert requirement(g, "HS-PASSIVE-01")["cases"] == ["HS-PASSIVE-01[ipv4]", "HS-PASSIVE-01[ipv6]"]
    assert requirement(g, "HS-PASSIVE-01")["title"] == "Title of HS-PASSIVE-01"  # a case citing none: its own title
    # levels count requirements, categories count cases
    assert g["levels"]["MUST"] == {"pass": 2, "fail": 0, "other": 0, "total": 2}
    assert g["categories"]["pass"] == 6


def test_a_case_citing_two_requirements_counts_for_both() -> None:
    g = grade(doc(case("X-01", "FAIL", requirements=["rfc9293:MUST-1", "rfc9293:MUST-2"])))
    assert [r["id"] for r in g["requirements"]] == ["rfc9293:MUST-1", "rfc9293:MUST-2"]
    assert all(r["verdict"] == "FAIL" for r in g["requirements"])
    assert g["levels"]["MUST"]["fail"] == 2
    assert g["categories"]["fail"] == 1


def test_an_unregistered_requirement_takes_the_strongest_level_of_its_cases() -> None:
    g = grade(doc(case("A", level="SHOULD", requirements=["r:1"]), case("B", level="MUST", requirements=["r:1"])))
    assert requirement(g, "r:1")["level"] == "MUST"


@pytest.mark.parametrize(("rid", "level"), [("rfc9293:MUST-67", "MUST"), ("rfc9293:SHLD-31", "SHOULD"),
                                            ("rfc9293:MAY-2", "MAY"), ("rfc9293:MUST-9", "MUST")])  # fmt: skip
def test_a_registered_requirement_is_graded_at_the_registrys_level_whatever_its_cases_say(rid: str, level: str) -> None:
    """A case whose level disagrees with the registry is a `check` error; should one still reach grading (a run of
    unchecked cases), the requirement keeps the level the registry gives it (MUST NOT counts as MUST)."""
    wrong = "INFO" if level == "MUST" else "MUST"
    g = grade(doc(case("A", "FAIL", level=wrong, requirements=[rid])))
    assert requirement(g, rid)["level"] == level
    assert requirement(g, rid)["category"] == ("fail" if level == "MUST" else "non-strict")


# --------------------------------------------------------------------------- worst verdict


@pytest.mark.parametrize(
    ("verdicts", "worst"),
    [
        (["PASS", "PASS"], "PASS"),
        (["PASS", "FAIL"], "FAIL"),
        (["ERROR", "FAIL"], "FAIL"),
        (["INCONCLUSIVE", "ERROR"], "ERROR"),
        (["PASS", "INCONCLUSIVE"], "INCONCLUSIVE"),
        (["NOT-RUN", "INCONCLUSIVE"], "INCONCLUSIVE"),
        (["NOT-RUN", "PASS"], "PASS"),  # NOT-RUN only when all are NOT-RUN
        (["NOT-RUN", "NOT-RUN"], "NOT-RUN"),
        ([], "NOT-RUN"),
    ],
)
def test_worst_verdict(verdicts: list[str], worst: str) -> None:
    assert worst_verdict(verdicts) == worst


@pytest.mark.parametrize(
    ("v4", "v6", "verdict"),
    [
        ("PASS", "FAIL", "FAIL"),
        ("ERROR", "PASS", "ERROR"),
        ("NOT-RUN", "PASS", "PASS"),
        ("NOT-RUN", "NOT-RUN", "NOT-RUN"),
    ],
)
def test_a_requirement_has_the_worst_verdict_of_its_families(v4: str, v6: str, verdict: str) -> None:
    assert requirement(grade(doc(*both("C-01", v4, v6))), "C-01")["verdict"] == verdict


# --------------------------------------------------------------------------- categories


@pytest.mark.parametrize(
    ("level", "verdict", "category"),
    [
        ("MUST", "PASS", "pass"),
        ("SHOULD", "PASS", "pass"),
        ("MUST", "FAIL", "fail"),
        ("SHOULD", "FAIL", "non-strict"),
        ("MAY", "FAIL", "non-strict"),
        ("INFO", "PASS", "info"),
        ("INFO", "FAIL", "info"),
        ("INFO", "ERROR", "info"),
        ("MUST", "ERROR", "incomplete"),
        ("MAY", "INCONCLUSIVE", "incomplete"),
        ("SHOULD", "NOT-RUN", "incomplete"),
    ],
)
def test_case_categories(level: str, verdict: str, category: str) -> None:
    g = grade(doc(case("C-01", verdict, level=level)))
    assert g["categories"] == {c: int(c == category) for c in ("pass", "non-strict", "fail", "info", "incomplete")}
    assert g["requirements"][0]["category"] == category


def test_level_counts() -> None:
    g = grade(
        doc(
            case("M-1"),
            case("M-2", "FAIL"),
            case("M-3", "ERROR"),
            case("S-1", "FAIL", level="SHOULD"),
            case("Y-1", "NOT-RUN", level="MAY"),
            case("I-1", "PASS", level="INFO"),
        )
    )
    assert g["levels"] == {
        "MUST": {"pass": 1, "fail": 1, "other": 1, "total": 3},
        "SHOULD": {"pass": 0, "fail": 1, "other": 0, "total": 1},
        "MAY": {"pass": 0, "fail": 0, "other": 1, "total": 1},
        "INFO": {"pass": 1, "fail": 0, "other": 0, "total": 1},
    }


# --------------------------------------------------------------------------- flags and statement


# A scope of two numbered requirements (the registry's in-scope list has dozens): the denominator of a statement.
SCOPE = {"rfc9293:MUST-10": "MUST", "rfc9293:SHLD-5": "SHOULD"}


def test_all_pass_is_conformant_and_complete() -> None:
    cases = [*both("HS-SIMOPEN-01", requirements=["rfc9293:MUST-10"]), *both("HS-PASSIVE-01")]
    cases.append(case("S-1", level="SHOULD", requirements=["rfc9293:SHLD-5"]))
    g = grade(doc(*cases), SCOPE)
    assert (g["conformant"], g["complete"]) == (True, True)
    assert g["profile"] == "rfc9293"
    assert g["statement"] == (
        "RFC 9293 connection management (profile rfc9293): conformant on all 1 in-scope MUST requirements; "
        "in scope: MUST 1/1 passed, SHOULD 1/1 passed"
    )
    assert g["coverage"] == 1.0


def test_a_must_fail_is_not_conformant_and_named() -> None:
    cases = [c for n in range(10) for c in both(f"C-{n:02}")]
    cases += both("HS-PASSIVE-01")
    cases += both("HS-SIMOPEN-01", "PASS", "FAIL", requirements=["rfc9293:MUST-10"])
    g = grade(doc(*cases), {"rfc9293:MUST-10": "MUST"})
    assert (g["conformant"], g["complete"]) == (False, True)
    assert g["statement"] == (
        "RFC 9293 connection management (profile rfc9293): not conformant: rfc9293:MUST-10; "
        "in scope: MUST 0/1 passed, 1 failed"
    )
    assert g["failed"] == ["rfc9293:MUST-10"]


def test_a_should_fail_is_non_strict_and_still_conformant() -> None:
    g = grade(doc(case("M-1"), case("S-1", "FAIL", level="SHOULD", requirements=["rfc9293:SHLD-5"])), {})
    assert (g["conformant"], g["complete"]) == (True, True)
    assert g["categories"]["non-strict"] == 1
    assert g["statement"].endswith("(profile rfc9293): conformant; SHOULD/MAY not met: rfc9293:SHLD-5")


@pytest.mark.parametrize("verdict", ["ERROR", "INCONCLUSIVE"])
@pytest.mark.parametrize("level", ["MUST", "SHOULD"])
def test_an_undecided_must_or_should_case_makes_the_run_incomplete(level: str, verdict: str) -> None:
    g = grade(doc(case("M-1"), case("U-1", verdict, level=level), case("U-2", verdict, level=level)), {})
    assert (g["conformant"], g["complete"]) == (True, False)
    assert g["undecided"] == ["U-1", "U-2"]
    assert g["statement"].endswith(": incomplete: conformant so far; 2 requirements undecided")


@pytest.mark.parametrize("level", ["MAY", "INFO"])
def test_an_undecided_may_or_info_case_leaves_the_run_complete(level: str) -> None:
    g = grade(doc(case("M-1"), case("U-1", "ERROR", level=level)), {})
    assert g["complete"] is True
    assert g["statement"].endswith(": conformant")


def test_a_case_not_run_makes_the_run_incomplete_and_is_named() -> None:
    g = grade(doc(case("M-1"), *both("RST-CLOSED-01", "NOT-RUN", "NOT-RUN")), {})
    assert (g["conformant"], g["complete"]) == (True, False)
    assert g["not_run"] == ["RST-CLOSED-01"]
    assert g["categories"]["incomplete"] == 2
    assert g["statement"] == (
        "RFC 9293 connection management (profile rfc9293): incomplete: conformant so far; not run: RST-CLOSED-01"
    )


def test_a_run_of_a_fraction_of_the_in_scope_requirements_is_never_called_conformant() -> None:
    """An agentless run: two in-scope MUST requirements passed, two were NOT-RUN (no upper tester) and one was
    not selected at all. Nothing failed, and the statement still says how little was decided."""
    scope = {f"rfc9293:MUST-{n}": "MUST" for n in range(1, 6)} | {"rfc9293:SHLD-1": "SHOULD"}
    cases = [*both("A-1", requirements=["rfc9293:MUST-1"]), *both("A-2", requirements=["rfc9293:MUST-2"])]
    cases += [*both("B-1", "NOT-RUN", "NOT-RUN", requirements=["rfc9293:MUST-3", "rfc9293:MUST-4"])]
    g = grade(doc(*cases), scope)
    assert (g["conformant"], g["complete"]) == (True, False)
    assert g["statement"] == (
        "RFC 9293 connection management (profile rfc9293): incomplete: conformant on 2 of 5 in-scope MUST "
        "requirements; in scope: MUST 2/5 passed, 3 not run, SHOULD 0/1 passed, 1 not run; "
        "not run: rfc9293:MUST-3, rfc9293:MUST-4"
    )
    assert g["scope"]["MUST"] == {"in_scope": 5, "passed": 2, "failed": 0, "undecided": 0, "not_run": 3,
                                  "not_run_ids": ["rfc9293:MUST-3", "rfc9293:MUST-4", "rfc9293:MUST-5"]}  # fmt: skip
    assert g["coverage"] == 0.4


def test_the_registry_gives_the_scope_by_default() -> None:
    g = grade(doc(*both("HS-SIMOPEN-01", requirements=["rfc9293:MUST-10"])))
    in_scope = g["scope"]["MUST"]["in_scope"]
    assert in_scope > 10 and g["scope"]["MUST"]["passed"] == 1 and g["complete"] is False
    assert f"conformant on 1 of {in_scope} in-scope MUST requirements" in g["statement"]


def test_fail_and_undecided_together() -> None:
    g = grade(doc(case("M-1", "FAIL"), case("M-2", "INCONCLUSIVE"), profile="rfc793"), {})
    assert (g["conformant"], g["complete"]) == (False, False)
    assert g["statement"] == (
        "RFC 9293 connection management (profile rfc793): not conformant: M-1; 1 requirement undecided"
    )


def test_an_empty_run() -> None:
    g = grade(doc())
    assert (g["conformant"], g["complete"]) == (True, False)
    assert g["requirements"] == []
    assert g["categories"] == {"pass": 0, "non-strict": 0, "fail": 0, "info": 0, "incomplete": 0}
    assert all(counts == {"pass": 0, "fail": 0, "other": 0, "total": 0} for counts in g["levels"].values())
    assert g["statement"] == "RFC 9293 connection management (profile rfc9293): nothing tested"


def test_output_schema_keys() -> None:
    g = grade(doc(case("M-1")))
    assert {"profile", "statement", "conformant", "complete", "levels", "categories", "requirements"} <= set(g)
    assert list(g["levels"]) == ["MUST", "SHOULD", "MAY", "INFO"]
    assert set(g["requirements"][0]) == {"id", "level", "title", "cases", "verdict", "category"}
    json.dumps(g)  # serialisable into results.json


# --------------------------------------------------------------------------- area, robustness, purity


@pytest.mark.parametrize(
    ("rfcs", "name"),
    [
        ([], "RFC 9293 connection management"),
        (["793", "7323"], "RFC 9293 connection management"),
        (["7323", "9293"], "RFC 9293 connection management"),
        (["7323"], "RFC 7323 window scale and timestamps"),
        (["5961", "7323"], "RFC 5961, 7323"),
        (["8888"], "RFC 8888"),
    ],
)
def test_area_is_named_from_the_cited_rfcs(rfcs: list[str], name: str) -> None:
    assert area(rfcs) == name


def test_area_of_a_run_citing_only_a_companion_rfc() -> None:
    g = grade(doc(case("OPT-WS-01", refs=["rfc7323:2.2", "RFC7323:2.3", "ietf:draft-x"])), {})
    assert g["rfcs"] == ["7323"]
    assert g["statement"] == "RFC 7323 window scale and timestamps (profile rfc9293): conformant"


def test_unknown_levels_and_verdicts_are_graded_strictly() -> None:
    g = grade(doc({"id": "ODD-01", "family": "ipv4", "level": "LOUD", "verdict": "WEIRD"}, {"bogus": True}))
    odd = requirement(g, "ODD-01")
    assert (odd["level"], odd["verdict"], odd["category"]) == ("MUST", "ERROR", "incomplete")
    assert g["complete"] is False


def test_grade_does_not_modify_its_input() -> None:
    d = doc(*both("HS-SIMOPEN-01", "FAIL", requirements=["rfc9293:MUST-10"]))
    before = copy.deepcopy(d)
    grade(d)
    assert d == before


# --------------------------------------------------------------------------- the coverage gate


def test_the_coverage_gate_counts_decided_in_scope_must_requirements() -> None:
    scope = {f"rfc9293:MUST-{n}": "MUST" for n in range(1, 5)}
    cases = [*both("A-1", requirements=["rfc9293:MUST-1"]), *both("A-2", "FAIL", requirements=["rfc9293:MUST-2"])]
    g = grade(doc(*cases), scope)  # 2 of 4 decided (one passed, one failed): 50%
    assert coverage_gate(g, 50, False) is None
    assert coverage_gate(g, 50.1, False) == (
        "coverage gate: 2 of 4 in-scope MUST requirements decided (50.0%), below --min-coverage 50.1%"
    )
    assert coverage_gate(g, None, False) is None


def test_fail_on_not_run_refuses_any_gap_in_scope_or_in_the_run() -> None:
    scope = {"rfc9293:MUST-1": "MUST"}
    complete = grade(doc(*both("A-1", requirements=["rfc9293:MUST-1"])), scope)
    assert complete["complete"] and coverage_gate(complete, 100, True) is None
    with_gap = grade(doc(*both("A-1", requirements=["rfc9293:MUST-1"]), case("B-1", "NOT-RUN")), scope)
    assert coverage_gate(with_gap, 100, False) is None  # every in-scope MUST decided
    assert coverage_gate(with_gap, None, True) == (
        "coverage gate (--fail-on-not-run): in-scope requirements: 0 not run, 0 undecided; requirements of this run "
        "not run: 1"
    )
    undecided = grade(doc(*both("A-1", "INCONCLUSIVE", requirements=["rfc9293:MUST-1"])), scope)
    assert "in-scope requirements: 0 not run, 1 undecided" in str(coverage_gate(undecided, None, True))
