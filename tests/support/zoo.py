"""Helpers shared by the tests of the zoo targets and the agents: private namespaces, and a TCP segment tester
on top of the suite's own Ethernet links (conformance.wire).

The tester plays 198.18.0.2 / 2001:2::2 (MAC 02:00:00:00:00:02) in front of a target at 198.18.0.1 / 2001:2::1
(MAC 02:00:00:00:00:01), the addresses every zoo program is launched with. The link answers ARP and neighbour
solicitations for the tester and frames its IP packets; scapy only builds and dissects the TCP segments.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6
from scapy.packet import Packet

from conformance.targets import netns
from conformance.targets.config import LinkConfig, TargetConfig
from conformance.targets.reach import open_link
from conformance.upper_tester import AgentError
from conformance.wire.ethernet_link import EthernetLink

TARGET_MAC, TESTER_MAC = "02:00:00:00:00:01", "02:00:00:00:00:02"
TARGET = {"ipv4": "198.18.0.1", "ipv6": "2001:2::1"}
TESTER = {"ipv4": "198.18.0.2", "ipv6": "2001:2::2"}
FAMILIES = ["ipv4", "ipv6"]
CORE_OPS = {"hello", "listen", "accept", "connect", "send", "recv", "shutdown", "close", "abort", "state", "bye"}


def launch_argv(ns: str, program: Path, tap: str, token: str) -> list[str]:
    """The launch contract's command line for a zoo program on ``tap``, run inside namespace ``ns``."""
    return [
        *("ip", "netns", "exec", ns, str(program), "--tap", tap, "--mac", TARGET_MAC),
        *("--ipv4", f"{TARGET['ipv4']}/24", "--ipv6", f"{TARGET['ipv6']}/64"),
        *("--allow-connect", TESTER["ipv4"], "--allow-connect", TESTER["ipv6"], "--token", token),
    ]


@contextlib.contextmanager
def namespace(suffix: str, taps: tuple[str, ...] = ()) -> Iterator[str]:
    """A namespace of this run (``tcpconf-<pid>-<suffix>``) holding up ``taps`` without addresses, as the suite
    gives a launched program (IPv6 off on them: the kernel's own solicitations stay off the program's link);
    on exit whatever still runs inside is killed and the namespace removed."""
    ns = netns.namespace_name(suffix)
    netns.create(ns)
    try:
        for tap in taps:
            netns.run(["ip", "-n", ns, "tuntap", "add", "dev", tap, "mode", "tap"])
            netns.run(["ip", "netns", "exec", ns, "sysctl", "-q", "-w", f"net.ipv6.conf.{tap}.disable_ipv6=1"])
            netns.run(["ip", "-n", ns, "link", "set", tap, "up"])
        yield ns
    finally:
        for pid in netns.pids_in(ns):  # only what this test started lives in its namespace
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)
        netns.delete(ns)


def error_of(call: Callable[[], object]) -> str:
    """The error code of the AgentError that ``call`` raises (the test fails if it raises none)."""
    with pytest.raises(AgentError) as info:
        call()
    return info.value.error


def _target(link: LinkConfig) -> TargetConfig:
    """The zoo's addressing as a target entry (the default addresses), for the suite's link machinery."""
    return TargetConfig(kind="remote", link=link)


def _dissect(data: bytes) -> Packet:
    return IP(data) if data[0] >> 4 == 4 else IPv6(data)


def _family(packet: Packet) -> str:
    return "ipv4" if isinstance(packet, IP) else "ipv6"


class SegmentTester:
    """The remote TCP peer on a zoo target's link: sends TCP segments, waits for the target's.

    Packets are handed out as scapy IP / IPv6 packets with the link's timestamp (kernel time on AF_PACKET).
    """

    __test__ = False

    def __init__(self, link: EthernetLink) -> None:
        self.link = link
        self.seen: list[str] = []  # summaries of the target's packets no expect() wanted: for failure messages

    @classmethod
    def on_interface(cls, ns: str, ifname: str) -> SegmentTester:
        """On the Ethernet interface (a tap) ``ifname`` inside namespace ``ns``."""
        config = LinkConfig(type="afpacket", interface=ifname, tester_mac=TESTER_MAC, target_mac=TARGET_MAC)
        return cls(open_link(_target(config), config, ifname, ns, None))

    @classmethod
    def on_stream(cls, path: Path) -> SegmentTester:
        """On a QEMU-framed stream socket at ``path`` (the guest's MAC is known, so nothing needs resolving)."""
        address = f"unix:{path}"
        config = LinkConfig(type="stream", address=address, tester_mac=TESTER_MAC, target_mac=TARGET_MAC)
        return cls(open_link(_target(config), config, None, None, address))

    def close(self) -> None:
        self.link.close()

    def send(self, family: str, segment: Packet) -> None:
        """Send a TCP segment (with any payload) from the tester's address of ``family`` to the target's."""
        layer = IP if family == "ipv4" else IPv6
        self.link.send(bytes(layer(src=TESTER[family], dst=TARGET[family]) / segment))

    def expect(
        self, match: Callable[[Packet], bool], timeout: float = 3.0, what: str = "packet", own: bool = False
    ) -> tuple[Packet, float]:
        """The first packet from the target (the tester's own if ``own``) that ``match`` accepts, with its
        timestamp; others are dropped. AssertionError after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            frame = self.link.receive(left)
            if frame is None or frame.inbound == own:
                continue
            packet = _dissect(frame.data)
            if match(packet):
                return packet, frame.ts
            if not own:
                self.seen.append(packet.summary())
        raise AssertionError(f"no {what} within {timeout:g} s; the target's last packets: {self.seen[-8:] or 'none'}")

    def expect_tcp(
        self, match: Callable[[TCP], bool], family: str | None = None, timeout: float = 3.0, what: str = "segment"
    ) -> TCP:
        """The first TCP segment from the target (of ``family``, if given) that ``match`` accepts."""

        def wanted(packet: Packet) -> bool:
            return TCP in packet and (family is None or _family(packet) == family) and match(packet[TCP])

        return self.expect(wanted, timeout, what)[0][TCP]

    def round_trip(
        self, family: str, segment: Packet, match: Callable[[TCP], bool], timeout: float = 3.0
    ) -> tuple[Packet, float]:
        """Send ``segment`` and wait for the target's answer; returns the answer and the seconds between the
        two packets' timestamps on the link."""
        self.send(family, segment)
        sport = segment.sport
        _, sent = self.expect(lambda p: TCP in p and p[TCP].sport == sport, timeout, "the tester's own segment", True)
        answer, arrived = self.expect(lambda p: TCP in p and match(p[TCP]), timeout, "answer")
        return answer, arrived - sent
