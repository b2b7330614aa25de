"""The hot-path benchmark stays runnable: both sides measured, each on the exporter package it names."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_a_small_hotpaths_run_prints_before_and_after_for_every_figure() -> None:
    options = ["--jobs", "5", "--latency-ms", "0", "--rounds", "1", "--scrapes", "1", "--baseline", "HEAD"]
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.hotpaths", *options],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = {line.split()[0]: line for line in done.stdout.splitlines() if line.strip()}
    for figure in ("scrape_cpu", "peak_rss", "build", "render", "request", "session_request", "send"):
        assert figure in lines, done.stdout
        assert " x" in lines[figure]  # the after / before ratio
    assert "24,000 samples" in lines["build"]
    assert "load average" in done.stdout
