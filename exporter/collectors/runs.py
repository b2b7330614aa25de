"""Runs counted by outcome: what happened between two scrapes that a state poll misses.

A job that fails and is restarted between two scrapes shows `running` both times. The collectors hand the
ledger what they read anyway: the current run as the status shows it (`observe`, every scrape) and, where the
platform keeps one, its run history (`settle`). Each run, named by a key the platform gives it (a run id, a
start time), is counted once, under the first outcome seen for it:

- a run seen in a failed, stopped or succeeded state counts under that outcome;
- a run a history lists as ended without a readable state counts as `unknown`;
- a run that was seen going on and then left without its end being seen (a new run took its place, and no
  history told how it ended) counts as `unknown`, or as `stopped` when it was last seen stopping.

The runs that had ended before the exporter first looked at a job are a baseline, never counted, so a restart
of the exporter does not count old failures again: at the first look, the current run's start time (or, where
the status gives none, the run itself, placed by the first history read) is the floor below which a history's
runs are old. Per job at most `RUNS_REMEMBERED` run keys are kept; forgetting the oldest raises the floor past
it, so a run stays counted once however long the history a platform returns. Everything kept per job lives in
the job directory's memory and leaves with the job.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from exporter.collectors.base import JobDirectory
from exporter.metrics import JOB_LAST_FAILURE, JOB_RUNS, OUTCOMES, JobRef, Output

RUNS_REMEMBERED = 64
"""Run keys kept per job: far more runs than a job has between two scrapes or in a history answer's tail."""

# Normalized state -> the outcome of a run seen in it; and of a run last seen in it that left unseen.
_OUTCOME = {"failed": "failed", "stopped": "stopped", "succeeded": "succeeded"}
_LEFT = {"stopping": "stopped"}


@dataclass(frozen=True)
class RunView:
    """One run as an answer shows it: its key among the job's runs, when it started, its normalized state,
    whether the answer says it is over, and when it ended (as the platform says; None where it does not)."""

    key: str
    started: float | None
    state: str | None
    ended: bool = False
    ended_at: float | None = None

    @property
    def outcome(self) -> str | None:
        """The outcome it counts under, or None while it may still go on."""
        outcome = _OUTCOME.get(self.state or "")
        return outcome if outcome is not None or not self.ended else "unknown"


@dataclass
class JobRuns:
    """What the ledger keeps of one job."""

    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    last_failure: float | None = None
    # Plain dicts, oldest first: an OrderedDict costs 40 % more, and at 64 keys of 2,000 jobs that is 7 MiB.
    seen: dict[str, float | None] = field(default_factory=dict)  # counted or baseline: key -> start
    going: dict[str, RunView] = field(default_factory=dict)  # seen going on, not over yet
    floor: float | None = None  # a history's runs that started before it had ended before the first look
    anchor: str | None = None  # the run current at the first look, until a history places it


class RunLedger:
    """Per job: the runs counted by outcome, the run keys already counted, the newest failure's end."""

    def __init__(self, jobs: JobDirectory, keep: int = RUNS_REMEMBERED) -> None:
        self._jobs: dict[str, JobRuns] = jobs.memory()
        self._keep = keep

    def observe(self, job_id: str, run: RunView, *, history: bool) -> None:
        """The job's current run, as its status shows it this scrape. `history`: a history read settles the runs
        that left; without one, a run seen going on that is no longer current is over, its outcome unseen."""
        runs = self._jobs.get(job_id)
        if runs is None:  # the first look: whatever has ended by now is the baseline
            runs = JobRuns(floor=run.started, anchor=None if run.started is not None else run.key)
            self._jobs[job_id] = runs
            if run.outcome is not None:
                self._remember(runs, run)
                self._note_failure(runs, run, run.outcome)
            else:
                self._going(runs, run)
            return
        if run.outcome is not None:
            self._count(runs, run, run.outcome)
        elif run.key not in runs.seen:
            self._going(runs, run)
        if not history:
            self._left(runs, run.key)

    def settle(self, job_id: str, history: Iterable[RunView], current: str | None) -> None:
        """A history answer for the job, read after `observe`: count its ended runs not counted yet and newer than
        the first look; a run seen going on that it does not show as ended, and that is not `current`, is over with
        its outcome unknown."""
        runs = self._jobs.get(job_id)
        if runs is None:
            return
        listed = sorted(history, key=lambda run: -math.inf if run.started is None else run.started)
        if runs.anchor is not None:
            runs.floor = _placed(runs.anchor, listed)
            runs.anchor = None
        for run in listed:
            outcome = run.outcome
            if outcome is None:
                continue
            if runs.floor is not None and (run.started is None or run.started < runs.floor):
                self._note_failure(runs, run, outcome)  # over before the first look: its time only
            else:
                self._count(runs, run, outcome)
        self._left(runs, current)

    def emit(self, out: Output, jobs: Iterable[JobRef]) -> None:
        """Per job reported, every outcome's counter (from 0, so `increase()` sees the first run that ends, also
        for a job whose runs could not be read yet) and the last failure, where one was seen."""
        for job in jobs:
            runs = self._jobs.get(job.job_id) or JobRuns()
            for outcome, count in runs.counts.items():
                out.add(JOB_RUNS, count, job, outcome=outcome)
            out.add_optional(JOB_LAST_FAILURE, runs.last_failure, job)

    def _count(self, runs: JobRuns, run: RunView, outcome: str) -> None:
        if run.key in runs.seen:
            return
        runs.counts[outcome] += 1
        self._note_failure(runs, run, outcome)
        self._remember(runs, run)

    def _left(self, runs: JobRuns, current: str | None) -> None:
        """Runs seen going on that are over now (another is current), without their end seen: counted as such."""
        for key, run in list(runs.going.items()):
            if key != current:
                self._count(runs, RunView(key, run.started, None, ended=True), _LEFT.get(run.state or "", "unknown"))

    def _going(self, runs: JobRuns, run: RunView) -> None:
        runs.going.pop(run.key, None)  # to the end
        runs.going[run.key] = run
        while len(runs.going) > self._keep:
            del runs.going[next(iter(runs.going))]

    def _remember(self, runs: JobRuns, run: RunView) -> None:
        """Keep the run's key (and start); the oldest beyond the bound is dropped and the floor rises past it."""
        runs.going.pop(run.key, None)
        runs.seen[run.key] = run.started
        while len(runs.seen) > self._keep:
            started = runs.seen.pop(next(iter(runs.seen)))
            if started is not None:
                runs.floor = max(-math.inf if runs.floor is None else runs.floor, math.nextafter(started, math.inf))

    @staticmethod
    def _note_failure(runs: JobRuns, run: RunView, outcome: str) -> None:
        if outcome == "failed" and run.ended_at is not None:
            runs.last_failure = max(runs.last_failure or run.ended_at, run.ended_at)


def _placed(anchor: str, listed: Sequence[RunView]) -> float | None:
    """The floor once a history shows the run current at the first look: its start. When the history does not list
    it, every run the history shows as ended is taken as older (counting none beats counting old ones)."""
    for run in listed:
        if run.key == anchor and run.started is not None:
            return run.started
    ended = [run.started for run in listed if run.outcome is not None and run.started is not None]
    return math.nextafter(max(ended), math.inf) if ended else None
