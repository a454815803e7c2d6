"""Running the local target without root (conformance/targets/userns.py, docs/robustness.md).

The suite runs as the unprivileged user ``nobody``. Two things of this machine differ from a stock Debian
host and are adjusted for the test only, in a private mount namespace (nothing outside it changes): the
Python interpreter lives under /root (mode 0700), which is made traversable, and /dev/net/tun is mode 0600
(Debian's default is 0666), for which a 0666 node of the same device is bound over it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conformance.targets import userns
from support import REPO, needs_netns

NOBODY = "65534"
# $1: 1 = bind a 0666 /dev/net/tun; $2: 1 = forbid user namespaces (in a user namespace of the test's own);
# $3: an empty directory for the private mounts.
HARNESS = r"""
set -e
tun_ok=$1; forbid=$2; d=$3; shift 3
mount -t tmpfs tcpconf-test "$d"
if [ "$tun_ok" = 1 ]; then
  mknod "$d/tun" c 10 200; chmod 0666 "$d/tun"; mount --bind "$d/tun" /dev/net/tun
fi
if [ -d /root/.pyenv ]; then
  mkdir "$d/pyenv"; mount --bind /root/.pyenv "$d/pyenv"
  mount -t tmpfs -o mode=0755 tcpconf-root /root; mkdir /root/.pyenv; mount --bind "$d/pyenv" /root/.pyenv
fi
if [ "$forbid" = 1 ]; then
  # A user namespace mapping the host's ids 1:1 whose children may not create user namespaces.
  # The ids are mapped from outside while the shell waits; it then execs again to become root of it.
  exec unshare --user -- sh -c 'read go; exec sh -c "echo 0 > /proc/sys/user/max_user_namespaces &&
    exec setpriv --reuid 65534 --regid 65534 --clear-groups -- \"\$@\"" sh "$@"' sh "$@"
fi
exec setpriv --reuid 65534 --regid 65534 --clear-groups -- "$@"
"""

pytestmark = [needs_netns, pytest.mark.netns]


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory nobody may write its report into."""
    path = Path(tempfile.mkdtemp(prefix="tcpconf-rootless-"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def as_nobody(
    args: list[str], report: Path, *, tun_ok: bool = True, forbid: bool = False
) -> subprocess.CompletedProcess:
    python = str(REPO / ".venv" / "bin" / "python")
    (report / "mnt").mkdir()
    cmd = ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", HARNESS, "harness",
           "1" if tun_ok else "0", "1" if forbid else "0", str(report / "mnt"),
           "env", f"HOME={report}", python, "-m", "pytest", "-q", "--report-dir", str(report / "run"),
           *args]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)  # fmt: skip
    if forbid:  # map the ids of the test's user namespace from outside, then let it go on
        own = os.readlink("/proc/self/ns/user")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            child = _descendant_in_other_userns(proc.pid, own)
            if child is not None:
                Path(f"/proc/{child}/uid_map").write_text("0 0 65536\n")
                Path(f"/proc/{child}/gid_map").write_text("0 0 65536\n")
                break
            time.sleep(0.01)
    out, err = proc.communicate("go\n", timeout=600)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def _descendant_in_other_userns(pid: int, own: str) -> int | None:
    for candidate in [pid, *_children(pid)]:
        try:
            if os.readlink(f"/proc/{candidate}/ns/user") != own:
                return candidate
        except OSError:
            continue
    return None


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return out + [g for c in out for g in _children(c)]


def test_cases_run_as_an_unprivileged_user(shared_dir: Path) -> None:
    before = set(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else set()
    files = ["testcases/handshake/passive-open.yaml", "testcases/reset/closed-port-syn.yaml",
             "testcases/teardown/tester-closes-first.yaml"]  # fmt: skip
    run = as_nobody([*files, "-n", "2"], shared_dir)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    results = json.loads((shared_dir / "run" / "results.json").read_text())
    assert {c["verdict"] for c in results["cases"]} == {"PASS"}
    assert len(results["cases"]) == 6
    assert (shared_dir / "run" / "results.json").stat().st_uid == int(NOBODY)  # written by nobody
    # Its namespaces lived in the run's private /run/netns and died with it: the host's list is unchanged.
    after = set(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else set()
    assert not {n for n in after - before if n.startswith("tcpconf-")} - _others_now(after)


def _others_now(names: set[str]) -> set[str]:
    """Namespaces of other live runs on this shared machine (their creator process exists)."""
    return {
        n
        for n in names
        if n.count("-") >= 2 and n.split("-")[1].isdigit() and Path(f"/proc/{n.split('-')[1]}").exists()
    }


def test_without_user_namespaces_one_line_says_what_is_needed(shared_dir: Path) -> None:
    run = as_nobody(["testcases/reset/closed-port-syn.yaml"], shared_dir, forbid=True)
    assert run.returncode == 4, run.stdout[-2000:] + run.stderr[-2000:]
    assert run.stderr.strip() == (
        "ERROR: the local target needs root or unprivileged user namespaces, and this host disables them "
        "(user.max_user_namespaces = 0): run as root, or allow them with `sysctl -w user.max_user_namespaces=15000`"
    )


def test_an_unopenable_tun_device_is_one_line(shared_dir: Path) -> None:
    run = as_nobody(["testcases/reset/closed-port-syn.yaml"], shared_dir, tun_ok=False)
    assert run.returncode == 4, run.stdout[-2000:] + run.stderr[-2000:]
    (line,) = run.stderr.strip().splitlines()
    assert line.startswith("ERROR: the local target without root needs to open /dev/net/tun (mode here: 0o600)")


def test_the_switch_of_debian_kernels_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    switch = tmp_path / "unprivileged_userns_clone"
    switch.write_text("0\n")
    monkeypatch.setitem(userns.SYSCTLS, "kernel.unprivileged_userns_clone", (str(switch), "1"))
    reason = userns.refusal()
    assert reason is not None and "(kernel.unprivileged_userns_clone = 0)" in reason
    assert reason.endswith("`sysctl -w kernel.unprivileged_userns_clone=1`")
    switch.write_text("1\n")
    assert userns.refusal() is None  # as root here: namespaces allowed, /dev/net/tun openable
