"""The exporter is read-only toward every upstream: each request it sends must be a listed read call.

Every registered platform is scraped a few times against the simulator, discovery on, while the jobs move
through their life cycles; every request leaving the exporter is recorded at the `requests` layer and
checked against READ_CALLS. A platform registered without an allow-list entry or a simulator module fails,
so platforms that land later are covered without editing this file's logic.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from exporter.collectors import COLLECTORS
from exporter.collectors.siren import SirenCollector
from exporter.simulator import Simulator, SimulatorOptions
from exporter.simulator.platforms import PLATFORMS
from tests.helpers import get, make_app, make_settings, simulated

# Per platform: (method, path pattern) of every call the exporter may send. A pattern must match a request's
# whole path (query aside), optionally after a path prefix. POST appears only for logins, token requests
# and the vendors' read-only POST queries.
READ_CALLS: dict[str, list[tuple[str, str]]] = {
    "informatica": [
        ("POST", r"/saas/public/core/v3/login"),
        ("POST", r"/ma/api/v2/user/login"),
        ("POST", r"/saas/public/core/v3/logout"),  # ends the exporter's own session, nothing else
        ("GET", r"/saas/public/core/v3/objects"),
        ("GET", r"/sisvc/monitor/v1/status/dataflows/[^/]+"),
        ("GET", r"/sisvc/monitor/v1/jobs/[^/]+/[^/]+"),
        ("GET", r"/sisvc/monitor/v1/statistics/dataflows/[^/]+"),
        ("GET", r"/sisvc/monitor/v1/history/dataflows/[^/]+"),
    ],
    "dataarts": [
        ("POST", r"/v3/auth/tokens"),  # IAM token
        ("GET", r"/v1/[^/]+/jobs"),
        ("GET", r"/v1/[^/]+/jobs/[^/]+/status"),
    ],
    "cloudstream": [
        ("POST", r"/v3/auth/tokens"),  # IAM token
        ("GET", r"/v1\.0/[^/]+/jobs"),
        ("POST", r"/v1\.0/[^/]+/jobs/metrics"),  # a documented query: job ids in, metrics out
        ("GET", r"/v1\.0/[^/]+/streaming/jobs"),
        ("POST", r"/v1\.0/[^/]+/streaming/jobs/metrics"),
    ],
    "siren": [
        ("GET", r"/_siren/connector/jobs/_search"),
        ("GET", r"/_siren/connector/jobs/[a-z][a-z0-9_-]*"),
        ("GET", r"/_siren/connector/jobs/[a-z][a-z0-9_-]*/[^/]+"),
    ],
}
_PREFIX = r"(?:/[^/]+)*?"
SCRAPES = 3


def allowed(platform: str, method: str, path: str) -> bool:
    return any(
        method == listed_method and re.fullmatch(_PREFIX + pattern, path)
        for listed_method, pattern in READ_CALLS.get(platform, [])
    )


class Recorder:
    """Every request sent through `requests` while installed: (method, URL)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        original = requests.Session.send

        def send(session: requests.Session, request: requests.PreparedRequest, **kwargs: Any) -> Any:
            with self._lock:
                self.sent.append((str(request.method), str(request.url)))
            return original(session, request, **kwargs)

        monkeypatch.setattr(requests.Session, "send", send)


def scrape_recorded(
    platform: str, monkeypatch: pytest.MonkeyPatch, secrets_dir: Path
) -> tuple[list[tuple[str, str]], str]:
    """A few scrapes of one platform's demo target against the simulator, discovery on: the requests sent."""
    recorder = Recorder()
    with Simulator(SimulatorOptions(jobs=4, platforms=[platform], transition_seconds=10)) as simulator:
        document = simulated(simulator, platform, "readonly", secrets_dir)
        document["discovery"] = {**document.get("discovery", {}), "enabled": True, "interval_seconds": 10}
        app = make_app(make_settings([document]))
        recorder.install(monkeypatch)
        for _ in range(SCRAPES):
            status, _body = get(app, "/metrics")
            assert status.startswith("200")
            simulator.clock.advance(60)  # jobs move on; sessions and caches age
        app.runners.close()
        return recorder.sent, simulator.url


def violations(platform: str, sent: list[tuple[str, str]], simulator_url: str) -> list[str]:
    bad = []
    origin = urlsplit(simulator_url).netloc
    for method, url in sent:
        parts = urlsplit(url)
        if parts.netloc != origin:
            bad.append(f"{method} {url}: not the simulator")
        elif not allowed(platform, method, parts.path):
            bad.append(f"{method} {parts.path}: not a listed read call")
    return bad


def test_every_registered_platform_is_covered() -> None:
    for platform in COLLECTORS:
        assert platform in READ_CALLS, f"{platform}: add its read calls to READ_CALLS"
        assert platform in PLATFORMS, f"{platform}: no simulator module, its requests cannot be checked"


@pytest.mark.parametrize("platform", sorted(COLLECTORS))
def test_exporter_sends_only_read_calls(platform: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    if platform not in PLATFORMS:
        pytest.fail(f"{platform}: no simulator module, its requests cannot be checked")
    sent, url = scrape_recorded(platform, monkeypatch, tmp_path)
    assert len(sent) >= SCRAPES, sent  # something was really checked
    assert violations(platform, sent, url) == []


@pytest.mark.parametrize(
    ("platform", "method", "path"),
    [
        ("siren", "POST", "/_siren/connector/jobs/ingestion/postgres-events/_abort"),
        ("siren", "GET", "/_siren/connector/jobs/ingestion/postgres-events/_abort"),
        ("siren", "DELETE", "/_siren/connector/jobs/ingestion/postgres-events"),
        ("siren", "PUT", "/_siren/connector/jobs/ingestion/postgres-events"),
        ("informatica", "POST", "/sisvc/monitor/v1/status/dataflows/1948938e"),
        ("informatica", "DELETE", "/saas/public/core/v3/objects"),
        ("dataarts", "POST", "/v1/project/jobs/orders/start"),
        ("dataarts", "POST", "/v1/project/jobs/orders/stop"),
        ("cloudstream", "POST", "/v1.0/project/jobs/12/stop"),
        ("cloudstream", "DELETE", "/v1.0/project/jobs"),
        ("cloudstream", "POST", "/v1.0/project/jobs"),
    ],
)
def test_allow_list_refuses_mutating_calls(platform: str, method: str, path: str) -> None:
    assert not allowed(platform, method, path)


@pytest.fixture
def aborting_collector(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A Siren collector that also aborts a job: the check must catch it."""
    original: Callable[..., None] = SirenCollector.collect

    def collect(self: SirenCollector, ctx: Any, out: Any) -> None:
        original(self, ctx, out)
        job_id = self.known_jobs()[0].job_id
        self.upstream.request(
            "POST",
            f"{self.settings.base_url}/_siren/connector/jobs/ingestion/{job_id}/_abort",
            endpoint="abort",
            deadline=ctx.deadline,
        )

    monkeypatch.setattr(SirenCollector, "collect", collect)
    yield


@pytest.mark.usefixtures("aborting_collector")
def test_check_fails_for_a_collector_that_aborts(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    sent, url = scrape_recorded("siren", monkeypatch, tmp_path)
    found = violations("siren", sent, url)
    assert found and all("/_abort: not a listed read call" in line for line in found)
