"""One target instance per worker, of the kind its targets.yaml entry names."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from ..engine.session import Link, PortAllocator
from ..upper_tester import AgentClient
from .config import TargetConfig
from .launched import LaunchedTarget
from .local import LocalTarget
from .remote import RemoteTarget

TESTER_PORTS_PER_WORKER = 4000


class Target(Protocol):
    config: TargetConfig
    link: Link | None
    agent: AgentClient | None

    @property
    def capabilities(self) -> set[str]: ...
    def start(self) -> None: ...
    def ensure_agent(self) -> None: ...
    def stop(self) -> None: ...


def make_target(entry: TargetConfig, worker: str, log_dir: Path | None, root: Path) -> Target:
    if entry.kind == "remote":
        return RemoteTarget(entry, worker, log_dir)
    if entry.kind == "launched":
        return LaunchedTarget(entry, worker, log_dir, root)
    return LocalTarget(entry, worker, log_dir)


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
