"""Reaching a target that is not the local kind: its Ethernet link and its agent, from any namespace.

Shared by the remote kind (a box on the bench) and the launched kind (a stack the suite starts). Every
wait is bounded, and every failure is one line naming what did not answer.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
import time
from collections.abc import Callable
from typing import TypeVar

from ..upper_tester import AgentClient, AgentError, AgentGone, AgentTimeout
from ..wire.afpacket import AfPacketLink
from ..wire.ethernet import Neighbours, parse_mac
from ..wire.ethernet_link import EthernetLink
from ..wire.impaired import impaired
from ..wire.link import MULTICAST, Link, Unreachable, pack_address
from ..wire.stream import StreamLink
from . import netns
from .config import AgentConfig, LinkConfig, TargetConfig

T = TypeVar("T")


class TargetStartError(RuntimeError):
    """The target could not be brought up or reached; the message is one line for the user."""


def in_namespace(ns: str | None, fn: Callable[[], T]) -> T:
    return fn() if ns is None else netns.call_in_netns(ns, fn)


def neighbours_for(entry: TargetConfig, link: LinkConfig) -> Neighbours:
    """The tester's addresses and MAC, and the next hop to resolve per IP version (target or gateway)."""
    own, hops, static = set(), {}, {}
    for family in entry.families:
        version = 4 if family == "ipv4" else 6
        addresses = entry.address(family)
        own.add(pack_address(addresses.tester))
        gateway = getattr(link.gateway, family, None) if link.gateway else None
        hop = pack_address(gateway or addresses.target)
        hops[version] = hop
        if link.target_mac and gateway is None:
            static[hop] = parse_mac(link.target_mac)
    v4 = entry.ipv4
    broadcast = ipaddress.ip_network(f"{v4.target}/{v4.prefix}", strict=False).broadcast_address
    return Neighbours(parse_mac(link.tester_mac), frozenset(own), hops, static, frozenset({broadcast.packed}))


def link_destinations(entry: TargetConfig) -> list[str]:
    """Where the link may send: the target's addresses; for a stack on a private link of the suite's own
    (the launched kind) also its subnet broadcast and all-nodes multicast, which cases aim at."""
    addresses = [entry.address(f).target for f in entry.families]
    if entry.kind == "launched":
        v4 = entry.ipv4
        addresses.append(str(ipaddress.ip_network(f"{v4.target}/{v4.prefix}", strict=False).broadcast_address))
        addresses += MULTICAST.values()
    return addresses


def open_link(entry: TargetConfig, link: LinkConfig, interface: str | None, ns: str | None, address: str | None,
              timeout: float = 5.0) -> Link:  # fmt: skip
    """Open the Ethernet link (``interface`` for afpacket/tap, ``address`` for stream), declare the target and
    resolve its next hops (an unreachable target fails the start, not every case); impaired as the entry says."""
    neighbours = neighbours_for(entry, link)
    if link.type == "stream":
        assert address is not None
        opened: EthernetLink = in_namespace(ns, lambda: StreamLink.connect(address, neighbours, timeout))
    else:
        assert interface is not None
        opened = in_namespace(ns, lambda: AfPacketLink.open(interface, neighbours))
    opened.resolve_timeout = link.resolve_timeout
    opened.allow(*link_destinations(entry))
    try:
        for family in entry.families:
            opened.resolve(4 if family == "ipv4" else 6)
    except Unreachable as exc:
        opened.close()
        raise TargetStartError(str(exc)) from None
    except BaseException:
        opened.close()
        raise
    return impaired(opened, entry.impair)


def close_quietly(agent: AgentClient | None, link: Link | None) -> None:
    """End the agent session and close the link, whatever state either is in."""
    if agent is not None:
        with contextlib.suppress(Exception):
            agent.close()
    if link is not None:
        link.close()


def agent_token(agent: AgentConfig) -> str | None:
    if agent.token_env is not None:
        token = os.environ.get(agent.token_env)
        if token is None:
            raise TargetStartError(f"the agent's token is read from ${agent.token_env}, which is not set")
        return token
    return agent.token


def connect_agent(agent: AgentConfig, address: str, ns: str | None, deadline: float) -> AgentClient:
    """Connect to an agent at ``address`` (HOST:PORT or a UNIX path) and say hello, retrying until ``deadline``
    while it starts; a refused token or a silent agent ends the attempt at once."""
    token = agent_token(agent)
    last = "no attempt"
    while True:
        try:
            sock = in_namespace(ns, lambda: _connected(agent.transport, address, max(0.1, deadline - time.monotonic())))
        except OSError as exc:
            last = exc.strerror or str(exc)
        else:
            hello_timeout = max(0.1, min(agent.timeout, deadline - time.monotonic()))
            try:
                return AgentClient.over_socket(sock, token, f"agent@{address}", timeout=hello_timeout)
            except (AgentTimeout, AgentGone) as exc:  # still booting (a VM's port accepts before its agent runs)
                last = str(exc)
            except AgentError as exc:
                raise TargetStartError(f"the agent at {address} refused the session: {exc}") from None
        if time.monotonic() >= deadline:
            raise TargetStartError(f"no agent answers at {address}: {last}")
        time.sleep(0.1)


def _connected(transport: str, address: str, timeout: float) -> socket.socket:
    if transport == "unix":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(address)
        except OSError:
            sock.close()
            raise
        return sock
    host, _, port = address.rpartition(":")
    return socket.create_connection((host.strip("[]"), int(port)), timeout=min(timeout, 5.0))
