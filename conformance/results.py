"""results.json: the run's source of truth (schema in docs/results-schema.md), written as cases finish.

Rules of this module: each finished case is appended at once to ``cases.<worker>.jsonl`` in the run directory, so a
crash loses at most the cases in flight; ``finalize`` merges those lines into results.json and grades the run.
A case record keeps the facts of every attempt (``attempts``) and the behaviours seen, so ``regrade`` can judge a
finished run again under another profile without the target; the verdict fields are the judge's, never the
engine's.
"""

from __future__ import annotations

import functools
import json
import platform
import socket
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import __version__
from .engine.record import CaseRecord
from .grading.explain import explain
from .grading.grade import grade
from .grading.judge import Judgement, judge_case, verdicts_by_profile, waiver
from .model.loader import Case
from .vocabulary import Verdict, numbered_requirements
from .wire.pcapng import write_pcapng

SCHEMA = "tcp-conformance/results/2"
READABLE_SCHEMAS = ("tcp-conformance/results/1", SCHEMA)


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def relative_to_root(file: Path, rootdir: Path) -> Path:
    """The case file as recorded: relative to the run's root when it lies under it (symbolic links resolved),
    else as it is. A file already written under the root with no ``..`` is taken as it is: resolving both paths
    cost a dozen system calls per case."""
    if file.is_absolute() and rootdir.is_absolute() and ".." not in file.parts and file.is_relative_to(rootdir):
        return file.relative_to(rootdir)
    try:
        return file.resolve().relative_to(_resolved(rootdir))
    except ValueError:
        return file


@functools.lru_cache(maxsize=8)
def _resolved(path: Path) -> Path:
    return path.resolve()


@functools.lru_cache(maxsize=4096)
def _relative_file(file: Path, rootdir: Path) -> str:
    return str(relative_to_root(file, rootdir))


def _requirements(case: Case) -> list[str]:
    """What the case counts towards: the numbered requirements it cites; a generated cell of the state x event
    matrix counts towards every place its model rules cite (sections, mostly: the processing rules of RFC 9293
    section 3.10 carry few numbered requirements)."""
    if case.meta.cell is not None:
        return list(case.meta.refs)
    return numbered_requirements(case.meta.refs)


def case_identity(case: Case, family: str, nodeid: str, rootdir: Path) -> dict[str, Any]:
    """The fields that say which case this is (the same before and after any re-grading)."""
    file = _relative_file(case.file, rootdir)
    out = {
        "id": case.id, "family": family, "nodeid": nodeid, "title": case.meta.title, "file": file,
        "line": case.line, "level": str(case.meta.level), "refs": list(case.meta.refs),
        "requirements": _requirements(case), "requirement": case.meta.requirement,
        "tags": list(case.meta.tags),
    }  # fmt: skip
    if case.meta.alone:
        out["alone"] = case.meta.alone
    if case.meta.cell is not None:
        out["cell"] = case.meta.cell.model_dump()
    return out


def case_record(
    identity: Mapping[str, Any],
    attempts: Sequence[CaseRecord],
    judgement: Judgement,
    *,
    pcap: str | None,
    rerun: str,
    known: Mapping[str, str] | None,
    record_s: float = 0.0,
) -> dict[str, Any]:
    """One case's results.json record: who it is, what the judge said, and the evidence of the chosen attempt."""
    chosen = attempts[judgement.chosen]
    record: dict[str, Any] = {
        **identity,
        "verdict": str(judgement.verdict), "reason": judgement.reason,
        "behaviour": judgement.behaviour,
        "behaviour_text": "; ".join(b.text for b in chosen.behaviours) or None,
        "behaviours": [b.as_json() for b in chosen.behaviours],
        "verdicts": verdicts_by_profile([a.facts() for a in attempts]),
        "started": iso(chosen.started), "duration_s": round(chosen.duration_s, 6),
        "protocol_wait_s": round(chosen.protocol_wait_s, 6), "blocked_s": round(chosen.blocked_s, 6),
        "record_s": round(record_s, 6),
        "failure": judgement.failure,
        "steps": [s.as_json() for s in chosen.steps], "trace": chosen.trace_json(),
        "observations": chosen.observations, "pcap": pcap, "rerun": rerun,
        "attempts": [a.facts() for a in attempts],
    }  # fmt: skip
    _mark_failed_step(record)
    if chosen.impairment:
        record["impairment"] = chosen.impairment
    if len(attempts) > 1:
        record["attempt_summary"] = judgement.attempts
    if known is not None:
        record["known_deviation"] = dict(known)
        record["waiver"] = waiver(judgement.verdict, known.get("verdict"), bool(chosen.impairment))
    record["message"] = explain(record, pcap)
    return record


def rejudge(record: dict[str, Any], profile: str) -> dict[str, Any]:
    """A finished case's record judged again under ``profile``, from the facts it kept (offline re-grading)."""
    attempts = record.get("attempts")
    if not isinstance(attempts, list) or not attempts:
        raise ValueError(f"{record.get('id')}: the record keeps no attempt facts (results written before schema 2)")
    requirement = (record.get("failure") or {}).get("requirement") or _requirement_line(record)
    judgement = judge_case(attempts, profile, requirement)
    out = dict(record)
    out["verdict"], out["reason"], out["failure"] = str(judgement.verdict), judgement.reason, judgement.failure
    out["steps"] = [_engine_view(s) for s in record.get("steps") or []]
    _mark_failed_step(out)
    if len(attempts) > 1:
        out["attempt_summary"] = judgement.attempts
    known = record.get("known_deviation")
    if known:
        out["waiver"] = waiver(judgement.verdict, known.get("verdict"), bool(record.get("impairment")))
    out["message"] = explain(out, record.get("pcap"))
    return out


def _mark_failed_step(record: dict[str, Any]) -> None:
    """The step the judge's evidence names is shown failed, also where the engine saw it match (a behaviour that
    does not conform under the profile); the engine's own view is kept beside (``engine_outcome``)."""
    failure = record.get("failure")
    if not failure or record.get("verdict") not in ("FAIL", "INCONCLUSIVE"):
        return
    for step in record.get("steps") or []:
        if step.get("index") == failure.get("step") and step.get("outcome") == "ok":
            step["engine_outcome"] = "ok"
            step["outcome"] = "fail" if record["verdict"] == "FAIL" else "inconclusive"


def _engine_view(step: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(step)
    if "engine_outcome" in out:
        out["outcome"] = out.pop("engine_outcome")
    return out


def _requirement_line(record: Mapping[str, Any]) -> str:
    ids = [r.split(":", 1)[1] for r in record.get("requirements") or []]
    where = ", ".join(ids) or ", ".join(record.get("refs") or [])
    return f"{record.get('requirement', '')} [{record.get('level', '')}; {where}]"


class RunWriter:
    """Appends case records for one worker; writes each case's pcap beside them."""

    def __init__(self, run_dir: Path, worker: str) -> None:
        self.run_dir = run_dir
        self.path = run_dir / f"cases.{worker}.jsonl"
        run_dir.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("a", encoding="utf-8")

    def write_pcap(self, record: CaseRecord, case_id: str, family: str, failed_step: int | None = None) -> str:
        """The case's frames as pcapng, each packet commented with the step that sent or matched it."""
        rel = f"cases/{case_id}-{family}.pcapng"
        frames = [(e.ts, e.raw, frame_comment(record, e.step, e.inbound, failed_step)) for e in record.trace]
        write_pcapng(self.run_dir / rel, frames, section_comment=f"tcp-conformance {__version__}: {case_id} [{family}]")
        return rel

    def append(self, record: dict[str, Any]) -> None:
        """One line per case, flushed at once: a crash of the process loses no finished case."""
        self._file.write(json.dumps(record, sort_keys=False) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def frame_comment(record: CaseRecord, step: int | None, inbound: bool, failed_step: int | None = None) -> str:
    """What Wireshark shows for a packet: which step of the case it belongs to and how that step ended."""
    if step is None:
        return "after the case: clean-up of the sockets the case opened"
    rec = next((r for r in record.steps if r.index == step), None)
    who = "target -> tester" if inbound else "tester -> target"
    if rec is None:
        return f"step {step}: {who}"
    status = "fail" if step == failed_step else rec.outcome
    outcome = {"ok": "", "fail": " [FAIL at this step]", "error": " [ERROR at this step]"}.get(status, "")
    origin = f" [{rec.origin}]" if rec.origin else ""
    return f"step {step} (line {rec.line}{origin}) {rec.summary}: {who}{outcome}"


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


def summarize(cases: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    counts = {str(v): 0 for v in Verdict}
    for case in cases:
        counts[case["verdict"]] = counts.get(case["verdict"], 0) + 1
    return counts


def document(cases: list[dict[str, Any]], header: Mapping[str, Any]) -> dict[str, Any]:
    """A results.json document for these case records under this header, graded."""
    doc = {
        "schema": SCHEMA, "suite_version": __version__, **header, "finished": iso(time.time()),
        "environment": {"python": platform.python_version(), "platform": platform.platform(),
                        "hostname": socket.gethostname()},
        "summary": summarize(cases), "cases": cases,
    }  # fmt: skip
    doc["grade"] = grade(doc)
    return doc


def write_document(doc: Mapping[str, Any], path: Path) -> None:
    """The document indented, except each case: one line per case, written as it is encoded (JSON's fast encoder;
    indenting the cases took four times as long, and the whole text held in memory was 40 MB for 1,400 cases)."""
    placeholder = json.dumps(f"cases-{uuid.uuid4().hex}")
    before, _, after = json.dumps({**doc, "cases": json.loads(placeholder)}, indent=1).partition(placeholder)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as out:
        out.write(before)
        cases = doc.get("cases") or []
        for i, case in enumerate(cases):
            out.write(("[\n  " if i == 0 else ",\n  ") + json.dumps(case))
        out.write("\n ]" if cases else "[]")
        out.write(after)
    tmp.replace(path)


def finalize(run_dir: Path, header: Mapping[str, Any]) -> dict[str, Any]:
    """Merge the workers' lines into results.json and return the document."""
    doc = document(read_cases(run_dir), header)
    write_document(doc, run_dir / "results.json")
    return doc


def regrade(doc: Mapping[str, Any], profile: str) -> dict[str, Any]:
    """A finished run's document judged again under ``profile`` (schema 2 keeps what that needs)."""
    cases = [rejudge(dict(c), profile) for c in doc.get("cases") or []]
    header = {k: v for k, v in doc.items() if k not in ("schema", "suite_version", "finished", "environment",
                                                        "summary", "cases", "grade")}  # fmt: skip
    header["profile"] = profile
    header["regraded_from"] = {"profile": doc.get("profile"), "finished": doc.get("finished")}
    out = document(cases, header)
    out["environment"] = doc.get("environment", out["environment"])
    return out
