"""The simulator over real HTTP on loopback: vendor shapes, life cycle, faults, control API, restarts."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from exporter.simulator import FaultRule, Simulator, SimulatorOptions
from exporter.simulator.platforms import PLATFORMS
from exporter.simulator.process import announced
from exporter.simulator.process import command as simulator_command

INFA = "informatica"
SISVC = "/sisvc/monitor/v1"
SEEDS = Path(__file__).parents[1] / "exporter" / "simulator" / "seeds"
API_DOCS = Path(__file__).resolve().parents[1] / ".." / "shared" / "api-docs"  # CI clones beside ../shared
SEED_FLOW = "1948938e-3923-4602-aba8-f122e3d66faf"
ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+0000")


def options(**changes: Any) -> SimulatorOptions:
    """Informatica only, so that these tests do not depend on the other platform modules."""
    return SimulatorOptions(**{"platforms": [INFA], **changes})


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator(options(jobs=8)) as running:
        yield running


def login(sim: Simulator) -> str:
    reply = requests.post(f"{sim.url}/saas/public/core/v3/login", json=sim.credentials[INFA], timeout=5)
    assert reply.status_code == 200, reply.text
    session: str = reply.json()["userInfo"]["sessionId"]
    return session


def get(sim: Simulator, path: str, session: str, timeout: float = 5) -> requests.Response:
    return requests.get(sim.url + path, headers={"IDS-SESSION-ID": session}, timeout=timeout)


def flow_ids(sim: Simulator) -> list[str]:
    return [job["id"] for job in sim.jobs(INFA)]


def status(sim: Simulator, session: str, flow: str) -> dict[str, Any]:
    reply = get(sim, f"{SISVC}/status/dataflows/{flow}", session)
    assert reply.status_code == 200, reply.text
    document: dict[str, Any] = reply.json()
    return document


def statistics(sim: Simulator, session: str, flow: str) -> requests.Response:
    return get(sim, f"{SISVC}/statistics/dataflows/{flow}?intervals=30&overall=true", session)


def example(page: str) -> Any:
    """The JSON example of an api-docs page: the vendor's own word, so a missing page fails the test."""
    pages = list(API_DOCS.glob(f"{page}_*.txt"))
    if not pages:
        pytest.fail(f"api-docs page {page} not found under {API_DOCS.resolve()}: clone the repository beside shared/")
    text = pages[0].read_text()
    return json.loads(text[text.index("\n{\n") + 1 :])


# --- authentication ------------------------------------------------------------------------------------


def test_login_v3_gives_a_session_and_the_base_api_url(sim: Simulator) -> None:
    reply = requests.post(f"{sim.url}/saas/public/core/v3/login", json=sim.credentials[INFA], timeout=5)
    body = reply.json()
    assert reply.status_code == 200
    assert body["products"] == [{"name": "Integration Cloud", "baseApiUrl": f"{sim.url}/saas"}]
    assert {"sessionId", "id", "name", "orgId", "orgName"} <= set(body["userInfo"])
    assert sim.credentials[INFA]["username"] == "monitor"


def test_login_v3_with_a_bad_password_is_401_ids_085(sim: Simulator) -> None:
    reply = requests.post(
        f"{sim.url}/saas/public/core/v3/login", json={"username": "monitor", "password": "wrong"}, timeout=5
    )
    assert reply.status_code == 401
    error = reply.json()["error"]
    assert (error["code"], error["message"]) == ("IDS_085", "Invalid user name or password.")
    assert error["details"] is None
    assert error["requestId"]


def test_login_v2_gives_ic_session_id_and_bad_password_is_403(sim: Simulator) -> None:
    url = f"{sim.url}/ma/api/v2/user/login"
    good = requests.post(url, json={"@type": "login", **sim.credentials[INFA]}, timeout=5)
    assert good.status_code == 200
    assert good.json()["@type"] == "user"
    assert good.json()["serverUrl"] == f"{sim.url}/saas"
    flow = flow_ids(sim)[0]
    assert get(sim, f"{SISVC}/status/dataflows/{flow}", good.json()["icSessionId"]).status_code == 200
    bad = requests.post(url, json={"@type": "login", "username": "monitor", "password": "x"}, timeout=5)
    assert bad.status_code == 403
    assert bad.json() == {
        "code": "UI_10000",
        "description": "Invalid user name or password.",
        "statusCode": 403,
        "@type": "error",
    }


def test_session_lives_while_used_expires_when_idle_and_a_new_login_works() -> None:
    with Simulator(options(session_idle_seconds=60)) as sim:
        session, flow = login(sim), flow_ids(sim)[0]
        for _ in range(3):
            sim.clock.advance(50)
            assert get(sim, f"{SISVC}/status/dataflows/{flow}", session).status_code == 200
        sim.clock.advance(61)
        expired = get(sim, f"{SISVC}/status/dataflows/{flow}", session)
        assert expired.status_code == 401
        assert expired.json()["error"]["code"] == "AUTH_01"
        assert get(sim, f"{SISVC}/status/dataflows/{flow}", login(sim)).status_code == 200


def test_missing_or_wrong_session_header_is_401(sim: Simulator) -> None:
    session, flow = login(sim), flow_ids(sim)[0]
    assert requests.get(f"{sim.url}{SISVC}/status/dataflows/{flow}", timeout=5).status_code == 401
    wrong_header = requests.get(
        f"{sim.url}{SISVC}/status/dataflows/{flow}", headers={"INFA-SESSION-ID": session}, timeout=5
    )
    assert wrong_header.status_code == 401
    assert get(sim, f"{SISVC}/status/dataflows/{flow}", "made-up").status_code == 401


def test_logout_ends_the_session(sim: Simulator) -> None:
    session, flow = login(sim), flow_ids(sim)[0]
    logout = requests.post(f"{sim.url}/saas/public/core/v3/logout", headers={"INFA-SESSION-ID": session}, timeout=5)
    assert logout.status_code == 204
    assert get(sim, f"{SISVC}/status/dataflows/{flow}", session).status_code == 401


# --- documents -----------------------------------------------------------------------------------------


def test_status_document_has_the_shape_of_page_000(sim: Simulator) -> None:
    session = login(sim)
    seed = json.loads((SEEDS / "informatica_status.json").read_bytes())
    document = status(sim, session, flow_ids(sim)[2])
    assert list(document) == list(seed)
    assert isinstance(document["runId"], int)
    assert abs(document["timestamp"] / 1000 - time.time()) < 5
    graph = json.loads(document["graph"])
    names = {node["name"] for node in graph["nodes"]}
    assert {node["serviceType"] for node in graph["nodes"]} == {"source", "target"}
    assert all(node["connectionId"] and isinstance(node["config"], list) for node in graph["nodes"])
    assert all(edge["from"] in names and edge["to"] in names for edge in graph["edges"])
    assert [(r["name"], r["id"]) for r in document["reports"]] == [
        (f"{document['dataflowName']}_{node['name']}", node["id"]) for node in graph["nodes"]
    ]


def test_flows_start_spread_over_states_with_both_healthy_spellings(sim: Simulator) -> None:
    session = login(sim)
    documents = [status(sim, session, flow) for flow in flow_ids(sim)]
    states = [document["status"] for document in documents]
    assert len(set(states[:3])) == 3
    assert {
        "Up and Running",
        "Running",
        "Running with Warning",
        "Running with Error",
        "Deploying",
        "Stopped",
        "Undeployed",
    } == set(states)
    warning = documents[states.index("Running with Warning")]
    assert [r["status"] for r in warning["reports"]] == ["Running", "Warning"]
    assert warning["reports"][-1]["message"]
    never = documents[states.index("Undeployed")]
    assert never["runId"] is None
    assert statistics(sim, session, never["dataflowId"]).status_code == 404
    assert get(sim, f"{SISVC}/history/dataflows/{never['dataflowId']}", session).json() == []


def test_jobs_record_has_the_shape_of_page_001(sim: Simulator) -> None:
    session, flow = login(sim), flow_ids(sim)[0]
    run_id = status(sim, session, flow)["runId"]
    record = get(sim, f"{SISVC}/jobs/{flow}/{run_id}", session).json()
    seed = json.loads((SEEDS / "informatica_job.json").read_bytes())
    assert list(record) == list(seed)
    assert (record["assetId"], record["runId"], record["assetType"]) == (flow, run_id, "SI_DATAFLOW")
    assert ISO.fullmatch(record["startTime"]) and ISO.fullmatch(record["endTime"])
    start, end = (time.strptime(record[key][:19], "%Y-%m-%dT%H:%M:%S") for key in ("startTime", "endTime"))
    assert abs(record["duration"] - (time.mktime(end) - time.mktime(start))) <= 1
    assert set(json.loads(record["extraData"])) == {"id", "version", "agentGroupId"}
    assert get(sim, f"{SISVC}/jobs/{flow}/1", session).status_code == 404
    assert get(sim, f"{SISVC}/jobs/{flow}/latest", session).json()["error"]["code"] == "SISVC_404"
    assert get(sim, f"{SISVC}/status/dataflows/nope", session).json()["error"]["code"] == "SISVC_404"


def test_statistics_need_intervals_and_grow_while_running(sim: Simulator) -> None:
    session, flow = login(sim), flow_ids(sim)[0]
    missing = get(sim, f"{SISVC}/statistics/dataflows/{flow}", session)
    assert missing.status_code == 400
    assert missing.json()["error"]["code"] == "SISVC_400"
    before = statistics(sim, session, flow).json()
    assert set(before) == {
        "dataflowId",
        "dataflowRunId",
        "startTime",
        "stopTime",
        "inMessages",
        "outMessages",
        "inBytes",
        "outBytes",
        "nodes",
    }
    assert before["stopTime"] is None and before["inMessages"] > 0
    assert {tuple(sorted(node)) for node in before["nodes"]} == {
        ("id", "inBytes", "inMessages", "name", "outBytes", "outMessages")
    }
    sim.clock.advance(10)
    after = statistics(sim, session, flow).json()
    assert 1000 <= after["inMessages"] - before["inMessages"] <= 5000
    assert after["outBytes"] > before["outBytes"]


def test_history_and_objects_list_runs_and_dataflows(sim: Simulator) -> None:
    session, flows = login(sim), flow_ids(sim)
    history = get(sim, f"{SISVC}/history/dataflows/{flows[0]}", session).json()
    assert history[0]["runId"] == status(sim, session, flows[0])["runId"]
    assert history[0]["undeployedAt"] is None
    assert [run["runId"] for run in history] == sorted((run["runId"] for run in history), reverse=True)
    url, infa = f"{sim.url}/saas/public/core/v3/objects", {"INFA-SESSION-ID": session}
    pages = [
        requests.get(url, params={"q": "type=='SI_DATAFLOW'", "limit": 3, "skip": skip}, headers=infa, timeout=5).json()
        for skip in (0, 3, 6)
    ]
    assert {page["count"] for page in pages} == {8}
    assert [obj["id"] for page in pages for obj in page["objects"]] == flows
    assert pages[0]["objects"][0]["path"] == f"Default/{sim.jobs(INFA)[0]['name']}"
    assert requests.get(url, params={"limit": 201}, headers=infa, timeout=5).status_code == 400
    assert requests.get(url, params={"q": "type=='MTT'"}, headers=infa, timeout=5).json()["count"] == 0
    assert requests.get(url, headers={"IDS-SESSION-ID": session}, timeout=5).status_code == 401


def test_redeploy_opens_a_new_run_with_fresh_counters(sim: Simulator) -> None:
    session, flow = login(sim), flow_ids(sim)[0]
    old_run = status(sim, session, flow)["runId"]
    platform = sim.platform(INFA)
    for state in ("Stopped", "Undeployed", "Deploying"):
        platform.set_state(flow, state)
    deploying = status(sim, session, flow)
    assert deploying["status"] == "Deploying" and deploying["runId"] > old_run
    new_run = deploying["runId"]
    fresh = statistics(sim, session, flow).json()
    assert (fresh["dataflowRunId"], fresh["inMessages"], fresh["outBytes"]) == (new_run, 0, 0)
    record = get(sim, f"{SISVC}/jobs/{flow}/{new_run}", session).json()
    assert (record["status"], record["endTime"], record["duration"]) == ("Deploying", None, None)
    assert get(sim, f"{SISVC}/jobs/{flow}/{old_run}", session).json()["status"] == "Undeployed"
    sim.clock.advance(30)
    platform.set_state(flow, "Up and Running")
    sim.clock.advance(5)
    assert statistics(sim, session, flow).json()["inMessages"] >= 500
    record = get(sim, f"{SISVC}/jobs/{flow}/{new_run}", session).json()
    assert record["duration"] == 30 and ISO.fullmatch(record["endTime"])
    history = get(sim, f"{SISVC}/history/dataflows/{flow}", session).json()
    assert [run["runId"] for run in history[:2]] == [new_run, old_run]
    assert history[1]["undeployedAt"] is not None


def test_flows_move_on_simulated_time_and_deterministically() -> None:
    same = options(jobs=8, transition_seconds=1)
    with Simulator(same) as sim, Simulator(same) as twin:
        assert sim.jobs(INFA) == twin.jobs(INFA)
        session = login(sim)
        before = {flow: status(sim, session, flow) for flow in flow_ids(sim)}
        sim.clock.advance(600)
        after = {flow: status(sim, session, flow) for flow in flow_ids(sim)}
    assert any(after[flow]["status"] != before[flow]["status"] for flow in before)
    assert any((after[flow]["runId"] or 0) > (before[flow]["runId"] or 0) for flow in before)
    assert all((after[flow]["runId"] or 0) >= (before[flow]["runId"] or 0) for flow in before)
    with Simulator(options(random_seed=2)) as other:
        assert other.jobs(INFA)[0]["id"] not in before


# --- seed mode -----------------------------------------------------------------------------------------


def test_seed_mode_serves_pages_000_and_001_verbatim() -> None:
    with Simulator(options(seed=True)) as sim:
        session = login(sim)
        assert sim.jobs(INFA) == [{"id": SEED_FLOW, "name": "testmonitor"}]
        page = get(sim, f"{SISVC}/status/dataflows/{SEED_FLOW}", session)
        assert page.content == (SEEDS / "informatica_status.json").read_bytes()
        assert page.json()["runId"] == 42563
        for run_id in (42563, 42559):
            record = get(sim, f"{SISVC}/jobs/{SEED_FLOW}/{run_id}", session)
            assert record.content == (SEEDS / "informatica_job.json").read_bytes()
        assert statistics(sim, session, SEED_FLOW).status_code == 404
        assert get(sim, f"{SISVC}/status/dataflows/{SEED_FLOW[:-1]}0", session).status_code == 404
        forced = requests.post(f"{sim.url}/_sim/{INFA}/jobs/{SEED_FLOW}/state", json={"state": "Stopped"}, timeout=5)
        assert forced.status_code == 400
    assert page.json() == example("000")
    assert record.json() == example("001")


# --- faults --------------------------------------------------------------------------------------------


def check_error(reply: requests.Response) -> None:
    assert reply.status_code == 503
    assert reply.json()["error"]["code"] == "SIM_503"


def check_html(reply: requests.Response) -> None:
    assert reply.status_code == 502
    assert reply.headers["Content-Type"].startswith("text/html")
    assert b"<html>" in reply.content


def check_rate_limit(reply: requests.Response) -> None:
    assert reply.status_code == 429
    assert reply.headers["Retry-After"] == "7"


def check_malformed(reply: requests.Response) -> None:
    assert reply.status_code == 200 and reply.content.startswith(b"{")
    with pytest.raises(ValueError):
        reply.json()


def check_empty(reply: requests.Response) -> None:
    assert (reply.status_code, reply.content) == (200, b"")


def check_wrong_types(reply: requests.Response) -> None:
    document = reply.json()
    assert isinstance(document["dataflowName"], int)
    assert isinstance(document["timestamp"], str) and isinstance(document["runId"], str)
    assert isinstance(document["reports"], dict)


def check_missing_fields(reply: requests.Response) -> None:
    assert list(reply.json()) == ["dataflowId"]


def check_unknown_state(reply: requests.Response) -> None:
    document = reply.json()
    assert document["status"] == "Quantum Flux"
    assert {report["status"] for report in document["reports"]} == {"Quantum Flux"}


def check_auth(reply: requests.Response) -> None:
    assert reply.status_code == 401
    assert reply.json()["error"]["code"] == "AUTH_01"


def check_oversized(reply: requests.Response) -> None:
    assert reply.status_code == 200 and len(reply.content) == 2_000_000
    assert set(reply.json()) == {"padding"}


@pytest.mark.parametrize(
    ("rule", "check"),
    [
        ({"kind": "error", "status": 503}, check_error),
        ({"kind": "html_error"}, check_html),
        ({"kind": "rate_limit", "retry_after": 7}, check_rate_limit),
        ({"kind": "malformed"}, check_malformed),
        ({"kind": "empty"}, check_empty),
        ({"kind": "wrong_types"}, check_wrong_types),
        ({"kind": "missing_fields"}, check_missing_fields),
        ({"kind": "unknown_state"}, check_unknown_state),
        ({"kind": "auth"}, check_auth),
        ({"kind": "oversized", "bytes": 2_000_000}, check_oversized),
    ],
)
def test_fault_kinds_change_the_answer_once(
    sim: Simulator, rule: dict[str, Any], check: Callable[[requests.Response], None]
) -> None:
    session, flow = login(sim), flow_ids(sim)[0]
    sim.faults.add({"platform": INFA, "endpoint": "status", "count": 1, **rule})
    check(get(sim, f"{SISVC}/status/dataflows/{flow}", session))
    assert status(sim, session, flow)["dataflowId"] == flow


def test_fault_errors_use_the_v2_shape_on_the_v2_login(sim: Simulator) -> None:
    sim.faults.add(FaultRule(kind="error", endpoint="login_v2"))
    reply = requests.post(
        f"{sim.url}/ma/api/v2/user/login", json={"@type": "login", **sim.credentials[INFA]}, timeout=5
    )
    assert reply.status_code == 500
    assert reply.json() == {
        "code": "SIM_500",
        "description": "Internal Server Error",
        "statusCode": 500,
        "@type": "error",
    }
    sim.faults.add(FaultRule(kind="error", endpoint="logout", status=520))
    odd = requests.post(f"{sim.url}/saas/public/core/v3/logout", timeout=5)
    assert (odd.status_code, odd.json()["error"]["code"]) == (520, "SIM_520")
    sim.faults.add(FaultRule(kind="auth", endpoint="login_v3"))
    bad = requests.post(f"{sim.url}/saas/public/core/v3/login", json=sim.credentials[INFA], timeout=5)
    assert bad.json()["error"]["code"] == "IDS_085"


def test_latency_fault_and_global_latency_delay_vendor_calls_only() -> None:
    with Simulator(options(latency_seconds=0.1)) as sim:
        started = time.monotonic()
        session = login(sim)
        assert time.monotonic() - started >= 0.1
        sim.faults.add({"kind": "latency", "seconds": 0.2, "endpoint": "status"})
        started = time.monotonic()
        status(sim, session, flow_ids(sim)[0])
        assert time.monotonic() - started >= 0.3
        started = time.monotonic()
        requests.get(f"{sim.url}/_sim/stats", timeout=5)
        assert time.monotonic() - started < 0.1


def test_session_expired_fault_drops_sessions_and_a_new_login_works(sim: Simulator) -> None:
    session, flow = login(sim), flow_ids(sim)[0]
    sim.faults.add({"kind": "session_expired", "count": 1})
    assert get(sim, f"{SISVC}/status/dataflows/{flow}", session).status_code == 401
    assert get(sim, f"{SISVC}/status/dataflows/{flow}", session).status_code == 401
    assert status(sim, login(sim), flow)["dataflowId"] == flow


def test_refuse_closes_without_an_answer(sim: Simulator) -> None:
    sim.faults.add({"kind": "refuse", "endpoint": "login_v3", "count": 1})
    with pytest.raises(requests.ConnectionError):
        login(sim)
    assert login(sim)


def test_hang_holds_the_connection_then_closes_without_blocking_others(sim: Simulator) -> None:
    session, flow = login(sim), flow_ids(sim)[0]
    sim.faults.add({"kind": "hang", "seconds": 0.3, "endpoint": "status", "count": 2})
    with pytest.raises(requests.ReadTimeout):
        get(sim, f"{SISVC}/status/dataflows/{flow}", session, timeout=0.1)
    started = time.monotonic()
    with pytest.raises(requests.ConnectionError):
        get(sim, f"{SISVC}/status/dataflows/{flow}", session)
    assert 0.25 <= time.monotonic() - started < 2
    assert status(sim, session, flow)["dataflowId"] == flow


def test_a_long_hang_does_not_hold_up_stop() -> None:
    sim = Simulator(options())
    sim.start()
    session, flow = login(sim), flow_ids(sim)[0]
    sim.faults.add({"kind": "hang", "endpoint": "status"})
    outcome: list[BaseException] = []

    def hung() -> None:
        try:
            get(sim, f"{SISVC}/status/dataflows/{flow}", session, timeout=10)
        except requests.RequestException as error:
            outcome.append(error)

    caller = threading.Thread(target=hung)
    caller.start()
    time.sleep(0.1)
    assert login(sim)
    started = time.monotonic()
    sim.stop()
    caller.join(5)
    assert time.monotonic() - started < 1.5
    assert len(outcome) == 1 and isinstance(outcome[0], requests.ConnectionError)


def test_rate_and_count_limit_how_often_a_rule_fires(sim: Simulator) -> None:
    session, flow = login(sim), flow_ids(sim)[0]
    sim.faults.add({"kind": "error", "endpoint": "status", "rate": 0.5})
    codes = [get(sim, f"{SISVC}/status/dataflows/{flow}", session).status_code for _ in range(40)]
    assert 5 < codes.count(500) < 35 and codes.count(200) == 40 - codes.count(500)
    sim.faults.clear()
    sim.faults.add({"kind": "error", "endpoint": "history", "count": 2})
    history = [get(sim, f"{SISVC}/history/dataflows/{flow}", session).status_code for _ in range(3)]
    assert history == [500, 500, 200]
    assert status(sim, session, flow)["dataflowId"] == flow


@pytest.mark.parametrize(
    "rule",
    [
        {"kind": "flood"},
        {"kind": "error", "endpoint": "nope"},
        {"kind": "error", "platform": "nope"},
        {"kind": "error", "status": 200},
        {"kind": "error", "rate": "often"},
        {"kind": "hang", "seconds": -1},
        {"kind": "error", "count": 0},
        {"kind": "error", "colour": "red"},
        {"endpoint": "status"},
    ],
)
def test_invalid_fault_rules_are_refused(sim: Simulator, rule: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        sim.faults.add(rule)
    reply = requests.post(f"{sim.url}/_sim/faults", json=rule, timeout=5)
    assert reply.status_code == 400 and reply.json()["error"]


# --- control API, stats, lifetime ----------------------------------------------------------------------


def test_control_api_drives_faults_stats_and_job_states(sim: Simulator) -> None:
    control, session, flow = f"{sim.url}/_sim", login(sim), flow_ids(sim)[0]
    assert requests.get(f"{control}/jobs", timeout=5).json() == {INFA: sim.jobs(INFA)}
    added = requests.post(f"{control}/faults", json={"kind": "error", "endpoint": "status"}, timeout=5)
    assert added.status_code == 201 and added.json()["id"]
    assert get(sim, f"{SISVC}/status/dataflows/{flow}", session).status_code == 500
    assert requests.delete(f"{control}/faults", timeout=5).status_code == 204
    forced = requests.post(f"{control}/{INFA}/jobs/{flow}/state", json={"state": "Running with Error"}, timeout=5)
    assert forced.json() == {"platform": INFA, "id": flow, "state": "Running with Error", "frozen": True}
    sim.clock.advance(600)
    frozen = status(sim, session, flow)
    assert frozen["status"] == "Running with Error"
    assert [report["status"] for report in frozen["reports"]][-1] == "Error"
    resumed = requests.post(f"{control}/{INFA}/jobs/{flow}/state", json={"state": None}, timeout=5)
    assert resumed.json()["frozen"] is False
    counts = requests.get(f"{control}/stats", timeout=5).json()["requests"]
    assert {"platform": INFA, "endpoint": "status", "method": "GET", "count": 2} in counts
    assert requests.post(f"{control}/reset-stats", timeout=5).status_code == 204
    assert requests.get(f"{control}/stats", timeout=5).json() == {"requests": []}
    for path, body, code in [
        (f"{INFA}/jobs/nope/state", {"state": "Stopped"}, 404),
        (f"nope/jobs/{flow}/state", {"state": "Stopped"}, 404),
        (f"{INFA}/jobs/{flow}/state", {"state": "Quantum Flux"}, 400),
        (f"{INFA}/jobs/{flow}/state", {"state": 3}, 400),
    ]:
        assert requests.post(f"{control}/{path}", json=body, timeout=5).status_code == code
    assert requests.get(f"{control}/nothing", timeout=5).status_code == 404


def test_stats_count_calls_per_platform_endpoint_and_method(sim: Simulator) -> None:
    session, flow = login(sim), flow_ids(sim)[0]
    sim.faults.add({"kind": "error", "endpoint": "history", "count": 1})
    for _ in range(2):
        get(sim, f"{SISVC}/history/dataflows/{flow}", session)
    statistics(sim, session, flow)
    requests.post(f"{sim.url}{SISVC}/status/dataflows/{flow}", timeout=5)
    assert sim.stats() == {(INFA, "login_v3", "POST"): 1, (INFA, "history", "GET"): 2, (INFA, "statistics", "GET"): 1}
    sim.reset_stats()
    assert sim.stats() == {}


def test_keep_alive_requests_answer_without_nagle_delays(sim: Simulator) -> None:
    session, flow = login(sim), flow_ids(sim)[0]
    http = requests.Session()
    started = time.monotonic()
    for _ in range(20):
        assert (
            http.get(
                f"{sim.url}{SISVC}/status/dataflows/{flow}", headers={"IDS-SESSION-ID": session}, timeout=5
            ).status_code
            == 200
        )
    assert time.monotonic() - started < 0.5  # 40 ms a request when headers and body wait on delayed ACKs


def test_wrong_method_is_405_and_unknown_path_404(sim: Simulator) -> None:
    reply = requests.post(f"{sim.url}{SISVC}/status/dataflows/x", timeout=5)
    assert (reply.status_code, reply.headers["Allow"]) == (405, "GET")
    assert requests.get(f"{sim.url}/nowhere", timeout=5).status_code == 404


def test_stop_frees_the_port_and_restart_serves_on_it_again() -> None:
    sim = Simulator(options())
    sim.start()
    url, session, flow = sim.url, login(sim), flow_ids(sim)[0]
    keep_alive = requests.Session()
    assert (
        keep_alive.get(
            f"{url}{SISVC}/status/dataflows/{flow}", headers={"IDS-SESSION-ID": session}, timeout=5
        ).status_code
        == 200
    )
    sim.stop()
    sim.stop()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{url}/_sim/jobs", timeout=1)
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", int(url.rsplit(":", 1)[1])))
    sim.restart()
    try:
        assert sim.url == url
        assert status(sim, session, flow)["dataflowId"] == flow
    finally:
        sim.stop()


def test_every_registered_platform_keeps_the_contract() -> None:
    with Simulator(SimulatorOptions(jobs=2)) as sim:
        assert set(sim.credentials) == set(PLATFORMS)
        for name in PLATFORMS:
            platform = sim.platform(name)
            endpoints = [route.endpoint for route in platform.routes()]
            assert platform.name == name and len(endpoints) == len(set(endpoints))
            assert sim.credentials[name] and sim.jobs(name)
            assert all(set(job) == {"id", "name"} for job in sim.jobs(name))
            assert json.loads(platform.error_reply(endpoints[-1], 503).body)
            assert platform.auth_failure(endpoints[-1]).status in (401, 403)
            with pytest.raises(LookupError):
                platform.set_state("no-such-job", None)


def test_options_are_checked() -> None:
    with pytest.raises(ValueError, match="unknown platform"):
        Simulator(options(platforms=["nope"]))
    with pytest.raises(RuntimeError):
        _ = Simulator(options()).url
    with Simulator(options(jobs=0)) as sim, pytest.raises(RuntimeError):
        sim.start()


def test_standalone_command_prints_its_url_writes_credentials_and_exits_0_on_sigterm(tmp_path: Path) -> None:
    credentials = tmp_path / "credentials.json"
    command = simulator_command(jobs=2, platforms=INFA, credentials_out=credentials)
    environment = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=environment) as process:
        assert process.stdout is not None
        fields = announced(process.stdout.readline())
        assert fields["platforms"] == INFA and fields["credentials"] == str(credentials)
        assert credentials.stat().st_mode & 0o777 == 0o600
        secret = json.loads(credentials.read_text())[INFA]
        reply = requests.post(f"{fields['url']}/saas/public/core/v3/login", json=secret, timeout=5)
        assert reply.status_code == 200
        assert len(requests.get(f"{fields['url']}/_sim/jobs", timeout=5).json()[INFA]) == 2
        process.send_signal(signal.SIGTERM)
        assert process.wait(5) == 0
