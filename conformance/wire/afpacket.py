"""The AF_PACKET link: the tester on a named Ethernet interface, with its own MAC and addresses.

No kernel holds the tester's addresses on that interface, so none answers for the tester; the tester
answers ARP and neighbour solicitations itself (:class:`~.ethernet.Neighbours`). One raw socket
transmits; a second one captures both directions with kernel timestamps, the tester's frames appearing
as PACKET_OUTGOING (the transmitting socket never sees its own frames).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import select
import socket
import struct

from .capture import PACKET_OUTGOING, capture_drops, open_capture, promiscuous, read_timestamped
from .ethernet import Neighbours
from .ethernet_link import EthernetLink
from .link import LinkDown

SIOCGIFFLAGS = 0x8913
IFF_UP = 0x1
IFF_RUNNING = 0x40


class AfPacketLink(EthernetLink):
    records_own_frames = True

    def __init__(self, ifname: str, tx: socket.socket, capture: socket.socket, neighbours: Neighbours) -> None:
        poller = select.poll()
        poller.register(capture.fileno(), select.POLLIN)
        super().__init__(neighbours, poller)
        self.name = ifname
        self.tx = tx
        self.capture = capture

    @classmethod
    def open(cls, ifname: str, neighbours: Neighbours) -> AfPacketLink:
        """Open both sockets in the calling thread's namespace; raises LinkDown if the interface is missing."""
        try:
            ifindex = socket.if_nametoindex(ifname)
        except OSError:
            raise LinkDown(errno.ENODEV, f"no interface named {ifname!r} here") from None
        tx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        try:
            tx.bind((ifname, 0))
            capture = open_capture(ifname, socket.SOCK_RAW)
        except OSError:
            tx.close()
            raise
        try:
            promiscuous(capture, ifindex)
        except OSError:
            capture.close()
            tx.close()
            raise
        return cls(ifname, tx, capture, neighbours)

    def _transmit(self, frame: bytes) -> None:
        try:
            self.tx.send(frame)
        except OSError as exc:
            if exc.errno in (errno.ENETDOWN, errno.ENXIO, errno.ENODEV, errno.EBADF):
                raise LinkDown(exc.errno, f"interface {self.name} is down: {exc.strerror}") from None
            raise

    def _read_raw(self) -> tuple[bytes, float, bool] | None:
        try:
            got = read_timestamped(self.capture, report_down=True)
        except OSError as exc:
            if exc.errno != errno.ENETDOWN:
                raise
            self.check_interface()  # down or gone: LinkDown; up again (a stale report from before it came up): go on
            return None
        if got is None:
            return None
        frame, ts, pkttype = got
        return frame, ts, pkttype == PACKET_OUTGOING

    def flush(self) -> int:
        self.check_interface()  # before every case: a vanished or downed interface is an ERROR, not silence
        return super().flush()

    def check_interface(self) -> None:
        """Raise LinkDown unless the interface exists, is up and has carrier (asked in the socket's namespace)."""
        try:
            ifreq = fcntl.ioctl(self.tx.fileno(), SIOCGIFFLAGS, struct.pack("16sH14x", self.name.encode(), 0))
        except OSError as exc:
            raise LinkDown(exc.errno or errno.ENODEV, f"interface {self.name} is gone: {exc.strerror}") from None
        flags = struct.unpack_from("H", ifreq, 16)[0]
        if not flags & IFF_UP:
            raise LinkDown(errno.ENETDOWN, f"interface {self.name} is down (administratively)")
        if not flags & IFF_RUNNING:
            raise LinkDown(errno.ENETDOWN, f"interface {self.name} has no carrier (cable, peer or switch port down)")

    def drops(self) -> int:
        return capture_drops(self.capture)

    def fileno(self) -> int | None:
        return self.capture.fileno()

    def close(self) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self._poll.unregister(self.capture.fileno())
        self.capture.close()
        self.tx.close()
