"""The portable C agent (agent/c): what only it has, its build, its static binary and its --device transport.

The protocol scenarios it shares with the Python reference agent (stdio and --listen) are in
tests/test_agent.py, parametrized over both agents. Every test runs its agent in a namespace it creates
(198.18.0.0/15, 2001:2::/48) and removes afterwards.
"""

from __future__ import annotations

import os
import pty
import subprocess
import tty

import pytest

from conformance.upper_tester import AgentClient
from support.agent import ALLOW, PATTERN, agent_argv, build_c_agent, pair, recv_exactly


@pytest.mark.netns
def test_device_mode_over_a_pty(netns: str) -> None:
    """--device PATH (a virtio-serial port in a guest) is exercised with a raw pseudo-terminal."""
    build_c_agent()
    controller, device = pty.openpty()
    tty.setraw(device)
    proc = subprocess.Popen(
        agent_argv("c", netns, "--device", os.ttyname(device), "--once", *ALLOW), stdin=subprocess.DEVNULL
    )
    try:
        with open(controller, "rb", buffering=0) as reader, open(os.dup(controller), "wb", buffering=0) as writer:
            client = AgentClient(reader, writer, name="c-agent-device")
            try:
                client.hello = client.call("hello", timeout=10.0)
                assert client.hello["implementation"].startswith("c-agent/")
                _, conn, server, _, _ = pair(client)
                client.call("send", sock=conn, len=20)
                assert recv_exactly(client, server, 20) == (PATTERN * 2)[:20]
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
    binary = build_c_agent(target)
    readelf = subprocess.run(["readelf", "-l", str(binary)], capture_output=True, text=True, check=False).stdout
    assert "INTERP" not in readelf and "DYNAMIC" not in readelf, "the static build needs a dynamic loader"
    client = AgentClient.spawn(agent_argv("c", netns, "--stdio", *ALLOW, binary=binary))
    try:
        _, conn, server, _, _ = pair(client, "ipv6")
        assert client.call("send", sock=conn, data="static") == {"sent": 6}
        assert recv_exactly(client, server, 6) == b"static"
    finally:
        client.close()
