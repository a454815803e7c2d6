"""Ethernet for the lower tester, sans-IO: framing, and the tester's own ARP and IPv6 neighbour discovery.

On an L2 link no kernel owns the tester's addresses, so the tester must answer ARP requests and neighbour
solicitations for them itself, and resolve the MAC address of its next hop (the target, or a gateway in
front of it). :class:`Neighbours` does both without touching a socket: it turns received frames into IP
packets plus the frames to send in reply, and IP packets into frames once the next hop is known.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass, field

from .build import internet_checksum

ETH_IPV4 = 0x0800
ETH_ARP = 0x0806
ETH_IPV6 = 0x86DD
BROADCAST_MAC = b"\xff" * 6
ICMPV6 = 58
ND_SOLICIT = 135
ND_ADVERT = 136
OPT_SOURCE_LLADDR = 1
OPT_TARGET_LLADDR = 2


def parse_mac(text: str) -> bytes:
    """``02:00:00:00:00:01`` -> 6 bytes; raises ValueError with the offending text."""
    parts = text.replace("-", ":").split(":")
    if len(parts) != 6 or not all(len(p) == 2 for p in parts):
        raise ValueError(f"not a MAC address: {text!r}")
    try:
        return bytes(int(p, 16) for p in parts)
    except ValueError:
        raise ValueError(f"not a MAC address: {text!r}") from None


def format_mac(mac: bytes) -> str:
    return ":".join(f"{b:02x}" for b in mac)


def ethernet(dst: bytes, src: bytes, ethertype: int, payload: bytes) -> bytes:
    return dst + src + struct.pack("!H", ethertype) + payload


def solicited_node(addr: bytes) -> bytes:
    """The solicited-node multicast address of an IPv6 address (ff02::1:ffXX:XXXX)."""
    return bytes.fromhex("ff02" + "00" * 9 + "01ff") + addr[13:]


def multicast_mac(addr6: bytes) -> bytes:
    return b"\x33\x33" + addr6[12:]


def icmpv6_packet(src: bytes, dst: bytes, body: bytes) -> bytes:
    """An IPv6 packet (hop limit 255, as ND requires) carrying ``body`` with its checksum filled in."""
    pseudo = src + dst + struct.pack("!I3xB", len(body), ICMPV6)
    csum = internet_checksum(pseudo + body[:2] + b"\0\0" + body[4:])
    body = body[:2] + struct.pack("!H", csum) + body[4:]
    return struct.pack("!IHBB", 6 << 28, len(body), ICMPV6, 255) + src + dst + body


def arp(op: int, sender_mac: bytes, sender_ip: bytes, target_mac: bytes, target_ip: bytes) -> bytes:
    return struct.pack("!HHBBH", 1, ETH_IPV4, 6, 4, op) + sender_mac + sender_ip + target_mac + target_ip


def neighbour_solicitation(src_mac: bytes, src: bytes, target: bytes) -> bytes:
    body = struct.pack("!BBHI", ND_SOLICIT, 0, 0, 0) + target + bytes([OPT_SOURCE_LLADDR, 1]) + src_mac
    dst = solicited_node(target)
    return ethernet(multicast_mac(dst), src_mac, ETH_IPV6, icmpv6_packet(src, dst, body))


def neighbour_advertisement(src_mac: bytes, addr: bytes, dst_mac: bytes, dst: bytes, solicited: bool = True) -> bytes:
    flags = (0x40000000 if solicited else 0) | 0x20000000  # override; the tester is not a router
    body = struct.pack("!BBHI", ND_ADVERT, 0, 0, flags) + addr + bytes([OPT_TARGET_LLADDR, 1]) + src_mac
    return ethernet(dst_mac, src_mac, ETH_IPV6, icmpv6_packet(addr, dst, body))


def _nd_lladdr(options: bytes, kind: int) -> bytes | None:
    while len(options) >= 8:
        length = options[1] * 8
        if length == 0:
            return None
        if options[0] == kind and length >= 8:
            return options[2:8]
        options = options[length:]
    return None


@dataclass
class Neighbours:
    """The tester's side of address resolution on one Ethernet link.

    ``own`` are the tester's addresses (packed), ``next_hops`` the packed address to resolve per IP
    version (the target, or the gateway in front of it); ``static`` pins MAC addresses the user declared.
    """

    mac: bytes
    own: frozenset[bytes]
    next_hops: dict[int, bytes]
    static: dict[bytes, bytes] = field(default_factory=dict)
    broadcasts: frozenset[bytes] = frozenset()  # the IPv4 subnet broadcast addresses of the link
    table: dict[bytes, bytes] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.table.update(self.static)

    def next_hop_mac(self, version: int) -> bytes | None:
        hop = self.next_hops.get(version)
        return self.table.get(hop) if hop is not None else None

    def frame(self, packet: bytes) -> bytes | None:
        """The Ethernet frame for an IP packet, or None while its next hop is unresolved."""
        version = packet[0] >> 4
        mac = self.group_mac(packet) or self.next_hop_mac(version)
        if mac is None:
            return None
        return ethernet(mac, self.mac, ETH_IPV4 if version == 4 else ETH_IPV6, packet)

    def group_mac(self, packet: bytes) -> bytes | None:
        """The MAC of a broadcast or multicast destination (only link-local groups are ever allowed to be sent)."""
        if packet[0] >> 4 == 4:
            dst = packet[16:20]
            if dst in self.broadcasts:
                return BROADCAST_MAC
            if 224 <= dst[0] <= 239:
                return b"\x01\x00\x5e" + bytes([dst[1] & 0x7F]) + dst[2:4]
            return None
        dst = packet[24:40]
        return multicast_mac(dst) if dst[:1] == b"\xff" else None

    def solicit(self, version: int) -> bytes:
        """An ARP request or neighbour solicitation for the next hop of ``version``."""
        hop = self.next_hops[version]
        own = next((a for a in self.own if len(a) == (4 if version == 4 else 16)), None)
        if own is None:
            raise ValueError(f"the tester has no IPv{version} address")
        if version == 4:
            return ethernet(BROADCAST_MAC, self.mac, ETH_ARP, arp(1, self.mac, own, b"\0" * 6, hop))
        return neighbour_solicitation(self.mac, own, hop)

    def receive(self, frame: bytes) -> tuple[bytes | None, list[bytes]]:
        """Split a received frame into the IP packet it carries (if any) and the frames to send in reply."""
        if len(frame) < 14:
            return None, []
        ethertype = struct.unpack_from("!H", frame, 12)[0]
        src_mac, payload = frame[6:12], frame[14:]
        if ethertype == ETH_ARP:
            return None, self._arp(payload)
        if ethertype == ETH_IPV6 and len(payload) >= 48 and payload[6] == ICMPV6:
            replies = self._nd(src_mac, payload)
            if replies is not None:
                return None, replies
        if ethertype in (ETH_IPV4, ETH_IPV6):
            return payload, []
        return None, []

    def _learn(self, addr: bytes, mac: bytes) -> None:
        if addr in self.next_hops.values() and addr not in self.static and mac != BROADCAST_MAC:
            self.table[addr] = mac

    def _arp(self, payload: bytes) -> list[bytes]:
        if len(payload) < 28:
            return []
        htype, ptype, hlen, plen, op = struct.unpack_from("!HHBBH", payload)
        if (htype, ptype, hlen, plen) != (1, ETH_IPV4, 6, 4):
            return []
        sender_mac, sender_ip, target_ip = payload[8:14], payload[14:18], payload[24:28]
        self._learn(sender_ip, sender_mac)
        if op == 1 and target_ip in self.own:
            return [ethernet(sender_mac, self.mac, ETH_ARP, arp(2, self.mac, target_ip, sender_mac, sender_ip))]
        return []

    def _nd(self, src_mac: bytes, ip6: bytes) -> list[bytes] | None:
        """Handle a neighbour solicitation or advertisement; None if the packet is other ICMPv6."""
        body = ip6[40:]
        if body[0] not in (ND_SOLICIT, ND_ADVERT) or len(body) < 24:
            return None
        src, target = ip6[8:24], body[8:24]
        if body[0] == ND_ADVERT:
            mac = _nd_lladdr(body[24:], OPT_TARGET_LLADDR) or src_mac
            self._learn(target, mac)
            return []
        mac = _nd_lladdr(body[24:], OPT_SOURCE_LLADDR) or src_mac
        if src != bytes(16):  # not duplicate-address detection
            self._learn(src, mac)
        if target not in self.own:
            return []
        if src == bytes(16):  # DAD for our address: defend it at all-nodes
            allnodes = socket.inet_pton(socket.AF_INET6, "ff02::1")
            return [neighbour_advertisement(self.mac, target, multicast_mac(allnodes), allnodes, solicited=False)]
        return [neighbour_advertisement(self.mac, target, mac, src)]
