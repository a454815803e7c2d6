"""What a case run records: what happened, never what it means.

Rules of this module: the engine fills a ``CaseRecord`` with facts (the steps and how each ended, every frame of
the case's connections, the behaviours seen where a step accepts several, and how the run ended: an ``Outcome``).
No verdict is decided here or anywhere in the engine: grading (conformance/grading/judge.py) judges the record
under a profile. ``facts()`` is the part of a record the judge needs, as plain JSON, so a finished run can be
judged again offline.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from ..wire.segment import Segment


class Outcome(StrEnum):
    """How a case run ended, as the engine saw it."""

    COMPLETED = "completed"  # every step did what it says
    DEVIATED = "deviated"  # the target did not do what a step requires (the evidence is in ``failure``)
    UNDECIDABLE = "undecidable"  # the tester could not observe what it needed (an unreadable state, lost frames)
    BROKEN = "broken"  # the test itself or the set-up broke
    UNSUPPORTED = "unsupported"  # the target lacks a capability the case needs; nothing was sent


@dataclass
class StepRecord:
    index: int
    line: int
    kind: str
    summary: str = ""
    outcome: str = "skipped"  # ok | fail | error | inconclusive | skipped
    detail: str = ""
    origin: str | None = None  # the fragment step this one was expanded from, e.g. "passive-open[2]"
    t: float = 0.0  # when the step began, seconds since the case began (the wall clock frames are stamped with)

    def as_json(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in ("index", "line", "kind", "summary", "outcome", "detail")}
        out["t"] = round(self.t, 6)
        if self.origin:
            out["origin"] = self.origin
        return out


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
    """Where and how a step was not met: the evidence a FAIL carries."""

    step: int
    line: int
    path: str
    kind: str
    expected: str
    actual: str
    mismatches: list[str]
    requirement: str

    def as_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in FAILURE_FIELDS} | {"mismatches": list(self.mismatches)}

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> Failure | None:
        if not data:
            return None
        return cls(**{k: data.get(k, [] if k == "mismatches" else "") for k in cls.__dataclass_fields__})


@dataclass
class Behaviour:
    """One acceptable behaviour of an ``expect_one_of`` step that the target showed, with the profiles under which
    the case says it conforms (None: every profile)."""

    step: int
    line: int
    path: str
    label: str
    text: str
    conforms: list[str] | None
    seen: str  # the segment that showed it, or "(silence)"
    expected: str  # every acceptable behaviour of the step, for the evidence
    repeated: bool = False  # the segment is a copy of one the target sent earlier in the case
    # every alternative of the step: its label, what it expects, and the profiles under which it conforms
    alternatives: list[dict[str, Any]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in BEHAVIOUR_FIELDS}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Behaviour:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


FAILURE_FIELDS = ("step", "line", "path", "kind", "expected", "actual", "requirement")
BEHAVIOUR_FIELDS = ("step", "line", "path", "label", "text", "conforms", "seen", "expected", "repeated", "alternatives")


@dataclass
class CaseRecord:
    """One run (attempt) of one case in one address family."""

    outcome: Outcome = Outcome.COMPLETED
    reason: str = ""
    failure: Failure | None = None
    absence: bool = False  # the failure is that something did not come (in time, or often enough)
    repeated_segment: bool = False  # the failing segment is a copy of one the target sent earlier in the case
    capture_losses: int = 0  # frames the capture lost during the case
    impairment: str | None = None  # the impairment the link is declared to have (None: a clean link)
    behaviours: list[Behaviour] = field(default_factory=list)
    steps: list[StepRecord] = field(default_factory=list)
    trace: list[TraceEntry] = field(default_factory=list)
    started: float = 0.0
    duration_s: float = 0.0
    protocol_wait_s: float = 0.0  # declared silence windows and waits, and waits for expected segments
    blocked_s: float = 0.0  # all time spent waiting on the target or the agent
    observations: dict[str, Any] = field(default_factory=dict)

    def facts(self) -> dict[str, Any]:
        """What the judge needs, as JSON (results.json keeps it for every attempt)."""
        return {
            "outcome": str(self.outcome),
            "reason": self.reason,
            "failure": self.failure.as_json() if self.failure else None,
            "absence": self.absence,
            "repeated_segment": self.repeated_segment,
            "capture_losses": self.capture_losses,
            "impairment": self.impairment,
            "behaviours": [b.as_json() for b in self.behaviours],
            "duration_s": round(self.duration_s, 6),
        }

    def trace_json(self) -> list[dict[str, Any]]:
        t0 = self.started
        return [
            {"t": round(e.ts - t0, 6), "dir": "in" if e.inbound else "out", "summary": e.summary, "step": e.step}
            for e in sorted(self.trace, key=lambda e: e.ts)
        ]
