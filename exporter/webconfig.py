"""`--web.config.file`: TLS and basic auth for the exporter's own endpoints, in the exporter-toolkit format.

```yaml
tls_server_config:
  cert_file: /tls/tls.crt
  key_file: /tls/tls.key
  min_version: TLS13                       # TLS10..TLS13, default TLS12
  client_auth_type: RequireAndVerifyClientCert
  client_ca_file: /tls/ca.crt
http_server_config:
  headers: {Strict-Transport-Security: max-age=31536000}
basic_auth_users:
  prometheus: $2y$10$...                   # bcrypt hash, e.g. from `htpasswd -nBC 10 "" | tr -d ':\\n'`
```

Basic auth protects every path except `/healthz` and `/readyz`: kubelet probes carry no credentials, and
those two answer only "ok"/"ready". A verified password is remembered for a few minutes (keyed by a hash
of user, password and stored hash), so a scrape does not pay bcrypt's cost every time.

Every failed check costs one bcrypt run of the configured cost, whoever asks: an unknown user's password is
checked against the costliest configured hash (the answer ignored), and a password over bcrypt's 72 bytes is
refused after the same work, so neither the status nor the time tells which users exist. Hashes are checked
in full at load (format, salt and cost from BCRYPT_MIN_COST to BCRYPT_MAX_COST), so a broken one is refused
with its user's name instead of locking everyone out later.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Annotated, Any, Literal

import bcrypt
from pydantic import AfterValidator, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from exporter.config_files import read_yaml_mapping
from exporter.config_problems import problem_lines
from exporter.settings import ConfigError, StrictModel

OPEN_PATHS = frozenset({"/healthz", "/readyz"})
AUTH_CACHE_SECONDS = 300.0
AUTH_CACHE_SIZE = 256
_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
_CLIENT_AUTH = {
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
_UNVERIFIED_CLIENT_AUTH = ("RequestClientCert", "RequireAnyClientCert")
_HEADERS = (
    "Content-Security-Policy",
    "X-Frame-Options",
    "X-Content-Type-Options",
    "X-XSS-Protection",
    "Strict-Transport-Security",
)
BCRYPT_MIN_COST = 4
"""bcrypt's own minimum."""
BCRYPT_MAX_COST = 14
"""One check at cost 14 takes about 1.4 s on a 2-core machine (15: 2.7 s, 16: 5 s; each step doubles). A scrape
that misses the auth cache pays it once inside Prometheus' default 10 s scrape_timeout beside the default 8 s
collection budget; above it, every wrong password is seconds of CPU, and cost 31 runs for minutes."""
MAX_PASSWORD_BYTES = 72
"""bcrypt reads no further; a longer password is refused, as Go's bcrypt refuses to hash one."""
_BCRYPT_HASH = re.compile(
    # version, cost, 22 characters of salt (the last carries 2 bits: 4 padding bits must be zero), 31 characters
    # of hash (the last carries 4 bits: 2 padding bits zero), in bcrypt's base64 alphabet
    r"\$2[aby]\$(?P<cost>[0-9]{2})\$[./A-Za-z0-9]{21}[.Oeu][./A-Za-z0-9]{30}[.CGKOSWaeimquy26]"
)
_HEADER_VALUE = re.compile(r"[\t\x20-\x7e\x80-\xff]*")
"""A header value as RFC 9110 allows it: visible ASCII, space, tab, Latin-1; no CR or LF to start a new header."""
TLSVersionName = Literal["TLS10", "TLS11", "TLS12", "TLS13"]
StartResponse = Callable[..., Any]


def _unsupported(value: Any, what: str) -> Any:
    if value:
        raise PydanticCustomError("unsupported", "not supported by this exporter: {what}", {"what": what})
    return value


def _existing(path: Path | None) -> Path | None:
    if path is not None and not path.is_file():
        raise PydanticCustomError("file", "no such file: {path}", {"path": str(path)})
    return path


class TLSServerConfig(StrictModel):
    cert_file: Path
    key_file: Path
    client_auth_type: str = "NoClientCert"
    client_ca_file: Path | None = None
    client_allowed_sans: list[str] = Field(default_factory=list)
    min_version: TLSVersionName = "TLS12"
    max_version: TLSVersionName = "TLS13"
    prefer_server_cipher_suites: bool = True
    cipher_suites: list[str] = Field(default_factory=list)
    curve_preferences: list[str] = Field(default_factory=list)
    cert: str | None = None
    key: str | None = None
    client_ca: str | None = None

    _files = field_validator("cert_file", "key_file", "client_ca_file")(_existing)

    @field_validator("cipher_suites", "curve_preferences")
    @classmethod
    def _no_go_names(cls, value: list[str]) -> list[str]:
        return _unsupported(value, "OpenSSL's defaults are used; leave it empty")  # type: ignore[no-any-return]

    @field_validator("cert", "key", "client_ca")
    @classmethod
    def _no_inline(cls, value: str | None) -> str | None:
        return _unsupported(value, "inline PEM; use cert_file, key_file and client_ca_file")  # type: ignore[no-any-return]

    @field_validator("client_auth_type")
    @classmethod
    def _known_policy(cls, value: str) -> str:
        if value in _UNVERIFIED_CLIENT_AUTH:
            raise PydanticCustomError(
                "unsupported",
                "{v} accepts unverified certificates and is not supported; use "
                "RequireAndVerifyClientCert or VerifyClientCertIfGiven",
                {"v": value},
            )
        if value not in _CLIENT_AUTH:
            raise PydanticCustomError("policy", "must be one of {names}", {"names": ", ".join(_CLIENT_AUTH)})
        return value

    @model_validator(mode="after")
    def _consistent(self) -> TLSServerConfig:
        if self.client_auth_type != "NoClientCert" and self.client_ca_file is None:
            raise PydanticCustomError("tls", "client_ca_file: required when client_auth_type verifies clients", {})
        if self.client_allowed_sans and self.client_auth_type != "RequireAndVerifyClientCert":
            raise PydanticCustomError("tls", "client_allowed_sans: needs RequireAndVerifyClientCert", {})
        if _VERSIONS[self.min_version] > _VERSIONS[self.max_version]:
            raise PydanticCustomError("tls", "min_version: is above max_version", {})
        return self

    def context(self) -> ssl.SSLContext:
        """The server-side SSL context; certificate and key problems name the field."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = _VERSIONS[self.min_version]
        context.maximum_version = _VERSIONS[self.max_version]
        if self.prefer_server_cipher_suites:
            context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
        try:
            # An encrypted key gets an empty passphrase (and fails) rather than OpenSSL's prompt on the terminal.
            context.load_cert_chain(str(self.cert_file), str(self.key_file), password=b"")
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError([f"tls_server_config.cert_file: cannot load certificate and key: {exc}"]) from None
        context.verify_mode = _CLIENT_AUTH[self.client_auth_type]
        if self.client_ca_file is not None:
            try:
                context.load_verify_locations(cafile=str(self.client_ca_file))
            except (ssl.SSLError, OSError) as exc:
                raise ConfigError([f"tls_server_config.client_ca_file: cannot load: {exc}"]) from None
        return context

    def allows(self, peer: dict[str, Any] | None) -> bool:
        """Whether a verified client certificate carries one of client_allowed_sans (when that list is set)."""
        if not self.client_allowed_sans:
            return True
        names = {value for _kind, value in (peer or {}).get("subjectAltName", ())}
        return bool(names & set(self.client_allowed_sans))


def _bcrypt_hash(value: str) -> str:
    match = _BCRYPT_HASH.fullmatch(value)
    if match is None:
        raise PydanticCustomError(
            "bcrypt", "not a bcrypt hash ($2a$, $2b$ or $2y$, a two-digit cost, then 53 characters of salt and hash)"
        )
    cost = int(match["cost"])
    if not BCRYPT_MIN_COST <= cost <= BCRYPT_MAX_COST:
        raise PydanticCustomError(
            "bcrypt",
            "bcrypt cost {cost} is outside {low}..{high} (above {high} each login costs seconds of CPU)",
            {"cost": cost, "low": BCRYPT_MIN_COST, "high": BCRYPT_MAX_COST},
        )
    return value


def _user_name(value: str) -> str:
    if not value or ":" in value or not value.isprintable():
        raise PydanticCustomError("user", "user names are non-empty, printable and hold no colon")
    return value


def _header_value(value: str) -> str:
    if not _HEADER_VALUE.fullmatch(value):
        raise PydanticCustomError("header", "a header value holds no CR, LF or other control character")
    return value


class HTTPServerConfig(StrictModel):
    http2: bool = Field(True, description="Accepted for compatibility; the exporter speaks HTTP/1.1.")
    headers: dict[str, Annotated[str, AfterValidator(_header_value)]] = Field(default_factory=dict)

    @field_validator("headers")
    @classmethod
    def _allowed_headers(cls, headers: dict[str, str]) -> dict[str, str]:
        for name, value in headers.items():
            if name not in _HEADERS:
                raise PydanticCustomError(
                    "header", "{name} cannot be set; allowed: {allowed}", {"name": name, "allowed": ", ".join(_HEADERS)}
                )
            if name == "X-Frame-Options" and value.lower() not in ("", "deny", "sameorigin"):
                raise PydanticCustomError("header", "X-Frame-Options must be deny or sameorigin", {})
            if name == "X-Content-Type-Options" and value.lower() not in ("", "nosniff"):
                raise PydanticCustomError("header", "X-Content-Type-Options must be nosniff", {})
        return {name: value for name, value in headers.items() if value}


class WebConfigModel(StrictModel):
    tls_server_config: TLSServerConfig | None = None
    http_server_config: HTTPServerConfig = Field(default_factory=HTTPServerConfig)
    basic_auth_users: dict[Annotated[str, AfterValidator(_user_name)], Annotated[str, AfterValidator(_bcrypt_hash)]] = (
        Field(default_factory=dict)
    )
    rate_limit: dict[str, Any] | None = None

    @field_validator("rate_limit")
    @classmethod
    def _no_rate_limit(cls, value: Any) -> Any:
        return _unsupported(value, "rate_limit")


class WebConfig:
    """One loaded web configuration: the TLS context (or None) and the basic auth check."""

    def __init__(self, model: WebConfigModel) -> None:
        self.model = model
        self.tls = model.tls_server_config
        self.ssl_context = self.tls.context() if self.tls else None
        self.headers = list(model.http_server_config.headers.items())
        self._users = {user: hashed.encode() for user, hashed in model.basic_auth_users.items()}
        self._costliest = max(self._users.values(), key=lambda hashed: hashed[4:6], default=b"")
        self._verified: dict[bytes, float] = {}
        self._lock = threading.Lock()

    def authorized(self, header: str | None) -> bool:
        """Whether an `Authorization` header carries a configured user and password; True without users."""
        if not self._users:
            return True
        user, password = _basic_credentials(header)
        if user is None or password is None:
            return False
        hashed = self._users.get(user)
        key = hashlib.sha256(b"\0".join((user.encode(), password, hashed or b""))).digest()
        now = time.monotonic()
        with self._lock:
            if hashed is not None and self._verified.get(key, 0.0) > now:
                return True
        if hashed is None or len(password) > MAX_PASSWORD_BYTES:
            # The same work as a wrong password, its answer ignored: neither status nor time tells users apart.
            bcrypt.checkpw(password[:MAX_PASSWORD_BYTES], hashed or self._costliest)
            return False
        ok = bcrypt.checkpw(password, hashed)
        if ok:
            with self._lock:
                if len(self._verified) >= AUTH_CACHE_SIZE:
                    self._verified = {k: t for k, t in self._verified.items() if t > now}
                if len(self._verified) < AUTH_CACHE_SIZE:
                    self._verified[key] = now + AUTH_CACHE_SECONDS
        return ok


def _basic_credentials(header: str | None) -> tuple[str | None, bytes | None]:
    scheme, _, encoded = (header or "").partition(" ")
    if scheme.lower() != "basic":
        return None, None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None, None
    user, sep, password = decoded.partition(b":")
    if not sep:
        return None, None
    return user.decode("utf-8", "replace"), password


def load_web_config(path: Path) -> WebConfig:
    """Read and validate the file, or raise ConfigError with one line per problem, naming the field."""
    data = read_yaml_mapping(path, "web.config.file")
    try:
        model = WebConfigModel.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(problem_lines(exc, WebConfigModel, field_in_message=True)) from None
    return WebConfig(model)


class WebConfigHolder:
    """The web configuration in force; a reload replaces it in one assignment."""

    def __init__(self, config: WebConfig | None = None) -> None:
        self.current = config or WebConfig(WebConfigModel())


def protect(app: Callable[[dict[str, Any], StartResponse], Iterable[bytes]], holder: WebConfigHolder) -> Any:
    """WSGI middleware: basic auth on every path but the probes, and the configured response headers."""

    def guarded(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        config = holder.current

        def with_headers(status: str, headers: list[tuple[str, str]], *exc: Any) -> Any:
            return start_response(status, [*headers, *config.headers], *exc)

        path = environ.get("PATH_INFO", "/") or "/"
        if path not in OPEN_PATHS and not config.authorized(environ.get("HTTP_AUTHORIZATION")):
            body = b"Unauthorized\n"
            with_headers(
                "401 Unauthorized",
                [
                    ("WWW-Authenticate", 'Basic realm="ingestion-exporter", charset="UTF-8"'),
                    ("Content-Type", "text/plain; charset=utf-8"),
                    ("Content-Length", str(len(body))),
                ],
            )
            return [body]
        return app(environ, with_headers)

    return guarded
