"""Run the catalogue once per link impairment and compare the verdicts with the clean link.

    .venv/bin/python bench/impairment.py -- -n 2 -m "not slow"

Prints the verdict distribution per impairment and, most important, the FAILs that are not FAILs on the
clean link (a trustworthy engine has none). Exits 1 if there is one. ``--from DIR`` only re-reads the
reports of an earlier run.
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
IMPAIRMENTS = ["", "loss 1%", "delay 5ms 2ms", "duplicate 0.5%", "reorder 25% delay 5ms"]
VERDICTS = ["PASS", "FAIL", "INCONCLUSIVE", "ERROR", "NOT-RUN"]


def slug(impairment: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", impairment.replace("%", "pct")).strip("-") or "clean"


def run(impairment: str, run_dir: Path, pytest_args: list[str]) -> float:
    # --rootdir: a bare report path among the arguments would otherwise move pytest's rootdir (and targets.yaml).
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--rootdir={REPO}",
           f"--report-dir={run_dir}", *pytest_args]  # fmt: skip
    if impairment:
        cmd.append(f"--impair={impairment}")
    started = time.monotonic()
    subprocess.run(cmd, cwd=REPO, capture_output=True, check=False)
    elapsed = time.monotonic() - started
    (run_dir / "wall_s").write_text(f"{elapsed:.1f}\n")
    return elapsed


def verdicts(run_dir: Path) -> dict[str, dict]:
    cases = json.loads((run_dir / "results.json").read_text())["cases"]
    return {f"{c['id']}[{c['family']}]": c for c in cases}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "reports" / "impairment")
    parser.add_argument("--from", dest="existing", action="store_true", help="only read the reports in --out")
    parser.add_argument("--impair", action="append", help="an impairment to run (repeatable; default: the five)")
    parser.add_argument("pytest_args", nargs="*", default=["-n", "2", "-m", "not slow"])
    args = parser.parse_args()
    impairments = ["", *(i for i in args.impair if i)] if args.impair else IMPAIRMENTS  # clean is the baseline
    results: dict[str, dict[str, dict]] = {}
    walls: dict[str, float] = {}
    for imp in impairments:
        run_dir = args.out / slug(imp)
        if not args.existing:
            print(f"running {imp or 'clean'} ...", flush=True)
            run(imp, run_dir, args.pytest_args)
        results[imp] = verdicts(run_dir)
        wall = run_dir / "wall_s"
        walls[imp] = float(wall.read_text()) if wall.exists() else float("nan")
    clean = results[""]
    header = f"| impairment | {' | '.join(VERDICTS)} | retried | new FAIL | wall s |"
    print(header)
    print("|" + "---|" * (len(VERDICTS) + 4))
    new_fails: list[str] = []
    for imp, cases in results.items():
        counts = collections.Counter(c["verdict"] for c in cases.values())
        retried = sum(len(c.get("attempts") or []) > 1 for c in cases.values())
        new = [k for k, c in cases.items() if c["verdict"] == "FAIL" and clean.get(k, {}).get("verdict") != "FAIL"]
        new_fails += [f"{imp}: {k}: {cases[k]['reason']}" for k in new]
        cells = " | ".join(str(counts.get(v, 0)) for v in VERDICTS)
        print(f"| {imp or 'clean'} | {cells} | {retried} | {len(new)} | {walls[imp]:.0f} |")
    for line in new_fails:
        print(f"NEW FAIL {line}")
    return 1 if new_fails else 0


if __name__ == "__main__":
    sys.exit(main())
