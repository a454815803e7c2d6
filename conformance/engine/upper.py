"""The upper tester: the case's socket calls on the target, through its agent (or stood in for without one).

Rules of this module: ``ut`` steps become agent requests (docs/agent-protocol.md); a call either waits for its
answer or runs ``nowait`` and is awaited by a later step. Sockets the case opened are named (``listener``,
``conn``, or ``as``) and released after the case. An answer other than the one the step allows raises StepFailed;
a request the target cannot serve (no agent, no such socket) raises StepError. The event loop keeps reading the
link while a call blocks, so a stack's ARP and neighbour probes are answered during a minutes-long connect.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import socket
import time
from typing import Any

from ..model.case import UtSpec
from ..model.loader import Step
from ..upper_tester import AgentError, AgentGone, AgentTimeout, PendingCall
from .context import CaseContext, Inconclusive, StepError, StepFailed
from .flow import CaseFlow
from .record import StepRecord

PROTOCOL_BOUND_OPS = frozenset({"accept", "connect", "recv"})  # calls that wait on the peer
STATE_SETTLE_S = 0.2  # a state that does not match is asked again for this long (a stack may still be busy)
ANSWER_MARGIN_S = 2.0  # the agent gets this long beyond the call's own timeout to answer


class UpperTester:
    def __init__(self, ctx: CaseContext, flow: CaseFlow) -> None:
        self.ctx = ctx
        self.flow = flow
        self.handles: dict[str, int] = {}
        self.calls: dict[str, tuple[PendingCall, UtSpec]] = {}

    async def step(self, step: Step, record: StepRecord) -> None:
        spec: UtSpec = step.spec
        ctx, s = self.ctx, self.ctx.session
        if spec.op == "listen" and spec.service == "echo":
            if s.echo_port is None:
                raise StepError("the target declares no echo service (ports.echo); the case should require svc.echo")
            ctx.env["t_port"] = self.flow.target_port(s.echo_port)
            record.detail = f"the target's echo service on port {s.echo_port}"
            return
        if s.agent is None:
            self._agentless(spec, record)
            return
        if spec.op == "await":
            if spec.as_ not in self.calls:
                raise StepError(f"line {step.line}: no nowait call named '{spec.as_}'")
            call, original = self.calls.pop(spec.as_)  # type: ignore[arg-type]
            await self._finish(original, call, spec, record)
            return
        if self.flow.sent_since_ut:  # on a delaying link, let the tester's segments reach the target first
            await self.flow.collect(self.flow.one_way_delay() * 1.5 + 0.002)  # with a margin for a late timer
            self.flow.sent_since_ut = False
        call = s.agent.submit(spec.op, **self._args(spec))
        self.flow.demux.expect_soon()  # the agent answers most requests within a millisecond
        if spec.nowait:
            self.calls[spec.as_ or spec.op] = (call, spec)
            record.detail = "submitted"
            return
        await self._finish(spec, call, spec, record)

    def _agentless(self, spec: UtSpec, record: StepRecord) -> None:
        """Without an agent only a passive open can be stood in for: by the port a service listens on."""
        s = self.ctx.session
        if spec.op == "listen" and s.open_port is not None and not spec.nowait:
            self.ctx.env["t_port"] = self.flow.target_port(s.open_port)
            record.detail = f"agentless: the declared open port {s.open_port}"
            return
        raise StepError(f"this target has no upper tester for `ut: {spec.op}` (the case should require ut.{spec.op})")

    def _sock(self, spec: UtSpec, default: str) -> int:
        name = spec.sock or default
        if name not in self.handles:
            raise StepError(f"no socket named '{name}' on the target (known: {', '.join(self.handles) or 'none'})")
        return self.handles[name]

    def _args(self, spec: UtSpec) -> dict[str, Any]:
        ctx, s, ms, op = self.ctx, self.ctx.session, int(spec.timeout * 1000), spec.op
        if op == "listen":
            port = ctx.ev(spec.port, 0, wrap=False)
            args: dict[str, Any] = {"family": s.family, "port": port, "backlog": spec.backlog or 16}
            if not spec.wildcard and not s.listen_any:  # listen_any: the target address is a proxy's translation
                args["addr"] = s.target_addr
            if spec.fastopen is not None:  # TCP_FASTOPEN queue length; true means 16
                args["fastopen"] = 16 if spec.fastopen is True else int(spec.fastopen)
            return args | ({"rcvbuf": spec.rcvbuf} if spec.rcvbuf else {})
        if op == "accept":
            return {"sock": self._sock(spec, "listener"), "timeout_ms": ms}
        if op == "connect":
            peer = s.tester_addr if spec.to_addr == "tester" else self._special_peer(spec.to_addr)
            args = {"family": s.family, "addr": peer, "port": ctx.env["l_port"],
                    "local_addr": s.target_addr, "local_port": ctx.env["t_port"], "timeout_ms": ms}  # fmt: skip
            if spec.wildcard:
                del args["local_addr"]
            if spec.user_timeout is not None:
                args["user_timeout_ms"] = int(spec.user_timeout * 1000)
            if spec.fastopen:  # data with the SYN (RFC 7413), or a cookie request when the stack has no cookie
                args["fastopen"] = True
                if spec.data is not None:
                    args["data_b64"] = base64.b64encode(spec.data.encode()).decode()
                else:
                    args["len"] = spec.len
            return args | ({"rcvbuf": spec.rcvbuf} if spec.rcvbuf else {})
        sock = self._sock(spec, "conn")
        if op == "send":
            if spec.data is not None:
                return {"sock": sock, "data_b64": base64.b64encode(spec.data.encode()).decode()}
            return {"sock": sock, "len": spec.len or 1}
        if op == "recv":
            return {"sock": sock, "max": spec.max or 65536, "timeout_ms": ms}
        if op == "shutdown":
            return {"sock": sock, "how": spec.how or "wr"}
        return {"sock": sock}

    def _special_peer(self, name: str) -> str:
        """A broadcast or multicast peer for connect; segments the target sends there are watched."""
        try:
            addr = self.ctx.session.special_address(name)
        except ValueError as exc:
            raise StepError(str(exc)) from None
        self.flow.l_addrs.add(socket.inet_pton(socket.AF_INET6 if ":" in addr else socket.AF_INET, addr))
        return addr

    async def _finish(self, spec: UtSpec, call: PendingCall, step_spec: UtSpec, record: StepRecord) -> None:
        ctx = self.ctx
        wanted = [step_spec.result] if isinstance(step_spec.result, str) else list(step_spec.result)
        started = time.monotonic()
        try:
            reply = await call.answer(spec.timeout + ANSWER_MARGIN_S)
            error = None
        except (AgentTimeout, AgentGone):
            raise
        except AgentError as exc:
            reply, error = {}, exc
        finally:
            waited = time.monotonic() - started
            ctx.blocked += waited
            if spec.op in PROTOCOL_BOUND_OPS:  # they wait for the target: its handshake, data or timers
                ctx.target_wait += waited
        if error is not None and error.error == "EPERM" and "allow" in error.message:
            raise StepError(f"the agent's connect allow-list refused it ({error.message}): allow the address in the "
                            "agent's --allow-connect (this says nothing about the stack)")  # fmt: skip
        got = "ok" if error is None else error.error
        if "any" not in wanted and got not in wanted:
            detail = f" ({error.message})" if error is not None and error.message else ""
            raise StepFailed(
                f"upper tester {spec.op}: expected {' or '.join(wanted)}, got {got}{detail}",
                f"{spec.op} -> {' or '.join(wanted)}", f"{spec.op} -> {got}{detail}",
                absence=got == "ETIMEDOUT",  # the peer's segments did not come in time
            )  # fmt: skip
        record.detail = got
        if error is None:
            await self._after(spec, step_spec, reply, record)

    async def _after(self, spec: UtSpec, step_spec: UtSpec, reply: dict, record: StepRecord) -> None:
        op = spec.op
        if op == "listen":
            self.handles[spec.as_ if spec.as_ and not spec.nowait else "listener"] = reply["sock"]
            self.ctx.env["t_port"] = self.flow.target_port(reply["port"])
        elif op in ("accept", "connect"):
            # ``as`` names the socket, except on a nowait call where it names the call itself.
            self.handles[spec.as_ if spec.as_ and not spec.nowait else "conn"] = reply["sock"]
        elif op in ("close", "abort"):
            self.handles.pop(spec.sock or "conn", None)
        elif op == "recv":
            self._check_received(step_spec, reply, record)
        elif op == "state":
            state = reply.get("state", "UNKNOWN")
            wanted = [step_spec.state] if isinstance(step_spec.state, str) else (step_spec.state or [])
            if wanted and state not in wanted and state != "UNKNOWN":
                state = await self._settled_state(spec, wanted, state)
            record.detail = state
            if wanted and state == "UNKNOWN":
                raise Inconclusive("the upper tester cannot read the connection state on this target")
            if wanted and state not in wanted:
                raise StepFailed(
                    f"upper tester state: expected {' or '.join(wanted)}, got {state} "
                    f"(still after {STATE_SETTLE_S * 1000:g} ms)", " or ".join(wanted), state,
                )  # fmt: skip

    @staticmethod
    def _check_received(step_spec: UtSpec, reply: dict, record: StepRecord) -> None:
        data = base64.b64decode(reply.get("data_b64", ""))
        record.detail = f"{len(data)} bytes" + (", eof" if reply.get("eof") else "")
        if step_spec.eof is not None and bool(reply.get("eof")) != step_spec.eof:
            raise StepFailed(
                f"upper tester recv: expected {'end of file' if step_spec.eof else 'data'}, got {record.detail}",
                "eof" if step_spec.eof else "data", record.detail,
            )  # fmt: skip
        if step_spec.expect_data is not None and data != step_spec.expect_data.encode():
            raise StepFailed(
                f"upper tester recv: expected the bytes {step_spec.expect_data!r}, got {data[:80]!r}",
                repr(step_spec.expect_data), repr(data[:80]),
            )  # fmt: skip
        if step_spec.expect_len is not None and len(data) != step_spec.expect_len:
            raise StepFailed(
                f"upper tester recv: expected {step_spec.expect_len} bytes, got {len(data)}",
                f"{step_spec.expect_len} bytes", record.detail,
            )  # fmt: skip

    async def _settled_state(self, spec: UtSpec, wanted: list[str], state: str) -> str:
        """Ask again for up to STATE_SETTLE_S: a stack in user space (or behind a VM) may still be processing
        the segment the tester just sent when the agent reads the state; the kernel of the local target never is.
        A state that is not reached by then is the stack's answer."""
        agent = self.ctx.session.agent
        assert agent is not None
        deadline = time.monotonic() + STATE_SETTLE_S
        while state not in wanted and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
            try:
                state = (await agent.submit("state", **self._args(spec)).answer(2.0)).get("state", "UNKNOWN")
            except AgentError:
                break
        return state

    async def release(self) -> None:
        """Close every socket the case opened on the target (best effort, bounded)."""
        agent = self.ctx.session.agent
        if agent is None:
            return
        calls = []
        for name, sock in self.handles.items():
            try:
                calls.append(agent.submit("close" if name == "listener" else "abort", sock=sock))
            except AgentError:
                return
        for call in calls:
            with contextlib.suppress(AgentError):
                await call.answer(2.0)

    def forget(self) -> None:
        """The stack was restarted: the sockets and calls of the case are gone with it."""
        self.handles.clear()
        self.calls.clear()
