"""The Informatica collector over real HTTP against the simulator: life cycle, faults, outages, recovery."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from exporter.server import ExporterApp
from exporter.simulator import Simulator, SimulatorOptions
from tests.helpers import Samples, current_state, get, make_app, make_settings, parse, value

NAME = "sim-infa"


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator(
        SimulatorOptions(host="127.0.0.1", port=0, jobs=4, platforms=["informatica"], transition_seconds=3600)
    ) as simulator:
        yield simulator


def exporter_for(sim: Simulator, monkeypatch: pytest.MonkeyPatch, **overrides: Any) -> ExporterApp:
    monkeypatch.setenv("INGESTION_EXPORTER_SIM_INFA_PASSWORD", sim.credentials["informatica"]["password"])
    document: dict[str, Any] = {
        "name": NAME,
        "platform": "informatica",
        "login_url": sim.url,
        "username": sim.credentials["informatica"]["username"],
        "dataflows": [job["id"] for job in sim.jobs("informatica")],
    }
    document.update(overrides)
    return make_app(make_settings([document], scrape_budget_seconds=2.0))


def scrape(app: ExporterApp) -> Samples:
    status, body = get(app, "/metrics")
    assert status.startswith("200")
    return parse(body)


def states(samples: Samples) -> dict[str, str]:
    return {
        dict(labels)["job_id"]: dict(labels)["state"]
        for (name, labels), v in samples.items()
        if name == "ingestion_job_state" and v == 1.0
    }


def login_count(sim: Simulator) -> int:
    return sum(
        n
        for (platform, endpoint, _), n in sim.stats().items()
        if platform == "informatica" and endpoint.startswith("login")
    )


def test_jobs_in_several_states_with_details(sim: Simulator, monkeypatch: pytest.MonkeyPatch) -> None:
    samples = scrape(exporter_for(sim, monkeypatch))
    seen = states(samples)
    assert len(seen) == 4 and len(set(seen.values())) >= 3, seen
    assert value(samples, "ingestion_scrape_success", target=NAME) == 1
    running = next(job for job, state in seen.items() if state in ("running", "degraded", "failed"))
    assert value(samples, "ingestion_job_deploy_duration_seconds", job_id=running) is not None
    assert value(samples, "ingestion_job_read_records_total", job_id=running) is not None


def test_v2_login(sim: Simulator, monkeypatch: pytest.MonkeyPatch) -> None:
    samples = scrape(exporter_for(sim, monkeypatch, login_api="v2"))
    assert value(samples, "ingestion_scrape_success", target=NAME) == 1
    assert sim.stats().get(("informatica", "login_v2", "POST")) == 1


def test_session_reused_then_renewed_once_when_expired(sim: Simulator, monkeypatch: pytest.MonkeyPatch) -> None:
    app = exporter_for(sim, monkeypatch)
    scrape(app)
    scrape(app)
    assert login_count(sim) == 1
    sim.faults.add({"platform": "informatica", "endpoint": "*", "kind": "session_expired", "count": 1})
    samples = scrape(app)
    assert login_count(sim) == 2
    assert value(samples, "ingestion_scrape_success", target=NAME) == 1
    assert all(state != "unknown" for state in states(samples).values())


def test_upstream_killed_mid_run_then_recovers(sim: Simulator, monkeypatch: pytest.MonkeyPatch) -> None:
    app = exporter_for(sim, monkeypatch)
    before = states(scrape(app))
    sim.stop()
    started = time.monotonic()
    down = scrape(app)
    assert time.monotonic() - started < 2.0 + 0.6
    assert value(down, "ingestion_scrape_success", platform="informatica") == 0
    assert set(states(down)) == set(before) and set(states(down).values()) == {"unknown"}
    assert (value(down, "ingestion_scrape_errors_total", reason="connection") or 0) >= 1
    sim.restart()
    back = scrape(app)
    assert value(back, "ingestion_scrape_success", platform="informatica") == 1
    assert "unknown" not in states(back).values()


@pytest.mark.parametrize(
    ("kind", "extra", "reason"),
    [
        ("error", {"status": 500}, "http_status"),
        ("html_error", {}, "http_status"),
        ("malformed", {}, "invalid_response"),
        ("empty", {}, "invalid_response"),
        ("wrong_types", {}, "invalid_response"),
        ("hang", {"seconds": 5}, "timeout"),
        ("rate_limit", {"retry_after": 1}, "rate_limited"),
    ],
)
def test_status_faults_affect_only_that_call(
    sim: Simulator, monkeypatch: pytest.MonkeyPatch, kind: str, extra: dict[str, Any], reason: str
) -> None:
    app = exporter_for(sim, monkeypatch, max_concurrency=1)
    scrape(app)
    sim.faults.add({"platform": "informatica", "endpoint": "status", "kind": kind, "count": 1, **extra})
    started = time.monotonic()
    samples = scrape(app)
    assert time.monotonic() - started < 2.0 + 0.6
    assert list(states(samples).values()).count("unknown") >= 1
    assert value(samples, "ingestion_scrape_errors_total", reason=reason) >= 1  # type: ignore[operator]
    assert value(samples, "ingestion_scrape_success", target=NAME) == 0
    time.sleep(1.0 if kind == "rate_limit" else 0)
    recovered = scrape(app)
    assert value(recovered, "ingestion_scrape_success", target=NAME) == 1
    assert "unknown" not in states(recovered).values()


def test_unknown_status_value(sim: Simulator, monkeypatch: pytest.MonkeyPatch) -> None:
    app = exporter_for(sim, monkeypatch, max_concurrency=1)
    sim.faults.add({"platform": "informatica", "endpoint": "status", "kind": "unknown_state", "count": 1})
    samples = scrape(app)
    unknown = [job for job, state in states(samples).items() if state == "unknown"]
    assert len(unknown) == 1
    vendor = [
        dict(labels)["vendor_state"]
        for (name, labels), v in samples.items()
        if name == "ingestion_job_vendor_state" and dict(labels)["job_id"] == unknown[0]
    ]
    assert vendor and vendor[0] not in {"running", "up_and_running", "deploying", "stopped", "undeployed"}
    assert value(samples, "ingestion_scrape_success", target=NAME) == 1


def test_wrong_password_is_auth_and_jobs_stay_visible(sim: Simulator, monkeypatch: pytest.MonkeyPatch) -> None:
    app = exporter_for(sim, monkeypatch)
    monkeypatch.setenv("INGESTION_EXPORTER_BAD_PASSWORD", "not-the-password")
    bad = make_app(
        make_settings(
            [
                {
                    "name": "bad",
                    "platform": "informatica",
                    "login_url": sim.url,
                    "username": "monitor",
                    "dataflows": [sim.jobs("informatica")[0]["id"]],
                }
            ]
        )
    )
    samples = scrape(bad)
    assert current_state(samples, job_id=sim.jobs("informatica")[0]["id"]) == "unknown"
    assert value(samples, "ingestion_scrape_errors_total", reason="auth") == 1
    assert value(scrape(app), "ingestion_scrape_success", target=NAME) == 1
