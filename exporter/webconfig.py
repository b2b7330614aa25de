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
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Literal

import bcrypt
from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from exporter.settings import ConfigError, StrictModel, read_yaml_mapping

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
            context.load_cert_chain(str(self.cert_file), str(self.key_file))
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


class HTTPServerConfig(StrictModel):
    http2: bool = Field(True, description="Accepted for compatibility; the exporter speaks HTTP/1.1.")
    headers: dict[str, str] = Field(default_factory=dict)

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
    basic_auth_users: dict[str, str] = Field(default_factory=dict)
    rate_limit: dict[str, Any] | None = None

    @field_validator("basic_auth_users")
    @classmethod
    def _bcrypt_hashes(cls, users: dict[str, str]) -> dict[str, str]:
        for user, hashed in users.items():
            if not user or ":" in user:
                raise PydanticCustomError("user", "user names are non-empty and hold no colon", {})
            if not (hashed.startswith(("$2a$", "$2b$", "$2y$")) and len(hashed) == 60):
                raise PydanticCustomError("bcrypt", "{user}: not a bcrypt hash", {"user": user})
        return users

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
        self._verified: dict[bytes, float] = {}
        self._lock = threading.Lock()
        self._dummy: bytes | None = None

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
        if hashed is None:
            bcrypt.checkpw(password, self._dummy_hash())  # an unknown user costs as much as a wrong password
            return False
        try:
            ok = bcrypt.checkpw(password, hashed)
        except ValueError:
            return False
        if ok:
            with self._lock:
                if len(self._verified) >= AUTH_CACHE_SIZE:
                    self._verified = {k: t for k, t in self._verified.items() if t > now}
                if len(self._verified) < AUTH_CACHE_SIZE:
                    self._verified[key] = now + AUTH_CACHE_SECONDS
        return ok

    def _dummy_hash(self) -> bytes:
        if self._dummy is None:
            cost = next(iter(self._users.values()))[4:6].decode()
            self._dummy = bcrypt.hashpw(b"unknown user", bcrypt.gensalt(int(cost) if cost.isdigit() else 10))
        return self._dummy


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
        lines = []
        for error in exc.errors(include_url=False):
            where, message = ".".join(str(part) for part in error["loc"]), str(error["msg"])
            field, sep, rest = message.partition(": ")
            if sep and field.isidentifier():  # a check across fields names the one at fault
                where, message = f"{where}.{field}" if where else field, rest
            lines.append(f"{where}: {message}" if where else message)
        raise ConfigError(lines) from None
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
