"""Mutants of the reference model: each breaks one rule in one way, to measure what the catalogue detects.

Rules of this module: a mutant is a wrapper around ``machine.dispatch``; it changes only the answers that name
its rule (or, for the acceptability mutants, the window test itself) and counts how often it changed one, so a
mutant the catalogue never exercised is told apart from one it exercised and missed. The operators are the
mistakes implementations make: no answer, the wrong state, a sequence or acknowledgment number off by one, a
reset instead of the answer, the alternative the profile does not allow, and the window's edges moved by one.
Pure: no I/O, no project imports beyond the model.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from ..tcp import ACK, RST, seq_add, seq_diff
from . import machine
from .machine import RULES, Answer, Seg, Tcb

OPERATORS = {
    "silent": "the rule's answer sends nothing",
    "stay": "the rule's answer leaves the state as it was",
    "seq+1": "the first segment the rule sends has SEQ one too high",
    "ack+1": "the first segment the rule sends has ACK one too high",
    "reset": "the rule answers with a reset (SEQ = SND.NXT) and drops the connection",
    "unchosen": "where the rule is one of several answers, the stack takes one the profile does not allow",
}
WINDOW_MUTANTS = {
    "right-edge-inside": "the acceptability test takes RCV.NXT + RCV.WND as inside the window",
    "left-edge-outside": "the acceptability test takes RCV.NXT itself as outside the window",
}


@dataclass(frozen=True)
class Mutant:
    rule: str  # a rule id of RULES, or "acceptability"
    operator: str

    @property
    def name(self) -> str:
        return f"{self.rule}/{self.operator}"

    @property
    def what(self) -> str:
        if self.rule == "acceptability":
            return WINDOW_MUTANTS[self.operator]
        return f"{RULES[self.rule].text}: {OPERATORS[self.operator]}"


def all_mutants() -> list[Mutant]:
    out = [Mutant(rule, op) for rule in RULES for op in OPERATORS]
    return out + [Mutant("acceptability", op) for op in WINDOW_MUTANTS]


@dataclass
class Mutated:
    """``dispatch`` with one mutant applied; ``changed`` counts the answers it altered."""

    mutant: Mutant
    profile: str
    changed: int = 0
    rules_seen: set[str] = field(default_factory=set)

    def __call__(self, tcb: Tcb, event: str, arg: Seg | int | None = None, iss: int = 0) -> list[Answer]:
        original = machine.dispatch(tcb, event, arg, iss)
        mutated = self._mutated(tcb, event, arg, iss, original)
        if _effect(self.chosen(mutated)) != _effect(self.chosen(original)):
            self.changed += 1  # only a change in the answer the stack takes counts
        return mutated

    def chosen(self, answers: list[Answer]) -> Answer:
        """The answer a stack answering by this profile takes (the reference stack's rule)."""
        return next((a for a in answers if self.profile in a.conforms), answers[0])

    def _mutated(self, tcb: Tcb, event: str, arg: Seg | int | None, iss: int, answers: list[Answer]) -> list[Answer]:
        if self.mutant.rule == "acceptability":
            return self._window(tcb, event, arg, iss)
        if self.mutant.operator == "unchosen":
            chosen = self.chosen(answers)
            others = [a for a in answers if self.profile not in a.conforms]
            if self.mutant.rule in chosen.rules and self.profile in chosen.conforms and others:
                return others
            return answers
        return [self._mutate(tcb, a) if self.mutant.rule in a.rules else a for a in answers]

    def _mutate(self, tcb: Tcb, answer: Answer) -> Answer:
        op = self.mutant.operator
        if op == "silent":
            return replace(answer, sent=())
        if op == "stay":
            return replace(answer, tcb=tcb) if answer.tcb.state != tcb.state else answer
        if op in ("seq+1", "ack+1") and answer.sent:
            first = answer.sent[0]
            if op == "seq+1":
                first = replace(first, seq=seq_add(first.seq, 1))
            elif first.flags & ACK:
                first = replace(first, ack=seq_add(first.ack, 1))
            return replace(answer, sent=(first, *answer.sent[1:]))
        if op == "reset" and not any(s.flags & RST for s in answer.sent):
            return replace(answer, sent=(Seg(tcb.snd_nxt, 0, RST),), tcb=Tcb())
        return answer

    def _window(self, tcb: Tcb, event: str, arg: Seg | int | None, iss: int) -> list[Answer]:
        original = machine.acceptable
        right = self.mutant.operator == "right-edge-inside"

        def mutated(t: Tcb, seg: Seg) -> bool:
            """The four-case table with one edge moved: the right edge taken as inside, or RCV.NXT as outside."""

            def inside(n: int) -> bool:
                offset = seq_diff(n, t.rcv_nxt)
                return (0 <= offset <= t.rcv_wnd) if right else (0 < offset < t.rcv_wnd)

            if seg.length == 0:
                return seg.seq == t.rcv_nxt and not right if t.rcv_wnd == 0 else inside(seg.seq)
            if t.rcv_wnd == 0:
                return False
            return inside(seg.seq) or inside(seq_add(seg.seq, seg.length - 1))

        machine.acceptable = mutated  # the model looks the test up at each call; one thread runs the stack
        try:
            return machine.dispatch(tcb, event, arg, iss)
        finally:
            machine.acceptable = original


def _effect(answer: Answer) -> tuple[object, ...]:
    """What of an answer shows outside: the segments sent and the state left in."""
    return (answer.sent, answer.tcb.state)


def applicable(mutant: Mutant, state_changing: set[str]) -> bool:
    """Operators that cannot change anything for a rule are left out (``stay`` for a rule that never changes the
    state is the rule itself)."""
    return not (mutant.operator == "stay" and mutant.rule not in state_changing)


def rules_changing_state() -> set[str]:
    """The rules whose answers may move to another state (``stay`` is left out for the others); a test checks
    the set against the state diagram the model draws."""
    return {
        "listen.syn", "synsent.rst", "synsent.synack", "synsent.syn", "rst.exact", "rst.in-window-793",
        "syn.reset-793", "synrcvd.syn-passive", "synrcvd.ack", "synrcvd.ack-793", "ack.fin-acked", "fin.accept",
        "user.open-active", "user.open-passive", "user.close-quiet", "user.close-fin", "user.abort-reset",
        "user.abort-quiet",
    }  # fmt: skip
