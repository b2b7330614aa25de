"""Hostile configuration, measured: what `--check-config`, a reload and a login make of each bad input.

    python -m benchmarks.bad_config [--ids 100000] [--quick]

Each file case runs a real `python -m exporter --check-config` (memory capped at 1 GiB, killed after 10 s) and
reports its exit code, its stderr (lines, bytes, whether a traceback or the planted secret shows) and its wall
time. In-process: the duplicate job-id check on `--ids` ids, a reload of a binary file through the app (status,
`ingestion_config_last_reload_successful`), and failed logins at bcrypt cost 10, median of 5 per kind.
`--quick` runs one file case of each kind (nesting, encoding, a FIFO, a secret on a YAML error line).
"""

from __future__ import annotations

import argparse
import base64
import io
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import bcrypt
import yaml

from exporter.app import Exporter, root_model
from exporter.logs import Redactor, configure
from exporter.reload import Reloader
from exporter.settings import load_settings
from exporter.webconfig import load_web_config

QUICK = (
    "5,000-level nested YAML",
    "binary web config",
    "password_file: a FIFO",
    "YAML error on a line holding a secret",
)
SECRET = 'Pa"ss\\wörd-9f'  # noqa: S105 - planted, to see whether an error message quotes it
MEMORY_CAP = 1 << 30
TARGET = {"name": "es", "platform": "siren", "base_url": "http://127.0.0.1:9", "auth": "none", "jobs": ["a"]}


def _config(**target: Any) -> bytes:
    return yaml.safe_dump({"targets": [{**TARGET, **target}]}).encode()


def _cap_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


def check_config(directory: Path, config: bytes, web: bytes | None, env: dict[str, str]) -> str:
    """One Markdown row's cells for a `--check-config` run on these files."""
    (directory / "config.yml").write_bytes(config)
    args = [sys.executable, "-m", "exporter", "--check-config", "--config.file", str(directory / "config.yml")]
    if web is not None:
        (directory / "web.yml").write_bytes(web)
        args += ["--web.config.file", str(directory / "web.yml")]
    started = time.perf_counter()
    try:
        done = subprocess.run(  # noqa: S603 - this interpreter and fixed arguments
            args, capture_output=True, timeout=10, env={**os.environ, **env}, preexec_fn=_cap_memory, check=False
        )
    except subprocess.TimeoutExpired:
        return "killed after 10 s | | | | | "
    seconds = time.perf_counter() - started
    err = done.stderr.decode("utf-8", "replace")
    shown = any(form in err for form in (SECRET, 'Pa\\"ss', "ss\\\\w", "wörd"))
    return (
        f"{done.returncode} | {len(err.splitlines())} | {len(done.stderr):,} | {'yes' if 'Traceback' in err else 'no'}"
        f" | {'yes' if shown else 'no'} | {seconds:.2f}"
    )


def file_cases(directory: Path) -> list[tuple[str, bytes, bytes | None, dict[str, str]]]:
    fifo = directory / "fifo"
    os.mkfifo(fifo)
    dev_zero = {"auth": "basic", "username": "u", "password_file": "/dev/zero"}
    from_fifo = {**dev_zero, "password_file": str(fifo)}
    good_hash = bcrypt.hashpw(b"scrape-me", bcrypt.gensalt(4)).decode()
    return [
        ("5,000-level nested YAML", b"a: " + b"[" * 5000 + b"]" * 5000, None, {}),
        ("binary config file", bytes(range(256)), None, {}),
        ("UTF-16 config file", "targets: []\n".encode("utf-16"), None, {}),
        ("binary web config", _config(), bytes(range(256)), {}),
        ("UTF-16 web config", _config(), "{}\n".encode("utf-16"), {}),
        ("INGESTION_EXPORTER_TARGETS=not-json", b"{}", None, {"INGESTION_EXPORTER_TARGETS": "not-json"}),
        ("password_file: /dev/zero", _config(**dev_zero), None, {}),
        ("password_file: a FIFO", _config(**from_fifo), None, {}),
        ("YAML error on a line holding a secret", f'targets:\n  - password: "{SECRET}" x\n'.encode(), None, {}),
        ("min_interval_seconds: .inf", b"min_interval_seconds: .inf\n" + _config(), None, {}),
        ("timeouts.read_seconds: 1e-300", _config(timeouts={"read_seconds": 1e-300}), None, {}),
        (
            "bcrypt cost 31",
            _config(),
            yaml.safe_dump({"basic_auth_users": {"p": good_hash.replace("$04$", "$31$")}}).encode(),
            {},
        ),
        (
            "bcrypt cost 99",
            _config(),
            yaml.safe_dump({"basic_auth_users": {"p": good_hash.replace("$04$", "$99$")}}).encode(),
            {},
        ),
        (
            "header value with CR LF",
            _config(),
            yaml.safe_dump(
                {"http_server_config": {"headers": {"Strict-Transport-Security": "max-age=1\r\nSet-Cookie: a=b"}}}
            ).encode(),
            {},
        ),
    ]


def duplicate_ids(count: int) -> str:
    ids = [f"job-{i:06d}" for i in range(count)]
    model = root_model()
    started = time.perf_counter()
    try:
        model.model_validate({"targets": [{**TARGET, "jobs": [*ids, ids[0]]}]})
    except Exception as exc:  # noqa: BLE001 - the duplicate is refused; any refusal is what is timed
        outcome = type(exc).__name__
    return f"{time.perf_counter() - started:.3f} s ({outcome})"


def binary_reload(directory: Path) -> str:
    path = directory / "reload.yml"
    path.write_bytes(_config())
    model = root_model()
    exporter = Exporter(load_settings(model, path), Redactor().sink)
    exporter.app.reload = Reloader(exporter, lambda: load_settings(model, path), close_after=0.0)
    path.write_bytes(bytes(range(256)))
    seen: list[str] = []
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/-/reload", "wsgi.input": io.BytesIO()}
    try:
        body = b"".join(exporter.app(environ, lambda status, _headers: seen.append(status))).decode()
    except Exception as exc:  # noqa: BLE001 - measured: the server turns it into a 500 with a traceback
        return f"{type(exc).__name__} escapes (HTTP 500 with a traceback)"
    gauge = exporter.registry.get_sample_value("ingestion_config_last_reload_successful")
    exporter.close()
    return f"HTTP {seen[0][:3]}, {len(body.splitlines())} lines, gauge {gauge:g}"


def failed_logins(directory: Path) -> list[tuple[str, str]]:
    path = directory / "web-logins.yml"
    path.write_text(
        yaml.safe_dump({"basic_auth_users": {"prometheus": bcrypt.hashpw(b"pw", bcrypt.gensalt(10)).decode()}})
    )
    config = load_web_config(path)
    kinds: dict[str, tuple[str, bytes]] = {
        "known user, wrong password": ("prometheus", b"wrong"),
        "unknown user": ("mallory", b"wrong"),
        "unknown user, 100-byte password": ("mallory", b"y" * 100),
        "known user, 100-byte password": ("prometheus", b"pw" + b"x" * 98),
    }
    rows = []
    for kind, (user, password) in kinds.items():
        header = "Basic " + base64.b64encode(user.encode() + b":" + password).decode()
        times: list[float] = []
        outcome = "refused"
        for _ in range(5):
            started = time.perf_counter()
            try:
                if config.authorized(header):
                    outcome = "accepted"
            except ValueError:
                outcome = "ValueError (HTTP 500)"
            times.append(time.perf_counter() - started)
        rows.append((f"failed login at cost 10: {kind}", f"{statistics.median(times) * 1000:.0f} ms, {outcome}"))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--ids", type=int, default=100_000, help="Job ids for the duplicate check.")
    parser.add_argument("--quick", action="store_true", help="One file case of each kind.")
    args = parser.parse_args(argv)
    configure(Redactor(), "error", "json", io.StringIO())  # the refused reload's log line is not a figure
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        print("| `--check-config` on | exit | stderr lines | stderr bytes | traceback | secret shown | seconds |")
        print("|---|---|---|---|---|---|---|")
        for name, config, web, env in file_cases(directory):
            if args.quick and name not in QUICK:
                continue
            print(f"| {name} | {check_config(directory, config, web, env)} |")
        print()
        rows: list[tuple[str, str]] = [
            (f"{args.ids:,} job ids, one duplicate", duplicate_ids(args.ids)),
            ("reload of a binary config file", binary_reload(directory)),
            *failed_logins(directory),
        ]
        print("| in-process | measured |")
        print("|---|---|")
        for name, figure in rows:
            print(f"| {name} | {figure} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
