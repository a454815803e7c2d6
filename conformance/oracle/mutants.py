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
        if self.mutant.rule == "acceptability":
            return self._window(tcb, event, arg, iss)
        answers = machine.dispatch(tcb, event, arg, iss)
        hit = [a for a in answers if self.mutant.rule in a.rules]
        if not hit:
            return answers
        if self.mutant.operator == "unchosen":
            allowed = [a for a in answers if self.profile in a.conforms]
            others = [a for a in answers if self.profile not in a.conforms]
            if others and allowed and any(a in hit for a in allowed):
                self.changed += 1
                return others
            return answers
        out = []
        for answer in answers:
            mutated = self._mutate(tcb, answer) if answer in hit else answer
            if mutated != answer:
                self.changed += 1
            out.append(mutated)
        return out

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

        def mutated(t: Tcb, seg: Seg) -> bool:
            verdict = original(t, seg)
            offset = seq_diff(seg.seq, t.rcv_nxt)
            if self.mutant.operator == "right-edge-inside" and offset == t.rcv_wnd and t.rcv_wnd > 0:
                verdict = True
            if self.mutant.operator == "left-edge-outside" and offset == 0:
                verdict = False
            if verdict != original(t, seg):
                self.changed += 1
            return verdict

        machine.acceptable = mutated  # the model looks the test up at each call; one thread runs the stack
        try:
            return machine.dispatch(tcb, event, arg, iss)
        finally:
            machine.acceptable = original


def applicable(mutant: Mutant, state_changing: set[str]) -> bool:
    """Operators that cannot change anything for a rule are left out (``stay`` for a rule that never changes the
    state is the rule itself)."""
    return not (mutant.operator == "stay" and mutant.rule not in state_changing)


def rules_changing_state() -> set[str]:
    """The rules whose answers move to another state (from their descriptions' wording, kept in step by a test)."""
    return {
        "listen.syn", "synsent.rst", "synsent.synack", "synsent.syn", "rst.exact", "rst.in-window-793",
        "syn.reset-793", "synrcvd.syn-passive", "synrcvd.ack", "synrcvd.ack-793", "ack.fin-acked", "fin.accept",
        "user.open-active", "user.open-passive", "user.close-quiet", "user.close-fin", "user.abort-reset",
        "user.abort-quiet",
    }  # fmt: skip
