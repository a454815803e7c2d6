"""The lower tester: the remote TCP peer the case plays, byte-exact, and its view of the connection.

Rules of this module: ``send`` builds a segment from the step and the tester's view (the environment of named
32-bit values: l_isn, l_nxt, t_isn, t_nxt, ports, and whatever steps bind); ``expect`` takes the next segment of
the case's connections and compares it field by field; silence windows and counts watch the flow for a while;
``expect_one_of`` records which acceptable behaviour the target showed (grading decides whether it conforms).
A step that is not met raises StepFailed with its evidence; a fault of the case raises StepError. Sequence
arithmetic uses conformance/tcp.py only.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Awaitable, Callable

from ..model.case import ExpectNoneSpec, ExpectSpec, SendSpec
from ..model.loader import ParsedAlternative, Step
from ..tcp import ACK, FIN, RST, SYN, seq_add, seq_diff
from ..wire.build import OutOption, OutSegment, build_packet
from ..wire.segment import Segment
from .context import CaseContext, StepError, StepFailed
from .flow import CaseFlow
from .matching import describe, mismatches, segment_field, value_matches
from .record import Behaviour, StepRecord

PAYLOAD_PATTERN = b"0123456789abcdefghijklmnopqrstuvwxyz"
FAR = 1 << 20  # segments further than this from l_nxt are probes or old duplicates: they never move l_nxt


def pattern_bytes(n: int) -> bytes:
    return (PAYLOAD_PATTERN * (n // len(PAYLOAD_PATTERN) + 1))[:n]


RunSteps = Callable[[list[Step]], Awaitable[None]]


class LowerTester:
    def __init__(self, ctx: CaseContext, flow: CaseFlow) -> None:
        self.ctx = ctx
        self.flow = flow
        self.tfo_cookie: bytes | None = None  # the last TCP Fast Open cookie the target sent (send: {tfo: cookie})
        self.matched: dict[int, Segment] = {}  # an expect step's segment, described after the case

    # ---- send --------------------------------------------------------------------------------------------------
    async def send(self, step: Step, record: StepRecord) -> None:
        spec: SendSpec = step.spec
        ctx, env, s = self.ctx, self.ctx.env, self.ctx.session
        # A SYN's default is the tester's ISN (a retransmitted SYN reuses it); anything else follows l_nxt.
        seq = ctx.ev(spec.seq, env["l_isn"] if spec.flags & SYN else env["l_nxt"])
        if spec.ack is not None:
            ack = ctx.ev(spec.ack)
        elif spec.flags & ACK:
            if "t_nxt" not in env:
                raise StepError(f"line {step.line}: ack defaults to t_nxt, but nothing has been received yet")
            ack = env["t_nxt"]
        else:
            ack = 0
        sport = self.flow.tester_port(ctx.ev(spec.from_port, env["l_port"], wrap=False))
        dport = self.flow.target_port(ctx.ev(spec.to_port, env["t_port"], wrap=False))
        payload = spec.data.encode() if spec.data is not None else pattern_bytes(spec.len or 0)
        try:
            src = s.tester_addr if spec.from_addr == "tester" else s.special_address(spec.from_addr)
            if spec.from_addr != "tester":  # replies to that source are this case's business too
                self.flow.l_addrs.add(socket.inet_pton(socket.AF_INET6 if ":" in src else socket.AF_INET, src))
            dst = s.special_address(spec.to_addr)
        except ValueError as exc:
            raise StepError(f"line {step.line}: {exc}") from None
        out = OutSegment(
            s.family, src, dst, sport, dport, seq, ack, spec.flags,
            ctx.ev(spec.window, wrap=False), ctx.ev(spec.urgent, wrap=False),
            [self._option(o) for o in spec.options], payload, spec.checksum == "bad", spec.doff, spec.ttl,
            spec.reserved,
        )  # fmt: skip
        try:
            packet = build_packet(out)
        except ValueError as exc:
            raise StepError(f"line {step.line}: cannot build the segment: {exc}") from None
        await self.flow.transmit(packet)
        self._advance_l_nxt(spec, seq, len(payload))
        self.flow.detail_packets[ctx.step_index] = packet

    def _advance_l_nxt(self, spec: SendSpec, seq: int, payload_len: int) -> None:
        """l_nxt is the highest sequence number the tester has sent, plus one (like SND.MAX).

        A SYN occupies sequence space only as the tester's own opening SYN (seq = l_isn); a SYN sent on an
        open connection probes the target. RSTs and segments with a bad checksum never count, nor do
        segments starting behind l_nxt's window or far beyond it (old duplicates, out-of-window probes).
        """
        env = self.ctx.env
        if spec.flags & RST or spec.checksum != "good":
            return
        syn = 1 if spec.flags & SYN and seq == env["l_isn"] else 0
        end = seq_add(seq, payload_len + syn + (1 if spec.flags & FIN else 0))
        l_nxt = env["l_nxt"]
        if end != seq and seq_diff(end, l_nxt) > 0 and -FAR <= seq_diff(seq, l_nxt) <= FAR:
            env["l_nxt"] = end

    def _option(self, opt) -> OutOption:  # type: ignore[no-untyped-def]
        ev = self.ctx.ev
        if opt.name in ("mss", "wscale"):
            return OutOption(opt.name, ev(opt.value, wrap=False))
        if opt.name == "ts":
            return OutOption("ts", tuple(ev(v) for v in opt.value))
        if opt.name == "sack":
            return OutOption("sack", tuple(ev(v) for block in opt.value for v in block))
        if opt.name == "raw":
            raw = opt.value
            return OutOption("raw", kind=raw.kind, data=bytes.fromhex(raw.data), length=raw.length)
        if opt.name == "tfo":  # RFC 7413 option, kind 34: a cookie request, the target's cookie, or a literal
            if opt.value == "cookie" and self.tfo_cookie is None:
                raise StepError("send {tfo: cookie}: the target has sent no Fast Open cookie in this case")
            cookie = {"request": b"", "cookie": self.tfo_cookie}.get(opt.value)
            return OutOption("raw", kind=34, data=bytes.fromhex(opt.value) if cookie is None else cookie)
        return OutOption(opt.name)

    # ---- the tester's view of the target -----------------------------------------------------------------------
    def accept_segment(self, seg: Segment, bind: dict[str, str] | None = None) -> None:
        """Update the tester's view after a target segment was matched."""
        env = self.ctx.env
        if seg.flags & SYN:
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
        ) or ("t_nxt" not in env and not seg.flags & RST):
            env["t_nxt"] = seg.end_seq
        tfo = seg.option("tfo")
        if tfo is not None and tfo.data and not tfo.malformed:
            self.tfo_cookie = tfo.data
        ts = seg.option("ts")
        if ts is not None and isinstance(ts.value(), tuple):
            env["t_tsval"] = ts.value()[0]  # type: ignore[index]
        env["t_win"] = seg.window
        if seg.flags & ACK:
            env["t_ack"] = seg.ack
        started = self.ctx.record.started
        ts_us = round(self.ctx.case_clock_us(self.flow.arrived.get(id(seg), started)))
        for name, source in (bind or {}).items():
            value = segment_field(seg, source, ts_us)
            if value is None:
                raise StepFailed(f"cannot bind {name}: the segment has no {source}", actual=seg.summary())
            env[name] = value

    # ---- expect ------------------------------------------------------------------------------------------------
    async def expect(self, step: Step, record: StepRecord) -> None:
        spec: ExpectSpec = step.spec
        ctx, flow = self.ctx, self.flow
        started = time.monotonic()
        passed_over: list[Segment] = []  # the target's timer resending what it sent before: not an answer
        while (seg := await flow.next(started + spec.timeout)) is not None:
            if not mismatches(spec, seg, ctx.env) or not flow.retransmits_earlier(seg):
                break
            passed_over.append(seg)
        flow.put_back(passed_over)  # later steps still see them, in order
        ctx.target_wait += time.monotonic() - started  # the target's reaction or its timer
        if seg is None:
            expected = describe(spec, ctx.env)
            also = f" but the target's retransmission of {passed_over[0].summary()}" if passed_over else ""
            raise StepFailed(
                f"expected {expected} within {spec.timeout * 1000:g} ms, got nothing{also}", expected,
                "(nothing)" + (f"; passed over: {passed_over[0].summary()}" if passed_over else ""), absence=True,
            )  # fmt: skip
        found = mismatches(spec, seg, ctx.env)
        if found and flow.reorder_window():
            later = await flow.find_reordered(lambda s: not mismatches(spec, s, ctx.env), seg)
            if later is not None:
                seg, found = later, []
        if found:
            expected = describe(spec, ctx.env)
            raise StepFailed(f"unexpected segment: {'; '.join(found)}", expected, seg.summary(), found, segment=seg)
        self.accept_segment(seg, spec.bind)
        self.matched[ctx.step_index] = seg

    async def expect_none(self, step: Step, record: StepRecord) -> None:
        spec: ExpectNoneSpec = step.spec
        ctx, flow = self.ctx, self.flow
        what = describe(spec, ctx.env)
        why = f": {spec.reason}" if spec.reason else ""
        ctx.announce(f"watching {spec.for_ * 1000:g} ms for no {what}{why}")
        start = time.monotonic()
        deadline = start + spec.for_
        ctx.declared_wait += spec.for_
        kept: list[Segment] = []
        while (seg := await flow.next(deadline)) is not None:
            if spec.ignore_retransmissions and flow.retransmits_earlier(seg):
                kept.append(seg)
                continue
            if not mismatches(spec, seg, ctx.env):  # an unbound name in the filter is an ERROR, not silence
                flow.put_back(kept)
                raise StepFailed(
                    f"expected no {what} for {spec.for_ * 1000:g} ms, got one after "
                    f"{(time.monotonic() - start) * 1000:.1f} ms", f"no {what}", seg.summary(), segment=seg,
                )  # fmt: skip
            kept.append(seg)
        flow.put_back(kept)
        record.detail = f"silent for {spec.for_ * 1000:g} ms"

    async def expect_count(self, step: Step, record: StepRecord) -> None:
        spec = step.spec
        ctx, flow = self.ctx, self.flow
        deadline = time.monotonic() + spec.for_
        ctx.declared_wait += spec.for_
        kept: list[Segment] = []
        counted = 0
        while (seg := await flow.next(deadline)) is not None:
            if mismatches(spec, seg, ctx.env):
                kept.append(seg)
            else:
                counted += 1
        flow.put_back(kept)
        if spec.record:
            ctx.recorded[spec.record] = counted
            ctx.env[spec.record] = counted  # later steps may use the count (e.g. a check)
        record.detail = f"{counted} matching segment(s) in {spec.for_ * 1000:g} ms"
        if not value_matches(spec.count, counted, ctx.env, wraps=False):
            what = describe(spec, ctx.env)
            raise StepFailed(
                f"{spec.reason}: expected {spec.count.describe(ctx.env)} x {what} in {spec.for_ * 1000:g} ms, "
                f"got {counted}", f"{spec.count.describe(ctx.env)} x {what}", f"{counted} x {what}",
                absence=True,
            )  # fmt: skip

    async def expect_one_of(self, step: Step, record: StepRecord, run_steps: RunSteps) -> None:
        alts: list[ParsedAlternative] = step.spec
        ctx, flow = self.ctx, self.flow
        start = time.monotonic()
        silent = [a for a in alts if a.alt.none is not None]
        timeouts = [a.alt.expect.timeout for a in alts if a.alt.expect is not None]
        # A silence alternative decides after its own window; otherwise wait as long as the longest expect.
        window = silent[0].alt.none.for_ if silent else max(timeouts)  # type: ignore[union-attr]
        chosen: ParsedAlternative | None = None
        skipped: list[Segment] = []
        while True:
            seg = await flow.next(start + window)
            elapsed = time.monotonic() - start
            if seg is None or not self._ignorable_retransmission(alts, seg, elapsed):
                break
            skipped.append(seg)  # a timer resending what is outstanding, while silence is one of the answers
        flow.put_back(skipped)
        if seg is not None:
            ctx.target_wait += elapsed
        if seg is None and silent:
            chosen = silent[0]
            ctx.declared_wait += window
        if chosen is None:
            if seg is None:
                raise StepFailed(
                    "none of the acceptable behaviours was seen: nothing arrived",
                    self._describe_alts(alts), "(nothing)", absence=True,
                )  # fmt: skip
            chosen = self._matching_alternative(alts, seg, elapsed)
            if chosen is None and flow.reorder_window():
                fits = lambda s: self._matching_alternative(alts, s, elapsed) is not None  # noqa: E731
                later = await flow.find_reordered(fits, seg)
                if later is not None:
                    seg, chosen = later, self._matching_alternative(alts, later, elapsed)
            if chosen is not None:
                self.accept_segment(seg, chosen.alt.expect.bind)  # type: ignore[union-attr]
            else:
                found = [
                    f"{a.alt.label}: {'; '.join(mismatches(a.alt.expect, seg, ctx.env))}" for a in alts if a.alt.expect
                ]
                raise StepFailed(
                    "the segment matches none of the acceptable behaviours",
                    self._describe_alts(alts), seg.summary(), found, segment=seg,
                )  # fmt: skip
        alt = chosen.alt
        alternatives = [
            {"label": a.alt.label, "expect": self._describe_alt(a),
             "conforms": list(a.alt.conforms) if a.alt.conforms is not None else None}
            for a in alts
        ]  # fmt: skip
        ctx.record.behaviours.append(
            Behaviour(
                ctx.step_index, step.line, step.path, alt.label, alt.behaviour,
                list(alt.conforms) if alt.conforms is not None else None,
                seg.summary() if seg is not None and alt.expect is not None else "(silence)",
                self._describe_alts(alts), seg is not None and alt.expect is not None and flow.repeats_earlier(seg),
                alternatives,
            )
        )  # fmt: skip
        record.detail = f"{alt.label}: {alt.behaviour}"
        if chosen.then:
            await run_steps(chosen.then)

    def _ignorable_retransmission(self, alts: list[ParsedAlternative], seg: Segment, elapsed: float) -> bool:
        silent = [a for a in alts if a.alt.none is not None]
        return bool(
            silent
            and silent[0].alt.none.ignore_retransmissions  # type: ignore[union-attr]
            and self._matching_alternative(alts, seg, elapsed) is None
            and self.flow.retransmits_earlier(seg)
        )

    def _matching_alternative(
        self, alts: list[ParsedAlternative], seg: Segment, elapsed: float
    ) -> ParsedAlternative | None:
        for alt in alts:
            if alt.alt.expect is None or alt.alt.expect.timeout < elapsed:
                continue  # an alternative only takes segments that arrive within its own timeout
            if not mismatches(alt.alt.expect, seg, self.ctx.env):
                return alt
        return None

    def _describe_alts(self, alts: list[ParsedAlternative]) -> str:
        return " | ".join(f"[{a.alt.label}] {self._describe_alt(a)}" for a in alts)

    def _describe_alt(self, a: ParsedAlternative) -> str:
        if a.alt.expect is not None:
            return describe(a.alt.expect, self.ctx.env)
        return f"silence for {a.alt.none.for_ * 1000:g} ms"  # type: ignore[union-attr]
