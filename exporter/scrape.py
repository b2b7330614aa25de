"""Running collections: one runner per target, shared by concurrent scrapes, never raising.

A scrape waits for each target at most its budget. Concurrent scrapes of a target join the collection in
flight instead of starting another, and with `min_interval_seconds` a recent result is served again, so
an HA pair of Prometheus servers costs the upstream one collection. The app asks for a result up to a second
old to be served again while other scrapes are being answered (`reuse_within`): scrapes of a burst arrive
over longer than a fast collection takes, and would otherwise start one collection after another.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from typing import Any, NamedTuple

import structlog

from exporter.collectors.base import ErrorTracker, ScrapeContext, TargetCollector
from exporter.http import Deadline
from exporter.metrics import JOBS_DISCOVERED, SCRAPE_DURATION, SCRAPE_SUCCESS, Output
from exporter.workers import Lane

log = structlog.get_logger("exporter.scrape")
GRACE_SECONDS = 0.3


class Begun(NamedTuple):
    """A collection a scrape waits for: its future, its budget, the moment the wait ends, and what may end it
    sooner (done when the exporter stops)."""

    future: Future[Output]
    budget: float
    until: float
    cut: Future[None] | None = None


class TargetRunner:
    """Collects one target: budget, in-flight sharing, result reuse, error accounting; its upstream calls run on
    its lane of the process's pool."""

    def __init__(
        self,
        collector: TargetCollector[Any],
        errors: ErrorTracker,
        lane: Lane,
        budget_seconds: float,
        min_interval: float,
        state_series: str = "full",
    ):
        self.collector = collector
        self.name = collector.settings.name
        self.platform = collector.platform
        self.budget_seconds = collector.settings.budget_seconds or budget_seconds
        self._min_interval = min_interval
        self._sparse = state_series == "sparse"
        self._errors = errors
        self._lane = lane
        self._lock = threading.Lock()
        self._in_flight: Future[Output] | None = None
        self._last: Output | None = None
        self._last_finished = 0.0

    def collect(self, budget_seconds: float | None = None) -> Output:
        """The target's samples: joined from a collection in flight, reused within min_interval, or fresh."""
        return self.finish(self.begin(budget_seconds))

    def begin(
        self, budget_seconds: float | None = None, reuse_within: float = 0.0, cut: Future[None] | None = None
    ) -> Begun:
        """Start a collection unless one is in flight or one finished within `reuse_within` seconds (or
        min_interval_seconds, when longer); never blocks on an upstream. A done `cut` ends the wait for it."""
        budget = min(self.budget_seconds, budget_seconds or self.budget_seconds)
        now = time.monotonic()
        until = now + budget + GRACE_SECONDS
        with self._lock:
            if self._last is not None and now - self._last_finished < max(self._min_interval, reuse_within):
                recent: Future[Output] = Future()
                recent.set_result(self._last)
                return Begun(recent, budget, until, cut)
            if self._in_flight is None:
                self._last = None  # not kept alive while the next one is collected
                self._in_flight = Future()
                threading.Thread(
                    target=self._run, args=(self._in_flight, budget), name=f"collect-{self.name}", daemon=True
                ).start()
            return Begun(self._in_flight, budget, until, cut)

    def finish(self, begun: Begun) -> Output:
        """Wait for a begun collection until the end of its budget (or its cut, when the exporter stops); past
        it, report the target as overrun.

        The end is absolute, so targets begun together overrun together, never one budget after another.
        """
        waits: list[Future[Any]] = [begun.future] if begun.cut is None else [begun.future, begun.cut]
        wait(waits, timeout=max(0.0, begun.until - time.monotonic()), return_when=FIRST_COMPLETED)
        if begun.future.done():
            return begun.future.result()
        return self._overrun(begun.budget)

    def _run(self, future: Future[Output], budget: float) -> None:
        out = Output(self.platform, self.name, sparse=self._sparse)
        started = time.monotonic()
        ctx = ScrapeContext(Deadline(budget), self._lane, self._errors)
        try:
            self.collector.collect(ctx, out)
        except Exception as exc:  # noqa: BLE001 - collect() must never take the scrape down
            self._errors.record(exc, "target")
        for job in self.collector.known_jobs():
            out.job_unknown(job)
        out.add(SCRAPE_SUCCESS, 0.0 if self._errors.failed else 1.0)
        out.add(SCRAPE_DURATION, time.monotonic() - started)
        out.add(JOBS_DISCOVERED, len(self.collector.known_jobs()))
        self._errors.finish()
        self.collector.secrets.settle()  # what the collection logged is written: replaced session ids may go
        with self._lock:  # dropped when the next collection begins, so it never sits in memory through one
            self._last, self._last_finished = out, time.monotonic()
            self._in_flight = None
        future.set_result(out)

    def _overrun(self, budget: float) -> Output:
        """What a scrape reports when the collection is still running at the end of its budget."""
        log.warning("collection overran its budget", platform=self.platform, target=self.name, budget=budget)
        out = Output(self.platform, self.name, sparse=self._sparse)
        for job in self.collector.known_jobs():
            out.job_unknown(job)
        out.add(SCRAPE_SUCCESS, 0.0)
        out.add(SCRAPE_DURATION, budget)
        out.add(JOBS_DISCOVERED, len(self.collector.known_jobs()))
        return out

    def close(self) -> None:
        self._lane.close()
        self.collector.close()


class Collection:
    """The collections one scrape waits for, begun together so that they overrun together."""

    def __init__(self, begun: Sequence[tuple[TargetRunner, Begun]]) -> None:
        self._begun = begun

    @property
    def in_flight(self) -> bool:
        """True while some target is still being collected (not joined to a finished or recent result)."""
        return not all(started.future.done() for _, started in self._begun)

    def outputs(self) -> tuple[Output, ...]:
        """Each target's samples, in order, once its collection has finished or its budget has run out."""
        return tuple(runner.finish(started) for runner, started in self._begun)


class Runners:
    """The targets of one configuration, by name; a reload replaces them all at once."""

    def __init__(self, runners: Iterable[TargetRunner]) -> None:
        self.by_name = {runner.name: runner for runner in runners}

    def add(self, runner: TargetRunner) -> None:
        self.by_name[runner.name] = runner

    def begin(
        self,
        runners: Sequence[TargetRunner],
        budget_seconds: float | None = None,
        reuse_within: float = 0.0,
        cut: Future[None] | None = None,
    ) -> Collection:
        return Collection([(runner, runner.begin(budget_seconds, reuse_within, cut)) for runner in runners])

    def close(self) -> None:
        for runner in self.by_name.values():
            runner.close()
