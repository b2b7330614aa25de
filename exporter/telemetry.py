"""The exporter's own metrics: upstream calls, errors by reason, build info.

They live on the exporter's registry (never the process-global one) so tests and reloads start clean.
"""

from __future__ import annotations

import functools
import platform as python_platform
import threading
from collections.abc import Collection
from typing import Literal, get_args

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from exporter import __version__
from exporter.metrics import NAMESPACE
from exporter.sharding import Shard

Reason = Literal["auth", "timeout", "connection", "http_status", "rate_limited", "invalid_response"]
"""Why an upstream call failed: the `reason` label of ingestion_scrape_errors_total."""
ERROR_REASONS: tuple[Reason, ...] = get_args(Reason)

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Telemetry:
    """Self-metrics shared by every target's collector and HTTP client.

    The per-target series are those of the targets in force (`serve`): a target a reload removed loses its
    series then, and a collection of it still running adds none back.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self._lock = threading.Lock()
        self._in_force: frozenset[tuple[str, str]] | None = None  # None: no configuration yet, every target counts
        self._started: set[tuple[str, str]] = set()  # targets given series, in force or only built
        self.scrape_errors = Counter(
            "scrape_errors",
            "Upstream errors met while collecting, by classified reason.",
            ("platform", "target", "reason"),
            namespace=NAMESPACE,
            registry=registry,
        )
        self.upstream_requests = Counter(
            "upstream_requests",
            "HTTP requests sent upstream, by endpoint and outcome (status code or error reason).",
            ("platform", "target", "endpoint", "outcome"),
            namespace=NAMESPACE,
            registry=registry,
        )
        self.upstream_latency = Histogram(
            "upstream_request_duration_seconds",
            "Latency of upstream HTTP requests, in seconds.",
            ("platform", "target", "endpoint"),
            namespace=NAMESPACE,
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        build = Gauge(
            "exporter_build_info",
            "Version of the exporter and of the Python running it; always 1.",
            ("version", "python_version"),
            namespace=NAMESPACE,
            registry=registry,
        )
        build.labels(__version__, python_platform.python_version()).set(1)
        gauge = functools.partial(Gauge, namespace=NAMESPACE, registry=registry)
        self.config_reload_success = gauge(
            "config_last_reload_successful",
            "1 when the last configuration load succeeded, 0 after a reload was refused.",
        )
        self.config_reload_timestamp = gauge(
            "config_last_reload_success_timestamp_seconds",
            "When the configuration in force was loaded, at start or by the last successful reload.",
        )
        self.shard_ordinal = gauge(
            "exporter_shard_ordinal",
            "Which shard of the jobs this process collects, from 0 (see ingestion_exporter_total_shards).",
        )
        self.total_shards = gauge(
            "exporter_total_shards", "How many exporter processes share the jobs; 1 when this one collects them all."
        )
        self.config_reload_success.set(1)
        self.config_reload_timestamp.set_to_current_time()

    def serve(self, targets: Collection[tuple[str, str]]) -> None:
        """The (platform, target) pairs of the configuration going into force: every other target's series go
        (those of a configuration that failed to build too)."""
        per_target = (self.scrape_errors, self.upstream_requests, self.upstream_latency)
        with self._lock:
            self._in_force = frozenset(targets)
            gone, self._started = self._started - self._in_force, set(self._in_force)
            for platform, target in gone:
                for metric in per_target:
                    metric.remove_by_labels({"platform": platform, "target": target})

    def count_error(self, platform: str, target: str, reason: Reason) -> None:
        with self._lock:
            if self._counts(platform, target):
                self.scrape_errors.labels(platform, target, reason).inc()

    def count_request(self, platform: str, target: str, endpoint: str, outcome: str, seconds: float) -> None:
        with self._lock:
            if self._counts(platform, target):
                self.upstream_requests.labels(platform, target, endpoint, outcome).inc()
                self.upstream_latency.labels(platform, target, endpoint).observe(seconds)

    def _counts(self, platform: str, target: str) -> bool:
        return self._in_force is None or (platform, target) in self._in_force

    def start_target(self, platform: str, target: str) -> None:
        """Create every reason's series at 0 so `increase()` sees the first error."""
        with self._lock:
            self._started.add((platform, target))
        for reason in ERROR_REASONS:
            self.scrape_errors.labels(platform, target, reason)

    def shard(self, shard: Shard) -> None:
        self.shard_ordinal.set(shard.ordinal)
        self.total_shards.set(shard.total)
