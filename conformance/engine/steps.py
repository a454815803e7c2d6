"""The step loop: one case, one address family, one attempt, from its first step to the release of its sockets.

Rules of this module: ``CaseRun.run()`` interprets the case's steps in order, each by the part that owns it
(lower tester, upper tester, probes; ``wait``, ``bind`` and ``check`` here) and turns the way the run ended into
an ``Outcome`` with its evidence: a step not met is DEVIATED, a fault of the case or the set-up is BROKEN, what the
tester could not observe is UNDECIDABLE, a missing capability is UNSUPPORTED before anything is sent. It never
decides a verdict (conformance/grading/judge.py does). Texts for the report are made after the case, off the
packet path.

Theory of operation: the run is a coroutine on the event loop of the process; frames reach it through the
link's ``Demux`` (conformance/engine/demux.py), so many runs can be in flight at once, each on its own ports.
"""

from __future__ import annotations

import random
import time
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path

from ..model.expr import Expr, ExprError
from ..model.loader import Case, Step
from ..targets.session import Session
from ..tcp import format_flags
from ..upper_tester import AgentGone, AgentTimeout
from ..wire.link import LinkDown, TargetClosedLink, UndeclaredDestination
from ..wire.segment import parse_packet
from .context import CaseContext, Inconclusive, StepError, StepFailed, requirement_line
from .demux import Demux
from .flow import CaseFlow
from .lower import LowerTester
from .matching import describe, value_matches
from .probes import Probes, Relink
from .record import CaseRecord, Failure, Outcome, StepRecord
from .upper import UpperTester

Handler = Callable[[Step, StepRecord], Awaitable[None]]
_RANDOM = random.SystemRandom()  # the tester's ISNs and timestamps: unpredictable, and no seeding per case


class CaseRun:
    def __init__(
        self,
        case: Case,
        session: Session,
        demux: Demux,
        *,
        relink: Relink | None = None,
        on_wait: Callable[[str], None] | None = None,
    ) -> None:
        self.ctx = CaseContext(case, session, on_wait=on_wait)
        self.flow = CaseFlow(self.ctx, demux)
        self.lower = LowerTester(self.ctx, self.flow)
        self.upper = UpperTester(self.ctx, self.flow)
        self.probes = Probes(self.ctx, self.flow, self.upper, relink)
        self.handlers: dict[str, Handler] = {
            "send": self.lower.send,
            "expect": self.lower.expect,
            "expect_none": self.lower.expect_none,
            "expect_count": self.lower.expect_count,
            "expect_one_of": lambda step, record: self.lower.expect_one_of(step, record, self._run_steps),
            "ut": self.upper.step,
            "isn_sample": self.probes.isn_sample,
            "syn_flood": self.probes.syn_flood,
            "restart": self.probes.restart,
            "wait": self._wait,
            "bind": self._bind,
            "check": self._check,
        }

    @property
    def record(self) -> CaseRecord:
        return self.ctx.record

    # ---- the whole run -----------------------------------------------------------------------------------------
    async def run(self) -> CaseRecord:
        ctx, rec = self.ctx, self.ctx.record
        ctx.begin()
        start = time.monotonic()
        rec.impairment = str(self.flow.link.impairment) if self.flow.link.impairment.active else None
        missing = sorted(set(ctx.case.meta.requires) - ctx.session.capabilities)
        if missing:
            rec.outcome, rec.reason = Outcome.UNSUPPORTED, f"target lacks {', '.join(missing)}"
            if any(name.startswith("timers.") for name in missing):
                rec.reason += " (a timer the target entry does not declare under `timers:` in targets.yaml)"
            self.flow.release()
            return rec
        self._initial_env()
        try:
            await self._run_steps(ctx.case.steps)
            rec.outcome, rec.reason = Outcome.COMPLETED, "all steps matched"
        except StepFailed as exc:
            rec.outcome, rec.reason, rec.absence = Outcome.DEVIATED, exc.reason, exc.absence
            rec.repeated_segment = exc.segment is not None and self.flow.repeats_earlier(exc.segment)
        except Inconclusive as exc:
            rec.outcome, rec.reason = Outcome.UNDECIDABLE, str(exc)
        except (StepError, ExprError) as exc:
            rec.outcome, rec.reason = Outcome.BROKEN, str(exc)
        except AgentTimeout as exc:
            rec.outcome, rec.reason = Outcome.BROKEN, f"upper tester did not answer: {exc}"
        except AgentGone as exc:
            rec.outcome, rec.reason = Outcome.BROKEN, f"upper tester is gone: {exc}"
        except TargetClosedLink as exc:
            rec.outcome, rec.reason = Outcome.DEVIATED, self._target_gone(exc)
        except (LinkDown, UndeclaredDestination) as exc:
            rec.outcome, rec.reason = Outcome.BROKEN, str(exc)
        except Exception as exc:  # a defect of the suite itself: report it, do not hide it as a deviation
            where = traceback.extract_tb(exc.__traceback__)[-1]
            rec.outcome = Outcome.BROKEN
            rec.reason = f"internal error: {type(exc).__name__}: {exc} ({Path(where.filename).name}:{where.lineno})"
        finally:
            await self._finish(start)
        return rec

    async def _finish(self, start: float) -> None:
        ctx, rec = self.ctx, self.ctx.record
        rec.capture_losses = self.flow.capture_losses()
        ctx.deadline = float("inf")  # the clean-up is not the case's time
        self._describe_steps()
        ctx.current_step = None  # what the clean-up provokes belongs to no step
        try:
            await self.upper.release()
            await self.flow.collect(0.0)
        except TargetClosedLink as exc:
            if rec.outcome == Outcome.COMPLETED:
                rec.outcome, rec.reason = Outcome.DEVIATED, self._target_gone(exc)
        except LinkDown as exc:
            if rec.outcome == Outcome.COMPLETED:
                rec.outcome, rec.reason = Outcome.BROKEN, f"the link went down as the case ended: {exc}"
        finally:
            self.flow.release()
        rec.duration_s = time.monotonic() - start
        rec.protocol_wait_s = ctx.declared_wait + ctx.target_wait
        rec.blocked_s = ctx.blocked
        rec.observations = {**ctx.env, **ctx.recorded}

    def _initial_env(self) -> None:
        ctx, s = self.ctx, self.ctx.session
        rng = _RANDOM
        l_isn = rng.randrange(1 << 32)
        l_port = self.flow.tester_port(s.ports.tester())
        t_port = self.flow.target_port(s.ports.target_unused())
        ctx.env.update(l_isn=l_isn, l_nxt=l_isn, l_port=l_port, t_port=t_port, l_tsval=rng.randrange(1, 1 << 31))
        ctx.env.update(s.timers)  # timer_NAME_us ...: the target's declared timers (targets.yaml timers)

    def _target_gone(self, exc: TargetClosedLink) -> str:
        """The text for a stack that dropped its link (crashed or reset its interface) during the case."""
        step = self.ctx.current_step
        where = f"step {step}" if step is not None else "the end of the case"
        return (
            f"the target stopped working at {where}: {exc.strerror} (its process ended or it reset its interface; "
            "every connection of the stack is gone). The segments before are in the trace"
        )

    # ---- steps -------------------------------------------------------------------------------------------------
    async def _run_steps(self, steps: list[Step]) -> None:
        ctx = self.ctx
        for step in steps:
            ctx.check_deadline()
            ctx.step_index += 1
            record = StepRecord(ctx.step_index, step.line, step.kind, origin=step.origin,
                                t=time.time() - ctx.record.started)  # fmt: skip
            ctx.steps_by_index[ctx.step_index] = step
            ctx.record.steps.append(record)
            ctx.current_step = ctx.step_index
            try:
                await self.handlers[step.kind](step, record)
                record.outcome = "ok"
            except Inconclusive as exc:
                record.outcome, record.detail = "inconclusive", str(exc)
                raise
            except StepFailed as exc:
                ctx.record.failure = Failure(
                    ctx.step_index, step.line, step.path, step.kind, exc.expected, exc.actual, exc.found,
                    requirement_line(ctx.case),
                )  # fmt: skip
                if step.precondition is not None:  # the situation the case is about was never reached
                    why = f"precondition not reached at step {ctx.step_index} ({step.precondition}): {exc.reason}"
                    record.outcome, record.detail = "inconclusive", why
                    raise Inconclusive(why) from None
                record.outcome, record.detail = "fail", exc.reason
                raise
            except Exception as exc:
                record.outcome, record.detail = "error", str(exc)
                if isinstance(exc, ExprError):
                    raise StepError(f"{ctx.case.file.name}:{step.line}: {step.path}: {exc}") from None
                raise

    async def _wait(self, step: Step, record: StepRecord) -> None:
        spec = step.spec
        duration = spec.for_ if spec.until is None else self._until(spec.until, record)
        self.ctx.announce(f"waiting {duration * 1000:g} ms: {spec.reason}")
        self.ctx.declared_wait += duration
        await self.flow.collect(duration)

    def _until(self, until: Expr, record: StepRecord) -> float:
        """Seconds from now until the case clock (time_us) reaches ``until``; 0 if it already has."""
        ctx = self.ctx
        target_us = until.evaluate(ctx.env, wrap=False)
        now_us = ctx.case_clock_us(time.time())
        duration = (target_us - now_us) / 1e6
        if time.monotonic() + duration > ctx.deadline:
            raise StepError(
                f"waiting until {until.text} (= {target_us / 1e6:.3f} s into the case) would pass the case's "
                f"time limit of {ctx.case.meta.timeout:g} s (timeout:); is a declared timer too long?"
            )
        if duration < 0:
            record.detail = f"the time {until.text} had passed {-duration * 1000:.1f} ms before; no wait"
            return 0.0
        record.detail = f"waited {duration * 1000:.1f} ms until {until.text} = {target_us / 1e6:.3f} s"
        return duration

    async def _bind(self, step: Step, record: StepRecord) -> None:
        for name, expr in step.spec.values.items():
            self.ctx.env[name] = expr.evaluate(self.ctx.env)

    async def _check(self, step: Step, record: StepRecord) -> None:
        spec, ctx = step.spec, self.ctx
        value = spec.value.evaluate(ctx.env)
        if spec.record:
            ctx.recorded[spec.record] = value
        record.detail = f"{spec.value} = {value}"
        if not value_matches(spec.in_, value, ctx.env, wraps=False):
            expected = f"{spec.value} in {spec.in_.describe(ctx.env)}"
            raise StepFailed(f"check failed: {spec.reason}: {spec.value} = {value}", expected, str(value))

    # ---- texts for the report ------------------------------------------------------------------------------------
    def _describe_steps(self) -> None:
        for record in self.ctx.record.steps:
            record.summary = step_summary(self.ctx.steps_by_index[record.index])
            packet = self.flow.detail_packets.get(record.index)
            seg = self.lower.matched.get(record.index) or (parse_packet(packet) if packet else None)
            if seg is not None and not record.detail:
                record.detail = seg.summary()


def step_summary(step: Step) -> str:
    """``summary``, made once per step of a loaded case (every run of the case asks for the same lines)."""
    text = step.__dict__.get("_summary")
    if text is None:
        text = step.__dict__["_summary"] = summary(step)
    return text


def summary(step: Step) -> str:
    """One line saying what a step does, for reports and captures."""
    spec = step.spec
    if step.kind == "send":
        return f"send {format_flags(spec.flags)}" + (f" ({step.note})" if step.note else "")
    if step.kind == "expect":
        return f"expect {describe(spec, {})}"
    if step.kind == "expect_none":
        return f"expect no {describe(spec, {})} for {spec.for_ * 1000:g} ms"
    if step.kind == "expect_one_of":
        return "expect one of: " + ", ".join(a.alt.label for a in spec)
    if step.kind == "ut":
        return f"ut {spec.op}" + (f" as {spec.as_}" if spec.as_ else "") + (" (nowait)" if spec.nowait else "")
    if step.kind == "wait":
        if spec.until is not None:
            return f"wait until time_us = {spec.until.text}: {spec.reason}"
        return f"wait {spec.for_ * 1000:g} ms: {spec.reason}"
    if step.kind == "restart":
        return f"restart the target: {spec.reason}"
    if step.kind == "expect_count":
        return f"count {describe(spec, {})} for {spec.for_ * 1000:g} ms: {spec.count}"
    if step.kind == "syn_flood":
        return f"SYN flood: {spec.count} SYNs at up to {spec.rate}/s from {spec.sources} spoofed sources"
    if step.kind == "isn_sample":
        return f"sample {spec.count} ISNs"
    if step.kind == "check":
        return f"check {spec.value} in {spec.in_}: {spec.reason}"
    return f"bind {', '.join(spec.values)}"
