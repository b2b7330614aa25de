"""The simulator's clock control, credential rotation and IAM token lifetime, over real HTTP."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import requests

from exporter.simulator import Simulator, SimulatorOptions
from tests.vendors import (
    advance,
    huawei_get,
    iam_login,
    iam_token,
    informatica_login,
    informatica_session,
    informatica_status,
    signed_get,
    siren_get,
)

HOUR = 3600.0


def rotate(sim: Simulator, platform: str) -> dict[str, str]:
    reply = requests.post(f"{sim.url}/_sim/{platform}/credentials", timeout=5)
    assert reply.status_code == 200, reply.text
    document: dict[str, str] = reply.json()
    return document


# --- clock --------------------------------------------------------------------------------------------------


def test_clock_control_moves_simulated_time_for_sessions() -> None:
    with Simulator(SimulatorOptions(jobs=1, platforms=["informatica"], session_idle_seconds=60)) as sim:
        session, flow = informatica_session(sim), sim.jobs("informatica")[0]["id"]
        before = sim.clock.now()
        now = advance(sim, 61)
        assert 61 <= now - before < 62 and abs(sim.clock.now() - now) < 1
        assert informatica_status(sim, session, flow).status_code == 401  # idle past its limit
        assert abs(advance(sim, 0) - sim.clock.now()) < 1


@pytest.mark.parametrize(
    "body",
    [
        '{"advance": -1}',
        '{"advance": "60"}',
        '{"advance": true}',
        '{"advance": NaN}',
        '{"advance": Infinity}',
        "{}",
        "[60]",
        "sixty",
    ],
)
def test_clock_control_refuses_what_is_not_a_forward_move(body: str) -> None:
    with Simulator(SimulatorOptions(jobs=1, platforms=["informatica"])) as sim:
        before = sim.clock.now()
        reply = requests.post(f"{sim.url}/_sim/clock", data=body, timeout=5)
        assert reply.status_code == 400 and reply.json()["error"]
        assert sim.clock.now() - before < 1


# --- credential rotation ------------------------------------------------------------------------------------


def test_informatica_rotation_refuses_the_old_password_and_keeps_open_sessions() -> None:
    with Simulator(SimulatorOptions(jobs=1, platforms=["informatica"])) as sim:
        old, session, flow = sim.credentials["informatica"], informatica_session(sim), sim.jobs("informatica")[0]["id"]
        new = rotate(sim, "informatica")
        assert set(new) == set(old) and new["username"] == old["username"] and new["password"] != old["password"]
        assert new == sim.credentials["informatica"]
        refused = informatica_login(sim, old)
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "IDS_085"
        v2 = requests.post(f"{sim.url}/ma/api/v2/user/login", json={"@type": "login", **old}, timeout=5)
        assert v2.status_code == 403 and v2.json()["code"] == "UI_10000"
        assert informatica_login(sim, new).status_code == 200
        assert informatica_status(sim, session, flow).status_code == 200


@pytest.mark.parametrize(
    ("platform", "path"), [("dataarts", "/v1/{project}/jobs"), ("cloudstream", "/v1.0/{project}/jobs")]
)
def test_huawei_rotation_refuses_the_old_password_and_secret_key_and_keeps_tokens(platform: str, path: str) -> None:
    with Simulator(SimulatorOptions(jobs=1, platforms=[platform])) as sim:
        old, token = sim.credentials[platform], iam_token(sim, platform)
        new = sim.rotate_credentials(platform)
        assert new == sim.credentials[platform]
        assert {key for key in new if new[key] != old[key]} == {"password", "secret_access_key"}
        refused = iam_login(sim, platform, old["password"])
        assert refused.status_code == 401 and refused.json()["error"]["code"] == 401
        assert iam_login(sim, platform, new["password"]).status_code == 201
        url = sim.url + path.format(project=new["project_id"])
        assert huawei_get(sim, path.format(project=new["project_id"]), token).status_code == 200
        at = datetime.fromtimestamp(sim.clock.now(), UTC)
        stale = signed_get(url, old["access_key_id"], old["secret_access_key"], at)
        assert stale.status_code == 401 and stale.json()["error_code"] == "APIGW.0301"
        assert signed_get(url, new["access_key_id"], new["secret_access_key"], at).status_code == 200


def test_siren_rotation_refuses_the_old_password_only() -> None:
    with Simulator(SimulatorOptions(jobs=1, platforms=["siren"])) as sim:
        old = sim.credentials["siren"]
        new = rotate(sim, "siren")
        assert {key for key in new if new[key] != old[key]} == {"password"}
        refused = siren_get(sim, "/ingestion", old["password"])
        assert refused.status_code == 401 and refused.json()["error"]["type"] == "security_exception"
        assert siren_get(sim, "/ingestion", new["password"]).status_code == 200
        api_key = {"Authorization": f"ApiKey {new['api_key_encoded']}"}
        assert requests.get(f"{sim.url}/_siren/connector/jobs/ingestion", headers=api_key, timeout=5).ok


def test_rotation_of_a_platform_not_served_is_404() -> None:
    with Simulator(SimulatorOptions(jobs=1, platforms=["siren"])) as sim:
        assert requests.post(f"{sim.url}/_sim/informatica/credentials", timeout=5).status_code == 404
        assert requests.get(f"{sim.url}/_sim/siren/credentials", timeout=5).status_code == 404


# --- IAM token lifetime -------------------------------------------------------------------------------------


def test_token_seconds_sets_how_long_an_iam_token_lives() -> None:
    with Simulator(SimulatorOptions(jobs=1, platforms=["dataarts"], token_seconds=600)) as sim:
        reply = iam_login(sim, "dataarts")
        token, body = reply.headers["X-Subject-Token"], reply.json()["token"]
        issued, expires = (
            datetime.strptime(body[key], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
            for key in ("issued_at", "expires_at")
        )
        assert (expires - issued).total_seconds() == pytest.approx(600, abs=0.01)
        jobs = f"/v1/{sim.credentials['dataarts']['project_id']}/jobs"
        advance(sim, 599)
        assert huawei_get(sim, jobs, token).status_code == 200
        advance(sim, 2)
        expired = huawei_get(sim, jobs, token)
        assert expired.status_code == 401 and expired.json()["error_code"] == "APIGW.0307"
        assert huawei_get(sim, jobs, iam_token(sim, "dataarts")).status_code == 200


def test_token_lifetime_defaults_to_a_day_and_must_be_positive() -> None:
    with Simulator(SimulatorOptions(jobs=1, platforms=["cloudstream"])) as sim:
        token = iam_token(sim, "cloudstream")
        advance(sim, 24 * HOUR - 60)
        assert huawei_get(sim, f"/v1.0/{sim.credentials['cloudstream']['project_id']}/jobs", token).ok
    with pytest.raises(ValueError, match="token"):
        Simulator(SimulatorOptions(token_seconds=0))
