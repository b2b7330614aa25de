"""The benchmark command stays runnable, and the fast exposition writer it relies on matches prometheus_client."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prometheus_client.registry import Collector

from exporter import exposition
from exporter.metrics import JOB_STATE, JOBS_DISCOVERED, NODE_STATE, JobRef, Output, all_families, gauge
from tests.helpers import SIMULATED, run_benchmark

PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)


def test_quick_benchmark_runs_and_reports_floors_and_ratios(tmp_path: Path) -> None:
    report_file = tmp_path / "bench.json"
    done = run_benchmark("run", "--quick", "--json", str(report_file), timeout=90)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "net floor" in done.stdout and "x floor" in done.stdout
    report = json.loads(report_file.read_text())
    [result] = report["results"]
    for key in (
        "wall_median_s",
        "wall_p95_s",
        "floor_network_s",
        "floor_render_s",
        "ratio_wall",
        "ratio_wall_network",
        "ratio_requests",
        "peak_rss_mib",
    ):
        assert math.isfinite(result[key]) and result[key] > 0, key
    # The exporter and every floor measured in each of the same rounds, each with its median and spread.
    rounds = result["rounds"]
    # the requests of one steady scrape are replayed (a new Informatica run adds its two reads when recorded)
    assert rounds == 3 and abs(result["floor_requests_replayed"] - result["one_scrape_requests"]) <= 2
    figures = [result["cpu_per_scrape_s"], *result["floors_cpu_s"].values(), *result["ratios_cpu"].values()]
    assert (
        set(result["floors_cpu_s"])
        == set(result["ratios_cpu"])
        == {
            "session_request",
            "send_prepared",
            "urllib3",
            "aiohttp",
        }
    )
    for spread in figures:
        assert len(spread["rounds"]) == rounds and all(value > 0 for value in spread["rounds"])
        assert spread["min"] <= spread["median"] <= spread["max"]
    for client, ratio in result["ratios_cpu"].items():
        exporter, floor = result["cpu_per_scrape_s"]["rounds"], result["floors_cpu_s"][client]["rounds"]
        assert ratio["rounds"] == [mine / theirs for mine, theirs in zip(exporter, floor, strict=True)], client
        assert f"{ratio['median']:.3f} ({ratio['min']:.3f}-{ratio['max']:.3f})" in done.stdout
    assert len(result["load_average_at_start"]) == len(report["machine"]["load_average_at_end"]) == 3
    assert "load average (1/5/15 min) at start" in done.stdout
    assert result["series"] > 0 and result["exposition_bytes"] > 0
    assert set(result["requests_per_scrape_by_platform"]) == set(SIMULATED)
    assert result["four_simultaneous_requests"] == result["one_scrape_requests"], "simultaneous scrapes share one"
    assert result["min_interval"]["first_scrape_requests"] > 0
    assert result["min_interval"]["second_scrape_requests"] == 0, "a scrape inside min_interval calls no upstream"
    # The same jobs as one target and split over ten, each exporter a process of its own, scraped in turn.
    split = report["targets"]
    assert split["jobs"] == 40 and split["split"] == 10 and split["rounds"] == rounds
    assert set(split["exporters"]) == {"this tree, 1 target", "this tree, 10 targets"}
    one, ten = (split["exporters"][f"this tree, {n}"]["cpu"] for n in ("1 target", "10 targets"))
    assert split["cpu_ratio_split_to_one"]["this tree, 10 targets"] == [t / o for t, o in zip(ten, one, strict=True)]
    assert "the same jobs as one target and as 10" in done.stdout and "x one target's (same round)" in done.stdout
    soaked = report["soak"]
    assert soaked["scrapes"] == 20 and soaked["rss_end_mib"] > 0
    # 20 scrapes are 3 samples: no growth figure or trend is drawn from them, and the output says why.
    assert soaked["growth_percent"] is None and soaked["trend_percent_per_1000_scrapes"] is None
    rss_lines = done.stdout.split("RSS over")[1].split("input over")[0]
    assert soaked["single_sample_growth_percent"] is None and " %" not in rss_lines
    assert "too few samples (3, one every 10 scrapes)" in done.stdout and "least-squares" not in done.stdout


def test_shards_mode_shares_the_jobs_at_the_sharded_request_floor(tmp_path: Path) -> None:
    report_file = tmp_path / "shards.json"
    arguments = ["--shards", "1,2", "--shard-jobs", "10", "--big-shards", "0", "--scrapes", "2", "--warmup", "1"]
    arguments += ["--latency-ms", "2", "--shard-interval", "0", "--json", str(report_file)]
    done = run_benchmark("run", *arguments, timeout=60)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    one, two = json.loads(report_file.read_text())["shards"]
    assert (one["shards"], two["shards"]) == (1, 2) and len(two["cpu_per_scrape_by_shard_s"]) == 2
    assert all(cpu > 0 for cpu in two["cpu_per_scrape_by_shard_s"]) and two["wall_median_s"] > 0
    # Two shards make one process's per-job calls between them and repeat only the target-level ones (a new
    # Informatica run during the rounds adds a jobs-resource read: a few calls of slack).
    floor, repeated = one["requests_floor_unsharded"], two["requests_floor_sharded"] - one["requests_floor_unsharded"]
    assert floor <= one["requests_per_round"] <= floor + 3
    assert 0 < two["requests_per_round"] - one["requests_per_round"] <= repeated + 3


def test_churn_mode_reports_the_soak_alone(tmp_path: Path) -> None:
    report_file = tmp_path / "churn.json"
    arguments = ["--churn", "--churn-days", "0.5", "--churn-scrapes", "60", "--churn-jobs", "5"]
    done = run_benchmark("run", *arguments, "--json", str(report_file), timeout=60)
    assert "churn soak: 0.5 simulated days in 60 scrapes" in done.stdout and "net floor" not in done.stdout
    # Five jobs a platform are too few for steady structures (tests/test_churn.py judges the soak): the exit
    # status is the verdict printed.
    assert done.returncode == (1 if "FAILED: " in done.stdout else 0), done.stdout[-3000:] + done.stderr[-2000:]
    report = json.loads(report_file.read_text())
    assert set(report) == {"churn", "machine"}, "no size table"
    churned = report["churn"]
    assert churned["scrapes"] == 60 and churned["rotations"] == churned["reloads"] == 12
    assert sum(churned["job_ids"].values()) > 4 * 5 and churned["samples"] and churned["growth"]["RSS MiB"]


ODD = gauge("odd_value", 'Help with a "quote", a back\\slash\nand a new line.', ("platform", "target", "zeta", "alpha"))


def _outputs() -> list[Output]:
    first, second = Output("informatica", "a"), Output("siren", "b")
    job = JobRef('id "1"', "name\\with\nodd ✓ characters")
    first.job_state(job, "running", "Up and Running")
    first.state_set(NODE_STATE, "failed", job, node="reader")
    first.state_set(NODE_STATE, "not a normalized state", job, node="writer")
    second.job_state(JobRef("2", "two"), "stopped", None)
    for value in (0.0, 1.0, -0.0, 1e6, 123456789.0, 0.1, -2.5, 1e-9, float("inf"), float("-inf"), float("nan")):
        second.add(ODD, value, zeta=repr(value), alpha="")
    first.add(JOBS_DISCOVERED, 3)
    sparse = Output("dataarts", "c", sparse=True)
    sparse.job_state(JobRef("3", "three"), "degraded", "warn")
    return [first, second, sparse]


class _Static(Collector):
    def __init__(self, metrics: list[Any]) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Any]:
        return iter(self.metrics)


def test_fast_exposition_is_byte_identical_to_prometheus_client() -> None:
    families = all_families([ODD, JOB_STATE])
    outputs = tuple(_outputs())
    for accept, openmetrics in (("", False), (PROMETHEUS_ACCEPT, True)):
        fmt = exposition.negotiate(accept)
        assert fmt.openmetrics is openmetrics
        expected = fmt.encoder(_Static(exposition.merge(families, outputs)))
        assert b"".join(exposition.Exposition(families).chunks(outputs, fmt, None)) == expected


def test_other_formats_are_left_to_prometheus_client() -> None:
    families = all_families([ODD, JOB_STATE])
    outputs = tuple(_outputs())
    fmt = exposition.negotiate("text/plain;version=1.0.0;escaping=values")
    assert fmt.openmetrics is None and fmt.content_type.startswith("text/plain; version=1.0.0")
    expected = fmt.encoder(_Static(exposition.merge(families, outputs)))
    assert b"".join(exposition.Exposition(families).chunks(outputs, fmt, None)) == expected
