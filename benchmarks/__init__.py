"""Scale and efficiency benchmarks of the exporter against the simulator; `python -m benchmarks.run`."""
