"""The life-cycle machinery the live platforms share: jobs that move on simulated time, lazily.

A platform's live jobs subclass `LiveJobs` and say what is vendor-specific: how a job is built
(`_new_job`), its key (`_key`, and `_parse` for the id the control API gives), the move it draws on
a tick (`_draw`), what entering a state does (`_enter`) and how its counters grow (`_integrate`).
Nothing moves until a request asks: `_current` then plays the ticks missed since the last look, once
every `transition_seconds`, each from the job's own seeded draws, so answers depend only on the seed
and the simulated time.
"""

from __future__ import annotations

import random
import threading
from abc import ABC, abstractmethod
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
        self._clock = context.clock
        self._period = context.transition_seconds
        self._lock = threading.Lock()
        now = self._clock.now()
        self._jobs: dict[K, J] = {}
        for index in range(context.jobs):
            job = self._new_job(index, context.rng(platform, index), now)
            self._jobs[self._key(job)] = job

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

    def _current(self, key: K | None) -> tuple[J, float]:
        """The job brought up to now, and now; call with the lock held."""
        job = None if key is None else self._jobs.get(key)
        if job is None:
            raise self._missing(key)
        now = self._clock.now()
        while not job.frozen and job.next_tick <= now:
            state = self._draw(job)
            if state is not None:
                self._enter(job, state, job.next_tick)
            job.next_tick += self._period
        self._integrate(job, now)
        return job, now

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
