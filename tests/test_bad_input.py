"""Bad input gives one clear line (a usage or collection error), never a traceback, never a namespace."""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path

import pytest

from support import REPO, TARGETS, needs_netns, our_namespaces, run_suite

BAD_CASE = """\
id: BAD-01
title: A case with an unknown flag
refs: [rfc9293:3.5]
requirement: The suite's own test feeds a malformed case to the collector.
level: MUST
steps:
  - send: {flags: S, seq: l_isn}
  - expect: {flags: SQ}
"""


def test_a_malformed_case_is_one_collection_error_line(tmp_path: Path) -> None:
    (tmp_path / "testcases").mkdir()
    (tmp_path / "testcases" / "bad.yaml").write_text(BAD_CASE)
    run = run_suite(tmp_path, f"--rootdir={tmp_path}", "--targets-file", str(TARGETS), "testcases", cwd=tmp_path)
    assert run.returncode == 2
    assert "testcases/bad.yaml:8:21: steps[1].expect.flags: unknown flag 'Q' (known: F S R P A U E C)" in run.stdout
    assert "Traceback" not in run.stdout + run.stderr
    assert our_namespaces(run.pid) == []


def test_an_unknown_target_is_a_usage_error(tmp_path: Path) -> None:
    run = run_suite(tmp_path, "--target=nope", "testcases")
    assert run.returncode == 4
    assert "ERROR: " in run.stderr and "no target named 'nope' (defined: lab-server," in run.stderr
    assert "Traceback" not in run.stdout + run.stderr


def test_a_missing_targets_file_is_a_usage_error(tmp_path: Path) -> None:
    run = run_suite(tmp_path, f"--targets-file={tmp_path / 'absent.yaml'}", "testcases")
    assert run.returncode == 4
    assert f"ERROR: {tmp_path / 'absent.yaml'}: targets file not found" in run.stderr


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("targets:\n  local:\n    kind: cloud\n", "targets.yaml:3:11: targets.local.kind: unknown kind 'cloud'"),
        ("targets:\n  lab:\n    kind: remote\n", "targets.yaml:3:5: targets.lab: a remote target needs `link`"),
        ("targets:\n  lab:\n    kind: remote\n    link: {type: afpacket}\n",
         "targets.yaml:4:11: targets.lab.link: an afpacket link needs `interface`"),
        ("targets:\n  lab:\n    kind: remote\n    link: {type: stream, address: unix:/x, tester_mac: 02:00}\n",
         "targets.yaml:4:56: targets.lab.link.tester_mac: not a MAC address: '02:00'"),
        ("targets:\n  lab:\n    kind: remote\n    link: {type: stream, address: unix:/x}\n    agent: {address: x}\n",
         "targets.yaml:5:12: targets.lab.agent: agent address 'x' is not HOST:PORT"),
        ("targets:\n  lab:\n    kind: launched\n    link: {type: tap}\n",
         "targets.yaml:3:5: targets.lab: a launched target needs `launch`"),
        ("targets:\n  lab:\n    kind: remote\n    link: {type: stream, address: unix:/x}\n    ports: {closed: 9-1}\n",
         "targets.yaml:5:21: targets.lab.ports.closed: closed ports '9-1': expected a range LOW-HIGH"),
        ("targets:\n  local:\n    kind: local\n    sysctls: {kernel.panic: 1}\n",
         "targets.yaml:4:14: targets.local.sysctls: sysctl 'kernel.panic': only per-namespace net.* keys"),
        ("targets:\n  local:\n    kind: local\n    ipv4: {target: 198.18.0.1, tester: 198.19.0.2, prefix: 24}\n",
         "targets.yaml:3:5: targets.local: ipv4: tester address 198.19.0.2 is not on the target's subnet"),
        ("targets: [local]\n", "targets.yaml:1:1: (top): a targets file is a mapping"),
        ("targets:\n  local:\n    kind: local\n  local:\n    kind: local\n",
         "targets.yaml:4:3: YAML: found duplicate key"),
    ],
)  # fmt: skip
def test_a_bad_targets_file_names_the_place(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "targets.yaml"
    path.write_text(text)
    proc = subprocess.run(
        [str(REPO / ".venv/bin/pytest"), "-p", "no:cacheprovider", f"--targets-file={path}", "--collect-only", "-q"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 4
    assert message in proc.stderr.replace(str(tmp_path) + "/", ""), proc.stderr
    assert "Traceback" not in proc.stderr


@needs_netns
def test_without_root_the_local_target_explains_itself(tmp_path: Path) -> None:
    """In a user namespace without a mapping the euid is not 0: the check must say so in one line."""
    proc = subprocess.run(
        ["unshare", "--user", "--", str(REPO / ".venv/bin/pytest"), "-p", "no:cacheprovider",
         "--report-dir", str(tmp_path / "r"), "testcases/reset/closed-port-syn.yaml"],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    if "unshare failed" in proc.stderr:
        pytest.skip("user namespaces are not allowed here")
    assert proc.returncode == 4
    assert "ERROR: the local target needs root (network namespaces, TUN)" in proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr


def test_case_files_are_checked_without_running(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text(textwrap.dedent(BAD_CASE))
    proc = subprocess.run(
        [str(REPO / ".venv/bin/python"), "-m", "conformance", "check", str(tmp_path)],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 1
    assert (
        proc.stderr.splitlines()[0] == "bad.yaml:8:21: steps[1].expect.flags: unknown flag 'Q' (known: F S R P A U E C)"
    )
