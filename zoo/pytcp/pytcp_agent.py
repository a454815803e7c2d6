"""Upper-tester agent (docs/agent-protocol.md, version 1) over PyTCP's own asyncio socket API.

Everything runs on one asyncio loop, the same loop the stack runs on: non-blocking ops are answered inline, each
blocking op (accept, connect, send, recv) is a task that races its socket's "closed" event and its deadline, so a
concurrent ``close`` ends it with EBADF and nothing holds up the reader. Written for Python 3.13 and the zoo venv; it
must not import the suite's package (only the reference agent's single, stdlib-only file).

What is not about PyTCP's sockets is the reference agent's (conformance/agent.py), imported from its file: `Config`
(the token check, in constant time, and the connect allow-list), `Gate` (reading a request line, the handshake, the id
and op checks), the answers and their errors, hello's fields and the argument checks. So this agent refuses, checks
and answers as the reference agent does; its ops, its errno names and its asyncio dispatch are its own.
"""

from __future__ import annotations

import asyncio
import base64
import struct
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pmd_pytcp.socket import (
    IPPROTO_IPV6,
    IPPROTO_TCP,
    IPV6_V6ONLY,
    SO_LINGER,
    SO_RCVBUF,
    SO_REUSEADDR,
    SO_SNDBUF,
    SOL_SOCKET,
    TCP_INFO,
    TCP_NODELAY,
    AddressFamily,
    SocketType,
    gaierror,
    socket,
)

# The reference agent is one stdlib-only file, importable by path (see the module head).
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "conformance"))
from agent import (
    Config,
    Gate,
    OpError,
    arg,
    error_response,
    hello_result,
    op_error,
    payload_arg,
    port_arg,
    response_line,
    timeout_arg,
)
from agent import errno_name as posix_errno_name

IMPLEMENTATION = "tcpconf-pytcp/0.1"
OPS = ["hello", "listen", "accept", "connect", "send", "recv", "shutdown", "close", "abort", "state", "bye"]
BLOCKING_OPS = {"accept", "connect", "send", "recv"}
FAMILIES = {"ipv4": AddressFamily.INET4, "ipv6": AddressFamily.INET6}
SHUT = {"rd": 0, "wr": 1, "rdwr": 2}
# PyTCP FsmState names -> RFC 9293 names (docs/agent-protocol.md 5.10).
STATE_NAMES = {"SYN_RCVD": "SYN-RECEIVED"}
UNSYNCHRONIZED = {"LISTEN", "SYN-SENT", "CLOSED"}
OPTION_BITS = [(1, "timestamps"), (2, "sack"), (4, "wscale"), (8, "ecn")]


def log(message: str) -> None:
    print(f"tcpconf-pytcp: {message}", file=sys.stderr, flush=True)


def errno_name(exc: OSError) -> str:
    """The reference agent's names, and PyTCP's errors without an errno: a failed address lookup is EINVAL, a
    timeout ETIMEDOUT."""
    if isinstance(exc, gaierror):
        return "EINVAL"
    if exc.errno is None and isinstance(exc, TimeoutError):
        return "ETIMEDOUT"
    return posix_errno_name(exc)


def state_of(sock: Any) -> dict:
    """The RFC 9293 state name and what PyTCP's TCP_INFO tells about the connection."""
    name = sock.state.name
    raw = sock.getsockopt(IPPROTO_TCP, TCP_INFO)
    code, _ca, _retr, _probes, _backoff, options, wscales, _flags, rto, _ato, snd_mss, rcv_mss = struct.unpack_from(
        "<8B4I", raw
    )
    state = STATE_NAMES.get(name, name.replace("_", "-"))
    if state in UNSYNCHRONIZED:  # nothing negotiated yet: PyTCP's TCP_INFO would show its own defaults
        return {"state": state, "info": {"state_code": code}}
    info = {
        "state_code": code,
        "options": [label for bit, label in OPTION_BITS if options & bit],
        "options_raw": options,
        "snd_wscale": wscales & 0x0F,
        "rcv_wscale": wscales >> 4,
        "rto": rto,
        "snd_mss": snd_mss,
        "rcv_mss": rcv_mss,
    }
    return {"state": state, "info": info}


@dataclass
class Entry:
    sock: Any
    closed: asyncio.Event = field(default_factory=asyncio.Event)


class Agent:
    """One stdio session: handshake state, the socket table, request dispatch."""

    def __init__(self, config: Config, platform: str, write: Callable[[bytes], None]) -> None:
        self.config = config
        self.gate = Gate(config, OPS)
        self.platform = platform
        self._write = write
        self.handles: dict[int, Entry] = {}
        self.next_handle = 0
        self.tasks: set[asyncio.Task] = set()

    # ---- framing ----

    def reply(self, req_id: Any, result: dict) -> None:
        self._write(response_line({"id": req_id, "ok": True, **result}))

    def reply_error(self, req_id: Any, exc: OpError) -> None:
        self._write(response_line(error_response(req_id, exc)))

    def handle_line(self, line: bytes) -> bool:
        """Handle one request line; False after ``bye``."""
        request = self.gate.admit(line, self.reply_error)
        if request is None:
            return True
        req_id, op, req = request
        if op in BLOCKING_OPS:
            task = asyncio.get_running_loop().create_task(self.run_async(req_id, op, req))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
            return True
        self.run(req_id, op, req)
        return op != "bye"

    def run(self, req_id: int, op: str, req: dict) -> None:
        try:
            result = getattr(self, "op_" + op)(req)
        except Exception as exc:  # one failing request costs that request only
            self.reply_error(req_id, op_error(op, exc, errno_name))
        else:
            self.reply(req_id, result)

    async def run_async(self, req_id: int, op: str, req: dict) -> None:
        try:
            result = await getattr(self, "op_" + op)(req)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.reply_error(req_id, op_error(op, exc, errno_name))
        else:
            self.reply(req_id, result)

    # ---- socket table ----

    def add(self, sock: Any) -> int:
        handle = self.next_handle
        self.next_handle += 1
        self.handles[handle] = Entry(sock)
        return handle

    def get(self, req: dict) -> Entry:
        handle = arg(req, "sock", int)
        entry = self.handles.get(handle)
        if entry is None:
            raise OpError("EBADF", f"no open socket with handle {handle}")
        return entry

    def pop(self, req: dict) -> Entry:
        entry = self.get(req)
        del self.handles[req["sock"]]
        entry.closed.set()
        return entry

    def close_all(self) -> None:
        for handle in list(self.handles):
            entry = self.handles.pop(handle)
            entry.closed.set()
            try:
                entry.sock.close()
            except Exception as exc:
                log(f"closing handle {handle}: {exc!r}")

    async def blocking(self, entry: Entry, work: Awaitable[Any], timeout: float, what: str) -> Any:
        """Await ``work`` unless the handle is closed (EBADF) or the deadline passes (ETIMEDOUT) first."""
        job = asyncio.ensure_future(work)
        closed = asyncio.ensure_future(entry.closed.wait())
        try:
            done, _ = await asyncio.wait({job, closed}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            closed.cancel()
        if job in done:
            return job.result()
        job.cancel()
        if closed in done:
            raise OpError("EBADF", "the socket was closed while waiting")
        raise OpError("ETIMEDOUT", f"{what} did not complete within the timeout")

    # ---- ops ----

    def op_hello(self, req: dict) -> dict:
        return hello_result(self.config, IMPLEMENTATION, self.platform, OPS)

    def op_bye(self, req: dict) -> dict:
        return {}

    def new_socket(self, req: dict) -> tuple[Any, AddressFamily]:
        family = FAMILIES.get(arg(req, "family", str))
        if family is None:
            raise OpError("EINVAL", "family must be ipv4 or ipv6")
        sock = socket(family, SocketType.STREAM)
        sock.setsockopt(SOL_SOCKET, SO_REUSEADDR, 1)
        if family is AddressFamily.INET6:
            sock.setsockopt(IPPROTO_IPV6, IPV6_V6ONLY, 1)
        for name, option in (("rcvbuf", SO_RCVBUF), ("sndbuf", SO_SNDBUF)):
            size = arg(req, name, int, None)
            if size is not None:
                if size <= 0:
                    raise OpError("EINVAL", f"{name} takes a positive number of bytes")
                sock.setsockopt(SOL_SOCKET, option, size)
        nodelay = arg(req, "nodelay", bool, None)
        if nodelay is not None:
            sock.setsockopt(IPPROTO_TCP, TCP_NODELAY, int(nodelay))
        return sock, family

    def op_listen(self, req: dict) -> dict:
        sock, family = self.new_socket(req)
        wildcard = "::" if family is AddressFamily.INET6 else "0.0.0.0"
        backlog = arg(req, "backlog", int, 16)
        if backlog <= 0:
            raise OpError("EINVAL", "backlog must be positive")
        sock.bind((arg(req, "addr", str, wildcard), port_arg(req, "port", 0)))
        sock.listen(backlog=backlog)
        return {"sock": self.add(sock), "port": sock.local_port}

    async def op_accept(self, req: dict) -> dict:
        entry = self.get(req)
        timeout = timeout_arg(req, 5000)
        child, peer = await self.blocking(entry, entry.sock.accept(), timeout, "accept")
        local = [str(child.local_ip_address), child.local_port]
        return {"sock": self.add(child), "peer": [peer[0], peer[1]], "local": local}

    async def op_connect(self, req: dict) -> dict:
        addr = arg(req, "addr", str)
        port = port_arg(req, "port")
        self.config.check_connect(addr)
        timeout = timeout_arg(req, 5000)
        sock, _family = self.new_socket(req)
        local_addr, local_port = arg(req, "local_addr", str, None), port_arg(req, "local_port", None)
        entry = Entry(sock)
        try:
            if local_addr is not None or local_port is not None:
                wildcard = "::" if sock.family is AddressFamily.INET6 else "0.0.0.0"
                sock.bind((local_addr or wildcard, local_port or 0))
            await self.blocking(entry, sock.connect((addr, port)), timeout, "connect")
        except BaseException:
            sock.close()
            raise
        local = [str(sock.local_ip_address), sock.local_port]
        peer = [str(sock.remote_ip_address), sock.remote_port]
        return {"sock": self.add(sock), "local": local, "peer": peer}

    async def op_send(self, req: dict) -> dict:
        entry = self.get(req)
        data = payload_arg(req)
        timeout = timeout_arg(req, 10000)
        sent = await self.blocking(entry, entry.sock.send(data), timeout, "send")
        return {"sent": sent}

    async def op_recv(self, req: dict) -> dict:
        entry = self.get(req)
        size = arg(req, "max", int, 65536)
        if size <= 0:
            raise OpError("EINVAL", "max must be positive")
        timeout = timeout_arg(req, 2000)
        data = await self.blocking(entry, entry.sock.recv(size), timeout, "recv")
        return {"data_b64": base64.b64encode(data).decode("ascii"), "len": len(data), "eof": not data}

    def op_shutdown(self, req: dict) -> dict:
        entry = self.get(req)
        how = SHUT.get(arg(req, "how", str))
        if how is None:
            raise OpError("EINVAL", "how must be rd, wr or rdwr")
        if entry.sock.tcp_session is None:
            raise OpError("ENOTCONN", "the socket is not connected")
        entry.sock.shutdown(how)
        return {}

    def op_close(self, req: dict) -> dict:
        self.pop(req).sock.close()
        return {}

    def op_abort(self, req: dict) -> dict:
        sock = self.pop(req).sock
        sock.setsockopt(SOL_SOCKET, SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
        return {}

    def op_state(self, req: dict) -> dict:
        return state_of(self.get(req).sock)
