"""The simulator's HTTP server: routing to the platforms, faults, request stats and the /_sim/ control API.

Control API (for tests that drive the simulator from another process):
    GET    /_sim/jobs                              every platform's jobs: {platform: [{id, name}]}
    GET    /_sim/stats                             {"requests": [{platform, endpoint, method, count}]}
    POST   /_sim/reset-stats
    POST   /_sim/faults                            a fault rule as JSON (see faults.py) -> {"id": ...}
    DELETE /_sim/faults                            clear all fault rules
    POST   /_sim/<platform>/jobs/<job_id>/state    {"state": "<vendor state>"} forces and freezes a job;
                                                   {"state": null} resumes its life cycle
    POST   /_sim/<platform>/jobs/<job_id>/fail-and-restart
                                                   the job's current run ends failed and a new run starts at
                                                   once (the job is running again, its history holds the
                                                   failed run as the vendor's would)
    POST   /_sim/<platform>/jobs/<job_id>/stop-and-restart
                                                   the same with an intentional stop (Siren: an abort)
    POST   /_sim/clock                             {"advance": SECONDS} moves the simulated clock forward
                                                   -> {"now": <epoch seconds>}
    POST   /_sim/<platform>/credentials            a new random secret for the platform -> its new
                                                   credentials document (as `Simulator.credentials`)
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import socket
import socketserver
import sys
import threading
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from exporter.simulator.faults import FaultTable, NoAnswer, Outcome, Streamed, resolve
from exporter.simulator.huawei_iam import TOKEN_SECONDS
from exporter.simulator.platforms import (
    PLATFORMS,
    Clock,
    Context,
    Platform,
    Reply,
    Request,
    Route,
    create,
    json_reply,
)

log = logging.getLogger(__name__)

_Dispatch = Callable[[str, str, Mapping[str, list[str]], Mapping[str, str], bytes], Outcome]


@dataclass(frozen=True)
class SimulatorOptions:
    """How to serve: `platforms` None means every registered platform; `seed` serves the seed pages.

    `churn_seconds`: replace the oldest live job of each platform with a new one this often (Siren then
    needs `job_log_seconds`, how long its log keeps the runs of deleted jobs). `token_seconds`: how long an
    IAM token stays valid.
    """

    host: str = "127.0.0.1"
    port: int = 0
    jobs: int = 3
    seed: bool = False
    latency_seconds: float = 0.0
    session_idle_seconds: float = 1800.0
    transition_seconds: float = 20.0
    random_seed: int = 1
    platforms: Sequence[str] | None = None
    job_log_seconds: float | None = None
    churn_seconds: float | None = None
    token_seconds: float = TOKEN_SECONDS


class Simulator:
    """The vendors' side on one port; stop() and restart() keep jobs and sessions, as a network cut would."""

    def __init__(self, options: SimulatorOptions | None = None) -> None:
        self.options = options = options or SimulatorOptions()
        if options.jobs < 0 or options.transition_seconds <= 0 or options.session_idle_seconds <= 0:
            raise ValueError("jobs must be 0 or more; transition and session idle seconds above 0")
        if options.job_log_seconds is not None and options.job_log_seconds <= 0:
            raise ValueError("job log seconds must be above 0")
        if options.churn_seconds is not None and (options.churn_seconds <= 0 or options.seed):
            raise ValueError("churn seconds must be above 0, and churn needs live jobs (not seed mode)")
        if options.token_seconds <= 0:
            raise ValueError("token seconds must be above 0")
        self.clock = Clock()
        context = Context(
            jobs=options.jobs,
            seed=options.seed,
            session_idle_seconds=options.session_idle_seconds,
            transition_seconds=options.transition_seconds,
            random_seed=options.random_seed,
            clock=self.clock,
            url=lambda: self.url,
            token_seconds=options.token_seconds,
            job_log_seconds=options.job_log_seconds,
            churn_seconds=options.churn_seconds,
        )
        names = PLATFORMS if options.platforms is None else tuple(options.platforms)
        self._platforms = {name: create(name, context) for name in names}
        routes = {name: platform.routes() for name, platform in self._platforms.items()}
        self._routes = [(self._platforms[name], route) for name, listed in routes.items() for route in listed]
        endpoints = {name: [route.endpoint for route in listed] for name, listed in routes.items()}
        self.faults = FaultTable(options.random_seed, endpoints)
        self._stats: Counter[tuple[str, str, str]] = Counter()
        self._stats_lock = threading.Lock()
        self._port = options.port
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        if self._port == 0:
            raise RuntimeError("the simulator has no port until it starts")
        return f"http://{self.options.host}:{self._port}"

    @property
    def platforms(self) -> tuple[str, ...]:
        """The platforms served, in the order of the options."""
        return tuple(self._platforms)

    @property
    def credentials(self) -> dict[str, dict[str, str]]:
        return {name: platform.credentials() for name, platform in self._platforms.items()}

    def rotate_credentials(self, platform: str) -> dict[str, str]:
        """A new random secret for `platform`, as an operator's rotation; its new credentials document."""
        served = self._platforms[platform]
        served.rotate_credentials()
        return served.credentials()

    def jobs(self, platform: str) -> list[dict[str, str]]:
        return self._platforms[platform].jobs()

    def platform(self, name: str) -> Platform:
        return self._platforms[name]

    def stats(self) -> dict[tuple[str, str, str], int]:
        """Requests served per (platform, endpoint, method), faulted ones included."""
        with self._stats_lock:
            return dict(self._stats)

    def reset_stats(self) -> None:
        with self._stats_lock:
            self._stats.clear()

    def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("the simulator is already running")
        self._stopping.clear()
        self._server = _Server((self.options.host, self._port), self._dispatch, self._stopping)
        self._port = int(self._server.socket.getsockname()[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="simulator", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving, cut open connections (hanging ones included) and free the port."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.close_connections()
        server.server_close()
        if self._thread is not None:
            self._thread.join()

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> Simulator:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()

    def _dispatch(
        self, method: str, path: str, query: Mapping[str, list[str]], headers: Mapping[str, str], body: bytes
    ) -> Outcome:
        if path.startswith("/_sim/"):
            return self._control(method, path.removeprefix("/_sim/").split("/"), body)
        found = self._route(method, path)
        if isinstance(found, Reply):
            return found
        platform, route, params = found
        with self._stats_lock:
            self._stats[platform.name, route.endpoint, method] += 1
        request = Request(method, path, params, query, headers, body)
        if self.options.latency_seconds:
            self._stopping.wait(self.options.latency_seconds)
        fired = self.faults.fire(platform.name, route.endpoint)
        return resolve(fired, platform, route.endpoint, lambda: route.handler(request), self._stopping.wait)

    def _route(self, method: str, path: str) -> tuple[Platform, Route, dict[str, str]] | Reply:
        """The platform route for the request, or the 404 or 405 answer."""
        allowed = []
        for platform, route in self._routes:
            params = route.match(path)
            if params is not None and route.method == method:
                return platform, route, {name: unquote(value) for name, value in params.items()}
            if params is not None:
                allowed.append(route.method)
        if allowed:
            return Reply(405, headers={"Allow": ", ".join(allowed)})
        return json_reply(404, {"error": f"no such path: {path}"})

    def _control(self, method: str, parts: list[str], body: bytes) -> Reply:
        match method, parts:
            case "GET", ["jobs"]:
                return json_reply(200, {name: platform.jobs() for name, platform in self._platforms.items()})
            case "GET", ["stats"]:
                counts = sorted(self.stats().items())
                return json_reply(
                    200,
                    {"requests": [{"platform": p, "endpoint": e, "method": m, "count": n} for (p, e, m), n in counts]},
                )
            case "POST", ["reset-stats"]:
                self.reset_stats()
                return Reply(204)
            case "POST", ["faults"]:
                try:
                    return json_reply(201, {"id": self.faults.add(_json_object(body))})
                except ValueError as problem:
                    return json_reply(400, {"error": str(problem)})
            case "DELETE", ["faults"]:
                self.faults.clear()
                return Reply(204)
            case "POST", ["clock"]:
                return self._advance(body)
            case "POST", [name, "credentials"]:
                return self._rotate(unquote(name))
            case "POST", [name, "jobs", job_id, "state"]:
                return self._force(unquote(name), unquote(job_id), body)
            case "POST", [name, "jobs", job_id, ("fail-and-restart" | "stop-and-restart") as action]:
                return self._restart(unquote(name), unquote(job_id), failed=action == "fail-and-restart")
        return json_reply(404, {"error": f"no control endpoint {method} /_sim/{'/'.join(parts)}"})

    def _advance(self, body: bytes) -> Reply:
        try:
            seconds = _json_object(body).get("advance")
        except ValueError as problem:
            return json_reply(400, {"error": str(problem)})
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not 0 <= seconds < math.inf:
            return json_reply(400, {"error": "advance must be a number of seconds, 0 or more"})
        self.clock.advance(seconds)
        return json_reply(200, {"now": self.clock.now()})

    def _rotate(self, name: str) -> Reply:
        if name not in self._platforms:
            return _not_served(name)
        return json_reply(200, self.rotate_credentials(name))

    def _force(self, name: str, job_id: str, body: bytes) -> Reply:
        platform = self._platforms.get(name)
        if platform is None:
            return _not_served(name)
        try:
            state = _json_object(body).get("state")
            if state is not None and not isinstance(state, str):
                raise ValueError("state must be a string or null")
            platform.set_state(job_id, state)
        except LookupError as missing:
            return json_reply(404, {"error": str(missing)})
        except ValueError as problem:
            return json_reply(400, {"error": str(problem)})
        return json_reply(200, {"platform": name, "id": job_id, "state": state, "frozen": state is not None})

    def _restart(self, name: str, job_id: str, *, failed: bool) -> Reply:
        platform = self._platforms.get(name)
        if platform is None:
            return _not_served(name)
        try:
            platform.restart(job_id, failed=failed)
        except LookupError as missing:
            return json_reply(404, {"error": str(missing)})
        except ValueError as problem:
            return json_reply(400, {"error": str(problem)})
        return json_reply(200, {"platform": name, "id": job_id, "ended": "failed" if failed else "stopped"})


def _not_served(name: str) -> Reply:
    return json_reply(404, {"error": f"platform {name!r} is not served"})


def _json_object(body: bytes) -> dict[str, Any]:
    document = json.loads(body or b"null")
    if not isinstance(document, dict):
        raise ValueError("the body must be a JSON object")
    return document


class _Server(ThreadingHTTPServer):
    """Threads per connection; keeps track of open connections so stop() can cut them."""

    daemon_threads = True
    block_on_close = False
    request_queue_size = 1024  # the default 5 resets connects when a client opens many at once

    def __init__(self, address: tuple[str, int], dispatch: _Dispatch, stopping: threading.Event) -> None:
        self.dispatch = dispatch
        self.stopping = stopping
        self._connections: set[socket.socket] = set()
        self._lock = threading.Lock()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        """Bind without HTTPServer's reverse DNS lookup of the host, which can take seconds."""
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), int(self.server_address[1])

    def track(self, connection: socket.socket, is_open: bool) -> None:
        with self._lock:
            if is_open:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    def close_connections(self) -> None:
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):  # the client may have closed it already
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients that go away (timeouts, closed pools, stop()) are normal here, not errors."""
        if isinstance(sys.exc_info()[1], OSError):
            log.debug("connection from %s ended early", client_address, exc_info=True)
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in two writes: without it, 40 ms per request
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, True)

    def finish(self) -> None:
        self.server.track(self.connection, False)
        super().finish()

    def do_GET(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        url = urlsplit(self.path)
        headers = {name.lower(): value for name, value in self.headers.items()}
        outcome = self.server.dispatch(self.command, url.path, parse_qs(url.query), headers, body)
        if isinstance(outcome, NoAnswer):
            self.server.stopping.wait(outcome.seconds)
            self.close_connection = True
        elif isinstance(outcome, Streamed):
            self._answer(200, "application/json", {}, outcome.size)
            for chunk in outcome.chunks():
                self.wfile.write(chunk)
        else:
            self._answer(outcome.status, outcome.content_type, outcome.headers, len(outcome.body))
            self.wfile.write(outcome.body)

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def _answer(self, status: int, content_type: str, headers: Mapping[str, str], length: int) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if status != 204:
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(length))
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)
