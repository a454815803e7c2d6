"""The launched kind: the suite starts the stack, reaches it and removes everything, and every way a launch can
go wrong is one line in bounded time. The stack here is the Linux kernel on a veth pair inside the launch
namespace (tests/launched_linux.sh), so no zoo build is needed; passt and slirp run where installed."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from support import REPO, needs_netns, our_namespaces, run_suite

pytestmark = needs_netns
CASES = ["testcases/handshake/passive-open.yaml", "testcases/handshake/active-open.yaml",
         "testcases/reset/closed-port-syn.yaml", "testcases/header/syn-to-broadcast.yaml"]  # fmt: skip


def targets_file(tmp_path: Path, entry: str) -> Path:
    path = tmp_path / "targets.yaml"
    path.write_text("targets:\n  stack:\n    kind: launched\n" + entry)
    return path


LINUX_ON_VETH = f"""\
    launch: ["{REPO}/tests/launched_linux.sh", "{{python}}", "{{agent_py}}", --allow-connect, "{{ipv4_tester}}",
             --allow-connect, "{{ipv6_tester}}", --token, "{{token}}"]
    link: {{type: afpacket, interface: lt0}}
    agent: {{transport: stdio}}
    capabilities: [tcp.wscale, tcp.timestamps, tcp.sack]
"""


def test_a_launched_stack_runs_cases_and_is_removed(tmp_path: Path) -> None:
    run = run_suite(tmp_path, f"--targets-file={targets_file(tmp_path, LINUX_ON_VETH)}", "--target=stack", *CASES)
    verdicts = run.verdicts()
    assert set(verdicts.values()) == {"PASS"} and len(verdicts) == 7, (verdicts, run.stdout[-2000:])  # broadcast: IPv4
    assert run.returncode == 0
    assert not our_namespaces(run.pid)  # the launch namespace is gone
    assert not list(Path("/tmp").glob(f"tcpconf-{run.pid}-*"))  # and the work directory


def test_a_stack_that_is_not_built_is_named_with_its_build_command(tmp_path: Path) -> None:
    entry = LINUX_ON_VETH + "    needs: [zoo/nothing/build/prog]\n    build: zoo/nothing/build.sh\n"
    run = run_suite(tmp_path, f"--targets-file={targets_file(tmp_path, entry)}", "--target=stack", CASES[0])
    assert run.returncode == 4 and not (run.report_dir / "results.json").exists()
    assert _start_failure(run.stdout) == (
        "target 'stack' could not be started: stack is not installed (zoo/nothing/build/prog is missing): "
        "run zoo/nothing/build.sh"
    )


def _start_failure(stdout: str) -> str:
    """The one line a run that could not start its target ends with."""
    lines = [line for line in stdout.splitlines() if "could not be started" in line]
    assert len(lines) == 1, stdout[-2000:]
    return lines[0].removeprefix("! _pytest.outcomes.Exit: ").removesuffix(" !")


def test_a_launch_that_fails_is_an_error_quoting_its_log(tmp_path: Path) -> None:
    entry = (
        '    launch: [sh, -c, "echo the stack cannot find its tap >&2; exit 3"]\n'
        "    link: {type: tap}\n    agent: {transport: stdio}\n    ready_timeout: 5\n"
    )
    started = time.monotonic()
    run = run_suite(tmp_path, f"--targets-file={targets_file(tmp_path, entry)}", "--target=stack", *CASES[:2])
    assert time.monotonic() - started < 30
    assert run.returncode == 4
    reason = _start_failure(run.stdout)
    assert reason.startswith("target 'stack' could not be started: stack did not start:")
    assert "(log: the stack cannot find its tap)" in reason and "\n" not in reason


def test_a_stack_that_never_answers_hello_times_out(tmp_path: Path) -> None:
    entry = "    launch: [sleep, '60']\n    link: {type: tap}\n    agent: {transport: stdio}\n    ready_timeout: 2\n"
    started = time.monotonic()
    run = run_suite(tmp_path, f"--targets-file={targets_file(tmp_path, entry)}", "--target=stack", CASES[0])
    assert time.monotonic() - started < 30
    assert run.returncode == 4 and "no answer within 2 s" in _start_failure(run.stdout)


@pytest.mark.parametrize("target", ["zoo-passt", "zoo-slirp"])
def test_proxy_stacks_answer_closed_ports(tmp_path: Path, target: str) -> None:
    binary = {"zoo-passt": "passt", "zoo-slirp": "slirp4netns"}[target]
    if shutil.which(binary) is None:
        pytest.skip(f"{binary} is not installed (scripts/zoo.sh installs it)")
    run = run_suite(tmp_path, f"--target={target}", "testcases/reset/closed-port-syn.yaml")
    verdicts = run.verdicts()
    assert verdicts["RST-CLOSED-01[ipv4]"] in ("PASS", "FAIL"), run.results["cases"]
    assert "ERROR" not in verdicts.values()


def test_a_stack_whose_link_dies_is_launched_again_for_the_next_cases(tmp_path: Path) -> None:
    """One crash costs one case: the link of the launched stack is cut mid-run, the case that was running
    ends in ERROR (or lost its segment), and the stack is launched again before the next case."""
    cases = sorted(str(p.relative_to(REPO)) for p in (REPO / "testcases/reset").glob("closed-port-*.yaml"))
    cases += sorted(str(p.relative_to(REPO)) for p in (REPO / "testcases/handshake").glob("*.yaml"))
    before = set(our_namespaces())
    cut: list[str] = []

    def cut_the_link() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not cut:
            fresh = [n for n in set(our_namespaces()) - before if n.endswith("-main-stack")]
            if fresh:
                time.sleep(3.0)
                subprocess.run(["ip", "-n", fresh[0], "link", "del", "lt0"], capture_output=True, check=False)
                cut.append(fresh[0])
            time.sleep(0.05)

    threading.Thread(target=cut_the_link, daemon=True).start()
    run = run_suite(tmp_path, f"--targets-file={targets_file(tmp_path, LINUX_ON_VETH)}", "--target=stack", *cases)
    assert cut, "the link was never cut"
    results = sorted(run.results["cases"], key=lambda c: c["started"])
    errors = [i for i, c in enumerate(results) if c["verdict"] == "ERROR"]
    assert errors, [c["verdict"] for c in results]
    assert len(errors) <= 2, [(c["id"], c["reason"]) for c in results if c["verdict"] == "ERROR"]
    after = results[errors[-1] + 1 :]
    assert after and sum(c["verdict"] == "PASS" for c in after) >= len(after) // 2  # relaunched: cases pass again
    assert not our_namespaces(run.pid)
