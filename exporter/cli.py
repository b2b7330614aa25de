"""Command line: flags -> settings -> logging -> collectors -> HTTP server, and a clean stop on signals."""

from __future__ import annotations

import argparse
import functools
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

import structlog
import yaml
from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector

from exporter import __version__, logs
from exporter.collectors import COLLECTORS, platform_families, target_models
from exporter.collectors.base import ErrorTracker
from exporter.http import Upstream
from exporter.reload import Reloader
from exporter.scrape import ExporterCollector, TargetRunner
from exporter.server import ExporterApp, serve
from exporter.settings import ConfigError, RootSettings, load_settings, masked, settings_model
from exporter.telemetry import Telemetry
from exporter.webconfig import WebConfigHolder, load_web_config
from exporter.workers import limit_malloc_arenas

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
    parser.add_argument("--version", action="version", version=f"ingestion-exporter {__version__}")
    args = parser.parse_args(argv)
    if not args.telemetry_path.startswith("/") or args.telemetry_path in (
        "/",
        "/probe",
        "/healthz",
        "/readyz",
        "/-/reload",
    ):
        parser.error("--web.telemetry-path must be a path of its own, such as /metrics")
    return args


def build(settings: RootSettings, registry: CollectorRegistry, telemetry: Telemetry | None = None) -> ExporterCollector:
    """A runner per configured target, each with its collector, HTTP session and error tracker.

    A reload passes the telemetry already registered, so the exporter's own counters carry on.
    """
    telemetry = telemetry or Telemetry(registry)
    runners = []
    for target in settings.all_targets():
        platform = getattr(target, "platform")  # noqa: B009 - every platform model declares it
        collector = COLLECTORS[platform](target, Upstream(platform, target, telemetry))
        telemetry.start_target(platform, target.name)
        if target.tls.insecure_skip_verify:
            log.warning("TLS verification is off for this target", target=target.name, platform=platform)
        runners.append(
            TargetRunner(
                collector,
                ErrorTracker(platform, target.name, telemetry),
                settings.scrape_budget_seconds,
                settings.min_interval_seconds,
                settings.state_series,
            )
        )
    return ExporterCollector(runners, platform_families())


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    limit_malloc_arenas()
    logs.configure(args.log_level, args.log_format)
    model = settings_model(target_models())
    simulator = None
    try:
        if args.demo:
            from exporter.demo import start_demo  # the one place the simulator meets the exporter

            simulator, settings = start_demo(model)
        else:
            settings = _load(model, args.config_file)
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
    logs.REDACTOR.replace(settings.secret_values())
    if args.check_config:
        print(yaml.safe_dump(masked(settings), sort_keys=False), end="")
        return 0
    log.info("configuration loaded", config=masked(settings))
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    telemetry = Telemetry(registry)
    collector = build(settings, registry, telemetry)
    app = ExporterApp(collector, registry, args.telemetry_path)
    demo_settings = settings
    reloader = app.reload = Reloader(
        app,
        (lambda: demo_settings) if args.demo else functools.partial(_load, model, args.config_file),
        lambda new: build(new, registry, telemetry),
        telemetry,
        functools.partial(load_web_config, args.web_config_file) if args.web_config_file else None,
        web,
    )
    listen = args.listen or (DEMO_LISTEN if args.demo else DEFAULT_LISTEN)
    try:
        server = serve(app, listen, web)
    except (OSError, ValueError) as exc:
        log.error("cannot listen", address=listen, error=str(exc))
        return 1

    def stop(signum: int, _frame: FrameType | None) -> None:
        log.info("stopping", signal=signal.Signals(signum).name)
        app.ready.clear()
        threading.Thread(target=server.shutdown, daemon=True).start()

    def reload(_signum: int, _frame: FrameType | None) -> None:
        log.info("reloading", signal="SIGHUP")
        threading.Thread(target=reloader, name="reload", daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGHUP, reload)
    app.ready.set()
    host, port = server.server_address[:2]
    log.info(
        "listening",
        address=f"{host!s}:{port}",
        telemetry_path=args.telemetry_path,
        version=__version__,
        targets=len(collector.runners),
        demo=args.demo,
        tls=web.current.ssl_context is not None,
    )
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        app.collector.close()
        if simulator is not None:
            simulator.stop()
    log.info("stopped")
    return 0


def _load(model: type[RootSettings], path: Path | None) -> RootSettings:
    settings = load_settings(model, path)
    if not settings.all_targets():
        raise ConfigError(["targets: no targets configured; give --config.file FILE (or try --demo)"])
    return settings
