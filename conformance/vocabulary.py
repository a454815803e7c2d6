"""The suite's shared words: verdicts, levels, categories, profiles and the shapes of requirement ids.

Rules of this module: it is the only place these lists are spelled out; it imports nothing of the project, so
every layer (the case format, the engine, grading, reports) may use it. Meanings live in docs/grading.md.
"""

from __future__ import annotations

import re
from enum import StrEnum


class Verdict(StrEnum):
    """What a case says about the target (ISO/IEC 9646 verdicts, plus NOT-RUN for a missing capability)."""

    PASS = "PASS"
    FAIL = "FAIL"
    INCONCLUSIVE = "INCONCLUSIVE"
    ERROR = "ERROR"
    NOT_RUN = "NOT-RUN"


VERDICTS: tuple[str, ...] = tuple(str(v) for v in Verdict)  # display order
UNDECIDED_VERDICTS = ("ERROR", "INCONCLUSIVE")
# Worst first when requirements combine cases; NOT-RUN counts only when every case of a requirement is NOT-RUN.
VERDICT_SEVERITY = {"FAIL": 4, "ERROR": 3, "INCONCLUSIVE": 2, "PASS": 1, "NOT-RUN": 0}


class Level(StrEnum):
    """A case's level: the RFC 2119 key word of what it checks, or INFO for behaviour the RFCs leave open."""

    MUST = "MUST"
    SHOULD = "SHOULD"
    MAY = "MAY"
    INFO = "INFO"


LEVELS: tuple[str, ...] = tuple(str(level) for level in Level)
STRICT_LEVELS = ("MUST", "SHOULD")
LEVEL_STRENGTH = {"MUST": 3, "SHOULD": 2, "MAY": 1, "INFO": 0}
# The registry's key words (RFC 2119) and the case level each one is graded at.
KEYWORD_LEVEL = {"MUST": "MUST", "MUST NOT": "MUST", "SHOULD": "SHOULD", "SHOULD NOT": "SHOULD", "MAY": "MAY"}

# Autobahn|Testsuite's categories of one graded case.
CATEGORIES = ("pass", "non-strict", "fail", "info", "incomplete")

PROFILES: dict[str, str] = {
    "rfc9293": "RFC 9293 as published: where it recommends RFC 5961 but still describes RFC 793's behaviour, "
    "either conforms (the default)",
    "rfc5961": "RFC 9293 with RFC 5961's mitigations required (challenge ACKs instead of resets)",
    "rfc793": "RFC 793's original behaviour required (resets where RFC 5961 would send a challenge ACK)",
    "rfc1337": "RFC 9293 with RFC 1337's TIME-WAIT protection required (a RST does not end TIME-WAIT)",
}
DEFAULT_PROFILE = "rfc9293"

# A reference a case may cite: a place in an RFC (rfc9293:3.10.7.4, rfc793:page36, rfc9293:MUST-10), or a
# non-RFC source written as scheme:text.
REF_PATTERN = r"^(rfc\d+:[A-Za-z0-9.\-]+|[a-z][a-z0-9-]*:.+)$"
# A registry entry's id: only RFC places.
REGISTRY_REF_PATTERN = r"^rfc[0-9]+:[A-Za-z0-9.\-]+$"
# A numbered requirement of RFC 9293 (section 4 of that RFC lists them): what grading counts.
NUMBERED_REQUIREMENT = re.compile(r"^rfc9293:(MUST|SHLD|MAY|REC)-[1-9][0-9]*$")
RFC_OF_REF = re.compile(r"^rfc0*(\d+):", re.IGNORECASE)


def is_numbered_requirement(ref: str) -> bool:
    return NUMBERED_REQUIREMENT.match(ref) is not None


def numbered_requirements(refs: list[str] | tuple[str, ...]) -> list[str]:
    """The numbered requirements among a case's refs (``rfc9293:MUST-10``), in order; other refs are places."""
    return [r for r in refs if is_numbered_requirement(r)]


def rfc_number(ref: str) -> str | None:
    """``rfc9293:3.5`` -> ``9293``; None for a reference that is not to an RFC."""
    match = RFC_OF_REF.match(ref)
    return str(int(match.group(1))) if match else None


# ---- what a case may require of a target (`requires:`), and what a target may declare (`capabilities:`) -------
UT_OPS = ("listen", "accept", "connect", "send", "recv", "shutdown", "close", "abort", "state")  # the agent's calls
UT_FEATURES = ("user_timeout", "fastopen")  # optional agent arguments a case may need (hello's "features")
TCP_FEATURES = ("tcp.wscale", "tcp.timestamps", "tcp.sack", "tcp.fastopen", "tcp.fastopen_client", "tcp.no_rtt_cache")
TIMER_NAMES = ("syn_rto", "syn_retransmissions", "syn_giveup", "synack_retransmissions", "synack_giveup", "time_wait",
               "fin_wait_2")  # fmt: skip  # the timers a target entry may declare (targets.yaml `timers:`)
CAPABILITIES = frozenset(
    {"ut", *(f"ut.{op}" for op in (*UT_OPS, *UT_FEATURES)), *TCP_FEATURES, *(f"timers.{t}" for t in TIMER_NAMES),
     "net.broadcast", "target.restart", "flood", "svc.echo"}
)  # fmt: skip

# The eleven connection states of RFC 9293 section 3.3.2, as the upper tester names them.
TCP_STATES = ("CLOSED", "LISTEN", "SYN-SENT", "SYN-RECEIVED", "ESTABLISHED", "FIN-WAIT-1", "FIN-WAIT-2", "CLOSE-WAIT",
              "CLOSING", "LAST-ACK", "TIME-WAIT")  # fmt: skip
