"""The flood path: distinct, correct SYNs from spoofed tester-owned sources, built fast."""

from __future__ import annotations

import ipaddress
import shutil
import subprocess
from pathlib import Path

import pytest

from conformance.wire.build import OutOption, OutSegment, build_packet
from conformance.wire.flood import SynFlood, run_flood, spoofed_sources
from conformance.wire.pcapng import write_pcapng
from conformance.wire.segment import parse_packet

NETS = [("ipv4", "198.18.0.2", "198.18.0.1", 24), ("ipv6", "2001:2::2", "2001:2::1", 64)]


@pytest.mark.parametrize(("family", "tester", "target", "prefix"), NETS)
def test_spoofed_sources_are_tester_owned(family: str, tester: str, target: str, prefix: int) -> None:
    sources = spoofed_sources(family, tester, target, prefix, 300)
    net = ipaddress.ip_network(f"{tester}/{prefix}", strict=False)
    assert len(sources) == (252 if family == "ipv4" else 300)
    assert tester not in sources and target not in sources and len(set(sources)) == len(sources)
    assert all(ipaddress.ip_address(s) in net for s in sources)
    assert str(net.broadcast_address) not in sources


@pytest.mark.parametrize(("family", "tester", "target", "prefix"), NETS)
def test_every_flood_packet_equals_a_normally_built_syn(family: str, tester: str, target: str, prefix: int) -> None:
    flood = SynFlood(family, spoofed_sources(family, tester, target, prefix, 200), target, 5000)
    seen = set()
    for i in [*range(0, 450), 12345, 99999]:
        packet = flood.packet(i)
        seg = parse_packet(packet)
        assert seg is not None and seg.flags == 0x02 and seg.dst == target and seg.dport == 5000
        reference = OutSegment(family, seg.src, target, seg.sport, 5000, seg.seq, 0, 0x02, 65535, 0,
                               [OutOption("mss", 1460)])  # fmt: skip
        assert packet == build_packet(reference), i  # same bytes, so both checksums are right
        seen.add((seg.src, seg.sport))
    assert len(seen) == 452  # every packet has its own source


def test_the_rate_cap_is_respected() -> None:
    flood = SynFlood("ipv4", ["198.18.0.3"], "198.18.0.1", 80)
    packets: list[bytes] = []
    result = run_flood(flood, 2000, 10_000, packets.append)
    assert result.sent == len(packets) == 2000
    assert result.elapsed_s >= 0.19  # 2000 packets at 10,000/s take at least 0.2 s (pacing per 1 ms batch)


@pytest.mark.skipif(shutil.which("tshark") is None, reason="needs tshark (Debian package tshark)")
def test_tshark_finds_no_bad_checksum_in_a_sample(tmp_path: Path) -> None:
    flood = SynFlood("ipv4", spoofed_sources("ipv4", "198.18.0.2", "198.18.0.1", 24, 200), "198.18.0.1", 80)
    capture = tmp_path / "flood.pcapng"
    frames = [(1.0 + i / 1e6, flood.packet(i * 37), "") for i in range(2000)]
    broken = bytearray(flood.packet(5))
    broken[37] ^= 0xFF  # a negative control: corrupt the TCP checksum's low byte
    frames.append((2.0, bytes(broken), "corrupted on purpose"))
    write_pcapng(capture, frames)
    proc = subprocess.run(
        ["tshark", "-r", str(capture), "-o", "tcp.check_checksum:TRUE", "-o", "ip.check_checksum:TRUE",
         "-T", "fields", "-e", "tcp.checksum.status", "-e", "ip.checksum.status"],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    statuses = [line.split("\t") for line in proc.stdout.splitlines()]
    assert len(statuses) == 2001
    assert all(tcp == "1" and ip == "1" for tcp, ip in statuses[:-1]), statuses[:3]  # 1 = good, 0 = bad
    assert statuses[-1] == ["0", "1"]
