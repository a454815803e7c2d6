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
from collections.abc import Callable

from .capture import PACKET_OUTGOING, capture_drops, open_capture, read_timestamped
from .flood import direct_writer
from .link import Frame, LinkBase, LinkDown, UndeclaredDestination, destination, receive_spinning

__all__ = ["Frame", "LinkDown", "TunLink", "UndeclaredDestination", "destination"]

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000


class TunLink(LinkBase):
    """A persistent, non-blocking TUN link. Create it inside the target's namespace (see ``open``)."""

    def __init__(self, tun_fd: int, capture: socket.socket, ifname: str) -> None:
        self.tun_fd = tun_fd
        self.capture = capture
        self.ifname = ifname
        self._poll = select.poll()
        self._poll.register(capture.fileno(), select.POLLIN)

    @classmethod
    def open(cls, ifname: str) -> TunLink:
        """Create the TUN device and the capture socket in the calling thread's namespace."""
        fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", ifname.encode(), IFF_TUN | IFF_NO_PI))
            cap = open_capture(ifname)
        except OSError:
            os.close(fd)
            raise
        return cls(fd, cap, ifname)

    def send(self, packet: bytes) -> None:
        self.check_destination(packet)
        try:
            os.write(self.tun_fd, packet)
        except OSError as exc:
            if exc.errno in (errno.EBADF, errno.EIO, errno.ENODEV):
                raise LinkDown(exc.errno, f"TUN link {self.ifname} is down: {exc.strerror}") from None
            raise

    def receive(self, timeout: float) -> Frame | None:
        """The next frame in either direction, or None when ``timeout`` seconds pass without one."""
        return receive_spinning(self._read_one, self._poll, timeout)

    def poll_frame(self) -> Frame | None:
        return self._read_one()

    def fileno(self) -> int | None:
        return self.capture.fileno()

    def flood_writer(self) -> Callable[[bytes], None]:
        """Straight into the TUN fd: no per-packet guard (the caller checks the one destination a flood has)."""
        return direct_writer(self.tun_fd)

    def _read_one(self) -> Frame | None:
        got = read_timestamped(self.capture)
        if got is None:
            return None
        data, ts, pkttype = got
        inbound = pkttype == PACKET_OUTGOING  # the kernel transmitted it into the TUN: the target spoke
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
        return capture_drops(self.capture)

    def close(self) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self._poll.unregister(self.capture.fileno())
        self.capture.close()
        with contextlib.suppress(OSError):
            os.close(self.tun_fd)
