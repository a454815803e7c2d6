"""What every link of the lower tester shares: the frame it reports, its errors, and the destination guard.

A link carries IP packets between the tester and one target. Whatever the medium (TUN, an Ethernet
interface, a QEMU/passt socket), it refuses to send to any address not declared for the target.
"""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Frame:
    """One packet seen on the link: ``inbound`` is from the target, ``ts`` kernel time in seconds."""

    data: bytes
    ts: float
    inbound: bool


class LinkDown(OSError):
    """The link's device, fd or socket went away."""


class TargetClosedLink(LinkDown):
    """The target's side closed the link (a stack process that ended, or reset its interface, mid-case)."""


class Unreachable(OSError):
    """The target (or its gateway) did not answer address resolution: nothing can be sent to it."""


class UndeclaredDestination(PermissionError):
    """A packet was addressed to something other than the selected target: the suite never sends it."""


def destination(packet: bytes) -> bytes | None:
    """The IP destination address of a packet, as raw bytes (None if it is not IPv4/IPv6)."""
    if packet[:1] and packet[0] >> 4 == 4 and len(packet) >= 20:
        return packet[16:20]
    if packet[:1] and packet[0] >> 4 == 6 and len(packet) >= 40:
        return packet[24:40]
    return None


def pack_address(addr: str) -> bytes:
    return socket.inet_pton(socket.AF_INET6 if ":" in addr else socket.AF_INET, addr)


class DestinationGuard:
    """The allow-list of destinations; empty until ``allow`` is called, so nothing can be sent before."""

    allowed_destinations: frozenset[bytes] = frozenset()

    def allow(self, *addresses: str) -> None:
        """Declare the target's addresses: the only destinations the link will ever send to."""
        self.allowed_destinations = frozenset(pack_address(a) for a in addresses)

    def check_destination(self, packet: bytes) -> None:
        if destination(packet) not in self.allowed_destinations:
            raise UndeclaredDestination(
                f"refusing to send to an address not declared for the target: {packet[:40].hex()}"
            )


SPIN_S = 0.002


def receive_spinning(read_one: Callable[[], Frame | None], poller: select.poll, timeout: float) -> Frame | None:
    """The next frame from ``read_one``, or None after ``timeout`` seconds.

    The first ``SPIN_S`` seconds are spent polling without sleeping: a target usually answers within tens of
    microseconds, and waking a sleeping process costs more than that. Then ``poller`` sleeps until readable.
    """
    start = time.monotonic()
    deadline = start + timeout
    spin_until = start + min(timeout, SPIN_S)
    while time.monotonic() < spin_until:
        frame = read_one()
        if frame is not None:
            return frame
    while True:
        frame = read_one()
        if frame is not None:
            return frame
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        poller.poll(max(1, int(remaining * 1000 + 0.999)) if remaining > 0.001 else 1)
