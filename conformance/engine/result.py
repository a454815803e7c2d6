"""Verdicts and what a case run records: its steps, its trace and, on FAIL, the evidence."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from ..wire.segment import Segment


class Verdict(StrEnum):
    PASS = "PASS"
    FAIL = "FAIL"
    INCONCLUSIVE = "INCONCLUSIVE"
    ERROR = "ERROR"
    NOT_RUN = "NOT-RUN"


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

    def trace_json(self) -> list[dict[str, Any]]:
        t0 = self.started
        return [
            {"t": round(e.ts - t0, 6), "dir": "in" if e.inbound else "out", "summary": e.summary, "step": e.step}
            for e in sorted(self.trace, key=lambda e: e.ts)
        ]

    def failure_json(self) -> dict[str, Any] | None:
        return asdict(self.failure) if self.failure else None
