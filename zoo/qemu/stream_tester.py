"""The tester's end of QEMU's stream NIC (used by tests/test_zoo_qemu.py).

Frames travel over the UNIX socket each preceded by its length (4 bytes, big-endian). The tester plays
198.18.0.2 / 2001:2::2 with MAC 02:00:00:00:00:02 and answers ARP requests and neighbour solicitations for
those addresses itself, since no kernel owns them. scapy builds and dissects; the socket stays open.
"""

from __future__ import annotations

import select
import socket
import struct
import time
from collections.abc import Callable

from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import ICMPv6ND_NA, ICMPv6ND_NS, ICMPv6NDOptDstLLAddr, IPv6
from scapy.layers.l2 import ARP, Ether
from scapy.packet import Packet

TESTER_MAC = "02:00:00:00:00:02"
GUEST_MAC = "02:00:00:00:00:01"
ADDRS = {"ipv4": ("198.18.0.2", "198.18.0.1"), "ipv6": ("2001:2::2", "2001:2::1")}  # family: (tester, guest)
_LEN = struct.Struct("!I")


class StreamTester:
    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.sock.setblocking(False)
        self._buf = b""
        self.unmatched: list[Packet] = []  # frames seen by expect() that matched nothing: for failure messages
        self.neighbour_replies = 0

    # ---- sending ----

    def send(self, pkt: Packet) -> float:
        """Send one frame; returns the perf_counter time just before it was written."""
        frame = bytes(pkt)
        t = time.perf_counter()
        self.sock.setblocking(True)
        try:
            self.sock.sendall(_LEN.pack(len(frame)) + frame)
        finally:
            self.sock.setblocking(False)
        return t

    @staticmethod
    def tcp(family: str, sport: int, dport: int, flags: str, seq: int, ack: int = 0, payload: bytes = b"") -> Packet:
        """A TCP segment from the tester to the guest (MSS 1460 on SYNs), wrapped in Ethernet."""
        tester, guest = ADDRS[family]
        ip = IP(src=tester, dst=guest) if family == "ipv4" else IPv6(src=tester, dst=guest)
        options = [("MSS", 1460)] if "S" in flags else []
        seg = TCP(sport=sport, dport=dport, flags=flags, seq=seq, ack=ack, window=65535, options=options)
        return Ether(src=TESTER_MAC, dst=GUEST_MAC) / ip / seg / payload

    # ---- receiving ----

    def _frames(self, timeout: float) -> list[tuple[float, bytes]]:
        """Frames that arrive within ``timeout`` (returns as soon as at least one is complete)."""
        deadline = time.monotonic() + timeout
        while True:
            out = []
            while len(self._buf) >= 4:
                (n,) = _LEN.unpack_from(self._buf)
                if len(self._buf) < 4 + n:
                    break
                out.append((time.perf_counter(), self._buf[4 : 4 + n]))
                self._buf = self._buf[4 + n :]
            if out:
                return out
            left = deadline - time.monotonic()
            if left <= 0:
                return []
            if select.select([self.sock], [], [], left)[0]:
                data = self.sock.recv(65536)
                if not data:
                    raise ConnectionError("QEMU closed the stream socket")
                self._buf += data

    def expect(
        self, match: Callable[[Packet], bool], timeout: float = 3.0, what: str = "frame"
    ) -> tuple[Packet, float]:
        """The first frame ``match`` accepts and its arrival time; answers ARP/NS meanwhile; AssertionError if none."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            for t, frame in self._frames(left):
                pkt = Ether(frame)
                if self._answer_neighbour(pkt):
                    continue
                if match(pkt):
                    return pkt, t
                self.unmatched.append(pkt)
        seen = "; ".join(p.summary() for p in self.unmatched[-5:]) or "nothing"
        raise AssertionError(f"no {what} within {timeout:g} s (last frames seen: {seen})")

    def expect_tcp(self, family: str, flags: str, dport: int, timeout: float = 3.0) -> tuple[Packet, float]:
        """The next TCP segment from the guest to ``dport`` whose flags are exactly ``flags``."""

        def match(pkt: Packet) -> bool:
            return (
                TCP in pkt
                and pkt[TCP].dport == dport
                and (IP in pkt if family == "ipv4" else IPv6 in pkt)
                and str(pkt[TCP].flags) == flags
            )

        return self.expect(match, timeout, what=f"{flags} segment to port {dport} ({family})")

    def _answer_neighbour(self, pkt: Packet) -> bool:
        """Answer ARP / NS for the tester's own addresses; True if ``pkt`` was one (answered or not)."""
        if ARP in pkt:
            arp = pkt[ARP]
            if arp.op == 1 and arp.pdst == ADDRS["ipv4"][0]:
                reply = ARP(op=2, hwsrc=TESTER_MAC, psrc=arp.pdst, hwdst=arp.hwsrc, pdst=arp.psrc)
                self.send(Ether(src=TESTER_MAC, dst=arp.hwsrc) / reply)
                self.neighbour_replies += 1
            return True
        if ICMPv6ND_NS in pkt:
            ns = pkt[ICMPv6ND_NS]
            if ns.tgt == ADDRS["ipv6"][0] and pkt[IPv6].src != "::":
                na = ICMPv6ND_NA(tgt=ns.tgt, R=0, S=1, O=1) / ICMPv6NDOptDstLLAddr(lladdr=TESTER_MAC)
                self.send(
                    Ether(src=TESTER_MAC, dst=pkt[Ether].src) / IPv6(src=ns.tgt, dst=pkt[IPv6].src, hlim=255) / na
                )
                self.neighbour_replies += 1
            return True
        return False
