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

SUPPORTED_KINDS = ("local",)
UT_OPS = ("listen", "accept", "connect", "send", "recv", "shutdown", "close", "abort", "state")


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
        if self.capabilities is not None:
            return set(self.capabilities)
        return {f"ut.{op}" for op in UT_OPS} | {"ut"}


def load_targets(path: Path) -> dict[str, TargetConfig]:
    """All targets of a targets.yaml, by name."""
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TargetConfigError(f"{source}: targets file not found (use --targets-file PATH)") from None
    except OSError as exc:
        raise TargetConfigError(f"{source}: cannot read: {exc.strerror}") from None
    try:
        data, positions = load_yaml_with_positions(text, source)
        builder = _Builder(source, positions)
        if not isinstance(data, dict) or not isinstance(data.get("targets"), dict):
            raise builder.error((), "a targets file is a mapping with a 'targets' mapping of name: entry")
        out = {}
        for name, entry in data["targets"].items():
            if not re.fullmatch(r"[a-z0-9][a-z0-9_.-]*", name):
                raise builder.error(("targets", name), f"bad target name '{name}' (lower-case, digits, - _ .)")
            if not isinstance(entry, dict):
                raise builder.error(("targets", name), "a target entry is a mapping (kind, description, ...)")
            out[name] = builder.validate(TargetConfig, {**entry, "name": name}, ("targets", name))
        return out
    except CaseFormatError as exc:
        raise TargetConfigError(str(exc)) from None


def select_target(path: Path, name: str) -> TargetConfig:
    targets = load_targets(path)
    if name not in targets:
        known = ", ".join(sorted(targets)) or "none"
        raise TargetConfigError(f"{path}: no target named '{name}' (defined: {known})")
    return targets[name]
