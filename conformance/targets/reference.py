"""The reference model as a target (kind ``reference``): RFC 9293's connection management, in process, behind a
link and an upper tester of its own. No namespace, no root, no kernel.

Rules of this module: the stack is conformance/oracle/machine.py, one ``Tcb`` per connection; this module only
carries packets and user calls to it and back. Where the model allows several answers, the stack takes the first
that conforms under the entry's ``behaves_as`` profile, so a run under that profile must PASS every case the
model can judge. It invents nothing the model does not say: no options but MSS on SYNs, no timers (nothing is
retransmitted, TIME-WAIT lasts until the run ends), an ISS derived from the 4-tuple. Cases that need what the
model lacks are NOT-RUN by the capabilities this kind does not declare (docs/reference-model.md).

Theory of operation: ``ReferenceLink.send`` hands the tester's packet to ``ReferenceStack.deliver`` on the
event loop's thread; the answers are queued as frames the demultiplexer reads at once (``next_due``). The upper
tester's calls (``ReferenceAgent.submit``) act on the same stack; those that wait (accept, connect, recv) are
answered when the stack changes, or with ETIMEDOUT at their time limit.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import ipaddress
import itertools
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..agent import pattern
from ..oracle.machine import Answer, Seg, State, Tcb, dispatch
from ..tcp import ACK, FIN, RST, SYN, seq_add, seq_diff
from ..upper_tester import AgentError
from ..wire.build import OutOption, OutSegment, build_packet
from ..wire.link import QueueLink
from ..wire.segment import Segment, parse_packet
from .config import TargetConfig
from .session import TargetBase

OPS = ["hello", "listen", "accept", "connect", "send", "recv", "shutdown", "close", "abort", "state"]
ADVERTISED_MSS = {"ipv4": 1460, "ipv6": 1440}  # a 1500-byte link: 1500 - 40 and 1500 - 60
DEFAULT_MSS = {"ipv4": 536, "ipv6": 1220}
Key = tuple[str, str, int, int]  # family, the peer's address, the peer's port, our port


@dataclass
class Connection:
    key: Key
    tcb: Tcb
    local: str
    listener: int | None = None  # the listening handle it came from (passive opens)
    received: bytearray = field(default_factory=bytearray)
    sent: bytearray = field(default_factory=bytearray)  # everything the application gave SEND, from ISS + 1 on
    eof: bool = False
    handle: int | None = None  # once accepted or connected
    app_closed: bool = False  # the application closed the socket: nothing more will be read
    unsent: int = 0  # bytes SEND accepted that the peer's window has not let out yet
    close_pending: bool = False  # a CLOSE waits for those bytes (RFC 9293 section 3.10.4)


@dataclass
class Listener:
    family: str
    port: int
    backlog: int
    ready: deque[Connection] = field(default_factory=deque)  # ESTABLISHED, not yet accepted


class ReferenceStack:
    """Every connection and listener of the model, and the packets they send."""

    def __init__(self, profile: str, emit: Callable[[bytes], None], local_addrs: dict[str, str]) -> None:
        self.profile = profile
        self.emit = emit
        self.local_addrs = local_addrs
        self.connections: dict[Key, Connection] = {}
        self.listeners: dict[int, Listener] = {}
        self.handles: dict[int, Connection | Listener] = {}
        self._ids = itertools.count(1)
        self.changed: asyncio.Event | None = None  # set whenever anything changes (waiting calls look again)
        self.dispatch: Callable[..., list[Answer]] = dispatch  # the model (a mutant of it, to measure the catalogue)
        self.observer: Callable[[Key, Answer], None] | None = None  # told every answer taken, by connection

    # ---- the wire --------------------------------------------------------------------------------------------
    def deliver(self, packet: bytes, local_addrs: dict[str, str]) -> None:
        seg = parse_packet(packet)
        if seg is None or seg.dst != local_addrs.get(seg.family):
            return  # not ours (broadcast, multicast, another host): dropped, as MUST-57 asks of SYNs
        if seg.src == seg.dst or _not_unicast(seg.family, seg.src):
            return  # an invalid source (MUST-63)
        ip_header = 40 if seg.family == "ipv6" else (seg.raw[0] & 0x0F) * 4
        if not seg.checksum_ok or seg.doff < 5 or seg.doff * 4 > len(seg.raw) - ip_header:
            return  # a bad checksum or a malformed header: silently discarded (MUST-2, MUST-3)
        key: Key = (seg.family, seg.src, seg.sport, seg.dport)
        conn = self.connections.get(key)
        mss_option = seg.option("mss")
        mss = None
        if seg.flags & SYN:  # absent: the default of RFC 9293 section 3.7.1 (536 over IPv4, 1220 over IPv6)
            mss = mss_option.value() if mss_option is not None else DEFAULT_MSS[seg.family]
        flags = seg.flags & (SYN | ACK | FIN | RST)
        model_seg = Seg(seg.seq, seg.ack, flags, seg.window, len(seg.payload), mss)  # type: ignore[arg-type]
        if conn is None:
            listener = self._listener_for(seg)
            tcb = Tcb(State.LISTEN, passive=True) if listener is not None else Tcb()
            conn = Connection(key, tcb, seg.dst, listener)
        before = conn.tcb
        answer = self._choose(self.dispatch(conn.tcb, "segment", model_seg, _iss(key)))
        if conn.app_closed and "text.accept" in answer.rules:
            # New data for an application that closed: it can never be read, so the connection is reset
            # (a close that ends reading is RFC 9293 MAY-1; the reset then is SHLD-3).
            answer = self.dispatch(conn.tcb, "abort")[0]
        self._apply(conn, answer, seg)
        synchronized = conn.tcb.state in (State.ESTABLISHED, State.CLOSE_WAIT)
        listener = self.handles.get(conn.listener) if conn.listener is not None else None
        if before.state == State.SYN_RECEIVED and synchronized and isinstance(listener, Listener):
            listener.ready.append(conn)  # the handshake completed: accept may take it
        self._changed()

    def _listener_for(self, seg: Segment) -> int | None:
        for handle, obj in self.handles.items():
            if isinstance(obj, Listener) and obj.port == seg.dport and obj.family == seg.family:
                return handle
        return None

    def _choose(self, answers: list[Answer]) -> Answer:
        for answer in answers:
            if self.profile in answer.conforms:
                return answer
        return answers[0]

    def _apply(self, conn: Connection, answer: Answer, seg: Segment | None = None) -> None:
        if self.observer is not None:
            self.observer(conn.key, answer)
        before = conn.tcb
        after = answer.tcb
        if seg is not None and seg.payload and after.state != State.CLOSED:
            taken = seq_diff(after.rcv_nxt, before.rcv_nxt) - (1 if "fin.accept" in answer.rules else 0)
            if taken > 0 and "text.accept" in answer.rules:
                conn.received += seg.payload[len(seg.payload) - taken :]
        if "fin.accept" in answer.rules:
            conn.eof = True
        conn.tcb = after
        for out in answer.sent:
            self.emit(self._packet(conn, out))
        live = self.connections.get(conn.key)
        if after.state == State.CLOSED or (after.state == State.LISTEN and before.state != State.LISTEN):
            if live is conn:  # an old handle's connection never removes a newer one of the same 4-tuple
                self.connections.pop(conn.key)
            return
        if after.state != State.LISTEN and live in (None, conn):
            self.connections[conn.key] = conn
        self._flush(conn)

    def _flush(self, conn: Connection) -> None:
        """Send what the application gave SEND and the window did not take yet; then a CLOSE waiting for it."""
        if conn.unsent and conn.tcb.state in (State.ESTABLISHED, State.CLOSE_WAIT) and not conn.tcb.fin_sent:
            before = conn.tcb.snd_nxt
            answer = self.dispatch(conn.tcb, "send", conn.unsent)[0]
            conn.unsent -= seq_diff(answer.tcb.snd_nxt, before)
            if answer.sent:
                self._apply(conn, answer)
                return
        if conn.close_pending and not conn.unsent and conn.tcb.state in (State.ESTABLISHED, State.CLOSE_WAIT):
            conn.close_pending = False
            self._apply(conn, self.dispatch(conn.tcb, "close")[0])

    def _packet(self, conn: Connection, out: Seg) -> bytes:
        family, peer, peer_port, port = conn.key
        options = [OutOption("mss", ADVERTISED_MSS[family])] if out.flags & SYN else []
        start = seq_diff(out.seq, seq_add(conn.tcb.iss, 1))
        payload = bytes(conn.sent[start : start + out.data]) if out.data else b""
        segment = OutSegment(family, conn.local, peer, port, peer_port, out.seq, out.ack, out.flags, out.wnd, 0,
                             options, payload)  # fmt: skip
        return build_packet(segment)

    def _changed(self) -> None:
        if self.changed is not None:
            self.changed.set()

    # ---- user calls ------------------------------------------------------------------------------------------
    def call(self, op: str, args: dict[str, Any]) -> dict[str, Any] | None:
        """The result of ``op``; None while it must wait; raises AgentError."""
        handler = getattr(self, f"op_{op}", None)
        if handler is None:
            raise AgentError("EINVAL", f"unknown op {op}", op)
        return handler(args)  # type: ignore[no-any-return]

    def op_hello(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"ops": OPS, "features": [], "implementation": "reference model (conformance/oracle)"}

    def op_listen(self, args: dict[str, Any]) -> dict[str, Any]:
        port = int(args.get("port") or 0) or 40000 + next(self._ids) % 20000
        handle = next(self._ids)
        self.handles[handle] = Listener(str(args["family"]), port, int(args.get("backlog") or 16))
        return {"sock": handle, "port": port}

    def op_accept(self, args: dict[str, Any]) -> dict[str, Any] | None:
        listener = self._handle(args, Listener)
        if not listener.ready:
            return None
        conn = listener.ready.popleft()
        conn.handle = next(self._ids)
        self.handles[conn.handle] = conn
        return {"sock": conn.handle, "peer": [conn.key[1], conn.key[2]], "local": [conn.local, conn.key[3]]}

    def op_connect(self, args: dict[str, Any]) -> dict[str, Any] | None:
        pending = args.get("_conn")
        if pending is None:
            family, peer, peer_port = str(args["family"]), str(args["addr"]), int(args["port"])
            if _not_unicast(family, peer):
                raise AgentError("ENETUNREACH", f"{peer} is not a unicast address", "connect")
            local = str(args.get("local_addr") or self.local_addrs[family])
            port = int(args.get("local_port") or 0) or 40000 + next(self._ids) % 20000
            key: Key = (family, peer, peer_port, port)
            conn = Connection(key, Tcb(), local)
            self.connections[key] = conn
            args["_conn"] = conn
            self._apply(conn, self.dispatch(conn.tcb, "open_active", _iss(key))[0])
            return None
        conn = pending
        if conn.tcb.state in (State.ESTABLISHED, State.CLOSE_WAIT):
            conn.handle = next(self._ids)
            self.handles[conn.handle] = conn
            return {"sock": conn.handle, "local": [conn.local, conn.key[3]], "peer": [conn.key[1], conn.key[2]]}
        if conn.tcb.state == State.CLOSED:
            raise AgentError("ECONNREFUSED", "the peer reset the connection attempt", "connect")
        return None

    def connect_gave_up(self, args: dict[str, Any]) -> None:
        """The time limit passed before the connection was established: the attempt is abandoned (ABORT: nothing is
        sent in SYN-SENT, a reset in SYN-RECEIVED)."""
        conn = args.get("_conn")
        if isinstance(conn, Connection) and conn.tcb.state != State.CLOSED:
            self._apply(conn, self.dispatch(conn.tcb, "abort")[0])  # silent in SYN-SENT (section 3.10.5)

    def op_send(self, args: dict[str, Any]) -> dict[str, Any]:
        conn = self._handle(args, Connection)
        if conn.tcb.fin_sent or conn.tcb.state not in (State.ESTABLISHED, State.CLOSE_WAIT):
            raise AgentError("EPIPE", f"the connection is {conn.tcb.state.value}, its sending side closed", "send")
        data = base64.b64decode(args["data_b64"]) if "data_b64" in args else pattern(int(args.get("len") or 1))
        conn.sent += data
        n = len(data)
        conn.unsent += n
        self._flush(conn)
        self._changed()
        return {"sent": n}

    def op_recv(self, args: dict[str, Any]) -> dict[str, Any] | None:
        conn = self._handle(args, Connection)
        if conn.received:
            limit = int(args.get("max") or 65536)
            data, conn.received = bytes(conn.received[:limit]), conn.received[limit:]
            return {"data_b64": base64.b64encode(data).decode(), "len": len(data), "eof": False}
        if conn.eof:
            return {"data_b64": "", "len": 0, "eof": True}
        if conn.tcb.state == State.CLOSED:
            raise AgentError("ECONNRESET", "the connection was reset", "recv")
        return None

    def op_shutdown(self, args: dict[str, Any]) -> dict[str, Any]:
        conn = self._handle(args, Connection)
        if args.get("how", "wr") in ("wr", "rdwr"):
            if conn.unsent:
                conn.close_pending = True
            else:
                self._apply(conn, self.dispatch(conn.tcb, "close")[0])
            self._changed()
        return {}

    def op_close(self, args: dict[str, Any]) -> dict[str, Any]:
        obj = self.handles.pop(int(args["sock"]), None)
        if isinstance(obj, Listener):
            self._drop_listener(int(args["sock"]))
        elif isinstance(obj, Connection):
            obj.app_closed = True
            if obj.received:  # unread data is lost when the application closes: a reset says so (MAY-1, SHLD-3)
                self._apply(obj, self.dispatch(obj.tcb, "abort")[0])
            elif obj.unsent:  # the FIN follows the data still queued
                obj.close_pending = True
            else:
                self._apply(obj, self.dispatch(obj.tcb, "close")[0])
        self._changed()
        return {}

    def _drop_listener(self, handle: int) -> None:
        """A listener closed or aborted: the connections it had not handed out yet (queued or half-open) are reset."""
        for conn in list(self.connections.values()):
            if conn.listener == handle and conn.handle is None:
                self._apply(conn, self.dispatch(conn.tcb, "abort")[0])

    def op_abort(self, args: dict[str, Any]) -> dict[str, Any]:
        obj = self.handles.pop(int(args["sock"]), None)
        if isinstance(obj, Listener):
            self._drop_listener(int(args["sock"]))
        if isinstance(obj, Connection):
            self._apply(obj, self.dispatch(obj.tcb, "abort")[0])
        self._changed()
        return {}

    def op_state(self, args: dict[str, Any]) -> dict[str, Any]:
        obj = self.handles.get(int(args["sock"]))
        if isinstance(obj, Listener):
            return {"state": "LISTEN", "info": {}}
        if isinstance(obj, Connection):
            live = self.connections.get(obj.key)
            return {"state": (live.tcb.state.value if live is obj else "CLOSED"), "info": {}}
        return {"state": "CLOSED", "info": {}}

    def _handle(self, args: dict[str, Any], kind: type) -> Any:
        obj = self.handles.get(int(args.get("sock", -1)))
        if not isinstance(obj, kind):
            raise AgentError("EBADF", f"no such socket {args.get('sock')}", None)
        return obj


def _iss(key: Key) -> int:
    """A deterministic ISS per 4-tuple (the model has no clock; ISN statistics are out of its scope)."""
    return int.from_bytes(hashlib.sha256(repr(key).encode()).digest()[:4], "big")


def _not_unicast(family: str, addr: str) -> bool:
    """An address no connection may have at its far end: multicast, unspecified, a broadcast (RFC 1122 3.2.1.3)."""
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return True
    return ip.is_multicast or ip.is_unspecified or (family == "ipv4" and addr.endswith(".255"))


class ReferenceCall:
    """An upper-tester call on the model: answered now, or when the stack changes, or at its time limit."""

    def __init__(self, stack: ReferenceStack, op: str, args: dict[str, Any]) -> None:
        self.stack, self.op, self.args = stack, op, dict(args)
        self.limit = time.monotonic() + float(args.get("timeout_ms", 5000)) / 1000
        self._result: dict[str, Any] | None = None
        self._error: AgentError | None = None
        self._look()

    def _look(self) -> bool:
        if self._result is not None or self._error is not None:
            return True
        try:
            self._result = self.stack.call(self.op, self.args)
        except AgentError as exc:
            self._error = exc
        return self._result is not None or self._error is not None

    def done(self) -> bool:
        return self._look()

    def on_done(self, callback: Callable[[], None]) -> None:
        callback()

    def wait(self, timeout: float) -> dict[str, Any]:
        if not self._look():
            raise AgentError("ETIMEDOUT", "no answer yet", self.op)
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result

    async def answer(self, timeout: float) -> dict[str, Any]:
        if self.stack.changed is None:
            self.stack.changed = asyncio.Event()
        while not self._look():
            left = self.limit - time.monotonic()
            if left <= 0:
                if self.op == "connect":
                    self.stack.connect_gave_up(self.args)
                self._error = AgentError("ETIMEDOUT", f"no {self.op} within its time limit", self.op)
                break
            self.stack.changed.clear()
            try:
                await asyncio.wait_for(self.stack.changed.wait(), left)
            except TimeoutError:
                continue
        return self.wait(0)


class ReferenceAgent:
    """The upper tester of the reference target (the calls of RFC 9293 section 3.9.1 on the model)."""

    alive = True

    def __init__(self, stack: ReferenceStack) -> None:
        self.stack = stack
        self.hello = stack.op_hello({})

    def attach(self, loop: Any) -> None:
        pass

    def detach(self) -> None:
        pass

    def submit(self, op: str, **args: Any) -> ReferenceCall:
        return ReferenceCall(self.stack, op, args)

    def call(self, op: str, timeout: float = 5.0, **args: Any) -> dict[str, Any]:
        return self.submit(op, **args).wait(timeout)

    def close(self) -> None:
        pass


class ReferenceLink(QueueLink):
    """The tester's link to the model: what the tester sends is delivered at once; the answers wait as frames."""

    def __init__(self, config: TargetConfig) -> None:
        super().__init__()
        self.local = {f: config.address(f).target for f in config.families}
        self.stack = ReferenceStack(config.behaves_as, lambda packet: self._queue(packet, inbound=True), self.local)

    def send(self, packet: bytes) -> None:
        self._queue(packet, inbound=False)  # the capture shows the tester's own frames too
        self.stack.deliver(packet, self.local)


class ReferenceTarget(TargetBase):
    def __init__(self, config: TargetConfig, worker: str) -> None:
        self.config = config
        self.worker = worker
        self.link: ReferenceLink | None = None  # type: ignore[assignment]
        self.agent: ReferenceAgent | None = None  # type: ignore[assignment]

    def start(self) -> None:
        self.link = ReferenceLink(self.config)
        self.agent = ReferenceAgent(self.link.stack)

    def stop(self) -> None:
        self.link = None
        self.agent = None

    def healthy(self) -> bool:
        return self.link is not None
