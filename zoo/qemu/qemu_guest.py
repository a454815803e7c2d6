"""Launch the QEMU zoo target: Linux 6.1 under TCG with its NIC on a stream socket and the agent on a
virtio-serial port, both exposed as UNIX sockets in a work directory (see README.md).

Files in WORKDIR: ``net.sock`` (Ethernet frames, each preceded by its length as 4 bytes big-endian; QEMU
listens, the tester connects), ``agent.sock`` (the agent protocol, JSON lines; QEMU listens), ``console.log``
(the guest's serial console) and ``qemu.log`` (QEMU's own output).

QEMU runs in a network namespace of its own (``unshare --net``): it has no network at all besides the stream
socket, and the namespace disappears with the process. Usable as a library (``QemuGuest``) or a command:

    python3 zoo/qemu/qemu_guest.py run WORKDIR [--sysctl KEY=VALUE]... [--token T] [--die-with-parent]  # execs QEMU
    python3 zoo/qemu/qemu_guest.py argv WORKDIR [...]                                    # prints the command
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the command-line use needs no suite installed: import it only where a client is made
    from conformance.upper_tester import AgentClient

HERE = Path(__file__).resolve().parent
BUILD_DIR = HERE / "build"
KERNEL = BUILD_DIR / "vmlinuz"
INITRD = BUILD_DIR / "initramfs.gz"
GUEST_MAC = "02:00:00:00:00:01"
MEMORY_MB = 256
_SYSCTL_KEY = re.compile(r"^[a-z0-9_]+(\.[A-Za-z0-9_-]+)+$")
_PLAIN = re.compile(r"^[A-Za-z0-9_.:/,+-]*$")
_TOKEN = re.compile(r"^[A-Za-z0-9_.:+-]{1,128}$")


def kernel_cmdline(sysctls: Mapping[str, str | int] | None = None, token: str | None = None) -> str:
    """The guest kernel's command line; ``sysctl.KEY=VALUE`` entries are applied by the kernel and again by /init."""
    parts = ["console=ttyS0", "panic=-1", "quiet", "loglevel=4"]
    for key, value in (sysctls or {}).items():
        text = str(value)
        if not _SYSCTL_KEY.match(key) or '"' in text or "\n" in text:
            raise ValueError(f"sysctl {key}={text!r} cannot travel on the kernel command line")
        parts.append(f"sysctl.{key}={text}" if _PLAIN.match(text) else f'sysctl.{key}="{text}"')
    if token is not None:
        if not _TOKEN.match(token):
            raise ValueError("the token must be 1-128 characters of [A-Za-z0-9_.:+-]")
        parts.append(f"tcpconf.token={token}")
    return " ".join(parts)


def qemu_argv(
    workdir: Path,
    sysctls: Mapping[str, str | int] | None = None,
    token: str | None = None,
    kernel: Path = KERNEL,
    initrd: Path = INITRD,
    memory_mb: int = MEMORY_MB,
) -> list[str]:
    """The full command line, starting with ``unshare --net`` (QEMU gets an empty network namespace)."""
    w = Path(workdir)
    return [
        "unshare", "--net", "--",
        "qemu-system-x86_64",
        "-accel", "tcg",
        "-m", str(memory_mb),
        "-nographic", "-nodefaults", "-no-user-config", "-no-reboot",
        "-monitor", "none",
        "-serial", f"file:{w / 'console.log'}",
        "-kernel", str(kernel),
        "-initrd", str(initrd),
        "-append", kernel_cmdline(sysctls, token),
        "-netdev", f"stream,id=net0,server=on,addr.type=unix,addr.path={w / 'net.sock'}",
        "-device", f"virtio-net-pci,netdev=net0,mac={GUEST_MAC},romfile=",
        "-device", "virtio-serial-pci,id=vser0",
        "-chardev", f"socket,id=agent0,path={w / 'agent.sock'},server=on,wait=off",
        "-device", "virtserialport,bus=vser0.0,nr=1,chardev=agent0,name=tcpconf.agent",
    ]  # fmt: skip


PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Ask the kernel to SIGTERM this process (QEMU, after exec) when the thread that started it ends.

    Keeps a crashed suite from leaving guests behind. The signal follows the parent *thread*: start QEMU
    from a thread that lives as long as the guest should.
    """
    if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG)")


class QemuGuestError(RuntimeError):
    """QEMU could not be started; the message ends with the tail of its log."""


class QemuGuest:
    """One QEMU process; ``start`` returns once both UNIX sockets exist (the guest is still booting then)."""

    def __init__(
        self,
        workdir: Path,
        sysctls: Mapping[str, str | int] | None = None,
        token: str | None = None,
        kernel: Path = KERNEL,
        initrd: Path = INITRD,
    ):
        self.workdir = Path(workdir)
        self.net_sock = self.workdir / "net.sock"
        self.agent_sock = self.workdir / "agent.sock"
        self.console_log = self.workdir / "console.log"
        self.qemu_log = self.workdir / "qemu.log"
        self.argv = qemu_argv(self.workdir, sysctls, token, kernel, initrd)
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 10.0) -> None:
        for path in (self.net_sock, self.agent_sock):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        with open(self.qemu_log, "wb") as log:
            self.process = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
        deadline = time.monotonic() + timeout
        while not (self.net_sock.exists() and self.agent_sock.exists()):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise QemuGuestError(f"QEMU did not come up: {self._log_tail()}")
            time.sleep(0.01)

    def stop(self) -> None:
        """Kill QEMU (SIGTERM, then SIGKILL after 3 s) and remove its sockets. Never raises."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=3.0)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5.0)
        for path in (self.net_sock, self.agent_sock):
            with contextlib.suppress(OSError):
                path.unlink()

    def _log_tail(self) -> str:
        try:
            lines = self.qemu_log.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "no log"
        return " | ".join(lines[-3:]) or "empty log"

    def __enter__(self) -> QemuGuest:
        self.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()


def connect_stream(path: Path, timeout: float = 5.0) -> socket.socket:
    """A connected UNIX stream socket (QEMU's server sockets accept before the guest has booted)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(str(path))
    except OSError:
        sock.close()
        raise
    sock.settimeout(None)
    return sock


def connect_agent(
    path: Path, token: str | None = None, hello_timeout: float = 30.0, resend_every: float = 2.0
) -> AgentClient:
    """An ``AgentClient`` on the agent's UNIX socket, after a successful ``hello`` (waits out the boot).

    Each attempt connects afresh and waits ``resend_every`` seconds for the answer to its ``hello``: a request
    that reaches the guest while the previous session's agent is still closing the port is discarded by the
    guest kernel. A refused token (AgentError) ends the attempts at once.
    """
    from conformance.upper_tester import AgentClient, AgentGone, AgentTimeout

    deadline = time.monotonic() + hello_timeout
    while True:
        wait = max(0.1, min(resend_every, deadline - time.monotonic()))
        try:
            return AgentClient.over_socket(connect_stream(path), token, f"agent@{path}", timeout=wait)
        except (AgentTimeout, AgentGone):
            if time.monotonic() >= deadline:
                raise


def _parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Run the QEMU zoo guest (Linux 6.1, TCG).")
    parser.add_argument("action", choices=["run", "argv"], help="run: exec QEMU; argv: print its command line")
    parser.add_argument("workdir", type=Path)
    parser.add_argument("--sysctl", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--token")
    parser.add_argument(
        "--die-with-parent", action="store_true", help="QEMU gets SIGTERM when the process that ran this one ends"
    )
    parser.add_argument("--kernel", type=Path, default=KERNEL)
    parser.add_argument("--initrd", type=Path, default=INITRD)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(sys.argv[1:] if argv is None else argv)
    sysctls = dict(item.split("=", 1) for item in args.sysctl)
    command = qemu_argv(args.workdir.resolve(), sysctls, args.token, args.kernel, args.initrd)
    if args.action == "argv":
        print(shlex.join(command))
        return 0
    for path in (args.kernel, args.initrd):
        if not path.is_file():
            print(f"qemu_guest: {path} missing: run zoo/qemu/build.sh", file=sys.stderr)
            return 1
    args.workdir.mkdir(parents=True, exist_ok=True)
    for name in ("net.sock", "agent.sock"):
        with contextlib.suppress(FileNotFoundError):
            (args.workdir / name).unlink()
    if args.die_with_parent:
        die_with_parent()
    os.execvp(command[0], command)
    return 1  # not reached


if __name__ == "__main__":
    sys.exit(main())
