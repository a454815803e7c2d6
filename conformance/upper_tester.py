"""Client of the upper-tester agent (conformance/agent.py, protocol in docs/agent-protocol.md).

The engine talks to the agent through an :class:`AgentClient`: requests are written as JSON lines and
responses are matched to :class:`PendingCall` objects by id, so several calls may be outstanding at once (a
blocking ``accept`` does not hold up a ``state``). Responses are read by a thread of the client, or, while the
client is attached to an event loop (``attach``), by that loop itself: cases in flight then share one thread
and no lock is contended on their way. When the agent dies or the management connection drops, every
outstanding call fails promptly with :class:`AgentGone`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import select
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from typing import IO, Any

log = logging.getLogger(__name__)

# Server-side defaults of the agent's timeout_ms, so that call() waits a little longer than the agent.
AGENT_DEFAULT_TIMEOUT_MS = {"accept": 5000, "connect": 5000, "recv": 2000, "send": 10000}
TIMEOUT_MARGIN_S = 1.0
CLOSE_BUDGET_S = 1.0


class AgentError(Exception):
    """A request failed: ``error`` is the agent's errno-style name (e.g. ``ECONNREFUSED``).

    ``details`` holds any further fields of the error response (e.g. ``sent`` for a send timeout).
    """

    def __init__(self, error: str, message: str = "", op: str | None = None, details: dict | None = None):
        self.error = error
        self.message = message
        self.op = op
        self.details = details or {}
        super().__init__(f"{op or 'agent'}: {error}" + (f": {message}" if message else ""))


class AgentTimeout(AgentError):
    """The agent did not answer in time (the request may still complete later)."""

    def __init__(self, message: str = "", op: str | None = None):
        super().__init__("AGENT-TIMEOUT", message, op)


class AgentGone(AgentError):
    """The agent process or its management connection died."""

    def __init__(self, message: str = "", op: str | None = None):
        super().__init__("AGENT-GONE", message, op)


class PendingCall:
    """A submitted request whose response may not have arrived yet."""

    def __init__(self, op: str, req_id: int):
        self.op = op
        self.id = req_id
        self._event = threading.Event()
        self._result: dict | None = None
        self._error: AgentError | None = None
        self._callbacks: list[Callable[[], None]] = []
        self._lock = threading.Lock()

    def done(self) -> bool:
        return self._event.is_set()

    def on_done(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once the answer is in (at once if it is already; else on the agent's reader thread)."""
        with self._lock:
            if not self._event.is_set():
                self._callbacks.append(callback)
                return
        callback()

    async def answer(self, timeout: float) -> dict:
        """``wait`` for an event loop: the loop goes on while the agent works."""
        if not self._event.is_set():
            loop = asyncio.get_running_loop()
            arrived: asyncio.Future[None] = loop.create_future()

            def wake() -> None:
                if not arrived.done():
                    arrived.set_result(None)

            loop_thread = threading.get_ident()

            def wake_from_reader() -> None:
                if threading.get_ident() == loop_thread:  # answered by the loop itself (an attached client)
                    wake()
                    return
                with contextlib.suppress(RuntimeError):  # the loop has closed meanwhile: nobody waits any more
                    loop.call_soon_threadsafe(wake)

            self.on_done(wake_from_reader)
            timer = loop.call_later(max(0.0, timeout), wake)  # the answer's time limit: wait(0) then says so
            try:
                await arrived
            finally:
                timer.cancel()
        return self.wait(0)

    def settle(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the answer; whether it has come."""
        return self._event.wait(timeout)

    def wait(self, timeout: float) -> dict:
        """The result fields (without ``id`` and ``ok``); raises AgentError, AgentTimeout or AgentGone."""
        if not self._event.wait(timeout):
            raise AgentTimeout(f"no answer within {timeout:g} s", self.op)
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result

    def _complete(self, response: dict) -> None:
        if response.get("ok"):
            self._result = {k: v for k, v in response.items() if k not in ("id", "ok")}
        else:
            details = {k: v for k, v in response.items() if k not in ("id", "ok", "error", "message")}
            error = str(response.get("error") or "EIO")
            self._error = AgentError(error, str(response.get("message") or ""), self.op, details)
        self._settled()

    def _fail(self, error: AgentError) -> None:
        if not self._event.is_set():
            self._error = error
            self._settled()

    def _settled(self) -> None:
        with self._lock:
            self._event.set()
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            try:
                callback()
            except Exception as exc:  # a waiter's trouble must never stop the agent's reader
                log.warning("%s: a callback of %s failed: %s", self.op, self.id, exc)


class AgentClient:
    """A connection to one agent, over a child process's pipes or a TCP management connection."""

    hello: dict

    def __init__(
        self,
        reader: IO[bytes],
        writer: IO[bytes],
        process: subprocess.Popen | None = None,
        sock: socket.socket | None = None,
        name: str = "agent",
    ):
        self.process = process
        self.name = name
        self.hello = {}
        self._reader = reader
        self._writer = writer
        self._sock = sock
        self._ids = itertools.count(1)
        self._lock = threading.Lock()  # guards _pending, _gone and writes
        self._pending: dict[int, PendingCall] = {}
        self._gone: str | None = None  # why the agent is unusable, once it is
        self._closed = False
        self._fd = reader.fileno()
        if sock is None:
            os.set_blocking(self._fd, False)  # a pipe of its own; a socket is shared with the writer: MSG_DONTWAIT
        self._buffer = bytearray()
        self._read_lock = threading.Lock()  # the thread and the loop never split a line between them
        self._loop: asyncio.AbstractEventLoop | None = None  # the event loop reading the agent, while attached
        self._thread_may_read = threading.Event()
        self._thread_may_read.set()
        self._thread = threading.Thread(target=self._read_loop, name=f"{name}-reader", daemon=True)
        self._thread.start()

    # ---- construction ----

    @classmethod
    def spawn(
        cls, argv: list[str], token: str | None = None, stderr: Any = None, hello_timeout: float = 10.0
    ) -> AgentClient:
        """Start the agent as a child process speaking on its stdin/stdout, then say hello.

        ``stderr`` is passed to Popen (default: inherited). Raises AgentError if the handshake fails;
        the process is gone by then.
        """
        # A session of its own: a terminal's Ctrl-C reaches the suite, which ends the agent itself after its cases
        # (the agent must not die under cases still in flight, which would then fail for that reason).
        process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr,
                                   start_new_session=True)  # fmt: skip
        assert process.stdin is not None and process.stdout is not None
        client = cls(process.stdout, process.stdin, process=process, name=f"agent[{process.pid}]")
        client._handshake(token, hello_timeout)
        return client

    @classmethod
    def connect_tcp(cls, host: str, port: int, token: str | None, timeout: float = 5.0) -> AgentClient:
        """Connect to an agent started with ``--listen HOST:PORT`` and say hello."""
        sock = socket.create_connection((host, port), timeout=timeout)
        return cls.over_socket(sock, token, f"agent@{host}:{port}", timeout)

    @classmethod
    def over_socket(cls, sock: socket.socket, token: str | None, name: str, timeout: float = 5.0) -> AgentClient:
        """Speak to an agent over an already connected stream socket (TCP or UNIX) and say hello."""
        sock.settimeout(None)
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        client = cls(sock.makefile("rb"), sock.makefile("wb"), sock=sock, name=name)
        client._handshake(token, timeout)
        return client

    def _handshake(self, token: str | None, timeout: float) -> None:
        args = {"token": token} if token is not None else {}
        try:
            self.hello = self.call("hello", timeout=timeout, **args)
        except BaseException:
            self.close()
            raise
        log.debug("%s: %s", self.name, self.hello)

    # ---- requests ----

    def submit(self, op: str, **args: Any) -> PendingCall:
        """Send a request without waiting; errors (also AgentGone) surface from ``wait``."""
        call = PendingCall(op, next(self._ids))
        line = (json.dumps({"id": call.id, "op": op, **args}, separators=(",", ":")) + "\n").encode()
        with self._lock:
            if self._gone is not None:
                call._fail(AgentGone(self._gone, op))
                return call
            self._pending[call.id] = call
            try:
                self._writer.write(line)
                self._writer.flush()
            except (OSError, ValueError) as exc:
                del self._pending[call.id]
                call._fail(AgentGone(f"cannot write to the agent: {exc}", op))
        return call

    def call(self, op: str, timeout: float = 5.0, **args: Any) -> dict:
        """Submit and wait. The wait is stretched to outlast the agent's own ``timeout_ms`` for the op."""
        timeout_ms = args.get("timeout_ms", AGENT_DEFAULT_TIMEOUT_MS.get(op))
        if isinstance(timeout_ms, int | float):
            timeout = max(timeout, timeout_ms / 1000.0 + TIMEOUT_MARGIN_S)
        return self.submit(op, **args).wait(timeout)

    @property
    def alive(self) -> bool:
        return self._gone is None

    # ---- responses ----

    # ---- who reads the responses ----

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """From now on ``loop`` (the calling thread's running loop) reads the responses; the thread rests."""
        if self._loop is not None or self._gone is not None:
            return
        self._loop = loop
        self._thread_may_read.clear()
        loop.add_reader(self._fd, self._pump_from_loop)

    def detach(self) -> None:
        """The client's thread reads again (call from the loop's thread while it still runs, or after it ended)."""
        loop, self._loop = self._loop, None
        if loop is None:
            return
        if not loop.is_closed():
            with contextlib.suppress(RuntimeError, ValueError, OSError):
                loop.remove_reader(self._fd)
        self._thread_may_read.set()

    def _pump_from_loop(self) -> None:
        if not self._pump():
            self.detach()

    def _read_loop(self) -> None:
        poller = select.poll()
        poller.register(self._fd, select.POLLIN | select.POLLHUP | select.POLLERR)
        while not self._closed and self._gone is None:
            if not self._thread_may_read.is_set():
                self._thread_may_read.wait(0.5)
                continue
            if poller.poll(100) and not self._pump():
                return

    def _pump(self) -> bool:
        """Read what the agent sent and dispatch every complete line; False once the agent is gone."""
        with self._read_lock:
            try:
                chunk = self._sock.recv(1 << 16, socket.MSG_DONTWAIT) if self._sock else os.read(self._fd, 1 << 16)
            except BlockingIOError:
                return True
            except (OSError, ValueError) as exc:
                self._mark_gone(self._exit_reason(f"reading from the agent failed: {exc}"))
                return False
            if not chunk:
                self._mark_gone(self._exit_reason("the agent closed its output"))
                return False
            self._buffer += chunk
            lines = self._buffer.split(b"\n")
            self._buffer = bytearray(lines.pop())
        for line in lines:
            if line.strip():
                self._dispatch(bytes(line))
        return True

    def _dispatch(self, line: bytes) -> None:
        try:
            response = json.loads(line)
        except ValueError:
            log.warning("%s: ignoring a malformed line: %r", self.name, line[:200])
            return
        if not isinstance(response, dict):
            log.warning("%s: ignoring a non-object line: %r", self.name, line[:200])
            return
        req_id = response.get("id")
        with self._lock:
            call = self._pending.pop(req_id, None) if isinstance(req_id, int) else None
        if call is None:
            log.warning("%s: response matches no pending request: %s", self.name, response)
            return
        call._complete(response)

    def _exit_reason(self, reason: str) -> str:
        if self.process is None:
            return reason
        try:  # an event loop never waits for the process; the reader thread may
            code = self.process.poll() if self._loop is not None else self.process.wait(timeout=0.5)
        except subprocess.TimeoutExpired:
            return reason
        return reason if code is None else f"{reason} (exit status {code})"

    def _mark_gone(self, reason: str) -> None:
        with self._lock:
            if self._gone is None:
                self._gone = reason
            pending, self._pending = list(self._pending.values()), {}
        for call in pending:
            call._fail(AgentGone(reason, call.op))

    # ---- shutdown ----

    def close(self) -> None:
        """Say bye, give the agent up to a second to finish, then make sure it is gone. Never raises."""
        if self._closed:
            return
        self.detach()
        self._closed = True
        deadline = time.monotonic() + CLOSE_BUDGET_S
        try:
            if self._gone is None:
                with contextlib.suppress(AgentError):
                    self._say_bye()
            self._stop_transport(deadline)
        except Exception as exc:
            log.warning("%s: error while closing: %s", self.name, exc)
        self._thread.join(timeout=1.0)
        self._mark_gone("the client closed the connection")
        for stream in (self._writer, self._reader):
            with contextlib.suppress(Exception):
                stream.close()

    def _say_bye(self) -> None:
        """The bye and its answer, read here (the reader thread stopped when the client was marked closed)."""
        call = self.submit("bye")
        deadline = time.monotonic() + CLOSE_BUDGET_S
        poller = select.poll()
        poller.register(self._fd, select.POLLIN | select.POLLHUP | select.POLLERR)
        while not call.done() and (left := deadline - time.monotonic()) > 0:
            if poller.poll(max(1, int(left * 1000))) and not self._pump():
                break
        call.wait(0)

    def _stop_transport(self, deadline: float) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
            self._sock.close()
        if self.process is not None:
            with self._lock, contextlib.suppress(OSError, ValueError):
                self._writer.close()  # end of input: the agent exits even if it missed the bye
            try:
                self.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5.0)

    def __enter__(self) -> AgentClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
