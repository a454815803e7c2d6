"""results.json as written: the same document json.load gives back, the cases one per line, and each report file
written whole or not at all."""

from __future__ import annotations

import gc
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from conformance.report.page import page_chunks, render_page, write_page
from conformance.results import relative_to_root, write_document
from conformance.run import long_lived


def _doc(cases: list[dict]) -> dict:
    return {"schema": "tcp-conformance/results/2", "run_id": "r1", "target": {"name": "t", "sysctls": {}},
            "cases": cases, "grade": {"statement": "cases-looking text", "categories": {"PASS": 1}}}  # fmt: skip


@pytest.mark.parametrize("count", [0, 1, 3])
def test_results_json_reads_back_as_written_with_a_line_per_case(tmp_path: Path, count: int) -> None:
    cases = [{"id": f"C-{i}", "reason": 'a "quoted" \u2026 reason\nover two lines', "trace": [{"t": i}]}
             for i in range(count)]  # fmt: skip
    path = tmp_path / "results.json"
    write_document(_doc(cases), path)
    text = path.read_text(encoding="utf-8")
    assert json.loads(text) == _doc(cases)
    case_lines = [line for line in text.splitlines() if line.lstrip().startswith('{"id"')]
    assert [json.loads(line.strip().rstrip(",")) for line in case_lines] == cases
    assert '\n "run_id": "r1"' in text  # the rest stays indented
    assert not (tmp_path / "results.json.tmp").exists()


def test_a_page_written_in_chunks_is_the_page_and_a_failed_write_leaves_the_old_file(tmp_path: Path) -> None:
    kwargs = {"css": "p{}", "script": "let a=1;", "meta": {"generator": "test"}}
    page = render_page("T", "<p>body</p>", **kwargs)  # type: ignore[arg-type]
    assert "".join(page_chunks("T", ["<p>bo", "dy</p>"], **kwargs)) == page  # type: ignore[arg-type]
    out = tmp_path / "index.html"
    write_page(out, page_chunks("T", iter(["<p>body</p>"]), **kwargs))  # type: ignore[arg-type]
    assert out.read_text(encoding="utf-8") == page

    def broken() -> Iterator[str]:
        yield "<p>half"
        raise RuntimeError("rendering failed")

    with pytest.raises(RuntimeError):
        write_page(out, page_chunks("T", broken(), **kwargs))  # type: ignore[arg-type]
    assert out.read_text(encoding="utf-8") == page
    assert [p.name for p in tmp_path.iterdir()] == ["index.html"]


def test_objects_made_to_live_for_the_run_are_frozen_and_the_collector_is_restored() -> None:
    was_enabled = gc.isenabled()
    frozen_before = gc.get_freeze_count()
    try:
        with long_lived():
            assert not gc.isenabled()
            kept = [[i] for i in range(1000)]
        assert gc.isenabled() == was_enabled
        assert gc.get_freeze_count() >= frozen_before + len(kept)
    finally:
        gc.unfreeze()


def test_a_case_file_is_recorded_relative_to_the_root_links_resolved_only_when_needed(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    (root / "testcases").mkdir(parents=True)
    case = root / "testcases" / "c.yaml"
    case.write_text("")
    elsewhere = tmp_path / "elsewhere.yaml"
    elsewhere.write_text("")
    (root / "linked.yaml").symlink_to(elsewhere)
    assert relative_to_root(case, root) == Path("testcases/c.yaml")
    assert relative_to_root(root / "testcases" / ".." / "testcases" / "c.yaml", root) == Path("testcases/c.yaml")
    assert relative_to_root(elsewhere, root) == elsewhere  # outside the root: as it is
    assert relative_to_root(root / "linked.yaml", root) == Path("linked.yaml")  # named under the root: so recorded
    # a relative path is resolved against the working directory, as before
    assert relative_to_root(Path(os.path.relpath(case)), root) == Path("testcases/c.yaml")
