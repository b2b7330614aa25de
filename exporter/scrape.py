"""Running collections: one runner per target, shared by concurrent scrapes, never raising.

A scrape waits for each target at most its budget. Concurrent scrapes of a target join the collection in
flight instead of starting another, and with `min_interval_seconds` a recent result is served again, so
an HA pair of Prometheus servers costs the upstream one collection.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, wait
from typing import NamedTuple

import structlog
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

from exporter import exposition
from exporter.collectors.base import ErrorTracker, ScrapeContext, TargetCollector
from exporter.http import Deadline
from exporter.metrics import JOBS_DISCOVERED, SCRAPE_DURATION, SCRAPE_SUCCESS, Family, Output, all_families
from exporter.workers import DaemonPool

log = structlog.get_logger("exporter.scrape")
GRACE_SECONDS = 0.3


class Begun(NamedTuple):
    """A collection a scrape waits for: its future, its budget, and the moment the wait ends."""

    future: Future[Output]
    budget: float
    until: float


class TargetRunner:
    """Collects one target: budget, in-flight sharing, result reuse, error accounting."""

    def __init__(
        self,
        collector: TargetCollector,
        errors: ErrorTracker,
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
        self._pool = DaemonPool(collector.settings.max_concurrency, f"upstream-{self.name}")
        self._lock = threading.Lock()
        self._in_flight: Future[Output] | None = None
        self._last: Output | None = None
        self._last_finished = 0.0

    def collect(self, budget_seconds: float | None = None) -> Output:
        """The target's samples: joined from a collection in flight, reused within min_interval, or fresh."""
        return self.finish(self.begin(budget_seconds))

    def begin(self, budget_seconds: float | None = None) -> Begun:
        """Start a collection unless one is in flight or recent enough; never blocks on an upstream."""
        budget = min(self.budget_seconds, budget_seconds or self.budget_seconds)
        until = time.monotonic() + budget + GRACE_SECONDS
        with self._lock:
            if self._last is not None and time.monotonic() - self._last_finished < self._min_interval:
                recent: Future[Output] = Future()
                recent.set_result(self._last)
                return Begun(recent, budget, until)
            if self._in_flight is None:
                self._in_flight = Future()
                threading.Thread(
                    target=self._run, args=(self._in_flight, budget), name=f"collect-{self.name}", daemon=True
                ).start()
            return Begun(self._in_flight, budget, until)

    def finish(self, begun: Begun) -> Output:
        """Wait for a begun collection until the end of its budget; past it, report the target as overrun.

        The end is absolute, so targets begun together overrun together, never one budget after another.
        """
        done, _ = wait([begun.future], timeout=max(0.0, begun.until - time.monotonic()))
        if done:
            return begun.future.result()
        return self._overrun(begun.budget)

    def _run(self, future: Future[Output], budget: float) -> None:
        out = Output(self.platform, self.name, sparse=self._sparse)
        started = time.monotonic()
        ctx = ScrapeContext(Deadline(budget), self._pool, self._errors)
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
        with self._lock:  # kept only for min_interval: otherwise it would sit in memory through the next collection
            self._last, self._last_finished = (out if self._min_interval > 0 else None), time.monotonic()
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
        self._pool.shutdown()
        self.collector.close()


class ExporterCollector(Collector):
    """The prometheus_client collector behind /metrics and /probe: all targets' samples, merged."""

    def __init__(self, runners: Sequence[TargetRunner], extra_families: Iterable[Family]) -> None:
        self.runners = {runner.name: runner for runner in runners}
        self.families = all_families(extra_families)
        self._render_lock = threading.Lock()
        self._rendered: tuple[tuple[Output, ...], bool, list[bytes]] | None = None

    def describe(self) -> Iterator[Metric]:
        """Names only, so registering never calls an upstream."""
        names = {family.name: family for family in self.families}
        for family in names.values():
            yield _empty(family)

    def collect(self) -> Iterator[Metric]:
        yield from self.collect_targets(list(self.runners.values()))

    def collect_targets(self, runners: Sequence[TargetRunner], budget_seconds: float | None = None) -> list[Metric]:
        begun = [(runner, runner.begin(budget_seconds)) for runner in runners]
        return merge(self.families, [runner.finish(started) for runner, started in begun])

    def expose(
        self,
        encoder: Callable[[Collector], bytes],
        runners: Sequence[TargetRunner],
        budget_seconds: float | None,
        extra: Collector | None,
    ) -> list[bytes] | None:
        """The exposition `encoder` would write for these targets and `extra`, written straight from the targets'
        samples (see exposition.py), as chunks to send one after another (the shared targets' body is never
        copied); None for a format the fast writer does not produce."""
        openmetrics = exposition.is_openmetrics(encoder)
        if not openmetrics and encoder is not generate_latest:
            return None
        begun = [(runner, runner.begin(budget_seconds)) for runner in runners]
        if not all(started.future.done() for _, started in begun):
            # A collection is in flight: every scrape from now on gets its samples, so the last body (and the
            # samples it holds) serves no one; freed now, not after the collection, it never adds to the peak
            # (a plain assignment: a scrape that still wants it renders it again).
            self._rendered = None
        outputs = tuple(runner.finish(started) for runner, started in begun)
        # Scrapes that joined one collection (or reuse one within min_interval) share one rendering; one rendering
        # at a time also keeps simultaneous scrapes from holding several copies of a large exposition at once.
        with self._render_lock:
            last = self._rendered
            if (
                last is not None
                and last[1] == openmetrics
                and len(last[0]) == len(outputs)
                and all(mine is theirs for mine, theirs in zip(last[0], outputs, strict=True))
            ):
                body = last[2]
            else:
                self._rendered = None  # the previous body is not kept alive while the next one is written
                body = exposition.render_chunks(self.families, outputs, openmetrics=openmetrics)
                self._rendered = (outputs, openmetrics, body)
        if extra is not None:
            return [*body, encoder(extra)]
        return [*body, b"# EOF\n"] if openmetrics else list(body)

    def close(self) -> None:
        for runner in self.runners.values():
            runner.close()


def _empty(family: Family) -> Metric:
    if family.kind == "counter":
        return CounterMetricFamily(family.full_name, family.help, labels=family.labels)
    return GaugeMetricFamily(family.full_name, family.help, labels=family.labels)


def merge(families: Sequence[Family], outputs: Iterable[Output]) -> list[Metric]:
    """One metric family per name, holding every target's samples, in catalogue order."""
    built: dict[str, Metric] = {}
    for family in families:
        built.setdefault(family.name, _empty(family))
    for output in outputs:
        for family, values, value in output.samples:
            labels = dict(zip(family.labels, values, strict=True))
            built[family.name].samples.append(Sample(family.full_name, labels, value))
    return [metric for metric in built.values() if metric.samples]
