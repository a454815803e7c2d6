"""Grade a run: from the cases of a results.json document to a conformance statement per requirement.

A requirement is a numbered requirement id a case cites (``rfc9293:MUST-10``) or, for a case that cites none,
the case id itself. Its verdict is the worst verdict of all cases that cite it, in every address family. Cases
are also sorted into the categories of Autobahn|Testsuite: pass, fail (a MUST broken), non-strict (a SHOULD or
MAY broken), info (an INFO-level case, whatever it saw) and incomplete (ERROR, INCONCLUSIVE, NOT-RUN).

``grade`` is a pure function over the loaded document; the rules are described in docs/grading.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..vocabulary import (
    CATEGORIES,
    LEVEL_STRENGTH,
    LEVELS,
    STRICT_LEVELS,
    UNDECIDED_VERDICTS,
    VERDICT_SEVERITY,
    VERDICTS,
    rfc_number,
)
from .registry import registered_levels, registered_summaries, rfc_topic

DEFAULT_AREA = "RFC 9293 connection management"
CORE_RFCS = frozenset({"793", "9293"})


def case_level(case: Mapping[str, Any]) -> str:
    """The case's level; a missing or unknown level is graded as MUST (the strict reading)."""
    level = str(case.get("level") or "").upper()
    return level if level in LEVELS else "MUST"


def case_verdict(case: Mapping[str, Any]) -> str:
    """The case's verdict; a missing or unknown verdict is graded as ERROR (something broke)."""
    verdict = str(case.get("verdict") or "").upper()
    return verdict if verdict in VERDICTS else "ERROR"


def case_label(case: Mapping[str, Any]) -> str:
    """``HS-SIMOPEN-01[ipv4]``: the case id and its address family."""
    family = case.get("family")
    return f"{case.get('id', '?')}[{family}]" if family else str(case.get("id", "?"))


def case_requirements(case: Mapping[str, Any]) -> list[str]:
    """The requirement ids the case counts towards: the numbered ones it cites, else its own id."""
    cited = case.get("requirements")
    ids = [str(r) for r in cited if r] if isinstance(cited, list) else []
    return list(dict.fromkeys(ids)) or [str(case.get("id", "?"))]


def category(level: str, verdict: str) -> str:
    """Autobahn-style category of one verdict at one level."""
    if level == "INFO":
        return "info"
    if verdict == "PASS":
        return "pass"
    if verdict == "FAIL":
        return "fail" if level == "MUST" else "non-strict"
    return "incomplete"


def case_category(case: Mapping[str, Any]) -> str:
    return category(case_level(case), case_verdict(case))


def worst_verdict(verdicts: Iterable[str]) -> str:
    """FAIL > ERROR > INCONCLUSIVE > PASS; NOT-RUN only when every verdict is NOT-RUN (or there is none)."""
    return max(verdicts, key=VERDICT_SEVERITY.__getitem__, default="NOT-RUN")


def strongest_level(levels: Iterable[str]) -> str:
    return max(levels, key=LEVEL_STRENGTH.__getitem__, default="MUST")


@dataclass
class _Requirement:
    id: str
    title: str
    cases: list[Mapping[str, Any]] = field(default_factory=list)
    registered: str | None = None  # the level the requirements registry gives the id (None: not a registered id)

    @property
    def level(self) -> str:
        """The registry's level of a numbered requirement; for a case that cites none, the case's own level."""
        return self.registered or strongest_level(case_level(c) for c in self.cases)

    @property
    def verdict(self) -> str:
        return worst_verdict(case_verdict(c) for c in self.cases)

    @property
    def undecided(self) -> bool:
        """A MUST/SHOULD-level case of it ended ERROR or INCONCLUSIVE."""
        strict = self.level in STRICT_LEVELS if self.registered else None
        return any(
            (strict if strict is not None else case_level(c) in STRICT_LEVELS) and case_verdict(c) in UNDECIDED_VERDICTS
            for c in self.cases
        )

    def as_json(self) -> dict[str, Any]:
        level, verdict = self.level, self.verdict
        return {
            "id": self.id,
            "level": level,
            "title": self.title,
            "cases": [case_label(c) for c in self.cases],
            "verdict": verdict,
            "category": category(level, verdict),
        }


def _cases(doc: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    cases = doc.get("cases")
    return [c for c in cases if isinstance(c, Mapping)] if isinstance(cases, list) else []


def _group(cases: Sequence[Mapping[str, Any]]) -> list[_Requirement]:
    """Requirements in the order of the first case citing each."""
    groups: dict[str, _Requirement] = {}
    levels, summaries = registered_levels(), registered_summaries()
    for case in cases:
        for rid in case_requirements(case):
            title = summaries.get(rid) or str(case.get("title") or "")  # the registry's words, not one case's
            group = groups.setdefault(rid, _Requirement(rid, title, registered=levels.get(rid)))
            group.cases.append(case)
    return list(groups.values())


def _level_counts(requirements: Sequence[_Requirement]) -> dict[str, dict[str, int]]:
    levels = {lvl: {"pass": 0, "fail": 0, "other": 0, "total": 0} for lvl in LEVELS}
    for req in requirements:
        counts = levels[req.level]
        verdict = req.verdict
        counts["pass" if verdict == "PASS" else "fail" if verdict == "FAIL" else "other"] += 1
        counts["total"] += 1
    return levels


def _category_counts(cases: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    counts = dict.fromkeys(CATEGORIES, 0)
    for case in cases:
        counts[case_category(case)] += 1
    return counts


def cited_rfcs(cases: Iterable[Mapping[str, Any]]) -> list[str]:
    """RFC numbers the cases cite in their refs, in numeric order."""
    found = set()
    for case in cases:
        refs = case.get("refs")
        for ref in refs if isinstance(refs, list) else []:
            number = rfc_number(str(ref))
            if number:
                found.add(number)
    return sorted(found, key=int)


def area(rfcs: Sequence[str]) -> str:
    """What the run covers: RFC 9293 connection management unless the cases cite only companion RFCs."""
    companions = [r for r in rfcs if r not in CORE_RFCS]
    if not companions or len(companions) < len(rfcs):
        return DEFAULT_AREA
    if len(companions) == 1:
        topic = rfc_topic(companions[0])
        return f"RFC {companions[0]} {topic}" if topic else f"RFC {companions[0]}"
    return "RFC " + ", ".join(companions)


def statement(
    area_name: str,
    profile: str,
    levels: Mapping[str, Mapping[str, int]],
    requirements: Sequence[Mapping[str, Any]],
    undecided: int,
) -> str:
    """One line: the area, the pass counts per level and the verdict, naming what failed or was not run."""
    counts = ", ".join(f"{levels[lvl]['pass']}/{levels[lvl]['total']} {lvl}" for lvl in ("MUST", "SHOULD", "MAY"))
    head = f"{area_name} (profile {profile}): {counts}"
    if not requirements:
        return f"{head}; nothing tested"
    failed = [r["id"] for r in requirements if r["category"] == "fail"]
    non_strict = [r["id"] for r in requirements if r["category"] == "non-strict"]
    not_run = [r["id"] for r in requirements if r["verdict"] == "NOT-RUN"]
    undecided_text = f"{undecided} requirement{'s' if undecided != 1 else ''} undecided"
    if failed:
        parts = [f"not conformant: {', '.join(failed)}"]
        if undecided:
            parts.append(f"incomplete: {undecided_text}")
    elif undecided:
        parts = [f"conformant so far (incomplete: {undecided_text})"]
    else:
        parts = ["conformant"]
    if non_strict:
        parts.append(f"SHOULD/MAY not met: {', '.join(non_strict)}")
    if not_run:
        parts.append(f"not run: {', '.join(not_run)}")
    return f"{head}; " + "; ".join(parts)


def grade(doc: dict) -> dict:
    """Grade a results.json document (schema ``tcp-conformance/results/1``); see docs/grading.md."""
    cases = _cases(doc)
    groups = _group(cases)
    requirements = [g.as_json() for g in groups]
    levels = _level_counts(groups)
    undecided = [g.id for g in groups if g.undecided]
    profile = str(doc.get("profile") or "?")
    rfcs = cited_rfcs(cases)
    area_name = area(rfcs)
    return {
        "profile": profile,
        "statement": statement(area_name, profile, levels, requirements, len(undecided)),
        "conformant": not any(r["category"] == "fail" for r in requirements),
        "complete": not undecided,
        "levels": levels,
        "categories": _category_counts(cases),
        "requirements": requirements,
        "area": area_name,
        "rfcs": rfcs,
        "failed": [r["id"] for r in requirements if r["category"] == "fail"],
        "non_strict": [r["id"] for r in requirements if r["category"] == "non-strict"],
        "undecided": undecided,
        "not_run": [r["id"] for r in requirements if r["verdict"] == "NOT-RUN"],
    }
