"""Fake Huawei DataArts Studio (DataArts Factory, DLF) real-time job API behind the Huawei gateway.

Endpoint names (for faults and stats): iam_token, list_jobs, job_status.

    POST /iam/dataarts/v3/auth/tokens                                 iam_token (see huawei_iam.py)
    GET  /v1/{project_id}/jobs?jobType=REAL_TIME&limit=&offset=        list_jobs
    GET  /v1/{project_id}/jobs/{job_name}/status                       job_status

Every call needs an IAM token or an AK/SK signature (`huawei_iam.Gateway`). Another project id, or a
`workspace` header other than the account's one (`credentials()["workspace"]`), answers 403 DLF.6888. An
unknown job answers 400 DLF.0100 "The job does not exists.". `limit` must be 1 to 1000 and `offset` a
record offset of 0 or more (else 400 DLF.0137); `jobType` other than REAL_TIME lists nothing.

Live mode: `jobs` real-time jobs named like ``rt-orders-001``, each with two or three nodes. A job moves
once every `transition_seconds`, on its own seeded draws: STARTING -> NORMAL -> sometimes EXCEPTION ->
STOPPING -> STOPPED -> STARTING (a new run: counters from zero). While NORMAL its nodes count records
and bytes (EXCEPTION: a tenth of the rate). Even-numbered jobs answer in the documented spelling
(`startTime`, node `status` and `type`); odd-numbered ones as the seed and the SDK do (`starttime` as a
date string, nodes with `nodeType` and `LastInstanceStatus` but no `status`). `delete_job(name)` removes a
job, as deleting it in the console would; so does churn (`churn_seconds`, see lifecycle.py). A deleted
job leaves the list and answers as an unknown one (400 DLF.0100). `restart(name, failed=...)` passes the job
through EXCEPTION (or STOPPING and STOPPED) and starts it again: a new start time and node instance ids, and
nothing left of the run before, as DLF keeps no history of real-time runs.

Seed mode: the one job of page 002, `job_sms`: its status is the page's example byte for byte. The list
call (page 002 has no example of it) lists that one job.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from pathlib import Path
from typing import Any

from exporter.simulator.huawei_iam import Gateway, gateway_error, iam_refusal, refused, throttled
from exporter.simulator.lifecycle import LiveJobs, draw
from exporter.simulator.platforms import Context, Platform, Reply, Request, Route, json_reply

STARTING, NORMAL, EXCEPTION, STOPPING, STOPPED = "STARTING", "NORMAL", "EXCEPTION", "STOPPING", "STOPPED"
STATES = (STARTING, NORMAL, EXCEPTION, STOPPING, STOPPED)
_MOVES: dict[str, tuple[tuple[str, float], ...]] = {
    STARTING: ((NORMAL, 0.8), (EXCEPTION, 0.05)),
    NORMAL: ((EXCEPTION, 0.05), (STOPPING, 0.04)),
    EXCEPTION: ((NORMAL, 0.3), (STOPPING, 0.2)),
    STOPPING: ((STOPPED, 0.9),),
    STOPPED: ((STARTING, 0.3),),
}
_START = (NORMAL, NORMAL, EXCEPTION, STARTING, NORMAL, STOPPED, NORMAL, STOPPING)
_FLOWING = {NORMAL: 1.0, EXCEPTION: 0.1}
_INSTANCE = {
    STARTING: "waiting",
    NORMAL: "running",
    EXCEPTION: "running_exception",
    STOPPING: "running",
    STOPPED: "manual_stop",
}
_NAMES = ("orders", "payments", "clicks", "inventory", "sms", "iot", "logs", "shipments")
_NODE_TYPES = (("DIS Transfer Task", "dis"), ("MRS Flink Job", "MRS_Flink_Job"), ("DLI SQL", "dli_sql"))
_PROJECT = r"(?P<project>[^/]+)"


def create(context: Context) -> Platform:
    return DataArts(context)


@dataclass
class _Node:
    name: str
    kind: str
    rate: float
    record_bytes: int
    got: float = 0.0


@dataclass
class _Job:
    name: str
    sdk_spelling: bool
    nodes: list[_Node]
    rng: random.Random
    next_tick: float
    state: str = STOPPED
    started: float = 0.0
    ended: float | None = None
    updated: float = 0.0
    marked: float = 0.0
    frozen: bool = False
    instance: int = 0
    owner: str = "monitor"
    extra: dict[str, Any] = field(default_factory=dict)


class DataArts:
    """Routes, parameters and error shapes; the jobs live in `_LiveJobs` or `_SeedJobs`."""

    name = "dataarts"
    status_keys = frozenset({"status", "LastInstanceStatus", "lastInstanceStatus"})
    id_keys = frozenset({"name"})

    def __init__(self, context: Context) -> None:
        rng = context.rng(self.name)
        self.gateway = Gateway(self.name, context.clock, rng, context.url, context.token_seconds)
        self.workspace = f"{rng.getrandbits(128):032x}"
        self._jobs: _LiveJobs | _SeedJobs = _SeedJobs() if context.seed else _LiveJobs(context)

    def routes(self) -> list[Route]:
        guard = self.gateway.guard
        return [
            self.gateway.token_route(),
            Route("GET", f"/v1/{_PROJECT}/jobs", "list_jobs", guard(self._scoped(self._list))),
            Route("GET", f"/v1/{_PROJECT}/jobs/(?P<job>[^/]+)/status", "job_status", guard(self._scoped(self._status))),
        ]

    def credentials(self) -> dict[str, str]:
        return {**self.gateway.credentials(), "workspace": self.workspace}

    def rotate_credentials(self) -> None:
        self.gateway.rotate()

    def jobs(self) -> list[dict[str, str]]:
        return [{"id": name, "name": name} for name in self._jobs.names()]

    def set_state(self, job_id: str, state: str | None) -> None:
        if state is not None and state not in STATES:
            raise ValueError(f"unknown state {state!r}; known: {', '.join(STATES)}")
        self._jobs.set_state(job_id, state)

    def restart(self, job_id: str, *, failed: bool) -> None:
        self._jobs.restart(job_id, failed=failed)

    def delete_job(self, name: str) -> None:
        self._jobs.delete(name)

    def error_reply(self, endpoint: str, status: int) -> Reply:
        if status == 429:
            return throttled()
        return gateway_error(status, f"DLF.{status}", f"Simulated failure: {HTTPStatus(status).phrase}")

    def auth_failure(self, endpoint: str) -> Reply:
        return iam_refusal() if endpoint == "iam_token" else refused("verify aksk signature fail")

    def expire_sessions(self) -> None:
        self.gateway.expire_tokens()

    def _scoped(self, handler: Callable[[Request], Reply]) -> Callable[[Request], Reply]:
        def scoped(request: Request) -> Reply:
            workspace = request.header("workspace")
            if request.params["project"] != self.gateway.project_id or workspace not in (None, self.workspace):
                return gateway_error(403, "DLF.6888", "You do not have the permission to access the workspace.")
            return handler(request)

        return scoped

    def _list(self, request: Request) -> Reply:
        try:
            limit, offset = int(request.arg("limit") or 10), int(request.arg("offset") or 0)
        except ValueError:
            limit = offset = -1
        if not 1 <= limit <= 1000 or offset < 0:
            return gateway_error(400, "DLF.0137", "The limit must be 1 to 1000 and the offset 0 or more.")
        if request.arg("jobType") not in (None, "REAL_TIME"):
            return json_reply(200, {"total": 0, "jobs": []})
        listed = self._jobs.listed()
        return json_reply(200, {"total": len(listed), "jobs": listed[offset : offset + limit]})

    def _status(self, request: Request) -> Reply:
        answer = self._jobs.status(request.params["job"])
        if answer is None:
            return gateway_error(400, "DLF.0100", "The job does not exists.")
        return Reply(200, answer)


class _SeedJobs:
    """Page 002's job, byte for byte."""

    def __init__(self) -> None:
        self._status = (Path(__file__).with_name("seeds") / "dataarts_status.json").read_bytes()
        self._name = str(json.loads(self._status)["name"])

    def names(self) -> list[str]:
        return [self._name]

    def set_state(self, job_id: str, state: str | None) -> None:
        if job_id != self._name:
            raise LookupError(f"no job {job_id!r}")
        raise ValueError("seed mode serves the seed page verbatim; its state cannot change")

    def restart(self, job_id: str, *, failed: bool) -> None:
        self.set_state(job_id, None)

    def delete(self, name: str) -> None:
        raise ValueError("seed mode serves the seed page verbatim; its job cannot be deleted")

    def listed(self) -> list[dict[str, Any]]:
        return [{"name": self._name, "jobType": "REAL_TIME", "status": NORMAL}]

    def status(self, name: str) -> bytes | None:
        return self._status if name == self._name else None


class _LiveJobs(LiveJobs[str, _Job]):
    """Jobs that start, run, fail and stop on simulated time, computed when a request comes."""

    def __init__(self, context: Context) -> None:
        super().__init__(context, "dataarts")

    def names(self) -> list[str]:
        with self._lock:
            return [job.name for job in self._live()[0]]

    def delete(self, name: str) -> None:
        with self._lock:
            self._now()
            if self._jobs.pop(name, None) is None:
                raise LookupError(f"no job {name!r}")

    def listed(self) -> list[dict[str, Any]]:
        with self._lock:
            entries = []
            for job in self._live()[0]:
                entries.append(
                    {
                        "name": job.name,
                        "jobType": "REAL_TIME",
                        "status": job.state,
                        "owner": job.owner,
                        "priority": 0,
                        "path": f"/realtime/{job.name}",
                        "createTime": _ms(job.extra["created"]),
                        "startTime": _ms(job.started),
                        "endTime": None if job.ended is None else _ms(job.ended),
                        "lastUpdateTime": _ms(job.updated),
                        "lastInstanceStatus": _INSTANCE[job.state],
                    }
                )
            return entries

    def status(self, name: str) -> bytes | None:
        with self._lock:
            try:
                job, _ = self._current(name)
            except LookupError:
                return None
            document: dict[str, Any] = {
                "name": job.name,
                "nodes": [self._node(job, n) for n in job.nodes],
                "status": job.state,
            }
            if job.sdk_spelling:
                document["starttime"] = datetime.fromtimestamp(job.started, UTC).strftime("%Y-%m-%d %H:%M:%S")
            else:
                document["startTime"] = _ms(job.started)
                if job.ended is not None:
                    document["endTime"] = _ms(job.ended)
            document["lastUpdateTime"] = _ms(job.updated)
            return json.dumps(document).encode()

    def _node(self, job: _Job, node: _Node) -> dict[str, Any]:
        got = int(node.got)
        put = int(node.got * 0.98)
        flowing = _FLOWING.get(job.state, 0.0)
        counters = {
            "bufferRecords": int(node.rate * flowing * 0.05),
            "speed": round(node.rate * flowing, 1),
            "totalGetBytes": got * node.record_bytes,
            "totalGetRecords": got,
            "totalPutBytes": put * node.record_bytes,
            "totalPutRecords": put,
        }
        if job.sdk_spelling:
            return {
                "jobInstanceId": job.instance,
                "LastInstanceStatus": _INSTANCE[job.state],
                "name": node.name,
                "nodeType": node.kind,
                **counters,
            }
        return {
            "name": node.name,
            "status": job.state,
            "type": node.kind,
            "logPath": f"obs://dlf-log/{job.name}/{node.name}",
            **counters,
        }

    # --- life cycle, with the lock held ---------------------------------------------------------------

    def _key(self, job: _Job) -> str:
        return job.name

    def _parse(self, job_id: str) -> str:
        return job_id

    def _draw(self, job: _Job) -> str:
        return draw(job.rng, _MOVES[job.state]) or job.state

    def _enter(self, job: _Job, state: str, at: float) -> None:
        self._integrate(job, at)
        if state == job.state:
            return
        if state == STARTING or (job.state in (STOPPED,) and state in (NORMAL, EXCEPTION)):
            job.started, job.ended, job.instance = at, None, job.instance + 1
            for node in job.nodes:
                node.got = 0.0
        if state == STOPPED:
            job.ended = at
        job.state, job.updated = state, at

    def _restart_moves(self, job: _Job, failed: bool) -> tuple[str, ...]:
        return (EXCEPTION, STARTING, NORMAL) if failed else (STOPPING, STOPPED, STARTING, NORMAL)

    def _integrate(self, job: _Job, until: float) -> None:
        elapsed = until - job.marked
        if elapsed > 0:
            for node in job.nodes:
                node.got += node.rate * elapsed * _FLOWING.get(job.state, 0.0)
        job.marked = max(job.marked, until)

    def _new_job(self, index: int, rng: random.Random, now: float) -> _Job:
        name = f"rt-{_NAMES[index % len(_NAMES)]}-{index + 1:03d}"
        kinds = _NODE_TYPES[: 2 + index % 2]
        nodes = [
            _Node(f"{prefix}_{rng.randrange(1000, 9999)}", kind, rng.uniform(50, 400), rng.randint(100, 900))
            for kind, prefix in kinds
        ]
        job = _Job(name, index % 2 == 1, nodes, rng, next_tick=now + self._period)
        job.extra["created"] = now - rng.uniform(48, 96) * 3600
        started = now - rng.uniform(1, 12) * 3600
        job.marked = started
        self._enter(job, STARTING, started)
        target = _START[index % len(_START)]
        self._enter(job, NORMAL, started + rng.uniform(20, 120))
        if target != NORMAL:
            if target in (STOPPED, STOPPING):
                self._enter(job, STOPPING, now - rng.uniform(60, 600))
            if target != STOPPING:
                self._enter(job, target, now - rng.uniform(1, 59))
        self._integrate(job, now)
        return job


def _ms(at: float) -> int:
    return int(at * 1000)
