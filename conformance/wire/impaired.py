"""An impaired link: netem's loss, delay, jitter, duplication and reordering, applied at the lower
tester's own link boundary, in both directions.

Why here and not with ``tc qdisc ... netem``: this host's kernel is built without sch_netem (and without
loadable modules), so no qdisc can delay or reorder. The wrapper sits exactly where the wire would be: the
tester's segments are dropped, held or doubled before they are written into the target's device, and the
target's segments after they left it and before the engine sees them. It works the same for every link kind
and needs no privileges. The engine is not told what happened to a frame: it only knows that the link is
declared impaired (``impairment``), as it would on a real bad link.

Floods (``tun_fd`` writes) bypass the impairment on purpose: they measure load, not loss.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from .impairment import Impairment, parse_impairment
from .link import Frame, Link


@dataclass
class Counters:
    frames: int = 0
    dropped: int = 0
    duplicated: int = 0
    delayed: int = 0


@dataclass
class _Fate:
    """Chooses what happens to each frame of one direction (netem's order: loss, duplicate, delay)."""

    imp: Impairment
    rng: random.Random
    counters: Counters = field(default_factory=Counters)

    def delays(self) -> list[float]:
        """One delay per copy to deliver; empty when the frame is lost."""
        imp, rng, c = self.imp, self.rng, self.counters
        c.frames += 1
        if imp.loss and rng.random() < imp.loss:
            c.dropped += 1
            return []
        copies = 1
        if imp.duplicate and rng.random() < imp.duplicate:
            copies = 2
            c.duplicated += 1
        out = []
        for _ in range(copies):
            if imp.reorder and rng.random() < imp.reorder:
                out.append(0.0)  # goes at once, ahead of frames still held
                continue
            d = imp.delay_s + (rng.uniform(-imp.jitter_s, imp.jitter_s) if imp.jitter_s else 0.0)
            out.append(max(0.0, d))
        c.delayed += any(out)
        return out


class ImpairedLink:
    """Wraps a link and impairs both directions; everything else is the inner link's."""

    def __init__(self, inner: Link, impairment: Impairment, seed: int | None = None) -> None:
        self.inner = inner
        self.impairment = impairment
        rng = random.Random(seed)
        self.outbound = _Fate(impairment, random.Random(rng.getrandbits(64)))
        self.inbound = _Fate(impairment, random.Random(rng.getrandbits(64)))
        self._held: list[tuple[float, int, Frame]] = []  # target -> tester frames not yet delivered
        self._order = itertools.count()
        self._queue: list[tuple[float, int, bytes]] = []  # tester -> target packets not yet written
        self._cv = threading.Condition()
        self._closed = False
        self._writer: threading.Thread | None = None

    # ---- what the inner link does unchanged -------------------------------------------------------------------
    @property
    def down(self) -> str | None:
        return self.inner.down

    def allow(self, *addresses: str) -> None:
        self.inner.allow(*addresses)

    def check_destination(self, packet: bytes) -> None:
        self.inner.check_destination(packet)

    def drops(self) -> int:
        return self.inner.drops()

    def fileno(self) -> int | None:
        return self.inner.fileno()

    def flood_writer(self) -> Callable[[bytes], None]:
        return self.inner.flood_writer()  # floods measure load, not loss: they bypass the impairment

    # ---- tester -> target -------------------------------------------------------------------------
    def send(self, packet: bytes) -> None:
        self.inner.check_destination(packet)  # refuse at once, not later on the writer thread
        for delay in self.outbound.delays():
            if delay == 0.0:
                self.inner.send(packet)
                continue
            with self._cv:
                heapq.heappush(self._queue, (time.monotonic() + delay, next(self._order), packet))
                if self._writer is None:
                    self._writer = threading.Thread(target=self._write_loop, name="impaired-link", daemon=True)
                    self._writer.start()
                self._cv.notify()

    def _write_loop(self) -> None:
        while True:
            with self._cv:
                while not self._closed and (not self._queue or self._queue[0][0] > time.monotonic()):
                    timeout = self._queue[0][0] - time.monotonic() if self._queue else None
                    self._cv.wait(timeout)
                if self._closed:
                    return
                _, _, packet = heapq.heappop(self._queue)
            with contextlib.suppress(OSError):  # the link went away with the frame in flight: lost on the wire
                self.inner.send(packet)

    # ---- target -> tester -------------------------------------------------------------------------
    def receive(self, timeout: float) -> Frame | None:
        deadline = time.monotonic() + timeout
        while True:
            now = time.monotonic()
            if self._held and self._held[0][0] <= now:
                return heapq.heappop(self._held)[2]
            wait = deadline - now
            if self._held:
                wait = min(wait, self._held[0][0] - now)
            if wait < 0:
                return None
            frame = self.inner.receive(wait)
            if frame is None:
                if time.monotonic() >= deadline and not (self._held and self._held[0][0] <= time.monotonic()):
                    return None
                continue
            if not frame.inbound:
                return frame  # the capture of the tester's own segment, already impaired on the way in
            self._hold(frame, time.monotonic())

    def poll_frame(self) -> Frame | None:
        """A held frame whose delay is over, else the inner link's next frame (inbound ones get their fate)."""
        while True:
            now = time.monotonic()
            if self._held and self._held[0][0] <= now:
                return heapq.heappop(self._held)[2]
            frame = self.inner.poll_frame()
            if frame is None or not frame.inbound:
                return frame
            self._hold(frame, now)

    def next_due(self) -> float | None:
        dues = [due for due in (self._held[0][0] if self._held else None, self.inner.next_due()) if due is not None]
        return min(dues) if dues else None

    def _hold(self, frame: Frame, now: float) -> None:
        for delay in self.inbound.delays():
            heapq.heappush(self._held, (now + delay, next(self._order), replace(frame, ts=frame.ts + delay)))

    def flush(self) -> int:
        dropped = len(self._held)
        self._held.clear()
        return dropped + self.inner.flush()

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._queue.clear()
            self._cv.notify()
        if self._writer is not None:
            self._writer.join(timeout=1.0)
        self.inner.close()


def impaired(link: Any, impair: str) -> Any:
    """``link`` wrapped in the impairment a target entry (or --impair) names; the link itself on a clean one."""
    impairment = parse_impairment(impair)
    return ImpairedLink(link, impairment) if impairment.active else link
