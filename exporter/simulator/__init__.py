"""Fake vendor APIs on loopback for --demo, tests, benchmarks and the end-to-end stack.

It is the vendors' side, written independently of the exporter: nothing here imports the
exporter's clients, models or collectors, so a test over real HTTP checks something.
"""

from exporter.simulator.app import Simulator, SimulatorOptions
from exporter.simulator.faults import FaultRule, FaultTable

__all__ = ["FaultRule", "FaultTable", "Simulator", "SimulatorOptions"]
