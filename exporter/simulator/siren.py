"""Fake Siren Federate connector job API, as an Elasticsearch cluster with security on serves it.

Endpoint names (for faults and stats): jobs_search, jobs_running, job, abort.

    GET  /_siren/connector/jobs/_search?type=&id=&state=&start_time_from=&start_time_to=   jobs_search
    GET  /_siren/connector/jobs/<type>                                                     jobs_running
    GET  /_siren/connector/jobs/<type>/<id>                                                job
    POST /_siren/connector/jobs/<type>/<id>/_abort                                         abort

The only type is `ingestion`; another answers 400 (`illegal_argument_exception`). Every request needs
credentials, as Elasticsearch takes them: `Authorization: Basic` (the monitoring user), `ApiKey
base64(id:api_key)` or `Bearer <token>` (see `credentials()`). Missing or wrong credentials get 401
`security_exception` with a `WWW-Authenticate` header; the `unprivileged_*` user authenticates but lacks
`cluster:internal/federate/*` and gets 403 `security_exception`. An unknown job id answers 404
`{"_id", "type", "found": false}`.

The running-jobs answer is undocumented upstream; `list_shape` picks the one served: `jobs`
(`{"jobs": [document, ...]}`, the default), `list` (`[document, ...]`), `map` (`{id: status}`) or `hits`
(Elasticsearch hits with the status under `_source.ingestion`). Set it on the platform object
(`simulator.platform("siren").list_shape = "map"`).

Live mode: `jobs` jobs named like ``postgres-events-01``. Each moves once every `transition_seconds` on
its own seeded draws: idle -> running (a new run: `count` grows by a few hundred records a second,
`last_id` follows) -> successful (most runs), error (with error messages) or aborting -> aborted. Jobs
start spread over the states, each with a few backdated runs in the job log. `_search` filters the log
(every run, the current one included) by type, id, state and start time, newest first, with
`hits.total` as `{value, relation}` (or an integer with `total_as_int = True`). The log keeps every run,
unless `job_log_seconds` is set: then it holds the runs started in the last that many seconds, as an index
with a retention policy does, and is full from the start (each job has already lived that long, with the
same draws), so a long run reads a log of steady size. `restart(id, failed=...)` ends the current run in error (or
aborted, through aborting) and starts a new one, which the job endpoint then shows while the log keeps the
ended one. With churn (`churn_seconds`, see lifecycle.py;
it needs `job_log_seconds`) a deleted job answers 404 `found: false` and leaves the running list, while
its finished runs stay in the log until they age out of it. `rotate_credentials()` gives the monitoring
user a new password (the API key and the token stay); the old one then gets the 401 of a wrong one.

Seed mode: the one job of page 004, `postgres-events`. The job endpoint and the running list serve the
running example byte for byte; `set_state("postgres-events", "error" | "successful" | "aborted")` (or the
control API) serves the failed, completed or aborted example instead, and the list is then empty; `None`
or "running" goes back to the running example. `_search` serves the page's search example byte for byte
when its one hit passes the filters, and an empty result otherwise.
"""

from __future__ import annotations

import base64
import json
import math
import random
import secrets
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from exporter.simulator.lifecycle import LiveJobs, draw
from exporter.simulator.platforms import Context, Platform, Reply, Request, Route, json_reply

TYPE = "ingestion"
RUNNING, ABORTING, ABORTED, ERROR, SUCCESSFUL = "running", "aborting", "aborted", "error", "successful"
STATES = (RUNNING, ABORTING, ABORTED, ERROR, SUCCESSFUL)
LIST_SHAPES = ("jobs", "list", "map", "hits")
_PRIVILEGE = "cluster:internal/federate/connector/jobs/get"
_BASE = "/_siren/connector/jobs"

# Page 004, byte for byte.
SEED_RUNNING = (
    b'{ "_id": "postgres-events", "type": "ingestion", "found": true, "status": { "version": 1, "id": '
    b'"postgres-events", "is_running": true, "start_time": 1538731228589, "infos": "The job is running.", '
    b'"state": "running", "count": 3459, "last_id": "2289" } }'
)
SEED_SUCCESSFUL = (
    b'{ "_id": "postgres-events", "type": "ingestion", "found": true, "status": { "version": 1, "id": '
    b'"postgres-events", "is_running": false, "start_time": 1538733893554, "end_time": 1538733911829, '
    b'"infos": "The job is done.", "state": "successful", "count": 10000, "last_id": "12219" } }'
)
SEED_ERROR = (
    b'{ "_id": "postgres-events", "type": "ingestion", "found": true, "status": { "version": 1, "id": '
    b'"postgres-events", "is_running": false, "start_time": 1538730949766, "end_time": 1538730961293, '
    b'"infos": "The job has failed.", "error": [ "Could not execute datasource query [postgres].", '
    b'"Failed to initialize pool: The connection attempt failed.", "The connection attempt failed.", '
    b'"connect timed out" ], "state": "error", "count": 0 } }'
)
SEED_ABORTED = (
    b'{ "_id": "postgres-events", "type": "ingestion", "found": true, "status": { "version": 1, "id": '
    b'"postgres-events", "is_running": false, "is_aborting": true, "start_time": 1538733800993, '
    b'"end_time": 1538733805318, "infos": "The job has been aborted.", "state": "aborted", "count": 2220, '
    b'"last_id": "2219" } }'
)
SEED_SEARCH = (
    b'{ "hits": { "total": 1, "hits": [ { "_id": "postgresevents11e247fa-ccb1-11e8-ad75-c293294ec513", '
    b'"_source": { "ingestion": { "version": 1, "id": "postgresevents", "is_running": false, "start_time": '
    b'1539192150699, "end_time": 1539192151612, "infos": "The job is done.", "state": "successful", '
    b'"count": 0 } } } ] } }'
)
SEED_EXAMPLES = {RUNNING: SEED_RUNNING, SUCCESSFUL: SEED_SUCCESSFUL, ERROR: SEED_ERROR, ABORTED: SEED_ABORTED}

_NAMES = (
    "postgres-events",
    "mysql-orders",
    "oracle-customers",
    "sqlserver-invoices",
    "postgres-audit",
    "mysql-sessions",
    "db2-ledger",
    "postgres-shipments",
)
_START = (RUNNING, SUCCESSFUL, RUNNING, ERROR, RUNNING, ABORTED, SUCCESSFUL, RUNNING)
_INFOS = {
    RUNNING: "The job is running.",
    ABORTING: "The job is aborting.",
    ABORTED: "The job has been aborted.",
    ERROR: "The job has failed.",
    SUCCESSFUL: "The job is done.",
}
_FAILURES = (
    (
        "Could not execute datasource query [{source}].",
        "Failed to initialize pool: The connection attempt failed.",
        "The connection attempt failed.",
        "connect timed out",
    ),
    ("Could not execute datasource query [{source}].", "ERROR: canceling statement due to statement timeout"),
    ("Bulk request failed: es_rejected_execution_exception.",),
)
# Per tick: (next state, probability) from a running job; an idle job starts again with _RESTART.
_ENDINGS = ((SUCCESSFUL, 0.3), (ERROR, 0.06), (ABORTING, 0.04))
_RESTART = 0.35


def create(context: Context) -> Platform:
    return Siren(context)


@dataclass
class _Run:
    run_uuid: str
    started: float
    state: str = RUNNING
    ended: float | None = None
    count: float = 0.0
    errors: tuple[str, ...] = ()
    aborting: bool = False


@dataclass
class _Job:
    id: str
    source: str
    rng: random.Random
    rate: float  # records a second while running
    first_id: int
    next_tick: float
    marked: float
    runs: list[_Run] = field(default_factory=list)
    frozen: bool = False

    @property
    def current(self) -> _Run | None:
        return self.runs[-1] if self.runs else None

    @property
    def running(self) -> bool:
        run = self.current
        return run is not None and run.state in (RUNNING, ABORTING)


class Siren:
    """Authentication, privileges, routes and error shapes; the jobs live in `_LiveJobs` or `_SeedJobs`."""

    name = "siren"
    status_keys = frozenset({"state"})
    id_keys = frozenset({"_id", "type", "found", "id"})

    def __init__(self, context: Context) -> None:
        self._context = context
        self._username = "federate-monitor"
        self._password = secrets.token_urlsafe(12)
        self._unprivileged = ("kibana-viewer", secrets.token_urlsafe(12))
        self._api_key_id = secrets.token_urlsafe(15)
        self._api_key = secrets.token_urlsafe(16)
        self._token = "dGVzdC" + secrets.token_urlsafe(24)
        self.list_shape = "jobs"
        self.total_as_int = False
        self._jobs: _LiveJobs | _SeedJobs = _SeedJobs() if context.seed else _LiveJobs(context)

    def routes(self) -> list[Route]:
        job = r"(?P<type>[^/]+)/(?P<id>[^/]+)"
        return [  # _search first: it would also match the running-jobs route as a type
            Route("GET", f"{_BASE}/_search", "jobs_search", self._guard(self._search)),
            Route("GET", f"{_BASE}/(?P<type>[^/]+)", "jobs_running", self._guard(self._running)),
            Route("GET", f"{_BASE}/{job}", "job", self._guard(self._job)),
            Route("POST", f"{_BASE}/{job}/_abort", "abort", self._guard(self._abort)),
        ]

    def credentials(self) -> dict[str, str]:
        encoded = base64.b64encode(f"{self._api_key_id}:{self._api_key}".encode()).decode()
        return {
            "username": self._username,
            "password": self._password,
            "api_key": f"{self._api_key_id}:{self._api_key}",
            "api_key_encoded": encoded,
            "token": self._token,
            "unprivileged_username": self._unprivileged[0],
            "unprivileged_password": self._unprivileged[1],
        }

    def rotate_credentials(self) -> None:
        self._password = secrets.token_urlsafe(12)

    def jobs(self) -> list[dict[str, str]]:
        return [{"id": job_id, "name": job_id} for job_id in self._jobs.ids()]

    def set_state(self, job_id: str, state: str | None) -> None:
        if state is not None and state not in STATES:
            raise ValueError(f"unknown state {state!r}; known: {', '.join(STATES)}")
        self._jobs.set_state(job_id, state)

    def restart(self, job_id: str, *, failed: bool) -> None:
        self._jobs.restart(job_id, failed=failed)

    def error_reply(self, endpoint: str, status: int) -> Reply:
        kind = {429: "es_rejected_execution_exception", 503: "cluster_block_exception"}.get(
            status, "illegal_argument_exception" if status < 500 else "exception"
        )
        return _es_error(status, kind, f"simulated failure: {HTTPStatus(status).phrase}")

    def auth_failure(self, endpoint: str) -> Reply:
        return _unauthenticated(f"unable to authenticate user [{self._username}] for REST request [{endpoint}]")

    def expire_sessions(self) -> None:
        """Elasticsearch credentials carry no session: nothing expires."""

    # --- authentication -----------------------------------------------------------------------------

    def _user(self, request: Request) -> str | None:
        """The authenticated user, or None."""
        header = request.header("Authorization") or ""
        scheme, _, credential = header.partition(" ")
        scheme = scheme.lower()
        if scheme == "basic":
            try:
                user, _, password = base64.b64decode(credential, validate=True).decode().partition(":")
            except ValueError:
                return None
            known = {self._username: self._password, self._unprivileged[0]: self._unprivileged[1]}
            return user if user in known and secrets.compare_digest(known[user], password) else None
        if scheme == "apikey":
            expected = base64.b64encode(f"{self._api_key_id}:{self._api_key}".encode()).decode()
            return self._username if secrets.compare_digest(credential, expected) else None
        if scheme == "bearer":
            return self._username if secrets.compare_digest(credential, self._token) else None
        return None

    def _guard(self, handler: Callable[[Request], Reply]) -> Callable[[Request], Reply]:
        def guarded(request: Request) -> Reply:
            if not request.header("Authorization"):
                return _unauthenticated(f"missing authentication credentials for REST request [{request.path}]")
            user = self._user(request)
            if user is None:
                return _unauthenticated(f"unable to authenticate user for REST request [{request.path}]")
            if user != self._username:
                return _es_error(
                    403,
                    "security_exception",
                    f"action [{_PRIVILEGE}] is unauthorized for user [{user}] with effective roles [kibana_user]",
                )
            job_type = request.params.get("type")
            if job_type is not None and job_type != TYPE:
                return _es_error(400, "illegal_argument_exception", f"Unknown job type [{job_type}]")
            return handler(request)

        return guarded

    # --- handlers -----------------------------------------------------------------------------------

    def _search(self, request: Request) -> Reply:
        wanted_type = request.arg("type")
        if wanted_type is not None and wanted_type != TYPE:
            return json_reply(200, _hits([], self.total_as_int))
        try:
            since = _millis(request.arg("start_time_from"))
            until = _millis(request.arg("start_time_to"))
        except ValueError as problem:
            return _es_error(400, "illegal_argument_exception", str(problem))
        state = request.arg("state")
        if state is not None and state not in STATES:
            return _es_error(400, "illegal_argument_exception", f"Unknown job state [{state}]")
        return self._jobs.search(request.arg("id"), state, since, until, self.total_as_int)

    def _running(self, request: Request) -> Reply:
        return self._jobs.running(self.list_shape)

    def _job(self, request: Request) -> Reply:
        return self._jobs.job(request.params["id"])

    def _abort(self, request: Request) -> Reply:
        return self._jobs.abort(request.params["id"])


class _SeedJobs:
    """Page 004 verbatim: one job whose answer is one of the page's four examples."""

    JOB = "postgres-events"

    def __init__(self) -> None:
        self._example = RUNNING
        self._lock = threading.Lock()

    def ids(self) -> list[str]:
        return [self.JOB]

    def set_state(self, job_id: str, state: str | None) -> None:
        self._known(job_id)
        if state is not None and state not in SEED_EXAMPLES:
            raise ValueError(f"page 004 has no example in state {state!r}; it has {', '.join(SEED_EXAMPLES)}")
        with self._lock:
            self._example = state or RUNNING

    def restart(self, job_id: str, *, failed: bool) -> None:
        self._known(job_id)
        raise ValueError("seed mode serves page 004 verbatim: its one job cannot restart")

    def job(self, job_id: str) -> Reply:
        if job_id != self.JOB:
            return _not_found(job_id)
        with self._lock:
            return Reply(200, SEED_EXAMPLES[self._example])

    def running(self, shape: str) -> Reply:
        with self._lock:
            running = self._example == RUNNING
        if not running:
            return json_reply(200, _shaped(shape, []))
        document = json.loads(SEED_RUNNING)
        if shape == "jobs":
            return Reply(200, b'{ "jobs": [ ' + SEED_RUNNING + b" ] }")
        if shape == "list":
            return Reply(200, b"[ " + SEED_RUNNING + b" ]")
        return json_reply(200, _shaped(shape, [document]))

    def search(
        self, job_id: str | None, state: str | None, since: int | None, until: int | None, total_as_int: bool
    ) -> Reply:
        hit = json.loads(SEED_SEARCH)["hits"]["hits"][0]
        source = hit["_source"][TYPE]
        if _passes(source, job_id, state, since, until):
            return Reply(200, SEED_SEARCH)
        return json_reply(200, _hits([], total_as_int))

    def abort(self, job_id: str) -> Reply:
        if job_id != self.JOB:
            return _not_found(job_id)
        with self._lock:
            self._example = ABORTED
        return Reply(200, SEED_ABORTED)

    def _known(self, job_id: str) -> None:
        if job_id != self.JOB:
            raise LookupError(f"no job {job_id!r}")


class _LiveJobs(LiveJobs[str, _Job]):
    """Jobs that run, count up and end on simulated time, computed when a request comes."""

    def __init__(self, context: Context) -> None:
        if context.churn_seconds is not None and context.job_log_seconds is None:
            raise ValueError("siren: churn needs job_log_seconds, the log's retention for the runs of deleted jobs")
        self._log_seconds = context.job_log_seconds
        self._gone: deque[tuple[float, _Job]] = deque()  # (deleted at, job with its finished runs), oldest first
        super().__init__(context, "siren")

    def ids(self) -> list[str]:
        with self._lock:
            return [job.id for job in self._live()[0]]

    def job(self, job_id: str) -> Reply:
        return self._answer(job_id, abort=False)

    def running(self, shape: str) -> Reply:
        with self._lock:
            documents = []
            for job in self._live()[0]:
                run = job.current
                if run is not None and job.running:
                    documents.append(self._document(job, run))
            return json_reply(200, _shaped(shape, documents))

    def search(
        self, job_id: str | None, state: str | None, since: int | None, until: int | None, total_as_int: bool
    ) -> Reply:
        with self._lock:
            jobs, now = self._live()
            cutoff = self._retention(now)
            for job in jobs:  # the current run stays, however old
                job.runs = [run for run in job.runs[:-1] if run.started >= cutoff] + job.runs[-1:]
            for _, job in self._gone:
                job.runs = [run for run in job.runs if run.started >= cutoff]
            hits: list[dict[str, Any]] = []
            for job in (*jobs, *(job for _, job in self._gone)):
                for run in job.runs:
                    status = self._status(job, run)
                    if _passes(status, job_id, state, since, until):
                        hits.append({"_id": f"{job.id.replace('-', '')}{run.run_uuid}", "_source": {TYPE: status}})
            hits.sort(key=lambda hit: -int(hit["_source"][TYPE]["start_time"]))
            return json_reply(200, _hits(hits, total_as_int))

    def abort(self, job_id: str) -> Reply:
        return self._answer(job_id, abort=True)

    def _answer(self, job_id: str, abort: bool) -> Reply:
        """The job's document; with `abort`, after a running run is asked to abort."""
        with self._lock:
            try:
                job, now = self._current(job_id)
            except LookupError:
                return _not_found(job_id)
            run = job.current
            if run is None:
                return _not_found(job_id)
            if abort and run.state == RUNNING:
                self._enter(job, ABORTING, now)
                job.next_tick = now + self._period
            return json_reply(200, self._document(job, run))

    def _document(self, job: _Job, run: _Run) -> dict[str, Any]:
        return {"_id": job.id, "type": TYPE, "found": True, "status": self._status(job, run)}

    # --- life cycle, with the lock held ---------------------------------------------------------------

    def _retention(self, now: float) -> float:
        """The log's cutoff: runs that started before it are gone, and so are the jobs deleted before it."""
        if self._log_seconds is None:
            return -math.inf
        cutoff = now - self._log_seconds
        while self._gone and self._gone[0][0] < cutoff:
            self._gone.popleft()
        return cutoff

    def _retire(self, job: _Job, at: float) -> None:
        """A deleted job's finished runs stay in the log, as a history does, until they age out of it."""
        self._advance(job, at)
        job.runs = [run for run in job.runs if run.ended is not None]
        self._gone.append((at, job))

    def _key(self, job: _Job) -> str:
        return job.id

    def _parse(self, job_id: str) -> str:
        return job_id

    def _draw(self, job: _Job) -> str | None:
        run = job.current
        if run is not None and run.state == ABORTING:
            return ABORTED
        if job.running:
            return draw(job.rng, _ENDINGS)
        return RUNNING if job.rng.random() < _RESTART else None

    def _enter(self, job: _Job, state: str, at: float) -> None:
        """Move the job into `state` at `at`: running opens a new run, the others end or abort the current one."""
        self._integrate(job, at)
        run = job.current
        if state == RUNNING:
            if not job.running:
                job.runs.append(_Run(_run_uuid(job.rng), at))
            return
        if run is None or not job.running:
            run = _Run(_run_uuid(job.rng), at)  # a forced ending needs a run to end
            job.runs.append(run)
        if state == ABORTING:
            run.state, run.aborting = ABORTING, True
            return
        run.state, run.ended = state, at
        if state == ERROR:
            messages = job.rng.choice(_FAILURES)
            run.errors = tuple(message.format(source=job.source) for message in messages)

    def _restart_moves(self, job: _Job, failed: bool) -> tuple[str, ...]:
        ending = (ERROR,) if failed else (ABORTING, ABORTED)
        return (*(() if job.running else (RUNNING,)), *ending, RUNNING)

    def _integrate(self, job: _Job, until: float) -> None:
        run = job.current
        elapsed = until - job.marked
        if elapsed > 0 and run is not None and job.running:
            run.count += job.rate * min(elapsed, until - run.started)
        job.marked = max(job.marked, until)

    def _status(self, job: _Job, run: _Run) -> dict[str, Any]:
        count = int(run.count)
        status: dict[str, Any] = {
            "version": 1,
            "id": job.id,
            "is_running": run.state in (RUNNING, ABORTING),
        }
        if run.aborting:
            status["is_aborting"] = True
        status["start_time"] = _ms(run.started)
        if run.ended is not None:
            status["end_time"] = _ms(run.ended)
        status["infos"] = _INFOS[run.state]
        if run.errors:
            status["error"] = list(run.errors)
        status["state"] = run.state
        status["count"] = count
        if count:
            status["last_id"] = str(job.first_id + count - 1)
        return status

    def _new_job(self, index: int, rng: random.Random, now: float) -> _Job:
        base = _NAMES[index % len(_NAMES)]
        job = _Job(
            id=f"{base}-{index + 1:02d}",
            source=base.split("-")[0],
            rng=rng,
            rate=rng.uniform(100, 600),
            first_id=rng.randint(1, 5000),
            next_tick=now + self._period,
            marked=0.0,
        )
        if self._log_seconds is not None:  # idle since the log's start: the first look plays the ticks since
            job.next_tick = job.marked = now - self._log_seconds
            return job
        at = now - rng.uniform(6, 24) * 3600
        for _ in range(rng.randint(1, 3)):  # earlier runs in the job log
            job.marked = at
            self._enter(job, RUNNING, at)
            at += rng.uniform(60, 1800)
            self._enter(job, rng.choice((SUCCESSFUL, SUCCESSFUL, SUCCESSFUL, ERROR)), at)
            at += rng.uniform(600, 3600)
        start = _START[index % len(_START)]
        started = now - rng.uniform(120, 1800)
        job.marked = started
        self._enter(job, RUNNING, started)
        if start != RUNNING:
            ended = started + rng.uniform(30, now - started - 10)
            if start == ABORTED:
                self._enter(job, ABORTING, ended - 5)
            self._enter(job, start, ended)
        self._integrate(job, now)
        return job


def _passes(
    status: dict[str, Any], job_id: str | None, state: str | None, since: int | None, until: int | None
) -> bool:
    start = int(status.get("start_time") or 0)
    return (
        (job_id is None or status.get("id") == job_id)
        and (state is None or status.get("state") == state)
        and (since is None or start >= since)
        and (until is None or start <= until)
    )


def _shaped(shape: str, documents: list[dict[str, Any]]) -> Any:
    if shape == "list":
        return documents
    if shape == "map":
        return {document["_id"]: document["status"] for document in documents}
    if shape == "hits":
        return _hits([{"_id": d["_id"], "_source": {TYPE: d["status"]}} for d in documents], False)
    return {"jobs": documents}


def _hits(hits: list[dict[str, Any]], total_as_int: bool) -> dict[str, Any]:
    total: Any = len(hits) if total_as_int else {"value": len(hits), "relation": "eq"}
    return {"took": 1, "timed_out": False, "hits": {"total": total, "hits": hits}}


def _millis(text: str | None) -> int | None:
    if text is None or text == "":
        return None
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"failed to parse date field [{text}]: expected epoch milliseconds") from None


def _es_error(status: int, kind: str, reason: str, headers: dict[str, str] | None = None) -> Reply:
    cause: dict[str, Any] = {"type": kind, "reason": reason}
    if headers:
        cause["header"] = {name: [value] for name, value in headers.items()}
    document = {"error": {"root_cause": [cause], **cause}, "status": status}
    return Reply(status, json.dumps(document).encode(), headers=headers or {})


def _unauthenticated(reason: str) -> Reply:
    challenge = 'Basic realm="security" charset="UTF-8", ApiKey, Bearer realm="security"'
    return _es_error(401, "security_exception", reason, {"WWW-Authenticate": challenge})


def _not_found(job_id: str) -> Reply:
    return json_reply(404, {"_id": job_id, "type": TYPE, "found": False})


def _ms(at: float) -> int:
    return int(at * 1000)


def _run_uuid(rng: random.Random) -> str:
    value = f"{rng.getrandbits(128):032x}"
    return f"{value[:8]}-{value[8:12]}-{value[12:16]}-{value[16:20]}-{value[20:]}"
