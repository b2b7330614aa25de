"""Reload without restart: SIGHUP and `POST /-/reload` re-read the configuration, secret files and web config.

A new configuration is validated and its collectors built before anything changes; then the app serves
them from the next request on, and the old ones are closed once any collection still running on them has
had its budget. A configuration that fails validation is refused and logged, and the last good one keeps
serving. Secret files are re-read, so a rotated Kubernetes Secret takes effect.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import structlog

from exporter.app import Exporter
from exporter.scrape import GRACE_SECONDS, Runners
from exporter.settings import ConfigError, RootSettings
from exporter.webconfig import WebConfig, WebConfigHolder

log = structlog.get_logger("exporter.reload")


class Reloader:
    """Callable: `(ok, message)`; one reload at a time."""

    def __init__(
        self,
        exporter: Exporter,
        load: Callable[[], RootSettings],
        load_web: Callable[[], WebConfig] | None = None,
        web: WebConfigHolder | None = None,
        close_after: float | None = None,
    ) -> None:
        self._exporter = exporter
        self._telemetry = exporter.telemetry
        self._load = load
        self._load_web = load_web
        self._web = web
        self._close_after = close_after
        self._lock = threading.Lock()

    def __call__(self) -> tuple[bool, str]:
        with self._lock:
            try:
                settings = self._load()
                web = self._load_web() if self._load_web is not None else None
            except ConfigError as exc:
                return self._refuse(exc.lines)
            except Exception as exc:  # noqa: BLE001 - never a traceback; its text may quote the file, so not shown
                return self._refuse([f"the configuration could not be read ({type(exc).__name__})"])
            try:
                new = self._exporter.build(settings)  # each new target's secrets reach redaction first thing
            except Exception as exc:  # noqa: BLE001 - a reload must never take the running exporter down
                self._telemetry.config_reload_success.set(0)
                log.error(
                    "reload failed while building collectors; the running configuration stays in force",
                    error=f"{type(exc).__name__}: {exc}",
                )
                return False, f"reload failed: {type(exc).__name__}: {exc}"
            if web is not None and self._web is not None:
                self._web.current = web
            old = self._exporter.app.swap(new)
            self._retire(old)
            self._telemetry.config_reload_success.set(1)
            self._telemetry.config_reload_timestamp.set_to_current_time()
            log.info("configuration reloaded", targets=sorted(new.by_name))
            return True, f"configuration reloaded: {len(new.by_name)} targets"

    def _refuse(self, problems: list[str]) -> tuple[bool, str]:
        self._telemetry.config_reload_success.set(0)
        log.error("reload refused; the running configuration stays in force", problems=problems)
        return False, "reload refused; the running configuration stays in force:\n" + "\n".join(problems)

    def _retire(self, old: Runners) -> None:
        """Close the old collectors after the longest budget, so a collection in flight finishes first."""
        delay = self._close_after
        if delay is None:
            delay = max((r.budget_seconds for r in old.by_name.values()), default=0.0) + GRACE_SECONDS

        def close() -> None:
            time.sleep(delay)
            old.close()

        threading.Thread(target=close, name="retire-collectors", daemon=True).start()
