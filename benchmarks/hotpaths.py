"""CPU of the exporter's hot paths, this tree against a git revision's, interleaved in one run.

    python -m benchmarks.hotpaths                   # 500 jobs per platform, 20 ms, 5 rounds, against HEAD
    python -m benchmarks.hotpaths --baseline main --rounds 7

The simulator runs once, in its own process. Each round runs one child process per side (the baseline's
`exporter` package exported from git, then this tree's), alternating, so both sides see the same load. A child
builds the exporter in-process on the simulator's configuration, scrapes it through its WSGI app once to log in
and discover, then reports the process CPU seconds of each following scrape, and micro-figures of the per-sample
paths: building 2,000 jobs' samples through `Output` and rendering them, and one request through `Upstream` to a
canned answer. Figures are medians over the rounds, with
the spread (min-max); the load average is printed, since the CPU time of a shared machine is noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Sequence
from io import BytesIO
from pathlib import Path
from typing import Any

import requests
import urllib3
import yaml

from benchmarks.run import ROOT, simulator

SCRAPES = 3
MICRO_JOBS = 2000
MICRO_REPEAT = 5
MICRO_REQUESTS = 1000


def child(config_file: Path, scrapes: int) -> dict[str, Any]:
    """This process's figures for the exporter package it imports (printed as JSON by `main`)."""
    import exporter
    from benchmarks.inprocess import get
    from exporter.app import Exporter, root_model
    from exporter.logs import Redactor
    from exporter.settings import load_settings

    app = Exporter(load_settings(root_model(), config_file), Redactor().sink)
    try:
        status, _body = get(app.app, "/metrics")  # login, discovery, immutable details: not per scrape
        assert status.startswith("200"), status
        spent = []
        for _ in range(scrapes):
            started = time.process_time()
            status, _body = get(app.app, "/metrics")
            spent.append(time.process_time() - started)
            assert status.startswith("200"), status
        peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # before the micro-figures add theirs
    finally:
        app.close()
    return {"exporter": exporter.__file__, "scrape_cpu": statistics.median(spent), "peak_rss": peak_mib, **micro()}


class _Canned(requests.adapters.BaseAdapter):
    """Answers every request with the same JSON body and no socket, so a request costs only the client's and the
    exporter's own work."""

    def __init__(self, body: bytes) -> None:
        super().__init__()
        self.body = body

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        response = requests.Response()
        response.status_code = 200
        response.request = request
        response.url = request.url or ""
        raw_headers = {"Content-Type": "application/json", "Content-Length": str(len(self.body))}
        response.raw = urllib3.HTTPResponse(BytesIO(self.body), headers=raw_headers, preload_content=False)
        response.headers = requests.structures.CaseInsensitiveDict(raw_headers)
        return response

    def close(self) -> None:
        pass


def request_seconds() -> dict[str, float]:
    """Seconds per request of a 1.2 KB JSON answer from a canned adapter, without the network, best of MICRO_REPEAT
    runs of MICRO_REQUESTS: through `Upstream.get_json` (preparing, sending, reading within the budget), and the
    two floors of the issue with a bare session, `Session.request` and `send` of a request prepared beforehand,
    each followed by `json.loads`."""
    from prometheus_client import CollectorRegistry

    from exporter.http import Deadline, Upstream
    from exporter.settings import TargetSettings
    from exporter.telemetry import Telemetry

    canned = _Canned(json.dumps({"runs": [{"id": n, "state": "RUNNING"} for n in range(40)]}).encode())
    upstream = Upstream("test", TargetSettings(name="t", platform="test"), Telemetry(CollectorRegistry()))
    upstream.session.mount("http://", canned)
    bare = requests.Session()
    bare.mount("http://", canned)
    deadline = Deadline(3600.0)
    headers = {"IDS-SESSION-ID": "a-session-id"}
    params: dict[str, str | int] = {"intervals": 5, "overall": "true"}
    urls = [f"http://127.0.0.1:9/sisvc/monitor/v1/statistics/dataflows/{index}" for index in range(MICRO_REQUESTS)]
    prepared = [bare.prepare_request(requests.Request("GET", url, headers, params=params)) for url in urls]

    def exporter() -> None:
        for url in urls:
            upstream.get_json(url, endpoint="statistics", deadline=deadline, headers=headers, params=params)

    def session_request() -> None:
        for url in urls:
            json.loads(bare.request("GET", url, headers=headers, params=params, timeout=30).content)

    def send_prepared() -> None:
        for request in prepared:
            json.loads(bare.send(request, timeout=30).content)

    figures = {}
    for name, replay in (("request", exporter), ("session_request", session_request), ("send", send_prepared)):
        replay()
        figures[name] = min(_timed(replay) for _ in range(MICRO_REPEAT)) / MICRO_REQUESTS
    upstream.close()
    bare.close()
    return figures


def micro() -> dict[str, float]:
    """Seconds to build the samples of MICRO_JOBS jobs (state set, vendor state, three timestamps, info) and to
    render them, best of MICRO_REPEAT: the per-sample work without any I/O."""
    from exporter.exposition import render_chunks
    from exporter.metrics import CORE_FAMILIES, JOB_END, JOB_LAST_UPDATE, JOB_START, JobRef, Output, job_info_family

    info = job_info_family("kind")
    names = [f'name "{index}"' if index % 50 == 0 else f"name {index}" for index in range(MICRO_JOBS)]  # some escaped
    jobs = [JobRef(f"job-{index:05d}", name) for index, name in enumerate(names)]

    def build() -> Output:
        output = Output("informatica", "sim-informatica")
        for index, job in enumerate(jobs):
            output.job_state(job, "running" if index % 3 else "failed", "RUNNING")
            output.add_optional(JOB_START, 1_700_000_000.0 + index, job)
            output.add_optional(JOB_END, None, job)
            output.add_optional(JOB_LAST_UPDATE, 1_700_000_100.5, job)
            output.add(info, 1, job, run_id=str(index), kind="dataflow")
        return output

    families = (*CORE_FAMILIES, info)
    built = build()
    build_best = min(_timed(build) for _ in range(MICRO_REPEAT))
    render_best = min(_timed(lambda: render_chunks(families, [built], openmetrics=True)) for _ in range(MICRO_REPEAT))
    rendered = b"".join(render_chunks(families, [built], openmetrics=True))
    samples = sum(not line.startswith(b"#") for line in rendered.splitlines())  # counted so for any revision
    return {"samples": samples, "build": build_best, "render": render_best, **request_seconds()}


def _timed(function: Any) -> float:
    started = time.process_time()
    function()
    return time.process_time() - started


def export_tree(revision: str, directory: Path) -> Path:
    """The `exporter` package of a git revision, extracted under `directory`."""
    archive = subprocess.run(  # noqa: S603 - git with fixed arguments
        ["git", "archive", "--format=tar", revision, "exporter"],  # noqa: S607
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(directory, filter="data")
    return directory


def run_child(tree: Path, config_file: Path, scrapes: int) -> dict[str, Any]:
    """One side's figures: the child imports `exporter` from `tree`, first on its path, and the benchmark from here."""
    env = {**os.environ, "PYTHONPATH": f"{tree}{os.pathsep}{ROOT}"}
    done = subprocess.run(  # noqa: S603 - this interpreter and fixed arguments
        [sys.executable, "-m", "benchmarks.hotpaths", "--child", str(config_file), "--scrapes", str(scrapes)],
        cwd=tree,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    if not figures["exporter"].startswith(str(tree)):
        raise RuntimeError(f"the child imported {figures['exporter']}, not the tree under {tree}")
    return figures


def summary(name: str, before: Sequence[float], after: Sequence[float], unit: float, label: str) -> str:
    def cell(values: Sequence[float]) -> str:
        return f"{statistics.median(values) * unit:8.1f} ({min(values) * unit:.1f}-{max(values) * unit:.1f})"

    ratio = statistics.median(after) / statistics.median(before)
    return f"{name:<24}{cell(before):>26}{cell(after):>26}   x{ratio:.2f}  {label}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=500, help="jobs per platform")
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--scrapes", type=int, default=SCRAPES, help="measured scrapes per child")
    parser.add_argument("--baseline", default="HEAD", help="git revision to compare with")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.scrapes)))
        return 0
    with tempfile.TemporaryDirectory(prefix="exporter-hotpaths-") as directory:
        work = Path(directory)
        baseline = export_tree(args.baseline, work / "baseline")
        current = export_tree_here(work / "current")
        with simulator(args.jobs, args.latency_ms, work) as (_process, _url, _credentials, simulated):
            config = {**simulated, "scrape_budget_seconds": 60.0}
            config_file = work / "exporter.yml"
            config_file.write_text(yaml.safe_dump(config))
            sides: dict[str, list[dict[str, Any]]] = {"before": [], "after": []}
            for _ in range(args.rounds):
                sides["before"].append(run_child(baseline, config_file, args.scrapes))
                sides["after"].append(run_child(current, config_file, args.scrapes))
    load = os.getloadavg()
    print(f"{4 * args.jobs} jobs, {args.latency_ms:g} ms, {args.rounds} rounds A/B of {args.scrapes} scrapes each;")
    print(f"before = {args.baseline}, after = this tree; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"{'':<24}{'before: median (min-max)':>26}{'after: median (min-max)':>26}")
    for key, unit, label in (
        ("scrape_cpu", 1000.0, "ms CPU per scrape, whole exporter in-process"),
        ("peak_rss", 1.0, "MiB peak RSS after the scrapes"),
        ("build", 1000.0, f"ms to build {sides['after'][0]['samples']:,} samples via Output"),
        ("render", 1000.0, "ms to render them (OpenMetrics)"),
        ("request", 1e6, "us per Upstream.get_json of a canned answer, no network"),
        ("session_request", 1e6, "us per bare Session.request + json.loads, the same"),
        ("send", 1e6, "us per bare send(prepared) + json.loads, the same"),
    ):
        before = [figures[key] for figures in sides["before"]]
        after = [figures[key] for figures in sides["after"]]
        print(summary(key, before, after, unit, label))
    return 0


def export_tree_here(directory: Path) -> Path:
    """This working tree's `exporter` package, copied as it is (uncommitted changes included)."""
    (directory / "exporter").parent.mkdir(parents=True)
    subprocess.run(  # noqa: S603 - cp with fixed arguments
        ["cp", "-r", str(ROOT / "exporter"), str(directory / "exporter")],  # noqa: S607
        check=True,
    )
    return directory


if __name__ == "__main__":
    sys.exit(main())
