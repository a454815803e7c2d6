"""The catalogue's detection power: run it against mutants of the reference model and count what it kills.

    python -m conformance mutate [--profile P] [--target reference] [-o mutation.json]

Rules of this module: every mutant (conformance/oracle/mutants.py) runs against the cases that exercised its rule
in a clean baseline run (found by the connections whose answers named the rule), in process on a reference
target; a mutant is killed when one of those cases ends FAIL or ERROR. A mutant that never changed an answer is
reported as not exercised, apart from the score. The baseline must be clean (no FAIL, no ERROR), else nothing
can be measured and the command says so. The score is killed / exercised, overall and per rule, with the
survivors named.
"""

from __future__ import annotations

import re
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .oracle.machine import RULES, Answer
from .oracle.mutants import Mutant, Mutated, all_mutants, applicable, rules_changing_state
from .run import CaseResult, Job, RunOptions, SuiteRun
from .vocabulary import Verdict

PORT = re.compile(r"^\[?([0-9a-fA-F.:]+?)\]?:(\d+) > ")  # the sender of a trace line: address and port


@dataclass
class Outcome:
    mutant: Mutant
    status: str  # killed | survived | not exercised
    changed: int = 0
    cases: int = 0  # cases run against it
    killers: list[str] = field(default_factory=list)  # cases that failed, with their reason


def _suite(options: RunOptions) -> SuiteRun:
    suite = SuiteRun(options)
    suite.start()
    return suite


def _stack(suite: SuiteRun) -> Any:
    target = suite.target
    assert target is not None and target.link is not None and hasattr(target.link, "stack"), "a reference target"
    return target.link.stack  # type: ignore[attr-defined]


def _tester_ports(result: CaseResult, tester_addr: str) -> set[int]:
    ports = set()
    for line in result.record.get("trace") or []:
        m = PORT.match(str(line.get("summary", "")))
        if m and m.group(1) == tester_addr:
            ports.add(int(m.group(2)))
    return ports


def _run(options: RunOptions, jobs: Sequence[Job], install: Callable[[Any], None]) -> list[CaseResult]:
    suite = _suite(options)
    try:
        install(_stack(suite))
        return suite.run(jobs)
    finally:
        suite.stop()


def measure(jobs: Sequence[Job], target: str, targets_file: Path, profile: str, rootdir: Path,
            mutants: Sequence[Mutant] | None = None, say: Callable[[str], None] = print) -> list[Outcome]:  # fmt: skip
    """Run the baseline, then every mutant against the cases that exercised its rule."""
    work = Path(tempfile.mkdtemp(prefix="tcpconf-mutation-"))
    runs = iter(range(1_000_000))

    def options() -> RunOptions:
        return RunOptions(target=target, targets_file=targets_file, profile=profile, rootdir=rootdir,
                          run_dir=work / f"run{next(runs)}")  # fmt: skip

    seen: dict[tuple[str, int], set[str]] = defaultdict(set)  # (family, tester port) -> rules its answers named

    def observe(stack: Any) -> None:
        def note(key: tuple[str, str, int, int], answer: Answer) -> None:
            seen[(key[0], key[2])].update(answer.rules)

        stack.observer = note

    started = time.monotonic()
    baseline = _run(options(), jobs, observe)
    bad = [r for r in baseline if r.verdict in (Verdict.FAIL, Verdict.ERROR)]
    if bad:
        raise RuntimeError(f"the baseline is not clean ({len(bad)} FAIL/ERROR, first: {bad[0].job.label}: "
                           f"{bad[0].reason}): mutants cannot be measured against it")  # fmt: skip
    ran = [r for r in baseline if r.verdict in (Verdict.PASS, Verdict.INCONCLUSIVE)]
    entry = SuiteRun(options()).entry
    by_rule: dict[str, list[Job]] = defaultdict(list)
    for result in ran:
        tester = entry.address(result.job.family).tester
        rules: set[str] = set()
        for port in _tester_ports(result, tester):
            rules |= seen.get((result.job.family, port), set())
        for rule in rules:
            by_rule[rule].append(result.job)
    say(f"baseline: {len(ran)} case items judged, {len(by_rule)} of {len(RULES)} rules exercised "
        f"({time.monotonic() - started:.1f} s)")  # fmt: skip
    changing = rules_changing_state()
    outcomes = []
    for mutant in mutants if mutants is not None else all_mutants():
        if not applicable(mutant, changing):
            continue
        targets = [r.job for r in ran] if mutant.rule == "acceptability" else by_rule.get(mutant.rule, [])
        if not targets:
            outcomes.append(Outcome(mutant, "not exercised"))
            continue
        mutated = Mutated(mutant, entry.behaves_as)
        results = _run(options(), targets, lambda stack, m=mutated: setattr(stack, "dispatch", m))
        killers = [f"{r.job.label}: {r.reason}" for r in results if r.verdict in (Verdict.FAIL, Verdict.ERROR)]
        # A mutant that never changed the answer the stack took has nothing to be killed for (a FAIL is noise).
        status = ("killed" if killers else "survived") if mutated.changed else "not exercised"
        outcomes.append(Outcome(mutant, status, mutated.changed, len(targets), killers))
    return outcomes


ACCEPTABILITY_PLACES = ("rfc9293:3.10.7.4", "rfc793:page69")  # the window test's edges: not a rule of RULES


def places_of(rule: str) -> tuple[str, ...]:
    """The RFC places (sections, pages, numbered requirements) a rule of the model cites."""
    return RULES[rule].refs if rule in RULES else ACCEPTABILITY_PLACES


def summary(outcomes: Sequence[Outcome]) -> dict[str, Any]:
    """The score overall and per rule, and the survivors, as JSON."""
    per_rule: dict[str, dict[str, int]] = defaultdict(lambda: {"killed": 0, "survived": 0, "not exercised": 0})
    for o in outcomes:
        per_rule[o.mutant.rule][o.status] += 1
    per_place: dict[str, dict[str, int]] = defaultdict(lambda: {"killed": 0, "survived": 0})
    for o in outcomes:
        if o.status != "not exercised":
            for place in places_of(o.mutant.rule):
                per_place[place][o.status] += 1
    killed = sum(1 for o in outcomes if o.status == "killed")
    exercised = sum(1 for o in outcomes if o.status != "not exercised")
    return {
        "mutants": len(outcomes), "exercised": exercised, "killed": killed,
        "score": round(killed / exercised, 4) if exercised else None,
        "rules": {rule: dict(counts) for rule, counts in sorted(per_rule.items())},
        "requirements": {
            place: {**counts, "score": round(counts["killed"] / (counts["killed"] + counts["survived"]), 4)}
            for place, counts in sorted(per_place.items())
        },
        "survivors": [{"mutant": o.mutant.name, "what": o.mutant.what, "answers_changed": o.changed,
                       "cases_run": o.cases} for o in outcomes if o.status == "survived"],
        "not_exercised": [o.mutant.name for o in outcomes if o.status == "not exercised"],
        "killed_by": {o.mutant.name: o.killers[:3] for o in outcomes if o.status == "killed"},
    }  # fmt: skip
