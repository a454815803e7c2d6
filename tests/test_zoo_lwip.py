"""The lwIP 2.1.3 zoo target (zoo/lwip/build/tcpconf-lwip), launched as the launch contract says.

Each test creates a namespace holding a persistent tap device, starts the program on it through
``ip netns exec``, drives it with the upper-tester protocol on its stdin/stdout, and plays the remote TCP
peer with raw Ethernet frames over an AF_PACKET socket on the same tap (answering ARP and neighbour
solicitations for the tester's own addresses). Everything stays inside 198.18.0.0/15 and 2001:2::/48 in
the test's own namespace, which is removed afterwards, also on failure.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from scapy.layers.inet import TCP
from scapy.packet import Raw

from conformance.upper_tester import AgentClient, AgentError
from support import REPO, netns_available
from support.zoo import CORE_OPS, FAMILIES, TARGET, TESTER, SegmentTester, error_of, launch_argv, namespace

PROG = REPO / "zoo" / "lwip" / "build" / "tcpconf-lwip"
TAP = "tap0"
TOKEN = "lwip-zoo-token"
MSS = {"ipv4": 1460, "ipv6": 1440}  # lwIP derives its MSS from the netif MTU (1500) minus the IP and TCP headers

_names = itertools.count()
_ports = itertools.count(20000 + os.getpid() % 20000)


def _skip_reason() -> str | None:
    if not PROG.exists():
        return f"{PROG.relative_to(REPO)} is not built (run zoo/lwip/build.sh)"
    return netns_available()


def _payload(seg: TCP) -> bytes:
    return bytes(seg[Raw].load) if Raw in seg else b""


# ---- fixtures -----------------------------------------------------------------------------------------


@pytest.fixture
def lwip_ns() -> Iterator[str]:
    """A namespace with the persistent tap the suite would give the program (up, no kernel address)."""
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    with namespace(f"lwip{next(_names)}", taps=(TAP,)) as ns:
        yield ns


@pytest.fixture
def lwip(lwip_ns: str, tmp_path: Path) -> Iterator[AgentClient]:
    """The launched program, past its hello; its stderr is kept in the test's tmp_path."""
    with open(tmp_path / "lwip.stderr", "wb") as log:
        client = AgentClient.spawn(launch_argv(lwip_ns, PROG, TAP, TOKEN), token=TOKEN, stderr=log, hello_timeout=30.0)
        try:
            yield client
        finally:
            client.close()


@pytest.fixture(params=FAMILIES)
def family(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def tester(lwip_ns: str) -> Iterator[SegmentTester]:
    """The lower tester: the remote peer on the tap."""
    tester = SegmentTester.on_interface(lwip_ns, TAP)
    try:
        yield tester
    finally:
        tester.close()


def _state(agent: AgentClient, sock: int) -> str:
    return agent.call("state", sock=sock)["state"]


def _wait_state(agent: AgentClient, sock: int, wanted: str, timeout: float = 3.0) -> str:
    deadline = time.monotonic() + timeout
    while (state := _state(agent, sock)) != wanted and time.monotonic() < deadline:
        time.sleep(0.02)
    return state


def _active_open(lwip: AgentClient, tester: SegmentTester, family: str) -> tuple[int, TCP, dict]:
    """Agent connect; the tester answers the SYN. Returns the tester's port, the SYN and the connect result."""
    dport = next(_ports)
    connecting = lwip.submit("connect", family=family, addr=TESTER[family], port=dport, timeout_ms=5000)
    syn = tester.expect_tcp(lambda t: t.dport == dport and t.flags == "S", family, what="SYN")
    tester.send(
        family, TCP(sport=dport, dport=syn.sport, flags="SA", seq=5000, ack=syn.seq + 1, options=[("MSS", 1460)])
    )
    tester.expect_tcp(
        lambda t: t.sport == syn.sport and t.flags == "A" and t.ack == 5001, family, what="ACK of the SYN-ACK"
    )
    return dport, syn, connecting.wait(7.0)


# ---- tests --------------------------------------------------------------------------------------------


def test_hello_names_lwip_and_its_compile_time_options(lwip: AgentClient) -> None:
    hello = lwip.hello
    assert hello["protocol"] == 1
    assert hello["platform"].startswith("lwIP 2.1.3")
    assert hello["stack_options"] == {"mss": 1460, "wnd": 65535, "wscale": 1, "sack": False, "timestamps": False}
    assert set(hello["ops"]) >= CORE_OPS


def test_passive_open_data_both_ways_and_fin_teardown(lwip: AgentClient, tester: SegmentTester, family: str) -> None:
    listen = lwip.call("listen", family=family, addr=TARGET[family], port=0)
    listener, port = listen["sock"], listen["port"]
    accepting = lwip.submit("accept", sock=listener, timeout_ms=5000)
    started = time.monotonic()
    assert _state(lwip, listener) == "LISTEN"  # answered while the accept waits (protocol section 6)
    assert time.monotonic() - started < 1.0 and not accepting.done()
    sport = next(_ports)

    def from_target(flags: str) -> Callable[[TCP], bool]:
        return lambda t: t.dport == sport and t.sport == port and t.flags == flags

    tester.send(family, TCP(sport=sport, dport=port, flags="S", seq=1000, options=[("MSS", 1460), ("WScale", 7)]))
    synack = tester.expect_tcp(from_target("SA"), family, what="SYN-ACK")
    assert synack.ack == 1001
    assert dict(synack.options)["MSS"] == MSS[family] and dict(synack.options)["WScale"] == 1
    isn = synack.seq
    tester.send(family, TCP(sport=sport, dport=port, flags="A", seq=1001, ack=isn + 1))
    accepted = accepting.wait(7.0)
    assert accepted["peer"] == [TESTER[family], sport] and accepted["local"] == [TARGET[family], port]
    conn = accepted["sock"]
    assert _state(lwip, conn) == "ESTABLISHED"

    assert lwip.call("send", sock=conn, data="hello") == {"sent": 5}
    data = tester.expect_tcp(lambda t: t.dport == sport and _payload(t) != b"", family, what="data from the agent")
    assert (_payload(data), data.seq) == (b"hello", isn + 1)
    tester.send(family, TCP(sport=sport, dport=port, flags="A", seq=1001, ack=isn + 6))

    tester.send(family, TCP(sport=sport, dport=port, flags="PA", seq=1001, ack=isn + 6) / b"world")
    received = lwip.call("recv", sock=conn, timeout_ms=3000)
    assert (received["data_b64"], received["len"], received["eof"]) == ("d29ybGQ=", 5, False)
    tester.expect_tcp(lambda t: t.dport == sport and t.ack == 1006, family, what="ACK of the data")

    tester.send(family, TCP(sport=sport, dport=port, flags="FA", seq=1006, ack=isn + 6))
    tester.expect_tcp(lambda t: t.dport == sport and t.ack == 1007, family, what="ACK of the FIN")
    assert lwip.call("recv", sock=conn, timeout_ms=3000)["eof"] is True
    assert _state(lwip, conn) == "CLOSE-WAIT"
    assert lwip.call("shutdown", sock=conn, how="wr") == {}
    fin = tester.expect_tcp(lambda t: t.dport == sport and "F" in t.flags, family, what="FIN from the agent")
    assert fin.seq == isn + 6
    assert _state(lwip, conn) == "LAST-ACK"
    tester.send(family, TCP(sport=sport, dport=port, flags="A", seq=1007, ack=isn + 7))
    assert _wait_state(lwip, conn, "CLOSED") == "CLOSED"
    assert lwip.call("close", sock=conn) == {}
    assert error_of(lambda: lwip.call("state", sock=conn)) == "EBADF"


def test_active_open_and_fin_from_the_agent(lwip: AgentClient, tester: SegmentTester, family: str) -> None:
    dport, syn, connected = _active_open(lwip, tester, family)
    assert dict(syn.options)["MSS"] == MSS[family] and dict(syn.options)["WScale"] == 1
    assert connected["peer"] == [TESTER[family], dport] and connected["local"] == [TARGET[family], syn.sport]
    conn = connected["sock"]
    assert _state(lwip, conn) == "ESTABLISHED"

    assert lwip.call("shutdown", sock=conn, how="wr") == {}
    fin = tester.expect_tcp(lambda t: t.dport == dport and "F" in t.flags, family, what="FIN")
    assert fin.seq == syn.seq + 1
    assert _state(lwip, conn) == "FIN-WAIT-1"
    tester.send(family, TCP(sport=dport, dport=syn.sport, flags="A", seq=5001, ack=syn.seq + 2))
    assert _wait_state(lwip, conn, "FIN-WAIT-2") == "FIN-WAIT-2"
    tester.send(family, TCP(sport=dport, dport=syn.sport, flags="FA", seq=5001, ack=syn.seq + 2))
    tester.expect_tcp(lambda t: t.dport == dport and t.ack == 5002, family, what="ACK of the FIN")
    assert _wait_state(lwip, conn, "TIME-WAIT") == "TIME-WAIT"
    assert lwip.call("close", sock=conn) == {}


def test_abort_sends_rst(lwip: AgentClient, tester: SegmentTester, family: str) -> None:
    dport, syn, connected = _active_open(lwip, tester, family)
    assert lwip.call("abort", sock=connected["sock"]) == {}
    rst = tester.expect_tcp(lambda t: t.dport == dport and "R" in t.flags, family, what="RST")
    assert rst.seq == syn.seq + 1
    assert error_of(lambda: lwip.call("state", sock=connected["sock"])) == "EBADF"


def test_connect_answered_by_rst_is_refused(lwip: AgentClient, tester: SegmentTester, family: str) -> None:
    dport = next(_ports)
    connecting = lwip.submit("connect", family=family, addr=TESTER[family], port=dport, timeout_ms=5000)
    syn = tester.expect_tcp(lambda t: t.dport == dport and t.flags == "S", family, what="SYN")
    tester.send(family, TCP(sport=dport, dport=syn.sport, flags="RA", seq=0, ack=syn.seq + 1))
    assert error_of(lambda: connecting.wait(7.0)) == "ECONNREFUSED"


def test_syn_to_a_closed_port_gets_rst(lwip: AgentClient, tester: SegmentTester, family: str) -> None:
    sport = next(_ports)
    tester.send(family, TCP(sport=sport, dport=9, flags="S", seq=777))
    rst = tester.expect_tcp(lambda t: t.dport == sport and "R" in t.flags, family, what="RST")
    assert (str(rst.flags), rst.seq, rst.ack) == ("RA", 0, 778)
    # A segment with an ACK gets a RST whose seq is that ACK (lwIP also sets ACK on it).
    tester.send(family, TCP(sport=sport, dport=9, flags="A", seq=100, ack=555))
    rst = tester.expect_tcp(lambda t: t.dport == sport and "R" in t.flags and t.seq == 555, family, what="RST to ACK")
    assert (str(rst.flags), rst.ack) == ("RA", 100)


def test_send_that_does_not_fit_times_out_and_reports_what_was_sent(
    lwip: AgentClient, tester: SegmentTester, family: str
) -> None:
    _, _, connected = _active_open(lwip, tester, family)  # the tester never acknowledges data
    with pytest.raises(AgentError) as info:
        lwip.call("send", sock=connected["sock"], len=200_000, timeout_ms=500)
    assert info.value.error == "ETIMEDOUT"
    assert 0 < info.value.details["sent"] <= 65535  # lwIP's TCP_SND_BUF in this build


def test_connect_outside_the_allow_list_is_eperm(lwip: AgentClient) -> None:
    call = lambda: lwip.call("connect", family="ipv4", addr="198.18.0.3", port=80)  # noqa: E731
    assert error_of(call) == "EPERM"


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
    proc = subprocess.run(
        launch_argv(lwip_ns, PROG, TAP, TOKEN), input=data, capture_output=True, timeout=30, check=False
    )
    responses = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [(r["id"], r["ok"], r["error"]) for r in responses] == [(i, False, "EACCES") for i in (1, 2, 3)]
    assert proc.returncode == 0  # and it exited at the end of its input
