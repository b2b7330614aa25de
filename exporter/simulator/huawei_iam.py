"""The Huawei Cloud side every Huawei platform of the simulator sits behind: IAM tokens and the API Gateway.

Not a platform of its own: the DataArts and Cloud Stream platforms each own a `Gateway`, with its own
account, so each serves its IAM token endpoint under its own prefix (`/iam/<platform>/v3/auth/tokens`;
`credentials()["iam_url"]` is `<url>/iam/<platform>`).

- Tokens: `POST .../v3/auth/tokens` with the password method and a project scope (by name or id) answers
  201, the token in `X-Subject-Token` and `token.expires_at` in the body, valid `token_seconds` (24 h by
  default) of simulated time. Bad credentials: 401 with IAM's `{"error": {"code": 401, ...}}` body.
- `rotate()` gives the user a new password and the access key a new secret key; tokens issued before
  stay valid until they expire, and the old secrets are refused like any wrong ones.
- Every API request carries `X-Auth-Token` or an `SDK-HMAC-SHA256` signature. An expired or dropped token
  answers 401 APIGW.0307 ("The token must be updated."); an unknown token, a missing or wrong signature,
  or an `X-Sdk-Date` more than 15 minutes off answers 401 APIGW.0301. After 5 consecutive signature
  failures the access key is locked for 5 minutes (401 APIGW.0301, "locked").
- Throttling: with `throttle_per_second` set, requests beyond it within a second of simulated time answer
  429 APIGW.0308 with `Retry-After: 1`; the `rate_limit` fault answers the same body.

Signatures are checked by this module's own reading of the signing rules, nothing shared with the client.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import re
import secrets
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from urllib.parse import quote, unquote

from exporter.simulator.platforms import Clock, Reply, Request, Route, json_reply

TOKEN_SECONDS = 24 * 3600.0
LOCK_AFTER_FAILURES = 5
LOCK_SECONDS = 300.0
DATE_SKEW_SECONDS = 900.0
_AUTHORIZATION = re.compile(
    r"SDK-HMAC-SHA256\s+Access=(?P<access>[^,\s]+),\s*SignedHeaders=(?P<headers>[^,\s]+),\s*Signature=(?P<sig>[0-9a-f]+)"
)


def gateway_error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Reply:
    body = {"error_code": code, "error_msg": message, "request_id": secrets.token_hex(16)}
    return Reply(status, json.dumps(body).encode(), headers=headers or {})


def throttled() -> Reply:
    return gateway_error(
        429, "APIGW.0308", "The throttling threshold has been reached: policy user over ratelimit", {"Retry-After": "1"}
    )


def refused(why: str) -> Reply:
    return gateway_error(401, "APIGW.0301", f"Incorrect IAM authentication information: {why}")


def iam_refusal() -> Reply:
    return json_reply(
        401, {"error": {"code": 401, "message": "The username or password is wrong.", "title": "Unauthorized"}}
    )


class Gateway:
    """One account's IAM user, project and AK/SK pair, and the gateway checks in front of its APIs."""

    def __init__(
        self, platform: str, clock: Clock, rng: random.Random, url: Callable[[], str], token_seconds: float
    ) -> None:
        self.platform = platform
        self.prefix = f"/iam/{platform}"
        self._clock = clock
        self._url = url
        self.domain = f"sim-account-{rng.randrange(10000):04d}"
        self.username = "monitor"
        self.password = secrets.token_urlsafe(12)
        self.project_name = "cn-north-4"
        self.project_id = f"{rng.getrandbits(128):032x}"
        self.access_key = "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") for _ in range(20))
        self.secret_key = secrets.token_urlsafe(30)
        self.token_seconds = token_seconds
        self.throttle_per_second: int | None = None
        self.logins = 0
        self._tokens: dict[str, float] = {}
        self._failures = 0
        self._locked_until = 0.0
        self._window: tuple[int, int] = (0, 0)
        self._lock = threading.Lock()

    def credentials(self) -> dict[str, str]:
        with self._lock:
            password, secret_key = self.password, self.secret_key
        return {
            "iam_url": self._url() + self.prefix,
            "domain": self.domain,
            "username": self.username,
            "password": password,
            "project_name": self.project_name,
            "project_id": self.project_id,
            "access_key_id": self.access_key,
            "secret_access_key": secret_key,
        }

    def rotate(self) -> None:
        with self._lock:
            self.password = secrets.token_urlsafe(12)
            self.secret_key = secrets.token_urlsafe(30)

    def token_route(self) -> Route:
        return Route("POST", f"{self.prefix}/v3/auth/tokens", "iam_token", self._issue)

    def issued_tokens(self) -> list[str]:
        with self._lock:
            return list(self._tokens)

    def expire_tokens(self) -> None:
        """Every token issued so far must be updated (what IAM does when it revokes them)."""
        with self._lock:
            self._tokens = dict.fromkeys(self._tokens, 0.0)

    def guard(self, handler: Callable[[Request], Reply]) -> Callable[[Request], Reply]:
        """Wrap an API handler with the gateway's throttling and authentication."""

        def guarded(request: Request) -> Reply:
            if self._over_limit():
                return throttled()
            problem = self._authenticate(request)
            return problem if problem is not None else handler(request)

        return guarded

    # --- IAM ---------------------------------------------------------------------------------------------

    def _issue(self, request: Request) -> Reply:
        if self._over_limit():
            return throttled()
        try:
            auth = request.json()["auth"]
            user = auth["identity"]["password"]["user"]
            project = auth["scope"]["project"]
            methods = auth["identity"]["methods"]
        except (ValueError, KeyError, TypeError):
            return json_reply(
                400, {"error": {"code": 400, "message": "The request body is invalid.", "title": "Bad Request"}}
            )
        if (
            methods != ["password"]
            or user.get("name") != self.username
            or user.get("password") != self.password
            or (user.get("domain") or {}).get("name") != self.domain
        ):
            return iam_refusal()
        if project not in ({"name": self.project_name}, {"id": self.project_id}):
            return json_reply(
                400,
                {"error": {"code": 400, "message": "The project is not found in the domain.", "title": "Bad Request"}},
            )
        token = "MII" + secrets.token_urlsafe(48)
        now = self._clock.now()
        expires = now + self.token_seconds
        with self._lock:
            self._tokens[token] = expires
            self.logins += 1
        body = {
            "token": {
                "methods": ["password"],
                "expires_at": _iso(expires),
                "issued_at": _iso(now),
                "user": {"name": self.username, "domain": {"name": self.domain}},
                "project": {"id": self.project_id, "name": self.project_name},
            }
        }
        return Reply(201, json.dumps(body).encode(), headers={"X-Subject-Token": token})

    # --- the gateway -------------------------------------------------------------------------------------

    def _over_limit(self) -> bool:
        limit = self.throttle_per_second
        if limit is None:
            return False
        second = int(self._clock.now())
        with self._lock:
            start, count = self._window
            self._window = (second, count + 1) if start == second else (second, 1)
            return self._window[1] > limit

    def _authenticate(self, request: Request) -> Reply | None:
        token = request.header("X-Auth-Token")
        if token is not None:
            with self._lock:
                expires = self._tokens.get(token)
            if expires is None:
                return refused("the token is not valid")
            if expires <= self._clock.now():
                return gateway_error(401, "APIGW.0307", "The token must be updated.")
            return None
        return self._check_signature(request)

    def _check_signature(self, request: Request) -> Reply | None:
        found = _AUTHORIZATION.fullmatch((request.header("Authorization") or "").strip())
        with self._lock:
            if self._locked_until > self._clock.now():
                return refused("the access key is locked after repeated failures")
        if found is None:
            return self._failed("no token and no SDK-HMAC-SHA256 signature")
        if found["access"] != self.access_key:
            return self._failed("the access key does not exist")
        names = found["headers"].split(";")
        date = request.header("X-Sdk-Date") or ""
        if "host" not in names or "x-sdk-date" not in names or any(request.header(n) is None for n in names):
            return self._failed("a signed header is missing")
        try:
            when = datetime.strptime(date, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC).timestamp()
        except ValueError:
            return self._failed("X-Sdk-Date is not in the basic format")
        if abs(when - self._clock.now()) > DATE_SKEW_SECONDS:
            return self._failed("X-Sdk-Date is too far from the current time")
        expected = _signature(self.secret_key, request, names, date)
        if not hmac.compare_digest(expected, found["sig"]):
            return self._failed("verify aksk signature fail")
        with self._lock:
            self._failures = 0
        return None

    def _failed(self, why: str) -> Reply:
        with self._lock:
            self._failures += 1
            if self._failures >= LOCK_AFTER_FAILURES:
                self._locked_until = self._clock.now() + LOCK_SECONDS
                self._failures = 0
        return refused(why)


def _signature(secret_key: str, request: Request, names: list[str], date: str) -> str:
    """What the signature of this request must be, rebuilt from what arrived on the wire."""
    segments = unquote(request.path).split("/")
    path = "/".join(quote(segment, safe="~") for segment in segments)
    if not path.endswith("/"):
        path += "/"
    pairs = sorted(
        (quote(key, safe="~"), quote(item, safe="~")) for key, items in request.query.items() for item in items
    )
    query = "&".join(f"{key}={item}" for key, item in pairs)
    header_lines = "".join(f"{name}:{(request.header(name) or '').strip()}\n" for name in names)
    if not request.body:
        digest = hashlib.sha256(b"").hexdigest()
    else:
        digest = request.header("X-Sdk-Content-Sha256") or hashlib.sha256(request.body).hexdigest()
    canonical = f"{request.method}\n{path}\n{query}\n{header_lines}\n{';'.join(names)}\n{digest}"
    to_sign = "\n".join(("SDK-HMAC-SHA256", date, hashlib.sha256(canonical.encode()).hexdigest()))
    return hmac.new(secret_key.encode(), to_sign.encode(), hashlib.sha256).hexdigest()


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
