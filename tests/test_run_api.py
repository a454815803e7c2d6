"""The suite without pytest (conformance/run.py, ``python -m conformance run``) and the concurrent engine on the
local target: many cases in flight, cases that declare ``alone`` run alone, re-grading a finished run offline
gives what a run under that profile gives. Everything runs in namespaces the suite creates."""

from __future__ import annotations

import asyncio
import itertools
import json
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

from conformance.engine.scheduler import Scheduler
from conformance.run import BackgroundRun, RunOptions, SuiteRun, jobs_from_paths, schedule_order
from support import REPO, TARGETS, needs_netns, orphaned_namespaces

RESET_CASES = [REPO / "testcases/reset/syn-in-established.yaml", REPO / "testcases/reset/closed-port-syn.yaml",
               REPO / "testcases/handshake/passive-open.yaml"]  # fmt: skip


def _started(record: dict) -> float:
    return datetime.strptime(record["started"], "%Y-%m-%dT%H:%M:%S.%fZ").timestamp()


# ---- the scheduler alone -------------------------------------------------------------------------------------------


def test_the_scheduler_keeps_the_limit_and_runs_alone_jobs_with_nothing_else_in_flight() -> None:
    events: list[tuple[str, str]] = []
    in_flight: set[str] = set()
    seen_alongside: dict[str, set[str]] = {}

    async def start(job: str) -> None:
        in_flight.add(job)
        seen_alongside.setdefault(job, set()).update(in_flight - {job})
        events.append(("start", job))
        await asyncio.sleep(0.02 if job.startswith("long") else 0.005)
        seen_alongside[job].update(in_flight - {job})
        in_flight.discard(job)
        events.append(("end", job))

    async def main() -> int:
        scheduler: Scheduler[str] = Scheduler(3, alone=lambda job: job.startswith("alone"))

        async def jobs():  # type: ignore[no-untyped-def]
            for job in ["long-1", "a", "b", "alone-1", "c", "long-2", "d", "alone-2", "e"]:
                yield job

        await scheduler.run(jobs(), start)
        return scheduler.peak

    peak = asyncio.run(main())
    assert peak == 3  # never more than the limit
    assert seen_alongside["alone-1"] == set() and seen_alongside["alone-2"] == set()
    assert [e for e in events if e[0] == "start"][3] == ("start", "alone-1")  # in order
    assert len(events) == 18


def test_a_job_that_raises_ends_the_run_loudly() -> None:
    async def start(job: str) -> None:
        if job == "bad":
            raise RuntimeError("a defect")
        await asyncio.sleep(0.01)

    async def main() -> None:
        async def jobs():  # type: ignore[no-untyped-def]
            for job in ["a", "bad", "c"]:
                yield job

        await Scheduler(4, alone=lambda job: False).run(jobs(), start)

    with pytest.raises(RuntimeError, match="a defect"):
        asyncio.run(main())


def test_schedule_order_puts_alone_cases_first_then_the_longest() -> None:
    jobs = jobs_from_paths([REPO / "testcases/isn", REPO / "testcases/timewait/duration.yaml",
                            REPO / "testcases/reset/closed-port-syn.yaml"], REPO)  # fmt: skip
    order = schedule_order(jobs)
    alone = [j for j in order if j.case.meta.alone]
    assert alone and order[: len(alone)] == alone
    rest = order[len(alone) :]
    assert rest[0].case.id == "TW-DURATION-01" and rest[-1].case.id in ("RST-CLOSED-01", "ISN-CLOCK-01")


# ---- on the local target -------------------------------------------------------------------------------------------


@needs_netns
@pytest.mark.netns
def test_the_library_runs_cases_concurrently_without_pytest(tmp_path: Path) -> None:
    jobs = jobs_from_paths([REPO / "testcases/reset", REPO / "testcases/handshake"], REPO)
    suite = SuiteRun(RunOptions(targets_file=TARGETS, run_dir=tmp_path / "run", rootdir=REPO))
    seen: list[str] = []
    started = time.monotonic()
    try:
        results = suite.run(jobs, lambda result: seen.append(result.job.label))
    finally:
        suite.stop()
    doc = suite.finish()
    elapsed = time.monotonic() - started
    assert doc is not None and len(results) == len(jobs) == len(seen) == len(doc["cases"])
    bad = {r.job.label: r.reason for r in results if r.verdict not in ("PASS",) and r.waiver != "waived"}
    assert bad == {}
    assert suite.peak_in_flight > 10, suite.peak_in_flight  # overlapping, not one after the other
    assert doc["run"]["peak_in_flight"] == suite.peak_in_flight
    serial = sum(c["duration_s"] for c in doc["cases"])
    assert elapsed < serial / 3, (elapsed, serial)
    assert (tmp_path / "run" / "index.html").exists()
    assert orphaned_namespaces() == []


@needs_netns
@pytest.mark.netns
def test_a_case_declared_alone_overlaps_no_other(tmp_path: Path) -> None:
    files = [REPO / "testcases/isn/isn-stack-restart.yaml", REPO / "testcases/load/syn-flood-legitimate-client.yaml",
             *RESET_CASES, REPO / "testcases/reset/closed-port-ack.yaml"]  # fmt: skip
    targets = tmp_path / "targets.yaml"
    targets.write_text("targets:\n  local:\n    kind: local\n    allow_flood: true\n")
    suite = SuiteRun(RunOptions(targets_file=targets, run_dir=tmp_path / "run", rootdir=REPO))
    try:
        suite.run(jobs_from_paths(files, REPO))
    finally:
        suite.stop()
    doc = suite.finish()
    assert doc is not None
    spans = [(_started(c), _started(c) + c["duration_s"], c) for c in doc["cases"]]
    for start, end, case in spans:
        if not case.get("alone"):
            continue
        others = [c["id"] for s, e, c in spans if c is not case and s < end and e > start]
        assert others == [], (case["id"], case["family"], others)
    assert {c["verdict"] for c in doc["cases"]} <= {"PASS", "INCONCLUSIVE"}


@needs_netns
@pytest.mark.netns
def test_a_background_run_takes_jobs_one_by_one(tmp_path: Path) -> None:
    jobs = jobs_from_paths(RESET_CASES, REPO)
    suite = SuiteRun(RunOptions(targets_file=TARGETS, run_dir=tmp_path / "run", rootdir=REPO))
    background = BackgroundRun(suite)
    try:
        futures = [background.submit(job) for job in jobs]
        assert background.submit(jobs[0]) is futures[0]  # a job is started once
        verdicts = {f.result(timeout=60).job.label: str(f.result().verdict) for f in futures}
    finally:
        background.close()
        suite.stop()
    assert set(verdicts.values()) == {"PASS"} and len(verdicts) == len(jobs)


@needs_netns
@pytest.mark.netns
def test_the_command_line_runs_and_regrades_offline_as_a_run_under_that_profile_would(tmp_path: Path) -> None:
    files = [str(p.relative_to(REPO)) for p in RESET_CASES]
    runs = {}
    for profile in ("rfc9293", "rfc793"):
        out = tmp_path / profile
        proc = subprocess.run(
            [sys.executable, "-m", "conformance", "run", "--profile", profile, "--report-dir", str(out), *files],
            cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert proc.returncode == (0 if profile == "rfc9293" else 1), proc.stdout[-2000:] + proc.stderr[-2000:]
        assert "RFC 9293 connection management" in proc.stdout
        runs[profile] = json.loads((out / "results.json").read_text())
    proc = subprocess.run(
        [sys.executable, "-m", "conformance", "report", "regrade", str(tmp_path / "rfc9293" / "results.json"),
         "--profile", "rfc793"],
        cwd=REPO, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    regraded = json.loads((tmp_path / "rfc9293" / "results.rfc793.json").read_text())
    assert (tmp_path / "rfc9293" / "index.rfc793.html").exists()

    def verdicts(doc: dict) -> dict[str, str]:
        return {f"{c['id']}[{c['family']}]": c["verdict"] for c in doc["cases"]}

    assert verdicts(regraded) == verdicts(runs["rfc793"])
    assert "FAIL" in verdicts(regraded).values()
    assert regraded["grade"]["statement"] == runs["rfc793"]["grade"]["statement"]
    assert regraded["profile"] == "rfc793" and regraded["regraded_from"]["profile"] == "rfc9293"


@needs_netns
@pytest.mark.netns
def test_pytest_runs_the_cases_concurrently_and_reports_each(tmp_path: Path) -> None:
    from support import run_suite

    junit = tmp_path / "junit.xml"
    run = run_suite(tmp_path, "testcases/reset", "-v", f"--junitxml={junit}")
    assert run.returncode == 0, run.stdout[-3000:]
    results = run.results
    assert results["run"]["peak_in_flight"] > 10
    known = sum(1 for c in results["cases"] if c.get("waiver") == "waived")  # listed deviations: xfail
    assert known == 2  # RST-EST-EDGE-01 over IPv4 and IPv6
    assert run.stdout.count(" PASSED") + run.stdout.count(" XFAIL") == len(results["cases"])
    assert run.stdout.count(" XFAIL") == known
    # the waived tier: in the grade, on the console and in JUnit's properties
    assert sorted(w["case"] for w in results["grade"]["waived"]) == ["RST-EST-EDGE-01[ipv4]", "RST-EST-EDGE-01[ipv6]"]
    assert "waived: 2 known deviations (reviewed; their reasons are in the target's expectations file)" in run.stdout
    assert junit.read_text().count('<property name="waiver" value="waived" />') == 2


@needs_netns
@pytest.mark.netns
def test_under_xdist_a_worker_runs_the_cases_queued_for_it_concurrently(tmp_path: Path) -> None:
    from support import run_suite

    run = run_suite(tmp_path, "-n", "2", "testcases/reset")
    assert run.returncode == 0, run.stdout[-3000:]
    cases = run.results["cases"]
    by_worker: dict[str, list[tuple[float, float]]] = {}
    for path in run.report_dir.glob("cases.gw*.jsonl"):
        spans = [(_started(c), _started(c) + c["duration_s"]) for c in map(json.loads, path.read_text().splitlines())]
        by_worker[path.name] = sorted(spans)
    assert len(by_worker) == 2 and sum(len(v) for v in by_worker.values()) == len(cases)
    overlapping = sum(1 for spans in by_worker.values() for a, b in itertools.pairwise(spans) if b[0] < a[1])
    assert overlapping > 5, by_worker
