"""Upstream prepares each request as `Session.request` would: the same method, URL, headers in order, and body."""

from __future__ import annotations

from typing import Any

import pytest
import requests
from prometheus_client import CollectorRegistry

from exporter.http import Upstream
from exporter.settings import TargetSettings
from exporter.telemetry import Telemetry

CASES: list[dict[str, Any]] = [
    {"method": "GET", "url": "http://127.0.0.1:9/api/v1/jobs/a%20b", "params": {"page": 2, "q": "x y", "e": None}},
    {"method": "GET", "url": "http://127.0.0.1:9/s", "params": {"q": "type=='SI_DATAFLOW'", "é": "\u00e9/&", "n": 1.5}},
    {"method": "get", "url": "http://127.0.0.1:9/api?fixed=1", "params": {"more": ["a", "b"]}},
    {"method": "POST", "url": "https://127.0.0.1:9/login", "json": {"user": "u", "password": "p\u00e9"}},
    {"method": "POST", "url": "http://127.0.0.1:9/raw", "data": b"\x00body", "headers": {"Content-Type": "x/y"}},
    {"method": "GET", "url": "http://127.0.0.1:9/", "headers": {"accept": "text/plain", "X-Auth-Token": "secret"}},
    {"method": "GET", "url": "http://user:pa%20ss@127.0.0.1:9/with/credentials"},
    {"method": "GET", "url": "HTTP://LocalHost:9/Path/é?a=b c", "headers": {"Accept": None, "X-Sdk-Date": "d"}},
    {"method": "GET", "url": "http://127.0.0.1:9/mail@box/x", "params": {"at": "a@b"}},
]


@pytest.mark.parametrize("case", CASES, ids=lambda case: f"{case['method']} {case['url']}")
def test_a_prepared_request_is_the_one_session_request_would_send(case: dict[str, Any]) -> None:
    client = Upstream("test", TargetSettings(name="t", platform="test"), Telemetry(CollectorRegistry()))
    arguments = (case.get("headers"), case.get("params"), case.get("json"), case.get("data"))
    first = client._prepare(case["method"], case["url"], *arguments)
    ours = client._prepare(case["method"], case["url"], *arguments)  # the query string remembered, if any
    assert first.url == ours.url
    theirs = client.session.prepare_request(
        requests.Request(
            case["method"],
            case["url"],
            headers=case.get("headers"),
            params=case.get("params"),
            json=case.get("json"),
            data=case.get("data"),
        )
    )
    assert (ours.method, ours.url, ours.body) == (theirs.method, theirs.url, theirs.body)
    assert list(ours.headers.items()) == list(theirs.headers.items())
    assert "Cookie" not in ours.headers
    client.close()


def test_remembered_query_strings_tell_equal_values_of_other_types_apart() -> None:
    client = Upstream("test", TargetSettings(name="t", platform="test"), Telemetry(CollectorRegistry()))
    urls = [client._prepare("GET", "http://127.0.0.1:9/", None, {"n": n}, None, None).url for n in (1, True, 1.0, 1)]
    assert urls == [f"http://127.0.0.1:9/?n={text}" for text in ("1", "True", "1.0", "1")]
    client.close()


@pytest.mark.parametrize("value", ["a\r\nSet-Cookie: x", " leading", "tab\tthen\n"])
def test_a_header_value_requests_refuses_is_refused_the_same_way(value: str) -> None:
    client = Upstream("test", TargetSettings(name="t", platform="test"), Telemetry(CollectorRegistry()))
    with pytest.raises(requests.exceptions.InvalidHeader) as theirs:
        client.session.prepare_request(requests.Request("GET", "http://127.0.0.1:9/", headers={"X-Token": value}))
    with pytest.raises(requests.exceptions.InvalidHeader) as ours:
        client._prepare("GET", "http://127.0.0.1:9/", {"X-Token": value}, None, None, None)
    assert str(ours.value) == str(theirs.value)
    client.close()


def test_remembered_urls_stay_within_their_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("exporter.http._URLS_KEPT", 8)
    client = Upstream("test", TargetSettings(name="t", platform="test"), Telemetry(CollectorRegistry()))
    sizes = []
    for job in range(50):
        assert client._prepare("GET", f"http://127.0.0.1:9/jobs/{job}", None, None, None, None).url == (
            f"http://127.0.0.1:9/jobs/{job}"
        )
        sizes.append(len(client._urls))
    assert max(sizes) == 8 and sizes[-1] < 8
    client.close()
