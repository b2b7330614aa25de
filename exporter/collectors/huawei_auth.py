"""Huawei Cloud API Gateway access shared by the DataArts Studio and Cloud Stream collectors.

Two ways in, chosen by `auth.type`:

- `token`: an IAM password token (`POST {iam_url}/v3/auth/tokens`, token in `X-Subject-Token`), obtained
  once, cached, renewed `token_renew_before_seconds` before it expires (never later than half-way through
  its life) and renewed once, followed by one retry, when the gateway answers 401 `APIGW.0307` ("the
  token must be updated"). Any other 401 drops the token so the next scrape logs in again.
- `aksk`: every request signed with SDK-HMAC-SHA256 (`sign_request`). A pair is locked by the gateway for
  5 minutes after 5 consecutive failures, so after a 401 no request is signed for
  `aksk_cooldown_seconds` (default 300, the length of the lock), and until a signature has been accepted
  only one signed request is in flight at a time: a wrong secret costs one failure per cool-down.

Auth failures are never retried in a loop: one login attempt per collection at most. Throttling (HTTP 429,
or `APIGW.0308` with any status) makes the target back off and counts as `rate_limited`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, Literal
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from pydantic import Field, field_serializer, model_validator
from pydantic_core import PydanticCustomError

from exporter.collectors.base import SecretSink
from exporter.collectors.credentials import LoginCache
from exporter.http import Deadline, Upstream, UpstreamError, decode_json, error_fields
from exporter.parsing import epoch_seconds
from exporter.settings import MASK, HttpURL, StrictModel, TargetSettings, secret_env_name
from exporter.telemetry import Reason

ALGORITHM = "SDK-HMAC-SHA256"
DATE_FORMAT = "%Y%m%dT%H%M%SZ"
TOKEN_LIFETIME_SECONDS = 24 * 3600.0  # IAM's documented validity, used when the answer does not say
THROTTLE_BACKOFF_SECONDS = 10.0  # APIGW.0308 without HTTP 429 carries no Retry-After
_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
_SECRETS = {"token": "password", "aksk": "secret_access_key"}


class HuaweiAuth(StrictModel):
    """How a Huawei target authenticates; the password and secret key come from files or the environment."""

    type: Literal["token", "aksk"]
    iam_url: HttpURL | None = Field(None, description="IAM endpoint, e.g. https://iam.cn-north-4.myhuaweicloud.com.")
    domain: str | None = Field(None, min_length=1, description="Account (domain) name of the IAM user.")
    username: str | None = Field(None, min_length=1, description="IAM user name.")
    project_name: str | None = Field(
        None, min_length=1, description="Token scope, e.g. cn-north-4; the target's project_id when unset."
    )
    access_key_id: str | None = Field(None, min_length=1, description="Access key id (AK) of the AK/SK pair.")
    aksk_cooldown_seconds: float = Field(
        300.0, ge=0, le=3600, description="After an AK/SK auth failure, sign no request for this long."
    )
    token_renew_before_seconds: float = Field(
        3600.0, ge=0, description="Renew the IAM token this long before it expires."
    )

    @model_validator(mode="before")
    @classmethod
    def _no_inline_secrets(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for field in ("password", "secret_access_key"):
                if field in data:
                    raise PydanticCustomError(
                        "inline_secret",
                        "{field}: secrets are not accepted inline; set {field}_file on the target or use the "
                        "environment variable INGESTION_EXPORTER_<TARGET>_{upper}",
                        {"field": field, "upper": field.upper()},
                    )
        return data

    @model_validator(mode="after")
    def _complete(self) -> HuaweiAuth:
        needed = ("iam_url", "domain", "username") if self.type == "token" else ("access_key_id",)
        missing = [name for name in needed if getattr(self, name) is None]
        if missing:
            raise PydanticCustomError(
                "auth_incomplete",
                "{fields}: required with type {kind}",
                {"fields": ", ".join(missing), "kind": self.type},
            )
        return self

    @field_serializer("access_key_id")
    def _mask_access_key(self, value: str | None) -> str | None:
        return None if value is None else MASK


class HuaweiTarget(TargetSettings):
    """What both Huawei targets share: the project, the auth block and the two possible secrets."""

    secret_fields: ClassVar[tuple[str, ...]] = ("password", "secret_access_key")

    project_id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$", description="Project id in the API paths.")
    auth: HuaweiAuth
    password_file: Path | None = Field(None, description="File holding the IAM password (auth.type token).")
    secret_access_key_file: Path | None = Field(None, description="File holding the secret key (auth.type aksk).")

    @model_validator(mode="after")
    def _secret_for_auth(self) -> HuaweiTarget:
        field = _SECRETS[self.auth.type]
        if self.secret(field) is None:
            raise PydanticCustomError(
                "missing_secret",
                "{field}: required with auth.type {kind}; set {field}_file or the environment variable {env}",
                {"field": field, "kind": self.auth.type, "env": secret_env_name(self.name, field)},
            )
        return self


# --- AK/SK signing ---------------------------------------------------------------------------------------


def _encode(text: str) -> str:
    return quote(text, safe="~")


def canonical_path(path: str) -> str:
    """The path decoded, then each segment percent-encoded (unreserved characters and `~` kept), ending in `/`.

    Decoding comes first, as on the gateway: an encoded `/` inside a name is a separator in the signature.
    """
    encoded = "/".join(_encode(segment) for segment in unquote(path).split("/"))
    return encoded if encoded.endswith("/") else encoded + "/"


def canonical_query(query: str) -> str:
    pairs = sorted((_encode(k), _encode(v)) for k, v in parse_qsl(query, keep_blank_values=True))
    return "&".join(f"{k}={v}" for k, v in pairs)


def sign_request(
    method: str, url: str, headers: Mapping[str, str], body: bytes, access_key: str, secret_key: str, at: datetime
) -> dict[str, str]:
    """The headers to send: `headers` plus `Host`, `X-Sdk-Date` (from `at`, UTC) and `Authorization`.

    `url` is the one sent, its path and query already percent-encoded. Every header given is signed,
    except names with an underscore (the gateway ignores those); a body that is not JSON is sent unsigned.
    """
    parts = urlsplit(url)
    sent = dict(headers)
    names = {name.lower() for name in sent}
    if "host" not in names:
        sent["Host"] = parts.netloc
    if "x-sdk-date" not in names:
        sent["X-Sdk-Date"] = at.astimezone(UTC).strftime(DATE_FORMAT)
    content_type = next((v for k, v in sent.items() if k.lower() == "content-type"), "")
    if content_type and not content_type.startswith(("application/json", "application/bson")):
        sent["X-Sdk-Content-Sha256"] = "UNSIGNED-PAYLOAD"
    values = {name.lower(): str(value).strip() for name, value in sent.items()}
    signed = sorted(name for name in values if "_" not in name)
    payload_hash = (values.get("x-sdk-content-sha256") or hashlib.sha256(body).hexdigest()) if body else _EMPTY_SHA256
    canonical = "\n".join(
        (
            method.upper(),
            canonical_path(parts.path or "/"),
            canonical_query(parts.query),
            "".join(f"{name}:{values[name]}\n" for name in signed),
            ";".join(signed),
            payload_hash,
        )
    )
    date = values["x-sdk-date"]
    string_to_sign = f"{ALGORITHM}\n{date}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
    signature = hmac.new(secret_key.encode(), string_to_sign.encode(), hashlib.sha256).hexdigest()
    sent["Authorization"] = f"{ALGORITHM} Access={access_key}, SignedHeaders={';'.join(signed)}, Signature={signature}"
    return sent


def path_url(base: str, *segments: str, query: Sequence[tuple[str, str]] = ()) -> str:
    """`base` + each segment percent-encoded as the signer encodes it, + the encoded query."""
    url = base + "".join("/" + _encode(segment) for segment in segments)
    if query:
        url += "?" + "&".join(f"{_encode(k)}={_encode(v)}" for k, v in query)
    return url


# --- errors ----------------------------------------------------------------------------------------------


def _error(body: str) -> tuple[str, str]:
    """(code, message) of a Huawei error body: the gateway's and DLF's `error_code`/`error_msg`, IAM's
    `error.code`/`error.message`, Cloud Stream's `message_id`/`message`."""
    return error_fields(body, ("error_code", "code", "message_id"), ("error_msg", "message"))


def _described(
    exc: UpstreamError, code: str, message: str, reason: Reason | None = None, *, login: bool = False
) -> UpstreamError:
    """The error with the vendor's code and message in its text. A login's keeps no body for the log: besides
    the code and message it could only hold the request echoed back, password included."""
    text = " ".join(part for part in (str(exc), code, message) if part)
    return UpstreamError(reason or exc.reason, text, status=exc.status, body="" if login else exc.body)


# --- client ----------------------------------------------------------------------------------------------


class _Token:
    def __init__(self, value: str, refresh_at: float, expires_at: float) -> None:
        self.value = value
        self.refresh_at = refresh_at
        self.expires_at = expires_at


class HuaweiClient:
    """Sends one target's API calls with its credentials; `call()` returns the decoded JSON answer."""

    def __init__(
        self, settings: HuaweiTarget, upstream: Upstream, secrets: SecretSink, clock: Callable[[], float] = time.time
    ) -> None:
        self._settings = settings
        self._secrets = secrets
        self._auth = settings.auth
        self._upstream = upstream
        self._clock = clock
        self._probe = threading.Lock()  # the first AK/SK request
        self._tokens: LoginCache[_Token] = LoginCache(
            self._login, fresh=lambda t: self._clock() < t.refresh_at, usable=lambda t: self._clock() < t.expires_at
        )
        self._aksk_verified = False
        self._aksk_paused_until = 0.0
        if self._auth.access_key_id:
            secrets.put("access_key_id", self._auth.access_key_id)

    def ready(self, deadline: Deadline) -> None:
        """Raise the auth failure up front, once per collection, instead of once per job: the token is
        obtained (or the last refusal of this collection raised again), or the AK/SK cool-down is running."""
        if self._auth.type == "token":
            self._tokens.get(deadline)
            return
        wait = self._aksk_paused_until - time.monotonic()
        if wait > 0:
            raise UpstreamError("auth", f"AK/SK refused earlier; no signed request for another {wait:.0f}s")

    def call(
        self,
        method: str,
        url: str,
        *,
        endpoint: str,
        deadline: Deadline,
        json_body: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """One API call; a 401 APIGW.0307 renews the token and retries once, nothing else is retried."""
        body = b"" if json_body is None else json.dumps(json_body, separators=(",", ":")).encode()
        base = dict(headers or {})
        if body:
            base["Content-Type"] = "application/json;charset=UTF-8"
        for attempt in (1, 2):
            token = self._tokens.get(deadline) if self._auth.type == "token" else None
            try:
                if token is not None:
                    response = self._upstream.request(
                        method,
                        url,
                        endpoint=endpoint,
                        deadline=deadline,
                        data=body or None,
                        headers={**base, "X-Auth-Token": token.value},
                    )
                else:
                    response = self._signed(method, url, endpoint, deadline, base, body)
            except UpstreamError as exc:
                code, message = _error(exc.body)
                if code == "APIGW.0308" and exc.reason != "rate_limited":
                    self._upstream.back_off(THROTTLE_BACKOFF_SECONDS)
                    raise _described(exc, code, message, "rate_limited") from exc
                if exc.status == 401 and token is not None:
                    if code == "APIGW.0307" and attempt == 1:
                        self._tokens.renew(token, deadline)
                        continue
                    self._tokens.drop(token)
                raise _described(exc, code, message) from exc
            return decode_json(response)
        raise AssertionError("unreachable")

    # token ---------------------------------------------------------------------------------------------

    def _login(self, deadline: Deadline) -> _Token:
        auth, settings = self._auth, self._settings
        password = settings.secret("password")
        assert password is not None and auth.iam_url is not None  # the settings validators guarantee both
        scope = {"name": auth.project_name} if auth.project_name else {"id": settings.project_id}
        body = {
            "auth": {
                "identity": {
                    "methods": ["password"],
                    "password": {
                        "user": {
                            "domain": {"name": auth.domain},
                            "name": auth.username,
                            "password": password.get_secret_value(),
                        }
                    },
                },
                "scope": {"project": scope},
            }
        }
        issued = self._clock()
        try:
            response = self._upstream.request(
                "POST",
                f"{auth.iam_url}/v3/auth/tokens",
                endpoint="iam_token",
                deadline=deadline,
                json_body=body,
            )
        except UpstreamError as exc:
            code, message = _error(exc.body)
            if code == "APIGW.0308":
                self._upstream.back_off(THROTTLE_BACKOFF_SECONDS)
                raise _described(exc, code, message, "rate_limited", login=True) from exc
            if exc.status is not None and 400 <= exc.status < 500 and exc.status != 429:
                raise _described(exc, code, message or "IAM refused the password login", "auth", login=True) from exc
            raise _described(exc, code, message, login=True) from exc
        value = response.headers.get("X-Subject-Token")
        if not value:
            raise UpstreamError("invalid_response", "IAM answer lacks the X-Subject-Token header")
        self._secrets.put("token", value)
        expires = _expires_at(response.content) or issued + TOKEN_LIFETIME_SECONDS
        lifetime = max(0.0, expires - issued)
        refresh_at = expires - min(auth.token_renew_before_seconds, lifetime / 2)
        return _Token(value, refresh_at, expires)

    # AK/SK ---------------------------------------------------------------------------------------------

    def _signed(
        self, method: str, url: str, endpoint: str, deadline: Deadline, headers: dict[str, str], body: bytes
    ) -> Any:
        if self._aksk_verified:
            return self._send_signed(method, url, endpoint, deadline, headers, body)
        # Until the gateway accepts a signature, one signed request at a time: a wrong key fails once.
        if not self._probe.acquire(timeout=max(0.0, deadline.remaining())):
            raise UpstreamError("timeout", "waited the whole budget for the first AK/SK request")
        try:
            return self._send_signed(method, url, endpoint, deadline, headers, body)
        finally:
            self._probe.release()

    def _send_signed(
        self, method: str, url: str, endpoint: str, deadline: Deadline, headers: dict[str, str], body: bytes
    ) -> Any:
        self.ready(deadline)
        secret = self._settings.secret("secret_access_key")
        assert secret is not None and self._auth.access_key_id is not None  # the settings validators
        sent = sign_request(
            method,
            url,
            {**headers, "X-Project-Id": self._settings.project_id},
            body,
            self._auth.access_key_id,
            secret.get_secret_value(),
            datetime.fromtimestamp(self._clock(), UTC),
        )
        # A signature is good for one request (for the gateway's 15 minutes), but it is a credential all the same:
        # masked in the log; each one replaces the last, which stays masked until the collection ends.
        self._secrets.put("signature", sent["Authorization"].rsplit("=", 1)[1])
        try:
            response = self._upstream.request(
                method, url, endpoint=endpoint, deadline=deadline, headers=sent, data=body or None
            )
        except UpstreamError as exc:
            if exc.status == 401:
                self._aksk_verified = False
                self._aksk_paused_until = time.monotonic() + self._auth.aksk_cooldown_seconds
            raise
        self._aksk_verified = True
        return response


def _expires_at(content: bytes) -> float | None:
    """`token.expires_at` of an IAM answer, in epoch seconds; None when absent or unreadable."""
    try:
        document = json.loads(content)
        return epoch_seconds(document["token"]["expires_at"])
    except (ValueError, KeyError, TypeError):
        return None
