"""Settings: one YAML file plus `INGESTION_EXPORTER_*` environment overrides, validated up front.

Each platform declares its target model (a subclass of `TargetSettings`) next to its collector; the root
model is assembled from those, so adding a platform never touches this module. Secrets are accepted only
from `<field>_file` paths or the environment, never inline, and are held as `SecretStr`. Numbers are finite
(no `.inf` or `.nan` anywhere) and durations have floors and ceilings, so no setting means "forever".
"""

from __future__ import annotations

import functools
import operator
import os
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, get_args, get_origin
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    create_model,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict

from exporter.config_files import MAX_SECRET_BYTES, UnreadableError, read_text, read_yaml_mapping
from exporter.config_problems import ConfigError as ConfigError
from exporter.config_problems import problem_lines
from exporter.sharding import Shard

ENV_PREFIX = "INGESTION_EXPORTER_"
MASK = "**********"
"""What a secret is shown as, wherever the configuration is shown."""
_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL with a host")
    if parts.username is not None or parts.password is not None:
        raise ValueError("credentials do not go in URLs; use the target's secret fields")
    return value.rstrip("/")


HttpURL = Annotated[str, AfterValidator(_http_url)]
"""An upstream base URL, kept as written minus a trailing slash."""


class StrictModel(BaseModel):
    """Unknown keys are typos: refuse them so a misspelt option never silently does nothing."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class TLSSettings(StrictModel):
    ca_file: Path | None = Field(None, description="PEM bundle to verify the upstream with.")
    cert_file: Path | None = Field(None, description="Client certificate for mutual TLS.")
    key_file: Path | None = Field(None, description="Key of the client certificate.")
    insecure_skip_verify: bool = Field(False, description="Skip verification (logged as a warning).")

    @model_validator(mode="after")
    def _files_exist(self) -> TLSSettings:
        for field in ("ca_file", "cert_file", "key_file"):
            path = getattr(self, field)
            if path is not None and not path.is_file():
                raise PydanticCustomError("file", "{field}: no such file: {path}", {"field": field, "path": str(path)})
        if (self.cert_file is None) != (self.key_file is None):
            raise PydanticCustomError("tls", "cert_file and key_file go together", {})
        return self


MIN_TIMEOUT_SECONDS = 0.01
"""Below this, a timeout or budget fails every call: a typo (1e-300), not a setting."""


class TimeoutSettings(StrictModel):
    connect_seconds: float = Field(3.0, ge=MIN_TIMEOUT_SECONDS, le=60)
    read_seconds: float = Field(10.0, ge=MIN_TIMEOUT_SECONDS, le=300)


def _regex(pattern: str) -> str:
    try:
        re.compile(pattern)
    except re.error as exc:
        why = {"pattern": repr(pattern), "why": str(exc)}
        raise PydanticCustomError("regex", "bad pattern {pattern}: {why}", why) from None
    return pattern


Regex = Annotated[str, AfterValidator(_regex)]
"""A regular expression, refused at load (naming the list item) when it does not compile."""


class DiscoverySettings(StrictModel):
    enabled: bool = False
    interval_seconds: float = Field(
        300.0, ge=10, le=86400, description="How long a discovered job list is reused (at most a day)."
    )
    include: list[Regex] = Field(default_factory=list, description="Regular expressions; a job must match one.")
    exclude: list[Regex] = Field(default_factory=list, description="Regular expressions; a match drops the job.")

    def wants(self, name: str) -> bool:
        if self.include and not any(re.search(p, name) for p in self.include):
            return False
        return not any(re.search(p, name) for p in self.exclude)


class TargetSettings(StrictModel):
    """What every target has, whatever its platform."""

    secret_fields: ClassVar[tuple[str, ...]] = ()
    required_secrets: ClassVar[tuple[str, ...]] = ()

    name: str = Field(pattern=_NAME_PATTERN, description="Target name: the `target` label and /probe key.")
    platform: str = Field(description="Which platform's API the target is: each platform model narrows it.")
    timeouts: TimeoutSettings = Field(default_factory=TimeoutSettings)
    tls: TLSSettings = Field(default_factory=TLSSettings)
    proxy_url: HttpURL | None = Field(None, description="HTTP(S) proxy for this target's upstream calls.")
    max_concurrency: int = Field(4, ge=1, le=64, description="Upstream calls in flight at once.")
    budget_seconds: float | None = Field(
        None, ge=MIN_TIMEOUT_SECONDS, le=300, description="Per-target collection budget."
    )
    discovery: DiscoverySettings = Field(default_factory=DiscoverySettings)

    _secrets: dict[str, SecretStr] = PrivateAttr(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _no_inline_secrets(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for field in cls.secret_fields:
                if field in data:
                    raise PydanticCustomError(
                        "inline_secret",
                        "{field}: secrets are not accepted inline; use {field}_file or the environment variable {env}",
                        {"field": field, "env": secret_env_name(str(data.get("name", "NAME")), field)},
                    )
        return data

    @model_validator(mode="after")
    def _load_secrets(self) -> TargetSettings:
        for field in self.secret_fields:
            value = _read_secret(self.name, field, getattr(self, f"{field}_file", None))
            if value is not None:
                self._secrets[field] = SecretStr(value)
            elif field in self.required_secrets:
                raise PydanticCustomError(
                    "missing_secret",
                    "{field}: required; set {field}_file or the environment variable {env}",
                    {"field": field, "env": secret_env_name(self.name, field)},
                )
        return self

    def secret(self, field: str) -> SecretStr | None:
        return self._secrets.get(field)

    def secret_items(self) -> list[tuple[str, str]]:
        """Each secret field given, with its value: what the logs must mask for this target."""
        return [(field, secret.get_secret_value()) for field, secret in self._secrets.items()]


def secret_env_name(target: str, field: str) -> str:
    """`infa-prod`, `password` -> `INGESTION_EXPORTER_INFA_PROD_PASSWORD`."""
    return ENV_PREFIX + re.sub(r"[^A-Za-z0-9]", "_", f"{target}_{field}").upper()


def _read_secret(target: str, field: str, path: Path | None) -> str | None:
    """The secret from the environment variable when it is set, else from `<field>_file`: the environment
    overrides the file here as it does for every other setting.

    A secret is one line of text, from either source: surrounding whitespace (a file's final newline) is dropped,
    and a control character inside it (a second line, a NUL) is refused, as it would otherwise end up in an HTTP
    header, where the client library's complaint quotes the value.
    """
    env = secret_env_name(target, field)
    from_environment = os.environ.get(env, "").strip()
    if from_environment:
        text, source = from_environment, f"{field}: the environment variable {env}"
    elif path is None:
        return None
    else:
        try:
            text, source = read_text(Path(path), MAX_SECRET_BYTES).strip(), f"{field}_file: {path}"
        except UnreadableError as exc:
            raise PydanticCustomError("secret_file", "{field}_file: {why}", {"field": field, "why": str(exc)}) from None
        if not text:
            raise PydanticCustomError("secret_file", "{source} is empty", {"source": source})
    if not text.isprintable():
        raise PydanticCustomError(
            "secret_file", "{source} holds a control character; a secret is one line of text", {"source": source}
        )
    return text


class RootSettings(BaseSettings):
    """Top-level options; `targets` is added per platform set by `settings_model()`."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", frozen=True, allow_inf_nan=False)
    target_models: ClassVar[tuple[type[TargetSettings], ...]] = ()

    scrape_budget_seconds: float = Field(
        8.0,
        ge=MIN_TIMEOUT_SECONDS,
        le=300,
        description="Collection budget per scrape; keep below Prometheus' scrape_timeout.",
    )
    min_interval_seconds: float = Field(
        0.0, ge=0, le=3600, description="Scrapes sooner than this after the last collection get its result."
    )
    state_series: Literal["full", "sparse"] = Field(
        "full", description="`full`: every state of the fixed set as 0/1; `sparse`: only the current state's series."
    )
    shard: int = Field(0, ge=0, description="This process's shard, from 0; it collects only the jobs hashed to it.")
    total_shards: int = Field(1, ge=1, le=1024, description="How many processes share the jobs.")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The YAML document arrives as init kwargs; the environment overrides it.
        return _Environment(settings_cls), init_settings

    def all_targets(self) -> Sequence[TargetSettings]:
        targets: Sequence[TargetSettings] = getattr(self, "targets", ())
        return targets

    def sharding(self) -> Shard:
        return Shard(self.shard, self.total_shards)

    def with_shard(self, shard: int | None, total_shards: int | None) -> RootSettings:
        """These settings with the command line's shard and total, which win over the file and the environment."""
        shard = self.shard if shard is None else shard
        total_shards = self.total_shards if total_shards is None else total_shards
        if total_shards < 1 or not 0 <= shard < total_shards:
            raise ConfigError([f"shard: {shard} is not one of the {total_shards} shards (0 to {total_shards - 1})"])
        return self.model_copy(update={"shard": shard, "total_shards": total_shards})

    @model_validator(mode="after")
    def _shard_in_range(self) -> RootSettings:
        if self.shard >= self.total_shards:
            raise PydanticCustomError(
                "shard",
                "shard: {shard} is not below total_shards {total}",
                {"shard": self.shard, "total": self.total_shards},
            )
        return self

    @model_validator(mode="after")
    def _unique_names(self) -> RootSettings:
        counts = Counter(t.name for t in self.all_targets())
        duplicates = sorted(name for name, count in counts.items() if count > 1)
        if duplicates:
            raise PydanticCustomError("duplicate", "targets: duplicate target names {names}", {"names": duplicates})
        return self


def settings_model(target_models: Iterable[type[TargetSettings]]) -> type[RootSettings]:
    """The root model for a set of platforms: `targets` is a list discriminated by `platform`."""
    models = tuple(target_models)
    union: Any = functools.reduce(operator.or_, models)
    target_type: Any = models[0] if len(models) == 1 else Annotated[union, Field(discriminator="platform")]
    model: type[RootSettings] = create_model(
        "Settings", __base__=RootSettings, targets=(list[target_type], Field(default_factory=list))
    )
    model.target_models = models
    return model


def platform_of(model: type[TargetSettings]) -> str | None:
    """The platform a target model is for: the value of its `platform` literal (None on the generic base)."""
    annotation = model.model_fields["platform"].annotation
    return get_args(annotation)[0] if get_origin(annotation) is Literal else None


def load_settings(model: type[RootSettings], path: Path | None) -> RootSettings:
    """Read, validate and return the settings, or raise ConfigError with one line per problem."""
    data: dict[str, Any] = {} if path is None else read_yaml_mapping(path, "config.file")
    odd = [key for key in data if not isinstance(key, str)]
    if odd:
        raise ConfigError([f"config.file: a top-level key is not a name: {key!r}" for key in odd])
    try:
        return model(**data)
    except ValidationError as exc:
        raise ConfigError(problem_lines(exc, model)) from None


class _Environment(EnvSettingsSource):
    """The `INGESTION_EXPORTER_*` variables; one holding JSON (`..._TARGETS`) that does not parse is one line
    naming the variable, not pydantic-settings' exception."""

    def decode_complex_value(self, field_name: str, field: FieldInfo, value: Any) -> Any:
        try:
            return super().decode_complex_value(field_name, field, value)
        except (ValueError, RecursionError) as exc:
            why = str(exc) if isinstance(exc, ValueError) else "nested too deeply"
            raise ConfigError([f"{ENV_PREFIX}{field_name.upper()}: not valid JSON ({why})"]) from None


def masked(settings: RootSettings) -> dict[str, Any]:
    """The effective settings as plain data with every secret masked, for --check-config and the log."""
    document = settings.model_dump(mode="json")
    for target_doc, target in zip(document.get("targets", []), settings.all_targets(), strict=True):
        for field in target.secret_fields:
            if target.secret(field) is not None:
                target_doc[field] = MASK
    return dict(document)
