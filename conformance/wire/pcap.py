"""Writing a case's frames to a pcap file (link type RAW: IPv4/IPv6 without a link header)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from scapy.utils import RawPcapWriter

LINKTYPE_RAW = 101


def write_pcap(path: Path, frames: Iterable[tuple[float, bytes]]) -> None:
    """Write (timestamp, packet) pairs in time order; timestamps keep microsecond precision."""
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = RawPcapWriter(str(path), linktype=LINKTYPE_RAW, sync=False)
    try:
        writer._write_header(None)  # an empty case still yields a valid, empty capture
        for ts, data in sorted(frames, key=lambda f: f[0]):
            sec = int(ts)
            writer.write_packet(data, sec=sec, usec=round((ts - sec) * 1e6) % 1_000_000)
    finally:
        writer.close()
