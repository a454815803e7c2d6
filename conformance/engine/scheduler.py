"""Many cases in flight against one target: how many at once, and which ones must be alone.

Rules of this module: jobs start in the order given, up to ``limit`` at once; a job that must run alone (it
restarts the stack, floods it, samples its ISNs: what other cases would see changes) starts only when nothing
else is in flight, and nothing else starts until it ends. ``maintain`` runs between jobs with nothing in flight
when the target needs it (a crashed stack launched again). A new job starts only when the event loop is calm:
the cases in flight come first, so their reaction times do not suffer from a burst of starts. The scheduler
knows nothing of cases or verdicts.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterable, Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")
CALM_PROBE_S = 0.002  # a start waits this long on the loop's timer ...
CALM_S = 0.0003  # ... and goes ahead when the timer fired no later than this after it was due
CALM_TRIES = 100  # (a loop still busy after this many looks starts the job anyway)


async def _calm() -> None:
    """Return once the event loop keeps its timers: the cases in flight (and the machine, whose other processes
    are the target and its agent) have room for one more. Starting every job at once saturated both."""
    for _ in range(CALM_TRIES):
        began = time.perf_counter()
        await asyncio.sleep(CALM_PROBE_S)
        if time.perf_counter() - began - CALM_PROBE_S < CALM_S:
            return


class Scheduler(Generic[T]):
    def __init__(
        self,
        limit: int,
        *,
        alone: Callable[[T], bool],
        needs_maintenance: Callable[[], bool] = lambda: False,
        maintain: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.limit = max(1, limit)
        self.alone = alone
        self.needs_maintenance = needs_maintenance
        self.maintain = maintain
        self.in_flight: set[asyncio.Task[None]] = set()
        self.peak = 0  # the most jobs in flight at once, for the record

    async def run(self, jobs: AsyncIterable[T], start: Callable[[T], Awaitable[None]]) -> None:
        """Run every job; returns when all have ended. An exception of a job is the job's own business:
        ``start`` must catch what it can; anything it lets through cancels the rest and is raised here. Jobs may
        keep coming while others run (an asynchronous iterable)."""
        try:
            async for job in jobs:
                if self.alone(job):
                    await self._drain()
                    await self._maintained()
                    await start(job)
                    continue
                while len(self.in_flight) >= self.limit:
                    await self._one_ends()
                await _calm()
                if self.needs_maintenance():
                    await self._drain()
                    await self._maintained()
                task = asyncio.ensure_future(start(job))
                self.in_flight.add(task)
                self.peak = max(self.peak, len(self.in_flight))
            await self._drain()
        except BaseException:
            for task in self.in_flight:
                task.cancel()
            await asyncio.gather(*self.in_flight, return_exceptions=True)
            raise

    async def _maintained(self) -> None:
        if self.maintain is not None and self.needs_maintenance():
            await self.maintain()

    async def _one_ends(self) -> None:
        done, _ = await asyncio.wait(self.in_flight, return_when=asyncio.FIRST_COMPLETED)
        self._reap(done)

    async def _drain(self) -> None:
        while self.in_flight:
            await self._one_ends()

    def _reap(self, done: set[asyncio.Task[None]]) -> None:
        for task in done:
            self.in_flight.discard(task)
            task.result()  # a job's unexpected exception ends the run loudly, never silently
