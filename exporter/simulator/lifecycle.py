"""The life-cycle machinery the live platforms share: jobs that move on simulated time, lazily.

A platform's live jobs subclass `LiveJobs` and say what is vendor-specific: how a job is built
(`_new_job`), its key (`_key`, and `_parse` for the id the control API gives), the move it draws on
a tick (`_draw`), what entering a state does (`_enter`) and how its counters grow (`_integrate`).
Nothing moves until a request asks: `_current` then plays the ticks missed since the last look, once
every `transition_seconds`, each from the job's own seeded draws, so answers depend only on the seed
and the simulated time.

Churn (`churn_seconds`): every that many seconds the oldest live job is deleted and job number
`jobs + k` (k = 0, 1, ...) is built, the way job number k is, from its own seeded draws, so its id
was never used before. The next look (`_now`) plays the churn events missed, each in constant time.
A deleted job leaves nothing behind unless the platform keeps a history of it (`_retention`, `_retire`),
so the memory held is the live fleet's, however many jobs churn through.

A restart (`restart`) ends the job's current run, failed or stopped on purpose, and starts a new one that goes
on, in the states the platform's `_restart_moves` names, a second apart and ending now: what a platform's own
restart, an operator or a scheduler does between two scrapes.
"""

from __future__ import annotations

import math
import random
import threading
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Hashable, Iterable
from typing import Generic, Protocol, TypeVar

from exporter.simulator.platforms import Context


class Ticking(Protocol):
    """What the machinery needs of a job: when it next moves and whether it is frozen in a forced state."""

    next_tick: float
    frozen: bool


K = TypeVar("K", bound=Hashable)
J = TypeVar("J", bound=Ticking)


class LiveJobs(ABC, Generic[K, J]):
    """Jobs keyed by K, built from `context.rng(platform, index)`; the subclass holds the lock while it reads."""

    def __init__(self, context: Context, platform: str) -> None:
        self._context, self._platform = context, platform
        self._clock = context.clock
        self._period = context.transition_seconds
        self._churn = context.churn_seconds
        self._lock = threading.Lock()
        self._started = self._clock.now()
        self._churned = 0  # churn events played so far
        self._jobs: OrderedDict[K, J] = OrderedDict()  # oldest first, so a churn event finds it at once
        for index in range(context.jobs):
            self._add(self._build(index, self._started))

    def set_state(self, job_id: str, state: str | None) -> None:
        """Force the job into `state` and freeze it there; None resumes its life cycle from now."""
        with self._lock:
            job, now = self._current(self._parse(job_id))
            if state is None:
                job.frozen = False
                job.next_tick = now + self._period
                return
            self._enter(job, state, now)
            job.frozen = True

    def restart(self, job_id: str, *, failed: bool) -> None:
        """End the job's current run (`failed`, else stopped on purpose) and start a new one at once, now."""
        with self._lock:
            job, now = self._current(self._parse(job_id))
            moves = self._restart_moves(job, failed)
            for index, state in enumerate(moves):
                self._enter(job, state, now - (len(moves) - 1 - index))

    def _now(self) -> float:
        """Now, after the churn events due by now; call with the lock held.

        Event e (at `_started + e * churn_seconds`) deletes the oldest live job and builds job number
        `jobs + e - 1`, which goes in turn at event e + (live jobs). One that goes before now is built only
        if the platform keeps something of it (`_retention`), so a jump of the clock costs next to nothing.
        """
        now, churn = self._clock.now(), self._churn
        if churn is None or not self._jobs:  # a fleet emptied by hand has nothing to replace
            return now
        first, last = self._churned + 1, int((now - self._started) // churn)
        if last < first:
            return now

        def at(event: int) -> float:
            return self._started + event * churn

        live, kept_from = len(self._jobs), self._retention(now)
        for event in range(first, min(last, first + live - 1) + 1):
            job = self._jobs.popitem(last=False)[1]
            if at(event) >= kept_from:
                self._retire(job, at(event))
        for event in range(first, last + 1):
            index, gone = self._context.jobs + event - 1, event + live
            if gone > last:
                self._add(self._build(index, at(event)))
            elif at(gone) >= kept_from:
                self._retire(self._build(index, at(event)), at(gone))
        self._churned = last
        return now

    def _current(self, key: K | None, now: float | None = None) -> tuple[J, float]:
        """The job brought up to `now` (by default `_now()`), and that time; call with the lock held."""
        now = self._now() if now is None else now
        job = None if key is None else self._jobs.get(key)
        if job is None:
            raise self._missing(key)
        self._advance(job, now)
        return job, now

    def _live(self) -> tuple[list[J], float]:
        """Every live job, oldest first, brought up to now, and now; call with the lock held."""
        now = self._now()
        jobs = list(self._jobs.values())
        for job in jobs:
            self._advance(job, now)
        return jobs, now

    def _advance(self, job: J, until: float) -> None:
        """Play the job's ticks due by `until` and grow its counters up to then."""
        while not job.frozen and job.next_tick <= until:
            state = self._draw(job)
            if state is not None:
                self._enter(job, state, job.next_tick)
            job.next_tick += self._period
        self._integrate(job, until)

    def _build(self, index: int, at: float) -> J:
        return self._new_job(index, self._context.rng(self._platform, index), at)

    def _add(self, job: J) -> None:
        self._jobs[self._key(job)] = job

    def _retention(self, now: float) -> float:
        """Jobs deleted from this time on leave something behind (`_retire`); by default none do."""
        return math.inf

    def _retire(self, job: J, at: float) -> None:
        """Keep what the vendor keeps of `job`, deleted at `at`: with the default `_retention`, never called."""

    def _missing(self, key: K | None) -> LookupError:
        return LookupError(f"no job {key!r}")

    @abstractmethod
    def _new_job(self, index: int, rng: random.Random, now: float) -> J:
        """Job number `index`, drawing from its own `rng`, brought up to `now`."""

    @abstractmethod
    def _key(self, job: J) -> K: ...

    @abstractmethod
    def _parse(self, job_id: str) -> K | None:
        """The key for a job id as the control API gives it; None when it cannot be one."""

    @abstractmethod
    def _draw(self, job: J) -> str | None:
        """The state the job enters on this tick; None leaves it alone."""

    @abstractmethod
    def _enter(self, job: J, state: str, at: float) -> None: ...

    @abstractmethod
    def _restart_moves(self, job: J, failed: bool) -> tuple[str, ...]:
        """The states a restart passes through: the current run's end (failed or stopped), then a new run."""

    @abstractmethod
    def _integrate(self, job: J, until: float) -> None:
        """Grow the job's counters up to `until`."""


def draw(rng: random.Random, moves: Iterable[tuple[str, float]]) -> str | None:
    """One roll over `(state, probability)` moves: the state it lands on, or None for the remaining chance."""
    roll = rng.random()
    for state, chance in moves:
        roll -= chance
        if roll < 0:
            return state
    return None
