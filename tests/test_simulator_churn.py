"""Job churn in the simulator: deleted jobs answer as unknown ones, new ids are new, memory stays bounded."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import requests

from exporter.simulator import Simulator, SimulatorOptions
from exporter.simulator.platforms import PLATFORMS
from tests.vendors import (
    advance,
    huawei_get,
    huawei_post,
    iam_token,
    informatica_flows,
    informatica_session,
    informatica_status,
    siren_get,
)

CHURN = 60.0
WINDOW = 600.0  # Siren's job log retention


@contextmanager
def churning(platform: str, **changes: Any) -> Iterator[Simulator]:
    options: dict[str, Any] = {
        "jobs": 3,
        "platforms": [platform],
        "churn_seconds": CHURN,
        "job_log_seconds": WINDOW,
        "transition_seconds": 3600,
        **changes,
    }
    with Simulator(SimulatorOptions(**options)) as sim:
        yield sim


def ids(sim: Simulator, platform: str) -> list[str]:
    return [job["id"] for job in sim.jobs(platform)]


def fleet(sim: Simulator, platform: str) -> Any:
    """The platform's live jobs object, to look at its internal structures."""
    served = sim.platform(platform)
    return getattr(served, "_fleet", None) or served._jobs


def churn_once(sim: Simulator, platform: str) -> tuple[list[str], list[str]]:
    """The job ids before and after one churn event, which must replace the oldest job with a new one."""
    before = ids(sim, platform)
    advance(sim, CHURN)
    after = ids(sim, platform)
    assert after[:-1] == before[1:] and after[-1] not in before
    return before, after


def test_informatica_forgets_a_churned_dataflow_and_lists_the_new_one() -> None:
    with churning("informatica") as sim:
        session = informatica_session(sim)
        before, after = churn_once(sim, "informatica")
        gone = informatica_status(sim, session, before[0])
        assert gone.status_code == 404 and gone.json()["error"]["code"] == "SISVC_404"
        assert informatica_flows(sim, session) == after
        fresh = informatica_status(sim, session, after[-1]).json()
        assert fresh["dataflowId"] == after[-1] and fresh["dataflowName"].endswith("-004")


def test_dataarts_answers_dlf_0100_for_a_churned_job_and_lists_the_new_one() -> None:
    with churning("dataarts") as sim:
        token, project = iam_token(sim, "dataarts"), sim.credentials["dataarts"]["project_id"]
        before, after = churn_once(sim, "dataarts")
        gone = huawei_get(sim, f"/v1/{project}/jobs/{before[0]}/status", token)
        assert gone.status_code == 400 and gone.json()["error_code"] == "DLF.0100"
        listed = huawei_get(sim, f"/v1/{project}/jobs", token, jobType="REAL_TIME", limit=100).json()
        assert [job["name"] for job in listed["jobs"]] == after and listed["total"] == 3
        assert huawei_get(sim, f"/v1/{project}/jobs/{after[-1]}/status", token).json()["name"] == after[-1]


def test_cloudstream_leaves_a_churned_job_out_of_lists_and_metrics() -> None:
    with churning("cloudstream") as sim:
        token, project = iam_token(sim, "cloudstream"), sim.credentials["cloudstream"]["project_id"]
        before, after = churn_once(sim, "cloudstream")
        cs = huawei_get(sim, f"/v1.0/{project}/jobs", token, order="asc", limit=100).json()["payload"]
        dli = huawei_get(sim, f"/v1.0/{project}/streaming/jobs", token, limit=100).json()["job_list"]
        assert [str(job["job_id"]) for job in cs["jobs"]] == after and cs["total"] == 3
        assert [str(job["job_id"]) for job in dli["jobs"]] == after and dli["total_count"] == 3
        asked = {"job_ids": [int(before[0]), int(after[-1])]}
        for path, key in (("jobs/metrics", "payload"), ("streaming/jobs/metrics", "metrics")):
            answered = huawei_post(sim, f"/v1.0/{project}/{path}", token, asked).json()[key]["jobs"]
            assert [job["job_id"] for job in answered] == [int(after[-1])]


def test_siren_answers_found_false_for_a_churned_job_and_keeps_its_finished_runs_until_they_age_out() -> None:
    with churning("siren", transition_seconds=20) as sim:
        oldest = ids(sim, "siren")[0]
        sim.platform("siren").set_state(oldest, "running")
        sim.platform("siren").set_state(oldest, None)
        assert oldest in {document["_id"] for document in siren_get(sim, "/ingestion").json()["jobs"]}
        logged = siren_get(sim, "/_search", id=oldest).json()["hits"]["hits"]
        assert churn_once(sim, "siren")[0][0] == oldest
        assert siren_get(sim, f"/ingestion/{oldest}").json() == {"_id": oldest, "type": "ingestion", "found": False}
        assert siren_get(sim, f"/ingestion/{oldest}").status_code == 404
        running = siren_get(sim, "/ingestion").json()["jobs"]
        assert oldest not in {document["_id"] for document in running}
        kept = siren_get(sim, "/_search", id=oldest).json()["hits"]["hits"]
        finished_before = {hit["_id"] for hit in logged if not hit["_source"]["ingestion"]["is_running"]}
        assert kept and finished_before <= {hit["_id"] for hit in kept}
        assert all("end_time" in hit["_source"]["ingestion"] for hit in kept)
        advance(sim, WINDOW + CHURN)
        assert siren_get(sim, "/_search", id=oldest).json()["hits"]["hits"] == []
        assert siren_get(sim, "/_search").json()["hits"]["hits"]  # the live jobs' runs are still there


@pytest.mark.parametrize("platform", PLATFORMS)
def test_churn_ids_are_new_deterministic_and_the_same_whether_looked_at_every_event_or_once(platform: str) -> None:
    with (
        churning(platform, jobs=4, transition_seconds=20) as stepped,
        churning(platform, jobs=4, transition_seconds=20) as jumped,
    ):
        seen = ids(stepped, platform)
        for _ in range(30):
            stepped.clock.advance(CHURN)
            current = ids(stepped, platform)
            assert len(current) == 4 and current[-1] not in seen
            seen.append(current[-1])
        jumped.clock.advance(30 * CHURN)
        assert ids(jumped, platform) == seen[-4:]
        if platform == "siren":  # the log keeps the same runs of the jobs deleted within its window
            stepped.clock.advance(7.5)
            jumped.clock.advance(7.5)
            logs = [
                {hit["_id"] for hit in siren_get(sim, "/_search").json()["hits"]["hits"]} for sim in (stepped, jumped)
            ]
            gone = {job_id.replace("-", "") for job_id in seen[:-4]}
            kept = [{hit for hit in log if any(hit.startswith(job_id) for job_id in gone)} for log in logs]
            assert kept[0] and kept[0] == kept[1]
            deleted = [[job.id for _, job in fleet(sim, platform)._gone] for sim in (stepped, jumped)]
            assert deleted[0] and deleted[0] == deleted[1]


def test_churn_plays_no_event_before_its_time_and_spares_a_hand_emptied_fleet() -> None:
    with churning("dataarts", jobs=2) as sim:
        first = ids(sim, "dataarts")
        sim.clock.advance(CHURN - 1)
        assert ids(sim, "dataarts") == first
        for name in first:
            sim.platform("dataarts").delete_job(name)
        sim.clock.advance(10 * CHURN)
        assert ids(sim, "dataarts") == []


def test_twenty_thousand_churn_events_keep_the_simulator_at_its_live_size() -> None:
    """Memory must not grow with the jobs churned through: only live jobs and Siren's log window stay."""
    options = SimulatorOptions(jobs=3, churn_seconds=1, job_log_seconds=30, transition_seconds=5)
    with Simulator(options) as sim:
        fleets = {name: fleet(sim, name) for name in PLATFORMS}
        started, seen = time.monotonic(), set()
        for _ in range(200):  # 100 events between looks
            sim.clock.advance(100)
            for name in PLATFORMS:
                current = ids(sim, name)
                assert len(current) == 3 and len(fleets[name]._jobs) == 3
                seen.update((name, job_id) for job_id in current)
            assert len(fleets["siren"]._gone) <= 30 + 1
        elapsed = time.monotonic() - started
        assert len(seen) == 4 * 200 * 3  # 100 events a look: every look sees three new jobs a platform
        assert siren_get(sim, "/_search").json()["hits"]["hits"]
    assert elapsed < 10, f"20,000 churn events took {elapsed:.1f} s"


def test_churn_options_are_checked() -> None:
    for wrong in (
        {"churn_seconds": 0},
        {"churn_seconds": 5, "seed": True},
        {"churn_seconds": 5, "platforms": ["siren"]},  # the log would keep every deleted job's runs
    ):
        with pytest.raises(ValueError, match="churn"):
            Simulator(SimulatorOptions(**wrong))


def test_control_api_lists_jobs_after_churn() -> None:
    with churning("informatica") as sim:
        _, after = churn_once(sim, "informatica")
        listed = requests.get(f"{sim.url}/_sim/jobs", timeout=5).json()["informatica"]
        assert [job["id"] for job in listed] == after
