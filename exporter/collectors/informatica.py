"""Informatica Mass Ingestion Streaming (`sisvc`): settings, client, response models and collector.

Per dataflow and scrape: one status call, one statistics call, and the jobs resource and the history resource
only when the runId changes (the jobs resource is immutable for a run; the history then tells how the runs
since the last change ended, see `exporter.collectors.runs`). Sample output::

    ingestion_job_state{platform="informatica",target="infa",job_id="1948…",job_name="testmonitor",state="running"} 1.0
    ingestion_job_vendor_state{…,vendor_state="running"} 1.0
    ingestion_node_state{…,node="testmonitor_source",state="running"} 1.0
    ingestion_job_deploy_duration_seconds{…} 1543.0
    ingestion_job_runs_total{…,outcome="failed"} 1.0

The history resource's entries are documented as `dataflowId, dataflowName, deployedAt, undeployedAt,
dataflowVersion, runId, ...`; how a run ended is read from its `status` (the status resource's vocabulary), a
field the vendor's page does not list: a run that was undeployed without one counts as `unknown`.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, Field, TypeAdapter, model_validator

from exporter.collectors.base import ScrapeContext, SecretSink, TargetCollector
from exporter.collectors.credentials import LoginCache
from exporter.collectors.runs import RunLedger, RunView
from exporter.http import Deadline, Upstream, UpstreamError, decode_json, error_fields
from exporter.metrics import (
    JOB_END,
    JOB_LABELS,
    JOB_LAST_UPDATE,
    JOB_START,
    NODE_STATE,
    NODE_VENDOR_STATE,
    JobRef,
    Output,
    counter,
    gauge,
    job_info_family,
    node_info_family,
    snake_case,
)
from exporter.parsing import EpochSeconds, Id, JsonInString, Lenient, Number
from exporter.settings import HttpURL, StrictModel, TargetSettings

PLATFORM = "informatica"

# Vendor status (snake_cased) -> normalized state. The documented six plus the plain `Running` of the seed
# example and the obvious neighbours; anything else is `unknown` and keeps its vendor_state.
STATE_MAP: dict[str, str] = {
    "deploying": "starting",
    "up_and_running": "running",
    "running": "running",
    "running_with_warning": "degraded",
    "warning": "degraded",
    "running_with_error": "failed",
    "error": "failed",
    "failed": "failed",
    "deploy_failed": "failed",
    "stopping": "stopping",
    "undeploying": "stopping",
    "stopped": "stopped",
    "undeployed": "stopped",
}
# Vendor statuses (snake_cased) of a dataflow whose run is over: only then is the statistics' stopTime its end.
ENDED = frozenset({"stopped", "undeployed", "failed", "deploy_failed"})

JOB_INFO = job_info_family("started_by", "runtime_env", "deployed_version")
DEPLOY_START = gauge(
    "job_deploy_start_timestamp_seconds", "When the deployment of the job's current run started.", JOB_LABELS
)
DEPLOY_END = gauge(
    "job_deploy_end_timestamp_seconds", "When the deployment of the job's current run ended.", JOB_LABELS
)
DEPLOY_DURATION = gauge(
    "job_deploy_duration_seconds", "How long the deployment of the job's current run took, in seconds.", JOB_LABELS
)
NODE_INFO = node_info_family("node_id", "role", "connection_id")
EDGE_INFO = gauge(
    "job_edge_info",
    "A data path between two nodes of the job's topology; always 1.",
    (*JOB_LABELS, "from_node", "to_node"),
)
READ_RECORDS = counter("job_read_records_total", "Records (messages) the job's current run read.", JOB_LABELS)
WRITTEN_RECORDS = counter("job_written_records_total", "Records (messages) the job's current run wrote.", JOB_LABELS)
READ_BYTES = counter("job_read_bytes_total", "Bytes the job's current run read.", JOB_LABELS)
WRITTEN_BYTES = counter("job_written_bytes_total", "Bytes the job's current run wrote.", JOB_LABELS)


class DataflowRef(StrictModel):
    id: str = Field(min_length=1)
    name: str = ""


class InformaticaTarget(TargetSettings):
    """A Mass Ingestion Streaming org: login, the sisvc server and the dataflows to watch."""

    secret_fields: ClassVar[tuple[str, ...]] = ("password",)
    required_secrets: ClassVar[tuple[str, ...]] = ("password",)

    platform: Literal["informatica"]
    login_url: HttpURL = Field(description="The POD login host, e.g. https://dm-us.informaticacloud.com.")
    login_api: Literal["v3", "v2"] = Field("v3", description="Which login API to use.")
    username: str = Field(min_length=1)
    password_file: Path | None = Field(None, description="File holding the password.")
    server_url: HttpURL | None = Field(
        None, description="sisvc base URL; derived from the login's server URL (the -ing rule) when unset."
    )
    dataflows: list[DataflowRef | str] = Field(
        default_factory=list, description="Dataflow ids (or {id, name}) to watch."
    )
    statistics: bool = Field(True, description="Read message and byte throughput from the statistics resource.")
    statistics_intervals: int = Field(30, ge=1, le=1440)

    @model_validator(mode="after")
    def _something_to_watch(self) -> InformaticaTarget:
        if not self.dataflows and not self.discovery.enabled:
            raise ValueError("dataflows: list at least one dataflow id, or enable discovery")
        return self

    def dataflow_refs(self) -> list[JobRef]:
        return [JobRef(d, "") if isinstance(d, str) else JobRef(d.id, d.name) for d in self.dataflows]


# --- response models -------------------------------------------------------------------------------------


class NodeReport(Lenient):
    name: str | None = None
    id: Id | None = None
    status: str | None = None
    timestamp: EpochSeconds = None


class GraphNode(Lenient):
    id: Id | None = None
    name: str | None = None
    serviceType: str | None = None
    connectionId: Id | None = None


class GraphEdge(Lenient):
    from_node: str | None = Field(None, alias="from")
    to_node: str | None = Field(None, alias="to")


class Graph(Lenient):
    nodes: list[GraphNode] = []
    edges: list[GraphEdge] = []


class DataflowStatus(Lenient):
    dataflowId: Id
    dataflowName: str | None = None
    status: str | None = None
    timestamp: EpochSeconds = None
    reports: list[NodeReport] | None = None
    graph: Annotated[Graph | None, JsonInString] = None
    runId: Id | None = None


class JobRun(Lenient):
    runId: Id | None = None
    startTime: EpochSeconds = None
    endTime: EpochSeconds = None
    duration: Number | None = None
    startedBy: str | None = None
    runtimeEnv: str | None = None
    deployedVersion: Id | None = None


class HistoryRun(Lenient):
    """One run in the history resource; `status` (how it ended) is not on the vendor's list, so optional."""

    runId: Id | None = None
    deployedAt: EpochSeconds = None
    undeployedAt: EpochSeconds = None
    status: str | None = None


HISTORY = TypeAdapter(list[HistoryRun])


class Statistics(Lenient):
    dataflowRunId: Id | None = None
    startTime: EpochSeconds = None
    stopTime: EpochSeconds = None
    inMessages: Number | None = None
    outMessages: Number | None = None
    inBytes: Number | None = None
    outBytes: Number | None = None


class AssetPage(Lenient):
    count: int | None = None
    objects: list[dict[str, Any]] = []


# --- client ----------------------------------------------------------------------------------------------


def sisvc_url(server_url: str) -> str:
    """The sisvc base from a login server URL: `-ing` added to the host's first label, path dropped.

    `https://na4.dm-us.informaticacloud.com/saas` -> `https://na4-ing.dm-us.informaticacloud.com`. An IP
    address or a single-label host (a proxy, a test upstream) is kept as it is.
    """
    parts = urlsplit(server_url)
    host = parts.hostname or ""
    try:
        ipaddress.ip_address(host)
        is_ip = True
    except ValueError:
        is_ip = False
    if not is_ip and "." in host:
        first, rest = host.split(".", 1)
        host = f"{first}.{rest}" if first.endswith("-ing") else f"{first}-ing.{rest}"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, "", "", ""))


class LoginSession(BaseModel):
    session_id: str
    sisvc: str
    api_base: str


class InformaticaClient:
    """Logs in once, reuses the session across scrapes, and logs in again once when it expires."""

    def __init__(self, settings: InformaticaTarget, upstream: Upstream, secrets: SecretSink) -> None:
        self._settings = settings
        self._upstream = upstream
        self._secrets = secrets
        self._sessions: LoginCache[LoginSession] = LoginCache(self._login)

    def session(self, deadline: Deadline) -> LoginSession:
        return self._sessions.get(deadline)

    def _login(self, deadline: Deadline) -> LoginSession:
        settings = self._settings
        password = settings.secret("password")
        assert password is not None  # required_secrets guarantees it
        if settings.login_api == "v3":
            url = f"{settings.login_url}/saas/public/core/v3/login"
            body: dict[str, str] = {"username": settings.username, "password": password.get_secret_value()}
        else:
            url = f"{settings.login_url}/ma/api/v2/user/login"
            body = {"@type": "login", "username": settings.username, "password": password.get_secret_value()}
        try:
            document = decode_json(
                self._upstream.request(
                    "POST", url, endpoint=f"login_{settings.login_api}", deadline=deadline, json_body=body
                )
            )
        except UpstreamError as exc:
            # The login's body is not kept for the log: besides the code and message it could only hold the
            # request echoed back, password included.
            if exc.reason in ("auth", "http_status") and exc.status is not None:
                code, message = error_fields(exc.body, ("code",), ("message", "description"))
                detail = f"{code} {message}".strip() or "no details"
                raise UpstreamError("auth", f"login refused: {detail}", status=exc.status) from exc
            raise UpstreamError(exc.reason, str(exc), status=exc.status) from exc
        session_id, server_url = _session_fields(document, settings.login_api)
        self._secrets.put("session", session_id)
        return LoginSession(
            session_id=session_id, sisvc=settings.server_url or sisvc_url(server_url), api_base=server_url.rstrip("/")
        )

    def _get(
        self, path: str, endpoint: str, deadline: Deadline, params: dict[str, Any] | None = None, api: str = "sisvc"
    ) -> Any:
        """GET from sisvc (`IDS-SESSION-ID`) or the platform API (`INFA-SESSION-ID`); one re-login on a 401."""
        session = self.session(deadline)
        for attempt in (1, 2):
            base, header = (
                (session.sisvc, "IDS-SESSION-ID") if api == "sisvc" else (session.api_base, "INFA-SESSION-ID")
            )
            try:
                return self._upstream.get_json(
                    f"{base}{path}",
                    endpoint=endpoint,
                    deadline=deadline,
                    headers={header: session.session_id},
                    params=params,
                )
            except UpstreamError as exc:
                if exc.status != 401 or attempt == 2:
                    raise
                session = self._sessions.renew(session, deadline)
        raise AssertionError("unreachable")

    def status(self, dataflow_id: str, deadline: Deadline) -> DataflowStatus:
        status = DataflowStatus.model_validate(
            self._get(f"/sisvc/monitor/v1/status/dataflows/{dataflow_id}", "status", deadline)
        )
        if status.status is None:
            raise UpstreamError("invalid_response", "status document has no status")
        return status

    def job_run(self, dataflow_id: str, run_id: str, deadline: Deadline) -> JobRun:
        return JobRun.model_validate(self._get(f"/sisvc/monitor/v1/jobs/{dataflow_id}/{run_id}", "jobs", deadline))

    def history(self, dataflow_id: str, deadline: Deadline) -> list[HistoryRun]:
        return HISTORY.validate_python(
            self._get(f"/sisvc/monitor/v1/history/dataflows/{dataflow_id}", "history", deadline)
        )

    def statistics(self, dataflow_id: str, deadline: Deadline) -> Statistics:
        params = {"intervals": self._settings.statistics_intervals, "overall": "true"}
        return Statistics.model_validate(
            self._get(f"/sisvc/monitor/v1/statistics/dataflows/{dataflow_id}", "statistics", deadline, params)
        )

    def discover(self, deadline: Deadline) -> list[JobRef]:
        """Dataflows from the v3 objects API, 200 a page (that it lists SI_DATAFLOW is unconfirmed)."""
        found: list[JobRef] = []
        for page in range(100):
            document = AssetPage.model_validate(
                self._get(
                    "/public/core/v3/objects",
                    "objects",
                    deadline,
                    {"q": "type=='SI_DATAFLOW'", "limit": 200, "skip": page * 200},
                    api="platform",
                )
            )
            for asset in document.objects:
                if asset.get("id"):
                    found.append(JobRef(str(asset["id"]), str(asset.get("path") or "").rsplit("/", 1)[-1]))
            if len(document.objects) < 200 or (document.count is not None and len(found) >= document.count):
                break
        return found


def _session_fields(document: Any, api: str) -> tuple[str, str]:
    """Session id and server URL from a v3 or v2 login answer."""
    try:
        if api == "v3":
            products = document.get("products") or [{}]
            return str(document["userInfo"]["sessionId"]), str(products[0].get("baseApiUrl") or "")
        return str(document["icSessionId"]), str(document["serverUrl"])
    except (KeyError, TypeError, AttributeError, IndexError) as exc:
        raise UpstreamError("invalid_response", f"login answer lacks the session id or server URL: {exc!r}") from exc


# --- collector -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunDetails:
    """The jobs resource of a dataflow's current run, and the dataflow's status when it was read."""

    run_id: str
    status: str | None
    run: JobRun


class InformaticaCollector(TargetCollector[InformaticaTarget]):
    """Status, topology, deployment and throughput of each watched dataflow."""

    families = (
        JOB_INFO,
        DEPLOY_START,
        DEPLOY_END,
        DEPLOY_DURATION,
        NODE_INFO,
        EDGE_INFO,
        READ_RECORDS,
        WRITTEN_RECORDS,
        READ_BYTES,
        WRITTEN_BYTES,
    )

    def prepare(self) -> None:
        self.client = InformaticaClient(self.settings, self.upstream, self.secrets)
        self._runs: dict[str, RunDetails] = self.jobs.memory()
        self.ledger = RunLedger(self.jobs)
        self._history_read: dict[str, str] = self.jobs.memory()  # the runId current when the history was read

    def configured_jobs(self) -> list[JobRef]:
        return self.settings.dataflow_refs()

    def collect(self, ctx: ScrapeContext, out: Output) -> None:
        self.client.session(ctx.deadline)
        ctx.each_job(self.jobs.refresh(ctx, self.client.discover), out, lambda job, buf: self._read(ctx, job, buf))
        self.ledger.emit(out, self.jobs.known())

    def _read(self, ctx: ScrapeContext, job: JobRef, out: Output) -> None:
        status = self.client.status(job.job_id, ctx.deadline)
        job = self.jobs.learn(job, status.dataflowName)
        state = self.state(status.status, STATE_MAP)
        out.job_state(job, state, status.status or "none")
        out.add_optional(JOB_LAST_UPDATE, status.timestamp, job)
        self._nodes(status, job, out)
        run = self._run_details(ctx, job, status.runId, status.status)
        out.add(
            JOB_INFO,
            1,
            job,
            run_id=status.runId or "",
            started_by=(run.startedBy or "") if run else "",
            runtime_env=(run.runtimeEnv or "") if run else "",
            deployed_version=(run.deployedVersion or "") if run else "",
        )
        if run is not None:
            out.add_optional(DEPLOY_START, run.startTime, job)
            out.add_optional(DEPLOY_END, run.endTime, job)
            out.add_optional(DEPLOY_DURATION, run.duration, job)
        ended = snake_case(status.status or "") in ENDED
        if status.runId:
            self._count_runs(ctx, job, status.runId, RunView(status.runId, None, state, ended))
        if self.settings.statistics:
            self._throughput(ctx, job, out, ended)

    def _nodes(self, status: DataflowStatus, job: JobRef, out: Output) -> None:
        graph = status.graph or Graph()
        by_id = {node.id: node for node in graph.nodes if node.id}
        for report in status.reports or []:
            node = by_id.get(report.id) if report.id else None
            name = (node.name if node else None) or report.name or report.id or "unnamed"
            out.state_set(NODE_STATE, self.state(report.status, STATE_MAP), job, node=name)
            if report.status:
                out.add(NODE_VENDOR_STATE, 1, job, node=name, vendor_state=snake_case(report.status))
        for node in graph.nodes:
            out.add(
                NODE_INFO,
                1,
                job,
                node=node.name or node.id or "unnamed",
                node_id=node.id or "",
                role=(node.serviceType or "").lower(),
                connection_id=node.connectionId or "",
            )
        for edge in graph.edges:
            if edge.from_node and edge.to_node:
                out.add(EDGE_INFO, 1, job, from_node=edge.from_node, to_node=edge.to_node)

    def _run_details(self, ctx: ScrapeContext, job: JobRef, run_id: str | None, status: str | None) -> JobRun | None:
        """The jobs resource for the current run: read when the runId changes, and kept.

        A run read while it was still deploying has no end time yet; its record is read once more when the
        dataflow's status moves on (the deployment ended), and is final from then on.
        """
        if not run_id:
            return None
        cached = self._runs.get(job.job_id)
        if (
            cached is not None
            and cached.run_id == run_id
            and (cached.run.endTime is not None or cached.status == status)
        ):
            return cached.run
        try:
            run = self.client.job_run(job.job_id, run_id, ctx.deadline)
        except Exception as exc:  # noqa: BLE001 - deploy details are secondary to the job's state
            ctx.errors.record(exc, f"jobs {job.job_id}", job_id=job.job_id, job_name=job.job_name)
            return None
        self._runs[job.job_id] = RunDetails(run_id, status, run)
        return run

    def _count_runs(self, ctx: ScrapeContext, job: JobRef, run_id: str, current: RunView) -> None:
        """Count runs: the current one from the status, and those since the last runId change from the history.

        The history is read only when the runId differs from the one current at its last read (or at the first
        look, which reads none: what ended before it is the baseline). A 404 means no history is offered: the run
        that was current before then ended with its outcome unseen.
        """
        self.ledger.observe(job.job_id, current, history=True)
        last = self._history_read.setdefault(job.job_id, run_id)
        if last == run_id:
            return
        try:
            history = self.client.history(job.job_id, ctx.deadline)
        except UpstreamError as exc:
            if exc.status != 404:
                ctx.errors.record(exc, f"history {job.job_id}", job_id=job.job_id, job_name=job.job_name)
                return
            history = []
        except Exception as exc:  # noqa: BLE001 - a failed history read is tried again next scrape
            ctx.errors.record(exc, f"history {job.job_id}", job_id=job.job_id, job_name=job.job_name)
            return
        self.ledger.settle(job.job_id, self._history_runs(ctx, job, history), run_id)
        self._history_read[job.job_id] = run_id

    def _history_runs(self, ctx: ScrapeContext, job: JobRef, history: list[HistoryRun]) -> list[RunView]:
        runs = [
            RunView(
                entry.runId,
                entry.deployedAt,
                self.state(entry.status, STATE_MAP) if entry.status else None,
                ended=entry.undeployedAt is not None,
                ended_at=entry.undeployedAt,
            )
            for entry in history
            if entry.runId
        ]
        if len(runs) < len(history):
            ctx.errors.record(
                UpstreamError("invalid_response", f"{len(history) - len(runs)} history entries without a runId"),
                f"history {job.job_id}",
                job_id=job.job_id,
                job_name=job.job_name,
            )
        return runs

    def _throughput(self, ctx: ScrapeContext, job: JobRef, out: Output, ended: bool) -> None:
        try:
            stats = self.client.statistics(job.job_id, ctx.deadline)
        except UpstreamError as exc:
            if exc.status == 404:
                return  # no statistics for this dataflow (not deployed, or not offered by this org)
            ctx.errors.record(exc, f"statistics {job.job_id}", job_id=job.job_id, job_name=job.job_name)
            return
        except Exception as exc:  # noqa: BLE001 - throughput is secondary to the job's state
            ctx.errors.record(exc, f"statistics {job.job_id}", job_id=job.job_id, job_name=job.job_name)
            return
        out.add_optional(JOB_START, stats.startTime, job)
        out.add_optional(JOB_END, stats.stopTime if ended else None, job)  # absent while the run goes on
        out.add_optional(READ_RECORDS, stats.inMessages, job)
        out.add_optional(WRITTEN_RECORDS, stats.outMessages, job)
        out.add_optional(READ_BYTES, stats.inBytes, job)
        out.add_optional(WRITTEN_BYTES, stats.outBytes, job)
