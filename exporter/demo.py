"""`--demo`: the simulator on loopback, and a configuration file pointing one target per platform at it.

This is the only module that knows both sides; the simulator and the collectors never import each other.
The configuration and its secret files are written to a private temporary directory, the way a deployment
mounts them, so the demo exercises the same loading (and reloading) as production.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import yaml

from exporter.simulator import Simulator, SimulatorOptions
from exporter.simulator.platforms import PLATFORMS
from exporter.simulator.targets import simulated_config

DEMO_JOBS = 6
DEMO_TRANSITION_SECONDS = 15.0


class Demo:
    """A running simulator and the configuration file that watches it."""

    def __init__(self, simulator: Simulator, workdir: Path) -> None:
        self.simulator = simulator
        self.workdir = workdir
        self.config = workdir / "demo.yml"

    @classmethod
    def start(cls, platforms: Sequence[str]) -> Demo:
        """Serve the given platforms (those the simulator knows) and write their configuration."""
        served = [platform for platform in platforms if platform in PLATFORMS]
        simulator = Simulator(
            SimulatorOptions(
                host="127.0.0.1", port=0, jobs=DEMO_JOBS, transition_seconds=DEMO_TRANSITION_SECONDS, platforms=served
            )
        )
        simulator.start()
        demo = cls(simulator, Path(tempfile.mkdtemp(prefix="ingestion-exporter-demo-")))
        document = simulated_config(simulator, demo.workdir, prefix="demo")
        demo.config.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
        return demo

    def stop(self) -> None:
        self.simulator.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)
