"""The hot-path benchmark stays runnable: both sides measured, each on the exporter package it names."""

from __future__ import annotations

from tests.helpers import run_benchmark


def test_a_small_hotpaths_run_prints_before_and_after_for_every_figure() -> None:
    options = ["--jobs", "5", "--latency-ms", "0", "--rounds", "1", "--scrapes", "1", "--baseline", "HEAD"]
    done = run_benchmark("hotpaths", *options, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = {line.split()[0]: line for line in done.stdout.splitlines() if line.strip()}
    for figure in ("scrape_cpu", "peak_rss", "build", "render", "request", "session_request", "send"):
        assert figure in lines, done.stdout
        assert " x" in lines[figure]  # the after / before ratio
    assert "24,000 samples" in lines["build"]
    assert "load average" in done.stdout
