"""Runs counted between scrapes: the ledger's rules, then each platform through the simulator and the exporter.

The simulator's jobs do not move on their own here (a transition a year long) and its clock is never advanced, so
every run that ends is one a test ended through the control API.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import requests

from exporter.collectors.base import JobDirectory
from exporter.collectors.runs import RunLedger, RunView
from exporter.metrics import OUTCOMES, JobRef, Output
from exporter.server import ExporterApp
from exporter.settings import DiscoverySettings, RootSettings
from exporter.simulator import Simulator, SimulatorOptions
from tests.helpers import SIMULATED, Samples, make_app, make_settings, scrape, simulated, value

YEAR = 365 * 86400.0
# Where the platform's history tells how a run that was replaced between two scrapes ended; elsewhere `unknown`.
HISTORY = {"informatica", "siren"}


# --- the ledger -------------------------------------------------------------------------------------------------


def ledger(keep: int = 64) -> RunLedger:
    return RunLedger(JobDirectory([JobRef("j", "j")], DiscoverySettings()), keep)


def counts(runs: RunLedger, job: str = "j") -> dict[str, float]:
    out = Output("p", "t")
    runs.emit(out, [JobRef(job, job)])
    return {labels[-1]: v for family, labels, v in out.samples if family.name == "job_runs_total"}


def last_failure(runs: RunLedger) -> float | None:
    out = Output("p", "t")
    runs.emit(out, [JobRef("j", "j")])
    return next((v for family, _, v in out.samples if family.name == "job_last_failure_timestamp_seconds"), None)


def test_every_outcome_starts_at_zero_and_what_ended_before_the_first_look_is_not_counted() -> None:
    runs = ledger()
    assert counts(runs) == dict.fromkeys(OUTCOMES, 0)  # a job reported before any of its runs could be read
    runs.observe("j", RunView("r1", 100.0, "failed", ended_at=150.0), history=True)
    runs.settle("j", [RunView("r0", 10.0, "failed", ended=True, ended_at=50.0)], "r1")
    assert counts(runs) == dict.fromkeys(OUTCOMES, 0)
    assert last_failure(runs) == 150.0  # the newest failure seen, baseline or not


def test_a_run_is_counted_once_whichever_answer_shows_it_and_however_often() -> None:
    runs = ledger()
    runs.observe("j", RunView("r1", 100.0, "running"), history=True)
    for _ in range(3):
        runs.observe("j", RunView("r1", 100.0, "failed", ended_at=120.0), history=True)
        runs.settle("j", [RunView("r1", 100.0, "failed", ended=True, ended_at=120.0)], "r1")
    runs.observe("j", RunView("r2", 130.0, "stopped"), history=True)
    runs.settle("j", [RunView("r2", 130.0, "stopped", ended=True)], "r2")
    assert counts(runs) == {"succeeded": 0, "failed": 1, "stopped": 1, "unknown": 0}
    assert last_failure(runs) == 120.0


def test_a_run_replaced_unseen_counts_unknown_or_stopped_when_it_was_last_seen_stopping() -> None:
    runs = ledger()
    runs.observe("j", RunView("r1", 1.0, "running"), history=False)
    runs.observe("j", RunView("r2", 2.0, "stopping"), history=False)  # r1 left unseen
    runs.observe("j", RunView("r3", 3.0, "running"), history=False)  # r2 left while stopping
    runs.observe("j", RunView("r3", 3.0, "running"), history=False)
    assert counts(runs) == {"succeeded": 0, "failed": 0, "stopped": 1, "unknown": 1}


def test_with_a_history_a_replaced_run_waits_for_it_and_counts_unknown_only_if_it_does_not_tell() -> None:
    runs = ledger()
    runs.observe("j", RunView("r1", 1.0, "running"), history=True)
    runs.observe("j", RunView("r2", 2.0, "running"), history=True)  # the history could not be read yet
    assert counts(runs)["unknown"] == 0
    runs.settle("j", [RunView("r2", 2.0, "running")], "r2")  # it does not list r1
    assert counts(runs) == {"succeeded": 0, "failed": 0, "stopped": 0, "unknown": 1}


def test_a_first_look_without_a_start_time_is_placed_by_the_first_history() -> None:
    """Informatica's status names the run but not its start: the history read later tells which runs are old."""
    runs = ledger()
    runs.observe("j", RunView("41", None, "running"), history=True)
    runs.observe("j", RunView("43", None, "running"), history=True)
    history = [
        RunView("40", 10.0, "failed", ended=True, ended_at=15.0),  # before the first look
        RunView("41", 20.0, "failed", ended=True, ended_at=25.0),
        RunView("42", 30.0, None, ended=True, ended_at=35.0),  # undeployed without a readable status
        RunView("43", 40.0, "running"),
    ]
    runs.settle("j", history, "43")
    assert counts(runs) == {"succeeded": 0, "failed": 1, "stopped": 0, "unknown": 1}
    assert last_failure(runs) == 25.0


def test_the_remembered_runs_are_bounded_and_a_forgotten_run_is_never_counted_again() -> None:
    runs = ledger(keep=4)
    runs.observe("j", RunView("s0", 0.0, "running"), history=True)
    history = [RunView(f"s{n}", float(n), "succeeded", ended=True) for n in range(20)]
    for _ in range(3):
        runs.settle("j", history, None)
    assert counts(runs)["succeeded"] == 20
    entry = runs._jobs["j"]  # the bound is what this test is about
    assert len(entry.seen) == 4 and entry.going == {}


def test_what_is_kept_of_a_job_leaves_with_it() -> None:
    directory = JobDirectory([], DiscoverySettings(enabled=True))
    runs = RunLedger(directory)
    directory.offer([JobRef("a"), JobRef("b")], complete=True)
    for job in ("a", "b"):
        runs.observe(job, RunView("r", 1.0, "running"), history=False)
    directory.offer([JobRef("b")], complete=True)
    assert directory.footprint()["memory"] == 1
    assert directory.known() == [JobRef("b")]


# --- through the simulator and the exporter ---------------------------------------------------------------------


def control(sim: Simulator, platform: str, job_id: str, action: str) -> None:
    reply = requests.post(f"{sim.url}/_sim/{platform}/jobs/{job_id}/{action}", timeout=5)
    assert reply.status_code == 200, reply.text


def outcomes(samples: Samples, job_id: str) -> dict[str, float | None]:
    return {o: value(samples, "ingestion_job_runs_total", job_id=job_id, outcome=o) for o in OUTCOMES}


def still(platform: str) -> SimulatorOptions:
    return SimulatorOptions(jobs=2, platforms=[platform], transition_seconds=YEAR)


def exporter(sim: Simulator, platform: str, tmp_path: Path, **overrides: Any) -> tuple[RootSettings, ExporterApp]:
    settings = make_settings([simulated(sim, platform, "sim", tmp_path) | overrides])
    return settings, make_app(settings)


def history_reads(sim: Simulator) -> int:
    return sim.stats().get(("informatica", "history", "GET"), 0)


# Job 0 runs on every platform; DataArts job 1 answers in the SDK's spelling (a start time in whole seconds, node
# instance ids).
@pytest.mark.parametrize(("platform", "index"), [*((platform, 0) for platform in SIMULATED), ("dataarts", 1)])
def test_a_run_that_fails_and_restarts_between_scrapes_is_counted_once_and_a_restart_takes_it_as_baseline(
    platform: str, index: int, tmp_path: Path
) -> None:
    expected = "failed" if platform in HISTORY else "unknown"
    with Simulator(still(platform)) as sim:
        job_id = sim.jobs(platform)[index]["id"]
        settings, app = exporter(sim, platform, tmp_path)
        assert outcomes(scrape(app), job_id) == dict.fromkeys(OUTCOMES, 0)
        control(sim, platform, job_id, "fail-and-restart")
        for _ in range(4):  # the scrape after the restart, then three more
            samples = scrape(app)
            assert outcomes(samples, job_id) == {**dict.fromkeys(OUTCOMES, 0), expected: 1}
            assert value(samples, "ingestion_job_state", job_id=job_id, state="running") == 1
        failed_at = value(samples, "ingestion_job_last_failure_timestamp_seconds", job_id=job_id)
        if platform in HISTORY:
            assert failed_at is not None and abs(failed_at - sim.clock.now()) < 60
        else:
            assert failed_at is None  # the platform does not say when
        assert history_reads(sim) == (1 if platform == "informatica" else 0)  # read once: the runId changed once

        app.runners.close()
        restarted = make_app(settings)  # a new exporter process on the same upstream
        for _ in range(3):
            assert outcomes(scrape(restarted), job_id) == dict.fromkeys(OUTCOMES, 0)
        assert history_reads(sim) == (1 if platform == "informatica" else 0)  # nothing read again
        restarted.runners.close()


@pytest.mark.parametrize("platform", SIMULATED)
def test_an_intentional_stop_and_restart_is_never_counted_as_failed(platform: str, tmp_path: Path) -> None:
    expected = "stopped" if platform in HISTORY else "unknown"  # without a history the stop itself is unseen
    with Simulator(still(platform)) as sim:
        job_id = sim.jobs(platform)[0]["id"]
        _, app = exporter(sim, platform, tmp_path)
        scrape(app)
        control(sim, platform, job_id, "stop-and-restart")
        for _ in range(3):
            assert outcomes(scrape(app), job_id) == {**dict.fromkeys(OUTCOMES, 0), expected: 1}
        app.runners.close()


@pytest.mark.parametrize(("platform", "endpoint"), [("informatica", "history"), ("siren", "jobs_search")])
def test_a_history_that_cannot_be_read_is_read_again_and_the_failure_still_counts_once(
    platform: str, endpoint: str, tmp_path: Path
) -> None:
    with Simulator(still(platform)) as sim:
        job_id = sim.jobs(platform)[0]["id"]
        _, app = exporter(sim, platform, tmp_path)
        scrape(app)
        control(sim, platform, job_id, "fail-and-restart")
        sim.faults.add({"platform": platform, "endpoint": endpoint, "kind": "error", "status": 503, "count": 1})
        waiting = scrape(app)
        assert outcomes(waiting, job_id) == dict.fromkeys(OUTCOMES, 0)  # neither failed nor unknown yet
        assert value(waiting, "ingestion_scrape_success") == 0
        for _ in range(2):
            assert outcomes(scrape(app), job_id) == {**dict.fromkeys(OUTCOMES, 0), "failed": 1}
        app.runners.close()


def test_without_the_siren_job_log_a_run_replaced_between_scrapes_counts_unknown(tmp_path: Path) -> None:
    with Simulator(still("siren")) as sim:
        job_id = sim.jobs("siren")[0]["id"]
        _, app = exporter(sim, "siren", tmp_path, search_lookback_seconds=0)
        scrape(app)
        control(sim, "siren", job_id, "fail-and-restart")
        for _ in range(2):
            samples = scrape(app)
            assert outcomes(samples, job_id) == {**dict.fromkeys(OUTCOMES, 0), "unknown": 1}
        assert value(samples, "ingestion_job_last_failure_timestamp_seconds", job_id=job_id) is None
        assert sim.stats().get(("siren", "jobs_search", "GET"), 0) == 0
        app.runners.close()


STOPPED = {"dataarts": "STOPPED", "cloudstream": "job_cancel_success"}


@pytest.mark.parametrize("platform", sorted(STOPPED))
def test_a_stop_seen_by_a_scrape_counts_as_stopped_where_no_history_tells(platform: str, tmp_path: Path) -> None:
    with Simulator(still(platform)) as sim:
        job_id = sim.jobs(platform)[0]["id"]
        _, app = exporter(sim, platform, tmp_path)
        scrape(app)
        sim.platform(platform).set_state(job_id, STOPPED[platform])
        for _ in range(2):
            assert outcomes(scrape(app), job_id) == {**dict.fromkeys(OUTCOMES, 0), "stopped": 1}
        sim.platform(platform).restart(job_id, failed=True)  # a run the list never showed, then a new one
        assert outcomes(scrape(app), job_id) == {**dict.fromkeys(OUTCOMES, 0), "stopped": 1}  # the unseen one is lost
        app.runners.close()


def test_restart_controls_answer_404_for_an_unknown_job_and_400_in_seed_mode() -> None:
    with Simulator(SimulatorOptions(jobs=1, platforms=["siren"])) as sim:
        reply = requests.post(f"{sim.url}/_sim/siren/jobs/nope/fail-and-restart", timeout=5)
        assert reply.status_code == 404
        assert requests.post(f"{sim.url}/_sim/informatica/jobs/x/stop-and-restart", timeout=5).status_code == 404
    with Simulator(SimulatorOptions(seed=True, platforms=["dataarts"])) as sim:
        reply = requests.post(f"{sim.url}/_sim/dataarts/jobs/job_sms/fail-and-restart", timeout=5)
        assert reply.status_code == 400 and "seed" in reply.json()["error"]
