"""The exporter's own HTTP server under load and abuse, on loopback: one figure per row of the README's table.

    python -m benchmarks.abuse [--clients 200] [--slow 500] [--flood 50] [--flag=--web.idle-timeout=5 ...]

The exporter runs as a process of its own with its default flags (plus any `--flag`), against the simulator
(the demo's targets), so its threads, RSS and exit are its own and every upstream request is counted:

healthz     200 clients GET /healthz at once: answered, p99 latency
burst       200 clients GET /metrics at once: 200s, 503s, other; upstream requests against one scrape's
slow        500 connections send their headers a byte a second: when the last was closed, the exporter's
            most threads meanwhile, the slowest /healthz meanwhile (one every 100 ms)
flood       50 connections send 100 headers of 64 KiB each, no credentials: answers, the exporter's RSS rise
idle        a kept-alive connection after one request, and a TLS connection after its handshake with no
            request: seconds until the exporter closes each
head        HEAD /metrics: body bytes and upstream requests (a GET's for comparison)
sigterm     seconds from SIGTERM to exit when idle; during a scrape held by a slow upstream: /readyz right
            after SIGTERM, the scrape's answer and when, and the exit

The functions are the probes tests/test_abuse_server.py runs against the in-process server with small limits.
"""

from __future__ import annotations

import argparse
import http.client
import os
import selectors
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import yaml

from benchmarks.run import ROOT, memory_kib
from benchmarks.shims import _certificate
from exporter.simulator import Simulator, SimulatorOptions
from exporter.simulator.targets import simulated_config

Address = tuple[str, int]
PAD = b"a" * 65536  # one header value; every header line sends this same object


# --- probes ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """One request's outcome: the status (or the error's name) and how long it took."""

    status: int | str
    seconds: float
    body: bytes = b""


def ask(address: Address, path: str, method: str = "GET", timeout: float = 30.0) -> Answer:
    """One request on a new connection."""
    started = time.monotonic()
    connection = http.client.HTTPConnection(*address, timeout=timeout)
    try:
        connection.request(method, path)
        response = connection.getresponse()
        return Answer(response.status, time.monotonic() - started, response.read())
    except (OSError, http.client.HTTPException) as exc:
        return Answer(type(exc).__name__, time.monotonic() - started)
    finally:
        connection.close()


def at_once(clients: int, call: Callable[[], Answer], timeout: float = 60.0) -> list[Answer]:
    """`clients` threads make their call together (released by one barrier); their answers."""
    barrier = threading.Barrier(clients)
    answers: list[Answer] = []
    lock = threading.Lock()

    def one() -> None:
        with suppress(threading.BrokenBarrierError):
            barrier.wait(timeout)
        answer = call()
        with lock:
            answers.append(answer)

    threads = [threading.Thread(target=one, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    end = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, end - time.monotonic()))
    return answers


def p99(answers: Sequence[Answer]) -> float:
    seconds = sorted(answer.seconds for answer in answers)
    return seconds[min(len(seconds) - 1, int(len(seconds) * 0.99))]


def statuses(answers: Sequence[Answer]) -> Counter[int | str]:
    return Counter(answer.status for answer in answers)


@dataclass(frozen=True)
class Slow:
    """Slow headers: connections the server closed, the last close, most threads, slowest /healthz."""

    closed: int
    last_closed: float
    threads: int
    healthz: float


def slow_headers(
    address: Address, connections: int, threads: Callable[[], int], limit: float, byte_every: float = 1.0
) -> Slow:
    """Open `connections` that start a request and then send one header byte every `byte_every` seconds, until
    the server has closed them all or `limit` seconds have passed; meanwhile /healthz every 100 ms."""
    selector = selectors.DefaultSelector()
    opened = time.monotonic()
    for _ in range(connections):
        sock = socket.create_connection(address, timeout=10)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: probe\r\nX-Slow: ")
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ, sock)
    stop = threading.Event()
    slowest = [0.0]
    most = [threads()]

    def watch() -> None:
        while not stop.wait(0.1):
            slowest[0] = max(slowest[0], ask(address, "/healthz", timeout=10).seconds)
            most[0] = max(most[0], threads())

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    closed, last, next_byte = 0, 0.0, time.monotonic() + byte_every
    try:
        while selector.get_map() and time.monotonic() - opened < limit:
            for key, _ in selector.select(timeout=max(0.0, min(0.1, next_byte - time.monotonic()))):
                with suppress(BlockingIOError):
                    try:
                        data = key.data.recv(4096)
                    except OSError:
                        data = b""
                    if not data:
                        selector.unregister(key.data)
                        key.data.close()
                        closed, last = closed + 1, time.monotonic() - opened
            if time.monotonic() >= next_byte:
                next_byte += byte_every
                for key in list(selector.get_map().values()):
                    with suppress(OSError):
                        key.data.send(b"x")
    finally:
        stop.set()
        watcher.join()
        for key in list(selector.get_map().values()):
            key.data.close()
        selector.close()
    return Slow(closed, last, most[0], slowest[0])


def flood(
    address: Address, connections: int, headers: int, rss_kib: Callable[[], int]
) -> tuple[Counter[int | str], int]:
    """`connections` clients each send `headers` header lines of 64 KiB, no credentials, then read the answer:
    their answers, and the most the server's RSS rose meanwhile (KiB, sampled every 10 ms)."""
    before = rss_kib()
    highest = [before]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.01):
            highest[0] = max(highest[0], rss_kib())

    def one() -> Answer:
        started = time.monotonic()
        try:
            with socket.create_connection(address, timeout=30) as sock:
                sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: probe\r\n")
                with suppress(OSError):  # the server may answer and close before all of it is sent
                    for index in range(headers):
                        sock.sendall(b"X-Pad-%d: " % index)
                        sock.sendall(PAD)
                        sock.sendall(b"\r\n")
                    sock.sendall(b"\r\n")
                return Answer(_status(until_eof(sock)), time.monotonic() - started)
        except OSError as exc:
            return Answer(type(exc).__name__, time.monotonic() - started)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        answers = at_once(connections, one)
    finally:
        stop.set()
        sampler.join()
    return statuses(answers), max(highest[0], rss_kib()) - before


def until_eof(sock: socket.socket, limit: int = 1 << 20) -> bytes:
    data = b""
    with suppress(OSError):
        while len(data) < limit and (chunk := sock.recv(65536)):
            data += chunk
    return data


def _status(response: bytes) -> int | str:
    parts = response.split(b" ", 2)
    return int(parts[1]) if len(parts) > 1 and response.startswith(b"HTTP/1.") and parts[1].isdigit() else "closed"


def closed_after(sock: socket.socket, limit: float) -> float | None:
    """Seconds until the server closes `sock` (it sends nothing more), or None if still open after `limit`."""
    started = time.monotonic()
    sock.settimeout(limit)
    try:
        while sock.recv(4096):
            pass
    except TimeoutError:
        return None
    except OSError:
        pass
    return time.monotonic() - started


def idle_after_request(address: Address, limit: float) -> float | None:
    """A kept-alive connection after one answered request: seconds until the server closes it."""
    sock = socket.create_connection(address, timeout=10)
    with sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: probe\r\n\r\n")
        response = b""
        while not response.endswith(b"ok\n"):
            chunk = sock.recv(4096)
            if not chunk:
                return 0.0
            response += chunk
        return closed_after(sock, limit)


def idle_after_handshake(address: Address, context: ssl.SSLContext, limit: float) -> float | None:
    """A TLS connection that shakes hands and sends nothing: seconds until the server closes it."""
    with context.wrap_socket(socket.create_connection(address, timeout=10), server_hostname=address[0]) as sock:
        return closed_after(sock, limit)


def rss_of(pid: int) -> Callable[[], int]:
    return lambda: memory_kib(pid, "VmRSS")


def threads_of(pid: int) -> Callable[[], int]:
    def count() -> int:
        return len(os.listdir(f"/proc/{pid}/task"))

    return count


def wait_for(condition: Callable[[], bool], limit: float, every: float = 0.02) -> bool:
    """Poll `condition` until it holds or `limit` seconds have passed."""
    end = time.monotonic() + limit
    while not condition():
        if time.monotonic() > end:
            return False
        time.sleep(every)
    return True


# --- the exporter as a process ----------------------------------------------------------------------------


@dataclass
class Exporter:
    process: subprocess.Popen[str]
    address: Address


@contextmanager
def running(config: Path, flags: Sequence[str] = ()) -> Iterator[Exporter]:
    """The exporter as a process of its own on an ephemeral loopback port, its log to a file beside the config."""
    log = (config.parent / "exporter.log").open("w")
    command = [sys.executable, "-m", "exporter", "--config.file", str(config), "--web.listen-address", "127.0.0.1:0"]
    process = subprocess.Popen(  # noqa: S603 - this interpreter and fixed arguments
        [*command, "--log.format", "json", *flags],
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
    )
    try:
        yield Exporter(process, _listening(config.parent / "exporter.log", process))
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
        log.close()


def _listening(log: Path, process: subprocess.Popen[str]) -> Address:
    def found() -> bool:
        return '"listening"' in log.read_text() or process.poll() is not None

    if not wait_for(found, 30.0, 0.05) or process.poll() is not None:
        raise RuntimeError("the exporter did not start:\n" + log.read_text())
    line = next(line for line in log.read_text().splitlines() if '"listening"' in line)
    host, port = yaml.safe_load(line)["address"].rsplit(":", 1)
    return host, int(port)


def sigterm(
    exporter: Exporter, in_flight: Callable[[], bool] | None = None
) -> tuple[float, Answer | None, Answer | None]:
    """SIGTERM, once a GET /metrics is waiting for its collection (`in_flight` holds) when given: seconds to exit,
    /readyz right after the signal, and the scrape's answer."""
    answers: list[Answer] = []
    scraper = threading.Thread(target=lambda: answers.append(ask(exporter.address, "/metrics")), daemon=True)
    if in_flight is not None:
        scraper.start()
        wait_for(in_flight, 10.0)
    started = time.monotonic()
    exporter.process.send_signal(signal.SIGTERM)
    readyz = ask(exporter.address, "/readyz", timeout=5) if in_flight is not None else None
    exporter.process.wait(30)
    exited = time.monotonic() - started
    if in_flight is not None:
        scraper.join(30)
    return exited, readyz, answers[0] if answers else None


# --- the run ----------------------------------------------------------------------------------------------


def row(probe: str, figure: str) -> None:
    """One line of the table, printed as soon as it is measured."""
    print(f"| {probe} | {figure} |", flush=True)


def _load(args: argparse.Namespace, sim: Simulator, exporter: Exporter) -> None:
    address, pid = exporter.address, exporter.process.pid
    ask(address, "/metrics")  # discovery and logins, which a steady scrape does not repeat
    counted = upstream_requests(sim)
    ask(address, "/metrics")
    one = upstream_requests(sim) - counted
    idle: list[float | None] = []
    idler = threading.Thread(target=lambda: idle.append(idle_after_request(address, 600.0)), daemon=True)
    idler.start()

    answers = at_once(args.clients, lambda: ask(address, "/healthz"))
    row(
        f"{args.clients} concurrent GET /healthz",
        f"{statuses(answers)[200]}/{args.clients} answered 200, p99 {p99(answers):.3f} s",
    )
    counted = upstream_requests(sim)
    answers = at_once(args.clients, lambda: ask(address, "/metrics"))
    burst, seen = upstream_requests(sim) - counted, statuses(answers)
    row(
        f"{args.clients} concurrent GET /metrics",
        f"{seen[200]} x 200, {seen[503]} x 503, {args.clients - seen[200] - seen[503]} other, the slowest in "
        f"{max(answer.seconds for answer in answers):.2f} s; {burst} upstream requests (one scrape: {one})",
    )
    slow = slow_headers(address, args.slow, threads_of(pid), limit=120.0)
    row(
        f"{args.slow} connections sending headers a byte a second",
        f"{slow.closed}/{args.slow} closed, the last after {slow.last_closed:.1f} s; at most {slow.threads} "
        f"threads; slowest /healthz meanwhile {slow.healthz * 1000:.0f} ms",
    )
    seen, rise = flood(address, args.flood, 100, rss_of(pid))
    row(
        f"{args.flood} connections x 100 headers x 64 KiB, no credentials",
        ", ".join(f"{count} x {status}" for status, count in seen.items()) + f"; RSS rise {rise / 1024:.1f} MiB",
    )
    counted = upstream_requests(sim)
    head = ask(address, "/metrics", "HEAD")
    collected = upstream_requests(sim) - counted
    row("HEAD /metrics", f"{head.status}, {len(head.body)} body bytes, {collected} upstream requests (GET: {one})")
    idler.join()
    row("idle kept-alive connection after a request", _closed(idle[0]))


def _closed(seconds: float | None) -> str:
    return "still open" if seconds is None else f"closed after {seconds:.1f} s"


def upstream_requests(sim: Simulator) -> int:
    return sum(sim.stats().values())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.abuse", description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--slow", type=int, default=500)
    parser.add_argument("--flood", type=int, default=50)
    parser.add_argument("--flag", action="append", default=[], help="an exporter flag: --flag=--web.idle-timeout=5")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as workdir, Simulator(SimulatorOptions(host="127.0.0.1", port=0, jobs=6)) as sim:
        directory = Path(workdir)
        config = directory / "config.yml"
        config.write_text(yaml.safe_dump(simulated_config(sim, directory, prefix="demo")))
        print("| probe | measured |\n|---|---|", flush=True)
        with running(config, args.flag) as exporter:
            _load(args, sim, exporter)
        cert_file, key_file = _certificate(directory)
        web = directory / "web.yml"
        web.write_text(yaml.safe_dump({"tls_server_config": {"cert_file": str(cert_file), "key_file": str(key_file)}}))
        with running(config, [*args.flag, f"--web.config.file={web}"]) as exporter:
            client = ssl.create_default_context(cafile=str(cert_file))
            client.check_hostname = False  # the benchmark's certificate names 127.0.0.1 as its subject only
            row(
                "TLS connection silent after its handshake",
                _closed(idle_after_handshake(exporter.address, client, 600.0)),
            )
        with running(config, args.flag) as exporter:
            exited, _, _ = sigterm(exporter)
        row("SIGTERM, idle", f"exited after {exited:.2f} s")
        sim.faults.add({"platform": "informatica", "endpoint": "status", "kind": "latency", "seconds": 60})
        status = ("informatica", "status", "GET")
        with running(config, args.flag) as exporter:
            before = sim.stats().get(status, 0)
            exited, readyz, scrape = sigterm(exporter, lambda: sim.stats().get(status, 0) > before)
        assert readyz is not None and scrape is not None
        row(
            "SIGTERM during a scrape held by a 60 s upstream",
            f"/readyz {readyz.status} in {readyz.seconds * 1000:.0f} ms; the scrape answered {scrape.status} after "
            f"{scrape.seconds:.2f} s; exited after {exited:.2f} s",
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
