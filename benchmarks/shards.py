"""Sharding benchmark: the same jobs collected by 1, 2 or 4 exporter processes, as `--shard=I --total-shards=N`.

    python -m benchmarks.run --shards 1,2,4 [--shard-jobs 500] [--big-shards 4 --big-shard-jobs 2500]
                             [--shard-interval 10]

For each shard count N, N exporter processes watch one simulator (jobs per platform, four platforms); every round
scrapes all N, after the warm-up rounds: at once with `--shard-interval 0` (the worst case), else spread over the
interval as Prometheus spreads the scrapes of its targets (shard i at i/N of it). Per N it
reports a shard's median and p95 scrape wall, the CPU per scrape of each shard (and all of them together), and the
upstream requests of a round against the unsharded floor plus what each further shard repeats: its own job list
pages and Siren's running list and job log, and a Cloud Stream metrics call part-filled. The big run is one
shard count at a larger size (10,000 jobs over 4 shards by default).
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import requests
import yaml

from benchmarks.run import (
    CLOUDSTREAM_PAGE,
    cpu_seconds,
    exporter,
    exporter_config,
    request_floor,
    reset,
    scrape,
    sim_requests,
    simulator,
)

SIREN_TARGET_CALLS = 2  # the running list and the job log, made by every shard


def repeated_calls(n: int, batch_size: int) -> float:
    """Upstream calls a further shard adds to a round: the Cloud Stream list pages, Siren's two target-level
    calls, and at most one Cloud Stream metrics call that its share fills only in part."""
    return max(1, math.ceil(n / CLOUDSTREAM_PAGE)) + SIREN_TARGET_CALLS + 1


def measure(args: argparse.Namespace, n: int, counts: list[int], workdir: Path) -> list[dict[str, Any]]:
    """One simulator of `n` jobs per platform; each shard count in turn against it."""
    control = requests.Session()
    results = []
    with simulator(n, args.latency_ms, workdir) as (sim, sim_url, _credentials, simulated):
        jobs = control.get(f"{sim_url}/_sim/jobs", timeout=30).json()
        config_file = workdir / f"config-shards-{n}.yaml"
        config_file.write_text(yaml.safe_dump(exporter_config(simulated, jobs, args.concurrency, args.batch_size)))
        floor = request_floor(n, args.concurrency, args.batch_size)
        for total in counts:
            with ExitStack() as stack:
                shards = [
                    stack.enter_context(exporter(config_file, flags=(f"--shard={i}", f"--total-shards={total}")))
                    for i in range(total)
                ]
                results.append(_rounds(args, n, total, shards, sim.pid, sim_url, control, floor))
    return results


def _rounds(
    args: argparse.Namespace,
    n: int,
    total: int,
    shards: list[tuple[Any, str]],
    sim_pid: int,
    sim_url: str,
    control: requests.Session,
    floor: dict[str, dict[str, float]],
) -> dict[str, Any]:
    clients = [requests.Session() for _ in shards]
    interval = args.shard_interval
    with ThreadPoolExecutor(total) as pool:

        def round_walls() -> list[float]:
            """One scrape of every shard; with an interval, shard i's at i/N of it, as Prometheus spreads the
            scrapes of its targets over the interval (each target at an offset of its own)."""
            start = time.perf_counter()

            def one(index: int) -> float:
                time.sleep(max(0.0, start + index * interval / total - time.perf_counter()))
                return scrape(clients[index], shards[index][1])[0]

            walls = list(pool.map(one, range(total)))
            time.sleep(max(0.0, start + interval - time.perf_counter()))
            return walls

        for _ in range(args.warmup):
            round_walls()
        reset(control, sim_url)
        cpu_before = [cpu_seconds(process.pid) for process, _url in shards]
        sim_before = cpu_seconds(sim_pid)
        walls: list[float] = []
        started = time.perf_counter()
        for _ in range(args.scrapes):
            walls += round_walls()
        elapsed = time.perf_counter() - started
        cpu = [
            (cpu_seconds(process.pid) - before) / args.scrapes
            for (process, _), before in zip(shards, cpu_before, strict=True)
        ]
        requests_per_round = sum(sim_requests(control, sim_url).values()) / args.scrapes
    walls.sort()
    unsharded = sum(item["requests"] for item in floor.values())
    return {
        "jobs": 4 * n,
        "shards": total,
        "scrapes": args.scrapes,
        "interval_s": interval,
        "wall_median_s": statistics.median(walls),
        "wall_p95_s": walls[min(len(walls) - 1, math.ceil(0.95 * len(walls)) - 1)],
        "cpu_per_scrape_by_shard_s": cpu,
        "cpu_per_round_s": sum(cpu),
        "round_s": elapsed / args.scrapes,
        "simulator_cpu_per_round_s": (cpu_seconds(sim_pid) - sim_before) / args.scrapes,
        "requests_per_round": requests_per_round,
        "requests_floor_unsharded": unsharded,
        "requests_floor_sharded": unsharded + (total - 1) * repeated_calls(n, args.batch_size),
    }


def table(results: list[dict[str, Any]]) -> str:
    header = (
        f"{'jobs':>6} {'shards':>6} {'wall p50':>9} {'p95':>7} {'cpu/shard (each)':>24} {'cpu sum':>8} "
        f"{'req/round':>9} {'floor 1':>8} {'floor N':>8}"
    )
    lines = [header, "-" * len(header)]
    for r in results:
        each = " ".join(f"{c:.2f}" for c in r["cpu_per_scrape_by_shard_s"])
        lines.append(
            f"{r['jobs']:>6} {r['shards']:>6} {r['wall_median_s']:>8.3f}s {r['wall_p95_s']:>6.3f}s {each:>24} "
            f"{r['cpu_per_round_s']:>7.2f}s {r['requests_per_round']:>9.1f} {r['requests_floor_unsharded']:>8.0f} "
            f"{r['requests_floor_sharded']:>8.0f}"
        )
    return "\n".join(lines)


def run(args: argparse.Namespace, workdir: Path) -> list[dict[str, Any]]:
    results = measure(args, args.shard_jobs, args.shards, workdir)
    if args.big_shards:
        results += measure(args, args.big_shard_jobs, [args.big_shards], workdir)
    return results
