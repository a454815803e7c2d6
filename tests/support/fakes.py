"""Fakes of the engine's surroundings: a link whose target is a script, an agent with canned answers, and a way
to run one case on them and judge it (no network, no root)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from conformance.engine.context import requirement_line
from conformance.engine.demux import Demux
from conformance.engine.record import CaseRecord, Failure
from conformance.engine.steps import CaseRun
from conformance.grading.judge import Judgement, judge_case
from conformance.model.loader import Case, parse_case
from conformance.targets.session import Session
from conformance.tcp import SEQ_MOD, parse_flags
from conformance.vocabulary import DEFAULT_PROFILE
from conformance.wire.build import OutOption, OutSegment, build_packet
from conformance.wire.link import QueueLink
from conformance.wire.segment import Segment, parse_packet

TESTER, TARGET = "198.18.0.2", "198.18.0.1"
Script = Callable[[Segment], list[bytes]]


class FakeLink(QueueLink):
    """The ``Link`` protocol over a queue: replies come from ``script(sent segment)``, at once."""

    def __init__(self, script: Script | None = None) -> None:
        super().__init__()
        self.script = script or (lambda seg: [])
        self.sent: list[bytes] = []
        self.flushes = 0

    def send(self, packet: bytes) -> None:
        self.sent.append(packet)
        self._queue(packet, inbound=False)
        for reply_packet in self.script(parse_packet(packet)):  # type: ignore[arg-type]
            self._queue(reply_packet, inbound=True)

    def flush(self) -> int:
        self.flushes += 1
        return super().flush()


class FakeCall:
    """An agent call answered with ``result`` (after ``delay`` seconds)."""

    def __init__(self, result: dict, delay: float = 0.0) -> None:
        self.result = result
        self.ready_at = time.monotonic() + delay

    def done(self) -> bool:
        return time.monotonic() >= self.ready_at

    def on_done(self, callback: Callable[[], None]) -> None:
        callback()

    def wait(self, timeout: float) -> dict:
        return dict(self.result)

    async def answer(self, timeout: float) -> dict:
        await asyncio.sleep(max(0.0, self.ready_at - time.monotonic()))
        return dict(self.result)


class FakeAgent:
    """An upper tester that answers every call with a canned result (``slow``: ops answered after a delay)."""

    def __init__(self, results: dict[str, dict], slow: dict[str, float] | None = None) -> None:
        self.results = results
        self.slow = slow or {}
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.alive = True
        self.hello: dict[str, Any] = {}

    def attach(self, loop: Any) -> None:
        pass

    def detach(self) -> None:
        pass

    def submit(self, op: str, **args: Any) -> FakeCall:
        self.calls.append((op, args))
        return FakeCall(self.results.get(op, {}), self.slow.get(op, 0.0))


def reply(to: Segment, flags: str, seq: int, ack: int = 0, *, window: int = 65535,
          options: tuple[OutOption, ...] = (), payload: bytes = b"", sport: int | None = None) -> bytes:  # fmt: skip
    """A packet from the target answering ``to``."""
    out = OutSegment(to.family, to.dst, to.src, sport or to.dport, to.sport, seq % SEQ_MOD, ack % SEQ_MOD,
                     parse_flags(flags), window, 0, list(options), payload)  # fmt: skip
    return build_packet(out)


def case_text(steps: str, requires: str = "[]", alone: str | None = None) -> str:
    return (
        "id: REPLAY-01\n"
        "title: scripted replay\n"
        "refs: [rfc9293:3.10.7.1]\n"
        "requirement: the requirement of the scripted replay\n"
        "level: MUST\n"
        f"requires: {requires}\n" + (f"alone: {alone}\n" if alone else "") + "steps:\n" + steps
    )


def rst_ack(ack_offset: int = 1) -> Script:
    return lambda seg: [reply(seg, "RA", 0, seg.seq + ack_offset)] if seg.flags == 0x02 else []


@dataclass
class Replayed:
    """A case run on fakes: the engine's record and the judge's verdict of it."""

    record: CaseRecord
    judgement: Judgement
    run: CaseRun

    def __getattr__(self, name: str) -> Any:  # steps, trace, observations, behaviours, ...
        return getattr(self.record, name)

    @property
    def verdict(self) -> Any:
        return self.judgement.verdict

    @property
    def reason(self) -> str:
        return self.judgement.reason

    @property
    def behaviour(self) -> str | None:
        return self.judgement.behaviour

    @property
    def failure(self) -> Failure | None:
        return Failure.from_json(self.judgement.failure)


def run_session(case: Case, session: Session, profile: str = DEFAULT_PROFILE) -> Replayed:
    """Run one attempt of ``case`` on ``session`` (its link a fake) and judge it under ``profile``."""

    async def main() -> tuple[CaseRecord, CaseRun]:
        loop = asyncio.get_running_loop()
        demuxes: dict[int, Demux] = {}

        async def demux_for(link: Any, agent: Any = None) -> Demux:
            if id(link) not in demuxes or demuxes[id(link)].closed:
                demuxes[id(link)] = Demux(link, loop)
            return demuxes[id(link)]

        run = CaseRun(case, session, await demux_for(session.link), relink=demux_for)
        return await run.run(), run

    record, case_run = asyncio.run(main())
    judgement = judge_case([record.facts()], profile, requirement_line(case))
    return Replayed(record, judgement, case_run)


def run(text: str, script: Script | None = None, *, agent: FakeAgent | None = None, caps: set[str] | None = None,
        profile: str = DEFAULT_PROFILE) -> tuple[Replayed, FakeLink]:  # fmt: skip
    """Parse ``text``, run it on a fake link playing ``script`` (and ``agent``), judge it under ``profile``."""
    link = FakeLink(script)
    session = Session(link, agent, "ipv4", TESTER, TARGET, capabilities=frozenset(caps or ()))  # type: ignore[arg-type]
    return run_session(parse_case(text, "inline.yaml"), session, profile), link


def line_of(text: str, needle: str) -> int:
    assert text.count(needle) == 1, needle
    return text[: text.index(needle)].count("\n") + 1


def sent(link: FakeLink) -> list[Segment]:
    return [parse_packet(p) for p in link.sent]  # type: ignore[misc]
