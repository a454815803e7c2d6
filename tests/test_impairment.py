"""Impaired links: the netem-style description, the impaired link itself, the retry decision and real
cases on a lossy link (docs/robustness.md)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import deque

import pytest

from conformance.grading.judge import Judgement, another_attempt, judge_attempt, judge_case
from conformance.model.loader import parse_case
from conformance.targets import netns
from conformance.targets.config import TargetConfig
from conformance.targets.local import LocalTarget
from conformance.targets.session import Session
from conformance.vocabulary import Verdict
from conformance.wire.build import OutSegment, build_packet
from conformance.wire.impaired import ImpairedLink
from conformance.wire.impairment import Impairment, ImpairmentError, parse_impairment
from conformance.wire.link import LinkBase
from conformance.wire.segment import parse_packet
from conformance.wire.tun import Frame
from support import REPO, needs_netns, run_suite
from support.fakes import FakeAgent, FakeLink, Replayed, case_text, reply, rst_ack, run_session

# ---- the description ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("loss 1%", Impairment(loss=0.01, text="loss 1%")),
        ("delay 5ms 2ms", Impairment(delay_s=0.005, jitter_s=0.002, text="delay 5ms 2ms")),
        ("duplicate 0.5%", Impairment(duplicate=0.005, text="duplicate 0.5%")),
        ("reorder 25% delay 5ms", Impairment(reorder=0.25, delay_s=0.005, text="reorder 25% delay 5ms")),
        ("  loss 2%   delay 1s ", Impairment(loss=0.02, delay_s=1.0, text="loss 2% delay 1s")),
    ],
)
def test_descriptions_in_netem_words_parse(text: str, expected: Impairment) -> None:
    assert parse_impairment(text) == expected
    assert parse_impairment(text).active


@pytest.mark.parametrize("text", ["", "none", None])
def test_no_description_is_the_clean_link(text: str | None) -> None:
    assert not parse_impairment(text).active


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("loss 3", "loss: expected a percentage like 1% or 0.5%, got '3'"),
        ("loss 101%", "got '101%'"),
        ("delay fast", "delay: expected a time like 5ms"),
        ("corrupt 1%", "unknown word 'corrupt'"),
        ("reorder 25%", "reorder needs a delay"),
        ("loss 1% loss 2%", "'loss' is given twice"),
        ("delay 2ms 5ms", "the jitter is larger than the delay"),
        ("delay 20s", "longer than the 10 s"),
        ("loss", "'loss' needs a percentage"),
    ],
)
def test_bad_descriptions_are_one_line_errors(text: str, message: str) -> None:
    with pytest.raises(ImpairmentError) as info:
        parse_impairment(text)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_a_bad_target_entry_impairment_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown word 'jitter'"):
        TargetConfig(kind="local", impair="jitter 5ms")


# ---- the impaired link, without a network ---------------------------------------------------------


class QueueLink(LinkBase):
    """A link whose inbound frames are queued by the test and whose sends are recorded (any destination)."""

    def __init__(self) -> None:
        self.sent: list[tuple[float, bytes]] = []
        self.frames: deque[Frame] = deque()

    def check_destination(self, packet: bytes) -> None:
        pass

    def poll_frame(self) -> Frame | None:
        return self.frames.popleft() if self.frames else None

    def fileno(self) -> int | None:
        return None

    def send(self, packet: bytes) -> None:
        self.sent.append((time.monotonic(), packet))

    def receive(self, timeout: float) -> Frame | None:
        if self.frames:
            return self.frames.popleft()
        time.sleep(min(timeout, 0.001))
        return None

    def flush(self) -> int:
        return 0

    def close(self) -> None:
        pass


def _receive_all(link: ImpairedLink, within: float) -> list[Frame]:
    out, deadline = [], time.monotonic() + within
    while (frame := link.receive(max(0.0, deadline - time.monotonic()))) is not None:
        out.append(frame)
    return out


def test_loss_drops_in_both_directions_and_duplicates_double() -> None:
    inner = QueueLink()
    link = ImpairedLink(inner, parse_impairment("loss 30%"), seed=7)
    for i in range(1000):
        link.send(b"out%d" % i)
        inner.frames.append(Frame(b"in%d" % i, 0.0, True))
    received = _receive_all(link, 0.2)
    assert 600 < len(inner.sent) < 800, len(inner.sent)
    assert 600 < len(received) < 800, len(received)
    assert link.outbound.counters.dropped + len(inner.sent) == 1000
    link.close()

    inner = QueueLink()
    link = ImpairedLink(inner, parse_impairment("duplicate 100%"), seed=7)
    link.send(b"x")
    inner.frames.append(Frame(b"y", 0.0, True))
    assert [p for _, p in inner.sent] == [b"x", b"x"]
    assert [f.data for f in _receive_all(link, 0.05)] == [b"y", b"y"]


def test_delay_holds_frames_in_both_directions_and_reorder_overtakes() -> None:
    inner = QueueLink()
    link = ImpairedLink(inner, parse_impairment("delay 50ms"), seed=1)
    sent_at = time.monotonic()
    link.send(b"a")
    assert inner.sent == []  # held, not written yet
    inner.frames.append(Frame(b"b", 100.0, True))
    assert link.receive(0.02) is None  # not due yet
    frame = link.receive(1.0)
    assert frame is not None and frame.data == b"b" and frame.ts == pytest.approx(100.05)
    time.sleep(0.06)
    assert [p for _, p in inner.sent] == [b"a"] and inner.sent[0][0] - sent_at >= 0.05
    link.close()

    inner = QueueLink()
    link = ImpairedLink(inner, parse_impairment("reorder 50% delay 30ms"), seed=3)
    for i in range(40):
        inner.frames.append(Frame(bytes([i]), 0.0, True))
    order = [f.data[0] for f in _receive_all(link, 0.2)]
    assert sorted(order) == list(range(40))  # nothing lost
    assert order != sorted(order)  # some overtook the delayed ones
    link.close()


def test_the_impaired_link_still_refuses_undeclared_destinations() -> None:
    class Guarded(QueueLink):
        def check_destination(self, packet: bytes) -> None:
            raise PermissionError("undeclared")

    link = ImpairedLink(Guarded(), parse_impairment("delay 10ms"))
    with pytest.raises(PermissionError):
        link.send(b"x")


# ---- what the engine concludes on an impaired link (scripted target, no network) ------------------


class DeclaredImpaired(FakeLink):
    """The fake target, on a link declared impaired (the engine is told only the description)."""

    def __init__(self, script, impairment: str) -> None:  # type: ignore[no-untyped-def]
        super().__init__(script)
        self.impairment = parse_impairment(impairment)


def _run(text: str, link: FakeLink, agent: FakeAgent | None = None) -> Replayed:
    session = Session(link, agent, "ipv4", "198.18.0.2", "198.18.0.1")  # type: ignore[arg-type]
    return run_session(parse_case(text, "inline.yaml"), session)


EXPECT_RST = case_text("  - send: {flags: S, seq: l_isn}\n  - expect: {flags: RA, ack: l_isn + 1, timeout: 50ms}\n")


def test_a_missing_segment_on_a_lossy_link_is_inconclusive_but_fail_on_a_clean_one() -> None:
    assert _run(EXPECT_RST, FakeLink()).verdict == Verdict.FAIL
    result = _run(EXPECT_RST, DeclaredImpaired(None, "loss 1%"))
    assert result.verdict == Verdict.INCONCLUSIVE
    assert "got nothing; but the link loses frames (loss 1%)" in result.reason
    # Delay alone loses nothing: absence still counts.
    assert _run(EXPECT_RST, DeclaredImpaired(None, "delay 5ms")).verdict == Verdict.FAIL


def test_a_wrong_segment_is_a_fail_even_on_a_lossy_link() -> None:
    result = _run(EXPECT_RST, DeclaredImpaired(rst_ack(ack_offset=2), "loss 30%"))
    assert result.verdict == Verdict.FAIL
    assert result.reason.startswith("unexpected segment: ack:")


def test_a_duplicated_segment_on_a_duplicating_link_is_inconclusive() -> None:
    text = case_text(
        "  - send: {flags: S, seq: l_isn}\n"
        "  - expect: {flags: RA, ack: l_isn + 1}\n"
        "  - expect_none: {for: 50ms, flags: RA}\n"
    )

    def twice(seg):  # type: ignore[no-untyped-def]
        return [reply(seg, "RA", 0, seg.seq + 1)] * 2

    assert _run(text, FakeLink(twice)).verdict == Verdict.FAIL
    result = _run(text, DeclaredImpaired(twice, "duplicate 0.5%"))
    assert result.verdict == Verdict.INCONCLUSIVE
    assert "a copy of one already seen" in result.reason


def test_on_a_reordering_link_the_expected_segment_may_come_second() -> None:
    text = case_text(
        "  - send: {flags: S, seq: l_isn}\n  - expect: {flags: RA, ack: l_isn + 1}\n  - expect: {flags: A, seq: 5}\n"
    )

    def swapped(seg):  # type: ignore[no-untyped-def]
        return [reply(seg, "A", 5, seg.seq + 1), reply(seg, "RA", 0, seg.seq + 1)]

    clean = _run(text, FakeLink(swapped))
    assert clean.verdict == Verdict.FAIL and clean.reason.startswith("unexpected segment: flags")
    result = _run(text, DeclaredImpaired(swapped, "reorder 25% delay 5ms"))
    assert result.verdict == Verdict.PASS, result.reason  # both matched, each by its own step


class Timed(DeclaredImpaired):
    def __init__(self, impairment: str) -> None:
        super().__init__(None, impairment)
        self.times: list[float] = []

    def send(self, packet: bytes) -> None:
        self.times.append(time.monotonic())
        super().send(packet)


def test_on_a_reordering_link_the_tester_paces_its_own_segments() -> None:
    text = case_text("  - send: {flags: S, seq: l_isn}\n  - send: {flags: R, seq: l_isn + 1}\n")
    link = Timed("delay 20ms 10ms")
    assert _run(text, link).verdict == Verdict.PASS
    assert link.times[1] - link.times[0] >= 0.03  # delay + jitter: the second cannot overtake the first
    clean = Timed("loss 1%")
    _run(text, clean)
    assert clean.times[1] - clean.times[0] < 0.01


def test_on_a_delaying_link_the_upper_tester_is_asked_after_the_segment_arrived() -> None:
    class TimedAgent(FakeAgent):
        def submit(self, op, **args):  # type: ignore[no-untyped-def]
            self.at = time.monotonic()
            return super().submit(op, **args)

    text = case_text("  - send: {flags: S, seq: l_isn}\n  - ut: listen\n")
    for impairment, least, most in (("delay 30ms 10ms", 0.04, 1.0), ("loss 1%", 0.0, 0.01)):
        link, agent = Timed(impairment), TimedAgent({"listen": {"sock": 1, "port": 5000}})
        assert _run(text, link, agent).verdict == Verdict.PASS
        assert least <= agent.at - link.times[0] < most, impairment


# ---- the retry decision on synthetic attempts -----------------------------------------------------


OUTCOME = {Verdict.PASS: "completed", Verdict.FAIL: "deviated", Verdict.INCONCLUSIVE: "undecidable",
           Verdict.ERROR: "broken", Verdict.NOT_RUN: "unsupported"}  # fmt: skip


def attempt(verdict: Verdict, step: int = 2, fields: tuple[str, ...] = ("ack",), nothing: bool = False,
            impairment: str | None = "loss 1%") -> dict:  # fmt: skip
    """The facts of one attempt that the engine would have recorded, for the judge."""
    facts: dict = {"outcome": OUTCOME[verdict], "reason": f"{verdict} at {step}", "failure": None,
                   "absence": False, "impairment": impairment, "behaviours": []}  # fmt: skip
    if verdict == Verdict.FAIL:
        mismatches = [] if nothing else [f"{f}: expected 1, got {step * 7}" for f in fields]
        actual = "(nothing)" if nothing else "RA seq 0"
        facts["failure"] = {"step": step, "line": 10, "path": "steps[1]", "kind": "expect", "expected": "RA",
                            "actual": actual, "mismatches": mismatches, "requirement": "req"}  # fmt: skip
        facts["impairment"] = None if impairment is None else "delay 5ms"  # a FAIL the link cannot explain away
    return facts


P, F, INC, E, N = Verdict.PASS, Verdict.FAIL, Verdict.INCONCLUSIVE, Verdict.ERROR, Verdict.NOT_RUN


def combine(attempts: list[dict], impairment: str | None) -> Judgement:
    for a in attempts:
        a["impairment"] = impairment if a["outcome"] != "deviated" or impairment is None else a["impairment"]
    return judge_case(attempts, "rfc9293")


def test_a_single_attempt_is_judged_alone() -> None:
    result = combine([attempt(F, impairment=None)], None)
    assert result.verdict == F and result.attempts == [] and result.chosen == 0


def test_attempts_that_disagree_are_inconclusive_naming_the_impairment() -> None:
    result = judge_case([attempt(F), attempt(P)], "rfc9293")
    assert result.verdict == INC
    assert result.reason.startswith("attempts disagree under impairment 'delay 5ms': attempt 1: FAIL")
    assert [a["verdict"] for a in result.attempts] == ["FAIL", "PASS"]
    assert result.attempts[0]["failure_step"] == 2


def test_a_fail_the_same_way_in_every_attempt_stays_fail() -> None:
    result = judge_case([attempt(F), attempt(F), attempt(F)], "rfc9293")
    assert result.verdict == F
    assert "the same in all 3 attempts under impairment 'delay 5ms'" in result.reason
    assert result.failure is not None


def test_a_fail_with_an_extra_mismatch_from_the_link_is_still_the_same_way() -> None:
    attempts = [attempt(F, fields=("len",)), attempt(F, fields=("seq", "len")), attempt(F, fields=("len",))]
    assert judge_case(attempts, "rfc9293").verdict == F


@pytest.mark.parametrize(
    "attempts",
    [
        [attempt(F, step=2), attempt(F, step=3), attempt(F, step=2)],  # another step
        [attempt(F, fields=("ack",)), attempt(F, fields=("flags",)), attempt(F)],  # another field
        [attempt(F), attempt(F, nothing=True), attempt(F)],  # once wrong, once missing
    ],
)
def test_fails_in_different_ways_are_inconclusive(attempts: list[dict]) -> None:
    result = judge_case(attempts, "rfc9293")
    assert result.verdict == INC
    assert result.reason.startswith("attempts failed in different ways under impairment 'delay 5ms'")


@pytest.mark.parametrize(
    ("verdicts", "expected"),
    [
        ([INC, P], P),  # undecided, then decided
        ([E, INC, P], P),
        ([INC, INC, INC], INC),
        ([F, INC, F], INC),  # not every attempt could decide: no FAIL
        ([E, E, E], E),
        ([E, INC, E], INC),
    ],
)
def test_undecided_attempts(verdicts: list[Verdict], expected: Verdict) -> None:
    result = judge_case([attempt(v) for v in verdicts], "rfc9293")
    assert result.verdict == expected, result.reason
    assert len(result.attempts) == len(verdicts)


@pytest.mark.parametrize(
    ("verdicts", "limit", "again"),
    [([], 1, True), ([F], 1, False), ([F], 3, True), ([P], 3, False), ([N], 3, False), ([INC, E], 3, True),
     ([F, F, F], 3, False)],
)  # fmt: skip
def test_when_to_run_another_attempt(verdicts: list[Verdict], limit: int, again: bool) -> None:
    judged = [judge_attempt(attempt(v), "rfc9293") for v in verdicts]
    assert another_attempt(judged, limit) is again


def test_a_case_runs_once_on_a_clean_link_and_until_decided_otherwise() -> None:
    def run_until_decided(queue: list[Verdict], limit: int) -> tuple[Judgement, int]:
        attempts: list[dict] = []
        judged: list[Judgement] = []
        while another_attempt(judged, limit):  # the loop of SuiteRun.run_job
            attempts.append(attempt(queue.pop(0)))
            judged.append(judge_attempt(attempts[-1], "rfc9293"))
        return judge_case(attempts, "rfc9293"), len(attempts)

    verdict, runs = run_until_decided([F, P], 1)
    assert verdict.verdict == F and runs == 1
    verdict, runs = run_until_decided([INC, F, P, F], 5)
    assert verdict.verdict == INC and runs == 3


# ---- on the real local target ---------------------------------------------------------------------


def _syn(port: int) -> bytes:
    return build_packet(OutSegment("ipv4", "198.18.0.2", "198.18.0.1", port, 9, 1000, 0, 0x02, 65535))


def _probe(target: LocalTarget, count: int) -> tuple[int, int, float]:
    """SYNs to a closed port: (SYNs the target got, RSTs the tester got, shortest round trip in s)."""
    link = target.link
    assert link is not None
    link.flush()
    sent_at: dict[int, float] = {}
    for i in range(count):
        sent_at[20000 + i] = time.monotonic()
        link.send(_syn(20000 + i))
    delivered = rsts = 0
    rtt = float("inf")
    deadline = time.monotonic() + 1.0
    while (frame := link.receive(max(0.0, deadline - time.monotonic()))) is not None:
        seg = parse_packet(frame.data)
        if seg is None or not 20000 <= (seg.dport if frame.inbound else seg.sport) < 20000 + count:
            continue
        if frame.inbound:
            rsts += 1
            rtt = min(rtt, time.monotonic() - sent_at[seg.dport])
        else:
            delivered += 1  # the capture sees the tester's segment when the target receives it
    return delivered, rsts, rtt


@pytest.fixture
def make_target():
    started: list[LocalTarget] = []

    def make(impair: str) -> LocalTarget:
        target = LocalTarget(TargetConfig(kind="local", name="imp", impair=impair), worker=f"imp{len(started)}")
        started.append(target)
        target.start()
        return target

    yield make
    for target in started:
        target.stop()
        assert not os.path.exists(f"{netns.NETNS_DIR}/{target.ns}")


@needs_netns
@pytest.mark.netns
def test_the_impairment_is_installed_on_the_target_link_and_removed_with_it(make_target) -> None:  # type: ignore[no-untyped-def]
    clean = make_target("")
    assert not isinstance(clean.link, ImpairedLink)
    delivered, rsts, clean_rtt = _probe(clean, 20)
    assert (delivered, rsts) == (20, 20)
    delayed = make_target("delay 40ms")
    link = delayed.link
    assert isinstance(link, ImpairedLink) and str(link.impairment) == "delay 40ms"
    delivered, rsts, rtt = _probe(delayed, 20)
    assert (delivered, rsts) == (20, 20)
    assert rtt >= 0.08 > clean_rtt  # 40 ms each way
    writer = link._writer
    delayed.stop()
    assert delayed.link is None
    assert writer is not None and not writer.is_alive()


@needs_netns
@pytest.mark.netns
def test_loss_demonstrably_drops_packets_in_both_directions(make_target) -> None:  # type: ignore[no-untyped-def]
    target = make_target("loss 50%")
    delivered, rsts, _ = _probe(target, 200)
    assert 60 < delivered < 140, delivered  # tester -> target: about half arrive
    assert 20 < rsts < delivered * 0.8, (rsts, delivered)  # target -> tester: about half of the answers


@needs_netns
@pytest.mark.netns
def test_real_cases_under_heavy_loss_pass_or_are_inconclusive_never_fail(tmp_path) -> None:  # type: ignore[no-untyped-def]
    files = ["testcases/handshake/passive-open.yaml", "testcases/reset/closed-port-syn.yaml"]
    run = run_suite(tmp_path, *files, "--impair=loss 30%")
    cases = run.results["cases"]
    assert len(cases) == 4, run.stdout[-3000:]
    for case in cases:
        assert case["verdict"] in ("PASS", "INCONCLUSIVE"), (case["id"], case["reason"])
        assert case["impairment"] == "loss 30%"
        assert "--impair='loss 30%'" in case["rerun"] or "'--impair=loss 30%'" in case["rerun"]
        for a in case.get("attempt_summary", []):
            assert a["verdict"] != "FAIL" or case["verdict"] == "INCONCLUSIVE"
        assert len(case["attempts"]) == len(case.get("attempt_summary", [None]))  # the facts of every attempt


@needs_netns
@pytest.mark.netns
def test_a_clean_run_records_no_attempts_and_a_bad_option_is_one_line(tmp_path) -> None:  # type: ignore[no-untyped-def]
    run = run_suite(tmp_path, "testcases/reset/closed-port-syn.yaml")
    for case in run.results["cases"]:
        assert case["verdict"] == "PASS"
        assert len(case["attempts"]) == 1 and "attempt_summary" not in case and "impairment" not in case
    bad = subprocess.run(
        [sys.executable, "-m", "pytest", "--impair=loss 3", "testcases/reset/closed-port-syn.yaml"],
        cwd=REPO, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert bad.returncode == 4
    assert bad.stderr.strip() == (
        "ERROR: --impair: impairment 'loss 3': loss: expected a percentage like 1% or 0.5%, got '3'"
    )
