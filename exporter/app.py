"""The composition root: settings -> runners -> the HTTP app, and where a configuration comes from.

Everything one exporter process shares is made here once: its own metrics registry, the telemetry on it, the
exposition and the pool of upstream workers. A configuration becomes runners (one per target, each with its
collector, HTTP session, lane of the pool, error tracker and secret sink); a reload builds new runners the same
way and swaps them in.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import structlog
from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector

from exporter.collectors import COLLECTORS, platform_families, target_models
from exporter.collectors.base import ErrorTracker, SecretSink
from exporter.exposition import Exposition
from exporter.http import Upstream
from exporter.metrics import all_families
from exporter.scrape import Runners, TargetRunner
from exporter.server import ExporterApp
from exporter.settings import ConfigError, RootSettings, TargetSettings, load_settings, settings_model
from exporter.telemetry import Telemetry
from exporter.workers import DaemonPool

if TYPE_CHECKING:
    from exporter.demo import Demo

log = structlog.get_logger("exporter")


def root_model() -> type[RootSettings]:
    """The settings model of every registered platform."""
    return settings_model(target_models())


def load(
    model: type[RootSettings], path: Path | None, shard: int | None = None, total_shards: int | None = None
) -> RootSettings:
    """The configuration file's settings (with the environment's overrides and the command line's shard), or a
    ConfigError."""
    settings = load_settings(model, path).with_shard(shard, total_shards)
    if not settings.all_targets():
        raise ConfigError(["targets: no targets configured; give --config.file FILE (or try --demo)"])
    return settings


def demo() -> Demo:
    """`--demo`: the simulator on loopback and a configuration file with a target on each platform it serves."""
    from exporter.demo import Demo  # imported only for --demo: a deployment never loads the simulator

    return Demo.start(list(COLLECTORS))


class Exporter:
    """One exporter: its own metrics, the HTTP app, and the runners of the configuration in force."""

    def __init__(
        self, settings: RootSettings, sinks: Callable[[], SecretSink], telemetry_path: str = "/metrics"
    ) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)  # python_gc_*: see cli.collect_young_garbage_less_often
        self.telemetry = Telemetry(self.registry)
        self._sinks = sinks
        self.pool = DaemonPool()  # lives with the process: reloads open and close lanes on it
        exposition = Exposition(all_families(platform_families()))
        self.app = ExporterApp(self.build(settings), exposition, self.registry, telemetry_path)

    def build(self, settings: RootSettings) -> Runners:
        """A runner per configured target, each with its collector, HTTP session, error tracker and secret sink:
        the configuration going into force (the caller serves them next). Targets it no longer has leave the
        self-metrics now, and a collection of theirs still running adds no series back.

        Should a target fail to build, those built before it are closed again (their secrets leave the redactor).
        """
        runners = Runners([])
        try:
            for target in settings.all_targets():
                runners.add(self._runner(settings, target))
        except Exception:
            runners.close()
            raise
        self.telemetry.serve([(runner.platform, name) for name, runner in runners.by_name.items()])
        self.telemetry.shard(settings.sharding())
        return runners

    def _runner(self, settings: RootSettings, target: TargetSettings) -> TargetRunner:
        platform = target.platform
        upstream = Upstream(platform, target, self.telemetry)
        collector = COLLECTORS[platform](target, upstream, self._sinks(), settings.sharding())
        self.telemetry.start_target(platform, target.name)
        if target.tls.insecure_skip_verify:
            log.warning("TLS verification is off for this target", target=target.name, platform=platform)
        return TargetRunner(
            collector,
            ErrorTracker(platform, target.name, self.telemetry),
            self.pool.lane(target.max_concurrency),
            settings.scrape_budget_seconds,
            settings.min_interval_seconds,
            settings.state_series,
        )

    def close(self) -> None:
        self.app.runners.close()
        self.pool.shutdown()
