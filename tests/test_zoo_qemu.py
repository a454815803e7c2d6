"""The QEMU zoo target (zoo/qemu): Linux 6.1 under TCG, its NIC a stream socket, its agent on virtio-serial.

Boots one guest for the module, talks to the agent over WORKDIR/agent.sock and plays the remote TCP peer with
raw Ethernet frames over WORKDIR/net.sock. Run `bash zoo/qemu/build.sh` first; `-s` shows the measurements.
"""

from __future__ import annotations

import base64
import itertools
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6
from scapy.packet import Packet, Raw

from conformance.upper_tester import AgentClient
from support.zoo import FAMILIES, TARGET, TESTER, SegmentTester, error_of

ZOO = Path(__file__).resolve().parent.parent / "zoo" / "qemu"
sys.path.insert(0, str(ZOO))
import qemu_guest  # noqa: E402

TOKEN = "zoo-qemu-test"
# applied by the kernel (timestamps), only by /init (eth0 exists after the kernel's pass), one with spaces
SYSCTLS = {"net.ipv4.tcp_timestamps": 0, "net.ipv6.conf.eth0.hop_limit": 33, "net.ipv4.tcp_rmem": "4096 65536 1048576"}
AGENT_KIND_FILE = qemu_guest.BUILD_DIR / "agent-kind"


def _missing() -> str | None:
    if not (qemu_guest.KERNEL.is_file() and qemu_guest.INITRD.is_file()):
        return "zoo/qemu not built (run: bash zoo/qemu/build.sh)"
    for tool in ("qemu-system-x86_64", "unshare"):
        if shutil.which(tool) is None:
            return f"{tool} not installed (run: bash zoo/qemu/build.sh)"
    if os.geteuid() != 0:
        return "needs root (unshare --net)"
    return None


def _agent_kind() -> str:
    try:
        return AGENT_KIND_FILE.read_text().strip()
    except OSError:
        return "missing"


pytestmark = pytest.mark.skipif(_missing() is not None, reason=str(_missing()))
needs_c_agent = pytest.mark.skipif(
    _agent_kind() != "c-agent", reason="initramfs built with the hello-only stand-in agent (agent/c was missing)"
)
_ports = itertools.count(random.randrange(20000, 60000, 100))


def _measure(what: str, value: str) -> None:
    print(f"\nMEASURED {what}: {value}")


@pytest.fixture(scope="module")
def guest(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[qemu_guest.QemuGuest, float]]:
    g = qemu_guest.QemuGuest(tmp_path_factory.mktemp("qemu"), sysctls=SYSCTLS, token=TOKEN)
    started = time.monotonic()
    g.start()
    try:
        yield g, started
    finally:
        g.stop()
        assert g.process is not None and g.process.poll() is not None, "QEMU still running after stop()"


@pytest.fixture(scope="module")
def link(guest: tuple[qemu_guest.QemuGuest, float]) -> Iterator[SegmentTester]:
    tester = SegmentTester.on_stream(guest[0].net_sock)
    try:
        yield tester
    finally:
        tester.close()


@pytest.fixture(scope="module")
def agent(guest: tuple[qemu_guest.QemuGuest, float]) -> Iterator[AgentClient]:
    client = qemu_guest.connect_agent(guest[0].agent_sock, TOKEN)
    try:
        yield client
    finally:
        client.close()


def test_boots_to_hello(guest: tuple[qemu_guest.QemuGuest, float]) -> None:
    """The guest boots and its agent answers hello on the virtio-serial port; the console shows /init's report."""
    g, started = guest
    with qemu_guest.connect_agent(g.agent_sock, TOKEN) as client:
        boot = time.monotonic() - started
        assert client.hello["protocol"] == 1
        assert "6.1.0" in client.hello["platform"], client.hello
        assert "hello" in client.hello["ops"]
    console = g.console_log.read_text(errors="replace")
    for key, value in SYSCTLS.items():
        assert f"tcpconf-init: sysctl {key}={value}\n" in console, console[-2000:]
    ready = re.search(r"tcpconf-init: ready: eth0 02:00:00:00:00:01, .* uptime ([0-9.]+) s", console)
    assert ready, console[-2000:]
    _measure("QEMU start to agent hello", f"{boot:.2f} s; guest uptime at /init's ready {ready.group(1)} s")


@needs_c_agent
def test_bad_token_is_refused(guest: tuple[qemu_guest.QemuGuest, float]) -> None:
    assert error_of(lambda: qemu_guest.connect_agent(guest[0].agent_sock, "not-the-token").close()) == "EACCES"


@pytest.mark.parametrize("family", FAMILIES)
def test_syn_to_closed_port_gets_rst(link: SegmentTester, family: str) -> None:
    """No listener: the SYN is answered with RST+ACK acknowledging it (seq 0, ack = ISS + 1)."""
    latencies = []
    for _ in range(10):
        sport, iss = next(_ports), random.randrange(2**32)
        rst, latency = link.round_trip(family, _segment(sport, 9, "S", iss), lambda t, s=sport: t.dport == s, 5.0)
        assert str(rst[TCP].flags) == "RA"
        assert rst[TCP].seq == 0 and rst[TCP].ack == (iss + 1) % 2**32
        if family == "ipv6":
            assert rst[IPv6].hlim == 33, "the sysctl net.ipv6.conf.eth0.hop_limit=33 was not applied"
        latencies.append(latency)
    _measure(f"SYN -> RST, closed port, {family}", _summary(latencies))


def _segment(sport: int, dport: int, flags: str, seq: int, ack: int = 0, payload: bytes = b"") -> Packet:
    """A segment from the tester to the guest (MSS 1460 on SYNs)."""
    options = [("MSS", 1460)] if "S" in flags else []
    return TCP(sport=sport, dport=dport, flags=flags, seq=seq, ack=ack, window=65535, options=options) / payload


def _from_guest(link: SegmentTester, family: str, flags: str, dport: int, timeout: float = 3.0) -> Packet:
    """The next packet from the guest carrying a TCP segment to ``dport`` whose flags are exactly ``flags``."""
    layer = IP if family == "ipv4" else IPv6

    def match(packet: Packet) -> bool:
        return (
            isinstance(packet, layer)
            and TCP in packet
            and packet[TCP].dport == dport
            and str(packet[TCP].flags) == flags
        )

    return link.expect(match, timeout, f"{flags} segment to port {dport} ({family})")[0]


def _summary(latencies: list[float]) -> str:
    ms = sorted(x * 1000 for x in latencies)
    spread = f"min {ms[0]:.2f}, max {ms[-1]:.2f}"
    return f"median {statistics.median(ms):.2f} ms, {spread} (n={len(ms)}; a run's first may wait for ARP/NS)"


def _state(agent: AgentClient, sock: int) -> str:
    return agent.call("state", sock=sock)["state"]


@needs_c_agent
@pytest.mark.parametrize("family", FAMILIES)
def test_passive_open_data_and_fin(agent: AgentClient, link: SegmentTester, family: str) -> None:
    tester, guest_addr = TESTER[family], TARGET[family]
    listener = agent.call("listen", family=family, addr=guest_addr, port=0)
    port = listener["port"]
    assert _state(agent, listener["sock"]) == "LISTEN"
    accept = agent.submit("accept", sock=listener["sock"], timeout_ms=8000)

    sport, iss = next(_ports), random.randrange(2**32)
    link.send(family, _segment(sport, port, "S", iss))
    synack = _from_guest(link, family, "SA", sport)
    assert synack[TCP].ack == (iss + 1) % 2**32
    snd, rcv = (iss + 1) % 2**32, (synack[TCP].seq + 1) % 2**32
    link.send(family, _segment(sport, port, "A", snd, rcv))
    conn = accept.wait(10.0)
    assert conn["peer"] == [tester, sport] and conn["local"] == [guest_addr, port]
    sock = conn["sock"]
    assert _state(agent, sock) == "ESTABLISHED"

    # target -> tester
    assert agent.call("send", sock=sock, data="hello")["sent"] == 5
    data, _ = link.expect(lambda p: TCP in p and p[TCP].dport == sport and Raw in p, what="data from the guest")
    assert data[Raw].load == b"hello" and data[TCP].seq == rcv
    rcv = (rcv + 5) % 2**32
    link.send(family, _segment(sport, port, "A", snd, rcv))
    # tester -> target
    link.send(family, _segment(sport, port, "PA", snd, rcv, b"world"))
    got = agent.call("recv", sock=sock, timeout_ms=3000)
    assert base64.b64decode(got["data_b64"]) == b"world" and not got["eof"]
    snd = (snd + 5) % 2**32

    # the tester closes first: FIN is acknowledged, recv sees end-of-file, the socket is in CLOSE-WAIT
    link.send(family, _segment(sport, port, "FA", snd, rcv))
    link.expect(
        lambda p: TCP in p and p[TCP].dport == sport and p[TCP].ack == (snd + 1) % 2**32 and "F" not in p[TCP].flags,
        what="ACK of the tester's FIN",
    )
    snd = (snd + 1) % 2**32
    assert agent.call("recv", sock=sock, timeout_ms=3000)["eof"] is True
    assert _state(agent, sock) == "CLOSE-WAIT"
    agent.call("close", sock=sock)
    fin = _from_guest(link, family, "FA", sport)
    assert fin[TCP].seq == rcv and fin[TCP].ack == snd
    link.send(family, _segment(sport, port, "A", snd, (rcv + 1) % 2**32))
    agent.call("close", sock=listener["sock"])


@needs_c_agent
@pytest.mark.parametrize("family", FAMILIES)
def test_active_open_then_abort(agent: AgentClient, link: SegmentTester, family: str) -> None:
    tester, guest_addr = TESTER[family], TARGET[family]
    tport = next(_ports)
    connect = agent.submit("connect", family=family, addr=tester, port=tport, timeout_ms=8000)
    syn = _from_guest(link, family, "S", tport, timeout=8.0)
    gport, giss = syn[TCP].sport, syn[TCP].seq
    iss = random.randrange(2**32)
    link.send(family, _segment(tport, gport, "SA", iss, (giss + 1) % 2**32))
    link.expect(
        lambda p: TCP in p and p[TCP].dport == tport and str(p[TCP].flags) == "A" and p[TCP].ack == (iss + 1) % 2**32,
        what="ACK of the tester's SYN-ACK",
    )
    conn = connect.wait(10.0)
    assert conn["peer"] == [tester, tport] and conn["local"] == [guest_addr, gport]
    assert _state(agent, conn["sock"]) == "ESTABLISHED"
    agent.call("abort", sock=conn["sock"])
    rst, _ = link.expect(lambda p: TCP in p and p[TCP].dport == tport and "R" in p[TCP].flags, what="RST of abort")
    assert rst[TCP].seq == (giss + 1) % 2**32
    assert error_of(lambda: _state(agent, conn["sock"])) == "EBADF"


@needs_c_agent
def test_connect_outside_allow_list_is_refused(agent: AgentClient) -> None:
    assert (
        error_of(lambda: agent.call("connect", family="ipv4", addr="198.18.0.3", port=80, timeout_ms=1000)) == "EPERM"
    )


@needs_c_agent
@pytest.mark.parametrize("family", FAMILIES)
def test_syn_to_syn_ack_latency(agent: AgentClient, link: SegmentTester, family: str) -> None:
    """20 SYNs to a listener: each gets a SYN-ACK (then the tester resets the half-open connection)."""
    listener = agent.call("listen", family=family, addr=TARGET[family], port=0, backlog=64)
    latencies = []
    try:
        for _ in range(20):
            sport, iss = next(_ports), random.randrange(2**32)
            syn = _segment(sport, listener["port"], "S", iss)
            synack, latency = link.round_trip(family, syn, lambda t, s=sport: t.dport == s)
            assert str(synack[TCP].flags) == "SA"
            assert synack[TCP].ack == (iss + 1) % 2**32
            assert "Timestamp" not in dict(synack[TCP].options), "the sysctl net.ipv4.tcp_timestamps=0 was not applied"
            latencies.append(latency)
            link.send(family, _segment(sport, listener["port"], "R", (iss + 1) % 2**32))
    finally:
        agent.call("close", sock=listener["sock"])
    _measure(f"SYN -> SYN-ACK, {family}", _summary(latencies))


def test_run_command_execs_qemu_that_dies_with_its_parent(tmp_path: Path) -> None:
    """`qemu_guest.py run --die-with-parent` becomes QEMU itself (same PID) and QEMU ends when its parent does."""
    script = (
        "import subprocess, sys\n"
        f"p = subprocess.Popen([sys.executable, {str(ZOO / 'qemu_guest.py')!r}, 'run', {str(tmp_path)!r},"
        " '--die-with-parent'], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
        f"import os, time\nwhile not os.path.exists({str(tmp_path / 'agent.sock')!r}): time.sleep(0.02)\n"
        "print(p.pid, open(f'/proc/{p.pid}/comm').read().strip(), flush=True)\n"
    )
    parent = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30, check=True)
    pid_text, comm = parent.stdout.split()
    pid = int(pid_text)
    assert comm.startswith("qemu-system"), comm
    deadline = time.monotonic() + 5.0
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    alive = Path(f"/proc/{pid}").exists()
    if alive:
        os.kill(pid, 9)
    assert not alive, "QEMU outlived the process that started it"
