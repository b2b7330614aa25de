"""Huawei DataArts Studio (DataArts Factory, DLF) real-time jobs: settings, client, response models, collector.

Per job and scrape: one status call, `GET /v1/{project_id}/jobs/{job_name}/status` (with the optional
`workspace` header). Jobs are configured by name or discovered with `GET /v1/{project_id}/jobs?jobType=
REAL_TIME`, paged by record offset until an empty page, and refreshed every discovery interval. A job the
API no longer knows (400 DLF.0100) is `unknown` on its own. Runs are counted (`ingestion_job_runs_total`, see
`exporter.collectors.runs`) from the same status call: a run is named by the job's start time and its nodes'
`jobInstanceId`s, so a restart shows as a new run. DLF keeps no history of real-time runs: a run that ended and
was replaced between two scrapes counts as `unknown` (as `stopped` when it was last seen stopping). Sample
output::

    ingestion_job_state{platform="dataarts",target="dlf",job_id="job_sms",job_name="job_sms",state="running"} 1.0
    ingestion_job_vendor_state{…,vendor_state="normal"} 1.0
    ingestion_node_state{…,node="MRS_Flink_Job_8635",state="starting"} 1.0
    ingestion_node_read_records_total{…,node="MRS_Flink_Job_8635"} 0.0
"""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, Field, model_validator

from exporter.collectors.base import ScrapeContext, SecretSink, TargetCollector
from exporter.collectors.huawei_auth import HuaweiClient, HuaweiTarget, path_url
from exporter.collectors.runs import RunLedger, RunView
from exporter.http import Deadline, Upstream, UpstreamError
from exporter.metrics import (
    JOB_END,
    JOB_LAST_UPDATE,
    JOB_START,
    NODE_LABELS,
    NODE_STATE,
    NODE_VENDOR_STATE,
    JobRef,
    Output,
    counter,
    gauge,
    node_info_family,
    snake_case,
)
from exporter.parsing import EpochSeconds, Id, Lenient, Number
from exporter.settings import HttpURL

PLATFORM = "dataarts"
MAX_PAGES = 1000

# Job and node `status` (snake_cased) -> normalized state. The five documented values, plus the list
# call's SCHEDULING and PAUSED seen on other job types.
STATE_MAP: dict[str, str] = {
    "starting": "starting",
    "normal": "running",
    "scheduling": "running",
    "exception": "failed",
    "stopping": "stopping",
    "stopped": "stopped",
    "paused": "stopped",
}
# A node without `status` (as in the seed) is described by its last instance: `LastInstanceStatus`
# takes the instance vocabulary of DLF (waiting, running, success, fail, running-exception, pause,
# manual-stop). The node's state is then the state of that instance.
INSTANCE_STATE_MAP: dict[str, str] = {
    "waiting": "starting",
    "running": "running",
    "success": "succeeded",
    "fail": "failed",
    "failed": "failed",
    "running_exception": "failed",
    "pause": "stopped",
    "manual_stop": "stopped",
}

NODE_INFO = node_info_family("node_type")
NODE_READ_RECORDS = counter("node_read_records_total", "Records the node has read (got).", NODE_LABELS)
NODE_WRITTEN_RECORDS = counter("node_written_records_total", "Records the node has written (put).", NODE_LABELS)
NODE_READ_BYTES = counter("node_read_bytes_total", "Bytes the node has read (got).", NODE_LABELS)
NODE_WRITTEN_BYTES = counter("node_written_bytes_total", "Bytes the node has written (put).", NODE_LABELS)
NODE_BUFFERED = gauge("node_buffered_records", "Records waiting in the node's buffer.", NODE_LABELS)
NODE_SPEED = gauge(
    "node_records_per_second", "The node's current processing speed, in records per second.", NODE_LABELS
)


class DataArtsTarget(HuaweiTarget):
    """A DataArts Studio instance: the DLF endpoint, the workspace and the real-time jobs to watch."""

    platform: Literal["dataarts"]
    endpoint: HttpURL = Field(description="DLF endpoint, e.g. https://dayu-dlf.cn-north-4.myhuaweicloud.com.")
    workspace: str | None = Field(None, min_length=1, description="Workspace id; the default workspace when unset.")
    jobs: list[str] = Field(default_factory=list, description="Names of the real-time jobs to watch.")
    page_size: int = Field(100, ge=1, le=1000, description="Jobs per page of the list call.")

    @model_validator(mode="after")
    def _something_to_watch(self) -> DataArtsTarget:
        if not self.jobs and not self.discovery.enabled:
            raise ValueError("jobs: list at least one job name, or enable discovery")
        if any(not name.strip() for name in self.jobs):
            raise ValueError("jobs: job names must not be empty")
        return self


# --- response models -------------------------------------------------------------------------------------


class DlfNode(Lenient):
    name: str | None = None
    status: str | None = None
    last_instance_status: str | None = Field(
        None, validation_alias=AliasChoices("LastInstanceStatus", "lastInstanceStatus")
    )
    node_type: str | None = Field(None, validation_alias=AliasChoices("type", "nodeType"))
    jobInstanceId: Id | None = None
    bufferRecords: Number | None = None
    speed: Number | None = None
    totalGetRecords: Number | None = None
    totalPutRecords: Number | None = None
    totalGetBytes: Number | None = None
    totalPutBytes: Number | None = None


class DlfJobStatus(Lenient):
    name: str | None = None
    status: str | None = None
    nodes: list[DlfNode] | None = None
    start_time: EpochSeconds = Field(None, validation_alias=AliasChoices("startTime", "starttime"))
    end_time: EpochSeconds = Field(None, validation_alias=AliasChoices("endTime", "endtime"))
    last_update_time: EpochSeconds = Field(None, validation_alias=AliasChoices("lastUpdateTime", "lastupdatetime"))


class DlfListedJob(Lenient):
    name: str | None = None
    jobType: str | None = None


class DlfJobPage(Lenient):
    total: int | None = None
    jobs: list[DlfListedJob] = []


# --- client ----------------------------------------------------------------------------------------------


class DataArtsClient:
    """The DLF calls the exporter makes: the status of one job, and the real-time job list."""

    def __init__(self, settings: DataArtsTarget, upstream: Upstream, secrets: SecretSink) -> None:
        self._settings = settings
        self._base = f"{settings.endpoint}/v1/{settings.project_id}"
        self._headers = {"workspace": settings.workspace} if settings.workspace else {}
        self.auth = HuaweiClient(settings, upstream, secrets)

    def status(self, job_name: str, deadline: Deadline) -> DlfJobStatus:
        url = path_url(self._base, "jobs", job_name, "status")
        status = DlfJobStatus.model_validate(
            self.auth.call("GET", url, endpoint="job_status", deadline=deadline, headers=self._headers)
        )
        if status.status is None:
            raise UpstreamError("invalid_response", "status document has no status")
        return status

    def discover(self, deadline: Deadline) -> list[JobRef]:
        """Every real-time job, page by page until an empty page or one with nothing new (an API that ignores
        `offset` would otherwise be asked for the same page MAX_PAGES times); a job listed twice counts once."""
        found: dict[str, JobRef] = {}
        seen: set[str] = set()  # every listed name, real-time or not, to tell a new page from a repeated one
        offset = 0
        for _ in range(MAX_PAGES):
            query = (("jobType", "REAL_TIME"), ("limit", str(self._settings.page_size)), ("offset", str(offset)))
            page = DlfJobPage.model_validate(
                self.auth.call(
                    "GET",
                    path_url(self._base, "jobs", query=query),
                    endpoint="list_jobs",
                    deadline=deadline,
                    headers=self._headers,
                )
            )
            fresh = [job for job in page.jobs if job.name and job.name not in seen]
            if not fresh:
                break
            for job in fresh:
                seen.add(str(job.name))
                if job.jobType in (None, "REAL_TIME"):
                    found.setdefault(str(job.name), JobRef(str(job.name), str(job.name)))
            offset += len(page.jobs)
        return list(found.values())


# --- collector -------------------------------------------------------------------------------------------


class DataArtsCollector(TargetCollector[DataArtsTarget]):
    """State, times and per-node state, type and counters of each watched real-time job."""

    families = (
        NODE_INFO,
        NODE_READ_RECORDS,
        NODE_WRITTEN_RECORDS,
        NODE_READ_BYTES,
        NODE_WRITTEN_BYTES,
        NODE_BUFFERED,
        NODE_SPEED,
    )

    def prepare(self) -> None:
        self.client = DataArtsClient(self.settings, self.upstream, self.secrets)
        self.ledger = RunLedger(self.jobs)

    def configured_jobs(self) -> list[JobRef]:
        return [JobRef(name, name) for name in self.settings.jobs]

    def collect(self, ctx: ScrapeContext, out: Output) -> None:
        self.client.auth.ready(ctx.deadline)
        ctx.each_job(self.jobs.refresh(ctx, self.client.discover), out, lambda job, buf: self._read(ctx, job, buf))
        self.ledger.emit(out, self.jobs.known())

    def _read(self, ctx: ScrapeContext, job: JobRef, out: Output) -> None:
        status = self.client.status(job.job_id, ctx.deadline)
        state = self.state(status.status, STATE_MAP)
        out.job_state(job, state, status.status or "none")
        out.add_optional(JOB_START, status.start_time, job)
        out.add_optional(JOB_END, status.end_time, job)
        out.add_optional(JOB_LAST_UPDATE, status.last_update_time, job)
        for index, node in enumerate(status.nodes or []):
            self._node(node, node.name or f"node-{index}", job, out)
        key = _run_key(status)
        if key is not None:
            self.ledger.observe(
                job.job_id, RunView(key, status.start_time, state, ended_at=status.end_time), history=False
            )

    def _node(self, node: DlfNode, name: str, job: JobRef, out: Output) -> None:
        if node.status is not None:
            state = self.state(node.status, STATE_MAP)
        else:
            state = self.state(node.last_instance_status, INSTANCE_STATE_MAP)
        out.state_set(NODE_STATE, state, job, node=name)
        vendor = node.status if node.status is not None else node.last_instance_status
        if vendor is not None:
            out.add(NODE_VENDOR_STATE, 1, job, node=name, vendor_state=snake_case(vendor))
        if node.node_type:
            out.add(NODE_INFO, 1, job, node=name, node_type=node.node_type)
        out.add_optional(NODE_READ_RECORDS, node.totalGetRecords, job, node=name)
        out.add_optional(NODE_WRITTEN_RECORDS, node.totalPutRecords, job, node=name)
        out.add_optional(NODE_READ_BYTES, node.totalGetBytes, job, node=name)
        out.add_optional(NODE_WRITTEN_BYTES, node.totalPutBytes, job, node=name)
        out.add_optional(NODE_BUFFERED, node.bufferRecords, job, node=name)
        out.add_optional(NODE_SPEED, node.speed, job, node=name)


def _run_key(status: DlfJobStatus) -> str | None:
    """What names the job's current run: its start time and its nodes' instance ids (either may be missing)."""
    instances = sorted({node.jobInstanceId for node in status.nodes or [] if node.jobInstanceId})
    parts = [f"{status.start_time:.3f}" if status.start_time is not None else "", *instances]
    return "/".join(parts) if any(parts) else None
