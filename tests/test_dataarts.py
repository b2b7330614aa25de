"""DataArts Studio collector: seed example (requests-mock), spellings, DLF errors, discovery; then over real HTTP."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any

import pytest
import requests_mock as rm

from exporter.settings import ConfigError, load_settings
from tests.conftest import Logged
from tests.helpers import MODEL, current_state, get, make_app, make_settings, parse, value

FIXTURES = Path(__file__).parent / "fixtures" / "dataarts"
GOLDEN = Path(__file__).parent / "golden" / "dataarts.prom"
IAM = "https://iam.cn-north-4.myhuaweicloud.com"
DLF = "https://dayu-dlf.cn-north-4.myhuaweicloud.com"
PROJECT = "b384b9e9ab9b4ee8994c8633aabc9505"
JOBS = f"{DLF}/v1/{PROJECT}/jobs"
PASSWORD = "dlf-monitor-password"
TOKEN = "MIIDataArtsToken-0123456789"
SEED_JOB = {"job_id": "job_sms", "job_name": "job_sms"}
NODE = "MRS_Flink_Job_8635"


@pytest.fixture(autouse=True)
def _password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INGESTION_EXPORTER_DLF_PASSWORD", PASSWORD)


def target(**overrides: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "name": "dlf",
        "platform": "dataarts",
        "endpoint": DLF,
        "project_id": PROJECT,
        "auth": {
            "type": "token",
            "iam_url": IAM,
            "domain": "acct",
            "username": "monitor",
            "project_name": "cn-north-4",
        },
        "jobs": ["job_sms"],
    }
    document.update(overrides)
    return document


def mock_iam(m: rm.Mocker) -> Any:
    return m.post(
        f"{IAM}/v3/auth/tokens",
        status_code=201,
        headers={"X-Subject-Token": TOKEN},
        json={"token": {"expires_at": "2099-01-01T00:00:00.000000Z"}},
    )


def mock_status(m: rm.Mocker, name: str, **answer: Any) -> Any:
    return m.get(f"{JOBS}/{name}/status", **answer)


def probe(app: Any) -> str:
    status, body = get(app, "/probe", "target=dlf")
    assert status.startswith("200"), status
    return body


def scrape_once(**overrides: Any) -> dict[Any, float]:
    return parse(probe(make_app(make_settings([target(**overrides)]))))


def node_states(samples: dict[Any, float], **job: str) -> dict[str, str]:
    return {
        dict(ls)["node"]: dict(ls)["state"]
        for (n, ls), v in samples.items()
        if n == "ingestion_node_state" and v == 1 and set(job.items()) <= ls
    }


# --- the seed example of page 002 --------------------------------------------------------------------------


def test_seed_example_verbatim() -> None:
    with rm.Mocker() as m:
        iam = mock_iam(m)
        status = mock_status(m, "job_sms", text=(FIXTURES / "status_seed.json").read_text())
        samples = scrape_once()
    assert current_state(samples, **SEED_JOB) == "running"
    assert value(samples, "ingestion_job_vendor_state", vendor_state="normal", **SEED_JOB) == 1
    # The seed's node has no `status`: its state is that of its last instance, `waiting`.
    assert node_states(samples, **SEED_JOB) == {NODE: "starting"}
    assert value(samples, "ingestion_node_vendor_state", node=NODE, vendor_state="waiting") == 1
    for family in ("read_records", "written_records", "read_bytes", "written_bytes"):
        assert value(samples, f"ingestion_node_{family}_total", node=NODE, **SEED_JOB) == 0
    assert value(samples, "ingestion_node_buffered_records", node=NODE) == 0
    assert value(samples, "ingestion_node_records_per_second", node=NODE) == 0
    assert value(samples, "ingestion_job_start_timestamp_seconds", **SEED_JOB) is None  # absent, not 0
    assert value(samples, "ingestion_scrape_success", platform="dataarts") == 1
    assert iam.call_count == 1 and status.last_request.headers["X-Auth-Token"] == TOKEN
    assert "workspace" not in status.last_request.headers


def test_seed_matches_golden_exposition() -> None:
    with rm.Mocker() as m:
        mock_iam(m)
        mock_status(m, "job_sms", text=(FIXTURES / "status_seed.json").read_text())
        body = probe(make_app(make_settings([target()])))
    stable = "".join(line + "\n" for line in body.splitlines() if "scrape_duration_seconds{" not in line)
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.write_text(stable)
    assert stable == GOLDEN.read_text()


# --- spellings, states, times ------------------------------------------------------------------------------


def test_documented_and_sdk_spellings() -> None:
    documented = {
        "name": "a",
        "status": "EXCEPTION",
        "startTime": 1700000000000,
        "endTime": 1700000600000,
        "lastUpdateTime": "2023-11-14 22:20:00",
        "nodes": [
            {
                "name": "n1",
                "status": "NORMAL",
                "type": "CS Job",
                "totalGetRecords": 12,
                "totalPutRecords": 10,
                "totalGetBytes": 1200,
                "totalPutBytes": 1000,
                "bufferRecords": 2,
                "speed": "3.5",
                "LastInstanceStatus": "fail",
            }
        ],
    }
    sdk = {
        "name": "b",
        "status": "STOPPED",
        "starttime": "2023-11-14T22:13:20Z",
        "nodes": [{"name": "n2", "nodeType": "MRS Flink Job", "lastInstanceStatus": "manual-stop"}],
    }
    with rm.Mocker() as m:
        mock_iam(m)
        mock_status(m, "a", json=documented)
        mock_status(m, "b", json=sdk)
        samples = scrape_once(jobs=["a", "b"])
    a, b = {"job_id": "a"}, {"job_id": "b"}
    assert current_state(samples, **a) == "failed" and current_state(samples, **b) == "stopped"
    assert value(samples, "ingestion_job_start_timestamp_seconds", **a) == 1700000000
    assert value(samples, "ingestion_job_end_timestamp_seconds", **a) == 1700000600
    assert value(samples, "ingestion_job_last_update_timestamp_seconds", **a) == 1700000400
    assert value(samples, "ingestion_job_start_timestamp_seconds", **b) == 1700000000
    assert node_states(samples, **a) == {"n1": "running"}  # `status` wins over the last instance
    assert node_states(samples, **b) == {"n2": "stopped"}
    assert value(samples, "ingestion_node_info", node="n1", node_type="CS Job") == 1
    assert value(samples, "ingestion_node_info", node="n2", node_type="MRS Flink Job") == 1
    assert value(samples, "ingestion_node_written_bytes_total", node="n1") == 1000
    assert value(samples, "ingestion_node_records_per_second", node="n1") == 3.5
    assert value(samples, "ingestion_node_read_records_total", node="n2") is None


@pytest.mark.parametrize(
    ("vendor", "state"),
    [
        ("STARTING", "starting"),
        ("NORMAL", "running"),
        ("EXCEPTION", "failed"),
        ("STOPPING", "stopping"),
        ("STOPPED", "stopped"),
    ],
)
def test_documented_states(vendor: str, state: str) -> None:
    with rm.Mocker() as m:
        mock_iam(m)
        mock_status(m, "job_sms", json={"name": "job_sms", "status": vendor, "nodes": []})
        samples = scrape_once()
    assert current_state(samples, **SEED_JOB) == state
    assert value(samples, "ingestion_job_vendor_state", vendor_state=vendor.lower(), **SEED_JOB) == 1


def test_unknown_vendor_state_kept() -> None:
    with rm.Mocker() as m:
        mock_iam(m)
        mock_status(
            m,
            "job_sms",
            json={"name": "job_sms", "status": "Quantum Flux", "nodes": [{"name": "n", "status": "WOBBLING"}]},
        )
        samples = scrape_once()
    assert current_state(samples, **SEED_JOB) == "unknown"
    assert value(samples, "ingestion_job_vendor_state", vendor_state="quantum_flux") == 1
    assert node_states(samples) == {"n": "unknown"}
    assert value(samples, "ingestion_scrape_success") == 1


# --- errors ------------------------------------------------------------------------------------------------


def test_missing_job_is_unknown_and_counted_others_unaffected() -> None:
    with rm.Mocker() as m:
        mock_iam(m)
        mock_status(m, "job_sms", text=(FIXTURES / "status_seed.json").read_text())
        mock_status(m, "gone", status_code=400, text=(FIXTURES / "error_dlf0100.json").read_text())
        _, body = get(make_app(make_settings([target(jobs=["job_sms", "gone"])])), "/metrics")
    samples = parse(body)
    assert current_state(samples, job_id="gone") == "unknown"
    assert current_state(samples, **SEED_JOB) == "running"
    assert value(samples, "ingestion_scrape_errors_total", target="dlf", reason="http_status") == 1
    assert value(samples, "ingestion_scrape_success", target="dlf") == 0


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ({"status_code": 500, "json": {"error_code": "DLF.0001", "error_msg": "Internal error"}}, "http_status"),
        ({"status_code": 502, "text": "<html>bad gateway</html>"}, "http_status"),
        ({"text": '{"name": "job_sms", "status": "NOR'}, "invalid_response"),
        ({"json": {"name": "job_sms", "nodes": "not a list"}}, "invalid_response"),
        ({"exc": __import__("requests").exceptions.ReadTimeout}, "timeout"),
    ],
)
def test_upstream_failures_make_the_job_unknown(answer: dict[str, Any], reason: str) -> None:
    with rm.Mocker() as m:
        mock_iam(m)
        mock_status(m, "job_sms", **answer)
        _, body = get(make_app(make_settings([target()])), "/metrics")
    samples = parse(body)
    assert current_state(samples, **SEED_JOB) == "unknown"
    assert value(samples, "ingestion_scrape_errors_total", target="dlf", reason=reason) == 1


def test_refused_password_keeps_jobs_visible_without_leaking() -> None:
    with rm.Mocker() as m:
        m.post(
            f"{IAM}/v3/auth/tokens",
            status_code=401,
            json={"error": {"code": 401, "message": "The username or password is wrong.", "title": "Unauthorized"}},
        )
        status = mock_status(m, "job_sms", json={})
        _, body = get(make_app(make_settings([target()])), "/metrics")
    samples = parse(body)
    assert current_state(samples, **SEED_JOB) == "unknown"
    assert value(samples, "ingestion_scrape_errors_total", target="dlf", reason="auth") == 1
    assert status.call_count == 0 and PASSWORD not in body


# --- discovery and the workspace header --------------------------------------------------------------------


def paged_list(names: list[str]) -> Any:
    """A list call answering by record offset, as the DLF API does."""

    def answer(request: Any, context: Any) -> dict[str, Any]:
        limit, offset = int(request.qs["limit"][0]), int(request.qs["offset"][0])
        assert request.qs["jobtype"] == ["real_time"]  # requests-mock lower-cases the query
        page = [{"name": n, "jobType": "REAL_TIME", "status": "NORMAL"} for n in names[offset : offset + limit]]
        return {"total": len(names), "jobs": page}

    return answer


def running(request: Any, context: Any) -> dict[str, Any]:
    name = request.path.split("/")[-2]
    return {"name": name, "status": "NORMAL", "nodes": []}


def test_discovery_pages_through_every_job(monkeypatch: pytest.MonkeyPatch) -> None:
    names = [f"rt-{i:03d}" for i in range(250)]
    offset = [0.0]
    real = time.monotonic
    monkeypatch.setattr(time, "monotonic", lambda: real() + offset[0])  # the discovery clock
    with rm.Mocker() as m:
        mock_iam(m)
        listing = m.get(re.compile(f"{JOBS}\\?"), json=paged_list(names))
        m.get(re.compile(f"{JOBS}/[^/]+/status"), json=running)
        app = make_app(
            make_settings(
                [
                    target(
                        jobs=[], discovery={"enabled": True, "interval_seconds": 60}, page_size=100, max_concurrency=16
                    )
                ]
            )
        )
        samples = parse(probe(app))
        assert listing.call_count == 4  # 100 + 100 + 50, then the empty page
        assert {dict(ls)["job_id"] for (n, ls), v in samples.items() if n == "ingestion_job_state" and v} == set(names)
        assert value(samples, "ingestion_jobs_discovered") == 250
        del names[7]  # rt-007 is deleted upstream
        assert current_state(parse(probe(app)), job_id="rt-007") == "running"  # within the interval
        offset[0] += 61
        samples = parse(probe(app))
    assert current_state(samples, job_id="rt-007") is None
    assert value(samples, "ingestion_jobs_discovered") == 249


def test_discovery_patterns_and_workspace_header() -> None:
    with rm.Mocker() as m:
        mock_iam(m)
        listing = m.get(re.compile(f"{JOBS}\\?"), json=paged_list(["cdc-orders", "cdc-test", "batch-x"]))
        status = m.get(re.compile(f"{JOBS}/[^/]+/status"), json=running)
        samples = scrape_once(
            jobs=["pinned job"],
            workspace="ws-42",
            discovery={"enabled": True, "include": ["^cdc-"], "exclude": ["test"]},
        )
    assert {dict(ls)["job_id"] for (n, ls), v in samples.items() if n == "ingestion_job_state" and v} == {
        "pinned job",
        "cdc-orders",
    }
    assert all(r.headers["workspace"] == "ws-42" for r in [*listing.request_history, *status.request_history])
    assert any(r.path.endswith("/pinned%20job/status") for r in status.request_history)


# --- settings ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"jobs": []}, "jobs: list at least one job name, or enable discovery"),
        ({"project_id": "has/slash"}, "project_id"),
        ({"page_size": 5000}, "page_size"),
        ({"auth": {"type": "token", "iam_url": IAM}}, "domain, username: required with type token"),
        (
            {"auth": {"type": "token", "iam_url": IAM, "domain": "d", "username": "u", "password": "x"}},
            "secrets are not accepted inline",
        ),
        ({"password": "x"}, "secrets are not accepted inline"),
        ({"auth": {"type": "aksk", "access_key_id": "AK"}}, "INGESTION_EXPORTER_DLF_SECRET_ACCESS_KEY"),
        ({"auth": {"type": "kerberos"}}, "auth.type"),
    ],
)
def test_settings_errors_name_the_field(overrides: dict[str, Any], message: str, tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(json.dumps({"targets": [target(**overrides)]}))
    with pytest.raises(ConfigError) as raised:
        load_settings(MODEL, config)
    assert message in str(raised.value)


def test_password_from_file_and_masked_access_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from exporter.settings import masked

    monkeypatch.delenv("INGESTION_EXPORTER_DLF_PASSWORD")
    secret = tmp_path / "sk"
    secret.write_text("the-secret-key\n")
    settings = make_settings(
        [target(auth={"type": "aksk", "access_key_id": "AKEXAMPLE1234"}, secret_access_key_file=str(secret))]
    )
    secret_value = settings.all_targets()[0].secret("secret_access_key")
    assert secret_value is not None and secret_value.get_secret_value() == "the-secret-key"
    shown = json.dumps(masked(settings))
    assert "AKEXAMPLE1234" not in shown and "the-secret-key" not in shown


# --- over real HTTP against the simulator ------------------------------------------------------------------


def simulated(jobs: int = 3, seed: bool = False) -> Any:
    from exporter.simulator import Simulator, SimulatorOptions

    return Simulator(SimulatorOptions(jobs=jobs, seed=seed, platforms=["dataarts"], transition_seconds=3600))


def sim_target(sim: Any, monkeypatch: pytest.MonkeyPatch, **overrides: Any) -> dict[str, Any]:
    credentials = sim.credentials["dataarts"]
    monkeypatch.setenv("INGESTION_EXPORTER_DLF_PASSWORD", credentials["password"])
    document = target(
        endpoint=sim.url,
        project_id=credentials["project_id"],
        auth={
            "type": "token",
            "iam_url": credentials["iam_url"],
            "domain": credentials["domain"],
            "username": credentials["username"],
            "project_name": credentials["project_name"],
        },
        jobs=[job["id"] for job in sim.jobs("dataarts")],
        workspace=credentials["workspace"],
    )
    document.update(overrides)
    return document


def job_states(samples: dict[Any, float]) -> dict[str, str]:
    return {
        dict(ls)["job_id"]: dict(ls)["state"] for (n, ls), v in samples.items() if n == "ingestion_job_state" and v == 1
    }


def test_seed_mode_over_http(monkeypatch: pytest.MonkeyPatch) -> None:
    with simulated(seed=True) as sim:
        samples = parse(probe(make_app(make_settings([sim_target(sim, monkeypatch)]))))
    assert current_state(samples, **SEED_JOB) == "running"
    assert value(samples, "ingestion_job_vendor_state", vendor_state="normal", **SEED_JOB) == 1
    assert node_states(samples, **SEED_JOB) == {NODE: "starting"}
    assert value(samples, "ingestion_node_written_records_total", node=NODE, **SEED_JOB) == 0


def test_live_jobs_move_and_count(monkeypatch: pytest.MonkeyPatch) -> None:
    with simulated(jobs=8) as sim:
        app = make_app(make_settings([sim_target(sim, monkeypatch)]))
        first = parse(probe(app))
        assert set(job_states(first).values()) >= {"running", "failed", "starting", "stopped"}
        running = next(job for job, state in job_states(first).items() if state == "running")
        node = next(iter(node_states(first, job_id=running)))
        sim.platform("dataarts").set_state(running, "NORMAL")  # frozen, so the clock only adds records
        sim.clock.advance(30)
        later = parse(probe(app))
        for job in job_states(first):
            sim.platform("dataarts").set_state(job, "EXCEPTION")
        failed = parse(probe(app))
    before = value(first, "ingestion_node_read_records_total", job_id=running, node=node)
    after = value(later, "ingestion_node_read_records_total", job_id=running, node=node)
    assert before is not None and after is not None and after > before
    assert set(job_states(failed).values()) == {"failed"}
    kinds = {dict(ls)["node_type"] for (n, ls) in first if n == "ingestion_node_info"}
    assert kinds == {"DIS Transfer Task", "MRS Flink Job", "DLI SQL"}  # from `type` and from `nodeType`


def test_250_jobs_discovered_and_a_deleted_one_drops_out(monkeypatch: pytest.MonkeyPatch) -> None:
    offset = [0.0]
    real = time.monotonic
    monkeypatch.setattr(time, "monotonic", lambda: real() + offset[0])  # the discovery clock
    with simulated(jobs=250) as sim:
        app = make_app(
            make_settings(
                [
                    sim_target(
                        sim,
                        monkeypatch,
                        jobs=[],
                        max_concurrency=32,
                        page_size=100,
                        discovery={"enabled": True, "interval_seconds": 60},
                    )
                ],
                scrape_budget_seconds=30,
            )
        )
        samples = parse(probe(app))
        assert len(job_states(samples)) == 250 and "unknown" not in job_states(samples).values()
        assert sim.stats()[("dataarts", "list_jobs", "GET")] == 4
        gone = sim.jobs("dataarts")[17]["id"]
        sim.platform("dataarts").delete_job(gone)
        samples = parse(probe(app))  # still within the discovery interval: the job answers DLF.0100
        assert job_states(samples)[gone] == "unknown"
        offset[0] += 61
        samples = parse(probe(app))
    assert gone not in job_states(samples) and len(job_states(samples)) == 249
    assert value(samples, "ingestion_jobs_discovered") == 249


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ({"kind": "error", "status": 503}, "http_status"),
        ({"kind": "html_error"}, "http_status"),
        ({"kind": "malformed"}, "invalid_response"),
        ({"kind": "empty"}, "invalid_response"),
        ({"kind": "wrong_types"}, "invalid_response"),
        ({"kind": "hang", "seconds": 5}, "timeout"),
    ],
)
def test_one_faulty_answer_leaves_the_other_jobs(
    fault: dict[str, Any], reason: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with simulated() as sim:
        app = make_app(make_settings([sim_target(sim, monkeypatch, max_concurrency=1, budget_seconds=1.5)]))
        sim.faults.add({**fault, "platform": "dataarts", "endpoint": "job_status", "count": 1})
        _, body = get(app, "/metrics")
        samples = parse(body)
        states = job_states(samples)
        assert sorted(states.values()).count("unknown") >= 1 and len(states) == 3
        assert (value(samples, "ingestion_scrape_errors_total", target="dlf", reason=reason) or 0) >= 1
        again = job_states(parse(probe(app)))
    assert "unknown" not in again.values()


def test_unknown_state_fault_keeps_vendor_value(monkeypatch: pytest.MonkeyPatch) -> None:
    with simulated() as sim:
        sim.faults.add({"kind": "unknown_state", "platform": "dataarts", "endpoint": "job_status"})
        samples = parse(probe(make_app(make_settings([sim_target(sim, monkeypatch)]))))
    assert set(job_states(samples).values()) == {"unknown"}
    assert value(samples, "ingestion_job_vendor_state", job_id=sim.jobs("dataarts")[0]["id"]) == 1
    assert {dict(ls)["vendor_state"] for (n, ls) in samples if n == "ingestion_job_vendor_state"} == {"quantum_flux"}


def test_upstream_down_then_back_without_restart(monkeypatch: pytest.MonkeyPatch) -> None:
    with simulated() as sim:
        app = make_app(make_settings([sim_target(sim, monkeypatch)]))
        assert "unknown" not in job_states(parse(probe(app))).values()
        sim.stop()
        down = parse(probe(app))
        assert set(job_states(down).values()) == {"unknown"} and len(job_states(down)) == 3
        assert value(down, "ingestion_scrape_success") == 0
        sim.start()
        back = parse(probe(app))
    assert "unknown" not in job_states(back).values() and value(back, "ingestion_scrape_success") == 1


def test_no_secret_in_output_or_logs(monkeypatch: pytest.MonkeyPatch, logged: Logged) -> None:
    with simulated() as sim:
        settings = make_settings([sim_target(sim, monkeypatch)])
        sim.faults.add({"kind": "session_expired", "platform": "dataarts", "endpoint": "job_status", "count": 1})
        sim.faults.add({"kind": "error", "status": 500, "platform": "dataarts", "endpoint": "job_status", "count": 1})
        app = make_app(settings, logged.redactor)
        _, body = get(app, "/metrics")
        _, body2 = get(app, "/metrics")
        credentials = sim.credentials["dataarts"]
        tokens = sim.platform("dataarts").gateway.issued_tokens()
    output = body + body2 + logged.text()
    assert len(tokens) == 2  # the first, and the one renewed after the gateway dropped it
    assert credentials["password"] not in output and not any(token in output for token in tokens)
