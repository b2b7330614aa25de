"""Upstream safety on real loopback connections: size cap, no redirects, TLS verification, per-target CA, proxy."""

from __future__ import annotations

import http.server
import select
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import certifi
import pytest
import requests
from prometheus_client import CollectorRegistry

from exporter import http as upstream_http
from exporter.http import Deadline, Upstream, UpstreamError
from exporter.settings import TargetSettings
from exporter.telemetry import Telemetry
from tests.test_webconfig import CA

pytestmark = pytest.mark.timeout(60)
Handler = Callable[[http.server.BaseHTTPRequestHandler], None]


class Server:
    """A loopback HTTP(S) server whose handler is a function; it records every request line and headers."""

    def __init__(self, answer: Handler, host: str = "127.0.0.1", context: ssl.SSLContext | None = None) -> None:
        self.requests: list[tuple[str, dict[str, str]]] = []
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                outer.requests.append((self.requestline, dict(self.headers)))
                answer(self)

            do_POST = do_GET

            def do_CONNECT(self) -> None:
                outer.requests.append((self.requestline, dict(self.headers)))
                _tunnel(self)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer((host, 0), H)
        if context is not None:
            self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        scheme = "https" if context else "http"
        self.url = f"{scheme}://{host}:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _tunnel(handler: http.server.BaseHTTPRequestHandler) -> None:
    host, _, port = handler.path.rpartition(":")
    with socket.create_connection((host, int(port)), timeout=5) as upstream:
        handler.send_response(200, "Connection established")
        handler.end_headers()
        client = handler.connection
        while True:
            ready, _, _ = select.select([client, upstream], [], [], 5)
            if not ready:
                return
            for source in ready:
                data = source.recv(65536)
                if not data:
                    return
                (upstream if source is client else client).sendall(data)


def send(
    status: int, body: bytes = b'{"ok": true}', headers: dict[str, str] | None = None, length: bool = True
) -> Handler:
    def answer(h: http.server.BaseHTTPRequestHandler) -> None:
        h.send_response(status)
        for name, value in (headers or {}).items():
            h.send_header(name, value)
        if length:
            h.send_header("Content-Length", str(len(body)))
        else:
            h.send_header("Connection", "close")
            h.close_connection = True
        h.end_headers()
        h.wfile.write(body)

    return answer


@pytest.fixture
def servers() -> Iterator[Callable[..., Server]]:
    started: list[Server] = []

    def make(*args: Any, **kwargs: Any) -> Server:
        started.append(Server(*args, **kwargs))
        return started[-1]

    yield make
    for server in started:
        server.stop()


def upstream(**settings: Any) -> Upstream:
    return Upstream("test", TargetSettings(name="t", platform="test", **settings), Telemetry(CollectorRegistry()))


def call(client: Upstream, url: str, **kwargs: Any) -> Any:
    return client.request("GET", url, endpoint="test", deadline=Deadline(5), **kwargs)


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "no-content-length"])
def test_bodies_over_the_cap_are_refused(
    servers: Callable[..., Server], monkeypatch: pytest.MonkeyPatch, declared: bool
) -> None:
    monkeypatch.setattr(upstream_http, "MAX_BODY_BYTES", 64 * 1024)
    big = servers(send(200, b"x" * (200 * 1024), length=declared))
    small = servers(send(200, b"y" * (64 * 1024)))
    with pytest.raises(UpstreamError) as caught:
        call(upstream(), big.url + "/big")
    assert caught.value.reason == "invalid_response"
    assert "cap" in str(caught.value)
    assert call(upstream(), small.url + "/small").content == b"y" * (64 * 1024)


def test_production_cap_is_16_mib() -> None:
    assert upstream_http.MAX_BODY_BYTES == 16 * 1024 * 1024


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_reported_as_http_status_and_never_followed(servers: Callable[..., Server], status: int) -> None:
    elsewhere = servers(send(200), host="127.0.0.2")  # another loopback host
    origin = servers(send(status, b"", headers={"Location": elsewhere.url + "/steal"}))
    client = upstream()
    with pytest.raises(UpstreamError) as caught:
        call(client, origin.url + "/status", headers={"Authorization": "Basic c2VjcmV0OnNlY3JldA=="})
    assert (caught.value.reason, caught.value.status) == ("http_status", status)
    assert len(origin.requests) == 1
    assert elsewhere.requests == [], "the redirect target must never be contacted, with or without credentials"


@pytest.fixture
def https_upstream(tmp_path: Path, servers: Callable[..., Server]) -> tuple[Server, CA]:
    ca = CA(tmp_path, "upstream-ca")
    cert, key = ca.issue("upstream")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(cert), str(key))
    return servers(send(200), context=context), ca


def test_tls_is_verified_by_default_and_a_target_ca_file_is_used(
    https_upstream: tuple[Server, CA], monkeypatch: pytest.MonkeyPatch
) -> None:
    server, ca = https_upstream
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    with pytest.raises(UpstreamError) as caught:
        call(upstream(), server.url + "/")
    assert caught.value.reason == "connection"
    assert "TLS" in str(caught.value) or "certificate" in str(caught.value)
    assert call(upstream(tls={"ca_file": ca.ca_file}), server.url + "/").json() == {"ok": True}


def test_a_target_ca_file_wins_over_requests_ca_bundle(
    https_upstream: tuple[Server, CA], monkeypatch: pytest.MonkeyPatch
) -> None:
    server, ca = https_upstream
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", certifi.where())  # a bundle without the upstream's CA
    assert call(upstream(tls={"ca_file": ca.ca_file}), server.url + "/").status_code == 200
    with pytest.raises(UpstreamError):
        call(upstream(), server.url + "/")


def test_insecure_skip_verify_is_explicit(https_upstream: tuple[Server, CA]) -> None:
    server, _ = https_upstream
    assert call(upstream(tls={"insecure_skip_verify": True}), server.url + "/").status_code == 200


def test_a_target_proxy_is_used_and_wins_over_the_environment(
    servers: Callable[..., Server], monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy = servers(send(200, b'{"via": "proxy"}'))
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    response = call(upstream(proxy_url=proxy.url), "http://127.0.0.3:1/status")  # only the proxy can answer
    assert response.json() == {"via": "proxy"}
    assert proxy.requests[0][0] == "GET http://127.0.0.3:1/status HTTP/1.1"


def test_https_through_a_target_proxy_keeps_verifying_with_the_target_ca(
    https_upstream: tuple[Server, CA], servers: Callable[..., Server]
) -> None:
    server, ca = https_upstream
    proxy = servers(send(405))
    response = call(upstream(proxy_url=proxy.url, tls={"ca_file": ca.ca_file}), server.url + "/status")
    assert response.json() == {"ok": True}
    assert proxy.requests[0][0].startswith("CONNECT 127.0.0.1:")
    with pytest.raises(UpstreamError):  # same tunnel, no target CA: verification still fails
        call(upstream(proxy_url=proxy.url), server.url + "/status")


def test_the_environment_is_read_once_per_origin_not_per_request(
    servers: Callable[..., Server], monkeypatch: pytest.MonkeyPatch
) -> None:
    """requests reads the proxy variables and ~/.netrc on every request; the exporter reads the proxy variables
    once per origin and never ~/.netrc (credentials come from the configuration only)."""
    proxies: list[str] = []
    netrc: list[str] = []
    original = requests.sessions.get_environ_proxies

    def counting(url: str, no_proxy: Any = None) -> Any:
        proxies.append(url)
        return original(url, no_proxy=no_proxy)

    monkeypatch.setattr(requests.sessions, "get_environ_proxies", counting)
    monkeypatch.setattr(requests.sessions, "get_netrc_auth", lambda url, *_: netrc.append(url))
    first, second = servers(send(200, b"{}")), servers(send(200, b"{}"))
    client = upstream()
    for n in range(20):
        call(client, f"{first.url}/a/{n}")
        call(client, f"{second.url}/b/{n}")
    origins = sorted(url.split("/")[2] for url in proxies)
    assert origins == sorted(server.url.split("/")[2] for server in (first, second)) and netrc == []
