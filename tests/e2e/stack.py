"""Pieces of the end-to-end stack: processes on loopback, a webhook receiver, bounded waits and HTTP helpers."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import requests

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def binary(*names: str) -> str:
    """The first of `names` on PATH; the stack fails (never skips) when a tool is missing."""
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    raise AssertionError(f"{' or '.join(names)} not found: apt-get install prometheus prometheus-alertmanager")


def wait_for(what: str, probe: Callable[[], T | None], timeout: float, interval: float = 0.25) -> T:
    """Call `probe` until it returns something other than None or False, at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            result = probe()
            if result is not None and result is not False:
                return result
        except (requests.RequestException, ValueError, KeyError) as exc:
            last_error = exc
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last error: {last_error})")
        time.sleep(interval)


@dataclass
class Process:
    """A started program with its output captured to a file, shown when the test fails."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""

    def check_alive(self) -> None:
        if self.popen.poll() is not None:
            raise AssertionError(f"{self.name} exited with {self.popen.returncode}:\n{self.output()}")

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=10)


@dataclass
class Processes:
    """Everything the stack started, stopped in reverse order whatever happens."""

    workdir: Path
    started: list[Process] = field(default_factory=list)

    def start(self, name: str, argv: Sequence[str], env: Mapping[str, str] | None = None) -> Process:
        log = self.workdir / f"{name}.log"
        with log.open("wb") as out:
            popen = subprocess.Popen(
                list(argv),
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                env={**os.environ, **(env or {})},
                start_new_session=True,
            )
        process = Process(name, popen, log)
        self.started.append(process)
        return process

    def stop_all(self) -> None:
        for process in reversed(self.started):
            process.stop()

    def report(self) -> str:
        return "\n".join(f"--- {p.name} (exit {p.popen.poll()}):\n{p.output()}" for p in self.started)


class Webhook:
    """Alertmanager's webhook receiver: records every notification, by path (one path per receiver)."""

    def __init__(self) -> None:
        self.notifications: list[tuple[str, dict[str, Any]]] = []
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                document = json.loads(self.rfile.read(length) or b"{}")
                with outer._lock:
                    outer.notifications.append((self.path, document))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def mark(self) -> int:
        with self._lock:
            return len(self.notifications)

    def alerts(self, since: int = 0) -> list[tuple[str, dict[str, Any]]]:
        """(receiver path, alert) for every alert of every notification received after `since`."""
        with self._lock:
            received = self.notifications[since:]
        return [(path, alert) for path, document in received for alert in document.get("alerts", [])]


class Prometheus:
    def __init__(self, url: str) -> None:
        self.url = url

    def query(self, expr: str) -> list[dict[str, Any]]:
        answer = requests.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=5)
        document = answer.json()
        if document.get("status") != "success":
            raise AssertionError(f"query failed: {expr}: {document}")
        result: list[dict[str, Any]] = document["data"]["result"]
        return result

    def alerts(self) -> list[dict[str, Any]]:
        answer = requests.get(f"{self.url}/api/v1/alerts", timeout=5)
        found: list[dict[str, Any]] = answer.json()["data"]["alerts"]
        return found


def labels_match(labels: Mapping[str, str], wanted: Mapping[str, str]) -> bool:
    return all(labels.get(name) == value for name, value in wanted.items())


@contextmanager
def running(workdir: Path) -> Iterator[tuple[Processes, Webhook]]:
    """The stack's processes and webhook: what they printed is shown when setting up or a test fails, and
    everything is stopped afterwards whatever happens."""
    processes = Processes(workdir)
    webhook = Webhook()
    webhook.start()
    try:
        yield processes, webhook
    except BaseException:
        print(processes.report())
        raise
    finally:
        processes.stop_all()
        webhook.stop()
