"""The README documents exactly what the code does: its metrics table and its state mapping table."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry

from exporter.collectors import COLLECTORS, platform_families
from exporter.metrics import NAMESPACE, all_families, snake_case
from exporter.settings import ConfigError, load_settings, secret_env_name
from exporter.telemetry import Telemetry
from tests.helpers import MODEL

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


def readme_state_rows() -> set[tuple[str, str, str]]:
    table = README.read_text().split("<!-- state-table -->", 1)[1].split("\n\n", 1)[0]
    rows: set[tuple[str, str, str]] = set()
    for platform, values, state in re.findall(r"^\| (\w+) \| (.+?) \| `(\w+)` \|$", table, flags=re.MULTILINE):
        for vendor in re.findall(r"`([^`]+)`", values):
            rows.add((platform, snake_case(vendor), state))
    return rows


def test_readme_state_table_documents_every_job_state_mapping() -> None:
    documented = readme_state_rows()
    for platform, collector in COLLECTORS.items():
        mapping = getattr(importlib.import_module(collector.__module__), "STATE_MAP")
        missing = {(platform, vendor, state) for vendor, state in mapping.items()} - documented
        assert not missing, f"{platform}: mappings missing from the README state table: {sorted(missing)}"


def readme_yaml_blocks() -> list[str]:
    return re.findall(r"```yaml\n(.*?)```", README.read_text(), flags=re.DOTALL)


def test_configuration_examples_validate_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The main example with its password from the environment, as the README says; each platform's example as the
    one target of a file, its secrets from the environment too. Only files the examples name on the reader's own
    machine (CA bundles) may be missing."""
    blocks = readme_yaml_blocks()
    main = next(block for block in blocks if block.startswith("scrape_budget_seconds"))
    fragments = [block for block in blocks if block.startswith("  - name:")]
    assert len(fragments) == 3, "the DataArts, Cloud Stream and Siren examples"
    for index, text in enumerate([main, *("targets:\n" + fragment for fragment in fragments)]):
        document = yaml.safe_load(text)
        for target in document["targets"]:
            model = COLLECTORS[target["platform"]].settings_model
            for field in model.secret_fields:
                monkeypatch.setenv(secret_env_name(target["name"], field), "secret-from-the-environment")
        path = tmp_path / f"example-{index}.yml"
        path.write_text(text)
        try:
            settings = load_settings(MODEL, path)
        except ConfigError as exc:
            assert all(": no such file:" in line and "tls" in line for line in exc.lines), exc.lines
            assert index > 0, "the main example must validate as written"
        else:
            assert [t.name for t in settings.all_targets()] == [t["name"] for t in document["targets"]]
