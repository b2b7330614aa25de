"""Huawei auth: AK/SK signatures against the vendor's own signer, IAM token life cycle, failure handling."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from datetime import UTC, datetime
from typing import Any

import pytest
import requests_mock
from prometheus_client import CollectorRegistry

from exporter.collectors.huawei_auth import HuaweiClient, HuaweiTarget, path_url, sign_request
from exporter.http import Deadline, Upstream, UpstreamError
from exporter.logs import Redactor
from exporter.telemetry import Telemetry
from tests.helpers import make_settings

AK, SK = "HPUAEXAMPLEACCESSKEY1", "sk-0123456789abcdefExampleSecretKey"
PASSWORD = "iam-password-42"
TOKEN = "MIIEhQYJKoZIhvcNAQcCoIIEdjCCBHICAQ-token-value"
AT = datetime(2026, 11, 24, 2, 30, 5, tzinfo=UTC)
IAM = "https://iam.example.test"
API = "https://dlf.example.test"


def _sdk_authorization(
    method: str, host: str, path: str, query: list[tuple[str, str]], headers: dict[str, str], body: bytes
) -> str:
    """The Authorization header huaweicloudsdkcore's signer computes for the same request."""
    from huaweicloudsdkcore.auth.credentials import BasicCredentials
    from huaweicloudsdkcore.sdk_request import SdkRequest
    from huaweicloudsdkcore.signer.signer import Signer

    request = SdkRequest(
        method=method,
        schema="https",
        host=host,
        resource_path=path,
        query_params=list(query),
        header_params={**headers, "X-Sdk-Date": AT.strftime("%Y%m%dT%H%M%SZ")},
        body=body,
    )
    signed = Signer(BasicCredentials(AK, SK)).sign(request)
    return str(signed.header_params["Authorization"])


# (method, host, path segments, query, extra headers, body)
SIGNING_CASES: list[tuple[str, str, tuple[str, ...], list[tuple[str, str]], dict[str, str], bytes]] = [
    (
        "GET",
        "dayu-dlf.cn-north-4.myhuaweicloud.com",
        ("v1", "b384b9e9ab9b4ee8994c8633aabc9505", "jobs"),
        [("jobType", "REAL_TIME"), ("limit", "100"), ("offset", "200")],
        {},
        b"",
    ),
    (
        "POST",
        "cs.cn-north-4.myhuaweicloud.com",
        ("v1.0", "b384b9e9", "jobs", "metrics"),
        [],
        {"Content-Type": "application/json;charset=UTF-8"},
        b'{"job_ids":[298765,298766]}',
    ),
    ("GET", "dayu-dlf.example.test", ("v1", "p1", "jobs", "job sms/äöü+%&=", "status"), [], {}, b""),
    (
        "GET",
        "dayu-dlf.example.test",
        ("v1", "p1", "jobs", "job_sms", "status"),
        [],
        {"workspace": "a0b1c2d3e4f5", "X-Project-Id": "p1", "X-Custom-Trace": "  padded value  "},
        b"",
    ),
    (
        "GET",
        "dli.example.test:8443",
        ("v1.0", "p1", "streaming", "jobs"),
        [("name", "clicks to dws"), ("status", "job_running"), ("cursor", "a/b~c*d")],
        {"X-Project-Id": "p1"},
        b"",
    ),
    (
        "POST",
        "dli.example.test",
        ("v1.0", "p1", "streaming", "jobs", "metrics"),
        [("dry", "")],
        {"Content-Type": "application/json", "workspace": "ws-1", "X-Trace_Id": "not signed"},
        json.dumps({"job_ids": list(range(1, 60))}).encode(),
    ),
    ("DELETE", "cs.example.test", ("v1.0", "p1", "jobs", "298765"), [], {}, b""),
]


@pytest.mark.parametrize("case", SIGNING_CASES, ids=lambda c: f"{c[0]}-{'/'.join(c[2])[:40]}")
def test_signature_equals_the_vendor_signer(case: Any) -> None:
    method, host, segments, query, headers, body = case
    url = path_url(f"https://{host}", *segments, query=query)
    sent = sign_request(method, url, headers, body, AK, SK, AT)
    encoded_path = url.split(host, 1)[1].split("?", 1)[0]
    assert sent["Authorization"] == _sdk_authorization(method, host, encoded_path, query, headers, body)
    assert sent["Host"] == host and sent["X-Sdk-Date"] == "20261124T023005Z"


def test_signature_of_a_hand_worked_request() -> None:
    """The documented steps, done by hand: canonical request, string to sign, HMAC."""
    sent = sign_request("GET", "https://h.test/v1/p/jobs?b=2&a=x%20y", {"workspace": " w "}, b"", AK, SK, AT)
    canonical = (
        "GET\n/v1/p/jobs/\na=x%20y&b=2\n"
        "host:h.test\nworkspace:w\nx-sdk-date:20261124T023005Z\n\n"
        "host;workspace;x-sdk-date\n" + hashlib.sha256(b"").hexdigest()
    )
    to_sign = "SDK-HMAC-SHA256\n20261124T023005Z\n" + hashlib.sha256(canonical.encode()).hexdigest()
    signature = hmac.new(SK.encode(), to_sign.encode(), hashlib.sha256).hexdigest()
    assert sent["Authorization"] == (
        f"SDK-HMAC-SHA256 Access={AK}, SignedHeaders=host;workspace;x-sdk-date, Signature={signature}"
    )


# --- client behaviour ------------------------------------------------------------------------------------


def _target(auth: dict[str, Any], monkeypatch: pytest.MonkeyPatch, name: str = "hw") -> HuaweiTarget:
    monkeypatch.setenv(f"INGESTION_EXPORTER_{name.upper()}_PASSWORD", PASSWORD)
    monkeypatch.setenv(f"INGESTION_EXPORTER_{name.upper()}_SECRET_ACCESS_KEY", SK)
    settings = make_settings(
        [
            {
                "name": name,
                "platform": "dataarts",
                "endpoint": API,
                "project_id": "p1",
                "auth": auth,
                "jobs": ["a"],
            }
        ]
    )
    target = settings.all_targets()[0]
    assert isinstance(target, HuaweiTarget)
    return target


def _client(target: HuaweiTarget, clock: list[float] | None = None) -> HuaweiClient:
    upstream = Upstream("dataarts", target, Telemetry(CollectorRegistry()))
    if clock is None:
        return HuaweiClient(target, upstream, Redactor().sink())
    return HuaweiClient(target, upstream, Redactor().sink(), clock=lambda: clock[0])


TOKEN_AUTH = {"type": "token", "iam_url": IAM, "domain": "acct", "username": "monitor", "project_name": "cn-north-4"}
AKSK_AUTH = {"type": "aksk", "access_key_id": AK}


def _iam(mock: requests_mock.Mocker, expires_at: str = "2099-01-01T00:00:00.000000Z") -> Any:
    """An IAM that issues TOKEN-1, TOKEN-2, ... in turn."""
    return mock.post(
        f"{IAM}/v3/auth/tokens",
        [
            {
                "status_code": 201,
                "json": {"token": {"expires_at": expires_at}},
                "headers": {"X-Subject-Token": f"{TOKEN}-{n}"},
            }
            for n in range(1, 20)
        ],
    )


def _error(code: str, message: str, status: int) -> dict[str, Any]:
    return {"status_code": status, "json": {"error_code": code, "error_msg": message}}


def test_token_is_obtained_once_and_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    client = _client(_target(TOKEN_AUTH, monkeypatch))
    with requests_mock.Mocker() as mock:
        iam = _iam(mock)
        api = mock.get(f"{API}/x", json={"ok": True})
        for _ in range(3):
            assert client.call("GET", f"{API}/x", endpoint="x", deadline=Deadline(5)) == {"ok": True}
    assert iam.call_count == 1
    body = iam.last_request.json()["auth"]
    assert body["identity"]["password"]["user"] == {"domain": {"name": "acct"}, "name": "monitor", "password": PASSWORD}
    assert body["scope"] == {"project": {"name": "cn-north-4"}}
    assert {r.headers["X-Auth-Token"] for r in api.request_history} == {f"{TOKEN}-1"}


def test_token_is_renewed_before_it_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [datetime(2026, 11, 24, tzinfo=UTC).timestamp()]
    client = _client(_target(TOKEN_AUTH, monkeypatch), clock)
    with requests_mock.Mocker() as mock:
        iam = _iam(mock, expires_at="2026-11-25T00:00:00.000000Z")  # 24 h later
        api = mock.get(f"{API}/x", json={})
        client.call("GET", f"{API}/x", endpoint="x", deadline=Deadline(5))
        clock[0] += 23 * 3600 - 1  # still more than the default hour before expiry
        client.call("GET", f"{API}/x", endpoint="x", deadline=Deadline(5))
        assert iam.call_count == 1
        clock[0] += 2
        client.call("GET", f"{API}/x", endpoint="x", deadline=Deadline(5))
    assert iam.call_count == 2
    assert api.last_request.headers["X-Auth-Token"] == f"{TOKEN}-2"


def test_token_update_error_renews_once_and_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    client = _client(_target(TOKEN_AUTH, monkeypatch))
    with requests_mock.Mocker() as mock:
        iam = _iam(mock)
        api = mock.get(f"{API}/x", [_error("APIGW.0307", "The token must be updated.", 401), {"json": {"n": 1}}])
        assert client.call("GET", f"{API}/x", endpoint="x", deadline=Deadline(5)) == {"n": 1}
        assert iam.call_count == 2 and api.call_count == 2
        # a token refused again right after renewal is not renewed in a loop
        mock.get(f"{API}/y", [_error("APIGW.0307", "The token must be updated.", 401)] * 5)
        with pytest.raises(UpstreamError) as raised:
            client.call("GET", f"{API}/y", endpoint="y", deadline=Deadline(5))
    assert raised.value.reason == "auth" and "APIGW.0307" in str(raised.value)
    assert iam.call_count == 3


def test_refused_login_is_tried_once_per_collection(monkeypatch: pytest.MonkeyPatch) -> None:
    client = _client(_target(TOKEN_AUTH, monkeypatch))
    with requests_mock.Mocker() as mock:
        iam = mock.post(
            f"{IAM}/v3/auth/tokens",
            status_code=401,
            json={"error": {"code": 401, "message": "The username or password is wrong.", "title": "x"}},
        )
        api = mock.get(f"{API}/x", json={})
        collection = Deadline(5)
        for _ in range(3):
            with pytest.raises(UpstreamError) as raised:
                client.call("GET", f"{API}/x", endpoint="x", deadline=collection)
            assert raised.value.reason == "auth"
        assert iam.call_count == 1 and api.call_count == 0
        with pytest.raises(UpstreamError):
            client.call("GET", f"{API}/x", endpoint="x", deadline=Deadline(5))  # the next collection
    assert iam.call_count == 2
    assert PASSWORD not in str(raised.value)


def test_requests_are_signed_with_the_project_and_extra_headers(monkeypatch: pytest.MonkeyPatch) -> None:
    client = _client(_target(AKSK_AUTH, monkeypatch))
    with requests_mock.Mocker() as mock:
        api = mock.post(f"{API}/v1.0/p1/jobs/metrics", json={})
        client.call(
            "POST",
            f"{API}/v1.0/p1/jobs/metrics",
            endpoint="m",
            deadline=Deadline(5),
            json_body={"job_ids": [1, 2]},
            headers={"workspace": "ws"},
        )
    sent = api.last_request
    assert sent.body == b'{"job_ids":[1,2]}'
    assert sent.headers["X-Project-Id"] == "p1" and "X-Auth-Token" not in sent.headers
    again = sign_request(
        "POST",
        sent.url,
        {k: sent.headers[k] for k in ("Content-Type", "workspace", "X-Project-Id", "X-Sdk-Date", "Host")},
        sent.body,
        AK,
        SK,
        AT,
    )
    assert sent.headers["Authorization"] == again["Authorization"]
    assert "SignedHeaders=content-type;host;workspace;x-project-id;x-sdk-date," in sent.headers["Authorization"]


def test_refused_signature_pauses_signing_for_the_cool_down(monkeypatch: pytest.MonkeyPatch) -> None:
    client = _client(_target(AKSK_AUTH, monkeypatch))
    with requests_mock.Mocker() as mock:
        api = mock.get(f"{API}/x", **_error("APIGW.0301", "Incorrect IAM authentication information.", 401))
        for _ in range(4):
            with pytest.raises(UpstreamError) as raised:
                client.call("GET", f"{API}/x", endpoint="x", deadline=Deadline(5))
            assert raised.value.reason == "auth"
    assert api.call_count == 1
    assert "no signed request" in str(raised.value) and SK not in str(raised.value)


def test_signing_resumes_after_the_cool_down(monkeypatch: pytest.MonkeyPatch) -> None:
    client = _client(_target({**AKSK_AUTH, "aksk_cooldown_seconds": 0}, monkeypatch))
    with requests_mock.Mocker() as mock:
        api = mock.get(
            f"{API}/x", [_error("APIGW.0301", "Incorrect IAM authentication information.", 401), {"json": {"ok": 1}}]
        )
        with pytest.raises(UpstreamError):
            client.call("GET", f"{API}/x", endpoint="x", deadline=Deadline(5))
        assert client.call("GET", f"{API}/x", endpoint="x", deadline=Deadline(5)) == {"ok": 1}
    assert api.call_count == 2


def test_a_wrong_key_fails_once_even_under_concurrency(monkeypatch: pytest.MonkeyPatch) -> None:
    client = _client(_target(AKSK_AUTH, monkeypatch))
    start = threading.Barrier(6)
    reasons: list[str] = []

    def call() -> None:
        start.wait()
        try:
            client.call("GET", f"{API}/x", endpoint="x", deadline=Deadline(5))
        except UpstreamError as exc:
            reasons.append(exc.reason)

    with requests_mock.Mocker() as mock:
        api = mock.get(f"{API}/x", **_error("APIGW.0301", "Incorrect IAM authentication information.", 401))
        threads = [threading.Thread(target=call) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert api.call_count == 1 and reasons == ["auth"] * 6


@pytest.mark.parametrize("status", [429, 403])
def test_gateway_throttling_backs_off(status: int, monkeypatch: pytest.MonkeyPatch) -> None:
    client = _client(_target(AKSK_AUTH, monkeypatch))
    with requests_mock.Mocker() as mock:
        api = mock.get(f"{API}/x", **_error("APIGW.0308", "The throttling threshold has been reached.", status))
        for _ in range(3):
            with pytest.raises(UpstreamError) as raised:
                client.call("GET", f"{API}/x", endpoint="x", deadline=Deadline(5))
            assert raised.value.reason == "rate_limited"
    assert api.call_count == 1


def test_token_auth_throttled_at_iam_counts_as_rate_limited(monkeypatch: pytest.MonkeyPatch) -> None:
    client = _client(_target(TOKEN_AUTH, monkeypatch))
    with requests_mock.Mocker() as mock:
        mock.post(f"{IAM}/v3/auth/tokens", **_error("APIGW.0308", "The throttling threshold has been reached.", 403))
        with pytest.raises(UpstreamError) as raised:
            client.call("GET", f"{API}/x", endpoint="x", deadline=Deadline(5))
    assert raised.value.reason == "rate_limited"


def test_project_id_scopes_the_token_when_no_project_name(monkeypatch: pytest.MonkeyPatch) -> None:
    auth = {k: v for k, v in TOKEN_AUTH.items() if k != "project_name"}
    client = _client(_target(auth, monkeypatch))
    with requests_mock.Mocker() as mock:
        iam = _iam(mock)
        mock.get(f"{API}/x", json={})
        client.call("GET", f"{API}/x", endpoint="x", deadline=Deadline(5))
    assert iam.last_request.json()["auth"]["scope"] == {"project": {"id": "p1"}}


# --- over real HTTP against the simulator's gateway --------------------------------------------------------


@pytest.fixture
def sim() -> Any:
    from exporter.simulator import Simulator, SimulatorOptions

    with Simulator(SimulatorOptions(jobs=3, platforms=["dataarts", "cloudstream"], transition_seconds=3600)) as s:
        yield s


def sim_target(
    sim: Any, monkeypatch: pytest.MonkeyPatch, kind: str, secret: str | None = None, **overrides: Any
) -> dict[str, Any]:
    """A DataArts target on the simulator, with token or AK/SK auth; `secret` replaces the right one."""
    credentials = sim.credentials["dataarts"]
    if kind == "token":
        auth = {
            "type": "token",
            "iam_url": credentials["iam_url"],
            "domain": credentials["domain"],
            "username": credentials["username"],
            "project_name": credentials["project_name"],
        }
        monkeypatch.setenv("INGESTION_EXPORTER_HW_PASSWORD", secret or credentials["password"])
    else:
        auth = {"type": "aksk", "access_key_id": credentials["access_key_id"]}
        monkeypatch.setenv("INGESTION_EXPORTER_HW_SECRET_ACCESS_KEY", secret or credentials["secret_access_key"])
    document = {
        "name": "hw",
        "platform": "dataarts",
        "endpoint": sim.url,
        "project_id": credentials["project_id"],
        "auth": auth,
        "jobs": [job["id"] for job in sim.jobs("dataarts")],
    }
    document.update(overrides)
    return document


def scrape_app(app: Any) -> tuple[dict[Any, float], str]:
    from tests.helpers import get, parse

    status, body = get(app, "/metrics")
    assert status.startswith("200")
    return parse(body), body


def states(samples: dict[Any, float]) -> dict[str, str]:
    return {
        dict(ls)["job_id"]: dict(ls)["state"]
        for (n, ls), v in samples.items()
        if n == "ingestion_job_state" and v == 1 and dict(ls)["target"] == "hw"
    }


@pytest.mark.parametrize("concurrency", [1, 8])
def test_token_that_must_be_updated_is_renewed_once(
    concurrency: int, sim: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.helpers import make_app, value

    gateway = sim.platform("dataarts").gateway
    app = make_app(make_settings([sim_target(sim, monkeypatch, "token", max_concurrency=concurrency)]))
    samples, _ = scrape_app(app)
    assert "unknown" not in states(samples).values() and gateway.logins == 1
    sim.clock.advance(25 * 3600)  # the token expired at the gateway while the exporter still holds it
    samples, body = scrape_app(app)
    assert len(states(samples)) == 3 and "unknown" not in states(samples).values()
    assert gateway.logins == 2 and value(samples, "ingestion_scrape_success", target="hw") == 1
    if concurrency == 1:  # the first call met APIGW.0307 and was retried once, the others used the new token
        assert sim.stats()[("dataarts", "job_status", "GET")] == 3 + 2 + 1 + 1
    assert PASSWORD not in body


def test_wrong_secret_key_fails_once_then_cools_down(sim: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.helpers import make_app, value

    app = make_app(make_settings([sim_target(sim, monkeypatch, "aksk", secret="not-the-secret-key")]))
    for _ in range(3):
        samples, body = scrape_app(app)
        assert set(states(samples).values()) == {"unknown"}
    requests_sent = sum(n for (platform, _, _), n in sim.stats().items() if platform == "dataarts")
    assert requests_sent == 1  # one refused signature, then no signed request during the cool-down
    # the first collection: its three jobs (one refused, two held back); then one error per collection
    assert value(samples, "ingestion_scrape_errors_total", target="hw", reason="auth") == 3 + 1 + 1
    assert value(samples, "ingestion_scrape_success", target="hw") == 0
    assert "not-the-secret-key" not in body


def test_right_key_signs_encoded_paths_the_gateway_accepts(sim: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.helpers import make_app, value

    names = [job["id"] for job in sim.jobs("dataarts")]
    app = make_app(
        make_settings(
            [
                sim_target(
                    sim,
                    monkeypatch,
                    "aksk",
                    jobs=[*names, "no such/job ü+1"],
                    workspace=sim.credentials["dataarts"]["workspace"],
                )
            ]
        )
    )
    samples, _ = scrape_app(app)
    found = states(samples)
    assert found.pop("no such/job ü+1") == "unknown"  # DLF.0100, after the signature was accepted
    assert "unknown" not in found.values() and len(found) == 3
    assert value(samples, "ingestion_scrape_errors_total", target="hw", reason="http_status") == 1
    assert value(samples, "ingestion_scrape_errors_total", target="hw", reason="auth") == 0


def test_throttled_gateway_is_rate_limited_and_recovers(sim: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.helpers import make_app, value

    app = make_app(make_settings([sim_target(sim, monkeypatch, "aksk", max_concurrency=1)]))
    sim.faults.add(
        {"kind": "rate_limit", "platform": "dataarts", "endpoint": "job_status", "count": 1, "retry_after": 0}
    )
    samples, _ = scrape_app(app)
    assert value(samples, "ingestion_scrape_errors_total", target="hw", reason="rate_limited") == 1
    assert sorted(states(samples).values()).count("unknown") == 1
    samples, _ = scrape_app(app)
    assert "unknown" not in states(samples).values()


def test_gateway_throttling_backs_the_target_off(sim: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.helpers import make_app, value

    gateway = sim.platform("dataarts").gateway
    gateway.throttle_per_second = 0  # every request is over the limit: 429 APIGW.0308, Retry-After 1
    app = make_app(make_settings([sim_target(sim, monkeypatch, "aksk", max_concurrency=1)]))
    samples, _ = scrape_app(app)
    assert sim.stats()[("dataarts", "job_status", "GET")] == 1  # then the target backs off, sending nothing
    assert value(samples, "ingestion_scrape_errors_total", target="hw", reason="rate_limited") == 3
    assert value(samples, "ingestion_scrape_errors_total", target="hw", reason="auth") == 0
    assert set(states(samples).values()) == {"unknown"}
