"""The state one running case shares between its parts (step loop, lower tester, upper tester, probes).

Rules of this module: a ``CaseContext`` belongs to exactly one case run; it holds the tester's view of the
connection (the environment of named 32-bit values), the record being written, the case's clock and time limit,
and the exceptions by which a step ends the case early. Nothing here performs I/O.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..model.expr import Expr
from ..model.loader import Case, Step
from ..targets.session import Session
from ..wire.segment import Segment
from .record import CaseRecord


class StepFailed(AssertionError):
    """The target did not do what the step requires."""

    def __init__(
        self,
        reason: str,
        expected: str = "",
        actual: str = "",
        found: list[str] | None = None,
        *,
        segment: Segment | None = None,
        absence: bool = False,
    ) -> None:
        super().__init__(reason)
        self.reason, self.expected, self.actual, self.found = reason, expected, actual, found or []
        self.segment = segment  # the target's segment that broke the step, if one did
        self.absence = absence  # the step failed because something did not come (in time, or often enough)


class StepError(Exception):
    """The test or the setup broke."""


class Inconclusive(Exception):
    """The tester could not observe what it needed (an unreadable state, lost frames)."""


def requirement_line(case: Case) -> str:
    ids = [
        r.split(":", 1)[1]
        for r in case.meta.refs
        if ":" in r and r.split(":", 1)[1].startswith(("MUST", "SHLD", "MAY"))
    ]
    where = ", ".join(case.meta.refs)
    return f"{case.meta.requirement} [{case.meta.level}; {', '.join(ids) or where}]"


@dataclass
class CaseContext:
    case: Case
    session: Session
    record: CaseRecord = field(default_factory=CaseRecord)
    env: dict[str, int] = field(default_factory=dict)
    recorded: dict[str, Any] = field(default_factory=dict)  # values reported under a name (record: ...)
    on_wait: Callable[[str], None] | None = None  # told what a case waits for (-v)
    current_step: int | None = None
    step_index: int = 0
    steps_by_index: dict[int, Step] = field(default_factory=dict)
    deadline: float = float("inf")  # time.monotonic() by which the case must end (its `timeout`)
    wall_offset: float = 0.0  # time.time() - time.monotonic() when the case began
    declared_wait: float = 0.0  # silence windows and waits the case itself declares
    target_wait: float = 0.0  # time until an expected segment came: the target's reaction or timers
    blocked: float = 0.0  # time spent waiting on the link or the agent

    def begin(self) -> None:
        now = time.monotonic()
        self.wall_offset = time.time() - now
        self.deadline = now + self.case.meta.timeout
        self.record.started = now + self.wall_offset

    def wall(self, monotonic: float) -> float:
        """A ``time.monotonic()`` instant on the wall clock the kernel stamps frames with."""
        return monotonic + self.wall_offset

    def case_clock_us(self, wall: float) -> float:
        """A wall-clock (kernel timestamp) time on the case clock: microseconds since the case began (time_us)."""
        return (wall - self.record.started) * 1e6

    def check_deadline(self) -> None:
        if time.monotonic() > self.deadline:
            raise StepError(f"the case exceeded its time limit of {self.case.meta.timeout:g} s (timeout:)")

    def ev(self, expr: Expr | None, default: int | None = None, *, wrap: bool = True) -> int:
        """The value of an expression of the case in the current environment."""
        if expr is None:
            if default is None:
                raise StepError("a value is needed and has no default")
            return default
        return expr.evaluate(self.env, wrap=wrap)

    def announce(self, message: str) -> None:
        if self.on_wait is not None:
            self.on_wait(f"{self.case.id}[{self.session.family}]: {message}")
