"""How many scrapes run at once (`--web.max-requests`), and how they end when the exporter stops.

Past the limit a scrape is refused at once with a 503 instead of queueing behind the others, as node_exporter
does: Prometheus retries at the next interval, and an exporter under a burst keeps answering its probes. While
other scrapes are being answered, a result up to `BURST_REUSE_SECONDS` old is served again, so a burst costs the
upstream one or two collections however its scrapes are spread; a lone scrape always gets a fresh one. On
SIGTERM new scrapes are refused, the ones in flight get a grace to finish, and past it their waits end with
what has been collected so far, so every scrape in flight is answered before the process exits.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future

DEFAULT_MAX_REQUESTS = 40
MOST_MAX_REQUESTS = 1000  # a worker thread each
SHUTDOWN_GRACE_SECONDS = 3.0
BURST_REUSE_SECONDS = 1.0  # while other scrapes are answered, a result this recent is served again
ANSWER_SECONDS = 1.0  # after the grace, how long a cut scrape may take to render and send its answer


class ScrapeGate:
    """Admits up to `limit` scrapes at once (0: no limit) until the exporter stops."""

    def __init__(self, limit: int = 0) -> None:
        self.limit = limit
        self.cut: Future[None] = Future()
        """Done once the shutdown grace is over: scrapes still waiting for a collection stop waiting."""
        self._running = 0
        self._closed = False
        self._changed = threading.Condition()

    @property
    def running(self) -> int:
        """Scrapes admitted and not yet answered."""
        return self._running

    @property
    def closed(self) -> bool:
        """True once the exporter is stopping."""
        return self._closed

    def enter(self) -> bool:
        """Admit a scrape (the caller must leave() afterwards), or False: over the limit or stopping."""
        with self._changed:
            if self._closed or (self.limit and self._running >= self.limit):
                return False
            self._running += 1
            return True

    def leave(self) -> None:
        with self._changed:
            self._running -= 1
            self._changed.notify_all()

    def drain(self, grace: float = SHUTDOWN_GRACE_SECONDS) -> bool:
        """Refuse new scrapes and wait for those in flight, at most `grace` seconds; past it, cut their waits
        short and give them a moment to answer. True when none is left."""
        with self._changed:
            self._closed = True
            if self._changed.wait_for(lambda: self._running == 0, timeout=grace):
                return True
        with self._changed:
            if not self.cut.done():
                self.cut.set_result(None)
            return self._changed.wait_for(lambda: self._running == 0, timeout=ANSWER_SECONDS)
