"""Network namespaces the suite creates: naming (a tag that marks them as ours), creation, removal,
running code inside one, and a reaper for the leftovers of dead runs."""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

TAG = "tcpconf"  # every namespace the suite creates is named tcpconf-<pid>-<suffix>
CLONE_NEWNET = 0x40000000
NETNS_DIR = "/run/netns"
_NAME = re.compile(rf"^{TAG}-(\d+)-[A-Za-z0-9_.-]+$")


class NetnsError(RuntimeError):
    """Creating or using a namespace failed; the message is one line meant for the user."""


def namespace_name(suffix: str) -> str:
    return f"{TAG}-{os.getpid()}-{suffix}"


def check_prerequisites() -> None:
    """Raise NetnsError with one line saying what is missing to run the local target."""
    if os.geteuid() != 0:
        raise NetnsError(
            "the local target needs root (network namespaces, TUN): run as root, run pytest itself as a user "
            "allowed to create user namespaces (docs/robustness.md), or pick a remote target with --target"
        )
    if shutil.which("ip") is None:
        raise NetnsError("the local target needs the 'ip' command (Debian package iproute2): run scripts/setup.sh")
    if not os.path.exists("/dev/net/tun"):
        raise NetnsError("the local target needs /dev/net/tun (TUN support in the kernel)")


def run(args: list[str], *, input_text: str | None = None, timeout: float = 10.0) -> None:
    """Run a system command; failures raise NetnsError with the command's own first error line."""
    try:
        proc = subprocess.run(args, input=input_text, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise NetnsError(f"{' '.join(args[:4])}: {exc}") from None
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise NetnsError(f"{' '.join(args)}: {detail[0] if detail else f'exit {proc.returncode}'}")


def create(name: str) -> None:
    if not _NAME.match(name):
        raise ValueError(f"namespace name {name!r} does not carry the suite's tag")
    run(["ip", "netns", "add", name])


def delete(name: str) -> None:
    """Remove a namespace of ours; absent is fine. Processes inside must be gone first."""
    if not _NAME.match(name):
        raise ValueError(f"refusing to delete {name!r}: not created by this suite")
    if os.path.exists(os.path.join(NETNS_DIR, name)):
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10, check=False)


def pids_in(name: str) -> list[int]:
    proc = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True, timeout=10, check=False)
    return [int(p) for p in proc.stdout.split() if p.isdigit()]


def kill_all(name: str) -> None:
    """SIGKILL every process in a namespace (it cannot be deleted while they live); absent is fine."""
    if not os.path.exists(os.path.join(NETNS_DIR, name)):
        return
    for pid in pids_in(name):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 9)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def reap_leftovers() -> list[str]:
    """Delete namespaces tagged by runs whose process no longer exists; returns what was removed."""
    removed = []
    try:
        names = os.listdir(NETNS_DIR)
    except FileNotFoundError:
        return removed
    for name in names:
        m = _NAME.match(name)
        if not m or _alive(int(m.group(1))):
            continue
        kill_all(name)
        delete(name)
        removed.append(name)
    return removed


_libc = ctypes.CDLL(None, use_errno=True)


def call_in_netns(name: str, fn: Callable[[], T]) -> T:
    """Run ``fn`` on a short-lived thread that has entered the namespace.

    Network namespaces are per thread, so the rest of the process is unaffected; sockets and TUN devices
    opened by ``fn`` stay in the namespace after the thread ends (Python 3.11 has no os.setns).
    """
    box: dict[str, object] = {}

    def body() -> None:
        try:
            fd = os.open(os.path.join(NETNS_DIR, name), os.O_RDONLY)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise NetnsError(f"setns({name}): {os.strerror(err)}")
            finally:
                os.close(fd)
            box["value"] = fn()
        except BaseException as exc:  # handed back to the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=body, name=f"netns-{name}")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]  # type: ignore[return-value]
