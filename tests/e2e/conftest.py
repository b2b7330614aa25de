"""The end-to-end stack tests: simulator, exporter, Prometheus, Alertmanager and a webhook on loopback.

They run by default (CI included); `-m "not e2e"` leaves them out on a quick local run. A missing
Prometheus or Alertmanager binary fails them, it never skips them.
"""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "e2e: starts the simulator, the exporter, Prometheus and Alertmanager on loopback (about a minute)"
    )
