"""What every link of the lower tester is: the ``Link`` protocol, the frame it reports, its errors, and the
destination guard.

A link carries IP packets between the tester and one target. Whatever the medium (TUN, an Ethernet
interface, a QEMU/passt socket, a wrapper that impairs another link, a test's fake), it offers every capability
of ``Link`` (callers never probe a link for optional attributes) and refuses to send to any address not declared
for the target. Rules of this module: it imports nothing above the wire layer; a link never interprets TCP.
"""

from __future__ import annotations

import select
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from .impairment import Impairment

CLEAN = Impairment()
# All-hosts / all-nodes multicast: the group addresses cases may aim at besides the target itself.
MULTICAST = {"ipv4": "224.0.0.1", "ipv6": "ff02::1"}


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


class Link(Protocol):
    """The lower tester's medium to one target. Every link kind implements all of it (``LinkBase`` gives the
    defaults of a plain, clean link)."""

    impairment: Impairment  # what the link is declared to do to frames (clean: nothing)
    down: str | None  # why the link failed, once it has (its owner may then open a new one)

    def send(self, packet: bytes) -> None:
        """Write one IP packet towards the target; refuses undeclared destinations (UndeclaredDestination)."""

    def poll_frame(self) -> Frame | None:
        """The next frame that is ready now, in either direction, without waiting."""

    def fileno(self) -> int | None:
        """A descriptor that becomes readable when the medium has frames (None: only ``next_due`` says)."""

    def next_due(self) -> float | None:
        """When (``time.monotonic()``) a frame the link holds itself becomes ready; None when it holds none."""

    def receive(self, timeout: float) -> Frame | None:
        """The next frame, waiting up to ``timeout`` seconds (for callers outside an event loop)."""

    def flush(self) -> int:
        """Discard what is queued (frames of earlier cases) and check the medium; how many frames went."""

    def drops(self) -> int:
        """Frames the capture lost since the last call."""

    def check_destination(self, packet: bytes) -> None:
        """Raise UndeclaredDestination unless the packet goes to a declared address."""

    def allow(self, *addresses: str) -> None:
        """Declare the target's addresses, the only destinations the link will ever send to."""

    def flood_writer(self) -> Callable[[bytes], None]:
        """The fastest way to write many packets whose destination the caller has checked once (floods)."""

    def close(self) -> None: ...


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


class LinkBase(DestinationGuard):
    """Defaults every link shares: a clean link that holds no frames itself and loses none in its capture."""

    impairment: Impairment = CLEAN
    down: str | None = None

    def next_due(self) -> float | None:
        return None

    def drops(self) -> int:
        return 0

    def flood_writer(self) -> Callable[[bytes], None]:
        return self.send  # type: ignore[attr-defined, no-any-return]


class QueueLink(LinkBase):
    """A link whose far end lives in this process: what it answers waits in a queue of frames, due at once (the
    reference target's link, and the tests' fake). ``send`` is the far end's business."""

    def __init__(self) -> None:
        self.frames: deque[Frame] = deque()
        self._ts = time.time()

    def check_destination(self, packet: bytes) -> None:
        pass  # nothing leaves the process

    def _queue(self, data: bytes, inbound: bool) -> None:
        self._ts = max(self._ts + 1e-6, time.time())  # stamps strictly increase, as a capture's do
        self.frames.append(Frame(data, self._ts, inbound))

    def poll_frame(self) -> Frame | None:
        return self.frames.popleft() if self.frames else None

    def fileno(self) -> int | None:
        return None

    def next_due(self) -> float | None:
        return time.monotonic() if self.frames else None

    def receive(self, timeout: float) -> Frame | None:
        if self.frames:
            return self.frames.popleft()
        time.sleep(timeout)
        return None

    def flush(self) -> int:
        n = len(self.frames)
        self.frames.clear()
        return n

    def close(self) -> None:
        self.frames.clear()


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
