"""Fixtures shared by the project's own tests (helpers live in the ``support`` package beside this file)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from conformance.targets.netns import run
from support import netns_available
from support.agent import V4, V4_FORBIDDEN, V6
from support.zoo import namespace


@pytest.fixture
def netns() -> Iterator[str]:
    """A fresh namespace with lo up and the test addresses; deleted (its processes killed) afterwards."""
    reason = netns_available()
    if reason:
        pytest.skip(reason)
    with namespace("agent") as ns:
        run(["ip", "-n", ns, "link", "set", "lo", "up"])
        for addr in (f"{V4}/32", f"{V4_FORBIDDEN}/32"):
            run(["ip", "-n", ns, "addr", "add", addr, "dev", "lo"])
        run(["ip", "-n", ns, "addr", "add", f"{V6}/128", "dev", "lo", "nodad"])
        yield ns
