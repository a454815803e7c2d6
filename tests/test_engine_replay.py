"""The engine against scripted packets: a fake link plays the target, no network, no root.

The fake link records what the tester sends, echoes it back as an outbound frame (as the real capture does)
and answers with the packets a small script builds from the target's point of view.
"""

from __future__ import annotations

import os
import struct
import threading
import time
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6

from conformance.model.loader import CaseFormatError, parse_case
from conformance.targets.session import Session
from conformance.tcp import SEQ_MOD as MOD
from conformance.vocabulary import Verdict
from conformance.wire.build import OutOption, OutSegment, build_packet, build_packet_scapy
from conformance.wire.link import Frame, LinkDown, TargetClosedLink
from conformance.wire.segment import Segment, flow_key, parse_options, parse_packet
from support.fakes import (
    TARGET,
    TESTER,
    FakeAgent,
    FakeLink,
    Replayed,
    Script,
    case_text,
    line_of,
    reply,
    rst_ack,
    run,
    run_session,
    sent,
)

SYN, ACK, RST = 0x02, 0x10, 0x04


CLOSED_PORT_SYN = case_text(
    "  - send: {flags: S, seq: l_isn, options: [{mss: 1460}]}\n"
    "  - expect: {flags: RA, seq: 0, ack: l_isn + 1, len: 0}\n"
)


# ---- PASS and FAIL on one exchange ---------------------------------------------------------------


def test_closed_port_syn_answered_correctly_passes() -> None:
    result, link = run(CLOSED_PORT_SYN, rst_ack())
    assert result.verdict == Verdict.PASS, result.reason
    assert result.failure is None
    assert [s.outcome for s in result.steps] == ["ok", "ok"]
    (syn,) = sent(link)
    obs = result.observations
    assert (syn.flags, syn.seq, syn.ack) == (SYN, obs["l_isn"], 0)
    assert (syn.src, syn.dst, syn.sport, syn.dport) == (TESTER, TARGET, obs["l_port"], obs["t_port"])
    assert syn.option("mss").value() == 1460  # type: ignore[union-attr]
    # The trace holds both directions in order, each tied to its step.
    assert [(e.inbound, e.step) for e in result.trace] == [(False, 1), (True, 2)]
    assert result.trace[1].summary.startswith(f"{TARGET}:{obs['t_port']} > {TESTER}:{obs['l_port']}: RA seq 0")
    assert link.flushes == 0  # cases in flight share the link: none may discard what others are waiting for


def test_wrong_ack_fails_with_evidence() -> None:
    replies: list[bytes] = []

    def script(seg: Segment) -> list[bytes]:
        replies.append(reply(seg, "RA", 0, seg.seq + 2))
        return replies[-1:]

    result, _ = run(CLOSED_PORT_SYN, script)
    assert result.verdict == Verdict.FAIL
    f = result.failure
    assert f is not None
    assert (f.step, f.line, f.path, f.kind) == (2, line_of(CLOSED_PORT_SYN, "- expect:"), "steps[1]", "expect")
    l_isn = result.observations["l_isn"]
    assert f"ack l_isn + 1(={(l_isn + 1) % MOD})" in f.expected
    assert f.actual == parse_packet(replies[0]).summary()  # type: ignore[union-attr]
    assert f.mismatches == [f"ack: expected l_isn + 1(={(l_isn + 1) % MOD}), got {(l_isn + 2) % MOD}"]
    assert result.reason.startswith("unexpected segment: ack:")
    assert "the requirement of the scripted replay" in f.requirement
    assert [s.outcome for s in result.steps] == ["ok", "fail"]


def test_nothing_arriving_within_the_timeout_fails() -> None:
    text = case_text("  - send: {flags: S, seq: l_isn}\n  - expect: {flags: RA, ack: l_isn + 1, timeout: 50ms}\n")
    started = time.monotonic()
    result, _ = run(text)
    assert result.verdict == Verdict.FAIL
    assert result.failure is not None and result.failure.actual == "(nothing)"
    assert "within 50 ms, got nothing" in result.reason
    # The runner waited the step's timeout, not the 1 s default.
    assert 0.045 <= time.monotonic() - started < 0.5


# ---- expect_none ----------------------------------------------------------------------------------


def test_expect_none_fails_when_a_matching_segment_arrives() -> None:
    text = case_text(
        "  - send: {flags: S, seq: l_isn}\n"
        "  - expect_none: {for: 50ms, flags: RA, reason: a closed port stays silent in this script}\n"
    )
    result, _ = run(text, rst_ack())
    assert result.verdict == Verdict.FAIL
    f = result.failure
    assert f is not None and f.kind == "expect_none" and f.line == line_of(text, "- expect_none")
    assert f.expected == "no RA" and " RA seq 0 " in f.actual
    assert result.reason.startswith("expected no RA for 50 ms, got one")


def test_expect_none_passes_on_a_non_matching_segment_which_a_later_expect_still_gets() -> None:
    text = case_text(
        "  - send: {flags: S, seq: l_isn}\n"
        "  - expect_none: {for: 50ms, flags: SA, reason: no SYN-ACK from a closed port}\n"
        "  - expect: {flags: RA, ack: l_isn + 1, timeout: 50ms}\n"
    )
    result, _ = run(text, rst_ack())
    assert result.verdict == Verdict.PASS, result.reason
    assert [s.outcome for s in result.steps] == ["ok", "ok", "ok"]
    assert result.steps[1].detail == "silent for 50 ms"
    assert " RA " in result.steps[2].detail
    assert [e.inbound for e in result.trace] == [False, True]  # the RST is traced once


def test_expect_none_without_filter_passes_on_silence() -> None:
    text = case_text("  - send: {flags: S, seq: l_isn}\n  - expect_none: {for: 50ms, reason: nothing at all}\n")
    started = time.monotonic()
    result, _ = run(text)
    assert result.verdict == Verdict.PASS, result.reason
    assert 0.045 <= time.monotonic() - started < 0.5


def test_expect_none_with_a_name_unbound_at_run_time_is_an_error() -> None:
    """A typo (``l_isnn``) is refused when the case loads (tests/test_typos.py); a declared timer the target does
    not declare is bound only at run time, and an error of the case there."""
    text = case_text(
        "  - send: {flags: S, seq: l_isn}\n"
        "  - expect_none: {for: 50ms, ack: timer_time_wait_us + 1, reason: a timer not declared}\n"
    )
    result, _ = run(text, rst_ack())
    assert result.verdict == Verdict.ERROR
    assert "timer_time_wait_us" in result.reason


RETRANSMITTED = case_text(
    "  - send: {flags: S, seq: l_isn}\n"
    "  - expect: {flags: SA, ack: l_isn + 1}\n"
    "  - send: {flags: A, seq: l_isn + 1, ack: t_isn + 1}\n"
    "  - expect_none: {for: 50ms, ignore_retransmissions: IGNORE, reason: the ACK completes the handshake}\n"
)


def _synack_again(seq_again: int) -> Script:
    """Answer the SYN with a SYN-ACK (ISS 5000), and the ACK with a SYN-ACK of ISS ``seq_again``."""

    def script(seg: Segment) -> list[bytes]:
        first = seg.flags == SYN
        return [reply(seg, "SA", 5000 if first else seq_again, (seg.seq + 1) if first else seg.seq)]

    return script


@pytest.mark.parametrize(
    ("ignore", "seq_again", "verdict"),
    [("true", 5000, Verdict.PASS), ("false", 5000, Verdict.FAIL), ("true", 7000, Verdict.FAIL)],
)
def test_a_silence_window_may_let_a_retransmission_pass(ignore: str, seq_again: int, verdict: Verdict) -> None:
    """A retransmission (the flags, SEQ and length of a segment sent earlier, whatever its ACK) breaks the
    silence only when the window counts retransmissions; a segment that is not one always breaks it."""
    result, _ = run(RETRANSMITTED.replace("IGNORE", ignore), _synack_again(seq_again))
    assert result.verdict == verdict, result.reason


def test_a_silent_alternative_may_let_a_retransmission_pass() -> None:
    text = case_text(
        "  - send: {flags: S, seq: l_isn}\n"
        "  - expect: {flags: SA, ack: l_isn + 1}\n"
        "  - send: {flags: A, seq: l_isn + 1, ack: t_isn + 1}\n"
        "  - expect_one_of:\n"
        "      - label: reset\n"
        "        behaviour: a reset\n"
        "        expect: {flags: R}\n"
        "      - label: silent\n"
        "        behaviour: nothing\n"
        "        none: {for: 50ms, ignore_retransmissions: true}\n"
    )
    result, _ = run(text, _synack_again(5000))
    assert result.verdict == Verdict.PASS, result.reason
    assert result.behaviour == "silent"
    result, _ = run(text, _synack_again(7000))
    assert result.verdict == Verdict.FAIL
    assert result.reason == "the segment matches none of the acceptable behaviours"


# ---- expect_one_of and profiles --------------------------------------------------------------------

ONE_OF = case_text(
    "  - send: {flags: S, seq: l_isn}\n"
    "  - expect_one_of:\n"
    "      - label: challenge-ack\n"
    "        behaviour: challenge ACK; connection kept\n"
    "        expect: {flags: A, len: 0}\n"
    "        conforms: [rfc9293, rfc5961]\n"
    "      - label: reset\n"
    "        behaviour: reset; connection aborted\n"
    "        expect: {flags: RA, ack: l_isn + 1}\n"
    "        conforms: [rfc9293, rfc793]\n"
)


@pytest.mark.parametrize(
    ("answer", "profile", "verdict", "label"),
    [
        ("A", "rfc9293", Verdict.PASS, "challenge-ack"),
        ("A", "rfc5961", Verdict.PASS, "challenge-ack"),
        ("A", "rfc793", Verdict.FAIL, "challenge-ack"),
        ("RA", "rfc9293", Verdict.PASS, "reset"),
        ("RA", "rfc793", Verdict.PASS, "reset"),
        ("RA", "rfc5961", Verdict.FAIL, "reset"),
    ],
)
def test_expect_one_of_chooses_the_behaviour_and_grades_it_by_profile(
    answer: str, profile: str, verdict: Verdict, label: str
) -> None:
    script = lambda seg: [reply(seg, answer, 0 if answer == "RA" else 5000, seg.seq + 1)]  # noqa: E731
    result, _ = run(ONE_OF, script, profile=profile)
    assert result.verdict == verdict, result.reason
    assert result.behaviour == label
    if verdict == Verdict.PASS:
        assert result.reason == f"all steps matched; behaviour: {label}"
        assert result.steps[1].detail.startswith(f"{label}: ")
    else:
        assert result.reason.startswith(f"behaviour seen: {label} (")
        assert f"does not conform under profile {profile}" in result.reason
        assert result.failure is not None and result.failure.kind == "expect_one_of"
        assert result.failure.line == line_of(ONE_OF, "- expect_one_of")


def test_expect_one_of_fails_when_no_alternative_matches() -> None:
    result, _ = run(ONE_OF, lambda seg: [reply(seg, "SA", 1, seg.seq + 1)])
    assert result.verdict == Verdict.FAIL
    f = result.failure
    assert f is not None and result.reason == "the segment matches none of the acceptable behaviours"
    assert [m.split(":")[0] for m in f.mismatches] == ["challenge-ack", "reset"]
    assert "[challenge-ack]" in f.expected and "[reset]" in f.expected and " SA " in f.actual


SYN_IN_ESTABLISHED = case_text(
    "  - ut: listen\n"
    "  - send: {flags: S, seq: l_isn, options: [{mss: 1460}]}\n"
    "  - expect: {flags: SA, ack: l_isn + 1}\n"
    "  - send: {flags: A}\n"
    "  - ut: accept\n"
    "  - send: {flags: S, seq: l_nxt, options: [{mss: 1460}]}\n"
    "  - expect_one_of:\n"
    "      - label: challenge-ack\n"
    "        behaviour: challenge ACK (SEQ = SND.NXT, ACK = RCV.NXT); connection kept\n"
    "        expect: {flags: A, seq: t_nxt, ack: l_nxt, len: 0}\n"
    "        conforms: [rfc9293, rfc5961]\n"
    "        then:\n"
    "          - ut: {op: state, state: ESTABLISHED}\n"
    "      - label: reset\n"
    "        behaviour: reset without ACK; connection aborted (RFC 793)\n"
    "        expect: {flags: R, len: 0}\n"
    "        conforms: [rfc9293, rfc793]\n",
    requires="[ut.listen, ut.accept, ut.state]",
)


@pytest.mark.parametrize(
    ("answer", "profile", "verdict"),
    [("challenge", "rfc9293", Verdict.PASS), ("challenge", "rfc793", Verdict.FAIL), ("reset", "rfc793", Verdict.PASS)],
)
def test_syn_in_established_with_an_upper_tester(answer: str, profile: str, verdict: Verdict) -> None:
    t_isn = 0xFFFFFF00
    syns: list[Segment] = []

    def script(seg: Segment) -> list[bytes]:
        if seg.flags != SYN:
            return []
        syns.append(seg)
        if len(syns) == 1:
            return [reply(seg, "SA", t_isn, seg.seq + 1, options=(OutOption("mss", 1460),))]
        if answer == "challenge":
            return [reply(seg, "A", t_isn + 1, seg.seq)]
        return [reply(seg, "R", t_isn + 1)]

    agent = FakeAgent({"listen": {"sock": 3, "port": 4242}, "accept": {"sock": 4}, "state": {"state": "ESTABLISHED"}})
    caps = {"ut.listen", "ut.accept", "ut.state"}
    result, link = run(SYN_IN_ESTABLISHED, script, agent=agent, caps=caps, profile=profile)
    assert result.verdict == verdict, result.reason
    assert result.behaviour == ("challenge-ack" if answer == "challenge" else "reset")
    assert all(s.dport == 4242 for s in sent(link))  # the port the listener got
    assert [s.flags for s in sent(link)] == [SYN, ACK, SYN]
    ops = [op for op, _ in agent.calls]
    assert ops[:2] == ["listen", "accept"]
    # The chosen alternative's ``then`` ran whatever the profile (the engine records, the judge grades), so the
    # run can be judged again under another profile; sockets are released at the end.
    assert ("state" in ops) == (answer == "challenge")
    assert sorted(op for op, _ in agent.calls if op in ("close", "abort")) == ["abort", "close"]


# ---- demultiplexing and the tester's view ----------------------------------------------------------


def test_segments_of_other_flows_are_ignored_and_not_traced() -> None:
    def script(seg: Segment) -> list[bytes]:
        return [
            reply(seg, "SA", 99, seg.seq + 1, sport=seg.dport + 1),  # another connection's SYN-ACK
            b"\x45\x00garbage",  # not even a packet
            reply(seg, "RA", 0, seg.seq + 1),
        ]

    result, _ = run(CLOSED_PORT_SYN, script)
    assert result.verdict == Verdict.PASS, result.reason
    assert len(result.trace) == 2
    other_port = f":{result.observations['t_port'] + 1} "
    assert not any(other_port in e.summary for e in result.trace)


@pytest.mark.parametrize("t_isn", [123456, MOD - 1])
def test_tester_view_follows_the_handshake(t_isn: int) -> None:
    text = case_text(
        "  - send: {flags: S, seq: l_isn, options: [{mss: 1460}]}\n"
        "  - expect: {flags: SA, ack: l_isn + 1, options: {mss: 1000}}\n"
        "  - send: {flags: A}\n"
        "  - send: {flags: PA, data: hello}\n"
        "  - expect: {flags: A, seq: t_isn + 1, ack: l_isn + 6}\n"
    )

    def script(seg: Segment) -> list[bytes]:
        if seg.flags == SYN:
            return [reply(seg, "SA", t_isn, seg.seq + 1, options=(OutOption("mss", 1000),))]
        if seg.payload:
            return [reply(seg, "A", t_isn + 1, seg.seq + len(seg.payload))]
        return []

    result, link = run(text, script)
    assert result.verdict == Verdict.PASS, result.reason
    obs = result.observations
    l_isn = obs["l_isn"]
    assert (obs["t_isn"], obs["t_nxt"], obs["t_mss"]) == (t_isn, (t_isn + 1) % MOD, 1000)
    assert obs["l_nxt"] == (l_isn + 1 + 5) % MOD
    _syn, ack, data = sent(link)
    assert (ack.flags, ack.seq, ack.ack, ack.payload) == (ACK, (l_isn + 1) % MOD, (t_isn + 1) % MOD, b"")
    assert (data.flags, data.seq, data.ack, data.payload) == (0x18, (l_isn + 1) % MOD, (t_isn + 1) % MOD, b"hello")
    assert [e.step for e in result.trace] == [1, 2, 3, 4, 5]


def test_default_ack_before_anything_was_received_is_an_error() -> None:
    result, link = run(case_text("  - send: {flags: A}\n"))
    assert result.verdict == Verdict.ERROR
    assert "ack defaults to t_nxt" in result.reason
    assert link.sent == []


def test_missing_capability_is_not_run_and_sends_nothing() -> None:
    text = case_text("  - ut: listen\n  - send: {flags: S, seq: l_isn}\n", requires="[ut.listen, ut.state]")
    agent = FakeAgent({})
    result, link = run(text, agent=agent, caps={"ut.listen"})
    assert result.verdict == Verdict.NOT_RUN
    assert result.reason == "target lacks ut.state"
    assert link.sent == [] and link.flushes == 0 and agent.calls == [] and result.steps == []


@pytest.mark.parametrize(
    ("steps", "needle", "name"),
    [
        ("  - send: {flags: S, seq: timer_syn_rto_us}\n", "- send", "timer_syn_rto_us"),
        ("  - send: {flags: S, seq: l_isn}\n  - expect: {flags: RA}\n  - send: {flags: A, seq: t_ws}\n",
         "- send: {flags: A", "t_ws"),
        ("  - bind: {x: timer_syn_rto_us - 1}\n", "- bind", "timer_syn_rto_us"),
    ],
    ids=["send", "after-expect", "bind"],
)  # fmt: skip
def test_a_name_unbound_at_run_time_is_an_error_naming_it(steps: str, needle: str, name: str) -> None:
    """Names the loader lets through because a run may bind them (a declared timer; t_ws, which only a SYN with a
    window-scale option binds) and that this run did not bind."""
    text = case_text(steps)
    result, _ = run(text, rst_ack())
    assert result.verdict == Verdict.ERROR
    assert f"inline.yaml:{line_of(text, needle)}: " in result.reason
    assert f"'{name}' is not bound" in result.reason
    assert result.failure is None and result.steps[-1].outcome == "error"


@pytest.mark.parametrize(("later_window", "verdict"), [(4321, Verdict.PASS), (4000, Verdict.FAIL)])
def test_bind_from_a_segment_field_is_used_later(later_window: int, verdict: Verdict) -> None:
    text = case_text(
        "  - send: {flags: S, seq: l_isn}\n"
        "  - expect: {flags: SA, bind: {w: window, peer_mss: opt.mss, their_seq: seq}}\n"
        "  - send: {flags: PA, seq: l_isn + 1, data: x}\n"
        "  - expect: {flags: A, window: w, seq: their_seq + 1}\n"
    )

    def script(seg: Segment) -> list[bytes]:
        if seg.flags == SYN:
            return [reply(seg, "SA", 777, seg.seq + 1, window=4321, options=(OutOption("mss", 536),))]
        return [reply(seg, "A", 778, seg.seq + 1, window=later_window)]

    result, _ = run(text, script)
    assert result.verdict == verdict, result.reason
    assert (result.observations["w"], result.observations["peer_mss"], result.observations["their_seq"]) == (
        4321, 536, 777,
    )  # fmt: skip
    if verdict == Verdict.FAIL:
        assert result.failure is not None
        assert result.failure.mismatches == ["window: expected w(=4321), got 4000"]


def test_binding_an_absent_option_fails() -> None:
    text = case_text("  - send: {flags: S, seq: l_isn}\n  - expect: {flags: RA, bind: {ws: opt.wscale}}\n")
    result, _ = run(text, rst_ack())
    assert result.verdict == Verdict.FAIL
    assert result.reason == "cannot bind ws: the segment has no opt.wscale"


# ---- building and parsing packets --------------------------------------------------------------------

V6_TESTER, V6_TARGET = "2001:2::2", "2001:2::1"
SEGMENTS = [
    OutSegment("ipv4", TESTER, TARGET, 10000, 80, 1, 0, SYN, 65535, 0, [OutOption("mss", 1460)]),
    OutSegment("ipv4", TESTER, TARGET, 10001, 443, MOD - 1, 123, 0x18, 1000, 5,
               [OutOption("nop"), OutOption("nop"), OutOption("ts", (1, 2))], b"hello"),
    OutSegment("ipv4", TESTER, TARGET, 65535, 1, 7, 8, 0x10, 512, 0,
               [OutOption("mss", 536), OutOption("nop"), OutOption("wscale", 14), OutOption("sackok")],
               b"x" * 101, ttl=1),
    OutSegment("ipv4", TESTER, TARGET, 10002, 80, 7, 8, 0x11, 0, 0, [OutOption("wscale", 3)], b"abc"),
    OutSegment("ipv4", TESTER, TARGET, 10003, 80, 9, 0, SYN, 29200, 0, [OutOption("raw", kind=254, data=b"\x12\x34")]),
    OutSegment("ipv6", V6_TESTER, V6_TARGET, 10000, 80, 7, 8, 0x12, 512, 0,
               [OutOption("mss", 1220), OutOption("sackok"), OutOption("ts", (5, MOD - 1)), OutOption("nop"),
                OutOption("wscale", 7)]),
    OutSegment("ipv6", V6_TESTER, V6_TARGET, 10000, 80, 7, 8, ACK, 512, 0,
               [OutOption("nop"), OutOption("nop"), OutOption("sack", (1, 2, 3, 4))], b"y" * 33, ttl=3),
    OutSegment("ipv6", V6_TESTER, V6_TARGET, 1234, 5678, 0, 0, RST, 0),
]  # fmt: skip
SEGMENT_IDS = ["v4-syn-mss", "v4-ts-data", "v4-opts-data", "v4-fin-wscale", "v4-raw", "v6-synack", "v6-sack", "v6-rst"]


@pytest.mark.parametrize("out", SEGMENTS, ids=SEGMENT_IDS)
def test_build_packet_is_byte_identical_to_scapy(out: OutSegment) -> None:
    assert build_packet(out) == build_packet_scapy(out)


@pytest.mark.parametrize(
    "out",
    [
        replace(SEGMENTS[0], sport=70000),
        replace(SEGMENTS[0], options=[OutOption("mss", 70000)]),
        replace(SEGMENTS[0], options=[OutOption("wscale", 256)]),
    ],
    ids=["port", "mss", "wscale"],
)
def test_out_of_range_values_raise_value_error(out: OutSegment) -> None:
    with pytest.raises(ValueError):
        build_packet(out)


def _tcp_checksum_by_scapy(packet: bytes, family: str) -> int:
    """What scapy computes as the TCP checksum of ``packet``."""
    pkt = IP(packet) if family == "ipv4" else IPv6(packet)
    del pkt[TCP].chksum
    return (IP if family == "ipv4" else IPv6)(bytes(pkt))[TCP].chksum


@pytest.mark.parametrize("out", SEGMENTS, ids=SEGMENT_IDS)
def test_bad_checksum_differs_only_in_the_checksum(out: OutSegment) -> None:
    good = build_packet(out)
    bad = build_packet(replace(out, bad_checksum=True))
    good_seg, bad_seg = parse_packet(good), parse_packet(bad)
    assert good_seg is not None and bad_seg is not None
    assert good_seg.checksum == _tcp_checksum_by_scapy(good, out.family)
    assert bad_seg.checksum != _tcp_checksum_by_scapy(bad, out.family)
    offset = (20 if out.family == "ipv4" else 40) + 16
    assert len(good) == len(bad)
    assert good[:offset] == bad[:offset] and good[offset + 2 :] == bad[offset + 2 :]


@pytest.mark.parametrize("out", SEGMENTS, ids=SEGMENT_IDS)
def test_parse_packet_round_trips_fields(out: OutSegment) -> None:
    seg = parse_packet(build_packet(out))
    assert seg is not None
    assert (seg.family, seg.src, seg.dst, seg.sport, seg.dport) == (out.family, out.src, out.dst, out.sport, out.dport)
    fields = ("seq", "ack", "flags", "window", "urgent", "payload", "ttl")
    assert [getattr(seg, f) for f in fields] == [getattr(out, f) for f in fields]
    names = [o.name for o in seg.options]
    assert names[: len(out.options)] == [o.name if o.name != "raw" else f"kind{o.kind}" for o in out.options]
    assert set(names[len(out.options) :]) <= {"eol"}  # padding only
    for want, got in zip(out.options, seg.options, strict=False):
        if want.name in ("mss", "wscale", "ts", "sack"):
            assert got.value() == want.value, want.name
        elif want.name == "raw":
            assert got.data == want.data


def test_segment_length_and_end_seq_count_syn_and_fin_and_wrap() -> None:
    seg = parse_packet(build_packet(OutSegment("ipv4", TESTER, TARGET, 1, 2, MOD - 2, 0, 0x03, 0, 0, [], b"ab")))
    assert seg is not None and seg.length == 4 and seg.end_seq == 2


def _v4_packet() -> bytes:
    return build_packet(SEGMENTS[1])


def _v6_packet() -> bytes:
    return build_packet(SEGMENTS[6])


@pytest.mark.parametrize(("packet", "ip_len"), [(_v4_packet(), 20), (_v6_packet(), 40)], ids=["ipv4", "ipv6"])
def test_truncated_headers_give_none(packet: bytes, ip_len: int) -> None:
    for n in range(len(packet) + 1):
        seg, key = parse_packet(packet[:n]), flow_key(packet[:n])
        if n < ip_len + 20:
            assert seg is None, n
        if n < ip_len + 4:
            assert key is None, n
        else:
            assert key is not None and key[2:] == struct.unpack("!HH", packet[ip_len : ip_len + 4])


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00",
        b"\x45",
        b"\x60" * 10,
        b"\xff" * 80,
        bytes(60),
        bytes(_v4_packet()[:9]) + b"\x11" + _v4_packet()[10:],  # UDP, not TCP
        _v6_packet()[:6] + b"\x3a" + _v6_packet()[7:],
    ],
    ids=["empty", "zero", "v4-nibble", "v6-nibble", "ones", "zeros", "udp", "v6-next-header-icmp"],
)
def test_garbage_gives_none(data: bytes) -> None:
    assert parse_packet(data) is None
    assert flow_key(data) is None


@pytest.mark.parametrize("packet", [_v4_packet(), _v6_packet()], ids=["ipv4", "ipv6"])
def test_truncated_payload_gives_none(packet: bytes) -> None:
    assert parse_packet(packet[:-2]) is None


tcp_like = st.one_of(
    st.binary(max_size=120),
    st.builds(lambda rest: bytes([0x45]) + rest[:8] + b"\x06" + rest[8:], st.binary(max_size=100)),
    st.builds(
        lambda head, rest: bytes([0x40 | head]) + rest[:8] + b"\x06" + rest[8:],
        st.integers(0, 15),
        st.binary(max_size=100),
    ),
    st.builds(lambda rest: bytes([0x60]) + rest[:5] + b"\x06" + rest[5:], st.binary(max_size=140)),
)


@given(tcp_like)
def test_parse_packet_and_flow_key_never_raise(data: bytes) -> None:
    seg = parse_packet(data)
    key = flow_key(data)
    if seg is not None:
        assert isinstance(seg.summary(), str)
        assert 0 <= seg.end_seq < MOD
    assert key is None or len(key) == 4


@given(st.binary(max_size=60))
def test_options_from_any_bytes_never_raise(raw: bytes) -> None:
    options = parse_options(raw)
    assert all(isinstance(opt.describe(), str) for opt in options)
    malformed = [i for i, o in enumerate(options) if o.malformed]
    assert malformed in ([], [len(options) - 1])  # decoding stops at a malformed option...
    assert all(o.kind != 0 for o in options[:-1])  # ... and at EOL


def _two_syn_acks(seg: Segment) -> list[bytes]:
    if seg.flags == 0x02:
        return [reply(seg, "SA", 5000, seg.seq + 1), reply(seg, "SA", 5000, seg.seq + 1)]
    return []


CHECK_CASE = (
    "  - send: {flags: S, seq: l_isn}\n"
    "  - expect: {flags: SA, bind: {t0: time_us}}\n"
    "  - expect: {flags: SA, bind: {t1: time_us}}\n"
    "  - check: {value: t1 - t0, in: RANGE, record: gap_us, reason: the scripted retransmission interval}\n"
)


def test_check_passes_and_records_the_measured_value() -> None:
    result, _ = run(case_text(CHECK_CASE.replace("RANGE", "0..100000")), _two_syn_acks)
    assert result.verdict == Verdict.PASS, result.reason
    assert 0 < result.observations["gap_us"] < 100000
    assert result.observations["t1"] > result.observations["t0"] >= 0


def test_check_fails_with_the_value_and_the_expected_range() -> None:
    text = case_text(CHECK_CASE.replace("RANGE", "500000..600000"))
    result, _ = run(text, _two_syn_acks)
    assert result.verdict == Verdict.FAIL
    assert result.failure is not None and result.failure.kind == "check"
    assert result.failure.line == line_of(text, "- check:")
    assert result.failure.expected.startswith("t1 - t0 in 500000..600000")
    assert "the scripted retransmission interval" in result.reason
    assert int(result.failure.actual) == result.observations["gap_us"]


COUNT_CASE = (
    "  - send: {flags: S, seq: l_isn}\n"
    "  - expect_count: {for: 50ms, flags: SA, count: RANGE, record: n, reason: both scripted SYN-ACKs}\n"
)


@pytest.mark.parametrize(("count", "verdict"), [("2", Verdict.PASS), ("0..1", Verdict.FAIL)])
def test_expect_count_counts_matching_segments(count: str, verdict: Verdict) -> None:
    result, _ = run(case_text(COUNT_CASE.replace("RANGE", count)), _two_syn_acks)
    assert result.verdict == verdict, result.reason
    assert result.observations["n"] == 2
    if verdict == Verdict.FAIL:
        assert "expected 0..1 x SA" in result.reason and "got 2" in result.reason


def test_reserved_bits_and_special_destinations_are_sent_as_written() -> None:
    text = case_text(
        "  - send: {flags: S, seq: l_isn, reserved: 9}\n"
        "  - send: {flags: S, seq: l_isn, to_addr: multicast}\n"
        "  - send: {flags: S, seq: l_isn, from_addr: target}\n"
    )
    result, link = run(text)
    assert result.verdict == Verdict.PASS, result.reason
    first, second, third = sent(link)
    assert first.reserved == 9 and first.dst == TARGET
    assert second.dst == "224.0.0.1" and second.src == TESTER
    assert third.src == TARGET and third.dst == TARGET


def test_broadcast_needs_a_prefix() -> None:
    result, _ = run(case_text("  - send: {flags: S, seq: l_isn, to_addr: broadcast}\n"))
    assert result.verdict == Verdict.ERROR and "no broadcast address" in result.reason


# ---- the link failing under the case ---------------------------------------------------------------------


class ClosingLink(FakeLink):
    """A link whose far end goes away after the first packet the tester sends: ``error`` is raised on reading."""

    def __init__(self, error: OSError) -> None:
        super().__init__()
        self.error = error
        self.failed = False

    def next_due(self) -> float | None:
        return time.monotonic() if self.sent and not self.failed else None

    def poll_frame(self) -> Frame | None:
        if self.sent and not self.frames and not self.failed:  # the tester's own SYN is read first, then it fails
            self.failed = True
            raise self.error
        return super().poll_frame()


def run_on(link: FakeLink, text: str) -> Replayed:
    session = Session(link, None, "ipv4", TESTER, TARGET)  # type: ignore[arg-type]
    return run_session(parse_case(text, "inline.yaml"), session)


def test_a_target_that_closes_its_link_mid_case_fails_naming_the_step() -> None:
    result = run_on(ClosingLink(TargetClosedLink(104, "the target closed its end of the stream link x")),
                    CLOSED_PORT_SYN)  # fmt: skip
    assert result.verdict == Verdict.FAIL
    assert result.reason.startswith("the target stopped working at step 2: the target closed its end")
    assert [e.inbound for e in result.trace] == [False]  # the SYN that preceded it is evidence


def test_a_link_of_the_tester_going_down_is_an_error_not_a_fail() -> None:
    result = run_on(ClosingLink(LinkDown(19, "interface lab0 is down: No such device")), CLOSED_PORT_SYN)
    assert result.verdict == Verdict.ERROR and "interface lab0 is down" in result.reason


def test_a_restart_step_swaps_in_the_new_link_and_forgets_the_old_sockets() -> None:
    old_link, new_link = FakeLink(), FakeLink(rst_ack())
    agent = FakeAgent({"listen": {"sock": 7, "port": 4000}})
    text = case_text(
        "  - ut: listen\n"
        "  - restart: {reason: the stack reboots}\n"
        "  - send: {flags: S, seq: l_isn}\n"
        "  - expect: {flags: RA, seq: 0, ack: l_isn + 1}\n",
        requires="[ut.listen, target.restart]",
        alone="the scripted stack restarts",
    )
    restarts: list[int] = []

    def restart() -> tuple[FakeLink, FakeAgent]:
        restarts.append(1)
        return new_link, agent

    session = Session(old_link, agent, "ipv4", TESTER, TARGET, capabilities=frozenset({"ut.listen", "target.restart"}),  # type: ignore[arg-type]
                      restart=restart)  # fmt: skip
    result = run_session(parse_case(text, "inline.yaml"), session)
    assert result.verdict == Verdict.PASS, result.reason
    assert restarts == [1] and old_link.sent == [] and len(new_link.sent) == 1  # the SYN went out on the new link
    assert result.run.upper.handles == {}  # the listener of before the restart is not closed again (it is gone)
    assert [c[0] for c in agent.calls] == ["listen"]


def test_a_restart_step_without_the_capability_is_an_error() -> None:
    text = case_text("  - restart: {reason: the stack reboots}\n", alone="the scripted stack restarts")
    result, _ = run(text)
    assert result.verdict == Verdict.ERROR and "cannot be restarted" in result.reason


class PipeLink(FakeLink):
    """A link with a real descriptor (a pipe): what is written to the pipe is a frame the tester must read."""

    def __init__(self) -> None:
        super().__init__()
        self.read_fd, self.write_fd = os.pipe()
        os.set_blocking(self.read_fd, False)
        self.read_at: list[float] = []

    def fileno(self) -> int | None:
        return self.read_fd

    def poll_frame(self) -> Frame | None:
        try:
            data = os.read(self.read_fd, 4096)
        except BlockingIOError:
            return super().poll_frame()
        self.read_at.append(time.monotonic())  # an Ethernet link would answer an ARP request here
        return Frame(data, time.time(), True)

    def close(self) -> None:
        os.close(self.read_fd)
        os.close(self.write_fd)


def test_the_link_is_read_while_an_agent_call_blocks() -> None:
    """An Ethernet link answers ARP and ND only when it is read: a blocking agent call must not stop that (the
    stack's neighbour probes would go unanswered for minutes), and a quick call must not wait for a poll."""
    agent = FakeAgent({"listen": {"sock": 1, "port": 5000}, "recv": {"data": ""}}, slow={"recv": 0.5})
    text = case_text("  - ut: listen\n  - ut: {op: recv, sock: listener, timeout: 2s}\n", "[ut.listen, ut.recv]")
    link = PipeLink()
    writer = threading.Timer(0.1, lambda: os.write(link.write_fd, b"arp who-has"))
    session = Session(link, agent, "ipv4", TESTER, TARGET, capabilities=frozenset({"ut.listen", "ut.recv"}))  # type: ignore[arg-type]
    started = time.monotonic()
    writer.start()
    try:
        result = run_session(parse_case(text, "inline.yaml"), session)
    finally:
        writer.join()
        link.close()
    ended = time.monotonic()
    assert result.verdict == Verdict.PASS, result.reason
    assert 0.5 <= ended - started < 1.5
    assert link.read_at and link.read_at[0] - started < 0.3  # read while the recv still blocked, within ms


# ---- preconditions: a situation the target never reached is INCONCLUSIVE, never FAIL ------------------------------
ZERO_WINDOW = case_text(
    "  - send: {flags: S, seq: l_isn, options: [{mss: 1460}]}\n"
    "  - expect: {flags: SA, ack: l_isn + 1, window: 0}\n"
    "    precondition: the target's receive window is closed\n"
    "  - send: {flags: R, seq: l_nxt}\n"
)


def synack(window: int) -> Script:
    return lambda seg: [reply(seg, "SA", 7000, seg.seq + 1, window=window)] if seg.flags == SYN else []


def test_a_precondition_not_reached_is_inconclusive_with_its_evidence() -> None:
    result, link = run(ZERO_WINDOW, synack(65535))
    assert result.verdict == Verdict.INCONCLUSIVE
    assert result.reason.startswith("precondition not reached at step 2 (the target's receive window is closed): ")
    assert "window" in result.reason
    assert (
        result.failure is not None
        and result.failure.step == 2
        and result.failure.line == line_of(ZERO_WINDOW, "window: 0}")
    )
    assert "win 65535" in result.failure.actual
    assert [s.outcome for s in result.steps] == ["ok", "inconclusive"]
    assert len(sent(link)) == 1  # the case stopped there: the RST was never sent


def test_a_precondition_reached_lets_the_case_go_on() -> None:
    result, link = run(ZERO_WINDOW, synack(0))
    assert result.verdict == Verdict.PASS, result.reason
    assert [s.flags for s in sent(link)] == [SYN, RST]


@pytest.mark.parametrize(
    ("step", "message"),
    [
        ("  - send: {flags: S}\n    precondition: a SYN was sent\n", "only an expect or a check can be a precondition"),
        ("  - expect: {flags: SA}\n    precondition: ''\n", "precondition must say what the step sets up"),
    ],
)
def test_a_precondition_is_an_expect_or_a_check_and_says_what_it_sets_up(step: str, message: str) -> None:
    with pytest.raises(CaseFormatError, match=message):
        parse_case(case_text(step), "inline.yaml")


# ---- the IP header's ECN field (RFC 3168) --------------------------------------------------------------------------
ECN_DATA = case_text(
    "  - send: {flags: S, seq: l_isn, options: [{mss: 1460}]}\n  - expect: {flags: SA, ack: l_isn + 1, ecn: not-ect}\n"
)


def marked(packet: bytes, codepoint: int) -> bytes:
    """The same IPv4 packet with its ECN field set (the header checksum is not checked on parsing)."""
    return packet[:1] + bytes([(packet[1] & 0xFC) | codepoint]) + packet[2:]


@pytest.mark.parametrize(("codepoint", "name"), [(1, "ect1"), (2, "ect0"), (3, "ce")])
def test_a_segment_marked_ecn_capable_fails_an_expectation_of_not_ect(codepoint: int, name: str) -> None:
    def script(seg: Segment) -> list[bytes]:
        return [marked(reply(seg, "SA", 7000, seg.seq + 1), codepoint)] if seg.flags == SYN else []

    result, _ = run(ECN_DATA, script)
    assert result.verdict == Verdict.FAIL
    assert result.failure is not None and result.failure.mismatches == [f"ecn: expected not-ect, got {name}"]
    assert result.failure.actual.endswith(f"len 0 {name}")  # the summary shows a marked segment's ECN field
    assert "ecn not-ect" in result.failure.expected


def test_a_not_ect_segment_meets_the_expectation_and_both_families_are_read() -> None:
    result, _ = run(ECN_DATA, synack(65535))
    assert result.verdict == Verdict.PASS, result.reason
    v6 = IPv6(src="2001:2::1", dst="2001:2::2", tc=0b10110110) / TCP(sport=80, dport=4000, flags="SA")
    assert parse_packet(bytes(v6)).ecn == 0b10  # type: ignore[union-attr]
    v4 = IP(src="198.18.0.1", dst="198.18.0.2", tos=0b00000011) / TCP(sport=80, dport=4000, flags="SA")
    assert parse_packet(bytes(v4)).ecn == 0b11  # type: ignore[union-attr]


def test_an_expect_passes_over_a_retransmission_and_says_so_when_nothing_else_comes() -> None:
    """A resend of an earlier segment is not the answer an expect waits for: the step goes on waiting, and when
    nothing else comes the failure names the retransmission it passed over instead of calling it the answer."""
    text = case_text(
        "  - send: {flags: S, seq: l_isn}\n"
        "  - expect: {flags: SA, ack: l_isn + 1}\n"
        "  - send: {flags: A, seq: l_isn + 1, ack: t_isn + 1}\n"
        "  - expect: {flags: A, timeout: 80ms}\n"
    )
    result, _ = run(text, _synack_again(5000))
    assert result.verdict == Verdict.FAIL
    assert result.failure is not None and result.failure.actual.startswith("(nothing); passed over: ")
    assert "got nothing but the target's retransmission of " in result.reason
    result, _ = run(text, _synack_again(7000))  # a new SYN-ACK is an answer, and the wrong one
    assert result.verdict == Verdict.FAIL and result.reason.startswith("unexpected segment")
