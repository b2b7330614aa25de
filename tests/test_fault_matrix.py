"""Every platform against every fault the simulator can inject, over real HTTP, with a printed matrix.

Each cell builds one exporter with two targets: the platform under test, served by a simulator that gets the
fault, and a healthy target of another platform served by a second simulator. One scrape before the fault,
one with it, one after it clears. With the fault on, /metrics must answer 200 within the budget, the faulted
target alone must report `ingestion_scrape_success 0` (or its jobs `unknown`), the expected reason must be
counted, and the log must say so in one JSON line without a traceback; after it clears, the next scrape must
be whole again.

Expected reason per fault (the column `reason` of the matrix):

| fault | reason | why |
|---|---|---|
| refused (`refuse`), stopped simulator | connection | no HTTP answer at all |
| hang past the budget | timeout | the read timeout is cut to what is left of the budget |
| 500, 502 with an HTML body | http_status | a non-2xx answer that is not about credentials or throttling |
| 429 with Retry-After | rate_limited | the target also backs off for Retry-After seconds |
| malformed JSON, empty body, oversized body | invalid_response | the body cannot be read as a document (size cap) |
| wrong types, missing fields | invalid_response | the document does not hold what the platform promises |
| unknown states | none | not an error: the vendor value is kept, the normalized state is `unknown` |
| auth rejected | auth | a 401 on the call and on the login it triggers; after it, an AK/SK target signs nothing |
| | | for `aksk_cooldown_seconds` (set to 1 s here), so its first scrape after that pause recovers |
| session or token expired | none | every session and token is dropped once: the exporter logs in again, once, and |
| | | the scrape succeeds (AK/SK signing and basic auth have no session: nothing changes) |

The matrix prints with `pytest -s` and is written to `fault-matrix.txt` in the test's tmp dir.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from exporter.server import ExporterApp
from exporter.simulator import Simulator, SimulatorOptions
from tests.conftest import Logged
from tests.helpers import SIMULATED, Samples, get, make_app, make_settings, parse, simulated, value

BUDGET = 1.5
ANSWER_LIMIT = BUDGET + 1.8  # the budget, the runner's grace and the exposition on a busy machine
HANG_SECONDS = 4 * BUDGET  # far past the answer limit: an answer in time never waited for the hang
AKSK_COOLDOWN = 1.0
RENEWS = {"informatica": "login_v3", "dataarts": "iam_token"}  # where a session or token comes from
PEER = {platform: SIMULATED[(index + 1) % len(SIMULATED)] for index, platform in enumerate(SIMULATED)}
"""Each platform's healthy neighbour in a cell: another platform, so a fault never spills into it unseen."""


@dataclass(frozen=True)
class Fault:
    name: str
    rule: dict[str, Any] | None  # None: the faulted simulator is stopped instead
    reason: str | None  # None: no error may be counted
    vendor_state: str | None = None  # the vendor value every job must show while the fault is on
    settle_seconds: float = 0.0  # how long the exporter is told to stay away after the fault (Retry-After)


FAULTS = (
    Fault("refused", {"kind": "refuse"}, "connection"),
    Fault("stopped", None, "connection"),
    Fault("hang", {"kind": "hang", "seconds": HANG_SECONDS}, "timeout"),
    Fault("500", {"kind": "error", "status": 500}, "http_status"),
    Fault("502 html", {"kind": "html_error"}, "http_status"),
    Fault("429", {"kind": "rate_limit", "retry_after": 1}, "rate_limited", settle_seconds=1.0),
    Fault("malformed", {"kind": "malformed"}, "invalid_response"),
    Fault("wrong types", {"kind": "wrong_types"}, "invalid_response"),
    Fault("missing fields", {"kind": "missing_fields"}, "invalid_response"),
    Fault("unknown state", {"kind": "unknown_state"}, None, vendor_state="quantum_flux"),
    Fault("empty", {"kind": "empty"}, "invalid_response"),
    Fault("oversized", {"kind": "oversized"}, "invalid_response"),
    Fault("auth", {"kind": "auth"}, "auth"),
    Fault("session expired", {"kind": "session_expired", "count": 1}, None),
)


@dataclass
class Cell:
    platform: str
    fault: Fault
    reasons: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    recovered: bool = False

    def row(self) -> str:
        counted = ",".join(sorted(self.reasons)) or "none"
        return (
            f"{self.platform:<12} {self.fault.name:<16} {counted:<17} "
            f"{'yes' if self.recovered else 'NO':<9} {self.seconds:5.2f}s"
        )


HEADER = f"{'platform':<12} {'fault':<16} {'reason':<17} {'recovered':<9} {'time':>6}"
CELLS: list[Cell] = []


@pytest.fixture(scope="module")
def sims() -> Iterator[tuple[Simulator, Simulator]]:
    options = SimulatorOptions(host="127.0.0.1", port=0, jobs=2, transition_seconds=3600, random_seed=7)
    with Simulator(options) as faulty, Simulator(options) as healthy:
        yield faulty, healthy


@pytest.fixture(scope="module", autouse=True)
def matrix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    yield
    if not CELLS:
        return
    text = "\n".join([HEADER, *(cell.row() for cell in CELLS)]) + "\n"
    path = Path(tmp_path_factory.mktemp("fault-matrix")) / "fault-matrix.txt"
    path.write_text(text)
    print(f"\nfault matrix ({len(CELLS)} cells, budget {BUDGET}s), also in {path}:\n{text}")


def signs(document: dict[str, Any]) -> bool:
    auth = document.get("auth")
    return isinstance(auth, dict) and auth.get("type") == "aksk"


def target(platform: str, name: str, sim: Simulator, secrets_dir: Path) -> dict[str, Any]:
    """The target `--demo` would configure, its secrets in files as in production."""
    document = simulated(sim, platform, name, secrets_dir)
    if signs(document):
        document["auth"]["aksk_cooldown_seconds"] = AKSK_COOLDOWN
    return document


def errors(samples: Samples, name: str) -> dict[str, float]:
    return {
        dict(labels)["reason"]: v
        for (metric, labels), v in samples.items()
        if metric == "ingestion_scrape_errors_total" and dict(labels)["target"] == name
    }


def job_states(samples: Samples, name: str, family: str = "ingestion_job_state", key: str = "state") -> dict[str, str]:
    return {
        dict(labels)["job_id"]: dict(labels)[key]
        for (metric, labels), v in samples.items()
        if metric == family and v == 1.0 and dict(labels)["target"] == name
    }


def timed_scrape(app: ExporterApp) -> tuple[Samples, float]:
    started = time.monotonic()
    status, body = get(app, "/metrics")
    elapsed = time.monotonic() - started
    assert status.startswith("200"), status
    return parse(body), elapsed


def assert_whole(samples: Samples, name: str, jobs: int) -> None:
    assert value(samples, "ingestion_scrape_success", target=name) == 1, name
    states = job_states(samples, name)
    assert len(states) == jobs and "unknown" not in states.values(), (name, states)


def logins_since(sim: Simulator, before: dict[tuple[str, str, str], int], endpoint: str) -> int:
    return sum(n - before.get(key, 0) for key, n in sim.stats().items() if key[1] == endpoint)


def log_lines(logged: Logged, start: int) -> list[dict[str, Any]]:
    text = logged.text()[start:]
    assert "Traceback" not in text, text
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.mark.parametrize("fault", FAULTS, ids=[fault.name.replace(" ", "_") for fault in FAULTS])
@pytest.mark.parametrize("platform", SIMULATED)
def test_fault_cell(
    sims: tuple[Simulator, Simulator],
    logged: Logged,
    tmp_path: Path,
    platform: str,
    fault: Fault,
) -> None:
    faulty_sim, healthy_sim = sims
    faulty, healthy, peer = f"faulty-{platform}", f"healthy-{PEER[platform]}", PEER[platform]
    documents = [target(platform, faulty, faulty_sim, tmp_path), target(peer, healthy, healthy_sim, tmp_path)]
    app = make_app(make_settings(documents, scrape_budget_seconds=BUDGET))
    signed = signs(documents[0])
    settle = AKSK_COOLDOWN if fault.reason == "auth" and signed else fault.settle_seconds
    jobs = {name: len(sim.jobs(p)) for name, sim, p in ((faulty, faulty_sim, platform), (healthy, healthy_sim, peer))}
    cell = Cell(platform, fault)
    CELLS.append(cell)  # printed even when an assertion below fails: recovered stays "NO"
    try:
        before, _ = timed_scrape(app)
        assert_whole(before, faulty, jobs[faulty])
        assert_whole(before, healthy, jobs[healthy])
        logins = dict(faulty_sim.stats())
        mark = len(logged.text())
        if fault.rule is None:
            faulty_sim.stop()
        else:
            faulty_sim.faults.add({**fault.rule, "platform": platform})
        during, cell.seconds = timed_scrape(app)
        lines = log_lines(logged, mark)

        assert cell.seconds < ANSWER_LIMIT, f"/metrics took {cell.seconds:.2f}s"
        assert_whole(during, healthy, jobs[healthy])
        cell.reasons = {
            r: n - errors(before, faulty).get(r, 0)
            for r, n in errors(during, faulty).items()
            if n > errors(before, faulty).get(r, 0)
        }
        states = job_states(during, faulty)
        assert len(states) == jobs[faulty], states  # no job vanishes
        warnings = [
            line
            for line in lines
            if line["level"] in ("warning", "error")
            and line["event"] != "vendor state not in the mapping; reported as unknown"
        ]
        if fault.reason is None:
            assert cell.reasons == {}, cell.reasons
            assert value(during, "ingestion_scrape_success", target=faulty) == 1
            assert warnings == [], warnings
            if fault.vendor_state is not None:
                assert set(states.values()) == {"unknown"}, states
                vendor = job_states(during, faulty, "ingestion_job_vendor_state", "vendor_state")
                assert set(vendor.values()) == {fault.vendor_state}, vendor
            else:
                assert "unknown" not in states.values(), states
        else:
            assert set(cell.reasons) == {fault.reason}, cell.reasons
            assert value(during, "ingestion_scrape_success", target=faulty) == 0
            assert "unknown" in states.values(), states
            assert len(warnings) == 1, warnings
            line = warnings[0]
            assert line["event"] == "upstream call failed" and line["reason"] == fault.reason, line
            assert line["platform"] == platform and line["target"] == faulty and line["error"], line
        if fault.name == "session expired" and platform in RENEWS:
            assert logins_since(faulty_sim, logins, RENEWS[platform]) == 1
    finally:
        faulty_sim.faults.clear()
        if fault.rule is None:
            faulty_sim.start()
    time.sleep(settle)
    mark = len(logged.text())
    after, _ = timed_scrape(app)
    assert_whole(after, faulty, jobs[faulty])
    assert_whole(after, healthy, jobs[healthy])
    recovered = [line for line in log_lines(logged, mark) if line["event"] == "upstream call recovered"]
    assert len(recovered) == (0 if fault.reason is None else 1), recovered
    cell.recovered = True
    app.runners.close()
