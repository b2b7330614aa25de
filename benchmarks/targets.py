"""Many targets: the CPU of the same jobs collected as one target or split over several.

    python -m benchmarks.targets [--jobs 2000] [--split 10] [--concurrency 16] [--latency-ms 20] [--rounds 5]
                                 [--baseline REV]

One simulator process serves `--jobs` Informatica dataflows (the platform with the most requests per job). An
exporter process collects them as one target, another the same dataflows split into `--split` targets of
disjoint lists, each target at `--concurrency`. With `--baseline REV`, two more exporters run the source of that
git revision (exported to a temporary directory), so before and after are measured side by side. Every exporter
is scraped twice first (login, first reads of each run), then the rounds scrape each in turn, so the layouts and
revisions are interleaved (A/B/A/B): per scrape, its wall time, the exporter's CPU seconds (user and system,
/proc/<pid>/stat), its context switches (voluntary and not, summed over its threads in /proc/<pid>/task; a
thread that ended within the scrape is not counted) and its threads after it. It prints the median and the spread
(min-max) of each, the ratio of split to one target, and the load average.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import yaml

from benchmarks.run import CLOCK_TICKS, PROMETHEUS_ACCEPT, ROOT, simulator, stop

SCRAPE_TIMEOUT = 300.0


@dataclass
class Exporter:
    """One exporter process under measurement, and its figures per scrape."""

    label: str
    process: subprocess.Popen[bytes]
    url: str
    figures: dict[str, list[float]] = field(default_factory=dict)

    def counters(self) -> dict[str, float]:
        """CPU seconds (user, system) and context switches so far; threads now."""
        stat = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        switches = {"voluntary": 0.0, "involuntary": 0.0}
        tasks = list(Path(f"/proc/{self.process.pid}/task").iterdir())
        for task in tasks:
            try:
                status = (task / "status").read_text()
            except OSError:  # the thread ended meanwhile
                continue
            for line in status.splitlines():
                if line.startswith("voluntary_ctxt_switches:"):
                    switches["voluntary"] += int(line.split()[1])
                elif line.startswith("nonvoluntary_ctxt_switches:"):
                    switches["involuntary"] += int(line.split()[1])
        return {
            "user": int(stat[11]) / CLOCK_TICKS,
            "system": int(stat[12]) / CLOCK_TICKS,
            **switches,
            "threads": float(len(tasks)),
        }

    def scrape(self, session: requests.Session, measured: bool) -> None:
        before = self.counters()
        started = time.monotonic()
        response = session.get(f"{self.url}/metrics", timeout=SCRAPE_TIMEOUT, headers={"Accept": PROMETHEUS_ACCEPT})
        response.raise_for_status()
        if not all_succeeded(response.content):
            raise RuntimeError(f"{self.label}: a target's collection failed")
        after = self.counters()
        wall = time.monotonic() - started
        if measured:
            cpu = after["user"] + after["system"] - before["user"] - before["system"]
            row = {key: after[key] - before[key] for key in ("user", "system", "voluntary", "involuntary")}
            for key, value in {"wall": wall, "cpu": cpu, **row, "threads": after["threads"]}.items():
                self.figures.setdefault(key, []).append(value)


def all_succeeded(exposition: bytes) -> bool:
    """Every target's `ingestion_scrape_success` is 1 (a failing target would look cheap)."""
    success = b"ingestion_scrape_success{"
    values = [line.rsplit(b" ", 1)[1] for line in exposition.splitlines() if line.startswith(success)]
    return bool(values) and all(value == b"1.0" for value in values)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def exporter_process(label: str, source: Path, config: Path) -> Iterator[Exporter]:
    """`python -m exporter` from the source tree `source` (its own package first on the path)."""
    port = free_port()
    argv = [sys.executable, "-m", "exporter", "--config.file", str(config), "--log.level", "error"]
    argv += ["--web.listen-address", f"127.0.0.1:{port}"]
    process = subprocess.Popen(  # noqa: S603 - this interpreter and fixed arguments
        argv,
        cwd=source,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        end = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{label}: the exporter exited with {process.returncode}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > end:
                    raise
                time.sleep(0.1)
        yield Exporter(label, process, f"http://127.0.0.1:{port}")
    finally:
        stop(process)


def split_config(simulated: dict[str, Any], parts: int, concurrency: int) -> dict[str, Any]:
    """The simulator's Informatica target as `parts` targets with disjoint dataflow lists."""
    (target,) = simulated["targets"]
    flows: list[str] = target["dataflows"]
    size = -(-len(flows) // parts)
    targets = [
        {**target, "name": f"{target['name']}-{index}", "dataflows": flows[start : start + size]}
        | {"max_concurrency": concurrency}
        for index, start in enumerate(range(0, len(flows), size))
    ]
    return {**simulated, "scrape_budget_seconds": 120.0, "targets": targets}


def source_of(revision: str, into: Path) -> Path:
    """The tree of a git revision, exported (the working trees stay untouched)."""
    archive = into / "source.tar"
    with archive.open("wb") as out:
        subprocess.run(["git", "archive", revision], cwd=ROOT, stdout=out, check=True)  # noqa: S603,S607 - git, fixed
    tree = into / "source"
    with tarfile.open(archive) as tar:
        tar.extractall(tree, filter="data")
    return tree


def summary(values: list[float], digits: int = 3) -> str:
    """Median (min-max)."""
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


@dataclass
class Report:
    """The figures of one run: each exporter's per scrape, and the load average at its end."""

    jobs: int
    split: int
    concurrency: int
    latency_ms: float
    rounds: int
    exporters: list[Exporter]
    load: tuple[float, float, float]

    def ratios(self) -> dict[str, list[float]]:
        """Per split layout, its CPU over the one target's of the same source, round by round."""
        found = {}
        for index in range(0, len(self.exporters), 2):
            one, split = self.exporters[index], self.exporters[index + 1]
            found[split.label] = [s / o for s, o in zip(split.figures["cpu"], one.figures["cpu"], strict=True)]
        return found

    def text(self) -> str:
        lines = [
            f"{self.jobs} Informatica dataflows, {self.latency_ms:g} ms upstream latency, max_concurrency "
            f"{self.concurrency} per target, {self.rounds} interleaved rounds; median (min-max) per scrape",
            f"load average at the end: {' '.join(f'{value:.2f}' for value in self.load)} on {os.cpu_count()} CPUs",
        ]
        columns = ("wall s", "cpu s", "user s", "system s")
        header = f"{'exporter':<28} " + " ".join(f"{c:>20}" for c in columns) + f" {'ctx switches':>24} {'threads':>8}"
        lines += [header, "-" * len(header)]
        for exporter in self.exporters:
            f = exporter.figures
            switches = [v + i for v, i in zip(f["voluntary"], f["involuntary"], strict=True)]
            lines.append(
                f"{exporter.label:<28} "
                + " ".join(f"{summary(f[key]):>20}" for key in ("wall", "cpu", "user", "system"))
                + f" {summary(switches, digits=0):>24} {statistics.median(f['threads']):>8.0f}"
            )
        for label, ratios in self.ratios().items():
            lines.append(f"{label}: CPU {summary(ratios, digits=2)} x one target's (same round)")
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        return {
            "jobs": self.jobs,
            "split": self.split,
            "concurrency": self.concurrency,
            "latency_ms": self.latency_ms,
            "rounds": self.rounds,
            "exporters": {exporter.label: exporter.figures for exporter in self.exporters},
            "cpu_ratio_split_to_one": self.ratios(),
            "load_average_at_end": self.load,
        }


def measure(
    jobs: int, split: int, concurrency: int, latency_ms: float, rounds: int, baseline: str | None = None
) -> Report:
    """Scrape the exporters of each layout (and of `baseline`, if given) in turn, round after round."""
    with tempfile.TemporaryDirectory(prefix="bench-targets-") as scratch, ExitStack() as stack:
        work = Path(scratch)
        _, _, _, simulated = stack.enter_context(
            simulator(jobs, latency_ms, work, platforms="informatica")  # type: ignore[arg-type]
        )
        sources = [("this tree", ROOT)]
        if baseline:
            sources.insert(0, (baseline, source_of(baseline, work)))
        exporters: list[Exporter] = []
        for name, tree in sources:
            for parts in (1, split):
                config = work / f"{len(exporters)}.yml"
                config.write_text(yaml.safe_dump(split_config(simulated, parts, concurrency)))
                label = f"{name}, {parts} target{'s' if parts > 1 else ''}"
                exporters.append(stack.enter_context(exporter_process(label, tree, config)))
        session = stack.enter_context(requests.Session())
        for exporter in exporters:
            for _ in range(2):
                exporter.scrape(session, measured=False)
        for _ in range(rounds):
            for exporter in exporters:
                exporter.scrape(session, measured=True)
        return Report(jobs, split, concurrency, latency_ms, rounds, exporters, os.getloadavg())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--jobs", type=int, default=2000, help="Informatica dataflows in all")
    parser.add_argument("--split", type=int, default=10, help="targets the dataflows are split over")
    parser.add_argument("--concurrency", type=int, default=16, help="max_concurrency of every target")
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--baseline", help="a git revision measured beside this tree (e.g. main)")
    args = parser.parse_args(argv)
    print(measure(args.jobs, args.split, args.concurrency, args.latency_ms, args.rounds, args.baseline).text())


if __name__ == "__main__":
    main()
