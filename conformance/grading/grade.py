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
from .registry import in_scope_requirements, registered_levels, registered_summaries, rfc_topic

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


SCOPE_LEVELS = ("MUST", "SHOULD", "MAY")


def scope(requirements: Sequence[Mapping[str, Any]], in_scope: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """Per level, what the run decided of the requirements the suite claims to test (the registry's in-scope
    numbered requirements): ``passed`` and ``failed`` (decided), ``undecided`` (ERROR or INCONCLUSIVE), and
    ``not_run`` (no case of it ran: NOT-RUN, or not selected), with the ids not run."""
    verdicts = {str(r["id"]): str(r["verdict"]) for r in requirements}
    out: dict[str, dict[str, Any]] = {}
    for level in SCOPE_LEVELS:
        ids = [rid for rid, lvl in in_scope.items() if lvl == level]
        seen = [verdicts.get(rid, "NOT-RUN") for rid in ids]
        out[level] = {
            "in_scope": len(ids),
            "passed": seen.count("PASS"),
            "failed": seen.count("FAIL"),
            "undecided": sum(v in UNDECIDED_VERDICTS for v in seen),
            "not_run": seen.count("NOT-RUN"),
            "not_run_ids": [rid for rid, v in zip(ids, seen, strict=True) if v == "NOT-RUN"],
        }
    return out


def coverage(levels: Mapping[str, Mapping[str, Any]], level: str = "MUST") -> float:
    """The share of a level's in-scope requirements the run decided (passed or failed), 0..1 (1 when none)."""
    counts = levels[level]
    return (counts["passed"] + counts["failed"]) / counts["in_scope"] if counts["in_scope"] else 1.0


def statement(
    area_name: str,
    profile: str,
    requirements: Sequence[Mapping[str, Any]],
    undecided: int,
    in_scope: Mapping[str, Mapping[str, Any]],
) -> str:
    """One line: the verdict first, then how much of the in-scope requirements the run decided at each level,
    then what failed, was undecided or was not run. It never calls a stack conformant on a fraction of the
    requirements: a run that left any in-scope requirement undecided or not run says ``incomplete``."""
    head = f"{area_name} (profile {profile})"
    if not requirements:
        return f"{head}: nothing tested"
    failed = [r["id"] for r in requirements if r["category"] == "fail"]
    non_strict = [r["id"] for r in requirements if r["category"] == "non-strict"]
    not_run = [r["id"] for r in requirements if r["verdict"] == "NOT-RUN"]
    must = in_scope["MUST"]
    gaps = undecided or not_run or any(in_scope[lvl]["not_run"] or in_scope[lvl]["undecided"] for lvl in SCOPE_LEVELS)
    if failed:
        verdict = f"not conformant: {', '.join(failed)}"
    elif gaps:
        verdict = "incomplete: conformant " + (
            f"on {must['passed']} of {must['in_scope']} in-scope MUST requirements" if must["in_scope"] else "so far"
        )
    else:
        verdict = f"conformant on all {must['in_scope']} in-scope MUST requirements" if must["in_scope"] else ""
        verdict = verdict or "conformant"
    per_level = []
    for level in SCOPE_LEVELS:
        counts = in_scope[level]
        if not counts["in_scope"]:
            continue
        text = f"{level} {counts['passed']}/{counts['in_scope']} passed"
        for key, word in (("failed", "failed"), ("undecided", "undecided"), ("not_run", "not run")):
            text += f", {counts[key]} {word}" if counts[key] else ""
        per_level.append(text)
    parts = [verdict] + (["in scope: " + ", ".join(per_level)] if per_level else [])
    if undecided:
        parts.append(f"{undecided} requirement{'s' if undecided != 1 else ''} undecided")
    if non_strict:
        parts.append(f"SHOULD/MAY not met: {', '.join(non_strict)}")
    if not_run:
        parts.append(f"not run: {', '.join(not_run)}")
    return f"{head}: " + "; ".join(parts)


def grade(doc: dict, in_scope_ids: Mapping[str, str] | None = None) -> dict:
    """Grade a results.json document (schema ``tcp-conformance/results/1``); see docs/grading.md. The in-scope
    requirements (id -> level) are the registry's unless given."""
    cases = _cases(doc)
    groups = _group(cases)
    requirements = [g.as_json() for g in groups]
    levels = _level_counts(groups)
    undecided = [g.id for g in groups if g.undecided]
    profile = str(doc.get("profile") or "?")
    rfcs = cited_rfcs(cases)
    area_name = area(rfcs)
    in_scope = scope(requirements, in_scope_requirements() if in_scope_ids is None else in_scope_ids)
    not_run = [r["id"] for r in requirements if r["verdict"] == "NOT-RUN"]
    complete = bool(requirements) and not undecided and not not_run
    complete = complete and not any(in_scope[lvl]["not_run"] or in_scope[lvl]["undecided"] for lvl in SCOPE_LEVELS)
    return {
        "profile": profile,
        "statement": statement(area_name, profile, requirements, len(undecided), in_scope),
        "conformant": not any(r["category"] == "fail" for r in requirements),
        "complete": complete,
        "scope": in_scope,
        "coverage": round(coverage(in_scope), 4),
        "levels": levels,
        "categories": _category_counts(cases),
        "requirements": requirements,
        "area": area_name,
        "rfcs": rfcs,
        "failed": [r["id"] for r in requirements if r["category"] == "fail"],
        "non_strict": [r["id"] for r in requirements if r["category"] == "non-strict"],
        "undecided": undecided,
        "not_run": not_run,
        "waived": waived(cases),
    }


def waived(cases: Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
    """The reviewed known deviations of the target (its expectations file): failures that stand in every count
    above and do not fail a CI run. Each with its case, verdict and the review's reason."""
    out = []
    for case in cases:
        known = case.get("known_deviation")
        if case.get("waiver") == "waived" and isinstance(known, Mapping):
            reason = str(known.get("reason", ""))
            out.append({"case": case_label(case), "verdict": case_verdict(case), "reason": reason})
    return out


def coverage_gate(graded: Mapping[str, Any], min_coverage: float | None, fail_on_not_run: bool) -> str | None:
    """Whether a graded run is enough for a CI: None when it is, else one line saying why not. ``min_coverage``
    is the least percentage of the in-scope MUST requirements the run must decide (pass or fail);
    ``fail_on_not_run`` refuses any in-scope requirement left undecided or not run, and any case not run."""
    levels = graded.get("scope") or {}
    must = levels.get("MUST") or {"in_scope": 0, "passed": 0, "failed": 0}
    decided = must["passed"] + must["failed"]
    share = 100.0 * (decided / must["in_scope"] if must["in_scope"] else 1.0)
    if min_coverage is not None and share < min_coverage:
        return (f"coverage gate: {decided} of {must['in_scope']} in-scope MUST requirements decided ({share:.1f}%), "
                f"below --min-coverage {min_coverage:g}%")  # fmt: skip
    if fail_on_not_run:
        gaps = {lvl: (c.get("not_run", 0), c.get("undecided", 0)) for lvl, c in levels.items()}
        missing = sum(n for n, _ in gaps.values())
        undecided = sum(u for _, u in gaps.values())
        cases = len(graded.get("not_run") or [])
        if missing or undecided or cases:
            return (f"coverage gate (--fail-on-not-run): in-scope requirements: {missing} not run, {undecided} "
                    f"undecided; requirements of this run not run: {cases}")  # fmt: skip
    return None


def statement_word(graded: Mapping[str, Any]) -> str:
    """The banner's word: NOT CONFORMANT when a MUST failed, CONFORMANT only when complete, else INCOMPLETE."""
    if graded.get("conformant") is False:
        return "NOT CONFORMANT"
    return "CONFORMANT" if graded.get("conformant") and graded.get("complete") else "INCOMPLETE"
