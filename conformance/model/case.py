"""Pydantic models of a test case file (format v1).

A file holds one test purpose: metadata (id, title, refs, requirement, level, requires, tags, alone) and a list
of steps. Every step is a mapping with exactly one action key (the keys of ``STEP_MODELS``) and optionally
``note``, or a ``use`` step naming a fragment (conformance/model/fragment.py), which the loader expands into
ordinary steps. Validation of a step's body is done per action model, so error locations read
``steps[3].expect.flags`` rather than naming union members. Tags are checked against the tag registry
(conformance/model/tags.py) by the loader, not here.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..vocabulary import PROFILES, REF_PATTERN, Level
from .values import (
    Capability,
    Duration,
    Expression,
    Expression16,
    Expression32,
    Flags,
    Match,
    Match16,
    Match32,
    State,
    UtResult,  # fmt: skip
)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, defer_build=True)


Family = Literal["ipv4", "ipv6"]

SEND_OPTION_NAMES = ("mss", "wscale", "sackok", "ts", "nop", "eol", "sack", "tfo", "raw")
EXPECT_OPTION_NAMES = ("mss", "wscale", "sackok", "ts", "ts_val", "ts_ecr", "sack", "tfo", "tfo_cookie", "eol_padding")
BIND_FIELDS = (
    "seq", "ack", "window", "len", "flags", "sport", "dport", "end_seq", "time_us",
    "opt.mss", "opt.wscale", "opt.ts_val", "opt.ts_ecr",
)  # fmt: skip


class RawOption(Strict):
    kind: int = Field(ge=0, le=255)
    data: str = Field("", pattern=r"^([0-9a-fA-F]{2})*$", description="option payload as hex")
    length: int | None = Field(None, ge=0, le=255, description="override the length byte (malformed options)")


class SendOption(Strict):
    """One option of an outgoing segment, in the order written."""

    name: Literal["mss", "wscale", "sackok", "ts", "nop", "eol", "sack", "tfo", "raw"]
    value: Any = None

    @model_validator(mode="before")
    @classmethod
    def _from_yaml(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"name": value}
        if isinstance(value, dict) and len(value) == 1 and "name" not in value:
            ((name, arg),) = value.items()
            return {"name": name, "value": arg}
        raise ValueError("an option is a name (nop, eol, sackok) or a one-key mapping such as {mss: 1460}")

    @model_validator(mode="after")
    def _check_value(self) -> SendOption:
        from .values import check_fits, parse_expr

        name, value = self.name, self.value
        if name in ("nop", "eol", "sackok"):
            if value is not None and value is not True:
                raise ValueError(f"option {name} takes no value")
        elif name in ("mss", "wscale"):  # the option's value field: 16 bits and 8 bits (a shift above 14 may be sent)
            object.__setattr__(self, "value", check_fits(parse_expr(value), 16 if name == "mss" else 8, name))
        elif name == "ts":
            if not isinstance(value, list | tuple) or len(value) != 2:
                raise ValueError("ts takes [tsval, tsecr]")
            object.__setattr__(self, "value", tuple(check_fits(parse_expr(v), 32, "a timestamp") for v in value))
        elif name == "sack":
            if not isinstance(value, list) or not all(isinstance(b, list) and len(b) == 2 for b in value):
                raise ValueError("sack takes a list of [left, right] blocks")
            object.__setattr__(self, "value", tuple((parse_expr(a), parse_expr(b)) for a, b in value))
        elif name == "tfo":
            if not isinstance(value, str) or not re.fullmatch(r"request|cookie|([0-9a-fA-F]{2}){4,16}", value):
                raise ValueError("tfo takes request, cookie (the target's last cookie) or a quoted hex cookie")
        elif name == "raw":
            object.__setattr__(self, "value", RawOption.model_validate(value))
        return self


class SendSpec(Strict):
    """A segment the lower tester sends. Unset seq/ack follow the tester's view of the connection."""

    flags: Flags
    seq: Expression32 | None = Field(None, description="default: the tester's next sequence number (l_nxt)")
    ack: Expression32 | None = Field(None, description="default: t_nxt when A is set, else 0")
    window: Expression16 = Field(default="65535", validate_default=True)  # type: ignore[assignment]
    urgent: Expression16 = Field(default="0", validate_default=True)  # type: ignore[assignment]
    options: list[SendOption] = []
    data: str | None = Field(None, description="payload as text")
    len: int | None = Field(None, ge=0, le=65000, description="payload of this many pattern bytes")
    checksum: Literal["good", "bad"] = "good"
    doff: int | None = Field(None, ge=0, le=15, description="override the data offset (malformed headers)")
    ttl: int = Field(64, ge=1, le=255, description="IPv4 TTL or IPv6 hop limit")
    from_port: Expression16 | None = Field(None, description="source port other than l_port")
    to_port: Expression16 | None = Field(None, description="destination port other than t_port")
    from_addr: Literal["tester", "target", "broadcast", "multicast"] = Field(
        "tester", description="target: the target's own address (LAND); broadcast/multicast: invalid sources"
    )
    to_addr: Literal["target", "broadcast", "multicast"] = Field(
        "target", description="broadcast: the target subnet's broadcast address (IPv4); multicast: all-nodes"
    )
    reserved: int = Field(0, ge=0, le=15, description="the four reserved header bits")

    @model_validator(mode="after")
    def _one_payload(self) -> SendSpec:
        if self.data is not None and self.len is not None:
            raise ValueError("give either data or len, not both")
        return self


IGNORE_FLAGS_DOC = (
    "flags not compared (default PEC: PSH is only a hint, and ECE/CWR belong to ECN, which cases about ECN"
    " check by writing ignore_flags: P)"
)


class ExpectSpec(Strict):
    """A segment the target must send next on the connection. Unset fields are not checked."""

    flags: Flags | None = None
    ignore_flags: Flags = Field(default="PEC", validate_default=True, description=IGNORE_FLAGS_DOC)  # type: ignore[assignment]
    seq: Match32 | None = None
    ack: Match32 | None = None
    window: Match16 | None = None
    len: Match | None = Field(None, description="payload length")
    data: str | None = Field(None, description="the exact payload, as text (UTF-8)")
    end_seq: Match32 | None = Field(None, description="seq + payload length (+1 for SYN, +1 for FIN)")
    urgent: Match16 | None = None
    reserved: Match | None = Field(None, description="the four reserved header bits")
    checksum: Literal["good", "any"] = Field("any", description="good: the segment's TCP checksum must be right")
    ecn: Literal["not-ect", "ect0", "ect1", "ect", "ce"] | None = Field(
        None, description="the IP header's ECN field (RFC 3168): not-ect, ect0, ect1, ect (either ECT), ce"
    )
    options: dict[str, Match] | None = Field(
        None,
        description="by name: mss, wscale, sackok, ts, ts_val, ts_ecr, sack, tfo (cookie length, 0: a request),"
        " tfo_cookie (as an integer), eol_padding (non-zero bytes after EOL): any | absent | N | a..b",
    )
    timeout: Duration = 1.0
    bind: dict[str, str] = Field({}, description="name: field (seq, ack, window, len, opt.wscale, ...)")

    @field_validator("options")
    @classmethod
    def _known_options(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        for name in value or {}:
            if name not in EXPECT_OPTION_NAMES:
                raise ValueError(f"unknown option '{name}' (known: {', '.join(EXPECT_OPTION_NAMES)})")
        return value

    @field_validator("bind")
    @classmethod
    def _known_fields(cls, value: dict[str, str]) -> dict[str, str]:
        for name, source in value.items():
            if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
                raise ValueError(f"bad name '{name}': use lower-case letters, digits and _")
            if source not in BIND_FIELDS:
                raise ValueError(f"cannot bind '{source}' (fields: {', '.join(BIND_FIELDS)})")
        return value


class SegmentFilter(Strict):
    """Which segments a window watches: the fields given must match (no field: every segment)."""

    flags: Flags | None = None
    ignore_flags: Flags = Field(default="PEC", validate_default=True, description=IGNORE_FLAGS_DOC)  # type: ignore[assignment]
    seq: Match32 | None = None
    ack: Match32 | None = None
    len: Match | None = None
    end_seq: Match | None = None


class ExpectNoneSpec(SegmentFilter):
    """A silence window: no segment matching the filter may arrive (any segment if no filter is given)."""

    for_: Duration = Field(alias="for")
    reason: str | None = None
    ignore_retransmissions: bool = Field(
        False,
        description="a retransmission (the flags, SEQ and length of a segment the target sent earlier in the case) "
        "does not break the silence: timers may resend what is outstanding while the window watches",
    )


class ExpectCountSpec(SegmentFilter):
    """Count the segments matching a filter during a window (e.g. how many challenge ACKs are sent)."""

    for_: Duration = Field(alias="for")
    count: Match = Field(description="N or low..high")
    record: str | None = Field(
        None, pattern=r"^[a-z_][a-z0-9_]*$", description="report the count under this name, and bind it for later steps"
    )
    reason: str = Field(description="what the count establishes")


class Alternative(Strict):
    """One acceptable behaviour in expect_one_of, with the profiles under which it conforms."""

    label: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    behaviour: str = Field(description="what the target did, in words, for the report")
    expect: ExpectSpec | None = None
    none: ExpectNoneSpec | None = Field(None, description="silence is this alternative")
    conforms: list[str] | None = Field(None, description="profiles under which this behaviour conforms; default all")
    then: list[Any] = []

    @model_validator(mode="after")
    def _exactly_one(self) -> Alternative:
        if (self.expect is None) == (self.none is None):
            raise ValueError("an alternative has exactly one of expect or none")
        if self.none is not None and any(
            getattr(self.none, f) is not None for f in ("flags", "seq", "ack", "len", "end_seq")
        ):
            raise ValueError("a silence alternative takes only 'for' (and 'reason'): silence means no segment at all")
        return self

    @field_validator("conforms")
    @classmethod
    def _known_profiles(cls, value: list[str] | None) -> list[str] | None:
        for name in value or []:
            if name not in PROFILES:
                raise ValueError(f"unknown profile '{name}' (known: {', '.join(PROFILES)})")
        return value


UtOp = Literal["listen", "accept", "connect", "send", "recv", "shutdown", "close", "abort", "state", "await"]


class UtSpec(Strict):
    """An upper-tester action on the target's socket API, through the agent."""

    op: UtOp
    sock: str | None = Field(None, description="handle name; default: the listener for accept, else the connection")
    as_: str | None = Field(None, alias="as", description="name the call (nowait) or the socket it returns")
    nowait: bool = False
    result: UtResult | list[UtResult] = Field("ok", description="ok, any, or errno names such as ECONNREFUSED")
    timeout: Duration = 3.0
    data: str | None = None
    len: int | None = Field(None, ge=0)
    max: int | None = Field(None, ge=1)
    how: Literal["wr", "rd", "rdwr"] | None = None
    state: State | list[State] | None = Field(None, description="expected state(s) for op: state")
    eof: bool | None = Field(None, description="for recv: whether end-of-file is expected")
    expect_len: int | None = Field(None, ge=0, description="for recv: exact byte count expected")
    expect_data: str | None = Field(None, description="for recv: the exact bytes expected, as text")
    backlog: int | None = Field(None, ge=0)
    rcvbuf: int | None = Field(None, ge=1)
    port: Expression | None = Field(None, description="for listen: bind this port (e.g. t_port) instead of a fresh one")
    fastopen: bool | int | None = Field(
        None, description="listen: TCP Fast Open queue length (true: 16); connect: true sends data/len with the SYN"
    )
    wildcard: bool = Field(False, description="listen or connect without a local address: the stack chooses it")
    user_timeout: Duration | None = Field(None, description="for connect: R2, the time after which it gives up")
    to_addr: Literal["tester", "broadcast", "multicast"] = Field("tester", description="for connect: the peer")
    service: Literal["echo"] | None = Field(
        None, description="for listen: use the target's echo service (targets.yaml ports.echo; needs svc.echo)"
    )

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        return {"op": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _await_needs_name(self) -> UtSpec:
        if self.op == "await" and not self.as_:
            raise ValueError("await needs 'as': the name given to the nowait call")
        if self.fastopen is not None and self.op not in ("listen", "connect"):
            raise ValueError("fastopen applies to listen (queue length) and connect (data in the SYN)")
        if self.op == "connect" and self.fastopen and self.data is None and self.len is None:
            raise ValueError("a fastopen connect sends data with its SYN: give data or len")
        if self.port is not None and self.op != "listen":
            raise ValueError("port applies to listen")
        if self.wildcard and self.op not in ("listen", "connect"):
            raise ValueError("wildcard applies to listen and connect")
        if (self.user_timeout is not None or self.to_addr != "tester") and self.op != "connect":
            raise ValueError("user_timeout and to_addr apply to connect")
        return self


class WaitSpec(Strict):
    """Wait ``for`` a duration, or ``until`` the case clock (``time_us``: microseconds since the case began)
    reaches a value such as ``t_tw + timer_time_wait_low_us``, so a probe comes at a time measured from a
    segment the target sent (a declared timer's window)."""

    for_: Duration | None = Field(None, alias="for")
    until: Expression | None = Field(None, description="the case clock to wait for, in microseconds (time_us)")
    reason: str = Field(description="why the case waits: every wait has a reason")

    @model_validator(mode="after")
    def _one_of(self) -> WaitSpec:
        if (self.for_ is None) == (self.until is None):
            raise ValueError("a wait has either `for` (a duration) or `until` (a time_us expression)")
        return self

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, str | int | float):
            raise ValueError("write wait: {for: 200ms, reason: ...}: every wait has a reason")
        return value


class BindSpec(Strict):
    values: dict[str, Expression]

    @model_validator(mode="before")
    @classmethod
    def _wrap(cls, value: Any) -> Any:
        return {"values": value} if isinstance(value, dict) and "values" not in value else value


class RestartSpec(Strict):
    """Restart the target's TCP stack (a new namespace or a relaunched stack): what a reboot does to it.

    Every connection and socket of the case is gone afterwards; the names the case bound stay.
    """

    reason: str = Field(description="why the case restarts the target")


class CheckSpec(Strict):
    """An assertion over bound values, e.g. a measured interval: FAIL when ``value`` is not ``in``."""

    value: Expression
    in_: Match = Field(alias="in", description="N, expr or low..high")
    reason: str = Field(description="what the check establishes, for the report")
    record: str | None = Field(None, pattern=r"^[a-z_][a-z0-9_]*$", description="also report the value under this name")


class IsnSampleSpec(Strict):
    """Open ``count`` connections to the listener (SYN, SYN-ACK, RST) and analyse the target's ISNs.

    Binds isn_count, isn_gcd, isn_isr, isn_sp, isn_repeats and isn_increases (conformance/engine/isn.py).
    """

    count: int = Field(100, ge=3, le=5000)
    spacing: Duration = Field(0.01, description="pause between connections (Nmap spaces its probes too)")
    same_port: bool = Field(False, description="reuse one tester port: the same 4-tuple every time (clock test)")
    timeout: Duration = 1.0


class SynFloodSpec(Strict):
    """SYNs to t_port from spoofed tester-owned sources; needs the target's opt-in (capability flood).

    Binds flood_sent, flood_rate (packets per second achieved), flood_synacks (SYN-ACKs seen going to the
    spoofed sources; a lower bound when the capture lost frames) and flood_capture_drops.
    """

    count: int = Field(ge=1, le=1_000_000)
    rate: int = Field(50_000, ge=1, le=1_000_000, description="packets per second, capped by the target entry")
    sources: int = Field(200, ge=1, le=65_000, description="distinct spoofed source addresses")
    settle: Duration = Field(0.2, description="how long to count SYN-ACKs after the last SYN")


STEP_MODELS: dict[str, type[BaseModel]] = {
    "send": SendSpec,
    "expect": ExpectSpec,
    "expect_none": ExpectNoneSpec,
    "expect_count": ExpectCountSpec,
    "expect_one_of": Alternative,  # a list of these
    "ut": UtSpec,
    "wait": WaitSpec,
    "bind": BindSpec,
    "check": CheckSpec,
    "isn_sample": IsnSampleSpec,
    "syn_flood": SynFloodSpec,
    "restart": RestartSpec,
}

# A step that stands for a fragment's steps: ``use: passive-open`` or ``use: {fragment: passive-open, ...}``.
USE_STEP = "use"
STEP_REMARKS = ("note", "precondition")  # keys a step may carry beside its one action
PRECONDITION_KINDS = ("expect", "check")  # steps whose failure can mean "the case's situation was not reached"

CASE_ID = r"^[A-Z][A-Z0-9]*(-[A-Z0-9]+)*$"


class CellSpec(Strict):
    """Where a generated case sits in the state x event matrix (testcases/cells/, conformance/oracle/cells.py)."""

    state: str
    segment: str
    seq: str
    ack: str
    covers: list[str] = Field(min_length=1, description="the ids of every cell this case stands for (merged cells)")


class CaseMeta(Strict):
    """Metadata of a case file; ``steps`` is validated step by step by the loader."""

    id: str = Field(pattern=CASE_ID)
    title: str = Field(min_length=3)
    refs: list[Annotated[str, Field(pattern=REF_PATTERN)]] = Field(min_length=1)
    requirement: str = Field(min_length=10, description="the requirement in your own words, with its ID")
    level: Level
    requires: list[Capability] = []
    tags: list[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")]] = []
    families: list[Family] = Field(["ipv4", "ipv6"], min_length=1)
    timeout: Duration = 30.0
    alone: str | None = Field(
        None,
        min_length=10,
        description="why the case must run with no other case in flight: it restarts the stack, floods it, samples "
        "its ISNs or measures something other connections would disturb",
    )
    cell: CellSpec | None = Field(None, description="generated cases only: the matrix cell (do not write by hand)")
    steps: list[Any] = Field(min_length=1)

    @field_validator("families")
    @classmethod
    def _unique_families(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("each family at most once")
        return value
