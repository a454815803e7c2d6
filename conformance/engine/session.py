"""What a case runs against: a link (lower tester), an agent (upper tester), addresses and fresh ports."""

from __future__ import annotations

import ipaddress
import itertools
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from ..upper_tester import AgentClient
from ..wire.tun import Frame


class Link(Protocol):
    def send(self, packet: bytes) -> None: ...
    def receive(self, timeout: float) -> Frame | None: ...
    def flush(self) -> int: ...


TESTER_BLOCK = 4


class PortAllocator:
    """Fresh ports for every case, so no case meets a connection (or TIME-WAIT) left by another.

    Tester ports come from 10000 upwards; ports on the target that nothing listens on (closed ports,
    the local side of the target's active opens) from 1024..9999, below every stack's ephemeral range
    (targets.yaml's ``ports.closed`` declares another range for targets that are not ours).
    """

    def __init__(self, tester_start: int = 10000, target_start: int = 1024, target_end: int = 9999,
                 tester_end: int = 65535) -> None:  # fmt: skip
        # Blocks of TESTER_BLOCK ports, the case getting the second: cases also send from l_port - 1 up to
        # l_port + 2, and those ports must be as fresh as l_port (an agentless target's shared open port
        # would otherwise meet the connection an earlier case left there).
        self._tester = itertools.cycle(range(tester_start + 1, tester_end - TESTER_BLOCK + 2, TESTER_BLOCK))
        self._target = itertools.cycle(range(target_start, target_end + 1))

    def tester(self) -> int:
        return next(self._tester)

    def target_unused(self) -> int:
        return next(self._target)


@dataclass
class Session:
    link: Link
    agent: AgentClient | None
    family: str
    tester_addr: str
    target_addr: str
    capabilities: set[str]
    profile: str = "rfc9293"
    ports: PortAllocator = field(default_factory=PortAllocator)
    prefix: int | None = None  # the target's subnet, for the broadcast address
    flood_rate_cap: int = 0  # packets per second a flood may send to this target (0: no floods)
    open_port: int | None = None  # agentless targets: a port where a service listens, standing in for `ut: listen`
    echo_port: int | None = None  # a port where the target runs an echo service (`ut: {op: listen, service: echo}`)
    listen_any: bool = False  # the agent listens on the wildcard address (the target address is a translation)
    # Restarts the target's stack and returns its new link and agent (kinds that can: capability target.restart).
    restart: Callable[[], tuple[Link, AgentClient | None]] | None = None
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


MULTICAST = {"ipv4": "224.0.0.1", "ipv6": "ff02::1"}  # all hosts / all nodes
