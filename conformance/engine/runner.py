"""Interpreting one case against a session.

Theory of operation: the runner keeps the tester's view of the connection in an environment of named
32-bit values (l_isn, l_nxt, t_isn, t_nxt, ports, and whatever steps bind). ``send`` builds a segment
from the step and the environment; ``expect`` takes the next segment of the case's flow (demultiplexed by
4-tuple from everything on the link) and compares it field by field. The first mismatch ends the case
with FAIL and its evidence; a fault of the tester or the setup ends it with ERROR; a capability the
target does not declare ends it with NOT-RUN before any packet is sent.
"""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import random
import socket
import time
import traceback
from collections import deque
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from ..model.case import Alternative, ExpectNoneSpec, ExpectSpec, SendSpec, UtSpec
from ..model.expr import Expr, ExprError
from ..model.loader import Case, ParsedAlternative, Step
from ..targets.session import Session
from ..tcp import SEQ_MOD as MOD
from ..tcp import format_flags, seq_diff
from ..upper_tester import AgentError, AgentGone, AgentTimeout, PendingCall
from ..wire.build import OutOption, OutSegment, build_packet
from ..wire.flood import SynFlood, direct_writer, run_flood, spoofed_sources
from ..wire.link import LinkDown, TargetClosedLink, UndeclaredDestination
from ..wire.segment import Segment, flow_key, parse_packet
from .isn import isn_stats
from .matching import describe, mismatches, segment_field, value_matches
from .result import CaseResult, Failure, StepRecord, TraceEntry, Verdict, combine_attempts, should_retry

PAYLOAD_PATTERN = b"0123456789abcdefghijklmnopqrstuvwxyz"
PROTOCOL_BOUND_OPS = frozenset({"accept", "connect", "recv"})  # upper-tester calls that wait on the peer


class StepFailed(AssertionError):
    """The target did not do what the step requires (FAIL)."""

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
    """The test or the setup broke (ERROR)."""


class Inconclusive(Exception):
    """The tester could not tell whether the target conforms (lost frames, an unreadable state)."""


def pattern_bytes(n: int) -> bytes:
    return (PAYLOAD_PATTERN * (n // len(PAYLOAD_PATTERN) + 1))[:n]


def requirement_line(case: Case) -> str:
    ids = [
        r.split(":", 1)[1]
        for r in case.meta.refs
        if ":" in r and r.split(":", 1)[1].startswith(("MUST", "SHLD", "MAY"))
    ]
    where = ", ".join(case.meta.refs)
    return f"{case.meta.requirement} [{case.meta.level}; {', '.join(ids) or where}]"


class CaseRunner:
    def __init__(
        self,
        case: Case,
        session: Session,
        *,
        on_wait: Callable[[str], None] | None = None,
        step_scope: Callable[[int, str], AbstractContextManager[Any]] | None = None,
        profile: str = "rfc9293",
    ) -> None:
        self.case = case
        self.s = session
        self.profile = profile
        self.on_wait = on_wait
        self.step_scope = step_scope  # e.g. an allure step around each protocol step
        self.env: dict[str, int] = {}
        self.pending: deque[Segment] = deque()
        self.handles: dict[str, int] = {}
        self.calls: dict[str, tuple[PendingCall, UtSpec]] = {}
        self.result = CaseResult(Verdict.PASS, "")
        self.current_step: int | None = None
        self.step_index = 0
        self.l_ports: set[int] = set()
        self.l_addrs: set[bytes] = set()  # other sources the tester spoke from (invalid or spoofed sources)
        self.t_ports: set[int] = set()
        self._sent_step: dict[bytes, int] = {}
        # Texts for the report are made after the case, off the packet path.
        self._step_of_record: dict[int, Step] = {}
        self._detail_segments: dict[int, Segment] = {}
        self._detail_packets: dict[int, bytes] = {}
        self._seg_ts: dict[int, float] = {}  # id(segment) -> kernel timestamp, for bind: time_us
        self._seg_entry: dict[int, TraceEntry] = {}  # id(segment) -> its trace entry
        self.recorded: dict[str, int] = {}
        self.tfo_cookie: bytes | None = None  # the last TCP Fast Open cookie the target sent (send: {tfo: cookie})
        self.case_deadline = float("inf")  # set by run(): the case's own time limit
        self._blocked = 0.0  # time spent waiting on the link or the agent
        self._declared = 0.0  # silence windows and waits the case itself declares
        self._target_wait = 0.0  # time until an expected segment came: the target's reaction or timers
        self._last_send = 0.0  # when the tester last sent (pacing on a reordering link)
        self._sent_since_ut = False  # a segment may still be on its way when the upper tester looks

    # ---- set-up ---------------------------------------------------------------------------------
    def _initial_env(self) -> None:
        rng = random.Random()
        l_isn = rng.randrange(1 << 32)
        l_port, t_port = self.s.ports.tester(), self.s.ports.target_unused()
        self.env.update(l_isn=l_isn, l_nxt=l_isn, l_port=l_port, t_port=t_port, l_tsval=rng.randrange(1, 1 << 31))
        self.env.update(self.s.timers)  # timer_NAME_us ...: the target's declared timers (targets.yaml timers)
        self.l_ports.add(l_port)
        self.t_ports.add(t_port)

    def run(self) -> CaseResult:
        res = self.result
        start_wall = time.monotonic()
        self.case_deadline = start_wall + self.case.meta.timeout
        res.started = time.time()
        missing = sorted(set(self.case.meta.requires) - self.s.capabilities)
        if missing:
            res.verdict, res.reason = Verdict.NOT_RUN, f"target lacks {', '.join(missing)}"
            if any(name.startswith("timers.") for name in missing):
                res.reason += " (a timer the target entry does not declare under `timers:` in targets.yaml)"
            return res
        self._initial_env()
        try:
            self.s.link.flush()
            self._link_drops()
            self._run_steps(self.case.steps)
            res.reason = "all steps matched" + (f"; behaviour: {res.behaviour}" if res.behaviour else "")
            lost = self._link_drops()
            if lost:
                raise Inconclusive(f"the capture lost {lost} frame(s): the exchange cannot be judged")
        except StepFailed as exc:
            res.verdict, res.reason = Verdict.FAIL, exc.reason
            lost = self._link_drops()
            doubt = self._impairment_doubt(exc)
            if lost:
                res.verdict = Verdict.INCONCLUSIVE
                res.reason = f"{exc.reason}; but the capture lost {lost} frame(s), so this is not a verdict"
            elif doubt:
                res.verdict, res.reason = Verdict.INCONCLUSIVE, f"{exc.reason}; but {doubt}"
        except Inconclusive as exc:
            res.verdict, res.reason = Verdict.INCONCLUSIVE, str(exc)
        except (StepError, ExprError) as exc:
            res.verdict, res.reason = Verdict.ERROR, str(exc)
        except AgentTimeout as exc:
            res.verdict, res.reason = Verdict.ERROR, f"upper tester did not answer: {exc}"
        except AgentGone as exc:
            res.verdict, res.reason = Verdict.ERROR, f"upper tester is gone: {exc}"
        except TargetClosedLink as exc:
            res.verdict, res.reason = Verdict.FAIL, self._target_gone(exc)
        except (LinkDown, UndeclaredDestination) as exc:
            res.verdict, res.reason = Verdict.ERROR, str(exc)
        except Exception as exc:  # a defect of the suite itself: report it, do not hide it as FAIL
            where = traceback.extract_tb(exc.__traceback__)[-1]
            res.verdict = Verdict.ERROR
            res.reason = f"internal error: {type(exc).__name__}: {exc} ({Path(where.filename).name}:{where.lineno})"
        finally:
            self.case_deadline = float("inf")  # the clean-up is not the case's time
            self._describe_steps()
            self.current_step = None  # what the clean-up provokes belongs to no step
            self._cleanup()
            try:
                self._collect(0.0)
            except TargetClosedLink as exc:
                if res.verdict == Verdict.PASS:
                    res.verdict, res.reason = Verdict.FAIL, self._target_gone(exc)
            except LinkDown as exc:
                if res.verdict == Verdict.PASS:
                    res.verdict, res.reason = Verdict.ERROR, f"the link went down as the case ended: {exc}"
            res.duration_s = time.monotonic() - start_wall
            res.protocol_wait_s = self._declared + self._target_wait
            res.blocked_s = self._blocked
            res.observations = {**self.env, **self.recorded}
        return res

    def _target_gone(self, exc: TargetClosedLink) -> str:
        """A FAIL's text for a stack that dropped its link (crashed or reset its interface) during the case."""
        where = f"step {self.current_step}" if self.current_step is not None else "the end of the case"
        return (
            f"the target stopped working at {where}: {exc.strerror} (its process ended or it reset its interface; "
            "every connection of the stack is gone). The segments before are in the trace"
        )

    def _impairment_doubt(self, exc: StepFailed) -> str | None:
        """Why an impaired link, not the target, may explain this failure (None: it cannot).

        Only what the link is declared to do counts, never what it did to a particular frame: a real
        bad link does not say which frames it lost.
        """
        imp = getattr(self.s.link, "impairment", None)
        if imp is None or not imp.active:
            return None
        if exc.absence and imp.lossy:
            return f"the link loses frames ({imp}): a segment that did not come may have been lost"
        seg = exc.segment
        if seg is not None and imp.duplicate:
            earlier = [e.raw for e in self.result.trace if e.inbound and e.segment is not seg]
            if seg.raw in earlier:
                return f"the link duplicates frames ({imp}): the segment is a copy of one already seen"
        return None

    def _reorder_window(self) -> float:
        """How long a frame can be overtaken on this link (0 on a link declared not to reorder).

        Jitter reorders frames sent close together, as netem's does; ``reorder`` lets frames skip the delay.
        """
        imp = getattr(self.s.link, "impairment", None)
        if imp is None or not (imp.jitter_s or imp.reorder):
            return 0.0
        return imp.delay_s + imp.jitter_s

    def _one_way_delay(self) -> float:
        """The longest time a frame of the tester takes to reach the target on this link."""
        imp = getattr(self.s.link, "impairment", None)
        return imp.delay_s + imp.jitter_s if imp is not None else 0.0

    def _find_reordered(self, wanted: Callable[[Segment], bool], first: Segment) -> Segment | None:
        """On a reordering link, the wanted segment may arrive just after others: look one window further.

        A TCP receiver handles segments by sequence number, not arrival order; the tester does the same
        within the link's declared reordering window. Segments passed over stay queued, in order.
        """
        passed = [first]
        found = None
        deadline = time.monotonic() + self._reorder_window()
        while (seg := self._next(deadline)) is not None:
            if wanted(seg):
                found = seg
                break
            passed.append(seg)
        self.pending.extendleft(reversed(passed[1:] if found is None else passed))
        return found

    def _link_drops(self) -> int:
        drops = getattr(self.s.link, "drops", None)
        return drops() if drops is not None else 0

    def _describe_steps(self) -> None:
        for record in self.result.steps:
            record.summary = self._summary(self._step_of_record[record.index])
            packet = self._detail_packets.get(record.index)
            seg = self._detail_segments.get(record.index) or (parse_packet(packet) if packet else None)
            if seg is not None and not record.detail:
                record.detail = seg.summary()

    def _cleanup(self) -> None:
        """Release every socket the case opened on the target (best effort, bounded)."""
        agent = self.s.agent
        if agent is None:
            return
        calls = []
        for name, sock in self.handles.items():
            op = "close" if name == "listener" else "abort"
            try:
                calls.append(agent.submit(op, sock=sock))
            except AgentError:
                return
        for call in calls:
            with contextlib.suppress(AgentError):
                call.wait(2.0)

    # ---- steps ----------------------------------------------------------------------------------
    def _run_steps(self, steps: list[Step]) -> None:
        for step in steps:
            self._check_case_deadline()
            self.step_index += 1
            record = StepRecord(self.step_index, step.line, step.kind)
            self._step_of_record[self.step_index] = step
            self.result.steps.append(record)
            self.current_step = self.step_index
            try:
                if self.step_scope is None:
                    getattr(self, f"_step_{step.kind}")(step, record)
                else:
                    with self.step_scope(self.step_index, self._summary(step)):
                        getattr(self, f"_step_{step.kind}")(step, record)
                record.outcome = "ok"
            except Inconclusive as exc:
                record.outcome, record.detail = "inconclusive", str(exc)
                raise
            except StepFailed as exc:
                record.outcome, record.detail = "fail", exc.reason
                self.result.failure = Failure(
                    self.step_index, step.line, step.path, step.kind, exc.expected, exc.actual, exc.found,
                    requirement_line(self.case),
                )  # fmt: skip
                raise
            except Exception as exc:
                record.outcome, record.detail = "error", str(exc)
                if isinstance(exc, ExprError):
                    raise StepError(f"{self.case.file.name}:{step.line}: {step.path}: {exc}") from None
                raise

    def _summary(self, step: Step) -> str:
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

    def _step_bind(self, step: Step, record: StepRecord) -> None:
        for name, expr in step.spec.values.items():
            self.env[name] = expr.evaluate(self.env)

    def _step_check(self, step: Step, record: StepRecord) -> None:
        spec = step.spec
        value = spec.value.evaluate(self.env)
        if spec.record:
            self.recorded[spec.record] = value
        record.detail = f"{spec.value} = {value}"
        if not value_matches(spec.in_, value, self.env, wraps=False):
            expected = f"{spec.value} in {spec.in_.describe(self.env)}"
            raise StepFailed(f"check failed: {spec.reason}: {spec.value} = {value}", expected, str(value))

    def _step_isn_sample(self, step: Step, record: StepRecord) -> None:
        """Many short handshakes from fresh tester ports; each SYN-ACK's ISN is recorded, then reset."""
        spec = step.spec
        samples: list[tuple[int, float]] = []
        fixed_port = self.s.ports.tester() if spec.same_port else None
        imp = getattr(self.s.link, "impairment", None)
        tries = 3 if imp is not None and imp.lossy else 1  # a lost sample is sampled again: a fresh handshake
        while len(samples) < spec.count:
            for _ in range(tries):
                port, isn = fixed_port or self.s.ports.tester(), random.randrange(MOD)
                self.l_ports.add(port)
                syn = OutSegment(self.s.family, self.s.tester_addr, self.s.target_addr, port, self.env["t_port"],
                                 isn, 0, 0x02, 65535, 0, [OutOption("mss", 1460)])  # fmt: skip
                self._send_raw(syn)
                seg = self._sample_reply(port, isn, time.monotonic() + spec.timeout, impaired=imp is not None)
                if tries == 1 or (seg is not None and seg.flags & 0x12 != 0x10):
                    break
                # Nothing came, or a challenge ACK: the connection of a sample whose RST was lost is still
                # there. Reset it with the sequence number the ACK asks for, as any TCP would; sample again.
                reset_seq = seg.ack if seg is not None else (isn + 1) % MOD
                self._send_raw(OutSegment(self.s.family, self.s.tester_addr, self.s.target_addr, port,
                                          self.env["t_port"], reset_seq, 0, 0x04, 0))  # fmt: skip
            if seg is None or seg.flags != 0x12:
                got = seg.summary() if seg else "nothing"
                # A bare ACK answers a connection the tester's (lost) RST should have ended: absence, too.
                lost_reset = seg is not None and seg.flags & 0x12 == 0x10 and tries > 1
                raise StepFailed(
                    f"ISN sample {len(samples) + 1}: expected a SYN-ACK, got {got}", "SA", got,
                    segment=seg, absence=seg is None or lost_reset,
                )  # fmt: skip
            samples.append((seg.seq, self._seg_ts.get(id(seg), time.time())))
            self._send_raw(OutSegment(self.s.family, self.s.tester_addr, self.s.target_addr, port,
                                      self.env["t_port"], (isn + 1) % MOD, 0, 0x04, 0))  # fmt: skip
            self._collect(spec.spacing)
            self._declared += spec.spacing
        stats = isn_stats(samples)
        self.env.update(stats.as_env())
        self.recorded.update(stats.as_env())
        record.detail = f"{stats.count} ISNs: GCD {stats.gcd}, ISR {stats.isr}, SP {stats.sp}, repeats {stats.repeats}"

    def _step_syn_flood(self, step: Step, record: StepRecord) -> None:
        spec, s = step.spec, self.s
        if "flood" not in s.capabilities or s.flood_rate_cap <= 0:
            raise StepError("floods need the target's opt-in (allow_flood in targets.yaml) and `requires: [flood]`")
        try:
            sources = spoofed_sources(s.family, s.tester_addr, s.target_addr, s.prefix or 24, spec.sources)
        except ValueError as exc:
            raise StepError(str(exc)) from None
        flood = SynFlood(s.family, sources, s.target_addr, self.env["t_port"])
        check = getattr(s.link, "check_destination", None)
        if check is not None:
            check(bytes(flood.template))  # the one destination every flood packet carries
        tun_fd = getattr(s.link, "tun_fd", None)
        send = direct_writer(tun_fd) if tun_fd is not None else s.link.send
        result = run_flood(flood, spec.count, min(spec.rate, s.flood_rate_cap), send)
        synacks = self._count_flood_replies(spec.settle, {ipaddress.ip_address(a).packed for a in sources})
        self._declared += result.elapsed_s + spec.settle  # the load the case asked for, and its settling
        values = {
            "flood_sent": result.sent,
            "flood_rate": int(result.rate),
            "flood_synacks": synacks,
            "flood_capture_drops": self._link_drops(),
        }
        self.env.update(values)
        self.recorded.update(values)
        record.detail = (
            f"{result.sent} SYNs in {result.elapsed_s * 1000:.0f} ms ({int(result.rate)}/s); "
            f"{synacks} SYN-ACKs seen, {values['flood_capture_drops']} frames lost by the capture"
        )

    def _count_flood_replies(self, settle: float, spoofed: set[bytes]) -> int:
        """Drain the link until it is quiet for ``settle`` s, counting SYN-ACKs to the spoofed sources."""
        synacks = 0
        while (frame := self.s.link.receive(settle)) is not None:
            if not frame.inbound:
                continue
            key = flow_key(frame.data)
            if key is not None and key[1] in spoofed:
                off = (frame.data[0] & 0x0F) * 4 if frame.data[0] >> 4 == 4 else 40
                synacks += frame.data[off + 13] & 0x12 == 0x12
            elif self._is_case_flow(frame.data, True) and (seg := parse_packet(frame.data)) is not None:
                self.pending.append(seg)
        return synacks

    def _send_raw(self, out: OutSegment) -> None:
        packet = build_packet(out)
        self._sent_step[packet] = self.step_index
        self._transmit(packet)

    def _transmit(self, packet: bytes) -> None:
        """Send a segment; on a reordering link, far enough after the previous one that it cannot overtake it."""
        window = self._reorder_window()
        if window:
            wait = self._last_send + window - time.monotonic()
            if wait > 0:
                self._collect(wait)
            self._last_send = time.monotonic()
            self._sent_since_ut = True
        elif self._one_way_delay():
            self._sent_since_ut = True
        self.s.link.send(packet)

    def _sample_reply(self, port: int, isn: int, deadline: float, *, impaired: bool) -> Segment | None:
        """The answer to an ISN sample's SYN; on an impaired link, SYN-ACKs answering an earlier SYN (a
        duplicate's late answer) are passed over."""
        while True:
            seg = self._next_from(port, deadline)
            if seg is None or not impaired or seg.flags != 0x12 or seg.ack == (isn + 1) % MOD:
                return seg

    def _next_from(self, port: int, deadline: float) -> Segment | None:
        """The next segment to tester port ``port``; segments of other ports are dropped."""
        while True:
            seg = self._next(deadline)
            if seg is None or seg.dport == port:
                return seg

    def _step_restart(self, step: Step, record: StepRecord) -> None:
        """The target's stack is restarted; the case goes on with its new link and agent (old sockets are gone)."""
        if self.s.restart is None:
            raise StepError("this target cannot be restarted by the suite (the case should require target.restart)")
        self._collect(0.0)
        started = time.monotonic()
        try:
            self.s.link, self.s.agent = self.s.restart()
        except Exception as exc:  # the target's own start-up errors: one line, an ERROR of this case
            raise StepError(f"the target did not come back after the restart: {exc}") from None
        self.handles.clear()
        self.calls.clear()
        self._declared += time.monotonic() - started
        record.detail = f"restarted in {(time.monotonic() - started) * 1000:.0f} ms"

    def _step_wait(self, step: Step, record: StepRecord) -> None:
        spec = step.spec
        duration = spec.for_ if spec.until is None else self._until(spec.until, record)
        if self.on_wait:
            self.on_wait(f"{self.case.id}: waiting {duration * 1000:g} ms: {spec.reason}")
        self._declared += duration
        self._collect(duration)

    def _case_clock_us(self, wall: float) -> float:
        """A wall-clock (kernel timestamp) time on the case clock: microseconds since the case began (time_us)."""
        return (wall - self.result.started) * 1e6

    def _until(self, until: Expr, record: StepRecord) -> float:
        """Seconds from now until the case clock (time_us) reaches ``until``; 0 if it already has."""
        target_us = until.evaluate(self.env, wrap=False)
        now_us = self._case_clock_us(time.time())
        duration = (target_us - now_us) / 1e6
        if time.monotonic() + duration > self.case_deadline:
            raise StepError(
                f"waiting until {until.text} (= {target_us / 1e6:.3f} s into the case) would pass the case's "
                f"time limit of {self.case.meta.timeout:g} s (timeout:); is a declared timer too long?"
            )
        if duration < 0:
            record.detail = f"the time {until.text} had passed {-duration * 1000:.1f} ms before; no wait"
            return 0.0
        record.detail = f"waited {duration * 1000:.1f} ms until {until.text} = {target_us / 1e6:.3f} s"
        return duration

    # ---- lower tester: send ----------------------------------------------------------------------
    def _ev(self, expr, default: int | None = None, *, wrap: bool = True) -> int:
        if expr is None:
            if default is None:
                raise StepError("a value is needed and has no default")
            return default
        return expr.evaluate(self.env, wrap=wrap)

    def _step_send(self, step: Step, record: StepRecord) -> None:
        spec: SendSpec = step.spec
        # A SYN's default is the tester's ISN (a retransmitted SYN reuses it); anything else follows l_nxt.
        seq = self._ev(spec.seq, self.env["l_isn"] if spec.flags & 0x02 else self.env["l_nxt"])
        if spec.ack is not None:
            ack = self._ev(spec.ack)
        elif spec.flags & 0x10:
            if "t_nxt" not in self.env:
                raise StepError(f"line {step.line}: ack defaults to t_nxt, but nothing has been received yet")
            ack = self.env["t_nxt"]
        else:
            ack = 0
        sport = self._ev(spec.from_port, self.env["l_port"], wrap=False)
        dport = self._ev(spec.to_port, self.env["t_port"], wrap=False)
        self.l_ports.add(sport)
        self.t_ports.add(dport)
        payload = spec.data.encode() if spec.data is not None else pattern_bytes(spec.len or 0)
        try:
            src = self.s.tester_addr if spec.from_addr == "tester" else self.s.special_address(spec.from_addr)
            if spec.from_addr != "tester":  # replies to that source are this case's business too
                self.l_addrs.add(socket.inet_pton(socket.AF_INET6 if ":" in src else socket.AF_INET, src))
            dst = self.s.special_address(spec.to_addr)
        except ValueError as exc:
            raise StepError(f"line {step.line}: {exc}") from None
        out = OutSegment(
            self.s.family, src, dst, sport, dport, seq, ack, spec.flags,
            self._ev(spec.window, wrap=False), self._ev(spec.urgent, wrap=False),
            [self._option(o) for o in spec.options], payload, spec.checksum == "bad", spec.doff, spec.ttl,
            spec.reserved,
        )  # fmt: skip
        try:
            packet = build_packet(out)
        except ValueError as exc:
            raise StepError(f"line {step.line}: cannot build the segment: {exc}") from None
        self._sent_step[packet] = self.step_index
        self._transmit(packet)
        self._advance_l_nxt(spec, seq, len(payload))
        self._detail_packets[self.step_index] = packet

    def _advance_l_nxt(self, spec: SendSpec, seq: int, payload_len: int) -> None:
        """l_nxt is the highest sequence number the tester has sent, plus one (like SND.MAX).

        A SYN occupies sequence space only as the tester's own opening SYN (seq = l_isn); a SYN sent on an
        open connection probes the target. RSTs and segments with a bad checksum never count, nor do
        segments starting behind l_nxt's window or far beyond it (old duplicates, out-of-window probes).
        """
        if spec.flags & 0x04 or spec.checksum != "good":
            return
        syn = 1 if spec.flags & 0x02 and seq == self.env["l_isn"] else 0
        end = (seq + payload_len + syn + (1 if spec.flags & 0x01 else 0)) % MOD
        l_nxt = self.env["l_nxt"]
        ahead = seq_diff(seq, l_nxt)
        if end != seq and seq_diff(end, l_nxt) > 0 and -(1 << 20) <= ahead <= (1 << 20):
            self.env["l_nxt"] = end

    def _option(self, opt) -> OutOption:
        if opt.name in ("mss", "wscale"):
            return OutOption(opt.name, self._ev(opt.value, wrap=False))
        if opt.name == "ts":
            return OutOption("ts", tuple(self._ev(v) for v in opt.value))
        if opt.name == "sack":
            return OutOption("sack", tuple(self._ev(v) for block in opt.value for v in block))
        if opt.name == "raw":
            raw = opt.value
            return OutOption("raw", kind=raw.kind, data=bytes.fromhex(raw.data), length=raw.length)
        if opt.name == "tfo":  # RFC 7413 option, kind 34: a cookie request, the target's cookie, or a literal
            if opt.value == "cookie" and self.tfo_cookie is None:
                raise StepError("send {tfo: cookie}: the target has sent no Fast Open cookie in this case")
            cookie = {"request": b"", "cookie": self.tfo_cookie}.get(opt.value)
            return OutOption("raw", kind=34, data=bytes.fromhex(opt.value) if cookie is None else cookie)
        return OutOption(opt.name)

    # ---- lower tester: receive -------------------------------------------------------------------
    def _is_case_flow(self, packet: bytes, inbound: bool) -> bool:
        key = flow_key(packet)
        if key is None:
            return False
        src, dst, sport, dport = key
        if inbound:
            return (
                src == self.s.target_bytes
                and (dst == self.s.tester_bytes or dst in self.l_addrs)
                and sport in self.t_ports
                and dport in self.l_ports
            )
        return packet in self._sent_step

    def _collect(self, duration: float) -> None:
        """Read the link for ``duration`` seconds, queueing the case's inbound segments."""
        deadline = time.monotonic() + duration
        while True:
            seg = self._read(deadline)
            if seg is None:
                return
            self.pending.append(seg)

    def _check_case_deadline(self) -> None:
        if time.monotonic() > self.case_deadline:
            raise StepError(f"the case exceeded its time limit of {self.case.meta.timeout:g} s (timeout:)")

    def _read(self, deadline: float) -> Segment | None:
        """The next inbound segment of the case's flow from the link, recording the trace."""
        if deadline > self.case_deadline:
            deadline = self.case_deadline
        while True:
            self._check_case_deadline()
            now = time.monotonic()
            remaining = deadline - now
            frame = self.s.link.receive(max(0.0, remaining))
            self._blocked += time.monotonic() - now
            if frame is None:
                return None
            if not self._is_case_flow(frame.data, frame.inbound):
                continue
            seg = parse_packet(frame.data)
            if seg is None:
                continue
            step = self.current_step if frame.inbound else self._sent_step.get(frame.data)
            entry = TraceEntry(frame.ts, frame.inbound, seg, step)
            self.result.trace.append(entry)
            if frame.inbound:
                self._seg_ts[id(seg)] = frame.ts
                self._seg_entry[id(seg)] = entry
                return seg

    def _next(self, deadline: float) -> Segment | None:
        if self.pending:
            seg = self.pending.popleft()
            # A segment read while an earlier step ran belongs to the step that examines it.
            entry = self._seg_entry.get(id(seg))
            if entry is not None and self.current_step is not None:
                entry.step = self.current_step
            return seg
        return self._read(deadline)

    def _accept_segment(self, seg: Segment, bind: dict[str, str] | None = None) -> None:
        """Update the tester's view after a target segment was matched."""
        env = self.env
        if seg.flags & 0x02:
            env["t_isn"] = seg.seq
            env["t_nxt"] = seg.end_seq
            ws = seg.option("wscale")
            if ws is not None and isinstance(ws.value(), int):
                env["t_ws"] = ws.value()  # type: ignore[assignment]
            mss = seg.option("mss")
            if mss is not None and isinstance(mss.value(), int):
                env["t_mss"] = mss.value()  # type: ignore[assignment]
        elif (
            "t_nxt" in env and seg.length and seq_diff(seg.end_seq, env["t_nxt"]) > 0 >= seq_diff(seg.seq, env["t_nxt"])
        ) or ("t_nxt" not in env and not seg.flags & 0x04):
            env["t_nxt"] = seg.end_seq
        tfo = seg.option("tfo")
        if tfo is not None and tfo.data and not tfo.malformed:
            self.tfo_cookie = tfo.data
        ts = seg.option("ts")
        if ts is not None and isinstance(ts.value(), tuple):
            env["t_tsval"] = ts.value()[0]  # type: ignore[index]
        env["t_win"] = seg.window
        if seg.flags & 0x10:
            env["t_ack"] = seg.ack
        ts_us = round(self._case_clock_us(self._seg_ts.get(id(seg), self.result.started)))
        for name, source in (bind or {}).items():
            value = segment_field(seg, source, ts_us)
            if value is None:
                raise StepFailed(f"cannot bind {name}: the segment has no {source}", actual=seg.summary())
            env[name] = value

    def _step_expect(self, step: Step, record: StepRecord) -> None:
        spec: ExpectSpec = step.spec
        started = time.monotonic()
        seg = self._next(started + spec.timeout)
        self._target_wait += time.monotonic() - started  # the target's reaction or its timer
        if seg is None:
            expected = describe(spec, self.env)
            raise StepFailed(
                f"expected {expected} within {spec.timeout * 1000:g} ms, got nothing", expected, "(nothing)",
                absence=True,
            )  # fmt: skip
        found = mismatches(spec, seg, self.env)
        if found and self._reorder_window():
            later = self._find_reordered(lambda s: not mismatches(spec, s, self.env), seg)
            if later is not None:
                seg, found = later, []
        if found:
            expected = describe(spec, self.env)
            raise StepFailed(f"unexpected segment: {'; '.join(found)}", expected, seg.summary(), found, segment=seg)
        self._accept_segment(seg, spec.bind)
        self._detail_segments[self.step_index] = seg

    def _step_expect_none(self, step: Step, record: StepRecord) -> None:
        spec: ExpectNoneSpec = step.spec
        what = describe(spec, self.env)
        if self.on_wait:
            why = f": {spec.reason}" if spec.reason else ""
            self.on_wait(f"{self.case.id}: watching {spec.for_ * 1000:g} ms for no {what}{why}")
        start = time.monotonic()
        deadline = start + spec.for_
        self._declared += spec.for_
        kept: list[Segment] = []
        while True:
            seg = self._next(deadline)
            if seg is None:
                break
            if not mismatches(spec, seg, self.env):  # an unbound name in the filter is an ERROR, not silence
                self.pending.extendleft(reversed(kept))
                raise StepFailed(
                    f"expected no {what} for {spec.for_ * 1000:g} ms, got one after "
                    f"{(time.monotonic() - start) * 1000:.1f} ms", f"no {what}", seg.summary(), segment=seg,
                )  # fmt: skip
            kept.append(seg)
        self.pending.extendleft(reversed(kept))
        record.detail = f"silent for {spec.for_ * 1000:g} ms"

    def _step_expect_count(self, step: Step, record: StepRecord) -> None:
        spec = step.spec
        deadline = time.monotonic() + spec.for_
        self._declared += spec.for_
        kept: list[Segment] = []
        counted = 0
        while (seg := self._next(deadline)) is not None:
            if mismatches(spec, seg, self.env):
                kept.append(seg)
            else:
                counted += 1
        self.pending.extendleft(reversed(kept))
        if spec.record:
            self.recorded[spec.record] = counted
            self.env[spec.record] = counted  # later steps may use the count (e.g. a check)
        record.detail = f"{counted} matching segment(s) in {spec.for_ * 1000:g} ms"
        if not value_matches(spec.count, counted, self.env, wraps=False):
            what = describe(spec, self.env)
            raise StepFailed(
                f"{spec.reason}: expected {spec.count.describe(self.env)} x {what} in {spec.for_ * 1000:g} ms, "
                f"got {counted}", f"{spec.count.describe(self.env)} x {what}", f"{counted} x {what}",
                absence=True,
            )  # fmt: skip

    def _step_expect_one_of(self, step: Step, record: StepRecord) -> None:
        alts: list[ParsedAlternative] = step.spec
        start = time.monotonic()
        silent = [a for a in alts if a.alt.none is not None]
        timeouts = [a.alt.expect.timeout for a in alts if a.alt.expect is not None]
        # A silence alternative decides after its own window; otherwise wait as long as the longest expect.
        window = silent[0].alt.none.for_ if silent else max(timeouts)  # type: ignore[union-attr]
        chosen: ParsedAlternative | None = None
        seg = self._next(start + window)
        elapsed = time.monotonic() - start
        if seg is not None:
            self._target_wait += elapsed
        if seg is None and silent:
            chosen = silent[0]
            self._declared += window
        if chosen is None:
            if seg is None:
                raise StepFailed(
                    "none of the acceptable behaviours was seen: nothing arrived",
                    self._describe_alts(alts), "(nothing)", absence=True,
                )  # fmt: skip
            chosen = self._matching_alternative(alts, seg, elapsed)
            if chosen is None and self._reorder_window():
                later = self._find_reordered(lambda s: self._matching_alternative(alts, s, elapsed) is not None, seg)
                if later is not None:
                    seg, chosen = later, self._matching_alternative(alts, later, elapsed)
            if chosen is not None:
                self._accept_segment(seg, chosen.alt.expect.bind)  # type: ignore[union-attr]
            else:
                found = [
                    f"{a.alt.label}: {'; '.join(mismatches(a.alt.expect, seg, self.env))}" for a in alts if a.alt.expect
                ]
                raise StepFailed(
                    "the segment matches none of the acceptable behaviours",
                    self._describe_alts(alts),
                    seg.summary(),
                    found,
                    segment=seg,
                )
        self._grade_behaviour(chosen.alt, seg)
        record.detail = f"{chosen.alt.label}: {chosen.alt.behaviour}"
        if chosen.then:
            self._run_steps(chosen.then)

    def _matching_alternative(
        self, alts: list[ParsedAlternative], seg: Segment, elapsed: float
    ) -> ParsedAlternative | None:
        for alt in alts:
            if alt.alt.expect is None or alt.alt.expect.timeout < elapsed:
                continue  # an alternative only takes segments that arrive within its own timeout
            if not mismatches(alt.alt.expect, seg, self.env):
                return alt
        return None

    def _describe_alts(self, alts: list[ParsedAlternative]) -> str:
        parts = []
        for a in alts:
            body = describe(a.alt.expect, self.env) if a.alt.expect else f"silence for {a.alt.none.for_ * 1000:g} ms"  # type: ignore[union-attr]
            parts.append(f"[{a.alt.label}] {body}")
        return " | ".join(parts)

    def _grade_behaviour(self, alt: Alternative, seg: Segment | None) -> None:
        res = self.result
        res.behaviour = alt.label
        res.behaviour_text = alt.behaviour
        if alt.conforms is not None and self.profile not in alt.conforms:
            raise StepFailed(
                f"behaviour seen: {alt.label} ({alt.behaviour}); it does not conform under profile "
                f"{self.profile} (it conforms under: {', '.join(alt.conforms) or 'no profile'})",
                f"a behaviour conforming under {self.profile}", seg.summary() if seg else "(silence)",
            )  # fmt: skip

    # ---- upper tester ----------------------------------------------------------------------------
    def _step_ut(self, step: Step, record: StepRecord) -> None:
        spec: UtSpec = step.spec
        agent = self.s.agent
        if spec.op == "listen" and spec.service == "echo":
            if self.s.echo_port is None:
                raise StepError("the target declares no echo service (ports.echo); the case should require svc.echo")
            self.env["t_port"] = self.s.echo_port
            self.t_ports.add(self.s.echo_port)
            record.detail = f"the target's echo service on port {self.s.echo_port}"
            return
        if agent is None:
            self._agentless_ut(spec, record)
            return
        if spec.op == "await":
            if spec.as_ not in self.calls:
                raise StepError(f"line {step.line}: no nowait call named '{spec.as_}'")
            call, original = self.calls.pop(spec.as_)  # type: ignore[arg-type]
            self._finish_ut(original, call, spec, record)
            return
        if self._sent_since_ut:  # on a delaying link, let the tester's segments reach the target first
            self._collect(self._one_way_delay() * 1.5 + 0.002)  # with a margin for a late timer wake-up
            self._sent_since_ut = False
        args = self._ut_args(spec)
        call = agent.submit(spec.op, **args)
        if spec.nowait:
            self.calls[spec.as_ or spec.op] = (call, spec)
            record.detail = "submitted"
            return
        self._finish_ut(spec, call, spec, record)

    def _agentless_ut(self, spec: UtSpec, record: StepRecord) -> None:
        """Without an agent only a passive open can be stood in for: by the port a service listens on."""
        if spec.op == "listen" and self.s.open_port is not None and not spec.nowait:
            self.env["t_port"] = self.s.open_port
            self.t_ports.add(self.s.open_port)
            record.detail = f"agentless: the declared open port {self.s.open_port}"
            return
        raise StepError(f"this target has no upper tester for `ut: {spec.op}` (the case should require ut.{spec.op})")

    def _sock(self, spec: UtSpec, default: str) -> int:
        name = spec.sock or default
        if name not in self.handles:
            raise StepError(f"no socket named '{name}' on the target (known: {', '.join(self.handles) or 'none'})")
        return self.handles[name]

    def _ut_args(self, spec: UtSpec) -> dict:
        s, ms = self.s, int(spec.timeout * 1000)
        op = spec.op
        if op == "listen":
            port = self._ev(spec.port, 0, wrap=False)
            args = {"family": s.family, "port": port, "backlog": spec.backlog or 16}
            if not spec.wildcard and not s.listen_any:  # listen_any: the target address is a proxy's translation
                args["addr"] = s.target_addr
            if spec.fastopen is not None:  # TCP_FASTOPEN queue length; true means 16
                args["fastopen"] = 16 if spec.fastopen is True else int(spec.fastopen)
            return args | ({"rcvbuf": spec.rcvbuf} if spec.rcvbuf else {})
        if op == "accept":
            return {"sock": self._sock(spec, "listener"), "timeout_ms": ms}
        if op == "connect":
            peer = s.tester_addr if spec.to_addr == "tester" else self._special_peer(spec.to_addr)
            args = {"family": s.family, "addr": peer, "port": self.env["l_port"],
                    "local_addr": s.target_addr, "local_port": self.env["t_port"], "timeout_ms": ms}  # fmt: skip
            if spec.wildcard:
                del args["local_addr"]
            if spec.user_timeout is not None:
                args["user_timeout_ms"] = int(spec.user_timeout * 1000)
            if spec.fastopen:  # data with the SYN (RFC 7413), or a cookie request when the stack has no cookie
                args["fastopen"] = True
                if spec.data is not None:
                    args["data_b64"] = base64.b64encode(spec.data.encode()).decode()
                else:
                    args["len"] = spec.len
            return args | ({"rcvbuf": spec.rcvbuf} if spec.rcvbuf else {})
        sock = self._sock(spec, "conn")
        if op == "send":
            if spec.data is not None:
                return {"sock": sock, "data_b64": base64.b64encode(spec.data.encode()).decode()}
            return {"sock": sock, "len": spec.len or 1}
        if op == "recv":
            return {"sock": sock, "max": spec.max or 65536, "timeout_ms": ms}
        if op == "shutdown":
            return {"sock": sock, "how": spec.how or "wr"}
        return {"sock": sock}

    def _special_peer(self, name: str) -> str:
        """A broadcast or multicast peer for connect; segments the target sends there are watched."""
        try:
            addr = self.s.special_address(name)
        except ValueError as exc:
            raise StepError(str(exc)) from None
        self.l_addrs.add(socket.inet_pton(socket.AF_INET6 if ":" in addr else socket.AF_INET, addr))
        return addr

    def _answer(self, call: PendingCall, timeout: float) -> dict:
        """The agent's answer, reading the link while a call blocks: on an Ethernet link the stack's ARP and
        neighbour probes must be answered even while a connect waits minutes for a SYN's give-up, or the stack
        finds the tester unreachable (gVisor's NUD does, after about 18 s). Quick calls never wait in the loop."""
        deadline = time.monotonic() + timeout
        while not call.settle(AGENT_POLL_S) and (remaining := deadline - time.monotonic()) > 0:
            self._collect(min(AGENT_POLL_S, remaining))
        return call.wait(max(0.0, deadline - time.monotonic()))

    def _finish_ut(self, spec: UtSpec, call: PendingCall, step_spec: UtSpec, record: StepRecord) -> None:
        wanted = [step_spec.result] if isinstance(step_spec.result, str) else list(step_spec.result)
        started = time.monotonic()
        try:
            reply = self._answer(call, spec.timeout + 2.0)
            error = None
        except (AgentTimeout, AgentGone):
            raise
        except AgentError as exc:
            reply, error = {}, exc
        finally:
            waited = time.monotonic() - started
            self._blocked += waited
            if spec.op in PROTOCOL_BOUND_OPS:  # they wait for the target: its handshake, data or timers
                self._target_wait += waited
        self._collect(0.0)
        if error is not None and error.error == "EPERM" and "allow" in error.message:
            raise StepError(f"the agent's connect allow-list refused it ({error.message}): allow the address in the "
                            "agent's --allow-connect (this says nothing about the stack)")  # fmt: skip
        got = "ok" if error is None else error.error
        if "any" not in wanted and got not in wanted:
            detail = f" ({error.message})" if error is not None and error.message else ""
            raise StepFailed(
                f"upper tester {spec.op}: expected {' or '.join(wanted)}, got {got}{detail}",
                f"{spec.op} -> {' or '.join(wanted)}", f"{spec.op} -> {got}{detail}",
                absence=got == "ETIMEDOUT",  # the peer's segments did not come in time
            )  # fmt: skip
        record.detail = got
        if error is not None:
            return
        self._after_ut(spec, step_spec, reply, record)

    def _after_ut(self, spec: UtSpec, step_spec: UtSpec, reply: dict, record: StepRecord) -> None:
        op = spec.op
        if op == "listen":
            self.handles[spec.as_ if spec.as_ and not spec.nowait else "listener"] = reply["sock"]
            self.env["t_port"] = reply["port"]
            self.t_ports.add(reply["port"])
        elif op in ("accept", "connect"):
            # ``as`` names the socket, except on a nowait call where it names the call itself.
            self.handles[spec.as_ if spec.as_ and not spec.nowait else "conn"] = reply["sock"]
        elif op in ("close", "abort"):
            name = spec.sock or "conn"
            self.handles.pop(name, None)
        elif op == "recv":
            data = base64.b64decode(reply.get("data_b64", ""))
            record.detail = f"{len(data)} bytes" + (", eof" if reply.get("eof") else "")
            if step_spec.eof is not None and bool(reply.get("eof")) != step_spec.eof:
                raise StepFailed(
                    f"upper tester recv: expected {'end of file' if step_spec.eof else 'data'}, got {record.detail}",
                    "eof" if step_spec.eof else "data", record.detail,
                )  # fmt: skip
            if step_spec.expect_data is not None and data != step_spec.expect_data.encode():
                raise StepFailed(
                    f"upper tester recv: expected the bytes {step_spec.expect_data!r}, got {data[:80]!r}",
                    repr(step_spec.expect_data), repr(data[:80]),
                )  # fmt: skip
            if step_spec.expect_len is not None and len(data) != step_spec.expect_len:
                raise StepFailed(
                    f"upper tester recv: expected {step_spec.expect_len} bytes, got {len(data)}",
                    f"{step_spec.expect_len} bytes", record.detail,
                )  # fmt: skip
        elif op == "state":
            state = reply.get("state", "UNKNOWN")
            wanted = [step_spec.state] if isinstance(step_spec.state, str) else (step_spec.state or [])
            if wanted and state not in wanted and state != "UNKNOWN":
                state = self._settled_state(spec, wanted, state)
            record.detail = state
            if wanted and state == "UNKNOWN":
                raise Inconclusive("the upper tester cannot read the connection state on this target")
            if wanted and state not in wanted:
                raise StepFailed(
                    f"upper tester state: expected {' or '.join(wanted)}, got {state} "
                    f"(still after {STATE_SETTLE_S * 1000:g} ms)", " or ".join(wanted), state,
                )  # fmt: skip

    def _settled_state(self, spec: UtSpec, wanted: list[str], state: str) -> str:
        """Ask again for up to STATE_SETTLE_S: a stack in user space (or behind a VM) may still be processing
        the segment the tester just sent when the agent reads the state; the kernel of the local target never is.
        A state that is not reached by then is the stack's answer."""
        assert self.s.agent is not None
        deadline = time.monotonic() + STATE_SETTLE_S
        while state not in wanted and time.monotonic() < deadline:
            time.sleep(0.01)
            try:
                state = self.s.agent.submit("state", **self._ut_args(spec)).wait(2.0).get("state", "UNKNOWN")
            except AgentError:
                break
        return state


# ---- retries ---------------------------------------------------------------------------------------
DEFAULT_IMPAIRED_ATTEMPTS = 3
STATE_SETTLE_S = 0.2
AGENT_POLL_S = 0.02  # while an agent call blocks, the link is read in slices this long


def run_attempts(make_runner: Callable[[], CaseRunner], max_attempts: int, impairment: str | None) -> CaseResult:
    """Run a case up to ``max_attempts`` times, each from scratch with fresh ports, and decide from all.

    With ``max_attempts`` 1 this is exactly one ``CaseRunner.run()`` (the clean-link default).
    """
    attempts: list[CaseResult] = []
    while should_retry(attempts, max_attempts):
        attempts.append(make_runner().run())
    return combine_attempts(attempts, impairment)
