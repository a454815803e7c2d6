"""Running the local target without root (conformance/targets/userns.py, docs/robustness.md).

The suite runs as the unprivileged user ``nobody``. What this machine has that a stock Debian host does not is
adjusted for the test only, in a private mount namespace (nothing outside it changes): every directory nobody
must reach (the checkout, the Python installation its venv points to, the report directory) is made reachable
when one of its parents is private (mode 0700, as root's home and ``mktemp -d`` folders are), by a tmpfs laid
over that parent with the path rebuilt in it and the directory bound back at its own path; and /dev/net/tun is
mode 0600 (Debian's default is 0666), for which a 0666 node of the same device is bound over it. A checkout
that other users cannot read at all is skipped with one line saying what to change.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conformance.targets import userns
from conformance.targets.launched import reachable_tmp
from support import REPO, needs_netns

NOBODY = "65534"
# $1: 1 = bind a 0666 /dev/net/tun; $2: 1 = forbid user namespaces (in a user namespace of the test's own);
# $3: an empty directory for the private mounts; $4: shell lines that make the needed directories reachable.
HARNESS = r"""
set -e
tun_ok=$1; forbid=$2; d=$3; reach=$4; shift 4
mount -t tmpfs tcpconf-test "$d"
if [ "$tun_ok" = 1 ]; then
  mknod "$d/tun" c 10 200; chmod 0666 "$d/tun"; mount --bind "$d/tun" /dev/net/tun
fi
umask 022
eval "$reach"
if [ "$forbid" = 1 ]; then
  # A user namespace mapping the host's ids 1:1 whose children may not create user namespaces.
  # The ids are mapped from outside while the shell waits; it then execs again to become root of it.
  exec unshare --user -- sh -c 'read go; exec sh -c "echo 0 > /proc/sys/user/max_user_namespaces &&
    exec setpriv --reuid 65534 --regid 65534 --clear-groups -- \"\$@\"" sh "$@"' sh "$@"
fi
exec setpriv --reuid 65534 --regid 65534 --clear-groups -- "$@"
"""


def private_parent(path: Path) -> Path | None:
    """The outermost parent of ``path`` that other users cannot traverse (no o+x), if any."""
    for parent in reversed(path.parents):
        if parent != Path("/") and not parent.stat().st_mode & stat.S_IXOTH:
            return parent
    return None


def reachable_script(paths: list[Path], keep: str) -> str:
    """Shell lines (run in the private mount namespace) that make every path reachable by other users at its own
    path: each is bound aside under ``keep``, a 0755 tmpfs covers each private parent, the paths are rebuilt in
    it and bound back. Paths without a private parent are left alone."""
    exposed = [(p, a) for p in dict.fromkeys(paths) if (a := private_parent(p)) is not None]
    covers = sorted({a for _, a in exposed}, key=lambda a: len(a.parts))
    covers = [a for a in covers if not any(o != a and o in a.parents for o in covers)]
    lines = []
    for index, (path, _) in enumerate(exposed):
        lines.append(f"mkdir -p {keep}/{index} && mount --bind {shlex.quote(str(path))} {keep}/{index}")
    lines += [f"mount -t tmpfs -o mode=0755 tcpconf-reach {shlex.quote(str(a))}" for a in covers]
    for index, (path, _) in sorted(enumerate(exposed), key=lambda item: len(item[1][0].parts)):
        lines.append(f"mkdir -p {shlex.quote(str(path))} && mount --bind {keep}/{index} {shlex.quote(str(path))}")
    return "\n".join(lines)


def unreadable_for_others(repo: Path) -> str | None:
    """Why nobody cannot use this checkout even when its parents are made reachable (None: it can)."""
    for path in (repo, repo / "conformance", repo / "conformance" / "__init__.py", repo / ".venv" / "pyvenv.cfg"):
        mode = path.stat().st_mode
        needed = stat.S_IROTH | (stat.S_IXOTH if path.is_dir() else 0)
        if mode & needed != needed:
            return (
                f"{path} is mode {stat.S_IMODE(mode):04o}: the rootless tests run the checkout as the user nobody, "
                f"who cannot read it; make it readable (chmod -R o+rX {repo}) or clone with umask 022"
            )
    return None


pytestmark = [needs_netns, pytest.mark.netns]


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory nobody may write its report into (under /tmp, which everyone may traverse, whatever TMPDIR
    says: the harness keeps its private mounts there too)."""
    path = Path(tempfile.mkdtemp(prefix="tcpconf-rootless-", dir="/tmp"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def as_nobody(
    args: list[str], report: Path, *, tun_ok: bool = True, forbid: bool = False
) -> subprocess.CompletedProcess:
    unreadable = unreadable_for_others(REPO)
    if unreadable is not None:
        pytest.skip(unreadable)
    venv_python = REPO / ".venv" / "bin" / "python"
    installation = Path(os.path.realpath(venv_python)).parent.parent  # the interpreter the venv was made from
    (report / "mnt").mkdir()
    reach = reachable_script([REPO, installation, report], f"{report / 'mnt'}/keep")
    cmd = ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", HARNESS, "harness",
           "1" if tun_ok else "0", "1" if forbid else "0", str(report / "mnt"), reach,
           "env", f"HOME={report}", str(venv_python), "-m", "pytest", "-q", "--report-dir", str(report / "run"),
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


INSIDE_PRIVATE_CHECKOUT = "TCPCONF_TEST_PRIVATE_CHECKOUT"


@pytest.mark.skipif(
    bool(os.environ.get(INSIDE_PRIVATE_CHECKOUT)), reason="this run is the one from the private checkout"
)
def test_the_rootless_tests_pass_from_a_checkout_in_a_private_directory() -> None:
    """The checkout seen at a path inside a mode-0700 directory (a bind mount in a private mount namespace: what a
    clone into root's home or a `mktemp -d` folder gives), and the three rootless tests run from there."""
    private = Path(tempfile.mkdtemp(prefix="tcpconf-private-", dir="/tmp"))
    try:
        assert stat.S_IMODE(private.stat().st_mode) == 0o700
        checkout = private / "checkout"
        checkout.mkdir()
        inner = [str(checkout / ".venv" / "bin" / "python"), "-m", "pytest", "-q", "tests/test_rootless.py",
                 "-k", "unprivileged_user or user_namespaces or tun_device"]  # fmt: skip
        where = shlex.quote(str(checkout))
        script = f'mount --bind {shlex.quote(str(REPO))} {where} && cd {where} && exec "$@"'
        run = subprocess.run(["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script, "sh", *inner],
                             env={**os.environ, INSIDE_PRIVATE_CHECKOUT: "1"}, capture_output=True, text=True,
                             timeout=900)  # fmt: skip
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        assert "3 passed" in run.stdout.splitlines()[-1], run.stdout[-3000:]
    finally:
        shutil.rmtree(private, ignore_errors=True)


@pytest.fixture
def open_tmp() -> Iterator[Path]:
    """A directory every user can reach (pytest's own tmp_path lies in a 0700 directory of root's)."""
    path = Path(tempfile.mkdtemp(prefix="tcpconf-reach-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_only_private_parents_are_covered_and_every_path_is_bound_back(open_tmp: Path) -> None:
    tmp_path = open_tmp
    private = tmp_path / "home"
    (private / "src" / "checkout").mkdir(parents=True)
    private.chmod(0o700)
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    assert private_parent(private / "src" / "checkout") == private
    assert private_parent(open_dir) is None
    lines = reachable_script([private / "src" / "checkout", open_dir], "/k").splitlines()
    assert lines == [
        f"mkdir -p /k/0 && mount --bind {private}/src/checkout /k/0",
        f"mount -t tmpfs -o mode=0755 tcpconf-reach {private}",
        f"mkdir -p {private}/src/checkout && mount --bind /k/0 {private}/src/checkout",
    ]


def test_a_checkout_others_cannot_read_is_one_line_saying_what_to_change(tmp_path: Path) -> None:
    (tmp_path / "conformance").mkdir()
    (tmp_path / "conformance" / "__init__.py").write_text("")
    (tmp_path / ".venv").mkdir()
    (tmp_path / ".venv" / "pyvenv.cfg").write_text("")
    tmp_path.chmod(0o755)
    assert unreadable_for_others(tmp_path) is None
    (tmp_path / "conformance" / "__init__.py").chmod(0o600)
    reason = unreadable_for_others(tmp_path)
    assert reason is not None and "__init__.py is mode 0600" in reason and "chmod -R o+rX" in reason


def test_launched_stacks_work_where_every_user_can_reach(open_tmp: Path) -> None:
    tmp_path = open_tmp
    inside = tmp_path / "private" / "tmp"
    inside.mkdir(parents=True)
    assert reachable_tmp(str(inside)) == str(inside)
    (tmp_path / "private").chmod(0o700)
    assert reachable_tmp(str(inside)) == "/tmp"
