"""The flood path: many SYNs, each from its own spoofed tester-owned source, as fast as a cap allows.

One packet is built normally; the rest are that template with the source address, source port and
sequence number patched and both checksums updated incrementally (RFC 1624), so a packet costs a few
microseconds of Python. Nothing is recorded per packet: the flood is counted, not traced.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..tcp import SYN
from .build import OutOption, OutSegment, build_packet


@dataclass(frozen=True)
class FloodResult:
    sent: int
    elapsed_s: float

    @property
    def rate(self) -> float:
        return self.sent / self.elapsed_s if self.elapsed_s > 0 else 0.0


def spoofed_sources(family: str, tester: str, target: str, prefix: int, count: int) -> list[str]:
    """Up to ``count`` addresses of the tester's subnet, other than the tester's and the target's."""
    net = ipaddress.ip_network(f"{tester}/{prefix}", strict=False)
    skip = {ipaddress.ip_address(tester), ipaddress.ip_address(target)}
    out: list[str] = []
    first = int(net.network_address) + 1
    last = int(net.broadcast_address) - (1 if family == "ipv4" else 0)
    for value in range(first, min(last, first + count + 2) + 1):
        addr = ipaddress.ip_address(value)
        if addr not in skip:
            out.append(str(addr))
        if len(out) == count:
            break
    if not out:
        raise ValueError(f"no spare address in {net} for spoofed sources")
    return out


def _fold(total: int) -> int:
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def _update(checksum: int, old: bytes, new: bytes) -> int:
    """RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m') over the changed 16-bit words."""
    total = ~checksum & 0xFFFF
    for i in range(0, len(old), 2):
        (o,) = struct.unpack_from("!H", old, i)
        (n,) = struct.unpack_from("!H", new, i)
        total += (~o & 0xFFFF) + n
    return ~_fold(total) & 0xFFFF


class SynFlood:
    """Pre-computed offsets into a SYN template; ``packet(i)`` returns the i-th distinct SYN."""

    def __init__(self, family: str, sources: list[str], target: str, dport: int, mss: int = 1460) -> None:
        self.family = family
        template = build_packet(OutSegment(family, sources[0], target, 1024, dport, 1, 0, SYN, 65535, 0,
                                           [OutOption("mss", mss)]))  # fmt: skip
        self.template = bytearray(template)
        af_len = 4 if family == "ipv4" else 16
        self.src_off = 12 if family == "ipv4" else 8
        self.tcp_off = 20 if family == "ipv4" else 40
        self.sources = [ipaddress.ip_address(s).packed for s in sources]
        assert all(len(s) == af_len for s in self.sources)
        self.base_src = bytes(self.template[self.src_off : self.src_off + af_len])
        self.base_tcp_csum = struct.unpack_from("!H", self.template, self.tcp_off + 16)[0]
        self.base_ip_csum = struct.unpack_from("!H", self.template, 10)[0] if family == "ipv4" else 0
        self.base_ports_seq = bytes(self.template[self.tcp_off : self.tcp_off + 8])

    def packet(self, i: int) -> bytes:
        buf = self.template
        src = self.sources[i % len(self.sources)]
        sport = 1024 + (i // len(self.sources)) % 64000
        seq = (i * 2654435761) & 0xFFFFFFFF
        ports_seq = struct.pack("!HHI", sport, struct.unpack_from("!H", self.base_ports_seq, 2)[0], seq)
        buf[self.src_off : self.src_off + len(src)] = src
        buf[self.tcp_off : self.tcp_off + 8] = ports_seq
        tcp_csum = _update(self.base_tcp_csum, self.base_src + self.base_ports_seq, src + ports_seq)
        struct.pack_into("!H", buf, self.tcp_off + 16, tcp_csum)
        if self.family == "ipv4":
            struct.pack_into("!H", buf, 10, _update(self.base_ip_csum, self.base_src, src))
        return bytes(buf)


def run_flood(flood: SynFlood, count: int, rate: float, send: Callable[[bytes], None]) -> FloodResult:
    """Send ``count`` SYNs at no more than ``rate`` per second (paced in batches of 1 ms)."""
    start = time.monotonic()
    batch = max(1, int(rate / 1000))
    sent = 0
    while sent < count:
        for _ in range(min(batch, count - sent)):
            send(flood.packet(sent))
            sent += 1
        ahead = sent / rate - (time.monotonic() - start)
        if ahead > 0:
            time.sleep(ahead)
    return FloodResult(sent, time.monotonic() - start)


def direct_writer(fd: int) -> Callable[[bytes], None]:
    """A send function writing straight to a TUN fd (the link's guard is applied by the caller once)."""
    write = os.write

    def send(packet: bytes) -> None:
        with contextlib.suppress(BlockingIOError):  # the TUN's queue is full: lost, as on a saturated wire
            write(fd, packet)

    return send
