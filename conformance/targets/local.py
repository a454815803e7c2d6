"""The embedded default target: the Linux kernel of this host in a private network namespace.

One namespace per pytest worker holds a TUN device ``tk0`` with the target's addresses; the tester's
addresses are routed into the TUN and owned by no kernel. Per-namespace sysctls and an nftables ruleset
from targets.yaml describe variants of the kernel. The upper-tester agent runs inside the namespace.
"""

from __future__ import annotations

import ipaddress
import sys
from pathlib import Path
from typing import IO

from ..upper_tester import AgentClient
from ..wire.impaired import impaired
from ..wire.link import MULTICAST, Link
from ..wire.tun import TunLink
from . import netns
from .config import TargetConfig
from .session import TargetBase

TUN_NAME = "tk0"
AGENT_PATH = Path(__file__).resolve().parent.parent / "agent.py"


class LocalTarget(TargetBase):
    """Creates, owns and removes one namespace with its link and agent."""

    def __init__(self, config: TargetConfig, worker: str = "main", log_dir: Path | None = None) -> None:
        self.config = config
        self.ns = netns.namespace_name(worker)
        self.link: Link | None = None
        self.agent: AgentClient | None = None
        self.log_path = log_dir / f"agent-{worker}.log" if log_dir else None
        self._log: IO[bytes] | None = None

    def start(self) -> None:
        """Bring the target up; on any failure, remove what was created and raise NetnsError."""
        netns.check_prerequisites()
        netns.reap_leftovers()
        netns.create(self.ns)
        try:
            tun = netns.call_in_netns(self.ns, lambda: TunLink.open(TUN_NAME))
            self.link = impaired(tun, self.config.impair)
            v4 = self.config.ipv4
            broadcast = ipaddress.ip_network(f"{v4.target}/{v4.prefix}", strict=False).broadcast_address
            # The target's addresses, its subnet broadcast and all-nodes multicast: all inside the namespace.
            self.link.allow(v4.target, self.config.ipv6.target, str(broadcast), *MULTICAST.values())
            self._configure()
            if self.log_path is not None:
                self.log_path.parent.mkdir(parents=True, exist_ok=True)
                self._log = self.log_path.open("ab")
            self.agent = AgentClient.spawn(self._agent_argv(), stderr=self._log)
        except BaseException:
            self.stop()
            raise

    def ensure_agent(self) -> None:
        """Start a new upper tester if the previous one died (a crash must not sink the rest of the run)."""
        if self.agent is not None and self.agent.alive:
            return
        if self.agent is not None:
            self.agent.close()
        self.agent = AgentClient.spawn(self._agent_argv(), stderr=self._log)

    def _configure(self) -> None:
        v4, v6 = self.config.ipv4, self.config.ipv6
        commands = [
            "link set lo up",
            f"link set {TUN_NAME} up",
            f"addr add {v4.target}/{v4.prefix} dev {TUN_NAME}",
            f"addr add {v6.target}/{v6.prefix} dev {TUN_NAME} nodad",
        ]
        netns.run(["ip", "-n", self.ns, "-batch", "-"], input_text="\n".join(commands) + "\n")
        if self.config.sysctls:
            settings = [f"{k}={v}" for k, v in self.config.sysctls.items()]
            netns.run(["ip", "netns", "exec", self.ns, "sysctl", "-q", "-w", *settings])
        if self.config.nft.strip():
            netns.run(["ip", "netns", "exec", self.ns, "nft", "-f", "-"], input_text=self.config.nft)

    def _agent_argv(self) -> list[str]:
        allowed = [self.config.ipv4.tester, self.config.ipv6.tester]
        # Invalid peers the stack itself must refuse (RFC 9293 MUST-46); the namespace keeps any stray SYN in.
        v4 = self.config.ipv4
        allowed += [str(ipaddress.ip_network(f"{v4.target}/{v4.prefix}", strict=False).broadcast_address)]
        allowed += list(MULTICAST.values())
        argv = ["ip", "netns", "exec", self.ns, sys.executable, "-u", str(AGENT_PATH), "--stdio"]
        for addr in allowed:
            argv += ["--allow-connect", addr]
        return argv

    def stop(self) -> None:
        """Remove everything this target created; safe to call twice and after a partial start."""
        if self.agent is not None:
            self.agent.close()
            self.agent = None
        if self.link is not None:
            self.link.close()
            self.link = None
        if self._log is not None:
            self._log.close()
            self._log = None
        netns.kill_all(self.ns)
        netns.delete(self.ns)
