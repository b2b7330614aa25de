"""Huawei Cloud Stream (CS) and its successor DLI Flink jobs: settings, client, response models, collector.

Per scrape: the job list, every page (CS: cursor paging; DLI: offset paging), which gives each job's name
and status, since the metrics call carries none; then `POST .../jobs/metrics` once per `batch_size` job
ids, the batches concurrently. `api_flavour` picks the endpoints: `cs` (`/v1.0/{project_id}/jobs`) or `dli`
(`/v1.0/{project_id}/streaming/jobs`). Runs are counted (`ingestion_job_runs_total`, see
`exporter.collectors.runs`) from the same list: a run is named by the job's `start_time`, which a new
submission changes. The list keeps no history: a run that ended and was replaced between two scrapes counts as
`unknown` (as `stopped` when it was last seen canceling). Sample output::

    ingestion_job_state{platform="cloudstream",target="cs",job_id="298765",job_name="clicks",state="running"} 1.0
    ingestion_stream_records_total{…,stream="Source: KafKa_6070_KAFKA_SOURCE",role="source"} 1200.0
    ingestion_stream_corrupted_records_total{…,stream="Source: KafKa_6070_KAFKA_SOURCE",role="source"} 3.0
    ingestion_job_read_records_per_second{…} 100.0
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal, TypeVar

from pydantic import Field, model_validator

from exporter.collectors.base import ScrapeContext, SecretSink, TargetCollector
from exporter.collectors.huawei_auth import HuaweiClient, HuaweiTarget, path_url
from exporter.collectors.runs import RunLedger, RunView
from exporter.http import Deadline, Upstream, UpstreamError
from exporter.metrics import (
    JOB_LABELS,
    JOB_START,
    JobRef,
    Output,
    counter,
    gauge,
    job_info_family,
)
from exporter.parsing import EpochSeconds, Id, Lenient, Number
from exporter.settings import HttpURL, StrictModel

PLATFORM = "cloudstream"
MAX_PAGES = 1000

# CS and DLI Flink job statuses -> normalized state. An error state is `failed` whether or not the job
# still runs; an arrears stop was not asked for, so it is `failed` too; a savepoint is taken while running.
STATE_MAP: dict[str, str] = {
    "job_init": "starting",
    "job_submitting": "starting",
    "job_downloading": "starting",
    "job_arrearage_recovering": "starting",
    "job_running": "running",
    "job_savepointing": "running",
    "job_submit_fail": "failed",
    "job_running_exception": "failed",
    "job_cancel_fail": "failed",
    "job_arrearage_stopped": "failed",
    "job_canceling": "stopping",
    "job_cancel_success": "stopped",
    "job_idle": "stopped",
    "job_finish": "succeeded",
}

JOB_INFO = job_info_family("job_type")
STREAM_LABELS = (*JOB_LABELS, "stream", "role")
STREAM_RECORDS = counter(
    "stream_records_total", "Records that passed through a source or sink stream of the job.", STREAM_LABELS
)
STREAM_CORRUPTED = counter(
    "stream_corrupted_records_total",
    "Dirty (corrupted) records a source or sink stream of the job met.",
    STREAM_LABELS,
)
READ_RATE = gauge(
    "job_read_records_per_second", "Records the job reads per second, as the platform reports it.", JOB_LABELS
)
WRITE_RATE = gauge(
    "job_write_records_per_second", "Records the job writes per second, as the platform reports it.", JOB_LABELS
)


class StreamJobRef(StrictModel):
    id: int = Field(ge=0)
    name: str = ""


class CloudStreamTarget(HuaweiTarget):
    """A Cloud Stream (or DLI) project: the endpoint, the API flavour and the job ids to watch."""

    platform: Literal["cloudstream"]
    endpoint: HttpURL = Field(description="CS or DLI endpoint, e.g. https://cs.cn-north-4.myhuaweicloud.com.")
    api_flavour: Literal["cs", "dli"] = Field("cs", description="cs: Cloud Stream endpoints; dli: DLI Flink jobs.")
    jobs: list[int | StreamJobRef] = Field(default_factory=list, description="Job ids (or {id, name}) to watch.")
    batch_size: int = Field(50, ge=1, le=1000, description="Job ids per metrics call.")
    page_size: int = Field(100, ge=1, le=100, description="Jobs per page of the list call.")

    @model_validator(mode="after")
    def _something_to_watch(self) -> CloudStreamTarget:
        if not self.jobs and not self.discovery.enabled:
            raise ValueError("jobs: list at least one job id, or enable discovery")
        return self

    def job_refs(self) -> list[JobRef]:
        return [JobRef(str(j), "") if isinstance(j, int) else JobRef(str(j.id), j.name) for j in self.jobs]


# --- response models -------------------------------------------------------------------------------------


class ListedJob(Lenient):
    job_id: Id | None = None
    name: str | None = None
    status: str | None = None
    job_type: str | None = None
    start_time: EpochSeconds = None


class CsListPayload(Lenient):
    total: int | None = None
    jobs: list[ListedJob] = []


class DliJobList(Lenient):
    total_count: int | None = None
    jobs: list[ListedJob] = []


class JobListAnswer(Lenient):
    is_success: bool | None = None
    message: str | None = None
    payload: CsListPayload | None = None  # cs
    job_list: DliJobList | None = None  # dli

    def page(self) -> tuple[list[ListedJob], int | None]:
        if self.job_list is not None:
            return self.job_list.jobs, self.job_list.total_count
        if self.payload is not None:
            return self.payload.jobs, self.payload.total
        raise UpstreamError("invalid_response", "the job list answer holds no job list (payload or job_list)")


class StreamCount(Lenient):
    name: str | None = None
    records: Number | None = None
    corrupted_records: Number | None = None


class StreamMetrics(Lenient):
    sources: list[StreamCount] = []
    sinks: list[StreamCount] = []
    total_read_rate: Number | None = None
    total_write_rate: Number | None = None


class JobMetrics(Lenient):
    job_id: Id
    metrics: StreamMetrics | None = None


class MetricsJobs(Lenient):
    jobs: list[JobMetrics] = []


class MetricsAnswer(Lenient):
    is_success: bool | None = None
    message: str | None = None
    payload: MetricsJobs | None = None  # cs
    metrics: MetricsJobs | None = None  # dli

    def jobs(self) -> list[JobMetrics]:
        found = self.payload or self.metrics
        return found.jobs if found is not None else []


_Answer = TypeVar("_Answer", JobListAnswer, MetricsAnswer)


@dataclass(frozen=True)
class JobList:
    """The jobs the list call gave; `complete` when they are every job of the project."""

    jobs: list[ListedJob]
    complete: bool


# --- client ----------------------------------------------------------------------------------------------


class CloudStreamClient:
    """The job list and the batched metrics call, in the CS or the DLI flavour."""

    def __init__(self, settings: CloudStreamTarget, upstream: Upstream, secrets: SecretSink) -> None:
        self._settings = settings
        root = f"{settings.endpoint}/v1.0/{settings.project_id}"
        self._jobs_url = f"{root}/streaming/jobs" if settings.api_flavour == "dli" else f"{root}/jobs"
        self.auth = HuaweiClient(settings, upstream, secrets)

    def list_jobs(self, deadline: Deadline) -> JobList:
        """Every job, page by page, until an empty or short page, the announced total, or a page with nothing new.

        The list is complete when it reached the announced total (or, without one, a page shorter than asked
        for); a list that stopped early because pages repeated is used, but not taken as all there is.
        """
        found: dict[str, ListedJob] = {}
        limit = self._settings.page_size
        cursor: str | None = None
        complete = False
        for _ in range(MAX_PAGES):
            if self._settings.api_flavour == "dli":
                query = [("limit", str(limit)), ("offset", str(len(found)))]
            else:
                query = [("limit", str(limit)), ("order", "desc")]
                if cursor is not None:
                    query += [("cursor", cursor), ("next", "true")]
            answer = _checked(
                JobListAnswer.model_validate(
                    self.auth.call(
                        "GET",
                        path_url(self._jobs_url, query=query),
                        endpoint="list_jobs",
                        deadline=deadline,
                    )
                )
            )
            jobs, total = answer.page()
            fresh = {job.job_id: job for job in jobs if job.job_id is not None and job.job_id not in found}
            found.update(fresh)
            complete = len(found) >= total if total is not None else len(jobs) < limit
            if not fresh or complete:
                break
            cursor = next(job.job_id for job in reversed(jobs) if job.job_id is not None)
        return JobList(list(found.values()), complete)

    def metrics(self, job_ids: Sequence[int], deadline: Deadline) -> list[JobMetrics]:
        answer = _checked(
            MetricsAnswer.model_validate(
                self.auth.call(
                    "POST",
                    f"{self._jobs_url}/metrics",
                    endpoint="job_metrics",
                    deadline=deadline,
                    json_body={"job_ids": list(job_ids)},
                )
            )
        )
        return answer.jobs()


def _checked(answer: _Answer) -> _Answer:
    """DLI answers HTTP 200 with `is_success: false` when it refuses a call."""
    if answer.is_success is False:
        raise UpstreamError("http_status", f"the API reported a failure: {answer.message or 'no message'}")
    return answer


def _batches(ids: Sequence[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(ids), size):
        yield list(ids[start : start + size])


# --- collector -------------------------------------------------------------------------------------------


class CloudStreamCollector(TargetCollector[CloudStreamTarget]):
    """State from the job list; per source and sink record counters and read/write rates from metrics."""

    families = (JOB_INFO, STREAM_RECORDS, STREAM_CORRUPTED, READ_RATE, WRITE_RATE)

    def prepare(self) -> None:
        self.client = CloudStreamClient(self.settings, self.upstream, self.secrets)
        self.ledger = RunLedger(self.jobs)

    def configured_jobs(self) -> list[JobRef]:
        return self.settings.job_refs()

    def collect(self, ctx: ScrapeContext, out: Output) -> None:
        """The job list is read every scrape (it carries the states), so discovery follows it at once: a job it
        lists joins, and a discovered job a complete list no longer names leaves."""
        self.client.auth.ready(ctx.deadline)
        listed: dict[str, ListedJob] | None = None
        try:
            answer = self.client.list_jobs(ctx.deadline)
        except Exception as exc:  # noqa: BLE001 - without the list, states are unknown; metrics may still come
            ctx.errors.record(exc, "job list")
        else:
            listed = {job.job_id: job for job in answer.jobs if job.job_id is not None}
            self.jobs.offer(
                [JobRef(job_id, job.name or "") for job_id, job in listed.items()], complete=answer.complete
            )
        jobs = [
            self.jobs.learn(job, listed[job.job_id].name if listed and job.job_id in listed else None)
            for job in self.jobs.known()
        ]
        if listed is not None:
            for job in jobs:
                self._state(ctx, job, listed.get(job.job_id), out)
        self._metrics(ctx, jobs, out)
        self.ledger.emit(out, jobs)

    def _state(self, ctx: ScrapeContext, job: JobRef, listed: ListedJob | None, out: Output) -> None:
        if listed is None:
            ctx.errors.record(
                LookupError(f"job {job.job_id} is not in the job list"),
                f"job {job.job_id}",
                job_id=job.job_id,
                job_name=job.job_name,
            )
            return
        if listed.status is None:
            ctx.errors.record(
                UpstreamError("invalid_response", f"job {job.job_id} is listed without a status"),
                f"job {job.job_id}",
                job_id=job.job_id,
                job_name=job.job_name,
            )
            return
        state = self.state(listed.status, STATE_MAP)
        out.job_state(job, state, listed.status or "none")
        out.add(JOB_INFO, 1, job, run_id="", job_type=listed.job_type or "")
        out.add_optional(JOB_START, listed.start_time, job)
        if listed.start_time is not None:
            run = RunView(f"{listed.start_time:.3f}", listed.start_time, state)
            self.ledger.observe(job.job_id, run, history=False)

    def _metrics(self, ctx: ScrapeContext, jobs: list[JobRef], out: Output) -> None:
        by_id = {job.job_id: job for job in jobs if job.job_id.isdigit()}
        batches = list(_batches([int(job_id) for job_id in by_id], self.settings.batch_size))
        results = ctx.map(batches, lambda batch: self.client.metrics(batch, ctx.deadline))
        for batch, result in zip(batches, results, strict=True):
            if isinstance(result, BaseException):
                ctx.errors.record(result, f"metrics {batch[0]}..{batch[-1]}")
                continue
            for entry in result:
                job = by_id.get(entry.job_id)
                if job is not None and entry.metrics is not None:
                    _emit(entry.metrics, job, out)


def _emit(metrics: StreamMetrics, job: JobRef, out: Output) -> None:
    for role, streams in (("source", metrics.sources), ("sink", metrics.sinks)):
        seen: dict[str, int] = {}
        for index, stream in enumerate(streams):
            name = stream.name or f"{role}-{index}"
            seen[name] = seen.get(name, 0) + 1
            if seen[name] > 1:
                name = f"{name} ({seen[name]})"  # two streams of one name would be one duplicate series
            out.add_optional(STREAM_RECORDS, stream.records, job, stream=name, role=role)
            out.add_optional(STREAM_CORRUPTED, stream.corrupted_records, job, stream=name, role=role)
    out.add_optional(READ_RATE, metrics.total_read_rate, job)
    out.add_optional(WRITE_RATE, metrics.total_write_rate, job)
