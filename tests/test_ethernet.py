"""The tester's own ARP and neighbour discovery (sans-IO), checked against scapy's dissection, and the
stream link's framing over a socket pair."""

from __future__ import annotations

import socket
import struct

import pytest
from scapy.layers.inet6 import ICMPv6ND_NA, ICMPv6ND_NS, IPv6
from scapy.layers.l2 import ARP, Ether
from scapy.packet import raw

from conformance.wire.ethernet import Neighbours, format_mac, neighbour_solicitation, parse_mac, solicited_node
from conformance.wire.link import TargetClosedLink, UndeclaredDestination
from conformance.wire.stream import StreamLink

TESTER_MAC, TARGET_MAC = parse_mac("02:00:00:00:00:02"), parse_mac("02:00:00:00:00:01")
T4, S4 = socket.inet_aton("198.18.0.2"), socket.inet_aton("198.18.0.1")
T6, S6 = socket.inet_pton(socket.AF_INET6, "2001:2::2"), socket.inet_pton(socket.AF_INET6, "2001:2::1")


def neighbours() -> Neighbours:
    return Neighbours(TESTER_MAC, frozenset({T4, T6}), {4: S4, 6: S6}, broadcasts=frozenset({bytes([198, 18, 0, 255])}))


def test_mac_parsing_rejects_garbage() -> None:
    assert format_mac(parse_mac("02-00-00-00-00-0A")) == "02:00:00:00:00:0a"
    with pytest.raises(ValueError, match="not a MAC"):
        parse_mac("02:00:00:00:00")


def test_solicited_node_address() -> None:
    assert socket.inet_ntop(socket.AF_INET6, solicited_node(S6)) == "ff02::1:ff00:1"


def test_the_tester_answers_arp_for_its_own_address_only() -> None:
    nb = neighbours()
    request = Ether(src=format_mac(TARGET_MAC), dst="ff:ff:ff:ff:ff:ff") / ARP(
        op=1, hwsrc=format_mac(TARGET_MAC), psrc="198.18.0.1", pdst="198.18.0.2"
    )
    packet, replies = nb.receive(raw(request))
    assert packet is None and len(replies) == 1
    reply = Ether(replies[0])
    assert reply[ARP].op == 2 and reply[ARP].hwsrc == "02:00:00:00:00:02" and reply[ARP].psrc == "198.18.0.2"
    assert reply.dst == "02:00:00:00:00:01"
    assert nb.next_hop_mac(4) == TARGET_MAC  # learnt from the request
    other = request.copy()
    other[ARP].pdst = "198.18.0.9"
    assert nb.receive(raw(other)) == (None, [])


def test_ip_packets_wait_for_resolution_then_go_to_the_resolved_mac() -> None:
    nb = neighbours()
    packet = bytes.fromhex("4500002800010000400600000000000000000000") + bytes(20)
    packet = packet[:12] + T4 + S4 + packet[20:]
    assert nb.frame(packet) is None
    solicit = Ether(nb.solicit(4))
    assert solicit.dst == "ff:ff:ff:ff:ff:ff" and solicit[ARP].pdst == "198.18.0.1" and solicit[ARP].op == 1
    answer = Ether(dst="02:00:00:00:00:02", src="02:00:00:00:00:01") / ARP(
        op=2, hwsrc="02:00:00:00:00:01", psrc="198.18.0.1", hwdst="02:00:00:00:00:02", pdst="198.18.0.2"
    )
    nb.receive(raw(answer))
    frame = nb.frame(packet)
    assert frame is not None and frame[:6] == TARGET_MAC and frame[6:12] == TESTER_MAC and frame[14:] == packet


def test_broadcast_and_multicast_destinations_get_group_macs() -> None:
    nb = neighbours()
    bcast = bytearray(20)
    bcast[0], bcast[16:20] = 0x45, bytes([198, 18, 0, 255])
    assert nb.frame(bytes(bcast))[:6] == b"\xff" * 6  # type: ignore[index]
    mcast6 = bytearray(40)
    mcast6[0], mcast6[24:40] = 0x60, socket.inet_pton(socket.AF_INET6, "ff02::1")
    assert nb.frame(bytes(mcast6))[:6] == bytes.fromhex("333300000001")  # type: ignore[index]


def test_neighbour_solicitation_is_valid_and_answered() -> None:
    ns = Ether(neighbour_solicitation(TARGET_MAC, S6, T6))
    assert ns.dst == "33:33:ff:00:00:02" and ns[IPv6].hlim == 255 and ns[ICMPv6ND_NS].tgt == "2001:2::2"
    checksum = ns[ICMPv6ND_NS].cksum
    del ns[ICMPv6ND_NS].cksum
    assert Ether(raw(ns))[ICMPv6ND_NS].cksum == checksum  # scapy agrees with our checksum
    packet, replies = neighbours().receive(neighbour_solicitation(TARGET_MAC, S6, T6))
    assert packet is None and len(replies) == 1
    na = Ether(replies[0])
    assert na.dst == "02:00:00:00:00:01" and na[IPv6].dst == "2001:2::1" and na[ICMPv6ND_NA].tgt == "2001:2::2"
    assert na[ICMPv6ND_NA].S == 1 and na[ICMPv6ND_NA].O == 1 and na[ICMPv6ND_NA].R == 0
    checksum = na[ICMPv6ND_NA].cksum
    del na[ICMPv6ND_NA].cksum
    assert Ether(raw(na))[ICMPv6ND_NA].cksum == checksum


def test_an_advertisement_resolves_the_ipv6_next_hop() -> None:
    nb = neighbours()
    ours = Ether(nb.solicit(6))
    assert ours[ICMPv6ND_NS].tgt == "2001:2::1" and ours.dst == "33:33:ff:00:00:01"
    _, replies = Neighbours(TARGET_MAC, frozenset({S6}), {6: T6}).receive(raw(ours))  # the target's answer
    nb.receive(replies[0])
    assert nb.next_hop_mac(6) == TARGET_MAC


def test_a_static_mac_is_never_overwritten() -> None:
    nb = Neighbours(TESTER_MAC, frozenset({T4}), {4: S4}, static={S4: TARGET_MAC})
    spoof = Ether(src="02:00:00:00:00:66") / ARP(op=2, hwsrc="02:00:00:00:00:66", psrc="198.18.0.1", pdst="198.18.0.2")
    nb.receive(raw(spoof))
    assert nb.next_hop_mac(4) == TARGET_MAC


def test_stream_link_framing_over_a_socket_pair() -> None:
    ours, peer = socket.socketpair()
    nb = Neighbours(TESTER_MAC, frozenset({T4}), {4: S4}, static={S4: TARGET_MAC})
    link = StreamLink(ours, nb, "socketpair")
    link.allow("198.18.0.1")
    packet = bytearray(40)
    packet[0], packet[9], packet[12:16], packet[16:20] = 0x45, 6, T4, S4
    link.send(bytes(packet))
    peer.settimeout(2)
    length = struct.unpack("!I", peer.recv(4))[0]
    assert length == 54 and peer.recv(length)[14:] == bytes(packet)
    assert link.receive(0.1).inbound is False  # the tester's own packet, recorded as sent
    reply = bytearray(packet)
    reply[12:16], reply[16:20] = S4, T4
    frame = TESTER_MAC + TARGET_MAC + b"\x08\x00" + bytes(reply)
    peer.sendall(struct.pack("!I", len(frame)) + frame[:10])  # split across writes
    peer.sendall(frame[10:])
    got = link.receive(1.0)
    assert got is not None and got.inbound and got.data == bytes(reply)
    with pytest.raises(UndeclaredDestination):
        link.send(bytes(reply))  # to the tester's own address: not declared
    peer.close()
    with pytest.raises(TargetClosedLink, match="the target closed its end"):
        link.receive(1.0)
    link.close()


def test_a_target_behind_a_router_is_reached_through_the_gateway_mac() -> None:
    from conformance.targets.config import LinkConfig, TargetConfig
    from conformance.targets.reach import neighbours_for

    link = LinkConfig(type="afpacket", interface="eth9", gateway={"ipv4": "198.18.0.254"})
    entry = TargetConfig(kind="remote", link=link, ipv4={"target": "198.19.5.1", "tester": "198.18.0.2", "prefix": 24},
                         families=["ipv4"])  # fmt: skip
    nb = neighbours_for(entry, link)
    assert nb.next_hops == {4: socket.inet_aton("198.18.0.254")}  # the router is resolved, not the target
    router_mac = "02:00:00:00:00:fe"
    answer = Ether(dst="02:00:00:00:00:02", src=router_mac) / ARP(
        op=2, hwsrc=router_mac, psrc="198.18.0.254", hwdst="02:00:00:00:00:02", pdst="198.18.0.2"
    )
    nb.receive(raw(answer))
    packet = bytearray(20)
    packet[0], packet[12:16], packet[16:20] = 0x45, T4, socket.inet_aton("198.19.5.1")
    frame = nb.frame(bytes(packet))
    assert frame is not None and frame[:6] == parse_mac(router_mac)


def test_an_off_subnet_target_without_a_gateway_is_refused() -> None:
    from conformance.targets.config import TargetConfig

    off_subnet = {"target": "198.19.5.1", "tester": "198.18.0.2", "prefix": 24}
    with pytest.raises(ValueError, match=r"needs link\.gateway"):
        TargetConfig(kind="remote", link={"type": "afpacket", "interface": "eth9"}, ipv4=off_subnet, families=["ipv4"])
