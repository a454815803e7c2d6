"""The remote kind: a host the suite does not control, on an Ethernet interface (or a stream socket), with
an optional agent on a management address. Nothing is created on the target; the tester only opens its
link, resolves the target's MAC and connects to the agent. Without an agent the target is agentless:
cases that need no socket action on it still run (see TargetConfig.declared_capabilities)."""

from __future__ import annotations

import time
from pathlib import Path

from ..upper_tester import AgentClient
from ..wire.link import Link
from .config import TargetConfig
from .reach import TargetStartError, close_quietly, connect_agent, open_link
from .session import TargetBase


class RemoteTarget(TargetBase):
    def __init__(self, config: TargetConfig, worker: str = "main", log_dir: Path | None = None) -> None:
        assert config.link is not None
        self.config = config
        self.worker = worker
        self.link: Link | None = None
        self.agent: AgentClient | None = None

    def start(self) -> None:
        link = self.config.link
        assert link is not None
        try:
            self.link = open_link(self.config, link, link.interface, link.netns, link.address)
            self._connect_agent()
        except BaseException:
            self.stop()
            raise

    def _connect_agent(self) -> None:
        agent = self.config.agent
        if agent is None:
            return
        if agent.transport == "stdio":
            raise TargetStartError("a remote target's agent is reached over tcp or unix, not stdio")
        assert agent.address is not None
        self.agent = connect_agent(agent, agent.address, agent.netns, time.monotonic() + agent.timeout)

    def ensure_agent(self) -> None:
        """Reconnect to the agent if the management connection dropped (the agent outlives sessions)."""
        if self.config.agent is None or (self.agent is not None and self.agent.alive):
            return
        if self.agent is not None:
            self.agent.close()
            self.agent = None
        self._connect_agent()

    def stop(self) -> None:
        close_quietly(self.agent, self.link)
        self.agent, self.link = None, None
