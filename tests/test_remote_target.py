"""The remote kind against a lab bench (python -m conformance.lab): a Linux "server" namespace reached over a
veth pair on the AF_PACKET link, its agent on a separate management link, the suite running in the "bench"
namespace the way a vendor runs it on the machine next to its box."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conformance.lab import TEST_IF, TOKEN_ENV, Lab
from support import REPO, needs_netns, our_namespaces, run_suite

pytestmark = needs_netns
CASES = ["testcases/handshake/passive-open.yaml", "testcases/handshake/active-open.yaml",
         "testcases/reset/closed-port-syn.yaml", "testcases/teardown/tester-closes-first.yaml"]  # fmt: skip


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    bench = Lab.private("lab")
    bench.up()
    try:
        yield bench
    finally:
        bench.down()
    assert not {bench.server, bench.bench} & set(our_namespaces())


def targets_file(tmp_path: Path, extra: str) -> Path:
    """A targets.yaml with one remote entry ``box`` on the lab's test link."""
    path = tmp_path / "targets.yaml"
    path.write_text(
        "targets:\n  box:\n    kind: remote\n"
        f"    link: {{type: afpacket, interface: {TEST_IF}, resolve_timeout: 1}}\n"
        "    ports: {closed: 20000-29999, open: 9, echo: 7}\n" + extra
    )
    return path


def test_lab_server_passes_over_the_afpacket_link(lab: Lab, tmp_path: Path) -> None:
    run = run_suite(tmp_path, "--target=lab-server", *CASES, prefix=tuple(lab.bench_command([])),
                    env={TOKEN_ENV: lab.token})  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:]
    verdicts = run.verdicts()
    assert len(verdicts) == 8 and set(verdicts.values()) == {"PASS"}, verdicts
    results = run.results
    assert results["target"]["kind"] == "remote"
    case = next(c for c in results["cases"] if c["id"] == "HS-PASSIVE-01" and c["family"] == "ipv6")
    assert case["trace"][0]["summary"].startswith("[2001:2::2]:") and "> [2001:2::1]:" in case["trace"][0]["summary"]


def test_agentless_runs_what_needs_no_socket_action(lab: Lab, tmp_path: Path) -> None:
    path = targets_file(tmp_path, "")
    cases = [*CASES, "testcases/options/illegal-option-length-beyond.yaml", "testcases/service/echo-close.yaml"]
    run = run_suite(tmp_path, f"--targets-file={path}", "--target=box", *cases, prefix=tuple(lab.bench_command([])))
    verdicts = run.verdicts()
    assert verdicts["RST-CLOSED-01[ipv4]"] == verdicts["RST-CLOSED-01[ipv6]"] == "PASS"
    assert verdicts["OPT-BADLEN-03[ipv4]"] == "PASS"  # `ut: listen` stood in for by the open port
    assert verdicts["HS-ACTIVE-01[ipv4]"] == "NOT-RUN"
    assert verdicts["SVC-ECHO-CLOSE-01[ipv4]"] == verdicts["SVC-ECHO-CLOSE-01[ipv6]"] == "PASS"  # data and close
    reasons = {c["id"]: c["reason"] for c in run.results["cases"]}
    assert "ut.connect" in reasons["HS-ACTIVE-01"] and "ut.accept" in reasons["HS-PASSIVE-01"]
    assert run.returncode == 0, run.stdout[-3000:]


def test_an_unreachable_target_ends_the_run_in_bounded_time(lab: Lab, tmp_path: Path) -> None:
    path = targets_file(tmp_path, "    ipv4: {target: 198.18.0.77, tester: 198.18.0.2, prefix: 24}\n"
                                  "    families: [ipv4]\n")  # fmt: skip
    started = time.monotonic()
    run = run_suite(tmp_path, f"--targets-file={path}", "--target=box", *CASES, prefix=tuple(lab.bench_command([])))
    assert time.monotonic() - started < 30
    assert run.returncode == 4, run.stdout[-2000:]
    assert ("target 'box' could not be started: no ARP reply from 198.18.0.77 on tcpconf-lab0 within 1 s: "
            "is the target up?") in run.stdout  # fmt: skip
    assert not (run.report_dir / "results.json").exists()  # no case got a verdict


def test_a_wrong_token_ends_the_run_naming_the_agent(lab: Lab, tmp_path: Path) -> None:
    path = targets_file(tmp_path, "    agent: {address: 198.19.0.1:7070, token: wrong-token}\n")
    run = run_suite(tmp_path, f"--targets-file={path}", "--target=box", CASES[0], prefix=tuple(lab.bench_command([])))
    assert run.returncode == 4, run.stdout[-2000:]
    assert "target 'box' could not be started: " in run.stdout and "refused the session" in run.stdout
    assert "EACCES" in run.stdout
    assert not (run.report_dir / "results.json").exists()


def test_a_missing_token_variable_is_one_line(lab: Lab, tmp_path: Path) -> None:
    path = targets_file(tmp_path, "    agent: {address: 198.19.0.1:7070, token_env: TCPCONF_NOT_SET}\n")
    run = run_suite(tmp_path, f"--targets-file={path}", "--target=box", CASES[0], prefix=tuple(lab.bench_command([])))
    assert run.returncode == 4, run.stdout[-2000:]
    lines = [line for line in run.stdout.splitlines() if "could not be started" in line]
    assert lines == ["! _pytest.outcomes.Exit: target 'box' could not be started: the agent's token is read from "
                     "$TCPCONF_NOT_SET, which is not set !"], run.stdout[-2000:]  # fmt: skip


def test_a_link_going_down_mid_run_ends_in_errors_not_a_hang(tmp_path: Path) -> None:
    own = Lab.private("lab-down")
    own.up()
    try:
        cases = sorted(str(p.relative_to(REPO)) for p in (REPO / "testcases/reset").glob("closed-port-*.yaml"))
        cases += sorted(str(p.relative_to(REPO)) for p in (REPO / "testcases/handshake").glob("*.yaml"))

        def cut() -> None:
            """Once ten cases are recorded (the run writes them as it goes), the test interface disappears."""
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                written = sum(len(p.read_text().splitlines()) for p in (tmp_path / "report").glob("cases.*.jsonl"))
                if written >= 10:
                    break
                time.sleep(0.05)
            subprocess.run(["ip", "-n", own.bench, "link", "del", TEST_IF], check=False, capture_output=True)

        threading.Thread(target=cut, daemon=True).start()
        started = time.monotonic()
        run = run_suite(tmp_path, "--target=lab-server", *cases, prefix=tuple(own.bench_command([])),
                        env={TOKEN_ENV: own.token}, timeout=240)  # fmt: skip
        elapsed = time.monotonic() - started
    finally:
        own.down()
    verdicts = [c["verdict"] for c in run.results["cases"]]
    assert "PASS" in verdicts and "ERROR" in verdicts, verdicts
    assert len(verdicts) == 2 * len(cases)  # every case recorded: the run went on after the link died
    errors = {c["reason"] for c in run.results["cases"] if c["verdict"] == "ERROR"}
    assert all("tcpconf-lab0" in r or "down" in r for r in errors), errors
    assert elapsed < 200
