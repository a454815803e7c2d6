"""The reference model (conformance/oracle/machine.py): the answers it allows, per profile, for the situations the
catalogue's cases set up; each test names the case whose expectation it agrees with."""

from __future__ import annotations

import pytest

from conformance.oracle.machine import (
    PROFILES,
    RULES,
    Answer,
    Machine,
    Seg,
    State,
    Tcb,
    acceptable,
    dispatch,
)
from conformance.tcp import ACK, FIN, RST, SYN, seq_add

ISS, PEER = 1000, 5000  # the model's ISS, the peer's (the tester's) ISS


def only(answers: list[Answer]) -> Answer:
    assert len(answers) == 1, answers
    return answers[0]


def by_profile(answers: list[Answer]) -> dict[str, list[tuple[tuple[Seg, ...], State]]]:
    return {p: [(a.sent, a.tcb.state) for a in answers if p in a.conforms] for p in PROFILES}


def established(profile: str = "rfc9293", wnd: int = 65535) -> Machine:
    """A passive open completed: the peer sent SYN (PEER) and ACK."""
    m = Machine(profile)
    m.take(only(m.answers("open_passive")))
    m.take(only(m.answers("segment", Seg(PEER, 0, SYN, wnd), iss=ISS)))
    m.take(only(m.answers("segment", Seg(PEER + 1, ISS + 1, ACK, wnd))))
    assert m.tcb.state == State.ESTABLISHED
    return m


def time_wait(profile: str = "rfc9293") -> Machine:
    """The model closed first and ACKed the peer's FIN (the `time-wait` fragment)."""
    m = established(profile)
    m.take(only(m.answers("close")))
    m.take(only(m.answers("segment", Seg(PEER + 1, ISS + 2, ACK))))  # our FIN acknowledged: FIN-WAIT-2
    assert m.tcb.state == State.FIN_WAIT_2
    m.take(only(m.answers("segment", Seg(PEER + 1, ISS + 2, FIN | ACK))))
    assert m.tcb.state == State.TIME_WAIT and m.tcb.rcv_nxt == PEER + 2
    return m


def test_every_rule_an_answer_names_is_described() -> None:
    seen: set[str] = set()
    machines = [established(p) for p in PROFILES] + [time_wait(p) for p in PROFILES]
    probes = [
        Seg(PEER + 1, ISS + 1, RST), Seg(PEER + 2, ISS + 1, RST), Seg(PEER + 1, 0, SYN), Seg(PEER, ISS + 1, ACK),
        Seg(PEER + 1, ISS + 1, ACK, data=10), Seg(PEER + 1, ISS + 1, FIN | ACK), Seg(PEER + 1, ISS + 9, ACK),
    ]  # fmt: skip
    for m in machines:
        for seg in probes:
            for answer in dispatch(m.tcb, "segment", seg):
                seen.update(answer.rules)
    assert seen <= set(RULES)
    assert {"seq.unacceptable", "rst.exact", "syn.challenge", "syn.reset-793", "text.accept", "fin.accept"} <= seen
    for rule in RULES.values():
        documents = ("rfc9293", "rfc793", "rfc5961", "rfc1337", "rfc1122")
        assert rule.refs and all(r.split(":")[0] in documents for r in rule.refs)


def test_the_acceptability_test_has_its_four_cases() -> None:
    tcb = Tcb(State.ESTABLISHED, rcv_nxt=100, rcv_wnd=10)
    assert [acceptable(tcb, Seg(s)) for s in (99, 100, 109, 110)] == [False, True, True, False]
    assert acceptable(tcb, Seg(95, data=10)) and not acceptable(tcb, Seg(110, data=5))  # straddling the left edge
    closed = Tcb(State.ESTABLISHED, rcv_nxt=100, rcv_wnd=0)
    assert (
        acceptable(closed, Seg(100)) and not acceptable(closed, Seg(101)) and not acceptable(closed, Seg(100, data=1))
    )


def test_a_closed_port_resets_by_the_segments_ack_or_acknowledges_it() -> None:  # HS-CLOSED-*, HS-SYNSENT-CLOSE-01
    assert only(dispatch(Tcb(), "segment", Seg(PEER, 0, SYN))).sent == (Seg(0, PEER + 1, RST | ACK),)
    assert only(dispatch(Tcb(), "segment", Seg(PEER, 777, SYN | ACK))).sent == (Seg(777, 0, RST),)
    assert only(dispatch(Tcb(), "segment", Seg(PEER, 0, RST))).sent == ()


def test_closing_in_syn_sent_sends_nothing_and_leaves_a_closed_port() -> None:  # HS-SYNSENT-CLOSE-01
    m = Machine()
    m.take(only(m.answers("open_active", ISS)))
    assert m.tcb.state == State.SYN_SENT
    answer = only(m.answers("close"))
    assert answer.sent == () and answer.tcb.state == State.CLOSED and answer.rules == ("user.close-quiet",)
    m.take(answer)
    late = only(m.answers("segment", Seg(PEER, ISS + 1, SYN | ACK)))
    assert late.sent == (Seg(ISS + 1, 0, RST),)


def test_an_ack_equal_to_the_iss_in_syn_received_is_reset_or_under_rfc793_completes() -> None:  # HS-SYNRCVD-ACKISS
    m = Machine()
    m.take(only(m.answers("open_passive")))
    m.take(only(m.answers("segment", Seg(PEER, 0, SYN), iss=ISS)))
    answers = dispatch(m.tcb, "segment", Seg(PEER + 1, ISS, ACK))
    grid = by_profile(answers)
    reset = ((Seg(ISS, 0, RST),), State.SYN_RECEIVED)
    assert grid["rfc9293"] == grid["rfc5961"] == grid["rfc1337"] == [reset]
    assert grid["rfc793"] == [reset, ((), State.ESTABLISHED)]  # page 72 as printed, or section 3.3


def test_simultaneous_open_answers_the_crossing_synack_with_an_ack() -> None:  # HS-SIMOPEN-01
    m = Machine()
    m.take(only(m.answers("open_active", ISS)))
    crossing = only(m.answers("segment", Seg(PEER, 0, SYN)))
    assert crossing.sent == (Seg(ISS, PEER + 1, SYN | ACK),) and crossing.tcb.state == State.SYN_RECEIVED
    m.take(crossing)
    literal, trimmed = m.answers("segment", Seg(PEER, ISS + 1, SYN | ACK))  # its SYN lies below RCV.NXT
    assert literal.sent == (Seg(ISS + 1, PEER + 1, ACK),) and literal.tcb.state == State.SYN_RECEIVED
    assert trimmed.sent == () and trimmed.tcb.state == State.ESTABLISHED  # RFC 9293 Figure 7
    assert trimmed.rules[0] == "synrcvd.synack-trimmed"
    m.take(literal)
    m.take(only(m.answers("segment", Seg(PEER + 1, ISS + 1, ACK))))  # the tester's ACK completes it
    assert m.tcb.state == State.ESTABLISHED


def test_a_reset_at_the_right_edge_is_outside_the_window_and_dropped() -> None:  # RST-EST-EDGE-01 (D1)
    m = established(wnd=1000)
    right_edge = Seg(seq_add(m.tcb.rcv_nxt, m.tcb.rcv_wnd), 0, RST)
    answer = only(dispatch(m.tcb, "segment", right_edge))
    assert answer.sent == () and answer.tcb == m.tcb and answer.rules == ("seq.unacceptable-rst",)


@pytest.mark.parametrize(("offset", "exact"), [(0, True), (1, False)])
def test_a_reset_in_the_window_closes_or_draws_a_challenge_ack_by_profile(offset: int, exact: bool) -> None:
    m = established()  # RST-EST-EXACT-01, RST-EST-INWIN-01
    answers = dispatch(m.tcb, "segment", Seg(PEER + 1 + offset, 0, RST))
    grid = by_profile(answers)
    if exact:
        assert all(grid[p] == [((), State.CLOSED)] for p in PROFILES)
        return
    challenge = ((Seg(ISS + 1, PEER + 1, ACK),), State.ESTABLISHED)
    assert grid["rfc5961"] == [challenge] and grid["rfc793"] == [((), State.CLOSED)]
    assert grid["rfc9293"] == grid["rfc1337"] == [challenge, ((), State.CLOSED)]


@pytest.mark.parametrize("state", ["CLOSE-WAIT", "FIN-WAIT-2", "LAST-ACK"])
def test_a_syn_in_a_synchronized_state_draws_a_challenge_ack_or_a_reset_at_snd_nxt(state: str) -> None:  # D5
    m = established()
    if state == "CLOSE-WAIT":
        m.take(only(m.answers("segment", Seg(PEER + 1, ISS + 1, FIN | ACK))))
    elif state == "FIN-WAIT-2":
        m.take(only(m.answers("close")))
        m.take(only(m.answers("segment", Seg(PEER + 1, ISS + 2, ACK))))
    else:
        m.take(only(m.answers("segment", Seg(PEER + 1, ISS + 1, FIN | ACK))))
        m.take(only(m.answers("close")))
    assert m.tcb.state.value == state
    grid = by_profile(dispatch(m.tcb, "segment", Seg(m.tcb.rcv_nxt, 0, SYN)))
    challenge = ((Seg(m.tcb.snd_nxt, m.tcb.rcv_nxt, ACK),), m.tcb.state)
    reset = ((Seg(m.tcb.snd_nxt, 0, RST),), State.CLOSED)
    reset_ack = ((Seg(m.tcb.snd_nxt, m.tcb.rcv_nxt, RST | ACK),), State.CLOSED)
    assert grid["rfc5961"] == [challenge] and grid["rfc793"] == [reset, reset_ack]
    assert grid["rfc9293"] == grid["rfc1337"] == [challenge, reset, reset_ack]


def test_an_exact_reset_ends_time_wait_except_under_rfc1337() -> None:  # TW-RST-01 (D2)
    m = time_wait()
    grid = by_profile(dispatch(m.tcb, "segment", Seg(m.tcb.rcv_nxt, 0, RST)))
    assert grid["rfc1337"] == [((), State.TIME_WAIT)]
    assert grid["rfc9293"] == grid["rfc5961"] == grid["rfc793"] == [((), State.CLOSED)]


def test_time_wait_acknowledges_an_old_syn_and_a_repeated_fin() -> None:  # TW-OLD-SYN-01/02, TW-FIN-RESTART-01
    m = time_wait()
    ack = (Seg(m.tcb.snd_nxt, m.tcb.rcv_nxt, ACK),)
    old_syn = only(dispatch(m.tcb, "segment", Seg(PEER, 0, SYN)))
    assert old_syn.sent == ack and old_syn.tcb.state == State.TIME_WAIT and old_syn.conforms == frozenset(PROFILES)
    fin_again = only(dispatch(m.tcb, "segment", Seg(m.tcb.rcv_nxt - 1, m.tcb.snd_nxt, FIN | ACK)))
    assert fin_again.sent == ack and fin_again.tcb.state == State.TIME_WAIT


def test_data_is_taken_in_order_and_a_gap_is_asked_for() -> None:
    m = established()
    asked, quiet = m.answers("segment", Seg(PEER + 11, ISS + 1, ACK, data=10))
    assert asked.sent == (Seg(ISS + 1, PEER + 1, ACK),) and asked.tcb.rcv_nxt == PEER + 1
    assert quiet.sent == () and quiet.tcb == asked.tcb  # the immediate ACK of out-of-order data is MAY-13
    m.take(only(m.answers("segment", Seg(PEER + 1, ISS + 1, ACK, data=10))))
    assert m.tcb.rcv_nxt == PEER + 11


def test_the_close_sequences_reach_time_wait_or_closed() -> None:
    m = established()  # the peer closes first: CLOSE-WAIT, LAST-ACK, CLOSED
    m.take(only(m.answers("segment", Seg(PEER + 1, ISS + 1, FIN | ACK))))
    assert m.tcb.state == State.CLOSE_WAIT and m.tcb.rcv_nxt == PEER + 2
    fin = only(m.answers("close"))
    assert fin.sent == (Seg(ISS + 1, PEER + 2, FIN | ACK),)
    m.take(fin)
    m.take(only(m.answers("segment", Seg(PEER + 2, ISS + 2, ACK))))
    assert m.tcb.state == State.CLOSED
    s = established()  # both close at once: FIN-WAIT-1, CLOSING, TIME-WAIT
    s.take(only(s.answers("close")))
    s.take(only(s.answers("segment", Seg(PEER + 1, ISS + 1, FIN | ACK))))
    assert s.tcb.state == State.CLOSING
    s.take(only(s.answers("segment", Seg(PEER + 2, ISS + 2, ACK))))
    assert s.tcb.state == State.TIME_WAIT


def test_abort_resets_only_where_a_syn_was_received() -> None:
    m = established()
    assert only(m.answers("abort")).sent == (Seg(ISS + 1, 0, RST),)
    listening = Machine()
    listening.take(only(listening.answers("open_passive")))
    assert only(listening.answers("abort")).sent == ()


def test_the_state_diagram_in_docs_is_the_one_the_model_draws() -> None:
    from conformance.oracle.diagram import dot_source, edges
    from support import REPO

    assert (REPO / "docs" / "state-diagram.dot").read_text() == dot_source(), (
        "regenerate: .venv/bin/python -m conformance.oracle.diagram > docs/state-diagram.dot && "
        "dot -Tsvg docs/state-diagram.dot -o docs/state-diagram.svg"
    )
    assert (REPO / "docs" / "state-diagram.svg").stat().st_size > 10_000
    drawn = edges()
    assert drawn[("LISTEN", "SYN-RECEIVED")] == ["rcv SYN / SA"]
    assert "CLOSE / -" in drawn[("SYN-SENT", "CLOSED")]  # CLOSE in SYN-SENT sends nothing
    assert "rcv RST / - [rfc5961, rfc793, rfc9293]" in drawn[("TIME-WAIT", "CLOSED")]  # not under rfc1337
    states = {s for edge in drawn for s in edge}
    assert states == {s.value for s in State}  # all eleven are reached


def test_the_rules_said_to_change_state_are_those_the_diagram_shows_changing_it() -> None:
    from conformance.oracle.diagram import edges
    from conformance.oracle.mutants import rules_changing_state

    drawn_changes = {src != dst for (src, dst) in edges()}
    assert drawn_changes == {True, False}
    changing = rules_changing_state()
    assert changing <= set(RULES)
    # every rule on an edge between two different states is declared as changing the state
    from conformance.oracle.machine import dispatch as run

    m = established()
    for seg in (Seg(PEER + 1, ISS + 1, FIN | ACK), Seg(PEER + 1, 0, RST), Seg(PEER + 1, 0, SYN)):
        for answer in run(m.tcb, "segment", seg):
            if answer.tcb.state != m.tcb.state:
                assert set(answer.rules) & changing, answer.rules
