"""pytest glue: options, collection of YAML cases as items, the per-worker target, results and summary.

Everything of substance lives below this module (model, engine, targets, results); this file only
connects it to pytest.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shlex
import signal
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from .engine.explain import explain
from .engine.result import CaseResult, Verdict
from .engine.runner import DEFAULT_IMPAIRED_ATTEMPTS, CaseRunner, run_attempts
from .model.loader import Case, CaseFormatError, load_case
from .report import allure_glue
from .results import RunWriter, case_record, finalize, iso, read_cases, summarize
from .targets import userns
from .targets.config import Deviation, TargetConfig, TargetConfigError, load_expectations, select_target
from .targets.factory import Target, make_target
from .targets.netns import NetnsError, check_prerequisites
from .targets.ports import PortAllocator, port_allocator
from .targets.reach import TargetStartError
from .upper_tester import AgentError
from .vocabulary import DEFAULT_PROFILE, PROFILES, numbered_requirements
from .wire.impairment import ImpairmentError, parse_impairment

STATE = pytest.StashKey["RunState"]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("tcp-conformance", "TCP conformance suite")
    group.addoption("--target", default=None, help="target name from targets.yaml (default: local)")
    group.addoption("--targets-file", default=None, help="path of targets.yaml (default: <rootdir>/targets.yaml)")
    group.addoption("--profile", default=DEFAULT_PROFILE, choices=sorted(PROFILES),
                    help="grading profile (default: rfc9293)")  # fmt: skip
    group.addoption("--report-dir", default=None, help="directory for this run's report (default: reports/<run>)")
    # --- impaired links and retries (docs/robustness.md) ---
    group.addoption("--impair", default=None, metavar="NETEM",
                    help="impair the link, netem words: 'loss 1%%', 'delay 5ms 2ms', 'duplicate 0.5%%', "
                         "'reorder 25%% delay 5ms' (overrides the target's impair:)")  # fmt: skip
    group.addoption("--attempts", type=int, default=None, metavar="N",
                    help=f"run a case up to N times before a FAIL stands (default: 1; "
                         f"{DEFAULT_IMPAIRED_ATTEMPTS} on an impaired link)")  # fmt: skip


class RunState:
    """Per-process state of one run: the chosen target, the started instance, the results writer."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        opt = config.option
        self.target_name: str = opt.target or "local"
        self.targets_file = Path(opt.targets_file) if opt.targets_file else default_targets_file(config)
        self.explicit = opt.target is not None or opt.targets_file is not None
        self.profile: str = opt.profile
        self.worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        self.started = time.time()
        workerinput = getattr(config, "workerinput", None)
        if workerinput and "tcpconf_run_dir" in workerinput:
            self.run_dir = Path(workerinput["tcpconf_run_dir"])
        elif opt.report_dir:
            self.run_dir = Path(opt.report_dir)
        else:
            stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
            self.run_dir = config.rootpath / "reports" / f"{stamp}-{self.target_name}"
        self.config_entry: TargetConfig | None = None
        self.expectations: dict[str, Deviation] = {}
        self.instance: Target | None = None
        self.start_error: str | None = None
        self.ports = PortAllocator()
        self.writer: RunWriter | None = None
        self.ran_cases = False
        self.case_ids: dict[str, Path] = {}  # case id -> file, to refuse duplicates

    def load_target(self) -> TargetConfig:
        if self.config_entry is None:
            entry = select_target(self.targets_file, self.target_name)
            if self.config.option.impair is not None:  # validated in pytest_configure
                entry = entry.model_copy(update={"impair": self.config.option.impair})
            self.expectations = load_expectations(self.targets_file, entry)
            self.config_entry = entry
            self.ports = port_allocator(entry, self.worker)
        return self.config_entry

    def deviation(self, case_id: str, family: str) -> Deviation | None:
        return self.expectations.get(f"{case_id}[{family}]") or self.expectations.get(case_id)

    def target(self) -> Target:
        """The started target of this worker, created on first use; a failed start is remembered."""
        if self.start_error:
            raise TargetUnavailable(self.start_error)
        if self.instance is None:
            try:
                entry = self.load_target()
                instance = make_target(entry, self.worker, self.run_dir, self.targets_file.resolve().parent)
                instance.start()
            except (TargetConfigError, TargetStartError, NetnsError, AgentError, OSError) as exc:
                self.start_error = f"target '{self.target_name}' could not be started: {exc}"
                raise TargetUnavailable(self.start_error) from None
            self.instance = instance
            atexit.register(self.stop)
        return self.instance

    def stop(self) -> None:
        if self.instance is not None:
            self.instance.stop()
            self.instance = None

    def header(self) -> dict[str, Any]:
        entry = self.config_entry
        target = {"name": self.target_name}
        if entry is not None:
            target |= {"kind": entry.kind, "description": entry.description, "sysctls": entry.sysctls,
                       "nft": entry.nft, "capabilities": sorted(entry.declared_capabilities()),
                       "timers": entry.timers.declared()}  # fmt: skip
        return {"run_id": self.run_dir.name, "started": iso(self.started), "command": self.command(),
                "target": target, "profile": self.profile}  # fmt: skip

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


class TargetUnavailable(Exception):
    pass


def pytest_configure(config: pytest.Config) -> None:
    _check_impairment_options(config)
    state = RunState(config)
    config.stash[STATE] = state
    for level in ("must", "should", "may", "info"):
        config.addinivalue_line("markers", f"{level}: cases of level {level.upper()}")
    if state.explicit or state.targets_file.exists():
        try:
            state.load_target()
        except TargetConfigError as exc:
            raise pytest.UsageError(str(exc)) from None
    if not hasattr(config, "workerinput"):
        _run_without_root(config, state)
        _install_signal_handlers(state)
        _clear_previous_results(state.run_dir)


def _run_without_root(config: pytest.Config, state: RunState) -> None:
    """Not root and about to run cases on the local target: re-enter the run in a user namespace of its own
    (conformance/targets/userns.py), or say in one line what the host lacks."""
    kind = state.config_entry.kind if state.config_entry is not None else "local"
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


def _runs_cases(config: pytest.Config) -> bool:
    for arg in config.args:
        path = Path(arg.split("::")[0])
        if path.suffix in (".yaml", ".yml") or "testcases" in path.resolve().parts or (path / "testcases").is_dir():
            return True
    return False


def _check_impairment_options(config: pytest.Config) -> None:
    try:
        parse_impairment(config.option.impair)
    except ImpairmentError as exc:
        raise pytest.UsageError(f"--impair: {exc}") from None
    if config.option.attempts is not None and not 1 <= config.option.attempts <= 20:
        raise pytest.UsageError(f"--attempts: expected 1..20, got {config.option.attempts}")


def _attempt_policy(config: pytest.Config, entry: TargetConfig) -> tuple[int, str | None]:
    """How often a case may run, and the impairment it runs under (None on a clean link)."""
    impairment = parse_impairment(entry.impair)
    attempts = config.option.attempts or (DEFAULT_IMPAIRED_ATTEMPTS if impairment.active else 1)
    return attempts, str(impairment) if impairment.active else None


def _clear_previous_results(run_dir: Path) -> None:
    """A reused --report-dir starts empty of the previous run's results (other files stay)."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        for stale in [*run_dir.glob("cases.*.jsonl"), run_dir / "results.json"]:
            stale.unlink(missing_ok=True)
    except OSError as exc:
        raise pytest.UsageError(f"--report-dir {run_dir}: cannot write there: {exc.strerror}") from None


def _install_signal_handlers(state: RunState) -> None:
    """SIGTERM behaves like Ctrl-C so the target is removed on the way out."""

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    with contextlib.suppress(ValueError):  # not the main thread
        signal.signal(signal.SIGTERM, on_term)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """xdist: every worker writes into the run directory the controller chose."""
    node.workerinput["tcpconf_run_dir"] = str(node.config.stash[STATE].run_dir)


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
        seen: dict[str, Path] = self.config.stash[STATE].case_ids
        if seen.setdefault(case.id, self.path) != self.path:
            raise self.CollectError(f"{self.path}:{case.line}:1: id: '{case.id}' is already used by {seen[case.id]}")
        items = []
        for family in case.meta.families:
            item = CaseItem.from_parent(self, name=f"{case.id}[{family}]", case=case, family=family)
            item.add_marker(case.meta.level.lower())
            for tag in case.meta.tags:
                self.config.addinivalue_line("markers", f"{tag}: cases tagged {tag}")
                item.add_marker(tag)
            items.append(item)
        return items


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """Before any case runs: say in one line what the local target lacks (root, ip, TUN), if anything."""
    state: RunState = config.stash[STATE]
    if hasattr(config, "workerinput") or not any(isinstance(i, CaseItem) for i in items):
        return
    try:
        entry = state.load_target()
    except TargetConfigError as exc:
        raise pytest.UsageError(str(exc)) from None
    if entry.kind == "local":
        try:
            check_prerequisites()
        except NetnsError as exc:
            raise pytest.UsageError(str(exc)) from None


def _unrun(verdict: Verdict, reason: str) -> CaseResult:
    """The result of a case that could not start: recorded like any other, with its reason."""
    result = CaseResult(verdict, reason)
    result.started = time.time()
    return result


def _ladder(record: dict[str, Any]) -> str | None:
    try:
        from .report.ladder import ladder_svg
    except ImportError:
        return None
    return ladder_svg(record)


class CaseFailed(AssertionError):
    """A FAIL verdict: the target broke a requirement. ``str`` is the full explanation."""


class CaseError(Exception):
    """An ERROR verdict: the test or the set-up broke (allure shows it as broken, not failed)."""


class CaseItem(pytest.Item):
    def __init__(self, *, case: Case, family: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.case = case
        self.family = family
        # JUnit XML (--junitxml) shows these as <property> elements, for CI systems.
        self.user_properties.append(("case_id", case.id))
        self.user_properties.append(("level", str(case.meta.level)))
        self.user_properties.append(("refs", " ".join(case.meta.refs)))
        for requirement in numbered_requirements(list(case.meta.refs)):
            self.user_properties.append(("requirement", requirement))

    def runtest(self) -> None:
        state: RunState = self.config.stash[STATE]
        state.ran_cases = True
        started = time.monotonic()
        try:
            target = state.target()
            target.ensure_agent()
        except TargetUnavailable as exc:
            self._record(state, _unrun(Verdict.ERROR, str(exc)), time.monotonic(), 0.0, False)
            return
        except (AgentError, OSError) as exc:
            reason = f"the upper tester could not be restarted: {exc}"
            self._record(state, _unrun(Verdict.ERROR, reason), time.monotonic(), 0.0, False)
            return
        entry = target.config
        if self.family not in entry.families:
            reason = f"target '{entry.name}' does not run {self.family}"
            self._record(state, _unrun(Verdict.NOT_RUN, reason), time.monotonic(), 0.0, False)
            return
        session = target.session(self.family, state.ports)
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        verbose = self.config.get_verbosity() > 0 and state.worker == "main"
        on_wait = self._announcer(reporter) if verbose and reporter else None
        with_allure = allure_glue.active(self.config)
        if with_allure:
            allure_glue.label_case(self.case.meta, self.family, feature=self.path.parent.name)
        ready = time.monotonic()
        attempts, impairment = _attempt_policy(self.config, entry)
        result = run_attempts(
            lambda: CaseRunner(
                self.case, session, on_wait=on_wait, step_scope=allure_glue.step_scope() if with_allure else None,
                profile=state.profile,
            ),
            attempts,
            impairment,
        )
        self._record(state, result, ready, ready - started, with_allure)

    def _announcer(self, reporter: Any) -> Any:
        """With -v, a case that waits on a protocol timer says what it waits for (past output capture)."""
        capman = self.config.pluginmanager.getplugin("capturemanager")

        def announce(message: str) -> None:
            with capman.global_and_fixture_disabled():
                reporter.write_line(f"    ... {message}")

        return announce

    def _record(self, state: RunState, result: CaseResult, ready: float, setup_s: float, with_allure: bool) -> None:
        if state.writer is None:
            state.writer = RunWriter(state.run_dir, state.worker)
        writer = state.writer
        pcap = writer.write_pcap(result, self.case.id, self.family)
        source = (
            str(self.path.relative_to(self.config.rootpath))
            if self.path.is_relative_to(self.config.rootpath)
            else str(self.path)
        )
        message = explain(self.case, self.family, result, source, str(writer.run_dir / pcap))
        rerun_args = ["pytest", f"--target={state.target_name}", f"--profile={state.profile}", self.nodeid]
        if result.impairment:
            rerun_args[3:3] = [f"--impair={result.impairment}"]
        rerun = shlex.join(rerun_args)
        known = state.deviation(self.case.id, self.family)
        timing = {"item_wall_s": time.monotonic() - ready, "target_setup_s": setup_s}
        record = case_record(
            self.case, self.family, self.nodeid, result, rootdir=self.config.rootpath,
            pcap=pcap, rerun=rerun, message=message, timing=timing,
        )  # fmt: skip
        record |= result.attempts_json()
        if known is not None:
            record["known_deviation"] = {"verdict": known.verdict, "reason": known.reason}
        writer.append(record)
        self.user_properties += [("verdict", record["verdict"]), ("reason", record["reason"])]
        if record["behaviour"]:
            self.user_properties.append(("behaviour", record["behaviour"]))
        if with_allure:
            allure_glue.attach_evidence(record, writer.run_dir, message, _ladder(record))
        if known is not None and result.verdict != Verdict.NOT_RUN:
            if str(result.verdict) == known.verdict:
                pytest.xfail(f"known deviation ({known.verdict}): {known.reason}")
            if result.impairment and result.verdict == Verdict.INCONCLUSIVE:  # undecided, not out of date
                pytest.skip(f"INCONCLUSIVE (known deviation {known.verdict}): {result.reason}")
            raise CaseFailed(
                f"{message}\n  expectations out of date: {self.case.id} is listed as a known {known.verdict} "
                f"({known.reason}) but ended {result.verdict}; update the target's expectations file"
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
        if isinstance(excinfo.value, CaseFailed | CaseError):
            return str(excinfo.value)
        return super().repr_failure(excinfo)

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, self.case.line - 1, f"{self.case.id}[{self.family}] {self.case.meta.title}"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    state: RunState = session.config.stash[STATE]
    state.stop()
    if hasattr(session.config, "workerinput"):
        return
    if not any(state.run_dir.glob("cases.*.jsonl")):
        return
    with contextlib.suppress(TargetConfigError):
        state.load_target()
    doc = finalize(state.run_dir, state.header())
    try:
        from .report.html import write_html

        write_html(doc, state.run_dir / "index.html")
    except ImportError:
        pass
    latest = state.run_dir.parent / "latest"
    if state.run_dir.parent.name == "reports":
        try:
            if latest.is_symlink() or latest.exists():
                latest.unlink()
            latest.symlink_to(state.run_dir.name)
        except OSError:
            pass


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    state: RunState = config.stash[STATE]
    if hasattr(config, "workerinput") or not state.run_dir.exists():
        return
    cases = read_cases(state.run_dir)
    if not cases:
        return
    counts = summarize(cases)
    tr = terminalreporter
    tr.section(f"TCP conformance: target {state.target_name}, profile {state.profile}")
    results_file = state.run_dir / "results.json"
    if results_file.exists():
        graded = json.loads(results_file.read_text(encoding="utf-8")).get("grade") or {}
        if graded.get("statement"):
            tr.write_line(graded["statement"], bold=True, red=not graded.get("conformant", True))
            cats = graded.get("categories", {})
            tr.write_line("  ".join(f"{k}: {v}" for k, v in cats.items()))
    tr.write_line("  ".join(f"{k}: {v}" for k, v in counts.items()))
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
    tr.write_line(f"report: {state.run_dir / 'index.html'}  results: {state.run_dir / 'results.json'}")
