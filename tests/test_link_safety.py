"""The link refuses to send anything to an address not declared for the target."""

from __future__ import annotations

import os
import socket

import pytest

from conformance.wire.build import OutSegment, build_packet
from conformance.wire.tun import TunLink, UndeclaredDestination


@pytest.fixture
def link_and_pipe():
    """A TunLink whose 'TUN' is a pipe: what the link writes can be read back, nothing leaves."""
    read_end, write_end = os.pipe()
    capture_a, capture_b = socket.socketpair()
    link = TunLink(write_end, capture_a, "fake0")
    os.set_blocking(read_end, False)
    yield link, read_end
    link.close()
    capture_b.close()
    os.close(read_end)


def _syn(dst: str) -> bytes:
    family = "ipv6" if ":" in dst else "ipv4"
    src = "2001:2::2" if family == "ipv6" else "198.18.0.2"
    return build_packet(OutSegment(family, src, dst, 10000, 80, 1, 0, 0x02, 65535))


def test_nothing_is_sent_before_the_target_is_declared(link_and_pipe: tuple) -> None:
    link, read_end = link_and_pipe
    with pytest.raises(UndeclaredDestination):
        link.send(_syn("198.18.0.1"))
    with pytest.raises(BlockingIOError):
        os.read(read_end, 65535)


@pytest.mark.parametrize("dst", ["198.18.0.9", "192.0.2.1", "2001:2::9", "2001:db8::1"])
def test_undeclared_destinations_are_refused(link_and_pipe: tuple, dst: str) -> None:
    link, read_end = link_and_pipe
    link.allow("198.18.0.1", "2001:2::1")
    with pytest.raises(UndeclaredDestination):
        link.send(_syn(dst))
    with pytest.raises(BlockingIOError):
        os.read(read_end, 65535)


@pytest.mark.parametrize("dst", ["198.18.0.1", "2001:2::1"])
def test_declared_destinations_are_sent(link_and_pipe: tuple, dst: str) -> None:
    link, read_end = link_and_pipe
    link.allow("198.18.0.1", "2001:2::1")
    packet = _syn(dst)
    link.send(packet)
    assert os.read(read_end, 65535) == packet


def test_garbage_is_refused(link_and_pipe: tuple) -> None:
    link, _ = link_and_pipe
    link.allow("198.18.0.1")
    for junk in (b"", b"\x00" * 10, b"\x45" + b"\x00" * 10):
        with pytest.raises(UndeclaredDestination):
            link.send(junk)
