"""Fake Informatica IICS Mass Ingestion Streaming (sisvc), with its v2/v3 login, logout and discovery.

Endpoint names (for faults and stats): login_v2, login_v3, logout, objects, status, jobs, statistics,
history. Everything is served from the simulator's root: the login answers point `baseApiUrl` and
`serverUrl` at `<url>/saas`, and the sisvc server URI is `<url>` itself.

Live mode: `jobs` dataflows named like ``orders-cdc-001`` with seeded UUIDs. Each moves on its own
seeded draws, once every `transition_seconds` of wall-clock time (computed when a request comes):
Deploying -> Up and Running (even flows) or Running (odd flows) -> sometimes Running with Warning or
Running with Error -> Stopped -> Undeployed -> Deploying. A deploy opens a new run (larger runId, a
new jobs record, counters from zero). The flows start spread over the states (running, warning,
deploying, stopped, running, error, never deployed, running, then again). Statistics grow a few
hundred messages a second while a flow runs. A flow never deployed answers `runId: null` in its
status, `[]` as history and 404 for statistics. The history lists every run, newest first, with its
`status`: the flow's while the run goes on, then how it ended (`Running with Error` for a run that ended
in error, `Stopped` for one stopped before its undeploy, else `Undeployed`). `restart(id, failed=...)`
ends the current run in error (redeployed from `Running with Error`) or stopped on purpose (Stopped,
Undeployed), and deploys a new run that is up at once. A jobs record has `endTime`/`duration` null until
its deploy ends, and its status is the flow's until the run is undeployed. With churn
(`churn_seconds`, see lifecycle.py) a deleted dataflow answers as an unknown one (SISVC_404) and
leaves the objects list. `rotate_credentials()` gives the user a new password: the old one is then
refused as any wrong one, while sessions opened with it live on.

Seed mode: the one dataflow of the seed pages; its status is page 000 and its jobs record for any
runId is page 001, byte for byte. Statistics and history answer 404: the seed pages have neither.

Error codes: IDS_085 (401, v3 bad login), UI_10000 (403, v2 bad login; a body that is not JSON
counts as bad credentials), AUTH_01 (401, session missing, unknown or idle for longer than
`session_idle_seconds`), SISVC_404 (unknown dataflow or run, or no run yet), SISVC_400 (bad query
parameter), SIM_<status> (an injected `error` fault). v2 login errors use the v2 shape, all others v3.
"""

from __future__ import annotations

import json
import random
import re
import secrets
import string
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.client import responses
from pathlib import Path
from typing import Any, Protocol

from exporter.simulator.lifecycle import LiveJobs, draw
from exporter.simulator.platforms import Context, Platform, Reply, Request, Route, SessionStore, integer, json_reply

DEPLOYING, UP, RUNNING = "Deploying", "Up and Running", "Running"
WARNING, ERROR = "Running with Warning", "Running with Error"
STOPPED, UNDEPLOYED = "Stopped", "Undeployed"
STATES = (DEPLOYING, UP, RUNNING, WARNING, ERROR, STOPPED, UNDEPLOYED)

# Share of the messages read that reach the targets, in the states where messages flow.
_FLOWING = {UP: 1.0, RUNNING: 1.0, WARNING: 0.9, ERROR: 0.5}
# Per tick: (next state, probability); the remaining probability keeps the state. UP stands for
# whichever healthy spelling the flow uses.
_MOVES: dict[str, tuple[tuple[str, float], ...]] = {
    DEPLOYING: ((UP, 0.7), (ERROR, 0.05)),
    UP: ((WARNING, 0.06), (ERROR, 0.03), (STOPPED, 0.04)),
    WARNING: ((UP, 0.4), (ERROR, 0.1), (STOPPED, 0.05)),
    ERROR: ((UP, 0.2), (STOPPED, 0.2)),
    STOPPED: ((UNDEPLOYED, 0.4),),
    UNDEPLOYED: ((DEPLOYING, 0.4),),
}
# States at start, by flow index, so that any three flows already show three states.
_START = (UP, WARNING, DEPLOYING, STOPPED, UP, ERROR, UNDEPLOYED, UP)
# Node statuses by flow state; in WARNING and ERROR the last node shows the trouble.
_NODE_STATUS = {DEPLOYING: "Deploying", STOPPED: "Stopped", UNDEPLOYED: "Undeployed"}
_TROUBLE = {
    WARNING: ("Warning", "Write latency to the target is above 30 seconds."),
    ERROR: ("Error", "Failed to write to the target: connection refused."),
}
_NAMES = (
    "orders-cdc",
    "payments-stream",
    "clickstream-kafka",
    "inventory-sync",
    "customer-cdc",
    "iot-telemetry",
    "app-logs",
    "shipments-cdc",
)
_SISVC = "/sisvc/monitor/v1"
_FLOW = r"(?P<flow>[^/]+)"
_ID_CHARS = string.ascii_uppercase + string.digits
_TYPE_QUERY = re.compile(r"""type\s*==\s*['"]?(\w+)['"]?""")


class _NotFoundError(LookupError):
    pass


def create(context: Context) -> Platform:
    return Informatica(context)


class Informatica:
    """The HTTP side: authentication, sessions, parameters and error shapes; documents come from a fleet."""

    name = "informatica"
    status_keys = frozenset({"status"})
    id_keys = frozenset({"dataflowId", "assetId", "id"})

    def __init__(self, context: Context) -> None:
        rng = context.rng(self.name)
        self._context = context
        self._username = "monitor"
        self._password = secrets.token_urlsafe(12)
        self._user_id = _code(rng, 22)
        self._org_id = _code(rng, 22)
        self._sessions = SessionStore(context.clock, context.session_idle_seconds)
        self._fleet: _Fleet = _SeedFleet() if context.seed else _LiveFleet(context, rng, self._org_id, self._username)
        self._listed_at = _iso(context.clock.now(), "Z")

    def routes(self) -> list[Route]:
        ids, infa = "IDS-SESSION-ID", "INFA-SESSION-ID"
        return [
            Route("POST", "/ma/api/v2/user/login", "login_v2", self._login_v2),
            Route("POST", "/saas/public/core/v3/login", "login_v3", self._login_v3),
            Route("POST", "/saas/public/core/v3/logout", "logout", self._logout),
            Route("GET", "/saas/public/core/v3/objects", "objects", self._guard(infa, self._objects)),
            Route("GET", f"{_SISVC}/status/dataflows/{_FLOW}", "status", self._guard(ids, self._status)),
            Route("GET", f"{_SISVC}/jobs/{_FLOW}/(?P<run>[^/]+)", "jobs", self._guard(ids, self._job)),
            Route("GET", f"{_SISVC}/statistics/dataflows/{_FLOW}", "statistics", self._guard(ids, self._statistics)),
            Route("GET", f"{_SISVC}/history/dataflows/{_FLOW}", "history", self._guard(ids, self._history)),
        ]

    def credentials(self) -> dict[str, str]:
        return {"username": self._username, "password": self._password}

    def rotate_credentials(self) -> None:
        self._password = secrets.token_urlsafe(12)

    def jobs(self) -> list[dict[str, str]]:
        return self._fleet.jobs()

    def set_state(self, job_id: str, state: str | None) -> None:
        self._fleet.set_state(job_id, state)

    def restart(self, job_id: str, *, failed: bool) -> None:
        self._fleet.restart(job_id, failed=failed)

    def error_reply(self, endpoint: str, status: int) -> Reply:
        phrase = responses.get(status, "Error")
        if endpoint == "login_v2":
            return _v2_error(status, f"SIM_{status}", phrase)
        return _v3_error(status, f"SIM_{status}", phrase)

    def auth_failure(self, endpoint: str) -> Reply:
        if endpoint == "login_v2":
            return _v2_error(403, "UI_10000", "Invalid user name or password.")
        if endpoint == "login_v3":
            return _v3_error(401, "IDS_085", "Invalid user name or password.")
        return _invalid_session()

    def expire_sessions(self) -> None:
        self._sessions.clear()

    def _guard(self, header: str, handler: Callable[[Request], Reply]) -> Callable[[Request], Reply]:
        """Wrap a handler so it answers only to a live session in `header`."""

        def guarded(request: Request) -> Reply:
            token = request.header(header)
            if token is None or not self._sessions.touch(token):
                return _invalid_session()
            try:
                return handler(request)
            except _NotFoundError as missing:
                return _v3_error(404, "SISVC_404", str(missing))

        return guarded

    def _authentic(self, request: Request) -> bool:
        try:
            body = request.json()
        except ValueError:
            return False
        return (
            isinstance(body, dict) and body.get("username") == self._username and body.get("password") == self._password
        )

    def _login_v2(self, request: Request) -> Reply:
        if not self._authentic(request):
            return self.auth_failure("login_v2")
        return json_reply(
            200,
            {
                "@type": "user",
                "id": self._user_id,
                "orgId": self._org_id,
                "orgUuid": self._org_id,
                "name": self._username,
                "firstName": "Ingestion",
                "lastName": "Monitor",
                "emails": "monitor@example.com",
                "timezone": "UTC",
                "forceChangePassword": False,
                "icSessionId": self._sessions.issue(),
                "serverUrl": f"{self._context.url()}/saas",
            },
        )

    def _login_v3(self, request: Request) -> Reply:
        if not self._authentic(request):
            return self.auth_failure("login_v3")
        return json_reply(
            200,
            {
                "products": [{"name": "Integration Cloud", "baseApiUrl": f"{self._context.url()}/saas"}],
                "userInfo": {
                    "sessionId": self._sessions.issue(),
                    "id": self._user_id,
                    "name": self._username,
                    "parentOrgId": self._org_id,
                    "orgId": self._org_id,
                    "orgName": "Simulated Org",
                    "groups": {},
                    "status": "Active",
                },
            },
        )

    def _logout(self, request: Request) -> Reply:
        token = request.header("INFA-SESSION-ID")
        if token is None or not self._sessions.touch(token):
            return _invalid_session()
        self._sessions.revoke(token)
        return Reply(204)

    def _objects(self, request: Request) -> Reply:
        query = request.arg("q")
        limit, skip = integer(request.arg("limit"), 100), integer(request.arg("skip"), 0)
        wanted = _TYPE_QUERY.fullmatch(query.strip()) if query is not None else None
        if query is not None and wanted is None:
            return _v3_error(400, "SISVC_400", f"Unsupported query: {query}")
        if limit is None or not 1 <= limit <= 200 or skip is None or skip < 0:
            return _v3_error(400, "SISVC_400", "limit must be 1 to 200 and skip 0 or more.")
        listed: list[dict[str, Any]] = (
            []
            if wanted is not None and wanted.group(1) != "SI_DATAFLOW"
            else [
                {
                    "id": job["id"],
                    "path": f"Default/{job['name']}",
                    "type": "SI_DATAFLOW",
                    "description": "",
                    "updatedBy": self._username,
                    "updateTime": self._listed_at,
                    "tags": [],
                    "sourceControl": None,
                    "customAttributes": None,
                }
                for job in self._fleet.jobs()
            ]
        )
        return json_reply(200, {"count": len(listed), "objects": listed[skip : skip + limit]})

    def _status(self, request: Request) -> Reply:
        return Reply(200, self._fleet.status(request.params["flow"]))

    def _job(self, request: Request) -> Reply:
        run_id = integer(request.params["run"], None)
        if run_id is None:
            raise _NotFoundError(f"Run {request.params['run']} not found.")
        return Reply(200, self._fleet.job(request.params["flow"], run_id))

    def _statistics(self, request: Request) -> Reply:
        intervals = integer(request.arg("intervals"), None)
        if intervals is None or intervals < 1:
            return _v3_error(400, "SISVC_400", "The intervals parameter is required (a positive integer).")
        return Reply(200, self._fleet.statistics(request.params["flow"]))

    def _history(self, request: Request) -> Reply:
        return Reply(200, self._fleet.history(request.params["flow"]))


class _Fleet(Protocol):
    """The dataflows and their documents, as JSON bytes; unknown ids raise _NotFoundError."""

    def jobs(self) -> list[dict[str, str]]: ...

    def set_state(self, flow_id: str, state: str | None) -> None: ...

    def restart(self, flow_id: str, *, failed: bool) -> None: ...

    def status(self, flow_id: str) -> bytes: ...

    def job(self, flow_id: str, run_id: int) -> bytes: ...

    def statistics(self, flow_id: str) -> bytes: ...

    def history(self, flow_id: str) -> bytes: ...


class _SeedFleet:
    """The seed pages' one dataflow, served byte for byte."""

    def __init__(self) -> None:
        seeds = Path(__file__).with_name("seeds")
        self._status = (seeds / "informatica_status.json").read_bytes()
        self._job = (seeds / "informatica_job.json").read_bytes()
        status = json.loads(self._status)
        self._id: str = status["dataflowId"]
        self._name: str = status["dataflowName"]

    def jobs(self) -> list[dict[str, str]]:
        return [{"id": self._id, "name": self._name}]

    def set_state(self, flow_id: str, state: str | None) -> None:
        self._known(flow_id)
        raise ValueError("seed mode serves the seed pages verbatim; its state cannot change")

    def restart(self, flow_id: str, *, failed: bool) -> None:
        self.set_state(flow_id, None)

    def status(self, flow_id: str) -> bytes:
        self._known(flow_id)
        return self._status

    def job(self, flow_id: str, run_id: int) -> bytes:
        self._known(flow_id)
        return self._job

    def statistics(self, flow_id: str) -> bytes:
        self._known(flow_id)
        raise _NotFoundError(f"No statistics for dataflow {flow_id}.")

    def history(self, flow_id: str) -> bytes:
        self._known(flow_id)
        raise _NotFoundError(f"No history for dataflow {flow_id}.")

    def _known(self, flow_id: str) -> None:
        if flow_id != self._id:
            raise _NotFoundError(f"Dataflow {flow_id} not found.")


@dataclass
class _Node:
    id: str
    name: str
    service_type: str


@dataclass
class _Run:
    run_id: int
    started: float
    deployed: float | None = None  # end of the deploy
    stopped: float | None = None
    undeployed: float | None = None
    end_status: str | None = None  # how the run ended, once undeployed
    in_messages: float = 0.0
    out_messages: float = 0.0


@dataclass
class _Flow:
    id: str
    name: str
    healthy: str
    nodes: list[_Node]
    graph: str
    rng: random.Random
    rate: float  # messages a second while running
    message_bytes: int
    task_id: str
    version: int
    marked: float  # counters are integrated up to this time
    next_tick: float
    state: str = UNDEPLOYED
    frozen: bool = False
    runs: list[_Run] = field(default_factory=list)


class _LiveFleet(LiveJobs[str, _Flow]):
    """Dataflows that move through their life cycle on simulated time, computed lazily per request."""

    def __init__(self, context: Context, rng: random.Random, org_id: str, username: str) -> None:
        self._org_id, self._username = org_id, username
        self._agent_id = "01" + _code(rng, 18, _ID_CHARS)
        self._last_run_id = 42000 + rng.randrange(10000)
        self._run_id_rng = rng
        super().__init__(context, "informatica")

    def jobs(self) -> list[dict[str, str]]:
        with self._lock:
            return [{"id": flow.id, "name": flow.name} for flow in self._live()[0]]

    def set_state(self, flow_id: str, state: str | None) -> None:
        if state is not None and state not in STATES:
            raise ValueError(f"unknown state {state!r}; known: {', '.join(STATES)}")
        super().set_state(flow_id, state)

    def status(self, flow_id: str) -> bytes:
        with self._lock:
            flow, now = self._current(flow_id)
            stamp = int(now) * 1000
            reports = [
                {
                    "name": f"{flow.name}_{node.name}",
                    "id": node.id,
                    "status": status,
                    "timestamp": stamp,
                    "message": message,
                }
                for node, (status, message) in zip(flow.nodes, _node_statuses(flow), strict=True)
            ]
            return _dump(
                {
                    "dataflowName": flow.name,
                    "dataflowId": flow.id,
                    "status": flow.state,
                    "timestamp": stamp,
                    "reports": reports,
                    "graph": flow.graph,
                    "version": flow.version,
                    "runId": flow.runs[-1].run_id if flow.runs else None,
                }
            )

    def job(self, flow_id: str, run_id: int) -> bytes:
        with self._lock:
            flow, _ = self._current(flow_id)
            run = next((run for run in flow.runs if run.run_id == run_id), None)
            if run is None:
                raise _NotFoundError(f"Run {run_id} of dataflow {flow_id} not found.")
            extra = {"id": flow.task_id, "version": flow.version, "agentGroupId": None}
            return _dump(
                {
                    "assetId": flow.id,
                    "assetName": flow.name,
                    "assetType": "SI_DATAFLOW",
                    "correlationId": None,
                    "duration": None if run.deployed is None else round(run.deployed - run.started),
                    "endTime": None if run.deployed is None else _iso(run.deployed),
                    "extraData": json.dumps(extra, separators=(",", ":")),
                    "location": "Default",
                    "runId": run.run_id,
                    "orgId": self._org_id,
                    "runtimeEnv": self._agent_id,
                    "startedBy": self._username,
                    "status": flow.state if run.undeployed is None else UNDEPLOYED,
                    "startTime": _iso(run.started),
                    "deployedVersion": flow.version,
                }
            )

    def statistics(self, flow_id: str) -> bytes:
        with self._lock:
            flow, _ = self._current(flow_id)
            if not flow.runs:
                raise _NotFoundError(f"Dataflow {flow_id} has never been deployed.")
            run = flow.runs[-1]
            read, written = int(run.in_messages), int(run.out_messages)
            nodes = [
                {
                    "id": node.id,
                    "name": node.name,
                    "inMessages": read,
                    "outMessages": read if node.service_type == "source" else written,
                    "inBytes": read * flow.message_bytes,
                    "outBytes": (read if node.service_type == "source" else written) * flow.message_bytes,
                }
                for node in flow.nodes
            ]
            return _dump(
                {
                    "dataflowId": flow.id,
                    "dataflowRunId": run.run_id,
                    "startTime": _ms(run.started),
                    "stopTime": None if run.stopped is None else _ms(run.stopped),
                    "inMessages": read,
                    "outMessages": written,
                    "inBytes": read * flow.message_bytes,
                    "outBytes": written * flow.message_bytes,
                    "nodes": nodes,
                }
            )

    def history(self, flow_id: str) -> bytes:
        with self._lock:
            flow, _ = self._current(flow_id)
            return _dump(
                [
                    {
                        "dataflowId": flow.id,
                        "dataflowName": flow.name,
                        "deployedAt": _ms(run.started),
                        "undeployedAt": None if run.undeployed is None else _ms(run.undeployed),
                        "dataflowVersion": flow.version,
                        "runId": run.run_id,
                        "status": run.end_status or flow.state,
                    }
                    for run in reversed(flow.runs)
                ]
            )

    def _missing(self, flow_id: str | None) -> LookupError:
        return _NotFoundError(f"Dataflow {flow_id} not found.")

    def _key(self, flow: _Flow) -> str:
        return flow.id

    def _parse(self, flow_id: str) -> str:
        return flow_id

    def _draw(self, flow: _Flow) -> str:
        state = draw(flow.rng, _MOVES[UP if flow.state in (UP, RUNNING) else flow.state])
        if state is None:
            return flow.state
        return flow.healthy if state == UP else state

    def _enter(self, flow: _Flow, state: str, at: float) -> None:
        """Enter `state` at time `at`: a deploy opens a new run; stop and undeploy close the current one."""
        self._integrate(flow, at)
        run = flow.runs[-1] if flow.runs else None
        if run is None or run.undeployed is not None:
            if state != UNDEPLOYED:
                flow.runs.append(_Run(self._new_run_id(), at, None if state == DEPLOYING else at))
        elif state == DEPLOYING and flow.state != DEPLOYING:
            _close(run, at, flow.state)
            flow.runs.append(_Run(self._new_run_id(), at))
        elif state == UNDEPLOYED:
            _close(run, at, flow.state)
        elif state != DEPLOYING:
            run.deployed = at if run.deployed is None else run.deployed
            run.stopped = (at if run.stopped is None else run.stopped) if state == STOPPED else None
        flow.state = state

    def _restart_moves(self, flow: _Flow, failed: bool) -> tuple[str, ...]:
        if failed:
            return ERROR, DEPLOYING, flow.healthy
        return STOPPED, UNDEPLOYED, DEPLOYING, flow.healthy

    def _integrate(self, flow: _Flow, until: float) -> None:
        elapsed = until - flow.marked
        if elapsed > 0 and flow.runs and flow.state in _FLOWING:
            run = flow.runs[-1]
            run.in_messages += flow.rate * elapsed
            run.out_messages += flow.rate * elapsed * _FLOWING[flow.state]
        flow.marked = max(flow.marked, until)

    def _new_run_id(self) -> int:
        self._last_run_id += self._run_id_rng.randint(1, 9)  # run ids are shared by the whole org
        return self._last_run_id

    def _new_job(self, index: int, rng: random.Random, now: float) -> _Flow:
        name = f"{_NAMES[index % len(_NAMES)]}-{index + 1:03d}"
        nodes = [_Node(_uuid(rng), f"{name}_source", "source"), _Node(_uuid(rng), f"{name}_target", "target")]
        if index % 3 == 2:
            nodes.append(_Node(_uuid(rng), f"{name}_archive", "target"))
        flow = _Flow(
            id=_uuid(rng),
            name=name,
            healthy=UP if index % 2 == 0 else RUNNING,
            nodes=nodes,
            graph=_graph(self._agent_id, nodes, rng),
            rng=rng,
            rate=rng.uniform(100, 500),
            message_bytes=rng.randint(200, 2000),
            task_id=_code(rng, 22),
            version=rng.randint(1, 5),
            marked=0.0,
            next_tick=now + self._period,
        )
        for at, state in _past(_START[index % len(_START)], flow.healthy, rng, now):
            self._enter(flow, state, at)
        self._integrate(flow, now)
        return flow


def _past(state: str, healthy: str, rng: random.Random, now: float) -> list[tuple[float, str]]:
    """Backdated moves that leave a new flow in `state` with up to two earlier runs behind it."""
    if state == UNDEPLOYED:
        return []  # never deployed
    moves: list[tuple[float, str]] = []
    at = now - rng.uniform(24, 48) * 3600
    for _ in range(rng.randint(0, 2)):
        moves.append((at, DEPLOYING))
        at += rng.uniform(30, 300)
        moves.append((at, healthy))
        at += rng.uniform(1, 4) * 3600
        moves.append((at, STOPPED))
        at += rng.uniform(60, 600)
        moves.append((at, UNDEPLOYED))
        at += rng.uniform(60, 3600)
    if state == DEPLOYING:
        return [*moves, (now - rng.uniform(1, 10), DEPLOYING)]
    started = now - rng.uniform(0.5, 6) * 3600
    moves += [(started, DEPLOYING), (started + rng.uniform(30, 300), healthy)]
    if state != UP:
        moves.append((now - rng.uniform(60, 600), state))
    return moves


def _close(run: _Run, at: float, status: str) -> None:
    """Undeploy the run at `at`, from the flow's `status` then: its end status says how it ended."""
    run.deployed = at if run.deployed is None else run.deployed
    run.stopped = at if run.stopped is None else run.stopped
    run.undeployed = at
    run.end_status = status if status in (ERROR, STOPPED) else UNDEPLOYED


def _node_statuses(flow: _Flow) -> list[tuple[str, str | None]]:
    statuses: list[tuple[str, str | None]] = [(_NODE_STATUS.get(flow.state, RUNNING), None)] * len(flow.nodes)
    if flow.state in _TROUBLE:
        statuses[-1] = _TROUBLE[flow.state]
    return statuses


def _graph(agent_id: str, nodes: list[_Node], rng: random.Random) -> str:
    """The topology as the status resource carries it: a JSON document inside a string."""
    source = nodes[0]
    configs = {
        "source": [{"key": "_nativeName", "value": "src"}, {"key": "consumerProperties", "value": None}],
        "target": [
            {"key": "_nativeName", "value": "trgt"},
            {"key": "batchSize", "value": "1048576"},
            {"key": "mdFetchTimeout", "value": "5000"},
            {"key": "producerProperties", "value": None},
        ],
    }
    graph = {
        "agentId": agent_id,
        "nodes": [
            {
                "id": node.id,
                "name": node.name,
                "serviceType": node.service_type,
                "config": configs[node.service_type],
                "connectionId": "01" + _code(rng, 18, _ID_CHARS),
                "type": "",
                "metaMetadata": "",
            }
            for node in nodes
        ],
        "edges": [
            {
                "id": _uuid(rng),
                "name": f"{source.name}_{node.name}",
                "from": source.name,
                "to": node.name,
                "type": "success",
                "config": [],
                "metaMetadata": "",
            }
            for node in nodes[1:]
        ],
        "runtimeOptions": None,
    }
    return json.dumps(graph, separators=(",", ":"))


def _v3_error(status: int, code: str, message: str) -> Reply:
    return json_reply(
        status, {"error": {"code": code, "message": message, "requestId": secrets.token_urlsafe(16), "details": None}}
    )


def _invalid_session() -> Reply:
    return _v3_error(401, "AUTH_01", "Invalid session")


def _v2_error(status: int, code: str, description: str) -> Reply:
    return json_reply(status, {"code": code, "description": description, "statusCode": status, "@type": "error"})


def _dump(document: Any) -> bytes:
    return json.dumps(document).encode()


def _ms(at: float) -> int:
    return int(at * 1000)


def _iso(at: float, zone: str = "+0000") -> str:
    """Times as the jobs resource writes them: 2022-02-14T04:04:13.000+0000."""
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + zone


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _code(rng: random.Random, length: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    """An IICS-style id such as 2lFy0UUNnlnbjhaoT3TSqw."""
    return "".join(rng.choice(alphabet) for _ in range(length))
