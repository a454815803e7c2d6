"""The lwIP 2.1.3 zoo target (zoo/lwip/build/tcpconf-lwip), launched as the launch contract says.

Each test creates a namespace holding a persistent tap device, starts the program on it through
``ip netns exec``, drives it with the upper-tester protocol on its stdin/stdout, and plays the remote TCP
peer with raw Ethernet frames over an AF_PACKET socket on the same tap (answering ARP and neighbour
solicitations for the tester's own addresses). Everything stays inside 198.18.0.0/15 and 2001:2::/48 in
the test's own namespace, which is removed afterwards, also on failure.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import select
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import ICMPv6ND_NA, ICMPv6ND_NS, ICMPv6NDOptDstLLAddr, IPv6
from scapy.layers.l2 import ARP, Ether
from scapy.packet import Packet, Raw

from conformance.targets.netns import call_in_netns, create, delete, namespace_name, pids_in, run
from conformance.upper_tester import AgentClient, AgentError
from support import REPO, netns_available

PROG = REPO / "zoo" / "lwip" / "build" / "tcpconf-lwip"
TAP = "tap0"
TARGET_MAC, TESTER_MAC = "02:00:00:00:00:01", "02:00:00:00:00:02"
TARGET = {"ipv4": "198.18.0.1", "ipv6": "2001:2::1"}
TESTER = {"ipv4": "198.18.0.2", "ipv6": "2001:2::2"}
TOKEN = "lwip-zoo-token"
MSS = {"ipv4": 1460, "ipv6": 1440}  # lwIP derives its MSS from the netif MTU (1500) minus the IP and TCP headers
ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4  # frames this socket's side sent; the target's frames arrive as other types

_names = itertools.count()
_ports = itertools.count(20000 + os.getpid() % 20000)


def _skip_reason() -> str | None:
    if not PROG.exists():
        return f"{PROG.relative_to(REPO)} is not built (run zoo/lwip/build.sh)"
    return netns_available()


def _launch_argv(ns: str, token: str) -> list[str]:
    """The command line of the launch contract, with the suite's defaults."""
    return [
        "ip", "netns", "exec", ns, str(PROG), "--tap", TAP, "--mac", TARGET_MAC,
        "--ipv4", f"{TARGET['ipv4']}/24", "--ipv6", f"{TARGET['ipv6']}/64",
        "--allow-connect", TESTER["ipv4"], "--allow-connect", TESTER["ipv6"], "--token", token,
    ]  # fmt: skip


def _payload(seg: TCP) -> bytes:
    return bytes(seg[Raw].load) if Raw in seg else b""


class Tester:
    """The lower tester: the remote peer on the tap, one family per instance."""

    __test__ = False

    def __init__(self, sock: socket.socket, family: str) -> None:
        self.sock = sock
        self.family = family
        self.addr, self.target = TESTER[family], TARGET[family]
        self.seen: list[str] = []

    def send(self, seg: TCP, payload: bytes = b"") -> None:
        l3 = IP(src=self.addr, dst=self.target) if self.family == "ipv4" else IPv6(src=self.addr, dst=self.target)
        frame = Ether(src=TESTER_MAC, dst=TARGET_MAC) / l3 / seg
        self.sock.send(bytes(frame / Raw(payload)) if payload else bytes(frame))

    def expect(self, what: str, match: Callable[[TCP], bool], timeout: float = 3.0) -> TCP:
        """The first TCP segment from the target that ``match``es; neighbour requests are answered meanwhile."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            if not select.select([self.sock], [], [], left)[0]:
                break
            data, address = self.sock.recvfrom(65535)
            if address[2] == PACKET_OUTGOING:
                continue
            frame = Ether(data)
            self._answer_neighbour(frame)
            if TCP in frame:
                self.seen.append(frame[TCP].sprintf("%TCP.sport%>%TCP.dport% %TCP.flags% seq=%TCP.seq% ack=%TCP.ack%"))
                if match(frame[TCP]):
                    return frame[TCP]
        raise AssertionError(f"no {what} within {timeout} s; TCP segments seen: {self.seen[-8:]}")

    def _answer_neighbour(self, frame: Packet) -> None:
        if ARP in frame and frame[ARP].op == 1 and frame[ARP].pdst == TESTER["ipv4"]:
            reply = ARP(op=2, hwsrc=TESTER_MAC, psrc=TESTER["ipv4"], hwdst=frame[ARP].hwsrc, pdst=frame[ARP].psrc)
            self.sock.send(bytes(Ether(src=TESTER_MAC, dst=frame.src) / reply))
        elif ICMPv6ND_NS in frame and frame[ICMPv6ND_NS].tgt == TESTER["ipv6"] and frame[IPv6].src != "::":
            advert = ICMPv6ND_NA(tgt=TESTER["ipv6"], R=0, S=1, O=1) / ICMPv6NDOptDstLLAddr(lladdr=TESTER_MAC)
            l3 = IPv6(src=TESTER["ipv6"], dst=frame[IPv6].src)
            self.sock.send(bytes(Ether(src=TESTER_MAC, dst=frame.src) / l3 / advert))


# ---- fixtures -----------------------------------------------------------------------------------------


@pytest.fixture
def lwip_ns() -> Iterator[str]:
    """A namespace with the persistent tap the suite would give the program (up, no kernel address)."""
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    ns = namespace_name(f"lwip{next(_names)}")
    create(ns)
    try:
        run(["ip", "-n", ns, "tuntap", "add", "dev", TAP, "mode", "tap"])
        run(["ip", "-n", ns, "link", "set", TAP, "up"])
        yield ns
    finally:
        for pid in pids_in(ns):  # only the program this test started lives in its namespace
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)
        delete(ns)


@pytest.fixture
def lwip(lwip_ns: str, tmp_path: Path) -> Iterator[AgentClient]:
    """The launched program, past its hello; its stderr is kept in the test's tmp_path."""
    with open(tmp_path / "lwip.stderr", "wb") as log:
        client = AgentClient.spawn(_launch_argv(lwip_ns, TOKEN), token=TOKEN, stderr=log, hello_timeout=30.0)
        try:
            yield client
        finally:
            client.close()


@pytest.fixture(params=["ipv4", "ipv6"])
def tester(request: pytest.FixtureRequest, lwip_ns: str) -> Iterator[Tester]:
    def open_packet_socket() -> socket.socket:
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        sock.bind((TAP, 0))
        return sock

    sock = call_in_netns(lwip_ns, open_packet_socket)
    try:
        yield Tester(sock, request.param)
    finally:
        sock.close()


def _state(agent: AgentClient, sock: int) -> str:
    return agent.call("state", sock=sock)["state"]


def _wait_state(agent: AgentClient, sock: int, wanted: str, timeout: float = 3.0) -> str:
    deadline = time.monotonic() + timeout
    while (state := _state(agent, sock)) != wanted and time.monotonic() < deadline:
        time.sleep(0.02)
    return state


def _error_of(call: Callable[[], Any]) -> str:
    with pytest.raises(AgentError) as info:
        call()
    return info.value.error


def _active_open(lwip: AgentClient, tester: Tester) -> tuple[int, TCP, dict]:
    """Agent connect; the tester answers the SYN. Returns the tester's port, the SYN and the connect result."""
    dport = next(_ports)
    connecting = lwip.submit("connect", family=tester.family, addr=tester.addr, port=dport, timeout_ms=5000)
    syn = tester.expect("SYN", lambda t: t.dport == dport and t.flags == "S")
    tester.send(TCP(sport=dport, dport=syn.sport, flags="SA", seq=5000, ack=syn.seq + 1, options=[("MSS", 1460)]))
    tester.expect("ACK of the SYN-ACK", lambda t: t.sport == syn.sport and t.flags == "A" and t.ack == 5001)
    return dport, syn, connecting.wait(7.0)


# ---- tests --------------------------------------------------------------------------------------------


def test_hello_names_lwip_and_its_compile_time_options(lwip: AgentClient) -> None:
    hello = lwip.hello
    assert hello["protocol"] == 1
    assert hello["platform"].startswith("lwIP 2.1.3")
    assert hello["stack_options"] == {"mss": 1460, "wnd": 65535, "wscale": 1, "sack": False, "timestamps": False}
    for op in ("hello", "listen", "accept", "connect", "send", "recv", "shutdown", "close", "abort", "state", "bye"):
        assert op in hello["ops"]


def test_passive_open_data_both_ways_and_fin_teardown(lwip: AgentClient, tester: Tester) -> None:
    listen = lwip.call("listen", family=tester.family, addr=tester.target, port=0)
    listener, port = listen["sock"], listen["port"]
    accepting = lwip.submit("accept", sock=listener, timeout_ms=5000)
    started = time.monotonic()
    assert _state(lwip, listener) == "LISTEN"  # answered while the accept waits (protocol section 6)
    assert time.monotonic() - started < 1.0 and not accepting.done()
    sport = next(_ports)

    def from_target(flags: str) -> Callable[[TCP], bool]:
        return lambda t: t.dport == sport and t.sport == port and t.flags == flags

    tester.send(TCP(sport=sport, dport=port, flags="S", seq=1000, options=[("MSS", 1460), ("WScale", 7)]))
    synack = tester.expect("SYN-ACK", from_target("SA"))
    assert synack.ack == 1001
    assert dict(synack.options)["MSS"] == MSS[tester.family] and dict(synack.options)["WScale"] == 1
    isn = synack.seq
    tester.send(TCP(sport=sport, dport=port, flags="A", seq=1001, ack=isn + 1))
    accepted = accepting.wait(7.0)
    assert accepted["peer"] == [tester.addr, sport] and accepted["local"] == [tester.target, port]
    conn = accepted["sock"]
    assert _state(lwip, conn) == "ESTABLISHED"

    assert lwip.call("send", sock=conn, data="hello") == {"sent": 5}
    data = tester.expect("data from the agent", lambda t: t.dport == sport and _payload(t) != b"")
    assert (_payload(data), data.seq) == (b"hello", isn + 1)
    tester.send(TCP(sport=sport, dport=port, flags="A", seq=1001, ack=isn + 6))

    tester.send(TCP(sport=sport, dport=port, flags="PA", seq=1001, ack=isn + 6), b"world")
    received = lwip.call("recv", sock=conn, timeout_ms=3000)
    assert (received["data_b64"], received["len"], received["eof"]) == ("d29ybGQ=", 5, False)
    tester.expect("ACK of the data", lambda t: t.dport == sport and t.ack == 1006)

    tester.send(TCP(sport=sport, dport=port, flags="FA", seq=1006, ack=isn + 6))
    tester.expect("ACK of the FIN", lambda t: t.dport == sport and t.ack == 1007)
    assert lwip.call("recv", sock=conn, timeout_ms=3000)["eof"] is True
    assert _state(lwip, conn) == "CLOSE-WAIT"
    assert lwip.call("shutdown", sock=conn, how="wr") == {}
    fin = tester.expect("FIN from the agent", lambda t: t.dport == sport and "F" in t.flags)
    assert fin.seq == isn + 6
    assert _state(lwip, conn) == "LAST-ACK"
    tester.send(TCP(sport=sport, dport=port, flags="A", seq=1007, ack=isn + 7))
    assert _wait_state(lwip, conn, "CLOSED") == "CLOSED"
    assert lwip.call("close", sock=conn) == {}
    assert _error_of(lambda: lwip.call("state", sock=conn)) == "EBADF"


def test_active_open_and_fin_from_the_agent(lwip: AgentClient, tester: Tester) -> None:
    dport, syn, connected = _active_open(lwip, tester)
    assert dict(syn.options)["MSS"] == MSS[tester.family] and dict(syn.options)["WScale"] == 1
    assert connected["peer"] == [tester.addr, dport] and connected["local"] == [tester.target, syn.sport]
    conn = connected["sock"]
    assert _state(lwip, conn) == "ESTABLISHED"

    assert lwip.call("shutdown", sock=conn, how="wr") == {}
    fin = tester.expect("FIN", lambda t: t.dport == dport and "F" in t.flags)
    assert fin.seq == syn.seq + 1
    assert _state(lwip, conn) == "FIN-WAIT-1"
    tester.send(TCP(sport=dport, dport=syn.sport, flags="A", seq=5001, ack=syn.seq + 2))
    assert _wait_state(lwip, conn, "FIN-WAIT-2") == "FIN-WAIT-2"
    tester.send(TCP(sport=dport, dport=syn.sport, flags="FA", seq=5001, ack=syn.seq + 2))
    tester.expect("ACK of the FIN", lambda t: t.dport == dport and t.ack == 5002)
    assert _wait_state(lwip, conn, "TIME-WAIT") == "TIME-WAIT"
    assert lwip.call("close", sock=conn) == {}


def test_abort_sends_rst(lwip: AgentClient, tester: Tester) -> None:
    dport, syn, connected = _active_open(lwip, tester)
    assert lwip.call("abort", sock=connected["sock"]) == {}
    rst = tester.expect("RST", lambda t: t.dport == dport and "R" in t.flags)
    assert rst.seq == syn.seq + 1
    assert _error_of(lambda: lwip.call("state", sock=connected["sock"])) == "EBADF"


def test_send_that_does_not_fit_times_out_and_reports_what_was_sent(lwip: AgentClient, tester: Tester) -> None:
    _, _, connected = _active_open(lwip, tester)  # the tester never acknowledges data
    with pytest.raises(AgentError) as info:
        lwip.call("send", sock=connected["sock"], len=200_000, timeout_ms=500)
    assert info.value.error == "ETIMEDOUT"
    assert 0 < info.value.details["sent"] <= 65535  # lwIP's TCP_SND_BUF in this build


def test_connect_answered_by_rst_is_refused(lwip: AgentClient, tester: Tester) -> None:
    dport = next(_ports)
    connecting = lwip.submit("connect", family=tester.family, addr=tester.addr, port=dport, timeout_ms=5000)
    syn = tester.expect("SYN", lambda t: t.dport == dport and t.flags == "S")
    tester.send(TCP(sport=dport, dport=syn.sport, flags="RA", seq=0, ack=syn.seq + 1))
    with pytest.raises(AgentError) as info:
        connecting.wait(7.0)
    assert info.value.error == "ECONNREFUSED"


def test_syn_to_a_closed_port_gets_rst(lwip: AgentClient, tester: Tester) -> None:
    sport = next(_ports)
    tester.send(TCP(sport=sport, dport=9, flags="S", seq=777))
    rst = tester.expect("RST", lambda t: t.dport == sport and "R" in t.flags)
    assert (str(rst.flags), rst.seq, rst.ack) == ("RA", 0, 778)
    # A segment with an ACK gets a RST whose seq is that ACK (lwIP also sets ACK on it).
    tester.send(TCP(sport=sport, dport=9, flags="A", seq=100, ack=555))
    rst = tester.expect("RST to an ACK", lambda t: t.dport == sport and "R" in t.flags and t.seq == 555)
    assert (str(rst.flags), rst.ack) == ("RA", 100)


def test_connect_outside_the_allow_list_is_eperm(lwip: AgentClient) -> None:
    call = lambda: lwip.call("connect", family="ipv4", addr="198.18.0.3", port=80)  # noqa: E731
    assert _error_of(call) == "EPERM"


def test_bye_ends_the_program(lwip: AgentClient) -> None:
    assert lwip.call("bye") == {}
    assert lwip.process is not None and lwip.process.wait(timeout=5) == 0


def test_a_bad_token_gets_eacces_for_every_request(lwip_ns: str) -> None:
    lines = [
        {"id": 1, "op": "hello", "token": "wrong"},
        {"id": 2, "op": "hello", "token": TOKEN},
        {"id": 3, "op": "listen", "family": "ipv4", "port": 0},
    ]
    data = "".join(json.dumps(line) + "\n" for line in lines).encode()
    proc = subprocess.run(_launch_argv(lwip_ns, TOKEN), input=data, capture_output=True, timeout=30, check=False)
    responses = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [(r["id"], r["ok"], r["error"]) for r in responses] == [(i, False, "EACCES") for i in (1, 2, 3)]
    assert proc.returncode == 0  # and it exited at the end of its input
