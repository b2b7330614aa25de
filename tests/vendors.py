"""Plain vendor clients for the simulator's own tests: each logs in as its vendor's documentation says."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import requests

from exporter.simulator import Simulator

SISVC = "/sisvc/monitor/v1"
SIREN_JOBS = "/_siren/connector/jobs"


def advance(sim: Simulator, seconds: float) -> float:
    """Move the simulated clock through the control API, as a test in another process would."""
    reply = requests.post(f"{sim.url}/_sim/clock", json={"advance": seconds}, timeout=5)
    assert reply.status_code == 200, reply.text
    now: float = reply.json()["now"]
    return now


def informatica_login(sim: Simulator, credentials: dict[str, str] | None = None) -> requests.Response:
    body = credentials or sim.credentials["informatica"]
    return requests.post(f"{sim.url}/saas/public/core/v3/login", json=body, timeout=5)


def informatica_session(sim: Simulator) -> str:
    reply = informatica_login(sim)
    assert reply.status_code == 200, reply.text
    session: str = reply.json()["userInfo"]["sessionId"]
    return session


def informatica_flows(sim: Simulator, session: str) -> list[str]:
    reply = requests.get(
        f"{sim.url}/saas/public/core/v3/objects",
        params={"q": "type=='SI_DATAFLOW'", "limit": 200},
        headers={"INFA-SESSION-ID": session},
        timeout=5,
    )
    assert reply.status_code == 200, reply.text
    return [listed["id"] for listed in reply.json()["objects"]]


def informatica_status(sim: Simulator, session: str, flow: str) -> requests.Response:
    return requests.get(f"{sim.url}{SISVC}/status/dataflows/{flow}", headers={"IDS-SESSION-ID": session}, timeout=5)


def iam_body(domain: str, username: str, password: str, project_name: str) -> dict[str, Any]:
    """IAM's password login document, scoped to a project by name."""
    user = {"name": username, "password": password, "domain": {"name": domain}}
    identity = {"methods": ["password"], "password": {"user": user}}
    return {"auth": {"identity": identity, "scope": {"project": {"name": project_name}}}}


def iam_login(sim: Simulator, platform: str, password: str | None = None) -> requests.Response:
    credentials = sim.credentials[platform]
    body = iam_body(
        credentials["domain"], credentials["username"], password or credentials["password"], credentials["project_name"]
    )
    return requests.post(f"{credentials['iam_url']}/v3/auth/tokens", json=body, timeout=5)


def iam_token(sim: Simulator, platform: str) -> str:
    reply = iam_login(sim, platform)
    assert reply.status_code == 201, reply.text
    return reply.headers["X-Subject-Token"]


def huawei_get(sim: Simulator, path: str, token: str, **params: Any) -> requests.Response:
    return requests.get(f"{sim.url}{path}", params=params, headers={"X-Auth-Token": token}, timeout=5)


def huawei_post(sim: Simulator, path: str, token: str, body: Any) -> requests.Response:
    return requests.post(f"{sim.url}{path}", json=body, headers={"X-Auth-Token": token}, timeout=5)


def signed_get(url: str, access_key: str, secret_key: str, at: datetime) -> requests.Response:
    """A GET without a query, signed with SDK-HMAC-SHA256 over Host and X-Sdk-Date."""
    parts = urlsplit(url)
    date = at.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    canonical = "\n".join(
        ("GET", parts.path.rstrip("/") + "/", "", f"host:{parts.netloc}", f"x-sdk-date:{date}", "", "host;x-sdk-date")
    )
    canonical += "\n" + hashlib.sha256(b"").hexdigest()
    to_sign = f"SDK-HMAC-SHA256\n{date}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
    signature = hmac.new(secret_key.encode(), to_sign.encode(), hashlib.sha256).hexdigest()
    authorization = f"SDK-HMAC-SHA256 Access={access_key}, SignedHeaders=host;x-sdk-date, Signature={signature}"
    headers = {"Host": parts.netloc, "X-Sdk-Date": date, "Authorization": authorization}
    return requests.get(url, headers=headers, timeout=5)


def siren_get(sim: Simulator, path: str, password: str | None = None, **params: Any) -> requests.Response:
    credentials = sim.credentials["siren"]
    auth = (credentials["username"], password or credentials["password"])
    return requests.get(f"{sim.url}{SIREN_JOBS}{path}", params=params, auth=auth, timeout=5)
