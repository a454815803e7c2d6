"""A target that cannot start ends the run at once: one line naming the target and the cause, exit status 4, no
verdict for any case (no results.json): under pytest, under xdist and through `python -m conformance run`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from support import REPO, needs_netns, run_suite

TARGETS = """\
targets:
  missing-interface:
    kind: remote
    description: a remote target whose test interface does not exist on this host
    link: {type: afpacket, interface: tcpconf-nosuch0}
    ports: {closed: 20000-29999}
  bad-sysctl:
    kind: local
    description: the local target with a sysctl the kernel does not have
    sysctls: {net.ipv4.tcp_no_such_knob: 1}
"""
CASE = "testcases/reset/closed-port-syn.yaml"
CAUSE = "target 'missing-interface' could not be started: [Errno 19] no interface named 'tcpconf-nosuch0' here"


@pytest.fixture
def targets_file(tmp_path: Path) -> Path:
    path = tmp_path / "targets.yaml"
    path.write_text(TARGETS)
    return path


@pytest.mark.parametrize("xdist", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_pytest_ends_the_run_in_one_line_with_status_4(tmp_path: Path, targets_file: Path, xdist: list[str]) -> None:
    run = run_suite(tmp_path, *xdist, f"--targets-file={targets_file}", "--target=missing-interface", CASE)
    assert run.returncode == 4, run.stdout[-2000:] + run.stderr[-2000:]
    assert CAUSE in run.stdout
    assert "ERROR" not in run.stdout and "passed" not in run.stdout
    assert not (run.report_dir / "results.json").exists()


def test_the_run_command_ends_in_one_line_with_status_4(tmp_path: Path, targets_file: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "conformance", "run", f"--targets-file={targets_file}", "--target=missing-interface",
         f"--report-dir={tmp_path / 'run'}", CASE],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert proc.stderr.strip() == f"error: {CAUSE}"
    assert not (tmp_path / "run" / "results.json").exists()


@needs_netns
@pytest.mark.netns
def test_a_bad_sysctl_of_the_local_target_ends_the_run_so_too(tmp_path: Path, targets_file: Path) -> None:
    run = run_suite(tmp_path, f"--targets-file={targets_file}", "--target=bad-sysctl", CASE)
    assert run.returncode == 4, run.stdout[-2000:] + run.stderr[-2000:]
    assert "target 'bad-sysctl' could not be started: " in run.stdout and "tcp_no_such_knob" in run.stdout
    assert not (run.report_dir / "results.json").exists()
