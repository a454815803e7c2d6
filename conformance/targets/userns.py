"""Running the local target without root: the run re-enters itself in a user namespace.

Theory of operation. An unprivileged user cannot create network namespaces in the host's user namespace,
and /run/netns (where ``ip netns`` keeps its names) belongs to root. So before any case runs, the pytest
process replaces itself (exec, same pid) with

    unshare --user --map-root-user --net --mount --propagation private -- sh -c 'mount /run/netns; exec pytest'

Inside, the user is root of a user namespace of its own: it may create network namespaces, TUN devices,
packet sockets, per-namespace sysctls and nftables rules there (all owned by that user namespace, and
useless outside it), and ``ip netns`` works on a private tmpfs over /run/netns that no one else sees. The
run's own outer network namespace is empty, so nothing can reach the host's network. When the last process
of the run ends, the kernel removes every namespace and device of it: nothing survives even a SIGKILL.

What the host must allow: user namespaces for unprivileged users (user.max_user_namespaces > 0, and on
kernels with the Debian/Ubuntu switch kernel.unprivileged_userns_clone = 1), and a /dev/net/tun the user
may open (mode 0666, Debian's default; TUNSETIFF itself is checked against the namespace's owner).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

MARK = "TCPCONF_USERNS"  # set inside the re-entered run, so it never re-enters twice
SYSCTLS = {
    "kernel.unprivileged_userns_clone": ("/proc/sys/kernel/unprivileged_userns_clone", "1"),
    "user.max_user_namespaces": ("/proc/sys/user/max_user_namespaces", "15000"),
}
# Mount a private /run/netns (a tmpfs over /run if the directory does not exist) and start the run.
_BOOT = (
    "if [ -d /run/netns ]; then mount -t tmpfs -o mode=0755 tcpconf /run/netns || exit 1; "
    'else mount -t tmpfs -o mode=0755 tcpconf /run && mkdir /run/netns || exit 1; fi; exec "$@"'
)


def _sysctl(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def refusal(tun: str = "/dev/net/tun") -> str | None:
    """None when this user can run the local target in a user namespace, else one line saying what is needed."""
    for name, (path, good) in SYSCTLS.items():
        if _sysctl(path) == "0":
            return (
                f"the local target needs root or unprivileged user namespaces, and this host disables them "
                f"({name} = 0): run as root, or allow them with `sysctl -w {name}={good}`"
            )
    if shutil.which("unshare") is None:
        return "the local target without root needs the 'unshare' command (Debian package util-linux)"
    probe = subprocess.run(["unshare", "--user", "--map-root-user", "--net", "true"],
                           capture_output=True, text=True, timeout=10, check=False)  # fmt: skip
    if probe.returncode != 0:
        detail = (probe.stderr.strip().splitlines() or [f"exit {probe.returncode}"])[-1]
        return (
            f"the local target needs root or unprivileged user namespaces, and creating one failed ({detail}): "
            f"run as root, or allow them (sysctl user.max_user_namespaces > 0, kernel.unprivileged_userns_clone = 1)"
        )
    if not os.access(tun, os.R_OK | os.W_OK):
        mode = oct(os.stat(tun).st_mode & 0o777) if os.path.exists(tun) else "missing"
        return (
            f"the local target without root needs to open {tun} (mode here: {mode}): run as root, or "
            f"`chmod 0666 {tun}` (Debian's default; creating a device still needs CAP_NET_ADMIN in its namespace)"
        )
    return None


def reentry_argv(pytest_args: list[str]) -> list[str]:
    """The command that runs the same pytest invocation inside a user namespace of its own."""
    return [
        "unshare", "--user", "--map-root-user", "--net", "--mount", "--propagation", "private", "--",
        "sh", "-c", _BOOT, "tcpconf-userns", sys.executable, "-m", "pytest", *pytest_args,
    ]  # fmt: skip


def inside() -> bool:
    return os.environ.get(MARK) == "1"


def _temproot() -> str:
    """pytest's temporary root for the re-entered run: inside, the user is named root, and /tmp/pytest-of-root
    belongs to the real root. One directory per real user, reused by later runs."""
    path = Path(tempfile.gettempdir()) / f"tcpconf-userns-{os.getuid()}"
    try:
        path.mkdir(mode=0o700, exist_ok=True)
        if not path.is_symlink() and path.stat().st_uid == os.getuid():
            return str(path)
    except OSError:
        pass
    return tempfile.mkdtemp(prefix="tcpconf-userns-")


def reenter(pytest_args: list[str]) -> None:
    """Replace this process by the same run inside a user namespace (does not return)."""
    os.environ[MARK] = "1"
    os.environ.setdefault("PYTEST_DEBUG_TEMPROOT", _temproot())
    sys.stdout.flush()
    sys.stderr.flush()
    os.execvp("unshare", reentry_argv(pytest_args))
