"""structlog set-up: JSON by default, console on a terminal, and every known secret redacted.

Redaction runs last, on the rendered line, so a secret is caught wherever it hides: an event field, an
exception text, an upstream's error body. Each target hands its secrets, and the session ids and tokens it
obtains at run time, to a sink of its own (`Redactor.sink()`): a renewed token replaces the last one, and a
target's values leave when its collector is closed (a reload), so the set stays as large as what is in use.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

from exporter.settings import MASK

LEVELS = ("debug", "info", "warning", "error")
MIN_SECRET_LENGTH = 5  # shorter values would mask ordinary words


class Redactor:
    """Replaces every value its open sinks hold in rendered log lines, longest first."""

    def __init__(self) -> None:
        self._sinks: list[SecretSlots] = []
        self._ordered: tuple[str, ...] = ()
        self._lock = threading.Lock()

    def sink(self) -> SecretSlots:
        """A new sink for one target's secrets, masked from now until it is closed."""
        sink = SecretSlots(self)
        with self._lock:
            self._sinks.append(sink)
        return sink

    def values(self) -> set[str]:
        with self._lock:
            return {value for sink in self._sinks for value in sink.values()}

    def redact(self, text: str) -> str:
        for value in self._ordered:
            if value in text:
                text = text.replace(value, MASK)
        return text

    def __call__(self, _logger: Any, _name: str, event: Any) -> str:
        """The last structlog processor: it receives the rendered line."""
        return self.redact(event if isinstance(event, str) else bytes(event).decode("utf-8", "replace"))

    def _changed(self, closed: SecretSlots | None = None) -> None:
        """Order the values, longest first, when they change, not on every line. (Plain replacement, not one
        compiled pattern: every renewed token would leave a dead pattern in the `re` module's cache.)"""
        with self._lock:
            if closed is not None and closed in self._sinks:
                self._sinks.remove(closed)
            values = {value for sink in self._sinks for value in sink.values() if len(value) >= MIN_SECRET_LENGTH}
            self._ordered = tuple(sorted(values, key=len, reverse=True))


class SecretSlots:
    """One target's values to mask, one per slot (`password`, `token`, ...): a new value replaces the slot's last."""

    def __init__(self, redactor: Redactor) -> None:
        self._redactor = redactor
        self._slots: dict[str, str] = {}

    def put(self, slot: str, value: str) -> None:
        if self._slots.get(slot) != value:
            self._slots[slot] = value
            self._redactor._changed()

    def values(self) -> list[str]:
        return list(self._slots.values())

    def close(self) -> None:
        self._redactor._changed(closed=self)


def configure(redactor: Redactor, level: str = "info", fmt: str | None = None, stream: TextIO | None = None) -> None:
    """Set up structlog and route the standard library's logging (urllib3 and friends) through it."""
    out = stream or sys.stderr
    if fmt is None:
        fmt = "console" if out.isatty() else "json"
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _stringify_exceptions,
    ]
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=out.isatty())
        if fmt == "console"
        else structlog.processors.JSONRenderer(sort_keys=True)
    )
    structlog.configure(
        processors=[*shared, renderer, redactor],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.WriteLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(_StdlibFormatter(redactor))
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(logging.WARNING)


def _stringify_exceptions(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """One line per event: an exception becomes its type and message, never a multi-line traceback."""
    exc = event.pop("exc_info", None)
    if isinstance(exc, BaseException):
        event["exception"] = f"{type(exc).__name__}: {exc}"
    return event


class _StdlibFormatter(logging.Formatter):
    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self._redactor = redactor

    def format(self, record: logging.LogRecord) -> str:
        return self._redactor.redact(f"level={record.levelname.lower()} logger={record.name} {record.getMessage()}")
