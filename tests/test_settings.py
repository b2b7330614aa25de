"""Settings: YAML plus environment, secrets from files or environment only, errors that name the field."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from exporter.settings import ConfigError, load_settings, masked
from tests.helpers import MODEL

SECRET = "s3cret-value-for-tests"


def write(tmp_path: Path, document: object) -> Path:
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump(document))
    return path


def informatica(**overrides: object) -> dict[str, object]:
    document: dict[str, object] = {
        "name": "infa-prod",
        "platform": "informatica",
        "login_url": "https://dm-us.informaticacloud.com",
        "username": "monitor",
        "dataflows": ["1948938e-3923-4602-aba8-f122e3d66faf"],
    }
    document.update(overrides)
    return document


def errors_of(tmp_path: Path, document: object) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_settings(MODEL, write(tmp_path, document))
    return caught.value.lines


def test_secret_from_file_and_masked_everywhere(tmp_path: Path) -> None:
    secret_file = tmp_path / "password"
    secret_file.write_text(SECRET + "\n")
    settings = load_settings(MODEL, write(tmp_path, {"targets": [informatica(password_file=str(secret_file))]}))
    target = settings.all_targets()[0]
    assert target.secret("password") is not None
    assert target.secret("password").get_secret_value() == SECRET  # type: ignore[union-attr]
    assert SECRET not in repr(settings) and SECRET not in str(masked(settings))
    assert masked(settings)["targets"][0]["password"] == "**********"


def test_secret_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INGESTION_EXPORTER_INFA_PROD_PASSWORD", SECRET)
    settings = load_settings(MODEL, write(tmp_path, {"targets": [informatica()]}))
    assert settings.all_targets()[0].secret_items() == [("password", SECRET)]


def test_environment_overrides_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INGESTION_EXPORTER_INFA_PROD_PASSWORD", SECRET)
    monkeypatch.setenv("INGESTION_EXPORTER_SCRAPE_BUDGET_SECONDS", "3.5")
    settings = load_settings(MODEL, write(tmp_path, {"scrape_budget_seconds": 7, "targets": [informatica()]}))
    assert settings.scrape_budget_seconds == 3.5


def test_environment_secret_wins_over_a_missing_secret_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The README example names a password_file; the documented variable is enough while that file is absent."""
    monkeypatch.setenv("INGESTION_EXPORTER_INFA_PROD_PASSWORD", SECRET)
    missing = tmp_path / "no-such-file"
    settings = load_settings(MODEL, write(tmp_path, {"targets": [informatica(password_file=str(missing))]}))
    assert settings.all_targets()[0].secret_items() == [("password", SECRET)]
    monkeypatch.delenv("INGESTION_EXPORTER_INFA_PROD_PASSWORD")
    assert errors_of(tmp_path, {"targets": [informatica(password_file=str(missing))]}) == [
        f"targets[0]: password_file: cannot read {missing}: No such file or directory"
    ]


def test_error_paths_are_the_same_for_every_platform_and_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    siren = {"name": "es", "platform": "siren", "base_url": "https://es.example.com", "auth": "none"}
    expected = ["targets[0]: Value error, jobs: list at least one job id, or enable discovery"]
    assert errors_of(tmp_path, {"targets": [siren]}) == expected
    assert errors_of(tmp_path, {"targets": [informatica(dataflows=[], password_file=None)]})[0].startswith(
        "targets[0]: "
    )
    monkeypatch.setenv("INGESTION_EXPORTER_TARGETS", json.dumps([siren]))
    assert errors_of(tmp_path, {}) == expected
    monkeypatch.setenv("INGESTION_EXPORTER_TARGETS", json.dumps([{**siren, "jobs": ["a"], "job_typ": "x"}]))
    assert errors_of(tmp_path, {}) == ["targets[0].job_typ: unknown key; did you mean job_type?"]


def test_inline_secret_refused(tmp_path: Path) -> None:
    lines = errors_of(tmp_path, {"targets": [informatica(password=SECRET)]})
    assert lines == [
        "targets[0]: password: secrets are not accepted inline; use password_file or the environment "
        "variable INGESTION_EXPORTER_INFA_PROD_PASSWORD"
    ]
    assert SECRET not in "".join(lines)


def test_missing_secret_names_both_sources(tmp_path: Path) -> None:
    assert errors_of(tmp_path, {"targets": [informatica()]}) == [
        "targets[0]: password: required; set password_file or the environment variable "
        "INGESTION_EXPORTER_INFA_PROD_PASSWORD"
    ]


def test_unreadable_secret_file(tmp_path: Path) -> None:
    lines = errors_of(tmp_path, {"targets": [informatica(password_file=str(tmp_path / "absent"))]})
    assert lines == [f"targets[0]: password_file: cannot read {tmp_path / 'absent'}: No such file or directory"]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            {"login_url": "ftp://host"},
            "targets[0].login_url: Value error, must be an http:// or https:// URL with a host",
        ),
        ({"username": None}, "targets[0].username: Input should be a valid string"),
        ({"proxy_url": "http://user:Pr0xyPass@proxy:3128"}, "targets[0].proxy_url: Value error, credentials do not go"),
        ({"max_concurrency": 0}, "targets[0].max_concurrency: Input should be greater than or equal to 1"),
        ({"timeouts": {"read_seconds": "soon"}}, "targets[0].timeouts.read_seconds: Input should be a valid number"),
        ({"tls": {"ca_file": "/no/such/ca.pem"}}, "targets[0].tls: ca_file: no such file: /no/such/ca.pem"),
        ({"colour": "blue"}, "targets[0].colour: unknown key"),
        ({"dataflows": []}, "targets[0]: Value error, dataflows: list at least one dataflow id, or enable discovery"),
        ({"name": "has space"}, "targets[0].name: String should match pattern"),
    ],
)
def test_field_errors_name_the_field(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: dict[str, object], expected: str
) -> None:
    monkeypatch.setenv("INGESTION_EXPORTER_INFA_PROD_PASSWORD", SECRET)
    lines = errors_of(tmp_path, {"targets": [informatica(**change)]})
    assert any(line.startswith(expected) for line in lines), lines


def test_duplicate_target_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INGESTION_EXPORTER_INFA_PROD_PASSWORD", SECRET)
    lines = errors_of(tmp_path, {"targets": [informatica(), informatica()]})
    assert lines == ["targets: duplicate target names ['infa-prod']"]


def test_not_yaml_and_not_mapping(tmp_path: Path) -> None:
    path = tmp_path / "config.yml"
    path.write_text("targets: [unclosed\n")
    with pytest.raises(ConfigError, match="is not valid YAML"):
        load_settings(MODEL, path)
    path.write_text("- a list\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_settings(MODEL, path)


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "exporter", *args], capture_output=True, text=True, timeout=30, env=env, check=False
    )


def test_cli_bad_config_exits_2_without_traceback(tmp_path: Path) -> None:
    result = run_cli("--config.file", str(write(tmp_path, {"targets": [informatica(login_url="nope")]})))
    assert result.returncode == 2
    assert "targets[0].login_url" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_cli_check_config_masks_secrets(tmp_path: Path) -> None:
    secret_file = tmp_path / "password"
    secret_file.write_text(SECRET)
    config = write(tmp_path, {"targets": [informatica(password_file=str(secret_file))]})
    result = run_cli("--check-config", "--config.file", str(config))
    assert result.returncode == 0, result.stderr
    assert SECRET not in result.stdout + result.stderr
    printed = yaml.safe_load(result.stdout)
    assert printed["targets"][0]["password"] == "**********"
    assert printed["targets"][0]["password_file"] == str(secret_file)
    assert printed["scrape_budget_seconds"] == 8.0
