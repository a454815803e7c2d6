"""Zoo target: gVisor netstack on a tap (zoo/gvisor), driven through its own upper-tester agent.

The program is launched per the launch contract inside a private namespace; the tester plays
198.18.0.2 / 2001:2::2 with raw Ethernet frames on an AF_PACKET socket bound to the tap.
Build first: zoo/gvisor/build.sh. Measurements are printed (run with -s to see them).
"""

from __future__ import annotations

import itertools
import statistics
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from scapy.layers.inet import TCP
from scapy.packet import Raw

from conformance.upper_tester import AgentClient
from support import REPO, needs_netns
from support.zoo import CORE_OPS, TARGET, TESTER, SegmentTester, error_of, launch_argv, namespace

PROG = REPO / "zoo" / "gvisor" / "build" / "tcpconf-gvisor"
TAP = "gvtap0"
TOKEN = "zoo-gvisor-token"

pytestmark = [
    needs_netns,
    pytest.mark.netns,
    pytest.mark.skipif(not PROG.exists(), reason=f"{PROG.relative_to(REPO)} not built: run zoo/gvisor/build.sh"),
]

_ports = itertools.count(20000)


def argv(ns: str, token: str = TOKEN) -> list[str]:
    return launch_argv(ns, PROG, TAP, token)


@dataclass
class Zoo:
    ns: str
    agent: AgentClient
    tester: SegmentTester
    startup_s: float
    log: Path


@pytest.fixture(scope="module")
def zoo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Zoo]:
    log = tmp_path_factory.mktemp("gvisor") / "stderr.log"
    with namespace("gvisor", taps=(TAP,)) as ns, log.open("wb") as err:
        tester = SegmentTester.on_interface(ns, TAP)
        try:
            start = time.perf_counter()
            agent = AgentClient.spawn(argv(ns), token=TOKEN, stderr=err, hello_timeout=30)
            startup = time.perf_counter() - start
            try:
                yield Zoo(ns, agent, tester, startup, log)
            finally:
                agent.close()
        finally:
            tester.close()


def syn(sport: int, dport: int, seq: int) -> TCP:
    """The tester's SYN: no timestamps, so that later segments need no TS option (netstack drops them)."""
    opts = [("MSS", 1460), ("SAckOK", b""), ("WScale", 7)]
    return TCP(sport=sport, dport=dport, flags="S", seq=seq, window=65535, options=opts)


def opened(zoo: Zoo, family: str, port: int, sport: int, isn: int) -> TCP:
    """The tester opens a connection to ``port``; returns the target's SYN-ACK (the handshake is complete)."""
    zoo.tester.send(family, syn(sport, port, isn))
    synack = zoo.tester.expect_tcp(lambda t: t.sport == port and t.dport == sport)
    assert synack.flags == "SA" and synack.ack == isn + 1
    zoo.tester.send(family, TCP(sport=sport, dport=port, flags="A", seq=isn + 1, ack=synack.seq + 1))
    return synack


def state(zoo: Zoo, sock: int) -> str:
    return zoo.agent.call("state", sock=sock)["state"]


FAMILIES = pytest.mark.parametrize("family", ["ipv4", "ipv6"])


def test_hello_names_the_stack_and_the_ops(zoo: Zoo) -> None:
    hello = zoo.agent.hello
    print(f"\ngvisor start-up to hello: {zoo.startup_s * 1000:.1f} ms")
    assert hello["protocol"] == 1 and hello["platform"].startswith("gVisor netstack 0.0~2022")
    assert set(hello["ops"]) >= CORE_OPS


@FAMILIES
def test_passive_open_data_and_fin_teardown(zoo: Zoo, family: str) -> None:
    target, tester = TARGET[family], TESTER[family]
    listener = zoo.agent.call("listen", family=family, addr=target, port=0)
    port, sport, isn = listener["port"], next(_ports), 1_000_000
    accept = zoo.agent.submit("accept", sock=listener["sock"], timeout_ms=5000)
    assert state(zoo, listener["sock"]) == "LISTEN"  # answered while accept waits
    synack = opened(zoo, family, port, sport, isn)
    names = {o[0] for o in synack.options} - {"NOP"}
    assert names == {"MSS", "SAckOK", "WScale"}, synack.options  # SACK only because the program enables it
    conn = accept.wait(6)
    assert conn["peer"] == [tester, sport] and conn["local"] == [target, port]
    sock, rcv = conn["sock"], synack.seq + 1
    assert state(zoo, sock) == "ESTABLISHED"

    assert zoo.agent.call("send", sock=sock, data="hello")["sent"] == 5
    data = zoo.tester.expect_tcp(lambda t: t.dport == sport and len(t.payload) > 0)
    assert bytes(data[Raw]) == b"hello" and data.seq == rcv
    rcv += 5
    zoo.tester.send(family, TCP(sport=sport, dport=port, flags="PA", seq=isn + 1, ack=rcv) / b"world")
    got = zoo.agent.call("recv", sock=sock, timeout_ms=2000)
    assert got == {"data_b64": "d29ybGQ=", "len": 5, "eof": False}
    info = zoo.agent.call("state", sock=sock)["info"]
    assert set(info["options"]) == {"sack", "wscale"} and info["snd_wscale"] == 7 and info["rto"] > 0, info

    # The target closes first: FIN-WAIT-1, FIN-WAIT-2, then TIME-WAIT after our FIN.
    zoo.agent.call("shutdown", sock=sock, how="wr")
    fin = zoo.tester.expect_tcp(lambda t: t.dport == sport and "F" in t.flags)
    assert fin.seq == rcv and state(zoo, sock) == "FIN-WAIT-1"
    mine = isn + 6
    zoo.tester.send(family, TCP(sport=sport, dport=port, flags="A", seq=mine, ack=rcv + 1))
    _wait_state(zoo, sock, "FIN-WAIT-2")
    zoo.tester.send(family, TCP(sport=sport, dport=port, flags="FA", seq=mine, ack=rcv + 1))
    ack = zoo.tester.expect_tcp(lambda t: t.dport == sport and t.ack == mine + 1)
    assert ack.flags == "A"
    assert zoo.agent.call("recv", sock=sock)["eof"] is True
    assert state(zoo, sock) == "TIME-WAIT"
    zoo.agent.call("close", sock=sock)
    zoo.agent.call("close", sock=listener["sock"])
    assert error_of(lambda: zoo.agent.call("state", sock=sock)) == "EBADF"


def _wait_state(zoo: Zoo, sock: int, want: str, timeout: float = 2.0) -> None:
    """Wait for a state reached by the stack processing a segment we just sent (no event to wait on)."""
    deadline = time.monotonic() + timeout
    while (seen := state(zoo, sock)) != want and time.monotonic() < deadline:
        time.sleep(0.005)
    assert seen == want


@FAMILIES
def test_active_open_and_passive_close(zoo: Zoo, family: str) -> None:
    target, tester = TARGET[family], TESTER[family]
    dport, isn = next(_ports), 3_000_000
    connect = zoo.agent.submit("connect", family=family, addr=tester, port=dport, timeout_ms=5000)
    s = zoo.tester.expect_tcp(lambda t: t.dport == dport)
    assert s.flags == "S" and {o[0] for o in s.options} >= {"MSS", "SAckOK", "WScale", "Timestamp"}, s.options
    sa = TCP(sport=dport, dport=s.sport, flags="SA", seq=isn, ack=s.seq + 1, window=65535, options=[("MSS", 1400)])
    zoo.tester.send(family, sa)
    ack = zoo.tester.expect_tcp(lambda t: t.dport == dport and "A" in t.flags)
    assert ack.seq == s.seq + 1 and ack.ack == isn + 1
    conn = connect.wait(6)
    assert conn["peer"] == [tester, dport] and conn["local"] == [target, s.sport]
    sock = conn["sock"]
    assert state(zoo, sock) == "ESTABLISHED"

    # The tester closes first: CLOSE-WAIT, then LAST-ACK after the agent's shutdown, CLOSED after our ACK.
    zoo.tester.send(family, TCP(sport=dport, dport=s.sport, flags="FA", seq=isn + 1, ack=s.seq + 1))
    assert zoo.agent.call("recv", sock=sock, timeout_ms=2000)["eof"] is True
    assert state(zoo, sock) == "CLOSE-WAIT"
    zoo.agent.call("shutdown", sock=sock, how="wr")
    fin = zoo.tester.expect_tcp(lambda t: t.dport == dport and "F" in t.flags)
    assert fin.ack == isn + 2 and state(zoo, sock) == "LAST-ACK"
    zoo.tester.send(family, TCP(sport=dport, dport=s.sport, flags="A", seq=isn + 2, ack=fin.seq + 1))
    _wait_state(zoo, sock, "CLOSED")
    zoo.agent.call("close", sock=sock)


@FAMILIES
def test_abort_sends_rst(zoo: Zoo, family: str) -> None:
    listener = zoo.agent.call("listen", family=family, port=0)
    port, sport, isn = listener["port"], next(_ports), 5_000_000
    accept = zoo.agent.submit("accept", sock=listener["sock"], timeout_ms=5000)
    synack = opened(zoo, family, port, sport, isn)
    sock = accept.wait(6)["sock"]
    zoo.agent.call("abort", sock=sock)
    rst = zoo.tester.expect_tcp(lambda t: t.dport == sport and "R" in t.flags)
    assert rst.seq == synack.seq + 1
    zoo.agent.call("close", sock=listener["sock"])


@FAMILIES
def test_syn_to_closed_port_gets_rst(zoo: Zoo, family: str) -> None:
    sport, isn = next(_ports), 7_000_000
    zoo.tester.send(family, syn(sport, 9, isn))
    rst = zoo.tester.expect_tcp(lambda t: t.dport == sport)
    assert rst.flags == "RA" and rst.seq == 0 and rst.ack == isn + 1


def test_connect_outside_allow_list_is_refused(zoo: Zoo) -> None:
    assert error_of(lambda: zoo.agent.call("connect", family="ipv4", addr="198.18.0.3", port=80)) == "EPERM"


def test_connect_to_closed_tester_port_is_refused(zoo: Zoo) -> None:
    dport = next(_ports)
    connect = zoo.agent.submit("connect", family="ipv4", addr="198.18.0.2", port=dport, timeout_ms=3000)
    s = zoo.tester.expect_tcp(lambda t: t.dport == dport and t.flags == "S")
    zoo.tester.send("ipv4", TCP(sport=dport, dport=s.sport, flags="RA", seq=0, ack=s.seq + 1))
    assert error_of(lambda: connect.wait(5)) == "ECONNREFUSED"


def test_bad_token_gets_eacces(tmp_path: Path) -> None:
    with namespace("gvisor-token", taps=(TAP,)) as ns, (tmp_path / "stderr.log").open("wb") as log:
        assert error_of(lambda: AgentClient.spawn(argv(ns), token="wrong", stderr=log, hello_timeout=30)) == "EACCES"


def test_exits_at_end_of_input(tmp_path: Path) -> None:
    with namespace("gvisor-eof", taps=(TAP,)) as ns, (tmp_path / "stderr.log").open("wb") as log:
        proc = subprocess.Popen(argv(ns), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log)
        try:
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write(b'{"id":1,"op":"hello","token":"%s"}\n' % TOKEN.encode())
            proc.stdin.flush()
            assert b'"ok":true' in proc.stdout.readline()
            proc.stdin.close()  # no bye
            assert proc.wait(timeout=5) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_close_ends_a_waiting_recv_with_ebadf(zoo: Zoo) -> None:
    listener = zoo.agent.call("listen", family="ipv4", port=0)
    port, sport, isn = listener["port"], next(_ports), 11_000_000
    accept = zoo.agent.submit("accept", sock=listener["sock"], timeout_ms=5000)
    opened(zoo, "ipv4", port, sport, isn)
    sock = accept.wait(6)["sock"]
    recv = zoo.agent.submit("recv", sock=sock, timeout_ms=5000)
    assert state(zoo, sock) == "ESTABLISHED" and not recv.done()
    zoo.agent.call("close", sock=sock)
    assert error_of(lambda: recv.wait(2)) == "EBADF"
    zoo.agent.call("close", sock=listener["sock"])


def test_syn_to_synack_latency(zoo: Zoo) -> None:
    """Median SYN -> SYN-ACK time of 20 probes, from the kernel timestamps of the two frames on the tap."""
    listener = zoo.agent.call("listen", family="ipv4", port=0)
    port, delays = listener["port"], []
    for i in range(20):
        sport, isn = next(_ports), 9_000_000 + i
        synack, delay = zoo.tester.round_trip("ipv4", syn(sport, port, isn), lambda t, s=sport: t.dport == s)
        assert synack[TCP].flags == "SA"
        delays.append(delay)
        zoo.tester.send("ipv4", TCP(sport=sport, dport=port, flags="R", seq=isn + 1))
    median = statistics.median(delays)
    print(f"\ngvisor SYN -> SYN-ACK median of 20: {median * 1e6:.0f} us (min {min(delays) * 1e6:.0f} us)")
    assert 0 < median < 0.5
    zoo.agent.call("close", sock=listener["sock"])


def test_stack_left_nothing_on_stderr_that_looks_like_a_crash(zoo: Zoo) -> None:
    text = zoo.log.read_text(errors="replace")
    assert "panic" not in text and "fatal" not in text.lower(), text[-2000:]
