"""Command line: ``python -m conformance schema`` and ``python -m conformance check FILE...``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .model.case import json_schema
from .model.loader import CaseFormatError, load_case


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m conformance", description="TCP conformance suite tools")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("schema", help="print the JSON schema of the case format (for editor completion)")
    check = sub.add_parser("check", help="validate case files without running them")
    check.add_argument("paths", nargs="+", type=Path)
    args = parser.parse_args(argv)
    if args.command == "schema":
        json.dump(json_schema(), sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    errors = 0
    files = [p for path in args.paths for p in (sorted(path.rglob("*.yaml")) if path.is_dir() else [path])]
    for path in files:
        try:
            load_case(path, Path.cwd())
        except CaseFormatError as exc:
            print(exc, file=sys.stderr)
            errors += 1
    print(f"{len(files) - errors} valid, {errors} invalid", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
