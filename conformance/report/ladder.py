"""A ladder (sequence) diagram of one case, as inline SVG for the HTML report.

Two lifelines, the tester on the left and the target (IUT) on the right, time flowing down: one arrow per
captured frame, the upper-tester actions as notes on the target's side, and for a failed case the segment
that arrived (red) next to the one the case expected (a dashed "ghost" arrow).

The SVG uses presentation attributes only, no `style` attribute, no `<style>` element and no `id`, so it
passes the report's Content-Security-Policy (which allows only its own hashed stylesheet) and several
diagrams can sit in one page. All text comes from results.json and is untrusted: it is cleaned of characters
XML cannot carry and escaped. The output depends only on the case, so two renderings compare equal.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

# Layout, in SVG user units (px at 100 %).
WIDTH = 1060
X_TESTER = 200
X_TARGET = 760
X_TIME, X_STEP = 92, 120  # right edge of the time column, centre of the step badges
HEAD_TOP, HEAD_H = 8, 26
FIRST_ROW = HEAD_TOP + HEAD_H + 22
ROW_FRAME, ROW_NOTE, ROW_RULE = 34, 28, 26
SLOPE = 8  # an arrow drops this much: time passes while a segment travels
MAX_LABEL = 82  # characters of an arrow label: 11 px monospace within the lifeline span
MAX_NOTE = 41  # characters of an upper-tester note
MAX_FRAMES = 300  # frames drawn; a longer trace ends in a "more frames" note

MONO = "DejaVu Sans Mono, Menlo, Consolas, Liberation Mono, monospace"
SANS = "system-ui, -apple-system, Segoe UI, Roboto, Helvetica Neue, Arial, sans-serif"
INK, MUTED, GREY, LINE = "#1f2328", "#59636e", "#8c959f", "#d1d9e0"
RED, GREEN = "#cf222e", "#1a7f37"
NOTE_FILL, NOTE_EDGE = "#fff8c5", "#d4a72c"

NOTHING = "(nothing)"
_ADDRESSES = re.compile(r"^\S+ > \S+?:?\s+(?=\S)")
_INVALID_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


# --------------------------------------------------------------------------- text


def _clean(value: Any) -> str:
    """Text XML can carry: control characters and lone surrogates become U+FFFD."""
    return _INVALID_XML.sub("\ufffd", "" if value is None else str(value))


_NEEDS_ESCAPING = re.compile('[&<>"\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]')


def _esc(value: Any) -> str:
    """Escape for element text and double-quoted attributes alike."""
    text = "" if value is None else str(value)
    if _NEEDS_ESCAPING.search(text) is None:  # most text: one scan, nothing to replace
        return text
    text = _clean(text)
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _option(text: str) -> str | None:
    """One option of a summary, shorter: padding is dropped, timestamps become `ts VAL/ECR`."""
    text = text.strip()
    if text in ("nop", "eol", ""):
        return None
    m = re.fullmatch(r"ts val (\S+) ecr (\S+)", text)
    return f"ts {m[1]}/{m[2]}" if m else text


def short_segment(summary: Any) -> str:
    """A segment summary without its addresses and padding options: what changes from arrow to arrow."""
    text = _ADDRESSES.sub("", _clean(summary).strip(), count=1)

    def options(m: re.Match[str]) -> str:
        kept = [o for o in (_option(p) for p in m[1].split(",")) if o]
        return f"<{','.join(kept)}>" if kept else ""

    text = re.sub(r"<([^<>]*)>", options, text)
    return re.sub(r"\s+", " ", text).strip()


def _ms(t: Any) -> str:
    try:
        return f"{float(t) * 1000:.3f} ms"
    except (TypeError, ValueError):
        return ""


# --------------------------------------------------------------------------- events


@dataclass(frozen=True)
class Event:
    """One row of the diagram."""

    kind: str  # frame | note | ghost | rule | more
    text: str = ""
    step: Any = None
    direction: str = "in"  # frames and ghosts: out = tester -> target
    t: Any = None
    role: str = ""  # frames: actual | cleanup | ""; notes: the step outcome; ghosts: nothing | ""
    tooltip: str = ""


def _as_maps(value: Any) -> list[Mapping[str, Any]]:
    items = value if isinstance(value, list | tuple) else []
    return [i for i in items if isinstance(i, Mapping)]


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _actual_index(trace: list[Mapping[str, Any]], failure: Mapping[str, Any]) -> int | None:
    """Index of the frame that failed the step: the frame whose summary is `failure.actual`, of that step
    or else the latest before it (a frame is tagged with the step running when it was captured, so one that
    arrived during a `ut` step and was then read by the next `expect` carries the `ut` step's index); without
    such a frame, the last frame from the target during the failing step, else the last frame of that step."""
    fail_step, actual = _number(failure.get("step")), failure.get("actual")
    if fail_step is None or actual in (None, "", NOTHING):
        return None
    steps = [_number(f.get("step")) for f in trace]
    same = [short_segment(f.get("summary")) == short_segment(actual) for f in trace]
    for pick in (
        [i for i, s in enumerate(steps) if same[i] and s == fail_step],
        [i for i, s in enumerate(steps) if same[i] and s is not None and s < fail_step],
        [i for i, s in enumerate(steps) if s == fail_step and trace[i].get("dir") == "in"],
        [i for i, s in enumerate(steps) if s == fail_step],
    ):
        if pick:
            return pick[-1]
    return None


def _note(step: Mapping[str, Any]) -> Event:
    summary, detail = _clean(step.get("summary") or "ut"), _clean(step.get("detail") or "")
    outcome = _clean(step.get("outcome") or "")
    text = f"{summary} \u2192 {detail}" if detail and detail != "ok" else summary
    if outcome not in ("ok", ""):
        text += f" ({outcome})"
    return Event("note", text, step.get("index"), role=outcome, tooltip=text)


def _ghost(failure: Mapping[str, Any], direction: str) -> Event | None:
    expected = failure.get("expected")
    if expected in (None, ""):
        return None
    text = "expected: " + short_segment(expected)
    nothing = failure.get("actual") == NOTHING
    return Event("ghost", text, failure.get("step"), direction, role="nothing" if nothing else "", tooltip=text)


def _frame(frame: Mapping[str, Any], role: str) -> Event:
    direction = "out" if frame.get("dir") == "out" else "in"
    text = short_segment(frame.get("summary"))
    tooltip = f"{_ms(frame.get('t'))}  {_clean(frame.get('summary'))}".strip()
    label = ("actual: " if role == "actual" else "") + text
    return Event("frame", label, frame.get("step"), direction, t=frame.get("t"), role=role, tooltip=tooltip)


def _pending(case: Mapping[str, Any], ghost: Event | None) -> list[tuple[float, int, Event]]:
    """Rows not tied to a frame, keyed so that they go before the first frame of a step above the key:
    an upper-tester note before the frames of its own step, a ghost after those of the failing step."""
    out: list[tuple[float, int, Event]] = []
    for s in _as_maps(case.get("steps")):
        if s.get("kind") == "ut":
            index = _number(s.get("index"))
            out.append((float("inf") if index is None else index - 0.5, 1, _note(s)))
    if ghost is not None:
        step = _number(ghost.step)
        out.append((float("inf") if step is None else step + 0.5, 0, ghost))
    return sorted(out, key=lambda item: item[:2])


def events(case: Mapping[str, Any]) -> list[Event]:
    """The rows in order: frames as captured, each upper-tester note before the first frame of a later
    step, the expected ghost right after the actual frame (or where the failing step would have received
    it), clean-up frames last under a rule."""
    trace = _as_maps(case.get("trace"))
    shown, hidden = trace[:MAX_FRAMES], len(trace) - MAX_FRAMES
    failure = case.get("failure")
    failure = failure if isinstance(failure, Mapping) else None
    actual = _actual_index(shown, failure) if failure else None
    direction = "out" if actual is not None and shown[actual].get("dir") == "out" else "in"
    ghost = _ghost(failure, direction) if failure else None
    pending = _pending(case, None if actual is not None else ghost)
    out: list[Event] = []

    def flush(below: float) -> None:
        while pending and pending[0][0] < below:
            out.append(pending.pop(0)[2])

    cleanup = False
    for i, frame in enumerate(shown):
        step = _number(frame.get("step"))
        if step is None and not cleanup:
            flush(float("inf"))
            out.append(Event("rule", "clean-up after the case"))
            cleanup = True
        elif step is not None and not cleanup:
            flush(step)
        out.append(_frame(frame, "actual" if i == actual else "cleanup" if step is None else ""))
        if i == actual and ghost is not None:
            out.append(ghost)
    if hidden > 0:
        out.append(Event("more", f"\u2026 {hidden} more frames, see the trace table"))
    if cleanup and pending:  # rows without a step index (key inf) still belong before the clean-up
        at = next(i for i, e in enumerate(out) if e.kind == "rule")
        out[at:at] = [e for _, _, e in pending]
    else:
        out.extend(e for _, _, e in pending)
    return out


# --------------------------------------------------------------------------- drawing


_ATTRIBUTE_NAMES: dict[str, str] = {}  # keyword -> SVG attribute name (class_ -> class, font_size -> font-size)


def _attrs(**attrs: Any) -> str:
    parts = []
    for key, value in attrs.items():
        if value is None:
            continue
        name = _ATTRIBUTE_NAMES.get(key)
        if name is None:
            name = _ATTRIBUTE_NAMES[key] = key.rstrip("_").replace("_", "-")
        # numbers (most attributes) need no escaping
        text = str(value) if type(value) in (int, float) else _esc(value)
        parts.append(f' {name}="{text}"')
    return "".join(parts)


def _text(x: float, y: float, body: str, **attrs: Any) -> str:
    return f"<text{_attrs(x=x, y=y, **attrs)}>{_esc(body)}</text>"


def _head_box(x: int, label: str) -> str:
    w = 120
    return (
        f"<rect{_attrs(x=x - w // 2, y=HEAD_TOP, width=w, height=HEAD_H, rx=4, fill='#f6f8fa', stroke=INK)}/>"
        + _text(x, HEAD_TOP + 17, label, text_anchor="middle", font_weight="600", font_size=12.5, fill=INK)
    )


def _arrow(y: float, direction: str, color: str, width: float, dash: str | None = None) -> str:
    x1, x2 = (X_TESTER, X_TARGET) if direction == "out" else (X_TARGET, X_TESTER)
    y2 = y + SLOPE
    sign = 1 if x2 > x1 else -1
    # The head: a filled triangle, so no <marker> (and no id) is needed.
    tip = f"{x2},{y2} {x2 - sign * 10},{y2 - 4.5} {x2 - sign * 10},{y2 + 4.5}"
    line = _attrs(x1=x1, y1=y, x2=x2 - sign * 9, y2=y2, stroke=color, stroke_width=width, stroke_dasharray=dash)
    return f"<line{line}/><polygon{_attrs(points=tip, fill=color)}/>"


def _gutter(y: float, e: Event, color: str) -> str:
    """Time and step index left of the tester's lifeline."""
    parts = []
    if e.t is not None:
        parts.append(_text(X_TIME, y + 4, _ms(e.t), text_anchor="end", font_size=10.5, fill=color, font_family=MONO))
    label = "\u2014" if e.step is None else str(_clean(e.step))
    parts.append(
        f"<rect{_attrs(x=X_STEP - 14, y=y - 7, width=28, height=15, rx=7.5, fill='#fff', stroke=color)}/>"
        + _text(X_STEP, y + 4, _cut(label, 4), text_anchor="middle", font_size=10, fill=color)
    )
    return "".join(parts)


def _draw_frame(y: float, e: Event) -> str:
    color, width = {"actual": (RED, 2.2), "cleanup": (GREY, 1.2)}.get(e.role, (INK, 1.4))
    cls = " ".join(["arrow", f"dir-{e.direction}", *([e.role] if e.role else [])])
    label_color = color if e.role else INK
    mid = (X_TESTER + X_TARGET) / 2
    return (
        f"<g{_attrs(class_=cls, data_step=e.step, data_dir=e.direction)}><title>{_esc(e.tooltip)}</title>"
        + _gutter(y + SLOPE / 2, e, color if e.role else MUTED)
        + _text(
            mid,
            y - 5,
            _cut(e.text, MAX_LABEL),
            text_anchor="middle",
            font_size=11,
            font_family=MONO,
            fill=label_color,
            font_weight="600" if e.role == "actual" else None,
        )
        + _arrow(y, e.direction, color, width)
        + "</g>"
    )


def _draw_ghost(y: float, e: Event) -> str:
    mid = (X_TESTER + X_TARGET) / 2
    parts = [
        f"<g{_attrs(class_=f'ghost expected dir-{e.direction}', data_step=e.step, data_dir=e.direction)}>",
        f"<title>{_esc(e.tooltip)}</title>",
        _text(
            mid,
            y - 5,
            _cut(e.text, MAX_LABEL),
            text_anchor="middle",
            font_size=11,
            font_family=MONO,
            fill=GREEN,
            font_style="italic",
        ),
        _arrow(y, e.direction, GREEN, 1.6, dash="6 4"),
    ]
    if e.role == "nothing":
        parts.append(
            _text(
                mid, y + SLOPE + 14, "nothing arrived", text_anchor="middle", font_size=11, font_weight="600", fill=RED
            )
        )
    return "".join(parts) + "</g>"


def _draw_note(y: float, e: Event) -> str:
    text = _cut(e.text, MAX_NOTE)
    w = min(int(len(text) * 6.4) + 16, WIDTH - X_TARGET - 16)
    bad = e.role in ("fail", "error")
    edge, ink = (RED, RED) if bad else (GREY, MUTED) if e.role == "skipped" else (NOTE_EDGE, INK)
    return (
        f"<g{_attrs(class_='note ut' + (f' {e.role}' if e.role else ''), data_step=e.step)}>"
        f"<title>{_esc(e.tooltip)}</title>"
        + _gutter(y, Event("note", step=e.step), MUTED)
        + f"<rect{_attrs(x=X_TARGET + 8, y=y - 10, width=w, height=20, rx=3, fill=NOTE_FILL, stroke=edge)}/>"
        + _text(X_TARGET + 16, y + 4, text, font_size=11, fill=ink)
        + "</g>"
    )


def _draw_rule(y: float, e: Event) -> str:
    line = _attrs(x1=20, y1=y, x2=WIDTH - 20, y2=y, stroke=GREY, stroke_dasharray="2 3")
    return (
        f'<g class="rule cleanup"><line{line}/>'
        + _text(X_TESTER + 8, y - 4, e.text, font_size=10.5, font_style="italic", fill=GREY)
        + "</g>"
    )


def _draw_more(y: float, e: Event) -> str:
    mid = (X_TESTER + X_TARGET) / 2
    return f'<g class="more">{_text(mid, y, e.text, text_anchor="middle", font_size=11, fill=MUTED)}</g>'


_ROW = {"frame": ROW_FRAME, "ghost": ROW_FRAME, "note": ROW_NOTE, "rule": ROW_RULE, "more": ROW_NOTE}
_DRAW = {"frame": _draw_frame, "ghost": _draw_ghost, "note": _draw_note, "rule": _draw_rule, "more": _draw_more}


def _rows(items: Iterable[Event]) -> Iterator[tuple[float, Event]]:
    """Each event with the y of its baseline; ghosts that report nothing arrived need room below."""
    y = FIRST_ROW + 12.0
    for e in items:
        yield y, e
        y += _ROW[e.kind] + (14 if e.kind == "ghost" and e.role == "nothing" else 0)


def ladder_svg(case: dict, *, standalone: bool = False) -> str:
    """The ladder diagram of one case (a results.json CASE) as an `<svg>` element.

    `standalone` adds the SVG namespace, needed when the markup is saved as an .svg file; inside HTML the
    parser supplies it (and the report must not contain any URL).
    """
    rows = list(_rows(events(case)))
    bottom = (rows[-1][0] + _ROW[rows[-1][1].kind] if rows else FIRST_ROW + 30) + 6
    if rows and rows[-1][1].kind == "ghost" and rows[-1][1].role == "nothing":
        bottom += 14
    height = int(bottom + 10)
    name = f"{_clean(case.get('id', '?'))}" + (f" [{_clean(case['family'])}]" if case.get("family") else "")
    ns = ' xmlns="http://www.w3.org/2000/svg"' if standalone else ""
    body = [
        f"<svg{ns}{_attrs(class_='ladder', width=WIDTH, height=height, viewBox=f'0 0 {WIDTH} {height}')}"
        f"{_attrs(role='img', aria_label=f'Ladder diagram of {name}', font_family=SANS)}>",
        f"<rect{_attrs(x=0, y=0, width=WIDTH, height=height, fill='#fff')}/>",
    ]
    for x in (X_TESTER, X_TARGET):
        body.append(f"<line{_attrs(x1=x, y1=HEAD_TOP + HEAD_H, x2=x, y2=bottom, stroke=LINE, stroke_width=2)}/>")
    body.append(_head_box(X_TESTER, "tester"))
    body.append(_head_box(X_TARGET, "target (IUT)"))
    body.append(_text(X_TIME, HEAD_TOP + 17, "t", text_anchor="end", font_size=10.5, fill=MUTED))
    body.append(_text(X_STEP, HEAD_TOP + 17, "step", text_anchor="middle", font_size=10.5, fill=MUTED))
    if not rows:
        body.append(
            _text(
                (X_TESTER + X_TARGET) / 2,
                FIRST_ROW + 14,
                "no frames captured, no upper-tester action",
                text_anchor="middle",
                font_size=11,
                fill=MUTED,
            )
        )
    body.extend(_DRAW[e.kind](y, e) for y, e in rows)
    body.append("</svg>")
    return "".join(body)
