"""The reference model: how a conforming TCP endpoint may answer an event, for one connection (RFC 9293 3.10).

Rules of this module:
- Sans-IO and deterministic: no sockets, no clock, no randomness. The caller supplies the initial send sequence
  number and advances time itself (time matters only to timers, which the caller drives as events).
- A state is a frozen ``Tcb``; an event (a user call, a segment arriving) maps a ``Tcb`` to the list of
  ``Answer``s a conforming endpoint may give: the segments it sends, the ``Tcb`` it is left with, the profiles
  under which that answer conforms, and the named rules that produced it. Where the RFCs allow several answers
  (RFC 793's reset or RFC 5961's challenge ACK, RFC 1337's protection of TIME-WAIT, RFC 793's looser ACK test in
  SYN-RECEIVED), every one is listed, each with its profiles. Answers are never merged or chosen here.
- The processing follows RFC 9293 section 3.10.7 in its order: sequence acceptability (its four-case table),
  RST, SYN, ACK, text, FIN. The security/compartment check and URG are not modelled (no case exercises them).
- Every answer names the rules it followed: ``Rule`` ids are stable strings (``seq.unacceptable``,
  ``rst.exact``, ...) described in ``RULES`` in our own words, with the RFC places and requirement ids.
- Data is modelled by length only (no bytes); out-of-order data is not queued (the model acknowledges what it
  accepted and asks again for the gap), which RFC 9293 allows (holding it is SHLD-31, a matter of efficiency).
- Sequence arithmetic is conformance/tcp.py's. This module imports nothing else of the project.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import Enum

from ..tcp import ACK, FIN, RST, SYN, seq_add, seq_diff

PROFILES = ("rfc9293", "rfc5961", "rfc793", "rfc1337")
ALL = frozenset(PROFILES)
WITH_5961 = frozenset({"rfc9293", "rfc5961", "rfc1337"})  # RFC 5961's mitigations conform (rfc9293 accepts both)
WITH_793 = frozenset({"rfc9293", "rfc793", "rfc1337"})  # RFC 793's resets conform
NOT_1337 = frozenset({"rfc9293", "rfc5961", "rfc793"})  # a RST may end TIME-WAIT


class State(Enum):
    CLOSED = "CLOSED"
    LISTEN = "LISTEN"
    SYN_SENT = "SYN-SENT"
    SYN_RECEIVED = "SYN-RECEIVED"
    ESTABLISHED = "ESTABLISHED"
    FIN_WAIT_1 = "FIN-WAIT-1"
    FIN_WAIT_2 = "FIN-WAIT-2"
    CLOSE_WAIT = "CLOSE-WAIT"
    CLOSING = "CLOSING"
    LAST_ACK = "LAST-ACK"
    TIME_WAIT = "TIME-WAIT"


SYNCHRONIZED = frozenset(
    {State.ESTABLISHED, State.FIN_WAIT_1, State.FIN_WAIT_2, State.CLOSE_WAIT, State.CLOSING, State.LAST_ACK,
     State.TIME_WAIT}
)  # fmt: skip


@dataclass(frozen=True)
class Rule:
    """One rule of the model, in our words, with the places that state it."""

    id: str
    text: str
    refs: tuple[str, ...]


RULES: dict[str, Rule] = {
    r.id: r
    for r in (
        Rule("closed.rst", "a reset reaching a closed port is dropped", ("rfc9293:3.10.7.1",)),
        Rule(
            "closed.reset",
            "anything else reaching a closed port is answered by a reset: SEQ = SEG.ACK when the "
            "segment has ACK, else SEQ = 0 with ACK = SEG.SEQ + SEG.LEN",
            ("rfc9293:3.10.7.1", "rfc793:page65"),
        ),
        Rule("listen.rst", "a listener ignores a reset", ("rfc9293:3.10.7.2",)),
        Rule("listen.ack", "a listener answers a segment with ACK by a reset, SEQ = SEG.ACK", ("rfc9293:3.10.7.2",)),
        Rule("listen.syn", "a listener answers a SYN with its SYN-ACK and enters SYN-RECEIVED", ("rfc9293:3.10.7.2",)),
        Rule("listen.other", "a listener drops any other segment", ("rfc9293:3.10.7.2",)),
        Rule(
            "synsent.bad-ack",
            "in SYN-SENT an ACK outside ISS < SEG.ACK =< SND.NXT draws a reset with SEQ = "
            "SEG.ACK (a reset carrying it is dropped)",
            ("rfc9293:3.10.7.3",),
        ),
        Rule(
            "synsent.rst",
            "in SYN-SENT a reset whose ACK acknowledges the SYN refuses the connection; any other reset is dropped",
            ("rfc9293:3.10.7.3", "rfc5961:3.2"),
        ),
        Rule(
            "synsent.synack",
            "in SYN-SENT a SYN whose ACK acknowledges ours completes the handshake: ACK it, ESTABLISHED",
            ("rfc9293:3.10.7.3",),
        ),
        Rule(
            "synsent.syn",
            "in SYN-SENT a SYN without ACK is a simultaneous open: SYN-ACK with the original ISN, SYN-RECEIVED",
            ("rfc9293:3.10.7.3", "rfc9293:MUST-10"),
        ),
        Rule("synsent.other", "in SYN-SENT a segment with neither SYN nor RST is dropped", ("rfc9293:3.10.7.3",)),
        Rule(
            "seq.unacceptable",
            "a segment failing the acceptability test is answered by an ACK with SND.NXT and "
            "RCV.NXT, unless it carries RST",
            ("rfc9293:3.10.7.4", "rfc793:page69"),
        ),
        Rule(
            "seq.unacceptable-rst",
            "a reset failing the acceptability test is dropped silently",
            ("rfc9293:3.10.7.4", "rfc5961:3.2"),
        ),
        Rule(
            "rst.exact",
            "a reset exactly at RCV.NXT closes the connection (SYN-RECEIVED from a passive open goes back to LISTEN)",
            ("rfc9293:3.10.7.4", "rfc5961:3.2"),
        ),
        Rule(
            "rst.in-window-challenge",
            "a reset inside the window but not at RCV.NXT draws a challenge ACK and changes nothing (RFC 5961)",
            ("rfc5961:3.2", "rfc9293:3.10.7.4"),
        ),
        Rule("rst.in-window-793", "a reset inside the window closes the connection (RFC 793)", ("rfc793:page70",)),
        Rule("rst.time-wait-1337", "a reset in TIME-WAIT is ignored (RFC 1337)", ("rfc1337:3",)),
        Rule(
            "syn.challenge",
            "a SYN in a synchronized state draws a challenge ACK and changes nothing (RFC 5961)",
            ("rfc5961:4.2", "rfc9293:3.10.7.4"),
        ),
        Rule(
            "syn.time-wait-reopen",
            "in TIME-WAIT a SYN at or above RCV.NXT (the BSD and Linux reading of 'a new SYN') may open a new "
            "incarnation at once: a SYN-ACK whose ISS is above the largest sequence number used (RFC 9293 MAY-2, "
            "from RFC 1122 section 4.2.2.13); not under rfc5961, which challenges every SYN without RFC 6191's "
            "timestamps",
            ("rfc1122:4.2.2.13", "rfc9293:3.6.1"),
        ),
        Rule(
            "syn.reset-793",
            "an in-window SYN in a synchronized state resets the connection (RFC 793 page 71 says only 'send a "
            "reset': SEQ = SND.NXT, the number the peer's window test takes, with or without ACK)",
            ("rfc793:page71",),
        ),
        Rule(
            "synrcvd.syn-passive",
            "in SYN-RECEIVED from a passive open, a SYN returns the connection to LISTEN",
            ("rfc9293:3.10.7.4",),
        ),
        Rule(
            "synrcvd.synack-trimmed",
            "in SYN-RECEIVED the peer's crossing SYN-ACK may also be taken with its SYN "
            "trimmed off, its ACK completing the handshake (RFC 9293 Figure 7, RFC 793 Figure 8)",
            ("rfc9293:3.5", "rfc793:fig8"),
        ),
        Rule(
            "synrcvd.syn-duplicate",
            "in SYN-RECEIVED a duplicate of the peer's SYN (SEQ = IRS) may also be answered by the SYN-ACK again, "
            "as a retransmission, instead of the ACK an unacceptable segment draws (it carries the same ACK)",
            ("rfc9293:3.10.8", "rfc9293:3.10"),
        ),
        Rule(
            "seq.held",
            "an acceptable segment that begins beyond RCV.NXT may be held for later processing, its ACK field "
            "included (SHLD-31; the RFC processes further only a segment that begins at RCV.NXT), with or without "
            "an immediate ACK of RCV.NXT (MAY-13); taking its ACK at once, as most stacks do, is the other answer",
            ("rfc9293:3.10.7.4",),
        ),
        Rule("ack.none", "a segment without ACK is dropped once synchronized", ("rfc9293:3.10.7.4",)),
        Rule(
            "synrcvd.ack",
            "in SYN-RECEIVED an ACK with SND.UNA < SEG.ACK =< SND.NXT completes the handshake",
            ("rfc9293:3.10.7.4",),
        ),
        Rule(
            "synrcvd.ack-793",
            "RFC 793 page 72 as printed let SEG.ACK = SND.UNA complete the handshake too",
            ("rfc793:page72",),
        ),
        Rule(
            "synrcvd.bad-ack",
            "in SYN-RECEIVED an unacceptable ACK draws a reset with SEQ = SEG.ACK",
            ("rfc9293:3.10.7.4",),
        ),
        Rule("ack.future", "an ACK of something not yet sent is answered by an ACK and dropped", ("rfc9293:3.10.7.4",)),
        Rule(
            "ack.future-closing",
            "in LAST-ACK and TIME-WAIT the RFC expects only the ACK of our FIN (or the peer's FIN again): an ACK of "
            "something not yet sent may be dropped silently as well as answered by an ACK; not under rfc5961, whose "
            "ACK check (RFC 5961 section 5, MAY-12) sends the ACK in every synchronized state",
            ("rfc9293:3.10.7.4",),
        ),
        Rule("ack.advance", "an acceptable ACK advances SND.UNA", ("rfc9293:3.10.7.4",)),
        Rule(
            "ack.duplicate",
            "an ACK of nothing new (SEG.ACK =< SND.UNA) acknowledges nothing and is otherwise ignored",
            ("rfc9293:3.10.7.4",),
        ),
        Rule(
            "ack.old-answered",
            "a segment without text or FIN whose ACK is older than SND.UNA may be ignored or answered by an ACK "
            "(the RFC lets a duplicate ACK be ignored and forbids no reply; RFC 5961 section 5 requires the reply only "
            "below SND.UNA - MAX.SND.WND, which the model does not track)",
            ("rfc9293:3.10.7.4", "rfc5961:5"),
        ),
        Rule(
            "ack.fin-acked",
            "once the FIN is acknowledged: FIN-WAIT-1 -> FIN-WAIT-2, CLOSING -> TIME-WAIT, LAST-ACK -> CLOSED",
            ("rfc9293:3.10.7.4",),
        ),
        Rule(
            "text.accept",
            "data at RCV.NXT in ESTABLISHED, FIN-WAIT-1 or FIN-WAIT-2 is taken and acknowledged",
            ("rfc9293:3.10.7.4",),
        ),
        Rule("text.ignore", "data after the peer's FIN is ignored", ("rfc9293:3.10.7.4",)),
        Rule(
            "text.gap",
            "data beyond RCV.NXT is not taken; an ACK asking for the gap may be sent at once or not (MAY-13 makes "
            "the immediate ACK of a segment inside the window but not at its left edge optional)",
            ("rfc9293:3.10.7.4",),
        ),
        Rule(
            "text.after-fin",
            "text or a FIN beyond the peer's FIN (CLOSE-WAIT, CLOSING, LAST-ACK, TIME-WAIT) cannot come from a "
            "conforming peer: besides the literal reading (a FIN is acknowledged, RCV.NXT advanced over it), an ACK "
            "of RCV.NXT, or silence (which the text gives only CLOSING; elsewhere a tolerance for a segment no "
            "conforming peer sends)",
            ("rfc9293:3.10.7.4",),
        ),
        Rule(
            "fin.gap",
            "a FIN beyond RCV.NXT (an out-of-order segment without text) is not processed; it may draw an "
            "immediate duplicate ACK or nothing",
            ("rfc9293:3.10.7.4",),
        ),
        Rule(
            "fin.accept",
            "a FIN at RCV.NXT is acknowledged: ESTABLISHED/SYN-RECEIVED -> CLOSE-WAIT, FIN-WAIT-1 "
            "-> CLOSING (TIME-WAIT if its FIN is acknowledged), FIN-WAIT-2 -> TIME-WAIT; TIME-WAIT restarts its "
            "timer",
            ("rfc9293:3.10.7.4",),
        ),
        Rule("user.open-active", "an active OPEN sends a SYN with the ISS and enters SYN-SENT", ("rfc9293:3.10.1",)),
        Rule("user.open-passive", "a passive OPEN enters LISTEN", ("rfc9293:3.10.1",)),
        Rule(
            "user.close-quiet",
            "CLOSE in LISTEN or SYN-SENT deletes the connection and sends nothing",
            ("rfc9293:3.10.4", "rfc793:page60"),
        ),
        Rule(
            "user.close-fin",
            "CLOSE in SYN-RECEIVED or ESTABLISHED sends a FIN (FIN-WAIT-1), in CLOSE-WAIT (LAST-ACK)",
            ("rfc9293:3.10.4",),
        ),
        Rule(
            "user.abort-reset",
            "ABORT once a SYN was received sends a reset with SEQ = SND.NXT and deletes the connection",
            ("rfc9293:3.10.5",),
        ),
        Rule(
            "user.abort-quiet",
            "ABORT in LISTEN, SYN-SENT, CLOSING, LAST-ACK or TIME-WAIT sends nothing",
            ("rfc9293:3.10.5",),
        ),
        Rule("user.send", "SEND in ESTABLISHED or CLOSE-WAIT sends data at SND.NXT", ("rfc9293:3.10.2",)),
    )
}


@dataclass(frozen=True)
class Seg:
    """A segment, as far as connection management looks at it: no options, data by length."""

    seq: int
    ack: int = 0
    flags: int = 0
    wnd: int = 65535
    data: int = 0  # payload length
    mss: int | None = None  # on a SYN: the MSS the sender can receive (absent: the family's default, say the caller)

    @property
    def length(self) -> int:
        """SEG.LEN: the payload plus one each for SYN and FIN."""
        return self.data + (1 if self.flags & SYN else 0) + (1 if self.flags & FIN else 0)


@dataclass(frozen=True)
class Tcb:
    """The connection's state and variables (RFC 9293 section 3.3.1); the initial state is CLOSED."""

    state: State = State.CLOSED
    passive: bool = False  # the connection came from a passive OPEN (SYN-RECEIVED returns to LISTEN)
    iss: int = 0
    snd_una: int = 0
    snd_nxt: int = 0
    snd_wnd: int = 0
    irs: int = 0
    rcv_nxt: int = 0
    rcv_wnd: int = 65535
    fin_sent: bool = False  # our FIN was sent (it is SND.NXT - 1 then)
    snd_mss: int = 536  # the largest segment the peer takes (its SYN's MSS option, RFC 9293 section 3.7.1)


@dataclass(frozen=True)
class Answer:
    """One conforming way to handle an event."""

    sent: tuple[Seg, ...]
    tcb: Tcb
    rules: tuple[str, ...]
    conforms: frozenset[str] = ALL

    @property
    def label(self) -> str:
        return "+".join(self.rules)


@dataclass
class Machine:
    """One connection driven by events: ``answers`` lists what may happen; ``take`` moves to one answer."""

    profile: str = "rfc9293"
    tcb: Tcb = field(default_factory=Tcb)

    def answers(self, event: str, arg: Seg | int | None = None, iss: int = 0) -> list[Answer]:
        """Every answer to ``event`` (open_active with the ISS, open_passive, send with a length, close, abort,
        or segment with a ``Seg``, and the ISS a listener would pick) that conforms under this profile."""
        every = dispatch(self.tcb, event, arg, iss)
        return [a for a in every if self.profile in a.conforms]

    def take(self, answer: Answer) -> None:
        self.tcb = answer.tcb


def dispatch(tcb: Tcb, event: str, arg: Seg | int | None = None, iss: int = 0) -> list[Answer]:
    """Every answer to an event, under any profile."""
    if event == "segment":
        assert isinstance(arg, Seg)
        return segment_arrives(tcb, arg, iss)
    if event == "open_active":
        assert isinstance(arg, int)
        return [open_active(tcb, arg)]
    if event == "open_passive":
        return [Answer((), replace(Tcb(), state=State.LISTEN, passive=True), ("user.open-passive",))]
    if event == "send":
        assert isinstance(arg, int)
        return send(tcb, arg)
    if event == "close":
        return close(tcb)
    if event == "abort":
        return abort(tcb)
    raise ValueError(f"unknown event {event!r}")


# ---- user calls ---------------------------------------------------------------------------------------------------
def open_active(tcb: Tcb, iss: int) -> Answer:
    syn = Seg(iss, 0, SYN)
    after = replace(Tcb(), state=State.SYN_SENT, iss=iss, snd_una=iss, snd_nxt=seq_add(iss, 1))
    return Answer((syn,), after, ("user.open-active",))


def send(tcb: Tcb, length: int) -> list[Answer]:
    if tcb.state not in (State.ESTABLISHED, State.CLOSE_WAIT) or length <= 0:
        return [Answer((), tcb, ("user.send",))]  # queued (SYN-SENT, SYN-RECEIVED) or refused: nothing sent now
    usable = max(0, seq_diff(seq_add(tcb.snd_una, tcb.snd_wnd), tcb.snd_nxt))
    n = min(length, usable)
    if n == 0:
        return [Answer((), tcb, ("user.send",))]
    segs, nxt = [], tcb.snd_nxt
    while n > 0:  # no segment larger than the peer's MSS (RFC 9293 MUST-16)
        size = min(n, tcb.snd_mss)
        segs.append(Seg(nxt, tcb.rcv_nxt, ACK, tcb.rcv_wnd, size))
        nxt, n = seq_add(nxt, size), n - size
    return [Answer(tuple(segs), replace(tcb, snd_nxt=nxt), ("user.send",))]


def close(tcb: Tcb) -> list[Answer]:
    if tcb.state in (State.LISTEN, State.SYN_SENT, State.CLOSED):
        return [Answer((), Tcb(), ("user.close-quiet",))]
    if tcb.state in (State.SYN_RECEIVED, State.ESTABLISHED, State.CLOSE_WAIT):
        fin = Seg(tcb.snd_nxt, tcb.rcv_nxt, FIN | ACK, tcb.rcv_wnd)
        state = State.LAST_ACK if tcb.state == State.CLOSE_WAIT else State.FIN_WAIT_1
        return [Answer((fin,), replace(tcb, state=state, snd_nxt=seq_add(tcb.snd_nxt, 1), fin_sent=True),
                       ("user.close-fin",))]  # fmt: skip
    return [Answer((), tcb, ("user.close-fin",))]  # already closing: "error: connection closing"


def abort(tcb: Tcb) -> list[Answer]:
    if tcb.state in (State.SYN_RECEIVED, State.ESTABLISHED, State.FIN_WAIT_1, State.FIN_WAIT_2, State.CLOSE_WAIT):
        return [Answer((Seg(tcb.snd_nxt, 0, RST),), Tcb(), ("user.abort-reset",))]
    return [Answer((), Tcb(), ("user.abort-quiet",))]


# ---- SEGMENT ARRIVES ----------------------------------------------------------------------------------------------
def segment_arrives(tcb: Tcb, seg: Seg, iss: int = 0) -> list[Answer]:
    """Every answer to ``seg``; ``iss`` is the initial sequence number a listener answering a SYN would pick."""
    if tcb.state == State.CLOSED:
        return [_closed(seg)]
    if tcb.state == State.LISTEN:
        return [_listen(tcb, seg, iss)]
    if tcb.state == State.SYN_SENT:
        return [_syn_sent(tcb, seg)]
    return _synchronized(tcb, seg)


def _reset_for(seg: Seg) -> Seg:
    """The reset a segment without a connection draws (RFC 9293 section 3.10.7.1)."""
    if seg.flags & ACK:
        return Seg(seg.ack, 0, RST)
    return Seg(0, seq_add(seg.seq, seg.length), RST | ACK)


def _closed(seg: Seg) -> Answer:
    if seg.flags & RST:
        return Answer((), Tcb(), ("closed.rst",))
    return Answer((_reset_for(seg),), Tcb(), ("closed.reset",))


def _listen(tcb: Tcb, seg: Seg, iss: int) -> Answer:
    if seg.flags & RST:
        return Answer((), tcb, ("listen.rst",))
    if seg.flags & ACK:
        return Answer((Seg(seg.ack, 0, RST),), tcb, ("listen.ack",))
    if not seg.flags & SYN:
        return Answer((), tcb, ("listen.other",))
    rcv_nxt = seq_add(seg.seq, 1)  # data with the SYN is queued until ESTABLISHED: not modelled
    after = replace(tcb, state=State.SYN_RECEIVED, iss=iss, snd_una=iss, snd_nxt=seq_add(iss, 1), irs=seg.seq,
                    rcv_nxt=rcv_nxt, snd_wnd=seg.wnd, snd_mss=seg.mss or tcb.snd_mss)  # fmt: skip
    return Answer((Seg(iss, rcv_nxt, SYN | ACK, tcb.rcv_wnd),), after, ("listen.syn",))


def _syn_sent(tcb: Tcb, seg: Seg) -> Answer:
    acceptable = False
    if seg.flags & ACK:
        if seq_diff(seg.ack, tcb.iss) <= 0 or seq_diff(seg.ack, tcb.snd_nxt) > 0:
            if seg.flags & RST:
                return Answer((), tcb, ("synsent.bad-ack",))
            return Answer((Seg(seg.ack, 0, RST),), tcb, ("synsent.bad-ack",))
        acceptable = seq_diff(seg.ack, tcb.snd_una) > 0
    if seg.flags & RST:
        if acceptable:
            return Answer((), Tcb(), ("synsent.rst",))
        return Answer((), tcb, ("synsent.rst",))
    if seg.flags & SYN:
        rcv_nxt = seq_add(seg.seq, 1)
        if acceptable:
            after = replace(tcb, state=State.ESTABLISHED, irs=seg.seq, rcv_nxt=rcv_nxt, snd_una=seg.ack,
                            snd_wnd=seg.wnd, snd_mss=seg.mss or tcb.snd_mss)  # fmt: skip
            return Answer((Seg(tcb.snd_nxt, rcv_nxt, ACK, tcb.rcv_wnd),), after, ("synsent.synack",))
        after = replace(
            tcb, state=State.SYN_RECEIVED, irs=seg.seq, rcv_nxt=rcv_nxt, snd_wnd=seg.wnd, snd_mss=seg.mss or tcb.snd_mss
        )
        return Answer((Seg(tcb.iss, rcv_nxt, SYN | ACK, tcb.rcv_wnd),), after, ("synsent.syn",))
    return Answer((), tcb, ("synsent.other",))


def acceptable(tcb: Tcb, seg: Seg) -> bool:
    """RFC 9293 section 3.10.7.4's four-case acceptability test."""
    in_window = lambda n: 0 <= seq_diff(n, tcb.rcv_nxt) < tcb.rcv_wnd  # noqa: E731
    if seg.length == 0:
        return seg.seq == tcb.rcv_nxt if tcb.rcv_wnd == 0 else in_window(seg.seq)
    if tcb.rcv_wnd == 0:
        return False
    return in_window(seg.seq) or in_window(seq_add(seg.seq, seg.length - 1))


def _ack_of(tcb: Tcb) -> Seg:
    return Seg(tcb.snd_nxt, tcb.rcv_nxt, ACK, tcb.rcv_wnd)


def _closed_after_reset(tcb: Tcb) -> Tcb:
    """A connection reset in SYN-RECEIVED from a passive OPEN returns to LISTEN; otherwise it is gone."""
    if tcb.state == State.SYN_RECEIVED and tcb.passive:
        return replace(Tcb(), state=State.LISTEN, passive=True)
    return Tcb()


def _synchronized(tcb: Tcb, seg: Seg) -> list[Answer]:
    if tcb.state == State.SYN_RECEIVED and seg.flags & SYN and seg.flags & ACK and seg.seq == tcb.irs:
        # The peer's SYN-ACK crossing ours (a simultaneous open): its SYN lies just below RCV.NXT. Read literally,
        # the acceptability test rejects it (an ACK, then wait for the peer's); RFC 9293 Figure 7 and RFC 793
        # Figure 8 show the SYN trimmed off and the ACK completing the handshake. The RFC allows both.
        trimmed = Seg(tcb.rcv_nxt, seg.ack, seg.flags & ~SYN, seg.wnd, seg.data, None)
        completed = [replace(a, rules=("synrcvd.synack-trimmed", *a.rules)) for a in _synchronized(tcb, trimmed)]
        return [Answer((_ack_of(tcb),), tcb, ("seq.unacceptable",)), *completed]
    # First: sequence acceptability.
    if not acceptable(tcb, seg):
        if seg.flags & RST:
            return [Answer((), tcb, ("seq.unacceptable-rst",))]
        answers = [Answer((_ack_of(tcb),), tcb, ("seq.unacceptable",))]
        if tcb.state == State.SYN_RECEIVED and seg.flags & SYN and not seg.flags & ACK and seg.seq == tcb.irs:
            again = Seg(tcb.iss, tcb.rcv_nxt, SYN | ACK, tcb.rcv_wnd)
            answers.append(Answer((again,), tcb, ("synrcvd.syn-duplicate",)))
        above = seq_diff(seg.seq, tcb.rcv_nxt) > 0
        if tcb.state == State.TIME_WAIT and seg.flags & SYN and not seg.flags & ACK and above:
            answers.append(_time_wait_reopen(tcb, seg))  # beyond the window, still above the old incarnation
        return answers
    # Second: RST.
    if seg.flags & RST:
        if tcb.state == State.TIME_WAIT:  # RFC 1337 keeps TIME-WAIT whatever the reset
            kept = Answer((), tcb, ("rst.time-wait-1337",), frozenset({"rfc1337"}))
            if seg.seq == tcb.rcv_nxt:
                return [Answer((), Tcb(), ("rst.exact",), NOT_1337), kept]
            # RFC 5961's challenge ACK keeps TIME-WAIT, which is all the rfc1337 profile asks of a reset there
            return [Answer((_ack_of(tcb),), tcb, ("rst.in-window-challenge",), WITH_5961),
                    Answer((), Tcb(), ("rst.in-window-793",), frozenset({"rfc9293", "rfc793"})), kept]  # fmt: skip
        if seg.seq == tcb.rcv_nxt:
            return [Answer((), _closed_after_reset(tcb), ("rst.exact",))]
        return [Answer((_ack_of(tcb),), tcb, ("rst.in-window-challenge",), WITH_5961),
                Answer((), _closed_after_reset(tcb), ("rst.in-window-793",), WITH_793)]  # fmt: skip
    # Fourth: SYN (the third, security, is not modelled).
    if seg.flags & SYN:
        if tcb.state == State.SYN_RECEIVED and tcb.passive:
            return [Answer((), replace(Tcb(), state=State.LISTEN, passive=True), ("synrcvd.syn-passive",))]
        resets = (Seg(tcb.snd_nxt, 0, RST), Seg(tcb.snd_nxt, tcb.rcv_nxt, RST | ACK))
        answers = [Answer((_ack_of(tcb),), tcb, ("syn.challenge",), WITH_5961),
                   *(Answer((r,), Tcb(), ("syn.reset-793",), WITH_793) for r in resets)]  # fmt: skip
        if tcb.state == State.TIME_WAIT and not seg.flags & ACK:
            answers.append(_time_wait_reopen(tcb, seg))
        return answers
    # Fifth: ACK.
    if not seg.flags & ACK:
        return [Answer((), tcb, ("ack.none",))]
    now = _syn_received_ack(tcb, seg) if tcb.state == State.SYN_RECEIVED else _after_ack(tcb, seg)
    if seq_diff(seg.seq, tcb.rcv_nxt) > 0:  # it begins beyond RCV.NXT: it may also be held for later (SHLD-31)
        held = [Answer((), tcb, ("seq.held",)), Answer((_ack_of(tcb),), tcb, ("seq.held",))]
        return _distinct([*now, *(replace(a, conforms=frozenset(c for a2 in now for c in a2.conforms)) for a in held)])
    return now


REOPEN_GAP = 65536  # how far above the old SND.NXT the model puts a reopened incarnation's ISS


def _time_wait_reopen(tcb: Tcb, seg: Seg) -> Answer:
    """A new incarnation from TIME-WAIT (MAY-2): SYN-RECEIVED with an ISS above everything the old one sent."""
    iss = seq_add(tcb.snd_nxt, REOPEN_GAP)
    rcv_nxt = seq_add(seg.seq, 1)
    after = replace(Tcb(), state=State.SYN_RECEIVED, iss=iss, snd_una=iss, snd_nxt=seq_add(iss, 1), irs=seg.seq,
                    rcv_nxt=rcv_nxt, snd_wnd=seg.wnd, snd_mss=seg.mss or tcb.snd_mss)  # fmt: skip
    return Answer((Seg(iss, rcv_nxt, SYN | ACK, tcb.rcv_wnd),), after, ("syn.time-wait-reopen",), WITH_793)


def _syn_received_ack(tcb: Tcb, seg: Seg) -> list[Answer]:
    above_una = seq_diff(seg.ack, tcb.snd_una)
    within_nxt = seq_diff(seg.ack, tcb.snd_nxt) <= 0
    if above_una > 0 and within_nxt:
        established = replace(tcb, state=State.ESTABLISHED, snd_wnd=seg.wnd)
        return _after_ack(established, seg, ("synrcvd.ack",))
    reset = Answer((Seg(seg.ack, 0, RST),), tcb, ("synrcvd.bad-ack",))
    if above_una == 0 and within_nxt:  # SEG.ACK = SND.UNA: RFC 793's page 72 accepted it
        established = replace(tcb, state=State.ESTABLISHED, snd_wnd=seg.wnd)
        loose = _after_ack(established, seg, ("synrcvd.ack-793",))
        return [reset, *(replace(a, conforms=frozenset({"rfc793"})) for a in loose)]
    return [reset]


FIN_RECEIVED = frozenset({State.CLOSE_WAIT, State.CLOSING, State.LAST_ACK, State.TIME_WAIT})


def _after_ack(tcb: Tcb, seg: Seg, rules: tuple[str, ...] = ()) -> list[Answer]:
    """ACK processing in the synchronized states, then text and FIN."""
    if seq_diff(seg.ack, tcb.snd_nxt) > 0:
        answers = [Answer((_ack_of(tcb),), tcb, (*rules, "ack.future"))]
        if tcb.state in (State.LAST_ACK, State.TIME_WAIT):
            answers.append(Answer((), tcb, (*rules, "ack.future-closing"), WITH_793))
        return answers
    if seq_diff(seg.ack, tcb.snd_una) > 0:
        tcb = replace(tcb, snd_una=seg.ack, snd_wnd=seg.wnd)
        rules = (*rules, "ack.advance")
    else:
        if seg.ack == tcb.snd_una:
            tcb = replace(tcb, snd_wnd=seg.wnd)
        rules = (*rules, "ack.duplicate")
        if seq_diff(seg.ack, tcb.snd_una) < 0 and not seg.data and not seg.flags & FIN:
            return [Answer((), tcb, rules), Answer((_ack_of(tcb),), tcb, (*rules, "ack.old-answered"))]
    fin_acked = tcb.fin_sent and tcb.snd_una == tcb.snd_nxt
    if fin_acked and tcb.state in (State.FIN_WAIT_1, State.CLOSING, State.LAST_ACK):
        nxt = {State.FIN_WAIT_1: State.FIN_WAIT_2, State.CLOSING: State.TIME_WAIT, State.LAST_ACK: State.CLOSED}
        tcb = replace(tcb, state=nxt[tcb.state]) if tcb.state != State.LAST_ACK else Tcb()
        rules = (*rules, "ack.fin-acked")
        if tcb.state == State.CLOSED:
            return [Answer((), tcb, rules)]
    literal = _text_and_fin(tcb, seg, rules)
    end = seq_add(seg.seq, seg.data + (1 if seg.flags & FIN else 0))
    if tcb.state in FIN_RECEIVED and (seg.data or seg.flags & FIN) and seq_diff(end, tcb.rcv_nxt) > 0:
        answers = [literal]
        if tcb.state == State.TIME_WAIT and seg.flags & FIN and seq_add(seg.seq, seg.data) == tcb.rcv_nxt:
            advanced = replace(tcb, rcv_nxt=seq_add(tcb.rcv_nxt, 1))  # the eighth step read literally
            answers.append(Answer((_ack_of(advanced),), advanced, (*rules, "text.after-fin")))
        after_fin = (*rules, "text.after-fin")
        answers += [Answer((_ack_of(tcb),), tcb, after_fin), Answer((), tcb, after_fin)]
        return _distinct(answers)
    if "text.gap" in literal.rules:  # the immediate ACK of out-of-order data is MAY-13
        return [literal, Answer((), literal.tcb, literal.rules)]
    if seg.flags & FIN and not seg.data and seq_diff(seg.seq, tcb.rcv_nxt) > 0:  # an out-of-order FIN
        return [Answer((), tcb, (*rules, "fin.gap")), Answer((_ack_of(tcb),), tcb, (*rules, "fin.gap"))]
    return [literal]


def _distinct(answers: list[Answer]) -> list[Answer]:
    """The answers without repeats (the same segments and the same TCB), first kept."""
    seen: set[tuple[tuple[Seg, ...], Tcb]] = set()
    out = []
    for answer in answers:
        if (answer.sent, answer.tcb) not in seen:
            seen.add((answer.sent, answer.tcb))
            out.append(answer)
    return out


def _text_and_fin(tcb: Tcb, seg: Seg, rules: tuple[str, ...]) -> Answer:
    """The sixth to eighth steps (URG is not modelled): text, then FIN."""
    sent: list[Seg] = []
    if tcb.state == State.TIME_WAIT and seg.flags & FIN:  # a retransmitted FIN: acknowledge it again
        return Answer((_ack_of(tcb),), tcb, (*rules, "fin.accept"))
    # Seventh: text.
    if seg.data:
        if tcb.state in (State.ESTABLISHED, State.FIN_WAIT_1, State.FIN_WAIT_2):
            if seg.seq == tcb.rcv_nxt:
                tcb = replace(tcb, rcv_nxt=seq_add(tcb.rcv_nxt, seg.data))
                rules = (*rules, "text.accept")
            elif seq_diff(seg.seq, tcb.rcv_nxt) < 0:  # starts before RCV.NXT: take the new part
                new_end = seq_add(seg.seq, seg.data)
                if seq_diff(new_end, tcb.rcv_nxt) > 0:
                    tcb = replace(tcb, rcv_nxt=new_end)
                rules = (*rules, "text.accept")
            else:
                sent.append(_ack_of(tcb))
                return Answer(tuple(sent), tcb, (*rules, "text.gap"))
            sent.append(_ack_of(tcb))
        else:
            rules = (*rules, "text.ignore")
    # Eighth: FIN.
    if seg.flags & FIN and seq_add(seg.seq, seg.data) == tcb.rcv_nxt:
        tcb = replace(tcb, rcv_nxt=seq_add(tcb.rcv_nxt, 1))
        fin_acked = tcb.fin_sent and tcb.snd_una == tcb.snd_nxt
        nxt = {
            State.SYN_RECEIVED: State.CLOSE_WAIT, State.ESTABLISHED: State.CLOSE_WAIT,
            State.FIN_WAIT_1: State.TIME_WAIT if fin_acked else State.CLOSING, State.FIN_WAIT_2: State.TIME_WAIT,
        }  # fmt: skip
        tcb = replace(tcb, state=nxt.get(tcb.state, tcb.state))
        return Answer((_ack_of(tcb),), tcb, (*rules, "fin.accept"))
    return Answer(tuple(sent), tcb, rules)
