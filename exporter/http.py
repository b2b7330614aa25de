"""Upstream HTTP for one target: TLS, proxy, budget-bound timeouts, size cap, back-off, error classes.

Every failure leaves this module as an `UpstreamError` with one of the reasons in
`telemetry.Reason`, so collectors count and log errors the same way on every platform.
"""

from __future__ import annotations

import http.cookiejar
import json
import threading
import time
from collections.abc import Mapping, Sequence
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

import requests
import urllib3
from requests.adapters import HTTPAdapter
from requests.utils import check_header_validity

from exporter import __version__

if TYPE_CHECKING:
    from requests.adapters import _HostParams, _PoolKwargs
from exporter.settings import TargetSettings
from exporter.telemetry import Reason, Telemetry

MAX_BODY_BYTES = 16 * 1024 * 1024
MAX_BACKOFF_SECONDS = 300.0
ERROR_BODY_BYTES = 2048
"""An error answer's body is kept (to read the vendor's code and message, and for the log) only when it is at most
this long, and then whole: a cut could leave the start of an echoed secret, which masking cannot recognise."""
_CHUNK_BYTES = 64 * 1024
_QUERIES_KEPT = 64
_URLS_KEPT = 16384  # per target: the URLs of a scrape of thousands of jobs, at most about 6 MiB
_SHORT_TEXT = 120


class UpstreamError(Exception):
    """A classified upstream failure."""

    def __init__(self, reason: Reason, message: str, *, status: int | None = None, body: str = "") -> None:
        super().__init__(message)
        self.reason = reason
        self.status = status
        self.body = body


class Deadline:
    """The end of a collection's budget, shared by every call made for it."""

    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def remaining(self) -> float:
        return self.end - time.monotonic()


class Upstream:
    """One `requests.Session` per target, so connections and TLS sessions are reused across scrapes."""

    def __init__(self, platform: str, settings: TargetSettings, telemetry: Telemetry) -> None:
        self.platform = platform
        self.target = settings.name
        self._settings = settings
        self._telemetry = telemetry
        self._blocked_until = 0.0
        self._lock = threading.Lock()
        self.session = requests.Session()
        adapter = _Adapter(pool_connections=4, pool_maxsize=settings.max_concurrency + 2, max_retries=0)
        self.session.mount("https://", adapter)
        self.session.mount("http://", adapter)
        self.session.headers["User-Agent"] = f"ingestion-exporter/{__version__}"
        self.session.headers["Accept"] = "application/json"
        # No platform's API uses cookies: none is kept, so none is sent that the log redaction has not been given.
        self.session.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
        tls = settings.tls
        self.session.verify = False if tls.insecure_skip_verify else (str(tls.ca_file) if tls.ca_file else True)
        if tls.insecure_skip_verify:  # warned about once at start, not on every request
            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        if tls.cert_file and tls.key_file:
            self.session.cert = (str(tls.cert_file), str(tls.key_file))
        if settings.proxy_url:
            self.session.proxies = {"http": settings.proxy_url, "https": settings.proxy_url}
        # Given on every request: requests lets REQUESTS_CA_BUNDLE and *_PROXY from the environment override the
        # session's own values, which would silently drop a target's ca_file or proxy_url.
        self._per_request: dict[str, Any] = {"verify": self.session.verify, "proxies": dict(self.session.proxies)}
        # requests reads the environment (~/.netrc, *_PROXY, NO_PROXY, the CA bundle variables) on every request,
        # a tenth of the CPU at thousands of jobs: read it once per upstream origin instead (_environment_for).
        # Credentials never come from ~/.netrc, only from the configuration.
        self.session.trust_env = False
        self._environment: dict[str, dict[str, Any]] = {}
        self._queries: dict[tuple[tuple[str, type, Any], ...], str | bytes] = {}
        self._urls: dict[tuple[str, str | bytes | None], str | None] = {}
        checked = requests.PreparedRequest()
        checked.prepare_headers(self.session.headers)  # the session's own headers, checked once here
        self._session_headers = checked.headers

    def back_off(self, seconds: float) -> None:
        """Send nothing to this upstream for a while (after 429 or a vendor's throttling code)."""
        with self._lock:
            self._blocked_until = max(self._blocked_until, time.monotonic() + min(seconds, MAX_BACKOFF_SECONDS))

    def request(
        self,
        method: str,
        url: str,
        *,
        endpoint: str,
        deadline: Deadline,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        data: bytes | None = None,
    ) -> requests.Response:
        """Send one request within the budget; any non-2xx answer raises a classified UpstreamError."""
        wait = self._blocked_until - time.monotonic()
        if wait > 0:
            raise UpstreamError("rate_limited", f"backing off for another {wait:.1f}s after throttling")
        remaining = deadline.remaining()
        if remaining <= 0.05:
            raise UpstreamError("timeout", "collection budget exhausted before the request was sent")
        timeouts = self._settings.timeouts
        timeout = (min(timeouts.connect_seconds, remaining), min(timeouts.read_seconds, remaining))
        started = time.monotonic()
        outcome = "error"
        try:
            response = self.session.send(
                self._prepare(method, url, headers, params, json_body, data),
                timeout=timeout,
                stream=True,
                allow_redirects=False,
                cert=self.session.cert,
                **self._environment_for(url),
            )
            outcome = str(response.status_code)
            _read_capped(response, deadline)
        except UpstreamError as exc:
            outcome = exc.reason
            raise
        except requests.Timeout as exc:
            outcome = "timeout"
            raise UpstreamError("timeout", f"no answer within {timeout[1]:.1f}s") from exc
        except requests.ConnectionError as exc:
            reason: Reason = "timeout" if "timed out" in str(exc) else "connection"
            outcome = reason
            raise UpstreamError(reason, _connection_message(exc)) from exc
        except requests.RequestException as exc:
            outcome = "connection"
            raise UpstreamError("connection", type(exc).__name__) from exc
        except UnicodeEncodeError as exc:  # its text would quote a character of the header, maybe of a secret
            outcome = "connection"
            raise UpstreamError("connection", "a header value is not Latin-1 text, so it cannot be sent") from exc
        finally:
            self._telemetry.count_request(self.platform, self.target, endpoint, outcome, time.monotonic() - started)
        if response.status_code == 429:
            retry_after = _retry_after_seconds(response.headers.get("Retry-After"))
            self.back_off(retry_after)
            raise UpstreamError("rate_limited", f"HTTP 429, retry after {retry_after:.0f}s", status=429)
        if not 200 <= response.status_code < 300:
            reason = "auth" if response.status_code in (401, 403) else "http_status"
            raise UpstreamError(
                reason, f"HTTP {response.status_code}", status=response.status_code, body=_text(response)
            )
        return response

    def _prepare(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None,
        params: Mapping[str, Any] | None,
        json_body: Any,
        data: bytes | None,
    ) -> requests.PreparedRequest:
        """The request as `Session.request` would prepare it, without the work that gives the same request every
        time (6 us a request instead of 61): the session has no auth, params or hooks (verify, proxies and cert are
        given to `send`, see _environment_for), its own headers were checked once, its jar never holds a cookie (see
        __init__), and the same URLs come back every scrape, so each is parsed and quoted once."""
        prepared = requests.PreparedRequest()
        prepared.prepare_method(method)
        query = self._query(params) if params else None
        key = (url, query)
        prepared.url = self._urls.get(key)
        if prepared.url is None:
            prepared.prepare_url(url, query)
            if len(self._urls) >= _URLS_KEPT:
                self._urls.clear()
            self._urls[key] = prepared.url
        prepared.headers = self._session_headers.copy()
        for name, value in (headers or {}).items():
            if value is None:  # as requests merges: None removes a session header
                prepared.headers.pop(name, None)
            else:
                check_header_validity((name, value))
                prepared.headers[name] = value
        if self.session.cookies:  # never: the jar keeps none; requests' own look at an empty jar costs 6 us
            prepared.prepare_cookies(self.session.cookies)
        else:
            prepared._cookies = self.session.cookies  # type: ignore[attr-defined]  # what prepare_cookies keeps
        prepared.prepare_body(data, None, json_body)
        if "@" in (prepared.url or ""):  # user:password in a URL, as requests sends it
            prepared.prepare_auth(None, url)
        return prepared

    def _query(self, params: Mapping[str, Any]) -> str | bytes:
        """The query string requests makes of `params`, remembered: the same few parameter sets come back for
        every job, and requests' encoding of one costs two failing Protocol isinstance checks (~70 us)."""
        try:
            key = tuple((name, type(value), value) for name, value in params.items())  # 1, 1.0 and True differ
            found = self._queries.get(key)
        except TypeError:  # a list among the values: not hashable, so not remembered
            return _encode_params(params)
        if found is None:
            if len(self._queries) >= _QUERIES_KEPT:
                self._queries.clear()
            found = self._queries[key] = _encode_params(params)
        return found

    def _environment_for(self, url: str) -> dict[str, Any]:
        """verify and proxies for `url`: the target's own, else the environment's, merged the way requests does."""
        origin = _origin(url)
        found = self._environment.get(origin)
        if found is None:
            merged = requests.Session().merge_environment_settings(
                url, self._per_request["proxies"], True, self._per_request["verify"], None
            )
            found = self._environment[origin] = {"verify": merged["verify"], "proxies": merged["proxies"]}
        return found

    def get_json(self, url: str, *, endpoint: str, deadline: Deadline, **kwargs: Any) -> Any:
        return decode_json(self.request("GET", url, endpoint=endpoint, deadline=deadline, **kwargs))

    def close(self) -> None:
        self.session.close()


def _encode_params(params: Mapping[str, Any]) -> str | bytes:
    """requests' own encoding of request parameters into a query string."""
    encoded = requests.models.RequestEncodingMixin._encode_params(params)  # type: ignore[attr-defined]
    assert isinstance(encoded, str | bytes), "a mapping encodes to text"
    return encoded


def _origin(url: str) -> str:
    """`scheme://host:port` of a URL."""
    end = url.find("/", url.find("//") + 2)
    return url if end < 0 else url[:end]


class _Adapter(HTTPAdapter):
    """Remembers the connection pool key per origin and TLS settings; requests rebuilds it, with a stat of the CA
    bundle path, on every request."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._keys: dict[tuple[Any, ...], tuple[_HostParams, _PoolKwargs]] = {}

    def build_connection_pool_key_attributes(
        self, request: requests.PreparedRequest, verify: bool | str, cert: Any = None
    ) -> tuple[_HostParams, _PoolKwargs]:
        url = request.url or ""
        key = (_origin(url), verify, cert)
        found = self._keys.get(key)
        if found is None:
            found = self._keys[key] = super().build_connection_pool_key_attributes(request, verify, cert)
        return found[0].copy(), found[1].copy()


def decode_json(response: requests.Response) -> Any:
    """The body as JSON, or an `invalid_response` error that says what came instead."""
    try:
        return json.loads(response.content)
    except ValueError as exc:
        kind = response.headers.get("Content-Type", "no content type")
        raise UpstreamError(
            "invalid_response",
            f"body is not JSON ({kind}, {len(response.content)} bytes)",
            status=response.status_code,
            body=_text(response),
        ) from exc


def error_fields(body: str, codes: Sequence[str], messages: Sequence[str]) -> tuple[str, str]:
    """(code, message) of a JSON error body, read from the first of `codes` and of `messages` that it holds, at
    the top level or inside an `error` object; each platform names the keys of its own shape. ("", the body)
    when the body is not JSON but a short text, such as a proxy's "Bad Gateway" (whole: never cut, see
    ERROR_BODY_BYTES)."""
    try:
        document = json.loads(body)
    except ValueError:
        return "", body if len(body) <= _SHORT_TEXT else ""
    if not isinstance(document, dict):
        return "", ""
    error = document.get("error")
    inner: dict[str, Any] = error if isinstance(error, dict) else document
    code = next((inner[k] for k in codes if inner.get(k)), "")
    message = next((inner[k] for k in messages if inner.get(k)), "")
    return str(code), str(message)


def _read_capped(response: requests.Response, deadline: Deadline) -> None:
    """Read the body within the budget and the size cap.

    The read timeout only bounds each socket read, so a body that trickles in would outlast any budget;
    the deadline is checked as each piece arrives. A body over MAX_BODY_BYTES is refused, so a runaway
    upstream cannot exhaust memory.
    """
    declared = response.headers.get("Content-Length")
    if declared and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        response.close()
        raise UpstreamError("invalid_response", f"body of {declared} bytes exceeds the {MAX_BODY_BYTES} cap")
    chunks: list[bytes] = []
    size = 0
    try:
        while chunk := response.raw.read1(_CHUNK_BYTES):
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                response.close()
                raise UpstreamError("invalid_response", f"body exceeds the {MAX_BODY_BYTES} byte cap")
            if deadline.remaining() <= 0:
                response.close()
                raise UpstreamError("timeout", "the answer was still arriving when the collection budget ran out")
            chunks.append(chunk)
    except urllib3.exceptions.ReadTimeoutError as exc:
        raise UpstreamError("timeout", "the answer stopped arriving within the read timeout") from exc
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise UpstreamError("connection", f"the answer broke off: {type(exc).__name__}") from exc
    response._content = b"".join(chunks)  # requests' own cache of the read body
    response.raw.release_conn()


def _retry_after_seconds(value: str | None) -> float:
    if not value:
        return 1.0
    if value.strip().isdigit():
        return float(value.strip())
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return 1.0


def _text(response: requests.Response) -> str:
    """The whole body of an answer, or nothing when it is longer than ERROR_BODY_BYTES."""
    content = response.content
    return content.decode("utf-8", "replace") if len(content) <= ERROR_BODY_BYTES else ""


def _connection_message(exc: requests.ConnectionError) -> str:
    text = str(exc)
    if "timed out" in text:
        return "the answer stopped arriving within the read timeout"
    if "Connection refused" in text:
        return "connection refused"
    if "Name or service not known" in text or "nodename nor servname" in text:
        return "host name does not resolve"
    if "SSL" in text or "certificate" in text:
        return "TLS handshake failed: " + text.split("(Caused by ")[-1][:200]
    return "connection failed: " + text[:200]
