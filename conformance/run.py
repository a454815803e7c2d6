"""Run cases on a target without pytest: the suite as a library.

Rules of this module: it is the one place where a run is put together (the target started and stopped, the
sessions made, the cases scheduled, each attempt judged, records and captures written, results.json and the HTML
report made). The pytest plugin, the command line and benchmarks are thin users of it. It imports every layer
below it and nothing above it; it never decides a verdict itself (conformance/grading/judge.py does).

    from conformance.run import RunOptions, SuiteRun, jobs_from_paths
    run = SuiteRun(RunOptions(target="local"))
    results = run.run(jobs_from_paths([Path("testcases")]))

Theory of operation: every case of every family is a ``Job``. A ``SuiteRun`` starts the target once, then runs the
jobs on one event loop: up to the target's concurrency at once, each on its own ports, with jobs that declare
``alone`` run with nothing else in flight (conformance/engine/scheduler.py). Retries on an impaired link and the
known-deviation waivers follow the judge. ``BackgroundRun`` runs the same loop on a thread for callers that hand
in jobs one by one and wait for each (the pytest plugin).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import gc
import shlex
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from .engine.context import requirement_line
from .engine.demux import Demux, new_event_loop
from .engine.record import CaseRecord, Outcome
from .engine.scheduler import Scheduler
from .engine.steps import CaseRun
from .grading.judge import Judgement, another_attempt, judge_attempt, judge_case
from .grading.registry import ref_problems, shipped_registry
from .model.loader import Case, CaseFormatError, load_case
from .results import RunWriter, case_identity, case_record, finalize, iso, relative_to_root
from .targets.config import Deviation, TargetConfig, TargetConfigError, load_expectations, select_target
from .targets.factory import Target, make_target
from .targets.netns import NetnsError
from .targets.ports import PortAllocator, port_allocator
from .targets.reach import TargetStartError
from .upper_tester import AgentClient, AgentError
from .vocabulary import DEFAULT_PROFILE, Verdict
from .wire.impairment import parse_impairment
from .wire.link import Link

DEFAULT_IMPAIRED_ATTEMPTS = 3
SWITCH_INTERVAL_S = 0.0005  # how long the loop's thread may wait for the interpreter lock (reaction time's p99)
GC_YOUNG_THRESHOLD = 200_000  # net allocations between young collections while cases run (default 700)


class TargetUnavailable(Exception):
    """The target could not be started; the message is one line."""


@dataclass(frozen=True)
class Job:
    """One case in one address family."""

    case: Case
    family: str
    nodeid: str  # how a person names it to run it again: FILE::ID[family]

    @property
    def label(self) -> str:
        return f"{self.case.id}[{self.family}]"

    def identity(self, rootdir: Path) -> dict[str, Any]:
        """Which case this is, for its record (computed once: resolving paths costs system calls)."""
        cached = self.__dict__.get("_identity")
        if cached is None:
            cached = case_identity(self.case, self.family, self.nodeid, rootdir)
            self.__dict__["_identity"] = cached
        return cached


@dataclass
class CaseResult:
    """A judged case: its verdict under the run's profile and the record written for it."""

    job: Job
    verdict: Verdict
    reason: str
    record: dict[str, Any]
    waiver: str | None = None


@dataclass
class RunOptions:
    target: str = "local"
    targets_file: Path = Path("targets.yaml")
    profile: str = DEFAULT_PROFILE
    run_dir: Path | None = None  # default: reports/<date>-<target>
    rootdir: Path = field(default_factory=Path.cwd)  # paths in records are relative to this
    worker: str = "main"
    attempts: int | None = None  # default: 1, or DEFAULT_IMPAIRED_ATTEMPTS on an impaired link
    impair: str | None = None  # overrides the target entry's impair:
    concurrency: int | None = None  # default: the target entry's `concurrency`
    command: str = ""  # how the run was started, for the report
    rerun: Callable[[Job, str | None], str] | None = None  # the command that reruns one case
    on_wait: Callable[[str], None] | None = None  # told what a case waits for


def jobs_from_paths(paths: Iterable[Path], rootdir: Path | None = None, families: Sequence[str] | None = None,
                    ) -> list[Job]:  # fmt: skip
    """Every case under ``paths`` (files or directories), one job per family it declares."""
    root = rootdir or Path.cwd()
    jobs: list[Job] = []
    seen: dict[str, Path] = {}
    with long_lived():
        for path in paths:
            files = sorted(path.rglob("*.yaml")) if path.is_dir() else [path]
            for file in files:
                case = load_case(file, root)
                problems = ref_problems(shipped_registry(), [case])
                if problems:
                    raise CaseFormatError("\n".join(p.line_text(str(file)) for p in problems))
                if seen.setdefault(case.id, file) != file:
                    raise CaseFormatError(f"{file}:{case.line}:1: id: '{case.id}' is already used by {seen[case.id]}")
                jobs += jobs_of_case(case, root, families)
    return jobs


@contextlib.contextmanager
def long_lived():  # type: ignore[no-untyped-def]
    """Objects made inside (the loaded cases, pytest's items) live for the whole run: the cyclic garbage collector
    does not run while they are made, and they are frozen afterwards (kept out of every later collection).
    Loading the catalogue with the collector on spent half its time in collections over the growing heap."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


def jobs_of_case(case: Case, rootdir: Path, families: Sequence[str] | None = None) -> list[Job]:
    rel = relative_to_root(case.file, rootdir)
    return [Job(case, f, f"{rel}::{case.id}[{f}]") for f in case.meta.families if families is None or f in families]


def estimated_duration(case: Case) -> float:
    """A rough length of a case from what it declares (its waits and timeouts), to start the long ones first."""
    total = 0.0
    for step in case.steps:
        spec = step.spec
        if step.kind in ("wait", "expect_none", "expect_count") and getattr(spec, "for_", None):
            total += spec.for_
        elif step.kind == "expect":
            total += spec.timeout / 4  # most answers come at once; the long timeouts are a timer's
        elif step.kind == "isn_sample":
            total += spec.count * spec.spacing
    if "slow" in case.meta.tags or any(s.kind == "wait" and s.spec.until is not None for s in case.steps):
        total = max(total, case.meta.timeout)
    return total


def schedule_order(jobs: Sequence[Job]) -> list[Job]:
    """Jobs that run alone first (nothing else is in flight then anyway), then the longest first."""
    return sorted(jobs, key=lambda j: (j.case.meta.alone is None, -estimated_duration(j.case)))


class SuiteRun:
    """One run of cases against one target."""

    def __init__(self, options: RunOptions) -> None:
        self.options = options
        self.entry: TargetConfig = self._entry()
        self.expectations: dict[str, Deviation] = load_expectations(options.targets_file, self.entry)
        self.run_dir = options.run_dir or options.rootdir / "reports" / (
            datetime.now().strftime("%Y%m%d-%H%M%S") + f"-{options.target}"
        )
        self.ports: PortAllocator = port_allocator(self.entry, options.worker)
        self.target: Target | None = None
        self.start_error: str | None = None
        self.started = time.time()
        self.target_setup_s = 0.0
        self.writer: RunWriter | None = None
        self.peak_in_flight = 0
        self.cpu_began: float | None = None  # the process's CPU time when the first case started
        self._demuxes: dict[int, Demux] = {}
        self._lock = threading.Lock()  # the writer, when results are recorded from more than one thread
        self._starting = threading.Lock()  # the target is started once, also when started early
        self._stopped = False
        # Judging and writing a finished case (capture, record) is done off the event loop's thread, so the cases
        # still in flight keep their reaction times.
        self._recorder = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="tcpconf-record")

    def _entry(self) -> TargetConfig:
        entry = select_target(self.options.targets_file, self.options.target)
        if self.options.impair is not None:
            entry = entry.model_copy(update={"impair": self.options.impair})
        return entry

    # ---- the target ------------------------------------------------------------------------------------------
    def start(self) -> Target:
        """The started target, created on first use; a failed start is remembered and raised again."""
        with self._starting:
            return self._start()

    def start_early(self) -> None:
        """Start the target on a thread of its own while the caller does other work (pytest's collection); the
        run takes it over when it begins. A failure is remembered for the run."""

        def start() -> None:
            with contextlib.suppress(TargetUnavailable):
                self.start()

        threading.Thread(target=start, name="tcpconf-target-start", daemon=True).start()

    def _start(self) -> Target:
        if self.start_error:
            raise TargetUnavailable(self.start_error)
        if self._stopped:
            raise TargetUnavailable("the run has ended")
        if self.target is None:
            began = time.monotonic()
            try:
                target = make_target(self.entry, self.options.worker, self.run_dir,
                                     self.options.targets_file.resolve().parent)  # fmt: skip
                target.start()
            except (TargetConfigError, TargetStartError, NetnsError, AgentError, OSError) as exc:
                self.start_error = f"target '{self.entry.name}' could not be started: {exc}"
                raise TargetUnavailable(self.start_error) from None
            self.target = target
            self.target_setup_s = time.monotonic() - began
        return self.target

    def stop(self) -> None:
        self._recorder.shutdown(wait=True)
        for demux in self._demuxes.values():
            with contextlib.suppress(Exception):
                demux.close()
        self._demuxes.clear()
        with self._starting:  # a start begun early (while pytest collected) ends before its target is removed
            self._stopped = True  # and one not begun yet never begins
            if self.target is not None:
                self.target.stop()
                self.target = None
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def concurrency(self) -> int:
        return self.options.concurrency or self.entry.in_flight_limit()

    def max_attempts(self) -> int:
        impairment = parse_impairment(self.entry.impair)
        return self.options.attempts or (DEFAULT_IMPAIRED_ATTEMPTS if impairment.active else 1)

    async def rewire(self, link: Link, agent: AgentClient | None) -> Demux:
        """After a restart: the loop reads the new agent too, and the new link gets its reader."""
        if agent is not None:
            agent.attach(asyncio.get_running_loop())
        return await self.demux_for(link)

    async def demux_for(self, link: Link) -> Demux:
        """The one reader of ``link`` (made on first use; a link replaced by a restart gets a new one)."""
        demux = self._demuxes.get(id(link))
        if demux is not None and demux.link is link and not demux.closed:
            return demux
        for key in [k for k, d in self._demuxes.items() if d.closed]:
            del self._demuxes[key]
        demux = Demux(link, asyncio.get_running_loop())
        self._demuxes[id(link)] = demux
        return demux

    # ---- running ---------------------------------------------------------------------------------------------
    def run(self, jobs: Sequence[Job], on_result: Callable[[CaseResult], None] | None = None) -> list[CaseResult]:
        """Run the jobs (in the order of ``schedule_order``) and return their results as they finished."""
        results: list[CaseResult] = []

        def keep(result: CaseResult) -> None:
            results.append(result)
            if on_result is not None:
                on_result(result)

        if self.options.worker == "main":
            clear_results(self.run_dir)
        with _switch_interval(SWITCH_INTERVAL_S), asyncio.Runner(loop_factory=new_event_loop) as runner:
            runner.run(self.run_async(schedule_order(jobs), keep))
        return results

    async def run_async(self, jobs: Iterable[Job] | asyncio.Queue, on_result: Callable[[CaseResult], None]) -> None:
        """Run jobs from a sequence, or from a queue until it yields None."""
        try:
            target = self.start()
        except TargetUnavailable as exc:
            async for job in _jobs(jobs):
                on_result(self._unrun(job, Verdict.ERROR, str(exc)))
            return
        if target.link is not None:
            target.link.flush()  # frames of an earlier run are no case's
        if target.agent is not None:
            target.agent.attach(asyncio.get_running_loop())  # its answers are read by this loop, not a thread
        scheduler: Scheduler[Job] = Scheduler(
            self.concurrency(),
            alone=lambda job: job.case.meta.alone is not None,
            needs_maintenance=lambda: not self._healthy(),
            maintain=self._repair,
        )

        async def start(job: Job) -> None:
            if self.cpu_began is None:
                self.cpu_began = time.process_time()
            on_result(await self.run_job(job))

        try:
            await scheduler.run(_jobs(jobs), start)
        finally:
            self.peak_in_flight = max(self.peak_in_flight, scheduler.peak)
            if target.agent is not None:
                target.agent.detach()

    def _healthy(self) -> bool:
        return self.target is not None and self.target.healthy()

    async def _repair(self) -> None:
        """A stack, link or agent that died (a crash in the last cases) is brought back, with nothing in flight.
        Its link may be replaced: stop reading the old one first."""
        target = self.target
        if target is None:
            return
        for demux in self._demuxes.values():
            demux.close()
        self._demuxes.clear()
        if target.agent is not None:
            target.agent.detach()
        with contextlib.suppress(Exception):
            await asyncio.to_thread(target.ensure_agent)
        if target.agent is not None:
            target.agent.attach(asyncio.get_running_loop())

    async def run_job(self, job: Job) -> CaseResult:
        """Every attempt of one job, judged; its record written."""
        target = self.target
        if target is None:
            return self._unrun(job, Verdict.ERROR, self.start_error or "the target is not started")
        if job.family not in self.entry.families:
            return self._unrun(job, Verdict.NOT_RUN, f"target '{self.entry.name}' does not run {job.family}")
        out_of_scope = self.entry.cannot_judge_reason(job.case.id, job.case.meta.tags)
        if out_of_scope is not None:
            return self._unrun(job, Verdict.NOT_RUN, out_of_scope)
        if target.link is None:
            return self._unrun(job, Verdict.ERROR, "the target has no link (it did not come back after a restart)")
        requirement = requirement_line(job.case)
        attempts: list[CaseRecord] = []
        judged: list[Judgement] = []
        while another_attempt(judged, self.max_attempts()):
            session = target.session(job.family, self.ports)
            run = CaseRun(job.case, session, await self.demux_for(session.link), relink=self.rewire,
                          on_wait=self.options.on_wait)  # fmt: skip
            try:
                attempts.append(await run.run())
            except Exception as exc:  # a defect of the suite: this case's ERROR, never the end of the run
                attempts.append(_internal_error(exc))
            judged.append(judge_attempt(attempts[-1].facts(), self.options.profile, requirement))
        return await self.record_async(job, attempts)

    def record(self, job: Job, attempts: list[CaseRecord]) -> CaseResult:
        """Judge a job's attempts, write its capture and record, and say what it came to."""
        result, capture = self.judged(job, attempts)
        self.write(result, capture)
        return result

    async def record_async(self, job: Job, attempts: list[CaseRecord]) -> CaseResult:
        """``record`` with the writing (files: the capture, the record line) on the recorder's thread, whose
        system calls leave the event loop free for the cases still in flight."""
        result, capture = self.judged(job, attempts)
        await asyncio.get_running_loop().run_in_executor(self._recorder, self.write, result, capture)
        return result

    def judged(self, job: Job, attempts: list[CaseRecord]) -> tuple[CaseResult, CaseRecord | None]:
        """The judge's verdict and the case's record (not yet written); the attempt whose frames are evidence."""
        began = time.monotonic()
        judgement = judge_case([a.facts() for a in attempts], self.options.profile, requirement_line(job.case))
        chosen = attempts[judgement.chosen]
        pcap = f"cases/{job.case.id}-{job.family}.pcapng" if chosen.trace else None
        known = self.deviation(job)
        record = case_record(
            job.identity(self.options.rootdir), attempts, judgement, pcap=pcap,
            rerun=self.rerun(job, chosen.impairment), known=known.model_dump() if known else None,
            record_s=time.monotonic() - began,
        )  # fmt: skip
        result = CaseResult(job, judgement.verdict, judgement.reason, record, record.get("waiver"))
        return result, chosen if chosen.trace else None

    def write(self, result: CaseResult, capture: CaseRecord | None) -> None:
        with self._lock:
            if self.writer is None:
                self.writer = RunWriter(self.run_dir, self.options.worker)
            if capture is not None:
                failure = result.record.get("failure") if result.verdict == Verdict.FAIL else None
                failed_step = failure.get("step") if failure else None
                self.writer.write_pcap(capture, result.job.case.id, result.job.family, failed_step)
            self.writer.append(result.record)

    def _unrun(self, job: Job, verdict: Verdict, reason: str) -> CaseResult:
        """A case that could not start: recorded like any other, with its reason."""
        return self.record(job, [_unrun_record(verdict, reason)])

    def deviation(self, job: Job) -> Deviation | None:
        return self.expectations.get(job.label) or self.expectations.get(job.case.id)

    def rerun(self, job: Job, impairment: str | None) -> str:
        if self.options.rerun is not None:
            return self.options.rerun(job, impairment)
        args = ["pytest", f"--target={self.options.target}", f"--profile={self.options.profile}"]
        if impairment:
            args.append(f"--impair={impairment}")
        return shlex.join([*args, job.nodeid])

    # ---- the end ---------------------------------------------------------------------------------------------
    def header(self) -> dict[str, Any]:
        entry = self.entry
        target = {"name": entry.name, "kind": entry.kind, "description": entry.description, "sysctls": entry.sysctls,
                  "nft": entry.nft, "capabilities": sorted(entry.declared_capabilities()),
                  "timers": entry.timers.declared()}  # fmt: skip
        return {"run_id": self.run_dir.name, "started": iso(self.started), "command": self.options.command,
                "target": target, "profile": self.options.profile,
                "run": {"concurrency": self.concurrency(), "peak_in_flight": self.peak_in_flight,
                        "target_setup_s": round(self.target_setup_s, 6), "cpu_s": self.cpu_s()}}  # fmt: skip

    def cpu_s(self) -> float:
        """The process's CPU time (all its threads: pytest's, the loop's, the recorder's) since the first case."""
        return round(time.process_time() - self.cpu_began, 3) if self.cpu_began is not None else 0.0

    def finish(self) -> dict[str, Any] | None:
        """results.json and index.html from every worker's records (None when no case was recorded)."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        if not any(self.run_dir.glob("cases.*.jsonl")):
            return None
        doc = finalize(self.run_dir, self.header())
        from .report.html import write_html

        write_html(doc, self.run_dir / "index.html")
        return doc


def _unrun_record(verdict: Verdict, reason: str) -> CaseRecord:
    record = CaseRecord(Outcome.UNSUPPORTED if verdict == Verdict.NOT_RUN else Outcome.BROKEN, reason)
    record.started = time.time()
    return record


def _internal_error(exc: BaseException) -> CaseRecord:
    where = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    place = f" ({Path(where.filename).name}:{where.lineno})" if where else ""
    record = CaseRecord(Outcome.BROKEN, f"internal error: {type(exc).__name__}: {exc}{place}")
    record.started = time.time()
    return record


async def _jobs(source: Iterable[Job] | asyncio.Queue):  # type: ignore[no-untyped-def]
    if isinstance(source, asyncio.Queue):
        while (job := await source.get()) is not None:
            yield job
        return
    for job in source:
        yield job


@contextlib.contextmanager
def _switch_interval(seconds: float):  # type: ignore[no-untyped-def]
    """While cases run: a shorter interpreter switch interval (the loop's thread never waits long for the lock),
    and the cyclic garbage collector kept off the objects that live for the whole run (the loaded cases, the
    modules): a full collection over them paused the loop for 20 ms and more."""
    before, thresholds = sys.getswitchinterval(), gc.get_threshold()
    sys.setswitchinterval(seconds)
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *thresholds[1:])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()
        sys.setswitchinterval(before)


class BackgroundRun:
    """A ``SuiteRun``'s event loop on a thread of its own: jobs are handed in one by one and waited for."""

    def __init__(self, suite: SuiteRun) -> None:
        self.suite = suite
        self._futures: dict[str, concurrent.futures.Future[CaseResult]] = {}
        self._loop = new_event_loop()
        self._queue: asyncio.Queue[Job | None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name="tcpconf-run", daemon=True)
        self._error: BaseException | None = None
        self._tuning = _switch_interval(SWITCH_INTERVAL_S)
        self._tuning.__enter__()
        self._thread.start()
        self._ready.wait()

    def _main(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._queue = asyncio.Queue()
        self._task = self._loop.create_task(self.suite.run_async(self._queue, self._done))
        self._ready.set()
        try:
            self._loop.run_until_complete(self._task)
        except asyncio.CancelledError:
            self._error = RuntimeError("the run was interrupted before this case ended")
        except BaseException as exc:  # the scheduler failed: every waiter must hear of it
            self._error = exc
        finally:
            for future in self._futures.values():
                if not future.done():
                    future.set_exception(self._error or RuntimeError("the run ended before this case"))
            self._loop.close()

    def _done(self, result: CaseResult) -> None:
        future = self._futures.get(result.job.nodeid)
        if future is not None and not future.done():
            future.set_result(result)

    def submit(self, job: Job) -> concurrent.futures.Future[CaseResult]:
        """Start ``job`` (once); its result arrives on the returned future."""
        future = self._futures.get(job.nodeid)
        if future is None:
            future = concurrent.futures.Future()
            self._futures[job.nodeid] = future
            if self._error is not None:
                future.set_exception(self._error)
            else:
                assert self._queue is not None
                self._loop.call_soon_threadsafe(self._queue.put_nowait, job)
        return future

    def close(self, abort: bool = False) -> None:
        """No more jobs: let those in flight end (``abort``: cancel them, and every job not yet started), then
        stop the loop's thread. Cancelled cases still release their sockets on the target."""
        if self._thread.is_alive():
            assert self._queue is not None and self._task is not None
            with contextlib.suppress(RuntimeError):
                if abort:
                    self._loop.call_soon_threadsafe(self._task.cancel)
                else:
                    self._loop.call_soon_threadsafe(self._queue.put_nowait, None)
            self._thread.join()
        self._tuning.__exit__(None, None, None)


def clear_results(run_dir: Path) -> None:
    """A reused run directory starts empty of an earlier run's results (other files stay)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    for stale in [*run_dir.glob("cases.*.jsonl"), run_dir / "results.json"]:
        stale.unlink(missing_ok=True)


def default_run_dir(rootdir: Path, target: str) -> Path:
    return rootdir / "reports" / f"{datetime.now().strftime('%Y%m%d-%H%M%S')}-{target}"
