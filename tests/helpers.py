"""Shared test helpers: build the exporter from settings documents, scrape it, read the exposition."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from benchmarks.inprocess import get as get  # the soaks call the app the same way
from exporter.app import Exporter, root_model
from exporter.collectors import COLLECTORS
from exporter.logs import Redactor
from exporter.server import ExporterApp
from exporter.settings import RootSettings
from exporter.simulator import Simulator
from exporter.simulator.platforms import PLATFORMS
from exporter.simulator.targets import simulated_target

MODEL = root_model()
SIMULATED = tuple(platform for platform in COLLECTORS if platform in PLATFORMS)
"""Every platform the exporter collects and the simulator serves."""
REPOSITORY = Path(__file__).resolve().parents[1]
SHARED = REPOSITORY.parent / "shared"
"""The project's shared documents beside the repository (the vendor notes and pages), as CI has them."""


def run_benchmark(module: str, *arguments: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """`python -m benchmarks.<module> ARGUMENTS` from the repository root, its output captured as text."""
    command = [sys.executable, "-m", f"benchmarks.{module}", *arguments]
    return subprocess.run(command, cwd=REPOSITORY, capture_output=True, text=True, timeout=timeout, check=False)


def shared_text(relative: str) -> str:
    """A shared document; a clear failure, never a skip, when the checkout lacks ../shared."""
    path = SHARED / relative
    assert path.is_file(), f"{path} is missing: the tests read the vendor documents from ../shared beside the clone"
    return path.read_text(encoding="utf-8")


def simulated(sim: Simulator, platform: str, name: str, secrets_dir: Path) -> dict[str, Any]:
    """The target `--demo` configures for one platform of `sim`, named `name`, its secrets as files in `secrets_dir`."""
    return simulated_target(platform, name, sim.url, sim.credentials[platform], sim.jobs(platform), secrets_dir)


def make_settings(targets: list[dict[str, Any]], **top: Any) -> RootSettings:
    return MODEL(targets=targets, **top)


def make_app(settings: RootSettings, redactor: Redactor | None = None) -> ExporterApp:
    """The exporter's HTTP app for these settings, ready; its targets' secrets go to `redactor` when given."""
    app = Exporter(settings, (redactor or Redactor()).sink).app
    app.ready.set()
    return app


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


def scrape(app: ExporterApp) -> Samples:
    status, body = get(app, "/metrics")
    assert status.startswith("200"), status
    return parse(body)
