"""The exporter's HTTP endpoints as one WSGI application, and the threaded server that runs it.

`/metrics` collects every target, `/probe?target=NAME` one configured target (a name, never a URL),
`/healthz` and `/readyz` never touch an upstream, `/` is a landing page without secrets, and
`POST /-/reload` re-reads the configuration. With a web configuration, each connection is checked for
TLS in its own thread (a slow handshake never blocks the others) and plain HTTP gets a 400.
"""

from __future__ import annotations

import html
import socket
import ssl
import threading
import zlib
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import structlog
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import ThreadingWSGIServer

from exporter import __version__
from exporter.exposition import Exposition, negotiate
from exporter.scrape import Runners, TargetRunner
from exporter.webconfig import WebConfigHolder, protect

log = structlog.get_logger("exporter.server")

StartResponse = Callable[[str, list[tuple[str, str]]], Any]
SCRAPE_TIMEOUT_MARGIN = 0.5
HANDSHAKE_TIMEOUT_SECONDS = 10.0
_TLS_RECORD_HANDSHAKE = 0x16


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

    def swap(self, runners: Runners) -> Runners:
        """Serve `runners` from the next request on; return the ones they replace (the caller closes them)."""
        old, self.runners = self.runners, runners
        return old

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
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
        budget = _scrape_budget(environ.get("HTTP_X_PROMETHEUS_SCRAPE_TIMEOUT_SECONDS"))
        fmt = negotiate(environ.get("HTTP_ACCEPT", ""))
        collection = runners.begin(selected, budget)
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


def serve(app: ExporterApp, address: str, web: WebConfigHolder | None = None) -> WSGIServer:
    """Bind the listen address and return the server; the caller runs serve_forever().

    `web` (the `--web.config.file` in force, replaceable by a reload) adds TLS and basic auth.
    """
    host, port = parse_listen_address(address)
    holder = web or WebConfigHolder()

    class Server(ThreadingWSGIServer):
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

        def finish_request(self, request: Any, client_address: Any) -> None:
            """Runs in the connection's own thread: TLS first when configured, then the WSGI handler."""
            config = holder.current
            if config.ssl_context is None:
                super().finish_request(request, client_address)
                return
            secured = _handshake(request, config.ssl_context)
            if secured is None:
                return
            try:
                if config.tls is not None and not config.tls.allows(secured.getpeercert()):
                    log.info("client certificate not allowed", client=client_address[0])
                    return
                secured.settimeout(None)
                super().finish_request(secured, client_address)
            finally:
                secured.close()

    return make_server(host, port, protect(app, holder), server_class=Server, handler_class=_QuietHandler)


def _handshake(raw: socket.socket, context: ssl.SSLContext) -> ssl.SSLSocket | None:
    """The TLS connection, or None after answering plain HTTP with a 400 or a failed handshake."""
    raw.settimeout(HANDSHAKE_TIMEOUT_SECONDS)
    try:
        first = raw.recv(1, socket.MSG_PEEK)
        if first and first[0] != _TLS_RECORD_HANDSHAKE:
            raw.sendall(
                b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n"
                b"Client sent an HTTP request to an HTTPS server.\n"
            )
            return None
        if not first:
            return None
        secured = context.wrap_socket(raw, server_side=True, do_handshake_on_connect=False)
    except OSError as exc:
        log.debug("connection closed before TLS", error=str(exc))
        return None
    try:
        secured.do_handshake()
    except (OSError, ssl.SSLError) as exc:
        log.debug("TLS handshake failed", error=str(exc))
        secured.close()
        return None
    return secured
