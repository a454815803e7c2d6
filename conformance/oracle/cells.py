"""The state x event matrix: test purposes generated from the reference model, one per distinct cell.

Rules of this module:
- A cell is (state, segment class, sequence class, acknowledgment class). The eleven states are reached by a
  prologue the model plans (a shortest path from CLOSED through the user calls and the segments a well-behaved
  peer sends); the segment is then built from the class, and the model's answers to it under every profile are
  the cell's expected outcome.
- Sequence classes place SEG.SEQ against the target's receive window (RCV.NXT - 1, RCV.NXT, the middle,
  RCV.NXT + RCV.WND - 1, RCV.NXT + RCV.WND); acknowledgment classes place SEG.ACK against what the target sent
  (SND.UNA - 1, SND.UNA when something is unacknowledged, SND.NXT, SND.NXT + 1). Where the state has no window or
  nothing was sent (CLOSED, LISTEN, SYN-SENT) the classes that cannot differ collapse into one.
- Cells of one state, one segment class and one sequence class whose outcomes coincide (the same segments, the
  same state after, under the same profiles) are merged into one test purpose, and the middle of the window joins
  the first edge with its outcome; the four window edges never merge with each other, since off-by-one errors
  live there. The representative is the first cell in the order the classes are listed, and the purpose lists
  every cell it covers.
- Answers are written in the case format's terms: ``rn``, ``sn`` and ``w`` are bound just before the cell's
  segment from the tester's view (``l_nxt``, ``t_nxt``, ``t_win``), ``cs`` and ``ca`` are the cell segment's SEQ
  and ACK, and every number the model produced is written relative to the one it derives from (a reset's SEQ
  taken from SEG.ACK is ``ca``, an ACK taken from SEG.SEQ + SEG.LEN is ``cs + n``). The model is driven with
  bases a billion apart, so the nearest base is always the right one.
- Where the socket can show it (the synchronized states but TIME-WAIT), a cell also checks the state after.
  Cells whose handling the RFCs leave open (a SYN-FIN, a new SYN in SYN-RECEIVED) are INFO and also record any
  reset, ACK or SYN-ACK. A silent answer is watched 200 ms and lets the target's retransmissions pass.
- Pure: plain data out (case documents as dicts ready for YAML); imports only the model and conformance/tcp.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace

from ..tcp import ACK, FIN, RST, SYN, format_flags, seq_add, seq_diff
from .machine import ALL, PROFILES, RULES, SYNCHRONIZED, Answer, Seg, State, Tcb, dispatch

TARGET_ISS = 1_000_000_000  # the model's ISS for the target (both opens)
PEER_ISN = 3_000_000_000  # the tester's ISN, as the model sees it
LISTEN_ACK = 100_000  # the acknowledgment a segment to a closed port or a listener carries: l_isn + this
MSS_OPTION = [{"mss": 1460}]
SILENCE = {"for": "200ms", "ignore_retransmissions": True}  # a silent answer: watched 200 ms, timers may resend

STATE_CODES = {
    State.CLOSED: "CLOSED", State.LISTEN: "LISTEN", State.SYN_SENT: "SYNSENT", State.SYN_RECEIVED: "SYNRCVD",
    State.ESTABLISHED: "EST", State.FIN_WAIT_1: "FW1", State.FIN_WAIT_2: "FW2", State.CLOSE_WAIT: "CW",
    State.CLOSING: "CLOSING", State.LAST_ACK: "LASTACK", State.TIME_WAIT: "TW",
}  # fmt: skip
STATE_TAGS = {
    State.CLOSED: "closed", State.LISTEN: "listen", State.SYN_SENT: "syn_sent", State.SYN_RECEIVED: "syn_received",
    State.ESTABLISHED: "synchronized", State.FIN_WAIT_1: "teardown", State.FIN_WAIT_2: "teardown",
    State.CLOSE_WAIT: "teardown", State.CLOSING: "teardown", State.LAST_ACK: "teardown", State.TIME_WAIT: "timewait",
}  # fmt: skip
# States the upper tester can read from the cell's socket (the accepted one); TIME-WAIT is not among them, since
# a stack may move the connection out of the socket the application holds.
OBSERVABLE = frozenset(SYNCHRONIZED - {State.TIME_WAIT})
INFO_RULES = frozenset({"synrcvd.syn-passive"})  # outcomes the catalogue records as INFO (HS-SYNRCVD-NEWSYN-01)
INFO_SEGMENTS = frozenset({"SYNFIN"})  # segment classes whose handling the RFCs leave open (HDR-FLAGS-SYN-FIN-01)
RECORDED = (  # what an INFO cell records besides the model's answers: any reply of these kinds
    ("recorded-reset", "a reset (recorded)", {"flags": "R", "len": 0}),
    ("recorded-reset-ack", "a reset with ACK (recorded)", {"flags": "RA", "len": 0}),
    ("recorded-ack", "an ACK (recorded)", {"flags": "A", "len": 0}),
    ("recorded-syn-ack", "a SYN-ACK (recorded)", {"flags": "SA", "len": 0}),
)


@dataclass(frozen=True)
class SegmentClass:
    name: str  # as in ids: SYN, RSTACK, ...
    title: str
    flags: str  # as in the case format
    data: int = 0

    @property
    def bits(self) -> int:
        """The flags the model looks at (URG and PSH are not modelled: URG data is processed as data)."""
        value = 0
        for letter, bit in (("S", SYN), ("A", ACK), ("R", RST), ("F", FIN)):
            if letter in self.flags:
                value |= bit
        return value


SEGMENT_CLASSES = (
    SegmentClass("SYN", "a SYN", "S"),
    SegmentClass("SYNACK", "a SYN-ACK", "SA"),
    SegmentClass("ACK", "an ACK", "A"),
    SegmentClass("RST", "a RST", "R"),
    SegmentClass("RSTACK", "a RST-ACK", "RA"),
    SegmentClass("FINACK", "a FIN-ACK", "FA"),
    SegmentClass("DATA", "one byte of data with ACK", "PA", 1),
    SegmentClass("DATAFIN", "one byte of data with FIN and ACK", "FPA", 1),
    SegmentClass("NULL", "a segment without flags", ""),
    SegmentClass("SYNFIN", "a SYN-FIN", "SF"),
    SegmentClass("URG", "one urgent byte with URG and ACK", "UA", 1),
)


@dataclass(frozen=True)
class Place:
    """A sequence or acknowledgment class: its name and where it puts the number."""

    name: str
    title: str
    expr: str  # over rn, sn, w
    offset: int  # the same, for the model: from its base (RCV.NXT or SND.NXT), w standing for RCV.WND
    window_part: int = 0  # 0, or the fraction of w: 2 for w // 2, 1 for w

    def value(self, base: int, window: int) -> int:
        extra = window // 2 if self.window_part == 2 else window if self.window_part == 1 else 0
        return seq_add(base, extra + self.offset)


SEQ_WINDOW = (
    Place("LEFT", "at RCV.NXT (the left edge)", "rn", 0),
    Place("RIGHT", "at RCV.NXT + RCV.WND - 1 (the right edge)", "rn + w - 1", -1, 1),
    Place("BELOW", "at RCV.NXT - 1 (just below the window)", "rn - 1", -1),
    Place("BEYOND", "at RCV.NXT + RCV.WND (just beyond the window)", "rn + w", 0, 1),
    Place("INSIDE", "in the middle of the window", "rn + w // 2", 0, 2),
)
SEQ_NONE = (Place("ANY", "at the tester's ISN", "rn", 0),)
ACK_SENT = (
    Place("NXT", "SND.NXT (all that was sent)", "sn", 0),
    Place("OLD", "SND.UNA - 1 (already acknowledged)", "", -1),
    Place("UNA", "SND.UNA (nothing new)", "", 0),
    Place("FUTURE", "SND.NXT + 1 (not yet sent)", "sn + 1", 1),
)
ACK_NONE = (Place("ANY", "an arbitrary number", f"rn + {LISTEN_ACK}", LISTEN_ACK),)
NO_ACK = Place("", "", "", 0)


@dataclass(frozen=True)
class Cell:
    state: State
    segment: SegmentClass
    seq: Place
    ack: Place  # NO_ACK for segments without ACK

    @property
    def id(self) -> str:
        parts = ["CELL", STATE_CODES[self.state], self.segment.name, self.seq.name, self.ack.name]
        return "-".join(p for p in parts if p)

    @property
    def coordinates(self) -> dict[str, str]:
        return {"state": self.state.value, "segment": self.segment.name, "seq": self.seq.name,
                "ack": self.ack.name or "-"}  # fmt: skip


# ---- the prologue the model plans ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Move:
    """One event of a prologue: a user call or a tester's segment, with the answer the model gives."""

    kind: str  # open_passive, open_active, close, segment
    seg: Seg | None
    answer: Answer


@dataclass(frozen=True)
class Situation:
    """Where a prologue leaves the connection: the model's TCB and the tester's next sequence number."""

    tcb: Tcb
    peer_nxt: int
    moves: tuple[Move, ...]
    accepted: bool  # a socket of the connection is in the application's hands


def _tester_moves(tcb: Tcb, peer_nxt: int) -> list[tuple[str, Seg | None]]:
    """What a well-behaved peer and application do next: the alphabet the planner searches."""
    if tcb.state == State.CLOSED:
        return [("open_passive", None), ("open_active", None)]
    if tcb.state == State.LISTEN:
        return [("segment", Seg(peer_nxt, 0, SYN, mss=1460))]
    if tcb.state == State.SYN_RECEIVED:
        return [("segment", Seg(peer_nxt, tcb.snd_nxt, ACK))]
    if tcb.state == State.SYN_SENT:
        return []
    moves: list[tuple[str, Seg | None]] = []
    if tcb.state in (State.ESTABLISHED, State.CLOSE_WAIT):
        moves.append(("close", None))
    if tcb.snd_una != tcb.snd_nxt:
        moves.append(("segment", Seg(peer_nxt, tcb.snd_nxt, ACK)))
        moves.append(("segment", Seg(peer_nxt, tcb.snd_una, FIN | ACK)))  # a FIN that crosses ours
    elif tcb.state in (State.ESTABLISHED, State.FIN_WAIT_2):
        moves.append(("segment", Seg(peer_nxt, tcb.snd_nxt, FIN | ACK)))
    return moves


def plan() -> dict[State, Situation]:
    """A shortest prologue to every state (breadth first; the first path found wins, so passive opens first)."""
    start = Situation(Tcb(), PEER_ISN, (), False)
    found = {State.CLOSED: start}
    queue = deque([start])
    while queue:
        here = queue.popleft()
        for kind, seg in _tester_moves(here.tcb, here.peer_nxt):
            arg: Seg | int | None = TARGET_ISS if kind == "open_active" else seg
            answers = [a for a in dispatch(here.tcb, kind, arg, TARGET_ISS) if a.conforms == ALL]
            if len(answers) != 1:
                continue  # a prologue takes only steps every profile agrees on
            answer = answers[0]
            peer_nxt = seq_add(here.peer_nxt, seg.length) if seg is not None else here.peer_nxt
            accepted = here.accepted or (answer.tcb.passive and answer.tcb.state in SYNCHRONIZED)
            there = Situation(answer.tcb, peer_nxt, (*here.moves, Move(kind, seg, answer)), accepted)
            if answer.tcb.state not in found:
                found[answer.tcb.state] = there
                queue.append(there)
    return found


def _prologue_value(value: int) -> str:
    """A number of the prologue, as an expression over l_isn and t_isn."""
    for name, base in (("t_isn", TARGET_ISS), ("l_isn", PEER_ISN)):
        offset = seq_diff(value, base)
        if abs(offset) < 1 << 20:
            return _plus(name, offset)
    raise ValueError(f"{value} derives from no base")


def _plus(name: str, offset: int) -> str:
    return name if offset == 0 else f"{name} + {offset}" if offset > 0 else f"{name} - {-offset}"


def prologue_steps(situation: Situation) -> list[dict]:
    """The case steps that bring the target to the situation."""
    steps: list[dict] = []
    accepted = False
    for move in situation.moves:
        if move.kind == "open_passive":
            steps.append({"ut": "listen"})
        elif move.kind == "open_active":
            steps.append({"ut": {"op": "connect", "nowait": True, "as": "open"}})
        elif move.kind == "close":
            steps.append({"ut": {"op": "shutdown", "how": "wr"}, "note": "the application closes (RFC CLOSE)"})
        else:
            assert move.seg is not None
            steps.append({"send": _send_spec(move.seg)})
        for sent in move.answer.sent:
            steps.append({"expect": _expect_spec(sent)})
        if not accepted and move.answer.tcb.passive and move.answer.tcb.state in SYNCHRONIZED:
            steps.append({"ut": "accept"})
            accepted = True
    return steps


def _send_spec(seg: Seg) -> dict:
    """A tester's segment of the prologue, as a send step."""
    spec: dict = {"flags": format_flags(seg.flags), "seq": _prologue_value(seg.seq)}
    if seg.flags & ACK:
        spec["ack"] = _prologue_value(seg.ack)
    if seg.flags & SYN:
        spec["options"] = MSS_OPTION
    return spec


def _expect_spec(seg: Seg) -> dict:
    """A target's segment of the prologue, as an expect step (its SYN's ISN binds t_isn: nothing to compare)."""
    spec: dict = {"flags": format_flags(seg.flags)}
    if not (seg.flags & SYN and seg.seq == TARGET_ISS):
        spec["seq"] = _prologue_value(seg.seq)
    if seg.flags & ACK:
        spec["ack"] = _prologue_value(seg.ack)
    spec["len"] = seg.data
    return spec


# ---- the cells ----------------------------------------------------------------------------------------------------
def cells_of(state: State, tcb: Tcb) -> list[Cell]:
    """Every cell of a state, in order (representatives first)."""
    windowed = state not in (State.CLOSED, State.LISTEN, State.SYN_SENT)
    seqs = SEQ_WINDOW if windowed else SEQ_NONE
    out = []
    for segment in SEGMENT_CLASSES:
        if not segment.bits & ACK:
            acks: tuple[Place, ...] = (NO_ACK,)
        elif state in (State.CLOSED, State.LISTEN):
            acks = ACK_NONE
        else:
            acks = tuple(a for a in ACK_SENT if a.name != "UNA" or tcb.snd_una != tcb.snd_nxt)
        out += [Cell(state, segment, seq, ack) for seq in seqs for ack in acks]
    return out


def cell_segment(cell: Cell, situation: Situation) -> tuple[Seg, dict]:
    """The cell's segment for the model, and the same as a send step (over rn, sn and w)."""
    tcb = situation.tcb
    rn = tcb.rcv_nxt if cell.state not in (State.CLOSED, State.LISTEN, State.SYN_SENT) else situation.peer_nxt
    seq = cell.seq.value(rn, tcb.rcv_wnd)
    spec: dict = {"flags": cell.segment.flags, "seq": cell.seq.expr}
    ack = 0
    if cell.segment.bits & ACK:
        if cell.ack.name in ("OLD", "UNA"):
            ack = seq_add(tcb.snd_una, cell.ack.offset)
        elif cell.ack is ACK_NONE[0]:
            ack = seq_add(rn, LISTEN_ACK)
        else:
            ack = seq_add(tcb.snd_nxt, cell.ack.offset)
        spec["ack"] = cell.ack.expr or _plus("sn", seq_diff(ack, tcb.snd_nxt))
    if cell.segment.data:
        spec["len"] = cell.segment.data
    if "U" in cell.segment.flags:
        spec["urgent"] = str(cell.segment.data)
    if cell.segment.bits & SYN:
        spec["options"] = MSS_OPTION
    return Seg(seq, ack, cell.segment.bits, data=cell.segment.data, mss=1460), spec


def _cell_value(rn: int, sn: int | None, seg: Seg) -> Callable[..., str]:
    """Write a field of an answer segment (with that segment's flags) over rn, sn, cs and ca (the cell segment's
    SEQ and ACK): a reset's SEQ taken from SEG.ACK is ``ca``, the ACK of a reset or SYN-ACK taken from SEG.SEQ +
    SEG.LEN is ``cs + n``, anything else is relative to the nearest of rn and sn."""

    def write(value: int, flags: int, field: str = "seq") -> str:
        if value == 0:
            return "0"  # a reset's SEQ for a segment without ACK
        if field == "seq" and flags & RST and seg.flags & ACK and value == seg.ack:
            return "ca"
        if field == "ack" and flags & (RST | SYN) and 0 <= seq_diff(value, seg.seq) <= seg.length:
            return _plus("cs", seq_diff(value, seg.seq))
        bases = [("rn", rn)] + ([("sn", sn)] if sn is not None else [])
        name, offset = min(((n, seq_diff(value, b)) for n, b in bases), key=lambda p: abs(p[1]))
        if abs(offset) >= 1 << 20:
            raise ValueError(f"{value} derives from no base")
        return _plus(name, offset)

    return write


@dataclass(frozen=True)
class Outcome:
    """One distinct way to answer: what is sent (as expect specs), the state after, the profiles, the rules."""

    sent: tuple[tuple[tuple[str, object], ...], ...]
    state: State
    conforms: frozenset[str]
    rules: tuple[str, ...]


def outcomes(cell: Cell, situation: Situation) -> list[Outcome]:
    """The model's answers to the cell, written in the case's terms; answers that send the same segments and
    leave the same (observable) state are one outcome, conforming under the union of their profiles."""
    seg, _ = cell_segment(cell, situation)
    tcb = situation.tcb
    synchronized = cell.state not in (State.CLOSED, State.LISTEN)
    rn = tcb.rcv_nxt if cell.state not in (State.CLOSED, State.LISTEN, State.SYN_SENT) else situation.peer_nxt
    write = _cell_value(rn, tcb.snd_nxt if synchronized else None, seg)
    merged: dict[tuple, Outcome] = {}
    for answer in dispatch(tcb, "segment", seg, TARGET_ISS):
        sent = tuple(tuple(_answer_spec(s, write, cell).items()) for s in answer.sent)
        state = answer.tcb.state
        seen = _observable(cell, state)
        key = (sent, seen)
        if key in merged:
            old = merged[key]
            rules = old.rules + tuple(r for r in answer.rules if r not in old.rules)
            merged[key] = replace(old, conforms=old.conforms | answer.conforms, rules=rules)
        else:
            merged[key] = Outcome(sent, state, answer.conforms, answer.rules)
    return list(merged.values())


def _answer_spec(seg: Seg, write: Callable[..., str], cell: Cell) -> dict:
    spec: dict = {"flags": format_flags(seg.flags)}
    if seg.flags & SYN and cell.state == State.TIME_WAIT:  # a new incarnation: its ISS above the old SND.NXT
        spec["seq"] = "sn..sn + 2147483647"  # above SND.NXT - 1, the old incarnation's FIN
    elif not (seg.flags & SYN and seg.seq == TARGET_ISS and cell.state == State.LISTEN):  # a listener's new ISN
        spec["seq"] = write(seg.seq, seg.flags)
    if seg.flags & ACK:
        spec["ack"] = write(seg.ack, seg.flags, "ack")
    spec["len"] = seg.data
    return spec


def _observable(cell: Cell, state: State) -> State | None:
    """The state the cell checks after the answer, or None where the socket cannot show it."""
    if cell.state not in OBSERVABLE:
        return None
    if state in OBSERVABLE or state == State.CLOSED:
        return state
    return None  # TIME-WAIT


def signature(found: list[Outcome]) -> tuple:
    return tuple(sorted((o.sent, o.state.value, tuple(sorted(o.conforms))) for o in found))


# ---- cells as case documents --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Purpose:
    """A distinct cell: its representative, the cells it covers, its outcomes and the case document."""

    cell: Cell
    covers: tuple[Cell, ...]
    found: tuple[Outcome, ...]
    document: dict


def purposes() -> list[Purpose]:
    """Every distinct cell of every state, in state order."""
    situations = plan()
    out: list[Purpose] = []
    for state in State:
        situation = situations[state]
        groups: dict[tuple, list[Cell]] = {}
        found_of: dict[tuple, list[Outcome]] = {}
        for cell in cells_of(state, situation.tcb):
            found = outcomes(cell, situation)
            key = _merge_key(cell, signature(found), groups)
            groups.setdefault(key, []).append(cell)
            found_of.setdefault(key, found)
        for key, cells in groups.items():
            out.append(
                Purpose(cells[0], tuple(cells), tuple(found_of[key]), _document(cells, found_of[key], situation))
            )
    return out


def _merge_key(cell: Cell, outcome: tuple, groups: dict[tuple, list[Cell]]) -> tuple:
    """Cells merge within a segment class when their outcomes coincide, but the four window edges stay apart
    (RCV.NXT - 1, RCV.NXT, RCV.NXT + RCV.WND - 1, RCV.NXT + RCV.WND: off-by-one errors live there); the middle of
    the window joins the first edge with its outcome."""
    if cell.seq.name == "INSIDE":
        for key in groups:
            if key[0] == cell.segment.name and key[2] == outcome:
                return key
    return (cell.segment.name, cell.seq.name, outcome)


def raw_cell_count() -> int:
    situations = plan()
    return sum(len(cells_of(state, situations[state].tcb)) for state in State)


def cells_by_state() -> dict[str, tuple[int, int]]:
    """Per state: how many cells, and how many distinct ones (test purposes) after merging."""
    situations = plan()
    kept: dict[State, int] = dict.fromkeys(State, 0)
    for purpose in purposes():
        kept[purpose.cell.state] += 1
    return {s.value: (len(cells_of(s, situations[s].tcb)), kept[s]) for s in State}


def _document(cells: list[Cell], found: list[Outcome], situation: Situation) -> dict:
    cell = cells[0]
    rules = sorted({r for o in found for r in o.rules})
    refs = sorted({ref for r in rules for ref in RULES[r].refs}, key=_ref_order)
    level = "INFO" if is_info(cell, found) else "MUST"
    if level == "INFO":
        refs = [r for r in refs if not _numbered(r)] or ["rfc9293:3.10.7.4"]
    _, send = cell_segment(cell, situation)
    title = f"{cell.state.value}: {cell.segment.title} with SEQ {cell.seq.title}"
    if cell.ack.name:
        title += f" and ACK {cell.ack.title}"
    requires = ["ut.listen" if situation.moves and situation.moves[0].kind == "open_passive" else "ut.connect"]
    if situation.accepted:
        requires.append("ut.accept")
    if any(m.kind == "close" for m in situation.moves):
        requires.append("ut.shutdown")
    checks_state = cell.state in OBSERVABLE
    if checks_state:
        requires.append("ut.state")
    if cell.state == State.CLOSED:
        requires = []
    steps = prologue_steps(situation)
    bind = {"rn": "l_nxt"}
    if cell.state not in (State.CLOSED, State.LISTEN):
        bind["sn"] = "t_nxt"
    if cell.state not in (State.CLOSED, State.LISTEN, State.SYN_SENT):
        bind["w"] = "t_win"
    steps.append({"bind": bind, "note": "rn, sn, w: the target's RCV.NXT, SND.NXT and RCV.WND as the tester sees them"})
    names = {"cs": send["seq"], **({"ca": send["ack"]} if "ack" in send else {})}
    steps.append({"bind": names, "note": "cs, ca: the cell segment's SEQ and ACK"})
    send["seq"] = "cs"
    if "ack" in send:
        send["ack"] = "ca"
    steps.append({"send": send, "note": f"the cell's segment: {_seg_words(cell)}"})
    steps += _answer_steps(cell, found)
    covers = [c.id for c in cells]
    return {
        "id": cell.id,
        "title": title,
        "refs": refs,
        "requirement": _requirement(cell, found, rules),
        "level": level,
        "requires": requires,
        "tags": sorted({"cell", STATE_TAGS[cell.state]}),
        "cell": {**cell.coordinates, "covers": covers},
        "steps": steps,
    }


def is_info(cell: Cell, found: list[Outcome] | tuple[Outcome, ...]) -> bool:
    """A cell whose handling the RFCs leave open: recorded, like the catalogue's INFO cases."""
    return cell.segment.name in INFO_SEGMENTS or any(r in INFO_RULES for o in found for r in o.rules)


def _ref_order(ref: str) -> tuple[str, str]:
    doc, _, place = ref.partition(":")
    return (doc, place)


def _numbered(ref: str) -> bool:
    place = ref.partition(":")[2]
    return place.split("-")[0] in ("MUST", "SHLD", "MAY", "REC")


def _seg_words(cell: Cell) -> str:
    words = f"{cell.segment.title}, SEQ {cell.seq.title}"
    return words + (f", ACK {cell.ack.title}" if cell.ack.name else "")


def _requirement(cell: Cell, found: list[Outcome], rules: list[str]) -> str:
    """The expected outcome in words: the model's rules, and which profile allows which answer."""
    parts = [f"Generated from the reference model (conformance/oracle/cells.py) for the cell {cell.id}."]
    for outcome in found:
        said = "; ".join(RULES[r].text for r in outcome.rules)
        what = _sent_words(outcome) + f" and is left in {outcome.state.value}"
        only = "" if outcome.conforms == ALL else f" (conforms under {', '.join(sorted(outcome.conforms))})"
        parts.append(f"{what[0].upper()}{what[1:]}{only}: {said}.")
    return " ".join(parts)


def _sent_words(outcome: Outcome) -> str:
    if not outcome.sent:
        return "the target sends nothing"
    return "the target sends " + " then ".join(dict(s)["flags"] or "no flags" for s in outcome.sent)


def _answer_steps(cell: Cell, found: list[Outcome]) -> list[dict]:
    info = is_info(cell, found)
    if len(found) == 1 and not info:
        (outcome,) = found
        if outcome.sent:
            steps = [{"expect": dict(s)} for s in outcome.sent]
        else:
            steps = [{"expect_none": {**SILENCE, "reason": _reason(outcome)}}]
        return steps + _state_check(cell, outcome)
    alternatives = []
    silent = [o for o in found if not o.sent]
    if len(silent) > 1:  # one silence alternative: the state after tells them apart, if the socket shows it
        found = [o for o in found if o.sent] + [_silences(cell, silent)]
    for outcome in sorted(found, key=lambda o: (bool(not o.sent), o.rules)):
        alt: dict = {"label": _label(outcome), "behaviour": _behaviour(outcome)}
        if outcome.sent:
            alt["expect"] = dict(outcome.sent[0])
        else:
            alt["none"] = dict(SILENCE)
        if outcome.conforms != ALL:
            alt["conforms"] = [p for p in PROFILES if p in outcome.conforms]
        then = [{"expect": dict(s)} for s in outcome.sent[1:]] + _state_check(cell, outcome)
        if then:
            alt["then"] = then
        alternatives.append(alt)
    labels: dict[str, int] = {}
    for alt in alternatives:  # two answers of one rule that send the same flags: number them
        labels[alt["label"]] = labels.get(alt["label"], 0) + 1
        if labels[alt["label"]] > 1:
            alt["label"] = f"{alt['label']}-{labels[alt['label']]}"
    if info:
        silent = [a for a in alternatives if "none" in a]
        expects = [a for a in alternatives if "none" not in a]
        expects += [{"label": label, "behaviour": words, "expect": spec} for label, words, spec in RECORDED]
        if not silent:
            silent = [{"label": "recorded-silence", "behaviour": "no answer (recorded)", "none": dict(SILENCE)}]
        alternatives = expects + silent
    return [{"expect_one_of": alternatives}]


@dataclass(frozen=True)
class Silences(Outcome):
    """Several silent outcomes as one: any of their states after, under the union of their profiles."""

    states: tuple[State, ...] = ()


def _silences(cell: Cell, silent: list[Outcome]) -> Outcome:
    rules = tuple(dict.fromkeys(r for o in silent for r in o.rules))
    conforms = frozenset(p for o in silent for p in o.conforms)
    states = tuple(dict.fromkeys(o.state for o in silent))
    return Silences((), states[0], conforms, rules, states)


def _label(outcome: Outcome) -> str:
    sent = "-".join((dict(s)["flags"] or "null").lower() for s in outcome.sent) or "silent"
    return "--".join([*(r.replace(".", "-") for r in outcome.rules), sent])


def _behaviour(outcome: Outcome) -> str:
    states = outcome.states if isinstance(outcome, Silences) else (outcome.state,)
    after = " or ".join(state.value for state in states)
    return f"{_sent_words(outcome)}; {after} after ({', '.join(outcome.rules)})"


def _reason(outcome: Outcome) -> str:
    return f"the model sends nothing here ({', '.join(outcome.rules)})"


def _state_check(cell: Cell, outcome: Outcome) -> list[dict]:
    states = outcome.states if isinstance(outcome, Silences) else (outcome.state,)
    seen = [_observable(cell, state) for state in states]
    if None in seen:
        return []
    names = list(dict.fromkeys(state.value for state in seen if state is not None))
    return [{"ut": {"op": "state", "state": names[0] if len(names) == 1 else names}}]
