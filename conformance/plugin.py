"""pytest glue: options, YAML cases collected as items, and each item's verdict shown as a pytest outcome.

Rules of this module: nothing of substance lives here. The run is conformance/run.py's (target, scheduling,
judging, records, results.json, the HTML report); this module only hands it the collected items and turns each
judged case into what pytest shows: FAIL and ERROR fail the item, NOT-RUN and INCONCLUSIVE skip it, a waived
known deviation is an xfail, a stale one a failure.

Theory of operation: without xdist, every selected item is handed to a ``BackgroundRun`` before the first one is
reported, so cases run concurrently while pytest reports them in order. Under xdist, a worker hands in the item it
is asked to run and the items already queued behind it.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import queue
import shlex
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from .grading.grade import coverage_gate, statement_word
from .grading.judge import STALE, UNDECIDED, WAIVED
from .grading.registry import ref_problems, shipped_registry
from .model.loader import Case, CaseFormatError, load_case
from .model.tags import load_tags
from .report import allure_glue
from .results import read_cases, summarize
from .run import (
    BackgroundRun,
    CaseResult,
    Job,
    RunOptions,
    SuiteRun,
    TargetUnavailable,
    clear_results,
    jobs_of_case,
    long_lived,
    schedule_order,
)
from .targets import userns
from .targets.config import TargetConfigError
from .targets.netns import NetnsError, check_prerequisites
from .vocabulary import DEFAULT_PROFILE, PROFILES, Verdict, numbered_requirements
from .wire.impairment import ImpairmentError, parse_impairment

STATE = pytest.StashKey["RunState"]()
WAIT_SLICE_S = 0.1  # how often the main thread looks for -v announcements while it waits for a case


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("tcp-conformance", "TCP conformance suite")
    group.addoption("--target", default=None, help="target name from targets.yaml (default: local)")
    group.addoption("--targets-file", default=None, help="path of targets.yaml (default: <rootdir>/targets.yaml)")
    group.addoption("--profile", default=DEFAULT_PROFILE, choices=sorted(PROFILES),
                    help="grading profile (default: rfc9293)")  # fmt: skip
    group.addoption("--report-dir", default=None, help="directory for this run's report (default: reports/<run>)")
    group.addoption(
        "--concurrency",
        type=int,
        default=None,
        metavar="N",
        help="cases in flight at once per process (default: the target's `concurrency`; 64 locally)",
    )
    # --- impaired links and retries (docs/robustness.md) ---
    group.addoption("--impair", default=None, metavar="NETEM",
                    help="impair the link, netem words: 'loss 1%%', 'delay 5ms 2ms', 'duplicate 0.5%%', "
                         "'reorder 25%% delay 5ms' (overrides the target's impair:)")  # fmt: skip
    # --- the coverage gate (docs/grading.md#the-coverage-gate) ---
    group.addoption("--min-coverage", type=float, default=None, metavar="PCT",
                    help="fail unless PCT%% of the in-scope MUST requirements were decided")  # fmt: skip
    group.addoption("--fail-on-not-run", action="store_true", default=False,
                    help="fail when any in-scope requirement or case was not run or left undecided")  # fmt: skip
    group.addoption(
        "--attempts",
        type=int,
        default=None,
        metavar="N",
        help="run a case up to N times before a FAIL stands (default: 1; 3 on an impaired link)",
    )


class RunState:
    """Per-process state: the run's options and, once needed, the run itself."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        opt = config.option
        self.target_name: str = opt.target or "local"
        self.targets_file = Path(opt.targets_file) if opt.targets_file else default_targets_file(config)
        self.explicit = opt.target is not None or opt.targets_file is not None
        self.profile: str = opt.profile
        workerinput = getattr(config, "workerinput", None)
        # xdist's worker id, from the worker's own input (not the environment: a pytest started by a worker's test
        # inherits PYTEST_XDIST_WORKER and is no worker of anyone)
        self.worker = str(workerinput.get("workerid", "main")) if workerinput else "main"
        if workerinput and "tcpconf_run_dir" in workerinput:
            self.run_dir: Path | None = Path(workerinput["tcpconf_run_dir"])
        else:
            self.run_dir = Path(opt.report_dir) if opt.report_dir else None
        self.suite: SuiteRun | None = None
        self.background: BackgroundRun | None = None
        self.case_ids: dict[str, Path] = {}  # case id -> file, to refuse duplicates
        self.announcements: queue.SimpleQueue[str] = queue.SimpleQueue()
        self.document: dict[str, Any] | None = None  # results.json of the finished run, once written
        self.gate: str | None = None  # why the run fails the coverage gate (--min-coverage, --fail-on-not-run)
        self.worker_start_failure: str | None = None  # xdist's controller: a worker's target did not start

    def run(self) -> SuiteRun:
        """The run of this process (its target is started on first use)."""
        if self.suite is None:
            opt = self.config.option
            verbose = self.config.get_verbosity() > 0 and self.worker == "main"
            options = RunOptions(
                target=self.target_name, targets_file=self.targets_file, profile=self.profile,
                run_dir=self.run_dir, rootdir=self.config.rootpath, worker=self.worker, attempts=opt.attempts,
                impair=opt.impair, concurrency=opt.concurrency, command=self.command(),
                on_wait=self.announcements.put if verbose else None,
            )  # fmt: skip
            self.suite = SuiteRun(options)
            self.run_dir = self.suite.run_dir
        return self.suite

    def start_background(self) -> BackgroundRun:
        if self.background is None:
            self.background = BackgroundRun(self.run())
        return self.background

    def command(self) -> str:
        return shlex.join(["pytest", *self.config.invocation_params.args])


def default_targets_file(config: pytest.Config) -> Path:
    """targets.yaml of the directory pytest runs in, else of the ini file's or the root directory.

    Not the root directory alone: pytest picks it before parsing options, so an absolute path given as
    ``--report-dir PATH`` (with a space) can become the root directory and hide the project's targets.yaml.
    """
    bases = [Path(config.invocation_params.dir), config.inipath.parent if config.inipath else None, config.rootpath]
    for base in bases:
        if base is not None and (base / "targets.yaml").exists():
            return base / "targets.yaml"
    return config.rootpath / "targets.yaml"


def pytest_configure(config: pytest.Config) -> None:
    _check_options(config)
    _check_root(config)
    state = RunState(config)
    config.stash[STATE] = state
    for level in ("must", "should", "may", "info"):
        config.addinivalue_line("markers", f"{level}: cases of level {level.upper()}")
    for tag in load_tags():  # a case's tags are in the registry (the loader refuses others)
        config.addinivalue_line("markers", f"{tag}: cases tagged {tag}")
    if state.explicit or state.targets_file.exists():
        try:
            state.run()
        except TargetConfigError as exc:
            raise pytest.UsageError(str(exc)) from None
    if not hasattr(config, "workerinput"):
        _run_without_root(config, state)
        _install_signal_handlers()
        if state.suite is not None and _runs_cases(config):
            _clear_previous_results(state.suite.run_dir)
    if state.suite is not None and _runs_cases(config) and not config.option.collectonly and _may_start(state):
        state.suite.start_early()  # the target comes up while pytest collects the cases


def _check_options(config: pytest.Config) -> None:
    try:
        parse_impairment(config.option.impair)
    except ImpairmentError as exc:
        raise pytest.UsageError(f"--impair: {exc}") from None
    if config.option.attempts is not None and not 1 <= config.option.attempts <= 20:
        raise pytest.UsageError(f"--attempts: expected 1..20, got {config.option.attempts}")
    if config.option.min_coverage is not None and not 0 <= config.option.min_coverage <= 100:
        raise pytest.UsageError(f"--min-coverage: expected a percentage 0..100, got {config.option.min_coverage:g}")
    if config.option.concurrency is not None and not 1 <= config.option.concurrency <= 1024:
        raise pytest.UsageError(f"--concurrency: expected 1..1024, got {config.option.concurrency}")


def _run_without_root(config: pytest.Config, state: RunState) -> None:
    """Not root and about to run cases on the local target: re-enter the run in a user namespace of its own
    (conformance/targets/userns.py), or say in one line what the host lacks."""
    kind = state.suite.entry.kind if state.suite is not None else "local"
    if os.geteuid() == 0 or userns.inside() or kind != "local" or not _runs_cases(config):
        return
    if list(config.invocation_params.args) != sys.argv[1:]:
        return  # pytest.main() inside another program: never replace that program
    reason = userns.refusal()
    if reason:
        raise pytest.UsageError(reason)
    capman = config.pluginmanager.getplugin("capturemanager")
    if capman is not None:
        capman.suspend_global_capture(in_=True)  # hand the real stdout/stderr to the new process
    userns.reenter(list(config.invocation_params.args))


def _check_root(config: pytest.Config) -> None:
    """``--report-dir DIR`` with a space: pytest reads its command line once before it knows the suite's options,
    takes DIR for a test path and makes its parent the root directory; the run would then collect whatever lies
    there (seen: the project's own tests). Say so in one line instead."""
    report_dir = config.option.report_dir
    if not report_dir or hasattr(config, "workerinput"):  # a worker gets its run directory from the controller
        return
    cwd = Path(config.invocation_params.dir).resolve()
    if Path(report_dir).resolve().is_relative_to(config.rootpath) and not cwd.is_relative_to(config.rootpath):
        raise pytest.UsageError(
            f"--report-dir {report_dir}: pytest took the directory for a test path (its root directory became "
            f"{config.rootpath}); write --report-dir={report_dir}"
        )


def _may_start(state: RunState) -> bool:
    """Whether this process may bring the target up now: the local kind needs root (or the run's own user
    namespace), and xdist's controller runs no case itself."""
    config = state.config
    if not hasattr(config, "workerinput") and getattr(config.option, "numprocesses", None):
        return False
    kind = state.suite.entry.kind if state.suite is not None else "local"
    return kind != "local" or os.geteuid() == 0 or userns.inside()


def _runs_cases(config: pytest.Config) -> bool:
    for arg in config.args:
        path = Path(arg.split("::")[0])
        if path.suffix in (".yaml", ".yml") or "testcases" in path.resolve().parts or (path / "testcases").is_dir():
            return True
    return False


def _clear_previous_results(run_dir: Path) -> None:
    """A reused --report-dir starts empty of the previous run's results (other files stay)."""
    try:
        clear_results(run_dir)
    except OSError as exc:
        raise pytest.UsageError(f"--report-dir {run_dir}: cannot write there: {exc.strerror}") from None


def _install_signal_handlers() -> None:
    """SIGTERM behaves like Ctrl-C so the target is removed on the way out."""

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    with contextlib.suppress(ValueError):  # not the main thread
        signal.signal(signal.SIGTERM, on_term)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """xdist's controller: a worker that stopped because its target could not start ends the run (status 4)."""
    stopped = str(getattr(node, "workeroutput", {}).get("shouldstop") or "")
    if " could not be started: " in stopped:
        node.config.stash[STATE].worker_start_failure = stopped


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """xdist: every worker writes into the run directory the controller chose."""
    state: RunState = node.config.stash[STATE]
    if state.run_dir is not None:
        node.workerinput["tcpconf_run_dir"] = str(state.run_dir)


# ---- collection ---------------------------------------------------------------------------------------------------
def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if file_path.suffix in (".yaml", ".yml") and "testcases" in file_path.parts:
        return CaseFile.from_parent(parent, path=file_path)
    return None


class CaseFile(pytest.File):
    def collect(self) -> list[pytest.Item]:
        try:
            case = load_case(self.path, self.config.rootpath)
        except CaseFormatError as exc:
            raise self.CollectError(str(exc)) from None
        problems = ref_problems(shipped_registry(), [case])  # an unknown or mis-levelled reference: no verdict
        if problems:
            raise self.CollectError("\n".join(p.line_text(str(self.path)) for p in problems))
        seen: dict[str, Path] = self.config.stash[STATE].case_ids
        if seen.setdefault(case.id, self.path) != self.path:
            raise self.CollectError(f"{self.path}:{case.line}:1: id: '{case.id}' is already used by {seen[case.id]}")
        items = []
        for job in jobs_of_case(case, self.config.rootpath):
            item = CaseItem.from_parent(self, name=f"{case.id}[{job.family}]", case=case, family=job.family)
            item.add_marker(case.meta.level.lower())
            for tag in case.meta.tags:
                item.add_marker(tag)
            items.append(item)
        return items


@pytest.hookimpl(wrapper=True)
def pytest_collection(session: pytest.Session) -> Any:
    """The items and their cases live for the whole run: made without the cyclic collector's passes over them."""
    with long_lived():
        return (yield)


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """Before any case runs: say in one line what the local target lacks (root, ip, TUN), if anything."""
    state: RunState = config.stash[STATE]
    if hasattr(config, "workerinput") or not any(isinstance(i, CaseItem) for i in items):
        return
    try:
        entry = state.run().entry
    except TargetConfigError as exc:
        raise pytest.UsageError(str(exc)) from None
    if entry.kind == "local":
        try:
            check_prerequisites()
        except NetnsError as exc:
            raise pytest.UsageError(str(exc)) from None


@pytest.hookimpl(wrapper=True)
def pytest_runtestloop(session: pytest.Session) -> Any:
    """Without xdist: hand every selected case to the run before the first is reported (longest first). A target
    that cannot start ends the run here, in one line with exit status 4 (an xdist worker ends its part so): no
    case has run, so none gets a verdict."""
    config = session.config
    cases = [i for i in session.items if isinstance(i, CaseItem)]
    if session.testsfailed and not config.option.continue_on_collection_errors:
        cases = []  # pytest ends the run for the errors of collection: no case runs, none gets a verdict
    state: RunState = config.stash[STATE]
    if cases and not config.option.collectonly and _may_start(state):
        try:
            state.run().start()
        except TargetUnavailable as exc:
            if not hasattr(config, "workerinput"):
                pytest.exit(str(exc), returncode=pytest.ExitCode.USAGE_ERROR)
            # an xdist worker stops the whole run (its controller ends it with status 4, pytest_sessionfinish);
            # xdist still hands it one item, which is skipped, never judged
            session.shouldstop = str(exc)
            for item in cases:
                item.add_marker(pytest.mark.skip(reason=str(exc)))
    if cases and not hasattr(config, "workerinput") and not config.option.collectonly:
        background = config.stash[STATE].start_background()
        by_job = {item.job.nodeid: item for item in cases}
        for job in schedule_order([item.job for item in cases]):
            by_job[job.nodeid].future = background.submit(job)
    return (yield)


# ---- one case -----------------------------------------------------------------------------------------------------
class CaseFailed(AssertionError):
    """A FAIL verdict: the target broke a requirement. ``str`` is the full explanation."""


class CaseError(Exception):
    """An ERROR verdict: the test or the set-up broke (allure shows it as broken, not failed)."""


class CaseItem(pytest.Item):
    def __init__(self, *, case: Case, family: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.case = case
        self.family = family
        self.job = Job(case, family, self.nodeid)
        self.future: Any = None
        # JUnit XML (--junitxml) shows these as <property> elements, for CI systems.
        self.user_properties.append(("case_id", case.id))
        self.user_properties.append(("level", str(case.meta.level)))
        self.user_properties.append(("refs", " ".join(case.meta.refs)))
        for requirement in numbered_requirements(list(case.meta.refs)):
            self.user_properties.append(("requirement", requirement))

    def runtest(self) -> None:
        state: RunState = self.config.stash[STATE]
        if self.future is None:  # under xdist: this item and those queued behind it
            background = state.start_background()
            for job in _queued_behind(self, state.run().concurrency()):
                item_future = background.submit(job)
                if job.nodeid == self.nodeid:
                    self.future = item_future
            if self.future is None:
                self.future = background.submit(self.job)
        with_allure = allure_glue.active(self.config)
        if with_allure:
            allure_glue.label_case(self.case.meta, self.family, feature=self.path.parent.name)
        result = self._wait(state)
        self._report(result, with_allure)

    def _wait(self, state: RunState) -> CaseResult:
        """The case's result; meanwhile, with -v, say what cases wait for (past output capture)."""
        announce = self._announcer()
        while True:
            try:
                return self.future.result(timeout=WAIT_SLICE_S)  # type: ignore[no-any-return]
            except TimeoutError:
                pass
            finally:
                while not state.announcements.empty():
                    announce(state.announcements.get())

    def _announcer(self) -> Callable[[str], None]:
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        capman = self.config.pluginmanager.getplugin("capturemanager")
        if reporter is None or capman is None:
            return lambda message: None

        def announce(message: str) -> None:
            with capman.global_and_fixture_disabled():
                reporter.write_line(f"    ... {message}")

        return announce

    def _report(self, result: CaseResult, with_allure: bool) -> None:
        record = result.record
        self.user_properties += [("verdict", record["verdict"]), ("reason", record["reason"])]
        if record.get("behaviour"):
            self.user_properties.append(("behaviour", record["behaviour"]))
        message = record.get("message", result.reason)
        if with_allure:
            allure_glue.replay_steps(record)
            run_dir = self.config.stash[STATE].run().run_dir
            allure_glue.attach_evidence(record, run_dir, message, _ladder(record))
        known = record.get("known_deviation")
        if result.waiver:  # JUnit: <property name="waiver" value="waived"/> and the review's reason
            self.user_properties += [("waiver", result.waiver), ("known_deviation", known["reason"])]
        if result.waiver == WAIVED:
            if with_allure:  # a reviewed failure, shown failed with the label, never skipped (allure_glue.py)
                allure_glue.mark_waived(known["reason"])
            pytest.xfail(f"known deviation ({known['verdict']}): {known['reason']}")
        if result.waiver == UNDECIDED:
            pytest.skip(f"INCONCLUSIVE (known deviation {known['verdict']}): {result.reason}")
        if result.waiver == STALE:
            raise CaseFailed(
                f"{message}\n  expectations out of date: {self.case.id} is listed as a known {known['verdict']} "
                f"({known['reason']}) but ended {result.verdict}; update the target's expectations file"
            )
        if result.verdict == Verdict.FAIL:
            raise CaseFailed(message)
        if result.verdict == Verdict.ERROR:
            raise CaseError(message)
        if result.verdict == Verdict.NOT_RUN:
            pytest.skip(f"NOT-RUN: {result.reason}")
        if result.verdict == Verdict.INCONCLUSIVE:
            pytest.skip(f"INCONCLUSIVE: {result.reason}")

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        if isinstance(excinfo.value, CaseFailed | CaseError | pytest.xfail.Exception):
            return str(excinfo.value)  # the case's own text; a Python traceback would say nothing (and cost ~50 ms)
        return super().repr_failure(excinfo)

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, self.case.line - 1, f"{self.case.id}[{self.family}] {self.case.meta.title}"


def _queued_behind(item: CaseItem, limit: int) -> list[Job]:
    """Under xdist's load scheduling: this item's job and those of the items already queued for this worker
    (never under work stealing, where a queued item may still go to another worker)."""
    jobs = [item.job]
    argv = " ".join(getattr(item.config, "workerinput", {}).get("mainargv", []))
    if "worksteal" in argv:  # (a worker's own option values say nothing of the controller's --dist)
        return jobs
    interactor = next((p for p in item.config.pluginmanager.get_plugins() if hasattr(p, "torun")), None)
    if interactor is None:
        return jobs
    items = item.session.items
    with interactor.torun.lock() as queued:
        indices = [i for i in list(queued)[: max(0, limit - 1)] if isinstance(i, int)]
    jobs += [items[i].job for i in indices if isinstance(items[i], CaseItem)]
    return jobs


def _ladder(record: dict[str, Any]) -> str | None:
    try:
        from .report.ladder import ladder_svg
    except ImportError:
        return None
    return ladder_svg(record)


# ---- the end ------------------------------------------------------------------------------------------------------
@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """After allure-pytest has written every result: reviewed known deviations show as failed, with their label.
    Then whatever is left lives until the process ends: pytest's closing garbage collections (several full passes,
    0.5 s over a run's records) need not walk it."""
    if allure_glue.active(config) and not hasattr(config, "workerinput"):
        with contextlib.suppress(OSError):
            allure_glue.show_waived_as_failed(Path(config.option.allure_report_dir))
    gc.freeze()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    state: RunState = session.config.stash[STATE]
    if state.worker_start_failure is not None:
        session.exitstatus = pytest.ExitCode.USAGE_ERROR  # an xdist worker's target did not start: no verdict
    if state.background is not None:
        interrupted = exitstatus == pytest.ExitCode.INTERRUPTED or bool(session.shouldstop or session.shouldfail)
        state.background.close(abort=interrupted)
    suite = state.suite
    if suite is None:
        return
    suite.stop()
    if hasattr(session.config, "workerinput"):
        return
    with contextlib.suppress(TargetConfigError):
        state.document = suite.finish()
        if state.document is None:
            return
    opt = session.config.option
    state.gate = coverage_gate(state.document["grade"], opt.min_coverage, opt.fail_on_not_run)
    if state.gate and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    latest = suite.run_dir.parent / "latest"
    if suite.run_dir.parent.name == "reports":
        try:
            if latest.is_symlink() or latest.exists():
                latest.unlink()
            latest.symlink_to(suite.run_dir.name)
        except OSError:
            pass


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    state: RunState = config.stash[STATE]
    if hasattr(config, "workerinput") or state.suite is None or not state.suite.run_dir.exists():
        return
    run_dir = state.suite.run_dir
    results_file = run_dir / "results.json"
    doc = state.document
    if doc is None and results_file.exists():
        doc = json.loads(results_file.read_text(encoding="utf-8"))
    cases = doc["cases"] if doc is not None else read_cases(run_dir)
    if not cases:
        return
    counts = summarize(cases)
    tr = terminalreporter
    tr.section(f"TCP conformance: target {state.target_name}, profile {state.profile}")
    if doc is not None:
        graded = doc.get("grade") or {}
        if graded.get("statement"):
            failed, complete = not graded.get("conformant", True), bool(graded.get("complete"))
            word = statement_word(graded)
            tr.write_line(f"{word}: {graded['statement']}", bold=True, red=failed, yellow=not failed and not complete,
                          green=not failed and complete)  # fmt: skip
            cats = graded.get("categories", {})
            tr.write_line("  ".join(f"{k}: {v}" for k, v in cats.items()))
    tr.write_line("  ".join(f"{k}: {v}" for k, v in counts.items()))
    waived_cases = (doc or {}).get("grade", {}).get("waived") or []
    if waived_cases:
        n = len(waived_cases)
        tr.write_line(f"waived: {n} known deviation{'s' if n != 1 else ''} (reviewed; their reasons are in the "
                      "target's expectations file): their FAIL stands in every count and report, and does not fail "
                      "this run", yellow=True)  # fmt: skip
    by_level: dict[str, list[int]] = {}
    for case in cases:
        passed_total = by_level.setdefault(case["level"], [0, 0])
        passed_total[1] += 1
        passed_total[0] += case["verdict"] == "PASS"
    tr.write_line("cases by level: " + "  ".join(f"{lvl} {p}/{t} passed" for lvl, (p, t) in by_level.items()))
    behaviours = sorted({f"{c['id']}: {c['behaviour']}" for c in cases if c.get("behaviour")})
    if behaviours and config.get_verbosity() > 0:
        tr.write_line("behaviours seen: " + "; ".join(behaviours))
    elif behaviours:
        tr.write_line(f"behaviours recorded: {len(behaviours)} (listed with -v and in the report)")
    for case in cases:
        if case["verdict"] in ("FAIL", "ERROR"):
            known = " (known deviation)" if case.get("known_deviation") else ""
            tr.write_line(f"{case['verdict']}{known} {case['id']} [{case['family']}]: {case['reason']}")
    tr.write_line(f"report: {run_dir / 'index.html'}  results: {run_dir / 'results.json'}")
    if state.gate:
        tr.write_line(state.gate, bold=True, red=True)
