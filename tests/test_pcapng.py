"""pcapng with per-packet comments: scapy reads back the same bytes and times, tshark shows the comments."""

from __future__ import annotations

import shutil
import struct
import subprocess
from decimal import Decimal
from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6
from scapy.utils import PcapNgReader, rdpcap

from conformance.wire.pcapng import LINKTYPE_RAW, timestamp_ns, write_pcapng

SYN = bytes(IP(src="198.18.0.2", dst="198.18.0.1") / TCP(sport=40000, dport=5000, flags="S", seq=1))
SYNACK = bytes(IPv6(src="2001:2::1", dst="2001:2::2") / TCP(sport=5000, dport=40000, flags="SA", seq=7, ack=2))
ACK = bytes(IP(src="198.18.0.2", dst="198.18.0.1") / TCP(sport=40000, dport=5000, flags="A", seq=2, ack=8) / b"x")
FRAMES = [
    (1764102900.123456, SYN, "step 2 (send, line 9): SYN"),
    (1764102900.123987, SYNACK, "step 3 (expect, line 12): SYN-ACK matched \u2014 \u00fc"),
    (1764102900.5, ACK, ""),  # no comment: no option at all
]
SECTION = "tcp-conformance: HS-ACTIVE-01 [ipv4]"


@pytest.fixture
def capture(tmp_path: Path) -> Path:
    path = tmp_path / "cases" / "HS-ACTIVE-01-ipv4.pcapng"
    write_pcapng(path, reversed(FRAMES), section_comment=SECTION, interface_name="tk0")  # written in time order
    return path


def test_round_trip_bytes_timestamps_and_comments(capture: Path) -> None:
    packets = rdpcap(str(capture))
    assert [bytes(p) for p in packets] == [f[1] for f in FRAMES]
    assert [round(float(p.time) * 1e6) for p in packets] == [round(f[0] * 1e6) for f in FRAMES]
    assert [p.comments for p in packets] == [[f[2].encode()] for f in FRAMES[:2]] + [None]
    assert packets[0].haslayer(TCP) and packets[1].haslayer(IPv6)


def test_header_blocks(capture: Path) -> None:
    with PcapNgReader(str(capture)) as reader:
        reader.read_packet()  # the IDB is read on the way to the first packet
        ((linktype, snaplen, options),) = reader.interfaces
    assert linktype == LINKTYPE_RAW and snaplen == 262144
    assert options["tsresol"] == 10**9 and options["name"] == b"tk0"
    data = capture.read_bytes()
    assert data[:4] == b"\x0a\x0d\x0d\x0a" and struct.unpack_from("<I", data, 8)[0] == 0x1A2B3C4D
    assert SECTION.encode() in data and b"tcp-conformance 0.1.0" in data


def test_nanosecond_timestamps_are_exact_for_decimals(tmp_path: Path) -> None:
    ts = Decimal("1764102900.123456789")
    write_pcapng(tmp_path / "ns.pcapng", [(ts, SYN, "x")])
    with PcapNgReader(str(tmp_path / "ns.pcapng")) as reader:
        assert reader.read_packet().time == ts


@pytest.mark.parametrize(
    ("ts", "ns"),
    [
        (0.0, 0),
        (1.5, 1_500_000_000),
        (Decimal("1764102900.000000001"), 1_764_102_900_000_000_001),
        (1764102900.999999999, 1_764_102_901_000_000_000),  # the float is 1764102901.0
    ],
)
def test_timestamp_ns(ts: float | Decimal, ns: int) -> None:
    assert timestamp_ns(ts) == ns


@pytest.mark.parametrize("ts", [-1.0, float("nan"), float("inf")])
def test_invalid_timestamps_write_nothing(tmp_path: Path, ts: float) -> None:
    with pytest.raises(ValueError):
        write_pcapng(tmp_path / "bad.pcapng", [(1.0, SYN, ""), (ts, SYN, "")])
    assert not (tmp_path / "bad.pcapng").exists()


def test_an_empty_capture_is_valid(tmp_path: Path) -> None:
    write_pcapng(tmp_path / "empty.pcapng", [])
    assert len(rdpcap(str(tmp_path / "empty.pcapng"))) == 0


def test_odd_lengths_are_padded(tmp_path: Path) -> None:
    frames = [(float(n), SYN + b"z" * n, "c" * n) for n in range(1, 6)]
    write_pcapng(tmp_path / "pad.pcapng", frames)
    packets = rdpcap(str(tmp_path / "pad.pcapng"))
    assert [bytes(p) for p in packets] == [f[1] for f in frames]
    assert [p.comments for p in packets] == [[f[2].encode()] for f in frames]


TSHARK = shutil.which("tshark")


@pytest.mark.skipif(TSHARK is None, reason="tshark not installed (Debian package tshark)")
def test_tshark_decodes_every_packet_and_shows_the_comments(capture: Path) -> None:
    fields = ["-e", "frame.time_epoch", "-e", "frame.comment", "-e", "tcp.flags.str", "-e", "_ws.malformed"]
    run = subprocess.run(
        [str(TSHARK), "-r", str(capture), "-T", "fields", "-E", "separator=|", *fields],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    rows = [line.split("|") for line in run.stdout.splitlines()]
    assert [r[1] for r in rows] == [f[2] for f in FRAMES]
    assert [r[2].replace("\u00b7", "") for r in rows] == ["S", "AS", "A"]
    assert [r[3] for r in rows] == ["", "", ""]  # nothing malformed
    assert [round(float(r[0]) * 1e6) for r in rows] == [round(f[0] * 1e6) for f in FRAMES]
    info = subprocess.run(["capinfos", str(capture)], capture_output=True, text=True, timeout=60)
    if info.returncode == 0:  # capinfos ships with tshark's wireshark-common
        assert f"Capture comment:     {SECTION}" in info.stdout
        assert "nanoseconds" in info.stdout
