"""`--demo`: the simulator on loopback and one target per platform pointed at it.

This is the only module that knows both sides; the simulator and the collectors never import each other.
"""

from __future__ import annotations

import os
from typing import Any

from exporter.collectors import COLLECTORS
from exporter.settings import RootSettings, secret_env_name
from exporter.simulator import Simulator, SimulatorOptions
from exporter.simulator.platforms import PLATFORMS

DEMO_JOBS = 6
DEMO_TRANSITION_SECONDS = 15.0


def start_demo(model: type[RootSettings]) -> tuple[Simulator, RootSettings]:
    """Start the simulator and return it with settings for every platform it serves.

    Secrets travel the way they do in production, through the environment, never inline.
    """
    platforms = [platform for platform in COLLECTORS if platform in PLATFORMS]
    simulator = Simulator(
        SimulatorOptions(
            host="127.0.0.1",
            port=0,
            jobs=DEMO_JOBS,
            transition_seconds=DEMO_TRANSITION_SECONDS,
            platforms=platforms,
        )
    )
    simulator.start()
    targets: list[dict[str, Any]] = []
    for platform in platforms:
        collector = COLLECTORS[platform]
        name = f"demo-{platform}"
        target, secrets = collector.demo_target(
            name, simulator.url, simulator.credentials[platform], simulator.jobs(platform)
        )
        for field, value in secrets.items():
            os.environ[secret_env_name(name, field)] = value
        targets.append(target)
    return simulator, model.model_validate({"targets": targets, "scrape_budget_seconds": 5.0})
