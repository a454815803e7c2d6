"""allure-pytest integration: labels, links and severity from a case's metadata, one allure step per
protocol step (replayed from the case's record), and the case's evidence (pcap, ladder SVG, decoded trace,
result record) as attachments.

Used only when allure-pytest is active (``--alluredir``); everything here is a no-op otherwise.
"""

from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path
from typing import Any

import allure

from ..grading.grade import CORE_RFCS, DEFAULT_AREA, cited_rfcs
from ..grading.grade import area as area_of_rfcs

SEVERITY = {"MUST": "critical", "SHOULD": "normal", "MAY": "minor", "INFO": "trivial"}
_SECTION = re.compile(r"^rfc(\d+):(\d+(?:\.\d+)*)$")


def active(config: Any) -> bool:
    return bool(getattr(config.option, "allure_report_dir", None))


def area(refs: list[str]) -> str:
    """The RFC area a case belongs to: the companion RFC if one is cited, else RFC 9293."""
    companions = [n for n in cited_rfcs([{"refs": refs}]) if n not in CORE_RFCS]
    return area_of_rfcs(companions[:1]) if companions else DEFAULT_AREA


def rfc_link(ref: str) -> tuple[str, str] | None:
    """A link to the RFC section a ref names (metadata only: the report makes no request)."""
    m = _SECTION.match(ref)
    if m:
        return f"https://www.rfc-editor.org/rfc/rfc{m.group(1)}#section-{m.group(2)}", f"RFC {m.group(1)} §{m.group(2)}"
    if ref.startswith("rfc") and ":" in ref:
        number = ref.split(":", 1)[0][3:]
        return f"https://www.rfc-editor.org/rfc/rfc{number}", f"RFC {number} {ref.split(':', 1)[1]}"
    return None


def label_case(meta: Any, family: str, feature: str) -> None:
    allure.dynamic.epic(area(list(meta.refs)))
    allure.dynamic.feature(feature)
    allure.dynamic.story(meta.title)
    allure.dynamic.title(f"{meta.id} [{family}] {meta.title}")
    allure.dynamic.severity(SEVERITY[str(meta.level)])
    allure.dynamic.description(meta.requirement)
    allure.dynamic.tag(str(meta.level), family, *meta.tags)
    allure.dynamic.parameter("family", family)
    for ref in meta.refs:
        link = rfc_link(ref)
        if link:
            allure.dynamic.link(link[0], name=link[1])


class StepFailure(AssertionError):
    """Raised inside a replayed allure step so allure marks it failed (the case itself is judged elsewhere)."""


def replay_steps(record: dict[str, Any]) -> None:
    """One allure step per protocol step of the finished case, failed or broken where the case's step was.

    Cases run concurrently on the run's own thread, so their steps are shown after the case, from its record.
    """
    for step in record.get("steps") or []:
        title = f"{step['index']}. {step.get('summary', '')}"
        if step.get("origin"):
            title += f" [{step['origin']}]"
        with contextlib.suppress(StepFailure), allure.step(title):
            if step.get("outcome") in ("fail", "error", "inconclusive"):
                raise StepFailure(step.get("detail") or step.get("outcome"))


def attach_evidence(record: dict[str, Any], run_dir: Path, message: str, ladder_svg: str | None) -> None:
    if record.get("pcap"):
        pcap = run_dir / record["pcap"]
        if pcap.exists():
            allure.attach.file(str(pcap), name="capture", attachment_type=allure.attachment_type.PCAP)
    if ladder_svg:
        allure.attach(ladder_svg, name="ladder", attachment_type=allure.attachment_type.SVG)
    trace = "\n".join(
        f"{e['t'] * 1000:9.3f} ms {'<' if e['dir'] == 'in' else '>'} {e['summary']}" for e in record["trace"]
    )
    allure.attach(trace or "(no frames)", name="decoded trace", attachment_type=allure.attachment_type.TEXT)
    if message:
        allure.attach(message, name="verdict", attachment_type=allure.attachment_type.TEXT)
    allure.attach(json.dumps(record, indent=1), name="result", attachment_type=allure.attachment_type.JSON)


WAIVED_LABEL = ("waiver", "waived")


def mark_waived(reason: str) -> None:
    """Label a reviewed known deviation; `show_waived_as_failed` makes it failed once allure has written it
    (allure-pytest writes pytest's xfail, which keeps the run green, as skipped)."""
    allure.dynamic.label(*WAIVED_LABEL)
    allure.dynamic.tag("waived")
    allure.dynamic.parameter("known deviation", reason)


def show_waived_as_failed(results_dir: Path) -> int:
    """Every result labelled waived becomes *failed*, its message saying it was reviewed: a waived case is a
    failure the vendor has reviewed, never a skipped test (which would lift the pass rate). Returns how many."""
    changed = 0
    for path in sorted(Path(results_dir).glob("*-result.json")):
        with contextlib.suppress(OSError, ValueError):
            result = json.loads(path.read_text(encoding="utf-8"))
            labels = {(label.get("name"), label.get("value")) for label in result.get("labels") or []}
            if WAIVED_LABEL not in labels or result.get("status") == "failed":
                continue
            details = result.get("statusDetails") or {}
            details["message"] = "waived: " + str(details.get("message") or "a reviewed known deviation")
            result["status"], result["statusDetails"] = "failed", details
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(json.dumps(result), encoding="utf-8")
            tmp.replace(path)
            changed += 1
    return changed
