"""The state diagram of the reference model, drawn from the model itself (Graphviz DOT text).

Rules of this module: the diagram is found by driving the model, never written by hand: from CLOSED, every state
reached is given every user call (OPEN passive and active, CLOSE, ABORT) and the segments a well-behaved peer
would send in it (its SYN, a SYN-ACK of ours, an ACK of all we sent, a FIN, an exact RST), and every answer the
model allows becomes an edge labelled "event / what is sent", with the profiles it is limited to. Timers are not
in the model, so neither are their edges (TIME-WAIT's 2MSL time-out). Pure: it returns text.

    .venv/bin/python -m conformance.oracle.diagram > docs/state-diagram.dot
    dot -Tsvg docs/state-diagram.dot -o docs/state-diagram.svg
"""

from __future__ import annotations

from collections import defaultdict, deque

from ..tcp import ACK, FIN, RST, SYN, format_flags
from .machine import PROFILES, Answer, Seg, State, Tcb, dispatch

ISS, PEER_ISS = 1000, 5000
USER_EVENTS = ("open_passive", "open_active", "close", "abort")


def _peer_segments(tcb: Tcb) -> list[tuple[str, Seg]]:
    if tcb.state == State.CLOSED:
        return []
    if tcb.state in (State.LISTEN, State.SYN_SENT):
        out = [("rcv SYN", Seg(PEER_ISS, 0, SYN))]
        if tcb.state == State.SYN_SENT:
            out.append(("rcv SYN,ACK", Seg(PEER_ISS, tcb.snd_nxt, SYN | ACK)))
            out.append(("rcv RST,ACK", Seg(0, tcb.snd_nxt, RST | ACK)))
        return out
    crossing = []
    if tcb.snd_una != tcb.snd_nxt:  # a FIN that crossed ours: it does not acknowledge what we sent last
        crossing.append(("rcv FIN (ours not yet ACKed)", Seg(tcb.rcv_nxt, tcb.snd_una, FIN | ACK)))
    return [
        ("rcv ACK", Seg(tcb.rcv_nxt, tcb.snd_nxt, ACK)),
        ("rcv FIN", Seg(tcb.rcv_nxt, tcb.snd_nxt, FIN | ACK)),
        *crossing,
        ("rcv RST", Seg(tcb.rcv_nxt, 0, RST)),
        ("rcv SYN", Seg(tcb.rcv_nxt, 0, SYN)),
    ]


def _label(event: str, answer: Answer) -> str:
    sent = " + ".join(format_flags(s.flags) for s in answer.sent) or "-"
    only = "" if answer.conforms == frozenset(PROFILES) else f" [{', '.join(sorted(answer.conforms))}]"
    return f"{event} / {sent}{only}"


def edges() -> dict[tuple[str, str], list[str]]:
    """(from state, to state) -> the labels of every way the model goes there."""
    found: dict[tuple[str, str], list[str]] = defaultdict(list)
    start = Tcb()
    queue: deque[Tcb] = deque([start])
    reached = {start.state}
    while queue:
        tcb = queue.popleft()
        events: list[tuple[str, str, Seg | int | None]] = []
        for user in USER_EVENTS:
            if user.startswith("open") and tcb.state != State.CLOSED:
                continue
            if not user.startswith("open") and tcb.state == State.CLOSED:
                continue
            events.append((user.replace("_", " ").upper(), user, ISS if user == "open_active" else None))
        events += [(label, "segment", seg) for label, seg in _peer_segments(tcb)]
        for label, event, arg in events:
            for answer in dispatch(tcb, event, arg, ISS):
                after = answer.tcb
                if after.state == tcb.state and not answer.sent:
                    continue  # nothing happens: no edge
                text = _label(label, answer)
                key = (tcb.state.value, after.state.value)
                if text not in found[key]:
                    found[key].append(text)
                if after.state not in reached:
                    reached.add(after.state)
                    queue.append(after)
    return found


def dot_source() -> str:
    """The diagram as Graphviz DOT text."""
    lines = [
        "digraph tcp {",
        '  graph [rankdir=TB, fontname="Helvetica", label="TCP connection states, drawn from the reference model '
        '(conformance/oracle); [profiles] marks an answer only some profiles allow", labelloc=t, fontsize=12];',
        '  node [shape=box, style=rounded, fontname="Helvetica", fontsize=11];',
        '  edge [fontname="Helvetica", fontsize=8];',
    ]
    for (src, dst), labels in sorted(edges().items()):
        label = "\\n".join(sorted(labels))
        lines.append(f'  "{src}" -> "{dst}" [label="{label}"];')
    lines.append("}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(dot_source(), end="")
