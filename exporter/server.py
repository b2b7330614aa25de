"""The exporter's HTTP endpoints as one WSGI application, and the server that runs it (exporter.httpserver).

`/metrics` collects every target, `/probe?target=NAME` one configured target (a name, never a URL),
`/healthz` and `/readyz` never touch an upstream, `/` is a landing page without secrets, and
`POST /-/reload` re-reads the configuration. HEAD answers headers only, and HEAD on a scrape path collects
nothing. Scrapes past `--web.max-requests` are refused at once with a 503 (exporter.scrapegate).
"""

from __future__ import annotations

import html
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from urllib.parse import parse_qs

from prometheus_client import CollectorRegistry

from exporter import __version__
from exporter.exposition import Exposition, Format, negotiate
from exporter.httpserver import ExporterServer, ServerLimits
from exporter.scrape import Runners, TargetRunner
from exporter.scrapegate import BURST_REUSE_SECONDS, ScrapeGate
from exporter.webconfig import WebConfigHolder, protect

StartResponse = Callable[[str, list[tuple[str, str]]], Any]
SCRAPE_TIMEOUT_MARGIN = 0.5


class ExporterApp:
    """Routes requests; holds no upstream state of its own."""

    def __init__(
        self, runners: Runners, exposition: Exposition, self_registry: CollectorRegistry, telemetry_path: str
    ) -> None:
        self.runners = runners
        self.exposition = exposition
        self.self_registry = self_registry
        self.telemetry_path = telemetry_path
        self.ready = threading.Event()
        self.reload: Callable[[], tuple[bool, str]] | None = None
        self.scrapes = ScrapeGate()

    def swap(self, runners: Runners) -> Runners:
        """Serve `runners` from the next request on; return the ones they replace (the caller closes them)."""
        old, self.runners = self.runners, runners
        return old

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        body = self._route(environ, start_response)
        return [] if environ.get("REQUEST_METHOD") == "HEAD" else body

    def _route(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/") or "/"
        method = environ.get("REQUEST_METHOD", "GET")
        if path == "/-/reload":
            if method != "POST":
                return _plain(start_response, "405 Method Not Allowed", "use POST to reload\n")
            return self._reload(start_response)
        if method not in ("GET", "HEAD"):
            return _plain(start_response, "405 Method Not Allowed", "only GET and HEAD are served\n")
        runners = self.runners  # one configuration per request, even across a reload
        if path == self.telemetry_path:
            return self._expose(environ, start_response, runners, list(runners.by_name.values()), True)
        if path == "/probe":
            return self._probe(environ, start_response, runners)
        if path == "/healthz":
            return _plain(start_response, "200 OK", "ok\n")
        if path == "/readyz":
            if self.ready.is_set():
                return _plain(start_response, "200 OK", "ready\n")
            return _plain(start_response, "503 Service Unavailable", "not ready\n")
        if path == "/":
            return self._landing(start_response, runners)
        return _plain(start_response, "404 Not Found", "not found\n")

    def _reload(self, start_response: StartResponse) -> Iterable[bytes]:
        if self.reload is None:
            return _plain(start_response, "503 Service Unavailable", "reload is not available\n")
        ok, message = self.reload()
        if ok:
            return _plain(start_response, "200 OK", message + "\n")
        return _plain(start_response, "500 Internal Server Error", message + "\n")

    def _probe(self, environ: dict[str, Any], start_response: StartResponse, runners: Runners) -> Iterable[bytes]:
        names = parse_qs(environ.get("QUERY_STRING", "")).get("target", [])
        if len(names) != 1 or not names[0]:
            return _plain(start_response, "400 Bad Request", "give exactly one target=NAME of a configured target\n")
        runner = runners.by_name.get(names[0])
        if runner is None:
            known = ", ".join(sorted(runners.by_name)) or "none"
            return _plain(start_response, "400 Bad Request", f"unknown target; configured targets: {known}\n")
        return self._expose(environ, start_response, runners, [runner], False)

    def _expose(
        self,
        environ: dict[str, Any],
        start_response: StartResponse,
        runners: Runners,
        selected: list[TargetRunner],
        with_self: bool,
    ) -> Iterable[bytes]:
        fmt = negotiate(environ.get("HTTP_ACCEPT", ""))
        if environ.get("REQUEST_METHOD") == "HEAD":  # what a scrape would answer with, without collecting
            start_response("200 OK", [("Content-Type", fmt.content_type)])
            return []
        if not self.scrapes.enter():
            why = "the exporter is stopping" if self.scrapes.closed else "too many scrapes at once (--web.max-requests)"
            return _plain(start_response, "503 Service Unavailable", why + "\n")
        try:
            return _Admitted(self._collect(environ, start_response, runners, selected, fmt, with_self), self.scrapes)
        except BaseException:
            self.scrapes.leave()
            raise

    def _collect(
        self,
        environ: dict[str, Any],
        start_response: StartResponse,
        runners: Runners,
        selected: list[TargetRunner],
        fmt: Format,
        with_self: bool,
    ) -> list[bytes]:
        budget = _scrape_budget(environ.get("HTTP_X_PROMETHEUS_SCRAPE_TIMEOUT_SECONDS"))
        reuse = BURST_REUSE_SECONDS if self.scrapes.running > 1 else 0.0  # other scrapes at once: a burst
        collection = runners.begin(selected, budget, reuse, self.scrapes.cut)
        if collection.in_flight:
            self.exposition.release()
        chunks = self.exposition.chunks(collection.outputs(), fmt, self.self_registry if with_self else None)
        headers = [("Content-Type", fmt.content_type)]
        if "gzip" in environ.get("HTTP_ACCEPT_ENCODING", ""):
            packer = zlib.compressobj(1, zlib.DEFLATED, 31)  # gzip framing; chunk by chunk, never joined first
            chunks = [b"".join([*(packer.compress(chunk) for chunk in chunks), packer.flush()])]
            headers.append(("Content-Encoding", "gzip"))
        headers.append(("Content-Length", str(sum(len(chunk) for chunk in chunks))))
        start_response("200 OK", headers)
        return chunks

    def _landing(self, start_response: StartResponse, runners: Runners) -> Iterable[bytes]:
        rows = "".join(
            f"<tr><td>{html.escape(r.name)}</td><td>{html.escape(r.platform)}</td>"
            f'<td><a href="/probe?target={html.escape(r.name)}">probe</a></td></tr>'
            for r in runners.by_name.values()
        )
        page = (
            "<!doctype html><html><head><title>ingestion-exporter</title></head><body>"
            f"<h1>ingestion-exporter</h1><p>Version {html.escape(__version__)}</p>"
            f'<ul><li><a href="{html.escape(self.telemetry_path)}">Metrics</a></li>'
            '<li><a href="/healthz">Health</a></li><li><a href="/readyz">Readiness</a></li></ul>'
            f"<h2>Targets</h2><table><tr><th>Name</th><th>Platform</th><th></th></tr>{rows}</table>"
            "</body></html>"
        )
        body = page.encode()
        start_response("200 OK", [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(body)))])
        return [body]


def _scrape_budget(header: str | None) -> float | None:
    """Prometheus says how long it will wait; finish a little before that."""
    try:
        return max(0.5, float(header) - SCRAPE_TIMEOUT_MARGIN) if header else None
    except ValueError:
        return None


def _plain(start_response: StartResponse, status: str, text: str) -> Iterable[bytes]:
    body = text.encode()
    start_response(status, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))])
    return [body]


class _Admitted:
    """A scrape's body; the scrape counts against --web.max-requests until the server has sent it (close())."""

    def __init__(self, chunks: list[bytes], gate: ScrapeGate) -> None:
        self._chunks = chunks
        self._gate: ScrapeGate | None = gate

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._chunks)

    def close(self) -> None:
        gate, self._gate = self._gate, None
        if gate is not None:
            gate.leave()


def parse_listen_address(address: str) -> tuple[str, int]:
    """`:9867`, `0.0.0.0:9867`, `[::1]:9867` -> (host, port)."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"listen address {address!r} is not HOST:PORT")
    host = host.strip("[]") or "0.0.0.0"  # noqa: S104 - an empty host means every interface, as for every exporter
    return host, int(port)


def serve(
    app: ExporterApp, address: str, web: WebConfigHolder | None = None, limits: ServerLimits | None = None
) -> ExporterServer:
    """Bind the listen address and return the server; the caller runs serve_forever().

    `web` (the `--web.config.file` in force, replaceable by a reload) adds TLS and basic auth; `limits` are the
    timeouts and the scrape limit (the flags' defaults when not given).
    """
    holder = web or WebConfigHolder()
    limits = limits or ServerLimits()
    app.scrapes.limit = limits.max_requests
    server = ExporterServer(parse_listen_address(address), protect(app, holder), holder, limits)
    server.prepare()
    return server
