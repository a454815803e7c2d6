"""Run the catalogue N times and compare the verdicts: a conformance suite must give the same answer.

    .venv/bin/python bench/stability.py --runs 10 -- -n 2 -m "not slow"

Prints, per case and family, any verdict that differed between runs, and exits 1 if one did.
"""

from __future__ import annotations

import argparse
import collections
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--out", type=Path, default=REPO / "reports" / "stability")
    parser.add_argument("pytest_args", nargs="*", default=["testcases"])
    args = parser.parse_args()
    seen: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for i in range(args.runs):
        run_dir = args.out / f"run{i}"
        started = time.monotonic()
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--report-dir={run_dir}",
               *args.pytest_args]  # fmt: skip
        subprocess.run(cmd, cwd=REPO, capture_output=True, check=False)
        cases = json.loads((run_dir / "results.json").read_text())["cases"]
        for case in cases:
            seen[f"{case['id']}[{case['family']}]"][case["verdict"]] += 1
        print(f"run {i + 1}: {len(cases)} cases in {time.monotonic() - started:.1f} s", flush=True)
    unstable = {key: counts for key, counts in seen.items() if len(counts) > 1}
    for key, counts in sorted(unstable.items()):
        print(f"UNSTABLE {key}: {dict(counts)}")
    print(f"{len(seen)} case items, {len(unstable)} with differing verdicts over {args.runs} runs")
    return 1 if unstable else 0


if __name__ == "__main__":
    sys.exit(main())
