"""Verdicts and what a case run records: its steps, its trace and, on FAIL, the evidence."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

from ..vocabulary import Verdict
from ..wire.segment import Segment


@dataclass
class StepRecord:
    index: int
    line: int
    kind: str
    summary: str = ""
    outcome: str = "skipped"  # ok | fail | error | skipped
    detail: str = ""

    def as_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("index", "line", "kind", "summary", "outcome", "detail")}


@dataclass
class TraceEntry:
    """One frame of the case; the text summary is made only when someone reads it (off the packet path)."""

    ts: float  # kernel timestamp, seconds
    inbound: bool  # True: the target sent it
    segment: Segment
    step: int | None

    @property
    def summary(self) -> str:
        return self.segment.summary()

    @property
    def raw(self) -> bytes:
        return self.segment.raw


@dataclass
class Failure:
    step: int
    line: int
    path: str
    kind: str
    expected: str
    actual: str
    mismatches: list[str]
    requirement: str


@dataclass
class CaseResult:
    verdict: Verdict
    reason: str
    behaviour: str | None = None
    behaviour_text: str | None = None
    failure: Failure | None = None
    steps: list[StepRecord] = field(default_factory=list)
    trace: list[TraceEntry] = field(default_factory=list)
    started: float = 0.0
    duration_s: float = 0.0
    protocol_wait_s: float = 0.0  # declared silence windows and waits, and waits for expected segments
    blocked_s: float = 0.0  # all time spent waiting on the target or the agent
    observations: dict[str, Any] = field(default_factory=dict)
    impairment: str | None = None  # the link impairment the case ran under (None: a clean link)
    attempts: list[dict[str, Any]] = field(default_factory=list)  # every attempt when the case was retried

    def trace_json(self) -> list[dict[str, Any]]:
        t0 = self.started
        return [
            {"t": round(e.ts - t0, 6), "dir": "in" if e.inbound else "out", "summary": e.summary, "step": e.step}
            for e in sorted(self.trace, key=lambda e: e.ts)
        ]

    def failure_json(self) -> dict[str, Any] | None:
        return asdict(self.failure) if self.failure else None

    def attempts_json(self) -> dict[str, Any]:
        """The fields results.json adds for retried or impaired runs (none on a clean link without retries)."""
        out: dict[str, Any] = {}
        if self.impairment:
            out["impairment"] = self.impairment
        if self.attempts:
            out["attempts"] = self.attempts
        return out


# ---- retries -------------------------------------------------------------------------------------
# A case may always be run again from scratch with fresh ports: the target sees an unrelated new
# connection, which every TCP must accept. Attempts decide together: any PASS after a FAIL means the
# link, not the target, made the difference (INCONCLUSIVE); a FAIL stands only if every attempt failed
# at the same step in the same way.


def failure_signature(result: CaseResult) -> tuple[Any, ...]:
    """Where and how an attempt failed, without the numbers: the step, its kind, and whether nothing came."""
    f = result.failure
    if f is None:
        return ("reason", re.sub(r"\d+", "N", result.reason))
    return (f.step, f.kind, f.actual == "(nothing)", () if f.mismatches else re.sub(r"\d+", "N", result.reason))


def _mismatched_fields(result: CaseResult) -> set[str]:
    return {m.split(":", 1)[0] for m in result.failure.mismatches} if result.failure else set()


def failed_the_same_way(fails: list[CaseResult]) -> bool:
    """Same step, same kind of failure, and at least one field wrong in every attempt (an impaired link may
    add a mismatch of its own, e.g. a reordered segment's seq, beside the target's real one)."""
    if len({failure_signature(a) for a in fails}) != 1:
        return False
    fields = [_mismatched_fields(a) for a in fails]
    return not any(fields) or bool(set.intersection(*fields))


def should_retry(attempts: list[CaseResult], max_attempts: int) -> bool:
    """Run another attempt? Not after a PASS or NOT-RUN, nor once the limit is reached."""
    if not attempts:
        return True
    if len(attempts) >= max_attempts:
        return False
    return attempts[-1].verdict not in (Verdict.PASS, Verdict.NOT_RUN)


def _attempt_record(n: int, r: CaseResult) -> dict[str, Any]:
    rec: dict[str, Any] = {"attempt": n, "verdict": str(r.verdict), "reason": r.reason,
                           "duration_s": round(r.duration_s, 6)}  # fmt: skip
    if r.failure is not None:
        rec["failure_step"] = r.failure.step
    return rec


def combine_attempts(attempts: list[CaseResult], impairment: str | None) -> CaseResult:
    """The case's verdict from all its attempts; the returned result carries the evidence of one of them."""
    if not attempts:
        raise ValueError("no attempts")
    where = f"under impairment '{impairment}'" if impairment else "on this link"
    if len(attempts) == 1:
        result = attempts[0]
        result.impairment = impairment
        return result
    records = [_attempt_record(i, a) for i, a in enumerate(attempts, 1)]
    summary = "; ".join(f"attempt {i}: {a.verdict} ({a.reason})" for i, a in enumerate(attempts, 1))
    verdicts = [a.verdict for a in attempts]
    fails = [a for a in attempts if a.verdict == Verdict.FAIL]
    passed = next((a for a in attempts if a.verdict == Verdict.PASS), None)
    if passed is not None and fails:
        chosen, verdict = fails[0], Verdict.INCONCLUSIVE
        reason = f"attempts disagree {where}: {summary}"
    elif passed is not None:
        chosen, verdict = passed, Verdict.PASS
        reason = f"{passed.reason} (attempt {attempts.index(passed) + 1} of {len(attempts)}; earlier: {summary})"
    elif fails and len(fails) == len(attempts) and failed_the_same_way(fails):
        chosen, verdict = fails[0], Verdict.FAIL
        reason = f"{fails[0].reason} (the same in all {len(attempts)} attempts {where})"
    elif fails and len(fails) == len(attempts):
        chosen, verdict = fails[0], Verdict.INCONCLUSIVE
        reason = f"attempts failed in different ways {where}: {summary}"
    elif all(v == Verdict.ERROR for v in verdicts):
        chosen, verdict, reason = attempts[0], Verdict.ERROR, f"{attempts[0].reason} (in all {len(attempts)} attempts)"
    else:
        chosen, verdict = (fails or attempts)[0], Verdict.INCONCLUSIVE
        reason = f"no attempt could decide {where}: {summary}"
    chosen.verdict, chosen.reason = verdict, reason
    chosen.impairment = impairment
    chosen.attempts = records
    return chosen
