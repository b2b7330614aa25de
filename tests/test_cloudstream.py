"""Cloud Stream collector: seed example (requests-mock), list paging, batching, DLI flavour; then over real HTTP."""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any

import pytest
import requests_mock as rm

from exporter.collectors.cloudstream import STATE_MAP
from exporter.settings import ConfigError, load_settings
from tests.helpers import MODEL, current_state, get, make_app, make_settings, parse, shared_text, value

FIXTURES = Path(__file__).parent / "fixtures" / "cloudstream"
GOLDEN = Path(__file__).parent / "golden" / "cloudstream.prom"
CS = "https://cs.cn-north-4.myhuaweicloud.com"
PROJECT = "48cc2c48765f481480c7db940d6409d1"
AK, SK = "HPUAQ4Z2CLOUDSTREAM0", "cloudstream-secret-access-key-0123456789"
CS_JOBS = f"{CS}/v1.0/{PROJECT}/jobs"
DLI_JOBS = f"{CS}/v1.0/{PROJECT}/streaming/jobs"
SEED_JOB = {"job_id": "0", "job_name": "kafka_to_dws"}
STREAM = "Source: KafKa_6070_KAFKA_SOURCE"


@pytest.fixture(autouse=True)
def _secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INGESTION_EXPORTER_CS_SECRET_ACCESS_KEY", SK)


def target(**overrides: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "name": "cs",
        "platform": "cloudstream",
        "endpoint": CS,
        "project_id": PROJECT,
        "auth": {"type": "aksk", "access_key_id": AK},
        "jobs": [0],
    }
    document.update(overrides)
    return document


def cs_list(jobs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "message_id": "CS.10001",
        "message": "",
        "current_time": 1700000000000,
        "payload": {"total": len(jobs), "jobs": jobs},
    }


def listed(job_id: int, name: str, status: str = "job_running", **extra: Any) -> dict[str, Any]:
    return {
        "job_id": job_id,
        "name": name,
        "job_type": "flink_sql_job",
        "status": status,
        "status_desc": "",
        "create_time": 1699990000000,
        "start_time": 1700000000000,
        **extra,
    }


def probe(app: Any) -> str:
    status, body = get(app, "/probe", "target=cs")
    assert status.startswith("200"), status
    return body


def mock_seed(m: rm.Mocker) -> Any:
    m.get(re.compile(f"{CS_JOBS}\\?"), json=cs_list([listed(0, "kafka_to_dws")]))
    return m.post(f"{CS_JOBS}/metrics", text=(FIXTURES / "metrics_seed.json").read_text())


# --- the seed example of page 003 --------------------------------------------------------------------------


def test_seed_example_verbatim() -> None:
    with rm.Mocker() as m:
        metrics = mock_seed(m)
        samples = parse(probe(make_app(make_settings([target()]))))
    assert current_state(samples, **SEED_JOB) == "running"
    assert value(samples, "ingestion_job_vendor_state", vendor_state="job_running", **SEED_JOB) == 1
    for role in ("source", "sink"):
        assert value(samples, "ingestion_stream_records_total", stream=STREAM, role=role, **SEED_JOB) == 0
        assert value(samples, "ingestion_stream_corrupted_records_total", stream=STREAM, role=role) == 0
    assert value(samples, "ingestion_job_read_records_per_second", **SEED_JOB) == 100
    assert value(samples, "ingestion_job_write_records_per_second", **SEED_JOB) == 100
    assert value(samples, "ingestion_job_info", job_type="flink_sql_job", run_id="") == 1
    assert value(samples, "ingestion_scrape_success") == 1
    request = metrics.last_request
    assert request.json() == {"job_ids": [0]}
    assert request.headers["Authorization"].startswith(f"SDK-HMAC-SHA256 Access={AK}, SignedHeaders=")
    assert request.headers["X-Project-Id"] == PROJECT


def test_seed_matches_golden_exposition() -> None:
    with rm.Mocker() as m:
        mock_seed(m)
        body = probe(make_app(make_settings([target()])))
    stable = "".join(line + "\n" for line in body.splitlines() if "scrape_duration_seconds{" not in line)
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.write_text(stable)
    assert stable == GOLDEN.read_text()
    assert AK not in body and SK not in body


# --- statuses ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("vendor", "state"), sorted(STATE_MAP.items()))
def test_every_flink_status_is_mapped(vendor: str, state: str) -> None:
    with rm.Mocker() as m:
        m.get(re.compile(f"{CS_JOBS}\\?"), json=cs_list([listed(0, "kafka_to_dws", vendor)]))
        m.post(f"{CS_JOBS}/metrics", json={"payload": {"jobs": []}})
        samples = parse(probe(make_app(make_settings([target()]))))
    assert current_state(samples, **SEED_JOB) == state


def documented_statuses(kind: str) -> set[str]:
    """The status values API-NOTES lists for `CS statuses` or `Flink statuses (14)`."""
    notes = shared_text("API-NOTES.md")
    listed = notes.split(kind, 1)[1].split("`", 2)[1]
    return {status.strip() for status in listed.split(",")}


def test_every_documented_cs_and_dli_status_is_mapped_by_its_meaning() -> None:
    cs, dli = documented_statuses("CS statuses"), documented_statuses("Flink statuses (14)")
    assert len(dli) == 14 and cs <= dli
    assert set(STATE_MAP) == dli
    for status, state in STATE_MAP.items():
        if "fail" in status or "exception" in status:
            assert state == "failed", status
        elif status in ("job_running", "job_savepointing"):
            assert state == "running", status
        elif status.endswith(("_init", "_submitting", "_downloading", "_recovering")):
            assert state == "starting", status
    assert STATE_MAP["job_cancel_success"] == "stopped" and STATE_MAP["job_finish"] == "succeeded"
    assert STATE_MAP["job_arrearage_stopped"] == "failed", "an arrears stop was not asked for"


def test_unknown_status_kept_and_job_missing_from_list_unknown() -> None:
    with rm.Mocker() as m:
        m.get(re.compile(f"{CS_JOBS}\\?"), json=cs_list([listed(0, "kafka_to_dws", "Quantum Flux")]))
        m.post(f"{CS_JOBS}/metrics", json={"payload": {"jobs": []}})
        _, body = get(make_app(make_settings([target(jobs=[0, {"id": 77, "name": "deleted"}])])), "/metrics")
    samples = parse(body)
    assert current_state(samples, **SEED_JOB) == "unknown"
    assert value(samples, "ingestion_job_vendor_state", vendor_state="quantum_flux") == 1
    assert current_state(samples, job_id="77", job_name="deleted") == "unknown"
    assert value(samples, "ingestion_scrape_errors_total", target="cs", reason="invalid_response") == 1


# --- paging and batching -----------------------------------------------------------------------------------


def cursor_list(jobs: list[dict[str, Any]]) -> Any:
    """CS list by cursor: jobs in descending id order, `cursor` the last id of the previous page."""
    ordered = sorted(jobs, key=lambda job: -job["job_id"])

    def answer(request: Any, context: Any) -> dict[str, Any]:
        limit = int(request.qs["limit"][0])
        rest = ordered
        if "cursor" in request.qs:
            assert request.qs["next"] == ["true"]
            rest = [job for job in ordered if job["job_id"] < int(request.qs["cursor"][0])]
        return cs_list(rest[:limit]) | {"payload": {"total": len(ordered), "jobs": rest[:limit]}}

    return answer


def metrics_answer(request: Any, context: Any) -> dict[str, Any]:
    ids = request.json()["job_ids"]
    return {
        "message_id": "CS.10001",
        "payload": {
            "jobs": [
                {
                    "job_id": i,
                    "metrics": {
                        "sources": [{"name": "in", "records": i * 10, "corrupted_records": 1}],
                        "sinks": [{"name": "out", "records": i * 9, "corrupted_records": 0}],
                        "total_read_rate": 5.5,
                        "total_write_rate": 5,
                    },
                }
                for i in ids
            ]
        },
    }


@pytest.mark.parametrize("batch_size", [1, 7, 50, 120])
def test_one_metrics_call_per_batch(batch_size: int) -> None:
    jobs = [listed(1000 + i, f"job-{i:03d}") for i in range(120)]
    with rm.Mocker() as m:
        listing = m.get(re.compile(f"{CS_JOBS}\\?"), json=cursor_list(jobs))
        metrics = m.post(f"{CS_JOBS}/metrics", json=metrics_answer)
        _, body = get(
            make_app(
                make_settings(
                    [
                        target(
                            jobs=[],
                            discovery={"enabled": True},
                            batch_size=batch_size,
                            page_size=50,
                            max_concurrency=8,
                        )
                    ]
                )
            ),
            "/metrics",
        )
    samples = parse(body)
    assert metrics.call_count == math.ceil(120 / batch_size)
    assert value(samples, "ingestion_upstream_requests_total", endpoint="job_metrics", outcome="200") == (
        math.ceil(120 / batch_size)
    )
    assert listing.call_count == 3  # 50 + 50 + 20: the announced total is reached
    assert sorted(i for r in metrics.request_history for i in r.json()["job_ids"]) == list(range(1000, 1120))
    assert value(samples, "ingestion_stream_records_total", job_id="1119", stream="in", role="source") == 11190
    assert value(samples, "ingestion_stream_records_total", job_id="1119", job_name="job-119", role="sink") == 10071
    assert value(samples, "ingestion_jobs_discovered") == 120


def test_one_failed_batch_leaves_the_others_and_the_states() -> None:
    jobs = [listed(i, f"job-{i}") for i in range(1, 5)]

    def flaky(request: Any, context: Any) -> Any:
        if 1 in request.json()["job_ids"]:
            context.status_code = 500
            return {"error_code": "CS.20000", "error_msg": "Internal error"}
        return metrics_answer(request, context)

    with rm.Mocker() as m:
        m.get(re.compile(f"{CS_JOBS}\\?"), json=cs_list(jobs))
        m.post(f"{CS_JOBS}/metrics", json=flaky)
        _, body = get(make_app(make_settings([target(jobs=[1, 2, 3, 4], batch_size=2)])), "/metrics")
    samples = parse(body)
    assert all(current_state(samples, job_id=str(i)) == "running" for i in range(1, 5))
    assert value(samples, "ingestion_job_read_records_per_second", job_id="1") is None
    assert value(samples, "ingestion_job_read_records_per_second", job_id="3") == 5.5
    assert value(samples, "ingestion_scrape_errors_total", target="cs", reason="http_status") == 1


def test_list_failure_makes_states_unknown_but_metrics_still_come() -> None:
    with rm.Mocker() as m:
        m.get(re.compile(f"{CS_JOBS}\\?"), status_code=503, text="busy")
        m.post(f"{CS_JOBS}/metrics", text=(FIXTURES / "metrics_seed.json").read_text())
        _, body = get(make_app(make_settings([target()])), "/metrics")
    samples = parse(body)
    assert current_state(samples, job_id="0") == "unknown"
    assert value(samples, "ingestion_job_read_records_per_second", job_id="0") == 100


def test_duplicate_stream_names_stay_distinct_series() -> None:
    document = {
        "payload": {
            "jobs": [
                {
                    "job_id": 0,
                    "metrics": {
                        "sources": [{"name": "kafka", "records": 1}, {"name": "kafka", "records": 2}, {"records": 3}],
                        "sinks": [],
                    },
                }
            ]
        }
    }
    with rm.Mocker() as m:
        m.get(re.compile(f"{CS_JOBS}\\?"), json=cs_list([listed(0, "kafka_to_dws")]))
        m.post(f"{CS_JOBS}/metrics", json=document)
        samples = parse(probe(make_app(make_settings([target()]))))
    streams = {dict(ls)["stream"]: v for (n, ls), v in samples.items() if n == "ingestion_stream_records_total"}
    assert streams == {"kafka": 1, "kafka (2)": 2, "source-2": 3}


# --- the DLI flavour ---------------------------------------------------------------------------------------


def test_dli_flavour_endpoints_and_offset_paging() -> None:
    jobs = [listed(i, f"dli-{i}", "job_finish" if i == 3 else "job_running") for i in range(1, 6)]

    def dli_list(request: Any, context: Any) -> dict[str, Any]:
        offset, limit = int(request.qs["offset"][0]), int(request.qs["limit"][0])
        return {
            "is_success": True,
            "message": "",
            "job_list": {"total_count": 5, "jobs": jobs[offset : offset + limit]},
        }

    def dli_metrics(request: Any, context: Any) -> dict[str, Any]:
        return {"is_success": True, "message": "", "metrics": metrics_answer(request, context)["payload"]}

    with rm.Mocker() as m:
        listing = m.get(re.compile(f"{DLI_JOBS}\\?"), json=dli_list)
        m.post(f"{DLI_JOBS}/metrics", json=dli_metrics)
        samples = parse(
            probe(
                make_app(make_settings([target(api_flavour="dli", jobs=[], discovery={"enabled": True}, page_size=2)]))
            )
        )
    assert listing.call_count == 3
    assert current_state(samples, job_id="3", job_name="dli-3") == "succeeded"
    assert current_state(samples, job_id="5") == "running"
    assert value(samples, "ingestion_stream_records_total", job_id="5", role="source") == 50


def test_dli_refusal_with_http_200_is_an_error() -> None:
    with rm.Mocker() as m:
        m.get(re.compile(f"{DLI_JOBS}\\?"), json={"is_success": False, "message": "DLI.0013 token expired"})
        m.post(f"{DLI_JOBS}/metrics", json={"is_success": False, "message": "no"})
        _, body = get(make_app(make_settings([target(api_flavour="dli")])), "/metrics")
    samples = parse(body)
    assert current_state(samples, job_id="0") == "unknown"
    assert value(samples, "ingestion_scrape_errors_total", target="cs", reason="http_status") == 2


# --- settings ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"jobs": []}, "jobs: list at least one job id, or enable discovery"),
        ({"jobs": ["abc"]}, "jobs"),
        ({"batch_size": 0}, "batch_size"),
        ({"api_flavour": "flink"}, "api_flavour"),
        ({"auth": {"type": "aksk"}}, "access_key_id: required with type aksk"),
        ({"secret_access_key": "inline"}, "secrets are not accepted inline"),
        (
            {"auth": {"type": "token", "iam_url": "https://iam.test", "domain": "d", "username": "u"}},
            "INGESTION_EXPORTER_CS_PASSWORD",
        ),
    ],
)
def test_settings_errors_name_the_field(overrides: dict[str, Any], message: str, tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(json.dumps({"targets": [target(**overrides)]}))
    with pytest.raises(ConfigError) as raised:
        load_settings(MODEL, config)
    assert message in str(raised.value)


# --- over real HTTP against the simulator ------------------------------------------------------------------


def simulated(jobs: int = 4, seed: bool = False) -> Any:
    from exporter.simulator import Simulator, SimulatorOptions

    return Simulator(SimulatorOptions(jobs=jobs, seed=seed, platforms=["cloudstream"], transition_seconds=3600))


def sim_target(sim: Any, monkeypatch: pytest.MonkeyPatch, **overrides: Any) -> dict[str, Any]:
    credentials = sim.credentials["cloudstream"]
    monkeypatch.setenv("INGESTION_EXPORTER_CS_SECRET_ACCESS_KEY", credentials["secret_access_key"])
    document = target(
        endpoint=sim.url,
        project_id=credentials["project_id"],
        auth={"type": "aksk", "access_key_id": credentials["access_key_id"]},
        jobs=[],
        discovery={"enabled": True},
    )
    document.update(overrides)
    return document


def job_states(samples: dict[Any, float]) -> dict[str, str]:
    return {
        dict(ls)["job_id"]: dict(ls)["state"] for (n, ls), v in samples.items() if n == "ingestion_job_state" and v == 1
    }


@pytest.mark.parametrize("flavour", ["cs", "dli"])
def test_seed_mode_over_http(flavour: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with simulated(seed=True) as sim:
        samples = parse(probe(make_app(make_settings([sim_target(sim, monkeypatch, api_flavour=flavour)]))))
    job = {"job_id": "0", "job_name": "seed_job"}
    assert current_state(samples, **job) == "running"
    for role in ("source", "sink"):
        assert value(samples, "ingestion_stream_records_total", stream=STREAM, role=role, **job) == 0
    assert value(samples, "ingestion_job_read_records_per_second", **job) == 100
    assert value(samples, "ingestion_job_write_records_per_second", **job) == 100


@pytest.mark.parametrize(("flavour", "endpoint"), [("cs", "job_metrics"), ("dli", "dli_job_metrics")])
def test_120_jobs_take_one_metrics_call_per_batch(flavour: str, endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with simulated(jobs=120) as sim:
        app = make_app(make_settings([sim_target(sim, monkeypatch, api_flavour=flavour, batch_size=25)]))
        _, body = get(app, "/metrics")
        stats = sim.stats()
    samples = parse(body)
    assert stats[("cloudstream", endpoint, "POST")] == math.ceil(120 / 25)
    assert value(
        samples, "ingestion_upstream_requests_total", target="cs", endpoint="job_metrics", outcome="200"
    ) == math.ceil(120 / 25)
    assert len(job_states(samples)) == 120 and "unknown" not in job_states(samples).values()
    assert len({dict(ls)["job_id"] for (n, ls) in samples if n == "ingestion_stream_records_total"}) == 120
    assert value(samples, "ingestion_scrape_success", target="cs") == 1


def test_live_jobs_states_and_growing_counters(monkeypatch: pytest.MonkeyPatch) -> None:
    with simulated(jobs=8) as sim:
        app = make_app(make_settings([sim_target(sim, monkeypatch, api_flavour="dli")]))
        first = parse(probe(app))
        assert set(job_states(first).values()) >= {"running", "failed", "starting", "stopped"}
        running = next(job for job, state in job_states(first).items() if state == "running")
        sim.platform("cloudstream").set_state(running, "job_running")
        sim.clock.advance(30)
        later = parse(probe(app))
        sim.platform("cloudstream").set_state(running, "job_arrearage_stopped")
        arrears = parse(probe(app))
    before = value(first, "ingestion_stream_records_total", job_id=running, role="source")
    after = value(later, "ingestion_stream_records_total", job_id=running, role="source")
    assert before is not None and after is not None and after > before
    assert (value(later, "ingestion_job_read_records_per_second", job_id=running) or 0) > 0
    assert job_states(arrears)[running] == "failed"
    assert value(arrears, "ingestion_job_vendor_state", job_id=running, vendor_state="job_arrearage_stopped") == 1


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ({"kind": "error", "status": 500}, "http_status"),
        ({"kind": "malformed"}, "invalid_response"),
        ({"kind": "hang", "seconds": 5}, "timeout"),
        ({"kind": "rate_limit", "retry_after": 0}, "rate_limited"),
    ],
)
def test_faulty_metrics_batch_and_list(fault: dict[str, Any], reason: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with simulated() as sim:
        app = make_app(make_settings([sim_target(sim, monkeypatch, batch_size=2, budget_seconds=1.5)]))
        assert "unknown" not in job_states(parse(probe(app))).values()
        sim.faults.add({**fault, "platform": "cloudstream", "endpoint": "job_metrics", "count": 1})
        _, body = get(app, "/metrics")
        samples = parse(body)
        assert "unknown" not in job_states(samples).values()  # states come from the list
        assert len({dict(ls)["job_id"] for (n, ls) in samples if n == "ingestion_job_read_records_per_second"}) == 2
        assert value(samples, "ingestion_scrape_errors_total", target="cs", reason=reason) == 1
        sim.faults.add({**fault, "platform": "cloudstream", "endpoint": "list_jobs", "count": 1})
        listless = parse(probe(app))
        assert set(job_states(listless).values()) == {"unknown"} and len(job_states(listless)) == 4
        recovered = parse(probe(app))
    assert "unknown" not in job_states(recovered).values()
    assert len({dict(ls)["job_id"] for (n, ls) in recovered if n == "ingestion_job_read_records_per_second"}) == 4


def test_refused_signature_then_recovery_after_the_cool_down(monkeypatch: pytest.MonkeyPatch) -> None:
    with simulated() as sim:
        app = make_app(
            make_settings(
                [
                    sim_target(
                        sim,
                        monkeypatch,
                        auth={
                            "type": "aksk",
                            "access_key_id": sim.credentials["cloudstream"]["access_key_id"],
                            "aksk_cooldown_seconds": 0,
                        },
                    )
                ]
            )
        )
        sim.faults.add({"kind": "auth", "platform": "cloudstream", "endpoint": "list_jobs", "count": 1})
        _, body = get(app, "/metrics")
        assert value(parse(body), "ingestion_scrape_errors_total", target="cs", reason="auth") == 1
        recovered = parse(probe(app))
        credentials = sim.credentials["cloudstream"]
    assert len(job_states(recovered)) == 4 and "unknown" not in job_states(recovered).values()
    assert credentials["access_key_id"] not in body and credentials["secret_access_key"] not in body


def test_discovered_jobs_follow_the_list_a_deleted_one_leaves_without_an_error() -> None:
    answers = [
        cs_list([listed(0, "kafka_to_dws"), listed(5, "clicks"), listed(6, "orders")]),
        cs_list([listed(0, "kafka_to_dws"), listed(6, "orders"), listed(7, "new")]),
    ]
    with rm.Mocker() as m:
        m.get(re.compile(f"{CS_JOBS}\\?"), [{"json": answer} for answer in answers])
        m.post(f"{CS_JOBS}/metrics", json={"payload": {"jobs": []}})
        app = make_app(make_settings([target(discovery={"enabled": True})]))
        first, second = parse(probe(app)), parse(probe(app))
    assert {dict(labels)["job_id"] for name, labels in first if name == "ingestion_job_state"} == {"0", "5", "6"}
    assert {dict(labels)["job_id"] for name, labels in second if name == "ingestion_job_state"} == {"0", "6", "7"}
    assert current_state(second, job_id="7", job_name="new") == "running"
    assert value(second, "ingestion_scrape_success") == 1 and value(second, "ingestion_jobs_discovered") == 3


def test_a_list_that_stops_short_of_its_total_removes_no_job() -> None:
    short = cs_list([listed(0, "kafka_to_dws"), listed(6, "orders")])
    short["payload"]["total"] = 3  # the API announced three, then repeated its page
    with rm.Mocker() as m:
        m.get(
            re.compile(f"{CS_JOBS}\\?"),
            [{"json": cs_list([listed(0, "kafka_to_dws"), listed(5, "clicks"), listed(6, "orders")])}]
            + [{"json": short}] * 3,
        )
        m.post(f"{CS_JOBS}/metrics", json={"payload": {"jobs": []}})
        app = make_app(make_settings([target(discovery={"enabled": True})]))
        probe(app)
        samples = parse(probe(app))
    assert value(samples, "ingestion_jobs_discovered") == 3
    assert current_state(samples, job_id="5", job_name="clicks") == "unknown"


def test_an_answer_without_a_job_list_is_invalid_not_empty() -> None:
    with rm.Mocker() as m:
        m.get(re.compile(f"{CS_JOBS}\\?"), json={"message_id": "CS.10001"})
        m.post(f"{CS_JOBS}/metrics", json={"payload": {"jobs": []}})
        samples = parse(get(make_app(make_settings([target()])), "/metrics")[1])
    assert current_state(samples, job_id="0") == "unknown"
    assert value(samples, "ingestion_scrape_errors_total", reason="invalid_response") == 1
