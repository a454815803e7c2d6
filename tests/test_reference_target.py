"""The reference model as a target (kind ``reference``, conformance/targets/reference.py): the catalogue runs
against it in process, without a namespace or root, and every case it can judge PASSes under the profile the
model answers by; what it cannot judge is NOT-RUN with the reason its entry gives."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from pydantic import ValidationError

from conformance.run import CaseResult, RunOptions, SuiteRun, jobs_from_paths
from conformance.targets.config import TargetConfig
from conformance.vocabulary import Verdict
from support import REPO, TARGETS

FAST = [job for job in jobs_from_paths([REPO / "testcases"], REPO) if "slow" not in job.case.meta.tags]


def run_on(target: str, profile: str, tmp_path: Path) -> list[CaseResult]:
    suite = SuiteRun(RunOptions(target=target, targets_file=TARGETS, profile=profile, run_dir=tmp_path / "run",
                                rootdir=REPO))  # fmt: skip
    try:
        return suite.run(FAST)
    finally:
        suite.stop()


@pytest.mark.parametrize(
    ("target", "profile"),
    [
        ("reference", "rfc9293"),
        ("reference", "rfc5961"),
        ("reference-rfc793", "rfc793"),
        ("reference-rfc1337", "rfc1337"),
    ],
)
def test_every_case_the_model_can_judge_passes_under_the_profile_it_answers_by(
    target: str, profile: str, tmp_path: Path
) -> None:
    results = run_on(target, profile, tmp_path)
    verdicts = Counter(r.verdict for r in results)
    wrong = {r.job.label: r.reason for r in results if r.verdict in (Verdict.FAIL, Verdict.ERROR)}
    assert wrong == {}
    assert verdicts[Verdict.PASS] >= 280, verdicts
    for r in results:
        if r.verdict == Verdict.NOT_RUN:  # a capability the model lacks, or a reason its entry declares
            assert r.reason.startswith(("target lacks ", "the reference model cannot judge this case (")), r.reason
        if r.verdict == Verdict.INCONCLUSIVE:  # the model's window never closes: the case's precondition
            assert r.reason.startswith("precondition not reached"), r.reason


RFC5961_NOT_RFC793 = {"SYNC-CW-SYN-01", "SYNC-FW2-SYN-01", "SYNC-LA-SYN-01", "RST-EST-INWIN-01", "RST-EST-INWIN-02",
                      "RST-SYNEST-01", "RST-SYNRCVD-02", "TW-RST-INWIN-01"}  # fmt: skip


def test_the_models_choice_is_what_is_graded(tmp_path: Path) -> None:
    """The model answering with RFC 5961's challenge ACKs, judged under rfc793: exactly the cases where RFC 793
    resets instead FAIL, each naming the challenge ACK it saw."""
    results = run_on("reference", "rfc793", tmp_path)
    failed = {r.job.case.id for r in results if r.verdict == Verdict.FAIL}
    assert {c for c in failed if not c.startswith("CELL-")} == RFC5961_NOT_RFC793
    assert {c for c in failed if c.startswith("CELL-")} >= {"CELL-EST-SYN-LEFT", "CELL-EST-RST-RIGHT"}
    assert all("challenge" in r.reason for r in results if r.verdict == Verdict.FAIL)


def test_only_the_reference_kind_may_declare_what_it_cannot_judge() -> None:
    with pytest.raises(ValidationError, match="cannot_judge"):
        TargetConfig(name="x", kind="local", cannot_judge={"isn": "no"})
    entry = TargetConfig(name="r", kind="reference", cannot_judge={"isn": "no clock"})
    assert (
        entry.cannot_judge_reason("ISN-CLOCK-01", ["isn"])
        == "the reference model cannot judge this case (isn): no clock"
    )
    assert entry.cannot_judge_reason("HS-PASSIVE-01", ["handshake"]) is None
    with pytest.raises(ValidationError, match="no `link`"):
        TargetConfig(name="r", kind="reference", link={"type": "afpacket", "interface": "eth0"})


def test_mutants_of_the_model_are_killed_by_the_cases_that_exercise_their_rule() -> None:
    from conformance.mutation import measure, summary
    from conformance.oracle.mutants import Mutant

    files = [REPO / "testcases/reset/established-rst-right-edge.yaml", REPO / "testcases/reset/syn-in-established.yaml",
             REPO / "testcases/handshake/passive-open.yaml"]  # fmt: skip
    mutants = [
        Mutant("acceptability", "right-edge-inside"),  # Linux's off-by-one: RST-EST-EDGE-01 must kill it
        Mutant("listen.syn", "ack+1"),  # a SYN-ACK acknowledging the wrong number
        Mutant("syn.challenge", "reset"),  # RFC 793's reset: allowed under rfc9293, so it survives
        Mutant("rst.time-wait-1337", "silent"),  # never used by a model answering as rfc9293
    ]
    said: list[str] = []
    outcomes = {o.mutant.name: o for o in measure(jobs_from_paths(files, REPO), "reference", TARGETS, "rfc9293", REPO,
                                                   mutants, said.append)}  # fmt: skip
    assert said and said[0].startswith("baseline: 6 case items judged")
    assert outcomes["acceptability/right-edge-inside"].status == "killed"
    assert any("RST-EST-EDGE-01" in k for k in outcomes["acceptability/right-edge-inside"].killers)
    assert outcomes["listen.syn/ack+1"].status == "killed"
    assert outcomes["syn.challenge/reset"].status == "survived" and outcomes["syn.challenge/reset"].changed > 0
    assert outcomes["rst.time-wait-1337/silent"].status == "not exercised"
    places = summary(list(outcomes.values()))["requirements"]  # the score per RFC place the rules cite
    assert places["rfc9293:3.10.7.4"]["killed"] >= 1 and places["rfc9293:3.10.7.2"]["killed"] == 1
    assert places["rfc5961:4.2"] == {"killed": 0, "survived": 1, "score": 0.0}
    assert "rfc1337:3" not in places  # its only mutant was not exercised
    doc = summary(list(outcomes.values()))
    assert (doc["killed"], doc["exercised"], doc["score"]) == (2, 3, 0.6667)
    assert [s["mutant"] for s in doc["survivors"]] == ["syn.challenge/reset"]
