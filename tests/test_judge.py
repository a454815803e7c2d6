"""The one judge (conformance/grading/judge.py): verdicts from recorded facts, per profile, and re-grading a
finished run offline (conformance/results.py) to the same verdicts a run under that profile gives."""

from __future__ import annotations

import re

import pytest

from conformance.grading.judge import STALE, UNDECIDED, WAIVED, judge_attempt, verdicts_by_profile, waiver
from conformance.results import regrade, rejudge
from conformance.vocabulary import PROFILES, Verdict
from support.fakes import FakeAgent, case_text, reply, run

CHALLENGE = {"step": 2, "line": 9, "path": "steps[1]", "label": "challenge-ack", "text": "challenge ACK",
             "conforms": ["rfc9293", "rfc5961"], "seen": "A seq 5 ack 6", "expected": "[challenge-ack] A | [reset] R",
             "repeated": False,
             "alternatives": [{"label": "challenge-ack", "expect": "A", "conforms": ["rfc9293", "rfc5961"]},
                              {"label": "reset", "expect": "R", "conforms": ["rfc9293", "rfc793"]}]}  # fmt: skip


def facts(outcome: str = "completed", **extra: object) -> dict:
    base: dict = {"outcome": outcome, "reason": "all steps matched", "failure": None, "absence": False,
                  "repeated_segment": False, "capture_losses": 0, "impairment": None, "behaviours": []}  # fmt: skip
    return base | extra


@pytest.mark.parametrize(
    ("outcome", "verdict"),
    [("completed", Verdict.PASS), ("deviated", Verdict.FAIL), ("undecidable", Verdict.INCONCLUSIVE),
     ("broken", Verdict.ERROR), ("unsupported", Verdict.NOT_RUN)],
)  # fmt: skip
def test_each_outcome_has_its_verdict(outcome: str, verdict: Verdict) -> None:
    assert judge_attempt(facts(outcome), "rfc9293").verdict == verdict


@pytest.mark.parametrize(("profile", "verdict"), [("rfc9293", Verdict.PASS), ("rfc5961", Verdict.PASS),
                                                  ("rfc793", Verdict.FAIL), ("rfc1337", Verdict.FAIL)])  # fmt: skip
def test_a_behaviour_conforms_only_under_its_profiles(profile: str, verdict: Verdict) -> None:
    judged = judge_attempt(facts(behaviours=[CHALLENGE]), profile, "the requirement [MUST; MUST-10]")
    assert judged.verdict == verdict and judged.behaviour == "challenge-ack"
    if verdict == Verdict.FAIL:
        assert judged.failure is not None and judged.failure["step"] == 2 and judged.failure["kind"] == "expect_one_of"
        assert judged.failure["actual"] == "A seq 5 ack 6" and judged.failure["requirement"].endswith("MUST-10]")
        assert f"does not conform under profile {profile}" in judged.reason
        # the evidence names what would have conformed under this profile, not every alternative of the step
        expected = {"rfc793": "[reset] R", "rfc1337": "(no alternative of this step conforms under rfc1337)"}
        assert judged.failure["expected"] == expected[profile]


def test_a_nonconforming_behaviour_is_the_evidence_even_when_a_later_step_failed() -> None:
    later = {"step": 5, "line": 20, "path": "steps[4]", "kind": "expect", "expected": "A", "actual": "(nothing)",
             "mismatches": [], "requirement": "r"}  # fmt: skip
    judged = judge_attempt(facts("deviated", behaviours=[CHALLENGE], failure=later), "rfc793")
    assert judged.verdict == Verdict.FAIL and judged.failure["step"] == 2


@pytest.mark.parametrize(
    ("extra", "verdict"),
    [
        ({"capture_losses": 3}, Verdict.INCONCLUSIVE),  # a silence window may have missed a segment
        ({"impairment": "loss 1%", "absence": True}, Verdict.INCONCLUSIVE),
        ({"impairment": "loss 1%", "absence": False}, Verdict.FAIL),  # a wrong segment is not explained by loss
        ({"impairment": "duplicate 1%", "repeated_segment": True}, Verdict.INCONCLUSIVE),
        ({"impairment": "delay 5ms", "absence": True}, Verdict.FAIL),  # a delay loses nothing
    ],
)
def test_doubt_from_the_link_or_the_capture(extra: dict, verdict: Verdict) -> None:
    assert judge_attempt(facts("deviated", reason="expected SA, got nothing", **extra), "rfc9293").verdict == verdict


def test_a_pass_with_capture_losses_is_inconclusive() -> None:
    assert judge_attempt(facts(capture_losses=1), "rfc9293").verdict == Verdict.INCONCLUSIVE


def test_verdicts_by_profile_cover_every_profile() -> None:
    verdicts = verdicts_by_profile([facts(behaviours=[CHALLENGE])])
    assert set(verdicts) == set(PROFILES)
    assert verdicts["rfc9293"] == "PASS" and verdicts["rfc793"] == "FAIL"


@pytest.mark.parametrize(
    ("verdict", "listed", "impaired", "status"),
    [(Verdict.FAIL, "FAIL", False, WAIVED), (Verdict.PASS, "FAIL", False, STALE), (Verdict.ERROR, "FAIL", False, STALE),
     (Verdict.INCONCLUSIVE, "FAIL", True, UNDECIDED), (Verdict.INCONCLUSIVE, "FAIL", False, STALE),
     (Verdict.NOT_RUN, "FAIL", False, None), (Verdict.FAIL, None, False, None)],
)  # fmt: skip
def test_known_deviations(verdict: Verdict, listed: str | None, impaired: bool, status: str | None) -> None:
    assert waiver(verdict, listed, impaired) == status


# ---- re-grading offline gives what a run under that profile gives ------------------------------------------------

SYN_IN_ESTABLISHED = case_text(
    "  - use: passive-open\n"
    "  - send: {flags: S, seq: l_nxt, options: [{mss: 1460}]}\n"
    "  - expect_one_of:\n"
    "      - label: challenge-ack\n"
    "        behaviour: challenge ACK; connection kept\n"
    "        expect: {flags: A, seq: t_nxt, ack: l_nxt, len: 0}\n"
    "        conforms: [rfc9293, rfc5961]\n"
    "        then:\n"
    "          - ut: {op: state, state: ESTABLISHED}\n"
    "      - label: reset\n"
    "        behaviour: reset; connection aborted (RFC 793)\n"
    "        expect: {flags: R, len: 0}\n"
    "        conforms: [rfc9293, rfc793]\n",
    requires="[ut.listen, ut.accept, ut.state]",
)


def _target(answer: str):  # type: ignore[no-untyped-def]
    syns: list = []

    def script(seg):  # type: ignore[no-untyped-def]
        if seg.flags != 0x02:
            return []
        syns.append(seg)
        if len(syns) == 1:
            return [reply(seg, "SA", 1000, seg.seq + 1)]
        return [reply(seg, "A", 1001, seg.seq)] if answer == "challenge" else [reply(seg, "R", 1001)]

    return script


def _record(answer: str, profile: str) -> dict:
    """A results.json-shaped record of one run of the case under ``profile``."""
    from conformance.engine.context import requirement_line
    from conformance.model.loader import parse_case
    from conformance.results import case_record

    agent = FakeAgent({"listen": {"sock": 3, "port": 4242}, "accept": {"sock": 4}, "state": {"state": "ESTABLISHED"}})
    result, _ = run(SYN_IN_ESTABLISHED, _target(answer), agent=agent,
                    caps={"ut.listen", "ut.accept", "ut.state"}, profile=profile)  # fmt: skip
    case = parse_case(SYN_IN_ESTABLISHED, "inline.yaml")
    assert result.judgement.failure is None or requirement_line(case) == result.judgement.failure["requirement"]
    identity = {"id": "REPLAY-01", "family": "ipv4", "level": "MUST", "requirement": case.meta.requirement,
                "refs": list(case.meta.refs), "requirements": [], "file": "inline.yaml", "line": 1}  # fmt: skip
    return case_record(identity, [result.record], result.judgement, pcap=None, rerun="", known=None)


def _without_numbers(value: object) -> str:
    return re.sub(r"\d+", "N", repr(value))


@pytest.mark.parametrize("answer", ["challenge", "reset"])
@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_regrading_gives_the_verdict_of_a_run_under_that_profile(answer: str, profile: str) -> None:
    direct = _record(answer, profile)
    regraded = rejudge(_record(answer, "rfc9293"), profile)
    assert (regraded["verdict"], regraded["reason"]) == (direct["verdict"], direct["reason"])
    # Two runs, two random ISNs: the evidence agrees but for the numbers.
    assert _without_numbers(regraded["failure"]) == _without_numbers(direct["failure"])
    assert [s["outcome"] for s in regraded["steps"]] == [s["outcome"] for s in direct["steps"]]
    assert regraded["verdicts"] == direct["verdicts"]  # the same facts, whatever the profile of the run


def test_a_regraded_step_goes_back_to_what_the_engine_saw() -> None:
    failed = _record("challenge", "rfc793")
    step = next(s for s in failed["steps"] if s["kind"] == "expect_one_of")
    assert step["outcome"] == "fail" and step["engine_outcome"] == "ok"
    passed = rejudge(failed, "rfc9293")
    step = next(s for s in passed["steps"] if s["kind"] == "expect_one_of")
    assert passed["verdict"] == "PASS" and step["outcome"] == "ok" and "engine_outcome" not in step


def test_regrading_a_document_renames_the_profile_and_grades_again() -> None:
    doc = {"schema": "tcp-conformance/results/2", "profile": "rfc9293", "finished": "then", "environment": {},
           "target": {"name": "x"}, "cases": [_record("reset", "rfc9293")]}  # fmt: skip
    out = regrade(doc, "rfc5961")
    assert out["profile"] == "rfc5961" and out["regraded_from"]["profile"] == "rfc9293"
    assert out["summary"]["FAIL"] == 1 and out["grade"]["conformant"] is False


def test_records_written_before_schema_2_cannot_be_regraded() -> None:
    with pytest.raises(ValueError, match="keeps no attempt facts"):
        rejudge({"id": "X", "verdict": "PASS"}, "rfc793")
