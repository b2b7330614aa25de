"""The README's metrics table lists exactly the families the exporter exports."""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client import CollectorRegistry

from exporter.collectors import platform_families
from exporter.metrics import NAMESPACE, all_families
from exporter.telemetry import Telemetry

README = Path(__file__).parent.parent / "README.md"


def readme_metrics() -> set[str]:
    text = README.read_text()
    table = text.split("<!-- metrics-table", 1)[1].split("\n\n", 1)[0]
    return set(re.findall(r"^\| `([a-z_]+)` \|", table, flags=re.MULTILINE))


def exported_metrics() -> set[str]:
    names = {family.full_name for family in all_families(platform_families())}
    registry = CollectorRegistry()
    Telemetry(registry)
    for family in registry.collect():
        names.add(family.name + "_total" if family.type == "counter" else family.name)
    return {name for name in names if name.startswith(NAMESPACE + "_")}


def test_readme_metrics_table_matches_code() -> None:
    documented, exported = readme_metrics(), exported_metrics()
    assert documented - exported == set(), "documented but not exported"
    assert exported - documented == set(), "exported but not documented"
