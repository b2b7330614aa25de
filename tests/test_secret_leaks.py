"""Secrets against a hostile upstream: every request echoed back in 401/500 answers, and no secret in any output.

The echo upstream answers every request (logins included) with its request line, headers and body: raw,
JSON-escaped, base64, URL-encoded, inside a JSON error document (whose message the collectors read), or all of
these at once. A target of each platform points at it with secrets holding quotes, backslashes, non-ASCII
characters, and some of four characters or fewer; an Informatica and a DataArts target log in to the simulator
and send their session id and token to the echo. Then no secret, and no session id, token, signature or
Authorization value the echo received, may appear raw, JSON-escaped, repr-escaped, base64 or URL-encoded in the
logs (json and console, debug), /metrics, /, /probe, --check-config or a refused reload.
"""

from __future__ import annotations

import ast
import base64
import io
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote, quote_plus

import pytest
import requests
import structlog
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter import logs
from exporter.app import Exporter
from exporter.reload import Reloader
from exporter.settings import MASK, load_settings
from exporter.simulator import Simulator, SimulatorOptions
from exporter.simulator.targets import write_private
from tests.helpers import MODEL, get, simulated

pytestmark = pytest.mark.timeout(120)

SECRETS = {
    "infa-echo.password": 'in"fa\\pä-wörd',
    "dataarts-echo.password": 'q"\\é',  # four characters
    "cloudstream-echo.secret_access_key": 'sk"\\ö-never-sent',
    "siren-basic.password": 'ï"\\',  # three characters
    "siren-bearer.token": 'tk"\\ñ-bearer',
    "siren-apikey.api_key": 'id-9:k"é\\y',
}
ACCESS_KEY_ID = 'AK"\\é'  # not a secret, but masked like one
CREDENTIAL_HEADERS = ("ids-session-id", "infa-session-id", "x-auth-token", "authorization", "cookie")
_MODES = ("raw", "json", "base64", "url", "document", "all")


class Echo:
    """An upstream on loopback that answers every request 401 or 500 with the request echoed back."""

    def __init__(self) -> None:
        self.credentials: set[str] = set()  # every credential-bearing header value received, and its parts
        self.cookies_sent = 0
        self.answers = 0
        self._lock = threading.Lock()
        echo = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = min(int(self.headers.get("Content-Length") or 0), 65536)
                body = self.rfile.read(length).decode("utf-8", "replace")
                head = "".join(f"{name}: {value}\r\n" for name, value in self.headers.items())
                received = f"{self.requestline}\r\n{head}\r\n{body}"
                status, text = echo.answer(received, dict(self.headers.items()))
                payload = text.encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json" if text.startswith("{") else "text/plain")
                self.send_header("Content-Length", str(len(payload)))
                self.send_header("Set-Cookie", "echo-session=c00kie-value; Path=/")
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = _answer

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def answer(self, received: str, headers: dict[str, str]) -> tuple[int, str]:
        with self._lock:
            count, self.answers = self.answers, self.answers + 1
            self.cookies_sent += any(name.lower() == "cookie" for name in headers)
            for name, value in headers.items():
                if name.lower() in CREDENTIAL_HEADERS:
                    self.credentials |= _parts(value)
        encoded = {
            "raw": received,
            "json": json.dumps(received),
            "base64": base64.b64encode(received.encode()).decode(),
            "url": quote(received, safe=""),
        }
        mode = _MODES[count % len(_MODES)]
        if mode == "document":
            fields = ("error_code", "error_msg", "code", "message", "description", "error")
            return 401, json.dumps({field: "ECHO" if "code" in field else received for field in fields})
        text = "\n".join(encoded.values()) if mode == "all" else encoded[mode]
        return (401 if count % 2 else 500), f"ECHO {mode}\n{text}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _parts(value: str) -> set[str]:
    """A header value, the credential after its scheme, and an AK/SK signature's parts."""
    parts = {value, value.split(" ", 1)[-1]}
    parts |= set(re.findall(r"(?:Access|Signature)=([^,\s]+)", value))
    return {part for part in parts if part}


def leak_forms(secret: str) -> set[str]:
    """The forms the issue names, computed here independently of the exporter's own list."""
    data = secret.encode()
    b64 = base64.b64encode(data).decode()
    return {
        secret,
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        repr(secret)[1:-1],
        b64,
        b64.rstrip("="),
        base64.urlsafe_b64encode(data).decode().rstrip("="),
        quote(secret, safe=""),
        quote(secret),
        quote_plus(secret),
    }


def assert_no_leak(run: str, secrets: set[str], outputs: dict[str, str]) -> None:
    """No form of any secret in any output; the count is printed (`pytest -s`) for the README's table."""
    found = [
        (secret, form, where)
        for secret in secrets
        for form in leak_forms(secret)
        for where, text in outputs.items()
        if form in text
    ]
    leaked = {secret for secret, _, _ in found}
    print(f"\n{run}: {len(leaked)} of {len(secrets)} secrets found, {len(found)} (form, output) pairs")
    assert not found, [f"{where}: {form!r} (a form of {secret!r})" for secret, form, where in found]


@pytest.fixture(scope="module")
def echo() -> Iterator[Echo]:
    server = Echo()
    yield server
    server.close()


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    options = SimulatorOptions(host="127.0.0.1", port=0, jobs=2, platforms=["informatica", "dataarts"])
    with Simulator(options) as simulator:
        yield simulator


def hostile_config(echo: Echo, sim: Simulator, directory: Path) -> dict[str, Any]:
    """A target of each platform on the echo, with the hostile secrets in files; two more log in to the simulator
    and send what they obtained (an Informatica session id, an IAM token) to the echo."""

    def secret(name: str, field: str) -> dict[str, str]:
        path = directory / f"{name}.{field}"
        write_private(path, SECRETS[f"{name}.{field}"])
        return {f"{field}_file": str(path)}

    huawei = {"project_id": "p1", "discovery": {"enabled": True}}
    token = {"type": "token", "iam_url": echo.url, "domain": "d", "username": "u"}
    session = simulated(sim, "informatica", "infa-session", directory) | {"server_url": echo.url}
    iam_token = simulated(sim, "dataarts", "dataarts-token", directory) | {"endpoint": echo.url}
    targets = [
        {"name": "infa-echo", "platform": "informatica", "login_url": echo.url, "username": "monitor"}
        | {"dataflows": ["df-1"]}
        | secret("infa-echo", "password"),
        session,
        {"name": "dataarts-echo", "platform": "dataarts", "endpoint": echo.url, "auth": token}
        | huawei
        | secret("dataarts-echo", "password"),
        iam_token,
        {"name": "cloudstream-echo", "platform": "cloudstream", "endpoint": echo.url}
        | {"auth": {"type": "aksk", "access_key_id": ACCESS_KEY_ID}}
        | huawei
        | secret("cloudstream-echo", "secret_access_key"),
        {"name": "siren-basic", "platform": "siren", "base_url": echo.url, "username": "mon", "jobs": ["j1"]}
        | secret("siren-basic", "password"),
        {"name": "siren-bearer", "platform": "siren", "base_url": echo.url, "auth": "bearer", "jobs": ["j1"]}
        | secret("siren-bearer", "token"),
        {"name": "siren-apikey", "platform": "siren", "base_url": echo.url, "auth": "api_key", "jobs": ["j1"]}
        | secret("siren-apikey", "api_key"),
    ]
    return {"scrape_budget_seconds": 5, "targets": targets}


def known_secrets(echo: Echo, sim: Simulator) -> set[str]:
    """Every secret configured, and every session id, token, signature and Authorization value the echo saw."""
    credentials = sim.credentials
    return {
        *SECRETS.values(),
        ACCESS_KEY_ID,
        credentials["informatica"]["password"],
        credentials["dataarts"]["password"],
        *echo.credentials,
    }


def write_config(path: Path, document: dict[str, Any]) -> None:
    path.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")


def test_an_echoing_upstream_leaks_no_secret_in_process(echo: Echo, sim: Simulator, tmp_path: Path) -> None:
    """Real scrapes through the real app, its log captured at debug in both formats, and a refused reload."""
    path = tmp_path / "config.yml"
    document = hostile_config(echo, sim, tmp_path)
    write_config(path, document)
    redactor = logs.Redactor()
    outputs: dict[str, str] = {}
    exporter = Exporter(load_settings(MODEL, path), redactor.sink)
    app = exporter.app
    app.ready.set()
    names = [target["name"] for target in document["targets"]]
    try:
        for fmt in ("json", "console"):
            stream = io.StringIO()
            logs.configure(redactor, "debug", fmt, stream)
            for scrape in range(len(_MODES)):  # every answer mode reaches every platform
                outputs[f"/metrics {fmt} {scrape}"] = get(app, "/metrics")[1]
            for name in names:
                outputs[f"/probe {name} {fmt}"] = get(app, "/probe", f"target={name}")[1]
            outputs["/"] = get(app, "/")[1]
            write_config(path, {**document, "scrape_budget_seconds": -1})
            status, outputs[f"reload {fmt}"] = Reloader(exporter, lambda: load_settings(MODEL, path))()
            assert not status
            write_config(path, document)
            outputs[f"log {fmt}"] = stream.getvalue()
    finally:
        logs.configure(logs.Redactor(), "info", "json")
        exporter.close()

    json_log, console_log = outputs["log json"], outputs["log console"]
    for marker in ("ECHO raw", "ECHO base64", "ECHO url", "ECHO json"):
        assert marker in json_log, f"no {marker} answer reached the log: the test would prove nothing"
    assert "login refused" in json_log and "ids-session-id" in json_log.lower()  # echoes were logged, masked
    lines = [json.loads(line) for line in json_log.splitlines()]  # masking never breaks a line's structure
    assert all(line["level"] in logs.LEVELS and line["timestamp"] for line in lines)
    assert all(re.match(r"\d{4}-\d\d-\d\dT|level=", line) for line in console_log.splitlines())  # one line each
    assert_no_leak("in process", known_secrets(echo, sim), outputs)
    print(f"cookies the upstream set that were sent back: {echo.cookies_sent} in {echo.answers} requests")
    assert not echo.cookies_sent


class Process:
    """A real exporter process; its output read by a thread, its address from its `listening` line."""

    def __init__(self, args: list[str]) -> None:
        self.lines: list[str] = []
        self._listening = threading.Event()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "exporter", "--web.listen-address", "127.0.0.1:0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            encoding="utf-8",
            env={**os.environ, "PYTHONIOENCODING": "utf-8"},
        )
        assert self.process.stdout is not None
        self._reader = threading.Thread(target=self._read, args=(self.process.stdout,), daemon=True)
        self._reader.start()
        assert self._listening.wait(20), "exporter did not start:\n" + "".join(self.lines)
        address = re.search(r"address\W+(127\.0\.0\.1:\d+)", "".join(self.lines))
        assert address is not None, self.lines
        self.url = "http://" + address[1]

    def _read(self, stream: IO[str]) -> None:
        for line in stream:  # until EOF: the process has exited
            self.lines.append(line)
            if "listening" in line:
                self._listening.set()

    def stop(self) -> str:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=10)
        self._reader.join(timeout=10)
        return "".join(self.lines)


def test_an_echoing_upstream_leaks_no_secret_from_the_process(echo: Echo, sim: Simulator, tmp_path: Path) -> None:
    """The real process at debug in both log formats, --check-config, and a reload refused over HTTP."""
    path = tmp_path / "config.yml"
    document = hostile_config(echo, sim, tmp_path)
    write_config(path, document)
    outputs: dict[str, str] = {}
    check = subprocess.run(
        [sys.executable, "-m", "exporter", "--check-config", "--config.file", str(path)],
        capture_output=True,
        text=True,
        encoding="utf-8",
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
        check=False,
        timeout=30,
    )
    assert check.returncode == 0, check.stderr
    outputs["--check-config"] = check.stdout + check.stderr
    for fmt in ("json", "console"):
        running = Process(["--config.file", str(path), "--log.level", "debug", "--log.format", fmt])
        try:
            for scrape in range(2):
                outputs[f"/metrics {fmt} {scrape}"] = requests.get(running.url + "/metrics", timeout=15).text
            outputs[f"/probe {fmt}"] = requests.get(running.url + "/probe?target=infa-session", timeout=15).text
            outputs[f"/ {fmt}"] = requests.get(running.url + "/", timeout=5).text
            write_config(path, {**document, "scrape_budget_seconds": -1})
            refused = requests.post(running.url + "/-/reload", timeout=15)
            assert refused.status_code == 500
            outputs[f"reload {fmt}"] = refused.text
            write_config(path, document)
        finally:
            outputs[f"log {fmt}"] = running.stop()
        assert "upstream call failed" in outputs[f"log {fmt}"] and "Traceback" not in outputs[f"log {fmt}"]
    assert_no_leak("process", known_secrets(echo, sim), outputs)


def test_an_echoing_500_after_a_simulator_login_leaks_no_session_id(echo: Echo, sim: Simulator, tmp_path: Path) -> None:
    """The Informatica login answers with an IDS-SESSION-ID; every sisvc call then gets an echoing 500 (or 401)."""
    path = tmp_path / "config.yml"
    write_config(path, {"targets": [simulated(sim, "informatica", "infa", tmp_path) | {"server_url": echo.url}]})
    stream = io.StringIO()
    redactor = logs.Redactor()
    logs.configure(redactor, "debug", "json", stream)
    exporter = Exporter(load_settings(MODEL, path), redactor.sink)
    try:
        before = set(echo.credentials)
        for _ in range(3):
            get(exporter.app, "/metrics")
        sessions = echo.credentials - before
    finally:
        logs.configure(logs.Redactor(), "info", "json")
        exporter.close()
    assert sessions, "no session id reached the echo"
    text = stream.getvalue()
    assert "ids-session-id" in text.lower()  # the echo of the header was logged, its value masked
    assert_no_leak("session ids", sessions, {"log": text})


# --- the redactor alone, over generated secrets and encodings -------------------------------------------

_SECRET_TEXT = st.text(st.sampled_from('ab"\\é€ö1:/+= %'), min_size=1, max_size=12).filter(lambda s: s.strip())
_ENCODINGS = {
    "raw": lambda text: text,
    "json": lambda text: json.dumps(text),
    "json-unicode": lambda text: json.dumps(text, ensure_ascii=False),
    "json-twice": lambda text: json.dumps(json.dumps(text)),
    "base64": lambda text: base64.b64encode(text.encode()).decode(),
    "url": lambda text: quote(text, safe=""),
    "form": lambda text: quote_plus(text),
}


@settings(max_examples=150, deadline=None)
@given(
    secret=_SECRET_TEXT,
    encoding=st.sampled_from(sorted(_ENCODINGS)),
    before=st.text(st.sampled_from("xyzXYZ0 -"), max_size=5),
    fmt=st.sampled_from(["json", "console"]),
)
def test_every_form_of_a_secret_is_masked_and_lines_stay_valid(
    secret: str, encoding: str, before: str, fmt: str
) -> None:
    """A secret echoed alone or inside a request, in any of the encodings, at any base64 alignment: the value
    shows none of its forms, JSON lines still parse, keys and level are untouched."""
    redactor = logs.Redactor()
    redactor.sink().put("password", secret)
    stream = io.StringIO()
    logs.configure(redactor, "debug", fmt, stream)
    try:
        body = _ENCODINGS[encoding](f'{before}{{"password": {json.dumps(secret)}}} Bearer {secret}')
        structlog.get_logger("test").warning("QQQ", body=body, error=ValueError(secret))  # no secret's letters
    finally:
        logs.configure(logs.Redactor(), "info", "json")
    line = stream.getvalue()
    if fmt == "json":
        event = json.loads(line)
        assert event["level"] == "warning" and event["event"] == "QQQ"
        shown = [event["body"], event["error"]]
    else:
        assert line.count("\n") == 1 and "[warning" in line
        body, error = line.split("QQQ", 1)[1].strip().removeprefix("body=").split(" error=")
        shown = [_console_value(body), _console_value(error)]
    # Base64 of a whole request: only the secret's own 3-byte groups are recognisable, so a short secret at
    # an unlucky alignment may still be decodable there; what the issue names (the secret's own base64) is not.
    forms = leak_forms(secret) if encoding != "base64" else {base64.b64encode(secret.encode()).decode()}
    assert not [form for form in forms for value in shown if form in value], (secret, encoding, shown)


def _console_value(shown: str) -> str:
    """A value as the console renderer wrote it: plain, or its repr() when it needs quoting."""
    return str(ast.literal_eval(shown)) if shown[:1] in "'\"" else shown


def test_a_renewed_value_replaces_its_forms_and_order_is_kept_without_sorting_per_line() -> None:
    redactor = logs.Redactor()
    sink = redactor.sink()
    sink.put("token", "token-0")
    held = redactor.forms()
    for renewal in range(1, 1000):
        sink.put("token", f"token-{renewal % 10}")
        if renewal % 10 == 0:  # a collection ended
            sink.settle()
    assert redactor.forms() > held, "the values replaced since the last collection ended are still masked"
    sink.settle()
    assert redactor.forms() == held
    ordered = redactor._current()
    assert list(ordered) == sorted(ordered, key=len, reverse=True)
    for _ in range(100):
        redactor.redact("no secret here")
    assert redactor._current() is ordered, "the order is rebuilt only when a value changes"


def test_values_put_between_two_log_lines_rebuild_the_order_once() -> None:
    """A collection signing thousands of requests puts a new signature per request: the masks must not be rebuilt
    per value (that made a collection's cost grow with the square of its requests), yet every value put before a
    line is masked in it."""
    redactor = logs.Redactor()
    sink = redactor.sink()
    signatures = [f"{index:064x}" for index in range(2000)]
    for signature in signatures[:-1]:
        sink.put("signature", signature)
    assert redactor._ordered == (), "nothing was logged yet, so nothing was rebuilt"
    sink.put("signature", signatures[-1])
    text = " ".join(signatures)
    assert redactor.redact(text) == " ".join([MASK] * len(signatures))
    ordered = redactor._ordered
    assert redactor.redact(text) and redactor._ordered is ordered
    sink.settle()
    assert redactor.redact(text).count(MASK) == 1, "only the value in use stays masked after the collection"


def test_a_secret_that_cannot_be_sent_in_a_header_is_not_quoted(tmp_path: Path, echo: Echo) -> None:
    """http.client refuses a header value that is not Latin-1 with an error naming the character."""
    write_private(tmp_path / "token", "tk-€-bearer")
    target = {"name": "es", "platform": "siren", "base_url": echo.url, "auth": "bearer", "jobs": ["j1"]}
    path = tmp_path / "config.yml"
    write_config(path, {"targets": [target | {"token_file": str(tmp_path / "token")}]})
    stream = io.StringIO()
    redactor = logs.Redactor()
    logs.configure(redactor, "debug", "json", stream)
    exporter = Exporter(load_settings(MODEL, path), redactor.sink)
    try:
        get(exporter.app, "/metrics")
    finally:
        logs.configure(logs.Redactor(), "info", "json")
        exporter.close()
    text = stream.getvalue()
    assert "not Latin-1 text" in text
    assert "€" not in text and "20ac" not in text.lower() and "position" not in text


def test_standard_library_log_messages_are_masked_too() -> None:
    """urllib3 and friends log through the standard library: their messages are masked the same way."""
    secret = SECRETS["dataarts-echo.password"]
    redactor = logs.Redactor()
    redactor.sink().put("password", secret)
    stream = io.StringIO()
    logs.configure(redactor, "debug", "json", stream)
    try:
        logging.getLogger("urllib3.connectionpool").warning("echo: %s %s", secret, quote(json.dumps(secret)))
    finally:
        logs.configure(logs.Redactor(), "info", "json")
    line = stream.getvalue()
    assert line.startswith("level=warning logger=urllib3.connectionpool echo: ")
    assert not [form for form in leak_forms(secret) if form in line.split(" echo: ", 1)[1]]


@given(st.text(alphabet="0123456789abcdefxyzABCXYZ._~-", max_size=80) | st.text(max_size=40))
@settings(max_examples=300, deadline=None, derandomize=True, database=None)
def test_a_value_that_no_escaping_changes_has_the_same_forms_by_the_short_way(secret: str) -> None:
    """Session ids and hex signatures take a shorter way to their forms; it must give exactly the full set."""
    assert logs.encoded_forms(secret) == logs._escaped_forms(secret)
