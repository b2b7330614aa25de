"""Siren Federate collector: seed examples (requests-mock), list shapes, errors, auth; then over real HTTP."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import pytest
import requests
import requests_mock as rm

from exporter.settings import ConfigError, load_settings
from exporter.simulator import FaultRule, Simulator, SimulatorOptions
from tests.conftest import Logged
from tests.helpers import MODEL, current_state, get, make_app, make_settings, parse, value

FIXTURES = Path(__file__).parent / "fixtures" / "siren"
GOLDEN = Path(__file__).parent / "golden" / "siren.prom"
ES = "https://es.example.com:9200"
JOBS = f"{ES}/_siren/connector/jobs"
SEARCH = re.compile(re.escape(f"{JOBS}/_search"))
PASSWORD = "elastic-horse-battery"
SEED_JOB = {"job_id": "postgres-events", "job_name": "postgres-events"}


@pytest.fixture(autouse=True)
def _password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INGESTION_EXPORTER_ES_PASSWORD", PASSWORD)


def target(**overrides: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "name": "es",
        "platform": "siren",
        "base_url": ES,
        "username": "monitor",
        "jobs": ["postgres-events"],
    }
    document.update(overrides)
    return document


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def empty_search() -> dict[str, Any]:
    return {"hits": {"total": {"value": 0, "relation": "eq"}, "hits": []}}


def mock_seed(m: rm.Mocker, job: str = "job_running.json", search: Any = None) -> None:
    m.get(f"{JOBS}/ingestion/postgres-events", text=fixture(job))
    m.get(f"{JOBS}/ingestion", text='{"jobs": [' + fixture("job_running.json") + "]}")
    if search is None:
        m.get(SEARCH, text=fixture("search.json"))
    else:
        m.get(SEARCH, json=search)


def probe(app: Any) -> str:
    status, body = get(app, "/probe", "target=es")
    assert status.startswith("200"), status
    return body


def scrape(**overrides: Any) -> dict[Any, float]:
    """One /metrics scrape (the exporter's own metrics included) of a fresh exporter."""
    status, body = get(make_app(make_settings([target(**overrides)])), "/metrics")
    assert status.startswith("200"), status
    return parse(body)


def hit(job_id: str, state: str, start: int, end: int | None = None, count: int = 0, **extra: Any) -> dict[str, Any]:
    status: dict[str, Any] = {
        "version": 1,
        "id": job_id,
        "is_running": end is None,
        "start_time": start,
        "state": state,
        "count": count,
        **extra,
    }
    if end is not None:
        status["end_time"] = end
    return {"_id": f"{job_id}-run-{start}", "_source": {"ingestion": status}}


# --- the seed examples of page 004 -------------------------------------------------------------------------


def test_seed_running_example() -> None:
    with rm.Mocker() as m:
        mock_seed(m)
        samples = scrape()
    assert current_state(samples, **SEED_JOB) == "running"
    assert value(samples, "ingestion_job_vendor_state", vendor_state="running", **SEED_JOB) == 1
    assert value(samples, "ingestion_job_records_total", **SEED_JOB) == 3459
    assert value(samples, "ingestion_job_start_timestamp_seconds", **SEED_JOB) == 1538731228.589
    assert value(samples, "ingestion_job_end_timestamp_seconds", **SEED_JOB) is None
    assert value(samples, "ingestion_job_error_messages", **SEED_JOB) == 0
    assert value(samples, "ingestion_job_aborting", **SEED_JOB) == 0
    assert value(samples, "ingestion_scrape_success", target="es") == 1


def test_seed_failed_example() -> None:
    with rm.Mocker() as m:
        mock_seed(m, "job_error.json")
        samples = scrape()
    assert current_state(samples, **SEED_JOB) == "failed"
    assert value(samples, "ingestion_job_vendor_state", vendor_state="error", **SEED_JOB) == 1
    assert value(samples, "ingestion_job_error_messages", **SEED_JOB) == 4
    assert value(samples, "ingestion_job_records_total", **SEED_JOB) == 0
    assert value(samples, "ingestion_job_end_timestamp_seconds", **SEED_JOB) == 1538730961.293
    assert not any("connect timed out" in str(labels) for _, labels in samples)  # never a message as a label


def test_seed_aborted_example() -> None:
    with rm.Mocker() as m:
        mock_seed(m, "job_aborted.json")
        samples = scrape()
    assert current_state(samples, **SEED_JOB) == "stopped"
    assert value(samples, "ingestion_job_vendor_state", vendor_state="aborted", **SEED_JOB) == 1
    assert value(samples, "ingestion_job_aborting", **SEED_JOB) == 1
    assert value(samples, "ingestion_job_records_total", **SEED_JOB) == 2220


def test_seed_successful_example_gives_last_success() -> None:
    with rm.Mocker() as m:
        mock_seed(m, "job_successful.json")
        samples = scrape()
    assert current_state(samples, **SEED_JOB) == "succeeded"
    assert value(samples, "ingestion_job_records_total", **SEED_JOB) == 10000
    assert value(samples, "ingestion_job_last_success_timestamp_seconds", **SEED_JOB) == 1538733911.829


def test_seed_search_example_discovers_its_job() -> None:
    with rm.Mocker() as m:
        mock_seed(m)
        samples = scrape(discovery={"enabled": True})
        search = next(r for r in m.request_history if "_search" in r.path)
    assert search.qs["type"] == ["ingestion"] and "start_time_from" in search.qs
    job = {"job_id": "postgresevents", "job_name": "postgresevents"}
    assert current_state(samples, **job) == "succeeded"
    assert value(samples, "ingestion_job_end_timestamp_seconds", **job) == 1539192151.612
    assert value(samples, "ingestion_job_last_success_timestamp_seconds", **job) == 1539192151.612
    assert value(samples, "ingestion_jobs_discovered", target="es") == 2


def test_seed_matches_golden_exposition() -> None:
    with rm.Mocker() as m:
        mock_seed(m)
        body = probe(make_app(make_settings([target(discovery={"enabled": True})])))
    stable = "".join(line + "\n" for line in body.splitlines() if "scrape_duration_seconds{" not in line)
    assert stable == GOLDEN.read_text()


@pytest.mark.parametrize(
    ("vendor", "state"),
    [
        ("running", "running"),
        ("aborting", "stopping"),
        ("aborted", "stopped"),
        ("error", "failed"),
        ("successful", "succeeded"),
        ("Quantum Flux", "unknown"),
    ],
)
def test_documented_states(vendor: str, state: str) -> None:
    document = json.loads(fixture("job_running.json"))
    document["status"]["state"] = vendor
    with rm.Mocker() as m:
        m.get(f"{JOBS}/ingestion/postgres-events", json=document)
        m.get(SEARCH, json=empty_search())
        samples = scrape()
    assert current_state(samples, **SEED_JOB) == state
    assert value(samples, "ingestion_job_vendor_state", **SEED_JOB) == 1  # kept, snake_cased, never dropped


# --- completed jobs from the job log ------------------------------------------------------------------------


def test_job_finished_inside_window_and_no_longer_running_is_reported() -> None:
    """Seen running, then gone from the running list: the job log gives its final state and end time."""
    start = 1_700_000_000_000
    running = hit("nightly", "running", start)["_source"]["ingestion"]
    with rm.Mocker() as m:
        m.get(
            f"{JOBS}/ingestion",
            json={"jobs": [{"_id": "nightly", "type": "ingestion", "found": True, "status": running}]},
        )
        m.get(SEARCH, json=empty_search())
        app = make_app(make_settings([target(jobs=[], discovery={"enabled": True})]))
        first = parse(probe(app))
        m.get(f"{JOBS}/ingestion", json={"jobs": []})
        m.get(
            SEARCH,
            json={
                "hits": {
                    "total": 1,
                    "hits": [hit("nightly", "error", start, start + 90_000, 512, error=["boom", "bang"])],
                }
            },
        )
        job_endpoint = m.get(f"{JOBS}/ingestion/nightly", status_code=500)
        second = parse(probe(app))
    job = {"job_id": "nightly", "job_name": "nightly"}
    assert current_state(first, **job) == "running"
    assert current_state(second, **job) == "failed"
    assert value(second, "ingestion_job_end_timestamp_seconds", **job) == (start + 90_000) / 1000
    assert value(second, "ingestion_job_records_total", **job) == 512
    assert value(second, "ingestion_job_error_messages", **job) == 2
    assert not job_endpoint.called  # the log described it: no extra call
    assert value(second, "ingestion_scrape_success", target="es") == 1


def test_run_longer_than_window_still_shows_its_final_state() -> None:
    """Gone from the running list and started before the window: the job endpoint gives its last run."""
    start = 1_700_000_000_000
    status = hit("long", "running", start)["_source"]["ingestion"]
    running = {"jobs": [{"_id": "long", "found": True, "status": status}]}
    with rm.Mocker() as m:
        m.get(f"{JOBS}/ingestion", json=running)
        m.get(SEARCH, json=empty_search())
        app = make_app(make_settings([target(jobs=[], discovery={"enabled": True})]))
        parse(probe(app))
        m.get(f"{JOBS}/ingestion", json=[])
        done = hit("long", "successful", start, 4_102_444_800_000, 99)["_source"]["ingestion"]  # ends in 2100
        m.get(f"{JOBS}/ingestion/long", json={"_id": "long", "type": "ingestion", "found": True, "status": done})
        samples = parse(probe(app))
    assert current_state(samples, job_id="long") == "succeeded"
    assert value(samples, "ingestion_job_last_success_timestamp_seconds", job_id="long") == 4_102_444_800


def test_newest_run_by_start_time_wins_and_last_success_is_kept() -> None:
    older = hit("orders", "successful", 1_700_000_000_000, 1_700_000_060_000, 10)
    newer = hit("orders", "error", 1_700_000_100_000, 1_700_000_110_000, 3, error=["x"])
    with rm.Mocker() as m:
        m.get(f"{JOBS}/ingestion", json=[])
        m.get(SEARCH, json={"hits": {"total": {"value": 2, "relation": "eq"}, "hits": [newer, older]}})
        app = make_app(make_settings([target(jobs=[], discovery={"enabled": True})]))
        samples = parse(probe(app))
        m.get(SEARCH, json={"hits": {"total": 1, "hits": [newer]}})  # the success left the window
        later = parse(probe(app))
    assert current_state(samples, job_id="orders") == "failed"
    assert value(samples, "ingestion_job_records_total", job_id="orders") == 3
    for result in (samples, later):
        assert value(result, "ingestion_job_last_success_timestamp_seconds", job_id="orders") == 1_700_000_060


def test_search_lookback_sets_start_time_from() -> None:
    with rm.Mocker() as m:
        mock_seed(m)
        make = make_app(make_settings([target(search_lookback_seconds=600)]))
        collector = next(iter(make.runners.by_name.values())).collector
        collector.clock = lambda: 1_800_000_000.0  # type: ignore[attr-defined]
        probe(make)
        search = next(r for r in m.request_history if "_search" in r.path)
    assert search.qs["start_time_from"] == [str((1_800_000_000 - 600) * 1000)]


def test_search_off_with_zero_lookback() -> None:
    with rm.Mocker() as m:
        mock_seed(m)
        scrape(search_lookback_seconds=0)
        assert not any("_search" in r.path for r in m.request_history)


# --- the running-jobs list: undocumented shape -------------------------------------------------------------

RUNNING_STATUS = json.loads(fixture("job_running.json"))["status"]
RUNNING_DOC = json.loads(fixture("job_running.json"))


@pytest.mark.parametrize(
    "document",
    [
        [RUNNING_DOC],
        {"jobs": [RUNNING_DOC]},
        {"ingestion": [RUNNING_DOC]},
        [RUNNING_STATUS],
        {"postgres-events": RUNNING_STATUS},
        {"postgres-events": RUNNING_DOC},
        {"postgres-events": "running"},
        {"hits": {"total": 1, "hits": [{"_id": "run-1", "_source": {"ingestion": RUNNING_STATUS}}]}},
        RUNNING_DOC,
    ],
    ids=["list", "jobs", "by-type", "bare-list", "map-status", "map-doc", "map-state", "hits", "one-document"],
)
def test_running_list_shapes(document: Any) -> None:
    with rm.Mocker() as m:
        m.get(f"{JOBS}/ingestion", json=document)
        m.get(SEARCH, json=empty_search())
        samples = scrape(jobs=[], discovery={"enabled": True})
    assert current_state(samples, **SEED_JOB) == "running"
    assert value(samples, "ingestion_scrape_success", target="es") == 1


def test_running_list_of_ids_asks_the_job_endpoint() -> None:
    with rm.Mocker() as m:
        m.get(f"{JOBS}/ingestion", json=["postgres-events"])
        m.get(SEARCH, json=empty_search())
        job = m.get(f"{JOBS}/ingestion/postgres-events", text=fixture("job_running.json"))
        samples = scrape(jobs=[], discovery={"enabled": True})
    assert job.called
    assert value(samples, "ingestion_job_records_total", **SEED_JOB) == 3459


@pytest.mark.parametrize("body", ["42", '"running"', '{"jobs": 5}', '{"a": [1, 2]}', "not json", "[1, 2]"])
def test_unknown_running_list_shape_is_invalid_response_not_a_crash(body: str) -> None:
    with rm.Mocker() as m:
        m.get(f"{JOBS}/ingestion", text=body)
        mock_seed_job = m.get(f"{JOBS}/ingestion/postgres-events", text=fixture("job_running.json"))
        m.get(SEARCH, json=empty_search())
        samples = scrape(discovery={"enabled": True})
    assert mock_seed_job.called
    assert current_state(samples, **SEED_JOB) == "running"  # the configured job is still read
    assert value(samples, "ingestion_scrape_errors_total", reason="invalid_response") == 1
    assert value(samples, "ingestion_scrape_success", target="es") == 0


def test_partly_understood_list_keeps_the_good_entries() -> None:
    with rm.Mocker() as m:
        m.get(f"{JOBS}/ingestion", json={"jobs": [RUNNING_DOC, 7, {"foo": "bar"}]})
        m.get(SEARCH, json=empty_search())
        samples = scrape(jobs=[], discovery={"enabled": True})
    assert current_state(samples, **SEED_JOB) == "running"
    assert value(samples, "ingestion_scrape_errors_total", reason="invalid_response") == 1


@pytest.mark.parametrize("total", [1, {"value": 1, "relation": "eq"}, {"value": 10000, "relation": "gte"}, None])
def test_hits_total_both_forms(total: Any) -> None:
    document = json.loads(fixture("search.json"))
    document["hits"]["total"] = total
    with rm.Mocker() as m:
        mock_seed(m, search=document)
        samples = scrape(discovery={"enabled": True})
    assert current_state(samples, job_id="postgresevents") == "succeeded"
    assert value(samples, "ingestion_scrape_success", target="es") == 1


# --- the job endpoint ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("status_code", [200, 404])
def test_found_false_is_unknown_not_found(status_code: int) -> None:
    with rm.Mocker() as m:
        m.get(
            f"{JOBS}/ingestion/ghost",
            status_code=status_code,
            json={"_id": "ghost", "type": "ingestion", "found": False},
        )
        m.get(SEARCH, json=empty_search())
        samples = scrape(jobs=[{"id": "ghost", "name": "Ghost job"}])
    job = {"job_id": "ghost", "job_name": "Ghost job"}
    assert current_state(samples, **job) == "unknown"
    assert value(samples, "ingestion_job_vendor_state", vendor_state="not_found", **job) == 1
    assert value(samples, "ingestion_scrape_success", target="es") == 1


def test_one_failing_job_is_unknown_others_unaffected() -> None:
    with rm.Mocker() as m:
        mock_seed(m)
        m.get(f"{JOBS}/ingestion/broken", status_code=500, json={"error": {"type": "exception"}, "status": 500})
        samples = scrape(jobs=["postgres-events", "broken"])
    assert current_state(samples, **SEED_JOB) == "running"
    assert current_state(samples, job_id="broken") == "unknown"
    assert value(samples, "ingestion_scrape_errors_total", reason="http_status") == 1


# --- auth, errors, recovery, secrets ------------------------------------------------------------------------


def test_auth_headers(monkeypatch: pytest.MonkeyPatch) -> None:
    raw_key = "VuaCfGcBCdbkQm-e5aOx:ui2lp2axTNmsyakw9tvNnw"
    encoded = base64.b64encode(raw_key.encode()).decode()
    cases = [
        ({"auth": "basic"}, {}, "Basic " + base64.b64encode(f"monitor:{PASSWORD}".encode()).decode()),
        ({"auth": "api_key"}, {"API_KEY": raw_key}, "ApiKey " + encoded),
        ({"auth": "api_key"}, {"API_KEY": encoded}, "ApiKey " + encoded),
        ({"auth": "bearer"}, {"TOKEN": "dGhpcyBpcyBhIHRva2Vu"}, "Bearer dGhpcyBpcyBhIHRva2Vu"),
        ({"auth": "none"}, {}, None),
    ]
    for overrides, env, expected in cases:
        for field, secret in env.items():
            monkeypatch.setenv(f"INGESTION_EXPORTER_ES_{field}", secret)
        with rm.Mocker() as m:
            mock_seed(m)
            scrape(**overrides)
        assert {r.headers.get("Authorization") for r in m.request_history} == {expected}, overrides


@pytest.mark.parametrize(
    ("overrides", "env", "message"),
    [
        (
            {"auth": "api_key"},
            {},
            "api_key: required with auth api_key; set api_key_file or the environment variable "
            "INGESTION_EXPORTER_ES_API_KEY",
        ),
        ({"auth": "api_key"}, {"API_KEY": "not-base64-and-no-colon!"}, "api_key: neither"),
        ({"auth": "bearer"}, {}, "token: required"),
        ({"auth": "basic", "username": None}, {}, "username: required"),
        ({"jobs": []}, {}, "list at least one job id"),
        ({"job_type": "Bad/Type"}, {}, "job_type"),
    ],
)
def test_invalid_settings_name_the_field(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, overrides: dict[str, Any], env: dict[str, str], message: str
) -> None:
    for field, secret in env.items():
        monkeypatch.setenv(f"INGESTION_EXPORTER_ES_{field}", secret)
    document = target(**overrides)
    if document.get("username") is None:
        document.pop("username")
    path = tmp_path / "config.yml"
    path.write_text(json.dumps({"targets": [document]}))
    with pytest.raises(ConfigError) as raised:
        load_settings(MODEL, path)
    assert message in str(raised.value)
    assert "not-base64-and-no-colon!" not in str(raised.value)


def test_401_keeps_jobs_visible_and_recovers_without_restart() -> None:
    body = {
        "error": {
            "root_cause": [{"type": "security_exception", "reason": "unable to authenticate user"}],
            "type": "security_exception",
            "reason": "unable to authenticate user",
        },
        "status": 401,
    }
    with rm.Mocker() as m:
        m.get(re.compile(f"{re.escape(JOBS)}/.*"), status_code=401, json=body)
        app = make_app(make_settings([target()]))
        failing = parse(get(app, "/metrics")[1])
        mock_seed(m)
        recovered = parse(get(app, "/metrics")[1])
    assert current_state(failing, **SEED_JOB) == "unknown"
    assert value(failing, "ingestion_scrape_errors_total", reason="auth") == 2
    assert value(failing, "ingestion_scrape_success", target="es") == 0
    assert current_state(recovered, **SEED_JOB) == "running"
    assert value(recovered, "ingestion_scrape_success", target="es") == 1


def test_upstream_down_never_breaks_the_scrape() -> None:
    with rm.Mocker() as m:
        m.get(re.compile(f"{re.escape(JOBS)}/.*"), exc=requests.ConnectionError("Connection refused"))
        status, body = get(make_app(make_settings([target()])), "/metrics")
    samples = parse(body)
    assert status.startswith("200")
    assert current_state(samples, **SEED_JOB) == "unknown"
    assert value(samples, "ingestion_scrape_errors_total", reason="connection") == 2


def test_no_credential_in_logs_metrics_or_landing_page(monkeypatch: pytest.MonkeyPatch, logged: Logged) -> None:
    raw_key = "key-id-1234:key-secret-5678"
    encoded = base64.b64encode(raw_key.encode()).decode()
    monkeypatch.setenv("INGESTION_EXPORTER_ES_API_KEY", raw_key)
    settings = make_settings([target(auth="api_key", discovery={"enabled": True})])
    echo = {
        "error": {
            "root_cause": [{"type": "security_exception", "reason": f"bad key [{encoded}] [{raw_key}]"}],
            "type": "security_exception",
            "reason": f"bad key {encoded}",
        },
        "status": 401,
    }
    with rm.Mocker() as m:
        m.get(re.compile(f"{re.escape(JOBS)}/.*"), status_code=401, json=echo)
        app = make_app(settings, logged.redactor)
        texts = [get(app, path)[1] for path in ("/metrics", "/", "/probe")]
    texts.append(logged.text())
    assert "upstream call failed" in texts[-1]
    for text in texts:
        for secret in (raw_key, encoded, "key-secret-5678"):
            assert secret not in text


# --- over real HTTP against the simulator -------------------------------------------------------------------


@pytest.fixture
def seed_sim() -> Any:
    with Simulator(SimulatorOptions(seed=True, platforms=["siren"])) as simulator:
        yield simulator


@pytest.fixture
def live_sim() -> Any:
    with Simulator(SimulatorOptions(jobs=6, platforms=["siren"], transition_seconds=10)) as simulator:
        yield simulator


def sim_target(simulator: Simulator, monkeypatch: pytest.MonkeyPatch, **overrides: Any) -> dict[str, Any]:
    credentials = simulator.credentials["siren"]
    monkeypatch.setenv("INGESTION_EXPORTER_ES_PASSWORD", credentials["password"])
    return target(base_url=simulator.url, username=credentials["username"], **overrides)


def test_simulator_seed_mode_examples_over_http(seed_sim: Simulator, monkeypatch: pytest.MonkeyPatch) -> None:
    app = make_app(make_settings([sim_target(seed_sim, monkeypatch, discovery={"enabled": True})]))
    running = parse(probe(app))
    control = f"{seed_sim.url}/_sim/siren/jobs/postgres-events/state"
    assert requests.post(control, json={"state": "error"}, timeout=5).status_code == 200
    failed = parse(probe(app))
    seed_sim.platform("siren").set_state("postgres-events", "aborted")
    aborted = parse(probe(app))
    assert current_state(running, **SEED_JOB) == "running"
    assert value(running, "ingestion_job_records_total", **SEED_JOB) == 3459
    assert current_state(failed, **SEED_JOB) == "failed"
    assert value(failed, "ingestion_job_vendor_state", vendor_state="error", **SEED_JOB) == 1
    assert value(failed, "ingestion_job_error_messages", **SEED_JOB) == 4
    assert current_state(aborted, **SEED_JOB) == "stopped"
    assert value(aborted, "ingestion_job_vendor_state", vendor_state="aborted", **SEED_JOB) == 1
    assert value(aborted, "ingestion_scrape_success", target="es") == 1


def test_simulator_seed_bytes_are_the_fixtures(seed_sim: Simulator) -> None:
    credentials = seed_sim.credentials["siren"]
    auth = (credentials["username"], credentials["password"])
    base = f"{seed_sim.url}/_siren/connector/jobs"
    assert requests.get(f"{base}/ingestion/postgres-events", auth=auth, timeout=5).text == fixture(
        "job_running.json"
    ).rstrip("\n")
    search = requests.get(
        f"{base}/_search",
        auth=auth,
        timeout=5,
        params={"type": "ingestion", "id": "postgresevents", "start_time_to": "1539192173232"},
    )
    assert search.text == fixture("search.json").rstrip("\n")
    for state, name in (
        ("successful", "job_successful.json"),
        ("error", "job_error.json"),
        ("aborted", "job_aborted.json"),
    ):
        seed_sim.platform("siren").set_state("postgres-events", state)
        answer = requests.get(f"{base}/ingestion/postgres-events", auth=auth, timeout=5).text
        assert answer == fixture(name).rstrip("\n")


def test_live_jobs_discovered_and_forced_states(live_sim: Simulator, monkeypatch: pytest.MonkeyPatch) -> None:
    ids = [job["id"] for job in live_sim.jobs("siren")]
    app = make_app(make_settings([sim_target(live_sim, monkeypatch, jobs=ids[:1], discovery={"enabled": True})]))
    first = parse(probe(app))
    assert {current_state(first, job_id=i) for i in ids} >= {"running", "succeeded", "failed", "stopped"}
    assert value(first, "ingestion_scrape_success", target="es") == 1
    live_sim.platform("siren").set_state(ids[0], "running")
    live_sim.clock.advance(30)
    before = value(parse(probe(app)), "ingestion_job_records_total", job_id=ids[0])
    live_sim.clock.advance(30)
    after = value(parse(probe(app)), "ingestion_job_records_total", job_id=ids[0])
    assert before is not None and after is not None and after > before  # the count goes up
    live_sim.platform("siren").set_state(ids[2], "successful")  # a discovered job finishes
    done = parse(probe(app))
    assert current_state(done, job_id=ids[2]) == "succeeded"
    assert value(done, "ingestion_job_end_timestamp_seconds", job_id=ids[2]) is not None
    assert value(done, "ingestion_job_last_success_timestamp_seconds", job_id=ids[2]) is not None


@pytest.mark.parametrize("auth", ["basic", "api_key", "api_key_encoded", "bearer"])
def test_live_auth_modes(live_sim: Simulator, monkeypatch: pytest.MonkeyPatch, auth: str) -> None:
    credentials = live_sim.credentials["siren"]
    overrides: dict[str, Any] = {"auth": "api_key" if auth.startswith("api_key") else auth}
    if auth == "bearer":
        monkeypatch.setenv("INGESTION_EXPORTER_ES_TOKEN", credentials["token"])
    elif auth.startswith("api_key"):
        monkeypatch.setenv("INGESTION_EXPORTER_ES_API_KEY", credentials[auth])
    samples = parse(
        probe(
            make_app(
                make_settings([sim_target(live_sim, monkeypatch, **overrides, jobs=[live_sim.jobs("siren")[0]["id"]])])
            )
        )
    )
    assert value(samples, "ingestion_scrape_success", target="es") == 1


@pytest.mark.parametrize("who", ["wrong-password", "unprivileged"])
def test_live_401_and_403(live_sim: Simulator, monkeypatch: pytest.MonkeyPatch, who: str) -> None:
    credentials = live_sim.credentials["siren"]
    document = sim_target(live_sim, monkeypatch, jobs=[live_sim.jobs("siren")[0]["id"]])
    if who == "unprivileged":
        document["username"] = credentials["unprivileged_username"]
        monkeypatch.setenv("INGESTION_EXPORTER_ES_PASSWORD", credentials["unprivileged_password"])
    else:
        monkeypatch.setenv("INGESTION_EXPORTER_ES_PASSWORD", "wrong-password")
    samples = parse(get(make_app(make_settings([document])), "/metrics")[1])
    assert value(samples, "ingestion_scrape_errors_total", reason="auth", target="es") == 2
    assert current_state(samples, job_id=document["jobs"][0]) == "unknown"
    answer = requests.get(
        f"{live_sim.url}/_siren/connector/jobs/ingestion",
        timeout=5,
        auth=(
            document["username"],
            "wrong-password" if who == "wrong-password" else credentials["unprivileged_password"],
        ),
    )
    error = answer.json()
    assert answer.status_code == (401 if who == "wrong-password" else 403)
    assert error["status"] == answer.status_code
    assert error["error"]["type"] == error["error"]["root_cause"][0]["type"] == "security_exception"


def test_live_slow_then_down_then_recovered(live_sim: Simulator, monkeypatch: pytest.MonkeyPatch) -> None:
    job_id = live_sim.jobs("siren")[0]["id"]
    app = make_app(make_settings([sim_target(live_sim, monkeypatch, jobs=[job_id])], scrape_budget_seconds=1.0))
    live_sim.faults.add(FaultRule("hang", platform="siren", seconds=5))
    status, body = get(app, "/metrics")
    slow = parse(body)
    live_sim.faults.clear()
    live_sim.stop()
    down = parse(get(app, "/metrics")[1])
    live_sim.start()
    recovered = parse(get(app, "/metrics")[1])
    assert status.startswith("200")
    assert current_state(slow, job_id=job_id) == current_state(down, job_id=job_id) == "unknown"
    assert value(slow, "ingestion_scrape_success", target="es") == value(down, "ingestion_scrape_success") == 0
    assert value(slow, "ingestion_scrape_duration_seconds", target="es") < 2.5  # type: ignore[operator]
    assert current_state(recovered, job_id=job_id) != "unknown"
    assert value(recovered, "ingestion_scrape_success", target="es") == 1


def test_simulator_search_filters(live_sim: Simulator) -> None:
    credentials = live_sim.credentials["siren"]
    auth = (credentials["username"], credentials["password"])
    url = f"{live_sim.url}/_siren/connector/jobs/_search"

    def search(**params: Any) -> list[dict[str, Any]]:
        answer = requests.get(url, auth=auth, params=params, timeout=5)
        assert answer.status_code == 200, answer.text
        document = answer.json()
        assert document["hits"]["total"]["value"] == len(document["hits"]["hits"])
        return [h["_source"]["ingestion"] for h in document["hits"]["hits"]]

    everything = search(type="ingestion")
    assert len(everything) > len(live_sim.jobs("siren"))  # earlier runs are in the log too
    assert search(type="other") == []
    job_id = everything[0]["id"]
    assert {s["id"] for s in search(id=job_id)} == {job_id}
    assert {s["state"] for s in search(state="successful")} == {"successful"}
    middle = sorted(s["start_time"] for s in everything)[len(everything) // 2]
    assert all(s["start_time"] >= middle for s in search(start_time_from=str(middle)))
    assert all(s["start_time"] <= middle for s in search(start_time_to=str(middle)))
    assert requests.get(url, auth=auth, params={"start_time_from": "yesterday"}, timeout=5).status_code == 400


def test_simulator_job_log_keeps_a_steady_window() -> None:
    """With job_log_seconds the log is full from the start and keeps its size while runs come and go."""
    window = 600
    options = SimulatorOptions(jobs=40, platforms=["siren"], transition_seconds=10, job_log_seconds=window)
    with Simulator(options) as simulator:
        credentials = simulator.credentials["siren"]
        auth = (credentials["username"], credentials["password"])
        url = f"{simulator.url}/_siren/connector/jobs/_search"
        held = simulator.jobs("siren")[0]["id"]
        simulator.platform("siren").set_state(held, "running")  # frozen in one run older than the window
        sizes = []
        for step in range(8):
            hits = requests.get(url, auth=auth, params={"type": "ingestion"}, timeout=5).json()["hits"]["hits"]
            runs = [hit["_source"]["ingestion"] for hit in hits]
            now_ms = simulator.clock.now() * 1000
            newest = {run["id"]: max(r["start_time"] for r in runs if r["id"] == run["id"]) for run in runs}
            assert all(
                run["start_time"] >= now_ms - window * 1000 or run["start_time"] == newest[run["id"]] for run in runs
            )  # older runs are gone, a job's current run stays however old
            if step == 0:
                assert min(run["start_time"] for run in runs) < now_ms - window * 1000 * 0.75  # full already
            sizes.append(len(runs))
            simulator.clock.advance(window / 2)
        assert held in newest and newest[held] < now_ms - 3 * window * 1000
        assert len(simulator.jobs("siren")) * 4 < min(sizes) and max(sizes) < 1.5 * min(sizes), sizes


def test_simulator_abort_moves_a_running_job_to_aborted(live_sim: Simulator) -> None:
    credentials = live_sim.credentials["siren"]
    auth = (credentials["username"], credentials["password"])
    base = f"{live_sim.url}/_siren/connector/jobs/ingestion"
    job_id = live_sim.jobs("siren")[0]["id"]
    live_sim.platform("siren").set_state(job_id, "running")
    live_sim.platform("siren").set_state(job_id, None)
    aborting = requests.post(f"{base}/{job_id}/_abort", auth=auth, timeout=5).json()["status"]
    assert (aborting["state"], aborting["is_aborting"]) == ("aborting", True)
    live_sim.clock.advance(11)
    aborted = requests.get(f"{base}/{job_id}", auth=auth, timeout=5).json()["status"]
    assert (aborted["state"], aborted["is_running"]) == ("aborted", False)
    assert aborted["end_time"] >= aborted["start_time"]
    listed = requests.get(base, auth=auth, timeout=5).json()["jobs"]
    assert job_id not in {document["_id"] for document in listed}


def test_tls_settings_reach_the_session_and_skip_verify_is_logged(tmp_path: Path, logged: Logged) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    verified = make_app(make_settings([target(tls={"ca_file": str(ca)})]))
    session = next(iter(verified.runners.by_name.values())).collector.upstream.session
    assert session.verify == str(ca)
    insecure = make_app(make_settings([target(tls={"insecure_skip_verify": True})]))
    assert next(iter(insecure.runners.by_name.values())).collector.upstream.session.verify is False
    assert "TLS verification is off" in logged.text()


def test_truncated_job_log_is_warned_once(logged: Logged) -> None:
    document = json.loads(fixture("search.json"))
    document["hits"]["total"] = {"value": 5000, "relation": "gte"}
    with rm.Mocker() as m:
        mock_seed(m, search=document)
        app = make_app(make_settings([target(discovery={"enabled": True})]))
        for _ in range(2):
            samples = parse(get(app, "/metrics")[1])
    assert logged.text().count("job log holds more runs than it returned") == 1
    assert current_state(samples, job_id="postgresevents") == "succeeded"  # what came is used


@pytest.mark.parametrize(
    "kind",
    [
        "malformed",
        "empty",
        "wrong_types",
        "missing_fields",
        "unknown_state",
        "html_error",
        "error",
        "rate_limit",
        "auth",
        "refuse",
    ],
)
def test_live_faults_never_break_the_scrape(live_sim: Simulator, monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    job_id = live_sim.jobs("siren")[0]["id"]
    app = make_app(make_settings([sim_target(live_sim, monkeypatch, jobs=[job_id], discovery={"enabled": True})]))
    live_sim.faults.add(FaultRule(kind, platform="siren"))
    status, body = get(app, "/metrics")
    samples = parse(body)
    assert status.startswith("200")
    assert current_state(samples, job_id=job_id) is not None  # the configured job never vanishes
    if kind != "unknown_state":
        assert value(samples, "ingestion_scrape_success", target="es") == 0
    else:
        assert value(samples, "ingestion_job_vendor_state", job_id=job_id, vendor_state="quantum_flux") == 1


def test_running_list_envelope_fields_are_not_jobs() -> None:
    from exporter.collectors.siren import parse_running

    parsed = parse_running(
        {
            "type": "ingestion",
            "count": 1,
            "running_jobs": [
                {"_id": "postgres-events", "status": {"id": "postgres-events", "state": "running", "count": 5}}
            ],
        },
        "ingestion",
    )
    assert [run.job_id for run in parsed.runs] == ["postgres-events"]
    mapped = parse_running({"postgres-events": "running", "type": "ingestion"}, "ingestion")
    assert [run.job_id for run in mapped.runs] == ["postgres-events"]
    assert mapped.skipped == 1


def test_only_watched_jobs_are_remembered_and_a_job_gone_upstream_takes_its_memory_along() -> None:
    runs = [hit(f"job-{n}", "successful", 1_700_000_000_000 + n, 1_700_000_060_000 + n) for n in range(40)]
    with rm.Mocker() as m:
        m.get(f"{JOBS}/ingestion", json=[])
        m.get(SEARCH, json={"hits": {"total": len(runs), "hits": runs}})
        app = make_app(make_settings([target(jobs=[], discovery={"enabled": True, "include": ["^job-1"]})]))
        collector = next(iter(app.runners.by_name.values())).collector
        samples = parse(probe(app))
        watched = {f"job-{n}" for n in range(40) if f"job-{n}".startswith("job-1")}
        assert {job.job_id for job in collector.known_jobs()} == watched
        # Per watched job, its last success and its runs; the log's other jobs are not kept.
        assert collector.jobs.footprint()["memory"] == 2 * len(watched)
        assert value(samples, "ingestion_job_last_success_timestamp_seconds", job_id="job-10") == 1_700_000_060.01
        m.get(SEARCH, json=empty_search())
        m.get(re.compile(re.escape(f"{JOBS}/ingestion/")), status_code=404, json={"found": False})
        probe(app)
    assert collector.known_jobs() == [] and collector.jobs.footprint()["memory"] == 0
