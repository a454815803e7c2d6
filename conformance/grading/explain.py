"""The text a person reads when a case does not pass: where, what was expected, what came, which rule.

Rules of this module: it reads only a case's results.json record (so a run re-graded offline gets the same text),
and shapes it in the manner of packetdrill: file:line of the step, expected and actual side by side, the
requirement, the decoded trace and the capture.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def explain(record: Mapping[str, Any], capture: str | None = None) -> str:
    """A packetdrill-like block for one case record (``capture``: the path shown for its pcap)."""
    head = f"{record.get('verdict')} {record.get('id')} [{record.get('family')}]"
    source = record.get("file") or "?"
    f = record.get("failure")
    if not f:
        lines = [f"{source}:{record.get('line', 1)}: {head}: {record.get('reason', '')}"]
    else:
        lines = [
            f"{source}:{f.get('line')}: {head} at {f.get('path')} ({f.get('kind')})",
            f"  requirement: {f.get('requirement')}",
            f"  expected: {f.get('expected')}",
            f"  actual:   {f.get('actual')}",
        ]
        lines += [f"  mismatch: {m}" for m in f.get("mismatches") or []]
        if not f.get("mismatches"):
            lines.append(f"  reason:   {record.get('reason', '')}")
    if record.get("verdict") in ("FAIL", "ERROR", "INCONCLUSIVE") and record.get("trace"):
        lines.append("  trace:")
        for e in record["trace"]:
            arrow = "<" if e.get("dir") == "in" else ">"
            after = "  (after the case: clean-up)" if e.get("step") is None else ""
            lines.append(f"    {float(e.get('t', 0.0)) * 1000:9.3f} ms {arrow} {e.get('summary')}{after}")
    if capture:
        lines.append(f"  capture: {capture}")
    return "\n".join(lines)
