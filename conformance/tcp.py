"""TCP header vocabulary and sequence arithmetic: the one home of flag bits and of modulo-2^32 comparison.

Rules of this module: nothing here knows of cases, links or verdicts; it imports nothing of the project. Every
other module names flags by these constants (``SYN | ACK``), never by raw numbers, and does sequence-space
arithmetic with these functions, never with its own modulus.
"""

from __future__ import annotations

from typing import Any

# Bit values as in the TCP header (RFC 9293 section 3.1; ECE and CWR from RFC 3168).
FIN = 0x01
SYN = 0x02
RST = 0x04
PSH = 0x08
ACK = 0x10
URG = 0x20
ECE = 0x40
CWR = 0x80
SYN_ACK = SYN | ACK
RST_ACK = RST | ACK
FIN_ACK = FIN | ACK

FLAG_BITS = {"F": FIN, "S": SYN, "R": RST, "P": PSH, "A": ACK, "U": URG, "E": ECE, "C": CWR}
_FLAG_ORDER = "FSRPAUEC"  # letters in bit order, the order a summary shows them in

SEQ_MOD = 1 << 32  # sequence numbers, acknowledgments and timestamps wrap here
SEQ_HALF = SEQ_MOD // 2


def parse_flags(value: Any) -> int:
    """Flags written as letters (``SA``, ``FA``, ``R``); ``.`` is packetdrill's spelling of ACK; ``none`` is 0."""
    if not isinstance(value, str):
        raise ValueError(f"flags must be letters such as 'SA', not {value!r}")
    text = value.strip()
    if text.lower() in ("", "none", "-"):
        return 0
    bits = 0
    for ch in text.upper():
        if ch == ".":
            ch = "A"
        if ch not in FLAG_BITS:
            raise ValueError(f"unknown flag '{ch}' (known: F S R P A U E C)")
        bits |= FLAG_BITS[ch]
    return bits


def _flag_letters(bits: int) -> str:
    return "".join(ch for ch in _FLAG_ORDER if bits & FLAG_BITS[ch]) or "none"


_FLAG_TEXT = tuple(_flag_letters(bits) for bits in range(256))  # every flags byte, spelled once


def format_flags(bits: int) -> str:
    """Canonical letters in header order, e.g. ``SA``, ``FA``, ``R``; ``none`` for no flag."""
    return _FLAG_TEXT[bits] if 0 <= bits < 256 else _flag_letters(bits)


def seq_add(a: int, n: int) -> int:
    """``a + n`` in sequence space."""
    return (a + n) % SEQ_MOD


def seq_diff(a: int, b: int) -> int:
    """Signed distance ``a - b`` in sequence space (RFC 1982-style comparison), in -2^31 .. 2^31 - 1."""
    d = (a - b) % SEQ_MOD
    return d - SEQ_MOD if d >= SEQ_HALF else d


def seq_distance(a: int, b: int) -> int:
    """The unsigned distance between two sequence numbers, the short way round the 2^32 circle."""
    d = (b - a) % SEQ_MOD
    return min(d, SEQ_MOD - d)


def seq_after(a: int, b: int) -> bool:
    """Whether ``a`` lies ahead of ``b`` in sequence space (strictly)."""
    return seq_diff(a, b) > 0


# The IP header's ECN field (RFC 3168 section 5), by code point; "ect" in a case means either ECT code point.
ECN_NAMES = {0: "not-ect", 1: "ect1", 2: "ect0", 3: "ce"}
ECN_MATCHES = {"not-ect": {0}, "ect1": {1}, "ect0": {2}, "ce": {3}, "ect": {1, 2}}
