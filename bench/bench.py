"""Benchmark of the tester itself on the local target: wall time against the longest case, reaction time while
many cases are in flight, per-case overhead, start-up and memory.

    .venv/bin/python bench/bench.py --runs 3                          # README's main command (the whole catalogue)
    .venv/bin/python bench/bench.py --runs 3 -- -m "not slow"         # the fast set
    .venv/bin/python bench/bench.py --runs 2 --workers 4 -- -m "not slow"

Runs the suite ``--runs`` times as a user would (``pytest ARGS``, in a process of its own), then reads every
results.json:

- run wall time, against the longest case of the run: the concurrent engine overlaps the cases' waits, so a run
  should take little more than its longest case (goals in docs/performance.md);
- start-up: from starting the process until the first case began (interpreter, pytest, plugin, collection,
  target);
- reaction time: a segment from the target in, the tester's scripted reply out, both stamped by the kernel on the
  TUN's packet socket. Counted where a ``send`` step directly follows the ``expect`` that matched the segment,
  from the later of the segment's arrival and the start of that ``expect`` (a segment that arrived while the case
  was busy in an earlier step, e.g. waiting on its agent, is the case's order of steps, not the tester's
  reaction). Reported over all such pairs and over those measured while at least ``--in-flight`` cases were in
  flight;
- per-case overhead: what a case took beyond its protocol waits (declared windows and waits, and the time until
  each expected segment or upper-tester result arrived): the engine's own work, the agent round trips of other
  operations and the time the case waited for the event loop, plus judging and building its record; split into
  the engine's own work (the case not blocked on the link or the agent, plus judging) and the rest (agent round
  trips of operations that do not wait on the target, and the event loop's turns while blocked); and the
  tester's CPU time per case (the pytest process, all its threads, from the first case to the end of the run:
  the engine, pytest's reporting, writing records and captures), which concurrency does not inflate;
- peak RSS of the largest process of the run (pytest or an xdist worker), and the most cases in flight at once;
- where the wall time went: the cases that must run alone (one after another, nothing else in flight), and the
  time from the end of the last case to the end of the process (results.json, the HTML report, exit).
"""

from __future__ import annotations

import argparse
import bisect
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


def started(case: dict) -> float:
    return datetime.fromisoformat(case["started"].replace("Z", "+00:00")).timestamp()


def reactions(case: dict) -> list[tuple[float, float]]:
    """(wall-clock instant, seconds) of each reaction of the tester in the case (see the module's description)."""
    kinds = {s["index"]: s["kind"] for s in case["steps"]}
    began = {s["index"]: s.get("t", 0.0) for s in case["steps"]}
    t0 = started(case)
    out = []
    for before, after in itertools.pairwise(case["trace"]):
        if before["dir"] != "in" or after["dir"] != "out" or before["step"] is None or after["step"] is None:
            continue
        follows = after["step"] == before["step"] + 1 and kinds.get(after["step"]) == "send"
        if follows and kinds.get(before["step"], "").startswith("expect"):
            ready = max(before["t"], began.get(before["step"], 0.0))
            out.append((t0 + ready, after["t"] - ready))
    return out


def in_flight_at(cases: list[dict]) -> callable:  # type: ignore[valid-type]
    """A function: wall-clock instant -> how many cases of the run were in flight then."""
    starts = sorted(started(c) for c in cases)
    ends = sorted(started(c) + c["duration_s"] for c in cases)
    return lambda t: bisect.bisect_right(starts, t) - bisect.bisect_right(ends, t)


def run_suite(out_dir: Path, workers: int, extra: list[str]) -> tuple[float, float, float]:
    """Wall time of one run, the peak RSS (MB) of the largest process it started, and when it was started."""
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--report-dir={out_dir}", *extra]
    if workers > 1:
        cmd += ["-n", str(workers)]
    wall_start = time.time()
    begun = time.monotonic()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False)
    elapsed = time.monotonic() - begun
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
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=1, help="pytest-xdist workers (default: none)")
    parser.add_argument("--in-flight", type=int, default=50, help="reaction times counted at this many in flight")
    parser.add_argument("--out", type=Path, default=REPO / "reports" / "bench")
    parser.add_argument("pytest_args", nargs="*", default=[])
    args = parser.parse_args()

    reaction_all: list[float] = []
    reaction_busy: list[float] = []
    overheads, record, walls, startups, longest, ratios, rss, floods, peaks = [], [], [], [], [], [], [], [], []
    cpu_per_case: list[float] = []
    own, agent_loop, alone_s, tails = [], [], [], []
    cases_total = 0
    for i in range(args.runs):
        run_dir = args.out / f"run{i}"
        wall, peak, wall_start = run_suite(run_dir, args.workers, args.pytest_args)
        results = json.loads((run_dir / "results.json").read_text())
        cases = results["cases"]
        cases_total += len(cases)
        walls.append(wall)
        rss.append(peak)
        startups.append(min(started(c) for c in cases) - wall_start)
        longest_case = max(c["duration_s"] for c in cases)
        longest.append(longest_case)
        ratios.append(wall / longest_case)
        peaks.append(float((results.get("run") or {}).get("peak_in_flight", 0)))
        cpu = (results.get("run") or {}).get("cpu_s")
        if cpu and args.workers <= 1:
            cpu_per_case.append(cpu / len(cases))
        count = in_flight_at(cases)
        alone_s.append(sum(c["duration_s"] for c in cases if c.get("alone")))
        tails.append(wall_start + wall - max(started(c) + c["duration_s"] for c in cases))
        for case in cases:
            for at, seconds in reactions(case):
                reaction_all.append(seconds)
                if count(at) >= args.in_flight:
                    reaction_busy.append(seconds)
            overheads.append(case["duration_s"] - case["protocol_wait_s"] + case.get("record_s", 0.0))
            record.append(case.get("record_s", 0.0))
            if "blocked_s" in case:
                own.append(case["duration_s"] - case["blocked_s"] + case.get("record_s", 0.0))
                agent_loop.append(case["blocked_s"] - case["protocol_wait_s"])
            if "flood_rate" in case.get("observations", {}):
                floods.append(float(case["observations"]["flood_rate"]))

    print(f"machine: {platform.node()} {platform.platform()} python {platform.python_version()}")
    command = " ".join(["pytest", *args.pytest_args] + (["-n", str(args.workers)] if args.workers > 1 else []))
    print(f"runs: {args.runs} x `{command}`, cases {cases_total}")
    print()
    print("| metric | n | median | p90 | p99 | max |")
    print("|---|---|---|---|---|---|")
    print(row("reaction time, all", "us", 1e6, reaction_all))
    print(row(f"reaction time, >= {args.in_flight} cases in flight", "us", 1e6, reaction_busy))
    print(row("per-case overhead (beyond protocol waits)", "ms", 1e3, overheads))
    print(row("of which the engine's own work (not blocked; judging included)", "ms", 1e3, own))
    print(row("of which blocked beyond protocol waits (agent round trips, loop)", "ms", 1e3, agent_loop))
    print(row("of which judging and building the record", "ms", 1e3, record))
    print(row("tester's CPU time per case (all its threads)", "ms", 1e3, cpu_per_case))
    print(row("start-up until the first case began", "s", 1, startups))
    print(row("run wall time", "s", 1, walls))
    print(row("longest case", "s", 1, longest))
    print(row("cases that run alone, one after another", "s", 1, alone_s))
    print(row("after the last case (results, report, exit)", "s", 1, tails))
    print(row("wall time / longest case", "x", 1, ratios))
    print(row("most cases in flight at once", "cases", 1, peaks))
    print(row("peak RSS of the largest process", "MB", 1, rss))
    if floods:
        print(row("flood rate", "SYN/s", 1, floods))
    wall, start, long_ = statistics.median(walls), statistics.median(startups), statistics.median(longest)
    print(f"\nmedian wall {wall:.2f} s = {wall / long_:.2f} x the longest case ({long_:.2f} s); "
          f"(wall - start-up) / longest = {(wall - start) / long_:.2f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
