"""Soak: thousands of scrapes against the simulator under random faults; nothing may leak or get stuck.

The exporter runs in this process (its WSGI app called directly, as Prometheus' scrapes would reach it);
the simulator runs in a child process, driven through its /_sim/ control API, so the figures measure the
exporter alone. Every scrape must answer 200 within the budget. Memory, threads and open descriptors are
measured at two quiet points, after a warm-up and at the end (faults cleared, back-offs over, a few clean
scrapes more, then at rest: upstream connections closed, the last rendering dropped): resident memory may
grow less than 5 %, threads and descriptors not at all, and no collection may stay in flight past its budget.
Threads and descriptors are also counted after every scrape of the run, connections open, and reported as a
range.

    /tmp/venv/bin/python -m tests.soak --scrapes 2000        # the long run (about 2 to 3 minutes)

tests/test_soak.py runs a short version in CI.
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import yaml

from benchmarks.inprocess import Figures, LogSink, open_fds
from exporter import logs
from exporter.server import ExporterApp
from exporter.simulator.process import announced, command
from exporter.workers import UPSTREAM_WORKERS
from tests.helpers import SIMULATED, get, make_app, make_settings

BUDGET = 1.0
GRACE = 0.8  # the runner's grace, the exposition, a loaded CI machine
QUIET_SECONDS = 1.2  # longer than every back-off the soak provokes (Retry-After 1, AK/SK cool-down 1)
OVERSIZED_BYTES = 17 * 1024 * 1024
KINDS: dict[str, int] = {  # fault kind -> weight
    "error": 4,
    "html_error": 2,
    "rate_limit": 2,
    "malformed": 3,
    "empty": 2,
    "wrong_types": 3,
    "missing_fields": 3,
    "unknown_state": 2,
    "oversized": 1,
    "auth": 2,
    "session_expired": 3,
    "refuse": 2,
    "latency": 3,
    "hang": 1,
}


@dataclass
class Span:
    """The least and the most of a count seen during the run."""

    low: int = sys.maxsize
    high: int = 0

    def add(self, value: int) -> None:
        self.low, self.high = min(self.low, value), max(self.high, value)

    def __str__(self) -> str:
        return f"{self.low} to {self.high}"


@dataclass
class Report:
    scrapes: int = 0  # the run's own scrapes
    quiet_scrapes: int = 0  # the clean ones at the quiet points
    faults: Counter[str] = field(default_factory=Counter)
    failed_scrapes: int = 0  # scrapes where some target reported ingestion_scrape_success 0
    slowest: float = 0.0
    overruns: int = 0
    stuck: int = 0
    tracebacks: int = 0
    seconds: float = 0.0
    start: Figures | None = None
    end: Figures | None = None
    other_workers: int = 0  # upstream workers of other pools in this process (a test run's earlier exporters)
    threads: Span = field(default_factory=Span)  # after every scrape of the run, upstream connections open
    fds: Span = field(default_factory=Span)

    @property
    def rss_growth_percent(self) -> float:
        assert self.start and self.end
        return 100.0 * (self.end.rss_kib - self.start.rss_kib) / self.start.rss_kib

    def text(self) -> str:
        assert self.start and self.end
        kinds = ", ".join(f"{kind} {n}" for kind, n in sorted(self.faults.items()))
        return "\n".join(
            [
                f"scrapes {self.scrapes}, and {self.quiet_scrapes} more at the quiet points, in {self.seconds:.1f}s "
                f"(slowest {self.slowest:.2f}s, budget {BUDGET}s); {self.failed_scrapes} of all "
                f"{self.scrapes + self.quiet_scrapes} with a target failing",
                f"faults injected {sum(self.faults.values())}: {kinds}",
                "at the quiet points (after the warm-up, at the end; upstream connections closed): "
                f"RSS {self.start.rss_kib / 1024:.1f} -> {self.end.rss_kib / 1024:.1f} MiB "
                f"({self.rss_growth_percent:+.2f} %), threads {self.start.threads} -> {self.end.threads} (and the "
                f"upstream pool's workers {self.start.pool_threads} -> {self.end.pool_threads}), "
                f"open fds {self.start.fds} -> {self.end.fds}",
                f"during the run (upstream connections open): threads {self.threads}, open fds {self.fds}",
                f"collections overrun {self.overruns}, stuck in flight {self.stuck}, "
                f"tracebacks logged {self.tracebacks}",
            ]
        )

    def problems(self) -> list[str]:
        assert self.start and self.end
        found = []
        if self.rss_growth_percent >= 5.0:
            found.append(f"RSS grew {self.rss_growth_percent:.2f} %")
        if self.end.threads > self.start.threads:
            found.append(f"threads grew from {self.start.threads} to {self.end.threads}")
        if self.end.pool_threads - self.other_workers > UPSTREAM_WORKERS:
            workers = self.end.pool_threads - self.other_workers
            found.append(f"{workers} upstream workers, more than the pool's {UPSTREAM_WORKERS}")
        if self.end.fds > self.start.fds:
            found.append(f"open fds grew from {self.start.fds} to {self.end.fds}")
        if self.stuck:
            found.append(f"{self.stuck} collection(s) stuck in flight")
        if self.tracebacks:
            found.append(f"{self.tracebacks} traceback(s) logged")
        if self.slowest > BUDGET + GRACE:
            found.append(f"a scrape took {self.slowest:.2f}s")
        return found


@contextmanager
def simulator(seed: int) -> Iterator[tuple[str, dict[str, Any]]]:
    """A simulator in a child process: (url, the exporter configuration it wrote, secrets as files beside it)."""
    with tempfile.TemporaryDirectory() as directory:
        config = Path(directory) / "exporter.yml"
        child = subprocess.Popen(
            command(jobs=4, transition_seconds=5, random_seed=seed, config_out=config),
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert child.stdout is not None
            line = child.stdout.readline()
            url = announced(line).get("url")
            if url is None:
                raise RuntimeError(f"the simulator did not start: {line!r}")
            yield url, yaml.safe_load(config.read_text())
        finally:
            child.terminate()
            child.wait(timeout=10)


def exporter_for(config: dict[str, Any]) -> ExporterApp:
    targets = config["targets"]
    for document in targets:
        if isinstance(document.get("auth"), dict) and document["auth"].get("type") == "aksk":
            document["auth"]["aksk_cooldown_seconds"] = 1.0
    return make_app(make_settings(targets, scrape_budget_seconds=BUDGET))


def random_fault(rng: random.Random) -> dict[str, Any]:
    kind = rng.choices(list(KINDS), weights=list(KINDS.values()))[0]
    rule: dict[str, Any] = {
        "kind": kind,
        "platform": rng.choice([*SIMULATED, "*"]),
        "endpoint": "*",
        "rate": rng.choice([0.2, 0.5, 1.0]),
        "count": rng.choice([1, 3, 10, None]),
    }
    if kind == "hang":
        rule.update(seconds=BUDGET + 0.5, count=1)
    elif kind == "latency":
        rule["seconds"] = rng.choice([0.05, 0.2, 0.5])
    elif kind == "error":
        rule["status"] = rng.choice([500, 502, 503, 504, 400, 404])
    elif kind == "oversized":
        rule["bytes"] = OVERSIZED_BYTES
    return rule


def run(scrapes: int, seed: int = 1, echo: bool = True) -> Report:
    rng = random.Random(seed)
    report = Report()
    sink = LogSink()
    logs.configure(logs.Redactor(), "info", "json", sink)  # type: ignore[arg-type]
    warm_up = max(100, scrapes // 10)  # caches, pools and label sets fill up first
    started = time.monotonic()
    with simulator(seed) as (url, config):
        control = requests.Session()
        report.other_workers = Figures.now().pool_threads
        app = exporter_for(config)
        in_flight: dict[str, tuple[object, float]] = {}

        def scrape() -> None:
            number = report.scrapes + report.quiet_scrapes + 1
            began = time.monotonic()
            status, body = get(app, "/metrics")
            took = time.monotonic() - began
            if not status.startswith("200"):
                raise AssertionError(f"scrape {number}: {status}")
            report.slowest = max(report.slowest, took)
            success = [
                line.rsplit(" ", 1)[-1] for line in body.splitlines() if line.startswith("ingestion_scrape_success{")
            ]  # parsing all samples would dominate
            if len(success) != len(app.runners.by_name):
                raise AssertionError(f"scrape {number}: {len(success)} ingestion_scrape_success samples")
            if any(float(v) == 0.0 for v in success):
                report.failed_scrapes += 1
            check_in_flight(app, in_flight, report)

        def quiet() -> Figures:
            control.delete(f"{url}/_sim/faults", timeout=5)
            time.sleep(QUIET_SECONDS)
            for _ in range(3):
                scrape()
                report.quiet_scrapes += 1
            return Figures.at_rest(app)

        for index in range(scrapes):
            if index == warm_up:
                report.start = quiet()
            roll = rng.random()
            if roll < 0.12:
                control.delete(f"{url}/_sim/faults", timeout=5)
            elif roll < 0.40:
                rule = random_fault(rng)
                control.post(f"{url}/_sim/faults", json=rule, timeout=5).raise_for_status()
                report.faults[rule["kind"]] += 1
            scrape()
            report.scrapes += 1
            report.threads.add(threading.active_count())
            report.fds.add(open_fds())
            if echo and (index + 1) % 250 == 0:
                now = Figures.now()
                print(
                    f"... {index + 1} scrapes, RSS {now.rss_kib / 1024:.1f} MiB, threads {now.threads}, "
                    f"open fds {now.fds} (upstream connections open)",
                    file=sys.stderr,
                    flush=True,
                )
        report.end = quiet()
        report.stuck += sum(1 for runner in app.runners.by_name.values() if runner._in_flight is not None)
        app.runners.close()
        control.close()
    report.seconds = time.monotonic() - started
    report.overruns, report.tracebacks = sink.overruns, sink.tracebacks
    logs.configure(logs.Redactor(), "info", "json")
    return report


def check_in_flight(app: ExporterApp, seen: dict[str, tuple[object, float]], report: Report) -> None:
    """A collection still in flight one budget and its grace after a scrape first saw it is stuck."""
    now = time.monotonic()
    for name, runner in app.runners.by_name.items():
        current = runner._in_flight
        if current is None:
            seen.pop(name, None)
            continue
        first = seen.get(name)
        if first is None or first[0] is not current:
            seen[name] = (current, now)
        elif now - first[1] > BUDGET + GRACE:
            report.stuck += 1
            seen.pop(name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.soak", description=__doc__.splitlines()[0])
    parser.add_argument("--scrapes", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    report = run(args.scrapes, args.seed)
    print(report.text())
    problems = report.problems()
    for problem in problems:
        print(f"FAILED: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
