"""Bring PyTCP up on an existing tap with static addresses, without DHCP, router solicitation or address probing.

Runs under Python 3.13 in the zoo venv (pmd-pytcp 0.3.8). Why each knob:

- IPv4: an address given to ``stack.init(ip4_host=...)`` is claimed with RFC 5227 ACD (random wait, probes, quiet
  period: ~5-9 s before the stack answers ARP; the sysctls only accept whole seconds >= 1). Instead the address is
  installed through the address API before ``stack.start()``, which installs it directly; the boot task then sees an
  address and keeps IPv4 on.
- IPv6: ``icmp6.<if>.accept_dad = 0`` skips DAD for the link-local and the static address (Linux accept_dad=0);
  ``icmp6.max_rtr_solicitations = 0`` stops router solicitations. Adding the static address joins its
  solicited-node group, so neighbour solicitations from the tester are answered.
"""

from __future__ import annotations

from dataclasses import dataclass

from pmd_net_addr import Ip4IfAddr, Ip6IfAddr, MacAddress
from pmd_pytcp import stack


@dataclass(frozen=True)
class StackConfig:
    tap: str
    mac: str
    ipv4: str  # ADDR/PREFIX
    ipv6: str  # ADDR/PREFIX


def boot_sysctls(tap: str) -> dict[str, int]:
    return {
        f"icmp6.{tap}.accept_dad": 0,
        f"icmp6.{tap}.max_rtr_solicitations": 0,
    }


async def start_stack(config: StackConfig) -> None:
    """Attach to the tap, configure the addresses and start the stack on the running event loop."""
    iface = stack.initialize_interface__tap(config.tap, mac_address=MacAddress(config.mac))
    stack.init(
        **iface,
        ip4_host=None,
        ip4_dhcp=False,
        ip4_link_local=False,
        ip6_host=Ip6IfAddr(config.ipv6),
        ip6_gua_autoconfig=False,
        ip6_lla_autoconfig=True,
        sysctls=boot_sysctls(config.tap),
    )
    ifindex = stack.interfaces.keys()[0]
    stack.address.interface(ifindex).add(ifaddr=Ip4IfAddr(config.ipv4))
    await stack.start()


async def stop_stack() -> None:
    await stack.stop()
