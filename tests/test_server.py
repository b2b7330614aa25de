"""HTTP endpoints and the collection runner: routing, probe safety, shared collections, budgets."""

from __future__ import annotations

import gc
import re
import threading
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests_mock as rm

from exporter.server import parse_listen_address
from tests.helpers import current_state, get, make_app, make_settings, parse, value
from tests.test_informatica import FIXTURES, SEED_ID, SISVC, mock_login, target

PASSWORD = "server-test-password"


@pytest.fixture(autouse=True)
def _password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INGESTION_EXPORTER_INFA_PASSWORD", PASSWORD)
    monkeypatch.setenv("INGESTION_EXPORTER_OTHER_PASSWORD", PASSWORD)


def slow_status(delay: float) -> Any:
    def answer(_request: Any, _context: Any) -> str:
        time.sleep(delay)
        return (FIXTURES / "status_seed.json").read_text()

    return answer


def mocked(m: rm.Mocker, delay: float = 0.0) -> Any:
    mock_login(m)
    status = m.get(f"{SISVC}/status/dataflows/{SEED_ID}", text=slow_status(delay))
    m.get(re.compile(f"{SISVC}/jobs/.*"), text=(FIXTURES / "job_seed.json").read_text())
    m.get(re.compile(f"{SISVC}/statistics/.*"), status_code=404)
    return status


def test_probe_needs_a_configured_name_never_a_url() -> None:
    app = make_app(make_settings([target()]))
    with rm.Mocker() as m:  # any upstream call would be an unregistered request and fail the test
        for query in ("", "target=", "target=http://169.254.169.254/", "target=nope", "target=infa&target=infa"):
            status, _ = get(app, "/probe", query)
            assert status.startswith("400"), query
        assert m.call_count == 0
    assert "configured targets: infa" in get(app, "/probe", "target=nope")[1]


def test_probe_returns_only_that_target() -> None:
    app = make_app(make_settings([target(), target(name="other", dataflows=["other-flow"])]))
    with rm.Mocker() as m:
        mocked(m)
        status, body = get(app, "/probe", "target=infa")
    assert status.startswith("200")
    samples = parse(body)
    assert value(samples, "ingestion_scrape_success", target="infa") == 1
    assert value(samples, "ingestion_scrape_success", target="other") is None
    assert "ingestion_upstream_requests_total" not in body


def test_health_ready_landing_and_unknown_paths() -> None:
    app = make_app(make_settings([target()]))
    with rm.Mocker() as m:
        assert get(app, "/healthz")[0].startswith("200")
        assert get(app, "/readyz")[0].startswith("200")
        app.ready.clear()
        assert get(app, "/readyz")[0].startswith("503")
        assert get(app, "/healthz")[0].startswith("200")
        status, page = get(app, "/")
        assert m.call_count == 0  # none of these touch an upstream
    assert status.startswith("200") and "infa" in page and "informatica" in page and "/metrics" in page
    assert PASSWORD not in page
    assert get(app, "/nope")[0].startswith("404")
    assert get(app, "/metrics", headers={"REQUEST_METHOD": "POST"})[0].startswith("405")


def test_concurrent_scrapes_share_one_collection() -> None:
    app = make_app(make_settings([target()]))
    with rm.Mocker() as m:
        status = mocked(m, delay=0.4)
        with ThreadPoolExecutor(4) as pool:
            bodies = list(pool.map(lambda _: get(app, "/metrics")[1], range(4)))
    assert status.call_count == 1
    assert all(current_state(parse(body), job_id=SEED_ID) == "running" for body in bodies)


def test_min_interval_serves_the_last_result() -> None:
    app = make_app(make_settings([target()], min_interval_seconds=60))
    with rm.Mocker() as m:
        status = mocked(m)
        get(app, "/metrics")
        get(app, "/metrics")
    assert status.call_count == 1


def test_last_samples_are_let_go_when_the_next_collection_starts() -> None:
    """Between scrapes the last samples and body are kept to share; during the next collection they are not."""
    app = make_app(make_settings([target()]))
    runner = app.runners.by_name["infa"]
    finish, outputs, alive_during_collection = runner.finish, [], []

    def keep_ref(begun: Any) -> Any:
        out = finish(begun)
        outputs.append(weakref.ref(out))
        return out

    def status(_request: Any, _context: Any) -> str:
        gc.collect()
        alive_during_collection.append(bool(outputs) and outputs[0]() is not None)
        return (FIXTURES / "status_seed.json").read_text()

    runner.finish = keep_ref  # type: ignore[method-assign]
    with rm.Mocker() as m:
        mocked(m)
        m.get(f"{SISVC}/status/dataflows/{SEED_ID}", text=status)
        get(app, "/metrics")
        gc.collect()
        kept_between_scrapes = outputs[0]() is not None
        get(app, "/metrics")
    assert kept_between_scrapes
    assert alive_during_collection == [False, False]


def test_hanging_upstream_answers_within_budget() -> None:
    app = make_app(make_settings([target(budget_seconds=1.0)]))
    with rm.Mocker() as m:
        mocked(m, delay=3.0)
        started = time.monotonic()
        status, body = get(app, "/metrics")
        elapsed = time.monotonic() - started
    assert status.startswith("200")
    assert elapsed < 1.0 + 0.6, elapsed
    samples = parse(body)
    assert current_state(samples, job_id=SEED_ID) == "unknown"
    assert value(samples, "ingestion_scrape_success", target="infa") == 0


def test_prometheus_scrape_timeout_header_shortens_the_budget() -> None:
    app = make_app(make_settings([target()]))
    with rm.Mocker() as m:
        mocked(m, delay=3.0)
        started = time.monotonic()
        status, _ = get(app, "/metrics", headers={"HTTP_X_PROMETHEUS_SCRAPE_TIMEOUT_SECONDS": "1.5"})
        elapsed = time.monotonic() - started
    assert status.startswith("200")
    assert elapsed < 1.5, elapsed


def test_gzip_when_asked() -> None:
    import gzip

    app = make_app(make_settings([target()]))
    environ: dict[str, Any] = {"REQUEST_METHOD": "GET", "PATH_INFO": "/healthz"}
    with rm.Mocker() as m:
        mocked(m)
        headers: list[tuple[str, str]] = []
        environ.update({"PATH_INFO": "/metrics", "HTTP_ACCEPT_ENCODING": "gzip"})
        body = b"".join(app(environ, lambda _s, h: headers.extend(h)))
    assert ("Content-Encoding", "gzip") in headers
    assert b"ingestion_job_state" in gzip.decompress(body)


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        (":9867", ("0.0.0.0", 9867)),
        ("127.0.0.1:1", ("127.0.0.1", 1)),
        ("[::1]:9867", ("::1", 9867)),
    ],
)
def test_listen_address(address: str, expected: tuple[str, int]) -> None:
    assert parse_listen_address(address) == expected


@pytest.mark.parametrize("address", ["9867", "host:port", "1.2.3.4:70000"])
def test_bad_listen_address(address: str) -> None:
    with pytest.raises(ValueError, match="HOST:PORT"):
        parse_listen_address(address)


def test_collection_threads_do_not_pile_up() -> None:
    """Scrapes of a hanging upstream reuse the collection in flight instead of starting more."""
    app = make_app(make_settings([target(budget_seconds=0.5)]))
    with rm.Mocker() as m:
        mocked(m, delay=1.2)
        before = threading.active_count()
        for _ in range(4):
            get(app, "/metrics")
        assert threading.active_count() - before <= 6
