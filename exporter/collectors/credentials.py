"""A login result (session id, token) shared by every call of a target.

Vendors lock accounts that fail to log in too often, and a target's jobs are read concurrently: so a 401
seen by many calls at once leads to one renewal, a failed login is remembered (and raised again) for the rest
of that collection instead of being retried per job, and a collection logs in at most twice (a login, then
one renewal if the fresh credential is refused at once).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

from exporter.http import Deadline, UpstreamError

T = TypeVar("T")


def _always(_value: object) -> bool:
    return True


class LoginCache(Generic[T]):
    """Holds the current credential; `login` is called under the lock, at most once per collection.

    `fresh` says a credential needs no renewal yet; `usable` says it may still be sent while a renewal fails
    (a token renewed before its expiry). Both default to "as long as no 401 says otherwise".
    """

    def __init__(
        self,
        login: Callable[[Deadline], T],
        fresh: Callable[[T], bool] = _always,
        usable: Callable[[T], bool] = _always,
    ) -> None:
        self._login = login
        self._fresh = fresh
        self._usable = usable
        self._lock = threading.Lock()
        self._value: T | None = None
        self._attempted: Deadline | None = None
        self._attempts = 0
        self._failure: UpstreamError | None = None

    def get(self, deadline: Deadline) -> T:
        """The credential to send: the cached one, or one login if this collection has not tried yet."""
        with self._lock:
            current = self._value
            if current is not None and self._fresh(current):
                return current
            return self._attempt(current, deadline, allowed=1)

    def renew(self, stale: T, deadline: Deadline) -> T:
        """After a 401 for `stale`: the credential another call already got, or one new login."""
        with self._lock:
            if self._value is not None and self._value is not stale:
                return self._value
            self._value = None
            return self._attempt(None, deadline, allowed=2)

    def drop(self, stale: T) -> None:
        """Forget a refused credential without logging in now: the next collection logs in again."""
        with self._lock:
            if self._value is stale:
                self._value = None

    def _attempt(self, current: T | None, deadline: Deadline, allowed: int) -> T:
        if self._attempted is not deadline:
            self._attempted, self._attempts, self._failure = deadline, 0, None
        if self._failure is not None or self._attempts >= allowed:
            if current is not None and self._usable(current):
                return current
            raise self._failure or UpstreamError("auth", "credentials refused again right after a login")
        self._attempts += 1
        try:
            self._value = self._login(deadline)
        except UpstreamError as exc:
            self._failure = exc
            if current is not None and self._usable(current):
                return current  # renewal failed early: the old credential is still valid, keep using it
            raise
        return self._value
