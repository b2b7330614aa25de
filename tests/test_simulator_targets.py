"""Pointing the exporter at the simulator: target documents, secret files, and `--config-out`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from exporter.simulator import Simulator, SimulatorOptions
from exporter.simulator.__main__ import main
from exporter.simulator.platforms import PLATFORMS
from exporter.simulator.process import announced
from exporter.simulator.process import command as simulator_command
from exporter.simulator.targets import simulated_config, simulated_target
from tests.vendors import iam_body

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
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

    def named(platform: str, secret: str = "password") -> dict[str, Any]:
        path = tmp_path / f"t-{platform}.{secret}"
        return {"name": f"t-{platform}", "platform": platform, f"{secret}_file": str(path)}

    huawei = {"endpoint": url, "jobs": [], "discovery": discovery}
    token = {"type": "token", "iam_url": f"{url}/iam/dataarts", "domain": dataarts["domain"]}
    token.update(username=dataarts["username"], project_name=dataarts["project_name"])
    expected = {
        "informatica": {
            **named("informatica"),
            "login_url": url,
            "username": infa["username"],
            "dataflows": [job["id"] for job in jobs["informatica"]],
        },
        "siren": {
            **named("siren"),
            "base_url": url,
            "auth": "basic",
            "username": siren["username"],
            "jobs": [job["id"] for job in jobs["siren"][:2]],
            "discovery": discovery,
            "search_lookback_seconds": 86400,
        },
        "dataarts": {**named("dataarts"), **huawei, "project_id": dataarts["project_id"], "auth": token},
        "cloudstream": {
            **named("cloudstream", "secret_access_key"),
            **huawei,
            "project_id": cloudstream["project_id"],
            "auth": {"type": "aksk", "access_key_id": cloudstream["access_key_id"]},
            "batch_size": 4,
        },
    }
    assert targets == expected
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


def test_standalone_command_writes_an_exporter_config_before_it_prints_its_line(tmp_path: Path) -> None:
    config_path = tmp_path / "exporter.yaml"
    command = simulator_command(
        jobs=2, churn_seconds=60, job_log_seconds=600, token_seconds=300, config_out=config_path
    )
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=environment) as process:
        try:
            assert process.stdout is not None
            fields = announced(process.stdout.readline())
            assert fields["config"] == str(config_path) and fields["platforms"] == ",".join(PLATFORMS)
            config = yaml.safe_load(private(config_path))
            targets = {target["platform"]: target for target in config["targets"]}
            assert list(targets) == list(PLATFORMS)
            assert all(target["name"] == f"sim-{platform}" for platform, target in targets.items())
            files = [
                Path(value) for target in targets.values() for key, value in target.items() if key.endswith("_file")
            ]
            assert len(files) == 4 and all(path.parent == tmp_path and private(path) for path in files)
            check = [sys.executable, "-m", "exporter", "--check-config", "--config.file", str(config_path)]
            checked = subprocess.run(check, capture_output=True, text=True, env=environment, timeout=30)
            assert checked.returncode == 0, checked.stderr
            url, jobs = fields["url"], requests.get(f"{fields['url']}/_sim/jobs", timeout=5).json()
            requests.post(f"{url}/_sim/clock", json={"advance": 60}, timeout=5)
            churned = requests.get(f"{url}/_sim/jobs", timeout=5).json()
            assert all(churned[name][0] == jobs[name][1] for name in PLATFORMS)  # --churn-seconds reached it
            assert token_lifetime(targets["dataarts"]) == pytest.approx(300, abs=0.01)  # and so did --token-seconds
        finally:
            process.send_signal(signal.SIGTERM)
            assert process.wait(5) == 0


def token_lifetime(target: dict[str, Any]) -> float:
    """Seconds from issue to expiry of an IAM token got with the target's settings and secret file."""
    auth = target["auth"]
    password = Path(target["password_file"]).read_text()
    body = iam_body(auth["domain"], auth["username"], password, auth["project_name"])
    token = requests.post(f"{auth['iam_url']}/v3/auth/tokens", json=body, timeout=5).json()["token"]
    issued, expires = (datetime.strptime(token[key], "%Y-%m-%dT%H:%M:%S.%fZ") for key in ("issued_at", "expires_at"))
    return (expires - issued).total_seconds()


def test_standalone_command_refuses_churn_that_siren_could_not_bound(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--listen", "127.0.0.1:0", "--churn-seconds", "60"])
    assert exited.value.code == 2 and "job_log_seconds" in capsys.readouterr().err
