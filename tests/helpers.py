"""Shared test helpers: build the exporter from settings documents, scrape it, read the exposition."""

from __future__ import annotations

import io
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from exporter.cli import build
from exporter.collectors import target_models
from exporter.scrape import ExporterCollector
from exporter.server import ExporterApp
from exporter.settings import RootSettings, settings_model

MODEL = settings_model(target_models())


def make_settings(targets: list[dict[str, Any]], **top: Any) -> RootSettings:
    return MODEL(targets=targets, **top)


def make_app(settings: RootSettings) -> ExporterApp:
    registry = CollectorRegistry()
    app = ExporterApp(build(settings, registry), registry, "/metrics")
    app.ready.set()
    return app


def get(app: ExporterApp, path: str, query: str = "", headers: dict[str, str] | None = None) -> tuple[str, str]:
    """Call the WSGI app in-process: (status line, body text)."""
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "wsgi.input": io.BytesIO(),
    }
    environ.update(headers or {})
    seen: list[str] = []
    body = b"".join(app(environ, lambda status, _headers: seen.append(status)))
    return seen[0], body.decode()


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float | None:
    """The one sample of `name` whose labels include `labels`; None when there is none."""
    matches = [v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= ls]
    assert len(matches) <= 1, f"{len(matches)} samples of {name} match {labels}"
    return matches[0] if matches else None


def current_state(samples: Samples, name: str = "ingestion_job_state", **labels: str) -> str | None:
    states = [
        dict(ls)["state"] for (n, ls), v in samples.items() if n == name and v == 1.0 and set(labels.items()) <= ls
    ]
    assert len(states) <= 1, states
    return states[0] if states else None


def scrape(collector_or_app: ExporterApp | ExporterCollector) -> Samples:
    app = collector_or_app
    assert isinstance(app, ExporterApp)
    status, body = get(app, "/metrics")
    assert status.startswith("200"), status
    return parse(body)
