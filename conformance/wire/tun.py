"""The TUN link: the target kernel routes the tester's addresses into a TUN device whose file descriptor
the lower tester holds. No kernel owns the tester's addresses, so none answers on the tester's behalf.

Frames are read from an AF_PACKET socket bound to the TUN device, which sees both directions with kernel
receive timestamps (SO_TIMESTAMPNS): the target's segments as PACKET_OUTGOING, the tester's as PACKET_HOST.
The TUN fd itself is drained so its queue never fills.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import select
import socket
import struct
import time
from dataclasses import dataclass

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
ETH_P_ALL = 0x0003
SO_TIMESTAMPNS = 35  # Python 3.11's socket module lacks the constant
PACKET_HOST = 0
PACKET_OUTGOING = 4
SOL_PACKET = 263
PACKET_STATISTICS = 6


@dataclass(frozen=True)
class Frame:
    """One packet seen on the link: ``inbound`` is from the target, ``ts`` kernel time in seconds."""

    data: bytes
    ts: float
    inbound: bool


class LinkDown(OSError):
    """The link's device or fd went away."""


class UndeclaredDestination(PermissionError):
    """A packet was addressed to something other than the selected target: the suite never sends it."""


def destination(packet: bytes) -> bytes | None:
    """The IP destination address of a packet, as raw bytes (None if it is not IPv4/IPv6)."""
    if packet[:1] and packet[0] >> 4 == 4 and len(packet) >= 20:
        return packet[16:20]
    if packet[:1] and packet[0] >> 4 == 6 and len(packet) >= 40:
        return packet[24:40]
    return None


class TunLink:
    """A persistent, non-blocking TUN link. Create it inside the target's namespace (see ``open``)."""

    SPIN_S = 0.002

    def __init__(self, tun_fd: int, capture: socket.socket, ifname: str) -> None:
        self.tun_fd = tun_fd
        self.capture = capture
        self.ifname = ifname
        # Destinations this link may send to (raw address bytes); empty = nothing may be sent yet.
        self.allowed_destinations: frozenset[bytes] = frozenset()
        self._poll = select.poll()
        self._poll.register(capture.fileno(), select.POLLIN)
        self._ancbuf = socket.CMSG_SPACE(16)

    @classmethod
    def open(cls, ifname: str) -> TunLink:
        """Create the TUN device and the capture socket in the calling thread's namespace."""
        fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", ifname.encode(), IFF_TUN | IFF_NO_PI))
            cap = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_ALL))
        except OSError:
            os.close(fd)
            raise
        cap.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        cap.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        cap.setblocking(False)
        cap.bind((ifname, ETH_P_ALL))
        return cls(fd, cap, ifname)

    def allow(self, *addresses: str) -> None:
        """Declare the target's addresses: the only destinations the link will ever send to."""
        packed = {socket.inet_pton(socket.AF_INET6 if ":" in a else socket.AF_INET, a) for a in addresses}
        self.allowed_destinations = frozenset(packed)

    def check_destination(self, packet: bytes) -> None:
        if destination(packet) not in self.allowed_destinations:
            raise UndeclaredDestination(
                f"refusing to send to an address not declared for the target: {packet[:40].hex()}"
            )

    def send(self, packet: bytes) -> None:
        self.check_destination(packet)
        try:
            os.write(self.tun_fd, packet)
        except OSError as exc:
            if exc.errno in (errno.EBADF, errno.EIO, errno.ENODEV):
                raise LinkDown(exc.errno, f"TUN link {self.ifname} is down: {exc.strerror}") from None
            raise

    def receive(self, timeout: float) -> Frame | None:
        """The next frame in either direction, or None when ``timeout`` seconds pass without one.

        The first ``SPIN_S`` seconds are spent polling the socket without sleeping: a target usually
        answers within tens of microseconds, and waking a sleeping process costs more than that.
        """
        start = time.monotonic()
        deadline = start + timeout
        spin_until = start + min(timeout, self.SPIN_S)
        while time.monotonic() < spin_until:
            frame = self._read_one()
            if frame is not None:
                return frame
        while True:
            frame = self._read_one()
            if frame is not None:
                return frame
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self._poll.poll(max(1, int(remaining * 1000 + 0.999)) if remaining > 0.001 else 1)

    def _read_one(self) -> Frame | None:
        try:
            data, anc, _flags, addr = self.capture.recvmsg(65535, self._ancbuf)
        except BlockingIOError:
            return None
        except OSError as exc:
            # A packet socket bound before its device came up reports ENETDOWN once; it is stale.
            if exc.errno == errno.ENETDOWN:
                return None
            raise
        ts = time.time()
        for level, kind, payload in anc:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(payload) >= 16:
                sec, nsec = struct.unpack("qq", payload[:16])
                ts = sec + nsec / 1e9
        inbound = addr[2] == PACKET_OUTGOING  # the kernel transmitted it into the TUN: the target spoke
        if inbound:
            self._drain_tun()
        return Frame(data, ts, inbound)

    def _drain_tun(self) -> None:
        try:
            os.read(self.tun_fd, 65535)
        except BlockingIOError:
            pass
        except OSError as exc:
            raise LinkDown(exc.errno, f"TUN link {self.ifname} is down: {exc.strerror}") from None

    def flush(self) -> int:
        """Discard whatever is queued (frames of earlier cases); returns how many frames were dropped."""
        dropped = 0
        while self._read_one() is not None:
            dropped += 1
        while True:
            try:
                os.read(self.tun_fd, 65535)
            except OSError:
                break
        return dropped

    def drops(self) -> int:
        """Frames the capture socket lost since the last call (the kernel resets the count on read)."""
        stats = self.capture.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8)
        return struct.unpack("II", stats)[1]

    def close(self) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self._poll.unregister(self.capture.fileno())
        self.capture.close()
        with contextlib.suppress(OSError):
            os.close(self.tun_fd)
