#!/usr/bin/env python3
"""Upper-tester agent of the TCP conformance suite.

Drives the TCP stack of the host it runs on at the request of the suite: it opens, connects, reads,
writes, shuts down and closes sockets and reports their TCP state. The protocol is JSON Lines over
stdin/stdout (``--stdio``) or over one TCP connection at a time (``--listen HOST:PORT``); it is
described in docs/agent-protocol.md.

This file is copied alone to remote hosts: it uses only the standard library, runs on Python 3.8+
(Linux, the BSDs, macOS, Windows) and must not import the ``conformance`` package.

It is also the library of the other agents written in Python: the zoo's PyTCP agent (zoo/pytcp/pytcp_agent.py)
imports this file by path for everything a session does before and after its ops (the token check and the other
request checks in `Gate`, the answers, hello's fields, the argument checks), so that every Python
agent refuses and answers alike. Keep those names and signatures when changing them, and keep them free of the
threads and sockets of `Session`.
"""

from __future__ import annotations

import argparse
import base64
import errno
import hmac
import ipaddress
import json
import os
import platform
import select
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, BinaryIO

VERSION = "1.0.0"
PROTOCOL = 1
PATTERN = b"0123456789abcdef"
POLL_SLICE = 0.1  # seconds: blocking waits wake up this often to notice that their socket was closed

OPS = (
    "hello", "listen", "accept", "connect", "send", "recv", "shutdown", "close", "abort", "state",
    "sockopt", "bye",
)  # fmt: skip
# Ops that may wait on the network (or on a lingering close): each runs in its own thread.
THREADED_OPS = frozenset(["accept", "connect", "send", "recv", "close"])
# Optional request arguments this agent honours (hello's "features"): cases that need one require ut.<feature>.
FEATURES = ("user_timeout", "fastopen")

FAMILIES = {"ipv4": socket.AF_INET, "ipv6": socket.AF_INET6}
SHUTDOWN_HOW = {"rd": socket.SHUT_RD, "wr": socket.SHUT_WR, "rdwr": socket.SHUT_RDWR}
WSAEWOULDBLOCK = 10035
IN_PROGRESS = frozenset([errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EALREADY, WSAEWOULDBLOCK])
BOOL_OPTIONS = {
    "nodelay": (socket.IPPROTO_TCP, socket.TCP_NODELAY),
    "keepalive": (socket.SOL_SOCKET, socket.SO_KEEPALIVE),
}
LINGER = struct.Struct("HH" if os.name == "nt" else "ii")

LINUX_STATES = {
    1: "ESTABLISHED", 2: "SYN-SENT", 3: "SYN-RECEIVED", 4: "FIN-WAIT-1", 5: "FIN-WAIT-2", 6: "TIME-WAIT",
    7: "CLOSED", 8: "CLOSE-WAIT", 9: "LAST-ACK", 10: "LISTEN", 11: "CLOSING",
}  # fmt: skip
BSD_STATES = {
    0: "CLOSED", 1: "LISTEN", 2: "SYN-SENT", 3: "SYN-RECEIVED", 4: "ESTABLISHED", 5: "CLOSE-WAIT",
    6: "FIN-WAIT-1", 7: "CLOSING", 8: "LAST-ACK", 9: "FIN-WAIT-2", 10: "TIME-WAIT",
}  # fmt: skip
OPTION_BITS = ((1, "timestamps"), (2, "sack"), (4, "wscale"), (8, "ecn"))

# Linux struct tcp_info up to tcpi_total_retrans (104 bytes): 8 bytes, then 24 u32 in this order.
LINUX_TCP_INFO = struct.Struct("=8B24I")
LINUX_U32_FIELDS = (
    "rto", "ato", "snd_mss", "rcv_mss", "unacked", "sacked", "lost", "retrans", "fackets",
    "last_data_sent", "last_ack_sent", "last_data_recv", "last_ack_recv", "pmtu", "rcv_ssthresh",
    "rtt", "rttvar", "snd_ssthresh", "snd_cwnd", "advmss", "reordering", "rcv_rtt", "rcv_space",
    "total_retrans",
)  # fmt: skip
FREEBSD_TCP_INFO = (32, struct.Struct("=8B4I"))  # TCP_INFO; same leading layout as Linux
DARWIN_TCP_CONNECTION_INFO = (0x106, struct.Struct("=4B4I"))  # state, snd/rcv wscale, pad, options, ...

_REQUIRED = object()


def log(message: str) -> None:
    """Diagnostics go to stderr: stdout carries protocol lines only."""
    sys.stderr.write(f"agent[{os.getpid()}]: {message}\n")
    sys.stderr.flush()


class OpError(Exception):
    """A failed request; ``error`` is the errno-style name sent back, ``extra`` more response fields."""

    def __init__(self, error: str, message: str, **extra: Any) -> None:
        super().__init__(f"{error}: {message}")
        self.error = error
        self.message = message
        self.extra = extra


def errno_name(exc: OSError) -> str:
    """The symbolic name of an OSError's errno; Windows' WSAECONNREFUSED becomes ECONNREFUSED."""
    code = exc.errno
    if code is None:
        return "EIO"
    name = errno.errorcode.get(code, f"E{code}")
    return name[3:] if name.startswith("WSAE") else name


# ---- request arguments -------------------------------------------------------------------------------


def arg(req: dict, name: str, kind: type | tuple[type, ...], default: Any = _REQUIRED) -> Any:
    """Argument ``name`` of a request, checked against ``kind`` (bools are not integers here)."""
    value = req.get(name)
    if value is None:
        if default is _REQUIRED:
            raise OpError("EINVAL", f"missing argument '{name}'")
        return default
    wrong_bool = isinstance(value, bool) and kind is not bool
    if wrong_bool or not isinstance(value, kind):
        raise OpError("EINVAL", f"argument '{name}' has the wrong type ({type(value).__name__})")
    return value


def family_arg(req: dict) -> int:
    family = arg(req, "family", str)
    if family not in FAMILIES:
        raise OpError("EINVAL", f"family must be ipv4 or ipv6, not '{family}'")
    return FAMILIES[family]


def port_arg(req: dict, name: str, default: Any = _REQUIRED) -> Any:
    port = arg(req, name, int, default)
    if port is not None and not 0 <= port <= 65535:
        raise OpError("EINVAL", f"{name} {port} is out of range")
    return port


def handle_arg(req: dict) -> int:
    return arg(req, "sock", int)


def timeout_arg(req: dict, default_ms: int) -> float:
    """How long a blocking op may wait, in seconds, from ``timeout_ms``."""
    timeout_ms = arg(req, "timeout_ms", (int, float), default_ms)
    if not (0 <= timeout_ms < 1e12):  # also refuses NaN and infinity
        raise OpError("EINVAL", "timeout_ms must be a finite, non-negative number")
    return timeout_ms / 1000.0


def deadline_arg(req: dict, default_ms: int) -> float:
    """The monotonic time at which a blocking op gives up, from ``timeout_ms``."""
    return time.monotonic() + timeout_arg(req, default_ms)


def pattern(length: int) -> bytes:
    """``length`` bytes of 0123456789abcdef0123..., so a receiver can check what arrived."""
    return (PATTERN * (length // len(PATTERN) + 1))[:length]


def payload_arg(req: dict) -> bytes:
    given = [key for key in ("data", "data_b64", "len") if req.get(key) is not None]
    if len(given) != 1:
        raise OpError("EINVAL", "give exactly one of data, data_b64 and len")
    if given[0] == "data":
        return arg(req, "data", str).encode("utf-8")
    if given[0] == "data_b64":
        try:
            return base64.b64decode(arg(req, "data_b64", str), validate=True)
        except ValueError as exc:
            raise OpError("EINVAL", f"data_b64 is not base64: {exc}") from None
    length = arg(req, "len", int)
    if length < 0:
        raise OpError("EINVAL", "len must not be negative")
    return pattern(length)


def endpoint(sockaddr: Any) -> list:
    """[address, port] from an IPv4 or IPv6 socket address."""
    return [sockaddr[0], sockaddr[1]]


# ---- sockets ---------------------------------------------------------------------------------------


def set_option(sock: socket.socket, name: str, value: Any) -> None:
    """Set one of the socket options the protocol knows by name."""
    if name in BOOL_OPTIONS:
        if not isinstance(value, bool):
            raise OpError("EINVAL", f"{name} takes true or false")
        level, option = BOOL_OPTIONS[name]
        sock.setsockopt(level, option, int(value))
    elif name in ("rcvbuf", "sndbuf"):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise OpError("EINVAL", f"{name} takes a positive number of bytes")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF if name == "rcvbuf" else socket.SO_SNDBUF, value)
    elif name == "linger":
        if value is None or value is False:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER.pack(0, 0))
        elif isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER.pack(1, value))
        else:
            raise OpError("EINVAL", "linger takes null (off) or a number of seconds")
    else:
        raise OpError("EINVAL", f"unknown socket option '{name}'")


def new_socket(family: int, req: dict) -> socket.socket:
    """A non-blocking TCP socket with the buffer and Nagle options of ``req`` applied before any SYN."""
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        if os.name != "nt":  # on Windows SO_REUSEADDR lets a socket steal a port in use
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        for name in ("rcvbuf", "sndbuf", "nodelay"):
            if req.get(name) is not None:
                set_option(sock, name, req[name])
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def wildcard(family: int) -> str:
    return "::" if family == socket.AF_INET6 else "0.0.0.0"


def wait_ready(sock: socket.socket, want: str, deadline: float | None) -> bool:
    """Wait until ``sock`` is readable (want "r") or writable ("w"); False when the deadline passed.

    Waits in short slices so that a concurrent close of the socket ends the wait with EBADF instead of
    leaving a thread blocked on a descriptor number that may be reused.
    """
    while True:
        if sock.fileno() == -1:
            raise OpError("EBADF", "the socket was closed while waiting")
        remaining = POLL_SLICE if deadline is None else deadline - time.monotonic()
        if remaining <= 0:
            return False
        try:
            if poll_once(sock, want, min(remaining, POLL_SLICE)):
                return True
        except ValueError:  # the descriptor became -1 between the check and the poll
            continue


def poll_once(sock: socket.socket, want: str, timeout: float) -> bool:
    if hasattr(select, "poll"):  # no FD_SETSIZE limit
        poller = select.poll()
        poller.register(sock, select.POLLIN if want == "r" else select.POLLOUT)
        return bool(poller.poll(timeout * 1000.0))
    readers = [sock] if want == "r" else []
    writers = [sock] if want == "w" else []
    ready = select.select(readers, writers, writers, timeout)  # Windows reports failed connects as "except"
    return any(ready)


def connect_socket(sock: socket.socket, address: tuple, deadline: float) -> None:
    """Non-blocking connect bounded by ``deadline``; failures raise OSError with the stack's errno."""
    code = sock.connect_ex(address)
    if code in IN_PROGRESS:
        if not wait_ready(sock, "w", deadline):
            raise OpError("ETIMEDOUT", "the connection was not established within timeout_ms")
        code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if code:
        raise OSError(code, os.strerror(code))


def set_user_timeout(sock: socket.socket, milliseconds: int) -> None:
    """R2 of RFC 9293 section 3.8.3: how long transmissions may go unacknowledged before the stack gives up."""
    option = getattr(socket, "TCP_USER_TIMEOUT", None)
    if option is None:
        raise OpError("ENOTSUP", "TCP_USER_TIMEOUT is not available on this platform")
    sock.setsockopt(socket.IPPROTO_TCP, option, milliseconds)


def fastopen_listen(sock: socket.socket, qlen: int) -> None:
    """Allow data in SYNs with a valid cookie on this listener (RFC 7413); ``qlen`` bounds pending ones."""
    option = getattr(socket, "TCP_FASTOPEN", None)
    if option is None:
        raise OpError("ENOTSUP", "TCP Fast Open (TCP_FASTOPEN) is not available on this platform")
    sock.setsockopt(socket.IPPROTO_TCP, option, qlen)


def fastopen_connect(sock: socket.socket, address: tuple, payload: bytes, deadline: float) -> None:
    """Open with TCP Fast Open: the stack puts the payload in the SYN when it holds a cookie for the peer,
    else sends a cookie request; whatever did not fit in the SYN is sent once the handshake completes."""
    flag = getattr(socket, "MSG_FASTOPEN", None)
    if flag is None:
        raise OpError("ENOTSUP", "TCP Fast Open (MSG_FASTOPEN) is not available on this platform")
    try:
        in_syn = sock.sendto(payload, flag, address)
    except OSError as exc:
        if exc.errno not in IN_PROGRESS:
            raise
        in_syn = 0  # no cookie: a plain SYN with a cookie request went out
    if not wait_ready(sock, "w", deadline):
        raise OpError("ETIMEDOUT", "the connection was not established within timeout_ms")
    code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if code:
        raise OSError(code, os.strerror(code))
    send_all(sock, memoryview(payload)[in_syn:], deadline, already=in_syn)


def send_all(sock: socket.socket, payload: memoryview, deadline: float, already: int = 0) -> int:
    """Write all of ``payload`` (``already`` bytes went earlier); ETIMEDOUT with ``sent`` if it cannot."""
    sent = 0
    while sent < len(payload):
        if not wait_ready(sock, "w", deadline):
            total = already + len(payload)
            raise OpError("ETIMEDOUT", f"sent {already + sent} of {total} bytes within timeout_ms", sent=already + sent)
        try:
            sent += sock.send(payload[sent:])
        except (BlockingIOError, InterruptedError):
            continue
    return already + sent


def option_names(bits: int) -> list:
    return [name for bit, name in OPTION_BITS if bits & bit]


def tcp_state(sock: socket.socket) -> dict:
    """``{"state": RFC name, "info": {...}}`` from the platform's TCP_INFO, or UNKNOWN where there is none."""
    if sys.platform.startswith("linux"):
        return linux_state(sock)
    try:
        if sys.platform.startswith("freebsd"):
            return freebsd_state(sock)
        if sys.platform == "darwin":
            return darwin_state(sock)
    except (OSError, struct.error) as exc:
        log(f"state: TCP info not available: {exc}")
    return {"state": "UNKNOWN", "info": {}}


def linux_state(sock: socket.socket) -> dict:
    raw = sock.getsockopt(socket.IPPROTO_TCP, 11, LINUX_TCP_INFO.size)  # 11: TCP_INFO
    values = LINUX_TCP_INFO.unpack(raw.ljust(LINUX_TCP_INFO.size, b"\0"))
    state, ca_state, retransmits, probes, backoff, options, wscale = values[:7]
    info = {
        "state_code": state, "ca_state": ca_state, "retransmits": retransmits, "probes": probes,
        "backoff": backoff, "options": option_names(options), "options_raw": options,
        "snd_wscale": wscale & 0x0F, "rcv_wscale": wscale >> 4,
    }  # fmt: skip
    info.update({name: values[8 + i] for i, name in enumerate(LINUX_U32_FIELDS)})
    return {"state": LINUX_STATES.get(state, f"UNKNOWN-{state}"), "info": info}


def freebsd_state(sock: socket.socket) -> dict:
    option, layout = FREEBSD_TCP_INFO
    raw = sock.getsockopt(socket.IPPROTO_TCP, option, layout.size)
    values = layout.unpack(raw.ljust(layout.size, b"\0"))
    state, options, wscale = values[0], values[5], values[6]
    info = {
        "state_code": state, "options": option_names(options), "options_raw": options,
        "snd_wscale": wscale & 0x0F, "rcv_wscale": wscale >> 4,
        "rto": values[8], "snd_mss": values[10], "rcv_mss": values[11],
    }  # fmt: skip
    return {"state": BSD_STATES.get(state, f"UNKNOWN-{state}"), "info": info}


def darwin_state(sock: socket.socket) -> dict:
    option, layout = DARWIN_TCP_CONNECTION_INFO
    raw = sock.getsockopt(socket.IPPROTO_TCP, option, layout.size)
    state, snd_ws, rcv_ws, _, options, _, rto_ms, maxseg = layout.unpack(raw.ljust(layout.size, b"\0"))
    info = {
        "state_code": state, "options": option_names(options), "options_raw": options,
        "snd_wscale": snd_ws, "rcv_wscale": rcv_ws, "rto": rto_ms * 1000, "snd_mss": maxseg,
    }  # fmt: skip
    return {"state": BSD_STATES.get(state, f"UNKNOWN-{state}"), "info": info}


class SocketTable:
    """The sockets of one session by handle; handles are small integers, never reused in a session."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sockets: dict[int, socket.socket] = {}
        self._next = 1

    def add(self, sock: socket.socket) -> int:
        with self._lock:
            handle = self._next
            self._next += 1
            self._sockets[handle] = sock
            return handle

    def get(self, handle: int) -> socket.socket:
        with self._lock:
            sock = self._sockets.get(handle)
        if sock is None:
            raise OpError("EBADF", f"no open socket with handle {handle}")
        return sock

    def pop(self, handle: int) -> socket.socket:
        with self._lock:
            sock = self._sockets.pop(handle, None)
        if sock is None:
            raise OpError("EBADF", f"no open socket with handle {handle}")
        return sock

    def close_all(self) -> None:
        with self._lock:
            sockets = list(self._sockets.values())
            self._sockets.clear()
        for sock in sockets:
            sock.close()


# ---- requests and answers (shared with the zoo's Python agents) -------------------------------------


def read_request(line: bytes) -> tuple[int | None, Any, dict]:
    """``(id, op, request)`` of a non-blank request line; EINVAL (answered with id null) unless it is a JSON
    object. The id is None unless it is an integer, and `Gate.check` refuses such a request."""
    try:
        req = json.loads(line.decode("utf-8"))
        if not isinstance(req, dict):
            raise ValueError("a request must be a JSON object")
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError, JSONDecodeError, absurd nesting
        raise OpError("EINVAL", f"malformed request: {type(exc).__name__}") from None
    req_id = req.get("id")
    if not isinstance(req_id, int) or isinstance(req_id, bool):
        req_id = None
    return req_id, req.get("op"), req


def response_line(response: dict) -> bytes:
    """One response as the protocol line that carries it."""
    return (json.dumps(response, separators=(",", ":")) + "\n").encode("utf-8")


def error_response(req_id: Any, exc: OpError) -> dict:
    """The response to a failed request (protocol section 4)."""
    return {"id": req_id, "ok": False, "error": exc.error, "message": exc.message, **exc.extra}


def hello_result(config: Config, implementation: str, platform_name: str, ops: Iterable[str], **more: Any) -> dict:
    """hello's result (protocol section 5.1); ``more``: fields of one agent only, such as ``features``."""
    return {
        "protocol": PROTOCOL,
        "implementation": implementation,
        "platform": platform_name,
        "python": platform.python_version(),
        "pid": os.getpid(),
        "ops": list(ops),
        **more,
        "allow_connect": [str(network) for network in config.allowed],
    }


def op_error(op: str, exc: Exception, name_of: Callable[[OSError], str] = errno_name) -> OpError:
    """The error answer of an op that raised ``exc``: its own OpError, an OSError's errno name (by ``name_of``),
    else EIO for a bug, which is logged."""
    if isinstance(exc, OpError):
        return exc
    if isinstance(exc, OSError):
        return OpError(name_of(exc), exc.strerror or str(exc))
    log(f"{op} failed unexpectedly: {exc!r}")
    return OpError("EIO", f"internal error: {exc!r}")


# ---- sessions --------------------------------------------------------------------------------------


class Config:
    """What the command line allows: the token and the addresses ``connect`` may reach."""

    def __init__(self, token: str | None, allow_connect: list, close_on_reject: bool = False) -> None:
        self.token = token
        self.allowed = [ipaddress.ip_network(item, strict=False) for item in allow_connect]
        self.close_on_reject = close_on_reject

    def check_connect(self, addr: str) -> None:
        try:
            address = ipaddress.ip_address(addr.split("%", 1)[0])
        except ValueError:
            raise OpError("EINVAL", f"'{addr}' is not a numeric IP address") from None
        if not any(address in network for network in self.allowed):
            raise OpError("EPERM", f"connect to {addr} is not allowed (see --allow-connect)")

    def token_matches(self, token: Any) -> bool:
        """Whether ``token`` is the agent's token, compared in constant time; never true without one."""
        if not isinstance(token, str) or self.token is None:
            return False
        return hmac.compare_digest(token.encode("utf-8"), self.token.encode("utf-8"))


class Gate:
    """What every request of one session passes before its op runs (protocol sections 2 and 3): with a token,
    the first request must be ``hello`` carrying it, and once a request was refused for that, every later one is
    refused too; then an integer id and a known op."""

    def __init__(self, config: Config, ops: Iterable[str] = OPS) -> None:
        self.config = config
        self.ops = tuple(ops)
        self.authenticated = config.token is None
        self.rejected = False

    def admit(self, line: bytes, reply_error: Callable[[Any, OpError], None]) -> tuple[int, str, dict] | None:
        """``(id, op, request)`` of a request line that may run; None for a blank line, and for a line refused
        here once its error answer has gone out through ``reply_error``."""
        line = line.strip()
        if not line:
            return None
        req_id = None
        try:
            req_id, op, req = read_request(line)
            self.check(req_id, op, req)
        except OpError as exc:
            reply_error(req_id, exc)
            return None
        return req_id, op, req

    def check(self, req_id: int | None, op: Any, req: dict) -> None:
        """Raise OpError (EACCES, EINVAL) unless the request may run."""
        if not self.authenticated:
            if self.rejected or op != "hello" or not self.config.token_matches(req.get("token")):
                self.rejected = True
                raise OpError("EACCES", "the first request must be hello with the agent's token")
            self.authenticated = True
        if req_id is None:
            raise OpError("EINVAL", "the request id must be an integer")
        if op not in self.ops:
            raise OpError("EINVAL", f"unknown op {op!r}; known ops: {', '.join(self.ops)}")


class Session:
    """One client of the agent: its handshake state, its sockets and the stream it answers on."""

    def __init__(self, out: BinaryIO, config: Config) -> None:
        self.out = out
        self.config = config
        self.sockets = SocketTable()
        self.write_lock = threading.Lock()
        self.gate = Gate(config)

    def serve(self, lines: Iterable[bytes]) -> None:
        """Answer requests until ``bye``, a rejected handshake in TCP mode, or the end of the input."""
        try:
            for line in lines:
                if not self.handle_line(line):
                    break
        except OSError as exc:
            log(f"management stream failed: {exc}")
        finally:
            self.sockets.close_all()

    def handle_line(self, line: bytes) -> bool:
        """Handle one request line; False when the session must end."""
        request = self.gate.admit(line, self.reply_error)
        if request is None:  # blank or refused; in TCP mode a refused handshake ends the session
            return not (self.gate.rejected and self.config.close_on_reject)
        req_id, op, req = request
        if op in THREADED_OPS:
            worker = threading.Thread(target=self.run, args=(req_id, op, req), name=f"{op}-{req_id}")
            worker.daemon = True
            worker.start()
            return True
        self.run(req_id, op, req)
        return op != "bye"

    def run(self, req_id: int, op: str, req: dict) -> None:
        """Execute one op and answer it; a failure, even a bug, costs this request only."""
        try:
            result = getattr(self, "op_" + op)(req)
        except Exception as exc:
            self.reply_error(req_id, op_error(op, exc))
        else:
            self.write({"id": req_id, "ok": True, **result})

    def reply_error(self, req_id: Any, exc: OpError) -> None:
        self.write(error_response(req_id, exc))

    def write(self, response: dict) -> None:
        data = response_line(response)
        with self.write_lock:
            try:
                self.out.write(data)
                self.out.flush()
            except (OSError, ValueError):  # the client is gone; the reader sees the end of input
                pass

    # ---- ops: each takes the request and returns the result fields ----

    def op_hello(self, req: dict) -> dict:
        implementation = f"python-agent/{VERSION}"
        return hello_result(self.config, implementation, platform.platform(), OPS, features=list(FEATURES))

    def op_bye(self, req: dict) -> dict:
        return {}

    def op_listen(self, req: dict) -> dict:
        family = family_arg(req)
        addr = arg(req, "addr", str, wildcard(family))
        port = port_arg(req, "port", 0)
        backlog = arg(req, "backlog", int, 16)
        fastopen = arg(req, "fastopen", int, 0)
        if fastopen < 0:
            raise OpError("EINVAL", "fastopen must not be negative")
        sock = new_socket(family, req)
        try:
            sock.bind((addr, port))
            if fastopen:
                fastopen_listen(sock, fastopen)
            sock.listen(backlog)
            port = sock.getsockname()[1]
        except BaseException:
            sock.close()
            raise
        return {"sock": self.sockets.add(sock), "port": port}

    def op_accept(self, req: dict) -> dict:
        listener = self.sockets.get(handle_arg(req))
        deadline = deadline_arg(req, 5000)
        while True:
            if not wait_ready(listener, "r", deadline):
                raise OpError("ETIMEDOUT", "no connection to accept within timeout_ms")
            try:
                conn, peer = listener.accept()
                break
            except (BlockingIOError, InterruptedError):  # another accept took it
                continue
        conn.setblocking(False)
        local = conn.getsockname()
        return {"sock": self.sockets.add(conn), "peer": endpoint(peer), "local": endpoint(local)}

    def op_connect(self, req: dict) -> dict:
        family = family_arg(req)
        addr = arg(req, "addr", str)
        port = port_arg(req, "port")
        local_addr = arg(req, "local_addr", str, None)
        local_port = port_arg(req, "local_port", None)
        deadline = deadline_arg(req, 5000)
        fastopen = arg(req, "fastopen", bool, False)
        payload = payload_arg(req) if fastopen else b""
        user_timeout = arg(req, "user_timeout_ms", int, None)
        if user_timeout is not None and not 0 < user_timeout < 2**31:
            raise OpError("EINVAL", "user_timeout_ms must be a positive number of milliseconds")
        self.config.check_connect(addr)
        sock = new_socket(family, req)
        try:
            if user_timeout is not None:
                set_user_timeout(sock, user_timeout)
            if local_addr is not None or local_port is not None:
                sock.bind((local_addr or wildcard(family), local_port or 0))
            if fastopen:
                fastopen_connect(sock, (addr, port), payload, deadline)
            else:
                connect_socket(sock, (addr, port), deadline)
            local, peer = sock.getsockname(), sock.getpeername()
        except BaseException:
            sock.close()
            raise
        result = {"sock": self.sockets.add(sock), "local": endpoint(local), "peer": endpoint(peer)}
        if fastopen:
            result["sent"] = len(payload)
        return result

    def op_send(self, req: dict) -> dict:
        sock = self.sockets.get(handle_arg(req))
        payload = memoryview(payload_arg(req))
        deadline = deadline_arg(req, 10000)
        return {"sent": send_all(sock, payload, deadline)}

    def op_recv(self, req: dict) -> dict:
        sock = self.sockets.get(handle_arg(req))
        limit = arg(req, "max", int, 65536)
        if limit <= 0:
            raise OpError("EINVAL", "max must be positive")
        deadline = deadline_arg(req, 2000)
        while True:
            if not wait_ready(sock, "r", deadline):
                raise OpError("ETIMEDOUT", "no data within timeout_ms")
            try:
                data = sock.recv(limit)
            except (BlockingIOError, InterruptedError):
                continue
            return {"data_b64": base64.b64encode(data).decode("ascii"), "len": len(data), "eof": not data}

    def op_shutdown(self, req: dict) -> dict:
        sock = self.sockets.get(handle_arg(req))
        how = arg(req, "how", str)
        if how not in SHUTDOWN_HOW:
            raise OpError("EINVAL", "how must be rd, wr or rdwr")
        sock.shutdown(SHUTDOWN_HOW[how])
        return {}

    def op_close(self, req: dict) -> dict:
        self.sockets.pop(handle_arg(req)).close()
        return {}

    def op_abort(self, req: dict) -> dict:
        """Close with SO_LINGER {on, 0 s}: the stack drops the connection and sends RST."""
        sock = self.sockets.pop(handle_arg(req))
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER.pack(1, 0))
        finally:
            sock.close()
        return {}

    def op_state(self, req: dict) -> dict:
        return tcp_state(self.sockets.get(handle_arg(req)))

    def op_sockopt(self, req: dict) -> dict:
        sock = self.sockets.get(handle_arg(req))
        set_option(sock, arg(req, "name", str), req.get("value"))
        return {}


# ---- main ------------------------------------------------------------------------------------------


def serve_stdio(config: Config) -> None:
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # a stray print() must not corrupt the protocol stream
    Session(stdout, config).serve(stdin)
    log("end of session")


def split_host_port(where: str) -> tuple:
    host, _, port = where.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"--listen wants HOST:PORT or [V6ADDR]:PORT, not '{where}'")
    return host.strip("[]"), int(port)


def serve_client(config: Config, conn: socket.socket, peer: tuple) -> None:
    log(f"client {peer[0]} port {peer[1]}")
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    with conn, conn.makefile("rb") as rfile, conn.makefile("wb") as wfile:
        Session(wfile, config).serve(rfile)
    log(f"client {peer[0]} port {peer[1]} gone")


def serve_tcp(config: Config, where: str, once: bool) -> None:
    """Serve management connections, each in a thread of its own with sockets of its own (parallel test
    workers each open one); a connection's sockets are closed when it ends. ``once``: serve one, then exit."""
    host, port = split_host_port(where)
    server = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    if os.name != "nt":
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind((host, port))
    server.listen(4)
    log(f"listening on {where}")
    if not config.token:
        log("no --token: anyone who reaches the management address may use the agent")
    with server:
        while True:
            conn, peer = server.accept()
            if once:
                serve_client(config, conn, peer)
                return
            threading.Thread(target=serve_client, args=(config, conn, peer), daemon=True).start()


def parse_args(argv: list | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Upper-tester agent of the TCP conformance suite.")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--stdio", action="store_true", help="speak the protocol on stdin/stdout")
    mode.add_argument("--listen", metavar="HOST:PORT", help="serve the protocol on this management address")
    parser.add_argument("--token", help="clients must open with hello carrying this token")
    parser.add_argument(
        "--allow-connect", action="append", default=[], metavar="ADDR[/PREFIX]",
        help="address (or network) that connect may reach; repeatable; without it connect is refused",
    )  # fmt: skip
    parser.add_argument("--once", action="store_true", help="with --listen: exit after the first client")
    return parser.parse_args(argv)


def main(argv: list | None = None) -> int:
    args = parse_args(argv)
    try:
        config = Config(args.token, args.allow_connect, close_on_reject=bool(args.listen))
    except ValueError as exc:
        log(f"bad --allow-connect: {exc}")
        return 2
    try:
        if args.stdio:
            serve_stdio(config)
        else:
            serve_tcp(config, args.listen, args.once)
    except KeyboardInterrupt:
        pass
    except (OSError, ValueError) as exc:
        log(f"fatal: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
