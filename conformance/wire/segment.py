"""Decoding of IP/TCP packets into Segments (a struct fast path) and a tcpdump-like one-line summary.

The engine matches on these decoded fields; scapy is used only to build outgoing packets (see build.py),
because dissecting every frame with scapy costs ~70 us while this costs a few microseconds.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass, field

from ..tcp import ACK, ECN_NAMES, FIN, SYN, format_flags

PROTO_TCP = 6
OPT_NAMES = {0: "eol", 1: "nop", 2: "mss", 3: "wscale", 4: "sackok", 5: "sack", 8: "ts", 30: "mptcp", 34: "tfo"}


@dataclass(frozen=True)
class TcpOption:
    kind: int
    data: bytes = b""
    malformed: bool = False

    @property
    def name(self) -> str:
        return OPT_NAMES.get(self.kind, f"kind{self.kind}")

    def value(self) -> int | tuple[int, ...] | None:
        d = self.data
        if self.malformed:
            return None
        if self.kind == 2 and len(d) == 2:
            return struct.unpack("!H", d)[0]
        if self.kind == 3 and len(d) == 1:
            return d[0]
        if self.kind == 8 and len(d) == 8:
            return struct.unpack("!II", d)
        if self.kind == 5 and len(d) % 8 == 0:
            return struct.unpack(f"!{len(d) // 4}I", d)
        return None

    def describe(self) -> str:
        v = self.value()
        if self.kind in (0, 1, 4):
            return self.name
        if self.kind == 8 and isinstance(v, tuple):
            return f"ts val {v[0]} ecr {v[1]}"
        if self.kind == 5 and isinstance(v, tuple):
            return "sack " + " ".join(f"{v[i]}:{v[i + 1]}" for i in range(0, len(v), 2))
        if v is not None:
            return f"{self.name} {v}"
        return f"{self.name} len {len(self.data) + 2}{' malformed' if self.malformed else ''} {self.data.hex()}"


def parse_options(raw: bytes) -> list[TcpOption]:
    out: list[TcpOption] = []
    i = 0
    while i < len(raw):
        kind = raw[i]
        if kind in (0, 1):
            out.append(TcpOption(kind))
            i += 1
            if kind == 0:
                break
            continue
        if i + 1 >= len(raw) or raw[i + 1] < 2 or i + raw[i + 1] > len(raw):
            out.append(TcpOption(kind, raw[i + 1 :], malformed=True))
            break
        length = raw[i + 1]
        out.append(TcpOption(kind, raw[i + 2 : i + length]))
        i += length
    return out


@dataclass(frozen=True)
class Segment:
    """One TCP segment as seen on the wire (addresses as text, ports, header fields, options, payload)."""

    family: str
    src: str
    dst: str
    sport: int
    dport: int
    seq: int
    ack: int
    flags: int
    window: int
    urgent: int
    options: list[TcpOption] = field(default_factory=list)
    payload: bytes = b""
    doff: int = 5
    checksum: int = 0
    ttl: int = 64
    raw: bytes = b""
    reserved: int = 0  # the 4 bits between data offset and CWR (RFC 9293: zero when sent, ignored when received)
    ecn: int = 0  # the IP header's ECN field (RFC 3168 section 5): 0 Not-ECT, 1 ECT(1), 2 ECT(0), 3 CE

    @property
    def length(self) -> int:
        """Sequence space used: payload plus one each for SYN and FIN."""
        return len(self.payload) + (1 if self.flags & SYN else 0) + (1 if self.flags & FIN else 0)

    @property
    def end_seq(self) -> int:
        return (self.seq + self.length) % (1 << 32)

    @property
    def checksum_ok(self) -> bool:
        """Whether the TCP checksum over the pseudo-header and segment is right (RFC 9293 MUST-2, MUST-3)."""
        raw = self.raw
        if self.family == "ipv4":
            ihl = (raw[0] & 0x0F) * 4
            total = struct.unpack_from("!H", raw, 2)[0]
            tcp = raw[ihl:total]
            pseudo = raw[12:20] + struct.pack("!BBH", 0, PROTO_TCP, len(tcp))
        else:
            plen = struct.unpack_from("!H", raw, 4)[0]
            tcp = raw[40 : 40 + plen]
            pseudo = raw[8:40] + struct.pack("!I3xB", len(tcp), PROTO_TCP)
        data = pseudo + tcp
        if len(data) % 2:
            data += b"\0"
        total_sum = sum(struct.unpack(f"!{len(data) // 2}H", data))
        while total_sum >> 16:
            total_sum = (total_sum & 0xFFFF) + (total_sum >> 16)
        return total_sum == 0xFFFF

    def option(self, name: str) -> TcpOption | None:
        for opt in self.options:
            if opt.name == name:
                return opt
        return None

    def summary(self) -> str:
        """A tcpdump-like line: ``198.18.0.2.4000 > 198.18.0.1.80: SA seq 1 ack 2 win 65535 <mss 1460> len 0``
        (made once per segment: the record, the capture's comments and the report all ask for it)."""
        text = self.__dict__.get("_summary")
        if text is None:
            text = self.__dict__["_summary"] = self._summary()
        return text

    def _summary(self) -> str:
        parts = [f"{_addr(self.src, self.sport)} > {_addr(self.dst, self.dport)}:", format_flags(self.flags)]
        parts.append(f"seq {self.seq}")
        if self.flags & ACK or self.ack:
            parts.append(f"ack {self.ack}")
        parts.append(f"win {self.window}")
        if self.urgent:
            parts.append(f"urg {self.urgent}")
        if self.options:
            parts.append("<" + ",".join(o.describe() for o in self.options) + ">")
        parts.append(f"len {len(self.payload)}")
        if self.ecn:
            parts.append(ECN_NAMES[self.ecn])  # the IP header's ECN field, when not Not-ECT
        return " ".join(parts)


def _addr(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def parse_packet(packet: bytes) -> Segment | None:
    """Decode an IPv4 or IPv6 packet carrying TCP; None for anything else or anything truncated."""
    if not packet:
        return None
    version = packet[0] >> 4
    if version == 4:
        if len(packet) < 20:
            return None
        ihl = (packet[0] & 0x0F) * 4
        total = struct.unpack_from("!H", packet, 2)[0]
        if packet[9] != PROTO_TCP or ihl < 20 or len(packet) < ihl + 20:
            return None
        if total > len(packet) or total < ihl + 20:
            return None
        ttl, ecn = packet[8], packet[1] & 0x03
        src, dst = socket.inet_ntop(socket.AF_INET, packet[12:16]), socket.inet_ntop(socket.AF_INET, packet[16:20])
        family, tcp = "ipv4", packet[ihl:total]
    elif version == 6:
        if len(packet) < 60 or packet[6] != PROTO_TCP:  # extension headers are not followed here
            return None
        plen = struct.unpack_from("!H", packet, 4)[0]
        if len(packet) < 40 + plen:
            return None
        ttl, ecn = packet[7], (packet[1] >> 4) & 0x03  # the traffic class spans bytes 0 and 1
        src, dst = socket.inet_ntop(socket.AF_INET6, packet[8:24]), socket.inet_ntop(socket.AF_INET6, packet[24:40])
        family, tcp = "ipv6", packet[40 : 40 + plen]
    else:
        return None
    if len(tcp) < 20:
        return None
    sport, dport, seq, ack, off_flags, window, checksum, urgent = struct.unpack_from("!HHIIHHHH", tcp)
    doff = off_flags >> 12
    header_len = max(doff * 4, 20)
    options = parse_options(tcp[20:header_len]) if doff > 5 else []
    return Segment(
        family, src, dst, sport, dport, seq, ack, off_flags & 0xFF, window, urgent,
        options, bytes(tcp[header_len:]), doff, checksum, ttl, bytes(packet), (off_flags >> 8) & 0x0F, ecn,
    )  # fmt: skip


def flow_key(packet: bytes) -> tuple[bytes, bytes, int, int] | None:
    """(src, dst, sport, dport) as raw bytes/ints without a full decode: the demultiplexing fast path."""
    if not packet:
        return None
    version = packet[0] >> 4
    if version == 4 and len(packet) >= 24 and packet[9] == PROTO_TCP:
        ihl = (packet[0] & 0x0F) * 4
        if len(packet) < ihl + 4:
            return None
        sport, dport = struct.unpack_from("!HH", packet, ihl)
        return packet[12:16], packet[16:20], sport, dport
    if version == 6 and len(packet) >= 44 and packet[6] == PROTO_TCP:
        sport, dport = struct.unpack_from("!HH", packet, 40)
        return packet[8:24], packet[24:40], sport, dport
    return None
