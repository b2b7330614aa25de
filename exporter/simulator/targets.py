"""How to point the exporter at the simulator: one exporter target per platform, secrets in files.

The one table, `_RECIPES`, says for each platform which settings its exporter target takes from the
simulator's URL, credentials and jobs, and which credentials are secrets. Secrets never go in the
document: each is written to `<secrets_dir>/<target name>.<field>` (mode 0600, atomically) and named by
the target's `<field>_file` key, so writing them again after a rotation is all it takes to hand the
exporter the new ones. Adding a platform is one entry in `_RECIPES`.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from exporter.simulator.app import Simulator

SCRAPE_BUDGET_SECONDS = 5.0

_Jobs = Sequence[Mapping[str, str]]


@dataclass(frozen=True)
class _Recipe:
    """A platform's target settings from (url, credentials, jobs), and its secrets: target field -> credential."""

    settings: Callable[[str, Mapping[str, str], _Jobs], dict[str, Any]]
    secrets: Mapping[str, str]


def _informatica(url: str, credentials: Mapping[str, str], jobs: _Jobs) -> dict[str, Any]:
    return {"login_url": url, "username": credentials["username"], "dataflows": [job["id"] for job in jobs]}


def _dataarts(url: str, credentials: Mapping[str, str], jobs: _Jobs) -> dict[str, Any]:
    return {
        "endpoint": url,
        "project_id": credentials["project_id"],
        "auth": {
            "type": "token",
            "iam_url": credentials["iam_url"],
            "domain": credentials["domain"],
            "username": credentials["username"],
            "project_name": credentials["project_name"],
        },
        "jobs": [],
        "discovery": _discovery(),
    }


def _cloudstream(url: str, credentials: Mapping[str, str], jobs: _Jobs) -> dict[str, Any]:
    return {
        "endpoint": url,
        "project_id": credentials["project_id"],
        "auth": {"type": "aksk", "access_key_id": credentials["access_key_id"]},
        "jobs": [],
        "discovery": _discovery(),
        "batch_size": 4,
    }


def _siren(url: str, credentials: Mapping[str, str], jobs: _Jobs) -> dict[str, Any]:
    return {
        "base_url": url,
        "auth": "basic",
        "username": credentials["username"],
        "jobs": [job["id"] for job in jobs[:2]],
        "discovery": _discovery(),
        "search_lookback_seconds": 86400,
    }


def _discovery() -> dict[str, Any]:
    """A new one each time: one object shared by targets would come out of YAML as an anchor and aliases."""
    return {"enabled": True, "interval_seconds": 60}


_RECIPES: dict[str, _Recipe] = {
    "informatica": _Recipe(_informatica, {"password": "password"}),
    "dataarts": _Recipe(_dataarts, {"password": "password"}),
    "cloudstream": _Recipe(_cloudstream, {"secret_access_key": "secret_access_key"}),
    "siren": _Recipe(_siren, {"password": "password"}),
}


def simulated_target(
    platform: str,
    name: str,
    url: str,
    credentials: Mapping[str, str],
    jobs: Sequence[Mapping[str, str]],
    secrets_dir: Path,
) -> dict[str, Any]:
    """The exporter target `name` for the simulator's `platform`, its secrets (re)written under `secrets_dir`."""
    recipe = _RECIPES[platform]
    target: dict[str, Any] = {"name": name, "platform": platform, **recipe.settings(url, credentials, jobs)}
    for field, credential in recipe.secrets.items():
        path = secrets_dir.absolute() / f"{name}.{field}"
        write_private(path, credentials[credential])
        target[f"{field}_file"] = str(path)
    return target


def simulated_config(simulator: Simulator, secrets_dir: Path, *, prefix: str = "sim") -> dict[str, Any]:
    """The exporter's whole configuration for a running simulator: one target per platform it serves."""
    credentials = simulator.credentials
    targets = [
        simulated_target(
            platform,
            f"{prefix}-{platform}",
            simulator.url,
            credentials[platform],
            simulator.jobs(platform),
            secrets_dir,
        )
        for platform in simulator.platforms
    ]
    return {"scrape_budget_seconds": SCRAPE_BUDGET_SECONDS, "targets": targets}


def write_private(path: Path, text: str) -> None:
    """Write readable by the owner only, and atomically, so a reader never sees half a file or a wider mode."""
    descriptor, partial = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # created 0600
    try:
        with os.fdopen(descriptor, "w") as out:
            out.write(text)
        os.replace(partial, path)
    except BaseException:
        os.unlink(partial)
        raise
