"""Building outgoing IP/TCP packets with scapy, plus the byte patches scapy cannot express
(a bad checksum, a forced data offset, an option with a lying length byte)."""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass, field

SCAPY_OPTION = {"mss": "MSS", "wscale": "WScale", "sackok": "SAckOK", "ts": "Timestamp", "nop": "NOP",
                "eol": "EOL", "sack": "SAck"}  # fmt: skip


@dataclass(frozen=True)
class OutOption:
    """A resolved option: name and numeric value(s); raw options carry kind, data and an optional length."""

    name: str
    value: int | tuple[int, ...] | None = None
    kind: int | None = None
    data: bytes = b""
    length: int | None = None


@dataclass(frozen=True)
class OutSegment:
    family: str
    src: str
    dst: str
    sport: int
    dport: int
    seq: int
    ack: int
    flags: int
    window: int
    urgent: int = 0
    options: list[OutOption] = field(default_factory=list)
    payload: bytes = b""
    bad_checksum: bool = False
    doff: int | None = None
    ttl: int = 64
    reserved: int = 0


def _scapy_options(options: list[OutOption]) -> list[tuple]:
    out: list[tuple] = []
    for opt in options:
        if opt.name == "raw":
            out.append((opt.kind, opt.data))
        elif opt.name in ("nop", "eol"):
            out.append((SCAPY_OPTION[opt.name], None))
        elif opt.name == "sackok":
            out.append(("SAckOK", b""))
        else:
            out.append((SCAPY_OPTION[opt.name], opt.value))
    return out


def internet_checksum(data: bytes) -> int:
    """RFC 1071 one's-complement sum."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def encode_options(options: list[OutOption]) -> bytes:
    """Options in the order given, zero-padded to a multiple of four bytes (as scapy pads)."""
    out = bytearray()
    for opt in options:
        if opt.name == "nop":
            out.append(1)
        elif opt.name == "eol":
            out.append(0)
        elif opt.name == "mss":
            out += struct.pack("!BBH", 2, 4, int(opt.value))  # type: ignore[arg-type]
        elif opt.name == "wscale":
            out += struct.pack("!BBB", 3, 3, int(opt.value))  # type: ignore[arg-type]
        elif opt.name == "sackok":
            out += b"\x04\x02"
        elif opt.name == "ts":
            val, ecr = opt.value  # type: ignore[misc]
            out += struct.pack("!BBII", 8, 10, val, ecr)
        elif opt.name == "sack":
            blocks = tuple(opt.value or ())  # type: ignore[arg-type]
            out += struct.pack(f"!BB{len(blocks)}I", 5, 2 + 4 * len(blocks), *blocks)
        elif opt.name == "raw":
            length = opt.length if opt.length is not None else len(opt.data) + 2
            out += bytes([int(opt.kind or 0), length]) + opt.data
        else:
            raise ValueError(f"unknown option {opt.name}")
    if len(out) > 40:
        raise ValueError(f"options take {len(out)} bytes; a TCP header has room for 40")
    out += b"\0" * (-len(out) % 4)
    return bytes(out)


def _check_ranges(seg: OutSegment) -> None:
    for name, value, high in (("source port", seg.sport, 0xFFFF), ("destination port", seg.dport, 0xFFFF),
                              ("window", seg.window, 0xFFFF), ("urgent pointer", seg.urgent, 0xFFFF)):  # fmt: skip
        if not 0 <= value <= high:
            raise ValueError(f"{name} {value} out of range 0..{high}")
    for opt in seg.options:
        limit = {"mss": 0xFFFF, "wscale": 0xFF}.get(opt.name)
        if limit is not None and not 0 <= int(opt.value) <= limit:  # type: ignore[arg-type]
            raise ValueError(f"option {opt.name} value {opt.value} out of range 0..{limit}")
        if opt.name == "raw" and not 0 <= (opt.kind or 0) <= 0xFF:
            raise ValueError(f"option kind {opt.kind} out of range 0..255")


def build_packet(seg: OutSegment) -> bytes:
    """The exact bytes of one IP packet carrying ``seg`` (struct fast path; tests compare it with scapy)."""
    _check_ranges(seg)
    opts = encode_options(seg.options)
    doff = seg.doff if seg.doff is not None else 5 + len(opts) // 4
    tcp_len = 20 + len(opts) + len(seg.payload)
    header = struct.pack(
        "!HHIIBBHHH", seg.sport, seg.dport, seg.seq % (1 << 32), seg.ack % (1 << 32),
        ((doff & 0xF) << 4) | (seg.reserved & 0xF),
        seg.flags & 0xFF, seg.window & 0xFFFF, 0, seg.urgent & 0xFFFF,
    )  # fmt: skip
    tcp = header + opts + seg.payload
    if seg.family == "ipv4":
        src, dst = socket.inet_pton(socket.AF_INET, seg.src), socket.inet_pton(socket.AF_INET, seg.dst)
        pseudo = src + dst + struct.pack("!BBH", 0, 6, tcp_len)
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + tcp_len, 1, 0, seg.ttl, 6, 0, src, dst)
        ip = ip[:10] + struct.pack("!H", internet_checksum(ip)) + ip[12:]
    else:
        src, dst = socket.inet_pton(socket.AF_INET6, seg.src), socket.inet_pton(socket.AF_INET6, seg.dst)
        pseudo = src + dst + struct.pack("!I3xB", tcp_len, 6)
        ip = struct.pack("!IHBB16s16s", 6 << 28, tcp_len, 6, seg.ttl, src, dst)
    csum = internet_checksum(pseudo + tcp)
    if seg.bad_checksum:
        csum ^= 0x5A5A
    return ip + tcp[:16] + struct.pack("!H", csum) + tcp[18:]


def build_packet_scapy(seg: OutSegment) -> bytes:
    """The same packet built by scapy: the reference the fast path is tested against."""
    from scapy.layers.inet import IP, TCP  # imported here: scapy costs ~0.2 s to import
    from scapy.layers.inet6 import IPv6
    from scapy.packet import Raw

    tcp = TCP(
        sport=seg.sport, dport=seg.dport, seq=seg.seq, ack=seg.ack, flags=seg.flags,
        window=seg.window, urgptr=seg.urgent, options=_scapy_options(seg.options),
    )  # fmt: skip
    if seg.family == "ipv4":
        ip = IP(src=seg.src, dst=seg.dst, ttl=seg.ttl, id=1)
    else:
        ip = IPv6(src=seg.src, dst=seg.dst, hlim=seg.ttl)
    pkt = ip / tcp / Raw(seg.payload) if seg.payload else ip / tcp
    return bytes(pkt)
