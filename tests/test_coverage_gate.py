"""A run of a fraction of the in-scope requirements is never called conformant, and a CI can refuse it: the
statement, the console's word, the report's banner and the exit status of `--min-coverage` / `--fail-on-not-run`,
end to end on the reference target (no root, no namespace)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from support import REPO, run_suite


def test_a_partial_run_says_incomplete_everywhere_and_the_gate_fails_it(tmp_path: Path) -> None:
    run = run_suite(tmp_path, "--target=reference", "testcases/handshake", "--min-coverage", "90")
    assert run.returncode == 1, run.stdout[-3000:]
    graded = json.loads((run.report_dir / "results.json").read_text())["grade"]
    must = graded["scope"]["MUST"]
    assert graded["conformant"] is True and graded["complete"] is False
    assert 0 < must["passed"] < must["in_scope"] and must["not_run"] == must["in_scope"] - must["passed"]
    head = "INCOMPLETE: RFC 9293 connection management (profile rfc9293): incomplete: conformant on"
    assert f"{head} {must['passed']} of {must['in_scope']} in-scope MUST requirements" in run.stdout
    decided = must["passed"] + must["failed"]
    share = 100 * decided / must["in_scope"]
    assert (f"coverage gate: {decided} of {must['in_scope']} in-scope MUST requirements decided ({share:.1f}%), below "
            "--min-coverage 90%") in run.stdout  # fmt: skip
    page = (run.report_dir / "index.html").read_text()
    assert re.search(r'<div class="statement st-incomplete"[^>]*><span class="word">INCOMPLETE</span>', page)
    missing = sum(counts["not_run"] for counts in graded["scope"].values())
    assert f"In scope, not run in this run ({missing}): " in page


def test_without_a_gate_the_same_run_passes_and_the_run_command_has_the_gate_too(tmp_path: Path) -> None:
    run = run_suite(tmp_path, "--target=reference", "testcases/handshake/passive-open.yaml")
    assert run.returncode == 0, run.stdout[-3000:]
    cli = subprocess.run(
        [sys.executable, "-m", "conformance", "run", "--target=reference", f"--report-dir={tmp_path / 'cli'}",
         "--fail-on-not-run", "testcases/handshake/passive-open.yaml"],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert cli.returncode == 1, cli.stdout + cli.stderr
    assert "coverage gate (--fail-on-not-run): " in cli.stdout
    assert "in-scope requirements: " in cli.stdout and "INCOMPLETE: " in cli.stdout


def test_a_coverage_out_of_range_is_a_usage_error(tmp_path: Path) -> None:
    run = run_suite(tmp_path, "--target=reference", "testcases/handshake", "--min-coverage", "101")
    assert run.returncode == 4
    assert "--min-coverage: expected a percentage 0..100, got 101" in run.stderr
