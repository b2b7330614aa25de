"""What every platform collector shares: the collector contract, the collection context and the job directory.

A platform collector subclasses `TargetCollector[ItsTargetSettings]` and implements `configured_jobs()` and
`collect(ctx, out)`; it may raise anywhere. The runner in `exporter.scrape` turns whatever it raises into counted,
logged errors and `unknown` jobs.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, ClassVar, Generic, Protocol, TypeVar, get_args, get_origin

import pydantic
import structlog

from exporter.http import Deadline, Upstream, UpstreamError
from exporter.metrics import Family, JobRef, Output, snake_case
from exporter.settings import DiscoverySettings, TargetSettings, platform_of
from exporter.sharding import EVERY_JOB, Shard
from exporter.telemetry import Reason, Telemetry
from exporter.workers import Lane

T = TypeVar("T")
R = TypeVar("R")
V = TypeVar("V")
S = TypeVar("S", bound=TargetSettings)
log = structlog.get_logger("exporter.collector")


def classify(exc: BaseException) -> Reason:
    """Map anything a collection raised to the reason it is counted under."""
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
        self._previous: dict[str, Reason] = {}
        self._current: dict[str, Reason] = {}
        self._started: dict[Reason, list[dict[str, object]]] = {}

    def record(self, exc: BaseException, subject: str, **context: str) -> Reason:
        reason = classify(exc)
        self._telemetry.count_error(self._platform, self._target, reason)
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


class Notices:
    """Warnings a target logs once, not every scrape: an unknown vendor value, a truncated answer.

    At most `limit` are remembered; past that the memory starts afresh, so an upstream that invents a new
    value every time costs a line per value, never unbounded memory.
    """

    def __init__(self, platform: str, target: str, limit: int = 1024) -> None:
        self._fields = {"platform": platform, "target": target}
        self._limit = limit
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def once(self, key: str, message: str, **fields: Any) -> None:
        with self._lock:
            if key in self._seen:
                return
            if len(self._seen) >= self._limit:
                self._seen.clear()
            self._seen.add(key)
        log.warning(message, **self._fields, **fields)


class SecretSink(Protocol):
    """Where a target hands the values to mask in logs: one value per slot, so a renewed token replaces the last
    (the replaced ones stay masked until the collection that replaced them has ended: `settle`)."""

    def put(self, slot: str, value: str) -> None: ...

    def settle(self) -> None: ...

    def close(self) -> None: ...


class ScrapeContext:
    """One collection's deadline, its target's lane of upstream calls and its error record."""

    def __init__(self, deadline: Deadline, lane: Lane, errors: ErrorTracker) -> None:
        self.deadline = deadline
        self._lane = lane
        self.errors = errors

    def each_job(self, jobs: Sequence[JobRef], out: Output, read: Callable[[JobRef, Output], None]) -> None:
        """Read every job concurrently into its own buffer; one that fails or overruns becomes `unknown` alone."""
        buffers = [out.child() for _ in jobs]
        results = self._lane.run(range(len(jobs)), lambda i: read(jobs[i], buffers[i]), self._wait())
        for job, buffer, error in zip(jobs, buffers, results, strict=True):
            if error is None:
                out.extend(buffer)
            else:
                self.errors.record(error, f"job {job.job_id}", job_id=job.job_id, job_name=job.job_name)
                out.job_unknown(job)

    def map(self, items: Iterable[T], call: Callable[[T], R]) -> list[R | BaseException]:
        """Run calls concurrently within the budget; results in order, an exception in place of a failure."""
        return self._lane.run(list(items), call, self._wait())

    def _wait(self) -> float:
        return max(0.0, self.deadline.remaining()) + 0.2


class JobDirectory:
    """The jobs a target watches, and everything its collector remembers per job.

    Configured jobs are the baseline. Discovery adds to them in one of two forms: pulled (`refresh`: a listing
    call made at most once per discovery interval, whose answer replaces the last; a failed one keeps it) or
    pushed (`offer`: jobs named by an answer the collector reads anyway, a job list or a job log). A name given
    by the configuration or by discovery wins; a job without one keeps the last name a read gave it, so its
    series keep their labels while its status cannot be read.

    What a collector keeps per job lives in `memory()` maps, and leaves with the job together with its learnt
    name: the directory stays as large as the set of jobs watched, however many come and go over months.

    When processes share the jobs (`owns` says which are this shard's), the directory holds this shard's only:
    every per-job call and every per-job series follows from it.
    """

    def __init__(
        self, configured: Sequence[JobRef], discovery: DiscoverySettings, owns: Callable[[str], bool] = lambda _: True
    ) -> None:
        self._owns = owns
        self._configured = {job.job_id: job for job in configured if owns(job.job_id)}
        self._discovery = discovery
        self._discovered: dict[str, JobRef] = {}
        self._fetched_at: float | None = None
        self._names: dict[str, str] = {}
        self._memories: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def refresh(self, ctx: ScrapeContext, fetch: Callable[[Deadline], list[JobRef]]) -> list[JobRef]:
        """Discover by a listing call (at most once per discovery interval) and return every known job."""
        if not self._discovery.enabled:
            return self.known()
        with self._lock:
            age = None if self._fetched_at is None else time.monotonic() - self._fetched_at
            fresh = age is not None and age < self._discovery.interval_seconds
        if not fresh:
            try:
                found = fetch(ctx.deadline)
            except Exception as exc:  # noqa: BLE001 - any failure keeps the last list, counted once
                ctx.errors.record(exc, "discovery")
            else:
                with self._lock:
                    self._fetched_at = time.monotonic()
                self.offer(found, complete=True)
        return self.known()

    def offer(self, jobs: Iterable[JobRef], *, complete: bool) -> None:
        """Jobs an upstream answer named. `complete`: the answer lists every job there is, so a discovered job
        it does not name is gone; otherwise jobs only join, until `forget`. Without discovery, nothing joins."""
        if not self._discovery.enabled:
            return
        wanted = {
            job.job_id: job
            for job in jobs
            if job.job_id not in self._configured
            and self._owns(job.job_id)
            and self._discovery.wants(job.job_name or job.job_id)
        }
        with self._lock:
            if complete:
                gone = self._discovered.keys() - wanted.keys()
                self._discovered = wanted  # under the names this answer gives them
            else:
                gone = set()
                for job_id, job in wanted.items():
                    self._discovered.setdefault(job_id, job)
            if gone:
                self._prune()

    def forget(self, job_id: str) -> None:
        """A discovered job is gone (the upstream no longer knows it, or its time ran out); configured jobs stay."""
        with self._lock:
            if self._discovered.pop(job_id, None) is not None:
                self._prune()

    def is_configured(self, job_id: str) -> bool:
        return job_id in self._configured

    def is_known(self, job_id: str) -> bool:
        return job_id in self._configured or job_id in self._discovered

    def known(self) -> list[JobRef]:
        """Every job watched now: the configured ones, then the discovered ones, each under its lasting name."""
        with self._lock:
            jobs = [*self._configured.values(), *self._discovered.values()]
            names = self._names
            return [job if job.job_name else JobRef(job.job_id, names.get(job.job_id, "")) for job in jobs]

    def learn(self, job: JobRef, name: str | None) -> JobRef:
        """Remember the name a read gave the job; return the job under its lasting name."""
        if name and self.is_known(job.job_id):
            self._names[job.job_id] = name
        return job if job.job_name else JobRef(job.job_id, name or "")

    def memory(self) -> dict[str, V]:
        """A map from job id to what the collector keeps of that job; entries of jobs that leave are dropped."""
        kept: dict[str, V] = {}
        self._memories.append(kept)
        return kept

    def footprint(self) -> dict[str, int]:
        """How many entries each per-job structure holds (for the churn soak: nothing may grow with time)."""
        with self._lock:
            sizes = {"configured": len(self._configured), "discovered": len(self._discovered)}
            sizes["names"] = len(self._names)
            sizes["memory"] = sum(len(kept) for kept in self._memories)
        return sizes

    def _prune(self) -> None:
        """Drop what is kept of jobs no longer watched; call with the lock held."""
        for kept in (self._names, *self._memories):  # a copy of the keys: other jobs' reads may add their own
            for job_id in [
                job_id for job_id in list(kept) if job_id not in self._configured and job_id not in self._discovered
            ]:
                kept.pop(job_id, None)


class TargetCollector(ABC, Generic[S]):
    """One configured target of one platform.

    A subclass names its settings model as the type argument, `TargetCollector[InformaticaTarget]`: that model
    is what the configuration is validated with, and its `platform` literal is the collector's platform.
    Construct with the target's settings, its `Upstream`, the sink its secrets go to and the shard of the jobs it
    collects; the subclass builds its API client from them in `prepare()`.
    """

    platform: ClassVar[str]
    settings_model: ClassVar[type[TargetSettings]]
    families: ClassVar[tuple[Family, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for base in cls.__dict__.get("__orig_bases__", ()):
            if get_origin(base) is TargetCollector:
                (cls.settings_model,) = get_args(base)
                platform = platform_of(cls.settings_model)
                if platform is not None:
                    cls.platform = platform

    def __init__(self, settings: S, upstream: Upstream, secrets: SecretSink, shard: Shard = EVERY_JOB) -> None:
        self.settings = settings
        self.upstream = upstream
        self.secrets = secrets
        for field, value in settings.secret_items():
            secrets.put(field, value)
        self.notices = Notices(self.platform, settings.name)
        self.jobs = JobDirectory(
            self.configured_jobs(), settings.discovery, lambda job_id: shard.owns(settings.name, job_id)
        )
        self.prepare()

    @abstractmethod
    def prepare(self) -> None:
        """Build the platform's API client (from `settings`, `upstream` and `secrets`) and its per-job memory."""

    @abstractmethod
    def configured_jobs(self) -> list[JobRef]:
        """The jobs the configuration names: watched whether or not discovery finds them."""

    @abstractmethod
    def collect(self, ctx: ScrapeContext, out: Output) -> None:
        """Add this target's samples to `out`; may raise, the runner classifies it."""

    def known_jobs(self) -> list[JobRef]:
        """Jobs from configuration and discovery: they stay visible as `unknown` when unreadable."""
        return self.jobs.known()

    def state(self, vendor_value: str | None, mapping: Mapping[str, str]) -> str:
        """Normalize a vendor state through a platform's table; matching ignores case, spaces and punctuation.

        A value the table does not know is `unknown`, and logged once so the table can be extended.
        """
        if vendor_value is None:
            return "unknown"
        state = mapping.get(snake_case(vendor_value))
        if state is None:
            self.notices.once(
                f"state {vendor_value[:80]}",
                "vendor state not in the mapping; reported as unknown",
                vendor_state=vendor_value[:80],
            )
            return "unknown"
        return state

    def close(self) -> None:
        self.upstream.close()
        self.secrets.close()
