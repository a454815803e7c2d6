"""Writing a case's frames to a pcapng file in which every packet carries a comment (the test's intent).

Wireshark shows an Enhanced Packet Block's ``opt_comment`` beside the packet (``pkt_comment`` /
``frame.comment``), so a frame reads e.g. "step 3 (expect, line 12): SYN-ACK matched". The layout is the
smallest valid pcapng (draft-ietf-opsawg-pcapng): one Section Header Block (with an optional comment naming
the suite and the case), one Interface Description Block (link type RAW: IPv4/IPv6 without a link header;
``if_tsresol`` = 9, nanosecond timestamps) and one Enhanced Packet Block per frame, little-endian.

scapy's PcapNgWriter is not used: it has no section comment, no ``if_tsresol`` and only microsecond timestamps.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable
from decimal import Decimal
from pathlib import Path

from .. import __version__

LINKTYPE_RAW = 101
SNAPLEN = 262144
TSRESOL_NS = 9  # if_tsresol: 10^-9 s

BLOCK_SHB = 0x0A0D0D0A
BLOCK_IDB = 0x00000001
BLOCK_EPB = 0x00000006
BYTE_ORDER_MAGIC = 0x1A2B3C4D

OPT_ENDOFOPT = 0
OPT_COMMENT = 1
OPT_SHB_USERAPPL = 4
OPT_IF_NAME = 2
OPT_IF_TSRESOL = 9

Frame = tuple[float | Decimal, bytes, str]


def _pad(data: bytes) -> bytes:
    return data + b"\x00" * (-len(data) % 4)


def _option(code: int, value: bytes) -> bytes:
    return struct.pack("<HH", code, len(value)) + _pad(value)


def _options(options: Iterable[tuple[int, bytes]]) -> bytes:
    """An option list with its end-of-options marker; no options at all is an empty list (no marker)."""
    body = b"".join(_option(code, value) for code, value in options)
    return body + struct.pack("<HH", OPT_ENDOFOPT, 0) if body else b""


def _block(block_type: int, body: bytes) -> bytes:
    length = 12 + len(body)  # body is already padded to 32 bits
    return struct.pack("<II", block_type, length) + body + struct.pack("<I", length)


def _text_options(code: int, text: str | None) -> list[tuple[int, bytes]]:
    return [(code, text.encode("utf-8"))] if text else []


def section_header(comment: str | None = None) -> bytes:
    """SHB: byte-order magic, version 1.0, unknown section length; the comment and the writing application."""
    body = struct.pack("<IHHq", BYTE_ORDER_MAGIC, 1, 0, -1)
    opts = [*_text_options(OPT_COMMENT, comment), (OPT_SHB_USERAPPL, f"tcp-conformance {__version__}".encode())]
    return _block(BLOCK_SHB, body + _options(opts))


def interface_description(linktype: int = LINKTYPE_RAW, name: str | None = None) -> bytes:
    """IDB: link type, snap length, optional if_name and if_tsresol = 9 (nanoseconds)."""
    body = struct.pack("<HHI", linktype, 0, SNAPLEN)
    opts = [*_text_options(OPT_IF_NAME, name), (OPT_IF_TSRESOL, bytes([TSRESOL_NS]))]
    return _block(BLOCK_IDB, body + _options(opts))


def timestamp_ns(ts: float | Decimal) -> int:
    """Seconds since the epoch to integer nanoseconds, exactly for a Decimal and without the float error of
    ``ts * 1e9`` (a float itself only holds about 0.25 us at today's epoch)."""
    if isinstance(ts, Decimal):
        return int((ts * 1_000_000_000).to_integral_value())
    if not math.isfinite(ts) or ts < 0:
        raise ValueError(f"invalid timestamp {ts!r}")
    sec = math.floor(ts)
    return sec * 1_000_000_000 + round((ts - sec) * 1e9)  # ts - floor(ts) is exact


def enhanced_packet(ts: float | Decimal, data: bytes, comment: str = "", interface: int = 0) -> bytes:
    """EPB: interface, 64-bit timestamp in if_tsresol units, lengths, the packet and its opt_comment."""
    ns = timestamp_ns(ts)
    if ns < 0 or ns >= 1 << 64:
        raise ValueError(f"timestamp {ts!r} out of range")
    body = struct.pack("<IIIII", interface, ns >> 32, ns & 0xFFFFFFFF, len(data), len(data)) + _pad(bytes(data))
    return _block(BLOCK_EPB, body + _options(_text_options(OPT_COMMENT, comment)))


def write_pcapng(
    path: Path,
    frames: Iterable[Frame],
    *,
    section_comment: str | None = None,
    interface_name: str | None = None,
    linktype: int = LINKTYPE_RAW,
) -> None:
    """Write (timestamp, packet, comment) frames in time order, each packet with its comment.

    ``section_comment`` (e.g. "tcp-conformance: RST-CLOSED-01 [ipv4]") is shown by Wireshark as the capture
    file comment. An empty frame list still yields a valid capture. Timestamps are seconds since the epoch.
    """
    path = Path(path)
    # every block is built before the file is touched: a bad timestamp leaves no half-written capture
    path.parent.mkdir(parents=True, exist_ok=True)
    packets = [enhanced_packet(ts, data, comment) for ts, data, comment in sorted(frames, key=lambda f: f[0])]
    path.write_bytes(
        section_header(section_comment) + interface_description(linktype, interface_name) + b"".join(packets)
    )
