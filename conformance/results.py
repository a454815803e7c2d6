"""results.json: the run's source of truth (schema in docs/results-schema.md).

Each finished case is appended at once to ``cases.<worker>.jsonl`` in the run directory, so a crash
loses at most the running case; ``finalize`` merges those lines into results.json at the end.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import __version__
from .engine.result import CaseResult, Verdict
from .grading.grade import grade
from .model.loader import Case
from .vocabulary import numbered_requirements
from .wire.pcapng import write_pcapng

SCHEMA = "tcp-conformance/results/1"


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def case_record(case: Case, family: str, nodeid: str, result: CaseResult, *, rootdir: Path,
                pcap: str | None, rerun: str, message: str,
                timing: dict[str, float] | None = None) -> dict[str, Any]:  # fmt: skip
    timing = timing or {}
    try:
        file = str(case.file.resolve().relative_to(rootdir))
    except ValueError:
        file = str(case.file)
    return {
        "id": case.id, "family": family, "nodeid": nodeid, "title": case.meta.title, "file": file,
        "line": case.line, "level": str(case.meta.level), "refs": list(case.meta.refs),
        "requirements": numbered_requirements(case.meta.refs),
        "requirement": case.meta.requirement, "tags": list(case.meta.tags),
        "verdict": str(result.verdict), "reason": result.reason,
        "behaviour": result.behaviour, "behaviour_text": result.behaviour_text,
        "started": iso(result.started), "duration_s": round(result.duration_s, 6),
        "protocol_wait_s": round(result.protocol_wait_s, 6), "blocked_s": round(result.blocked_s, 6),
        "item_wall_s": round(timing.get("item_wall_s", result.duration_s), 6),
        "target_setup_s": round(timing.get("target_setup_s", 0.0), 6),
        "failure": result.failure_json(), "message": message,
        "steps": [s.as_json() for s in result.steps], "trace": result.trace_json(),
        "observations": result.observations, "pcap": pcap, "rerun": rerun,
    }  # fmt: skip


class RunWriter:
    """Appends case records for one worker; writes the case's pcap beside them."""

    def __init__(self, run_dir: Path, worker: str) -> None:
        self.run_dir = run_dir
        self.path = run_dir / f"cases.{worker}.jsonl"
        run_dir.mkdir(parents=True, exist_ok=True)

    def pcap_path(self, case_id: str, family: str) -> tuple[Path, str]:
        rel = f"cases/{case_id}-{family}.pcapng"
        return self.run_dir / rel, rel

    def write_pcap(self, result: CaseResult, case_id: str, family: str) -> str:
        """The case's frames as pcapng, each packet commented with the step that sent or matched it."""
        path, rel = self.pcap_path(case_id, family)
        frames = [(e.ts, e.raw, frame_comment(result, e.step, e.inbound)) for e in result.trace]
        write_pcapng(path, frames, section_comment=f"tcp-conformance {__version__}: {case_id} [{family}]")
        return rel

    def append(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, sort_keys=False) + "\n"
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())


def frame_comment(result: CaseResult, step: int | None, inbound: bool) -> str:
    """What Wireshark shows for a packet: which step of the case it belongs to and how that step ended."""
    if step is None:
        return "after the case: clean-up of the sockets the case opened"
    record = next((r for r in result.steps if r.index == step), None)
    who = "target -> tester" if inbound else "tester -> target"
    if record is None:
        return f"step {step}: {who}"
    outcome = {"ok": "", "fail": " [FAIL at this step]", "error": " [ERROR at this step]"}.get(record.outcome, "")
    return f"step {step} (line {record.line}) {record.summary}: {who}{outcome}"


def read_cases(run_dir: Path) -> list[dict[str, Any]]:
    """Every case record of the run, from all workers, in start order; torn last lines are skipped."""
    cases = []
    for path in sorted(run_dir.glob("cases.*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                cases.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return sorted(cases, key=lambda c: c.get("started", ""))


def summarize(cases: list[dict[str, Any]]) -> dict[str, int]:
    counts = {str(v): 0 for v in Verdict}
    for case in cases:
        counts[case["verdict"]] = counts.get(case["verdict"], 0) + 1
    return counts


def finalize(run_dir: Path, header: dict[str, Any]) -> dict[str, Any]:
    """Merge the workers' lines into results.json and return the document."""
    cases = read_cases(run_dir)
    doc = {
        "schema": SCHEMA, "suite_version": __version__, **header, "finished": iso(time.time()),
        "environment": {"python": platform.python_version(), "platform": platform.platform(),
                        "hostname": socket.gethostname()},
        "summary": summarize(cases), "cases": cases,
    }  # fmt: skip
    doc["grade"] = grade(doc)
    tmp = run_dir / "results.json.tmp"
    tmp.write_text(json.dumps(doc, indent=1), encoding="utf-8")
    tmp.replace(run_dir / "results.json")
    return doc
