"""scripts/allure-report.sh renders allure-results offline, without the template's analytics tag."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from support import REPO, needs_netns, run_suite

pytestmark = [
    needs_netns,
    pytest.mark.netns,
    pytest.mark.skipif(not (shutil.which("java") and shutil.which("npm")), reason="needs Java and npm"),
]


def test_allure_report_is_offline_and_has_no_analytics(tmp_path: Path) -> None:
    allure_dir = tmp_path / "allure-results"
    run = run_suite(tmp_path, f"--alluredir={allure_dir}", "testcases/reset/closed-port-syn.yaml")
    assert run.returncode == 0, run.stdout[-2000:]
    out = tmp_path / "allure-html"
    proc = subprocess.run(
        ["bash", str(REPO / "scripts/allure-report.sh"), str(allure_dir), str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    html = (out / "index.html").read_text(encoding="utf-8")
    assert len(html) > 100_000  # the whole app and the data are inlined
    assert "googletagmanager" not in html and "gtag(" not in html
    assert not re.findall(r'<script[^>]+src="https?://', html)
    assert not re.findall(r'<link[^>]+href="https?://', html)


def test_a_waived_known_deviation_shows_failed_with_its_label(tmp_path: Path) -> None:
    from conformance.report.allure_glue import show_waived_as_failed

    waived = {"name": "x", "status": "skipped", "statusDetails": {"message": "XFAIL known deviation (FAIL): r"},
              "labels": [{"name": "waiver", "value": "waived"}]}  # fmt: skip
    skipped = {"name": "y", "status": "skipped", "labels": [{"name": "tag", "value": "must"}]}
    (tmp_path / "a-result.json").write_text(json.dumps(waived))
    (tmp_path / "b-result.json").write_text(json.dumps(skipped))
    assert show_waived_as_failed(tmp_path) == 1
    a = json.loads((tmp_path / "a-result.json").read_text())
    assert a["status"] == "failed" and a["statusDetails"]["message"].startswith("waived: XFAIL known deviation")
    assert json.loads((tmp_path / "b-result.json").read_text())["status"] == "skipped"
    assert show_waived_as_failed(tmp_path) == 0  # once only
