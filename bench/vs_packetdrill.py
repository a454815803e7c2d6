"""Side-by-side benchmark of this suite against packetdrill: the cost of one TCP connection, handshake and close.

    sudo .venv/bin/python bench/vs_packetdrill.py --packetdrill /tmp/packetdrill-src/gtests/net/packetdrill/packetdrill
    sudo .venv/bin/python bench/vs_packetdrill.py --packetdrill PATH --connections 200 --runs 3 [--netns-per-script]

packetdrill is not part of this repository: build it elsewhere (run the script without ``--packetdrill`` for the
one-line recipe) and pass the binary. Needs root (network namespaces), Linux, Python 3.11, the standard library.

What it measures, ``--runs`` times each, as the median wall time and the wall time per connection:

- packetdrill, one script holding N connections, one process, in a network namespace this script creates;
- packetdrill, N scripts of one connection each, a process per script (packetdrill's usual way of running a
  suite), one after another in one fresh namespace per run; with ``--netns-per-script`` also a fresh namespace
  per script, as packetdrill's own run_all.py does through in_netns.sh (namespace set-up and removal timed);
- this suite, N copies of an equivalent YAML case (BENCH-PD-0001 ...) in a temporary ``testcases`` directory,
  run as ``python -m pytest -q -p no:cacheprovider --report-dir DIR --target=local --targets-file targets.yaml
  TMP/testcases`` from the repository root, IPv4 only; and, when the suite has ``--concurrency``, once more with
  ``--concurrency 1`` (cases one after another, as packetdrill runs its connections). Its own timing is read from
  results.json: the span from ``started`` to ``finished`` and the per-case ``duration_s`` (sum and median).

Wall times include everything a user waits for: for packetdrill, process start, its TUN and ``ip addr``/``ip
route`` set-up and its deliberate spin of ten jiffy ticks (about 100 ms, ``schedule_start_time_usecs``) before
each script, plus ``ip netns exec``; for the suite, the interpreter, pytest, collection, the target's namespace,
TUN and agent, the report (index.html, pcapng per case, results.json).

The exchange, per connection, segment for segment (tester -> target ``>``, target -> tester ``<``):
a listener is opened on the target; ``> S <mss 1460> win 65535``, ``< SA`` (checked: ack = ISN + 1, no payload,
mss 1460), ``> A``; the target accepts, then closes the connection; ``< FA`` (seq, ack checked), ``> A`` of the FIN,
``> FA``, ``< A`` (seq, ack checked); the listener is closed. Before timing, the script checks this on both tools:
packetdrill's -v output (4 injected and 3 sniffed segments per connection, with these flags) and the remote ports
of the N connections in TIME-WAIT (all distinct); the suite's per-case trace in results.json.

What differs between the two, besides the tools themselves:

- checks: packetdrill checks every field its script names in an expected segment (flags exactly, seq, ack,
  length, the whole option list ``<mss 1460>``) and the time of each segment (``+0``: its default tolerance,
  4 ms + 12.5 %); the suite checks the fields its case names (flags, but PSH/ECE/CWR ignored; seq, ack, len; mss
  among the options, others allowed) and waits up to 1 s for each segment, with no timing check;
- sequence numbers: packetdrill injects ISN 0 (script-relative numbers are used as they are for inbound
  segments); the suite uses a random ISN per case;
- ports and addresses: packetdrill's target listens on port 8080 (per script in the one-per-script variant:
  ``--bind_port`` 20000 + i, so no 4-tuple repeats across processes), the remote port of each connection is an
  ephemeral port packetdrill reserves in the namespace (distinct within a process); target 198.18.0.1 on tun0,
  remote 198.18.1.2 routed via 198.18.0.2. The suite's target listens on an ephemeral port per case, its tester
  port comes from its allocator; target 198.18.0.1, tester 198.18.0.2 on the link;
- listeners: packetdrill follows one socket at a time (a SYN opens a child only while the socket under test
  listens), so its script opens a listener per connection (socket, SO_REUSEADDR, bind, listen) and closes it at
  the end of the connection; the suite's case has its own listener too (``ut: listen``), closed after the case;
- the upper tester: packetdrill makes the socket calls itself, in the target's namespace; the suite makes them
  through its agent process;
- in flight: packetdrill runs connections one after another; the suite keeps several cases in flight at once
  when its target allows it (the ``--concurrency 1`` row runs them one by one).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SUITE_PYTHON = REPO / ".venv" / "bin" / "python"
BUILD_HINT = (
    "no packetdrill binary: build one outside this repository (apt-get install -y bison flex gcc make; "
    "git clone https://github.com/google/packetdrill /tmp/packetdrill-src; cd /tmp/packetdrill-src/gtests/net/"
    "packetdrill && ./configure && make packetdrill) and pass --packetdrill /tmp/packetdrill-src/gtests/net/"
    "packetdrill/packetdrill"
)
# 198.18.0.0/15 only (RFC 2544 benchmarking space); the remote prefix is routed into packetdrill's tun0.
PD_ADDRESSES = [
    "--ip_version=ipv4",
    "--local_ip=198.18.0.1",
    "--netmask_ip=255.255.255.0",
    "--gateway_ip=198.18.0.2",
    "--remote_ip=198.18.1.2/24",
]
PD_BIND_PORT_BASE = 20000  # one-connection scripts: a distinct target port per script
PD_TIMEOUT_S = 120
SUITE_TIMEOUT_S = 900
# The exchange from the tester's side: (sender, flags).
EXCHANGE = [("tester", "S"), ("target", "SA"), ("tester", "A"), ("target", "FA"), ("tester", "A"),
            ("tester", "FA"), ("target", "A")]  # fmt: skip
FLAG_ORDER = "FSRPAUEC"

CONNECTION = """\
{t}socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
+0 setsockopt(3, SOL_SOCKET, SO_REUSEADDR, [1], 4) = 0
+0 bind(3, ..., ...) = 0
+0 listen(3, 1) = 0
+0 < S 0:0(0) win 65535 <mss 1460>
+0 > S. 0:0(0) ack 1 <mss 1460>
+0 < . 1:1(0) ack 1 win 65535
+0 accept(3, ..., ...) = 4
+0 close(4) = 0
+0 > F. 1:1(0) ack 1
+0 < . 1:1(0) ack 2 win 65535
+0 < F. 1:1(0) ack 2 win 65535
+0 > . 2:2(0) ack 2
+0 close(3) = 0
"""

CASE = """\
id: {case_id}
title: "Benchmark against packetdrill: passive open, the target closes, then the tester closes"
refs: [rfc793:fig7, rfc793:fig13, rfc9293:3.5, rfc9293:3.6]
requirement: >-
  A listening TCP completes the three-way handshake; when its application closes the connection it sends
  FIN, and it acknowledges the peer's FIN (RFC 9293 sections 3.5 and 3.6). Written by bench/vs_packetdrill.py.
level: MUST
requires: [ut.listen, ut.accept, ut.close]
tags: [handshake, teardown]
families: [ipv4]
steps:
  - ut: listen
  - send: {{flags: S, seq: l_isn, window: 65535, options: [{{mss: 1460}}]}}
  - expect: {{flags: SA, ack: l_isn + 1, len: 0, options: {{mss: 1460}}}}
  - send: {{flags: A, window: 65535}}
  - ut: accept
  - ut: close
  - expect: {{flags: FA, seq: t_nxt, ack: l_nxt, len: 0}}
  - send: {{flags: A, window: 65535}}
  - send: {{flags: FA, window: 65535}}
  - expect: {{flags: A, seq: t_nxt, ack: l_nxt, len: 0}}
"""


def packetdrill_script(connections: int, tail: str = "") -> str:
    """N independent passive opens and closes, one after another, in one packetdrill script."""
    blocks = [CONNECTION.format(t="0 " if i == 0 else "+0 ") for i in range(connections)]
    return "".join(blocks) + tail


def case_yaml(index: int) -> str:
    return CASE.format(case_id=f"BENCH-PD-{index:04d}")


def canonical_flags(letters: str) -> str:
    return "".join(f for f in FLAG_ORDER if f in letters)


@dataclass
class Row:
    tool: str
    connections: int
    walls: list[float] = field(default_factory=list)
    span: list[float] = field(default_factory=list)  # the suite's results.json: finished - started
    duration_sum: list[float] = field(default_factory=list)
    duration_median: list[float] = field(default_factory=list)
    failure: str | None = None

    def wall(self) -> float:
        return statistics.median(self.walls) if self.walls else float("nan")

    def ms_per_connection(self) -> float:
        return self.wall() / self.connections * 1000

    def suite_timing(self) -> str:
        if not self.span:
            return "-"
        return (
            f"span {statistics.median(self.span):.3f} s; sum duration_s {statistics.median(self.duration_sum):.3f} s"
            f" ({statistics.median(self.duration_sum) / self.connections * 1000:.2f} ms/case); median duration_s "
            f"{statistics.median(self.duration_median) * 1000:.2f} ms"
        )


class Namespaces:
    """Network namespaces this process creates; each is removed on leaving its block, whatever happened."""

    def __init__(self) -> None:
        self.count = 0

    @contextlib.contextmanager
    def fresh(self) -> Iterator[str]:
        self.count += 1
        name = f"vspd-{os.getpid()}-{self.count}"
        subprocess.run(["ip", "netns", "add", name], check=True)
        try:
            subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
            yield name
        finally:
            subprocess.run(["ip", "netns", "del", name], check=False)


def run_packetdrill(ns: str, binary: Path, script: Path, extra: list[str] | None = None) -> subprocess.CompletedProcess:
    cmd = ["ip", "netns", "exec", ns, str(binary), *PD_ADDRESSES, *(extra or []), script.name]
    return subprocess.run(cmd, cwd=script.parent, capture_output=True, text=True, timeout=PD_TIMEOUT_S, check=False)


def failure_text(proc: subprocess.CompletedProcess, what: str, keep: int = 1500) -> str:
    """The command's output, its beginning and its end (the first error and the summary)."""
    text = (proc.stdout + proc.stderr).strip()
    if len(text) > 2 * keep:
        text = f"{text[:keep]}\n[...]\n{text[-keep:]}"
    return f"{what} exited {proc.returncode}:\n{text}"


def verify_packetdrill(binary: Path, work: Path, connections: int, namespaces: Namespaces) -> str:
    """Run the N-connection script once, verbosely, untimed: every connection's segments and a distinct remote port."""
    tw = work / "time-wait.txt"
    script = work / "verify.pkt"
    script.write_text(packetdrill_script(connections, f"+0 `ss -Htn state time-wait > {shlex.quote(str(tw))}`\n"))
    with namespaces.fresh() as ns:
        proc = run_packetdrill(ns, binary, script, ["-v"])
    if proc.returncode != 0:
        raise RuntimeError(failure_text(proc, "packetdrill -v (exchange check)"))
    seen = []
    for line in proc.stdout.splitlines():
        m = re.match(r"(inbound injected|outbound sniffed) packet:\s+\S+\s+(\S+)", line)
        if m:
            token = m.group(2)
            letters = token.replace(".", "") + ("A" if "." in token else "")
            seen.append(("tester" if m.group(1).startswith("inbound") else "target", canonical_flags(letters)))
    if seen != EXCHANGE * connections:
        raise RuntimeError(f"packetdrill's segments differ from the exchange: {seen[:14]} ...")
    peers = [line.split()[-1].rsplit(":", 1)[1] for line in tw.read_text().splitlines() if line.strip()]
    if len(peers) != connections or len(set(peers)) != connections:
        raise RuntimeError(f"packetdrill: {len(set(peers))} distinct remote ports in TIME-WAIT, expected {connections}")
    return f"{connections} x {len(EXCHANGE)} segments as expected; {len(set(peers))} distinct remote ports in TIME-WAIT"


def verify_suite(results: dict, connections: int) -> str:
    cases = results.get("cases") or []
    bad = [c["id"] for c in cases if c.get("verdict") != "PASS"]
    if len(cases) != connections or bad:
        raise RuntimeError(f"suite: {len(cases)} cases, not PASS: {bad[:10]}")
    ports = set()
    for case in cases:
        seen = []
        for entry in case["trace"]:
            addresses, _, rest = entry["summary"].partition(": ")
            seen.append(("tester" if entry["dir"] == "out" else "target", canonical_flags(rest.split()[0])))
            if entry["dir"] == "out":
                ports.add(addresses.split(" > ")[0].rsplit(":", 1)[1])
        if seen != EXCHANGE:
            raise RuntimeError(f"suite: {case['id']} exchanged {seen}, expected {EXCHANGE}")
    return f"{connections} x {len(EXCHANGE)} segments as expected; {len(ports)} distinct tester ports"


def time_packetdrill_single(binary: Path, script: Path, namespaces: Namespaces) -> float:
    with namespaces.fresh() as ns:
        started = time.perf_counter()
        proc = run_packetdrill(ns, binary, script)
        elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(failure_text(proc, f"packetdrill {script.name}"))
    return elapsed


def time_packetdrill_each(binary: Path, scripts: list[Path], namespaces: Namespaces, *, ns_per_script: bool) -> float:
    """A process per one-connection script, in one shared namespace or (``ns_per_script``) a fresh one each."""
    elapsed = 0.0
    with contextlib.ExitStack() as stack:
        shared = None if ns_per_script else stack.enter_context(namespaces.fresh())
        started = time.perf_counter()
        for i, script in enumerate(scripts):
            with contextlib.ExitStack() as own:
                ns = shared or own.enter_context(namespaces.fresh())
                proc = run_packetdrill(ns, binary, script, [f"--bind_port={PD_BIND_PORT_BASE + i}"])
            if proc.returncode != 0:
                raise RuntimeError(failure_text(proc, f"packetdrill {script.name}"))
        elapsed = time.perf_counter() - started
    return elapsed


def time_suite(cases_dir: Path, report_dir: Path, extra: list[str]) -> tuple[float, dict]:
    python = SUITE_PYTHON if SUITE_PYTHON.exists() else Path(sys.executable)
    cmd = [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "--report-dir", str(report_dir),
           "--target=local", "--targets-file", str(REPO / "targets.yaml"), *extra, str(cases_dir)]  # fmt: skip
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=SUITE_TIMEOUT_S, check=False)
    elapsed = time.perf_counter() - started
    results_file = report_dir / "results.json"
    if proc.returncode != 0 or not results_file.exists():
        raise RuntimeError(failure_text(proc, shlex.join(cmd)))
    return elapsed, json.loads(results_file.read_text())


def suite_has_concurrency() -> bool:
    python = SUITE_PYTHON if SUITE_PYTHON.exists() else Path(sys.executable)
    proc = subprocess.run(
        [str(python), "-m", "pytest", "--help"], cwd=REPO, capture_output=True, text=True, check=False
    )
    return "--concurrency" in proc.stdout


def span_s(results: dict) -> float:
    """The suite's own run time: results.json's ``finished`` minus ``started``."""

    def stamp(text: str) -> float:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()

    return stamp(results["finished"]) - stamp(results["started"])


def netns_exec_overhead_ms(namespaces: Namespaces, samples: int = 10) -> float:
    with namespaces.fresh() as ns:
        times = []
        for _ in range(samples):
            started = time.perf_counter()
            subprocess.run(["ip", "netns", "exec", ns, "true"], check=True)
            times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def working_tree() -> str:
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True)
    changed = len([line for line in dirty.stdout.splitlines() if line.strip()])
    return f"{head.stdout.strip() or '?'}" + (f" + {changed} uncommitted paths" if changed else "")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packetdrill", type=Path, help="a packetdrill binary built outside this repository")
    parser.add_argument("--connections", type=int, default=200, help="connections per run (default 200)")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per row (default 3)")
    parser.add_argument(
        "--netns-per-script",
        action="store_true",
        help="also time one-connection scripts each in its own namespace (as packetdrill's run_all.py does)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary scripts, cases and reports")
    args = parser.parse_args()
    if args.packetdrill is None or not os.access(args.packetdrill, os.X_OK):
        print(BUILD_HINT, file=sys.stderr)
        return 2
    if args.connections < 1 or args.runs < 1:
        parser.error("--connections and --runs must be at least 1")
    if os.geteuid() != 0:
        print("needs root: it creates network namespaces", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))  # run the clean-ups

    binary = args.packetdrill.resolve()
    n = args.connections
    load_before = os.getloadavg()[0]
    work = Path(tempfile.mkdtemp(prefix="vs-packetdrill-"))
    namespaces = Namespaces()
    failed = False
    try:
        pd_dir = work / "packetdrill"
        pd_dir.mkdir()
        (pd_dir / "all.pkt").write_text(packetdrill_script(n))
        scripts = []
        for i in range(1, n + 1):
            scripts.append(pd_dir / f"one-{i:04d}.pkt")
            scripts[-1].write_text(packetdrill_script(1))
        cases_dir = work / "testcases"
        cases_dir.mkdir()
        for i in range(1, n + 1):
            (cases_dir / f"bench-pd-{i:04d}.yaml").write_text(case_yaml(i))

        rows = [Row(f"packetdrill, 1 script of {n} connections", n),
                Row(f"packetdrill, {n} scripts of 1 connection, 1 namespace", n)]  # fmt: skip
        if args.netns_per_script:
            rows.append(Row(f"packetdrill, {n} scripts of 1 connection, a namespace each", n))
        suite_rows = [("suite (default: cases in flight at once)", [])]
        if suite_has_concurrency():
            suite_rows.append(("suite --concurrency 1 (one case at a time)", ["--concurrency", "1"]))
        rows += [Row(name, n) for name, _ in suite_rows]
        checks: list[str] = []

        try:
            checks.append("packetdrill: " + verify_packetdrill(binary, pd_dir, n, namespaces))
        except RuntimeError as exc:
            checks.append(f"packetdrill exchange check FAILED: {exc}")
            failed = True
        jobs: list[tuple[Row, Callable[[], float]]] = [
            (rows[0], lambda: time_packetdrill_single(binary, pd_dir / "all.pkt", namespaces)),
            (rows[1], lambda: time_packetdrill_each(binary, scripts, namespaces, ns_per_script=False)),
        ]
        if args.netns_per_script:
            jobs.append((rows[2], lambda: time_packetdrill_each(binary, scripts, namespaces, ns_per_script=True)))
        for run in range(1, args.runs + 1):
            for row, job in jobs:
                if row.failure is None:
                    try:
                        row.walls.append(job())
                    except (RuntimeError, subprocess.TimeoutExpired) as exc:
                        row.failure = str(exc)
            for (label, extra), row in zip(suite_rows, rows[-len(suite_rows) :], strict=True):
                if row.failure is not None:
                    continue
                report_dir = work / "reports" / f"{'serial' if extra else 'default'}-{run}"
                try:
                    wall, results = time_suite(cases_dir, report_dir, extra)
                    if run == 1:
                        checks.append(f"{label}: " + verify_suite(results, n))
                except (RuntimeError, subprocess.TimeoutExpired) as exc:
                    row.failure = str(exc)
                    continue
                durations = [c["duration_s"] for c in results["cases"]]
                row.walls.append(wall)
                row.span.append(span_s(results))
                row.duration_sum.append(sum(durations))
                row.duration_median.append(statistics.median(durations))

        print(f"kernel {os.uname().release}; packetdrill {binary}; suite {REPO} at {working_tree()}")
        print(f"{n} connections per run, {args.runs} runs; `ip netns exec` costs "
              f"{netns_exec_overhead_ms(namespaces):.1f} ms per process (median of 10); {os.cpu_count()} CPUs, "
              f"1-minute load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after")  # fmt: skip
        print()
        print("| tool | connections | wall time, median (s) | ms per connection | suite's results.json timing |")
        print("|---|---|---|---|---|")
        for row in rows:
            if row.failure is not None and not row.walls:
                print(f"| {row.tool} | {n} | FAILED | - | - |")
                continue
            print(f"| {row.tool} | {n} | {row.wall():.3f} | {row.ms_per_connection():.2f} | {row.suite_timing()} |")
        print()
        for suite_row in rows[-len(suite_rows) :]:
            for pd_row in rows[: -len(suite_rows)]:
                if suite_row.walls and pd_row.walls:
                    ratio = suite_row.ms_per_connection() / pd_row.ms_per_connection()
                    print(f"ratio per connection, {suite_row.tool} / {pd_row.tool}: {ratio:.2f}")
        print()
        for line in checks:
            print(f"exchange check, {line}")
        for row in rows:
            if row.failure is not None:
                failed = True
                print(f"\nFAILED: {row.tool}:\n{row.failure}")
    finally:
        if args.keep:
            print(f"\nkept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
