"""Injectable upstream faults: rules that match requests by platform and endpoint, and what each kind does.

A rule fires on a matching request with probability `rate` (drawn from the seeded random), at most
`count` times (None: until cleared). `latency` and `session_expired` act and let the request go on;
of the other kinds, the first rule that fires decides the answer:

- latency: wait `seconds` (default 1) first.        - session_expired: drop all sessions first.
- error: `status` (default 500) with the platform's error document.
- html_error: 502 with an HTML gateway page.          - rate_limit: 429 with `Retry-After: retry_after`.
- hang: no answer for `seconds` (default 30), then close.   - refuse: close at once, no answer.
- malformed: 200 with the normal body cut in half.   - empty: 200 with an empty body.
- wrong_types: the normal document with the types of its top-level values swapped.
- missing_fields: the normal document with only its id fields left at the top level.
- unknown_state: the normal document with every state field set to "Quantum Flux".
- oversized: 200 with a valid JSON document of `bytes` bytes (default 20 MiB), streamed.
- auth: the platform's answer to bad credentials or an invalid session.
The three document kinds leave answers that are not 2xx JSON untouched.
"""

from __future__ import annotations

import itertools
import json
import random
import threading
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

from exporter.simulator.platforms import Platform, Reply

KINDS = frozenset(
    {
        "latency",
        "error",
        "html_error",
        "rate_limit",
        "hang",
        "malformed",
        "empty",
        "wrong_types",
        "missing_fields",
        "unknown_state",
        "oversized",
        "auth",
        "session_expired",
        "refuse",
    }
)
UNKNOWN_STATE = "Quantum Flux"
_SIDE_EFFECTS = frozenset({"latency", "session_expired"})
_HTML = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)
_PADDING_HEAD, _PADDING_TAIL = b'{"padding":"', b'"}'


@dataclass(frozen=True)
class FaultRule:
    """One fault; the JSON form of the control API uses the same field names."""

    kind: str
    platform: str = "*"
    endpoint: str = "*"
    rate: float = 1.0
    count: int | None = None
    seconds: float | None = None
    status: int = 500
    retry_after: int = 1
    bytes: int = 20 * 1024 * 1024

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; known: {', '.join(sorted(KINDS))}")
        for name in ("platform", "endpoint"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ValueError(f"{name} must be a name or '*'")
        _check_number("rate", self.rate, 0.0, 1.0)
        _check_number("seconds", self.seconds, 0.0, None, optional=True)
        _check_number("count", self.count, 1, None, integer=True, optional=True)
        _check_number("status", self.status, 400, 599, integer=True)
        _check_number("retry_after", self.retry_after, 0, None, integer=True)
        _check_number("bytes", self.bytes, len(_PADDING_HEAD + _PADDING_TAIL), None, integer=True)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> FaultRule:
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown fault fields: {', '.join(sorted(unknown))}")
        if "kind" not in data:
            raise ValueError("a fault needs a kind")
        return cls(**data)

    @property
    def duration(self) -> float:
        if self.seconds is not None:
            return self.seconds
        return 30.0 if self.kind == "hang" else 1.0


def _check_number(
    name: str, value: object, low: float, high: float | None, *, integer: bool = False, optional: bool = False
) -> None:
    if value is None and optional:
        return
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise ValueError(f"{name} must be {'an integer' if integer else 'a number'}, not {value!r}")
    if value < low or (high is not None and value > high):
        raise ValueError(f"{name} must be between {low} and {high if high is not None else 'any'}")


@dataclass
class _Entry:
    rule: FaultRule
    remaining: int | None


class FaultTable:
    """The active rules, shared by all request threads; a rule with a count goes once it is used up."""

    def __init__(self, random_seed: int, endpoints: Mapping[str, Collection[str]]) -> None:
        self._endpoints = endpoints
        self._random = random.Random(f"{random_seed}:faults")
        self._entries: dict[str, _Entry] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def add(self, rule: FaultRule | Mapping[str, Any]) -> str:
        """Validate the rule against the served platforms and endpoints; returns its id."""
        if not isinstance(rule, FaultRule):
            rule = FaultRule.from_mapping(rule)
        if rule.platform != "*" and rule.platform not in self._endpoints:
            raise ValueError(f"platform {rule.platform!r} is not served")
        names = (
            {name for names in self._endpoints.values() for name in names}
            if rule.platform == "*"
            else set(self._endpoints[rule.platform])
        )
        if rule.endpoint != "*" and rule.endpoint not in names:
            raise ValueError(f"unknown endpoint {rule.endpoint!r}; known: {', '.join(sorted(names))}")
        with self._lock:
            rule_id = f"fault-{next(self._ids)}"
            self._entries[rule_id] = _Entry(rule, rule.count)
        return rule_id

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def fire(self, platform: str, endpoint: str) -> list[FaultRule]:
        """The rules that fire for this request, in the order they were added; counts are used up."""
        fired = []
        with self._lock:
            for rule_id, entry in list(self._entries.items()):
                rule = entry.rule
                if rule.platform not in ("*", platform) or rule.endpoint not in ("*", endpoint):
                    continue
                if self._random.random() >= rule.rate:
                    continue
                fired.append(rule)
                if entry.remaining is not None:
                    entry.remaining -= 1
                    if entry.remaining == 0:
                        del self._entries[rule_id]
        return fired


@dataclass(frozen=True)
class NoAnswer:
    """Hold the connection for `seconds` (or until the simulator stops), then close it without a word."""

    seconds: float


@dataclass(frozen=True)
class Streamed:
    """A 200 JSON document of exactly `size` bytes, written in chunks so it never sits in memory."""

    size: int
    chunk: int = 64 * 1024

    def chunks(self) -> Iterator[bytes]:
        yield _PADDING_HEAD
        left = self.size - len(_PADDING_HEAD) - len(_PADDING_TAIL)
        while left > 0:
            part = min(left, self.chunk)
            yield b"x" * part
            left -= part
        yield _PADDING_TAIL


Outcome = Reply | NoAnswer | Streamed


def resolve(
    fired: Sequence[FaultRule],
    platform: Platform,
    endpoint: str,
    handle: Callable[[], Reply],
    wait: Callable[[float], object],
) -> Outcome:
    """Apply what the fired rules do to one request; `handle` produces the normal answer."""
    for rule in fired:
        if rule.kind == "latency":
            wait(rule.duration)
        elif rule.kind == "session_expired":
            platform.expire_sessions()
    decisive = next((rule for rule in fired if rule.kind not in _SIDE_EFFECTS), None)
    if decisive is None:
        return handle()
    return _decide(decisive, platform, endpoint, handle)


def _decide(rule: FaultRule, platform: Platform, endpoint: str, handle: Callable[[], Reply]) -> Outcome:
    match rule.kind:
        case "error":
            return platform.error_reply(endpoint, rule.status)
        case "html_error":
            return Reply(502, _HTML, "text/html; charset=utf-8")
        case "rate_limit":
            limited = platform.error_reply(endpoint, 429)
            return replace(limited, headers={**limited.headers, "Retry-After": str(rule.retry_after)})
        case "hang":
            return NoAnswer(rule.duration)
        case "refuse":
            return NoAnswer(0.0)
        case "empty":
            return Reply(200)
        case "oversized":
            return Streamed(rule.bytes)
        case "auth":
            return platform.auth_failure(endpoint)
        case "malformed":
            body = handle().body
            return Reply(200, body[: len(body) // 2] or b'{"')
        case _:
            return _rewrite(rule.kind, handle(), platform)


def _rewrite(kind: str, reply: Reply, platform: Platform) -> Reply:
    if not 200 <= reply.status < 300:
        return reply
    try:
        document = json.loads(reply.body)
    except ValueError:
        return reply
    if kind == "unknown_state":
        document = _restate(document, platform.status_keys)
    elif isinstance(document, list):
        document = [_reshape(kind, item, platform.id_keys) for item in document]
    else:
        document = _reshape(kind, document, platform.id_keys)
    return replace(reply, body=json.dumps(document).encode())


def _restate(value: Any, keys: frozenset[str]) -> Any:
    if isinstance(value, dict):
        return {k: UNKNOWN_STATE if k in keys else _restate(v, keys) for k, v in value.items()}
    if isinstance(value, list):
        return [_restate(item, keys) for item in value]
    return value


def _reshape(kind: str, document: Any, id_keys: frozenset[str]) -> Any:
    if not isinstance(document, dict):
        return document
    if kind == "missing_fields":
        return {k: v for k, v in document.items() if k in id_keys}
    return {k: _other_type(v) for k, v in document.items()}


def _other_type(value: Any) -> Any:
    """A string where a number goes, a number where a string goes, a list where an object goes."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return len(value)
    if isinstance(value, dict):
        return list(value.values())
    if isinstance(value, list):
        return {str(i): item for i, item in enumerate(value)}
    return value
