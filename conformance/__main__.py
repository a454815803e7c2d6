"""Command line: ``python -m conformance schema | check FILE... | report merge RESULTS... | report html RESULTS``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .model.case import json_schema
from .model.loader import CaseFormatError, load_case

USAGE_ERROR = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m conformance", description="TCP conformance suite tools")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("schema", help="print the JSON schema of the case format (for editor completion)")
    check = sub.add_parser("check", help="validate case files without running them")
    check.add_argument("paths", nargs="+", type=Path)
    report = sub.add_parser("report", help="render reports from results.json files")
    kinds = report.add_subparsers(dest="report", required=True)
    merge = kinds.add_parser("merge", help="one HTML matrix of cases by runs (targets) from several results.json")
    merge.add_argument("results", nargs="+", type=Path, metavar="RESULTS.json")
    merge.add_argument("-o", "--output", type=Path, default=Path("matrix.html"), help="default: matrix.html")
    page = kinds.add_parser("html", help="re-render a run's HTML report from its results.json")
    page.add_argument("results", type=Path, metavar="RESULTS.json")
    page.add_argument("-o", "--output", type=Path, default=None, help="default: index.html beside RESULTS.json")
    return parser


def _schema() -> int:
    json.dump(json_schema(), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


def _check(paths: list[Path]) -> int:
    errors = 0
    files = [p for path in paths for p in (sorted(path.rglob("*.yaml")) if path.is_dir() else [path])]
    for path in files:
        try:
            load_case(path, Path.cwd())
        except CaseFormatError as exc:
            print(exc, file=sys.stderr)
            errors += 1
    print(f"{len(files) - errors} valid, {errors} invalid", file=sys.stderr)
    return 1 if errors else 0


def _report(args: argparse.Namespace) -> int:
    """The report commands; a bad input or an unwritable output is one line on stderr and exit status 2."""
    from .report.matrix import ResultsError, write_matrix, write_report

    try:
        if args.report == "merge":
            write_matrix(args.results, args.output)
            written = args.output
        else:
            written = write_report(args.results, args.output)
    except ResultsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return USAGE_ERROR
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"error: {where}cannot write: {exc.strerror or exc}", file=sys.stderr)
        return USAGE_ERROR
    print(f"wrote {written}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "schema":
        return _schema()
    if args.command == "check":
        return _check(args.paths)
    return _report(args)


if __name__ == "__main__":
    sys.exit(main())
