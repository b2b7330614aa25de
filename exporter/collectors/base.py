"""What every platform collector shares: the collection context, error classification, discovery cache.

A platform collector implements `collect(ctx, out)` and `configured_jobs()`; it may raise anywhere. The
runner in `exporter.scrape` turns whatever it raises into counted, logged errors and `unknown` jobs.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import wait
from typing import Any, ClassVar, Generic, TypeVar

import pydantic
import structlog

from exporter.http import Deadline, Upstream, UpstreamError
from exporter.metrics import Family, JobRef, Output
from exporter.settings import DiscoverySettings, TargetSettings
from exporter.telemetry import Telemetry
from exporter.workers import DaemonPool

T = TypeVar("T")
log = structlog.get_logger("exporter.collector")


def classify(exc: BaseException) -> str:
    """Map anything a collection raised to one of telemetry.ERROR_REASONS."""
    if isinstance(exc, UpstreamError):
        return exc.reason
    if isinstance(exc, TimeoutError):
        return "timeout"
    return "invalid_response"


def describe_error(exc: BaseException) -> str:
    if isinstance(exc, pydantic.ValidationError):
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "document"
        return f"unexpected document: {where}: {first['msg']} ({exc.error_count()} problem(s))"
    if isinstance(exc, UpstreamError | TimeoutError):
        return str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {exc}"


class ErrorTracker:
    """Counts every error; logs a failure once when it starts and once when it clears, not every scrape.

    The warning is written when the collection finishes, one line per reason however many jobs or calls
    failed for it (an unreachable upstream fails every job at once): the first failure's details, with the
    number of subjects and a few of their names. Each failure also has its own line at debug level.
    """

    def __init__(self, platform: str, target: str, telemetry: Telemetry) -> None:
        self._platform = platform
        self._target = target
        self._telemetry = telemetry
        self._lock = threading.Lock()
        self._previous: dict[str, str] = {}
        self._current: dict[str, str] = {}
        self._started: dict[str, list[dict[str, object]]] = {}

    def record(self, exc: BaseException, subject: str, **context: str) -> str:
        reason = classify(exc)
        self._telemetry.scrape_errors.labels(self._platform, self._target, reason).inc()
        fields: dict[str, object] = {
            "platform": self._platform,
            "target": self._target,
            "subject": subject,
            "reason": reason,
            "error": describe_error(exc),
            **context,
        }
        if isinstance(exc, UpstreamError):
            if exc.status is not None:
                fields["status"] = exc.status
            if exc.body:
                fields["body"] = exc.body
        with self._lock:
            self._current[subject] = reason
            if self._previous.get(subject) != reason:
                self._started.setdefault(reason, []).append(fields)
        log.debug("upstream call failed", **fields)
        return reason

    @property
    def failed(self) -> bool:
        with self._lock:
            return bool(self._current)

    def finish(self) -> None:
        """Close a collection: log what started failing and what recovered since the last one, start afresh."""
        with self._lock:
            recovered = [s for s in self._previous if s not in self._current]
            started, self._started = self._started, {}
            self._previous, self._current = self._current, {}
        for failures in started.values():
            log.warning("upstream call failed", **failures[0], **_others([str(f["subject"]) for f in failures]))
        if recovered:
            log.info(
                "upstream call recovered",
                platform=self._platform,
                target=self._target,
                subject=recovered[0],
                **_others(recovered),
            )


def _others(subjects: list[str], shown: int = 5) -> dict[str, object]:
    """How many subjects one log line stands for, and the names of a few besides the first."""
    if len(subjects) < 2:
        return {}
    more = len(subjects) - 1 - shown
    also = ", ".join(subjects[1 : 1 + shown]) + (f" and {more} more" if more > 0 else "")
    return {"subjects": len(subjects), "also": also}


class ScrapeContext:
    """One collection's deadline, its bounded pool of upstream calls and its error record."""

    def __init__(self, deadline: Deadline, pool: DaemonPool, errors: ErrorTracker) -> None:
        self.deadline = deadline
        self._pool = pool
        self.errors = errors

    def each_job(self, jobs: Sequence[JobRef], out: Output, read: Callable[[JobRef, Output], None]) -> None:
        """Read every job concurrently into its own buffer; one that fails or overruns becomes `unknown` alone."""
        buffers = {job.job_id: out.child() for job in jobs}
        futures = {self._pool.submit(read, job, buffers[job.job_id]): job for job in jobs}
        done, pending = wait(futures, timeout=max(0.0, self.deadline.remaining()) + 0.2)
        for future in pending:
            future.cancel()
        for future, job in futures.items():
            error = future.exception() if future in done else TimeoutError("no answer within the scrape budget")
            if error is None:
                out.extend(buffers[job.job_id])
            else:
                self.errors.record(error, f"job {job.job_id}", job_id=job.job_id, job_name=job.job_name)
                out.job_unknown(job)

    def map(self, items: Iterable[T], call: Callable[[T], object]) -> list[object]:
        """Run calls concurrently within the budget; results in order, an exception in place of a failure."""
        futures = [self._pool.submit(call, item) for item in items]
        done, _ = wait(futures, timeout=max(0.0, self.deadline.remaining()) + 0.2)
        results: list[object] = []
        for future in futures:
            if future not in done:
                future.cancel()
                results.append(TimeoutError("no answer within the scrape budget"))
            else:
                results.append(future.exception() or future.result())
        return results


class TargetCollector(ABC):
    """One configured target of one platform. Subclasses set the class attributes and `collect()`.

    Construct with the target's settings and its `Upstream`; the platform's API client is built from them
    in the subclass constructor.
    """

    platform: ClassVar[str]
    settings_model: ClassVar[type[TargetSettings]]
    families: ClassVar[tuple[Family, ...]] = ()

    def __init__(self, settings: TargetSettings, upstream: Upstream) -> None:
        self.settings = settings
        self.upstream = upstream

    @abstractmethod
    def collect(self, ctx: ScrapeContext, out: Output) -> None:
        """Add this target's samples to `out`; may raise, the runner classifies it."""

    @abstractmethod
    def known_jobs(self) -> list[JobRef]:
        """Jobs from configuration and the last discovery: they stay visible as `unknown` when unreadable."""

    @classmethod
    @abstractmethod
    def demo_target(
        cls, name: str, url: str, credentials: dict[str, str], jobs: list[dict[str, str]]
    ) -> tuple[dict[str, Any], dict[str, str]]:
        """A target for the simulator at `url` and its secrets, for `--demo`: (settings document, secrets)."""

    def close(self) -> None:
        self.upstream.close()


class DiscoveryCache(Generic[T]):
    """A discovered job list reused for the discovery interval; on failure the last good list stays."""

    def __init__(self, settings: DiscoverySettings) -> None:
        self._settings = settings
        self._items: list[T] = []
        self._fetched_at: float | None = None
        self._lock = threading.Lock()

    @property
    def items(self) -> list[T]:
        return list(self._items)

    def get(self, ctx: ScrapeContext, fetch: Callable[[Deadline], list[T]], name_of: Callable[[T], str]) -> list[T]:
        if not self._settings.enabled:
            return []
        with self._lock:
            age = None if self._fetched_at is None else time.monotonic() - self._fetched_at
            if age is not None and age < self._settings.interval_seconds:
                return list(self._items)
            try:
                found = fetch(ctx.deadline)
            except Exception as exc:  # noqa: BLE001 - any failure keeps the last list, counted once
                ctx.errors.record(exc, "discovery")
                return list(self._items)
            self._items = [item for item in found if self._settings.wants(name_of(item))]
            self._fetched_at = time.monotonic()
            return list(self._items)


class JobDirectory:
    """The jobs a target watches: configured ones, the last discovery's, and names learnt from reads.

    Configured jobs are the baseline; discovery adds to them. A name given in the configuration (or by
    discovery) wins; a job without one keeps the last name a read gave it, so its series keep their labels
    while its status cannot be read.
    """

    def __init__(self, configured: list[JobRef], discovery: DiscoverySettings) -> None:
        self._configured = configured
        self._discovery: DiscoveryCache[JobRef] = DiscoveryCache(discovery)
        self._names: dict[str, str] = {}

    def refresh(self, ctx: ScrapeContext, fetch: Callable[[Deadline], list[JobRef]]) -> list[JobRef]:
        """Discover (at most once per discovery interval) and return every known job."""
        self._discovery.get(ctx, fetch, lambda job: job.job_name)
        return self.known()

    def known(self) -> list[JobRef]:
        jobs: dict[str, JobRef] = {}
        for job in (*self._configured, *self._discovery.items):
            jobs.setdefault(job.job_id, job)
        return [JobRef(job.job_id, job.job_name or self._names.get(job.job_id, "")) for job in jobs.values()]

    def learn(self, job: JobRef, name: str | None) -> JobRef:
        """Remember the name a read gave the job; return the job under its lasting name."""
        if name:
            self._names[job.job_id] = name
        return job if job.job_name else JobRef(job.job_id, name or "")
