"""One reader per link: frames demultiplexed to the cases in flight, by the tester's port.

Rules of this module: only a ``Demux`` reads a link while cases run, from the event loop's thread; it never
interprets a segment beyond its 4-tuple. Every case owns the tester ports it sends from (ports are never shared
by cases in flight, see conformance/targets/ports.py), so a frame's tester port names its case: the destination
port of what the target sends, the source port of the tester's own frames that the capture shows. A frame no
case owns goes to the case that runs alone, if one does (a flood's answers to spoofed sources), else nowhere.

Theory of operation: the link's descriptor is registered with the event loop; when it is readable, or when the
link says a frame it holds becomes due (an impaired link's delayed frames), ``pump`` drains every ready frame
into the owners' inboxes and wakes the case waiting on each. A case waiting for a deadline pumps once more when
the deadline passes, and takes a frame the kernel stamped before the deadline as arrived in time: a busy event
loop delays the reading, never the verdict.
"""

from __future__ import annotations

import asyncio
import selectors
import time
from collections import deque

from ..wire.link import Frame, Link
from ..wire.segment import flow_key

SPIN_S = 0.002  # after the tester sends, the loop polls without sleeping this long: the target answers in microseconds


class SpinningSelector(selectors.EpollSelector):
    """An epoll selector that polls without sleeping for a short while after the tester sent a segment.

    Waking a process that sleeps in epoll costs more than a target takes to answer (hundreds of microseconds to
    milliseconds on a virtual machine against tens of microseconds); a few milliseconds of polling after each
    segment sent keeps the reaction time low, and the process sleeps whenever nothing is expected soon.
    """

    def __init__(self) -> None:
        super().__init__()
        self.spin_until = 0.0

    def expect_soon(self) -> None:
        self.spin_until = time.monotonic() + SPIN_S

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is not None and timeout <= 0:
            return super().select(0)
        start = time.monotonic()
        until = self.spin_until if timeout is None else min(self.spin_until, start + timeout)
        while time.monotonic() < until:
            ready = super().select(0)
            if ready:
                return ready
        if timeout is None:
            return super().select(None)
        return super().select(max(0.0, start + timeout - time.monotonic()))


def new_event_loop() -> asyncio.AbstractEventLoop:
    """The event loop cases run on: asyncio's, with the spinning selector."""
    return asyncio.SelectorEventLoop(SpinningSelector())


class Inbox:
    """The frames of one case, in arrival order, and the one waiter of that case."""

    def __init__(self, demux: Demux) -> None:
        self.demux = demux
        self.frames: deque[Frame] = deque()
        self._waiter: asyncio.Future[None] | None = None

    def put(self, frame: Frame) -> None:
        self.frames.append(frame)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def take(self) -> Frame | None:
        return self.frames.popleft() if self.frames else None

    async def next(self, deadline: float, deadline_wall: float) -> Frame | None:
        """The next frame before ``deadline`` (loop time); at the deadline, a frame the kernel stamped no later
        than ``deadline_wall`` still counts. None when nothing came in time (a later frame stays queued)."""
        loop = asyncio.get_running_loop()
        if not self.frames:
            self.demux.pump()  # the answer to a segment just sent is often queued already: no trip through the loop
        while not self.frames:
            remaining = deadline - loop.time()
            if remaining <= 0:
                self.demux.pump()
                if self.frames and self.frames[0].ts <= deadline_wall:
                    break
                return None
            self._waiter = loop.create_future()
            handle = loop.call_later(remaining, _wake, self._waiter)
            try:
                await self._waiter
            finally:
                handle.cancel()
                self._waiter = None
        return self.frames.popleft()


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class Demux:
    """Reads one link for every case in flight on it."""

    def __init__(self, link: Link, loop: asyncio.AbstractEventLoop) -> None:
        self.link = link
        self.loop = loop
        self._owners: dict[int, Inbox] = {}
        self._alone: Inbox | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = float("inf")
        self.error: BaseException | None = None  # the link failed while reading: the cases see it on their next read
        self._lost = 0  # frames the capture lost since the demultiplexer began
        self.closed = False
        self.fd = link.fileno()
        if self.fd is not None:
            loop.add_reader(self.fd, self.pump)

    def losses(self) -> int:
        """Frames the capture has lost since the demultiplexer began (a case compares two readings: a loss
        while it was in flight may have been one of its frames)."""
        if not self.closed:
            self._lost += self.link.drops()
        return self._lost

    def inbox(self) -> Inbox:
        return Inbox(self)

    def claim(self, port: int, inbox: Inbox) -> None:
        """Frames of tester port ``port`` belong to ``inbox`` from now on."""
        owner = self._owners.get(port)
        if owner is not None and owner is not inbox:
            raise RuntimeError(f"tester port {port} is already in use by another case in flight")
        self._owners[port] = inbox

    def release(self, inbox: Inbox) -> None:
        for port in [p for p, owner in self._owners.items() if owner is inbox]:
            del self._owners[port]
        if self._alone is inbox:
            self._alone = None

    def run_alone(self, inbox: Inbox | None) -> None:
        """``inbox`` gets every frame no case owns (None: such frames are dropped again)."""
        self._alone = inbox

    def send(self, packet: bytes) -> None:
        self.link.send(packet)
        self.expect_soon()
        self._schedule()  # a link that records the tester's frames itself holds them as due now

    def expect_soon(self) -> None:
        """An answer is due within microseconds (to a segment, or to an agent request): poll, do not sleep."""
        selector = getattr(self.loop, "_selector", None)
        if isinstance(selector, SpinningSelector):
            selector.expect_soon()

    def pump(self) -> None:
        """Move every frame that is ready to its case."""
        try:
            while (frame := self.link.poll_frame()) is not None:
                self._route(frame)
        except OSError as exc:  # the link went down: every case waiting on it must hear of it
            self.error = exc
            for inbox in {*self._owners.values(), *([self._alone] if self._alone else [])}:
                if inbox._waiter is not None and not inbox._waiter.done():
                    inbox._waiter.set_result(None)
            return
        self._schedule()

    def _route(self, frame: Frame) -> None:
        key = flow_key(frame.data)
        if key is None:
            return
        port = key[3] if frame.inbound else key[2]
        inbox = self._owners.get(port) or self._alone
        if inbox is not None:
            inbox.put(frame)

    def _schedule(self) -> None:
        due = self.link.next_due()
        if due is None:
            return
        at = self.loop.time() + max(0.0, due - time.monotonic())
        if self._timer is not None and self._timer_at <= at:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = at
        self._timer = self.loop.call_at(at, self._on_timer)

    def _on_timer(self) -> None:
        self._timer, self._timer_at = None, float("inf")
        self.pump()

    def close(self) -> None:
        self.closed = True
        if self.fd is not None:
            self.loop.remove_reader(self.fd)
            self.fd = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
