"""Hostile configuration and web configuration: every problem is one line naming the field, never a traceback, a
hang, quadratic time or a quoted secret.

The process is run with `--check-config` (exit 2, stderr one line per problem); reloads go through the app's
`/-/reload` with the web configuration wired as the command line wires it (refused, gauge at 0, the running
configuration kept); logins go through the real server on 127.0.0.1. Hypothesis feeds arbitrary bytes and
YAML to the loaders.
"""

from __future__ import annotations

import datetime
import io
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import bcrypt
import hypothesis
import pydantic
import pytest
import requests
import yaml
from hypothesis import strategies as st

from exporter import webconfig
from exporter.config_files import MAX_DEPTH, MAX_SECRET_BYTES
from exporter.config_problems import MAX_LINE, MAX_PROBLEMS
from exporter.reload import Reloader
from exporter.settings import ConfigError, RootSettings, load_settings
from exporter.webconfig import WebConfigHolder, load_web_config, protect
from tests.helpers import MODEL, make_app, make_settings
from tests.test_reload import InProcess
from tests.test_webconfig import Served, bcrypt_hash

pytestmark = pytest.mark.timeout(60)
SECRET = 'Pa"ss\\wörd-9f'
"""A password with a quote, a backslash and non-ASCII, as an operator might paste it inline by mistake."""
USER, PASSWORD = "prometheus", "scrape-me-please"
UPSTREAM = "http://127.0.0.1:9"  # nothing here is scraped: configurations are loaded, never collected
FUZZ = hypothesis.settings(max_examples=150, deadline=datetime.timedelta(seconds=5), derandomize=True, database=None)


def siren(**overrides: Any) -> dict[str, Any]:
    return {"name": "es", "platform": "siren", "base_url": UPSTREAM, "auth": "none", "jobs": ["a"], **overrides}


def dump(path: Path, document: Any) -> Path:
    path.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    return path


def problems_of(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_settings(MODEL, path)
    return caught.value.lines


def web_problems_of(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_web_config(path)
    return caught.value.lines


def assert_clean(lines: list[str]) -> None:
    """What every refusal promises: a few bounded lines, none of them quoting the secret in any form."""
    assert 0 < len(lines) <= MAX_PROBLEMS + 1, lines
    for line in lines:
        assert "\n" not in line and "\r" not in line and len(line) <= MAX_LINE, line
        for form in (SECRET, json.dumps(SECRET)[1:-1], "ss\\w", "wörd", 'Pa"ss'):
            assert form not in line, line


# --- the process: --check-config ------------------------------------------------------------------------------


def check_config(
    tmp_path: Path, config: bytes | None, web: bytes | None = None, env: dict[str, str] | None = None
) -> list[str]:
    """Run `--check-config` on these file contents; assert exit 2 and no traceback; the stderr lines."""
    args = [sys.executable, "-m", "exporter", "--check-config"]
    for flag, content, name in (("--config.file", config, "config.yml"), ("--web.config.file", web, "web.yml")):
        if content is not None:
            (tmp_path / name).write_bytes(content)
            args += [flag, str(tmp_path / name)]
    result = subprocess.run(
        args, capture_output=True, text=True, timeout=30, env={**os.environ, **(env or {})}, check=False
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert len(result.stderr) < 4096, f"{len(result.stderr)} bytes on stderr"
    lines = result.stderr.splitlines()
    assert all(line.startswith(("invalid configuration: ", "invalid web configuration: ")) for line in lines), lines
    assert_clean(lines)
    return lines


GOOD_CONFIG = yaml.safe_dump({"targets": [siren()]}).encode()
SECRET_LINE = f'targets:\n  - name: es\n    password: "{SECRET}" x\n'.encode()


@pytest.mark.parametrize(
    ("config", "web", "env", "expected"),
    [
        pytest.param(
            b"a: " + b"[" * 5000 + b"]" * 5000 + b"\n",
            None,
            None,
            # the top-level mapping is the first level, so the 64th bracket is one too many
            [f"is nested deeper than {MAX_DEPTH} levels at line 1, column {MAX_DEPTH + 3}"],
            id="5000-level-nesting",
        ),
        pytest.param(bytes(range(256)), None, None, ["config.yml is not UTF-8 text"], id="binary-config"),
        pytest.param(
            "targets: []\n".encode("utf-16"), None, None, ["config.yml is UTF-16 text; save it as UTF-8"], id="utf16"
        ),
        pytest.param(GOOD_CONFIG, bytes(range(256)), None, ["web.config.file: "], id="binary-web-config"),
        pytest.param(GOOD_CONFIG, "{}\n".encode("utf-16"), None, ["web.yml is UTF-16 text"], id="utf16-web-config"),
        pytest.param(SECRET_LINE, None, None, ["is not valid YAML: syntax error at line 3, column "], id="yaml-secret"),
        pytest.param(
            GOOD_CONFIG,
            f"basic_auth_users:\n  {USER}: '{SECRET}\n".encode(),
            None,
            ["web.yml is not valid YAML: syntax error at line "],
            id="web-yaml-secret",
        ),
        pytest.param(
            None,
            None,
            {"INGESTION_EXPORTER_TARGETS": "not-json"},
            ["INGESTION_EXPORTER_TARGETS: not valid JSON (Expecting value: line 1 column 1 (char 0))"],
            id="env-not-json",
        ),
        pytest.param(
            GOOD_CONFIG,
            yaml.safe_dump({"basic_auth_users": {USER: bcrypt_hash(PASSWORD).replace("$04$", "$31$", 1)}}).encode(),
            None,
            [f"invalid web configuration: basic_auth_users.{USER}: bcrypt cost 31 is outside 4..14"],
            id="bcrypt-cost-31",
        ),
        pytest.param(
            yaml.safe_dump(
                {
                    "min_interval_seconds": float("inf"),
                    "targets": [siren(**{"bad\nkey": 1, "timeouts": {"read_seconds": 1e-300}})],
                }
            ).encode(),
            None,
            None,
            [
                "min_interval_seconds: Input should be a finite number",
                "targets[0].timeouts.read_seconds: Input should be greater than or equal to 0.01",
                'targets[0]."bad\\nkey": unknown key',
            ],
            id="one-line-per-problem",
        ),
    ],
)
def test_check_config_refuses_with_exit_2_and_one_line_per_problem(
    tmp_path: Path, config: bytes | None, web: bytes | None, env: dict[str, str] | None, expected: list[str]
) -> None:
    lines = check_config(tmp_path, config, web, env)
    assert len(lines) == len(expected), lines
    for line, words in zip(lines, expected, strict=True):
        assert words in line, (line, words)


# --- secret files: regular files only, capped, never blocking -------------------------------------------------


def load_within(path: Path, seconds: float = 10.0) -> list[str]:
    """The problems of loading `path`, from a thread that must finish in time (a FIFO would block it forever)."""
    outcome: list[list[str]] = []
    done = threading.Event()

    def load() -> None:
        try:
            load_settings(MODEL, path)
            outcome.append([])
        except ConfigError as exc:
            outcome.append(exc.lines)
        finally:
            done.set()

    threading.Thread(target=load, daemon=True).start()
    assert done.wait(seconds), "loading the configuration blocked"
    return outcome[0]


@pytest.mark.parametrize(
    ("make", "why"),
    [
        pytest.param(lambda directory: Path("/dev/zero"), "/dev/zero is not a regular file", id="dev-zero"),
        pytest.param(lambda d: (os.mkfifo(d / "fifo"), d / "fifo")[1], "fifo is not a regular file", id="fifo"),
        pytest.param(lambda directory: directory, "is not a regular file", id="directory"),
        pytest.param(
            lambda d: (d / "big").write_bytes(b"x" * (MAX_SECRET_BYTES + 1)) and d / "big",
            "larger than 64 KiB",
            id="cap",
        ),
        pytest.param(lambda d: (d / "bin").write_bytes(b"\x00\xff\xfe") and d / "bin", "not UTF-8 text", id="binary"),
        pytest.param(lambda d: (d / "nul").write_bytes(b"ab\x00cd") and d / "nul", "control character", id="nul"),
        pytest.param(lambda d: (d / "two").write_text("one\ntwo\n") and d / "two", "control character", id="2-lines"),
    ],
)
def test_a_secret_file_that_is_not_one_line_of_text_is_refused_at_once_naming_its_field(
    tmp_path: Path, make: Callable[[Path], Path], why: str
) -> None:
    secret = make(tmp_path)
    config = dump(tmp_path / "config.yml", {"targets": [siren(auth="basic", username="u", password_file=str(secret))]})
    lines = load_within(config)
    assert len(lines) == 1 and lines[0].startswith("targets[0]: password_file: ") and why in lines[0], lines


def test_a_secret_from_the_environment_is_one_line_of_text_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = dump(tmp_path / "config.yml", {"targets": [siren(auth="basic", username="u")]})
    monkeypatch.setenv("INGESTION_EXPORTER_ES_PASSWORD", f"{SECRET}\n")  # as `kubectl create secret` often leaves it
    assert load_settings(MODEL, config).all_targets()[0].secret_items() == [("password", SECRET)]
    monkeypatch.setenv("INGESTION_EXPORTER_ES_PASSWORD", f"{SECRET}\r\nX-Injected: 1")
    lines = problems_of(config)
    assert lines == [
        "targets[0]: password: the environment variable INGESTION_EXPORTER_ES_PASSWORD holds a control character; "
        "a secret is one line of text"
    ]
    assert_clean(lines)


# --- numbers, patterns, keys, sources ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ({"min_interval_seconds": float("inf")}, "min_interval_seconds: Input should be a finite number"),
        ({"min_interval_seconds": 1e300}, "min_interval_seconds: Input should be less than or equal to 3600"),
        ({"scrape_budget_seconds": float("nan")}, "scrape_budget_seconds: Input should be a finite number"),
        ({"scrape_budget_seconds": 1e-300}, "scrape_budget_seconds: Input should be greater than or equal to 0.01"),
        ({"targets": [siren(timeouts={"connect_seconds": 1e-300})]}, "targets[0].timeouts.connect_seconds: "),
        ({"targets": [siren(timeouts={"read_seconds": float("nan")})]}, "targets[0].timeouts.read_seconds: "),
        ({"targets": [siren(budget_seconds=float("-inf"))]}, "targets[0].budget_seconds: Input should be a finite"),
        ({"targets": [siren(budget_seconds=1e-300)]}, "targets[0].budget_seconds: Input should be greater than"),
        ({"targets": [siren(search_lookback_seconds=float("nan"))]}, "targets[0].search_lookback_seconds: "),
        (
            {"targets": [siren(discovery={"enabled": True, "interval_seconds": float("inf")})]},
            "targets[0].discovery.interval_seconds: Input should be a finite number",
        ),
        (
            {"targets": [siren(discovery={"enabled": True, "interval_seconds": 1e300})]},
            "targets[0].discovery.interval_seconds: Input should be less than or equal to 86400",
        ),
    ],
)
def test_infinite_nan_and_vanishing_numbers_are_refused_naming_the_field(
    tmp_path: Path, document: dict[str, Any], expected: str
) -> None:
    lines = problems_of(dump(tmp_path / "config.yml", {"targets": [siren()], **document}))
    assert len(lines) == 1 and lines[0].startswith(expected), lines


def test_messages_name_the_field_and_read_as_written(tmp_path: Path) -> None:
    document = {
        "scrape_budget_secnds": 3,
        "targets": [
            siren(discovery={"enabled": True, "include": ["ok-.*", "(unclosed"]}, job_typ="x"),
            siren(name="es2", jobs=[{"idd": "a"}]),
            {"name": "es3", "platform": "sirne"},
            {"name": "es4"},
        ],
    }
    assert problems_of(dump(tmp_path / "config.yml", document)) == [
        "targets[0].discovery.include[1]: bad pattern '(unclosed': missing ), unterminated subpattern at position 0",
        "targets[0].job_typ: unknown key; did you mean job_type?",
        "targets[1].jobs[0].id: Field required",
        "targets[1].jobs[0].idd: unknown key; did you mean id?",
        "targets[1].jobs[0]: Input should be a valid string",
        "targets[2].platform: not one of informatica, siren, dataarts, cloudstream; did you mean siren?",
        "targets[3].platform: required; one of informatica, siren, dataarts, cloudstream",
        "scrape_budget_secnds: unknown key; did you mean scrape_budget_seconds?",
    ]


def test_errors_from_the_environment_read_as_those_from_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pydantic's union tag (`targets[0].siren.`) and its discriminator wording never reach the operator."""
    broken = [siren(timeouts={"read_seconds": "soon"}, job_typ="x"), {"name": "b"}]
    from_file = problems_of(dump(tmp_path / "config.yml", {"targets": broken}))
    monkeypatch.setenv("INGESTION_EXPORTER_TARGETS", json.dumps(broken))
    from_environment = problems_of(dump(tmp_path / "empty.yml", {}))
    assert from_environment == from_file
    assert from_file == [
        "targets[0].timeouts.read_seconds: Input should be a valid number, unable to parse string as a number",
        "targets[0].job_typ: unknown key; did you mean job_type?",
        "targets[1].platform: required; one of informatica, siren, dataarts, cloudstream",
    ]
    assert not any(".siren" in line or "discriminator" in line for line in from_environment)


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("not-json", "not valid JSON (Expecting value: line 1 column 1 (char 0))"),
        ("[" * 50_000 + "]" * 50_000, "not valid JSON (nested too deeply)"),
        ('[{"name": "es"', "not valid JSON (Expecting ',' delimiter: line 1 column 15 (char 14))"),
    ],
)
def test_json_in_the_environment_that_does_not_parse_names_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str, why: str
) -> None:
    monkeypatch.setenv("INGESTION_EXPORTER_TARGETS", value)
    assert problems_of(dump(tmp_path / "config.yml", {})) == [f"INGESTION_EXPORTER_TARGETS: {why}"]


def test_a_flood_of_problems_is_cut_and_every_line_is_bounded(tmp_path: Path) -> None:
    long_key = "k" * 5000
    lines = problems_of(dump(tmp_path / "config.yml", {"targets": [siren(jobs=[{"x": 1}] * 100, **{long_key: 1})]}))
    assert len(lines) == MAX_PROBLEMS + 1 and lines[-1].startswith("... and ") and lines[-1].endswith(" more problems")
    assert_clean(lines)


def test_a_yaml_error_on_a_secret_bearing_line_names_line_and_column_only(tmp_path: Path) -> None:
    for text in (
        SECRET_LINE,
        f"targets:\n  - password: {SECRET}: x\n".encode(),
        f"targets:\n  - password: !!int {SECRET}\n".encode(),
        f"targets:\n  - password: *{SECRET}\n".encode(),
        f"targets:\n  - password: '{SECRET}\n".encode(),
        b"a: 2024-13-01\n",
    ):
        (tmp_path / "config.yml").write_bytes(text)
        lines = problems_of(tmp_path / "config.yml")
        assert len(lines) == 1 and "is not valid YAML: " in lines[0], lines
        assert_clean(lines)


def test_100000_job_ids_are_validated_in_linear_time(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ids = [f"job-{i:06d}" for i in range(100_000)]
    started = time.perf_counter()
    with pytest.raises(pydantic.ValidationError) as caught:
        MODEL(targets=[siren(jobs=[*ids, ids[7]])])
    refused = time.perf_counter() - started
    assert "duplicate job ids ['job-000007']" in str(caught.value)
    started = time.perf_counter()
    MODEL(targets=[siren(jobs=ids), siren(name="other", jobs=ids)])
    valid = time.perf_counter() - started
    path = tmp_path / "config.yml"  # block style, as written by hand; PyYAML's pure-Python dumper would take seconds
    listed = "".join(f"  - {job_id}\n" for job_id in ids)
    path.write_text(yaml.safe_dump({"targets": [siren(jobs=["ID"])]}).replace("  - ID\n", listed))
    started = time.perf_counter()
    assert len(load_settings(MODEL, path).all_targets()[0].job_refs()) == len(ids)
    from_file = time.perf_counter() - started
    with capsys.disabled():
        print(
            f"\n100,000 job ids: {refused:.3f} s refused (one duplicate), {valid / 2:.3f} s validated, "
            f"{from_file:.3f} s from a {path.stat().st_size / 2**20:.1f} MiB YAML file"
        )
    assert refused < 1.0 and valid < 2.0  # quadratic took 23 s for 40,000
    assert from_file < 10.0


# --- web configuration -----------------------------------------------------------------------------------------

GOOD_HASH = bcrypt_hash(PASSWORD)


@pytest.mark.parametrize(
    ("hashed", "why"),
    [
        (GOOD_HASH.replace("$04$", "$99$", 1), "bcrypt cost 99 is outside 4..14"),
        (GOOD_HASH.replace("$04$", "$31$", 1), "bcrypt cost 31 is outside 4..14"),
        (GOOD_HASH.replace("$04$", "$15$", 1), "bcrypt cost 15 is outside 4..14"),
        (GOOD_HASH.replace("$04$", "$03$", 1), "bcrypt cost 3 is outside 4..14"),
        (GOOD_HASH.replace("$2b$", "$2x$", 1), "not a bcrypt hash"),
        (GOOD_HASH[:28] + "Z" + GOOD_HASH[29:], "not a bcrypt hash"),  # salt's padding bits set: bcrypt refuses it
        (GOOD_HASH[:-1] + "Z", "not a bcrypt hash"),  # hash's padding bits set: it could never match
        (GOOD_HASH[:-1] + "!", "not a bcrypt hash"),
        (GOOD_HASH + "a", "not a bcrypt hash"),
        ("plain-text-password", "not a bcrypt hash"),
    ],
)
def test_a_bcrypt_hash_is_checked_in_full_and_refused_naming_its_user(tmp_path: Path, hashed: str, why: str) -> None:
    lines = web_problems_of(dump(tmp_path / "web.yml", {"basic_auth_users": {"admin": GOOD_HASH, USER: hashed}}))
    assert len(lines) == 1 and lines[0].startswith(f"basic_auth_users.{USER}: {why}"), lines


def test_hashes_from_htpasswd_and_python_bcrypt_load(tmp_path: Path) -> None:
    users = {"b": GOOD_HASH, "y": GOOD_HASH.replace("$2b$", "$2y$"), "a": GOOD_HASH.replace("$2b$", "$2a$")}
    users["ten"] = bcrypt_hash(PASSWORD, 10)
    config = load_web_config(dump(tmp_path / "web.yml", {"basic_auth_users": users}))
    assert all(config.authorized(requests.auth._basic_auth_str(user, PASSWORD)) for user in users)


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        (
            {"http_server_config": {"headers": {"Strict-Transport-Security": "max-age=1\r\nSet-Cookie: a=b"}}},
            "http_server_config.headers.Strict-Transport-Security: a header value holds no CR, LF",
        ),
        (
            {"http_server_config": {"headers": {"Content-Security-Policy": "default-src 'self'\n"}}},
            "http_server_config.headers.Content-Security-Policy: a header value holds no CR, LF",
        ),
        ({"basic_auth_users": {"a\nb": GOOD_HASH}}, 'basic_auth_users."a\\nb": user names are non-empty, printable'),
        ({"basic_auth_users": {"a:b": GOOD_HASH}}, 'basic_auth_users."a:b": user names are non-empty'),
        ({"tls_server_confg": {}}, "tls_server_confg: unknown key; did you mean tls_server_config?"),
    ],
)
def test_web_config_refuses_header_injection_and_odd_user_names(
    tmp_path: Path, document: dict[str, Any], expected: str
) -> None:
    lines = web_problems_of(dump(tmp_path / "web.yml", document))
    assert lines == [expected] or (len(lines) == 1 and lines[0].startswith(expected)), lines


@pytest.fixture
def guarded_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Served]:
    """The real server on 127.0.0.1 with basic auth: one user at cost 4, one at cost 6."""
    monkeypatch.setenv("INGESTION_EXPORTER_ES_PASSWORD", "unused")
    path = dump(tmp_path / "web.yml", {"basic_auth_users": {USER: GOOD_HASH, "admin": bcrypt_hash("other", 6)}})
    app = make_app(make_settings([siren()]))
    server = Served(app, WebConfigHolder(load_web_config(path)))
    yield server
    server.stop()
    app.runners.close()


def test_unknown_and_known_users_with_long_passwords_get_401_without_a_traceback(
    guarded_server: Served, capfd: pytest.CaptureFixture[str]
) -> None:
    url = guarded_server.url("/", "http")
    long = PASSWORD + "x" * (100 - len(PASSWORD))
    assert requests.get(url, auth=(USER, PASSWORD), timeout=10).status_code == 200
    for user, password in (("mallory", "y" * 100), ("mallory", long), (USER, long), (USER, PASSWORD + "\x00" * 80)):
        answer = requests.get(url, auth=(user, password), timeout=10)
        assert answer.status_code == 401, (user, len(password))
        assert answer.headers["WWW-Authenticate"].startswith("Basic realm=")
    assert "Traceback" not in capfd.readouterr().err


def test_every_failed_login_runs_bcrypt_once_at_the_costliest_configured_cost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hashes = {USER: bcrypt_hash(PASSWORD, 4), "admin": bcrypt_hash("other", 6)}
    config = load_web_config(dump(tmp_path / "web.yml", {"basic_auth_users": hashes}))
    costs: list[bytes] = []
    real = bcrypt.checkpw
    monkeypatch.setattr(webconfig.bcrypt, "checkpw", lambda p, h: costs.append(h[4:6]) or real(p, h))
    for user, password, cost in (
        ("mallory", "y" * 200, b"06"),
        ("mallory", "short", b"06"),
        (USER, PASSWORD + "x" * 80, b"04"),
        (USER, "wrong", b"04"),
    ):
        costs.clear()
        assert not config.authorized(requests.auth._basic_auth_str(user, password))
        assert costs == [cost], (user, len(password), costs)


def test_unknown_users_and_long_passwords_take_as_long_as_a_wrong_password(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The time class, measured: medians of 7 interleaved logins at cost 10 (about 0.1 s each), in this thread's CPU
    time, the work bcrypt does, which other processes on the machine do not stretch as they stretch wall time."""
    config = load_web_config(dump(tmp_path / "web.yml", {"basic_auth_users": {USER: bcrypt_hash(PASSWORD, 10)}}))
    cases = {
        "known user, wrong password": (USER, "wrong"),
        "unknown user": ("mallory", "wrong"),
        "unknown user, 100-byte password": ("mallory", "y" * 100),
        "known user, 100-byte password": (USER, PASSWORD + "x" * 84),
    }
    times: dict[str, list[float]] = {case: [] for case in cases}
    for _ in range(7):
        for case, (user, password) in cases.items():
            header = requests.auth._basic_auth_str(user, password)
            started = time.thread_time()
            assert not config.authorized(header)
            times[case].append(time.thread_time() - started)
    medians = {case: statistics.median(seconds) for case, seconds in times.items()}
    with capsys.disabled():
        print(
            "\nfailed logins at cost 10, CPU median of 7: "
            + ", ".join(f"{c} {s * 1000:.0f} ms" for c, s in medians.items())
        )
    reference = medians["known user, wrong password"]
    assert all(0.5 < seconds / reference < 2.0 for seconds in medians.values()), medians


# --- reload through the app --------------------------------------------------------------------------------------


class Reloading:
    """The exporter, its web configuration and reloader wired as the command line wires them, on files the test
    rewrites; reloads go through the app's POST /-/reload."""

    def __init__(self, directory: Path) -> None:
        self.config, self.web = directory / "config.yml", directory / "web.yml"
        dump(self.config, {"targets": [siren()]})
        dump(self.web, {"basic_auth_users": {USER: GOOD_HASH}})
        self.inprocess = InProcess(self.config)
        self.app = self.inprocess.app
        self.holder = WebConfigHolder(load_web_config(self.web))
        self.app.reload = Reloader(
            self.inprocess.exporter, self.inprocess.load, lambda: load_web_config(self.web), self.holder, 0.0
        )
        self.guarded = protect(self.app, self.holder)

    def reload(self) -> tuple[str, str]:
        seen: list[str] = []
        environ = {
            "REQUEST_METHOD": "POST",
            "PATH_INFO": "/-/reload",
            "wsgi.input": io.BytesIO(),
            "HTTP_AUTHORIZATION": requests.auth._basic_auth_str(USER, PASSWORD),
        }
        body = b"".join(self.guarded(environ, lambda status, _headers: seen.append(status)))
        return seen[0], body.decode()

    def gauge(self) -> float | None:
        return self.inprocess.exporter.registry.get_sample_value("ingestion_config_last_reload_successful")

    def targets(self) -> list[str]:
        return sorted(self.app.runners.by_name)


@pytest.fixture
def reloading(tmp_path: Path) -> Iterator[Reloading]:
    """A Reloading whose collectors in force are closed after the test (those a reload replaced close at once)."""
    wired = Reloading(tmp_path)
    yield wired
    wired.app.runners.close()


@pytest.mark.parametrize(
    ("file", "content", "expected"),
    [
        ("config", bytes(range(256)), "config.file: "),
        ("config", "targets: []\n".encode("utf-16"), "is UTF-16 text"),
        ("config", b"a: " + b"{b: " * 5000 + b"1" + b"}" * 5000, f"nested deeper than {MAX_DEPTH} levels"),
        ("config", SECRET_LINE, "config.yml is not valid YAML: syntax error at line 3"),
        ("config", yaml.safe_dump({"targets": [siren(name="new", min_interval_seconds=1)]}).encode(), "unknown key"),
        ("web", bytes(range(256)), "web.config.file: "),
        ("web", "{}\n".encode("utf-16"), "web.yml is UTF-16 text"),
        ("web", f"basic_auth_users: {{{USER}: '{SECRET}".encode(), "web.yml is not valid YAML"),
        ("web", yaml.safe_dump({"basic_auth_users": {USER: GOOD_HASH.replace("$04$", "$99$")}}).encode(), USER),
        ("web", yaml.safe_dump({"basic_auth_users": {USER: GOOD_HASH.replace("$04$", "$31$")}}).encode(), "cost 31"),
        (
            "web",
            yaml.safe_dump({"http_server_config": {"headers": {"X-Frame-Options": "deny\r\nX: y"}}}).encode(),
            "CR",
        ),
    ],
)
def test_a_refused_reload_keeps_the_running_configuration_and_sets_the_gauge_to_0(
    reloading: Reloading, file: str, content: bytes, expected: str
) -> None:
    assert reloading.reload()[0].startswith("200") and reloading.gauge() == 1
    before, web_before = reloading.app.runners, reloading.holder.current
    getattr(reloading, file).write_bytes(content)
    status, body = reloading.reload()
    assert status.startswith("500"), body
    header, *lines = body.splitlines()
    assert header == "reload refused; the running configuration stays in force:"
    assert len(lines) == 1 and expected in lines[0], lines
    assert_clean(lines)
    assert "Traceback" not in body
    assert reloading.gauge() == 0
    assert reloading.app.runners is before and reloading.holder.current is web_before
    assert reloading.reload()[0].startswith("500"), "the old password still opens /-/reload"


def test_an_unexpected_failure_while_reading_is_a_refused_reload_that_quotes_nothing(reloading: Reloading) -> None:

    def broken() -> RootSettings:
        raise RuntimeError(f"a library complaint quoting {SECRET}")

    reloading.app.reload = Reloader(reloading.inprocess.exporter, broken, close_after=0.0)
    status, body = reloading.reload()
    assert status.startswith("500") and body.splitlines()[1:] == ["the configuration could not be read (RuntimeError)"]
    assert reloading.gauge() == 0 and reloading.targets() == ["es"]


# --- arbitrary input ------------------------------------------------------------------------------------------

KEYS = sorted(
    {*MODEL.model_fields, *(key for model in MODEL.target_models for key in model.model_fields)}
    | {"timeouts", "connect_seconds", "read_seconds", "discovery", "include", "interval_seconds", "id", "<<"}
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),
    st.text(max_size=12),
    st.sampled_from(["siren", "informatica", "dataarts", "cloudstream", "none", "basic", "/dev/zero", "(", ".*"]),
)
TREES = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), children, max_size=5)
    ),
    max_leaves=25,
)
DOCUMENTS = st.fixed_dictionaries({}, optional={"targets": st.lists(TREES, max_size=3)}) | st.dictionaries(
    st.sampled_from(KEYS), TREES, max_size=4
)
YAML_TEXT = st.text(alphabet=st.sampled_from(list("ab:-[]{},'\"&*!|>%@#? \n\t.0e\x00\x85\u2028é")), max_size=80)


def loads_cleanly(path: Path) -> None:
    """The configuration and web configuration loaders on this file: a value, or a clean refusal."""
    for load in (lambda: load_settings(MODEL, path), lambda: load_web_config(path)):
        try:
            load()
        except ConfigError as exc:
            assert_clean(exc.lines)


@FUZZ
@hypothesis.given(data=st.binary(max_size=400) | YAML_TEXT.map(lambda text: text.encode("utf-8", "surrogatepass")))
def test_arbitrary_bytes_load_or_are_refused_cleanly(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "config.yml"
    path.write_bytes(data)
    loads_cleanly(path)


@FUZZ
@hypothesis.given(document=DOCUMENTS)
def test_arbitrary_yaml_documents_load_or_are_refused_cleanly(
    tmp_path_factory: pytest.TempPathFactory, document: dict[str, Any]
) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "config.yml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    loads_cleanly(path)


@FUZZ
@hypothesis.given(value=st.text(max_size=60) | DOCUMENTS.map(json.dumps))
def test_arbitrary_environment_targets_load_or_are_refused_cleanly(
    tmp_path_factory: pytest.TempPathFactory, value: str
) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "config.yml"
    path.write_text("{}\n")
    previous = os.environ.get("INGESTION_EXPORTER_TARGETS")
    os.environ["INGESTION_EXPORTER_TARGETS"] = value.replace("\x00", "")
    try:
        load_settings(MODEL, path)
    except ConfigError as exc:
        assert_clean(exc.lines)
    finally:
        if previous is None:
            del os.environ["INGESTION_EXPORTER_TARGETS"]
        else:
            os.environ["INGESTION_EXPORTER_TARGETS"] = previous
