"""The one judge: from what a case run recorded to its verdict under a profile.

Rules of this module: every verdict of the suite is decided here and nowhere else. The engine records facts (how
each attempt ended, the behaviours seen, what the link is declared to do, what the capture lost); the judge reads
only those facts (``CaseRecord.facts()``, also kept in results.json), so a finished run can be judged again
offline under another profile. Three decisions live here:

- one attempt: its outcome, the behaviours it saw (a behaviour that does not conform under the profile is a FAIL
  with that step's evidence) and the doubt an impaired link or a lossy capture casts on a FAIL;
- several attempts of one case (retries on an impaired link): a PASS after a FAIL means the link made the
  difference (INCONCLUSIVE); a FAIL stands only if every attempt failed the same way;
- a reviewed known deviation of the target: the verdict stays, and is marked waived when it is the one listed,
  or stale when the case ended otherwise.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..vocabulary import PROFILES, Verdict
from ..wire.impairment import ImpairmentError, parse_impairment

Facts = Mapping[str, Any]


@dataclass(frozen=True)
class Judgement:
    verdict: Verdict
    reason: str
    failure: dict[str, Any] | None = None  # the evidence of a FAIL (or of what made it doubtful)
    behaviour: str | None = None  # the labels of the behaviours seen, in step order
    attempts: list[dict[str, Any]] = field(default_factory=list)  # a summary per attempt when there were several
    chosen: int = 0  # the attempt whose steps and trace are the case's evidence


# ---- one attempt --------------------------------------------------------------------------------------------------
def _impairment(facts: Facts) -> Any:
    try:
        return parse_impairment(facts.get("impairment"))
    except ImpairmentError:
        return parse_impairment(None)


def _doubt(facts: Facts) -> str | None:
    """Why the link or the capture, not the target, may explain a failure (None: nothing does).

    Only what the link is declared to do counts, never what it did to a particular frame: a real bad link does
    not say which frames it lost.
    """
    lost = int(facts.get("capture_losses") or 0)
    if lost:
        return f"the capture lost {lost} frame(s), so this is not a verdict"
    imp = _impairment(facts)
    if facts.get("absence") and imp.lossy:
        return f"the link loses frames ({imp}): a segment that did not come may have been lost"
    if facts.get("repeated_segment") and imp.duplicate:
        return f"the link duplicates frames ({imp}): the segment is a copy of one already seen"
    return None


def nonconforming(behaviour: Mapping[str, Any], profile: str) -> bool:
    conforms = behaviour.get("conforms")
    return conforms is not None and profile not in conforms


def _behaviour_failure(behaviour: Mapping[str, Any], profile: str, requirement: str) -> tuple[str, dict[str, Any]]:
    conforms = behaviour.get("conforms") or []
    where = f"it conforms under: {', '.join(conforms)}" if conforms else "no profile accepts it: the case records it"
    reason = (
        f"behaviour seen: {behaviour['label']} ({behaviour['text']}); it does not conform under profile {profile} "
        f"({where})"
    )
    failure = {
        "step": behaviour["step"], "line": behaviour["line"], "path": behaviour["path"], "kind": "expect_one_of",
        "expected": _conforming(behaviour, profile), "actual": behaviour.get("seen") or "", "mismatches": [],
        "requirement": requirement,
    }  # fmt: skip
    return reason, failure


def _conforming(behaviour: Mapping[str, Any], profile: str) -> str:
    """What the step would have had to see under ``profile``: its alternatives that conform there."""
    alternatives = behaviour.get("alternatives")
    if not alternatives:  # a record written before alternatives were kept
        return f"a behaviour conforming under {profile}: {behaviour.get('expected', '')}".rstrip(": ")
    fitting = [f"[{a['label']}] {a['expect']}" for a in alternatives if not nonconforming(a, profile)]
    if not fitting:
        return f"(no alternative of this step conforms under {profile})"
    return " | ".join(fitting)


def judge_attempt(facts: Facts, profile: str, requirement: str = "") -> Judgement:
    """The verdict of one attempt under ``profile``; ``requirement`` is the case's requirement line (evidence)."""
    outcome = str(facts.get("outcome"))
    reason = str(facts.get("reason") or "")
    failure = facts.get("failure")
    behaviours = list(facts.get("behaviours") or [])
    labels = ", ".join(str(b["label"]) for b in behaviours) or None
    if outcome == "unsupported":
        return Judgement(Verdict.NOT_RUN, reason, None, labels)
    bad = next((b for b in behaviours if nonconforming(b, profile)), None)
    if bad is not None:  # the first step that deviated under this profile; anything after it is beside the point
        why, evidence = _behaviour_failure(bad, profile, requirement)
        doubt = _doubt({**facts, "absence": False, "repeated_segment": bool(bad.get("repeated"))})
        if doubt:
            return Judgement(Verdict.INCONCLUSIVE, f"{why}; but {doubt}", evidence, labels)
        return Judgement(Verdict.FAIL, why, evidence, labels)
    if outcome == "deviated":
        doubt = _doubt(facts)
        if doubt:
            return Judgement(Verdict.INCONCLUSIVE, f"{reason}; but {doubt}", failure, labels)
        return Judgement(Verdict.FAIL, reason, failure, labels)
    if outcome == "undecidable":
        return Judgement(Verdict.INCONCLUSIVE, reason, failure, labels)
    if outcome == "broken":
        return Judgement(Verdict.ERROR, reason, failure, labels)
    lost = int(facts.get("capture_losses") or 0)
    if lost:
        return Judgement(Verdict.INCONCLUSIVE, f"the capture lost {lost} frame(s): the exchange cannot be judged",
                         None, labels)  # fmt: skip
    text = "all steps matched" + (f"; behaviour: {labels}" if labels else "")
    return Judgement(Verdict.PASS, text, None, labels)


# ---- several attempts ---------------------------------------------------------------------------------------------
def _signature(judgement: Judgement) -> tuple[Any, ...]:
    """Where and how an attempt failed, without the numbers: the step, its kind, and whether nothing came."""
    f = judgement.failure
    if f is None:
        return ("reason", re.sub(r"\d+", "N", judgement.reason))
    mismatches = f.get("mismatches") or []
    text = () if mismatches else re.sub(r"\d+", "N", judgement.reason)
    return (f.get("step"), f.get("kind"), f.get("actual") == "(nothing)", text)


def _fields(judgement: Judgement) -> set[str]:
    f = judgement.failure
    return {str(m).split(":", 1)[0] for m in (f.get("mismatches") or [])} if f else set()


def _failed_the_same_way(fails: Sequence[Judgement]) -> bool:
    """Same step, same kind of failure, and at least one field wrong in every attempt (an impaired link may add a
    mismatch of its own, e.g. a reordered segment's seq, beside the target's real one)."""
    if len({_signature(j) for j in fails}) != 1:
        return False
    fields = [_fields(j) for j in fails]
    return not any(fields) or bool(set.intersection(*fields))


def another_attempt(judgements: Sequence[Judgement], max_attempts: int) -> bool:
    """Run the case again? Not after a PASS or NOT-RUN, nor once the limit is reached."""
    if not judgements:
        return True
    if len(judgements) >= max_attempts:
        return False
    return judgements[-1].verdict not in (Verdict.PASS, Verdict.NOT_RUN)


def _attempt_summary(n: int, judgement: Judgement, facts: Facts) -> dict[str, Any]:
    out = {"attempt": n, "verdict": str(judgement.verdict), "reason": judgement.reason,
           "duration_s": facts.get("duration_s", 0.0)}  # fmt: skip
    if judgement.failure:
        out["failure_step"] = judgement.failure["step"]
    return out


def judge_case(attempts: Sequence[Facts], profile: str, requirement: str = "") -> Judgement:
    """The case's verdict from all its attempts (each run from scratch with fresh ports)."""
    if not attempts:
        raise ValueError("no attempts")
    judged = [judge_attempt(a, profile, requirement) for a in attempts]
    if len(judged) == 1:
        return judged[0]
    imp = next((str(a["impairment"]) for a in attempts if a.get("impairment")), None)
    where = f"under impairment '{imp}'" if imp else "on this link"
    summary = "; ".join(f"attempt {i}: {j.verdict} ({j.reason})" for i, j in enumerate(judged, 1))
    records = [_attempt_summary(i, j, attempts[i - 1]) for i, j in enumerate(judged, 1)]
    fails = [i for i, j in enumerate(judged) if j.verdict == Verdict.FAIL]
    passed = next((i for i, j in enumerate(judged) if j.verdict == Verdict.PASS), None)
    if passed is not None and fails:
        chosen, verdict, reason = fails[0], Verdict.INCONCLUSIVE, f"attempts disagree {where}: {summary}"
    elif passed is not None:
        chosen, verdict = passed, Verdict.PASS
        reason = f"{judged[passed].reason} (attempt {passed + 1} of {len(judged)}; earlier: {summary})"
    elif fails and len(fails) == len(judged) and _failed_the_same_way(judged):
        chosen, verdict = fails[0], Verdict.FAIL
        reason = f"{judged[0].reason} (the same in all {len(judged)} attempts {where})"
    elif fails and len(fails) == len(judged):
        chosen, verdict = fails[0], Verdict.INCONCLUSIVE
        reason = f"attempts failed in different ways {where}: {summary}"
    elif all(j.verdict == Verdict.ERROR for j in judged):
        chosen, verdict, reason = 0, Verdict.ERROR, f"{judged[0].reason} (in all {len(judged)} attempts)"
    else:
        chosen, verdict, reason = (fails or [0])[0], Verdict.INCONCLUSIVE, f"no attempt could decide {where}: {summary}"
    base = judged[chosen]
    return Judgement(verdict, reason, base.failure, base.behaviour, records, chosen)


def verdicts_by_profile(attempts: Sequence[Facts]) -> dict[str, str]:
    """The case's verdict under every profile the suite knows (what re-grading offline would give)."""
    if not any(b.get("conforms") is not None for a in attempts for b in a.get("behaviours") or ()):
        # No behaviour names the profiles it conforms under: the profile cannot change the verdict.
        verdict = str(judge_case(attempts, next(iter(PROFILES))).verdict)
        return dict.fromkeys(PROFILES, verdict)
    return {profile: str(judge_case(attempts, profile).verdict) for profile in PROFILES}


# ---- known deviations ---------------------------------------------------------------------------------------------
WAIVED = "waived"  # the verdict is the reviewed, listed one: it stays, the run is not failed by it
STALE = "stale"  # listed, but the case ended otherwise: the list is out of date
UNDECIDED = "undecided"  # listed, but an impaired link left the case INCONCLUSIVE: neither confirms nor refutes


def waiver(verdict: Verdict, listed: str | None, impaired: bool) -> str | None:
    """How a known deviation listed for the case (its verdict, or None) bears on this verdict."""
    if listed is None or verdict == Verdict.NOT_RUN:
        return None
    if str(verdict) == listed:
        return WAIVED
    if impaired and verdict == Verdict.INCONCLUSIVE:
        return UNDECIDED
    return STALE
