"""The exporter's HTTP endpoints as one WSGI application, and the threaded server that runs it.

`/metrics` collects every target, `/probe?target=NAME` one configured target (a name, never a URL),
`/healthz` and `/readyz` never touch an upstream, and `/` is a landing page without secrets.
"""

from __future__ import annotations

import gzip
import html
import socket
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import structlog
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import ThreadingWSGIServer, choose_encoder
from prometheus_client.registry import Collector

from exporter import __version__
from exporter.scrape import ExporterCollector, TargetRunner

log = structlog.get_logger("exporter.server")

StartResponse = Callable[[str, list[tuple[str, str]]], Any]
SCRAPE_TIMEOUT_MARGIN = 0.5


class _Merged(Collector):
    """A registry-shaped view of some targets plus the exporter's own metrics, for one exposition."""

    def __init__(self, parts: Sequence[Callable[[], Iterable[Any]]]) -> None:
        self._parts = parts

    def collect(self) -> Iterator[Any]:
        for part in self._parts:
            yield from part()


class ExporterApp:
    """Routes requests; holds no upstream state of its own."""

    def __init__(self, collector: ExporterCollector, self_registry: CollectorRegistry, telemetry_path: str) -> None:
        self.collector = collector
        self.self_registry = self_registry
        self.telemetry_path = telemetry_path
        self.ready = threading.Event()

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/") or "/"
        if environ.get("REQUEST_METHOD", "GET") not in ("GET", "HEAD"):
            return _plain(start_response, "405 Method Not Allowed", "only GET and HEAD are served\n")
        if path == self.telemetry_path:
            return self._expose(environ, start_response, list(self.collector.runners.values()), with_self=True)
        if path == "/probe":
            return self._probe(environ, start_response)
        if path == "/healthz":
            return _plain(start_response, "200 OK", "ok\n")
        if path == "/readyz":
            if self.ready.is_set():
                return _plain(start_response, "200 OK", "ready\n")
            return _plain(start_response, "503 Service Unavailable", "not ready\n")
        if path == "/":
            return self._landing(start_response)
        return _plain(start_response, "404 Not Found", "not found\n")

    def _probe(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        names = parse_qs(environ.get("QUERY_STRING", "")).get("target", [])
        if len(names) != 1 or not names[0]:
            return _plain(start_response, "400 Bad Request", "give exactly one target=NAME of a configured target\n")
        runner = self.collector.runners.get(names[0])
        if runner is None:
            known = ", ".join(sorted(self.collector.runners)) or "none"
            return _plain(start_response, "400 Bad Request", f"unknown target; configured targets: {known}\n")
        return self._expose(environ, start_response, [runner], with_self=False)

    def _expose(
        self, environ: dict[str, Any], start_response: StartResponse, runners: list[TargetRunner], with_self: bool
    ) -> Iterable[bytes]:
        budget = _scrape_budget(environ.get("HTTP_X_PROMETHEUS_SCRAPE_TIMEOUT_SECONDS"))
        parts: list[Callable[[], Iterable[Any]]] = [lambda: self.collector.collect_targets(runners, budget)]
        if with_self:
            parts.append(self.self_registry.collect)
        encoder, content_type = choose_encoder(environ.get("HTTP_ACCEPT", ""))
        body = encoder(_Merged(parts))
        headers = [("Content-Type", content_type)]
        if "gzip" in environ.get("HTTP_ACCEPT_ENCODING", ""):
            body = gzip.compress(body, compresslevel=1)
            headers.append(("Content-Encoding", "gzip"))
        headers.append(("Content-Length", str(len(body))))
        start_response("200 OK", headers)
        return [body]

    def _landing(self, start_response: StartResponse) -> Iterable[bytes]:
        rows = "".join(
            f"<tr><td>{html.escape(r.name)}</td><td>{html.escape(r.platform)}</td>"
            f'<td><a href="/probe?target={html.escape(r.name)}">probe</a></td></tr>'
            for r in self.collector.runners.values()
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


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        log.debug("request", line=format % args)


def parse_listen_address(address: str) -> tuple[str, int]:
    """`:9867`, `0.0.0.0:9867`, `[::1]:9867` -> (host, port)."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"listen address {address!r} is not HOST:PORT")
    host = host.strip("[]") or "0.0.0.0"  # noqa: S104 - an empty host means every interface, as for every exporter
    return host, int(port)


def serve(app: ExporterApp, address: str) -> WSGIServer:
    """Bind the listen address and return the server; the caller runs serve_forever()."""
    host, port = parse_listen_address(address)

    class Server(ThreadingWSGIServer):
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

    return make_server(host, port, app, server_class=Server, handler_class=_QuietHandler)
