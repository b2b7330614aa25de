"""The churn soak's short version: two simulated days in 200 scrapes, the figures printed (`pytest -s`).

The month: `python -m benchmarks.run --churn` (see benchmarks/churn.py and the README).
"""

from __future__ import annotations

from benchmarks import churn

JOBS = 25


def test_two_days_of_churn_renewals_and_rotations_leave_nothing_larger() -> None:
    report = churn.run(2, 200, JOBS, rotate_every=5, seed=1)
    print(f"\nchurn soak (short):\n{report.text()}")
    assert report.problems() == [], report.text()
    # The jobs really churned: the platforms that list every job each scrape showed far more than are live.
    assert min(report.job_ids["siren"], report.job_ids["cloudstream"]) > 40 * JOBS
    assert min(report.job_ids["informatica"], report.job_ids["dataarts"]) > 10 * JOBS
    assert report.run_ids > 10 * JOBS
    # Tokens and sessions expired and were renewed, beyond the one login of each configuration.
    configurations = report.reloads + 1
    assert set(report.logins) == {"informatica POST login_v3", "dataarts POST iam_token", "cloudstream POST iam_token"}
    assert all(logins > 1.5 * configurations for logins in report.logins.values()), report.logins
    assert all(report.refused[f"sim-{platform}"] for platform in ("informatica", "dataarts", "cloudstream"))
    # Every platform's secret was rotated, and every reload took it.
    assert report.rotations == 200 // 5 and report.reloads == report.rotations
    assert len(report.samples) >= 30 and report.overruns == 0
