"""End to end: the simulator feeds the exporter, Prometheus scrapes it with the shipped rules, Alertmanager
routes with the shipped example, and a webhook receives what the on-call would get.

One stack for the module (about a minute to run): a job driven into failure pages and resolves; every
dashboard query returns data; a target the exporter cannot reach gives one target page, its job alerts
inhibited.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import requests
import yaml

from exporter.simulator.process import announced, command
from tests.e2e.stack import Processes, Prometheus, Webhook, binary, free_port, labels_match, running, wait_for
from tests.helpers import SIMULATED
from tests.test_grafana import panel_queries

INFORMATICA_TARGET = "sim-informatica"  # the name the simulator's --config-out gives its Informatica target

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

ROOT = Path(__file__).resolve().parents[2]
SCRAPE_INTERVAL = "2s"
# The shipped rules, with `for` durations short enough for a test: only the documented parameters change.
FAST = {"job_failed_for": "2s", "target_unreachable_for": "3s", "job_unknown_for": "6s", "shards_missing_for": "3s"}
RATE_INTERVAL = "30s"
EVALUATION_SECONDS = 1.0
SLACK_SECONDS = 2.0  # a busy machine's scrape and evaluation run late by this much at most


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("grafana_generate_e2e", ROOT / "grafana" / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


generate = load_generator()


@dataclass
class Stack:
    simulator: str
    jobs: dict[str, list[dict[str, str]]]
    prometheus: Prometheus
    alertmanager: str
    webhook: Webhook
    processes: Processes

    def force(self, platform: str, job_id: str, state: str | None) -> None:
        answer = requests.post(
            f"{self.simulator}/_sim/{platform}/jobs/{job_id}/state", json={"state": state}, timeout=5
        )
        assert answer.status_code == 200, answer.text

    def check_alive(self) -> None:
        for process in self.processes.started:
            process.check_alive()


def start_simulator(processes: Processes, platforms: list[str]) -> tuple[str, Path]:
    """The simulator as a process of its own, and the exporter configuration it wrote for itself."""
    config = processes.workdir / "simulator-config.yml"
    process = processes.start(
        "simulator",
        command(jobs=4, transition_seconds=3600, platforms=",".join(platforms), config_out=config),
        env={"PYTHONPATH": str(ROOT)},
    )

    def started() -> str | None:
        process.check_alive()
        return announced(process.output()).get("url")

    url = wait_for("the simulator", started, timeout=20)
    return url, config


def start_exporter(processes: Processes, simulator_config: Path, *flags: str, name: str = "exporter") -> str:
    """An exporter process on the simulator's own configuration (a shorter budget), with extra flags."""
    document = yaml.safe_load(simulator_config.read_text())
    config = processes.workdir / "exporter.yml"
    config.write_text(yaml.safe_dump({**document, "scrape_budget_seconds": 1.5}))
    env = {"PYTHONPATH": str(ROOT)}
    port = free_port()
    process = processes.start(
        name,
        [
            sys.executable,
            "-m",
            "exporter",
            "--config.file",
            str(config),
            "--web.listen-address",
            f"127.0.0.1:{port}",
            "--log.format",
            "json",
            *flags,
        ],
        env=env,
    )
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        process.check_alive()
        return requests.get(f"{url}/readyz", timeout=2).status_code == 200

    wait_for("the exporter", ready, timeout=20)
    return url


def start_alertmanager(processes: Processes, webhook: Webhook) -> str:
    """The shipped example, its receivers pointed at the webhook (one path per receiver), its waits short."""
    config = yaml.safe_load((ROOT / "grafana" / "alertmanager.example.yml").read_text())
    config["route"].update(group_wait="1s", group_interval="1s", repeat_interval="1h")
    for receiver in config["receivers"]:
        for hook in receiver["webhook_configs"]:
            hook["url"] = f"{webhook.url}/{receiver['name']}"
    path = processes.workdir / "alertmanager.yml"
    path.write_text(yaml.safe_dump(config))
    port = free_port()
    process = processes.start(
        "alertmanager",
        [
            binary("prometheus-alertmanager", "alertmanager"),
            f"--config.file={path}",
            f"--storage.path={processes.workdir / 'alertmanager-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
    )
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        process.check_alive()
        return requests.get(f"{url}/-/ready", timeout=2).status_code == 200

    wait_for("Alertmanager", ready, timeout=20)
    return url


def start_prometheus(
    processes: Processes, exporters: list[str], alertmanager: str | None, name: str = "prometheus"
) -> Prometheus:
    """Prometheus with the shipped rules (shorter waits), scraping every exporter process of one job."""
    rules = processes.workdir / "ingestion-exporter.rules.yml"
    rules.write_text(generate.rules_yaml(generate.parameters(FAST)))
    targets = [exporter.removeprefix("http://") for exporter in exporters]
    config: dict[str, Any] = {
        "global": {
            "scrape_interval": SCRAPE_INTERVAL,
            "scrape_timeout": SCRAPE_INTERVAL,
            "evaluation_interval": f"{EVALUATION_SECONDS:g}s",
        },
        "rule_files": [str(rules)],
        "scrape_configs": [{"job_name": "ingestion-exporter", "static_configs": [{"targets": targets}]}],
    }
    if alertmanager is not None:
        manager = alertmanager.removeprefix("http://")
        config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [manager]}]}]}
    path = processes.workdir / f"{name}.yml"
    path.write_text(yaml.safe_dump(config))
    port = free_port()
    process = processes.start(
        name,
        [
            binary("prometheus"),
            f"--config.file={path}",
            f"--storage.tsdb.path={processes.workdir / f'{name}-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--rules.alert.resend-delay=1s",
        ],
    )
    prometheus = Prometheus(f"http://127.0.0.1:{port}")

    def ready() -> bool:
        process.check_alive()
        return requests.get(f"{prometheus.url}/-/ready", timeout=2).status_code == 200

    wait_for("Prometheus", ready, timeout=30)
    return prometheus


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    platforms = list(SIMULATED)
    assert "informatica" in platforms
    with running(tmp_path_factory.mktemp("stack")) as (processes, webhook):
        simulator, simulator_config = start_simulator(processes, platforms)
        jobs = requests.get(f"{simulator}/_sim/jobs", timeout=5).json()
        exporter = start_exporter(processes, simulator_config)
        alertmanager = start_alertmanager(processes, webhook)
        prometheus = start_prometheus(processes, [exporter], alertmanager)

        def every_platform_scraped() -> bool:
            seen = {s["metric"]["platform"] for s in prometheus.query('ingestion_job_state{state="running"}')}
            return seen >= set(platforms)

        wait_for("the first scrapes of every target", every_platform_scraped, timeout=30)
        yield Stack(simulator, jobs, prometheus, alertmanager, webhook, processes)


def find_alert(stack: Stack, since: int, receiver: str, status: str, **labels: str) -> dict[str, Any] | None:
    for path, alert in stack.webhook.alerts(since):
        if path == f"/{receiver}" and alert["status"] == status and labels_match(alert["labels"], labels):
            return alert
    return None


def test_rules_under_test_are_the_shipped_ones_with_shorter_waits() -> None:
    shipped = yaml.safe_load(generate.RULES_FILE.read_text())
    fast = yaml.safe_load(generate.rules_yaml(generate.parameters(FAST)))
    assert [r["expr"] for g in fast["groups"] for r in g["rules"]] == [
        r["expr"] for g in shipped["groups"] for r in g["rules"]
    ]
    assert set(FAST) <= {name for name in generate.THRESHOLDS if name.endswith("_for")}


def test_failed_job_pages_and_resolves(stack: Stack) -> None:
    job = stack.jobs["informatica"][0]
    labels = {
        "alertname": "IngestionJobFailed",
        "platform": "informatica",
        "target": INFORMATICA_TARGET,
        "job_id": job["id"],
        "job_name": job["name"],
        "severity": "critical",
        "state": "failed",
        "job": "ingestion-exporter",
    }
    since = stack.webhook.mark()
    stack.force("informatica", job["id"], "Running with Error")
    fired = wait_for(
        "IngestionJobFailed to reach the pager",
        lambda: find_alert(stack, since, "ingestion-pager", "firing", **labels),
        timeout=45,
    )
    assert fired["annotations"] == {
        "summary": f"Ingestion job {job['name']} on informatica failed.",
        "description": f"Job {job['name']} ({job['id']}) on informatica target {INFORMATICA_TARGET} has been in the "
        "failed state for more than 2s.",
        "runbook_url": f"{generate.THRESHOLDS['runbook_url'].default}#ingestionjobfailed",
    }
    stack.force("informatica", job["id"], "Up and Running")
    wait_for(
        "IngestionJobFailed to resolve",
        lambda: find_alert(stack, since, "ingestion-pager", "resolved", **labels),
        timeout=45,
    )
    stack.check_alive()


def running_job(stack: Stack, platform: str, besides: set[str]) -> dict[str, str]:
    """A job of `platform` that Prometheus has seen running and no other test drives."""
    seen = {
        s["metric"]["job_id"]
        for s in stack.prometheus.query(f'ingestion_job_state{{platform="{platform}", state="running"}} == 1')
    }
    return next(job for job in stack.jobs[platform] if job["id"] in seen and job["id"] not in besides)


def restart(stack: Stack, platform: str, job_id: str, how: str) -> None:
    answer = requests.post(f"{stack.simulator}/_sim/{platform}/jobs/{job_id}/{how}", timeout=5)
    assert answer.status_code == 200, answer.text


def evaluated_after(stack: Stack, moment: float, evaluations: int) -> bool:
    """True once every rule group has been evaluated `evaluations` times after `moment` (Prometheus' clock)."""
    groups = requests.get(f"{stack.prometheus.url}/api/v1/rules", timeout=5).json()["data"]["groups"]
    interval = min(group["interval"] for group in groups)
    latest = min(datetime.fromisoformat(group["lastEvaluation"]).timestamp() for group in groups)
    return latest >= moment + evaluations * interval


def test_run_that_fails_and_restarts_between_scrapes_pages_and_a_stop_does_not(stack: Stack) -> None:
    """The job is running before and after: only its run history tells. The failed run reaches the ticket
    queue within a scrape interval, the rule's `for` and two evaluations (plus Alertmanager's group wait);
    a run stopped on purpose and restarted pages nobody."""
    taken = {stack.jobs["informatica"][0]["id"]}  # test_failed_job_pages_and_resolves drives it
    failing = running_job(stack, "siren", taken)
    stopping = running_job(stack, "siren", taken | {failing["id"]})
    rule = next(
        r
        for g in yaml.safe_load(generate.rules_yaml(generate.parameters(FAST)))["groups"]
        for r in g["rules"]
        if r.get("alert") == "IngestionJobRunFailed"
    )
    wait = generate.seconds(SCRAPE_INTERVAL) + generate.seconds(rule.get("for", "0")) + 2 * EVALUATION_SECONDS
    labels = {"alertname": "IngestionJobRunFailed", "platform": "siren", "job_id": failing["id"], "severity": "warning"}

    def counted(job: dict[str, str], outcome: str) -> bool:
        series = stack.prometheus.query(f'ingestion_job_runs_total{{job_id="{job["id"]}", outcome="{outcome}"}} == 1')
        return bool(series)

    since = stack.webhook.mark()
    started = time.monotonic()
    restart(stack, "siren", failing["id"], "fail-and-restart")

    def firing() -> bool:
        return any(a["state"] == "firing" and labels_match(a["labels"], labels) for a in stack.prometheus.alerts())

    wait_for("IngestionJobRunFailed to fire", firing, timeout=60, interval=0.1)
    fired = time.monotonic() - started
    wait_for(
        "IngestionJobRunFailed to reach the ticket queue",
        lambda: find_alert(stack, since, "ingestion-tickets", "firing", **labels),
        timeout=60,
        interval=0.1,
    )
    delivered = time.monotonic() - started
    print(
        f"\nfail-and-restart between scrapes: firing in Prometheus after {fired:.1f}s, delivered after "
        f"{delivered:.1f}s (scrape interval + for + two evaluations = {wait:.0f}s, then a group wait of 1s)"
    )
    assert fired <= wait + SLACK_SECONDS, fired
    assert delivered <= wait + 1 + SLACK_SECONDS, delivered
    assert stack.prometheus.query(f'ingestion_job_state{{job_id="{failing["id"]}", state="running"}} == 1')
    assert stack.prometheus.query(f'ingestion_job_last_failure_timestamp_seconds{{job_id="{failing["id"]}"}}')

    restart(stack, "siren", stopping["id"], "stop-and-restart")
    wait_for("the stopped run to be counted", lambda: counted(stopping, "stopped"), timeout=60)
    counted_at = time.time()
    wait_for("two rule evaluations after it", lambda: evaluated_after(stack, counted_at, 2), timeout=60)
    quiet = {"platform": "siren", "job_id": stopping["id"]}
    assert not [a for a in stack.prometheus.alerts() if labels_match(a["labels"], quiet)]
    assert not [a for _, a in stack.webhook.alerts(since) if labels_match(a["labels"], quiet)]
    assert not counted(stopping, "failed")
    print("stop-and-restart between scrapes: counted as stopped, no alert")
    stack.check_alive()


def fill(expr: str, platform: str, target: str, job_id: str) -> str:
    for name, value in (
        ("$__rate_interval", RATE_INTERVAL),
        ("$__range", "1h"),
        ("$platform", platform),
        ("$target", target),
        ("$job", job_id),
    ):
        expr = expr.replace(name, value)
    return expr


def test_every_dashboard_query_returns_data(stack: Stack) -> None:
    """Each query, its variables filled with some job of the stack (as a user picking it would), has data."""
    queries = panel_queries()

    def jobs() -> list[tuple[str, str, str]]:
        series = stack.prometheus.query("max by (platform, target, job_id) (ingestion_job_state)")
        return sorted((s["metric"]["platform"], s["metric"]["target"], s["metric"]["job_id"]) for s in series)

    def missing() -> list[str]:
        known = jobs()
        empty = []
        for board, what, expr in queries:
            if not any(stack.prometheus.query(fill(expr, *job)) for job in known):
                empty.append(f"{board} {what}: {expr}")
        return empty

    deadline = time.monotonic() + 40
    while (empty := missing()) and time.monotonic() < deadline:
        time.sleep(2)
    assert not empty, "dashboard queries without data:\n" + "\n".join(empty)


def test_unreachable_target_pages_once_and_inhibits_its_job_alerts(stack: Stack) -> None:
    target = {"platform": "informatica", "target": INFORMATICA_TARGET}
    since = stack.webhook.mark()
    answer = requests.post(
        f"{stack.simulator}/_sim/faults", json={"kind": "refuse", "platform": "informatica"}, timeout=5
    )
    assert answer.status_code == 201, answer.text
    try:
        page = wait_for(
            "IngestionTargetUnreachable to reach the pager",
            lambda: find_alert(
                stack, since, "ingestion-pager", "firing", alertname="IngestionTargetUnreachable", **target
            ),
            timeout=60,
        )
        assert page["annotations"]["summary"] == f"The exporter cannot read informatica target {INFORMATICA_TARGET}."

        jobs = {job["id"] for job in stack.jobs["informatica"]}

        def unknown_alerts_firing() -> bool:
            firing = {
                a["labels"]["job_id"]
                for a in stack.prometheus.alerts()
                if a["state"] == "firing"
                and labels_match(a["labels"], target)
                and a["labels"]["alertname"] == "IngestionJobStateUnknown"
            }
            return firing >= jobs

        wait_for("IngestionJobStateUnknown to fire in Prometheus for every job", unknown_alerts_firing, timeout=45)

        def suppressed_in_alertmanager() -> bool:
            answer = requests.get(
                f"{stack.alertmanager}/api/v2/alerts",
                params={"filter": 'alertname="IngestionJobStateUnknown"'},
                timeout=5,
            )
            alerts = [a for a in answer.json() if labels_match(a["labels"], target)]
            return {a["labels"]["job_id"] for a in alerts} >= jobs and all(
                a["status"]["state"] == "suppressed" and a["status"]["inhibitedBy"] for a in alerts
            )

        wait_for("Alertmanager to inhibit the job alerts of the target", suppressed_in_alertmanager, timeout=30)
        time.sleep(3)  # three group intervals: a job page, if any were let through, would have arrived by now
        received = stack.webhook.alerts(since)
        job_pages = [
            alert["labels"]
            for _, alert in received
            if alert["status"] == "firing"
            and alert["labels"]["alertname"].startswith("IngestionJob")
            and labels_match(alert["labels"], target)
        ]
        assert job_pages == []
        target_pages = {
            json.dumps(alert["labels"], sort_keys=True)
            for _, alert in received
            if alert["status"] == "firing" and alert["labels"]["alertname"] == "IngestionTargetUnreachable"
        }
        assert len(target_pages) == 1
    finally:
        requests.delete(f"{stack.simulator}/_sim/faults", timeout=5)
    stack.check_alive()
