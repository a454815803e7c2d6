"""Command line: ``python -m conformance run [PATH...] | schema | check PATH... | report merge RESULTS... |
report html RESULTS | report regrade RESULTS --profile P | mutate [PATH...] | cells [--write | --check]``.

Rules of this module: argument parsing and printing only; every command is a call into the library.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .model.loader import CaseFormatError, load_case
from .model.schema import json_schema
from .vocabulary import DEFAULT_PROFILE, PROFILES

USAGE_ERROR = 2
TARGET_UNAVAILABLE = 4  # the target could not be started: no case ran (pytest's usage-error status, as the plugin)


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
    regrade = kinds.add_parser("regrade", help="judge a finished run again under another profile, offline")
    regrade.add_argument("results", type=Path, metavar="RESULTS.json")
    regrade.add_argument("--profile", required=True, choices=sorted(PROFILES))
    regrade.add_argument("-o", "--output", type=Path, default=None,
                         help="default: results.PROFILE.json and index.PROFILE.html beside RESULTS.json")  # fmt: skip
    run = sub.add_parser("run", help="run cases on a target without pytest (report in reports/<run>/)")
    run.add_argument("paths", nargs="*", type=Path, default=[Path("testcases")], help="case files or directories")
    run.add_argument("--target", default="local", help="target name from targets.yaml (default: local)")
    run.add_argument("--targets-file", type=Path, default=Path("targets.yaml"))
    run.add_argument("--profile", default=DEFAULT_PROFILE, choices=sorted(PROFILES))
    run.add_argument("--report-dir", type=Path, default=None)
    run.add_argument("--concurrency", type=int, default=None, help="cases in flight at once (default: the target's)")
    run.add_argument("--attempts", type=int, default=None)
    run.add_argument("--impair", default=None, metavar="NETEM")
    run.add_argument("--family", choices=("ipv4", "ipv6"), action="append", help="only this family (repeatable)")
    run.add_argument("-q", "--quiet", action="store_true", help="only the summary")
    add_gate_arguments(run)
    mutate = sub.add_parser("mutate", help="run the catalogue against mutants of the reference model: what it kills")
    mutate.add_argument("paths", nargs="*", type=Path, default=[Path("testcases")], help="case files or directories")
    mutate.add_argument("--target", default="reference", help="a reference target from targets.yaml")
    mutate.add_argument("--targets-file", type=Path, default=Path("targets.yaml"))
    mutate.add_argument("--profile", default=None, choices=sorted(PROFILES), help="default: the target's behaves_as")
    mutate.add_argument("--with-slow", action="store_true", help="also the cases tagged slow")
    mutate.add_argument("-o", "--output", type=Path, default=None, help="write the outcome as JSON")
    cells = sub.add_parser("cells", help="the state x event matrix generated from the reference model: its size")
    action = cells.add_mutually_exclusive_group()
    action.add_argument("--write", action="store_true", help="write testcases/cells/ from the model")
    action.add_argument("--check", action="store_true", help="exit 1 when testcases/cells/ differs from the model")
    return parser


def _cells(args: argparse.Namespace) -> int:
    """Print the matrix's size per state; write or check its case files."""
    from .cellfiles import CELLS_DIR, stale, write
    from .oracle.cells import cells_by_state

    root = Path.cwd()
    if not (root / "testcases").is_dir():
        print(f"error: run this from the checkout (no testcases/ in {root})", file=sys.stderr)
        return USAGE_ERROR
    if args.check:
        problems = stale(root)
        for problem in problems:
            print(problem)
        if problems:
            print(f"{CELLS_DIR} differs from the reference model: run python -m conformance cells --write")
            return 1
        print(f"{CELLS_DIR} is in step with the reference model")
    if args.write:
        write(root)
    print(f"{'state':14} {'cells':>6} {'distinct':>9}")
    total = distinct = 0
    for state, (raw, kept) in cells_by_state().items():
        print(f"{state:14} {raw:6} {kept:9}")
        total, distinct = total + raw, distinct + kept
    print(f"{'all':14} {total:6} {distinct:9}  ({CELLS_DIR}: one case file per distinct cell)")
    return 0


def _schema() -> int:
    json.dump(json_schema(), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


def _check(paths: list[Path]) -> int:
    """Each file loads, and its refs keep the level rule and are in the requirements registry.

    Every problem is one line ``file:line:col: path: message`` on stderr; a file with any problem is invalid.
    """
    from .grading.registry import RegistryError, load_registry, ref_problems

    errors = 0
    files = [p for path in paths for p in (sorted(path.rglob("*.yaml")) if path.is_dir() else [path])]
    try:
        registry = load_registry()
    except RegistryError as exc:
        print(exc, file=sys.stderr)
        return 1
    seen: dict[str, Path] = {}  # case id -> its first file
    for path in files:
        try:
            case = load_case(path, Path.cwd())
        except CaseFormatError as exc:
            print(exc, file=sys.stderr)
            errors += 1
            continue
        try:
            source = str(path.relative_to(Path.cwd()))
        except ValueError:
            source = str(path)
        problems = [p.line_text(source) for p in ref_problems(registry, [case])]
        first = seen.setdefault(case.id, path)
        if first != path:  # pytest would refuse the second file at collection
            problems.append(f"{source}:{case.line}:1: id: '{case.id}' is already used by {first}")
        for problem in problems:
            print(problem, file=sys.stderr)
        errors += bool(problems)
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


def _regrade(args: argparse.Namespace) -> int:
    """Judge a finished run again under another profile; writes results.PROFILE.json and index.PROFILE.html."""
    from .report.html import write_html
    from .report.matrix import ResultsError, load_results
    from .results import regrade, write_document

    try:
        doc = regrade(load_results(args.results), args.profile)
    except (ResultsError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return USAGE_ERROR
    out = args.output or args.results.parent
    try:
        out.mkdir(parents=True, exist_ok=True)
        write_document(doc, out / f"results.{args.profile}.json")
        write_html(doc, out / f"index.{args.profile}.html")
    except OSError as exc:
        print(f"error: {exc.filename or out}: cannot write: {exc.strerror or exc}", file=sys.stderr)
        return USAGE_ERROR
    print(doc["grade"]["statement"])
    print(f"wrote {out / f'results.{args.profile}.json'} and {out / f'index.{args.profile}.html'}", file=sys.stderr)
    return 0


class RunUsageError(Exception):
    """A `run` command line that cannot run (a bad option value, nothing selected): one line, exit status 2."""


def add_gate_arguments(parser: argparse.ArgumentParser) -> None:
    """The coverage gate a CI can use (also pytest's options of the same names)."""
    parser.add_argument("--min-coverage", type=float, default=None, metavar="PCT",
                        help="exit 1 unless at least PCT%% of the in-scope MUST requirements were decided")  # fmt: skip
    parser.add_argument("--fail-on-not-run", action="store_true",
                        help="exit 1 when any in-scope requirement or case was not run or left undecided")  # fmt: skip


def _run(args: argparse.Namespace) -> int:
    """The suite without pytest: exit 0 when nothing FAILed or broke (waived known deviations aside) and the
    coverage gate, if asked for, is met; else 1; 4 when the target could not be started (no case ran)."""
    import os
    import shlex

    from .grading.grade import coverage_gate, statement_word
    from .run import CaseResult, RunOptions, SuiteRun, TargetUnavailable, jobs_from_paths
    from .targets.config import TargetConfigError
    from .targets.netns import NetnsError, check_prerequisites
    from .wire.impairment import ImpairmentError, parse_impairment

    try:
        if args.min_coverage is not None and not 0 <= args.min_coverage <= 100:  # nan too
            raise RunUsageError(f"--min-coverage: expected a percentage 0..100, got {args.min_coverage:g}")
        parse_impairment(args.impair)
        jobs = jobs_from_paths(args.paths, Path.cwd(), args.family)
        if not jobs:
            raise RunUsageError(f"no case selected in {', '.join(map(str, args.paths))}: nothing to run")
        options = RunOptions(target=args.target, targets_file=args.targets_file, profile=args.profile,
                             run_dir=args.report_dir, rootdir=Path.cwd(), attempts=args.attempts, impair=args.impair,
                             concurrency=args.concurrency,
                             command=shlex.join(["python", "-m", "conformance", *sys.argv[1:]]))  # fmt: skip
        suite = SuiteRun(options)
        if suite.entry.kind == "local":
            if os.geteuid() != 0:
                raise NetnsError("the local target needs root here (pytest re-enters a user namespace; run does not)")
            check_prerequisites()
    except (CaseFormatError, TargetConfigError, ImpairmentError, NetnsError, RunUsageError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return USAGE_ERROR

    def show(result: CaseResult) -> None:
        if not args.quiet and (result.verdict in ("FAIL", "ERROR") or result.waiver == "stale"):
            print(result.record["message"])

    try:
        suite.start()
    except TargetUnavailable as exc:
        suite.stop()
        print(f"error: {exc}", file=sys.stderr)
        return TARGET_UNAVAILABLE
    try:
        results = suite.run(jobs, show)
    finally:
        suite.stop()
        doc = suite.finish()
    gate = None
    if doc is not None:
        print(f"{statement_word(doc['grade'])}: {doc['grade']['statement']}")
        print("  ".join(f"{k}: {v}" for k, v in doc["summary"].items()))
        print(f"report: {suite.run_dir / 'index.html'}  results: {suite.run_dir / 'results.json'}")
        gate = coverage_gate(doc["grade"], args.min_coverage, args.fail_on_not_run)
        if gate:
            print(gate)
    bad = [r for r in results if (r.verdict in ("FAIL", "ERROR") and r.waiver != "waived") or r.waiver == "stale"]
    return 1 if bad or gate else 0


def _mutate(args: argparse.Namespace) -> int:
    """Exit 0 when the measurement ran (whatever the score), 2 when it could not."""
    from .mutation import measure, summary
    from .run import jobs_from_paths
    from .targets.config import TargetConfigError, load_targets

    try:
        entries = load_targets(args.targets_file)
        entry = entries.get(args.target)
        if entry is None or entry.kind != "reference":
            raise TargetConfigError(f"'{args.target}' is not a reference target in {args.targets_file}")
        jobs = jobs_from_paths(args.paths, Path.cwd())
    except (CaseFormatError, TargetConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return USAGE_ERROR
    if not args.with_slow:
        jobs = [job for job in jobs if "slow" not in job.case.meta.tags]
    profile = args.profile or entry.behaves_as
    try:
        outcomes = measure(jobs, args.target, args.targets_file, profile, Path.cwd())
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return USAGE_ERROR
    doc = summary(outcomes)
    for rule, counts in doc["rules"].items():
        print(f"{rule:28} killed {counts['killed']:2}  survived {counts['survived']:2}  "
              f"not exercised {counts['not exercised']:2}")  # fmt: skip
    for place, counts in doc["requirements"].items():
        score = f"{counts['score'] * 100:.0f}%"
        print(f"{place:28} killed {counts['killed']:2}  survived {counts['survived']:2}  score {score}")
    for survivor in doc["survivors"]:
        print(f"survived: {survivor['mutant']}: {survivor['what']} ({survivor['cases_run']} cases run)")
    score = "-" if doc["score"] is None else f"{doc['score'] * 100:.1f}%"
    print(f"mutation score {score}: {doc['killed']} of {doc['exercised']} exercised mutants killed "
          f"({doc['mutants']} mutants, {len(doc['not_exercised'])} not exercised), profile {profile}")  # fmt: skip
    if args.output is not None:
        args.output.write_text(json.dumps(doc, indent=2) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "mutate":
        return _mutate(args)
    if args.command == "cells":
        return _cells(args)
    if args.command == "schema":
        return _schema()
    if args.command == "check":
        return _check(args.paths)
    if args.command == "run":
        return _run(args)
    if args.report == "regrade":
        return _regrade(args)
    return _report(args)


if __name__ == "__main__":
    sys.exit(main())
