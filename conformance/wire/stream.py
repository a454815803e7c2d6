"""The stream link: Ethernet frames over a UNIX or TCP socket, each preceded by its length as a 4-byte
big-endian number (QEMU's ``-netdev stream`` and passt use this framing).

The socket carries no timestamps: frames are stamped when read, and the tester's own frames when sent.
"""

from __future__ import annotations

import contextlib
import errno
import select
import socket
import struct
import time

from .ethernet import Neighbours
from .ethernet_link import EthernetLink
from .link import LinkDown, TargetClosedLink

MAX_FRAME = 65535 + 14


class StreamLink(EthernetLink):
    def __init__(self, sock: socket.socket, neighbours: Neighbours, name: str) -> None:
        poller = select.poll()
        poller.register(sock.fileno(), select.POLLIN)
        super().__init__(neighbours, poller)
        sock.setblocking(False)
        self.sock = sock
        self.name = name
        self._buffer = bytearray()

    @classmethod
    def connect(cls, address: str, neighbours: Neighbours, timeout: float = 5.0) -> StreamLink:
        """Connect to ``unix:PATH`` or ``HOST:PORT``, retrying until ``timeout`` while the peer starts."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                sock = _connect_once(address)
                return cls(sock, neighbours, address)
            except (FileNotFoundError, ConnectionRefusedError) as exc:
                if time.monotonic() >= deadline:
                    raise LinkDown(exc.errno, f"cannot connect the stream link {address}: {exc.strerror}") from None
                time.sleep(0.05)

    def _transmit(self, frame: bytes) -> None:
        data = struct.pack("!I", len(frame)) + frame
        self.sock.setblocking(True)
        try:
            self.sock.sendall(data)
        except OSError as exc:
            raise LinkDown(exc.errno or errno.EPIPE, f"stream link {self.name} is down: {exc}") from None
        finally:
            with contextlib.suppress(OSError):
                self.sock.setblocking(False)

    def _read_raw(self) -> tuple[bytes, float, bool] | None:
        frame = self._take_frame()
        if frame is not None:
            return frame, time.time(), False
        try:
            chunk = self.sock.recv(1 << 16)
        except BlockingIOError:
            return None
        except ConnectionResetError:
            raise TargetClosedLink(
                errno.ECONNRESET, f"the target reset its end of the stream link {self.name}"
            ) from None
        except OSError as exc:
            raise LinkDown(exc.errno, f"stream link {self.name} is down: {exc.strerror}") from None
        if not chunk:
            raise TargetClosedLink(errno.ECONNRESET, f"the target closed its end of the stream link {self.name}")
        self._buffer += chunk
        frame = self._take_frame()
        return (frame, time.time(), False) if frame is not None else None

    def _take_frame(self) -> bytes | None:
        if len(self._buffer) < 4:
            return None
        length = struct.unpack_from("!I", self._buffer)[0]
        if length > MAX_FRAME:
            raise LinkDown(errno.EPROTO, f"stream link {self.name}: frame length {length} is not a frame")
        if len(self._buffer) < 4 + length:
            return None
        frame = bytes(self._buffer[4 : 4 + length])
        del self._buffer[: 4 + length]
        return frame

    def fileno(self) -> int | None:
        return self.sock.fileno()

    def close(self) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self._poll.unregister(self.sock.fileno())
        self.sock.close()


def _connect_once(address: str) -> socket.socket:
    if address.startswith("unix:"):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        target: object = address[5:]
    else:
        host, _, port = address.rpartition(":")
        host = host.strip("[]")
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        target = (host, int(port))
    try:
        sock.connect(target)
    except OSError:
        sock.close()
        raise
    return sock
