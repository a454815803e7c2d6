"""Known deviations: listed cases keep their verdict but do not fail the run; stale entries do."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from support import needs_netns, run_suite

pytestmark = [needs_netns, pytest.mark.netns]

CASE = """\
    id: WRONG-ACK-01
    title: A case whose expectation no stack meets
    refs: [rfc9293:3.5.2]
    requirement: The suite's own test needs a FAIL it can declare as a known deviation.
    level: MUST
    families: [ipv4]
    steps:
      - send: {flags: S, seq: l_isn}
      - expect: {flags: RA, seq: 0, ack: ACK_VALUE}
    """


def _setup(tmp_path: Path, ack: str, deviations: str) -> Path:
    (tmp_path / "testcases").mkdir()
    (tmp_path / "testcases" / "case.yaml").write_text(textwrap.dedent(CASE).replace("ACK_VALUE", ack))
    (tmp_path / "known.yaml").write_text(textwrap.dedent(deviations))
    targets = tmp_path / "targets.yaml"
    targets.write_text("targets:\n  local:\n    kind: local\n    expectations: known.yaml\n")
    return targets


def test_a_known_deviation_is_xfail_and_keeps_its_verdict(tmp_path: Path) -> None:
    _setup(tmp_path, "l_isn + 2", """\
        deviations:
          WRONG-ACK-01:
            verdict: FAIL
            reason: the suite's own test lists this FAIL as known
        """)  # fmt: skip
    run = run_suite(tmp_path, f"--rootdir={tmp_path}", "testcases", cwd=tmp_path)
    assert run.returncode == 0, run.stdout[-2000:]
    assert "1 xfailed" in run.stdout
    case = run.results["cases"][0]
    assert case["verdict"] == "FAIL"
    assert case["known_deviation"] == {"verdict": "FAIL", "reason": "the suite's own test lists this FAIL as known"}
    assert "FAIL (known deviation) WRONG-ACK-01 [ipv4]" in run.stdout


def test_a_listed_case_that_passes_fails_the_run(tmp_path: Path) -> None:
    _setup(tmp_path, "l_isn + 1", """\
        deviations:
          WRONG-ACK-01[ipv4]:
            verdict: FAIL
            reason: listed, but the target meets the requirement
        """)  # fmt: skip
    run = run_suite(tmp_path, f"--rootdir={tmp_path}", "testcases", cwd=tmp_path)
    assert run.returncode == 1
    assert "expectations out of date: WRONG-ACK-01 is listed as a known FAIL" in run.stdout
    assert run.results["cases"][0]["verdict"] == "PASS"


def test_a_malformed_expectations_file_is_a_usage_error(tmp_path: Path) -> None:
    _setup(tmp_path, "l_isn + 1", "deviations:\n  wrong-id:\n    verdict: FAIL\n    reason: x\n")
    run = run_suite(tmp_path, f"--rootdir={tmp_path}", "testcases", cwd=tmp_path)
    assert run.returncode == 4
    assert "known.yaml:2:3: deviations.wrong-id: 'wrong-id' is not a case id" in run.stderr


def test_a_group_lists_the_cases_one_cause_explains(tmp_path: Path) -> None:
    from conformance.targets.config import TargetConfigError, load_expectations, load_targets

    targets = _setup(tmp_path, "l_isn + 2", """\
        deviations:
          one-cause:
            verdict: FAIL
            reason: one reviewed cause shared by two cases
            cases: [WRONG-ACK-01, "OTHER-01[ipv6]"]
        """)  # fmt: skip
    entry = load_targets(targets)["local"]
    found = load_expectations(targets, entry)
    assert set(found) == {"WRONG-ACK-01", "OTHER-01[ipv6]"}
    assert found["WRONG-ACK-01"].reason == "one reviewed cause shared by two cases"
    (tmp_path / "known.yaml").write_text(textwrap.dedent("""\
        deviations:
          One-Cause:
            verdict: FAIL
            reason: a group's name is lower case
            cases: [WRONG-ACK-01]
          WRONG-ACK-01:
            verdict: FAIL
            reason: listed twice
        """))  # fmt: skip
    with pytest.raises(TargetConfigError, match="named in lower case"):
        load_expectations(targets, entry)
