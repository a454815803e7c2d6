"""Declared timers (targets.yaml `timers`, PIXIT): validation, the names cases see, `wait: until`, and the
TMR-DECLARED-* cases passing on the truth and failing on a wrong declaration."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from conformance.model.loader import CaseFormatError, load_case
from conformance.targets.config import TargetConfigError, TimersConfig, load_targets
from support import REPO, TARGETS, needs_netns, run_suite

SYN_RTO_CASE = REPO / "testcases" / "timers" / "declared-syn-rto.yaml"


def write_targets(directory: Path, timers: str, more: str = "") -> Path:
    """A targets file with one local entry `t` declaring ``timers`` (YAML flow text, or "" for none) after the
    entry lines ``more``."""
    path = directory / "targets.yaml"
    body = f"    timers: {timers}\n" if timers else ""
    path.write_text(f"targets:\n  t:\n    kind: local\n{more}{body}")
    return path


def test_bindings_give_each_duration_a_tolerance_window() -> None:
    timers = TimersConfig(syn_rto="3s", time_wait="60s", syn_retransmissions=6, tolerance=0.05, tolerance_min="500ms")
    assert timers.bindings() == {
        "timer_syn_rto_us": 3_000_000, "timer_syn_rto_low_us": 2_500_000, "timer_syn_rto_high_us": 3_500_000,
        "timer_time_wait_us": 60_000_000, "timer_time_wait_low_us": 57_000_000,
        "timer_time_wait_high_us": 63_000_000, "timer_syn_retransmissions": 6,
    }  # fmt: skip
    assert timers.capabilities() == {"timers.syn_rto", "timers.time_wait", "timers.syn_retransmissions"}
    assert TimersConfig().bindings() == {} and TimersConfig().capabilities() == set()


def test_declared_timers_become_capabilities_of_every_kind() -> None:
    targets = load_targets(TARGETS)
    assert "timers.time_wait" in targets["local"].declared_capabilities()
    assert "timers.syn_giveup" in targets["lab-server"].declared_capabilities(["listen"], [])
    assert targets["lab-server"].timers == targets["local"].timers  # the lab's server is this kernel
    assert not any(c.startswith("timers.") for c in targets["local-no-wscale"].declared_capabilities())


@pytest.mark.parametrize(
    ("timers", "where", "message"),
    [
        ("{time_wait: 20min}", "targets.t.timers.time_wait", "longer than the 600 s the timer cases can wait"),
        ("{syn_rto: 90s}", "targets.t.timers.syn_rto", "longer than the 60 s the case waits"),
        ("{fin_wait_2: 0s}", "targets.t.timers.fin_wait_2", "longer than 0 s"),
        ("{time_wait: soon}", "targets.t.timers.time_wait", "bad duration"),
        ("{syn_retransmissions: -1}", "targets.t.timers.syn_retransmissions", "greater than or equal to 0"),
        ("{tolerance: 2}", "targets.t.timers.tolerance", "less than or equal to 0.5"),
        ("{msl: 60s}", "targets.t.timers.msl", "unknown key"),
    ],
)
def test_a_bad_timer_is_one_line_naming_its_place(tmp_path: Path, timers: str, where: str, message: str) -> None:
    path = write_targets(tmp_path, timers)
    with pytest.raises(TargetConfigError) as info:
        load_targets(path)
    text = str(info.value)
    assert "\n" not in text and text.startswith(f"{path}:4:"), text
    assert where in text and message in text, text


CASE_HEAD = """\
id: WAIT-UNTIL-01
title: A wait until a time measured from a segment
refs: [rfc9293:3.5]
requirement: The suite's own test of wait until, timed from the target's SYN-ACK.
level: INFO
requires: [ut.listen]
families: [ipv4]
timeout: {timeout}
steps:
  - ut: listen
  - send: {{flags: S, seq: l_isn}}
  - expect: {{flags: SA, ack: l_isn + 1, bind: {{t_synack: time_us}}}}
  - wait: {{until: {until}, reason: the suite's own test}}
  - send: {{flags: A}}
  - expect_none: {{for: 100ms}}
"""


@pytest.mark.parametrize(
    ("wait", "message"),
    [
        ("{reason: nothing to wait for}", "either `for` (a duration) or `until`"),
        ("{for: 1s, until: t0, reason: both}", "either `for` (a duration) or `until`"),
        ("{until: 'open(1)', reason: not an expression}", "steps[0].wait.until"),
    ],
)
def test_a_wait_has_exactly_one_of_for_and_until(tmp_path: Path, wait: str, message: str) -> None:
    path = tmp_path / "case.yaml"
    head = CASE_HEAD.format(until="0", timeout="30s").split("steps:")[0]
    path.write_text(head + f"steps:\n  - wait: {wait}\n")
    with pytest.raises(CaseFormatError) as info:
        load_case(path)
    assert message in str(info.value), info.value


@needs_netns
@pytest.mark.netns
def test_wait_until_is_timed_from_the_bound_segment(tmp_path: Path) -> None:
    """A wait until t_synack + 700 ms ends 700 ms after the SYN-ACK, not 700 ms after the step begins; a time
    already past waits nothing; a time past the case's limit is an ERROR before any waiting."""
    cases = tmp_path / "testcases"
    cases.mkdir()
    variants = {"later": ("t_synack + 700000", "30s"), "past": ("t_synack - 1", "30s"),
                "beyond": ("t_synack + 60000000", "5s")}  # fmt: skip
    for name, (until, timeout) in variants.items():
        text = CASE_HEAD.format(until=until, timeout=timeout).replace("WAIT-UNTIL-01", f"WAIT-{name.upper()}-01")
        (cases / f"{name}.yaml").write_text(text)
    run = run_suite(tmp_path, f"--rootdir={tmp_path}", "--targets-file", str(TARGETS), str(cases), cwd=tmp_path)
    by_id = {c["id"]: c for c in run.results["cases"]}
    later, past, beyond = by_id["WAIT-LATER-01"], by_id["WAIT-PAST-01"], by_id["WAIT-BEYOND-01"]
    assert later["verdict"] == "PASS" and past["verdict"] == "PASS", run.stdout[-3000:]

    def waited(case: dict) -> float:  # from the SYN-ACK to the ACK sent after the wait, in seconds
        synack = next(e for e in case["trace"] if e["dir"] == "in" and " SA " in e["summary"])
        return [e for e in case["trace"] if e["dir"] == "out"][-1]["t"] - synack["t"]

    assert 0.7 <= waited(later) < 0.9, waited(later)
    assert waited(past) < 0.2, waited(past)
    assert beyond["verdict"] == "ERROR" and "would pass the case's time limit of 5 s" in beyond["reason"]
    assert beyond["duration_s"] < 3, beyond["duration_s"]


@needs_netns
@pytest.mark.netns
@pytest.mark.parametrize(("declared", "verdict"), [("1s", "PASS"), ("3s", "FAIL")])
def test_the_initial_rto_case_holds_the_target_to_its_declaration(tmp_path: Path, declared: str, verdict: str) -> None:
    """Linux's first SYN retransmission comes after 1 s: declaring 1 s passes, declaring 3 s fails, with the
    measured interval and the declared window in the evidence."""
    targets = write_targets(tmp_path, f"{{syn_rto: {declared}}}")
    case = tmp_path / "testcases" / SYN_RTO_CASE.name
    case.parent.mkdir()
    shutil.copy(SYN_RTO_CASE, case)
    run = run_suite(tmp_path, f"--rootdir={tmp_path}", "--targets-file", str(targets), "--target=t", str(case.parent),
                    cwd=tmp_path)  # fmt: skip
    cases = run.results["cases"]
    assert {c["family"]: c["verdict"] for c in cases} == {"ipv4": verdict, "ipv6": verdict}, run.stdout[-3000:]
    assert run.results["target"]["timers"] == {"syn_rto": float(declared[:-1])}
    for c in cases:
        measured = c["observations"]["syn_rto1_us"]
        assert 900_000 <= measured <= 1_200_000, measured
        if verdict == "FAIL":
            assert "declared initial RTO" in c["reason"], c["reason"]
            assert "timer_syn_rto_low_us(=2700000)..timer_syn_rto_high_us(=3300000)" in c["failure"]["expected"]
            assert str(measured) in c["failure"]["actual"], c["failure"]


@needs_netns
@pytest.mark.netns
def test_without_a_declaration_the_case_is_not_run_and_says_what_to_declare(tmp_path: Path) -> None:
    targets = write_targets(tmp_path, "")
    run = run_suite(tmp_path, "--targets-file", str(targets), "--target=t", str(SYN_RTO_CASE))
    cases = run.results["cases"]
    assert [c["verdict"] for c in cases] == ["NOT-RUN", "NOT-RUN"]
    assert all("timers.syn_rto" in c["reason"] and "targets.yaml" in c["reason"] for c in cases), cases[0]["reason"]
    assert run.returncode == 0, run.stdout[-2000:]


# Namespaced sysctls shrink Linux's timers to seconds, so the slow TMR-DECLARED cases can be shown to pass on a
# true declaration and to fail on a false one, either way round (declared too short, declared too long).
SHORT_TIMERS = {
    "net.ipv4.tcp_fin_timeout": 3,  # orphaned FIN-WAIT-2: 3 s
    "net.ipv4.tcp_synack_retries": 1,  # SYN-ACK at 0 s and 1 s, the half-open connection dropped at 3 s
    "net.ipv4.tcp_syn_retries": 2,  # SYN at 0, 1 and 3 s, the open abandoned at 7 s (no linear phase)
    "net.ipv4.tcp_syn_linear_timeouts": 0,
}
TRUE_TIMERS = "{fin_wait_2: 3s, synack_retransmissions: 1, synack_giveup: 3s, syn_retransmissions: 2, syn_giveup: 7s}"
SHORT_CASES = ["declared-fin-wait-2.yaml", "declared-synack-giveup.yaml", "declared-syn-giveup.yaml"]


FIN, SYNACK, SYN = "TMR-DECLARED-FIN-WAIT-2-01", "TMR-DECLARED-SYNACK-GIVEUP-01", "TMR-DECLARED-SYN-GIVEUP-01"
# Declared too long: the connection is already gone at the window's start; two retransmissions are not three.
TOO_LONG = "{fin_wait_2: 6s, synack_retransmissions: 1, synack_giveup: 3s, syn_retransmissions: 3, syn_giveup: 7s}"
# Declared too short: still in FIN-WAIT-2 at the window's end; a SYN-ACK retransmission not declared; the open
# abandoned after the window.
TOO_SHORT = "{fin_wait_2: 1s, synack_retransmissions: 0, synack_giveup: 3s, syn_retransmissions: 2, syn_giveup: 4s}"
DECLARATIONS = {
    "true": (TRUE_TIMERS, {FIN: "PASS", SYNACK: "PASS", SYN: "PASS"}, {}),
    "too-long": (
        TOO_LONG,
        {FIN: "FAIL", SYNACK: "PASS", SYN: "FAIL"},
        {FIN: ": R seq", SYN: "declared number of times"},  # FIN-WAIT-2 reset at the window's start
    ),
    "too-short": (
        TOO_SHORT,
        {FIN: "FAIL", SYNACK: "FAIL", SYN: "FAIL"},
        {FIN: "was dropped, as declared", SYNACK: "declared number of times", SYN: "within the declared time's window"},
    ),
}


def short_timer_target(directory: Path, timers: str) -> Path:
    sysctls = "".join(f"      {key}: {value}\n" for key, value in SHORT_TIMERS.items())
    return write_targets(directory, timers, f"    families: [ipv4]\n    sysctls:\n{sysctls}")


@needs_netns
@pytest.mark.netns
@pytest.mark.parametrize(("timers", "verdicts", "evidence"), DECLARATIONS.values(), ids=DECLARATIONS.keys())
def test_the_slow_declared_cases_catch_a_false_declaration(
    tmp_path: Path, timers: str, verdicts: dict[str, str], evidence: dict[str, str]
) -> None:
    targets = short_timer_target(tmp_path, timers)
    cases = [str(REPO / "testcases" / "timers" / name) for name in SHORT_CASES]
    run = run_suite(tmp_path, "--targets-file", str(targets), "--target=t", "-n", "3", *cases)
    by_id = {c["id"]: c for c in run.results["cases"] if c["family"] == "ipv4"}  # the entry runs IPv4 only
    assert {i: c["verdict"] for i, c in by_id.items()} == verdicts, run.stdout[-4000:]
    for case_id, words in evidence.items():  # the evidence, or the failing step and its note, says what broke
        case, failure = by_id[case_id], by_id[case_id]["failure"]
        lines = (REPO / case["file"]).read_text().splitlines()
        step_text = " ".join(lines[failure["line"] - 1 : failure["line"] + 1])
        text = " ".join((case["reason"], failure["expected"], failure["actual"], step_text))
        assert words in text, (case_id, text)
