"""The scrape budget holds whatever the upstream does: trickling bodies, several stuck targets."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from prometheus_client import CollectorRegistry

from exporter.collectors.base import ErrorTracker, ScrapeContext, TargetCollector
from exporter.http import Deadline, Upstream, UpstreamError
from exporter.logs import Redactor
from exporter.metrics import JobRef, Output
from exporter.scrape import Runners, TargetRunner
from exporter.settings import TargetSettings
from exporter.telemetry import Telemetry
from exporter.workers import DaemonPool


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    connections: set[int] = set()

    def do_GET(self) -> None:
        _Handler.connections.add(id(self.connection))
        if self.path == "/trickle":
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "1000")
            self.end_headers()
            for _ in range(40):
                try:
                    self.wfile.write(b" ")
                    self.wfile.flush()
                except OSError:
                    return
                time.sleep(0.1)
            return
        body = b'{"ok": true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    _Handler.connections = set()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def upstream() -> Upstream:
    settings = TargetSettings(name="t", platform="test", timeouts={"connect_seconds": 1, "read_seconds": 5})
    return Upstream("test", settings, Telemetry(CollectorRegistry()))


def test_trickling_body_ends_at_the_deadline(server: str) -> None:
    started = time.monotonic()
    with pytest.raises(UpstreamError) as caught:
        upstream().get_json(server + "/trickle", endpoint="x", deadline=Deadline(1.0))
    assert caught.value.reason == "timeout"
    assert time.monotonic() - started < 1.5


def test_connections_are_reused(server: str) -> None:
    client = upstream()
    for _ in range(5):
        assert client.get_json(server + "/ok", endpoint="x", deadline=Deadline(2.0)) == {"ok": True}
    assert len(_Handler.connections) == 1


class _Stuck(TargetCollector[TargetSettings]):
    """A collector that ignores its deadline, as a hung call outside every timeout would."""

    platform = "test"

    def prepare(self) -> None:
        """No client: it never calls an upstream."""

    def configured_jobs(self) -> list[JobRef]:
        return [JobRef("j", "job")]

    def collect(self, ctx: ScrapeContext, out: Output) -> None:
        time.sleep(3)


def test_stuck_targets_overrun_together_not_one_after_another() -> None:
    telemetry = Telemetry(CollectorRegistry())
    runners = []
    for name in ("a", "b", "c"):
        settings = TargetSettings(name=name, platform="test")
        runners.append(
            TargetRunner(
                _Stuck(settings, Upstream("test", settings, telemetry), Redactor().sink()),
                ErrorTracker("test", name, telemetry),
                DaemonPool().lane(4),
                budget_seconds=1.0,
                min_interval=0,
            )
        )
    started = time.monotonic()
    outputs = Runners(runners).begin(runners).outputs()
    elapsed = time.monotonic() - started
    assert elapsed < 1.0 + 0.6, elapsed
    samples = [
        (family.name, dict(zip(family.labels, values, strict=True)), v)
        for o in outputs
        for family, values, v in o.all_samples()
    ]
    success = {labels["target"]: v for name, labels, v in samples if name == "scrape_success"}
    assert success == {"a": 0.0, "b": 0.0, "c": 0.0}
    unknown = {
        labels["target"]
        for name, labels, v in samples
        if name == "job_state" and labels["state"] == "unknown" and v == 1
    }
    assert unknown == {"a", "b", "c"}
