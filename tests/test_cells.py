"""The state x event matrix (conformance/oracle/cells.py, testcases/cells/): generated from the reference model,
kept in step with it, complete over the eleven states, merged without hiding a window edge, and able to fail."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from conformance.cellfiles import CELLS_DIR, render, stale, write
from conformance.model.loader import parse_case
from conformance.oracle.cells import (
    SEGMENT_CLASSES,
    cells_by_state,
    cells_of,
    outcomes,
    plan,
    purposes,
    raw_cell_count,
    signature,
)
from conformance.oracle.machine import State
from conformance.run import jobs_from_paths
from support import REPO, TARGETS

EDGES = {"LEFT", "RIGHT", "BELOW", "BEYOND"}


def test_the_case_files_are_the_ones_the_model_generates() -> None:
    problems = stale(REPO)
    assert not problems, f"{CELLS_DIR} is out of step with the model (python -m conformance cells --write): {problems}"


def test_the_planner_reaches_all_eleven_states_by_well_behaved_prologues() -> None:
    situations = plan()
    assert set(situations) == set(State)
    assert situations[State.TIME_WAIT].tcb.state == State.TIME_WAIT
    kinds = [m.kind for m in situations[State.LAST_ACK].moves]
    assert kinds == ["open_passive", "segment", "segment", "segment", "close"]  # SYN, ACK, FIN, then CLOSE
    assert [m.kind for m in situations[State.SYN_SENT].moves] == ["open_active"]
    assert situations[State.CLOSED].moves == ()


def test_every_cell_is_covered_exactly_once_and_no_two_window_edges_share_a_case() -> None:
    found = purposes()
    covered = Counter(cell.id for p in found for cell in p.covers)
    assert sum(covered.values()) == raw_cell_count() == 1194
    assert set(covered.values()) == {1}
    for purpose in found:
        edges = {cell.seq.name for cell in purpose.covers} & EDGES
        assert len(edges) <= 1, f"{purpose.cell.id} merges the edges {edges}"
        assert {c.segment.name for c in purpose.covers} == {purpose.cell.segment.name}
        assert {c.state for c in purpose.covers} == {purpose.cell.state}
    assert len(found) == sum(kept for _, kept in cells_by_state().values())


def test_merged_cells_have_the_same_outcome() -> None:
    situations = plan()
    for purpose in purposes()[::7]:
        situation = situations[purpose.cell.state]
        first = outcomes(purpose.cell, situation)
        for cell in purpose.covers[1:]:
            other = outcomes(cell, situation)
            assert signature(other) == signature(first), cell.id


def test_states_without_a_window_collapse_their_sequence_classes() -> None:
    situations = plan()
    listen = cells_of(State.LISTEN, situations[State.LISTEN].tcb)
    assert len(listen) == len(SEGMENT_CLASSES) and {c.seq.name for c in listen} == {"ANY"}
    established = cells_of(State.ESTABLISHED, situations[State.ESTABLISHED].tcb)
    assert {c.seq.name for c in established} == EDGES | {"INSIDE"}
    assert {c.ack.name for c in established if c.segment.name == "ACK"} == {"OLD", "NXT", "FUTURE"}
    fin_wait_1 = cells_of(State.FIN_WAIT_1, situations[State.FIN_WAIT_1].tcb)
    assert "UNA" in {c.ack.name for c in fin_wait_1}  # the FIN is outstanding: SND.UNA differs from SND.NXT


def test_a_cell_says_what_each_profile_accepts() -> None:
    by_id = {p.cell.id: p for p in purposes()}
    syn = by_id["CELL-EST-SYN-LEFT"].document
    (step,) = [s for s in syn["steps"] if "expect_one_of" in s]
    conforms = {a["label"]: a.get("conforms") for a in step["expect_one_of"]}
    assert conforms == {"syn-challenge--a": ["rfc9293", "rfc5961", "rfc1337"],
                        "syn-reset-793--r": ["rfc9293", "rfc793", "rfc1337"],
                        "syn-reset-793--ra": ["rfc9293", "rfc793", "rfc1337"]}  # fmt: skip
    rst = by_id["CELL-EST-RST-BEYOND"].document
    silence = {"for": "200ms", "ignore_retransmissions": True,
               "reason": "the model sends nothing here (seq.unacceptable-rst)"}  # fmt: skip
    assert {"expect_none": silence} in rst["steps"]
    assert {"ut": {"op": "state", "state": "ESTABLISHED"}} in rst["steps"]
    assert by_id["CELL-LISTEN-SYNFIN-ANY"].document["level"] == "INFO"


def test_every_rendered_case_loads_and_cites_registered_places() -> None:
    for purpose in purposes()[::5]:
        case = parse_case(render(purpose), f"{purpose.cell.id}.yaml")
        assert case.id == purpose.cell.id
        assert case.meta.cell is not None and case.meta.cell.covers == [c.id for c in purpose.covers]
        assert "cell" in case.meta.tags


def test_write_replaces_stale_and_extra_files(tmp_path: Path) -> None:
    extra = tmp_path / CELLS_DIR / "established" / "cell-est-gone.yaml"
    extra.parent.mkdir(parents=True)
    extra.write_text("old\n")
    files = write(tmp_path)
    assert not extra.exists()
    assert stale(tmp_path) == []
    some = next(iter(files.texts))
    (tmp_path / some).write_text("edited by hand\n")
    assert stale(tmp_path) == [f"changed: {some}"]


def test_the_cells_command_prints_the_size_and_checks_the_files(tmp_path: Path) -> None:
    run = subprocess.run([sys.executable, "-m", "conformance", "cells", "--check"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert run.returncode == 2 and "run this from the checkout" in run.stderr  # no testcases/ here
    (tmp_path / "testcases").mkdir()
    run = subprocess.run([sys.executable, "-m", "conformance", "cells", "--check"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert run.returncode == 1  # every file missing
    assert "python -m conformance cells --write" in run.stdout
    run = subprocess.run([sys.executable, "-m", "conformance", "cells", "--check"], cwd=REPO, capture_output=True,
                         text=True, timeout=60)  # fmt: skip
    assert run.returncode == 0, run.stdout
    assert "all              1194" in run.stdout and "in step with the reference model" in run.stdout


@pytest.mark.parametrize(
    ("mutant", "killer", "file"),
    [
        (("acceptability", "right-edge-inside"), "CELL-EST-RST-BEYOND", None),  # Linux's off-by-one at the right edge
        (("rst.exact", "stay"), "CELL-EST-RST-LEFT", None),  # a reset at RCV.NXT that keeps the connection
        (("syn.challenge", "seq+1"), "CELL-CW-SYN-LEFT", None),  # a challenge ACK with the wrong SEQ
        # TIME-WAIT kept silently on an in-window RST (RFC 1337's answer) under rfc9293: the cells cannot see
        # TIME-WAIT's state, the hand-written case probes it
        (("rst.in-window-challenge", "unchosen"), "TW-RST-INWIN-01", "testcases/timewait/rst-in-window.yaml"),
    ],
)
def test_a_cell_fails_a_stack_that_breaks_its_rule(mutant: tuple[str, str], killer: str, file: str | None) -> None:
    from conformance.mutation import measure
    from conformance.oracle.mutants import Mutant

    files = [REPO / file] if file else sorted((REPO / CELLS_DIR).rglob(f"{killer.lower()}.yaml"))
    assert files, killer
    (outcome,) = measure(jobs_from_paths(files, REPO), "reference", TARGETS, "rfc9293", REPO, [Mutant(*mutant)],
                         lambda _: None)  # fmt: skip
    assert outcome.status == "killed", outcome
    assert any(killer in k for k in outcome.killers)


def test_the_grid_draws_squares_in_window_order_marks_info_and_links_the_worse_family() -> None:
    from conformance.report.cellgrid import cell_grid, grid_counts

    def record(case_id: str, seq: str, family: str, verdict: str, level: str = "MUST") -> dict:
        cell = {"state": "ESTABLISHED", "segment": "RST", "seq": seq, "ack": "-", "covers": [case_id]}
        return {"id": case_id, "family": family, "verdict": verdict, "level": level, "cell": cell, "title": "t"}

    cases = [
        (record("CELL-EST-RST-BEYOND", "BEYOND", "ipv4", "PASS"), "#beyond-4"),
        (record("CELL-EST-RST-BEYOND", "BEYOND", "ipv6", "FAIL"), "#beyond-6"),
        (record("CELL-EST-RST-BELOW", "BELOW", "ipv4", "PASS"), "#below-4"),
        (record("CELL-EST-RST-LEFT", "LEFT", "ipv4", "PASS", "INFO"), "#left-4"),
        (record("HS-PASSIVE-01", "-", "ipv4", "PASS") | {"cell": None}, "#not-a-cell"),
    ]
    html = cell_grid(cases)
    order = [html.index(f'aria-label="CELL-EST-RST-{name}"') for name in ("BELOW", "LEFT", "BEYOND")]
    assert order == sorted(order)  # along the window, not by id
    assert 'class="sq g-deviates" href="#beyond-6"' in html  # the failing family's evidence
    assert 'class="sq g-info" href="#left-4"' in html
    assert "not-a-cell" not in html
    assert grid_counts([c for c, _ in cases]) == {"agrees": 1, "info": 1, "deviates": 1}
    assert cell_grid([cases[-1]]) == ""
