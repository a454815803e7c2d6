"""The text a person reads when a case does not pass: where, what was expected, what came, which rule."""

from __future__ import annotations

from ..model.loader import Case
from .result import CaseResult, Verdict


def explain(case: Case, family: str, result: CaseResult, source: str, capture: str | None) -> str:
    """A packetdrill-like block: file:line of the step, expected and actual side by side, the requirement."""
    head = f"{result.verdict} {case.id} [{family}]"
    f = result.failure
    if f is None:
        lines = [f"{source}:{case.line}: {head}: {result.reason}"]
    else:
        lines = [
            f"{source}:{f.line}: {head} at {f.path} ({f.kind})",
            f"  requirement: {f.requirement}",
            f"  expected: {f.expected}",
            f"  actual:   {f.actual}",
        ]
        lines += [f"  mismatch: {m}" for m in f.mismatches]
        if not f.mismatches:
            lines.append(f"  reason:   {result.reason}")
    if result.verdict in (Verdict.FAIL, Verdict.ERROR, Verdict.INCONCLUSIVE) and result.trace:
        lines.append("  trace:")
        t0 = result.started
        for e in sorted(result.trace, key=lambda e: e.ts):
            arrow = "<" if e.inbound else ">"
            after = "  (after the case: clean-up)" if e.step is None else ""
            lines.append(f"    {(e.ts - t0) * 1000:9.3f} ms {arrow} {e.summary}{after}")
    if capture:
        lines.append(f"  capture: {capture}")
    return "\n".join(lines)
