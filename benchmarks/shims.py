"""The hand-built parts, each measured against what it replaces, on loopback, in a bounded time.

    python -m benchmarks.shims [--only exposition,environment,daemonpool,webconfig,malloc] [--jobs 500]
                               [--repeat 3] [--requests 2000] [--hang-seconds 5] [--holders 4] [--hold-seconds 3]
                               [--auth-requests 10] [--malloc-jobs 50] [--malloc-scrapes 200] [--malloc-warmup 20]

exposition   the own text/OpenMetrics writer against prometheus_client's encoder of the same families: wall time
             of one OpenMetrics rendering of a real collection of the simulator's jobs (the bodies are compared)
environment  Upstream reading the proxy/CA/netrc environment once per origin against requests reading it on
             every request: this process' CPU per request to the simulator
daemonpool   DaemonPool against ThreadPoolExecutor: seconds from SIGTERM to exit of a process whose one call
             hangs on an upstream that never answers
webconfig    the verified-password cache against bcrypt on every request (an HTTPS request with basic auth),
             and the TLS handshake in the server's connection loop against prometheus_client's TLS server,
             which shakes hands in its accept loop (time to answer /healthz while clients stall their handshakes)
malloc       two glibc malloc arenas against glibc's default of eight per core: the exporter's RSS over
             consecutive scrapes of the simulator (the slowest part; --malloc-jobs and --malloc-scrapes size it)

Every "ratio" is without / with, so above 1 is what the part is for.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import bcrypt
import requests
import urllib3
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from prometheus_client import CollectorRegistry, start_http_server
from requests.adapters import HTTPAdapter

from benchmarks.run import PROMETHEUS_ACCEPT, ROOT, exporter_config, simulator, soak
from benchmarks.run import parse_args as run_defaults
from exporter import logs
from exporter.app import Exporter, root_model
from exporter.exposition import Exposition, Format, negotiate
from exporter.http import Deadline, Upstream
from exporter.logs import Redactor
from exporter.scrape import Runners
from exporter.server import ExporterApp, serve
from exporter.settings import TargetSettings
from exporter.telemetry import Telemetry
from exporter.webconfig import WebConfigHolder, load_web_config
from exporter.workers import DaemonPool

PARTS = ("exposition", "environment", "daemonpool", "webconfig", "malloc")
ROUNDS = 5  # the environment part alternates with and without, so a change in the machine's load hits both
BCRYPT_COST = 10  # the cost of the README's `htpasswd -nBC 10` example
GLIBC_ARENAS_PER_CORE = 8  # glibc's own limit on 64-bit machines, what the exporter's cap replaces
USER, PASSWORD = "prometheus", "bench-password"


@dataclass(frozen=True)
class Row:
    """One part's line of the table; `ratio` is without / with, above 1 where the part pays off."""

    shim: str
    replaces: str
    measured: str
    unit: str
    with_shim: float
    without: float

    @property
    def ratio(self) -> float:
        return self.without / self.with_shim


def _seconds(call: Callable[[], Any]) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


# --- exposition writer -------------------------------------------------------------------------------------


def exposition(args: argparse.Namespace, simulated: dict[str, Any], jobs: dict[str, Any]) -> tuple[Row, str]:
    """One collection of every simulated target in this process, rendered by the writer and by the client."""
    defaults = run_defaults([])
    config = exporter_config(simulated, jobs, defaults.concurrency, defaults.batch_size)
    exporter = Exporter(root_model().model_validate(config), Redactor().sink)
    try:
        runners = exporter.app.runners
        outputs = runners.begin(list(runners.by_name.values())).outputs()
    finally:
        exporter.close()
    families = exporter.app.exposition.families
    own = negotiate(PROMETHEUS_ACCEPT)
    client = replace(own, openmetrics=None)  # the same format, encoded by prometheus_client from Metric objects
    body = b"".join(Exposition(families).chunks(outputs, own, None))
    if body != b"".join(Exposition(families).chunks(outputs, client, None)):
        raise RuntimeError("the writer's body differs from prometheus_client's")
    samples = sum(len(output) for output in outputs)

    def rendering(fmt: Format) -> float:
        """Median wall time of one rendering, each by a new Exposition (one shares its last rendering)."""
        runs = (functools.partial(Exposition(families).chunks, outputs, fmt, None) for _ in range(args.repeat))
        return statistics.median(_seconds(run) for run in runs)

    with_shim, without = rendering(own), rendering(client)
    row = Row(
        "own exposition writer",
        "prometheus_client encoders",
        f"one OpenMetrics rendering of {samples:,} samples, median of {args.repeat}",
        "s",
        with_shim,
        without,
    )
    count = sum(len(listed) for listed in jobs.values())
    return row, f"exposition: {samples:,} samples of {count:,} jobs, {len(body):,} bytes, byte-identical"


# --- requests environment ------------------------------------------------------------------------------------


class _EnvironmentEveryRequest(Upstream):
    """Upstream as requests works by default: the environment merged, and the pool key built, on every request."""

    def __init__(self, platform: str, settings: TargetSettings, telemetry: Telemetry) -> None:
        super().__init__(platform, settings, telemetry)
        self.session.trust_env = True
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=settings.max_concurrency + 2, max_retries=0)
        self.session.mount("https://", adapter)
        self.session.mount("http://", adapter)

    def _environment_for(self, url: str) -> dict[str, Any]:
        return self._per_request


def environment(args: argparse.Namespace, sim_url: str, simulated: dict[str, Any]) -> Row:
    """The same target's Upstream both ways, GETting the simulator's stats in alternating rounds."""
    settings = root_model().model_validate(simulated).all_targets()[0]
    telemetry = Telemetry(CollectorRegistry())
    upstreams = [kind(settings.platform, settings, telemetry) for kind in (Upstream, _EnvironmentEveryRequest)]
    url = f"{sim_url}/_sim/stats"
    per_round = max(1, args.requests // ROUNDS)
    spent: list[list[float]] = [[], []]
    for upstream in upstreams:
        upstream.get_json(url, endpoint="stats", deadline=Deadline(60))  # the connection opened
    for _ in range(ROUNDS):
        for upstream, times in zip(upstreams, spent, strict=True):
            started = time.process_time()
            for _ in range(per_round):
                upstream.get_json(url, endpoint="stats", deadline=Deadline(60))
            times.append((time.process_time() - started) / per_round)
    for upstream in upstreams:
        upstream.close()
    return Row(
        "environment read once per origin",
        "requests reading it per request",
        f"client CPU per request, median of {ROUNDS} rounds of {per_round}",
        "ms",
        1000 * statistics.median(spent[0]),
        1000 * statistics.median(spent[1]),
    )


# --- DaemonPool ----------------------------------------------------------------------------------------------


def hung_call(pool_kind: str, port: int, read_timeout: float) -> None:
    """A process whose one upstream call hangs; SIGTERM ends its main thread as the exporter's handler does."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda _signum, _frame: stop.set())
    call = functools.partial(requests.get, f"http://127.0.0.1:{port}/", timeout=read_timeout)
    if pool_kind == "DaemonPool":
        pool = DaemonPool()
        pool.lane(1).start([None], lambda _: call())
        stop.wait()
        pool.shutdown()
    else:
        executor = ThreadPoolExecutor(1)
        executor.submit(call)
        stop.wait()
        executor.shutdown(wait=False, cancel_futures=True)


def exit_seconds(pool_kind: str, read_timeout: float) -> float:
    """Seconds from SIGTERM to the exit of a `hung_call` process, sent once its request has arrived."""
    with socket.create_server(("127.0.0.1", 0)) as upstream:
        upstream.settimeout(60)
        port = upstream.getsockname()[1]
        code = f"from benchmarks.shims import hung_call; hung_call({pool_kind!r}, {port}, {read_timeout})"
        child = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT)  # noqa: S603 - this interpreter, own code
        try:
            connection, _ = upstream.accept()
            with connection:
                request = b""
                while b"\r\n\r\n" not in request:
                    request += connection.recv(4096) or b"\r\n\r\n"
                started = time.perf_counter()
                child.send_signal(signal.SIGTERM)
                child.wait(read_timeout + 60)
                return time.perf_counter() - started
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()


def daemonpool(args: argparse.Namespace) -> Row:
    return Row(
        "DaemonPool",
        "ThreadPoolExecutor",
        f"SIGTERM to exit, one call hung on a silent upstream (read timeout {args.hang_seconds:g} s)",
        "s",
        exit_seconds("DaemonPool", args.hang_seconds),
        exit_seconds("ThreadPoolExecutor", args.hang_seconds),
    )


# --- web-config server ---------------------------------------------------------------------------------------


def _certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate and its key for the TLS servers, valid for an hour."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = x509.CertificateBuilder(
        issuer_name=name,
        subject_name=name,
        public_key=key.public_key(),
        serial_number=x509.random_serial_number(),
        not_valid_before=now - datetime.timedelta(minutes=1),
        not_valid_after=now + datetime.timedelta(hours=1),
    ).sign(key, hashes.SHA256())
    cert_file, key_file = directory / "bench.crt", directory / "bench.key"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_file, key_file


def _healthz_while_held(port: int, holders: int, hold_seconds: float) -> float:
    """Seconds to answer GET /healthz over TLS while `holders` clients, connected first, send no handshake for
    `hold_seconds` and then give up."""
    held = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(holders)]

    def give_up() -> None:
        for connection in held:
            connection.close()

    timer = threading.Timer(hold_seconds, give_up)
    timer.start()
    try:
        get = functools.partial(requests.get, f"https://127.0.0.1:{port}/healthz", verify=False, timeout=60)
        return _seconds(lambda: get().raise_for_status())
    finally:
        timer.cancel()
        give_up()


def webconfig(args: argparse.Namespace, workdir: Path) -> list[Row]:
    """The exporter's server with TLS and basic auth, and prometheus_client's TLS server beside it."""
    urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)  # the certificate is made here
    cert_file, key_file = _certificate(workdir)
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(BCRYPT_COST)).decode()
    path = workdir / "web-config.yml"
    path.write_text(
        yaml.safe_dump(
            {
                "tls_server_config": {"cert_file": str(cert_file), "key_file": str(key_file)},
                "basic_auth_users": {USER: hashed},
            }
        )
    )
    holder = WebConfigHolder(load_web_config(path))
    app = ExporterApp(Runners([]), Exposition(()), CollectorRegistry(), "/metrics")
    server = serve(app, "127.0.0.1:0", holder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        get = functools.partial(requests.get, f"https://127.0.0.1:{port}/", auth=(USER, PASSWORD), verify=False)

        def landing() -> None:
            get(timeout=60).raise_for_status()

        landing()  # the password verified once
        cached = statistics.median(_seconds(landing) for _ in range(args.auth_requests))
        verified = []
        for _ in range(args.auth_requests):
            holder.current = load_web_config(path)  # an empty cache, as after a reload
            verified.append(_seconds(landing))
        own_handshake = _healthz_while_held(port, args.holders, args.hold_seconds)
    finally:
        server.shutdown()
        server.server_close()
    client_server, _ = start_http_server(
        0, "127.0.0.1", CollectorRegistry(), certfile=str(cert_file), keyfile=str(key_file)
    )
    try:
        client_handshake = _healthz_while_held(client_server.server_address[1], args.holders, args.hold_seconds)
    finally:
        client_server.shutdown()
        client_server.server_close()
    return [
        Row(
            "verified-password cache",
            "bcrypt on every request",
            f"HTTPS request with basic auth (bcrypt cost {BCRYPT_COST}), median of {args.auth_requests}",
            "ms",
            1000 * cached,
            1000 * statistics.median(verified),
        ),
        Row(
            "TLS handshake in the connection loop",
            "prometheus_client TLS server",
            f"GET /healthz while {args.holders} clients stall their handshake for {args.hold_seconds:g} s",
            "s",
            own_handshake,
            client_handshake,
        ),
    ]


# --- malloc arenas -------------------------------------------------------------------------------------------


def malloc(args: argparse.Namespace, workdir: Path) -> tuple[Row, str]:
    """benchmarks.run's RSS run twice: as the exporter starts (two arenas) and with glibc's own limit set."""
    setup = argparse.Namespace(
        **{
            **vars(run_defaults([])),
            "soak_jobs": args.malloc_jobs,
            "soak_scrapes": args.malloc_scrapes,
            "soak_warmup": args.malloc_warmup,
        }
    )
    arenas = str(GLIBC_ARENAS_PER_CORE * (os.cpu_count() or 1))
    capped = soak(setup, workdir)
    default = soak(setup, workdir, {"MALLOC_ARENA_MAX": arenas})  # set, so the exporter leaves it alone
    row = Row(
        "mallopt(M_ARENA_MAX, 2)",
        f"glibc default ({arenas} arenas)",
        f"exporter RSS, median of the last tenth of {args.malloc_scrapes} scrapes of {capped['jobs']:,} jobs",
        "MiB",
        capped["rss_last_tenth_median_mib"],
        default["rss_last_tenth_median_mib"],
    )
    notes = "; ".join(
        f"{name}: {r['rss_first_tenth_median_mib']:.1f} -> {r['rss_last_tenth_median_mib']:.1f} MiB "
        f"({r['growth_percent']:+.1f} %), peak {r['peak_rss_mib']:.1f} MiB"
        for name, r in (("2 arenas", capped), (f"{arenas} arenas", default))
    )
    return row, f"malloc: RSS median of the first -> last tenth of the samples (every 10 scrapes): {notes}"


# --- report ----------------------------------------------------------------------------------------------------


def table(rows: Sequence[Row]) -> str:
    """A Markdown table: the figures with their units, the ratio without / with."""
    lines = ["| shim | replaces | measured | with | without | ratio |", "| --- | --- | --- | ---: | ---: | ---: |"]
    for row in rows:
        lines.append(
            f"| {row.shim} | {row.replaces} | {row.measured} | {row.with_shim:.4g} {row.unit} | "
            f"{row.without:.4g} {row.unit} | {row.ratio:.3g}x |"
        )
    return "\n".join(lines)


SIZES: tuple[tuple[str, type[int] | type[float], float, str], ...] = (
    ("--jobs", int, 500, "jobs per platform for exposition and environment"),
    ("--repeat", int, 3, "renderings timed each way"),
    ("--requests", int, 2000, "upstream requests timed each way"),
    ("--hang-seconds", float, 5.0, "read timeout of the hung call"),
    ("--holders", int, 4, "clients stalling their TLS handshake (prometheus_client's server queues five behind one)"),
    ("--hold-seconds", float, 3.0, "how long they stall before giving up"),
    ("--auth-requests", int, 10, "authenticated requests timed each way"),
    ("--malloc-jobs", int, 50, "jobs per platform in the RSS runs"),
    ("--malloc-scrapes", int, 200, "scrapes measured in each RSS run"),
    ("--malloc-warmup", int, 20, "scrapes before each RSS run's start"),
)
"""The size of each measurement: flag, type, default, what it sets."""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.shims", description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(PARTS), help="parts to run, comma separated")
    for flag, kind, default, text in SIZES:
        parser.add_argument(flag, type=kind, default=kind(default), help=text)
    args = parser.parse_args(argv)
    args.only = [part.strip() for part in args.only.split(",") if part.strip()]
    unknown = set(args.only) - set(PARTS)
    if unknown:
        parser.error(f"--only: unknown parts {', '.join(sorted(unknown))}; choose from {', '.join(PARTS)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logs.configure(Redactor(), "warning", "json")  # the servers here log each request at debug
    load_at_start = os.getloadavg()
    started = time.perf_counter()
    rows: list[Row] = []
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="exporter-shims-") as tmp:
        workdir = Path(tmp)
        if {"exposition", "environment"} & set(args.only):
            with simulator(args.jobs, 0.0, workdir) as (_process, sim_url, _credentials, simulated):
                if "exposition" in args.only:
                    jobs = requests.get(f"{sim_url}/_sim/jobs", timeout=30).json()
                    row, note = exposition(args, simulated, jobs)
                    rows.append(row)
                    notes.append(note)
                if "environment" in args.only:
                    rows.append(environment(args, sim_url, simulated))
        if "daemonpool" in args.only:
            rows.append(daemonpool(args))
        if "webconfig" in args.only:
            rows += webconfig(args, workdir)
        if "malloc" in args.only:
            row, note = malloc(args, workdir)
            rows.append(row)
            notes.append(note)
    print(table(rows))
    print()
    for note in notes:
        print(note)
    print(
        f"{os.cpu_count()} CPUs, {time.perf_counter() - started:.0f} s; load average (1, 5, 15 min) at start "
        f"{load_at_start}, at end {os.getloadavg()}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
