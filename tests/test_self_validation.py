"""Self-validation: deliberately broken variants of the local target must be caught, conformant ones not.

The variants live in tests/variants.yaml (nftables rules that drop or rewrite the target's segments,
and sysctls); each broken one names the cases that must FAIL against it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from support import REPO, needs_netns, run_suite

pytestmark = [needs_netns, pytest.mark.netns]

VARIANTS = REPO / "tests" / "variants.yaml"

# variant: (case files to run, ids of the cases that must FAIL)
BROKEN = {
    "broken-rst-dropped": (
        ["reset/closed-port-syn.yaml", "reset/closed-port-ack.yaml"],
        {"RST-CLOSED-01", "RST-CLOSED-02"},
    ),
    "broken-rst-without-ack": (
        ["reset/closed-port-syn.yaml"],
        {"RST-CLOSED-01"},
    ),
    "broken-rst-wrong-seq": (
        ["reset/closed-port-ack.yaml", "reset/closed-port-syn.yaml"],
        {"RST-CLOSED-01", "RST-CLOSED-02"},
    ),
    "broken-synack-ack-zero": (
        ["handshake/passive-open.yaml"],
        {"HS-PASSIVE-01"},
    ),
    "broken-synack-seq-zero": (
        ["handshake/passive-open.yaml"],
        {"HS-PASSIVE-01"},
    ),
    "broken-synack-no-mss": (
        ["options/mss-advertised-fits-mtu-ipv4.yaml", "options/mss-advertised-fits-mtu-ipv6.yaml"],
        {"OPT-MSS-ADVERTISED-01", "OPT-MSS-ADVERTISED-02"},
    ),
    "broken-synack-ece": (
        ["options/ecn-plain-syn.yaml"],
        {"OPT-ECN-03"},
    ),
    "broken-reserved-bits-set": (
        ["header/reserved-bits.yaml"],
        {"HDR-RESERVED-01"},
    ),
    "broken-syn-dropped": (
        ["handshake/active-open.yaml", "handshake/simultaneous-open.yaml"],
        {"HS-ACTIVE-01", "HS-SIMOPEN-01"},
    ),
    "broken-fin-dropped": (
        ["teardown/target-closes-first.yaml", "teardown/tester-closes-first.yaml"],
        {"CLOSE-TARGET-FIRST-01", "CLOSE-TESTER-FIRST-01"},
    ),
    "broken-pure-ack-dropped": (
        ["reset/syn-in-established.yaml", "teardown/tester-closes-first.yaml"],
        {"RST-SYNEST-01", "CLOSE-TESTER-FIRST-01"},
    ),
    "broken-no-synack-retransmission": (
        ["timers/synack-retransmission.yaml"],
        {"TMR-SYNACK-RTO-01"},
    ),
}  # fmt: skip

CONFORMANT = ["ok-no-timestamps", "ok-no-sack", "ok-no-wscale", "ok-rfc1337", "ok-small-buffers"]
CONFORMANT_FILES = [
    "testcases/handshake", "testcases/options", "testcases/reset/closed-port-syn.yaml",
    "testcases/reset/syn-in-established.yaml", "testcases/teardown/target-closes-first.yaml",
]  # fmt: skip


@pytest.mark.parametrize("variant", sorted(BROKEN))
def test_a_broken_variant_is_caught(tmp_path: Path, variant: str) -> None:
    files, must_fail = BROKEN[variant]
    run = run_suite(tmp_path, f"--targets-file={VARIANTS}", f"--target={variant}",
                    *(f"testcases/{f}" for f in files))  # fmt: skip
    cases = run.results["cases"]
    failed = {c["id"] for c in cases if c["verdict"] == "FAIL"}
    assert must_fail <= failed, f"{variant} went undetected by {sorted(must_fail - failed)}: {run.stdout[-2000:]}"
    assert not [c for c in cases if c["verdict"] == "ERROR"], run.stdout[-2000:]
    assert run.returncode == 1


@pytest.fixture(scope="module")
def baseline_failures(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    run = run_suite(tmp_path_factory.mktemp("baseline"), "-m", "not slow", *CONFORMANT_FILES)
    return {f"{c['id']}[{c['family']}]" for c in run.results["cases"] if c["verdict"] in ("FAIL", "ERROR")}


@pytest.mark.parametrize("variant", CONFORMANT)
def test_a_conformant_variant_is_not_flagged(tmp_path: Path, variant: str, baseline_failures: set[str]) -> None:
    run = run_suite(tmp_path, f"--targets-file={VARIANTS}", f"--target={variant}", "-m", "not slow",
                    *CONFORMANT_FILES)  # fmt: skip
    flagged = {f"{c['id']}[{c['family']}]" for c in run.results["cases"] if c["verdict"] in ("FAIL", "ERROR")}
    assert flagged <= baseline_failures, f"{variant} flagged: {sorted(flagged - baseline_failures)}"
