"""Fixtures every test module shares, and the process-wide settings the entry point makes in production."""

from __future__ import annotations

from prometheus_client import disable_created_metrics

disable_created_metrics()  # type: ignore[no-untyped-call]  # as exporter.cli.main does before anything registers
