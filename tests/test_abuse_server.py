"""The exporter's own HTTP server under load and abuse: the real server on 127.0.0.1, small limits, every row of
the README's "Serving under load and abuse" table asserted (the probes are benchmarks/abuse.py's)."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from benchmarks import abuse
from benchmarks.abuse import Address, ask
from exporter.cli import parse_args
from exporter.exposition import Exposition
from exporter.httpserver import MAX_HEAD_BYTES, ServerLimits
from exporter.scrape import Runners
from exporter.scrapegate import BURST_REUSE_SECONDS, SHUTDOWN_GRACE_SECONDS
from exporter.server import ExporterApp, serve
from exporter.simulator import Simulator, SimulatorOptions
from exporter.simulator.targets import simulated_config
from exporter.webconfig import WebConfig, WebConfigHolder, load_web_config
from tests.helpers import SIMULATED, make_app, make_settings, simulated
from tests.test_webconfig import CA, bcrypt_hash

pytestmark = pytest.mark.timeout(60)
SHORT = ServerLimits(header_timeout=0.5, idle_timeout=0.5, max_requests=40)


@contextmanager
def serving(app: ExporterApp, limits: ServerLimits = SHORT, web: WebConfigHolder | None = None) -> Iterator[Address]:
    """The real server on an ephemeral loopback port, running in a thread until the block ends."""
    server = serve(app, "127.0.0.1:0", web, limits)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server.server_address
    finally:
        server.shutdown()
        thread.join(5)


def bare_app() -> ExporterApp:
    """The app without targets: what the server does, not what collections cost."""
    app = ExporterApp(Runners([]), Exposition(()), CollectorRegistry(), "/metrics")
    app.ready.set()
    return app


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with Simulator(SimulatorOptions(host="127.0.0.1", port=0, jobs=3, platforms=list(SIMULATED))) as running:
        yield running


@pytest.fixture
def sim_app(sim: Simulator, tmp_path: Path) -> ExporterApp:
    return make_app(make_settings([simulated(sim, platform, f"sim-{platform}", tmp_path) for platform in SIMULATED]))


def raw(address: Address, request: bytes, timeout: float = 5.0) -> bytes:
    """Send `request`, close the sending side, read the answer until the server closes."""
    with socket.create_connection(address, timeout=timeout) as sock:
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)
        return abuse.until_eof(sock)


# --- 200 concurrent /healthz ----------------------------------------------------------------------------------


def test_200_concurrent_healthz_are_all_answered_with_p99_under_a_second() -> None:
    with serving(bare_app()) as address:
        answers = abuse.at_once(200, lambda: ask(address, "/healthz", timeout=10))
    assert abuse.statuses(answers) == {200: 200}
    assert abuse.p99(answers) < 1.0, abuse.p99(answers)


# --- 200 concurrent /metrics ----------------------------------------------------------------------------------


def test_a_burst_of_scrapes_is_answered_or_refused_at_once_and_costs_at_most_two_collections(
    sim: Simulator, sim_app: ExporterApp
) -> None:
    """The first answer of the burst's collection is held, so the admitted scrapes are all still waiting while
    the others arrive: exactly --web.max-requests get a 200, the rest a 503 before the collection ends."""
    hold = 3.0
    with serving(sim_app) as address:
        assert ask(address, "/metrics").status == 200  # logins and discovery, which a steady scrape does not repeat
        counted = abuse.upstream_requests(sim)
        assert ask(address, "/metrics").status == 200
        one = abuse.upstream_requests(sim) - counted
        sim.faults.add(
            {"platform": "informatica", "endpoint": "status", "kind": "latency", "seconds": hold, "count": 1}
        )
        counted = abuse.upstream_requests(sim)
        answers = abuse.at_once(200, lambda: ask(address, "/metrics", timeout=30))
        burst = abuse.upstream_requests(sim) - counted
    sim.faults.clear()
    assert abuse.statuses(answers) == {200: SHORT.max_requests, 503: 200 - SHORT.max_requests}
    assert all(answer.seconds < hold for answer in answers if answer.status == 503)
    assert burst <= 2 * one, (burst, one)


def test_during_a_burst_a_result_up_to_a_second_old_is_served_again(sim: Simulator, sim_app: ExporterApp) -> None:
    """What keeps a burst spread over longer than a collection at one or two collections; a lone scrape (no
    reuse asked) always gets a fresh one."""
    runners = sim_app.runners
    selected = list(runners.by_name.values())
    first = runners.begin(selected).outputs()
    counted = abuse.upstream_requests(sim)
    again = runners.begin(selected, reuse_within=BURST_REUSE_SECONDS).outputs()
    assert abuse.upstream_requests(sim) == counted and all(a is b for a, b in zip(first, again, strict=True))
    fresh = runners.begin(selected).outputs()
    assert abuse.upstream_requests(sim) > counted and not any(a is b for a, b in zip(first, fresh, strict=True))


def test_max_requests_zero_admits_every_scrape(sim_app: ExporterApp) -> None:
    with serving(sim_app, ServerLimits(0.5, 0.5, max_requests=0)) as address:
        answers = abuse.at_once(60, lambda: ask(address, "/metrics", timeout=30))
    assert abuse.statuses(answers) == {200: 60}


# --- slow headers ---------------------------------------------------------------------------------------------


def test_slow_headers_are_cut_at_the_header_timeout_without_a_thread_each() -> None:
    baseline = threading.active_count()
    with serving(bare_app()) as address:
        slow = abuse.slow_headers(address, 500, threading.active_count, limit=10.0, byte_every=0.1)
    assert slow.closed == 500
    assert SHORT.header_timeout <= slow.last_closed < SHORT.header_timeout + 2.0, slow
    assert slow.threads <= baseline + SHORT.workers + 3, (slow, baseline)  # the pool, the loop, the probe's watcher
    assert slow.healthz < 0.5, slow  # the README's figure (python -m benchmarks.abuse) is the quiet machine's


def test_a_silent_connection_is_closed_at_the_header_timeout() -> None:
    with serving(bare_app()) as address, socket.create_connection(address) as sock:
        closed = abuse.closed_after(sock, 5.0)
    assert closed is not None and SHORT.header_timeout * 0.8 <= closed < SHORT.header_timeout + 1.0


# --- request head size --------------------------------------------------------------------------------------


def protected(tmp_path: Path, tls: dict[str, Any] | None = None) -> WebConfigHolder:
    path = tmp_path / "web.yml"
    path.write_text(
        yaml.safe_dump(
            {"basic_auth_users": {"prometheus": bcrypt_hash("secret")}, **({"tls_server_config": tls} if tls else {})}
        )
    )
    return WebConfigHolder(load_web_config(path))


def test_a_head_over_64_kib_gets_431_before_any_auth_work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    checked: list[str | None] = []
    authorized = WebConfig.authorized
    monkeypatch.setattr(
        WebConfig, "authorized", lambda self, header: checked.append(header) or authorized(self, header)
    )
    with serving(bare_app(), web=protected(tmp_path)) as address:
        big = raw(address, b"GET /metrics HTTP/1.1\r\nHost: t\r\nX-Pad: " + b"a" * MAX_HEAD_BYTES + b"\r\n\r\n")
        fits = raw(address, b"GET /metrics HTTP/1.1\r\nHost: t\r\nX-Pad: " + b"a" * 60_000 + b"\r\n\r\n")
        long_line = raw(address, b"GET /" + b"a" * MAX_HEAD_BYTES + b" HTTP/1.1\r\n\r\n")
        start, end = b"GET /healthz HTTP/1.1\r\nX-Pad: ", b"\r\n\r\n"
        at_cap = raw(address, start + b"a" * (MAX_HEAD_BYTES - len(start) - len(end)) + end)
        past_cap = raw(address, start + b"a" * (MAX_HEAD_BYTES + 1 - len(start) - len(end)) + end)
    assert big.startswith(b"HTTP/1.1 431 ") and long_line.startswith(b"HTTP/1.1 431 ")
    assert at_cap.startswith(b"HTTP/1.1 200 ") and past_cap.startswith(b"HTTP/1.1 431 ")
    assert fits.startswith(b"HTTP/1.1 401 ")
    assert len(checked) == 1  # only the request that fits reached basic auth


def test_a_flood_of_huge_heads_without_credentials_costs_under_20_mib(tmp_path: Path) -> None:
    pid = abuse.os.getpid()
    with serving(bare_app(), web=protected(tmp_path)) as address:
        seen, rise = abuse.flood(address, 50, 100, abuse.rss_of(pid))
        assert ask(address, "/healthz").status == 200
    assert set(seen) <= {431, "closed"} and seen[431] >= 1, seen
    assert rise < 20 * 1024, f"RSS rose {rise} KiB"


def test_a_body_is_never_waited_for_and_pipelined_requests_are_answered_in_order() -> None:
    with serving(bare_app()) as address, socket.create_connection(address, timeout=5) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\nGET /readyz HTTP/1.1\r\nHost: t\r\n\r\n")
        sock.sendall(b"POST /-/reload HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000\r\n\r\n")
        started = time.monotonic()
        answers = abuse.until_eof(sock)  # the server closes after the request with a body, never reading it
        elapsed = time.monotonic() - started
    assert elapsed < SHORT.header_timeout, elapsed
    assert answers.count(b"HTTP/1.1 ") == 3 and answers.index(b"ok\n") < answers.index(b"ready\n")
    assert answers.rsplit(b"HTTP/1.1 ", 1)[1].startswith(b"503 ") and b"Connection: close" in answers


# --- idle connections ---------------------------------------------------------------------------------------


def test_a_kept_alive_connection_is_closed_after_the_idle_timeout() -> None:
    with serving(bare_app()) as address:
        closed = abuse.idle_after_request(address, 5.0)
    assert closed is not None and SHORT.idle_timeout * 0.8 <= closed < SHORT.idle_timeout + 1.0


def test_tls_connections_silent_after_the_handshake_or_a_request_are_closed(tmp_path: Path) -> None:
    ca = CA(tmp_path)
    cert, key = ca.issue("exporter")
    client = ssl.create_default_context(cafile=str(ca.ca_file))
    holder = protected(tmp_path, {"cert_file": str(cert), "key_file": str(key)})
    with serving(bare_app(), web=holder) as address:
        silent = abuse.idle_after_handshake(address, client, 5.0)
        with client.wrap_socket(socket.create_connection(address, timeout=5), server_hostname="127.0.0.1") as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
            assert sock.recv(4096).startswith(b"HTTP/1.1 200 ")
            idle = abuse.closed_after(sock, 5.0)
        plain = raw(address, b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
    assert silent is not None and silent < SHORT.header_timeout + 1.0
    assert idle is not None and idle < SHORT.idle_timeout + 1.0
    assert plain.startswith(b"HTTP/1.1 400 ")


# --- HEAD ---------------------------------------------------------------------------------------------------


def test_head_answers_headers_only_and_collects_nothing(sim: Simulator, sim_app: ExporterApp) -> None:
    with serving(sim_app) as address:
        counted = abuse.upstream_requests(sim)
        metrics = raw(address, b"HEAD /metrics HTTP/1.1\r\nHost: t\r\n\r\n")
        probe = raw(address, b"HEAD /probe?target=sim-siren HTTP/1.1\r\nHost: t\r\n\r\n")
        assert abuse.upstream_requests(sim) == counted
        for path in (b"/healthz", b"/readyz", b"/", b"/nowhere", b"/-/reload"):
            answer = raw(address, b"HEAD " + path + b" HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            assert answer.endswith(b"\r\n\r\n") and answer.count(b"\r\n\r\n") == 1, answer
    assert metrics.startswith(b"HTTP/1.1 200 ") and metrics.endswith(b"\r\n\r\n") and b"Content-Type:" in metrics
    assert probe.startswith(b"HTTP/1.1 200 ") and probe.endswith(b"\r\n\r\n")


# --- raw bytes ----------------------------------------------------------------------------------------------

METHODS = st.sampled_from([b"GET", b"HEAD", b"POST", b"PUT", b"get", b"", b"\x00", b"CONNECT", b"OPTIONS"])
TARGETS = st.sampled_from(
    [b"/metrics", b"/healthz", b"/probe?target=x", b"*", b"http://a/", b"/%zz", b"/-/reload", b""]
)
VERSIONS = st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0", b"HTTP/1", b"HTTP/9.9", b"FOO", b""])
LINES = st.lists(
    st.binary(max_size=60)
    | st.sampled_from(
        [
            b"Content-Length: 5",
            b"Transfer-Encoding: chunked",
            b"Expect: 100-continue",
            b"Content-Length: -1",
            b"Host: a",
            b" folded",
        ]
    ),
    max_size=6,
)


@st.composite
def requests_bytes(draw: st.DrawFn) -> bytes:
    if draw(st.booleans()):
        return draw(st.binary(max_size=300))
    line = b" ".join([draw(METHODS), draw(TARGETS), draw(VERSIONS)])
    ending = draw(st.sampled_from([b"\r\n", b"\n", b"\r"]))
    return ending.join([line, *draw(LINES), b"", draw(st.binary(max_size=20))])


@pytest.fixture(scope="module")
def fuzzed() -> Iterator[Address]:
    with serving(bare_app()) as address:
        yield address


@settings(max_examples=150, deadline=3000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(request=requests_bytes())
def test_any_bytes_get_a_status_line_or_a_close_and_the_server_lives_on(fuzzed: Address, request: bytes) -> None:
    answer = raw(fuzzed, request)
    assert answer == b"" or (answer[:9] in (b"HTTP/1.1 ", b"HTTP/1.0 ") and answer[9:12].isdigit()), answer[:200]
    assert ask(fuzzed, "/healthz", timeout=5).status == 200


# --- SIGTERM ------------------------------------------------------------------------------------------------


def test_sigterm_turns_readyz_503_and_lets_scrapes_in_flight_answer(tmp_path: Path) -> None:
    """One scrape held by a slow upstream is cut at the grace, one with a short budget answers within it;
    /readyz is 503 from the signal on, and the process exits once both have answered."""
    with Simulator(SimulatorOptions(host="127.0.0.1", port=0, jobs=2, platforms=["informatica"])) as sim:
        config = tmp_path / "config.yml"
        document = simulated_config(sim, tmp_path)
        config.write_text(yaml.safe_dump({**document, "scrape_budget_seconds": 30}))
        sim.faults.add({"platform": "informatica", "endpoint": "status", "kind": "latency", "seconds": 60})
        with abuse.running(config) as exporter:
            answers: dict[str, abuse.Answer] = {}

            def scrape(name: str, timeout_header: str) -> None:
                connection = abuse.http.client.HTTPConnection(*exporter.address, timeout=30)
                started = time.monotonic()
                connection.request("GET", "/metrics", headers={"X-Prometheus-Scrape-Timeout-Seconds": timeout_header})
                response = connection.getresponse()
                answers[name] = abuse.Answer(response.status, time.monotonic() - started, response.read())

            scrapers = [
                threading.Thread(target=scrape, args=("long", "30"), daemon=True),
                threading.Thread(target=scrape, args=("short", "1.5"), daemon=True),
            ]
            for thread in scrapers:
                thread.start()
            assert abuse.wait_for(lambda: sim.stats().get(("informatica", "status", "GET"), 0) >= 1, 10.0)
            started = time.monotonic()
            exporter.process.send_signal(abuse.signal.SIGTERM)
            readyz = ask(exporter.address, "/readyz", timeout=5)
            healthz = ask(exporter.address, "/healthz", timeout=5)
            exporter.process.wait(15)
            exited = time.monotonic() - started
            for thread in scrapers:
                thread.join(10)
    assert readyz.status == 503 and readyz.seconds < 0.5
    assert healthz.status == 200
    assert answers["short"].status == 200 and answers["short"].seconds < 1.5 + 0.5
    assert answers["long"].status == 200 and answers["long"].seconds < SHUTDOWN_GRACE_SECONDS + 1.5
    assert exited < SHUTDOWN_GRACE_SECONDS + 1.0
    assert exporter.process.returncode == 0


# --- flags --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "flag",
    [
        "--web.max-requests=-1",
        "--web.max-requests=1001",
        "--web.max-requests=²",
        "--web.header-timeout=0",
        "--web.header-timeout=nan",
        "--web.header-timeout=inf",
        "--web.idle-timeout=1e300",
        "--web.idle-timeout=soon",
    ],
)
def test_a_bad_server_flag_exits_2_naming_it(flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_args([flag])
    assert exited.value.code == 2
    assert flag.split("=")[0] in capsys.readouterr().err


def test_server_flags_have_the_documented_defaults() -> None:
    args = parse_args([])
    assert (args.max_requests, args.header_timeout, args.idle_timeout) == (40, 10.0, 120.0)


def test_the_probe_runs_and_prints_every_row() -> None:
    """python -m benchmarks.abuse, small and with short timeouts: every row of the README's table, each holding."""
    small = ["--clients", "20", "--slow", "20", "--flood", "3"]
    short = ["--flag=--web.header-timeout=0.5", "--flag=--web.idle-timeout=0.5"]
    done = abuse.subprocess.run(
        [abuse.sys.executable, "-m", "benchmarks.abuse", *small, *short],
        cwd=abuse.ROOT,
        capture_output=True,
        text=True,
        timeout=50,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    cells = [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in done.stdout.splitlines()[2:]]
    rows = {probe: figure for probe, figure in cells}
    assert rows["20 concurrent GET /healthz"].startswith("20/20 answered 200"), rows
    assert "0 other" in rows["20 concurrent GET /metrics"]
    assert rows["20 connections sending headers a byte a second"].startswith("20/20 closed"), rows
    assert rows["3 connections x 100 headers x 64 KiB, no credentials"].startswith("3 x 431"), rows
    assert rows["HEAD /metrics"].startswith("200, 0 body bytes, 0 upstream requests"), rows
    assert rows["idle kept-alive connection after a request"].startswith("closed after 0."), rows
    assert rows["TLS connection silent after its handshake"].startswith("closed after 0."), rows
    assert "answered 200" in rows["SIGTERM during a scrape held by a 60 s upstream"], rows
