"""CPU floors: the exporter's own requests of one scrape replayed by bare HTTP clients, each in a process of its own.

The benchmark records the requests of a steady-state scrape once (the exporter's collectors, in its own process),
then starts one process per client. Each replays them on command, with the exporter's concurrency per target and
JSON-decoding every answer, between the exporter's scrapes (A/B/A/B), so a floor and the exporter are measured
at the same moments of a shared machine's load. Beside the two requests floors (the exporter's client), the
urllib3 and aiohttp replays keep the distance to what Python's HTTP stacks can do in sight.

    python -m benchmarks.floors CLIENT CALLS_FILE CONCURRENCY    # reads `replay` lines, answers each with JSON
"""

from __future__ import annotations

import asyncio
import base64
import json
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import requests
import urllib3
from requests.adapters import HTTPAdapter

from exporter.exposition import Exposition, negotiate
from exporter.metrics import Output

Call = tuple[str, str, dict[str, str], bytes | None]  # method, url, headers, body
Replay = Callable[[], list[int]]  # one scrape's calls replayed: their status codes
Client = tuple[Replay, Callable[[], None]]  # the replay and what closes its sessions
REFUSED = (401, 403)  # credentials no longer taken: the replay would not read what the exporter reads
ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 30.0
LABELS = {
    "session_request": "requests Session.request",
    "send_prepared": "requests send(prepared)",
    "urllib3": "urllib3 PoolManager + threads",
    "aiohttp": "aiohttp",
}


# --- recording, in the benchmark's process -----------------------------------------------------------------


def record(config: dict[str, Any]) -> tuple[list[list[Call]], tuple[Output, ...]]:
    """The calls of one steady-state scrape of `config`, per target, and its samples.

    The exporter's collectors run here twice: the first collection logs in, discovers and reads the immutable
    details that a steady-state scrape does not read again; the second is recorded (signed, with session headers)
    where every requests call ends, in its transport adapter, one target after another.
    """
    from exporter.app import Exporter, root_model
    from exporter.logs import Redactor

    exporter = Exporter(root_model().model_validate(config), Redactor().sink)
    runners = list(exporter.app.runners.by_name.values())
    targets: list[list[Call]] = []
    lock = threading.Lock()
    original = HTTPAdapter.send

    def recording(adapter: HTTPAdapter, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> Any:
        body = request.body.encode() if isinstance(request.body, str) else request.body
        with lock:
            targets[-1].append((str(request.method), str(request.url), dict(request.headers), body))
        return original(adapter, request, *args, **kwargs)

    try:
        for runner in runners:
            runner.collect()
        HTTPAdapter.send = recording  # type: ignore[method-assign,assignment]
        outputs = []
        for runner in runners:
            targets.append([])
            outputs.append(runner.collect())
    finally:
        HTTPAdapter.send = original  # type: ignore[method-assign]
        exporter.close()
    if not any(targets):
        raise RuntimeError("the collections sent no request through requests: nothing to replay")
    return targets, tuple(outputs)


def write_calls(targets: list[list[Call]], path: Path) -> None:
    document = [
        [
            [method, url, headers, None if body is None else base64.b64encode(body).decode()]
            for method, url, headers, body in calls
        ]
        for calls in targets
    ]
    path.write_text(json.dumps(document))


def read_calls(path: Path) -> list[list[Call]]:
    return [
        [
            (method, url, headers, None if body is None else base64.b64decode(body))
            for method, url, headers, body in calls
        ]
        for calls in json.loads(path.read_text())
    ]


def render_seconds(outputs: tuple[Output, ...], accept: str, repeat: int = 5) -> float:
    """Median time the exporter's own renderer (exporter/exposition.py) takes to write these samples in the format
    it answers `accept` with: what a scrape adds to the network floor."""
    from exporter.collectors import platform_families
    from exporter.metrics import all_families

    families, fmt = all_families(platform_families()), negotiate(accept)
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        Exposition(families).chunks(outputs, fmt, None)  # a new one each time: nothing rendered is reused
        times.append(time.perf_counter() - started)
    return statistics.median(times)


# --- the replaying processes ---------------------------------------------------------------------------------


class Replayer:
    """One client's replaying process: `replay()` has it replay the calls once and returns its CPU seconds."""

    def __init__(self, client: str, calls_file: Path, concurrency: int) -> None:
        self.client = client
        self.process = subprocess.Popen(  # noqa: S603 - this interpreter and fixed arguments
            [sys.executable, "-m", "benchmarks.floors", client, str(calls_file), str(concurrency)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )

    def _answer(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the {self.client} replay exited with {self.process.wait()}")
        answer: dict[str, Any] = json.loads(line)
        if answer["refused"]:
            raise RuntimeError(
                f"the {self.client} replay was refused {answer['refused']} of {answer['requests']} calls"
            )
        return answer

    def replay(self) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write("replay\n")
        self.process.stdin.flush()
        return self._answer()

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


@contextmanager
def replayers(calls_file: Path, concurrency: int, clients: Sequence[str] = tuple(LABELS)) -> Iterator[list[Replayer]]:
    """A replaying process per client, each ready (its connections open, as the exporter's are)."""
    started: list[Replayer] = []
    try:
        for client in clients:
            started.append(Replayer(client, calls_file, concurrency))
        for replayer in started:
            replayer._answer()  # the warm-up replay
        yield started
    finally:
        for replayer in started:
            replayer.close()


# --- the clients, in a replaying process ---------------------------------------------------------------------


def _threaded(tasks: Sequence[Sequence[Callable[[], int]]], concurrency: int, close: Callable[[], None]) -> Client:
    """Per target a pool of `concurrency` threads, as the exporter has, running that target's calls."""
    pools = [ThreadPoolExecutor(concurrency) for _ in tasks]

    def replay() -> list[int]:
        futures = [pool.submit(task) for pool, listed in zip(pools, tasks, strict=True) for task in listed]
        return [future.result() for future in futures]

    def shut() -> None:
        for pool in pools:
            pool.shutdown()
        close()

    return replay, shut


def _close(clients: Sequence[requests.Session | urllib3.PoolManager]) -> None:
    for client in clients:
        if isinstance(client, requests.Session):
            client.close()
        else:
            client.clear()


def session_request(targets: list[list[Call]], concurrency: int) -> Client:
    """requests' `Session.request`: preparation, hooks and adapters on every call, as a plain user of it pays."""

    def fetch(session: requests.Session, call: Call) -> int:
        method, url, headers, body = call
        response = session.request(method, url, headers=headers, data=body, timeout=TIMEOUT)
        json.loads(response.content)
        return response.status_code

    sessions = [requests.Session() for _ in targets]
    tasks = [[partial(fetch, s, call) for call in calls] for s, calls in zip(sessions, targets, strict=True)]
    return _threaded(tasks, concurrency, partial(_close, sessions))


def send_prepared(targets: list[list[Call]], concurrency: int) -> Client:
    """requests' `Session.send` of requests prepared beforehand: requests without its preparation."""

    def fetch(session: requests.Session, prepared: requests.PreparedRequest) -> int:
        response = session.send(prepared, timeout=TIMEOUT)
        json.loads(response.content)
        return response.status_code

    sessions = [requests.Session() for _ in targets]
    tasks = [
        [partial(fetch, s, requests.Request(m, u, headers=h, data=b).prepare()) for m, u, h, b in calls]
        for s, calls in zip(sessions, targets, strict=True)
    ]
    return _threaded(tasks, concurrency, partial(_close, sessions))


def urllib3_pool(targets: list[list[Call]], concurrency: int) -> Client:
    """urllib3's PoolManager (what requests runs on) called from the same threads."""

    def fetch(manager: urllib3.PoolManager, call: Call) -> int:
        method, url, headers, body = call
        response = manager.request(method, url, headers=headers, body=body, timeout=TIMEOUT)
        json.loads(response.data)
        return response.status

    managers = [urllib3.PoolManager(maxsize=concurrency) for _ in targets]
    tasks = [[partial(fetch, m, call) for call in calls] for m, calls in zip(managers, targets, strict=True)]
    return _threaded(tasks, concurrency, partial(_close, managers))


def aiohttp_loop(targets: list[list[Call]], concurrency: int) -> Client:
    """aiohttp on one event loop, no threads: a session per target, limited to `concurrency` connections."""
    import aiohttp

    loop = asyncio.new_event_loop()

    async def open_sessions() -> list[aiohttp.ClientSession]:
        timeout = aiohttp.ClientTimeout(total=TIMEOUT)
        return [
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency), timeout=timeout) for _ in targets
        ]

    sessions = loop.run_until_complete(open_sessions())

    async def fetch(session: aiohttp.ClientSession, call: Call) -> int:
        method, url, headers, body = call
        async with session.request(method, url, headers=headers, data=body) as response:
            json.loads(await response.read())
            return response.status

    async def everything() -> list[int]:
        calls = (fetch(s, call) for s, listed in zip(sessions, targets, strict=True) for call in listed)
        return list(await asyncio.gather(*calls))

    async def close_sessions() -> None:
        for session in sessions:
            await session.close()

    def close() -> None:
        loop.run_until_complete(close_sessions())
        loop.close()

    return (lambda: loop.run_until_complete(everything())), close


CLIENTS: dict[str, Callable[[list[list[Call]], int], Client]] = {
    "session_request": session_request,
    "send_prepared": send_prepared,
    "urllib3": urllib3_pool,
    "aiohttp": aiohttp_loop,
}


def main(argv: Sequence[str]) -> int:
    client, calls_file, concurrency = argv
    replay, close = CLIENTS[client](read_calls(Path(calls_file)), int(concurrency))
    command = "replay"  # the first replay, unasked, opens the connections
    while command == "replay":
        started = time.process_time()
        statuses = replay()
        spent = time.process_time() - started
        refused = sum(1 for status in statuses if status in REFUSED)
        print(json.dumps({"cpu_seconds": spent, "requests": len(statuses), "refused": refused}), flush=True)
        command = sys.stdin.readline().strip()
    close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
