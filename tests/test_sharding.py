"""Sharding: shard processes together expose exactly what one process does, at the upstream cost of one plus the
target-level calls each shard repeats; resharding by restart loses and doubles nothing."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml

from exporter.app import Exporter, load, root_model
from exporter.logs import Redactor
from exporter.reload import Reloader
from exporter.sharding import Shard, job_shard, ordinal_of_pod
from exporter.simulator import Simulator, SimulatorOptions
from exporter.simulator.targets import simulated_config
from tests.helpers import get
from tests.test_process import Running
from tests.test_settings import run_cli

pytestmark = pytest.mark.timeout(120)

JOB_SERIES = re.compile(r"^ingestion_job_state\{([^}]*)\}", re.MULTILINE)
PER_JOB_ENDPOINTS = {"status", "statistics", "jobs", "job_status", "job"}
"""Calls made for one job: together the shards make exactly the unsharded process's."""
TARGET_ENDPOINTS = {"login_v3", "objects", "iam_token", "list_jobs", "jobs_running", "jobs_search"}
"""Calls made for a whole target: each shard makes them as the unsharded process does."""


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    # Transitions far apart: every process sees the same states; enough jobs that each shard gets some of each.
    with Simulator(SimulatorOptions(jobs=15, transition_seconds=36000)) as simulator:
        yield simulator


@pytest.fixture(scope="module")
def config(sim: Simulator, tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("sharding")
    document = simulated_config(sim, directory)
    for target in document["targets"]:
        target["discovery"] = {**target.get("discovery", {}), "enabled": True}
    path = directory / "exporter.yml"
    path.write_text(yaml.safe_dump(document))
    return path


def jobs_of(body: str) -> list[tuple[str, str, str]]:
    """(platform, target, job_id) of each job the exposition holds, once per job."""
    found = []
    for labels in JOB_SERIES.findall(body):
        pairs = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        if pairs["state"] == "running":  # every job has one series per state
            found.append((pairs["platform"], pairs["target"], pairs["job_id"]))
    return found


def scrape_counting(sim: Simulator, exporter: Running) -> tuple[list[tuple[str, str, str]], Counter[tuple[str, str]]]:
    """One scrape of one process, and the upstream requests it caused, by endpoint."""
    sim.reset_stats()
    body = requests.get(exporter.url + "/metrics", timeout=30).text
    return jobs_of(body), Counter({(platform, endpoint): n for (platform, endpoint, _m), n in sim.stats().items()})


def started(config: Path, *flags: str) -> Running:
    return Running(["--config.file", str(config), *flags])


def stop_all(processes: list[Running]) -> None:
    for process in processes:
        if process.process.poll() is None:
            process.stop()


def test_three_shards_expose_the_jobs_of_one_process_at_its_upstream_cost(sim: Simulator, config: Path) -> None:
    processes = [started(config)] + [started(config, f"--shard={i}", "--total-shards=3") for i in range(3)]
    try:
        for scrape in ("first", "steady"):
            whole, whole_calls = scrape_counting(sim, processes[0])
            parts = [scrape_counting(sim, shard) for shard in processes[1:]]
            union = [job for jobs, _ in parts for job in jobs]
            assert len(union) == len(set(union)), f"{scrape}: a job on two shards"
            assert sorted(union) == sorted(whole), f"{scrape}: the shards' jobs differ from one process's"
            assert all(jobs for jobs, _ in parts), f"{scrape}: a shard without jobs"
            assert {platform for platform, _t, _j in whole} == set(sim.platforms)
            for key in set(whole_calls).union(*(calls for _, calls in parts)):
                per_shard = [calls[key] for _, calls in parts]
                endpoint = key[1]
                if endpoint in PER_JOB_ENDPOINTS:
                    assert sum(per_shard) == whole_calls[key], (scrape, key, per_shard, whole_calls)
                elif endpoint in TARGET_ENDPOINTS:
                    assert per_shard == [whole_calls[key]] * 3, (scrape, key, per_shard, whole_calls)
                else:  # the batched Cloud Stream metrics call carries only a shard's own ids
                    assert endpoint == "job_metrics", key
                    assert whole_calls[key] <= sum(per_shard) <= whole_calls[key] + 2, (key, per_shard)
    finally:
        stop_all(processes)


def test_resharding_by_restart_loses_and_doubles_no_job(sim: Simulator, config: Path) -> None:
    one = started(config)
    try:
        expected = sorted(jobs_of(requests.get(one.url + "/metrics", timeout=30).text))
    finally:
        stop_all([one])
    for total in (3, 2, 4):
        shards = [started(config, f"--shard={i}", f"--total-shards={total}") for i in range(total)]
        try:
            union = [job for shard in shards for job in jobs_of(requests.get(shard.url + "/metrics", timeout=30).text)]
            assert sorted(union) == expected, f"{total} shards"
            gauges = [requests.get(shard.url + "/metrics", timeout=30).text for shard in shards]
            for ordinal, text in enumerate(gauges):
                assert f"ingestion_exporter_shard_ordinal {float(ordinal)}" in text
                assert f"ingestion_exporter_total_shards {float(total)}" in text
        finally:
            stop_all(shards)


def test_the_shard_of_a_job_is_fixed_and_spreads_one_target_evenly() -> None:
    assert job_shard("infa-prod", "1948938e-3923-4602-aba8-f122e3d66faf", 4) == job_shard(
        "infa-prod", "1948938e-3923-4602-aba8-f122e3d66faf", 4
    )
    counts = Counter(job_shard("one-big-target", f"job-{n}", 4) for n in range(4000))
    assert set(counts) == {0, 1, 2, 3} and min(counts.values()) > 900
    assert all(Shard(0, 1).owns("t", f"j{n}") for n in range(100))
    owners = [[Shard(i, 3).owns("t", f"j{n}") for i in range(3)] for n in range(300)]
    assert all(sum(row) == 1 for row in owners)


def test_the_ordinal_comes_from_the_pod_name_and_a_bad_one_exits_2(config: Path) -> None:
    assert ordinal_of_pod("ingestion-exporter-12") == 12 and ordinal_of_pod("ingestion-exporter") is None
    for flags in (
        ["--shard.from-pod-name", "ingestion-exporter"],
        ["--shard=3", "--total-shards=3"],
        ["--shard=1"],
    ):
        done = run_cli("--config.file", str(config), "--check-config", *flags)
        assert done.returncode == 2 and "Traceback" not in done.stderr, (flags, done.stderr)
    done = run_cli(
        "--config.file", str(config), "--check-config", "--shard.from-pod-name", "exp-2", "--total-shards", "4"
    )
    assert done.returncode == 0 and "shard: 2\ntotal_shards: 4\n" in done.stdout, done.stdout


def test_the_shard_comes_from_the_file_and_changes_with_a_reload(sim: Simulator, config: Path, tmp_path: Path) -> None:
    document = yaml.safe_load(config.read_text())
    path = tmp_path / "exporter.yml"
    path.write_text(yaml.safe_dump(document))
    model = root_model()
    exporter = Exporter(load(model, path), Redactor().sink)
    reloader = Reloader(exporter, lambda: load(model, path), close_after=0.0)
    try:
        everything = jobs_of(get(exporter.app, "/metrics")[1])
        shards = []
        for ordinal in range(2):
            path.write_text(yaml.safe_dump({**document, "shard": ordinal, "total_shards": 2}))
            assert reloader()[0]
            body = get(exporter.app, "/metrics")[1]
            assert f"ingestion_exporter_shard_ordinal {float(ordinal)}" in body
            shards.append(jobs_of(body))
        assert sorted(shards[0] + shards[1]) == sorted(everything) and shards[0] and shards[1]
        path.write_text(yaml.safe_dump({**document, "shard": 2, "total_shards": 2}))
        ok, message = reloader()
        assert not ok and "shard: 2 is not below total_shards 2" in message
    finally:
        exporter.close()
