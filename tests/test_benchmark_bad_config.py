"""The hostile-configuration benchmark stays runnable, and its table shows what the README's "now" column says."""

from __future__ import annotations

import pytest

from benchmarks.bad_config import QUICK
from tests.helpers import run_benchmark

pytestmark = pytest.mark.timeout(120)


def test_every_case_is_refused_in_one_line_and_every_failed_login_is_refused() -> None:
    done = run_benchmark("bad_config", "--ids", "1000", "--quick", timeout=100)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [
        [cell.strip() for cell in line.strip("|").split("|")] for line in done.stdout.splitlines() if line[:2] == "| "
    ]
    checks = [row for row in rows if len(row) == 7 and row[1] != "exit"]
    assert [row[0] for row in checks] == list(QUICK)
    for name, code, lines, _bytes, traceback, secret, _seconds in checks:
        assert (code, lines, traceback, secret) == ("2", "1", "no", "no"), name
    measured = {row[0]: row[1] for row in rows if len(row) == 2}
    assert measured["reload of a binary config file"] == "HTTP 500, 2 lines, gauge 0"
    assert measured["1,000 job ids, one duplicate"].endswith("(ValidationError)")
    logins = [figure for name, figure in measured.items() if name.startswith("failed login")]
    assert len(logins) == 4 and all(figure.endswith(" ms, refused") for figure in logins), logins
