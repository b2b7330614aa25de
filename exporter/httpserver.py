"""The HTTP server: cheroot's worker pool, HTTP/1.1 and WSGI gateway behind a connection loop of our own.

A worker thread only ever gets a connection whose request head is complete. Until then the connection lives in
one selector loop, which accepts, shakes hands for TLS and reads the head without blocking, so clients that
stall their handshake or send their headers slowly cost a buffer each, never a thread, and /healthz stays fast.
The loop closes a connection whose head is not complete within the header timeout (counted from accept for a
new connection, from the first byte for the next request on a kept-alive one), and a kept-alive connection
idle for the idle timeout. A head over `MAX_HEAD_BYTES` is answered 431 before the app (and any basic auth)
sees it. cheroot's own TLS adapter shakes hands in its accept loop, where one stalled client blocks every
other, so TLS is done here, with the SSLContext of the web configuration in force when the connection came.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import structlog
from cheroot import wsgi
from cheroot.makefile import MakeFile
from cheroot.server import HTTPConnection, HTTPRequest
from cheroot.workers import threadpool

from exporter.webconfig import WebConfig, WebConfigHolder

log = structlog.get_logger("exporter.server")

MAX_HEAD_BYTES = 64 * 1024
BACKLOG = 1024
SPARE_WORKERS = 8
UNLIMITED_SCRAPE_WORKERS = 64
KEEP_ALIVE_LIMIT = 1024
ACCEPTS_PER_WAKE = 64
ACCEPT_PAUSE_SECONDS = 0.25
SEARCH_OVERLAP = 3  # the end of a head ("\r\n\r\n") may straddle two reads
_TLS_RECORD_HANDSHAKE = 0x16
_READ_BYTES = 16 * 1024
_LISTENER = object()


@dataclass(frozen=True)
class ServerLimits:
    """How long a client may take and how many scrapes run at once (the --web.* flags)."""

    header_timeout: float = 10.0
    idle_timeout: float = 120.0
    max_requests: int = 40

    @property
    def workers(self) -> int:
        """Every admitted scrape may hold a worker for its budget; the spare ones answer everything else."""
        return (self.max_requests or UNLIMITED_SCRAPE_WORKERS) + SPARE_WORKERS


class _Reader:
    """A connection's input: first the bytes the connection loop read, then the socket (in a worker thread)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = bytearray()
        self.bytes_read = 0
        self.closed = False

    def has_data(self) -> bool:
        pending = self.sock.pending() if isinstance(self.sock, ssl.SSLSocket) else 0
        return bool(self.buffer) or pending > 0

    def _fill(self) -> bool:
        data = self.sock.recv(_READ_BYTES)
        self.buffer += data
        return bool(data)

    def _take(self, size: int) -> bytes:
        taken = bytes(self.buffer[:size])
        del self.buffer[:size]
        self.bytes_read += len(taken)
        return taken

    def readline(self, size: int | None = -1) -> bytes:
        limit = size if size is not None and size >= 0 else None
        searched = 0
        while True:
            end = self.buffer.find(b"\n", searched)
            if end >= 0 and (limit is None or end < limit):
                return self._take(end + 1)
            if limit is not None and len(self.buffer) >= limit:
                return self._take(limit)
            searched = len(self.buffer)
            if not self._fill():
                return self._take(len(self.buffer))

    def read(self, size: int | None = -1) -> bytes:
        while (size is None or size < 0 or len(self.buffer) < size) and self._fill():
            pass
        return self._take(len(self.buffer) if size is None or size < 0 else size)

    def close(self) -> None:
        self.closed = True


class _Request(HTTPRequest):
    """No endpoint reads a request body: one that comes with a body closes its connection after the answer,
    so the body is never read (a slowly sent body cannot hold a worker)."""

    def read_request_headers(self) -> bool:
        ok: bool = super().read_request_headers()  # type: ignore[no-untyped-call]  # cheroot's stubs are untyped
        if ok and (self.chunked_read or self.inheaders.get(b"Content-Length", b"0") not in (b"", b"0")):
            self.close_connection = True
        return ok


class _Connection(HTTPConnection):
    """A client connection and where it stands: TLS to shake hands, head to complete, or idle between requests."""

    RequestHandlerClass = _Request

    def __init__(self, server: ExporterServer, sock: socket.socket, web: WebConfig) -> None:
        super().__init__(server, sock, MakeFile)
        self._use(sock)
        self.web = web
        self.handshaking = web.ssl_context is not None
        self.deadline: float | None = time.monotonic() + server.limits.header_timeout
        self.idle_since = time.monotonic()
        self.searched = 0
        self.too_large = False

    def _use(self, sock: socket.socket) -> None:
        self.socket = sock
        self.rfile = _Reader(sock)
        self.wfile = MakeFile(sock, "wb", self.wbufsize)

    def head_complete(self) -> bool:
        """Whether the buffered bytes hold a whole request head (or too many bytes to be one)."""
        buffer = self.rfile.buffer
        start = max(0, self.searched - SEARCH_OVERLAP)
        self.searched = len(buffer)
        ends = [found + len(end) for end in (b"\r\n\r\n", b"\n\n") if (found := buffer.find(end, start)) >= 0]
        if ends and min(ends) <= MAX_HEAD_BYTES:
            return True
        self.too_large = len(buffer) > MAX_HEAD_BYTES
        return self.too_large

    def advance(self) -> bool | None:
        """Read what has arrived without blocking: True once the head is complete, False when the connection
        is over, None to wait for more."""
        try:
            self.socket.setblocking(False)
            if self.handshaking and not self._shake_hands():
                return None if self.handshaking else False
            while True:
                data = self.socket.recv(min(_READ_BYTES, MAX_HEAD_BYTES + 1 - len(self.rfile.buffer)))
                if not data:
                    return False if not self.rfile.buffer or not self.head_complete() else self._ready()
                if self.deadline is None:
                    self.deadline = time.monotonic() + self.server.limits.header_timeout
                self.rfile.buffer += data
                if self.head_complete():
                    return self._ready()
        except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return None
        except OSError as exc:
            log.debug("connection closed before a request", client=self.remote_addr, error=str(exc))
            return False

    def _ready(self) -> bool:
        self.socket.settimeout(self.server.timeout)
        return True

    def _shake_hands(self) -> bool:
        """One step of the TLS handshake; True once it is done and the client allowed."""
        context = self.web.ssl_context
        assert context is not None
        if not isinstance(self.socket, ssl.SSLSocket):
            first = self.socket.recv(1, socket.MSG_PEEK)
            if not first:
                self.handshaking = False
                return False
            if first[0] != _TLS_RECORD_HANDSHAKE:
                self._refuse_plain_http()
                self.handshaking = False
                return False
            self._use(context.wrap_socket(self.socket, server_side=True, do_handshake_on_connect=False))
        secured = self.socket
        assert isinstance(secured, ssl.SSLSocket)
        try:
            secured.do_handshake()
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return False
        except (ssl.SSLError, OSError) as exc:
            log.debug("TLS handshake failed", client=self.remote_addr, error=str(exc))
            self.handshaking = False
            return False
        self.handshaking = False
        if self.web.tls is not None and not self.web.tls.allows(secured.getpeercert()):
            log.info("client certificate not allowed", client=self.remote_addr)
            return False
        return True

    def _refuse_plain_http(self) -> None:
        """Plain HTTP to the TLS port: what it sent is read (so the answer is not lost to a reset), then a 400."""
        with contextlib.suppress(OSError):
            self.socket.recv(MAX_HEAD_BYTES)
            self.socket.send(_simple("400 Bad Request", "Client sent an HTTP request to an HTTPS server.\n"))

    def communicate(self) -> bool:
        if self.too_large:
            with contextlib.suppress(OSError):
                self.wfile.write(
                    _simple("431 Request Header Fields Too Large", f"request head over {MAX_HEAD_BYTES} bytes\n")
                )
            return False
        return bool(super().communicate())  # type: ignore[no-untyped-call]

    def close(self) -> None:
        with contextlib.suppress(OSError):
            super().close()


def _simple(status: str, text: str) -> bytes:
    body = text.encode()
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode() + body


class _Connections:
    """cheroot's ConnectionManager, in the loop's own terms: accept, read heads, hand complete requests to the
    workers, take kept-alive connections back, and close the ones past their deadline."""

    def __init__(self, server: ExporterServer) -> None:
        self.server = server
        self._selector = selectors.DefaultSelector()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._stopped = threading.Event()
        self._stopped.set()
        self._accepting_again: float | None = None
        server.socket.setblocking(False)
        self._selector.register(server.socket, selectors.EVENT_READ, _LISTENER)

    @property
    def can_add_keepalive_connection(self) -> bool:
        with self._lock:
            return len(self._selector.get_map()) <= KEEP_ALIVE_LIMIT

    def put(self, conn: _Connection) -> None:
        """A worker answered and the connection stays open: wait for its next request (called from a worker)."""
        conn.deadline, conn.idle_since, conn.searched = None, time.monotonic(), 0
        with contextlib.suppress(OSError):
            while isinstance(conn.socket, ssl.SSLSocket) and conn.socket.pending():
                conn.rfile.buffer += conn.socket.recv(conn.socket.pending())
        if conn.rfile.buffer:
            conn.deadline = time.monotonic() + self.server.limits.header_timeout
            if conn.head_complete():
                self.server.process_conn(conn)
                return
        self._watch(conn)

    def _watch(self, conn: _Connection) -> None:
        try:
            with self._lock:
                self._selector.register(conn.socket.fileno(), selectors.EVENT_READ, conn)
        except (OSError, ValueError, RuntimeError):  # the server is stopping and its selector is closed
            conn.close()

    def _unwatch(self, conn: _Connection) -> None:
        with self._lock, contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(conn.socket.fileno())

    def run(self, interval: float) -> None:
        self._stopped.clear()
        try:
            while not self._stop.is_set():
                for key, _ in self._selector.select(timeout=interval):
                    if key.data is _LISTENER:
                        self._accept()
                    else:
                        self._step(key.data, watched=True)
                now = time.monotonic()
                if self._accepting_again is not None and now >= self._accepting_again:
                    self._accepting_again = None
                    with self._lock:
                        self._selector.register(self.server.socket, selectors.EVENT_READ, _LISTENER)
                self._expire(now)
        finally:
            self._stopped.set()

    def _accept(self) -> None:
        for _ in range(ACCEPTS_PER_WAKE):
            try:
                sock, address = self.server.socket.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as exc:  # out of file descriptors: pause, or the loop would spin on the listener
                log.warning("cannot accept a connection; pausing", error=str(exc), seconds=ACCEPT_PAUSE_SECONDS)
                with self._lock:
                    self._selector.unregister(self.server.socket)
                self._accepting_again = time.monotonic() + ACCEPT_PAUSE_SECONDS
                return
            conn = _Connection(self.server, sock, self.server.holder.current)
            conn.remote_addr, conn.remote_port = address[0], address[1]
            self._step(conn, watched=False)

    def _step(self, conn: _Connection, watched: bool) -> None:
        outcome = conn.advance()
        if outcome is None:
            if not watched:
                self._watch(conn)
            return
        if watched:
            self._unwatch(conn)
        if outcome:
            self.server.process_conn(conn)
        else:
            conn.close()

    def _expire(self, now: float) -> None:
        idle_limit = now - self.server.limits.idle_timeout
        with self._lock:
            expired = [
                key.data
                for key in self._selector.get_map().values()
                if key.data is not _LISTENER
                and (key.data.deadline < now if key.data.deadline is not None else key.data.idle_since < idle_limit)
            ]
        for conn in expired:
            self._unwatch(conn)
            conn.close()

    def stop(self) -> None:
        self._stop.set()
        self._stopped.wait()

    def close(self) -> None:
        with self._lock:
            waiting = [key.data for key in self._selector.get_map().values() if key.data is not _LISTENER]
            self._selector.close()
        for conn in waiting:
            conn.close()


class _DaemonWorkers(threadpool.ThreadPool):
    """cheroot's pool with daemon threads: a worker stuck writing to a client that stopped reading never holds
    the process past its exit (the scrapes in flight have been answered by then, see exporter.scrapegate)."""

    def _spawn_worker(self) -> threadpool.WorkerThread:
        worker = threadpool.WorkerThread(self.server)  # type: ignore[no-untyped-call]  # cheroot's stubs are untyped
        worker.name = f"http-{worker.name}"
        worker.daemon = True
        worker.start()
        return worker


class ExporterServer(wsgi.Server):
    """cheroot's WSGI server with the connection loop above; `serve()` binds it, `serve_forever()` runs it."""

    ConnectionClass = _Connection
    _connections: Any  # cheroot's ConnectionManager until prepare() puts the loop above in its place

    def __init__(
        self,
        address: tuple[str, int],
        app: Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]],
        holder: WebConfigHolder,
        limits: ServerLimits,
    ) -> None:
        super().__init__(
            address,
            app,
            numthreads=limits.workers,
            server_name="ingestion-exporter",
            request_queue_size=BACKLOG,
            timeout=limits.header_timeout,  # type: ignore[arg-type]  # any number of seconds, as socket.settimeout
            shutdown_timeout=1,
        )
        self.requests = _DaemonWorkers(self, min=limits.workers, max=limits.workers)
        self.holder = holder
        self.limits = limits
        self.max_request_header_size = MAX_HEAD_BYTES
        self.keep_alive_conn_limit = KEEP_ALIVE_LIMIT

    def prepare(self) -> None:
        """Bind and listen, start the workers, and put the connection loop in place of cheroot's."""
        super().prepare()
        self._connections.close()
        self._connections = _Connections(self)

    @property
    def server_address(self) -> tuple[str, int]:
        host, port = self.bind_addr[:2]
        return str(host), int(port)

    def serve_forever(self, poll_interval: float = 0.1) -> None:
        """Serve until shutdown(); the loop wakes every `poll_interval` seconds to close expired connections."""
        self.expiration_interval = poll_interval
        self.serve()

    def shutdown(self) -> None:
        """Stop accepting, close waiting connections and let the workers finish."""
        self.stop()

    server_close = shutdown

    def error_log(self, msg: str = "", level: int = 20, traceback: bool = False) -> None:
        """cheroot's complaints, one log line each, never a traceback."""
        log.log(level, "http server", detail=str(msg).splitlines()[0] if msg else "")
