"""Property-based tests: generated upstream documents never break a model, a collector or the scrape.

Documents are arbitrary JSON, arbitrary text, or the seed fixtures with parts of them replaced, dropped or
retyped. Every response model must either accept a document or reject it with a pydantic ValidationError.
Every collector, fed such documents for every upstream call (requests-mock), must leave /metrics answering
200 with every job it watches present in exactly one state, and may fail only with the errors it is meant
to raise (classified upstream errors, validation errors), never with a programming error, and must not
send more than a handful of requests whatever the answers say (paging that never ends).

CI runs a few hundred examples, derandomized. Long runs, with fresh randomness:

    FUZZ_EXAMPLES=20000 .venv/bin/pytest -q -s tests/test_fuzz.py

(FUZZ_EXAMPLES is the number of examples for each test.)
"""

from __future__ import annotations

import contextlib
import inspect
import io
import json
import os
import re
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydantic
import pytest
import requests_mock as rm
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter import logs
from exporter.collectors import COLLECTORS
from exporter.collectors.base import ErrorTracker
from exporter.http import UpstreamError
from exporter.metrics import STATES
from exporter.parsing import Lenient
from tests.helpers import get, make_app, make_settings, parse

FIXTURES = Path(__file__).parent / "fixtures"
LONG_RUN = int(os.environ.get("FUZZ_EXAMPLES", "0"))
settings.register_profile(
    "fuzz",
    deadline=None,
    database=None,
    derandomize=not LONG_RUN,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
pytestmark = pytest.mark.timeout(0 if LONG_RUN else 120)  # a long run takes as long as it takes
RUN: Counter[str] = Counter()
OUTCOMES: Counter[tuple[str, str]] = Counter()  # per platform: scrapes that succeeded or failed


def examples(ci: int) -> settings:
    return settings(settings.get_profile("fuzz"), max_examples=LONG_RUN or ci)


def seed(path: str) -> Any:
    return json.loads((FIXTURES / path).read_text())


# --- documents --------------------------------------------------------------------------------------------

SEEDS = {path.relative_to(FIXTURES).as_posix(): json.loads(path.read_text()) for path in FIXTURES.glob("*/*.json")}


def _keys(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _keys(item)
    elif isinstance(value, list):
        for item in value:
            yield from _keys(item)


KNOWN_KEYS = sorted({key for document in SEEDS.values() for key in _keys(document)})
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30)
    | st.sampled_from(
        [
            "",
            "0",
            "-1",
            "1e999",
            "NaN",
            "2022-02-14T04:04:13.000+0000",
            "0001-01-01T00:00:00+14:00",
            "9999-12-31T23:59:59-14:00",
            "Running",
            "NORMAL",
            "job_running",
            "successful",
            "{}",
            "[]",
            '{"nodes": [{"id": 1}], "edges": [{"from": 1}]}',
            '{"a"',
            "\u0000",
            "é" * 5,
        ]
    )
)
keys = st.sampled_from(KNOWN_KEYS) | st.text(max_size=12)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(keys, inner, max_size=6),
    max_leaves=25,
)


@st.composite
def mutated(draw: st.DrawFn, document: Any, depth: int = 0) -> Any:
    """The document with some values replaced by generated ones, some keys dropped, some types changed."""
    choice = draw(st.integers(0, 39))
    if choice == 0:
        return draw(json_values)
    if choice == 1 and depth:
        return draw(st.sampled_from([None, "", 0, [], {}, [document], {"0": document}]))
    if choice == 2 and isinstance(document, str):
        return draw(scalars)
    if isinstance(document, dict):
        out: dict[str, Any] = {}
        for key, value in document.items():
            if draw(st.integers(0, 19)) == 0:
                continue
            out[key] = draw(mutated(value, depth + 1))
        if draw(st.integers(0, 9)) == 0:
            out[draw(keys)] = draw(json_values)
        return out
    if isinstance(document, list):
        items = [draw(mutated(item, depth + 1)) for item in document]
        if items and draw(st.integers(0, 4)) == 0:
            items = items * draw(st.integers(0, 3))
        return items
    return document


def documents(seed_document: Any = None) -> st.SearchStrategy[Any]:
    seeded = [mutated(seed_document)] * 3 if seed_document is not None else []
    return st.one_of(*seeded, json_values, st.sampled_from(list(SEEDS.values())).flatmap(mutated))


def body(seed_document: Any = None) -> st.SearchStrategy[bytes]:
    """What an upstream sends: mostly JSON, sometimes text that is not, rarely nothing."""
    as_json = documents(seed_document).map(lambda doc: json.dumps(doc).encode())
    raw = st.binary(max_size=64) | st.text(max_size=64).map(str.encode)
    return st.one_of(as_json, as_json, as_json, as_json, raw)


# --- models -----------------------------------------------------------------------------------------------

MODELS = sorted(
    {
        cls
        for module in {sys.modules[c.__module__] for c in COLLECTORS.values()}
        for _, cls in inspect.getmembers(module, inspect.isclass)
        if issubclass(cls, pydantic.BaseModel) and cls is not Lenient and cls.__module__ == module.__name__
    },
    key=lambda cls: f"{cls.__module__}.{cls.__name__}",
)


def test_every_collector_module_has_response_models() -> None:
    assert {cls.__module__.rsplit(".", 1)[-1] for cls in MODELS} >= set(COLLECTORS), MODELS
    assert all(issubclass(cls, Lenient) or not cls.__name__.endswith("Settings") for cls in MODELS)


@examples(200)
@given(data=st.data())
def test_models_accept_or_reject_cleanly(data: st.DataObject) -> None:
    model = data.draw(st.sampled_from(MODELS), label="model")
    if issubclass(model, Lenient):
        document = data.draw(documents(), label="document")
    else:  # settings models: only their validation is under test here
        document = data.draw(json_values, label="document")
    RUN["models"] += 1
    with contextlib.suppress(pydantic.ValidationError):
        model.model_validate(document)


# --- collectors -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    method: str
    pattern: str  # searched in the URL
    seed: Any
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Platform:
    target: dict[str, Any]
    secrets: dict[str, str]
    routes: tuple[Route, ...]


INFA_LOGIN = {
    "userInfo": {"sessionId": "fuzz-session", "orgId": "org"},
    "products": [{"name": "Integration Cloud", "baseApiUrl": "https://usw1.dm2-us.informaticacloud.com/saas"}],
}
INFA_ID = "1948938e-3923-4602-aba8-f122e3d66faf"
CS_LIST = {
    "message_id": "CS.10001",
    "message": "",
    "current_time": 1700000000000,
    "payload": {
        "total": 2,
        "jobs": [
            {
                "job_id": 0,
                "name": "kafka_to_dws",
                "job_type": "flink_sql_job",
                "status": "job_running",
                "status_desc": "",
                "create_time": 1699990000000,
                "start_time": 1700000000000,
            },
            {
                "job_id": 7,
                "name": "other",
                "job_type": "flink_jar_job",
                "status": "job_cancel_success",
                "status_desc": "",
                "create_time": 1699990000000,
                "start_time": 1700000000000,
            },
        ],
    },
}
DLF_LIST = {
    "total": 2,
    "jobs": [
        {"name": "job_sms", "jobType": "REAL_TIME", "status": "NORMAL"},
        {"name": "job_two", "jobType": "REAL_TIME", "status": "STOPPED"},
    ],
}
IAM_TOKEN = {"token": {"expires_at": "2099-01-01T00:00:00.000000Z"}}
OBJECTS = {"count": 1, "objects": [{"id": "2b8a9a53-4b6e-4f0c-8f7b-0c3bf0a6f0aa", "path": "/Default/other-flow"}]}

PLATFORMS = {
    "informatica": Platform(
        {
            "name": "fuzz",
            "platform": "informatica",
            "login_url": "https://dm2-us.informaticacloud.com",
            "username": "monitor",
            "dataflows": [INFA_ID, "8d1f0f7e-0000-4000-8000-000000000001"],
            "discovery": {"enabled": True},
        },
        {"password": "fuzz-password"},
        (
            Route("POST", "/v3/login", INFA_LOGIN),
            Route("GET", "/status/dataflows/", seed("informatica/status_seed.json")),
            Route("GET", "/sisvc/monitor/v1/jobs/", seed("informatica/job_seed.json")),
            Route(
                "GET",
                "/statistics/dataflows/",
                {
                    "dataflowId": INFA_ID,
                    "dataflowRunId": 1,
                    "inMessages": 5,
                    "outMessages": 4,
                    "inBytes": 50,
                    "outBytes": 40,
                    "nodes": [],
                },
            ),
            Route("GET", "/public/core/v3/objects", OBJECTS),
        ),
    ),
    "siren": Platform(
        {
            "name": "fuzz",
            "platform": "siren",
            "base_url": "https://es.example.com:9200",
            "username": "monitor",
            "jobs": ["postgres-events", "mysql-orders"],
            "discovery": {"enabled": True},
        },
        {"password": "fuzz-password"},
        (
            Route("GET", "/_siren/connector/jobs/_search", seed("siren/search.json")),
            Route("GET", "/_siren/connector/jobs/ingestion/", seed("siren/job_running.json")),
            Route("GET", "/_siren/connector/jobs/ingestion", {"jobs": [seed("siren/job_error.json")]}),
        ),
    ),
    "dataarts": Platform(
        {
            "name": "fuzz",
            "platform": "dataarts",
            "endpoint": "https://dayu-dlf.cn-north-4.myhuaweicloud.com",
            "project_id": "b384b9e9ab9b4ee8994c8633aabc9505",
            "jobs": ["job_sms"],
            "discovery": {"enabled": True},
            "auth": {
                "type": "token",
                "iam_url": "https://iam.cn-north-4.myhuaweicloud.com",
                "domain": "acct",
                "username": "monitor",
                "project_name": "cn-north-4",
            },
        },
        {"password": "fuzz-password"},
        (
            Route("POST", "/v3/auth/tokens", IAM_TOKEN, (("X-Subject-Token", "fuzz-token-0123456789"),)),
            Route("GET", "/status", seed("dataarts/status_seed.json")),
            Route("GET", "/jobs", DLF_LIST),
        ),
    ),
    "cloudstream": Platform(
        {
            "name": "fuzz",
            "platform": "cloudstream",
            "endpoint": "https://cs.cn-north-4.myhuaweicloud.com",
            "project_id": "48cc2c48765f481480c7db940d6409d1",
            "jobs": [0, 7],
            "discovery": {"enabled": True},
            "auth": {"type": "aksk", "access_key_id": "HPUAQ4Z2CLOUDSTREAM0"},
        },
        {"secret_access_key": "cloudstream-secret-access-key-0123456789"},
        (Route("POST", "/jobs/metrics", seed("cloudstream/metrics_seed.json")), Route("GET", "/jobs", CS_LIST)),
    ),
}

# What a collector may fail with: classified upstream errors, documents that do not validate, and the
# lookups a collector makes on purpose (a configured job missing from a list). Anything else is a bug.
EXPECTED_ERRORS = (UpstreamError, pydantic.ValidationError, LookupError, TimeoutError)
MAX_REQUESTS = 40  # for a target of two jobs: an answer that repeats itself must not make paging run away


Answers = list[tuple[Route, int, bytes]]  # per route: status and body


@st.composite
def answers(draw: st.DrawFn, platform: Platform) -> Answers:
    """Per route: half the time the seed as it is, else a mutated seed, another document or another status."""
    answered = []
    for route in platform.routes:
        kind = draw(st.sampled_from(["seed"] * 5 + ["mutated"] * 3 + ["other", "status"]))
        status = 200
        if kind == "seed":
            content = json.dumps(route.seed).encode()
        elif kind == "mutated":
            content = json.dumps(draw(mutated(route.seed))).encode()
        elif kind == "other":
            content = draw(body())
        else:
            status = draw(st.sampled_from([201, 204, 400, 401, 403, 404, 429, 500, 502, 503]))
            content = draw(body(route.seed))
        answered.append((route, status, content))
    return answered


def serve(answered: Answers) -> Callable[[Any, Any], bytes]:
    def respond(request: Any, context: Any) -> bytes:
        for route, status, content in answered:
            if request.method == route.method and re.search(re.escape(route.pattern), request.url):
                context.status_code = status
                context.headers.update(dict(route.headers))
                if status == 429:
                    context.headers["Retry-After"] = "1"
                return content
        context.status_code = 404
        return b'{"error": "not served"}'

    return respond


@pytest.fixture(scope="module", autouse=True)
def _environment() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        for platform in PLATFORMS.values():
            for key, secret in platform.secrets.items():
                patch.setenv(f"INGESTION_EXPORTER_FUZZ_{key.upper()}", secret)
        yield


@pytest.fixture(scope="module")
def raised() -> Iterator[list[BaseException]]:
    """Every error a collector raised or recorded, kept by wrapping the error tracker."""
    seen: list[BaseException] = []
    original = ErrorTracker.record

    def record(self: ErrorTracker, exc: BaseException, subject: str, **context: str) -> str:
        seen.append(exc)
        return original(self, exc, subject, **context)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ErrorTracker, "record", record)
        yield seen


@pytest.fixture(scope="module", autouse=True)
def _report() -> Iterator[None]:
    yield
    print(f"\nhypothesis examples run: {dict(RUN)}, total {sum(RUN.values())}")
    print("scrape outcomes: " + ", ".join(f"{p} {o} {n}" for (p, o), n in sorted(OUTCOMES.items())))


@pytest.mark.parametrize("name", sorted(PLATFORMS))
def test_collector_never_breaks_the_scrape(name: str, raised: list[BaseException]) -> None:
    platform = PLATFORMS[name]
    configured = {str(job) for job in platform.target["jobs" if "jobs" in platform.target else "dataflows"]}

    @examples(60)
    @given(answered=answers(platform))
    def scrape(answered: Answers) -> None:
        RUN[name] += 1
        raised.clear()
        stream = io.StringIO()
        logs.configure(logs.Redactor(), "info", "json", stream)
        app = make_app(make_settings([platform.target], scrape_budget_seconds=3.0))
        try:
            with rm.Mocker() as mock:
                mock.register_uri(rm.ANY, rm.ANY, content=serve(answered))
                status, text = get(app, "/metrics")
                requests = mock.call_count
        finally:
            app.runners.close()
        assert status.startswith("200"), status
        samples = parse(text)
        success = [v for (n, _), v in samples.items() if n == "ingestion_scrape_success"]
        assert success in ([0.0], [1.0]), success
        OUTCOMES[name, "success" if success == [1.0] else "failed"] += 1
        states: dict[str, list[str]] = {}
        for (metric, labels), v in samples.items():
            if metric == "ingestion_job_state" and v == 1.0:
                states.setdefault(dict(labels)["job_id"], []).append(dict(labels)["state"])
        assert configured <= set(states), (configured, states)
        for job_id, current in states.items():
            assert len(current) == 1 and current[0] in STATES, (job_id, current)
        unexpected = [exc for exc in raised if not isinstance(exc, EXPECTED_ERRORS)]
        assert not unexpected, [f"{type(exc).__name__}: {exc}" for exc in unexpected]
        assert requests <= MAX_REQUESTS, f"{requests} upstream requests for one scrape"
        assert "Traceback" not in stream.getvalue()
        assert "collection overran its budget" not in stream.getvalue()

    try:
        scrape()
    finally:
        logs.configure(logs.Redactor(), "info", "json")
