"""Integration: the suite against the local target, run as a user runs it (a separate pytest process)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from scapy.utils import rdpcap

from conformance.targets import netns
from support import REPO, TARGETS, needs_netns, orphaned_namespaces, our_namespaces, run_suite

pytestmark = [needs_netns, pytest.mark.netns]

FIRST_FILES = [
    "testcases/handshake/passive-open.yaml", "testcases/handshake/active-open.yaml",
    "testcases/handshake/simultaneous-open.yaml", "testcases/handshake/old-duplicate-syn.yaml",
    "testcases/reset/closed-port-syn.yaml", "testcases/reset/closed-port-ack.yaml",
    "testcases/reset/syn-in-established.yaml", "testcases/teardown/target-closes-first.yaml",
    "testcases/teardown/tester-closes-first.yaml", "testcases/options/wscale-offered.yaml",
    "testcases/options/wscale-not-offered.yaml", "testcases/options/wscale-syn-window-unscaled.yaml",
]  # fmt: skip
FIRST_CASES = {
    "HS-PASSIVE-01", "HS-ACTIVE-01", "HS-SIMOPEN-01", "HS-OLDDUP-01", "RST-CLOSED-01", "RST-CLOSED-02",
    "RST-SYNEST-01", "CLOSE-TARGET-FIRST-01", "CLOSE-TESTER-FIRST-01", "OPT-WS-01", "OPT-WS-02", "OPT-WS-03",
}  # fmt: skip


def write_case(directory: Path, name: str, text: str) -> Path:
    path = directory / "testcases" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def test_every_first_case_passes_over_ipv4_and_ipv6(tmp_path: Path) -> None:
    run = run_suite(tmp_path, *FIRST_FILES)
    assert run.returncode == 0, run.stdout[-4000:]
    verdicts = run.verdicts()
    expected = {f"{c}[{fam}]" for c in FIRST_CASES for fam in ("ipv4", "ipv6")}
    assert expected == set(verdicts), sorted(expected ^ set(verdicts))
    assert {k: v for k, v in verdicts.items() if v != "PASS"} == {}
    results = run.results
    assert results["schema"] == "tcp-conformance/results/2"
    assert results["target"]["name"] == "local"
    assert results["summary"]["PASS"] == len(verdicts)
    for case in results["cases"]:
        pcap = run.report_dir / case["pcap"]
        packets = rdpcap(str(pcap))
        assert len(packets) == len(case["trace"]) >= 1, case["id"]
        assert case["rerun"].startswith("pytest --target=local")
        assert any(entry["dir"] == "in" for entry in case["trace"]), case["id"]
    assert (run.report_dir / "index.html").read_text().count("RST-SYNEST-01") >= 1
    assert "TCP conformance: target local, profile rfc9293" in run.stdout
    assert our_namespaces(run.pid) == []


def test_parallel_workers_each_own_a_namespace(tmp_path: Path) -> None:
    run = run_suite(tmp_path, "-n", "2", *FIRST_FILES)
    assert run.returncode == 0, run.stdout[-4000:]
    assert set(run.verdicts().values()) == {"PASS"}
    workers = sorted(p.name for p in run.report_dir.glob("cases.*.jsonl"))
    assert workers == ["cases.gw0.jsonl", "cases.gw1.jsonl"]
    assert orphaned_namespaces() == []


def test_a_wrong_expectation_fails_with_the_evidence(tmp_path: Path) -> None:
    case = write_case(
        tmp_path,
        "wrong.yaml",
        """\
        id: WRONG-01
        title: A deliberately wrong expectation
        refs: [rfc9293:3.5.2]
        requirement: The suite's own test expects an acknowledgment number no stack sends.
        level: MUST
        families: [ipv4]
        steps:
          - send: {flags: S, seq: l_isn}
          - expect: {flags: RA, seq: 0, ack: l_isn + 2}
        """,
    )
    run = run_suite(tmp_path, f"--rootdir={tmp_path}", "--targets-file", str(TARGETS), str(case.parent), cwd=tmp_path)
    assert run.returncode == 1
    out = run.stdout
    assert "testcases/wrong.yaml:9: FAIL WRONG-01 [ipv4] at steps[1] (expect)" in out, out
    assert "expected: RA seq 0 ack l_isn + 2(=" in out
    assert "actual:   198.18.0.1:" in out and " RA seq 0 ack " in out
    assert "mismatch: ack: expected l_isn + 2(=" in out
    assert "requirement: The suite's own test expects" in out
    assert "capture: " in out and "Traceback" not in out
    failure = run.results["cases"][0]["failure"]
    assert failure["line"] == 9 and failure["mismatches"][0].startswith("ack:")


def test_a_variant_dropping_resets_fails_the_closed_port_cases(tmp_path: Path) -> None:
    run = run_suite(tmp_path, "--target=local-rst-dropped", "testcases/reset/closed-port-syn.yaml",
                    "testcases/reset/closed-port-ack.yaml")  # fmt: skip
    assert run.returncode == 1
    verdicts = run.verdicts()
    assert len(verdicts) == 4 and set(verdicts.values()) == {"FAIL"}
    assert all("got nothing" in c["reason"] for c in run.results["cases"])


def test_sysctl_variant_is_applied(tmp_path: Path) -> None:
    run = run_suite(tmp_path, "--target=local-no-wscale", "testcases/options/wscale-offered.yaml")
    assert run.returncode == 0, run.stdout[-3000:]
    assert {c["behaviour"] for c in run.results["cases"]} == {"no-scaling"}


@pytest.mark.parametrize(("profile", "code"), [("rfc9293", 0), ("rfc5961", 0), ("rfc793", 1)])
def test_profile_decides_which_behaviour_conforms(tmp_path: Path, profile: str, code: int) -> None:
    run = run_suite(tmp_path, f"--profile={profile}", "testcases/reset/syn-in-established.yaml")
    assert run.returncode == code, run.stdout[-3000:]
    cases = run.results["cases"]
    assert {c["behaviour"] for c in cases} == {"challenge-ack"}
    if code:
        assert all("behaviour seen: challenge-ack" in c["reason"] for c in cases)
        assert all("does not conform under profile rfc793" in c["reason"] for c in cases)


SLOW_CASE = """\
    id: SLOW-01
    title: A case that waits long enough to be interrupted
    refs: [rfc9293:3.5]
    requirement: The suite's own test needs a case that is still running when the run is interrupted.
    level: INFO
    families: [ipv4]
    steps:
      - wait: {for: 30s, reason: give the test time to interrupt the run}
    """
FAST_CASE = """\
    id: AAA-FAST-01
    title: A case that finishes before the interruption
    refs: [rfc9293:3.5.2]
    requirement: The suite's own test checks that finished cases survive an interrupted run.
    level: MUST
    families: [ipv4]
    steps:
      - send: {flags: S, seq: l_isn}
      - expect: {flags: RA, seq: 0, ack: l_isn + 1}
    """


def _interruptible() -> None:
    """A shell starting this test in the background (`cmd &` without job control) makes it ignore SIGINT, and a
    child inherits that: the run under test must get Ctrl-C as a terminal would deliver it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start_interruptible_run(tmp_path: Path) -> tuple[subprocess.Popen, Path]:
    write_case(tmp_path, "a-fast.yaml", FAST_CASE)
    write_case(tmp_path, "b-slow.yaml", SLOW_CASE)
    report = tmp_path / "report"
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--report-dir", str(report),
         "--targets-file", str(TARGETS), str(tmp_path / "testcases")],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        preexec_fn=_interruptible,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if (report / "cases.main.jsonl").exists():
            return proc, report
        time.sleep(0.05)
    proc.kill()
    raise AssertionError("the run did not finish its first case in 60 s")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_an_interrupt_removes_the_target_and_keeps_finished_results(tmp_path: Path, sig: int) -> None:
    proc, report = _start_interruptible_run(tmp_path)
    assert our_namespaces(proc.pid), "the target namespace should exist while the run goes on"
    proc.send_signal(sig)
    proc.communicate(timeout=30)
    assert our_namespaces(proc.pid) == []
    lines = (report / "cases.main.jsonl").read_text().splitlines()
    assert len(lines) == 1 and '"AAA-FAST-01"' in lines[0] and '"PASS"' in lines[0]


def test_a_killed_run_is_reaped_by_the_next_one(tmp_path: Path) -> None:
    proc, _ = _start_interruptible_run(tmp_path)
    proc.kill()
    proc.communicate(timeout=30)
    leftovers = our_namespaces(proc.pid)
    assert leftovers, "SIGKILL leaves the namespace behind: that is what the reaper is for"
    removed = netns.reap_leftovers()
    assert set(leftovers) <= set(removed)
    assert our_namespaces(proc.pid) == []


def test_the_reaper_never_touches_foreign_namespaces() -> None:
    foreign = f"notours-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", foreign], check=True)
    try:
        netns.reap_leftovers()
        assert foreign in os.listdir("/run/netns")
        with pytest.raises(ValueError):
            netns.delete(foreign)
    finally:
        subprocess.run(["ip", "netns", "del", foreign], check=False)


def test_agent_runs_from_the_repository_copy() -> None:
    assert (REPO / "conformance" / "agent.py").exists()


def test_distribution_over_execnet_gateways(tmp_path: Path) -> None:
    """xdist's own --tx gateways (popen here; ssh on a lab's tester hosts): every worker owns a target."""
    python = str(REPO / ".venv" / "bin" / "python")
    run = run_suite(tmp_path, "--dist", "load", "--tx", f"2*popen//python={python}", *FIRST_FILES[:6])
    assert run.returncode == 0, run.stdout[-3000:]
    assert set(run.verdicts().values()) == {"PASS"} and len(run.verdicts()) == 12
    assert sorted(p.name for p in run.report_dir.glob("cases.*.jsonl")) == ["cases.gw0.jsonl", "cases.gw1.jsonl"]
    assert orphaned_namespaces() == []


def test_workers_find_targets_yaml_whatever_the_report_dir(tmp_path: Path) -> None:
    """``--report-dir PATH`` written with a space and no test path made xdist workers take PATH as their root
    directory, so every case ended ERROR with 'PATH/targets.yaml: targets file not found' (seen in
    bench/stability.py). The targets file is looked up where pytest runs first."""
    run = run_suite(tmp_path, "-n", "2", "-k", "RST-CLOSED-01")  # run_suite passes --report-dir PATH
    assert run.verdicts() == {"RST-CLOSED-01[ipv4]": "PASS", "RST-CLOSED-01[ipv6]": "PASS"}, run.stdout[-2000:]
