"""A target a reload removes while its collection is in flight leaves no self-metrics behind."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.app import Exporter
from exporter.logs import Redactor
from exporter.reload import Reloader
from exporter.settings import load_settings
from tests.helpers import MODEL, get, parse

pytestmark = pytest.mark.timeout(60)


class Upstream:
    """Answers every request with a 500; while `hold` is set, only once `release` is (and says it has one)."""

    def __init__(self) -> None:
        self.hold = threading.Event()
        self.arrived = threading.Event()
        self.release = threading.Event()
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if upstream.hold.is_set():
                    upstream.arrived.set()
                    upstream.release.wait(20)
                body = b'{"error": "unavailable"}'
                self.send_response(500)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    server = Upstream()
    yield server
    server.close()


def write(path: Path, upstream: Upstream, names: tuple[str, ...]) -> None:
    targets = [
        {"name": name, "platform": "siren", "base_url": upstream.url, "auth": "none", "jobs": ["j1"]} for name in names
    ]
    path.write_text(yaml.safe_dump({"scrape_budget_seconds": 10, "targets": targets}))


def series_of(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], target: str) -> list[str]:
    return sorted({name for name, labels in samples if ("target", target) in labels})


def test_series_of_a_target_removed_while_collecting_are_gone_after_the_next_scrape(
    upstream: Upstream, tmp_path: Path
) -> None:
    path = tmp_path / "config.yml"
    write(path, upstream, ("kept", "gone"))
    exporter = Exporter(load_settings(MODEL, path), Redactor().sink)
    reloader = Reloader(exporter, lambda: load_settings(MODEL, path), close_after=30.0)  # not closed meanwhile
    try:
        before = series_of(parse(get(exporter.app, "/metrics")[1]), "gone")
        assert {
            "ingestion_scrape_errors_total",
            "ingestion_upstream_requests_total",
            "ingestion_upstream_request_duration_seconds_count",
        } <= set(before)

        upstream.hold.set()
        in_flight = exporter.app.runners.by_name["gone"].begin()
        assert upstream.arrived.wait(10), "the collection never reached the upstream"
        write(path, upstream, ("kept",))
        ok, message = reloader()
        assert ok, message
        upstream.hold.clear()
        upstream.release.set()
        in_flight.future.result(timeout=15)  # the held request was answered, counted or not, and the collection ended

        for _ in range(2):
            samples = parse(get(exporter.app, "/metrics")[1])
            assert series_of(samples, "gone") == []
            assert "ingestion_upstream_requests_total" in series_of(samples, "kept")
    finally:
        upstream.release.set()
        exporter.close()
