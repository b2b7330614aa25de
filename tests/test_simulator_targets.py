"""Pointing the exporter at the simulator: target documents and secret files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from exporter.simulator import Simulator, SimulatorOptions
from exporter.simulator.platforms import PLATFORMS
from exporter.simulator.targets import simulated_config, simulated_target


@pytest.fixture(scope="module")
def sim() -> Any:
    with Simulator(SimulatorOptions(jobs=3)) as running:
        yield running


def private(path: Path) -> str:
    assert path.stat().st_mode & 0o777 == 0o600, oct(path.stat().st_mode)
    return path.read_text()


def test_each_platform_target_has_its_settings_and_its_secrets_in_files(sim: Simulator, tmp_path: Path) -> None:
    url, credentials, jobs = sim.url, sim.credentials, {name: sim.jobs(name) for name in PLATFORMS}
    targets = {
        name: simulated_target(name, f"t-{name}", url, credentials[name], jobs[name], tmp_path) for name in PLATFORMS
    }
    infa, siren, dataarts, cloudstream = (credentials[name] for name in PLATFORMS)
    discovery = {"enabled": True, "interval_seconds": 60}
    assert targets["informatica"] == {
        "name": "t-informatica",
        "platform": "informatica",
        "login_url": url,
        "username": infa["username"],
        "dataflows": [job["id"] for job in jobs["informatica"]],
        "password_file": str(tmp_path / "t-informatica.password"),
    }
    assert targets["siren"] == {
        "name": "t-siren",
        "platform": "siren",
        "base_url": url,
        "auth": "basic",
        "username": siren["username"],
        "jobs": [job["id"] for job in jobs["siren"][:2]],
        "discovery": discovery,
        "search_lookback_seconds": 86400,
        "password_file": str(tmp_path / "t-siren.password"),
    }
    assert targets["dataarts"] == {
        "name": "t-dataarts",
        "platform": "dataarts",
        "endpoint": url,
        "project_id": dataarts["project_id"],
        "auth": {
            "type": "token",
            "iam_url": f"{url}/iam/dataarts",
            "domain": dataarts["domain"],
            "username": dataarts["username"],
            "project_name": dataarts["project_name"],
        },
        "jobs": [],
        "discovery": discovery,
        "password_file": str(tmp_path / "t-dataarts.password"),
    }
    assert targets["cloudstream"] == {
        "name": "t-cloudstream",
        "platform": "cloudstream",
        "endpoint": url,
        "project_id": cloudstream["project_id"],
        "auth": {"type": "aksk", "access_key_id": cloudstream["access_key_id"]},
        "jobs": [],
        "discovery": discovery,
        "batch_size": 4,
        "secret_access_key_file": str(tmp_path / "t-cloudstream.secret_access_key"),
    }
    assert {path.name: private(path) for path in tmp_path.iterdir()} == {
        "t-informatica.password": infa["password"],
        "t-siren.password": siren["password"],
        "t-dataarts.password": dataarts["password"],
        "t-cloudstream.secret_access_key": cloudstream["secret_access_key"],
    }


def test_a_rotation_reaches_the_same_secret_file(sim: Simulator, tmp_path: Path) -> None:
    first = simulated_target("siren", "s", sim.url, sim.credentials["siren"], sim.jobs("siren"), tmp_path)
    rotated = sim.rotate_credentials("siren")
    again = simulated_target("siren", "s", sim.url, rotated, sim.jobs("siren"), tmp_path)
    assert again == first
    assert private(Path(first["password_file"])) == rotated["password"]
    assert [path.name for path in tmp_path.iterdir()] == ["s.password"]  # no partial files left behind


def test_simulated_config_has_one_target_per_served_platform(tmp_path: Path) -> None:
    with Simulator(SimulatorOptions(jobs=1, platforms=["siren", "dataarts"])) as sim:
        config = simulated_config(sim, tmp_path, prefix="x")
    assert config["scrape_budget_seconds"] == 5.0
    assert [(target["name"], target["platform"]) for target in config["targets"]] == [
        ("x-siren", "siren"),
        ("x-dataarts", "dataarts"),
    ]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["x-dataarts.password", "x-siren.password"]
