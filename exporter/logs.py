"""structlog set-up: JSON by default, console on a terminal, and every known secret redacted.

Redaction runs last, on the rendered line, so a secret is caught wherever it hides: an event field, an
exception text, an upstream's error body. Tokens obtained at run time (sessions) are added as they come.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Iterable, MutableMapping
from typing import Any, TextIO

import structlog

MASK = "**********"
LEVELS = ("debug", "info", "warning", "error")


class Redactor:
    """Replaces every registered secret value in rendered log lines."""

    def __init__(self) -> None:
        self._values: frozenset[str] = frozenset()
        self._lock = threading.Lock()

    def add(self, values: Iterable[str]) -> None:
        # Very short values would mask ordinary words; real secrets are longer than four characters.
        with self._lock:
            self._values = self._values | {v for v in values if len(v) > 4}

    def replace(self, values: Iterable[str]) -> None:
        with self._lock:
            self._values = frozenset(v for v in values if len(v) > 4)

    def redact(self, text: str) -> str:
        for value in sorted(self._values, key=len, reverse=True):
            if value in text:
                text = text.replace(value, MASK)
        return text

    def __call__(self, _logger: Any, _name: str, event: Any) -> str:
        """The last structlog processor: it receives the rendered line."""
        return self.redact(event if isinstance(event, str) else bytes(event).decode("utf-8", "replace"))


REDACTOR = Redactor()


def configure(level: str = "info", fmt: str | None = None, stream: TextIO | None = None) -> None:
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
        processors=[*shared, renderer, REDACTOR],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.WriteLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(_StdlibFormatter())
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
    def format(self, record: logging.LogRecord) -> str:
        return REDACTOR.redact(f"level={record.levelname.lower()} logger={record.name} {record.getMessage()}")
