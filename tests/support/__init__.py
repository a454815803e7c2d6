"""Helpers shared by the project's own tests (imported as `support`)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TARGETS = REPO / "targets.yaml"


def netns_available() -> str | None:
    """None when namespaces can be used here, else the reason they cannot."""
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    if shutil.which("ip") is None:
        return "needs the ip command (iproute2)"
    if not Path("/dev/net/tun").exists():
        return "needs /dev/net/tun"
    return None


needs_netns = pytest.mark.skipif(netns_available() is not None, reason=str(netns_available()))


def our_namespaces(pid: int | None = None) -> list[str]:
    """Namespaces carrying the suite's tag (of one run's pid, if given)."""
    try:
        names = os.listdir("/run/netns")
    except FileNotFoundError:
        return []
    prefix = f"tcpconf-{pid}-" if pid is not None else "tcpconf-"
    return [n for n in names if n.startswith(prefix) and not n.startswith("tcpconf-test-")]


@dataclass
class SuiteRun:
    returncode: int
    stdout: str
    stderr: str
    report_dir: Path
    pid: int

    @property
    def results(self) -> dict:
        return json.loads((self.report_dir / "results.json").read_text())

    def verdicts(self) -> dict[str, str]:
        return {f"{c['id']}[{c['family']}]": c["verdict"] for c in self.results["cases"]}


def run_suite(
    tmp_path: Path, *args: str, cwd: Path = REPO, timeout: float = 300, prefix: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
) -> SuiteRun:  # fmt: skip
    """Run the suite in a separate pytest process, as a user would, and collect its report.

    ``prefix`` runs it through another command (``ip netns exec BENCH``); ``env`` adds environment variables.
    """
    report_dir = tmp_path / "report"
    cmd = [*prefix, sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--report-dir", str(report_dir), *args]
    environ = {**os.environ, **(env or {})}
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environ)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"suite run timed out: {' '.join(cmd)}\n{out[-3000:]}\n{err[-3000:]}") from None
    return SuiteRun(proc.returncode, out, err, report_dir, proc.pid)


def orphaned_namespaces() -> list[str]:
    """Namespaces of the suite whose creating process is gone: what a run must never leave behind.

    (Robust against other runs on the same machine, whose namespaces belong to live processes.)
    """
    orphans = []
    for name in our_namespaces():
        owner = name.split("-")[1]
        if not owner.isdigit():  # a fixed name (the lab bench of `python -m conformance.lab up`): not a run's
            continue
        if not Path(f"/proc/{owner}").exists():
            orphans.append(name)
    return orphans
