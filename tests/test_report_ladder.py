"""The ladder diagram: well-formed SVG, one arrow per frame in the right direction, the failure made visible."""

from __future__ import annotations

import copy
import xml.etree.ElementTree as ET

import pytest

from conformance.report.ladder import X_TARGET, X_TESTER, events, ladder_svg, short_segment

RED, GREEN, GREY = "#cf222e", "#1a7f37", "#8c959f"
A = "198.18.0.2:10018 > 198.18.0.1:34259:"  # tester -> target
B = "198.18.0.1:34259 > 198.18.0.2:10018:"  # target -> tester


def frame(t: float, direction: str, rest: str, step: int | None) -> dict:
    return {"t": t, "dir": direction, "summary": f"{A if direction == 'out' else B} {rest}", "step": step}


def step(index: int, kind: str, summary: str, outcome: str = "ok", detail: str = "") -> dict:
    return {"index": index, "line": 10 + index, "kind": kind, "summary": summary, "outcome": outcome, "detail": detail}


@pytest.fixture
def case() -> dict:
    """RST-SYNEST-01 as a real rfc793 run records it: a challenge ACK where the profile wants a reset."""
    return {
        "id": "RST-SYNEST-01",
        "family": "ipv4",
        "verdict": "FAIL",
        "steps": [
            step(1, "ut", "ut listen"),
            step(2, "send", "send S"),
            step(3, "expect", "expect SA"),
            step(4, "send", "send A"),
            step(5, "ut", "ut accept"),
            step(6, "send", "send S"),
            step(7, "expect_one_of", "expect one of: challenge-ack, reset", "fail"),
            step(8, "ut", "ut state", "skipped"),
        ],
        "trace": [
            frame(0.000599, "out", "S seq 3171666456 win 65535 <mss 1460> len 0", 2),
            frame(0.000625, "in", "SA seq 2664978708 ack 3171666457 win 64240 <mss 1460,nop,nop,sackok> len 0", 3),
            frame(0.000784, "out", "A seq 3171666457 ack 2664978709 win 65535 len 0", 4),
            frame(0.001609, "out", "S seq 3171666457 win 65535 <mss 1460> len 0", 6),
            frame(0.001618, "in", "A seq 2664978709 ack 3171666457 win 64240 len 0", 7),
            frame(0.002206, "in", "RA seq 2664978709 ack 3171666457 win 64240 len 0", None),
        ],
        "failure": {
            "step": 7,
            "line": 20,
            "kind": "expect_one_of",
            "expected": "R seq 2664978709 win 0",
            "actual": f"{B} A seq 2664978709 ack 3171666457 win 64240 len 0",
            "mismatches": [],
        },
    }


def parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg)
    assert root.tag == "svg"
    return root


def groups(root: ET.Element, cls: str) -> list[ET.Element]:
    return [g for g in root.iter("g") if cls in (g.get("class") or "").split()]


def label(g: ET.Element) -> str:
    """The arrow's label: the first <text> drawn on the arrow (the gutter holds time and step)."""
    texts = [t.text or "" for t in g.iter("text")]
    return max(texts, key=len)


def x_span(g: ET.Element) -> tuple[float, float]:
    line = g.find("line")
    assert line is not None
    return float(line.get("x1")), float(line.get("x2"))


# --------------------------------------------------------------------------- structure


def test_parses_as_xml_and_has_both_lifelines(case: dict) -> None:
    root = parse(ladder_svg(case))
    texts = [t.text for t in root.iter("text")]
    assert "tester" in texts and "target (IUT)" in texts
    width, height = int(root.get("width")), int(root.get("height"))
    assert root.get("viewBox") == f"0 0 {width} {height}"
    assert 600 <= width <= 1200 and 100 <= height <= 1000
    assert root.get("role") == "img" and "RST-SYNEST-01 [ipv4]" in root.get("aria-label")


def test_one_arrow_per_frame_in_the_right_direction(case: dict) -> None:
    arrows = groups(parse(ladder_svg(case)), "arrow")
    assert len(arrows) == len(case["trace"])
    for g, f in zip(arrows, case["trace"], strict=True):
        x1, x2 = x_span(g)
        assert g.get("data-dir") == f["dir"]
        if f["dir"] == "out":
            assert x1 == X_TESTER and X_TESTER < x2 <= X_TARGET
        else:
            assert x1 == X_TARGET and X_TESTER <= x2 < X_TARGET
        texts = [t.text for t in g.iter("text")]
        assert f"{f['t'] * 1000:.3f} ms" in texts, "time in ms beside the arrow"
        assert str(f["step"] if f["step"] is not None else "\u2014") in texts, "step index per arrow"
        assert g.find("title").text.endswith(f["summary"]), "the full summary as tooltip"


def test_labels_are_shortened_sensibly(case: dict) -> None:
    arrows = groups(parse(ladder_svg(case)), "arrow")
    assert label(arrows[0]) == "S seq 3171666456 win 65535 <mss 1460> len 0"
    assert label(arrows[1]) == "SA seq 2664978708 ack 3171666457 win 64240 <mss 1460,sackok> len 0"
    assert (
        short_segment("[2001:2::1]:34597 > [2001:2::2]:10019: SA seq 1 ack 2 win 3 len 0")
        == "SA seq 1 ack 2 win 3 len 0"
    )
    assert short_segment("fd00::2 > fd00::1 S") == "S"
    assert short_segment("x > y: S seq 1 win 2 <mss 1460,nop,ts val 7 ecr 0,nop,wscale 10> len 0") == (
        "S seq 1 win 2 <mss 1460,ts 7/0,wscale 10> len 0"
    )
    assert short_segment("x > y: A seq 1 <nop,nop> len 0") == "A seq 1 len 0"


def test_long_labels_are_cut_with_the_full_text_as_tooltip(case: dict) -> None:
    case["trace"][0]["summary"] = f"{A} S seq 1 win 2 <{','.join(['sackok'] * 40)}> len 0"
    g = groups(parse(ladder_svg(case)), "arrow")[0]
    assert label(g).endswith("\u2026") and len(label(g)) <= 90
    assert g.find("title").text.endswith("len 0")


def test_upper_tester_actions_are_notes_on_the_target_side_in_sequence(case: dict) -> None:
    root = parse(ladder_svg(case))
    notes = groups(root, "note")
    assert [label(n) for n in notes] == ["ut listen", "ut accept", "ut state (skipped)"]
    for n in notes:
        assert float(n.find("rect[@fill='#fff8c5']").get("x")) > X_TARGET
    order = [(e.kind, e.step) for e in events(case)]
    assert order == [
        ("note", 1),
        ("frame", 2),
        ("frame", 3),
        ("frame", 4),
        ("note", 5),
        ("frame", 6),
        ("frame", 7),
        ("ghost", 7),
        ("note", 8),
        ("rule", None),
        ("frame", None),
    ]


def test_note_shows_a_ut_result_worth_reading(case: dict) -> None:
    case["steps"].append(step(9, "ut", "ut state", detail="ESTABLISHED"))
    notes = groups(parse(ladder_svg(case)), "note")
    assert label(notes[-1]) == "ut state \u2192 ESTABLISHED"


# --------------------------------------------------------------------------- failure


def test_fail_case_has_red_actual_arrow_and_dashed_expected_ghost(case: dict) -> None:
    root = parse(ladder_svg(case))
    actual = groups(root, "actual")
    assert len(actual) == 1 and actual[0].get("data-step") == "7" and actual[0].get("data-dir") == "in"
    assert actual[0].find("line").get("stroke") == RED and actual[0].find("polygon").get("fill") == RED
    assert label(actual[0]) == "actual: A seq 2664978709 ack 3171666457 win 64240 len 0"
    ghost = groups(root, "ghost")
    assert len(ghost) == 1
    line = ghost[0].find("line")
    assert line.get("stroke-dasharray") and line.get("stroke") == GREEN
    assert label(ghost[0]) == "expected: R seq 2664978709 win 0"
    assert x_span(ghost[0])[0] == X_TARGET, "drawn in the direction of the actual segment"
    # next to it: the ghost is the row right after the actual arrow
    kinds = [(e.kind, e.role) for e in events(case)]
    assert kinds.index(("ghost", "")) == kinds.index(("frame", "actual")) + 1
    others = [g for g in groups(root, "arrow") if "actual" not in g.get("class")]
    assert all(g.find("line").get("stroke") != RED for g in others)


def test_actual_frame_captured_during_an_earlier_step(case: dict) -> None:
    """Data the target sent during `ut send` is tagged with that step, but failed the `expect` after it."""
    case["steps"][5:] = [step(6, "ut", "ut send"), step(7, "expect", "expect A len 1", "fail")]
    case["trace"][3:] = [
        frame(0.0016, "in", "A seq 2664978709 ack 3171666457 win 64240 len 48", 6),
        frame(0.0017, "in", "A seq 2664978757 ack 3171666457 win 64240 len 48", 6),
    ]
    case["failure"].update(actual=f"{B} A seq 2664978709 ack 3171666457 win 64240 len 48", expected="A len 1")
    root = parse(ladder_svg(case))
    actual = groups(root, "actual")
    assert len(actual) == 1 and label(actual[0]).endswith("A seq 2664978709 ack 3171666457 win 64240 len 48")
    order = [(e.kind, e.role) for e in events(case)]
    assert order[order.index(("frame", "actual")) + 1] == ("ghost", "")


def test_nothing_arrived_draws_only_the_expected_ghost(case: dict) -> None:
    case["trace"] = [f for f in case["trace"] if f["step"] != 7]
    case["failure"].update(actual="(nothing)", expected="R seq 2664978709")
    root = parse(ladder_svg(case))
    assert not groups(root, "actual")
    ghost = groups(root, "ghost")
    assert len(ghost) == 1 and ghost[0].find("line").get("stroke-dasharray")
    texts = [t.text for t in ghost[0].iter("text")]
    assert "nothing arrived" in texts and "expected: R seq 2664978709" in texts
    order = [(e.kind, e.step) for e in events(case)]
    assert order.index(("ghost", 7)) == order.index(("frame", 6)) + 1, "where step 7 would have received it"
    assert order.index(("ghost", 7)) < order.index(("rule", None))


def test_failure_without_expected_text_draws_no_ghost(case: dict) -> None:
    case["failure"]["expected"] = ""
    root = parse(ladder_svg(case))
    assert not groups(root, "ghost") and len(groups(root, "actual")) == 1


def test_pass_case_has_no_red_and_no_ghost(case: dict) -> None:
    case["failure"] = None
    svg = ladder_svg(case)
    root = parse(svg)
    assert not groups(root, "ghost") and not groups(root, "actual") and RED not in svg


# --------------------------------------------------------------------------- clean-up, robustness


def test_cleanup_frames_are_grey_below_a_rule(case: dict) -> None:
    root = parse(ladder_svg(case))
    cleanup = groups(root, "cleanup")
    rule = [g for g in cleanup if "rule" in g.get("class")]
    frames = [g for g in cleanup if "arrow" in g.get("class")]
    assert len(rule) == 1 and len(frames) == 1
    assert frames[0].get("data-step") is None
    assert frames[0].find("line").get("stroke") == GREY
    assert label(frames[0]) == "RA seq 2664978709 ack 3171666457 win 64240 len 0"
    assert float(frames[0].find("line").get("y1")) > float(rule[0].find("line").get("y1"))


def test_hostile_text_is_escaped(case: dict) -> None:
    evil = '<script>alert(1)</script> & "quoted" \x00\x1b]0;\ud800'
    case["id"] = evil
    case["trace"][0]["summary"] = evil
    case["steps"][0]["summary"] = evil
    case["failure"]["expected"] = evil
    svg = ladder_svg(case)
    assert "<script>" not in svg and "\x00" not in svg and "\ud800" not in svg
    root = parse(svg)
    assert not list(root.iter("script"))
    assert any("<script>alert(1)</script>" in (t.text or "") for t in root.iter("text"))
    assert root.get("aria-label").startswith('Ladder diagram of <script>alert(1)</script> & "quoted"')
    for el in root.iter():
        assert not any(name.startswith("on") or name == "style" for name in el.attrib)
        assert el.tag != "style"


def test_deterministic_and_input_untouched(case: dict) -> None:
    before = copy.deepcopy(case)
    assert ladder_svg(case) == ladder_svg(copy.deepcopy(case))
    assert case == before


def test_no_ids_no_urls_unless_standalone(case: dict) -> None:
    svg = ladder_svg(case)
    assert "id=" not in svg.replace("data-", "") and "http" not in svg and "url(" not in svg
    standalone = ladder_svg(case, standalone=True)
    assert ET.fromstring(standalone).tag == "{http://www.w3.org/2000/svg}svg"


@pytest.mark.parametrize(
    "sparse",
    [
        {},
        {"id": "A-1", "trace": "garbage", "steps": None, "failure": "no"},
        {"trace": [{"dir": "sideways"}, "x", {"t": "soon", "step": "two", "summary": None}]},
        {"failure": {"step": None, "expected": "S", "actual": "(nothing)"}},
    ],
)
def test_sparse_or_broken_cases_still_render(sparse: dict) -> None:
    root = parse(ladder_svg(sparse))
    assert root.get("width")


def test_a_very_long_trace_is_capped() -> None:
    trace = [frame(i / 1000, "out" if i % 2 else "in", f"A seq {i} len 0", 1) for i in range(1000)]
    root = parse(ladder_svg({"id": "BIG", "trace": trace}))
    assert len(groups(root, "arrow")) == 300
    assert "700 more frames" in label(groups(root, "more")[0])
    assert int(root.get("height")) < 12000
