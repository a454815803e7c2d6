"""One target instance per worker, of the kind its targets.yaml entry names.

The reference target (the model of conformance/oracle/) is imported only when a run uses it: a run against any
other target does not pay for loading the model at start-up."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from ..upper_tester import AgentClient
from ..wire.link import Link
from .config import TargetConfig
from .launched import LaunchedTarget
from .local import LocalTarget
from .ports import PortAllocator
from .remote import RemoteTarget
from .session import Session


class Target(Protocol):
    config: TargetConfig
    link: Link | None
    agent: AgentClient | None

    @property
    def capabilities(self) -> set[str]: ...
    def start(self) -> None: ...
    def ensure_agent(self) -> None: ...
    def stop(self) -> None: ...
    def healthy(self) -> bool: ...
    def restart(self) -> tuple[Link, AgentClient | None]: ...
    def session(self, family: str, ports: PortAllocator) -> Session: ...


def make_target(entry: TargetConfig, worker: str, log_dir: Path | None, root: Path) -> Target:
    if entry.kind == "remote":
        return RemoteTarget(entry, worker, log_dir)
    if entry.kind == "launched":
        return LaunchedTarget(entry, worker, log_dir, root)
    if entry.kind == "reference":
        from .reference import ReferenceTarget

        return ReferenceTarget(entry, worker)
    return LocalTarget(entry, worker, log_dir)
