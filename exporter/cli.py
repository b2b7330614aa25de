"""Command line: flags, logging and process tuning, then the app (exporter.app); signals and exit codes."""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import functools
import gc
import math
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

import structlog
import yaml
from prometheus_client import disable_created_metrics

from exporter import __version__, app, logs
from exporter.httpserver import ServerLimits
from exporter.reload import Reloader
from exporter.scrapegate import DEFAULT_MAX_REQUESTS, MOST_MAX_REQUESTS
from exporter.server import serve
from exporter.settings import ConfigError, RootSettings, masked
from exporter.sharding import ordinal_of_pod
from exporter.webconfig import WebConfigHolder, load_web_config

MOST_SECONDS = 86400  # a day: a socket timeout must fit the operating system's
DEFAULT_LISTEN = ":9867"
DEMO_LISTEN = "127.0.0.1:9867"
log = structlog.get_logger("exporter")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="ingestion-exporter",
        description="Prometheus exporter for ingestion and stream jobs on Informatica, Huawei and Siren.",
    )
    parser.add_argument("--config.file", dest="config_file", type=Path, help="YAML configuration file.")
    parser.add_argument("--web.listen-address", dest="listen", help=f"Address to listen on (default {DEFAULT_LISTEN}).")
    parser.add_argument("--web.telemetry-path", dest="telemetry_path", default="/metrics", help="Metrics path.")
    parser.add_argument(
        "--web.config.file",
        dest="web_config_file",
        type=Path,
        help="TLS and basic auth for the exporter's endpoints (exporter-toolkit format).",
    )
    limits = ServerLimits()
    parser.add_argument(
        "--web.max-requests",
        dest="max_requests",
        type=_count,
        default=DEFAULT_MAX_REQUESTS,
        help=f"Scrapes of /metrics and /probe served at once; more get a 503 at once (0: no limit; at most "
        f"{MOST_MAX_REQUESTS}).",
    )
    parser.add_argument(
        "--web.header-timeout",
        dest="header_timeout",
        type=_seconds,
        default=limits.header_timeout,
        help="Seconds a client has for the TLS handshake and the request's headers, else it is disconnected.",
    )
    parser.add_argument(
        "--web.idle-timeout",
        dest="idle_timeout",
        type=_seconds,
        default=limits.idle_timeout,
        help="Seconds a kept-alive connection may wait for its next request, else it is closed.",
    )
    parser.add_argument("--log.level", dest="log_level", choices=logs.LEVELS, default="info")
    parser.add_argument(
        "--log.format",
        dest="log_format",
        choices=("json", "console"),
        help="Default: console on a terminal, json otherwise.",
    )
    parser.add_argument("--demo", action="store_true", help="Run against the built-in simulator on loopback.")
    parser.add_argument(
        "--check-config",
        dest="check_config",
        action="store_true",
        help="Validate the configuration, print it with secrets masked, exit 0 (valid) or 2.",
    )
    sharding = parser.add_mutually_exclusive_group()
    sharding.add_argument(
        "--shard", type=int, help="This process's shard of the jobs, from 0 (default: the config file's, else 0)."
    )
    sharding.add_argument(
        "--shard.from-pod-name",
        dest="shard_pod_name",
        metavar="POD_NAME",
        help="Take the shard from a StatefulSet pod's name, its ordinal suffix (ingestion-exporter-2: shard 2).",
    )
    parser.add_argument(
        "--total-shards", type=int, help="How many processes share the jobs (default: the config file's, else 1)."
    )
    parser.add_argument("--version", action="version", version=f"ingestion-exporter {__version__}")
    args = parser.parse_args(argv)
    if args.shard_pod_name is not None:
        args.shard = ordinal_of_pod(args.shard_pod_name)
        if args.shard is None:
            parser.error(f"--shard.from-pod-name: {args.shard_pod_name!r} does not end in -<ordinal>")
    if not args.telemetry_path.startswith("/") or args.telemetry_path in (
        "/",
        "/probe",
        "/healthz",
        "/readyz",
        "/-/reload",
    ):
        parser.error("--web.telemetry-path must be a path of its own, such as /metrics")
    return args


def _count(text: str) -> int:
    """0 to MOST_MAX_REQUESTS: each admitted scrape may hold a worker thread."""
    if not (text.isascii() and text.isdigit() and int(text) <= MOST_MAX_REQUESTS):
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number from 0 to {MOST_MAX_REQUESTS}")
    return int(text)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and 0 < value <= MOST_SECONDS):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds above 0 and up to {MOST_SECONDS}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    limit_malloc_arenas()
    collect_young_garbage_less_often()
    disable_created_metrics()  # type: ignore[no-untyped-call]  # `_created` series double the exposition; no dashboard reads them
    redactor = logs.Redactor()
    logs.configure(redactor, args.log_level, args.log_format)
    model = app.root_model()
    demo = app.demo() if args.demo else None
    config_file = demo.config if demo is not None else args.config_file
    try:
        return _run(args, model, config_file, redactor)
    finally:
        if demo is not None:
            demo.stop()


def _run(args: argparse.Namespace, model: type[RootSettings], config_file: Path | None, redactor: logs.Redactor) -> int:
    try:
        settings = app.load(model, config_file, args.shard, args.total_shards)
    except ConfigError as exc:
        for line in exc.lines:
            print(f"invalid configuration: {line}", file=sys.stderr)
        return 2
    try:
        web = WebConfigHolder(load_web_config(args.web_config_file) if args.web_config_file else None)
    except ConfigError as exc:
        for line in exc.lines:
            print(f"invalid web configuration: {line}", file=sys.stderr)
        return 2
    if args.check_config:
        print(yaml.safe_dump(masked(settings), sort_keys=False), end="")
        return 0
    log.info("configuration loaded", config=masked(settings))
    exporter = app.Exporter(settings, redactor.sink, args.telemetry_path)
    reloader = exporter.app.reload = Reloader(
        exporter,
        functools.partial(app.load, model, config_file, args.shard, args.total_shards),
        functools.partial(load_web_config, args.web_config_file) if args.web_config_file else None,
        web,
    )
    listen = args.listen or (DEMO_LISTEN if args.demo else DEFAULT_LISTEN)
    limits = ServerLimits(args.header_timeout, args.idle_timeout, args.max_requests)
    try:
        server = serve(exporter.app, listen, web, limits)
    except (OSError, ValueError) as exc:
        log.error("cannot listen", address=listen, error=str(exc))
        exporter.close()
        return 1

    def drain_and_stop() -> None:
        """Not ready at once; the scrapes in flight answer within the grace; then the server stops."""
        if not exporter.app.scrapes.drain():
            log.warning("scrapes still running at exit")
        server.shutdown()

    stopping = threading.Event()

    def stop(signum: int, _frame: FrameType | None) -> None:
        log.info("stopping", signal=signal.Signals(signum).name)
        exporter.app.ready.clear()
        if not stopping.is_set():
            stopping.set()
            threading.Thread(target=drain_and_stop, name="stop", daemon=True).start()

    def reload(_signum: int, _frame: FrameType | None) -> None:
        log.info("reloading", signal="SIGHUP")
        threading.Thread(target=reloader, name="reload", daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGHUP, reload)
    exporter.app.ready.set()
    host, port = server.server_address[:2]
    log.info(
        "listening",
        address=f"{host!s}:{port}",
        telemetry_path=args.telemetry_path,
        version=__version__,
        targets=len(exporter.app.runners.by_name),
        demo=args.demo,
        tls=web.current.ssl_context is not None,
    )
    try:
        server.serve_forever()
    finally:
        server.server_close()
        exporter.close()
    log.info("stopped")
    return 0


MALLOC_ARENAS = 2
GC_YOUNG_THRESHOLD = 10_000
_M_ARENA_MAX = -8  # glibc's mallopt parameter number


def collect_young_garbage_less_often(threshold: int = GC_YOUNG_THRESHOLD) -> None:
    """Run the cyclic garbage collector's youngest generation after `threshold` new container objects, not 700.

    A scrape of thousands of jobs creates a few hundred thousand samples that live until the next collection. With
    the default threshold they were traversed again as they aged, and their number triggered two collections of the
    whole heap per scrape: a seventh of the exporter's CPU at 2,000 jobs (README, Hot paths). Reference counting frees
    them; the collector is only for cycles, and a few thousand objects of those waiting longer is little memory.
    """
    gc.set_threshold(threshold, *gc.get_threshold()[1:])


def limit_malloc_arenas(arenas: int = MALLOC_ARENAS) -> bool:
    """Cap glibc's malloc arenas, as MALLOC_ARENA_MAX does; call before threads start.

    glibc gives threads arenas of their own (up to eight per core); upstream bodies read in the pool threads
    then leave every arena partly used. Two arenas hold the resident size lower (README, "Hand-built parts
    and why") at no measurable CPU cost. False where there is no glibc (nothing changes there).
    """
    if os.environ.get("MALLOC_ARENA_MAX"):
        return False  # the operator's own setting, already applied by glibc
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(_M_ARENA_MAX, arenas))
    except (OSError, AttributeError):
        return False
