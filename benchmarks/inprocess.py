"""The exporter run in this process, as the soaks run it: scraped through its WSGI app, measured, its log counted.

Shared by the churn soak (benchmarks/churn.py) and the fault soak (tests/soak.py), so that both measure memory,
threads and descriptors the same way.
"""

from __future__ import annotations

import gc
import io
import os
import threading
from dataclasses import dataclass
from typing import Any

from benchmarks.run import memory_kib
from exporter.server import ExporterApp
from exporter.workers import WORKER_NAME


def get(app: ExporterApp, path: str, query: str = "", headers: dict[str, str] | None = None) -> tuple[str, str]:
    """Call the WSGI app in-process: (status line, body text)."""
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "wsgi.input": io.BytesIO(),
    }
    environ.update(headers or {})
    seen: list[str] = []
    answer = app(environ, lambda status, _headers: seen.append(status))
    try:
        body = b"".join(answer)
    finally:
        if hasattr(answer, "close"):  # as a WSGI server does: the app's scrape slot is freed here
            answer.close()
    return seen[0], body.decode()


@dataclass(frozen=True)
class Figures:
    """This process's resident memory, threads (the upstream pool's workers apart) and open descriptors.

    The pool starts a worker when a call finds none idle, up to its size, and keeps it: how many there are follows
    the most calls ever in flight at once, which a fault (a slow answer) can raise at any time. They are counted
    apart, so that a thread left behind anywhere else shows, and the pool's bound is checked on its own."""

    rss_kib: int
    threads: int
    fds: int
    pool_threads: int = 0

    @classmethod
    def now(cls) -> Figures:
        """Taken after a full collection, so garbage waiting for the collector does not count as memory in use."""
        gc.collect()
        names = [thread.name for thread in threading.enumerate()]
        pool = sum(name.startswith(f"{WORKER_NAME}-") for name in names)
        return cls(memory_kib(os.getpid(), "VmRSS"), len(names) - pool, open_fds(), pool)

    @classmethod
    def at_rest(cls, app: ExporterApp) -> Figures:
        """Taken with no collection in flight, after dropping what the app holds only until the next one.

        Idle keep-alive connections are the pools' to keep, and how many depends on the last peak of concurrency;
        the last rendering of the exposition is kept for scrapes that join its collection, and its size follows
        the last scrape's answers. Without them (the next collection opens connections again and renders anew),
        what is left is what the exporter keeps.
        """
        for runner in app.runners.by_name.values():
            runner.collector.upstream.session.close()
        app.exposition.release()
        return cls.now()


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


class LogSink:
    """Where the exporter's log goes during a soak: lines are counted, not kept (keeping them would grow RSS)."""

    def __init__(self) -> None:
        self.overruns = 0
        self.tracebacks = 0

    def write(self, text: str) -> int:
        self.overruns += text.count("collection overran its budget")
        self.tracebacks += text.count("Traceback")
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False
