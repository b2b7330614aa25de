"""Informatica collector against recorded upstream documents (requests-mock): seeds, quirks, errors."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import requests_mock as rm

from exporter.collectors.informatica import sisvc_url
from tests.helpers import current_state, get, make_app, make_settings, parse, value

FIXTURES = Path(__file__).parent / "fixtures" / "informatica"
GOLDEN = Path(__file__).parent / "golden" / "informatica.prom"
LOGIN = "https://dm2-us.informaticacloud.com"
SISVC = "https://usw1-ing.dm2-us.informaticacloud.com/sisvc/monitor/v1"
SEED_ID = "1948938e-3923-4602-aba8-f122e3d66faf"
PASSWORD = "correct-horse-battery"


@pytest.fixture(autouse=True)
def _password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INGESTION_EXPORTER_INFA_PASSWORD", PASSWORD)


def target(**overrides: Any) -> dict[str, Any]:
    document = {
        "name": "infa",
        "platform": "informatica",
        "login_url": LOGIN,
        "username": "monitor",
        "dataflows": [SEED_ID],
    }
    document.update(overrides)
    return document


def mock_login(m: rm.Mocker, session: str = "session-1") -> Any:
    return m.post(
        f"{LOGIN}/saas/public/core/v3/login",
        json={
            "userInfo": {"sessionId": session, "orgId": "org"},
            "products": [{"name": "Integration Cloud", "baseApiUrl": "https://usw1.dm2-us.informaticacloud.com/saas"}],
        },
    )


def mock_seed(m: rm.Mocker) -> None:
    mock_login(m)
    m.get(f"{SISVC}/status/dataflows/{SEED_ID}", text=(FIXTURES / "status_seed.json").read_text())
    m.get(re.compile(f"{SISVC}/jobs/{SEED_ID}/\\d+"), text=(FIXTURES / "job_seed.json").read_text())
    m.get(f"{SISVC}/statistics/dataflows/{SEED_ID}", status_code=404, json={"error": {"code": "404"}})


def probe_text(app: Any) -> str:
    status, body = get(app, "/probe", "target=infa")
    assert status.startswith("200")
    return body


def test_seed_examples_verbatim() -> None:
    with rm.Mocker() as m:
        mock_seed(m)
        samples = parse(probe_text(make_app(make_settings([target()]))))
    job = {"job_id": SEED_ID, "job_name": "testmonitor"}
    assert current_state(samples, **job) == "running"
    assert value(samples, "ingestion_job_vendor_state", vendor_state="running", **job) == 1
    nodes = {dict(ls)["node"]: dict(ls)["state"] for (n, ls), v in samples.items() if n == "ingestion_node_state" and v}
    assert nodes == {"testmonitor_source": "running", "testmonitor_target": "running"}
    assert value(samples, "ingestion_job_deploy_duration_seconds", **job) == 1543
    assert value(samples, "ingestion_job_deploy_start_timestamp_seconds", **job) == 1644809910  # 03:38:30Z
    assert value(samples, "ingestion_job_deploy_end_timestamp_seconds", **job) == 1644811453  # 04:04:13Z
    assert value(samples, "ingestion_job_last_update_timestamp_seconds", **job) == 1644839755
    roles = {dict(ls)["node"]: dict(ls)["role"] for (n, ls) in samples if n == "ingestion_node_info"}
    assert roles == {"testmonitor_source": "source", "testmonitor_target": "target"}
    assert value(samples, "ingestion_job_info", run_id="42563", started_by="siqa_new") == 1
    assert value(samples, "ingestion_scrape_success", platform="informatica") == 1


def test_seed_matches_golden_exposition() -> None:
    with rm.Mocker() as m:
        mock_seed(m)
        body = probe_text(make_app(make_settings([target()])))
    stable = "".join(line + "\n" for line in body.splitlines() if "scrape_duration_seconds{" not in line)
    assert stable == GOLDEN.read_text()


def test_login_v2_and_server_url_rule() -> None:
    with rm.Mocker() as m:
        login = m.post(
            "https://dm-us.informaticacloud.com/ma/api/v2/user/login",
            json={"icSessionId": "v2-session", "serverUrl": "https://na4.dm-us.informaticacloud.com/saas"},
        )
        status = m.get(
            f"https://na4-ing.dm-us.informaticacloud.com/sisvc/monitor/v1/status/dataflows/{SEED_ID}",
            text=(FIXTURES / "status_seed.json").read_text(),
        )
        m.get(
            re.compile("https://na4-ing.dm-us.informaticacloud.com/sisvc/monitor/v1/(jobs|statistics)/.*"),
            status_code=404,
        )
        app = make_app(make_settings([target(login_url="https://dm-us.informaticacloud.com", login_api="v2")]))
        samples = parse(probe_text(app))
    assert login.last_request.json() == {"@type": "login", "username": "monitor", "password": PASSWORD}
    assert status.last_request.headers["IDS-SESSION-ID"] == "v2-session"
    assert current_state(samples, job_id=SEED_ID) == "running"


@pytest.mark.parametrize(
    ("server", "expected"),
    [
        ("https://na4.dm-us.informaticacloud.com/saas", "https://na4-ing.dm-us.informaticacloud.com"),
        ("https://usw1.dm2-us.informaticacloud.com/saas/", "https://usw1-ing.dm2-us.informaticacloud.com"),
        ("https://usw1-ing.dm2-us.informaticacloud.com", "https://usw1-ing.dm2-us.informaticacloud.com"),
        ("http://127.0.0.1:8080/saas", "http://127.0.0.1:8080"),
        ("http://localhost:8080/saas", "http://localhost:8080"),
    ],
)
def test_sisvc_url_rule(server: str, expected: str) -> None:
    assert sisvc_url(server) == expected


def test_configured_server_url_wins() -> None:
    with rm.Mocker() as m:
        mock_login(m)
        status = m.get(
            f"https://sisvc.example.test/sisvc/monitor/v1/status/dataflows/{SEED_ID}",
            text=(FIXTURES / "status_seed.json").read_text(),
        )
        m.get(re.compile("https://sisvc.example.test/sisvc/monitor/v1/(jobs|statistics)/.*"), status_code=404)
        probe_text(make_app(make_settings([target(server_url="https://sisvc.example.test")])))
    assert status.called


def test_expired_session_renewed_with_one_login_for_concurrent_calls() -> None:
    """The session expires between scrapes: four concurrent 401s share one renewal, the scrape succeeds."""
    ids = [f"00000000-0000-0000-0000-00000000000{i}" for i in range(4)]
    issued: list[str] = []
    expired_sessions: set[str] = set()
    expired = {"error": {"code": "AUTH_01", "message": "Invalid session", "requestId": "r", "details": None}}

    def login(_request: Any, _context: Any) -> dict[str, Any]:
        issued.append(f"session-{len(issued) + 1}")
        return {
            "userInfo": {"sessionId": issued[-1]},
            "products": [{"baseApiUrl": "https://usw1.dm2-us.informaticacloud.com/saas"}],
        }

    def status(request: Any, context: Any) -> dict[str, Any]:
        if request.headers["IDS-SESSION-ID"] in expired_sessions:
            context.status_code = 401
            return expired
        return json.loads((FIXTURES / "status_seed.json").read_text()) | {"dataflowId": request.path.rsplit("/")[-1]}

    with rm.Mocker() as m:
        m.post(f"{LOGIN}/saas/public/core/v3/login", json=login)
        m.get(re.compile(f"{SISVC}/status/dataflows/.*"), json=status)
        m.get(re.compile(f"{SISVC}/jobs/.*"), text=(FIXTURES / "job_seed.json").read_text())
        m.get(re.compile(f"{SISVC}/statistics/.*"), status_code=404)
        app = make_app(make_settings([target(dataflows=ids)]))
        probe_text(app)
        expired_sessions.add("session-1")
        samples = parse(probe_text(app))
    assert issued == ["session-1", "session-2"]
    assert value(samples, "ingestion_scrape_success", target="infa") == 1
    assert all(current_state(samples, job_id=flow) == "running" for flow in ids)


def test_one_missing_dataflow_is_unknown_and_counted_others_unaffected() -> None:
    missing = "11111111-2222-3333-4444-555555555555"
    with rm.Mocker() as m:
        mock_seed(m)
        m.get(
            f"{SISVC}/status/dataflows/{missing}",
            status_code=404,
            json={"error": {"code": "SISVC_404", "message": "Dataflow not found"}},
        )
        app = make_app(make_settings([target(dataflows=[SEED_ID, {"id": missing, "name": "gone"}])]))
        samples = parse(get(app, "/metrics")[1])
    assert current_state(samples, job_id=SEED_ID) == "running"
    assert current_state(samples, job_id=missing, job_name="gone") == "unknown"
    assert value(samples, "ingestion_scrape_errors_total", reason="http_status") == 1
    assert value(samples, "ingestion_scrape_success", target="infa") == 0


def test_unknown_vendor_state_kept() -> None:
    doc = json.loads((FIXTURES / "status_seed.json").read_text()) | {"status": "Quantum Flux"}
    with rm.Mocker() as m:
        mock_seed(m)
        m.get(f"{SISVC}/status/dataflows/{SEED_ID}", json=doc)
        samples = parse(probe_text(make_app(make_settings([target()]))))
    assert current_state(samples, job_id=SEED_ID) == "unknown"
    assert value(samples, "ingestion_job_vendor_state", vendor_state="quantum_flux") == 1
    assert value(samples, "ingestion_scrape_success", target="infa") == 1


@pytest.mark.parametrize(
    ("vendor", "state"),
    [
        ("Deploying", "starting"),
        ("Up and Running", "running"),
        ("Running with Warning", "degraded"),
        ("Running with Error", "failed"),
        ("Undeployed", "stopped"),
        ("Stopped", "stopped"),
        ("Running", "running"),
    ],
)
def test_documented_states(vendor: str, state: str) -> None:
    doc = json.loads((FIXTURES / "status_seed.json").read_text()) | {"status": vendor}
    with rm.Mocker() as m:
        mock_seed(m)
        m.get(f"{SISVC}/status/dataflows/{SEED_ID}", json=doc)
        samples = parse(probe_text(make_app(make_settings([target()]))))
    assert current_state(samples, job_id=SEED_ID) == state


@pytest.mark.parametrize(
    "body", ['{"dataflowName": ', "<html>502 Bad Gateway</html>", "[1, 2]", '{"dataflowName": 5, "reports": "none"}']
)
def test_malformed_status_is_invalid_response(body: str) -> None:
    with rm.Mocker() as m:
        mock_seed(m)
        m.get(f"{SISVC}/status/dataflows/{SEED_ID}", text=body)
        samples = parse(get(make_app(make_settings([target()])), "/metrics")[1])
    assert current_state(samples, job_id=SEED_ID) == "unknown"
    assert value(samples, "ingestion_scrape_errors_total", reason="invalid_response") == 1


def test_jobs_resource_fetched_once_per_run() -> None:
    with rm.Mocker() as m:
        mock_seed(m)
        jobs = m.get(re.compile(f"{SISVC}/jobs/.*"), text=(FIXTURES / "job_seed.json").read_text())
        app = make_app(make_settings([target()]))
        for _ in range(3):
            probe_text(app)
        assert jobs.call_count == 1
        redeployed = json.loads((FIXTURES / "status_seed.json").read_text()) | {"runId": 42600}
        m.get(f"{SISVC}/status/dataflows/{SEED_ID}", json=redeployed)
        probe_text(app)
        assert jobs.call_count == 2
        assert jobs.last_request.path.endswith("/42600")


def test_jobs_resource_of_a_deploying_run_is_read_again_once_its_status_moves_on() -> None:
    deploying = json.loads((FIXTURES / "job_seed.json").read_text()) | {"endTime": None, "duration": None}
    status = json.loads((FIXTURES / "status_seed.json").read_text())
    with rm.Mocker() as m:
        mock_seed(m)
        m.get(f"{SISVC}/status/dataflows/{SEED_ID}", json=status | {"status": "Deploying"})
        m.get(re.compile(f"{SISVC}/jobs/.*"), json=deploying)
        app = make_app(make_settings([target()]))

        def reads() -> int:
            return sum(1 for request in m.request_history if "/monitor/v1/jobs/" in request.path)

        first = parse(probe_text(app))
        for _ in range(3):
            probe_text(app)
        assert reads() == 1  # the same run in the same status: nothing new to read
        m.get(f"{SISVC}/status/dataflows/{SEED_ID}", json=status)  # deployed: Running
        m.get(re.compile(f"{SISVC}/jobs/.*"), text=(FIXTURES / "job_seed.json").read_text())
        done = parse(probe_text(app))
        m.get(f"{SISVC}/status/dataflows/{SEED_ID}", json=status | {"status": "Running with Warning"})
        for _ in range(3):
            probe_text(app)
        assert reads() == 2  # once more when the deployment ended, then final
    assert value(first, "ingestion_job_deploy_end_timestamp_seconds", job_id=SEED_ID) is None
    assert value(done, "ingestion_job_deploy_duration_seconds", job_id=SEED_ID) == 1543


def test_statistics_give_throughput_counters() -> None:
    with rm.Mocker() as m:
        mock_seed(m)
        stats = m.get(
            f"{SISVC}/statistics/dataflows/{SEED_ID}",
            json={
                "dataflowId": SEED_ID,
                "dataflowRunId": 42563,
                "startTime": 1644839000000,
                "stopTime": None,
                "inMessages": 120,
                "outMessages": 118,
                "inBytes": 4096,
                "outBytes": "4000",
                "nodes": [],
            },
        )
        samples = parse(probe_text(make_app(make_settings([target()]))))
    assert stats.last_request.qs == {"intervals": ["30"], "overall": ["true"]}
    assert value(samples, "ingestion_job_read_records_total", job_id=SEED_ID) == 120
    assert value(samples, "ingestion_job_written_records_total", job_id=SEED_ID) == 118
    assert value(samples, "ingestion_job_written_bytes_total", job_id=SEED_ID) == 4000
    assert value(samples, "ingestion_job_start_timestamp_seconds", job_id=SEED_ID) == 1644839000
    assert value(samples, "ingestion_job_end_timestamp_seconds", job_id=SEED_ID) is None


def test_failed_renewal_is_not_repeated_by_every_job() -> None:
    """Session expired and the password now refused: one login attempt per collection, not one per flow."""
    ids = [f"00000000-0000-0000-0000-00000000001{i}" for i in range(8)]
    refused = {"error": {"code": "IDS_085", "message": "Invalid user name or password.", "requestId": "x"}}
    with rm.Mocker() as m:
        mock_login(m, "first")
        m.get(re.compile(f"{SISVC}/status/dataflows/.*"), text=(FIXTURES / "status_seed.json").read_text())
        m.get(re.compile(f"{SISVC}/jobs/.*"), text=(FIXTURES / "job_seed.json").read_text())
        m.get(re.compile(f"{SISVC}/statistics/.*"), status_code=404)
        app = make_app(make_settings([target(dataflows=ids)]))
        probe_text(app)
        m.post(f"{LOGIN}/saas/public/core/v3/login", status_code=401, json=refused)
        m.get(re.compile(f"{SISVC}/status/dataflows/.*"), status_code=401, json=refused)
        samples = parse(probe_text(app))
    logins = [r for r in m.request_history if r.path.endswith("/login")]
    assert len(logins) == 2  # the first collection's, then exactly one renewal attempt
    assert all(current_state(samples, job_id=flow) == "unknown" for flow in ids)


def test_login_refused_marks_target_and_keeps_jobs_visible() -> None:
    with rm.Mocker() as m:
        m.post(
            f"{LOGIN}/saas/public/core/v3/login",
            status_code=401,
            json={"error": {"code": "IDS_085", "message": "Invalid user name or password.", "requestId": "x"}},
        )
        status = m.get(re.compile(f"{SISVC}/.*"), json={})
        samples = parse(get(make_app(make_settings([target()])), "/metrics")[1])
    assert not status.called
    assert current_state(samples, job_id=SEED_ID) == "unknown"
    assert value(samples, "ingestion_scrape_errors_total", reason="auth") == 1
    assert value(samples, "ingestion_scrape_success", target="infa") == 0


def test_rate_limited_backs_off() -> None:
    with rm.Mocker() as m:
        mock_seed(m)
        throttled = m.get(f"{SISVC}/status/dataflows/{SEED_ID}", status_code=429, headers={"Retry-After": "60"})
        app = make_app(make_settings([target()]))
        first = parse(get(app, "/metrics")[1])
        second = parse(get(app, "/metrics")[1])
    assert throttled.call_count == 1  # the second scrape respects Retry-After and sends nothing
    assert current_state(second, job_id=SEED_ID) == "unknown"
    assert value(first, "ingestion_scrape_errors_total", reason="rate_limited") == 1
    assert value(second, "ingestion_scrape_errors_total", reason="rate_limited") == 2


def test_discovery_through_objects_api() -> None:
    other = "22222222-2222-2222-2222-222222222222"
    with rm.Mocker() as m:
        mock_seed(m)
        objects = m.get(
            "https://usw1.dm2-us.informaticacloud.com/saas/public/core/v3/objects",
            json={
                "count": 2,
                "objects": [
                    {"id": SEED_ID, "path": "Default/testmonitor", "type": "SI_DATAFLOW"},
                    {"id": other, "path": "Default/skip-me", "type": "SI_DATAFLOW"},
                ],
            },
        )
        app = make_app(make_settings([target(dataflows=[], discovery={"enabled": True, "exclude": ["^skip"]})]))
        samples = parse(probe_text(app))
        probe_text(app)
    assert objects.call_count == 1  # reused for the discovery interval
    assert objects.last_request.qs["q"] == ["type=='si_dataflow'"]  # requests-mock lower-cases query values
    assert current_state(samples, job_id=SEED_ID) == "running"
    assert value(samples, "ingestion_jobs_discovered", target="infa") == 1


def test_configured_name_is_kept_whatever_the_status_says() -> None:
    with rm.Mocker() as m:
        mock_seed(m)
        app = make_app(make_settings([target(dataflows=[{"id": SEED_ID, "name": "orders-cdc"}])]))
        up = parse(probe_text(app))
        m.get(f"{SISVC}/status/dataflows/{SEED_ID}", status_code=503)
        down = parse(probe_text(app))
    assert current_state(up, job_id=SEED_ID, job_name="orders-cdc") == "running"
    assert current_state(down, job_id=SEED_ID, job_name="orders-cdc") == "unknown"


def test_end_time_is_absent_while_the_run_goes_on_and_given_once_it_is_over() -> None:
    stats = {"dataflowId": SEED_ID, "dataflowRunId": 42563, "startTime": 1644839000000, "stopTime": 1644840000000}
    status = json.loads((FIXTURES / "status_seed.json").read_text())
    ends = {}
    with rm.Mocker() as m:
        mock_seed(m)
        m.get(f"{SISVC}/statistics/dataflows/{SEED_ID}", json=stats)
        app = make_app(make_settings([target()]))
        for vendor in ("Running", "Running with Error", "Stopped"):
            m.get(f"{SISVC}/status/dataflows/{SEED_ID}", json=status | {"status": vendor})
            ends[vendor] = value(parse(probe_text(app)), "ingestion_job_end_timestamp_seconds", job_id=SEED_ID)
    assert ends == {"Running": None, "Running with Error": None, "Stopped": 1644840000}


def history_entry(run_id: int, deployed: int, undeployed: int | None, status: str | None) -> dict[str, Any]:
    entry = {"dataflowId": SEED_ID, "dataflowName": "testmonitor", "deployedAt": deployed, "runId": run_id}
    return entry | {"undeployedAt": undeployed, "dataflowVersion": 1} | ({"status": status} if status else {})


HISTORY_URL = f"{SISVC}/history/dataflows/{SEED_ID}"
RUNS = "ingestion_job_runs_total"


def redeploy(m: rm.Mocker, run_id: int) -> None:
    status = json.loads((FIXTURES / "status_seed.json").read_text())
    m.get(f"{SISVC}/status/dataflows/{SEED_ID}", json=status | {"runId": run_id})


def test_history_is_read_when_the_run_id_changes_and_counts_the_runs_ended_since_the_first_look() -> None:
    history = [
        history_entry(42600, 1644900000000, None, "Running"),
        history_entry(42563, 1644809910000, 1644890000000, "Running with Error"),  # current at the first look
        history_entry(42500, 1644700000000, 1644800000000, "Running with Error"),  # over before it: baseline
    ]
    with rm.Mocker() as m:
        mock_seed(m)
        reads = m.get(HISTORY_URL, json=history)
        app = make_app(make_settings([target()]))
        for _ in range(3):
            assert value(parse(probe_text(app)), RUNS, outcome="failed") == 0
        assert reads.call_count == 0  # the first look reads no history: what ended before it is the baseline
        redeploy(m, 42600)
        for _ in range(3):
            samples = parse(probe_text(app))
            assert value(samples, RUNS, outcome="failed") == 1 and value(samples, RUNS, outcome="unknown") == 0
        assert reads.call_count == 1
    assert value(samples, "ingestion_job_last_failure_timestamp_seconds", job_id=SEED_ID) == 1644890000
    assert value(samples, "ingestion_scrape_success") == 1


def test_a_failed_history_read_is_counted_and_tried_again_and_a_missing_history_counts_unknown() -> None:
    ended = [history_entry(42600, 2, None, "Running"), history_entry(42563, 1, 2, "Stopped"), {"deployedAt": 3}]
    with rm.Mocker() as m:
        mock_seed(m)
        m.get(HISTORY_URL, status_code=500, json={"error": {"code": "SISVC_500"}})
        app = make_app(make_settings([target()]))
        get(app, "/metrics")
        redeploy(m, 42600)
        failing = parse(get(app, "/metrics")[1])
        m.get(HISTORY_URL, json=ended)
        read = parse(get(app, "/metrics")[1])
        redeploy(m, 42700)
        m.get(HISTORY_URL, status_code=404, json={"error": {"code": "SISVC_404"}})
        missing = parse(get(app, "/metrics")[1])
    assert value(failing, "ingestion_scrape_errors_total", reason="http_status") == 1
    assert value(failing, RUNS, outcome="stopped") == 0  # waits for the history
    assert value(read, RUNS, outcome="stopped") == 1  # read on the next scrape, counted once
    assert value(read, "ingestion_scrape_errors_total", reason="invalid_response") == 1  # the entry without a runId
    assert value(missing, RUNS, outcome="unknown") == 1  # no history: 42600 ended, how is not known
    assert value(missing, RUNS, outcome="stopped") == 1


@pytest.mark.parametrize("body", ['{"runs": []}', '"history"', '[{"runId": {"nested": 1}}]', "[1, 2]"])
def test_a_malformed_history_is_counted_as_invalid_and_never_takes_down_the_scrape(body: str) -> None:
    with rm.Mocker() as m:
        mock_seed(m)
        m.get(HISTORY_URL, text=body)
        app = make_app(make_settings([target()]))
        get(app, "/metrics")
        redeploy(m, 42600)
        status, text = get(app, "/metrics")
    samples = parse(text)
    assert status.startswith("200") and current_state(samples, job_id=SEED_ID) == "running"
    assert value(samples, "ingestion_scrape_errors_total", reason="invalid_response") == 1
    assert value(samples, RUNS, outcome="unknown") == 0  # the run before waits for a readable history
