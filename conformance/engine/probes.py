"""Probes: steps that measure the target with many connections or packets, or act on the whole stack.

Rules of this module: ``isn_sample`` opens many short connections and records the target's ISNs; ``syn_flood``
sends SYNs from spoofed sources at a capped rate (only where the target entry opts in); ``restart`` restarts the
target's stack. All three change what other cases would see, so their cases run alone (the loader requires
``alone:`` of them); here they may use the link exclusively.
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
import time
from collections.abc import Awaitable, Callable

from ..model.loader import Step
from ..tcp import ACK, RST, SEQ_MOD, SYN, SYN_ACK, seq_add
from ..upper_tester import AgentClient
from ..wire.build import OutOption, OutSegment
from ..wire.flood import SynFlood, run_flood, spoofed_sources
from ..wire.link import Link
from ..wire.segment import Segment, flow_key
from .context import CaseContext, StepError, StepFailed
from .demux import Demux
from .flow import CaseFlow
from .isn import isn_stats
from .record import StepRecord
from .upper import UpperTester

# The run's reader of the restarted stack's new link (and its new agent, which the run's loop reads too).
Relink = Callable[[Link, "AgentClient | None"], Awaitable[Demux]]


class Probes:
    def __init__(self, ctx: CaseContext, flow: CaseFlow, upper: UpperTester, relink: Relink | None) -> None:
        self.ctx = ctx
        self.flow = flow
        self.upper = upper
        self.relink = relink

    # ---- ISN sampling ------------------------------------------------------------------------------------------
    async def isn_sample(self, step: Step, record: StepRecord) -> None:
        """Many short handshakes from fresh tester ports; each SYN-ACK's ISN is recorded, then reset."""
        spec, ctx, flow, s = step.spec, self.ctx, self.flow, self.ctx.session
        samples: list[tuple[int, float]] = []
        fixed_port = flow.tester_port(s.ports.tester()) if spec.same_port else None
        impaired = flow.link.impairment.active
        tries = 3 if flow.link.impairment.lossy else 1  # a lost sample is sampled again: a fresh handshake
        t_port = ctx.env["t_port"]
        seg: Segment | None = None
        while len(samples) < spec.count:
            for _ in range(tries):
                port, isn = fixed_port or flow.tester_port(s.ports.tester()), random.randrange(SEQ_MOD)
                syn = OutSegment(s.family, s.tester_addr, s.target_addr, port, t_port, isn, 0, SYN, 65535, 0,
                                 [OutOption("mss", 1460)])  # fmt: skip
                await flow.send_segment(syn)
                seg = await self._sample_reply(port, isn, time.monotonic() + spec.timeout, impaired=impaired)
                if tries == 1 or (seg is not None and seg.flags & SYN_ACK != ACK):
                    break
                # Nothing came, or a challenge ACK: the connection of a sample whose RST was lost is still
                # there. Reset it with the sequence number the ACK asks for, as any TCP would; sample again.
                reset_seq = seg.ack if seg is not None else seq_add(isn, 1)
                await flow.send_segment(OutSegment(s.family, s.tester_addr, s.target_addr, port, t_port, reset_seq,
                                                   0, RST, 0))  # fmt: skip
            if seg is None or seg.flags != SYN_ACK:
                got = seg.summary() if seg else "nothing"
                # A bare ACK answers a connection the tester's (lost) RST should have ended: absence, too.
                lost_reset = seg is not None and seg.flags & SYN_ACK == ACK and tries > 1
                raise StepFailed(
                    f"ISN sample {len(samples) + 1}: expected a SYN-ACK, got {got}", "SA", got,
                    segment=seg, absence=seg is None or lost_reset,
                )  # fmt: skip
            samples.append((seg.seq, flow.arrived.get(id(seg), time.time())))
            await flow.send_segment(OutSegment(s.family, s.tester_addr, s.target_addr, port, t_port,
                                               seq_add(isn, 1), 0, RST, 0))  # fmt: skip
            await flow.collect(spec.spacing)
            ctx.declared_wait += spec.spacing
        stats = isn_stats(samples)
        ctx.env.update(stats.as_env())
        ctx.recorded.update(stats.as_env())
        record.detail = f"{stats.count} ISNs: GCD {stats.gcd}, ISR {stats.isr}, SP {stats.sp}, repeats {stats.repeats}"

    async def _sample_reply(self, port: int, isn: int, deadline: float, *, impaired: bool) -> Segment | None:
        """The answer to an ISN sample's SYN; on an impaired link, SYN-ACKs answering an earlier SYN (a
        duplicate's late answer) are passed over. Segments to other ports are dropped."""
        while True:
            seg = await self.flow.next(deadline)
            if seg is None:
                return None
            if seg.dport != port:
                continue
            if not impaired or seg.flags != SYN_ACK or seg.ack == seq_add(isn, 1):
                return seg

    # ---- floods ------------------------------------------------------------------------------------------------
    async def syn_flood(self, step: Step, record: StepRecord) -> None:
        spec, ctx, s, flow = step.spec, self.ctx, self.ctx.session, self.flow
        if "flood" not in s.capabilities or s.flood_rate_cap <= 0:
            raise StepError("floods need the target's opt-in (allow_flood in targets.yaml) and `requires: [flood]`")
        try:
            sources = spoofed_sources(s.family, s.tester_addr, s.target_addr, s.prefix or 24, spec.sources)
        except ValueError as exc:
            raise StepError(str(exc)) from None
        flood = SynFlood(s.family, sources, s.target_addr, ctx.env["t_port"])
        flow.link.check_destination(bytes(flood.template))  # the one destination every flood packet carries
        flow.demux.run_alone(flow.inbox)  # the answers to spoofed sources belong to no port of the case
        result = run_flood(flood, spec.count, min(spec.rate, s.flood_rate_cap), flow.link.flood_writer())
        synacks = await self._count_flood_replies(spec.settle, {ipaddress.ip_address(a).packed for a in sources})
        ctx.declared_wait += result.elapsed_s + spec.settle  # the load the case asked for, and its settling
        values = {
            "flood_sent": result.sent,
            "flood_rate": int(result.rate),
            "flood_synacks": synacks,
            "flood_capture_drops": flow.capture_losses(),
        }
        ctx.env.update(values)
        ctx.recorded.update(values)
        # The capture's losses during the flood are the flood's (counted above as a lower bound), not the case's.
        flow.losses_before = flow.demux.losses()
        record.detail = (
            f"{result.sent} SYNs in {result.elapsed_s * 1000:.0f} ms ({int(result.rate)}/s); "
            f"{synacks} SYN-ACKs seen, {values['flood_capture_drops']} frames lost by the capture"
        )

    async def _count_flood_replies(self, settle: float, spoofed: set[bytes]) -> int:
        """Drain the link until it is quiet for ``settle`` s, counting SYN-ACKs to the spoofed sources."""
        flow, ctx = self.flow, self.ctx
        synacks = 0
        while True:
            deadline = time.monotonic() + settle
            frame = await flow.inbox.next(deadline, ctx.wall(deadline))
            if frame is None:
                break
            if not frame.inbound:
                continue
            key = flow_key(frame.data)
            if key is not None and key[1] in spoofed:
                off = (frame.data[0] & 0x0F) * 4 if frame.data[0] >> 4 == 4 else 40
                synacks += frame.data[off + 13] & SYN_ACK == SYN_ACK
            elif flow.is_case_flow(frame.data, True):
                flow.inbox.frames.appendleft(frame)  # the case's own: read as usual
                if (seg := await flow.read(time.monotonic())) is not None:
                    flow.pending.append(seg)
        return synacks

    # ---- restart -----------------------------------------------------------------------------------------------
    async def restart(self, step: Step, record: StepRecord) -> None:
        """The target's stack is restarted; the case goes on with its new link and agent (old sockets are gone)."""
        s = self.ctx.session
        if s.restart is None or self.relink is None:
            raise StepError("this target cannot be restarted by the suite (the case should require target.restart)")
        await self.flow.collect(0.0)
        started = time.monotonic()
        self.flow.demux.close()  # the old link and agent are closed by the restart: stop reading them first
        if s.agent is not None:
            s.agent.detach()
        try:
            s.link, s.agent = await asyncio.to_thread(s.restart)
        except Exception as exc:  # the target's own start-up errors: one line, an ERROR of this case
            raise StepError(f"the target did not come back after the restart: {exc}") from None
        self.flow.rebind(await self.relink(s.link, s.agent))
        self.upper.forget()
        self.ctx.declared_wait += time.monotonic() - started
        record.detail = f"restarted in {(time.monotonic() - started) * 1000:.0f} ms"
