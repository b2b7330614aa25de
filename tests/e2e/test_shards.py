"""Sharding end to end: a Prometheus scraping three shards sees, through every dashboard query and every rule, the
series a Prometheus scraping one process sees; a missing shard pages, and nothing else does."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests

from exporter.sharding import job_shard
from tests.e2e.stack import Processes, Prometheus, Webhook, labels_match, running, wait_for
from tests.e2e.test_stack import (
    INFORMATICA_TARGET,
    fill,
    generate,
    start_alertmanager,
    start_exporter,
    start_prometheus,
    start_simulator,
)
from tests.helpers import SIMULATED
from tests.test_grafana import panel_queries

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

SHARDS = 3
SHARD_MISSING = "IngestionExporterShardsMissing"
PER_PROCESS_PANELS = ("'Exporter builds'", "per shard'")
"""Exporter-health panels that show each exporter process (its version, each shard's own figures) by design."""
SCRAPE_LABELS = {"instance", "job", "pod"}
"""Labels Prometheus gives a series from where it scraped it: the one thing allowed to differ."""


@dataclass
class Sharded:
    simulator: str
    jobs: dict[str, list[dict[str, str]]]
    one: Prometheus
    shards: Prometheus
    shard_processes: list[str]
    webhook: Webhook
    processes: Processes


@pytest.fixture(scope="module")
def sharded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sharded]:
    with running(tmp_path_factory.mktemp("shards")) as (processes, webhook):
        simulator, simulator_config = start_simulator(processes, list(SIMULATED))
        jobs = requests.get(f"{simulator}/_sim/jobs", timeout=5).json()
        one = start_exporter(processes, simulator_config, name="exporter-one")
        shards = [
            start_exporter(processes, simulator_config, f"--shard={i}", f"--total-shards={SHARDS}", name=f"shard-{i}")
            for i in range(SHARDS)
        ]
        alertmanager = start_alertmanager(processes, webhook)
        stack = Sharded(
            simulator,
            jobs,
            start_prometheus(processes, [one], None, name="prometheus-one"),
            start_prometheus(processes, shards, alertmanager, name="prometheus-shards"),
            [f"shard-{i}" for i in range(SHARDS)],
            webhook,
            processes,
        )

        def both_scraped() -> bool:
            query = 'count(ingestion_job_state{state="running"})'
            counts = [[r["value"][1] for r in prometheus.query(query)] for prometheus in (stack.one, stack.shards)]
            return bool(counts[0]) and counts[0] == counts[1]

        wait_for("both Prometheus servers to hold every job", both_scraped, timeout=40)
        yield stack


def series(prometheus: Prometheus, expr: str) -> Counter[str]:
    """The label sets a query returns, each as often as it comes, without the labels of where Prometheus scraped
    it: a series that three shards each return is three, not one."""
    return Counter(
        json.dumps({k: v for k, v in result["metric"].items() if k not in SCRAPE_LABELS}, sort_keys=True)
        for result in prometheus.query(expr)
    )


def rule_queries() -> list[tuple[str, str]]:
    """(rule, PromQL) for every recording rule (its recorded series) and every alert (its expression)."""
    document = generate.rules_document(generate.parameters())
    found = []
    for group in document["groups"]:
        for rule in group["rules"]:
            if "record" in rule:
                found.append((rule["record"], rule["record"]))
            else:
                found.append((rule["alert"], rule["expr"]))
    return found


def test_every_dashboard_query_and_rule_sees_the_same_series_with_three_shards(sharded: Sharded) -> None:
    """Panels and rules see the same series, each as often; a variable's picker the same label values. Only the
    panels about the exporter's processes themselves show each process."""
    some_jobs = [(platform, f"sim-{platform}", jobs[0]["id"]) for platform, jobs in sharded.jobs.items()]
    queries = [
        (f"{board} {what} ({job[0]})", fill(expr, *job))
        for board, what, expr in panel_queries()
        if not any(panel in what for panel in PER_PROCESS_PANELS)
        for job in some_jobs
    ] + rule_queries()

    def seen(prometheus: Prometheus, what: str, expr: str) -> Counter[str] | set[str]:
        found = series(prometheus, expr)
        return set(found) if " variable " in what else found  # a picker lists each label value once

    def differing() -> list[str]:
        return [
            f"{what}: {expr}"
            for what, expr in queries
            if seen(sharded.one, what, expr) != seen(sharded.shards, what, expr)
        ]

    deadline = time.monotonic() + 60  # rates and recording rules need a few scrapes and evaluations in both
    while (different := differing()) and time.monotonic() < deadline:
        time.sleep(2)
    assert not different, "series that differ between one process and three shards:\n" + "\n".join(different)
    totals = sharded.shards.query("ingestion_exporter_total_shards")
    assert sorted(result["value"][1] for result in totals) == [str(SHARDS)] * SHARDS


def firing(prometheus: Prometheus) -> set[str]:
    """The alerts Prometheus holds firing, without the labels of where it scraped their series."""
    return {
        json.dumps({k: v for k, v in alert["labels"].items() if k not in SCRAPE_LABELS}, sort_keys=True)
        for alert in prometheus.alerts()
        if alert["state"] == "firing"
    }


def find(sharded: Sharded, since: int, status: str, **labels: str) -> list[dict[str, Any]]:
    return [
        alert
        for _path, alert in sharded.webhook.alerts(since)
        if alert["status"] == status and labels_match(alert["labels"], labels)
    ]


def test_a_missing_shard_pages_alone_and_a_failed_job_pages_once(sharded: Sharded) -> None:
    survivors = {0, 1}
    job = next(j for j in sharded.jobs["informatica"] if job_shard(INFORMATICA_TARGET, j["id"], SHARDS) in survivors)
    since = sharded.webhook.mark()
    next(p for p in sharded.processes.started if p.name == f"shard-{SHARDS - 1}").stop()
    wait_for(
        f"{SHARD_MISSING} to reach the pager",
        lambda: find(sharded, since, "firing", alertname=SHARD_MISSING) or None,
        timeout=60,
    )
    answer = requests.post(
        f"{sharded.simulator}/_sim/informatica/jobs/{job['id']}/state", json={"state": "Running with Error"}, timeout=5
    )
    assert answer.status_code == 200, answer.text
    try:
        wait_for(
            "IngestionJobFailed of a surviving shard's job",
            lambda: find(sharded, since, "firing", alertname="IngestionJobFailed", job_id=job["id"]) or None,
            timeout=60,
        )
        time.sleep(3)  # three group intervals: a second page, or any other, would have arrived by now
        paged = {json.dumps(alert["labels"], sort_keys=True) for alert in find(sharded, since, "firing")}
        names = [json.loads(labels)["alertname"] for labels in paged]
        assert names.count(SHARD_MISSING) == 1, paged
        forced = [labels for labels in map(json.loads, paged) if labels["alertname"] == "IngestionJobFailed"]
        assert [labels["job_id"] for labels in forced].count(job["id"]) == 1, forced  # once, not once a shard
        # Nothing fires with two of three shards that does not fire with one process: the stopped shard's jobs are
        # gone (the shards-missing page says so), and no job or target alert takes their absence for a problem.
        deadline = time.monotonic() + 20  # the two servers evaluate on their own clocks: let them agree first
        while (extra := firing(sharded.shards) - firing(sharded.one)) and time.monotonic() < deadline:
            if {json.loads(labels)["alertname"] for labels in extra} == {SHARD_MISSING}:
                break
            time.sleep(1)
        assert {json.loads(labels)["alertname"] for labels in extra} == {SHARD_MISSING}, extra
    finally:
        requests.post(f"{sharded.simulator}/_sim/informatica/jobs/{job['id']}/state", json={"state": None}, timeout=5)
