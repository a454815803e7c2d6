"""Links that carry Ethernet frames: the tester frames its IP packets itself and does its own address
resolution (see :mod:`.ethernet`). Subclasses supply the transport: an AF_PACKET socket on an interface,
or a QEMU/passt stream socket."""

from __future__ import annotations

import select
import socket
import struct
import time
from collections import deque

from .ethernet import ETH_IPV4, ETH_IPV6, Neighbours, format_mac
from .link import Frame, LinkBase, LinkDown, Unreachable, destination, receive_spinning

RESOLVE_RETRY_S = 0.5


class EthernetLink(LinkBase):
    """Sends IP packets as Ethernet frames to the resolved next hop; answers ARP/ND for the tester.

    ``receive`` reports the tester's own packets (``inbound=False``) and the packets addressed to the
    tester's addresses (``inbound=True``); everything else on the medium is ignored.
    """

    name = "ethernet"
    records_own_frames = False  # True when the transport shows the tester's frames with a kernel timestamp

    def __init__(self, neighbours: Neighbours, poller: select.poll, resolve_timeout: float = 3.0) -> None:
        self.neighbours = neighbours
        self.resolve_timeout = resolve_timeout
        self._poll = poller
        self._ready: deque[Frame] = deque()
        self.down: str | None = None  # why the link failed, once it has (the owner may then open a new one)

    # ---- transport hooks ----
    def _transmit(self, frame: bytes) -> None:
        raise NotImplementedError

    def _read_raw(self) -> tuple[bytes, float, bool] | None:
        """One frame from the medium as (frame, timestamp, sent_by_us), or None when nothing is queued."""
        raise NotImplementedError

    def fileno(self) -> int | None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    # ---- the link interface ----
    def send(self, packet: bytes) -> None:
        self.check_destination(packet)
        frame = self.neighbours.frame(packet)
        if frame is None:
            self.resolve(packet[0] >> 4)
            frame = self.neighbours.frame(packet)
            assert frame is not None
        self._transmit_checked(frame)
        if not self.records_own_frames:
            self._ready.append(Frame(packet, time.time(), False))

    def receive(self, timeout: float) -> Frame | None:
        return receive_spinning(self._read_one, self._poll, timeout)

    def poll_frame(self) -> Frame | None:
        return self._read_one()

    def next_due(self) -> float | None:
        """Frames already read from the medium (during address resolution, or the tester's own) are due now."""
        return time.monotonic() if self._ready else None

    def flush(self) -> int:
        dropped = len(self._ready)
        self._ready.clear()
        while self._read_one() is not None:
            dropped += 1
        self._ready.clear()
        return dropped

    def resolve(self, version: int, timeout: float | None = None) -> bytes:
        """The MAC address of the next hop for IP ``version``, soliciting it if needed; raises Unreachable."""
        mac = self.neighbours.next_hop_mac(version)
        if mac is not None:
            return mac
        timeout = self.resolve_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._transmit_checked(self.neighbours.solicit(version))
            retry_at = min(deadline, time.monotonic() + RESOLVE_RETRY_S)
            while (remaining := retry_at - time.monotonic()) > 0:
                frame = receive_spinning(self._read_one, self._poll, remaining)
                if frame is not None:
                    self._ready.append(frame)  # kept for the case that reads next
                mac = self.neighbours.next_hop_mac(version)
                if mac is not None:
                    return mac
        hop = self.neighbours.next_hops[version]
        what = "ARP reply" if version == 4 else "neighbour advertisement"
        raise Unreachable(f"no {what} from {_ip(hop)} on {self.name} within {timeout:g} s: is the target up?")

    # ---- internals ----
    def _transmit_checked(self, frame: bytes) -> None:
        try:
            self._transmit(frame)
        except LinkDown as exc:
            self.down = str(exc)
            raise

    def _read_one(self) -> Frame | None:
        if self._ready:
            return self._ready.popleft()
        try:
            return self._read_next()
        except LinkDown as exc:
            self.down = str(exc)
            raise

    def _read_next(self) -> Frame | None:
        while (raw := self._read_raw()) is not None:
            frame, ts, ours = raw
            if ours:
                packet = self._own_packet(frame)
                if packet is not None:
                    return Frame(packet, ts, False)
                continue
            packet, replies = self.neighbours.receive(frame)
            for reply in replies:
                self._transmit_checked(reply)
            if packet is not None and self._for_tester(packet):
                return Frame(packet, ts, True)
        return None

    def _own_packet(self, frame: bytes) -> bytes | None:
        if len(frame) < 34 or frame[6:12] != self.neighbours.mac:
            return None
        if struct.unpack_from("!H", frame, 12)[0] not in (ETH_IPV4, ETH_IPV6):
            return None
        packet = frame[14:]
        return packet if destination(packet) in self.allowed_destinations else None

    def _for_tester(self, packet: bytes) -> bool:
        return destination(packet) in self.neighbours.own

    def describe(self) -> str:
        return f"{self.name} as {format_mac(self.neighbours.mac)}"


def _ip(packed: bytes) -> str:
    return socket.inet_ntop(socket.AF_INET if len(packed) == 4 else socket.AF_INET6, packed)
