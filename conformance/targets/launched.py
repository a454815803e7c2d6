"""The launched kind: a TCP stack the suite starts itself (a userspace stack on a tap, a VM behind a
stream socket, a proxy such as slirp4netns or passt), inside private namespaces it creates and removes.

The ``launch`` command is an argv list (never a shell line) with placeholders filled in here:
``{netns}`` the namespace it runs in, ``{link_netns}`` a second namespace for the link (created only when
used), ``{workdir}`` a private directory, ``{tap}`` the tap the suite created, ``{root}`` the directory of
targets.yaml, ``{python}`` this interpreter, ``{agent_py}`` the reference agent, ``{token}`` a fresh token,
``{tester_mac}``, ``{target_mac}``, ``{ipv4}``/``{ipv6}`` (target address/prefix) and
``{ipv4_target}``, ``{ipv4_tester}``, ``{ipv4_prefix}``, ``{ipv4_broadcast}`` and the same for ipv6.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import secrets
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO

from ..upper_tester import AgentClient, AgentError
from ..wire.link import Link
from . import netns
from .config import TargetConfig
from .local import AGENT_PATH
from .reach import TargetStartError, close_quietly, connect_agent, open_link
from .session import TargetBase

DEFAULT_TAP = "ltap0"
DEFAULT_TARGET_MAC = "02:00:00:00:00:01"


class LaunchedTarget(TargetBase):
    def __init__(self, config: TargetConfig, worker: str = "main", log_dir: Path | None = None,
                 root: Path | None = None) -> None:  # fmt: skip
        assert config.link is not None and config.launch is not None
        self.config = config
        self.worker = worker
        self.root = root or Path.cwd()
        self.ns = netns.namespace_name(f"{worker}-{config.name}"[:40])
        self.link_ns: str | None = None
        self.workdir: Path | None = None
        self.process: subprocess.Popen | None = None
        self.link: Link | None = None
        self.agent: AgentClient | None = None
        self.token = secrets.token_hex(8)
        self.log_path = log_dir / f"stack-{config.name}-{worker}.log" if log_dir else None
        self._log: IO[bytes] | None = None

    # ---- start ----
    def start(self) -> None:
        missing = [p for p in self.config.needs if not (self.root / p).exists()]
        if missing:
            how = f": run {self.config.build}" if self.config.build else ""
            raise TargetStartError(f"{self.config.name} is not installed ({missing[0]} is missing){how}")
        netns.check_prerequisites()
        netns.reap_leftovers()
        try:
            self._prepare()
            self._launch()
            self._open_link()
        except BaseException:
            self.stop()
            raise

    def _prepare(self) -> None:
        link = self.config.link
        assert link is not None
        netns.create(self.ns)
        netns.run(["ip", "-n", self.ns, "link", "set", "lo", "up"])
        if link.netns == "{link_netns}":
            self.link_ns = netns.namespace_name(f"{self.worker}-{self.config.name}-link"[:40])
            netns.create(self.link_ns)
        self.workdir = Path(tempfile.mkdtemp(prefix=f"{netns.TAG}-{os.getpid()}-", dir=reachable_tmp()))
        self.workdir.chmod(0o755)  # readable by stacks that drop root (passt runs as nobody)
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = self.log_path.open("ab")
        if link.type == "tap":
            tap = link.interface or DEFAULT_TAP
            commands = [f"tuntap add dev {tap} mode tap", f"link set {tap} up"]
            netns.run(["ip", "-n", self.ns, "-batch", "-"], input_text="\n".join(commands) + "\n")
            # The namespace's own kernel holds no address on the tap and must not chatter on it (RS, MLD).
            netns.run(["ip", "netns", "exec", self.ns, "sysctl", "-q", "-w", f"net.ipv6.conf.{tap}.disable_ipv6=1"])

    def placeholders(self) -> dict[str, str]:
        link, v4, v6 = self.config.link, self.config.ipv4, self.config.ipv6
        assert link is not None
        return {
            "netns": self.ns, "link_netns": self.link_ns or self.ns, "workdir": str(self.workdir),
            "tap": link.interface or DEFAULT_TAP, "root": str(self.root), "python": sys.executable,
            "agent_py": str(AGENT_PATH), "token": self.token, "tester_mac": link.tester_mac,
            "target_mac": link.target_mac or DEFAULT_TARGET_MAC,
            "ipv4": f"{v4.target}/{v4.prefix}", "ipv4_target": v4.target, "ipv4_tester": v4.tester,
            "ipv4_prefix": str(v4.prefix), "ipv6": f"{v6.target}/{v6.prefix}", "ipv6_target": v6.target,
            "ipv4_broadcast": str(ipaddress.ip_network(f"{v4.target}/{v4.prefix}", strict=False).broadcast_address),
            "ipv6_tester": v6.tester, "ipv6_prefix": str(v6.prefix),
        }  # fmt: skip

    def expand(self, text: str) -> str:
        try:
            return text.format_map(self.placeholders())
        except (KeyError, ValueError) as exc:
            raise TargetStartError(f"{self.config.name}: bad placeholder in {text!r}: {exc}") from None

    def _launch(self) -> None:
        assert self.config.launch is not None
        argv = ["ip", "netns", "exec", self.ns, *(self.expand(a) for a in self.config.launch)]
        agent = self.config.agent
        uses_token = any("{token}" in a for a in self.config.launch)
        deadline = time.monotonic() + self.config.ready_timeout
        if agent is not None and agent.transport == "stdio":
            try:
                self.agent = AgentClient.spawn(argv, token=self.token if uses_token else None, stderr=self._log,
                                               hello_timeout=self.config.ready_timeout)  # fmt: skip
            except (AgentError, OSError) as exc:
                raise TargetStartError(f"{self.config.name} did not start: {exc}{self._log_tail()}") from None
            self.process = self.agent.process
            return
        # A session of its own: a terminal's Ctrl-C is the suite's to handle (it stops the stack when its cases end)
        self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log,
                                        start_new_session=True)  # fmt: skip
        if agent is None:
            return
        assert agent.address is not None
        address = self.expand(agent.address)
        agent_cfg = agent.model_copy(update={"token": self.token if uses_token else agent.token})
        try:
            self.agent = connect_agent(agent_cfg, address, self._agent_ns(), deadline)
        except TargetStartError as exc:
            if self.process.poll() is not None:
                raise TargetStartError(f"{self.config.name} exited with {self.process.returncode}"
                                       f"{self._log_tail()}") from None  # fmt: skip
            raise TargetStartError(f"{self.config.name}: {exc}") from None

    def _agent_ns(self) -> str | None:
        agent = self.config.agent
        if agent is None or agent.netns is None:
            return None
        return self.expand(agent.netns)

    def _open_link(self) -> None:
        link = self.config.link
        assert link is not None
        interface = self.expand(link.interface) if link.interface else DEFAULT_TAP
        link_ns = self.expand(link.netns) if link.netns else self.ns
        address = self.expand(link.address) if link.address else None
        deadline = time.monotonic() + self.config.ready_timeout
        while True:  # the launched program may create its interface or socket a little after it answers
            try:
                self.link = open_link(self.config, link, interface, link_ns, address,
                                      timeout=max(0.1, deadline - time.monotonic()))  # fmt: skip
                break
            except OSError as exc:
                if time.monotonic() >= deadline or (self.process is not None and self.process.poll() is not None):
                    raise TargetStartError(f"{self.config.name}: link not available: {exc}{self._log_tail()}") from None
                time.sleep(0.1)

    def _log_tail(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        lines = [ln for ln in self.log_path.read_text(errors="replace").splitlines() if ln.strip()]
        return f" (log: {lines[-1][:200]})" if lines else ""

    # ---- run time ----
    def ensure_agent(self) -> None:
        """Before each case: a stack whose agent, process or link died (a crash during the last case) is
        launched again, so one crash costs one case, not the rest of the run."""
        if self.healthy():
            return
        self.stop()
        self.start()

    def healthy(self) -> bool:
        if self.link is None or self.link.down is not None:
            return False
        if self.process is not None and self.process.poll() is not None:
            return False
        return self.config.agent is None or (self.agent is not None and self.agent.alive)

    # ---- stop ----
    def stop(self) -> None:
        close_quietly(self.agent, self.link)
        self.agent, self.link = None, None
        if self.process is not None:
            with contextlib.suppress(OSError):
                self.process.terminate()
            try:
                self.process.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
            self.process = None
        for ns in (self.ns, self.link_ns):
            if ns:
                netns.kill_all(ns)
        if self.config.teardown:
            with contextlib.suppress(TargetStartError, netns.NetnsError):
                netns.run([self.expand(a) for a in self.config.teardown], timeout=30)
        for ns in (self.link_ns, self.ns):
            if ns:
                netns.delete(ns)
        self.link_ns = None
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None
        if self._log is not None:
            self._log.close()
            self._log = None


def reachable_tmp(base: str | None = None) -> str:
    """A directory for the launched stack's work files that every user can traverse down to: the temporary
    directory (TMPDIR) when it and all its parents let others through, else /tmp. Stacks that drop root (passt
    becomes nobody) must reach their socket there, and a TMPDIR inside a private home would hide it."""
    candidate = Path(base or tempfile.gettempdir())
    try:
        if all(p.stat().st_mode & stat.S_IXOTH for p in (candidate, *candidate.parents)):
            return str(candidate)
    except OSError:
        pass
    return "/tmp"
