"""The PyTCP zoo target (zoo/pytcp): its launched program follows the launch contract on a tap.

A namespace with a persistent tap is created per module; the program (PyTCP stack + agent in one process) attaches to
the tap and is driven through the agent protocol, while the test plays the tester 198.18.0.2 / 2001:2::2 with raw
Ethernet frames on an AF_PACKET socket opened inside the namespace (answering ARP and neighbour solicitations for its
own addresses). Skipped when zoo/pytcp/build.sh has not been run.
"""

from __future__ import annotations

import itertools
import os
import statistics
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from scapy.layers.inet import TCP
from scapy.packet import Raw

from conformance.upper_tester import AgentClient, PendingCall
from support.zoo import CORE_OPS, FAMILIES, TARGET, TESTER, SegmentTester, error_of, launch_argv, namespace

PROGRAM = Path(__file__).resolve().parent.parent / "zoo" / "pytcp" / "build" / "tcpconf-pytcp"
TOKEN = "zoo-pytcp-token"
TAP, TAP_SPARE = "ztap0", "ztap1"
HELLO_TIMEOUT_S = 30.0  # the contract's start-up budget

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(not PROGRAM.exists(), reason="zoo/pytcp not built (run zoo/pytcp/build.sh)"),
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces, tap)"),
]


def argv(ns: str, tap: str, token: str) -> list[str]:
    return launch_argv(ns, PROGRAM, tap, token)


@dataclass
class Target:
    ns: str
    agent: AgentClient
    tester: SegmentTester
    started: float  # monotonic time of the spawn
    hello_s: float  # spawn -> hello answered


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    stderr_path = tmp_path_factory.mktemp("zoo-pytcp") / "stderr.txt"
    with namespace("pytcp", taps=(TAP, TAP_SPARE)) as ns, stderr_path.open("wb") as stderr:
        tester = SegmentTester.on_interface(ns, TAP)
        try:
            started = time.monotonic()
            agent = AgentClient.spawn(argv(ns, TAP, TOKEN), token=TOKEN, stderr=stderr, hello_timeout=HELLO_TIMEOUT_S)
            try:
                yield Target(ns, agent, tester, started, time.monotonic() - started)
            finally:
                agent.close()
        finally:
            tester.close()
    assert "Traceback" not in stderr_path.read_text(errors="replace"), f"the program logged an exception: {stderr_path}"


PORTS = itertools.count(20000)


def syn(sport: int, dport: int, seq: int) -> TCP:
    return TCP(sport=sport, dport=dport, flags="S", seq=seq, window=65535, options=[("MSS", 1400)])


def handshake(target: Target, family: str, sport: int, dport: int, isn: int = 1000) -> TCP:
    """Tester SYN -> target SYN-ACK -> tester ACK; returns the SYN-ACK."""
    target.tester.send(family, syn(sport, dport, isn))
    synack = target.tester.expect_tcp(lambda t: t.dport == sport and t.flags == "SA", family)
    assert synack.ack == isn + 1
    ack = TCP(sport=sport, dport=dport, flags="A", seq=isn + 1, ack=synack.seq + 1, window=65535)
    target.tester.send(family, ack)
    return synack


def connecting(target: Target, family: str) -> tuple[int, PendingCall, TCP]:
    """The agent connects to a fresh tester port; returns the port, the pending connect and the target's SYN."""
    port = next(PORTS)
    connect = target.agent.submit("connect", family=family, addr=TESTER[family], port=port, timeout_ms=5000)
    syn = target.tester.expect_tcp(lambda t: t.dport == port and "S" in t.flags and "A" not in t.flags, family)
    return port, connect, syn


def test_hello_names_the_stack_and_ops(target: Target) -> None:
    hello = target.agent.hello
    assert hello["protocol"] == 1
    assert hello["platform"].startswith("PyTCP 0.3.8")
    assert set(hello["ops"]) >= CORE_OPS
    assert target.hello_s < HELLO_TIMEOUT_S


@pytest.mark.parametrize("family", FAMILIES)
def test_passive_open_data_both_ways_and_fin(target: Target, family: str) -> None:
    agent, tester = target.agent, target.tester
    port, sport = next(PORTS), next(PORTS)
    listener = agent.call("listen", family=family, addr=TARGET[family], port=port)["sock"]
    assert agent.call("state", sock=listener)["state"] == "LISTEN"
    accept = agent.submit("accept", sock=listener, timeout_ms=5000)
    synack = handshake(target, family, sport, port)
    assert synack.getfieldval("options"), "the SYN-ACK carries options (at least MSS)"
    accepted = accept.wait(7.0)
    assert accepted["peer"] == [TESTER[family], sport]
    assert accepted["local"] == [TARGET[family], port]
    conn = accepted["sock"]
    established = agent.call("state", sock=conn)
    assert established["state"] == "ESTABLISHED"
    assert established["info"]["snd_mss"] == 1400  # the MSS the tester's SYN announced
    assert established["info"]["options"] == []  # the tester offered no SACK, timestamps or window scaling
    rcv_nxt, snd_nxt = synack.seq + 1, 1001

    # target -> tester
    assert agent.call("send", sock=conn, data="hello")["sent"] == 5
    data = tester.expect_tcp(lambda t: t.dport == sport and len(t.payload) > 0, family)
    assert bytes(data.payload) == b"hello" and data.seq == rcv_nxt
    rcv_nxt += 5
    tester.send(family, TCP(sport=sport, dport=port, flags="A", seq=snd_nxt, ack=rcv_nxt, window=65535))

    # tester -> target
    tester.send(
        family, TCP(sport=sport, dport=port, flags="PA", seq=snd_nxt, ack=rcv_nxt, window=65535) / Raw(b"world")
    )
    snd_nxt += 5
    tester.expect_tcp(lambda t: t.dport == sport and "A" in t.flags and t.ack == snd_nxt, family)
    got = agent.call("recv", sock=conn, timeout_ms=2000)
    assert (got["len"], got["eof"], got["data_b64"]) == (5, False, "d29ybGQ=")

    # tester closes first: FIN is acknowledged, recv sees end-of-file, the state is CLOSE-WAIT
    tester.send(family, TCP(sport=sport, dport=port, flags="FA", seq=snd_nxt, ack=rcv_nxt, window=65535))
    snd_nxt += 1
    tester.expect_tcp(lambda t: t.dport == sport and "A" in t.flags and t.ack == snd_nxt, family)
    assert agent.call("recv", sock=conn, timeout_ms=2000)["eof"] is True
    assert agent.call("state", sock=conn)["state"] == "CLOSE-WAIT"

    # target closes: its FIN arrives, the tester's ACK ends the connection
    agent.call("close", sock=conn)
    fin = tester.expect_tcp(lambda t: t.dport == sport and "F" in t.flags, family)
    assert fin.seq == rcv_nxt
    tester.send(family, TCP(sport=sport, dport=port, flags="A", seq=snd_nxt, ack=rcv_nxt + 1, window=65535))
    assert error_of(lambda: agent.call("state", sock=conn)) == "EBADF"
    agent.call("close", sock=listener)


@pytest.mark.parametrize("family", FAMILIES)
def test_active_open_reaches_established(target: Target, family: str) -> None:
    agent, tester = target.agent, target.tester
    port, connect, syn_in = connecting(target, family)
    # PyTCP 0.3.8 asks for Accurate ECN on every active open (SYN with AE, CWR and ECE set) and sends an empty
    # TFO cookie request; the tester's plain SYN-ACK declines both.
    assert str(syn_in.flags) in ("S", "SEC", "SECN")
    reply = TCP(sport=port, dport=syn_in.sport, flags="SA", seq=5000, ack=syn_in.seq + 1, window=65535)
    tester.send(family, reply)
    result = connect.wait(7.0)
    assert result["peer"] == [TESTER[family], port]
    assert result["local"] == [TARGET[family], syn_in.sport]
    ack = tester.expect_tcp(lambda t: t.dport == port and t.flags == "A", family)
    assert (ack.seq, ack.ack) == (syn_in.seq + 1, 5001)
    assert agent.call("state", sock=result["sock"])["state"] == "ESTABLISHED"
    agent.call("abort", sock=result["sock"])
    rst = tester.expect_tcp(lambda t: t.dport == port and "R" in t.flags, family)
    assert rst.seq == syn_in.seq + 1


@pytest.mark.parametrize("family", FAMILIES)
def test_syn_to_closed_port_gets_rst(target: Target, family: str) -> None:
    sport, port = next(PORTS), next(PORTS)
    target.tester.send(family, syn(sport, port, 7000))
    rst = target.tester.expect_tcp(lambda t: t.dport == sport and "R" in t.flags, family)
    assert rst.flags == "RA" and rst.ack == 7001 and rst.seq == 0


def test_connect_outside_allow_list_is_refused(target: Target) -> None:
    assert error_of(lambda: target.agent.call("connect", family="ipv4", addr="198.18.0.3", port=80)) == "EPERM"


def test_bad_token_gets_eacces(target: Target) -> None:
    """A second instance on the spare tap of the same namespace, asked with the wrong token."""
    assert (
        error_of(lambda: AgentClient.spawn(argv(target.ns, TAP_SPARE, TOKEN), token="wrong", stderr=subprocess.DEVNULL))
        == "EACCES"
    )


def test_syn_synack_latency(target: Target, record_property: Callable[[str, object], None]) -> None:
    """Median SYN -> SYN-ACK time over 20 probes (IPv4), from the two segments' kernel timestamps on the tap."""
    port = next(PORTS)
    listener = target.agent.call("listen", family="ipv4", port=port)["sock"]
    samples = []
    for _ in range(20):
        sport = next(PORTS)
        synack, delay = target.tester.round_trip(
            "ipv4", syn(sport, port, 1000), lambda t, sport=sport: t.dport == sport and t.flags == "SA"
        )
        samples.append(delay)
        target.tester.send("ipv4", TCP(sport=sport, dport=port, flags="R", seq=1001))
        assert synack[TCP].ack == 1001
    target.agent.call("close", sock=listener)
    median_ms = statistics.median(samples) * 1000
    record_property("syn_synack_median_ms", round(median_ms, 2))
    print(f"\nPyTCP SYN -> SYN-ACK over 20 probes: median {median_ms:.2f} ms, max {max(samples) * 1000:.2f} ms")
    assert median_ms < 200


@pytest.mark.parametrize("family", FAMILIES)
def test_connect_to_closed_tester_port_is_refused(target: Target, family: str) -> None:
    tester = target.tester
    port, connect, syn_in = connecting(target, family)
    tester.send(family, TCP(sport=port, dport=syn_in.sport, flags="RA", seq=0, ack=syn_in.seq + 1))
    assert error_of(lambda: connect.wait(7.0)) == "ECONNREFUSED"


def test_blocking_ops_do_not_hold_up_others_and_end_on_close(target: Target) -> None:
    """A waiting accept leaves state answerable; recv times out with ETIMEDOUT; close ends a waiting recv (EBADF)."""
    agent, tester = target.agent, target.tester
    port, sport = next(PORTS), next(PORTS)
    listener = agent.call("listen", family="ipv4", port=port)["sock"]
    accept = agent.submit("accept", sock=listener, timeout_ms=5000)
    started = time.monotonic()
    assert agent.call("state", sock=listener)["state"] == "LISTEN"
    assert time.monotonic() - started < 1.0 and not accept.done()
    handshake(target, "ipv4", sport, port)
    conn = accept.wait(7.0)["sock"]
    assert error_of(lambda: agent.call("recv", sock=conn, timeout_ms=200)) == "ETIMEDOUT"
    recv = agent.submit("recv", sock=conn, timeout_ms=5000)
    agent.call("close", sock=conn)
    assert error_of(lambda: recv.wait(3.0)) == "EBADF"
    tester.expect_tcp(lambda t: t.dport == sport and "F" in t.flags, "ipv4")
    tester.send("ipv4", TCP(sport=sport, dport=port, flags="R", seq=1001))
    agent.call("close", sock=listener)


def test_startup_time_to_hello_and_first_synack(target: Target, record_property: Callable[[str, object], None]) -> None:
    """A fresh instance on the spare tap: spawn -> hello answered, spawn -> first SYN-ACK (IPv4, ARP included)."""
    tester = SegmentTester.on_interface(target.ns, TAP_SPARE)
    try:
        started = time.monotonic()
        with AgentClient.spawn(argv(target.ns, TAP_SPARE, TOKEN), token=TOKEN, hello_timeout=HELLO_TIMEOUT_S) as agent:
            hello_s = time.monotonic() - started
            agent.call("listen", family="ipv4", port=8000)
            tester.send("ipv4", syn(8001, 8000, 1000))
            tester.expect_tcp(lambda t: t.dport == 8001 and t.flags == "SA", "ipv4")
            synack_s = time.monotonic() - started
    finally:
        tester.close()
    record_property("startup_hello_s", round(hello_s, 3))
    record_property("startup_first_synack_s", round(synack_s, 3))
    print(f"\nPyTCP start-up: hello after {hello_s:.3f} s, first SYN-ACK after {synack_s:.3f} s")
    assert hello_s < HELLO_TIMEOUT_S and synack_s < HELLO_TIMEOUT_S


def test_unanswered_connect_times_out(target: Target) -> None:
    port = next(PORTS)
    assert (
        error_of(lambda: target.agent.call("connect", family="ipv6", addr=TESTER["ipv6"], port=port, timeout_ms=500))
        == "ETIMEDOUT"
    )
    target.tester.expect_tcp(lambda t: t.dport == port and "S" in t.flags, "ipv6")
    assert target.agent.call("hello")["protocol"] == 1  # the agent carries on
