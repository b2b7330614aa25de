"""The exporter as a process: demo, exposition lint, clean stops (also as PID 1), secrets in no output."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest
import requests
import yaml

from exporter.scrapegate import SHUTDOWN_GRACE_SECONDS
from exporter.simulator import Simulator, SimulatorOptions
from exporter.simulator.targets import simulated_config
from tests.helpers import parse, value

pytestmark = pytest.mark.timeout(60)


class Running:
    """A started exporter process and the address it reported in its `listening` log line."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None, prefix: list[str] | None = None):
        self.log_lines: list[str] = []
        self.process = subprocess.Popen(
            [*(prefix or []), sys.executable, "-m", "exporter", "--web.listen-address", "127.0.0.1:0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, **(env or {})},
        )
        self.url = self._wait_for_address()

    def _wait_for_address(self) -> str:
        stream: IO[str] | None = self.process.stdout
        assert stream is not None
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            line = stream.readline()
            if not line:
                break
            self.log_lines.append(line)
            if '"listening"' in line:
                return "http://" + json.loads(line)["address"]
        raise AssertionError("exporter did not start:\n" + "".join(self.log_lines))

    def stop(self, sig: int = signal.SIGTERM) -> float:
        """Send the signal; return how long the process took to exit."""
        started = time.monotonic()
        self.process.send_signal(sig)
        self.process.wait(timeout=10)
        elapsed = time.monotonic() - started
        assert self.process.stdout is not None
        self.log_lines.extend(self.process.stdout.read().splitlines(keepends=True))
        return elapsed


@pytest.fixture
def demo() -> Iterator[Running]:
    running = Running(["--demo"])
    yield running
    if running.process.poll() is None:
        running.stop()


def test_demo_serves_informatica_jobs_within_five_seconds(demo: Running) -> None:
    samples = parse(requests.get(demo.url + "/metrics", timeout=5).text)
    flows = {
        dict(labels)["job_id"]
        for (name, labels) in samples
        if name == "ingestion_job_state" and dict(labels)["platform"] == "informatica"
    }
    assert len(flows) >= 3
    current = {
        dict(labels)["state"]
        for (name, labels), v in samples.items()
        if name == "ingestion_job_state" and v == 1 and dict(labels)["platform"] == "informatica"
    }
    assert len(current) >= 3, current


def test_promtool_finds_nothing_in_the_exposition(demo: Running) -> None:
    """promtool comes from Debian's `prometheus` package, which .ci/run installs."""
    body = requests.get(demo.url + "/metrics", timeout=5).text
    lint = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True, text=True, check=False)
    assert lint.returncode == 0 and lint.stdout == "" and lint.stderr == "", lint.stdout + lint.stderr


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signals_stop_within_two_seconds(demo: Running, sig: int) -> None:
    requests.get(demo.url + "/metrics", timeout=5)
    assert demo.stop(sig) < 2.0
    assert demo.process.returncode == 0


def test_sigterm_as_pid_1() -> None:
    probe = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "true"], capture_output=True, check=False)
    if probe.returncode != 0:
        pytest.fail("cannot create a PID namespace here: " + probe.stderr.decode())
    running = Running(["--demo", "--log.level", "debug"], prefix=["unshare", "--pid", "--fork", "--mount-proc"])
    requests.get(running.url + "/metrics", timeout=5)
    pid_one = subprocess.run(
        ["ps", "-o", "pid=,args=", "--ppid", str(running.process.pid)], capture_output=True, text=True, check=False
    ).stdout
    assert "exporter" in pid_one
    # SIGTERM to unshare is not forwarded; signal the namespace's PID 1 (the exporter) directly.
    child = int(pid_one.split()[0])
    started = time.monotonic()
    os.kill(child, signal.SIGTERM)
    running.process.wait(timeout=10)
    assert time.monotonic() - started < 2.0
    assert running.process.returncode == 0


def test_no_secret_in_logs_metrics_landing_page_or_check_config(tmp_path: Path) -> None:
    with Simulator(SimulatorOptions(host="127.0.0.1", port=0, jobs=3, platforms=["informatica"])) as sim:
        password = sim.credentials["informatica"]["password"]
        secret_file = tmp_path / "password"
        secret_file.write_text(password)
        wrong = "Wr0ng-but-secret-too"
        config = tmp_path / "config.yml"
        config.write_text(
            yaml.safe_dump(
                {
                    "targets": [
                        {
                            "name": "good",
                            "platform": "informatica",
                            "login_url": sim.url,
                            "username": "monitor",
                            "password_file": str(secret_file),
                            "dataflows": [job["id"] for job in sim.jobs("informatica")],
                        },
                        {
                            "name": "bad",
                            "platform": "informatica",
                            "login_url": sim.url,
                            "username": "monitor",
                            "dataflows": ["a"],
                        },
                    ]
                }
            )
        )
        env = {"INGESTION_EXPORTER_BAD_PASSWORD": wrong}
        check = subprocess.run(
            [sys.executable, "-m", "exporter", "--check-config", "--config.file", str(config)],
            capture_output=True,
            text=True,
            env={**os.environ, **env},
            check=False,
            timeout=30,
        )
        assert check.returncode == 0, check.stderr
        running = Running(["--config.file", str(config), "--log.level", "debug"], env=env)
        outputs = [check.stdout, check.stderr]
        for path in ("/metrics", "/", "/probe?target=good", "/probe?target=bad"):
            outputs.append(requests.get(running.url + path, timeout=10).text)
        sim.faults.add({"platform": "informatica", "endpoint": "*", "kind": "session_expired", "count": 1})
        outputs.append(requests.get(running.url + "/metrics", timeout=10).text)
        running.stop()
    outputs.extend(running.log_lines)
    everything = "".join(outputs)
    assert "upstream call failed" in everything and "login refused" in everything  # the logs did have context
    assert password not in everything
    assert wrong not in everything


def test_sigterm_during_a_hung_upstream_call(tmp_path: Path) -> None:
    """A collection stuck on an upstream that never answers does not hold the process past SIGTERM: the scrape
    in flight is answered (the target not collected) once the shutdown grace is over, then the process exits."""
    import threading

    with Simulator(SimulatorOptions(host="127.0.0.1", port=0, jobs=2, platforms=["informatica"])) as sim:
        sim.faults.add({"platform": "informatica", "endpoint": "status", "kind": "hang", "seconds": 30})
        config = tmp_path / "config.yml"
        config.write_text(
            yaml.safe_dump(
                {
                    "scrape_budget_seconds": 25,
                    "targets": [
                        {
                            "name": "hung",
                            "platform": "informatica",
                            "login_url": sim.url,
                            "username": "monitor",
                            "timeouts": {"read_seconds": 30},
                            "dataflows": [job["id"] for job in sim.jobs("informatica")],
                        }
                    ],
                }
            )
        )
        running = Running(
            ["--config.file", str(config)],
            env={"INGESTION_EXPORTER_HUNG_PASSWORD": sim.credentials["informatica"]["password"]},
        )

        answers: list[requests.Response] = []

        def scrape() -> None:
            answers.append(requests.get(running.url + "/metrics", timeout=30))

        scraper = threading.Thread(target=scrape, daemon=True)
        scraper.start()
        deadline = time.monotonic() + 5
        while sim.stats().get(("informatica", "status", "GET"), 0) == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sim.stats().get(("informatica", "status", "GET"), 0) > 0
        assert running.stop() < SHUTDOWN_GRACE_SECONDS + 1.0
        scraper.join(timeout=5)
        assert answers and answers[0].status_code == 200
        assert (
            parse(answers[0].text)[
                ("ingestion_scrape_success", frozenset({("platform", "informatica"), ("target", "hung")}))
            ]
            == 0
        )
        sim.faults.clear()


def test_scrapes_of_a_thousand_jobs_do_not_make_the_collector_walk_the_whole_heap(tmp_path: Path) -> None:
    """Each scrape's samples live until the next one; with Python's default threshold their number made the cyclic
    collector walk the whole heap about twice a scrape, a seventh of the CPU at 2,000 jobs."""

    def full_collections(text: str) -> float:
        found = value(parse(text), "python_gc_collections_total", generation="2")
        assert found is not None, "the exporter shows how often the collector ran"
        return found

    with Simulator(SimulatorOptions(host="127.0.0.1", port=0, jobs=250)) as sim:
        config = tmp_path / "config.yml"
        config.write_text(yaml.safe_dump(simulated_config(sim, tmp_path)))
        running = Running(["--config.file", str(config)])
        try:
            texts = [requests.get(running.url + "/metrics", timeout=30).text for _ in range(5)]
        finally:
            running.stop()
    assert texts[-1].count('ingestion_job_state{job_id="') >= 8 * 1000
    assert full_collections(texts[-1]) - full_collections(texts[0]) <= 1, "at most one in four scrapes"
