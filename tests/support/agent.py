"""The upper-tester agents under test: where they are, how to build and start them, and small protocol helpers
shared by tests/test_agent.py and tests/test_c_agent.py."""

from __future__ import annotations

import base64
import functools
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conformance.upper_tester import AgentClient
from support import REPO

PY_AGENT = REPO / "conformance" / "agent.py"
C_DIR = REPO / "agent" / "c"
C_AGENT = C_DIR / "build" / "tcpconf-agent"
C_BUILDS = {"posix": C_AGENT, "static": C_DIR / "build" / "tcpconf-agent-static",
            "static-musl": C_DIR / "build" / "tcpconf-agent-musl"}  # fmt: skip
KINDS = ("python", "c")
V4, V6 = "198.18.0.1", "2001:2::1"
V4_FORBIDDEN = "198.18.0.2"  # configured in the namespace, but not in the agent's --allow-connect list
ADDRS = {"ipv4": V4, "ipv6": V6}
TOKEN = "correct-horse"
ALLOW = ("--allow-connect", V4, "--allow-connect", V6)
PYTHON38 = Path.home() / ".pyenv" / "versions" / "3.8.18" / "bin" / "python"
PATTERN = b"0123456789abcdef"
ALL_OPS = ("hello", "listen", "accept", "connect", "send", "recv", "shutdown", "close", "abort", "state")
ALL_OPS += ("sockopt", "bye")


@functools.cache
def _make(target: str) -> tuple[Path | None, str]:
    """Build the C agent with its Makefile once per session: (binary, "") or (None, why it cannot be built)."""
    if shutil.which("gcc") is None or shutil.which("make") is None:
        return None, "building the C agent needs gcc and make"
    if target == "static-musl" and shutil.which("musl-gcc") is None:
        return None, "the musl build needs musl-gcc (Debian package musl-tools)"
    proc = subprocess.run(["make", "-s", "-C", str(C_DIR), target], capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        return None, f"make {target} failed:\n{proc.stdout}\n{proc.stderr}"
    return C_BUILDS[target], ""


def build_c_agent(target: str = "posix") -> Path:
    """The C agent's binary (``posix``, ``static`` or ``static-musl``); skips without the compiler, fails when the
    build does."""
    binary, why = _make(target)
    if binary is None:
        if why.startswith("make "):
            pytest.fail(why)
        pytest.skip(why)
    return binary


def agent_argv(kind: str, ns: str, *args: str, binary: Path = C_AGENT, python: str = sys.executable) -> list[str]:
    """The command line of an agent of ``kind`` inside namespace ``ns``."""
    program = [str(binary)] if kind == "c" else [python, str(PY_AGENT)]
    return ["ip", "netns", "exec", ns, *program, *args]


def pair(agent: AgentClient, family: str = "ipv4") -> tuple[int, int, int, dict, dict]:
    """Listener, connected and accepted socket handles, plus the connect and accept results."""
    addr = ADDRS[family]
    listener = agent.call("listen", family=family, addr=addr, port=0)
    accepting = agent.submit("accept", sock=listener["sock"], timeout_ms=5000)
    connected = agent.call("connect", family=family, addr=addr, port=listener["port"])
    accepted = accepting.wait(6.0)
    return listener["sock"], connected["sock"], accepted["sock"], connected, accepted


def recv_once(agent: AgentClient, sock: int, **args: Any) -> tuple[bytes, dict]:
    result = agent.call("recv", sock=sock, **args)
    return base64.b64decode(result["data_b64"]), result


def recv_exactly(agent: AgentClient, sock: int, length: int) -> bytes:
    data = b""
    while len(data) < length:
        chunk, result = recv_once(agent, sock)
        assert not result["eof"], f"eof after {len(data)} of {length} bytes"
        data += chunk
    return data
