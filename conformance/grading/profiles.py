"""Profiles decide which of two legitimate behaviours conforms.

A case records the behaviour it saw (the label of an ``expect_one_of`` alternative); an alternative lists
the profiles under which it conforms. These are the profiles the suite knows.
"""

from __future__ import annotations

PROFILES: dict[str, str] = {
    "rfc9293": "RFC 9293 as published: where it recommends RFC 5961 but still describes RFC 793's behaviour, "
    "either conforms (the default)",
    "rfc5961": "RFC 9293 with RFC 5961's mitigations required (challenge ACKs instead of resets)",
    "rfc793": "RFC 793's original behaviour required (resets where RFC 5961 would send a challenge ACK)",
    "rfc1337": "RFC 9293 with RFC 1337's TIME-WAIT protection required (a RST does not end TIME-WAIT)",
}
DEFAULT_PROFILE = "rfc9293"


def check_profile(name: str) -> str:
    if name not in PROFILES:
        raise ValueError(f"unknown profile '{name}' (known: {', '.join(PROFILES)})")
    return name
