"""The collector contract: the job directory, per-target notices and secret sinks, the registry's typing."""

from __future__ import annotations

import json
from typing import Any

from prometheus_client import CollectorRegistry

from exporter import logs
from exporter.collectors import COLLECTORS
from exporter.collectors.base import ErrorTracker, JobDirectory, Notices, ScrapeContext
from exporter.http import Deadline, UpstreamError
from exporter.metrics import JobRef
from exporter.settings import DiscoverySettings, platform_of
from exporter.telemetry import ERROR_REASONS, Telemetry
from exporter.workers import DaemonPool
from tests.conftest import Logged


def context() -> ScrapeContext:
    return ScrapeContext(Deadline(5.0), DaemonPool().lane(2), ErrorTracker("p", "t", Telemetry(CollectorRegistry())))


def directory(*configured: str, **discovery: Any) -> JobDirectory:
    settings = DiscoverySettings(**{"enabled": True, "interval_seconds": 10, **discovery})
    return JobDirectory([JobRef(job_id, "") for job_id in configured], settings)


def ids(jobs: list[JobRef]) -> list[str]:
    return [job.job_id for job in jobs]


def test_every_collector_takes_its_platform_and_model_from_its_type_argument() -> None:
    for platform, collector in COLLECTORS.items():
        assert collector.platform == platform == platform_of(collector.settings_model)
        assert collector.settings_model.model_fields["platform"].annotation is not str


def test_reasons_are_one_literal() -> None:
    assert ERROR_REASONS == ("auth", "timeout", "connection", "http_status", "rate_limited", "invalid_response")


def test_pulled_discovery_is_fetched_once_per_interval_and_a_failure_keeps_the_last_list() -> None:
    jobs = directory("a")
    calls: list[int] = []

    def fetch(_deadline: Deadline) -> list[JobRef]:
        calls.append(1)
        if len(calls) == 2:
            raise UpstreamError("timeout", "no answer")
        return [JobRef("b", "bee"), JobRef("a", "ignored: configured wins")]

    ctx = context()
    assert ids(jobs.refresh(ctx, fetch)) == ["a", "b"]
    assert ids(jobs.refresh(ctx, fetch)) == ["a", "b"] and len(calls) == 1  # within the interval
    jobs._fetched_at = 0.0  # the interval is over
    assert ids(jobs.refresh(ctx, fetch)) == ["a", "b"] and len(calls) == 2  # failed: the last list stays
    assert ctx.errors.failed


def test_include_and_exclude_filter_discovered_jobs_by_name() -> None:
    jobs = directory(include=["^rt-"], exclude=["test"])
    jobs.offer([JobRef("1", "rt-orders"), JobRef("2", "batch"), JobRef("3", "rt-test")], complete=False)
    assert ids(jobs.known()) == ["1"]


def test_pushed_jobs_join_and_only_a_complete_answer_or_forget_removes_them() -> None:
    jobs = directory("conf")
    jobs.offer([JobRef("x", "ex"), JobRef("y", "why")], complete=False)
    jobs.offer([JobRef("z", "zed")], complete=False)
    assert ids(jobs.known()) == ["conf", "x", "y", "z"]
    jobs.forget("x")
    jobs.forget("conf")  # configured jobs stay
    assert ids(jobs.known()) == ["conf", "y", "z"]
    jobs.offer([JobRef("z", "zed"), JobRef("new", "")], complete=True)
    assert ids(jobs.known()) == ["conf", "z", "new"]


def test_without_discovery_nothing_joins() -> None:
    jobs = directory("a", enabled=False)
    jobs.offer([JobRef("b", "bee")], complete=True)
    assert ids(jobs.refresh(context(), lambda _d: [JobRef("c", "")])) == ["a"]


def test_learnt_names_and_per_job_memory_leave_with_their_job() -> None:
    jobs = directory("conf")
    runs: dict[str, str] = jobs.memory()
    jobs.offer([JobRef(f"job-{n}", "") for n in range(100)], complete=False)
    for job in jobs.known():
        assert jobs.learn(job, f"name of {job.job_id}").job_name == f"name of {job.job_id}"
        runs[job.job_id] = "run"
    assert jobs.footprint() == {"configured": 1, "discovered": 100, "names": 101, "memory": 101}
    assert jobs.known()[5] == JobRef("job-4", "name of job-4")  # the learnt name lasts
    jobs.learn(JobRef("stranger", ""), "not watched")  # a read of a job the directory does not hold
    jobs.offer([JobRef("job-7", "")], complete=True)
    assert jobs.footprint() == {"configured": 1, "discovered": 1, "names": 2, "memory": 2}
    assert set(runs) == {"conf", "job-7"}


def test_churn_of_many_job_ids_keeps_the_directory_at_the_live_size() -> None:
    jobs = directory()
    runs: dict[str, int] = jobs.memory()
    for generation in range(200):
        live = [JobRef(f"{generation}-{n}", "") for n in range(50)]
        jobs.offer(live, complete=True)
        for job in live:
            jobs.learn(job, "name")
            runs[job.job_id] = generation
    assert jobs.footprint() == {"configured": 0, "discovered": 50, "names": 50, "memory": 50}


def test_notices_are_logged_once_and_their_memory_is_bounded(logged: Logged) -> None:
    notices = Notices("siren", "es", limit=10)
    for _ in range(3):
        notices.once("k", "something odd", detail="d")
    lines = [json.loads(line) for line in logged.text().splitlines()]
    assert [(line["event"], line["target"], line["detail"]) for line in lines] == [("something odd", "es", "d")]
    for n in range(1000):
        notices.once(f"value {n}", "another value")
    assert len(notices._seen) <= 10


def test_a_sink_slot_keeps_one_value_and_a_closed_sink_leaves_the_redactor() -> None:
    redactor = logs.Redactor()
    first, second = redactor.sink(), redactor.sink()
    first.put("password", "first-password")
    first.put("token", "token-number-0")
    forms = redactor.forms()
    for renewal in range(1, 100):
        first.put("token", f"token-number-{renewal}")
    assert redactor.redact("token-number-98") == logs.MASK, "replaced, but masked until the collection ends"
    first.settle()
    assert redactor.forms() == forms, "a renewed token's encoded forms replace the last one's"
    second.put("password", "pw-2")  # four characters: masked all the same
    assert redactor.values() == {"first-password", "token-number-99", "pw-2"}
    text = "a first-password, token-number-99, token-number-98 and pw-2"
    assert redactor.redact(text) == f"a {logs.MASK}, {logs.MASK}, token-number-98 and {logs.MASK}"
    first.close()
    assert redactor.values() == {"pw-2"}
    assert redactor.redact(text) == f"a first-password, token-number-99, token-number-98 and {logs.MASK}"
    second.close()
    assert redactor.forms() == 0 and redactor.redact(text) == text


def test_the_longest_secret_is_masked_whole() -> None:
    redactor = logs.Redactor()
    sink = redactor.sink()
    sink.put("a", "secret-value")
    sink.put("b", "secret-value-longer")
    assert redactor.redact("x secret-value-longer y secret-value") == f"x {logs.MASK} y {logs.MASK}"


def test_a_complete_answer_renames_what_it_names() -> None:
    jobs = directory()
    jobs.offer([JobRef("x", "old name")], complete=True)
    jobs.offer([JobRef("x", "new name")], complete=False)  # a partial answer only adds
    assert jobs.known() == [JobRef("x", "old name")]
    jobs.offer([JobRef("x", "new name")], complete=True)
    assert jobs.known() == [JobRef("x", "new name")]
