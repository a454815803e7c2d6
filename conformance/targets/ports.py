"""Fresh ports for every case, so no case meets a connection (or a TIME-WAIT) another case left behind.

Rules of this module: tester ports come in blocks of ``TESTER_BLOCK`` (a case also sends from l_port - 1 up to
l_port + 2, and those must be as fresh as l_port); closed ports on the target come from the entry's
``ports.closed`` range, below every stack's ephemeral range by default. Workers sharing one remote target get
disjoint ranges. An allocator is shared by all cases of a process, concurrent ones included.
"""

from __future__ import annotations

import itertools

from .config import TargetConfig

TESTER_BLOCK = 4
TESTER_PORTS_PER_WORKER = 4000


class PortAllocator:
    """Tester ports from 10000 upwards in blocks, closed target ports from 1024..9999 (or the declared range)."""

    def __init__(self, tester_start: int = 10000, target_start: int = 1024, target_end: int = 9999,
                 tester_end: int = 65535) -> None:  # fmt: skip
        self._tester = itertools.cycle(range(tester_start + 1, tester_end - TESTER_BLOCK + 2, TESTER_BLOCK))
        self._target = itertools.cycle(range(target_start, target_end + 1))

    def tester(self) -> int:
        return next(self._tester)

    def target_unused(self) -> int:
        return next(self._target)


def worker_index(worker: str) -> int:
    """``gw3`` -> 3; ``main`` -> 0."""
    digits = "".join(ch for ch in worker if ch.isdigit())
    return int(digits) if digits else 0


def port_allocator(entry: TargetConfig, worker: str) -> PortAllocator:
    """Fresh ports; workers sharing one target (the remote kind) get disjoint ranges so none sees another's
    connections: tester ports in blocks of 4000 from 10000, closed target ports split evenly."""
    low, high = entry.ports.closed_range()
    if entry.kind != "remote":
        return PortAllocator(target_start=low, target_end=high)
    index = worker_index(worker)
    tester_start = 10000 + (index * TESTER_PORTS_PER_WORKER) % (65536 - 10000 - TESTER_PORTS_PER_WORKER)
    share = max(1, (high - low + 1) // 16)  # at most 16 workers before ranges repeat
    start = low + (index % 16) * share
    return PortAllocator(tester_start, start, min(high, start + share - 1), tester_start + TESTER_PORTS_PER_WORKER - 1)
