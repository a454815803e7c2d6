"""targets.yaml: what each target is (kind, description), how to reach it (PIXIT: addresses) and what it
claims to support (ICS: capabilities). Validated with one-line file:line:col errors."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from ..model.case import Strict
from ..model.loader import CaseFormatError, _Builder, load_yaml_with_positions
from .impair import parse_impairment

SUPPORTED_KINDS = ("local",)
UT_OPS = ("listen", "accept", "connect", "send", "recv", "shutdown", "close", "abort", "state")


# Features of the Linux kernel that a sysctl switches off (on by default).
LOCAL_TCP_FEATURES = {
    "tcp.wscale": "net.ipv4.tcp_window_scaling",
    "tcp.timestamps": "net.ipv4.tcp_timestamps",
    "tcp.sack": "net.ipv4.tcp_sack",
}


class TargetConfigError(ValueError):
    """One line naming the file, the place and the problem."""


class Addresses(Strict):
    target: str
    tester: str
    prefix: int = Field(ge=8, le=128)

    @model_validator(mode="after")
    def _valid(self) -> Addresses:
        net = ipaddress.ip_network(f"{self.target}/{self.prefix}", strict=False)
        if ipaddress.ip_address(self.tester) not in net:
            raise ValueError(f"tester address {self.tester} is not on the target's subnet {net}")
        if self.tester == self.target:
            raise ValueError("tester and target need different addresses")
        return self

    @field_validator("target", "tester")
    @classmethod
    def _ip(cls, value: str) -> str:
        ipaddress.ip_address(value)
        return value


class TargetConfig(Strict):
    name: str = ""
    kind: str
    description: str = ""
    sysctls: dict[str, str | int] = {}
    nft: str = Field("", description="nftables ruleset loaded inside the target namespace")
    ipv4: Addresses = Addresses(target="198.18.0.1", tester="198.18.0.2", prefix=24)
    ipv6: Addresses = Addresses(target="2001:2::1", tester="2001:2::2", prefix=64)
    families: list[Literal["ipv4", "ipv6"]] = ["ipv4", "ipv6"]
    capabilities: list[str] | None = Field(
        None, description="what the implementation claims (ICS); default for local: every ut.* operation"
    )
    allow_flood: bool = Field(False, description="opt in to flood and resource-exhaustion cases")
    flood_rate_cap: int = Field(50_000, ge=1, le=1_000_000, description="packets per second a flood may send")
    expectations: str | None = Field(
        None, description="file of reviewed known deviations (relative to the targets file)"
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

    @field_validator("sysctls")
    @classmethod
    def _sysctls(cls, value: dict[str, str | int]) -> dict[str, str | int]:
        for key in value:
            if not re.fullmatch(r"net\.[A-Za-z0-9_.\-]+", key):
                raise ValueError(f"sysctl '{key}': only per-namespace net.* keys can be set for a target")
        return value

    def address(self, family: str) -> Addresses:
        return self.ipv4 if family == "ipv4" else self.ipv6

    def declared_capabilities(self) -> set[str]:
        """The ICS: declared explicitly, or for the local kind derived from its sysctls."""
        if self.capabilities is not None:
            return set(self.capabilities) | ({"flood"} if self.allow_flood else set())
        caps = {f"ut.{op}" for op in UT_OPS} | {"ut"}
        for capability, sysctl in LOCAL_TCP_FEATURES.items():
            if str(self.sysctls.get(sysctl, "1")) != "0":
                caps.add(capability)
        if self.allow_flood:
            caps.add("flood")
        return caps


def load_targets(path: Path) -> dict[str, TargetConfig]:
    """All targets of a targets.yaml, by name."""
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TargetConfigError(f"{source}: targets file not found (use --targets-file PATH)") from None
    except OSError as exc:
        raise TargetConfigError(f"{source}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise TargetConfigError(_not_utf8(source, path.read_bytes(), exc)) from None
    try:
        data, positions = load_yaml_with_positions(text, source)
        builder = _Builder(source, positions)
        if not isinstance(data, dict) or not isinstance(data.get("targets"), dict):
            raise builder.error((), "a targets file is a mapping with a 'targets' mapping of name: entry")
        out = {}
        for name, entry in data["targets"].items():
            if not re.fullmatch(r"[a-z0-9][a-z0-9_.-]*", name):
                raise builder.error(("targets", name), f"bad target name {name!r} (lower-case, digits, - _ .)")
            if not isinstance(entry, dict):
                raise builder.error(("targets", name), "a target entry is a mapping (kind, description, ...)")
            out[name] = builder.validate(TargetConfig, {**entry, "name": name}, ("targets", name))
        return out
    except CaseFormatError as exc:
        raise TargetConfigError(str(exc)) from None
    except RecursionError:
        raise TargetConfigError(f"{source}:1:1: (top): YAML nested too deeply") from None


def select_target(path: Path, name: str) -> TargetConfig:
    targets = load_targets(path)
    if name not in targets:
        known = ", ".join(sorted(targets)) or "none"
        raise TargetConfigError(f"{path}: no target named '{name}' (defined: {known})")
    return targets[name]


def _not_utf8(source: str, raw: bytes, exc: UnicodeDecodeError) -> str:
    line = raw[: exc.start].count(b"\n") + 1
    col = exc.start - (raw[: exc.start].rfind(b"\n") + 1) + 1
    return f"{source}:{line}:{col}: (top): not UTF-8: byte 0x{raw[exc.start]:02x}"


class Deviation(Strict):
    """A reviewed, known deviation: the case keeps its verdict, the run is not failed by it."""

    verdict: Literal["FAIL", "ERROR", "INCONCLUSIVE"]
    reason: str = Field(min_length=10)


def load_expectations(targets_file: Path, entry: TargetConfig) -> dict[str, Deviation]:
    """The target's known deviations by case id (``ID`` or ``ID[family]``); empty when none are declared."""
    if not entry.expectations:
        return {}
    path = (targets_file.parent / entry.expectations).resolve()
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise TargetConfigError(_not_utf8(source, path.read_bytes(), exc)) from None
    except OSError as exc:
        raise TargetConfigError(
            f"{targets_file}: targets.{entry.name}.expectations: cannot read {source}: {exc.strerror}"
        ) from None
    try:
        data, positions = load_yaml_with_positions(text, source)
        builder = _Builder(source, positions)
        if not isinstance(data, dict) or not isinstance(data.get("deviations"), dict):
            raise builder.error((), "an expectations file is a mapping with a 'deviations' mapping of case id: entry")
        out = {}
        for case_id, item in data["deviations"].items():
            if not re.fullmatch(r"[A-Z][A-Z0-9-]*(\[ipv[46]\])?", case_id):
                raise builder.error(
                    ("deviations", case_id), f"'{case_id}' is not a case id (ID or ID[ipv4])", at_key=True
                )
            out[case_id] = builder.validate(Deviation, item, ("deviations", case_id))
        return out
    except CaseFormatError as exc:
        raise TargetConfigError(str(exc)) from None
