"""Benchmark of the tester itself on the local target: reaction time and per-case overhead.

    .venv/bin/python bench/bench.py [--runs 5] [--workers N] [--out bench-results]

Runs the suite ``--runs`` times as a user would (``pytest testcases``), then reads every results.json:

- reaction time: a target segment in, the tester's scripted reply out, both stamped by the kernel on
  the TUN's packet socket. Counted where a ``send`` step directly follows the ``expect`` that matched
  the segment (no upper-tester action in between);
- per-case overhead: the item's wall time (engine, pytest item, pcap and results writing) minus the
  case's protocol waits: the silence windows and waits it declares, and the time until each expected
  segment arrived (the target's reaction or its timers). Upper-tester round trips count as overhead.
  The first case of a worker also pays for the target's start-up, reported separately;
- run wall time, and the sum of declared protocol waits.
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def reaction_times(case: dict) -> list[float]:
    """Seconds from a target segment to the tester's reply sent by the very next step."""
    kinds = {s["index"]: s["kind"] for s in case["steps"]}
    out = []
    trace = case["trace"]
    for before, after in itertools.pairwise(trace):
        if before["dir"] != "in" or after["dir"] != "out" or before["step"] is None or after["step"] is None:
            continue
        follows = after["step"] == before["step"] + 1 and kinds.get(after["step"]) == "send"
        # A segment that arrived during an earlier wait and was examined later is not a reaction.
        if follows and kinds.get(before["step"], "").startswith("expect") and after["t"] - before["t"] < 0.05:
            out.append(after["t"] - before["t"])
    return out


def run_suite(out_dir: Path, workers: int, extra: list[str]) -> tuple[float, float, float]:
    """Wall time of one run, the peak RSS (MB) of the largest process it started (pytest or a worker), and
    the wall-clock time at which the run was started (to measure how long until its first case began)."""
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--report-dir", str(out_dir), *extra]
    if workers > 1:
        cmd += ["-n", str(workers)]
    wall_start = time.time()
    started = time.monotonic()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False)
    elapsed = time.monotonic() - started
    if proc.returncode not in (0, 1):
        sys.exit(f"suite run failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    # ru_maxrss of children is the largest peak among all waited-for descendants, in KiB on Linux.
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return elapsed, peak_mb, wall_start


def row(name: str, unit: str, scale: float, values: list[float]) -> str:
    if not values:
        return f"| {name} | 0 | - | - | - | - |"
    cells = [statistics.median(values), percentile(values, 90), percentile(values, 99), max(values)]
    return f"| {name} ({unit}) | {len(values)} | " + " | ".join(f"{v * scale:.3f}" for v in cells) + " |"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--out", type=Path, default=REPO / "reports" / "bench")
    parser.add_argument("pytest_args", nargs="*", default=["testcases"])
    args = parser.parse_args()

    reactions, overheads, setups, walls, declared, rss, floods, longest = [], [], [], [], [], [], [], []
    startups: list[float] = []
    cases_total = 0
    for i in range(args.runs):
        run_dir = args.out / f"run{i}"
        wall, peak, wall_start = run_suite(run_dir, args.workers, args.pytest_args)
        walls.append(wall)
        rss.append(peak)
        results = json.loads((run_dir / "results.json").read_text())
        first = min(datetime.fromisoformat(c["started"].replace("Z", "+00:00")).timestamp() for c in results["cases"])
        startups.append(first - wall_start)
        run_declared = 0.0
        for case in results["cases"]:
            cases_total += 1
            reactions += reaction_times(case)
            overheads.append(case["item_wall_s"] - case["protocol_wait_s"])
            run_declared += case["protocol_wait_s"]
            if case["target_setup_s"] > 0.005:
                setups.append(case["target_setup_s"])
            if "flood_rate" in case.get("observations", {}):
                floods.append(float(case["observations"]["flood_rate"]))
        declared.append(run_declared)
        longest.append(max((c["item_wall_s"] for c in results["cases"]), default=0.0))

    print(f"machine: {platform.node()} {platform.platform()} python {platform.python_version()}")
    print(f"runs: {args.runs} x `pytest {' '.join(args.pytest_args)}`, workers {args.workers}, cases {cases_total}")
    print()
    print("| metric | n | median | p90 | p99 | max |")
    print("|---|---|---|---|---|---|")
    print(row("reaction time", "us", 1e6, reactions))
    print(row("per-case overhead", "ms", 1e3, overheads))
    print(row("target start-up per worker", "ms", 1e3, setups))
    print(row("run wall time", "s", 1, walls))
    print(row("protocol waits per run (declared + target timers)", "s", 1, declared))
    print(row("longest case per run", "s", 1, longest))
    print(row("peak RSS of the largest process", "MB", 1, rss))
    if floods:
        print(row("flood rate, one worker", "SYN/s", 1, floods))
    startup = statistics.median(startups)
    print(f"\nstart-up (interpreters, pytest, collection, workers; until the first case began): {startup:.2f} s")
    budget = 1.3 * statistics.median(declared) / args.workers + startup
    print(
        f"fast-set budget 1.3 x (declared waits / workers) + start-up = {budget:.2f} s; "
        f"measured median wall {statistics.median(walls):.2f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
