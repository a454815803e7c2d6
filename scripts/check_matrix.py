"""CI gate for the matrix run: every target's results exist, ran cases, and none ended in ERROR (a verdict of
FAIL is a finding about that stack; an ERROR would be a fault of the suite or of the set-up)."""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path


def main(matrix_dir: str, *targets: str) -> int:
    status = 0
    for target in targets:
        path = Path(matrix_dir) / target / "results.json"
        if not path.exists():
            log = Path(matrix_dir) / f"{target}.log"
            lines = log.read_text().splitlines() if log.exists() else []
            cause = [line for line in lines if "could not be started" in line]
            print(f"{target}: no results ({path} missing)" + (f": {cause[-1].strip('! ')}" if cause else ""))
            status = 1
            continue
        cases = json.loads(path.read_text())["cases"]
        counts = Counter(c["verdict"] for c in cases)
        print(f"{target}: " + ", ".join(f"{v} {n}" for v, n in sorted(counts.items())))
        errors = [c for c in cases if c["verdict"] == "ERROR"]
        for case in errors[:5]:
            print(f"  ERROR {case['id']}[{case['family']}]: {case['reason'][:200]}")
        if errors or counts.get("PASS", 0) == 0:
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
