"""A lab bench in two network namespaces, to try and test the remote kind without a second machine.

``server`` plays the vendor's box: a Linux host with its test interface ``eth0`` (198.18.0.1, 2001:2::1)
and a management interface (198.19.0.1) where the reference agent listens with a token. ``bench`` plays
the machine that runs the suite: the other end of the test link (``tcpconf-lab0``, with no address: the
tester owns 198.18.0.2 / 2001:2::2 itself) and the management link (198.19.0.2). The ``lab-server``
entry of targets.yaml describes exactly this box. Run the suite from the bench:

    python -m conformance.lab up          # prints the token to export
    TCPCONF_LAB_TOKEN=... ip netns exec tcpconf-lab-bench .venv/bin/pytest --target=lab-server
    python -m conformance.lab down
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import socket
import subprocess
import sys
import time
from dataclasses import dataclass

from .targets import netns
from .targets.local import AGENT_PATH

TEST_IF = "tcpconf-lab0"
AGENT_ADDR = ("198.19.0.1", 7070)
TOKEN_ENV = "TCPCONF_LAB_TOKEN"
DISCARD_PORT = 9  # the server's services: discard (RFC 863) reads until end of file and closes;
ECHO_PORT = 7  # echo (RFC 862) sends back what it reads, and closes after end of file


@dataclass
class Lab:
    server: str
    bench: str
    token: str

    @classmethod
    def fixed(cls) -> Lab:
        """The lab of the command line: fixed names (no pid), so the reaper of other runs leaves it alone."""
        return cls(f"{netns.TAG}-lab-server", f"{netns.TAG}-lab-bench", secrets.token_hex(12))

    @classmethod
    def private(cls, suffix: str = "lab") -> Lab:
        """A lab owned by this process: reaped automatically if the process dies."""
        return cls(netns.namespace_name(f"{suffix}-server"), netns.namespace_name(f"{suffix}-bench"),
                   secrets.token_hex(12))  # fmt: skip

    def up(self) -> None:
        netns.check_prerequisites()
        try:
            self._create()
        except BaseException:
            self.down()
            raise

    def _create(self) -> None:
        for ns in (self.server, self.bench):
            netns.run(["ip", "netns", "add", ns])
        netns.run(["ip", "link", "add", TEST_IF, "netns", self.bench, "type", "veth", "peer", "name", "eth0",
                   "netns", self.server])  # fmt: skip
        netns.run(["ip", "link", "add", "mgmt0", "netns", self.bench, "type", "veth", "peer", "name", "mgmt0",
                   "netns", self.server])  # fmt: skip
        server = [
            "link set lo up", "link set eth0 address 02:00:00:00:00:01", "link set eth0 up",
            "addr add 198.18.0.1/24 dev eth0", "addr add 2001:2::1/64 dev eth0 nodad",
            "link set mgmt0 up", "addr add 198.19.0.1/30 dev mgmt0",
        ]  # fmt: skip
        bench = ["link set lo up", f"link set {TEST_IF} up", "link set mgmt0 up", "addr add 198.19.0.2/30 dev mgmt0"]
        # The bench kernel must stay silent on the test link: no IPv6 (router solicitations, MLD, DAD).
        netns.run(["ip", "netns", "exec", self.bench, "sysctl", "-q", "-w", f"net.ipv6.conf.{TEST_IF}.disable_ipv6=1"])
        netns.run(["ip", "-n", self.server, "-batch", "-"], input_text="\n".join(server) + "\n")
        netns.run(["ip", "-n", self.bench, "-batch", "-"], input_text="\n".join(bench) + "\n")
        # Checksums must be complete on the wire: a veth otherwise hands the capture half-computed ones.
        netns.run(["ip", "netns", "exec", self.server, "ethtool", "-K", "eth0", "tx", "off", "tso", "off", "gso",
                   "off"])  # fmt: skip
        # The tester, and the test link's broadcast and all-nodes groups that the MUST-46 cases ask the box to refuse.
        peers = ["198.18.0.2", "2001:2::2", "198.18.0.255", "224.0.0.1", "ff02::1"]
        agent = [sys.executable, "-u", str(AGENT_PATH), "--listen", f"{AGENT_ADDR[0]}:{AGENT_ADDR[1]}",
                 "--token", self.token, *(arg for peer in peers for arg in ("--allow-connect", peer))]  # fmt: skip
        subprocess.Popen(["ip", "netns", "exec", self.server, *agent], stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
        service = [sys.executable, "-m", "conformance.lab", "services"]
        subprocess.Popen(["ip", "netns", "exec", self.server, *service], stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                         cwd=str(AGENT_PATH.parent.parent))  # fmt: skip
        self._wait_for_agent()

    def _wait_for_agent(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                netns.call_in_netns(self.bench, lambda: socket.create_connection(AGENT_ADDR, timeout=1).close())
                return
            time.sleep(0.05)
        raise netns.NetnsError(f"the lab's agent did not listen on {AGENT_ADDR[0]}:{AGENT_ADDR[1]} within {timeout} s")

    def down(self) -> None:
        for ns in (self.server, self.bench):
            netns.kill_all(ns)
            if os.path.exists(os.path.join(netns.NETNS_DIR, ns)):
                subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10, check=False)

    def bench_command(self, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.bench, *argv]


def run_services() -> None:
    """Discard and echo on every address of the server, each connection in a thread (never returns)."""
    import threading

    def handle(conn: socket.socket, echo: bool) -> None:
        with conn, contextlib.suppress(OSError):
            while data := conn.recv(65536):
                if echo:
                    conn.sendall(data)

    def serve(family: int, addr: str, port: int) -> None:
        with socket.socket(family, socket.SOCK_STREAM) as srv:
            srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                srv.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            srv.bind((addr, port))
            srv.listen(128)
            while True:
                conn, _ = srv.accept()
                threading.Thread(target=handle, args=(conn, port == ECHO_PORT), daemon=True).start()

    servers = [
        (f, a, p) for f, a in ((socket.AF_INET6, "::"), (socket.AF_INET, "0.0.0.0")) for p in (DISCARD_PORT, ECHO_PORT)
    ]
    for args in servers[1:]:
        threading.Thread(target=serve, args=args, daemon=True).start()
    serve(*servers[0])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m conformance.lab", description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["up", "down", "services"])
    args = parser.parse_args(argv)
    if args.action == "services":
        run_services()
    lab = Lab.fixed()
    if args.action == "down":
        lab.down()
        return 0
    lab.down()
    try:
        lab.up()
    except netns.NetnsError as exc:
        print(f"lab: {exc}", file=sys.stderr)
        return 1
    print(f"export {TOKEN_ENV}={lab.token}")
    print(f"ip netns exec {lab.bench} .venv/bin/pytest --target=lab-server")
    return 0


if __name__ == "__main__":
    sys.exit(main())
