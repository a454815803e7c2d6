"""The portable C agent (agent/c) as a drop-in for the Python reference agent on the Linux kernel.

The protocol scenarios of tests/test_agent.py that do not depend on the reference agent's internals run
here against both agents (``kind`` is "python" or "c"), so the two are held to the same expectations;
the C agent's own transports (TCP listener, character device) and its static build are tested after.
Every test runs its agents in a namespace it creates (198.18.0.0/15, 2001:2::/48) and removes afterwards.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import pty
import shutil
import socket
import subprocess
import sys
import time
import tty
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from test_agent import _error_of, _pair, _recv, _recv_exactly, _wait_state

from conformance.targets.netns import call_in_netns, create, delete, namespace_name, pids_in, run
from conformance.upper_tester import AgentClient, AgentError
from support import REPO, netns_available

C_DIR = REPO / "agent" / "c"
C_AGENT = C_DIR / "build" / "tcpconf-agent"
BUILDS = {
    "posix": C_DIR / "build" / "tcpconf-agent",
    "static": C_DIR / "build" / "tcpconf-agent-static",
    "static-musl": C_DIR / "build" / "tcpconf-agent-musl",
}
PY_AGENT = REPO / "conformance" / "agent.py"
V4, V6, V4_FORBIDDEN = "198.18.0.1", "2001:2::1", "198.18.0.2"
ADDRS = {"ipv4": V4, "ipv6": V6}
ALLOW = ("--allow-connect", V4, "--allow-connect", V6)
TOKEN = "correct-horse"
PATTERN = b"0123456789abcdef"
CORE_OPS = {"hello", "listen", "accept", "connect", "send", "recv", "shutdown", "close", "abort", "state", "bye"}

_names = itertools.count()


def _build(target: str) -> Path:
    """Build the C agent with its Makefile (once per session: make skips an up-to-date binary)."""
    if shutil.which("gcc") is None or shutil.which("make") is None:
        pytest.skip("building the C agent needs gcc and make")
    if target == "static-musl" and shutil.which("musl-gcc") is None:
        pytest.skip("the musl build needs musl-gcc (Debian package musl-tools)")
    proc = subprocess.run(["make", "-s", "-C", str(C_DIR), target], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"make {target} failed:\n{proc.stdout}\n{proc.stderr}"
    return BUILDS[target]


@pytest.fixture(scope="module")
def c_agent() -> Path:
    return _build("posix")


@pytest.fixture
def netns() -> Iterator[str]:
    """A namespace with lo up and the test addresses on it; its processes are killed when it is removed."""
    reason = netns_available()
    if reason:
        pytest.skip(reason)
    ns = namespace_name(f"cagent{next(_names)}")
    create(ns)
    try:
        run(["ip", "-n", ns, "link", "set", "lo", "up"])
        for addr in (f"{V4}/32", f"{V4_FORBIDDEN}/32"):
            run(["ip", "-n", ns, "addr", "add", addr, "dev", "lo"])
        run(["ip", "-n", ns, "addr", "add", f"{V6}/128", "dev", "lo", "nodad"])
        yield ns
    finally:
        for pid in pids_in(ns):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)
        delete(ns)


@pytest.fixture(params=["python", "c"])
def kind(request: pytest.FixtureRequest, c_agent: Path) -> str:
    return request.param


def _argv(kind: str, ns: str, *args: str, binary: Path = C_AGENT) -> list[str]:
    program = [str(binary)] if kind == "c" else [sys.executable, str(PY_AGENT)]
    return ["ip", "netns", "exec", ns, *program, *args]


@pytest.fixture
def spawn_agent(kind: str, netns: str) -> Iterator[Callable[..., AgentClient]]:
    clients: list[AgentClient] = []

    def spawn(*args: str, token: str | None = None) -> AgentClient:
        client = AgentClient.spawn(_argv(kind, netns, "--stdio", *args), token=token)
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
    data = "".join(line + "\n" for line in lines).encode()
    proc = subprocess.run(_argv(kind, ns, "--stdio", *args), input=data, capture_output=True, timeout=20)
    return [json.loads(line) for line in proc.stdout.splitlines()], proc.returncode


# ---- the reference agent's scenarios, for both agents ---------------------------------------------------


@pytest.mark.netns
def test_hello_describes_the_agent(agent: AgentClient, kind: str) -> None:
    hello = agent.hello
    assert hello["protocol"] == 1
    assert hello["implementation"].startswith(f"{kind}-agent/")
    assert hello["platform"].startswith("Linux-")
    assert CORE_OPS | {"sockopt"} <= set(hello["ops"])
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
def test_token_rejection_ends_the_agent_with_the_client(kind: str, netns: str) -> None:
    with pytest.raises(AgentError) as info:
        AgentClient.spawn(_argv(kind, netns, "--stdio", "--token", TOKEN), token="wrong")
    assert info.value.error == "EACCES" and info.value.op == "hello"
    assert pids_in(netns) == [], "the rejected agent is still running"


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
    assert status == 0


@pytest.mark.netns
def test_bye_ends_the_agent(agent: AgentClient) -> None:
    assert agent.call("bye") == {}
    assert agent.process is not None and agent.process.wait(timeout=5) == 0


@pytest.mark.netns
def test_invalid_arguments_get_einval(agent: AgentClient) -> None:
    sock = agent.call("listen", family="ipv4", addr=V4, port=0)["sock"]
    assert _error_of(lambda: agent.call("listen", family="ipx", addr=V4, port=0)) == "EINVAL"
    assert _error_of(lambda: agent.call("listen", family="ipv4", addr=V4, port=70000)) == "EINVAL"
    assert _error_of(lambda: agent.call("accept", sock="one")) == "EINVAL"
    assert _error_of(lambda: agent.call("accept", sock=sock, timeout_ms=-1)) == "EINVAL"
    assert _error_of(lambda: agent.call("send", sock=sock, data="x", len=3)) == "EINVAL"
    assert _error_of(lambda: agent.call("send", sock=sock, data_b64="!!")) == "EINVAL"
    assert _error_of(lambda: agent.call("shutdown", sock=sock, how="sideways")) == "EINVAL"
    assert _error_of(lambda: agent.call("connect", family="ipv4", addr="example.org", port=80)) == "EINVAL"


@pytest.mark.netns
@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_connect_accept_send_recv(agent: AgentClient, family: str) -> None:
    _, client, server, connected, accepted = _pair(agent, family)
    assert accepted["peer"] == connected["local"] and accepted["local"] == connected["peer"]
    assert connected["peer"][0] == ADDRS[family]
    assert agent.call("send", sock=client, data="hello, wörld") == {"sent": 13}
    assert _recv_exactly(agent, server, 13) == "hello, wörld".encode()
    payload = bytes(range(256))
    assert agent.call("send", sock=server, data_b64=base64.b64encode(payload).decode())["sent"] == 256
    assert _recv_exactly(agent, client, 256) == payload


@pytest.mark.netns
def test_send_len_sends_the_pattern(agent: AgentClient) -> None:
    _, client, server, _, _ = _pair(agent)
    assert agent.call("send", sock=client, len=100_000)["sent"] == 100_000
    assert _recv_exactly(agent, server, 100_000) == (PATTERN * 6250)[:100_000]


@pytest.mark.netns
def test_connect_from_a_chosen_local_port(agent: AgentClient) -> None:
    listener = agent.call("listen", family="ipv4", addr=V4, port=0)
    connected = agent.call("connect", family="ipv4", addr=V4, port=listener["port"], local_addr=V4, local_port=40123)
    assert connected["local"] == [V4, 40123]
    assert agent.call("accept", sock=listener["sock"], timeout_ms=2000)["peer"] == [V4, 40123]


@pytest.mark.netns
def test_recv_reports_eof_after_peer_shutdown_wr(agent: AgentClient) -> None:
    _, client, server, _, _ = _pair(agent)
    assert agent.call("shutdown", sock=client, how="wr") == {}
    data, result = _recv(agent, server)
    assert (data, result["len"], result["eof"]) == (b"", 0, True)
    assert agent.call("state", sock=server)["state"] == "CLOSE-WAIT"
    assert _wait_state(agent, client, {"FIN-WAIT-2"}) == "FIN-WAIT-2"
    assert agent.call("close", sock=server) == {}
    assert _recv(agent, client)[1]["eof"]
    assert _wait_state(agent, client, {"TIME-WAIT", "CLOSED"}) in {"TIME-WAIT", "CLOSED"}


@pytest.mark.netns
@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_connect_to_a_closed_port_is_refused(agent: AgentClient, family: str) -> None:
    assert _error_of(lambda: agent.call("connect", family=family, addr=ADDRS[family], port=9)) == "ECONNREFUSED"


@pytest.mark.netns
@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_recv_after_peer_abort_is_reset(agent: AgentClient, family: str) -> None:
    _, client, server, _, _ = _pair(agent, family)
    assert agent.call("abort", sock=server) == {}
    assert _error_of(lambda: agent.call("recv", sock=client, timeout_ms=2000)) == "ECONNRESET"
    assert agent.call("state", sock=client)["state"] == "CLOSED"


@pytest.mark.netns
def test_connect_outside_the_allow_list_is_eperm(agent: AgentClient) -> None:
    listener = agent.call("listen", family="ipv4", addr=V4_FORBIDDEN, port=0)
    call = lambda: agent.call("connect", family="ipv4", addr=V4_FORBIDDEN, port=listener["port"])  # noqa: E731
    assert _error_of(call) == "EPERM"
    assert _error_of(lambda: agent.call("accept", sock=listener["sock"], timeout_ms=100)) == "ETIMEDOUT"


@pytest.mark.netns
def test_connect_within_an_allowed_prefix_and_without_a_list(spawn_agent: Callable[..., AgentClient]) -> None:
    wide = spawn_agent("--allow-connect", "198.18.0.0/15")
    listener = wide.call("listen", family="ipv4", addr=V4_FORBIDDEN, port=0)
    assert wide.call("connect", family="ipv4", addr=V4_FORBIDDEN, port=listener["port"])["peer"][0] == V4_FORBIDDEN
    closed = spawn_agent()
    listener = closed.call("listen", family="ipv4", addr=V4, port=0)
    assert _error_of(lambda: closed.call("connect", family="ipv4", addr=V4, port=listener["port"])) == "EPERM"


@pytest.mark.netns
@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_state_names_and_tcp_info(agent: AgentClient, family: str) -> None:
    listener, client, server, _, _ = _pair(agent, family)
    assert agent.call("state", sock=listener)["state"] == "LISTEN"
    for sock in (client, server):
        result = agent.call("state", sock=sock)
        assert result["state"] == "ESTABLISHED"
        info = result["info"]
        assert {"timestamps", "sack", "wscale"} <= set(info["options"])
        assert info["snd_mss"] > 0 and info["rcv_mss"] > 0 and info["rto"] > 0
        assert 0 <= info["snd_wscale"] <= 14 and 0 <= info["rcv_wscale"] <= 14
    client_info = agent.call("state", sock=client)["info"]
    assert client_info["snd_wscale"] == agent.call("state", sock=server)["info"]["rcv_wscale"]


@pytest.mark.netns
def test_closed_or_unknown_handles_are_ebadf(agent: AgentClient) -> None:
    sock = agent.call("listen", family="ipv4", addr=V4, port=0)["sock"]
    assert agent.call("close", sock=sock) == {}
    assert _error_of(lambda: agent.call("state", sock=sock)) == "EBADF"
    assert _error_of(lambda: agent.call("close", sock=sock)) == "EBADF"
    assert _error_of(lambda: agent.call("recv", sock=999)) == "EBADF"
    assert agent.call("listen", family="ipv4", addr=V4, port=0)["sock"] != sock  # handles are not reused


@pytest.mark.netns
def test_sockopt(agent: AgentClient) -> None:
    _, client, _, _, _ = _pair(agent)
    assert agent.call("sockopt", sock=client, name="nodelay", value=True) == {}
    assert agent.call("sockopt", sock=client, name="rcvbuf", value=65536) == {}
    assert agent.call("sockopt", sock=client, name="linger", value=None) == {}
    assert _error_of(lambda: agent.call("sockopt", sock=client, name="color", value=1)) == "EINVAL"
    assert _error_of(lambda: agent.call("sockopt", sock=client, name="nodelay", value=3)) == "EINVAL"


@pytest.mark.netns
def test_accept_and_recv_time_out(agent: AgentClient) -> None:
    listener, client, _, _, _ = _pair(agent)
    started = time.monotonic()
    assert _error_of(lambda: agent.call("accept", sock=listener, timeout_ms=300)) == "ETIMEDOUT"
    assert 0.25 < time.monotonic() - started < 3.0
    assert _error_of(lambda: agent.call("recv", sock=client, timeout_ms=200)) == "ETIMEDOUT"


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
def test_close_ends_a_blocked_recv(agent: AgentClient) -> None:
    _, client, _, _, _ = _pair(agent)
    receiving = agent.submit("recv", sock=client, timeout_ms=20_000)
    time.sleep(0.1)
    assert agent.call("close", sock=client) == {}
    with pytest.raises(AgentError) as info:
        receiving.wait(3.0)
    assert info.value.error == "EBADF"


# ---- the C agent's own transports and builds -------------------------------------------------------------


def _connect_when_up(port: int, token: str | None) -> AgentClient:
    deadline = time.monotonic() + 10.0
    while True:
        try:
            return AgentClient.connect_tcp(V4, port, token, timeout=5.0)
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@pytest.mark.netns
def test_tcp_management_mode(netns: str, c_agent: Path) -> None:
    argv = _argv("c", netns, "--listen", f"{V4}:7070", "--token", TOKEN, *ALLOW)
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    try:
        client = call_in_netns(netns, lambda: _connect_when_up(7070, TOKEN))
        try:
            _, conn, server, _, _ = _pair(client, "ipv6")
            client.call("send", sock=conn, data="over tcp")
            assert _recv_exactly(client, server, 8) == b"over tcp"
            assert client.call("bye") == {}
        finally:
            client.close()
        again = call_in_netns(netns, lambda: _connect_when_up(7070, TOKEN))  # the next session: fresh sockets
        try:
            assert _error_of(lambda: again.call("state", sock=server)) == "EBADF"
        finally:
            again.close()
        with pytest.raises(AgentError) as info:
            call_in_netns(netns, lambda: _connect_when_up(7070, "wrong"))
        assert info.value.error == "EACCES"

        def rejected_session() -> bytes:
            with socket.create_connection((V4, 7070), timeout=5.0) as sock:
                sock.sendall(b'{"id": 1, "op": "state", "sock": 1}\n{"id": 2, "op": "hello"}\n')
                data = b""
                while chunk := sock.recv(4096):  # the agent closes the connection after the rejection
                    data += chunk
                return data

        assert [json.loads(line)["error"] for line in call_in_netns(netns, rejected_session).splitlines()] == ["EACCES"]
        assert proc.poll() is None, "the agent must keep serving after a rejected client"
    finally:
        proc.kill()
        proc.wait(timeout=5)


@pytest.mark.netns
def test_device_mode_over_a_pty(netns: str, c_agent: Path) -> None:
    """--device PATH (a virtio-serial port in a guest) is exercised with a raw pseudo-terminal."""
    controller, device = pty.openpty()
    tty.setraw(device)
    proc = subprocess.Popen(
        _argv("c", netns, "--device", os.ttyname(device), "--once", *ALLOW), stdin=subprocess.DEVNULL
    )
    try:
        with open(controller, "rb", buffering=0) as reader, open(os.dup(controller), "wb", buffering=0) as writer:
            client = AgentClient(reader, writer, name="c-agent-device")
            try:
                client.hello = client.call("hello", timeout=10.0)
                assert client.hello["implementation"].startswith("c-agent/")
                _, conn, server, _, _ = _pair(client)
                client.call("send", sock=conn, len=20)
                assert _recv_exactly(client, server, 20) == (PATTERN * 2)[:20]
                assert client.call("bye") == {}
                assert proc.wait(timeout=5) == 0  # --once: the end of the session ends the agent
            finally:
                client.close()
    finally:
        os.close(device)
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)


@pytest.mark.netns
@pytest.mark.parametrize("target", ["static", "static-musl"])
def test_static_build_is_self_contained_and_works(netns: str, target: str) -> None:
    binary = _build(target)
    readelf = subprocess.run(["readelf", "-l", str(binary)], capture_output=True, text=True, check=False).stdout
    assert "INTERP" not in readelf and "DYNAMIC" not in readelf, "the static build needs a dynamic loader"
    client = AgentClient.spawn(_argv("c", netns, "--stdio", *ALLOW, binary=binary))
    try:
        _, conn, server, _, _ = _pair(client, "ipv6")
        assert client.call("send", sock=conn, data="static") == {"sent": 6}
        assert _recv_exactly(client, server, 6) == b"static"
    finally:
        client.close()
