"""Churn soak: a month of a live installation in minutes, after which nothing the exporter keeps is larger.

    python -m benchmarks.run --churn [--churn-days 30] [--churn-scrapes N] [--churn-jobs N]

The simulator runs as a child process (so this process's RSS is the exporter's), and its clock moves on by
days x 86,400 / scrapes seconds before every scrape. In that time each platform replaces so many of its jobs
that one lives about `LIFETIME_SCRAPES` scrapes, the jobs change state several times (Informatica dataflows
deploy new runs), an IAM token expires every few scrapes and the Informatica session between any two (the
exporter renews both), and the Siren job log keeps one scrape's time of runs. The exporter runs in this process
on the configuration the simulator wrote, every target on discovery at the shortest interval, scraped through
its WSGI app with no sleeps. Every `rotate_every` scrapes one platform's secret is rotated in the simulator (in
turn), written to the file the configuration names, and the configuration reloaded.

Every configuration lives `rotate_every` scrapes (a reload starts every collector afresh), and each one after the
warm-up gives a sample: RSS, threads and open descriptors at rest just before the rotation that ends it (see
`Figures.at_rest`), and the mean entries of every target's per-job structures, and of the values the redactor
masks, over its scrapes (a structure refills in the first scrapes after a reload, and its size at one scrape
varies with the random fleet). Growth compares the medians of the first and the last tenth of the samples. The
harness's own memory is fixed before the first sample, but for the samples themselves (a few hundred KiB).

The exporter keeps its own clock while the simulated one runs a month ahead, so tokens and sessions are renewed
when the upstream refuses them, not before, and Cloud Stream signs in with an IAM token instead of AK/SK: a
signature carries the exporter's time, which the gateway refuses once it is 15 minutes off its own.
"""

from __future__ import annotations

import math
import re
import sys
import tempfile
import time
from array import array
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import requests
import yaml

from benchmarks.inprocess import Figures, LogSink, get
from benchmarks.run import sim_requests, simulator, tenths
from exporter import logs
from exporter.app import Exporter, root_model
from exporter.reload import Reloader
from exporter.settings import load_settings
from exporter.simulator.platforms import PLATFORMS
from exporter.simulator.targets import write_private

GROWTH_LIMIT_PERCENT = 5.0
WARMUP_FRACTION = 0.1
LIFETIME_SCRAPES = 2.0  # how many scrapes a job lives, on average
TRANSITIONS_PER_SCRAPE = 8  # life-cycle ticks of every job between two scrapes
TOKEN_SCRAPES = 3.5  # an IAM token's lifetime
SESSION_IDLE_SCRAPES = 0.5  # the Informatica session's idle timeout: it expires between any two scrapes
DISCOVERY_SECONDS = 10.0  # the shortest discovery interval the settings allow
LOGINS = ("iam_token", "login_v2", "login_v3")  # the simulator's login endpoints, in its request counts
VALUE = r'"((?:[^"\\]|\\.)*)"'  # a label value, escapes and all; a line's labels come sorted by name
JOB_STATE = re.compile(rf"^ingestion_job_state\{{job_id={VALUE},job_name={VALUE},platform=\"(\w+)\"", re.M)
RUN_ID = re.compile(rf"^ingestion_job_info\{{[^\n]*?,run_id={VALUE}", re.M)
FAILED = re.compile(r'^ingestion_scrape_success\{platform="\w+",target="([^"]*)"\} 0\.0$', re.M)


class DistinctIds:
    """How many distinct ids were added, in a table allocated whole at the start (64-bit hashes, open addressing).

    A set of 100,000 id strings would grow this process's memory by megabytes during the run, and be taken for the
    exporter's growth; this table's memory is all in use from the first sample on.
    """

    def __init__(self, capacity: int) -> None:
        size = 1 << max(10, (2 * capacity).bit_length())  # at most half full
        self._slots = array("Q", [0]) * size
        self._mask = size - 1
        self._capacity = capacity
        self.count = 0

    def add(self, text: str) -> bool:
        """Count `text` unless it was added before; True when it is new."""
        key = (hash(text) & 0xFFFF_FFFF_FFFF_FFFF) or 1  # 0 marks a free slot
        index = key & self._mask
        while (slot := self._slots[index]) != 0:
            if slot == key:
                return False
            index = (index + 1) & self._mask
        if self.count == self._capacity:
            raise OverflowError(f"more than {self._capacity} distinct ids")
        self._slots[index] = key
        self.count += 1
        return True


@dataclass(frozen=True)
class Sample:
    scrape: int
    figures: Figures
    structures: dict[str, float]  # "<target> <structure>" -> its mean entries over the configuration's scrapes


@dataclass
class Report:
    days: float
    scrapes: int
    jobs: int  # live jobs per platform
    rotate_every: int
    warmup: int
    step_seconds: float
    churn_seconds: float
    seconds: float = 0.0
    job_ids: Counter[str] = field(default_factory=Counter)  # distinct job ids exposed, by platform
    run_ids: int = 0  # distinct run ids exposed
    not_ok: int = 0  # scrapes not answered 200
    target_failures: Counter[str] = field(default_factory=Counter)  # target -> scrapes it reported success 0 in
    errors: Counter[str] = field(default_factory=Counter)  # "<target> <reason>" -> errors the exporter counted
    refused: Counter[str] = field(default_factory=Counter)  # target -> 401 answers (an expired session or token)
    logins: Counter[str] = field(default_factory=Counter)  # "<platform> <method> <endpoint>" -> logins served
    rotations: int = 0
    reloads: int = 0  # the ones that succeeded
    reload_failures: list[str] = field(default_factory=list)
    tracebacks: int = 0
    overruns: int = 0
    samples: list[Sample] = field(default_factory=list)
    peaks: dict[str, int] = field(default_factory=dict)  # the most entries each structure held after a scrape

    def growth(self) -> dict[str, tuple[float, float, float]]:
        """(first, last, percent) of RSS, threads, fds and every structure: medians of the first and last tenth."""
        series: dict[str, list[float]] = {
            "RSS MiB": [s.figures.rss_kib / 1024 for s in self.samples],
            "threads": [s.figures.threads for s in self.samples],
            "open fds": [s.figures.fds for s in self.samples],
        }
        for name in self.samples[0].structures if self.samples else ():
            series[name] = [s.structures[name] for s in self.samples]
        found = {}
        for name, values in series.items():
            first, last = tenths(values)
            found[name] = (first, last, _percent(first, last))
        return found

    def text(self) -> str:
        job_ids = sum(self.job_ids.values())
        configurations = self.reloads + 1  # each logs in once to start with
        lines = [
            f"churn soak: {self.days:g} simulated days in {self.scrapes:,} scrapes, one every "
            f"{self.step_seconds / 60:.1f} simulated minutes, in {self.seconds:.0f}s",
            f"  {self.jobs} live jobs per platform; each platform deletes one and creates one every "
            f"{self.churn_seconds:.1f}s, so a job lives {LIFETIME_SCRAPES:g} scrapes on average",
            f"  distinct ids exposed: {job_ids:,} job ids ({_listed(self.job_ids)}) + {self.run_ids:,} run ids = "
            f"{job_ids + self.run_ids:,}",
            f"  scrapes answered 200: {self.scrapes - self.not_ok:,} of {self.scrapes:,}; scrapes in which a target "
            f"reported a failure: {_listed(self.target_failures)}; errors by reason: {_listed(self.errors)}",
            "  logins served: "
            + ", ".join(f"{name} {n:,} ({n - configurations:,} renewals)" for name, n in sorted(self.logins.items()))
            + f"; 401 answers (an expired session or token): {_listed(self.refused)}",
            f"  secret rotations {self.rotations}, reloads that succeeded {self.reloads}, failed "
            f"{len(self.reload_failures)}; tracebacks logged {self.tracebacks}, collections overrun {self.overruns}",
        ]
        if not self.samples:
            return "\n".join([*lines, "  no samples"])
        lines.append(
            f"  {len(self.samples)} samples, one per configuration from scrape {self.samples[0].scrape} on: RSS, "
            "threads and open fds at rest before the rotation that ends it, and every "
            "structure's mean entries over its scrapes; medians of the first and the last tenth of the samples, and "
            "the most after any scrape (RSS: of the samples):"
        )
        lines.append(f"    {'':<32} {'first':>8} {'last':>8} {'growth':>8} {'max':>8}")
        peaks: dict[str, float] = {**self.peaks, "RSS MiB": max(s.figures.rss_kib for s in self.samples) / 1024}
        for name, (first, last, percent) in self.growth().items():
            peak = f" {peaks[name]:>8.1f}" if name in peaks else ""
            lines.append(f"    {name:<32} {first:>8.1f} {last:>8.1f} {percent:>+7.1f}%{peak}")
        return "\n".join(lines)

    def problems(self) -> list[str]:
        found = []
        if self.not_ok:
            found.append(f"{self.not_ok} scrape(s) not answered 200")
        if self.reload_failures or self.reloads != self.rotations:
            found.append(f"{self.rotations} rotations, {self.reloads} reloads: {self.reload_failures}")
        if self.tracebacks:
            found.append(f"{self.tracebacks} traceback(s) logged")
        refused = {name: n for name, n in self.errors.items() if name.endswith(" auth") and n}
        if refused:
            found.append(f"credentials refused: {refused}")
        if len(self.samples) < 2:
            return [*found, f"{len(self.samples)} sample(s): too few to compare"]
        for name, (first, last, percent) in self.growth().items():
            if name in ("threads", "open fds"):
                if last > first:
                    found.append(f"{name} grew from {first:g} to {last:g}")
            elif percent >= GROWTH_LIMIT_PERCENT:
                found.append(f"{name} grew {percent:.1f} % ({first:g} -> {last:g})")
        return found

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON data (`dataclasses.asdict` would turn a Counter into counts of its items)."""
        fields = {name: dict(value) if isinstance(value, Counter) else value for name, value in vars(self).items()}
        fields["samples"] = [asdict(sample) for sample in self.samples]
        return {**fields, "growth": self.growth() if self.samples else {}}


def _percent(first: float, last: float) -> float:
    if first:
        return 100.0 * (last - first) / first
    return math.inf if last else 0.0


def _listed(counts: Counter[str]) -> str:
    return ", ".join(f"{name} {n:,}" for name, n in sorted(counts.items()) if n) or "none"


def run(days: float, scrapes: int, jobs: int, rotate_every: int = 5, seed: int = 1, echo: bool = False) -> Report:
    """`days` of the simulator's time in `scrapes` scrapes of `jobs` live jobs per platform; `echo` prints progress."""
    step = days * 86400 / scrapes
    report = Report(
        days=days,
        scrapes=scrapes,
        jobs=jobs,
        rotate_every=rotate_every,
        warmup=math.ceil(WARMUP_FRACTION * scrapes),
        step_seconds=step,
        churn_seconds=step * LIFETIME_SCRAPES / jobs,
    )
    job_ids = DistinctIds(len(PLATFORMS) * (jobs + math.ceil(days * 86400 / report.churn_seconds)))
    run_ids = DistinctIds(jobs * scrapes)  # one run at most per dataflow and scrape
    sink = LogSink()
    redactor = logs.Redactor()
    logs.configure(redactor, "info", "json", sink)  # type: ignore[arg-type]
    started = time.monotonic()
    try:
        with (
            tempfile.TemporaryDirectory(prefix="exporter-churn-") as directory,
            simulator(
                jobs,
                0.0,
                Path(directory),
                churn_seconds=report.churn_seconds,
                transition_seconds=step / TRANSITIONS_PER_SCRAPE,
                job_log_seconds=step,
                token_seconds=step * TOKEN_SCRAPES,
                session_idle_seconds=step * SESSION_IDLE_SCRAPES,
                random_seed=seed,
            ) as (_process, url, credentials, simulated),
        ):
            config = exporter_config(simulated, credentials, Path(directory))
            config_file = Path(directory) / "churn.yml"
            config_file.write_text(yaml.safe_dump(config))
            model = root_model()
            exporter = Exporter(load_settings(model, config_file), redactor.sink)
            reload = Reloader(exporter, lambda: load_settings(model, config_file), close_after=0.0)
            control = requests.Session()
            clock = Clock(control, url)
            life: Counter[str] = Counter()  # the structures' entries summed over the configuration's scrapes
            try:
                for index in range(1, scrapes + 1):
                    clock.move_to(index * step)
                    scrape(exporter, report, job_ids, run_ids)
                    sizes = structures(exporter, redactor)
                    life.update(sizes)
                    report.peaks.update({name: max(report.peaks.get(name, 0), n) for name, n in sizes.items()})
                    if index % rotate_every:
                        continue
                    if index >= report.warmup:
                        figures = Figures.at_rest(exporter.app)
                        means = {name: total / rotate_every for name, total in life.items()}
                        report.samples.append(Sample(index, figures, means))
                    life.clear()
                    target = config["targets"][(index // rotate_every - 1) % len(config["targets"])]
                    rotate(control, url, target, reload, report)
                    if echo and index % (10 * rotate_every) == 0:
                        print(f"... {index} scrapes, {time.monotonic() - started:.0f}s", file=sys.stderr, flush=True)
                tally(exporter, control, url, report)
            finally:
                exporter.close()
                control.close()
    finally:
        logs.configure(logs.Redactor(), "info", "json")
    report.seconds = time.monotonic() - started
    report.run_ids = run_ids.count
    report.tracebacks, report.overruns = sink.tracebacks, sink.overruns
    return report


class Clock:
    """The simulator's clock, moved to whole steps after the run's start however long a scrape took.

    The simulated clock runs on with the real one between moves; moving it by `step` less the real time that
    passed keeps every scrape at the same simulated moment in every run, so a seeded run plays the same events
    (a job's ticks, churn, expiries are whole fractions of a step apart, far more than a scrape takes).
    """

    def __init__(self, control: requests.Session, url: str) -> None:
        self._control, self._url = control, url
        self._offset = 0.0
        self._start = self._advance(0.0)

    def move_to(self, seconds: float) -> None:
        """Move to `seconds` after the start."""
        self._advance(max(0.0, self._start + seconds - (time.time() + self._offset)))

    def _advance(self, seconds: float) -> float:
        answer = self._control.post(f"{self._url}/_sim/clock", json={"advance": seconds}, timeout=30)
        answer.raise_for_status()
        now: float = answer.json()["now"]
        self._offset = now - time.time()  # the simulator's clock is this machine's, moved on
        return now


def exporter_config(simulated: dict[str, Any], credentials: dict[str, Any], directory: Path) -> dict[str, Any]:
    """The simulator's configuration with every target on discovery alone, listing as often as allowed, and Cloud
    Stream on an IAM token (see the module's notes on the clock)."""
    targets = []
    for target in simulated["targets"]:
        target = {**target, "discovery": {"enabled": True, "interval_seconds": DISCOVERY_SECONDS}}
        target["dataflows" if target["platform"] == "informatica" else "jobs"] = []
        if target["platform"] == "cloudstream":
            target = token_auth(target, credentials["cloudstream"], directory)
        targets.append(target)
    return {**simulated, "targets": targets}


def token_auth(target: dict[str, Any], credentials: dict[str, str], directory: Path) -> dict[str, Any]:
    """A Huawei target signing in with the IAM user's password (in a file beside the others) instead of AK/SK."""
    target = {key: value for key, value in target.items() if key != "secret_access_key_file"}
    target["auth"] = {
        "type": "token",
        **{key: credentials[key] for key in ("iam_url", "domain", "username", "project_name")},
    }
    target["password_file"] = str(directory / f"{target['name']}.password")
    write_private(Path(target["password_file"]), credentials["password"])
    return target


def scrape(exporter: Exporter, report: Report, job_ids: DistinctIds, run_ids: DistinctIds) -> None:
    """One scrape, and the distinct ids and failing targets it shows."""
    status, body = get(exporter.app, "/metrics")
    if not status.startswith("200"):
        report.not_ok += 1
        return
    for job_id, _name, platform in set(JOB_STATE.findall(body)):
        if job_ids.add(f"{platform} {job_id}"):
            report.job_ids[platform] += 1
    for run_id in set(RUN_ID.findall(body)) - {""}:
        run_ids.add(run_id)
    report.target_failures.update(FAILED.findall(body))


def structures(exporter: Exporter, redactor: logs.Redactor) -> dict[str, int]:
    """The entries of every target's per-job structures, and how many values the redactor masks."""
    sizes = {
        f"{name} {entry}": size
        for name, runner in exporter.app.runners.by_name.items()
        for entry, size in runner.collector.jobs.footprint().items()
    }
    sizes["redactor values"] = len(redactor.values())
    return sizes


def rotate(control: requests.Session, url: str, target: dict[str, Any], reload: Reloader, report: Report) -> None:
    """A new secret for the target's platform in the simulator, written to the file(s) the target reads, reloaded."""
    answer = control.post(f"{url}/_sim/{target['platform']}/credentials", timeout=30)
    answer.raise_for_status()
    credentials = answer.json()
    for key, path in target.items():
        if key.endswith("_file"):
            write_private(Path(path), credentials[key.removesuffix("_file")])
    report.rotations += 1
    ok, message = reload()
    if ok:
        report.reloads += 1
    else:
        report.reload_failures.append(message)


def tally(exporter: Exporter, control: requests.Session, url: str, report: Report) -> None:
    """The run's totals: logins the simulator served, and the exporter's own counts of errors and 401 answers."""
    served = sim_requests(control, url)
    report.logins.update({key: n for key, n in served.items() if key.rsplit(" ", 1)[1] in LOGINS})
    for family in exporter.registry.collect():
        for sample in family.samples:
            labels = sample.labels
            if sample.name == "ingestion_scrape_errors_total":
                report.errors[f"{labels['target']} {labels['reason']}"] += int(sample.value)
            elif sample.name == "ingestion_upstream_requests_total" and labels["outcome"] == "401":
                report.refused[labels["target"]] += int(sample.value)
