"""Fake Huawei Cloud Stream (CS) job API and its successor, DLI Flink jobs, behind the Huawei gateway.

Endpoint names (for faults and stats): iam_token, list_jobs, job_metrics, dli_list_jobs, dli_job_metrics.

    POST /iam/cloudstream/v3/auth/tokens                            iam_token (see huawei_iam.py)
    GET  /v1.0/{project_id}/jobs?limit=&order=&cursor=&next=        list_jobs        (CS, cursor paging)
    POST /v1.0/{project_id}/jobs/metrics  {"job_ids": [...]}        job_metrics      (CS)
    GET  /v1.0/{project_id}/streaming/jobs?offset=&limit=           dli_list_jobs    (DLI, offset paging)
    POST /v1.0/{project_id}/streaming/jobs/metrics                  dli_job_metrics  (DLI)

Every call needs an IAM token or an AK/SK signature (`huawei_iam.Gateway`). Another project id answers
403 (CS.10007 / DLI.0003). `limit` must be 1 to 100; a body without a list of integer `job_ids` answers
400 (CS.20001 / DLI.0001). Ids the project does not have are left out of the metrics answer. CS answers
`{message_id: "CS.10001", message, current_time, payload: {...}}`, DLI `{is_success, message, ...}`.

CS cursor paging: jobs by id, `order` desc (default) or asc; `cursor=<id>&next=true` gives the jobs after
that id in that order, `next=false` the page before it.

Live mode: `jobs` Flink jobs with ids from 298765 up and names like ``kafka-clicks-001``, each with one or
two sources and sinks. A job moves once every `transition_seconds` on its own seeded draws: job_submitting
-> job_running -> sometimes job_running_exception or job_savepointing -> job_canceling ->
job_cancel_success -> job_submitting (a new run: counters from zero); a few submissions fail
(job_submit_fail). Records grow while the job runs (a tenth of the rate with an exception), with a small
share of corrupted records. `set_state` accepts all 14 DLI Flink statuses. `restart(id, failed=...)` passes the job
through job_running_exception (or job_canceling and job_cancel_success) and submits it again: a new
`start_time`, and the list keeps nothing of the run before. With churn (`churn_seconds`,
see lifecycle.py) a deleted job leaves the lists and the metrics answers, as an unknown id does.

Seed mode: the one job of page 003 (id 0). The CS metrics call answers the page's example byte for
byte, whatever ids it is asked for; the DLI one answers the same jobs in the DLI shape. The list calls
(page 003 has no example of them) list that job as `seed_job`, job_running.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any

from exporter.simulator.huawei_iam import Gateway, gateway_error, iam_refusal, refused, throttled
from exporter.simulator.lifecycle import LiveJobs, draw
from exporter.simulator.platforms import Context, Platform, Reply, Request, Route, integer, json_reply

STATES = (
    "job_init",
    "job_submitting",
    "job_submit_fail",
    "job_running",
    "job_running_exception",
    "job_downloading",
    "job_idle",
    "job_canceling",
    "job_cancel_success",
    "job_cancel_fail",
    "job_savepointing",
    "job_arrearage_stopped",
    "job_arrearage_recovering",
    "job_finish",
)
_MOVES: dict[str, tuple[tuple[str, float], ...]] = {
    "job_submitting": (("job_running", 0.85), ("job_submit_fail", 0.05)),
    "job_submit_fail": (("job_submitting", 0.3),),
    "job_running": (("job_running_exception", 0.05), ("job_savepointing", 0.03), ("job_canceling", 0.03)),
    "job_running_exception": (("job_running", 0.3), ("job_canceling", 0.2)),
    "job_savepointing": (("job_running", 0.9),),
    "job_canceling": (("job_cancel_success", 0.9),),
    "job_cancel_success": (("job_submitting", 0.3),),
}
_START = (
    "job_running",
    "job_running",
    "job_running_exception",
    "job_submitting",
    "job_running",
    "job_cancel_success",
    "job_running",
    "job_submit_fail",
)
_FLOWING = {"job_running": 1.0, "job_savepointing": 1.0, "job_running_exception": 0.1}
_NAMES = ("kafka-clicks", "dis-orders", "kafka-payments", "obs-logs", "kafka-iot", "dis-sms")
_PROJECT = r"(?P<project>[^/]+)"
SEED_ID = 0


def create(context: Context) -> Platform:
    return CloudStream(context)


@dataclass
class _Job:
    id: int
    name: str
    job_type: str
    streams: list[tuple[str, str]]  # (role, name)
    rng: random.Random
    rate: float
    next_tick: float
    state: str = "job_init"
    created: float = 0.0
    started: float = 0.0
    marked: float = 0.0
    records: float = 0.0
    frozen: bool = False


class CloudStream:
    """Routes, parameters and the two API flavours' shapes; the jobs live in `_LiveJobs` or `_SeedJobs`."""

    name = "cloudstream"
    status_keys = frozenset({"status"})
    id_keys = frozenset({"message_id", "is_success", "job_id"})

    def __init__(self, context: Context) -> None:
        self._clock = context.clock
        self.gateway = Gateway(self.name, context.clock, context.rng(self.name), context.url, context.token_seconds)
        self._jobs: _LiveJobs | _SeedJobs = _SeedJobs() if context.seed else _LiveJobs(context)

    def routes(self) -> list[Route]:
        guard, jobs, dli = self.gateway.guard, f"/v1.0/{_PROJECT}/jobs", f"/v1.0/{_PROJECT}/streaming/jobs"
        return [
            self.gateway.token_route(),
            Route("GET", jobs, "list_jobs", guard(self._scoped(self._cs_list, "cs"))),
            Route("POST", f"{jobs}/metrics", "job_metrics", guard(self._scoped(self._cs_metrics, "cs"))),
            Route("GET", dli, "dli_list_jobs", guard(self._scoped(self._dli_list, "dli"))),
            Route("POST", f"{dli}/metrics", "dli_job_metrics", guard(self._scoped(self._dli_metrics, "dli"))),
        ]

    def credentials(self) -> dict[str, str]:
        return self.gateway.credentials()

    def rotate_credentials(self) -> None:
        self.gateway.rotate()

    def jobs(self) -> list[dict[str, str]]:
        return [{"id": str(job["job_id"]), "name": str(job["name"])} for job in self._jobs.listed()]

    def set_state(self, job_id: str, state: str | None) -> None:
        if state is not None and state not in STATES:
            raise ValueError(f"unknown state {state!r}; known: {', '.join(STATES)}")
        self._jobs.set_state(job_id, state)

    def restart(self, job_id: str, *, failed: bool) -> None:
        self._jobs.restart(job_id, failed=failed)

    def error_reply(self, endpoint: str, status: int) -> Reply:
        if status == 429:
            return throttled()
        code = "DLI.0999" if endpoint.startswith("dli") else "CS.20000"
        return gateway_error(status, code, f"Simulated failure: {HTTPStatus(status).phrase}")

    def auth_failure(self, endpoint: str) -> Reply:
        return iam_refusal() if endpoint == "iam_token" else refused("verify aksk signature fail")

    def expire_sessions(self) -> None:
        self.gateway.expire_tokens()

    def _scoped(self, handler: Callable[[Request], Reply], flavour: str) -> Callable[[Request], Reply]:
        def scoped(request: Request) -> Reply:
            if request.params["project"] != self.gateway.project_id:
                code = "DLI.0003" if flavour == "dli" else "CS.10007"
                return gateway_error(403, code, "The project does not belong to the account.")
            return handler(request)

        return scoped

    def _cs_list(self, request: Request) -> Reply:
        limit, cursor = integer(request.arg("limit"), 10), integer(request.arg("cursor"), None)
        if limit is None or not 1 <= limit <= 100 or (request.arg("cursor") is not None and cursor is None):
            return gateway_error(400, "CS.20001", "limit must be 1 to 100 and cursor a job id.")
        listed = sorted(self._jobs.listed(), key=lambda job: int(job["job_id"]), reverse=request.arg("order") != "asc")
        if cursor is not None:
            at = next((i for i, job in enumerate(listed) if job["job_id"] == cursor), None)
            if at is None:
                listed = []
            elif request.arg("next") == "false":
                listed = listed[max(0, at - limit) : at]
            else:
                listed = listed[at + 1 :]
        return json_reply(
            200,
            {
                "message_id": "CS.10001",
                "message": "Querying the job list succeeded.",
                "current_time": _ms(self._clock.now()),
                "payload": {"total": len(self._jobs.listed()), "jobs": listed[:limit]},
            },
        )

    def _dli_list(self, request: Request) -> Reply:
        limit, offset = integer(request.arg("limit"), 10), integer(request.arg("offset"), 0)
        if limit is None or offset is None or not 1 <= limit <= 100 or offset < 0:
            return gateway_error(400, "DLI.0001", "limit must be 1 to 100 and offset 0 or more.")
        listed = self._jobs.listed()
        return json_reply(
            200,
            {
                "is_success": True,
                "message": "Querying of the job list succeeds.",
                "job_list": {"total_count": len(listed), "jobs": listed[offset : offset + limit]},
            },
        )

    def _cs_metrics(self, request: Request) -> Reply:
        ids = _job_ids(request)
        if ids is None:
            return gateway_error(400, "CS.20001", "job_ids must be a list of job ids.")
        seed = self._jobs.seed_metrics()
        if seed is not None:
            return Reply(200, seed)
        return json_reply(
            200,
            {
                "message_id": "CS.10001",
                "message": "Querying job monitoring information succeeds.",
                "current_time": _ms(self._clock.now()),
                "payload": {"jobs": self._jobs.metrics(ids)},
            },
        )

    def _dli_metrics(self, request: Request) -> Reply:
        ids = _job_ids(request)
        if ids is None:
            return gateway_error(400, "DLI.0001", "job_ids must be a list of job ids.")
        seed = self._jobs.seed_metrics()
        jobs = json.loads(seed)["payload"]["jobs"] if seed is not None else self._jobs.metrics(ids)
        return json_reply(
            200, {"is_success": True, "message": "Querying job metrics succeeds.", "metrics": {"jobs": jobs}}
        )


class _SeedJobs:
    """Page 003's job: its metrics byte for byte."""

    def __init__(self) -> None:
        self._metrics = (Path(__file__).with_name("seeds") / "cloudstream_metrics.json").read_bytes()

    def listed(self) -> list[dict[str, Any]]:
        return [
            {
                "job_id": SEED_ID,
                "name": "seed_job",
                "job_type": "flink_sql_job",
                "status": "job_running",
                "status_desc": "",
            }
        ]

    def set_state(self, job_id: str, state: str | None) -> None:
        if job_id != str(SEED_ID):
            raise LookupError(f"no job {job_id!r}")
        raise ValueError("seed mode serves the seed page verbatim; its state cannot change")

    def restart(self, job_id: str, *, failed: bool) -> None:
        self.set_state(job_id, None)

    def seed_metrics(self) -> bytes | None:
        return self._metrics

    def metrics(self, ids: list[int]) -> list[dict[str, Any]]:
        raise AssertionError("seed mode answers with the seed page")


class _LiveJobs(LiveJobs[int, _Job]):
    """Flink jobs that submit, run, fail and cancel on simulated time, computed when a request comes."""

    def __init__(self, context: Context) -> None:
        super().__init__(context, "cloudstream")

    def seed_metrics(self) -> bytes | None:
        return None

    def listed(self) -> list[dict[str, Any]]:
        with self._lock:
            entries = []
            jobs, now = self._live()
            for job in jobs:
                entries.append(
                    {
                        "job_id": job.id,
                        "name": job.name,
                        "desc": "",
                        "user_name": "monitor",
                        "job_type": job.job_type,
                        "status": job.state,
                        "status_desc": "",
                        "create_time": _ms(job.created),
                        "start_time": _ms(job.started),
                        "duration": _ms(now - job.started) if job.started else 0,
                    }
                )
            return entries

    def metrics(self, ids: list[int]) -> list[dict[str, Any]]:
        with self._lock:
            found = []
            now = self._now()
            for job_id in ids:
                if job_id not in self._jobs:
                    continue
                job, _ = self._current(job_id, now)
                found.append({"job_id": job.id, "metrics": _metrics(job)})
            return found

    def _key(self, job: _Job) -> int:
        return job.id

    def _parse(self, job_id: str) -> int | None:
        return integer(job_id, None)

    def _draw(self, job: _Job) -> str:
        return draw(job.rng, _MOVES.get(job.state, ())) or job.state

    def _enter(self, job: _Job, state: str, at: float) -> None:
        self._integrate(job, at)
        if state in ("job_submitting", "job_init") and state != job.state:
            job.started, job.records = at, 0.0
        job.state = state

    def _restart_moves(self, job: _Job, failed: bool) -> tuple[str, ...]:
        if failed:
            return "job_running_exception", "job_submitting", "job_running"
        return "job_canceling", "job_cancel_success", "job_submitting", "job_running"

    def _integrate(self, job: _Job, until: float) -> None:
        elapsed = until - job.marked
        if elapsed > 0:
            job.records += job.rate * elapsed * _FLOWING.get(job.state, 0.0)
        job.marked = max(job.marked, until)

    def _new_job(self, index: int, rng: random.Random, now: float) -> _Job:
        base = _NAMES[index % len(_NAMES)]
        source, sink = base.split("-", 1)
        streams = [
            ("source", f"Source: {source.upper()}_{rng.randrange(1000, 9999)}_{source.upper()}_SOURCE"),
            ("sink", f"Sink: DWS_{sink}_{rng.randrange(1000, 9999)}"),
        ]
        if index % 3 == 2:
            streams.append(("sink", f"Sink: OBS_archive_{rng.randrange(1000, 9999)}"))
        job = _Job(
            298765 + index,
            f"{base}-{index + 1:03d}",
            "flink_sql_job" if index % 4 else "flink_jar_job",
            streams,
            rng,
            rng.uniform(100, 800),
            next_tick=now + self._period,
        )
        job.created = job.marked = now - rng.uniform(24, 72) * 3600
        started = now - rng.uniform(0.5, 12) * 3600
        self._enter(job, "job_submitting", started)
        self._enter(job, "job_running", started + rng.uniform(20, 90))
        target = _START[index % len(_START)]
        if target != "job_running":
            self._enter(job, target, now - rng.uniform(1, 300))
        self._integrate(job, now)
        return job


def _metrics(job: _Job) -> dict[str, Any]:
    records = int(job.records)
    corrupted = records // 997
    flowing = _FLOWING.get(job.state, 0.0)
    counts: dict[str, list[dict[str, Any]]] = {"source": [], "sink": []}
    for role, name in job.streams:
        written = records if role == "source" else records - corrupted
        dirty = corrupted if role == "source" else 0
        counts[role].append({"name": name, "records": written, "corrupted_records": dirty})
    return {
        "sources": counts["source"],
        "sinks": counts["sink"],
        "total_read_rate": round(job.rate * flowing, 2),
        "total_write_rate": round(job.rate * flowing * 0.999, 2),
    }


def _job_ids(request: Request) -> list[int] | None:
    try:
        ids = request.json()["job_ids"]
    except (ValueError, KeyError, TypeError):
        return None
    if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        return None
    return ids


def _ms(at: float) -> int:
    return int(at * 1000)
