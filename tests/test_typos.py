"""A typo in a case is an error of the case, found before a packet is sent, never a verdict about the target:
each is one `file:line:col: path: message` line with a did-you-mean where one fits, from `check`, at pytest's
collection and from `python -m conformance run`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conformance.model.loader import CaseFormatError, parse_case
from support import REPO, run_suite

BASE = """\
id: TYPO-01
title: typo test
refs: [rfc9293:3.5]
requirement: a requirement written out in words
level: MUST
requires: [ut.listen, ut.accept, ut.state]
steps:
  - ut: listen
  - send: {flags: S, seq: l_isn, window: 65535, options: [{mss: 1460}, {wscale: 7}]}
  - expect: {flags: SA, ack: l_isn + 1}
  - send: {flags: A}
  - ut: accept
  - ut: {op: state, state: ESTABLISHED}
"""


def error_of(doc: str) -> str:
    with pytest.raises(CaseFormatError) as info:
        parse_case(doc, "typo.yaml")
    return str(info.value)


def test_the_base_case_is_valid() -> None:
    parse_case(BASE, "typo.yaml")


@pytest.mark.parametrize(
    ("old", "new", "where", "message"),
    [
        ("state: ESTABLISHED", "state: ESTABLISHD", "typo.yaml:13:28: steps[5].ut.state: ",
         "unknown state 'ESTABLISHD' (did you mean 'ESTABLISHED'?): the states are CLOSED, LISTEN, SYN-SENT,"),
        ("requires: [ut.listen,", "requires: [ut.lisen,", "typo.yaml:6:12: requires[0]: ",
         "unknown capability 'ut.lisen' (did you mean 'ut.listen'?)"),
        ("ack: l_isn + 1", "ack: l_isnn + 1", "typo.yaml:10:5: steps[2]: ",
         "'l_isnn' is not bound before this step (did you mean 'l_isn'?)"),
        ("  - send: {flags: A}", "  - send: {flags: A, ack: t_nxtt}", "typo.yaml:11:5: steps[3]: ",
         "'t_nxtt' is not bound before this step (did you mean 't_nxt'?)"),
        ("window: 65535", "window: 1e38", "typo.yaml:9:42: steps[1].send.window: ",
         "expected a whole number or an expression, not 1e+38"),
        ("window: 65535", "window: 70000", "typo.yaml:9:42: steps[1].send.window: ",
         "this field is 16 bits: 0..65535, not 70000"),
        ("{wscale: 7}", "{wscale: 300}", "typo.yaml:9:72: steps[1].send.options[1]: ",
         "wscale is 8 bits: 0..255, not 300"),
        ("{mss: 1460}", "{mss: 65536}", "typo.yaml:9:59: steps[1].send.options[0]: ",
         "mss is 16 bits: 0..65535, not 65536"),
        ("seq: l_isn,", "seq: 4294967296,", "typo.yaml:9:27: steps[1].send.seq: ",
         "this field is 32 bits: 0..4294967295, not 4294967296"),
        ("level: MUST", "level: MUS", "typo.yaml:5:8: level: ", "Input should be 'MUST', 'SHOULD', 'MAY' or 'INFO'"),
        ("ack: l_isn + 1}", "ack: 4294967296}", "typo.yaml:10:30: steps[2].expect.ack: ",
         "this field is 32 bits: 0..4294967295, not 4294967296"),
        ("ack: l_isn + 1}", "ack: l_isn + 1, window: 0..70000}", "typo.yaml:10:49: steps[2].expect.window: ",
         "this field is 16 bits: 0..65535, not 70000"),
        ("ack: l_isn + 1}", "ack: l_isn + 1, window: 100..10}", "typo.yaml:10:49: steps[2].expect.window: ",
         "the range 100..10 is empty (its low end is above its high end)"),
        ("  - ut: accept\n", "  - ut: {op: accept, result: ECONREFUSED}\n", "typo.yaml:12:30: steps[4].ut.result: ",
         "unknown result 'ECONREFUSED' (did you mean 'ECONNREFUSED'?)"),
    ],
)  # fmt: skip
def test_a_typo_is_one_error_line_at_its_place(old: str, new: str, where: str, message: str) -> None:
    assert old in BASE
    error = error_of(BASE.replace(old, new, 1))
    assert error.startswith(where + message), error


def test_a_name_is_bound_only_after_the_step_that_binds_it() -> None:
    used_before = BASE.replace("  - expect: {flags: SA, ack: l_isn + 1}", "  - send: {flags: A, ack: t_isn + 1}\n"
                               "  - expect: {flags: SA, ack: l_isn + 1}")  # fmt: skip
    assert "'t_isn' is not bound before this step" in error_of(used_before)
    bound = BASE.replace("  - send: {flags: A}", "  - bind: {my_mark: t_nxt + 5}\n  - send: {flags: A, ack: my_mark}")
    parse_case(bound, "typo.yaml")
    timer = BASE.replace("  - send: {flags: A}", "  - send: {flags: A, window: timer_syn_retransmissions}")
    parse_case(timer, "typo.yaml")  # a declared timer's value (targets.yaml timers:)
    misspelt_timer = BASE.replace("  - send: {flags: A}", "  - send: {flags: A, ack: timer_syn_rot_us}")
    assert "(did you mean 'timer_syn_rto_us'?)" in error_of(misspelt_timer)


def test_an_unknown_capability_in_targets_yaml_is_an_error_too(tmp_path: Path) -> None:
    from conformance.targets.config import TargetConfigError, load_targets

    path = tmp_path / "targets.yaml"
    path.write_text("targets:\n  box:\n    kind: reference\n    capabilities: [tcp.timestamp]\n")
    with pytest.raises(TargetConfigError, match=r"unknown capability 'tcp.timestamp' \(did you mean 'tcp.timestamps'"):
        load_targets(path)


@pytest.fixture
def typo_dir(tmp_path: Path) -> Path:
    cases = tmp_path / "testcases"
    cases.mkdir()
    (cases / "good.yaml").write_text(BASE)
    (cases / "state.yaml").write_text(BASE.replace("TYPO-01", "TYPO-02").replace("ESTABLISHED", "ESTABLISHD"))
    (cases / "ref.yaml").write_text(BASE.replace("TYPO-01", "TYPO-03").replace("rfc9293:3.5", "rfc9293:MUST-999"))
    return cases


def test_check_reports_every_bad_file_in_one_line_each(typo_dir: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "conformance", "check", str(typo_dir)], cwd=REPO,
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert lines[-1] == "1 valid, 2 invalid"
    assert any(line.endswith("ref.yaml:3:8: refs[0]: rfc9293:MUST-999 is not in the requirements registry "
                             "(conformance/grading/requirements.yaml)") for line in lines), lines  # fmt: skip
    assert any("state.yaml:13:28: steps[5].ut.state: unknown state 'ESTABLISHD'" in line for line in lines), lines


def test_a_broken_case_is_a_collection_error_never_a_verdict(tmp_path: Path, typo_dir: Path) -> None:
    run = run_suite(tmp_path, "--target=reference", str(typo_dir))
    assert run.returncode == 2, run.stdout[-2000:]  # pytest: errors during collection, nothing ran
    assert "rfc9293:MUST-999 is not in the requirements registry" in run.stdout
    assert "unknown state 'ESTABLISHD'" in run.stdout
    assert not (run.report_dir / "results.json").exists()
    cli = subprocess.run(
        [sys.executable, "-m", "conformance", "run", "--target=reference", f"--report-dir={tmp_path / 'cli'}",
         str(typo_dir / "ref.yaml")],
        cwd=REPO, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert cli.returncode == 2 and "rfc9293:MUST-999 is not in the requirements registry" in cli.stderr


def test_check_refuses_an_id_used_twice(tmp_path: Path) -> None:
    cases = tmp_path / "testcases"
    cases.mkdir()
    (cases / "a.yaml").write_text(BASE)
    (cases / "b.yaml").write_text(BASE)
    proc = subprocess.run([sys.executable, "-m", "conformance", "check", str(cases)], cwd=REPO,
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert proc.returncode == 1
    assert f"b.yaml:1:1: id: 'TYPO-01' is already used by {cases / 'a.yaml'}" in proc.stderr


@pytest.mark.parametrize("value", ["nan", "-1", "101"])
def test_the_run_command_refuses_a_coverage_that_is_no_percentage(tmp_path: Path, value: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "conformance", "run", "--target=reference", f"--min-coverage={value}",
         f"--report-dir={tmp_path / 'r'}", "testcases/handshake/passive-open.yaml"],
        cwd=REPO, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 2 and "--min-coverage: expected a percentage 0..100" in proc.stderr
