"""Fixtures every test module shares, and the process-wide settings the entry point makes in production."""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from prometheus_client import disable_created_metrics

from exporter import logs

disable_created_metrics()  # type: ignore[no-untyped-call]  # as exporter.cli.main does before anything registers


@dataclass
class Logged:
    """The exporter's log, as JSON lines in memory, and the redactor its lines went through."""

    redactor: logs.Redactor = field(default_factory=logs.Redactor)
    stream: io.StringIO = field(default_factory=io.StringIO)

    def text(self) -> str:
        return self.stream.getvalue()


@pytest.fixture
def logged() -> Iterator[Logged]:
    """Logging into memory at debug level for one test, then back to stderr."""
    captured = Logged()
    logs.configure(captured.redactor, "debug", "json", captured.stream)
    yield captured
    logs.configure(logs.Redactor(), "info", "json")
