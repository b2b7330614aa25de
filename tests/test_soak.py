"""The soak's short version: 300 scrapes under random faults, the figures printed (`pytest -s`).

The long one, 2,000 scrapes: `/tmp/venv/bin/python -m tests.soak --scrapes 2000` (see tests/soak.py).
"""

from __future__ import annotations

from tests import soak


def test_short_soak_leaks_nothing_and_never_sticks() -> None:
    report = soak.run(300, seed=1, echo=False)
    print(f"\nsoak (short):\n{report.text()}")
    assert report.scrapes == 300 and report.quiet_scrapes == 6, "the run's scrapes, and 3 at each quiet point"
    assert sum(report.faults.values()) > 50 and report.failed_scrapes > 0  # the faults did bite
    assert report.problems() == [], report.text()
    assert report.overruns == 0, report.text()
    # The quiet points count with upstream connections closed; during the run they are open, so more.
    assert report.start is not None and report.end is not None
    assert report.fds.low <= report.fds.high and report.fds.high > max(report.start.fds, report.end.fds)
    assert report.threads.high >= max(report.start.threads, report.end.threads)
