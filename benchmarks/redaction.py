"""What masking secrets costs per log line, by how many targets' secrets are held.

`python -m benchmarks.redaction`: for 1, 10 and 100 targets, each holding a password, a session token and an
Authorization value with quotes, a backslash and non-ASCII characters in them, one debug line of nine fields
with a 1 KiB upstream error body is rendered as JSON: a body that echoes one target's password (JSON-escaped)
and session token (base64), and one that holds no secret. Prints the texts masked and microseconds per line,
the best of five runs (the machine may be busy with other work).
"""

from __future__ import annotations

import base64
import io
import json
import time

import structlog

from exporter import logs

LINES = 2000
RUNS = 5


def _line_cost(targets: int, echoing: bool) -> tuple[int, float]:
    redactor = logs.Redactor()
    for index in range(targets):
        sink = redactor.sink()
        sink.put("password", f'pa"ss\\wörd-{index:03d}')
        sink.put("session", f"session-{index:03d}-{'s' * 20}")
        sink.put("authorization", base64.b64encode(f'user:pa"ss\\wörd-{index:03d}'.encode()).decode())
    secret = json.dumps('pa"ss\\wörd-000')[1:-1] + " " + base64.b64encode(b"Cookie: session-000-" + b"s" * 20).decode()
    body = ("x" * 1000 + (secret if echoing else "y" * len(secret)))[-1024:]
    stream = io.StringIO()
    logs.configure(redactor, "debug", "json", stream)
    log = structlog.get_logger("benchmark")
    try:
        started = time.perf_counter()
        for _ in range(LINES):
            log.debug(
                "upstream call failed",
                platform="informatica",
                target="target-000",
                subject="job 1948",
                reason="http_status",
                error="HTTP 500",
                status=500,
                job_id="1948",
                body=body,
            )
        elapsed = time.perf_counter() - started
    finally:
        logs.configure(logs.Redactor(), "info", "json")
    return len(redactor._ordered), elapsed / LINES * 1e6


def main() -> None:
    print(f"{'targets':>7} {'texts masked':>12} {'us/line, echo':>14} {'us/line, none':>14}")
    for targets in (1, 10, 100):
        forms = _line_cost(targets, True)[0]
        echoing = min(_line_cost(targets, True)[1] for _ in range(RUNS))
        plain = min(_line_cost(targets, False)[1] for _ in range(RUNS))
        print(f"{targets:>7} {forms:>12} {echoing:>14.1f} {plain:>14.1f}")


if __name__ == "__main__":
    main()
