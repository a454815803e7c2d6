"""The case's own traffic: which frames on the link are its, in what order they came, and its segments going out.

Rules of this module: a ``CaseFlow`` is the lower tester's I/O for one case. It owns the case's tester ports on
the link's demultiplexer, keeps every frame of the case's connections in the trace (with the step it belongs
to and its kernel timestamp), and paces the tester's segments on a link declared to reorder them. It knows the
link only through the ``Link`` protocol and its ``Demux``; what a segment means is the lower tester's business.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from ..tcp import CWR, ECE, PSH
from ..wire.build import OutSegment, build_packet
from ..wire.link import Link
from ..wire.segment import Segment, flow_key, parse_packet
from .context import CaseContext
from .demux import Demux
from .record import TraceEntry


class CaseFlow:
    def __init__(self, ctx: CaseContext, demux: Demux) -> None:
        self.ctx = ctx
        self.demux = demux
        self.inbox = demux.inbox()
        self.losses_before = demux.losses()
        self.l_ports: set[int] = set()
        self.t_ports: set[int] = set()
        self.l_addrs: set[bytes] = set()  # other sources the tester spoke from (invalid or spoofed sources)
        self.pending: deque[Segment] = deque()  # read from the link, not yet examined by a step
        self.sent_step: dict[bytes, int] = {}  # the tester's packets and the step that sent each
        self.detail_packets: dict[int, bytes] = {}  # a send step's packet, described after the case
        self.arrived: dict[int, float] = {}  # id(segment) -> kernel timestamp (wall clock)
        self.entries: dict[int, TraceEntry] = {}  # id(segment) -> its trace entry
        self.last_send = 0.0  # when the tester last sent (pacing on a reordering link)
        self.sent_since_ut = False  # a segment may still be on its way when the upper tester looks

    # ---- ports and the link ------------------------------------------------------------------------------------
    @property
    def link(self) -> Link:
        return self.demux.link

    def tester_port(self, port: int) -> int:
        """Take ``port`` as one of the case's tester ports: its frames come to this case."""
        if port not in self.l_ports:
            self.l_ports.add(port)
            self.demux.claim(port, self.inbox)
        return port

    def target_port(self, port: int) -> int:
        self.t_ports.add(port)
        return port

    def rebind(self, demux: Demux) -> None:
        """Go on over another link's demultiplexer (the stack was restarted), keeping the case's ports."""
        lost = self.capture_losses()
        self.demux.release(self.inbox)
        self.demux = demux
        self.inbox = demux.inbox()
        self.losses_before = demux.losses() - lost
        for port in self.l_ports:
            demux.claim(port, self.inbox)

    def release(self) -> None:
        self.demux.release(self.inbox)

    def reorder_window(self) -> float:
        """How long a frame can be overtaken on this link (0 on a link declared not to reorder).

        Jitter reorders frames sent close together, as netem's does; ``reorder`` lets frames skip the delay.
        """
        imp = self.link.impairment
        if not (imp.jitter_s or imp.reorder):
            return 0.0
        return imp.delay_s + imp.jitter_s

    def one_way_delay(self) -> float:
        """The longest time a frame of the tester takes to reach the target on this link."""
        imp = self.link.impairment
        return imp.delay_s + imp.jitter_s

    def capture_losses(self) -> int:
        """Frames the capture lost since the case began (any of them may have been the case's)."""
        return self.demux.losses() - self.losses_before

    # ---- out ---------------------------------------------------------------------------------------------------
    async def send_segment(self, out: OutSegment) -> bytes:
        packet = build_packet(out)
        await self.transmit(packet)
        return packet

    async def transmit(self, packet: bytes) -> None:
        """Send a segment; on a reordering link, far enough after the previous one that it cannot overtake it."""
        self.sent_step[packet] = self.ctx.step_index
        window = self.reorder_window()
        if window:
            wait = self.last_send + window - time.monotonic()
            if wait > 0:
                await self.collect(wait)
            self.last_send = time.monotonic()
            self.sent_since_ut = True
        elif self.one_way_delay():
            self.sent_since_ut = True
        self.demux.send(packet)

    # ---- in ----------------------------------------------------------------------------------------------------
    def is_case_flow(self, packet: bytes, inbound: bool) -> bool:
        if not inbound:
            return packet in self.sent_step
        key = flow_key(packet)
        if key is None:
            return False
        src, dst, sport, dport = key
        s = self.ctx.session
        return (
            src == s.target_bytes
            and (dst == s.tester_bytes or dst in self.l_addrs)
            and sport in self.t_ports
            and dport in self.l_ports
        )

    async def read(self, deadline: float) -> Segment | None:
        """The next inbound segment of the case's connections before ``deadline``, recording the trace."""
        ctx = self.ctx
        deadline = min(deadline, ctx.deadline)
        while True:
            ctx.check_deadline()
            if self.demux.error is not None:
                raise self.demux.error
            started = time.monotonic()
            frame = await self.inbox.next(deadline, ctx.wall(deadline))
            ctx.blocked += time.monotonic() - started
            if frame is None:
                if self.demux.error is not None:
                    raise self.demux.error
                return None
            if not self.is_case_flow(frame.data, frame.inbound):
                continue
            seg = parse_packet(frame.data)
            if seg is None:
                continue
            step = ctx.current_step if frame.inbound else self.sent_step.get(frame.data)
            entry = TraceEntry(frame.ts, frame.inbound, seg, step)
            ctx.record.trace.append(entry)
            if frame.inbound:
                self.arrived[id(seg)] = frame.ts
                self.entries[id(seg)] = entry
                return seg

    async def next(self, deadline: float) -> Segment | None:
        """The next segment a step has not examined yet: one read earlier, else one from the link."""
        if self.pending:
            seg = self.pending.popleft()
            # A segment read while an earlier step ran belongs to the step that examines it.
            entry = self.entries.get(id(seg))
            if entry is not None and self.ctx.current_step is not None:
                entry.step = self.ctx.current_step
            return seg
        return await self.read(deadline)

    async def collect(self, duration: float) -> None:
        """Read the link for ``duration`` seconds, keeping the case's segments for the steps to come."""
        deadline = time.monotonic() + duration
        while (seg := await self.read(deadline)) is not None:
            self.pending.append(seg)

    def put_back(self, segments: list[Segment]) -> None:
        """Segments a step passed over stay queued for the next one, in their order."""
        self.pending.extendleft(reversed(segments))

    async def find_reordered(self, wanted: Callable[[Segment], bool], first: Segment) -> Segment | None:
        """On a reordering link, the wanted segment may arrive just after others: look one window further.

        A TCP receiver handles segments by sequence number, not arrival order; the tester does the same
        within the link's declared reordering window. Segments passed over stay queued, in order.
        """
        passed = [first]
        found = None
        deadline = time.monotonic() + self.reorder_window()
        while (seg := await self.next(deadline)) is not None:
            if wanted(seg):
                found = seg
                break
            passed.append(seg)
        self.put_back(passed[1:] if found is None else passed)
        return found

    def repeats_earlier(self, seg: Segment) -> bool:
        """Whether the target sent this very segment (byte for byte) earlier in the case."""
        return any(e.inbound and e.segment is not seg and e.raw == seg.raw for e in self.ctx.record.trace)

    def retransmits_earlier(self, seg: Segment) -> bool:
        """Whether the segment resends one the target sent earlier in the case: it occupies sequence space (a SYN,
        a FIN or data: a bare ACK is never retransmitted, and two with one SEQ are two answers) and has the same
        flags (PSH, ECE and CWR aside), SEQ and length; what a retransmission timer sends, whatever its options or
        ACK say now."""
        if seg.length == 0:
            return False
        key = _retransmission_key(seg)
        return any(
            e.inbound and e.segment is not seg and _retransmission_key(e.segment) == key for e in self.ctx.record.trace
        )

    def describe_packet(self, packet: bytes) -> Segment | None:
        return parse_packet(packet)


def _retransmission_key(seg: Segment) -> tuple[int, int, int]:
    return (seg.flags & ~(PSH | ECE | CWR), seg.seq, len(seg.payload))
