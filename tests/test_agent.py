"""Tests of the upper-tester agents and their client (conformance/upper_tester.py).

One set of protocol scenarios runs against both agents (``kind``): the Python reference agent
(conformance/agent.py) and the portable C agent (agent/c, built with its Makefile; its variants skip when
gcc or make is missing), so the two are held to the same expectations. Scenarios that need what only the
reference agent offers (TCP Fast Open, user_timeout_ms, Python 3.8) are marked ``python_only``; the C
agent's own builds and transports are in tests/test_c_agent.py.

Every test that moves TCP traffic runs its agents inside a network namespace it creates (addresses from
198.18.0.0/15 and 2001:2::/48 only) and removes that namespace afterwards, also on failure. Those tests
are marked ``netns`` and are skipped without root or ``ip``.
"""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import pytest

from conformance.targets.netns import call_in_netns, pids_in, run
from conformance.upper_tester import AgentClient, AgentError, AgentGone, AgentTimeout
from support.agent import (
    ADDRS,
    ALL_OPS,
    ALLOW,
    KINDS,
    PATTERN,
    PYTHON38,
    TOKEN,
    V4,
    V4_FORBIDDEN,
    V6,
    agent_argv,
    build_c_agent,
    pair,
    recv_exactly,
    recv_once,
)
from support.zoo import error_of

TcpAgent = tuple[subprocess.Popen, int]  # the agent process and its management port
python_only = pytest.mark.parametrize("kind", ["python"])  # overrides the ``kind`` fixture: the reference agent


# ---- fixtures and helpers ------------------------------------------------------------------------


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    """Which agent a scenario runs against; the C variant builds the agent first (or skips without gcc)."""
    if request.param == "c":
        build_c_agent()
    return request.param


@pytest.fixture
def spawn_agent(kind: str, netns: str) -> Iterator[Callable[..., AgentClient]]:
    """Start stdio agents of ``kind`` in the namespace; each is closed and checked to be gone at teardown."""
    clients: list[AgentClient] = []

    def spawn(*args: str, token: str | None = None, python: str = sys.executable) -> AgentClient:
        client = AgentClient.spawn(agent_argv(kind, netns, "--stdio", *args, python=python), token=token)
        clients.append(client)
        return client

    yield spawn
    for client in clients:
        client.close()
        assert client.process is not None and client.process.poll() is not None, "agent still running"


@pytest.fixture
def agent(spawn_agent: Callable[..., AgentClient]) -> AgentClient:
    return spawn_agent(*ALLOW)


def _raw_session(kind: str, ns: str, args: list[str], lines: list[str]) -> tuple[list[dict], int]:
    """Feed request lines to a stdio agent, close its stdin, and return its responses and exit status."""
    data = "".join(line + "\n" for line in lines).encode()
    proc = subprocess.run(agent_argv(kind, ns, "--stdio", *args), input=data, capture_output=True, timeout=20)
    return [json.loads(line) for line in proc.stdout.splitlines()], proc.returncode


def _wait_state(agent: AgentClient, sock: int, wanted: set[str], timeout: float = 3.0) -> str:
    """Poll ``state`` until it is one of ``wanted``; return the last state seen."""
    deadline = time.monotonic() + timeout
    while True:
        state = agent.call("state", sock=sock)["state"]
        if state in wanted or time.monotonic() > deadline:
            return state
        time.sleep(0.02)


def connect_tcp_when_up(port: int, token: str | None) -> AgentClient:
    deadline = time.monotonic() + 10.0
    while True:
        try:
            return AgentClient.connect_tcp(V4, port, token, timeout=5.0)
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@pytest.fixture
def tcp_agent(kind: str, netns: str) -> Iterator[TcpAgent]:
    """An agent of ``kind`` serving the management protocol on 198.18.0.1:7070 inside the namespace."""
    port = 7070
    argv = agent_argv(kind, netns, "--listen", f"{V4}:{port}", "--token", TOKEN, *ALLOW)
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    try:
        yield proc, port
    finally:
        proc.kill()
        proc.wait(timeout=5)


# ---- client library without network -----------------------------------------------------------------

FAKE_SILENT_AGENT = "import sys\nfor line in sys.stdin: pass\n"
FAKE_HELLO_THEN_SILENT = """
import json, sys
line = sys.stdin.readline()
print(json.dumps({"id": json.loads(line)["id"], "ok": True, "protocol": 1}), flush=True)
for line in sys.stdin: pass
"""


def test_spawn_of_an_agent_that_exits_raises_agent_gone() -> None:
    with pytest.raises(AgentGone) as info:
        AgentClient.spawn([sys.executable, "-c", "import sys; sys.exit(3)"])
    assert "exit status 3" in info.value.message


def test_unanswered_call_times_out_and_close_reaps_the_process() -> None:
    client = AgentClient.spawn([sys.executable, "-c", FAKE_HELLO_THEN_SILENT])
    try:
        assert client.hello == {"protocol": 1}
        started = time.monotonic()
        with pytest.raises(AgentTimeout) as info:
            client.call("state", timeout=0.2, sock=1)
        assert info.value.error == "AGENT-TIMEOUT" and info.value.op == "state"
        assert time.monotonic() - started < 2.0
    finally:
        client.close()
        client.close()  # idempotent
    assert client.process is not None and client.process.poll() is not None


def test_silent_agent_fails_the_handshake_with_a_timeout() -> None:
    started = time.monotonic()
    with pytest.raises(AgentTimeout):
        AgentClient.spawn([sys.executable, "-c", FAKE_SILENT_AGENT], hello_timeout=0.3)
    assert time.monotonic() - started < 5.0


# ---- handshake and framing ----------------------------------------------------------------------------


@pytest.mark.netns
def test_hello_describes_the_agent(agent: AgentClient, kind: str) -> None:
    hello = agent.hello
    assert hello["protocol"] == 1
    assert hello["implementation"].startswith(f"{kind}-agent/")
    assert hello["platform"].startswith("Linux-")
    assert set(ALL_OPS) <= set(hello["ops"])
    assert hello["allow_connect"] == [f"{V4}/32", f"{V6}/128"]


@pytest.mark.netns
def test_wrong_token_gets_eacces_for_every_request(kind: str, netns: str) -> None:
    lines = [
        json.dumps({"id": 1, "op": "hello", "token": "wrong"}),
        json.dumps({"id": 2, "op": "hello", "token": TOKEN}),
        json.dumps({"id": 3, "op": "listen", "family": "ipv4", "addr": V4, "port": 0}),
    ]
    responses, status = _raw_session(kind, netns, ["--token", TOKEN], lines)
    assert [(r["id"], r["ok"], r["error"]) for r in responses] == [(i, False, "EACCES") for i in (1, 2, 3)]
    assert status == 0


@pytest.mark.netns
def test_request_before_hello_gets_eacces(kind: str, netns: str) -> None:
    lines = [json.dumps({"id": 1, "op": "listen", "family": "ipv4", "addr": V4, "port": 0})]
    responses, _ = _raw_session(kind, netns, ["--token", TOKEN], lines)
    assert responses[0]["error"] == "EACCES"


@pytest.mark.netns
def test_token_rejection_ends_the_agent_with_the_client(kind: str, netns: str) -> None:
    with pytest.raises(AgentError) as info:
        AgentClient.spawn(agent_argv(kind, netns, "--stdio", "--token", TOKEN), token="wrong")
    assert info.value.error == "EACCES" and info.value.op == "hello"
    assert pids_in(netns) == [], "the rejected agent is still running"


@pytest.mark.netns
def test_matching_token_is_accepted(spawn_agent: Callable[..., AgentClient]) -> None:
    agent = spawn_agent("--token", TOKEN, *ALLOW, token=TOKEN)
    assert agent.call("listen", family="ipv4", addr=V4, port=0)["port"] > 0


@pytest.mark.netns
def test_malformed_lines_and_unknown_ops_get_einval(kind: str, netns: str) -> None:
    lines = [
        "this is not json",
        "[1, 2, 3]",
        json.dumps({"op": "hello"}),
        json.dumps({"id": "seven", "op": "hello"}),
        json.dumps({"id": 7, "op": "frobnicate"}),
        json.dumps({"id": 8, "op": "hello", "extra": {"nested": [1, {"x": None}]}, "t": "\u00e9\ud83d\ude00"}),
        "  " + json.dumps({"id": 9, "op": "state", "sock": 1}) + "\r",
    ]
    responses, status = _raw_session(kind, netns, [], lines)
    assert [(r["id"], r["ok"], r.get("error")) for r in responses] == [
        (None, False, "EINVAL"),
        (None, False, "EINVAL"),
        (None, False, "EINVAL"),
        (None, False, "EINVAL"),
        (7, False, "EINVAL"),
        (8, True, None),
        (9, False, "EBADF"),
    ]
    assert "frobnicate" in responses[4]["message"]
    assert status == 0  # and it exited at the end of its input


@pytest.mark.netns
def test_bye_ends_the_agent(agent: AgentClient) -> None:
    assert agent.call("bye") == {}
    assert agent.process is not None
    assert agent.process.wait(timeout=5) == 0


@pytest.mark.netns
def test_invalid_arguments_get_einval(agent: AgentClient) -> None:
    sock = agent.call("listen", family="ipv4", addr=V4, port=0)["sock"]
    assert error_of(lambda: agent.call("listen", family="ipx", addr=V4, port=0)) == "EINVAL"
    assert error_of(lambda: agent.call("listen", family="ipv4", addr=V4, port=70000)) == "EINVAL"
    assert error_of(lambda: agent.call("accept", sock="one")) == "EINVAL"
    assert error_of(lambda: agent.call("accept", sock=sock, timeout_ms=-1)) == "EINVAL"
    assert error_of(lambda: agent.call("send", sock=sock, data="x", len=3)) == "EINVAL"
    assert error_of(lambda: agent.call("send", sock=sock, data_b64="!!")) == "EINVAL"
    assert error_of(lambda: agent.call("shutdown", sock=sock, how="sideways")) == "EINVAL"
    assert error_of(lambda: agent.call("connect", family="ipv4", addr="example.org", port=80)) == "EINVAL"


# ---- connections ------------------------------------------------------------------------------------


@pytest.mark.netns
@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_listen_on_port_zero_returns_the_port(agent: AgentClient, family: str) -> None:
    result = agent.call("listen", family=family, addr=ADDRS[family], port=0)
    assert isinstance(result["sock"], int)
    assert 0 < result["port"] < 65536


@pytest.mark.netns
@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_connect_accept_sendrecv_once(agent: AgentClient, family: str) -> None:
    _, client, server, connected, accepted = pair(agent, family)
    assert accepted["peer"] == connected["local"]
    assert accepted["local"] == connected["peer"]
    assert connected["peer"][0] == ADDRS[family]

    assert agent.call("send", sock=client, data="hello, wörld") == {"sent": 13}
    assert recv_exactly(agent, server, 13) == "hello, wörld".encode()

    payload = bytes(range(256))
    assert agent.call("send", sock=server, data_b64=base64.b64encode(payload).decode())["sent"] == 256
    assert recv_exactly(agent, client, 256) == payload


@pytest.mark.netns
def test_send_len_sends_the_pattern(agent: AgentClient) -> None:
    _, client, server, _, _ = pair(agent)
    assert agent.call("send", sock=client, len=100_000)["sent"] == 100_000
    expected = (PATTERN * 6250)[:100_000]
    assert recv_exactly(agent, server, 100_000) == expected


@pytest.mark.netns
def test_connect_from_a_chosen_local_port(agent: AgentClient) -> None:
    listener = agent.call("listen", family="ipv4", addr=V4, port=0)
    connected = agent.call("connect", family="ipv4", addr=V4, port=listener["port"], local_addr=V4, local_port=40123)
    assert connected["local"] == [V4, 40123]
    accepted = agent.call("accept", sock=listener["sock"], timeout_ms=2000)
    assert accepted["peer"] == [V4, 40123]


@pytest.mark.netns
def test_recv_reports_eof_after_peer_shutdown_wr(agent: AgentClient) -> None:
    _, client, server, _, _ = pair(agent)
    assert agent.call("shutdown", sock=client, how="wr") == {}
    data, result = recv_once(agent, server)
    assert (data, result["len"], result["eof"]) == (b"", 0, True)
    assert agent.call("state", sock=server)["state"] == "CLOSE-WAIT"
    assert _wait_state(agent, client, {"FIN-WAIT-2"}) == "FIN-WAIT-2"

    assert agent.call("close", sock=server) == {}
    _, result = recv_once(agent, client)
    assert result["eof"]
    # Linux hands the connection to a time-wait socket and reports the user socket CLOSED.
    assert _wait_state(agent, client, {"TIME-WAIT", "CLOSED"}) in {"TIME-WAIT", "CLOSED"}


@pytest.mark.netns
@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_connect_to_a_closed_port_is_refused(agent: AgentClient, family: str) -> None:
    error = error_of(lambda: agent.call("connect", family=family, addr=ADDRS[family], port=9))
    assert error == "ECONNREFUSED"


@pytest.mark.netns
@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_recv_after_peer_abort_is_reset(agent: AgentClient, family: str) -> None:
    _, client, server, _, _ = pair(agent, family)
    assert agent.call("abort", sock=server) == {}
    assert error_of(lambda: agent.call("recv", sock=client, timeout_ms=2000)) == "ECONNRESET"
    assert agent.call("state", sock=client)["state"] == "CLOSED"


@pytest.mark.netns
def test_connect_outside_the_allow_list_is_eperm(agent: AgentClient) -> None:
    listener = agent.call("listen", family="ipv4", addr=V4_FORBIDDEN, port=0)
    call = lambda: agent.call("connect", family="ipv4", addr=V4_FORBIDDEN, port=listener["port"])  # noqa: E731
    assert error_of(call) == "EPERM"
    assert error_of(lambda: agent.call("accept", sock=listener["sock"], timeout_ms=100)) == "ETIMEDOUT"


@pytest.mark.netns
def test_connect_within_an_allowed_prefix_and_without_a_list(spawn_agent: Callable[..., AgentClient]) -> None:
    wide = spawn_agent("--allow-connect", "198.18.0.0/15")
    listener = wide.call("listen", family="ipv4", addr=V4_FORBIDDEN, port=0)
    assert wide.call("connect", family="ipv4", addr=V4_FORBIDDEN, port=listener["port"])["peer"][0] == V4_FORBIDDEN
    closed = spawn_agent()
    listener = closed.call("listen", family="ipv4", addr=V4, port=0)
    assert error_of(lambda: closed.call("connect", family="ipv4", addr=V4, port=listener["port"])) == "EPERM"


# ---- state and options ------------------------------------------------------------------------------


@pytest.mark.netns
@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_state_names_and_tcp_info(agent: AgentClient, family: str) -> None:
    listener, client, server, _, _ = pair(agent, family)
    assert agent.call("state", sock=listener)["state"] == "LISTEN"
    for sock in (client, server):
        result = agent.call("state", sock=sock)
        assert result["state"] == "ESTABLISHED"
        info = result["info"]
        assert {"timestamps", "sack", "wscale"} <= set(info["options"])  # Linux defaults over lo
        assert info["snd_mss"] > 0 and info["rcv_mss"] > 0 and info["rto"] > 0
        assert 0 <= info["snd_wscale"] <= 14 and 0 <= info["rcv_wscale"] <= 14
    client_info = agent.call("state", sock=client)["info"]
    server_info = agent.call("state", sock=server)["info"]
    assert client_info["snd_wscale"] == server_info["rcv_wscale"]


TCPI_OPT_SYN_DATA = 32  # Linux tcpi_options: data sent in the SYN was acknowledged by the SYN-ACK


def _fastopen_open(agent: AgentClient, family: str, listener: dict, data: str) -> tuple[dict, int]:
    """A Fast Open connect with ``data`` to ``listener``; the connect result and the accepted handle."""
    accepting = agent.submit("accept", sock=listener["sock"], timeout_ms=5000)
    connected = agent.call("connect", family=family, addr=ADDRS[family], port=listener["port"], fastopen=True,
                           data=data)  # fmt: skip
    return connected, accepting.wait(6.0)["sock"]


@pytest.mark.netns
@python_only
@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_fastopen_first_open_requests_a_cookie_then_the_next_carries_data_in_the_syn(
    netns: str, agent: AgentClient, family: str
) -> None:
    subprocess.run(["ip", "netns", "exec", netns, "sysctl", "-q", "-w", "net.ipv4.tcp_fastopen=3"], check=True)
    listener = agent.call("listen", family=family, addr=ADDRS[family], port=0, fastopen=8)

    first, server = _fastopen_open(agent, family, listener, "first")
    assert first["sent"] == 5
    assert recv_exactly(agent, server, 5) == b"first"
    assert not agent.call("state", sock=first["sock"])["info"]["options_raw"] & TCPI_OPT_SYN_DATA  # no cookie yet

    second, server = _fastopen_open(agent, family, listener, "second")
    assert recv_exactly(agent, server, 6) == b"second"
    assert agent.call("state", sock=second["sock"])["info"]["options_raw"] & TCPI_OPT_SYN_DATA  # data in the SYN


@pytest.mark.netns
@python_only
def test_fastopen_listener_without_server_support_still_accepts(agent: AgentClient) -> None:
    """With only the client bit of tcp_fastopen (Linux's default), the data goes after the handshake."""
    listener = agent.call("listen", family="ipv4", addr=V4, port=0, fastopen=8)
    for data in ("one", "two"):
        connected, server = _fastopen_open(agent, "ipv4", listener, data)
        assert recv_exactly(agent, server, 3) == data.encode()
        assert not agent.call("state", sock=connected["sock"])["info"]["options_raw"] & TCPI_OPT_SYN_DATA


@pytest.mark.netns
@python_only
def test_fastopen_arguments_are_checked(agent: AgentClient) -> None:
    listen = {"family": "ipv4", "addr": V4, "port": 0}
    assert error_of(lambda: agent.call("listen", **listen, fastopen=-1)) == "EINVAL"
    assert error_of(lambda: agent.call("listen", **listen, fastopen=True)) == "EINVAL"
    port = agent.call("listen", **listen)["port"]
    connect = {"family": "ipv4", "addr": V4, "port": port}
    assert error_of(lambda: agent.call("connect", **connect, fastopen=True)) == "EINVAL"  # no data
    assert error_of(lambda: agent.call("connect", **connect, fastopen=1, data="x")) == "EINVAL"
    assert error_of(lambda: agent.call("connect", **connect, fastopen=True, data="x", len=1)) == "EINVAL"


@pytest.mark.netns
@python_only
def test_user_timeout_ends_an_unanswered_connect(netns: str, spawn_agent: Callable[..., AgentClient]) -> None:
    """user_timeout_ms is R2: the stack gives up on its SYNs well before the agent's own timeout_ms."""
    sink = "198.18.9.2"  # out of one end of a veth pair inside the namespace; nothing owns it, nothing answers
    run(["ip", "-n", netns, "link", "add", "sink0", "type", "veth", "peer", "name", "sink1"])
    run(["ip", "-n", netns, "addr", "add", "198.18.9.1/24", "dev", "sink0"])
    for dev in ("sink0", "sink1"):
        run(["ip", "-n", netns, "link", "set", dev, "up"])
    run(["ip", "-n", netns, "neigh", "add", sink, "lladdr", "02:00:00:00:09:02", "dev", "sink0", "nud", "permanent"])
    agent = spawn_agent("--allow-connect", sink)
    started = time.monotonic()
    error = error_of(
        lambda: agent.call("connect", family="ipv4", addr=sink, port=80, user_timeout_ms=1500, timeout_ms=10_000)
    )
    assert error == "ETIMEDOUT"
    assert 1.4 < time.monotonic() - started < 6.0  # the stack's give-up, not the agent's 10 s
    assert error_of(lambda: agent.call("connect", family="ipv4", addr=sink, port=80, user_timeout_ms=0)) == "EINVAL"
    assert error_of(lambda: agent.call("connect", family="ipv4", addr=sink, port=80, user_timeout_ms="1")) == "EINVAL"


@pytest.mark.netns
def test_closed_or_unknown_handles_are_ebadf(agent: AgentClient) -> None:
    sock = agent.call("listen", family="ipv4", addr=V4, port=0)["sock"]
    assert agent.call("close", sock=sock) == {}
    assert error_of(lambda: agent.call("state", sock=sock)) == "EBADF"
    assert error_of(lambda: agent.call("close", sock=sock)) == "EBADF"
    assert error_of(lambda: agent.call("recv", sock=999)) == "EBADF"
    assert agent.call("listen", family="ipv4", addr=V4, port=0)["sock"] != sock  # handles are not reused


@pytest.mark.netns
def test_sockopt(agent: AgentClient) -> None:
    _, client, _, _, _ = pair(agent)
    assert agent.call("sockopt", sock=client, name="nodelay", value=True) == {}
    assert agent.call("sockopt", sock=client, name="rcvbuf", value=65536) == {}
    assert agent.call("sockopt", sock=client, name="linger", value=None) == {}
    assert error_of(lambda: agent.call("sockopt", sock=client, name="color", value=1)) == "EINVAL"
    assert error_of(lambda: agent.call("sockopt", sock=client, name="nodelay", value=3)) == "EINVAL"


# ---- timeouts and concurrency -----------------------------------------------------------------------


@pytest.mark.netns
def test_accept_without_a_connection_times_out(agent: AgentClient) -> None:
    listener = agent.call("listen", family="ipv4", addr=V4, port=0)["sock"]
    started = time.monotonic()
    assert error_of(lambda: agent.call("accept", sock=listener, timeout_ms=300)) == "ETIMEDOUT"
    assert 0.25 < time.monotonic() - started < 3.0


@pytest.mark.netns
def test_recv_without_data_times_out(agent: AgentClient) -> None:
    _, client, _, _, _ = pair(agent)
    assert error_of(lambda: agent.call("recv", sock=client, timeout_ms=200)) == "ETIMEDOUT"


@pytest.mark.netns
def test_blocking_accept_does_not_delay_other_requests(agent: AgentClient) -> None:
    listener = agent.call("listen", family="ipv4", addr=V4, port=0)
    accepting = agent.submit("accept", sock=listener["sock"], timeout_ms=10_000)
    started = time.monotonic()
    assert agent.call("state", sock=listener["sock"], timeout=2.0)["state"] == "LISTEN"
    assert time.monotonic() - started < 1.0
    assert not accepting.done()
    connected = agent.call("connect", family="ipv4", addr=V4, port=listener["port"])
    assert accepting.wait(5.0)["peer"] == connected["local"]


@pytest.mark.netns
def test_close_ends_a_blockedrecv_once(agent: AgentClient) -> None:
    _, client, _, _, _ = pair(agent)
    receiving = agent.submit("recv", sock=client, timeout_ms=20_000)
    time.sleep(0.1)
    assert agent.call("close", sock=client) == {}
    with pytest.raises(AgentError) as info:
        receiving.wait(3.0)
    assert info.value.error == "EBADF"


@pytest.mark.netns
def test_agent_death_fails_pending_calls_promptly(agent: AgentClient) -> None:
    listener, client, _, _, _ = pair(agent)
    pending = [
        agent.submit("accept", sock=listener, timeout_ms=30_000),
        agent.submit("recv", sock=client, timeout_ms=30_000),
    ]
    assert agent.process is not None
    agent.process.kill()
    started = time.monotonic()
    for call in pending:
        with pytest.raises(AgentGone) as info:
            call.wait(10.0)
        assert info.value.error == "AGENT-GONE"
    assert time.monotonic() - started < 3.0
    with pytest.raises(AgentGone):
        agent.call("state", sock=listener, timeout=10.0)
    assert not agent.alive
    agent.close()


# ---- other transports and interpreters --------------------------------------------------------------


@pytest.mark.netns
def test_tcp_management_mode(netns: str, tcp_agent: TcpAgent) -> None:
    _, port = tcp_agent
    client = call_in_netns(netns, lambda: connect_tcp_when_up(port, TOKEN))
    try:
        assert client.hello["protocol"] == 1
        _, conn, server, _, _ = pair(client, "ipv6")
        client.call("send", sock=conn, data="over tcp")
        assert recv_exactly(client, server, 8) == b"over tcp"
        assert client.call("bye") == {}
    finally:
        client.close()
    # The agent serves the next client after a bye; the sockets of the first are gone.
    again = call_in_netns(netns, lambda: connect_tcp_when_up(port, TOKEN))
    try:
        assert error_of(lambda: again.call("state", sock=server)) == "EBADF"
    finally:
        again.close()


@pytest.mark.netns
def test_tcp_management_mode_rejects_a_wrong_token(netns: str, tcp_agent: TcpAgent) -> None:
    proc, port = tcp_agent
    with pytest.raises(AgentError) as info:
        call_in_netns(netns, lambda: connect_tcp_when_up(port, "wrong"))
    assert info.value.error == "EACCES"

    def raw_attempt() -> bytes:
        with socket.create_connection((V4, port), timeout=5.0) as sock:
            sock.sendall(b'{"id": 1, "op": "state", "sock": 1}\n{"id": 2, "op": "hello"}\n')
            data = b""
            while chunk := sock.recv(4096):  # the agent closes the connection after the rejection
                data += chunk
            return data

    lines = call_in_netns(netns, raw_attempt).splitlines()
    assert [json.loads(line)["error"] for line in lines] == ["EACCES"]
    assert proc.poll() is None, "the agent must keep serving after a rejected client"


@pytest.mark.netns
@pytest.mark.skipif(not PYTHON38.exists(), reason=f"Python 3.8 not found at {PYTHON38}")
@python_only
def test_agent_runs_on_python_38(spawn_agent: Callable[..., AgentClient]) -> None:
    agent = spawn_agent(*ALLOW, python=str(PYTHON38))
    assert agent.call("hello")["python"].startswith("3.8")
    _, client, server, _, _ = pair(agent, "ipv6")
    agent.call("send", sock=client, len=10)
    assert recv_exactly(agent, server, 10) == b"0123456789"
    assert agent.call("state", sock=server)["state"] == "ESTABLISHED"
