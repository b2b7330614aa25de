"""Scale benchmark: the exporter against the standalone simulator, measured against the physical floor.

    python -m benchmarks.run [--sizes 25,100,250,500,1250,2500] [--latency-ms 20] [--concurrency 16] [--scrapes 10]
                             [--rounds 5] [--soak-scrapes 300] [--soak-jobs 500] [--soak-warmup 100] [--json FILE]
                             [--quick]
    python -m benchmarks.run --churn [--churn-days 30] [--churn-scrapes 800] [--churn-jobs 80] [--json FILE]

For each size N (jobs per platform, four platforms) it starts `python -m exporter.simulator` and the exporter
(`python -m exporter`) as two subprocesses, so the exporter's CPU (/proc/<pid>/stat) and peak RSS
(/proc/<pid>/status VmHWM) are its own, and scrapes /metrics like Prometheus does. Floors measured in the
same run: the network floor L x ceil(R_min / C) per target (targets are collected in parallel, so the
slowest target sets it), to which the wall floor adds the exporter's own renderer writing the same samples,
and the CPU floors of benchmarks/floors.py: the exporter's own requests of one scrape replayed, JSON-decoded,
by requests (`Session.request` and `send` of prepared requests), urllib3 and aiohttp, each client in its own
process, in rounds interleaved with the exporter's scrapes (median and spread over the rounds).
`--quick` is a smoke run of a few seconds.

`--churn` runs the churn soak of benchmarks/churn.py instead (a month of job churn, token renewals and secret
rotations in a few minutes) and exits 1 when it finds something grew.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import requests
import yaml

from benchmarks import floors
from exporter.simulator.platforms import PLATFORMS
from exporter.simulator.process import announced
from exporter.simulator.process import command as simulator_command

if TYPE_CHECKING:
    from benchmarks import targets

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
DISCOVERY_SECONDS = 3600.0  # longer than a size's run: discovery costs the first scrape only
SIREN_CONFIGURED = 2
JOB_LOG_SECONDS = 600  # the Siren job log holds a steady ten minutes of runs, so its size does not drift
MIN_SOAK_SCRAPES = 100  # ten samples, one every 10 scrapes: fewer cannot tell growth from the allocator's swing
CHURN_SCRAPES = 800  # the churn soak's month: a scrape every 54 simulated minutes
CHURN_JOBS = 80  # live jobs per platform in the churn soak
CLOUDSTREAM_PAGE = 100  # the largest page the job list call returns
BURST_HOLD_SECONDS = 1.0  # far longer than simultaneous scrapes take to arrive
PROMETHEUS_ACCEPT = (  # what Prometheus 2.x sends: prometheus_client answers in OpenMetrics
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)
ROOT = Path(__file__).resolve().parents[1]
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


# --- processes -----------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User plus system CPU of a process (all its threads) from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def memory_kib(pid: int, key: str) -> int:
    """VmHWM (peak RSS) or VmRSS of a process in KiB, from /proc/<pid>/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise LookupError(key)


def _first_line(process: subprocess.Popen[str], marker: str, timeout: float = 60.0) -> str:
    assert process.stdout is not None
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        line = process.stdout.readline()
        if not line:
            raise RuntimeError(f"process exited with {process.wait()} before printing {marker!r}")
        if marker in line:
            return line
    raise RuntimeError(f"no {marker!r} line within {timeout}s")


@contextmanager
def simulator(
    jobs: int, latency_ms: float, workdir: Path, **options: float
) -> Iterator[tuple[subprocess.Popen[str], str, Any, Any]]:
    """The simulator as a process of its own: (process, url, credentials, the exporter configuration it wrote).

    `options` are more of its command-line options, named with underscores (`churn_seconds=60`); they replace the
    benchmark's own transition and job log seconds."""
    credentials = workdir / "credentials.json"
    flags = {"transition_seconds": 30.0, "job_log_seconds": float(JOB_LOG_SECONDS), **options}
    process = subprocess.Popen(  # noqa: S603 - this interpreter and fixed arguments
        simulator_command(
            jobs=jobs,
            latency_ms=latency_ms,
            **flags,
            credentials_out=credentials,
            config_out=workdir / "simulator-config.yml",
        ),
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        url = announced(_first_line(process, "url="))["url"]
        config = yaml.safe_load((workdir / "simulator-config.yml").read_text())
        yield process, url, json.loads(credentials.read_text()), config
    finally:
        stop(process)


@contextmanager
def exporter(
    config: Path, env: Mapping[str, str] | None = None, flags: Sequence[str] = ()
) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """The exporter as a process of its own, `env` added to this environment, with extra flags: (process, url)."""
    process = subprocess.Popen(  # noqa: S603 - this interpreter and fixed arguments
        [
            sys.executable,
            "-m",
            "exporter",
            "--config.file",
            str(config),
            "--web.listen-address",
            "127.0.0.1:0",
            "--log.format",
            "json",
            "--log.level",
            "warning",
            *flags,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
        env={**os.environ, **env} if env else None,
    )
    try:
        # the `listening` line is logged at info: with --log.level warning, poll the port from /proc instead
        yield process, "http://" + _listening_address(process)
    finally:
        stop(process)


def _listening_address(process: subprocess.Popen[str], timeout: float = 60.0) -> str:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if process.poll() is not None:
            raise RuntimeError(f"exporter exited with {process.returncode}")
        inodes = set()
        try:
            for fd in os.listdir(f"/proc/{process.pid}/fd"):
                target = os.readlink(f"/proc/{process.pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except OSError:
            pass
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            parts = line.split()
            if parts[3] == "0A" and parts[9] in inodes:  # LISTEN
                port = int(parts[1].split(":")[1], 16)
                return f"127.0.0.1:{port}"
        time.sleep(0.05)
    raise RuntimeError("the exporter did not listen in time")


def stop(process: subprocess.Popen[Any]) -> None:
    """Terminate a benchmark's child, kill it if it will not go, and close its output."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if process.stdout is not None:
        process.stdout.close()


# --- configuration ---------------------------------------------------------------------------------------


def exporter_config(
    simulated: dict[str, Any],
    jobs: dict[str, list[dict[str, str]]],
    concurrency: int,
    batch_size: int,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The simulator's own configuration for the exporter (one target per platform, secrets in files), set up for
    the benchmark: its concurrency, discovery once per size, its Cloud Stream batch and Siren's configured jobs."""
    targets = []
    for target in simulated["targets"]:
        target = {**target, "max_concurrency": concurrency}
        if "discovery" in target:
            target["discovery"] = {**target["discovery"], "interval_seconds": DISCOVERY_SECONDS}
        if target["platform"] == "cloudstream":
            target["batch_size"] = batch_size
        if target["platform"] == "siren":
            target["jobs"] = [job["id"] for job in jobs["siren"][:SIREN_CONFIGURED]]
        targets.append(target)
    return {**simulated, "scrape_budget_seconds": 60.0, **(extra or {}), "targets": targets}


# --- floors ------------------------------------------------------------------------------------------------


def request_floor(n: int, concurrency: int, batch_size: int, new_runs: float = 0.0) -> dict[str, dict[str, float]]:
    """Per platform: the fewest upstream calls a steady-state scrape can make, and the sequential rounds they take
    at `concurrency` calls in flight. `new_runs` is how many Informatica runIds changed per scrape."""
    batches = math.ceil(n / batch_size)
    pages = max(1, math.ceil(n / CLOUDSTREAM_PAGE))
    return {
        # one status call and one statistics call per dataflow; the jobs and history resources when a runId changes
        "informatica": {"requests": 2 * n + 2 * new_runs, "rounds": math.ceil(2 * n / concurrency)},
        "dataarts": {"requests": n, "rounds": math.ceil(n / concurrency)},
        # the job list (states; pages of at most 100, one after another), then the batched metrics calls
        "cloudstream": {"requests": pages + batches, "rounds": pages + math.ceil(batches / concurrency)},
        # the running list and the job log together, then one call per configured id
        "siren": {"requests": 2 + SIREN_CONFIGURED, "rounds": 1 + math.ceil(SIREN_CONFIGURED / concurrency)},
    }


def spread(values: Sequence[float]) -> dict[str, Any]:
    """The median of per-round figures and their spread (the lowest and the highest), with the rounds themselves."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "rounds": list(values)}


# --- measuring -------------------------------------------------------------------------------------------


def sim_requests(session: requests.Session, url: str) -> Counter[str]:
    document = session.get(f"{url}/_sim/stats", timeout=30).json()
    return Counter({f"{r['platform']} {r['method']} {r['endpoint']}": r["count"] for r in document["requests"]})


def reset(session: requests.Session, url: str) -> None:
    session.post(f"{url}/_sim/reset-stats", timeout=30).raise_for_status()


def scrape(session: requests.Session, url: str, accept: str = PROMETHEUS_ACCEPT) -> tuple[float, bytes]:
    started = time.perf_counter()
    response = session.get(f"{url}/metrics", timeout=120, headers={"Accept": accept})
    response.raise_for_status()
    return time.perf_counter() - started, response.content


def series_of(body: bytes) -> int:
    return sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))


def informatica_runs(body: bytes) -> dict[str, tuple[str, bool]]:
    """Each Informatica dataflow's runId (the `run_id` label of `ingestion_job_info`) and whether it is deploying."""
    runs: dict[str, tuple[str, bool]] = {}
    deploying = set()
    for line in body.decode().splitlines():
        if 'platform="informatica"' not in line:
            continue
        if line.startswith("ingestion_job_info{"):
            labels = dict(LABEL.findall(line))
            runs[labels["job_id"]] = (labels["run_id"], False)
        elif (
            line.startswith("ingestion_job_vendor_state{")
            and 'vendor_state="deploying"' in line
            and not line.endswith(" 0.0")
        ):
            deploying.add(dict(LABEL.findall(line))["job_id"])
    return {job: (run, job in deploying) for job, (run, _) in runs.items()}


def run_moves(before: dict[str, tuple[str, bool]], after: dict[str, tuple[str, bool]]) -> tuple[int, int]:
    """Between two scrapes: how many runIds changed, and how many runs ended their deployment."""
    new = ended = 0
    for job, (run, deploying) in after.items():
        previous = before.get(job, ("", False))
        if run and previous[0] != run:
            new += 1
        elif run and previous[1] and not deploying:
            ended += 1
    return new, ended


def job_log_runs(session: requests.Session, sim_url: str, credentials: dict[str, Any]) -> int:
    """How many runs the simulated Siren job log holds: what every scrape's log search reads."""
    siren = credentials["siren"]
    answer = session.get(
        f"{sim_url}/_siren/connector/jobs/_search",
        params={"type": "ingestion"},
        timeout=60,
        auth=(siren["username"], siren["password"]),
    )
    return len(answer.json()["hits"]["hits"])


def by_platform(counts: Counter[str]) -> dict[str, int]:
    totals: Counter[str] = Counter()
    for key, count in counts.items():
        totals[key.split()[0]] += count
    return dict(totals)


def simultaneous(session_factory: Callable[[], requests.Session], url: str, count: int) -> None:
    barrier = threading.Barrier(count)
    sessions = [session_factory() for _ in range(count)]

    def one(session: requests.Session) -> None:
        barrier.wait()
        scrape(session, url)

    threads = [threading.Thread(target=one, args=(s,)) for s in sessions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def burst(control: requests.Session, sim_url: str, url: str, count: int) -> int:
    """Upstream requests of `count` simultaneous scrapes, each platform's first answer held for a second.

    Held, every target's collection outlasts the moment the scrapes arrive by far, whatever the machine's
    load, so every scrape joins it: one collection's requests, not one more per late arrival.
    """
    for platform in PLATFORMS:
        hold = {"kind": "latency", "platform": platform, "seconds": BURST_HOLD_SECONDS, "count": 1}
        control.post(f"{sim_url}/_sim/faults", json=hold, timeout=30).raise_for_status()
    try:
        simultaneous(requests.Session, url, count)
    finally:
        control.delete(f"{sim_url}/_sim/faults", timeout=30).raise_for_status()
    return sum(sim_requests(control, sim_url).values())


def measure_size(args: argparse.Namespace, n: int, workdir: Path) -> dict[str, Any]:
    """One size: the exporter's scrapes and the floors' replays of the same requests, interleaved round by round
    (scrapes, every floor once, scrapes, ...), so both are measured at the same moments of the machine's load."""
    latency = args.latency_ms / 1000
    per_round = max(1, args.scrapes // args.rounds)
    measured = per_round * args.rounds
    load_at_start = os.getloadavg()
    control = requests.Session()
    with simulator(n, args.latency_ms, workdir) as (sim, sim_url, _credentials, simulated):
        jobs = control.get(f"{sim_url}/_sim/jobs", timeout=30).json()
        config = exporter_config(simulated, jobs, args.concurrency, args.batch_size)
        config_file = workdir / f"config-{n}.yaml"
        config_file.write_text(yaml.safe_dump(config))
        with exporter(config_file) as (proc, url):
            client = requests.Session()
            cold_wall, _ = scrape(client, url)
            cold = sim_requests(control, sim_url)
            body = b""
            for _ in range(args.warmup):
                _, body = scrape(client, url)
            calls, outputs = floors.record(config)
            render = floors.render_seconds(outputs, PROMETHEUS_ACCEPT)
            calls_file = workdir / f"calls-{n}.json"
            floors.write_calls(calls, calls_file)
            runs, new_runs, deployed = informatica_runs(body), 0, 0
            walls: list[float] = []
            cpu_rounds: list[float] = []
            floor_rounds: dict[str, list[float]] = {client: [] for client in floors.LABELS}
            steady: Counter[str] = Counter()
            sim_cpu = window = 0.0
            with floors.replayers(calls_file, args.concurrency) as replaying:
                for _ in range(args.rounds):
                    reset(control, sim_url)
                    cpu_before, sim_before = cpu_seconds(proc.pid), cpu_seconds(sim.pid)
                    started = time.perf_counter()
                    for _ in range(per_round):
                        wall, body = scrape(client, url)
                        walls.append(wall)
                        latest = informatica_runs(body)
                        moved = run_moves(runs, latest)
                        runs, new_runs, deployed = latest, new_runs + moved[0], deployed + moved[1]
                    window += time.perf_counter() - started
                    cpu_rounds.append((cpu_seconds(proc.pid) - cpu_before) / per_round)
                    sim_cpu += cpu_seconds(sim.pid) - sim_before
                    steady += sim_requests(control, sim_url)
                    for replayer in replaying:
                        floor_rounds[replayer.client].append(replayer.replay()["cpu_seconds"])
            peak_sequential_kib = memory_kib(proc.pid, "VmHWM")
            reset(control, sim_url)
            scrape(client, url)
            one = sum(sim_requests(control, sim_url).values())
            reset(control, sim_url)
            four = burst(control, sim_url, url, 4)
            peak_kib = memory_kib(proc.pid, "VmHWM")
        interval_check = None
        if n == args.sizes[0]:
            interval_check = check_min_interval(args, sim_url, simulated, jobs, workdir, control)
    floor = request_floor(n, args.concurrency, args.batch_size, new_runs / measured)
    network = latency * max(item["rounds"] for item in floor.values())
    per_scrape = {key: count / measured for key, count in sorted(steady.items())}
    walls.sort()
    median = statistics.median(walls)
    p95 = walls[min(len(walls) - 1, math.ceil(0.95 * len(walls)) - 1)]
    measured_by_platform = {p: c / measured for p, c in by_platform(steady).items()}
    return {
        "jobs_per_platform": n,
        "jobs": 4 * n,
        "latency_ms": args.latency_ms,
        "concurrency": args.concurrency,
        "scrapes": measured,
        "rounds": args.rounds,
        "load_average_at_start": load_at_start,
        "load_average_at_end": os.getloadavg(),
        "wall_median_s": median,
        "wall_p95_s": p95,
        "cold_scrape_s": cold_wall,
        "series": series_of(body),
        "exposition_bytes": len(body),
        "requests_per_scrape": per_scrape,
        "requests_per_scrape_by_platform": measured_by_platform,
        "requests_floor_by_platform": {p: f["requests"] for p, f in floor.items()},
        "informatica_new_runs_per_scrape": new_runs / measured,
        "informatica_deployments_ended_per_scrape": deployed / measured,
        "cold_requests": dict(sorted(cold.items())),
        "four_simultaneous_requests": four,
        "one_scrape_requests": one,
        "cpu_per_scrape_s": spread(cpu_rounds),
        "simulator_cpu_per_scrape_s": sim_cpu / measured,
        "simulator_busy_fraction": sim_cpu / window,
        "peak_rss_mib": peak_kib / 1024,
        "peak_rss_sequential_mib": peak_sequential_kib / 1024,
        "floor_network_s": network,
        "floor_render_s": render,
        "floor_requests_replayed": sum(len(listed) for listed in calls),
        "floors_cpu_s": {client: spread(values) for client, values in floor_rounds.items()},
        "ratio_wall": median / (network + render),
        "ratio_wall_network": median / network,
        "ratios_cpu": {
            client: spread([mine / theirs for mine, theirs in zip(cpu_rounds, values, strict=True)])
            for client, values in floor_rounds.items()
        },
        "ratio_requests": sum(per_scrape.values()) / sum(f["requests"] for f in floor.values()),
        "min_interval": interval_check,
    }


def check_min_interval(
    args: argparse.Namespace,
    sim_url: str,
    simulated: dict[str, Any],
    jobs: dict[str, Any],
    workdir: Path,
    control: requests.Session,
) -> dict[str, int]:
    """With min_interval_seconds, a second scrape inside the interval must cause no upstream request."""
    config = exporter_config(simulated, jobs, args.concurrency, args.batch_size, {"min_interval_seconds": 30.0})
    config_file = workdir / "config-min-interval.yaml"
    config_file.write_text(yaml.safe_dump(config))
    with exporter(config_file) as (_proc, url):
        client = requests.Session()
        reset(control, sim_url)
        scrape(client, url)
        first = sum(sim_requests(control, sim_url).values())
        reset(control, sim_url)
        scrape(client, url)
        second = sum(sim_requests(control, sim_url).values())
    return {"first_scrape_requests": first, "second_scrape_requests": second}


def soak(args: argparse.Namespace, workdir: Path, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """RSS growth over many consecutive scrapes, after a warm-up, with RSS sampled every 10 scrapes; `env` is added
    to the exporter's environment.

    One sample swings by several MiB with where the allocator stands in a scrape, so growth compares the median
    of the first tenth of the samples with the median of the last tenth (the first and last 100 scrapes of
    1,000); the single first and last samples and a least-squares trend are reported beside it.

    The simulator's jobs keep changing state (new runs, new run ids, finished runs), while the Siren job log
    keeps a steady window of runs, so the input stays the same size on average; it is recorded beside RSS
    (series and exposition bytes at the start and the end), so growth that follows the input is told apart
    from a leak.
    """
    control = requests.Session()
    with simulator(args.soak_jobs, args.soak_latency_ms, workdir) as (_sim, sim_url, credentials, simulated):
        jobs = control.get(f"{sim_url}/_sim/jobs", timeout=30).json()
        config = exporter_config(simulated, jobs, args.concurrency, args.batch_size)
        config_file = workdir / "config-soak.yaml"
        config_file.write_text(yaml.safe_dump(config))
        with exporter(config_file, env) as (proc, url):
            client = requests.Session()
            body = b""
            for _ in range(args.soak_warmup):
                _, body = scrape(client, url)
            start_kib, start_body = memory_kib(proc.pid, "VmRSS"), body
            log_start = job_log_runs(control, sim_url, credentials)
            samples = [start_kib / 1024]
            started = time.perf_counter()
            for index in range(1, args.soak_scrapes + 1):
                _, body = scrape(client, url)
                if index % 10 == 0:
                    samples.append(memory_kib(proc.pid, "VmRSS") / 1024)
            end_kib = memory_kib(proc.pid, "VmRSS")
            enough = args.soak_scrapes >= MIN_SOAK_SCRAPES
            first, last = tenths(samples) if enough else (None, None)
            trend = statistics.linear_regression(range(len(samples)), samples) if enough else None
            log_end = job_log_runs(control, sim_url, credentials)
            series_start, series_end = series_of(start_body), series_of(body)
            return {
                "jobs": 4 * args.soak_jobs,
                "latency_ms": args.soak_latency_ms,
                "scrapes": args.soak_scrapes,
                "warmup_scrapes": args.soak_warmup,
                "seconds": time.perf_counter() - started,
                "rss_start_mib": start_kib / 1024,
                "rss_end_mib": end_kib / 1024,
                "peak_rss_mib": memory_kib(proc.pid, "VmHWM") / 1024,
                "rss_first_tenth_median_mib": first,
                "rss_last_tenth_median_mib": last,
                "growth_percent": None if first is None or last is None else 100 * (last - first) / first,
                "single_sample_growth_percent": 100 * (end_kib - start_kib) / start_kib if enough else None,
                "trend_percent_per_1000_scrapes": (
                    None if trend is None else 100 * trend.slope * 100 / trend.intercept  # a sample every 10 scrapes
                ),
                "rss_every_10_scrapes_mib": samples,
                "series_start": series_start,
                "series_end": series_end,
                "exposition_bytes_start": len(start_body),
                "exposition_bytes_end": len(body),
                "input_growth_percent": 100 * (len(body) - len(start_body)) / max(1, len(start_body)),
                "job_log_runs_start": log_start,
                "job_log_runs_end": log_end,
            }


def tenths(samples: Sequence[float]) -> tuple[float, float]:
    """The medians of the first and the last tenth of the samples (at least one sample each)."""
    window = max(1, len(samples) // 10)
    return statistics.median(samples[:window]), statistics.median(samples[-window:])


# --- report ----------------------------------------------------------------------------------------------


def _load(load: Sequence[float]) -> str:
    return "/".join(f"{figure:.2f}" for figure in load)


def _cell(figures: Mapping[str, Any], unit: str = "") -> str:
    return f"{figures['median']:.3f}{unit} ({figures['min']:.3f}-{figures['max']:.3f})"


def table(results: list[dict[str, Any]]) -> str:
    header = (
        f"{'jobs':>5} {'series':>7} {'bytes':>9} {'wall p50':>9} {'p95':>7} {'net floor':>9} {'render':>7} "
        f"{'x floor':>7} {'x net':>6} {'cpu/scr':>8} {'x S.req':>7} {'x send':>7} {'req/scr':>8} {'req floor':>9} "
        f"{'4 at once':>9} {'RSS MiB':>8} {'sim busy':>8}"
    )
    lines = [header, "-" * len(header)]
    for r in results:
        ratios = r["ratios_cpu"]
        lines.append(
            f"{r['jobs']:>5} {r['series']:>7} {r['exposition_bytes']:>9} {r['wall_median_s']:>8.3f}s "
            f"{r['wall_p95_s']:>6.3f}s {r['floor_network_s']:>8.3f}s {r['floor_render_s']:>6.3f}s "
            f"{r['ratio_wall']:>7.2f} {r['ratio_wall_network']:>6.2f} {r['cpu_per_scrape_s']['median']:>7.3f}s "
            f"{ratios['session_request']['median']:>7.2f} {ratios['send_prepared']['median']:>7.2f} "
            f"{sum(r['requests_per_scrape'].values()):>8.1f} {sum(r['requests_floor_by_platform'].values()):>9.1f} "
            f"{r['four_simultaneous_requests']:>4}/{r['one_scrape_requests']:<4} {r['peak_rss_mib']:>8.1f} "
            f"{r['simulator_busy_fraction']:>8.2f}"
        )
    lines.append("")
    lines.append(
        "CPU seconds per scrape, median (lowest-highest) over the rounds; each round the exporter's scrapes, then "
        "every client replaying the same requests in its own process; exporter / floor per round:"
    )
    for r in results:
        lines.append(
            f"  {r['jobs']:>5} jobs, {r['rounds']} rounds, {r['floor_requests_replayed']} requests, load average "
            f"{_load(r['load_average_at_start'])} -> {_load(r['load_average_at_end'])}: exporter "
            f"{_cell(r['cpu_per_scrape_s'], 's')}"
        )
        for client, label in floors.LABELS.items():
            lines.append(
                f"         {label:<30} {_cell(r['floors_cpu_s'][client], 's')}  exporter / floor "
                f"{_cell(r['ratios_cpu'][client])}"
            )
    lines.append("")
    lines.append("upstream requests per scrape (steady state) by platform and endpoint:")
    for r in results:
        parts = ", ".join(f"{k}={v:g}" for k, v in r["requests_per_scrape"].items())
        lines.append(f"  {r['jobs']:>5} jobs: {parts}")
        floor = ", ".join(
            f"{p} {r['requests_per_scrape_by_platform'].get(p, 0):g}/{f:g}"
            for p, f in r["requests_floor_by_platform"].items()
        )
        lines.append(f"         measured/floor: {floor}")
        lines.append(
            f"         informatica jobs resource: {r['requests_per_scrape'].get('informatica GET jobs', 0):g} reads a "
            f"scrape, history resource: {r['requests_per_scrape'].get('informatica GET history', 0):g}, "
            f"for {r['informatica_new_runs_per_scrape']:g} new runIds (the floor counts these) and "
            f"{r['informatica_deployments_ended_per_scrape']:g} runs that ended their deployment (read again)"
        )
        if r["min_interval"] is not None:
            mi = r["min_interval"]
            lines.append(
                f"         min_interval_seconds=30: first scrape {mi['first_scrape_requests']} requests, "
                f"second inside the interval {mi['second_scrape_requests']}"
            )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="25,100,250,500,1250,2500", help="jobs per platform, comma separated")
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=16, help="max_concurrency of every target")
    parser.add_argument("--batch-size", type=int, default=50, help="Cloud Stream job ids per metrics call")
    parser.add_argument("--scrapes", type=int, default=10, help="measured scrapes per size (after warm-up)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5, help="exporter and floor rounds the scrapes are split in")
    parser.add_argument(
        "--targets-jobs", type=int, default=2000, help="Informatica jobs collected as one and as split targets; 0 skips"
    )
    parser.add_argument("--targets-split", type=int, default=10, help="targets those jobs are split over")
    parser.add_argument("--soak-scrapes", type=int, default=300, help="0 skips the RSS growth run")
    parser.add_argument("--soak-jobs", type=int, default=500, help="jobs per platform in the RSS growth run")
    parser.add_argument("--soak-warmup", type=int, default=100, help="scrapes before the RSS growth run's start")
    parser.add_argument("--soak-latency-ms", type=float, default=0.0)
    parser.add_argument("--json", type=Path, default=Path("benchmark-results.json"), help="where to write JSON")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 5 jobs per platform, 3 scrapes")
    parser.add_argument("--churn", action="store_true", help="run the churn soak (benchmarks/churn.py) instead")
    parser.add_argument("--churn-days", type=float, default=30.0, help="simulated days of the churn soak")
    parser.add_argument("--churn-scrapes", type=int, default=CHURN_SCRAPES, help="scrapes over those days")
    parser.add_argument("--churn-jobs", type=int, default=CHURN_JOBS, help="live jobs per platform")
    parser.add_argument("--shards", help="shard counts, comma separated: measure sharding instead of the sizes")
    parser.add_argument("--shard-jobs", type=int, default=500, help="jobs per platform of the shard counts")
    parser.add_argument("--big-shards", type=int, default=4, help="shard count of the big run; 0 skips it")
    parser.add_argument("--big-shard-jobs", type=int, default=2500, help="jobs per platform of the big run")
    parser.add_argument(
        "--shard-interval", type=float, default=10.0, help="scrape interval the shards' scrapes spread over; 0: at once"
    )
    args = parser.parse_args(argv)
    args.shards = [int(count) for count in args.shards.split(",")] if args.shards else []
    if args.quick:
        args.sizes, args.scrapes, args.warmup, args.rounds = "5", 3, 1, 3
        args.soak_scrapes, args.soak_jobs, args.latency_ms = 20, 5, min(args.latency_ms, 5.0)
        args.soak_warmup = min(args.soak_warmup, 5)
        args.targets_jobs = min(args.targets_jobs, 40)
    args.sizes = [int(size) for size in args.sizes.split(",")]
    return args


def many_targets(args: argparse.Namespace) -> targets.Report | None:
    """One exporter with the jobs as one target against one with them split, scraped in turn (benchmarks.targets)."""
    from benchmarks import targets  # it builds on this module's helpers

    if args.targets_jobs <= 0:
        return None
    return targets.measure(args.targets_jobs, args.targets_split, args.concurrency, args.latency_ms, args.rounds)


def soak_text(soaked: dict[str, Any]) -> str:
    """The RSS growth run's figures; growth and trend only where there are samples enough to tell them."""
    lines = [
        f"RSS over {soaked['scrapes']} consecutive scrapes of {soaked['jobs']} jobs, after "
        f"{soaked['warmup_scrapes']} warm-up scrapes: first and last sample {soaked['rss_start_mib']:.1f} -> "
        f"{soaked['rss_end_mib']:.1f} MiB, peak {soaked['peak_rss_mib']:.1f} MiB"
    ]
    if soaked["growth_percent"] is None:
        lines.append(
            f"  too few samples ({len(soaked['rss_every_10_scrapes_mib'])}, one every 10 scrapes) for a growth "
            f"figure or a trend: they take {MIN_SOAK_SCRAPES} scrapes or more"
        )
    else:
        lines.append(
            "  median of the first and the last tenth of the samples (one every 10 scrapes): "
            f"{soaked['rss_first_tenth_median_mib']:.1f} -> {soaked['rss_last_tenth_median_mib']:.1f} MiB "
            f"({soaked['growth_percent']:+.1f} %; first and last sample alone "
            f"{soaked['single_sample_growth_percent']:+.1f} %); least-squares trend "
            f"{soaked['trend_percent_per_1000_scrapes']:+.1f} % per 1,000 scrapes"
        )
    lines.append(
        "  input over the same scrapes (the simulated jobs keep changing state): "
        f"{soaked['series_start']} -> {soaked['series_end']} series, {soaked['exposition_bytes_start']} -> "
        f"{soaked['exposition_bytes_end']} exposition bytes ({soaked['input_growth_percent']:+.1f} %), "
        f"{soaked['job_log_runs_start']} -> {soaked['job_log_runs_end']} runs in the Siren job log"
    )
    every_100 = soaked["rss_every_10_scrapes_mib"][::10]
    lines.append("  RSS every 100 scrapes (MiB): " + " ".join(f"{mib:.1f}" for mib in every_100))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    load_at_start = os.getloadavg()
    report: dict[str, Any] = {}
    problems: list[str] = []
    if args.shards:
        from benchmarks import shards  # it builds on this module's helpers

        with tempfile.TemporaryDirectory(prefix="exporter-bench-") as tmp:
            report["shards"] = shards.run(args, Path(tmp))
        print(shards.table(report["shards"]))
    elif args.churn:
        from benchmarks import churn  # it builds on this module's helpers

        churned = churn.run(args.churn_days, args.churn_scrapes, args.churn_jobs, echo=True)
        problems = churned.problems()
        report["churn"] = churned.as_dict()
        print(churned.text())
    else:
        results = []
        with tempfile.TemporaryDirectory(prefix="exporter-bench-") as tmp:
            workdir = Path(tmp)
            for n in args.sizes:
                results.append(measure_size(args, n, workdir))
                print(table(results[-1:]).split("\n")[2], file=sys.stderr, flush=True)  # progress
            split = many_targets(args)
            soaked = soak(args, workdir) if args.soak_scrapes > 0 else None
        report.update(results=results, targets=split.as_dict() if split else None, soak=soaked)
        print(table(results))
        if split is not None:
            print(f"\nthe same jobs as one target and as {args.targets_split} (benchmarks/targets.py):\n{split.text()}")
        if soaked is not None:
            print("\n" + soak_text(soaked))
    for problem in problems:
        print(f"FAILED: {problem}")
    report["machine"] = {
        "cpus": os.cpu_count(),
        "load_average_at_start": load_at_start,
        "load_average_at_end": os.getloadavg(),
    }
    print(
        f"{os.cpu_count()} CPUs; load average (1/5/15 min) at start {_load(load_at_start)}, "
        f"at end {_load(os.getloadavg())}"
    )
    args.json.write_text(json.dumps(report, indent=2))
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
