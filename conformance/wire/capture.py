"""Reading a packet socket with the kernel's receive timestamp (SO_TIMESTAMPNS), shared by the links."""

from __future__ import annotations

import errno
import socket
import struct
import time

ETH_P_ALL = 0x0003
SO_TIMESTAMPNS = 35  # Python 3.11's socket module lacks the constant
SOL_PACKET = 263
PACKET_STATISTICS = 6
PACKET_ADD_MEMBERSHIP = 1
PACKET_MR_PROMISC = 1
PACKET_HOST = 0
PACKET_OUTGOING = 4
ANCILLARY_SPACE = socket.CMSG_SPACE(16)


def open_capture(ifname: str, kind: int = socket.SOCK_DGRAM) -> socket.socket:
    """A non-blocking packet socket on ``ifname`` (in the calling thread's namespace) with timestamps on."""
    cap = socket.socket(socket.AF_PACKET, kind, socket.htons(ETH_P_ALL))
    try:
        cap.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        cap.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        cap.setblocking(False)
        cap.bind((ifname, ETH_P_ALL))
    except OSError:
        cap.close()
        raise
    return cap


def read_timestamped(sock: socket.socket, report_down: bool = False) -> tuple[bytes, float, int] | None:
    """One frame as (data, kernel receive time in seconds, packet type), or None when nothing is queued.

    A packet socket reports ENETDOWN once when its device goes down, or when it was bound before the device came
    up (the TUN link's case: stale, ignored); ``report_down`` raises it instead.
    """
    try:
        data, anc, _flags, addr = sock.recvmsg(65535, ANCILLARY_SPACE)
    except BlockingIOError:
        return None
    except OSError as exc:
        if exc.errno == errno.ENETDOWN and not report_down:
            return None
        raise
    ts = time.time()
    for level, kind, payload in anc:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(payload) >= 16:
            sec, nsec = struct.unpack("qq", payload[:16])
            ts = sec + nsec / 1e9
    return data, ts, addr[2]


def capture_drops(sock: socket.socket) -> int:
    """Frames the socket lost since the last call (the kernel resets the count on read)."""
    stats = sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8)
    return struct.unpack("II", stats)[1]


def promiscuous(sock: socket.socket, ifindex: int) -> None:
    """See frames for every MAC (the tester's own MAC is not the interface's); undone when the socket closes."""
    mreq = struct.pack("IHH8s", ifindex, PACKET_MR_PROMISC, 0, b"")
    sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
