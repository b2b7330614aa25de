"""The contract between the simulator core and its platform modules, and the registry of platforms.

A platform is one module of this package that defines ``create(context: Context) -> Platform``.
Listing the module's name in PLATFORMS is all the core needs. The registry imports the modules by
name, lazily, because each platform module imports this contract from here. Live jobs that move on
simulated time can build on `lifecycle.LiveJobs`.
"""

from __future__ import annotations

import importlib
import json
import random
import re
import secrets
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

PLATFORMS: tuple[str, ...] = (
    "informatica",
    "siren",
    "dataarts",
    "cloudstream",
)


@dataclass(frozen=True)
class Reply:
    """One HTTP answer; most are JSON, so that is the default content type."""

    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: Mapping[str, str] = field(default_factory=dict)


def json_reply(status: int, document: object) -> Reply:
    return Reply(status, json.dumps(document).encode())


@dataclass(frozen=True)
class Request:
    """What a route handler sees: path parameters from its route, the query, lower-cased headers, body."""

    method: str
    path: str
    params: Mapping[str, str]
    query: Mapping[str, Sequence[str]]
    headers: Mapping[str, str]
    body: bytes

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def arg(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None

    def json(self) -> Any:
        """The body as JSON; raises ValueError when it is not."""
        return json.loads(self.body)


def integer(text: str | None, default: int | None) -> int | None:
    """A whole-number argument or path part: `default` when it is absent, None when it is not a number."""
    if text is None:
        return default
    try:
        return int(text)
    except ValueError:
        return None


@dataclass(frozen=True)
class Route:
    """A vendor endpoint: `endpoint` is the name fault rules and request stats use."""

    method: str
    path: str  # a regular expression matched against the whole path; named groups become params
    endpoint: str
    handler: Callable[[Request], Reply]

    def match(self, path: str) -> dict[str, str] | None:
        found = re.fullmatch(self.path, path)
        return None if found is None else found.groupdict()


class Clock:
    """Wall-clock time that tests can move forward, so life cycles and session expiry need no sleeps."""

    def __init__(self) -> None:
        self._offset = 0.0
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return time.time() + self._offset

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._offset += seconds


class SessionStore:
    """Session tokens that expire after `idle_seconds` without use, as the vendors' sessions do."""

    def __init__(self, clock: Clock, idle_seconds: float) -> None:
        self._clock = clock
        self._idle = idle_seconds
        self._last_used: dict[str, float] = {}
        self._lock = threading.Lock()

    def issue(self) -> str:
        token = secrets.token_urlsafe(16)
        now = self._clock.now()
        with self._lock:
            self._last_used = {t: used for t, used in self._last_used.items() if now - used <= self._idle}
            self._last_used[token] = now
        return token

    def touch(self, token: str) -> bool:
        """True when the session is valid; using it keeps it alive."""
        now = self._clock.now()
        with self._lock:
            used = self._last_used.get(token)
            if used is None or now - used > self._idle:
                self._last_used.pop(token, None)
                return False
            self._last_used[token] = now
            return True

    def revoke(self, token: str) -> None:
        with self._lock:
            self._last_used.pop(token, None)

    def clear(self) -> None:
        with self._lock:
            self._last_used.clear()


@dataclass(frozen=True)
class Context:
    """What the simulator hands each platform: its options, the shared clock and its public URL."""

    jobs: int
    seed: bool
    session_idle_seconds: float
    transition_seconds: float
    random_seed: int
    clock: Clock
    url: Callable[[], str]
    token_seconds: float  # how long an IAM token stays valid
    job_log_seconds: float | None = None  # a job log kept at its steady size: the runs of the last N seconds
    churn_seconds: float | None = None  # replace the oldest live job with a new one this often

    def rng(self, *parts: object) -> random.Random:
        """A random generator of its own for each purpose, so one platform's draws never shift another's."""
        return random.Random(":".join(str(part) for part in (self.random_seed, *parts)))


class Platform(Protocol):
    """What the core needs from a platform; job-level errors are LookupError (unknown) or ValueError."""

    @property
    def name(self) -> str: ...

    @property
    def status_keys(self) -> frozenset[str]:
        """Keys that hold a state anywhere in its documents (the `unknown_state` fault rewrites them)."""
        ...

    @property
    def id_keys(self) -> frozenset[str]:
        """Top-level keys that identify a document (the `missing_fields` fault keeps them)."""
        ...

    def routes(self) -> Sequence[Route]: ...

    def credentials(self) -> dict[str, str]: ...

    def rotate_credentials(self) -> None:
        """Replace the secret with a new random one; sessions and tokens issued with the old one stay valid."""
        ...

    def jobs(self) -> list[dict[str, str]]: ...

    def set_state(self, job_id: str, state: str | None) -> None:
        """Force a job into a vendor state and freeze it there; None resumes its life cycle."""
        ...

    def restart(self, job_id: str, *, failed: bool) -> None:
        """End the job's current run, failed or stopped on purpose, and start a new one that goes on, now."""
        ...

    def error_reply(self, endpoint: str, status: int) -> Reply:
        """The platform's own error document for `status` on `endpoint`."""
        ...

    def auth_failure(self, endpoint: str) -> Reply: ...

    def expire_sessions(self) -> None: ...


def create(name: str, context: Context) -> Platform:
    if name not in PLATFORMS:
        raise ValueError(f"unknown platform {name!r}; known: {', '.join(PLATFORMS)}")
    module = importlib.import_module(f"{__package__}.{name}")
    platform: Platform = module.create(context)
    return platform
