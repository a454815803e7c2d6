"""targets.yaml: what each target is (kind, description), how to reach it (PIXIT: addresses) and what it
claims to support (ICS: capabilities). Validated with one-line file:line:col errors."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from ..model.case import Strict
from ..model.values import Capability, Duration
from ..vocabulary import UT_FEATURES, UT_OPS
from ..wire.ethernet import parse_mac
from ..wire.impairment import parse_impairment
from ..yamlfile import Document, DocumentError, read_yaml_file

SUPPORTED_KINDS = ("local", "remote", "launched", "reference")
LOCAL_CONCURRENCY = 64  # the local kernel serves many connections at once; the tester keeps this many in flight
UT_OPS_LITERAL = Literal[UT_OPS]  # type: ignore[valid-type]


# Features of the Linux kernel that a sysctl switches off (on by default).
LOCAL_TCP_FEATURES = {
    "tcp.wscale": "net.ipv4.tcp_window_scaling",
    "tcp.timestamps": "net.ipv4.tcp_timestamps",
    "tcp.sack": "net.ipv4.tcp_sack",
}
# Features a bit of a sysctl switches on: capability -> (sysctl, the kernel's default, bit mask).
LOCAL_TCP_BIT_FEATURES = {
    "tcp.fastopen": ("net.ipv4.tcp_fastopen", 1, 0x2),  # server side of RFC 7413
    "tcp.fastopen_client": ("net.ipv4.tcp_fastopen", 1, 0x1),
    "tcp.no_rtt_cache": ("net.ipv4.tcp_no_metrics_save", 0, 0x1),  # no RTT kept per destination (RFC 9040)
}


class TargetConfigError(DocumentError):
    """One line naming the file, the place and the problem."""


class Addresses(Strict):
    target: str
    tester: str
    prefix: int = Field(ge=8, le=128)

    @model_validator(mode="after")
    def _valid(self) -> Addresses:
        if self.tester == self.target:
            raise ValueError("tester and target need different addresses")
        return self

    @field_validator("target", "tester")
    @classmethod
    def _ip(cls, value: str) -> str:
        ipaddress.ip_address(value)
        return value


def _mac(value: str | None) -> str | None:
    if value is not None:
        parse_mac(value)
    return value


class Gateway(Strict):
    """The router in front of a target that is not on the tester's link: its MAC is resolved instead."""

    ipv4: str | None = None
    ipv6: str | None = None

    @field_validator("ipv4", "ipv6")
    @classmethod
    def _ip(cls, value: str | None) -> str | None:
        if value is not None:
            ipaddress.ip_address(value)
        return value


class LinkConfig(Strict):
    """How the lower tester reaches the target's TCP stack (PIXIT)."""

    type: Literal["tun", "afpacket", "tap", "stream"] = Field(
        description="tun: local kind only; afpacket: a named Ethernet interface; tap: a tap the suite creates "
        "for a launched stack; stream: QEMU/passt socket framing at `address`"
    )
    interface: str | None = Field(None, description="afpacket: the interface; tap: the tap's name (default ltap0)")
    netns: str | None = Field(None, description="the network namespace holding the interface (default: the suite's)")
    address: str | None = Field(None, description="stream: unix:PATH or HOST:PORT")
    tester_mac: str = "02:00:00:00:00:02"
    target_mac: str | None = Field(None, description="the target's MAC; resolved with ARP / ND when absent")
    gateway: Gateway | None = None
    resolve_timeout: float = Field(3.0, gt=0, le=60)

    @field_validator("tester_mac", "target_mac")
    @classmethod
    def _mac_ok(cls, value: str | None) -> str | None:
        return _mac(value)

    @model_validator(mode="after")
    def _complete(self) -> LinkConfig:
        if self.type == "afpacket" and not self.interface:
            raise ValueError("an afpacket link needs `interface`")
        if self.type == "stream" and not self.address:
            raise ValueError("a stream link needs `address` (unix:PATH or HOST:PORT)")
        if self.interface is not None and not re.fullmatch(r"[A-Za-z0-9_.{}-]{1,32}", self.interface):
            raise ValueError(f"bad interface name {self.interface!r}")
        return self


class AgentConfig(Strict):
    """Where the upper tester is: the launched program's stdin/stdout, or a management address."""

    transport: Literal["stdio", "tcp", "unix"] = "tcp"
    address: str | None = Field(None, description="tcp: HOST:PORT ([v6]:PORT); unix: a socket path")
    netns: str | None = Field(None, description="the namespace from which to connect (default: the suite's)")
    token: str | None = Field(None, description="the agent's token (prefer token_env)")
    token_env: str | None = Field(None, description="name of an environment variable holding the token")
    timeout: float = Field(10.0, gt=0, le=300, description="seconds to wait for the agent's hello")
    listen_any: bool = Field(
        False, description="listen on the wildcard address: the target address is a translation (passt, slirp)"
    )
    without: list[Literal[UT_OPS_LITERAL]] = Field(  # type: ignore[valid-type]
        [], description="agent operations the cases must not use here (a NAT-ing proxy cannot reflect `connect`)"
    )

    @model_validator(mode="after")
    def _complete(self) -> AgentConfig:
        if self.transport != "stdio" and not self.address:
            raise ValueError(f"a {self.transport} agent needs `address`")
        if self.transport == "tcp" and self.address and ":" not in self.address:
            raise ValueError(f"agent address {self.address!r} is not HOST:PORT")
        return self


class Ports(Strict):
    """Ports on the target for cases that run without an upper tester (agentless) or need closed ports."""

    open: int | None = Field(None, ge=1, le=65535, description="a port where a service listens (agentless listen)")
    echo: int | None = Field(None, ge=1, le=65535, description="a port with an echo service (RFC 862): svc.echo")
    closed: str = Field("1024-9999", description="a range of ports nothing listens on, e.g. 20000-29999")

    @field_validator("closed")
    @classmethod
    def _range(cls, value: str) -> str:
        m = re.fullmatch(r"(\d+)-(\d+)", value)
        if not m or not 1 <= int(m.group(1)) <= int(m.group(2)) <= 65535:
            raise ValueError(f"closed ports {value!r}: expected a range LOW-HIGH within 1-65535")
        return value

    def closed_range(self) -> tuple[int, int]:
        low, high = self.closed.split("-")
        return int(low), int(high)


TIMER_LIMIT_S = 600.0  # the TMR-DECLARED-* cases' time limits are sized for declared timers up to this
SYN_RTO_LIMIT_S = 60.0  # TMR-DECLARED-SYN-RTO-01 waits 90 s for the first retransmission


class TimersConfig(Strict):
    """Timer values the implementation declares (PIXIT), each an observable quantity the TMR-DECLARED-* cases
    measure and compare with the declaration. The RFCs leave these values to the implementation (within their
    bounds, which other cases grade), so only the vendor can say what the right value is."""

    syn_rto: Duration | None = Field(
        None, description="an active open's first SYN retransmission, measured from the first SYN"
    )
    syn_retransmissions: int | None = Field(
        None, ge=0, le=64, description="how many times an unanswered SYN is retransmitted before the open is abandoned"
    )
    syn_giveup: Duration | None = Field(
        None, description="from the first SYN until an unanswered active open is abandoned"
    )
    synack_retransmissions: int | None = Field(
        None, ge=0, le=64, description="how many times a SYN-ACK is retransmitted while the third ACK is missing"
    )
    synack_giveup: Duration | None = Field(
        None, description="from the first SYN-ACK until an unanswered half-open connection is dropped"
    )
    time_wait: Duration | None = Field(None, description="how long a connection stays in TIME-WAIT (2MSL)")
    fin_wait_2: Duration | None = Field(
        None, description="how long an orphaned connection (its application closed) waits in FIN-WAIT-2 for a FIN"
    )
    tolerance: float = Field(0.1, ge=0, le=0.5, description="relative tolerance of a measured duration (0.1: 10%)")
    tolerance_min: Duration = Field(
        0.2, description="the smallest tolerance of a measured duration, for short timers and coarse clocks"
    )

    @field_validator("syn_rto", "syn_giveup", "synack_giveup", "time_wait", "fin_wait_2", "tolerance_min")
    @classmethod
    def _bounded(cls, value: float | None) -> float | None:
        if value is not None and value > TIMER_LIMIT_S:
            raise ValueError(f"{value:g} s is longer than the {TIMER_LIMIT_S:g} s the timer cases can wait")
        if value is not None and value <= 0:
            raise ValueError("a timer must be longer than 0 s")
        return value

    @field_validator("syn_rto")
    @classmethod
    def _rto(cls, value: float | None) -> float | None:
        if value is not None and value > SYN_RTO_LIMIT_S:
            raise ValueError(f"an initial RTO of {value:g} s is longer than the {SYN_RTO_LIMIT_S:g} s the case waits")
        return value

    def declared(self) -> dict[str, float | int]:
        """The declared timers by name (durations in seconds, counts as integers)."""
        return {
            name: value
            for name, value in self.model_dump().items()
            if value is not None and name not in ("tolerance", "tolerance_min")
        }

    def capabilities(self) -> set[str]:
        """``timers.NAME`` for each declared timer: what a case ``requires`` to use ``timer_NAME_*``."""
        return {f"timers.{name}" for name in self.declared()}

    def bindings(self) -> dict[str, int]:
        """Names the cases' expressions see: ``timer_NAME`` for counts; for durations ``timer_NAME_us`` and the
        tolerance window ``timer_NAME_low_us`` .. ``timer_NAME_high_us``, in microseconds."""
        out: dict[str, int] = {}
        for name, value in self.declared().items():
            if isinstance(value, int):
                out[f"timer_{name}"] = value
                continue
            slack = max(value * self.tolerance, self.tolerance_min)
            out[f"timer_{name}_us"] = round(value * 1e6)
            out[f"timer_{name}_low_us"] = max(0, round((value - slack) * 1e6))
            out[f"timer_{name}_high_us"] = round((value + slack) * 1e6)
        return out


class TargetConfig(Strict):
    name: str = ""
    kind: str
    description: str = ""
    sysctls: dict[str, str | int] = {}
    nft: str = Field("", description="nftables ruleset loaded inside the target namespace")
    ipv4: Addresses = Addresses(target="198.18.0.1", tester="198.18.0.2", prefix=24)
    ipv6: Addresses = Addresses(target="2001:2::1", tester="2001:2::2", prefix=64)
    families: list[Literal["ipv4", "ipv6"]] = ["ipv4", "ipv6"]
    capabilities: list[Capability] | None = Field(
        None, description="what the implementation claims (ICS); default for local: every ut.* operation"
    )
    allow_flood: bool = Field(False, description="opt in to flood and resource-exhaustion cases")
    flood_rate_cap: int = Field(50_000, ge=1, le=1_000_000, description="packets per second a flood may send")
    expectations: str | None = Field(
        None, description="file of reviewed known deviations (relative to the targets file)"
    )
    link: LinkConfig | None = Field(None, description="remote and launched kinds: how the tester reaches the stack")
    agent: AgentConfig | None = Field(None, description="the upper tester; absent: agentless (no socket actions)")
    ports: Ports = Ports()
    launch: list[str] | None = Field(None, description="launched kind: the command (argv) that starts the stack")
    teardown: list[str] | None = Field(None, description="launched kind: a command run after the stack is stopped")
    needs: list[str] = Field([], description="launched kind: files that must exist (built by `build`)")
    build: str | None = Field(None, description="launched kind: the command that installs the stack (for messages)")
    ready_timeout: float = Field(30.0, gt=0, le=600, description="seconds for a launched stack to become ready")
    timers: TimersConfig = Field(
        TimersConfig(), description="timer values the implementation declares (PIXIT), checked by TMR-DECLARED-*"
    )
    concurrency: int | None = Field(
        None,
        ge=1,
        le=1024,
        description="how many cases may be in flight at once against this target (default: 64 for the local kind, "
        "1 for a remote or launched stack until its entry says what it bears)",
    )
    behaves_as: Literal["rfc9293", "rfc5961", "rfc793", "rfc1337"] = Field(
        "rfc9293", description="reference kind: where the model allows several answers, the profile it answers by"
    )
    cannot_judge: dict[str, str] = Field(
        {}, description="reference kind: case ids or tags the model cannot judge, each with why (they are NOT-RUN)"
    )
    # --- impaired links (docs/robustness.md) ---
    impair: str = Field("", description="netem-style link impairment, e.g. 'loss 1%' (overridden by --impair)")

    @field_validator("impair")
    @classmethod
    def _impair(cls, value: str) -> str:
        parse_impairment(value)  # raises ImpairmentError (a ValueError) with one line
        return value

    @field_validator("kind")
    @classmethod
    def _kind(cls, value: str) -> str:
        if value not in SUPPORTED_KINDS:
            raise ValueError(f"unknown kind '{value}' (supported: {', '.join(SUPPORTED_KINDS)})")
        return value

    @model_validator(mode="after")
    def _kind_fields(self) -> TargetConfig:
        for family in self.families:
            addresses = self.address(family)
            routed = self.link is not None and getattr(self.link.gateway, family, None) is not None
            net = ipaddress.ip_network(f"{addresses.target}/{addresses.prefix}", strict=False)
            if not routed and ipaddress.ip_address(addresses.tester) not in net:
                raise ValueError(
                    f"{family}: tester address {addresses.tester} is not on the target's subnet {net} "
                    "(a target behind a router needs link.gateway)"
                )
        if self.cannot_judge and self.kind != "reference":
            raise ValueError("`cannot_judge` is for the reference kind; a stack declares what it lacks as capabilities")
        if self.kind == "reference":
            if self.link is not None or self.agent is not None or self.launch is not None:
                raise ValueError("the reference kind is the model in process: no `link`, `agent` or `launch`")
            if self.sysctls or self.nft.strip():
                raise ValueError("sysctls and nft are for the local kind; the reference model has none")
            return self
        if self.kind == "local":
            if self.link is not None and self.link.type != "tun":
                raise ValueError("the local kind always uses its own TUN link; remove `link` or pick kind remote")
            if self.agent is not None or self.launch is not None:
                raise ValueError("the local kind starts its own agent; `agent` and `launch` are for other kinds")
            return self
        if self.link is None:
            raise ValueError(f"a {self.kind} target needs `link`")
        if self.link.type == "tun":
            raise ValueError("a tun link exists only for the local kind")
        if self.kind == "remote":
            if self.link.type == "tap" or self.launch is not None:
                raise ValueError("`launch` and tap links belong to the launched kind")
            if self.sysctls or self.nft.strip():
                raise ValueError("sysctls and nft are applied only to the local kind (a remote host is not ours)")
        if self.kind == "launched" and not self.launch:
            raise ValueError("a launched target needs `launch` (the command that starts the stack)")
        return self

    @field_validator("sysctls")
    @classmethod
    def _sysctls(cls, value: dict[str, str | int]) -> dict[str, str | int]:
        for key in value:
            if not re.fullmatch(r"net\.[A-Za-z0-9_.\-]+", key):
                raise ValueError(f"sysctl '{key}': only per-namespace net.* keys can be set for a target")
        return value

    def cannot_judge_reason(self, case_id: str, tags: Iterable[str]) -> str | None:
        """Why the reference model cannot judge this case (by its id or one of its tags), or None."""
        for key in (case_id, *tags):
            if key in self.cannot_judge:
                return f"the reference model cannot judge this case ({key}): {self.cannot_judge[key]}"
        return None

    def in_flight_limit(self) -> int:
        """The most cases in flight at once: the declared concurrency, else the kind's default."""
        if self.concurrency is not None:
            return self.concurrency
        return LOCAL_CONCURRENCY if self.kind in ("local", "reference") else 1

    def address(self, family: str) -> Addresses:
        return self.ipv4 if family == "ipv4" else self.ipv6

    def declared_capabilities(
        self, agent_ops: list[str] | None = None, agent_features: list[str] | None = None
    ) -> set[str]:
        """The ICS: declared explicitly (plus what the running agent offers), or for the local kind derived
        from its sysctls. Agentless, a declared open port stands in for ``ut.listen``. Each declared timer
        adds ``timers.NAME``."""
        caps = self._claimed(agent_ops, agent_features) | self.timers.capabilities()
        if self.kind in ("local", "launched"):
            caps |= {"net.broadcast", "target.restart"}  # the suite's own link; a stack it can start again
        if self.kind == "reference":
            caps |= {"net.broadcast"}  # nothing leaves the process
        if self.allow_flood:
            caps.add("flood")
        return caps

    def _claimed(self, agent_ops: list[str] | None, agent_features: list[str] | None) -> set[str]:
        """What the entry and the running agent claim, or for the local kind what its sysctls leave on."""
        if self.kind != "local":
            caps = set(self.capabilities or [])
            if agent_ops is not None:
                withheld = set(self.agent.without) if self.agent is not None else set()
                caps |= {"ut"} | {f"ut.{op}" for op in agent_ops if op in UT_OPS and op not in withheld}
                caps |= {f"ut.{feature}" for feature in agent_features or [] if feature in UT_FEATURES}
            elif self.ports.open is not None:
                caps.add("ut.listen")
            if self.ports.echo is not None:
                caps.add("svc.echo")
            return caps
        if self.capabilities is not None:
            return set(self.capabilities)
        caps = {f"ut.{op}" for op in (*UT_OPS, *UT_FEATURES)} | {"ut"}  # the reference agent
        for capability, sysctl in LOCAL_TCP_FEATURES.items():
            if str(self.sysctls.get(sysctl, "1")) != "0":
                caps.add(capability)
        for capability, (sysctl, default, mask) in LOCAL_TCP_BIT_FEATURES.items():
            if int(self.sysctls.get(sysctl, default)) & mask:
                caps.add(capability)
        return caps


def load_targets(path: Path) -> dict[str, TargetConfig]:
    """All targets of a targets.yaml, by name."""
    try:
        document = read_yaml_file(path, error=TargetConfigError)
    except TargetConfigError as exc:
        if str(exc).endswith(": file not found"):
            raise TargetConfigError(f"{path}: targets file not found (use --targets-file PATH)") from None
        raise
    try:
        return _targets(document)
    except RecursionError:
        raise TargetConfigError(f"{document.source}:1:1: (top): YAML nested too deeply") from None


def _targets(document: Document) -> dict[str, TargetConfig]:
    located = document.located(TargetConfigError)
    data = document.data
    if not isinstance(data, dict) or not isinstance(data.get("targets"), dict):
        raise located.at((), "a targets file is a mapping with a 'targets' mapping of name: entry")
    out = {}
    for name, entry in data["targets"].items():
        if not re.fullmatch(r"[a-z0-9][a-z0-9_.-]*", name):
            raise located.at(("targets", name), f"bad target name {name!r} (lower-case, digits, - _ .)")
        if not isinstance(entry, dict):
            raise located.at(("targets", name), "a target entry is a mapping (kind, description, ...)")
        out[name] = located.validate(TargetConfig, {**entry, "name": name}, ("targets", name))
    return out


def select_target(path: Path, name: str) -> TargetConfig:
    targets = load_targets(path)
    if name not in targets:
        known = ", ".join(sorted(targets)) or "none"
        raise TargetConfigError(f"{path}: no target named '{name}' (defined: {known})")
    return targets[name]


CASE_KEY = r"^[A-Z][A-Z0-9-]*(\[ipv[46]\])?$"


class Deviation(Strict):
    """A reviewed, known deviation: the case keeps its verdict, the run is not failed by it."""

    verdict: Literal["FAIL", "ERROR", "INCONCLUSIVE"]
    reason: str = Field(min_length=10)


class DeviationGroup(Deviation):
    """One reviewed cause shared by several cases (e.g. cells of the state x event matrix), listed by id."""

    cases: list[Annotated[str, Field(pattern=CASE_KEY)]] = Field(min_length=1)


def load_expectations(targets_file: Path, entry: TargetConfig) -> dict[str, Deviation]:
    """The target's known deviations by case id (``ID`` or ``ID[family]``); empty when none are declared."""
    if not entry.expectations:
        return {}
    path = (targets_file.parent / entry.expectations).resolve()
    if not path.is_file():
        raise TargetConfigError(f"{targets_file}: targets.{entry.name}.expectations: cannot read {path}: not a file")
    document = read_yaml_file(path, error=TargetConfigError)
    located = document.located(TargetConfigError)
    data = document.data
    if not isinstance(data, dict) or not isinstance(data.get("deviations"), dict):
        raise located.at((), "an expectations file is a mapping with a 'deviations' mapping of case id: entry")
    out = {}
    for key, item in data["deviations"].items():
        if isinstance(item, dict) and "cases" in item:  # a group: a name for one cause, and its cases
            if not re.fullmatch(r"[a-z][a-z0-9-]*", key):
                raise located.at(("deviations", key), f"'{key}': a group of cases is named in lower case", at_key=True)
            group = located.validate(DeviationGroup, item, ("deviations", key))
            for case_id in group.cases:
                if case_id in out:
                    raise located.at(("deviations", key), f"{case_id} is listed twice", at_key=True)
                out[case_id] = Deviation(verdict=group.verdict, reason=group.reason)
            continue
        if not re.fullmatch(CASE_KEY, key):
            raise located.at(("deviations", key), f"'{key}' is not a case id (ID or ID[ipv4])", at_key=True)
        if key in out:
            raise located.at(("deviations", key), f"{key} is listed twice", at_key=True)
        out[key] = located.validate(Deviation, item, ("deviations", key))
    return out
