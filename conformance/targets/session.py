"""What a case runs against: a ``Session`` for one address family of one started target, and the base the
target kinds share to make it.

Rules of this module: a session is the engine's whole view of the target (link, agent, addresses, fresh ports
and what the entry declares: capabilities, flood cap, service ports, timers). It carries no grading profile:
which behaviour conforms is decided by grading, never while a case runs.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass, field

from ..upper_tester import AgentClient
from ..wire.link import MULTICAST, Link
from .config import TargetConfig
from .ports import PortAllocator

Restart = Callable[[], tuple[Link, AgentClient | None]]


@dataclass
class Session:
    link: Link
    agent: AgentClient | None
    family: str
    tester_addr: str
    target_addr: str
    capabilities: frozenset[str] = frozenset()
    ports: PortAllocator = field(default_factory=PortAllocator)
    prefix: int | None = None  # the target's subnet, for the broadcast address
    flood_rate_cap: int = 0  # packets per second a flood may send to this target (0: no floods)
    open_port: int | None = None  # agentless targets: a port where a service listens, standing in for `ut: listen`
    echo_port: int | None = None  # a port where the target runs an echo service (`ut: {op: listen, service: echo}`)
    listen_any: bool = False  # the agent listens on the wildcard address (the target address is a translation)
    restart: Restart | None = None  # restarts the stack; returns its new link and agent (capability target.restart)
    timers: dict[str, int] = field(default_factory=dict)  # the target's declared timers (TimersConfig.bindings)

    def __post_init__(self) -> None:
        af = socket.AF_INET if self.family == "ipv4" else socket.AF_INET6
        self.tester_bytes = socket.inet_pton(af, self.tester_addr)
        self.target_bytes = socket.inet_pton(af, self.target_addr)

    def special_address(self, name: str) -> str:
        """The addresses a case may aim at besides the target: its subnet's broadcast, all-nodes multicast."""
        if name == "target":
            return self.target_addr
        if name == "multicast":
            return MULTICAST[self.family]
        if self.family != "ipv4" or self.prefix is None:
            raise ValueError(f"no broadcast address for {self.family} on this target")
        return str(ipaddress.ip_network(f"{self.target_addr}/{self.prefix}", strict=False).broadcast_address)


class TargetBase:
    """What every target kind shares once started: its entry, link and agent, and the sessions made of them."""

    config: TargetConfig
    link: Link | None
    agent: AgentClient | None

    @property
    def capabilities(self) -> set[str]:
        if self.agent is None:
            return self.config.declared_capabilities()
        hello = self.agent.hello
        return self.config.declared_capabilities(hello.get("ops", []), hello.get("features", []))

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def ensure_agent(self) -> None:
        """Bring a dead agent (or stack) back before the next case; nothing is in flight then."""

    def healthy(self) -> bool:
        """Whether the link and the agent (where the target has one) still work."""
        if self.link is None or self.link.down is not None:
            return False
        wants_agent = self.config.kind == "local" or self.config.agent is not None
        return not wants_agent or (self.agent is not None and self.agent.alive)

    def restart(self) -> tuple[Link, AgentClient | None]:
        """The stack stopped and started again (a reboot, to the cases): its new link and agent."""
        self.stop()
        self.start()
        assert self.link is not None
        return self.link, self.agent

    def session(self, family: str, ports: PortAllocator) -> Session:
        """The session a case of ``family`` runs in; the target must be started."""
        if self.link is None:
            raise RuntimeError("the target is not started")
        entry = self.config
        addresses = entry.address(family)
        capabilities, timers = self._declared()
        return Session(
            self.link, self.agent, family, addresses.tester, addresses.target, capabilities, ports, addresses.prefix,
            entry.flood_rate_cap if entry.allow_flood else 0, entry.ports.open, entry.ports.echo,
            entry.agent is not None and entry.agent.listen_any,
            restart=self.restart if "target.restart" in capabilities else None,
            timers=dict(timers),
        )  # fmt: skip

    def _declared(self) -> tuple[frozenset[str], dict[str, int]]:
        """Capabilities and timer bindings, computed once per agent (a new agent may offer other operations)."""
        key = id(self.agent)
        cached = getattr(self, "_declared_cache", None)
        if cached is None or cached[0] != key:
            cached = (key, frozenset(self.capabilities), self.config.timers.bindings())
            self._declared_cache = cached
        return cached[1], cached[2]
