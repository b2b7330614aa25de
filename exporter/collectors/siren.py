"""Siren Federate connector jobs (an Elasticsearch plugin): settings, client, response models and collector.

Per scrape, at most: one `GET _siren/connector/jobs/<type>` (running jobs, only with discovery on), one
`GET _siren/connector/jobs/_search?type=<type>&start_time_from=<now - look-back, ms>` (the job log), and one
`GET _siren/connector/jobs/<type>/<id>` per configured job, plus one per discovered job that neither of the
first two calls described. Each job is reported from its newest run by `start_time`; on a tie the job
endpoint wins over the running list, which wins over the log. The exporter never calls `_abort` or any other
mutating endpoint. Sample output::

    ingestion_job_state{platform="siren",target="es",job_id="postgres-events",…,state="running"} 1.0
    ingestion_job_vendor_state{…,vendor_state="running"} 1.0
    ingestion_job_records_total{…} 3459.0
    ingestion_job_start_timestamp_seconds{…} 1538731228.589
    ingestion_job_error_messages{…} 0.0
    ingestion_job_aborting{…} 0.0

Running-jobs list. Its answer is not documented; these shapes are accepted (anything else is counted as
`invalid_response` and the configured jobs are still read from the job endpoint):

- a list of entries: `[entry, ...]`, or the same list under `jobs` or under the job type (`{"jobs": [...]}`,
  `{"ingestion": [...]}`), or Elasticsearch hits (`{"hits": {"hits": [...]}}`);
- a map from job id to entry or to a state string: `{"postgres-events": {...}}`, `{"postgres-events": "running"}`;
- one job document on its own (the job endpoint's shape).

An entry is a job document with the status under `status` (`{"_id", "type", "found", "status": {...}}`), a
bare status (`{"id", "state", "count", ...}`), a hit with the status under `_source.<type>`, `_source.status`
or `_source` itself, or a plain job id string (the job endpoint is then asked for the details). An entry
without an id is skipped and counted as `invalid_response`; the good entries are still used.

Decisions:
- A job the job endpoint answers `found: false` for (HTTP 200 or 404) and that no other call describes is
  reported with state `unknown` and vendor state `not_found`, and a warning is logged once: it is configured,
  so it stays visible, but it has never run (or the id is misspelt).
- Discovered jobs (discovery on) are the ids of the running list and of the job log inside the look-back
  window. A discovered job stays reported while its newest run is running or ended inside the window; once
  it leaves both lists the job endpoint is asked for its last run, so a run longer than the window still
  shows its final state once before the job is dropped.
- `job_name` is the configured name, else the job id (Siren jobs have no other name).
- `ingestion_job_last_success_timestamp_seconds` is the end of the newest successful run seen in any answer,
  kept in memory across scrapes (it survives the run leaving the window, not a restart of the exporter).
- Runs are counted (`ingestion_job_runs_total`, see `exporter.collectors.runs`) from the job log: every run it
  lists as over counts once, under its state, a run being named by its `start_time`. The newest run (the job
  endpoint's, else the running list's or the log's) is the current one. A run that left without the log showing
  its end (it started before the look-back window, or the log is off) counts as `unknown`; when the log could
  not be read, that waits for the next read.
- The job log is read in one request; Elasticsearch rejects URL parameters it does not know, so no page size
  is sent. When `hits.total` says more runs exist than were returned, a warning is logged once: shorten
  `search_lookback_seconds`.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal
from urllib.parse import quote

import structlog
from pydantic import Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from exporter.collectors.base import ScrapeContext, SecretSink, TargetCollector
from exporter.collectors.runs import RunLedger, RunView
from exporter.http import Deadline, Upstream, UpstreamError
from exporter.metrics import JOB_END, JOB_LABELS, JOB_START, JobRef, Output, counter, gauge, snake_case
from exporter.parsing import EpochSeconds, Id, Lenient, Number
from exporter.settings import HttpURL, StrictModel, TargetSettings, secret_env_name

PLATFORM = "siren"
log = structlog.get_logger("exporter.siren")

# Vendor state (snake_cased) -> normalized state: the five documented values.
STATE_MAP: dict[str, str] = {
    "running": "running",
    "aborting": "stopping",
    "aborted": "stopped",
    "error": "failed",
    "successful": "succeeded",
}
NOT_FOUND = "not_found"

RECORDS = counter("job_records_total", "Records processed by the job's current or last run.", JOB_LABELS)
ERROR_MESSAGES = gauge(
    "job_error_messages",
    "Error messages reported by the job's current or last run; the texts stay upstream, never in labels.",
    JOB_LABELS,
)
ABORTING = gauge(
    "job_aborting",
    "1 when the job's current or last run carries the upstream's aborting flag (an abort was requested), else 0.",
    JOB_LABELS,
)
LAST_SUCCESS = gauge(
    "job_last_success_timestamp_seconds",
    "When the job's newest successful run seen by the exporter ended, in seconds since the epoch.",
    JOB_LABELS,
)


class SirenJobRef(StrictModel):
    id: str = Field(min_length=1)
    name: str = ""


class SirenTarget(TargetSettings):
    """An Elasticsearch cluster running Siren Federate, how to authenticate, and the connector jobs to watch."""

    secret_fields: ClassVar[tuple[str, ...]] = ("password", "api_key", "token")

    platform: Literal["siren"]
    base_url: HttpURL = Field(description="The Elasticsearch cluster, e.g. https://es.example.com:9200.")
    job_type: str = Field("ingestion", pattern=r"^[a-z][a-z0-9_-]{0,62}$", description="Connector job type.")
    auth: Literal["basic", "api_key", "bearer", "none"] = Field(
        "basic", description="basic (username + password), api_key (ApiKey header), bearer (token), none."
    )
    username: str | None = Field(None, min_length=1, description="User for basic auth.")
    password_file: Path | None = Field(None, description="File holding the basic-auth password.")
    api_key_file: Path | None = Field(
        None, description="File holding the API key: `id:api_key`, or its base64 encoding as Elasticsearch returns it."
    )
    token_file: Path | None = Field(None, description="File holding the bearer token.")
    jobs: list[SirenJobRef | str] = Field(default_factory=list, description="Job ids (or {id, name}) to watch.")
    search_lookback_seconds: float = Field(
        3600.0,
        ge=0,
        le=30 * 86400,
        description="How far back the job log is searched (start_time_from); 0 turns the log search off.",
    )

    @field_validator("jobs")
    @classmethod
    def _unique_jobs(cls, value: list[SirenJobRef | str]) -> list[SirenJobRef | str]:
        counts = Counter(j if isinstance(j, str) else j.id for j in value)
        duplicates = sorted(i for i, count in counts.items() if count > 1)
        if duplicates:
            raise ValueError(f"duplicate job ids {duplicates}")
        return value

    @model_validator(mode="after")
    def _usable(self) -> SirenTarget:
        if not self.jobs and not self.discovery.enabled:
            raise ValueError("jobs: list at least one job id, or enable discovery")
        needed = {"basic": "password", "api_key": "api_key", "bearer": "token"}.get(self.auth)
        if self.auth == "basic" and not self.username:
            raise PydanticCustomError("missing", "username: required with auth basic", {})
        if needed is not None and self.secret(needed) is None:
            raise PydanticCustomError(
                "missing_secret",
                "{field}: required with auth {auth}; set {field}_file or the environment variable {env}",
                {"field": needed, "auth": self.auth, "env": secret_env_name(self.name, needed)},
            )
        if self.auth == "api_key":
            api_key_header(self.secret_value("api_key"))  # fails fast on a value that is neither form
        return self

    def secret_value(self, field: str) -> str:
        secret = self.secret(field)
        return "" if secret is None else secret.get_secret_value()

    def job_refs(self) -> list[JobRef]:
        return [JobRef(j, j) if isinstance(j, str) else JobRef(j.id, j.name or j.id) for j in self.jobs]


def api_key_header(value: str) -> str:
    """The credential of an `ApiKey` header from either form an Elasticsearch user has at hand.

    A value with a ':' is `id:api_key` and is base64-encoded (the base64 alphabet has no ':'). Any other value
    must already be the encoded form, i.e. decode to `id:api_key`, and is sent as given.
    """
    value = value.strip()
    if ":" in value:
        return base64.b64encode(value.encode()).decode("ascii")
    try:
        decoded = base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        decoded = ""
    if ":" not in decoded:
        raise PydanticCustomError(
            "api_key", "api_key: neither `id:api_key` nor the base64 encoding of one (the value is not shown)", {}
        )
    return value


# --- response models -------------------------------------------------------------------------------------


def _messages(value: Any) -> Any:
    """`error` is documented as a list of strings; a single string counts as one message."""
    if isinstance(value, str):
        return [value]
    return value


class JobStatus(Lenient):
    """One run of a job, as the job endpoint, the running list and the job log report it."""

    id: Id | None = None
    is_running: bool | None = None
    is_aborting: bool | None = None
    start_time: EpochSeconds = None
    end_time: EpochSeconds = None
    infos: str | None = None
    error: list[str] | None = None
    state: str | None = None
    count: Number | None = None
    last_id: Id | None = None

    @field_validator("error", mode="before")
    @classmethod
    def _error_list(cls, value: Any) -> Any:
        return _messages(value)


class JobDocument(Lenient):
    """The job endpoint's answer: `{_id, type, found, status}`."""

    doc_id: Id | None = Field(None, alias="_id")
    type: str | None = None
    found: bool | None = None
    status: JobStatus | None = None


class SearchTotal(Lenient):
    value: int = 0
    relation: str = "eq"


class SearchHit(Lenient):
    hit_id: Id | None = Field(None, alias="_id")
    source: dict[str, Any] = Field(default_factory=dict, alias="_source")


class SearchHits(Lenient):
    total: int | SearchTotal | None = None
    hits: list[SearchHit] = []


class SearchResult(Lenient):
    hits: SearchHits = SearchHits()

    def total(self) -> int | None:
        total = self.hits.total
        return total.value if isinstance(total, SearchTotal) else total


@dataclass(frozen=True)
class Run:
    """A job's run from one source; `status` is None when the source only named the job (running)."""

    job_id: str
    status: JobStatus | None
    source: str  # "job", "running" or "log": the tie-break order when two runs started at the same time


@dataclass
class RunningList:
    runs: list[Run]
    skipped: int  # entries that could not be understood


@dataclass
class SearchAnswer:
    runs: list[Run]
    total: int | None  # how many runs the log holds for the query; more than `runs` when it was truncated


SOURCE_RANK = {"log": 0, "running": 1, "job": 2}


def _status_of(entry: Mapping[str, Any], job_type: str) -> Mapping[str, Any] | None:
    """The status object inside one entry, whatever wrapper it came in; None if there is none."""
    if isinstance(entry.get("status"), Mapping):
        inner: Mapping[str, Any] = entry["status"]
        return inner
    source = entry.get("_source")
    if isinstance(source, Mapping):
        for key in (job_type, "status"):
            if isinstance(source.get(key), Mapping):
                nested: Mapping[str, Any] = source[key]
                return nested
        return source
    if any(key in entry for key in ("state", "is_running", "id", "start_time")):
        return entry
    return None


def _entry_run(entry: Any, job_type: str, key: str | None, source: str) -> Run | None:
    """One entry of a list as a Run; None when it cannot be understood."""
    if isinstance(entry, str) and entry:
        if key is None:
            return Run(entry, None, source)  # a bare id: the job endpoint gives the details
        if snake_case(entry) not in STATE_MAP:
            return None  # an envelope field such as "type": "ingestion", not a job
        return Run(key, JobStatus(id=key, state=entry), source)  # id -> state string
    if not isinstance(entry, Mapping):
        return None
    inner = _status_of(entry, job_type)
    if inner is None:
        return None
    status = JobStatus.model_validate(inner)
    doc_id = entry.get("_id") if "_source" not in entry else None  # a log hit's _id names the run, not the job
    job_id = status.id or (str(doc_id) if doc_id else None) or key
    if not job_id:
        return None
    return Run(job_id, status if status.id else status.model_copy(update={"id": job_id}), source)


def parse_running(document: Any, job_type: str) -> RunningList:
    """The running-jobs answer in any of the accepted shapes (see the module docstring)."""
    if isinstance(document, list):
        runs = [_entry_run(entry, job_type, None, "running") for entry in document]
        return RunningList([r for r in runs if r is not None], sum(r is None for r in runs))
    if not isinstance(document, Mapping):
        raise UpstreamError("invalid_response", f"running jobs: expected an object or a list, got {_kind(document)}")
    if isinstance(document.get("hits"), Mapping):
        return parse_running(document["hits"].get("hits", []), job_type)
    for key in ("jobs", job_type):
        if isinstance(document.get(key), list | Mapping):
            return parse_running(document[key], job_type)
    if isinstance(document.get("status"), Mapping) or "found" in document:
        if document.get("found") is False:
            return RunningList([], 0)
        run = _entry_run(document, job_type, None, "running")
        return RunningList([run] if run else [], 0 if run else 1)
    lists = [parse_running(entry, job_type) for entry in document.values() if isinstance(entry, list)]
    if lists:  # an envelope around the list, such as {"count": 1, "running_jobs": [...]}
        return RunningList([run for part in lists for run in part.runs], sum(part.skipped for part in lists))
    runs = [_entry_run(entry, job_type, str(key), "running") for key, entry in document.items()]
    return RunningList([r for r in runs if r is not None], sum(r is None for r in runs))


def _kind(value: Any) -> str:
    return type(value).__name__


# --- client ----------------------------------------------------------------------------------------------


class JobNotFoundError(Exception):
    """The job endpoint knows no run of this job."""


_FOUND_FALSE = re.compile(r'"found"\s*:\s*false')


def _authorization(settings: SirenTarget) -> str | None:
    """The Authorization header value for the configured scheme (None: send none)."""
    if settings.auth == "basic":
        raw = f"{settings.username}:{settings.secret_value('password')}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")
    if settings.auth == "api_key":
        return "ApiKey " + api_key_header(settings.secret_value("api_key"))
    if settings.auth == "bearer":
        return "Bearer " + settings.secret_value("token")
    return None


class SirenClient:
    """The three read calls of the connector job API; the Authorization header goes on every request."""

    def __init__(self, settings: SirenTarget, upstream: Upstream, secrets: SecretSink) -> None:
        self._settings = settings
        self._upstream = upstream
        self._base = f"{settings.base_url}/_siren/connector/jobs"
        authorization = _authorization(settings)
        self._headers = {"Authorization": authorization} if authorization else {}
        if authorization:
            # The encoded header is derived from the secret: mask it in logs as well as the secret itself.
            secrets.put("authorization", authorization.split(" ", 1)[1])

    def _get(self, url: str, endpoint: str, deadline: Deadline, params: Mapping[str, Any] | None = None) -> Any:
        return self._upstream.get_json(url, endpoint=endpoint, deadline=deadline, headers=self._headers, params=params)

    def running(self, deadline: Deadline) -> RunningList:
        document = self._get(f"{self._base}/{self._settings.job_type}", "jobs_running", deadline)
        return parse_running(document, self._settings.job_type)

    def job(self, job_id: str, deadline: Deadline) -> JobStatus:
        """The job's current run, or its last one; JobNotFoundError when the upstream has none."""
        url = f"{self._base}/{self._settings.job_type}/{quote(job_id, safe='')}"
        try:
            document = self._get(url, "job", deadline)
        except UpstreamError as exc:
            if exc.status == 404 and _FOUND_FALSE.search(exc.body):
                raise JobNotFoundError(job_id) from exc
            raise
        parsed = JobDocument.model_validate(document)
        if parsed.found is False:
            raise JobNotFoundError(job_id)
        if parsed.status is None:
            run = _entry_run(document, self._settings.job_type, job_id, "job") if isinstance(document, dict) else None
            if run is None or run.status is None:
                raise UpstreamError("invalid_response", "job document has no status")
            return run.status
        return parsed.status if parsed.status.id else parsed.status.model_copy(update={"id": job_id})

    def search(self, start_time_from_ms: int, deadline: Deadline) -> SearchAnswer:
        """Runs in the job log that started at or after the given time, and the log's total count."""
        params = {"type": self._settings.job_type, "start_time_from": start_time_from_ms}
        document = self._get(f"{self._base}/_search", "jobs_search", deadline, params)
        result = SearchResult.model_validate(document)
        runs: list[Run] = []
        for hit in result.hits.hits:
            run = _entry_run(hit.model_dump(by_alias=True), self._settings.job_type, None, "log")
            if run is not None:
                runs.append(run)
        return SearchAnswer(runs, result.total())


# --- collector -------------------------------------------------------------------------------------------


def newest(runs: list[Run]) -> Run | None:
    """The run that started last; on a tie the job endpoint beats the running list, which beats the log.

    A live answer (job endpoint, running list) without a start time is the current run: it counts as newest.
    """

    def key(run: Run) -> tuple[float, int]:
        start = run.status.start_time if run.status else None
        if start is None:
            start = 0.0 if run.source == "log" else math.inf
        return start, SOURCE_RANK[run.source]

    described = [r for r in runs if r.status is not None]
    return max(described, key=key) if described else None


class SirenCollector(TargetCollector[SirenTarget]):
    """State, processed records, start/end, errors and last success of Siren Federate connector jobs."""

    families = (RECORDS, ERROR_MESSAGES, ABORTING, LAST_SUCCESS)

    def prepare(self) -> None:
        self.client = SirenClient(self.settings, self.upstream, self.secrets)
        self._last_success: dict[str, float] = self.jobs.memory()
        self.ledger = RunLedger(self.jobs)
        self.clock: Callable[[], float] = time.time

    def configured_jobs(self) -> list[JobRef]:
        return self.settings.job_refs()

    def collect(self, ctx: ScrapeContext, out: Output) -> None:
        now = self.clock()
        calls: list[tuple[str, Callable[[], RunningList | SearchAnswer]]] = []
        if self.settings.discovery.enabled:
            calls.append(("running jobs", lambda: self.client.running(ctx.deadline)))
        if self.settings.search_lookback_seconds > 0:
            since_ms = int((now - self.settings.search_lookback_seconds) * 1000)
            calls.append(("job log", lambda: self.client.search(since_ms, ctx.deadline)))
        runs: list[Run] = []
        log_read = False
        for (subject, _call), result in zip(calls, ctx.map(calls, lambda item: item[1]()), strict=True):
            if isinstance(result, BaseException):
                ctx.errors.record(result, subject)
            else:
                runs.extend(self._accept(ctx, result))
                log_read = log_read or isinstance(result, SearchAnswer)
        by_job: dict[str, list[Run]] = {}
        for run in runs:
            by_job.setdefault(run.job_id, []).append(run)
        self.jobs.offer([JobRef(job_id, job_id) for job_id in by_job], complete=False)
        for run in runs:
            self._note_success(run)
        ctx.each_job(
            self.known_jobs(),
            out,
            lambda job, buf: self._read(ctx, job, by_job.get(job.job_id, []), now, buf, log_read),
        )
        self.ledger.emit(out, self.known_jobs())

    def _accept(self, ctx: ScrapeContext, result: RunningList | SearchAnswer) -> list[Run]:
        """Runs from the running list or the job log; partial answers are used and counted as invalid."""
        if isinstance(result, RunningList):
            if result.skipped:
                ctx.errors.record(
                    UpstreamError("invalid_response", f"{result.skipped} running-job entries without a job id"),
                    "running jobs",
                )
            return result.runs
        if result.total is not None and result.total > len(result.runs):
            self.notices.once(
                "search-truncated",
                "job log holds more runs than it returned; shorten search_lookback_seconds",
                total=result.total,
                returned=len(result.runs),
            )
        return result.runs

    def _read(self, ctx: ScrapeContext, job: JobRef, runs: list[Run], now: float, out: Output, log_read: bool) -> None:
        listed = bool(runs)  # named by the running list or the job log in this collection
        # Configured jobs always ask the job endpoint; others only when no answer described their run.
        if self.jobs.is_configured(job.job_id) or newest(runs) is None or any(r.status is None for r in runs):
            try:
                status = self.client.job(job.job_id, ctx.deadline)
                runs = [*runs, Run(job.job_id, status, "job")]
                self._note_success(runs[-1])
            except JobNotFoundError:
                pass
        chosen = newest(runs)
        if chosen is None or chosen.status is None:
            self._not_found(job, out)
            return
        status = chosen.status
        state = self.state(status.state, STATE_MAP)
        out.job_state(job, state, status.state or "none")
        out.add_optional(RECORDS, status.count, job)
        out.add_optional(JOB_START, status.start_time, job)
        out.add_optional(JOB_END, status.end_time, job)
        out.add(ERROR_MESSAGES, len(status.error or []), job)
        out.add(ABORTING, 1.0 if status.is_aborting or state == "stopping" else 0.0, job)
        out.add_optional(LAST_SUCCESS, self._last_success.get(job.job_id), job)
        self._count_runs(job, status, runs, log_read)
        if not listed:
            self._expire(job, status, now)

    def _count_runs(self, job: JobRef, current: JobStatus, runs: list[Run], log_read: bool) -> None:
        """The current run from the newest answer; the ended ones from the job log, when it was read."""
        view = self._view(current)
        if view is None:
            return
        logged = self.settings.search_lookback_seconds > 0
        self.ledger.observe(job.job_id, view, history=logged)
        if log_read:
            history = [self._view(run.status) for run in runs if run.source == "log" and run.status is not None]
            self.ledger.settle(job.job_id, [v for v in history if v is not None], view.key)

    def _view(self, status: JobStatus) -> RunView | None:
        """A run as the ledger counts it, named by its start time; None without one."""
        if status.start_time is None:
            return None
        ended = not status.is_running if status.is_running is not None else status.end_time is not None
        state = self.state(status.state, STATE_MAP) if status.state else None
        return RunView(f"{status.start_time:.3f}", status.start_time, state, ended, status.end_time)

    def _not_found(self, job: JobRef, out: Output) -> None:
        if self.jobs.is_configured(job.job_id):
            self.notices.once(
                f"not-found {job.job_id}", "the upstream knows no run of this configured job", job_id=job.job_id
            )
            out.job_state(job, "unknown", NOT_FOUND)
            return
        self.jobs.forget(job.job_id)  # gone upstream: stop reporting it

    def _expire(self, job: JobRef, status: JobStatus, now: float) -> None:
        """Drop a discovered job that neither list named any more once its newest run ended before the window."""
        if status.is_running or status.end_time is None:
            return
        window = max(self.settings.search_lookback_seconds, self.settings.discovery.interval_seconds)
        if status.end_time < now - window:
            self.jobs.forget(job.job_id)

    def _note_success(self, run: Run) -> None:
        """Remember the end of the job's newest successful run, for the jobs watched only."""
        status = run.status
        if status is None or status.end_time is None or not self.jobs.is_known(run.job_id):
            return
        if STATE_MAP.get(snake_case(status.state or "")) != "succeeded":
            return
        if status.end_time > self._last_success.get(run.job_id, 0.0):
            self._last_success[run.job_id] = status.end_time
