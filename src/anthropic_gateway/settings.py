"""Gateway settings: validated once at start-up from the environment, a `.env` file and a TOML file.

Precedence (highest first): command-line flags, environment, `.env`, TOML (`--config`), defaults.
Every setting is an environment variable ``ANTHROPIC_GATEWAY_<NAME>`` and a TOML key ``<name>``; the
upstream key is also read from ``OPENROUTER_API_KEY``. Tests pass ``environ={...}`` instead of patching
``os.environ``.
"""

from __future__ import annotations

import contextvars
import fnmatch
import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)
from pydantic_settings import (
    SettingsError as PydanticSettingsError,
)

from anthropic_gateway import setting_names
from anthropic_gateway.backends import kind_for_url, strip_chat_path
from anthropic_gateway.model_config import BackendConfig, ModelConfig, ModelPrices, validate_parameters
from anthropic_gateway.quota.policy import KeyConfig, KeyLimits
from anthropic_gateway.setting_names import ENV_PREFIX

UPSTREAM_KEY_VARS = ("OPENROUTER_API_KEY", "ANTHROPIC_GATEWAY_UPSTREAM_KEY")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        extra="forbid",
        populate_by_name=True,
        case_sensitive=False,
        env_nested_delimiter="__",
    )

    host: str = Field("127.0.0.1", description="Address to listen on.")
    port: int = Field(8082, ge=0, le=65535, description="TCP port to listen on (0 picks a free one).")
    upstream_url: str = Field(
        "https://openrouter.ai/api/v1",
        description="Base URL of the OpenAI-compatible upstream (the part before /chat/completions).",
    )
    upstream_key: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("upstream_key", *UPSTREAM_KEY_VARS),
        description="Upstream API key (OPENROUTER_API_KEY or ANTHROPIC_GATEWAY_UPSTREAM_KEY).",
    )
    backend_kind: Literal["auto", "openrouter", "openai", "openai-compatible"] = Field(
        "auto", description="Upstream quirks table; auto picks openrouter for openrouter.ai, openai for api.openai.com URLs."
    )
    reports_matched_stop: bool | None = Field(
        None, description="Default backend: it names the stop string that matched (vLLM, SGLang); unset: per kind."
    )
    stream_tool_input: bool | None = Field(
        None, description="Default backend: stream tool-call arguments as they arrive (false: buffer and repair)."
    )
    native_context_management: bool | None = Field(
        None, description="Default backend: send context_management as it is to Claude targets (not applied here)."
    )
    opus_model: str = Field("anthropic/claude-opus-4.5", description="Upstream model for claude-*opus* names.")
    sonnet_model: str = Field("anthropic/claude-sonnet-4.5", description="Upstream model for claude-*sonnet* names.")
    haiku_model: str = Field("anthropic/claude-haiku-4.5", description="Upstream model for claude-*haiku* names.")
    api_keys: SecretStr | None = Field(
        None, description="Comma-separated keys clients must present (x-api-key or Bearer). Empty: open."
    )
    passthrough_auth: bool = Field(
        False, description="Use the client's x-api-key / Bearer token as the upstream key."
    )
    trusted_network: bool = Field(
        False, description="Allow an open gateway (no api_keys) to bind a non-loopback address."
    )
    system_messages: Literal["hoist", "keep"] = Field(
        "hoist",
        description="role:system messages inside messages: hoist into the leading system message, or keep in place.",
    )
    ping_interval: float = Field(10.0, gt=0, description="Seconds of upstream silence before an SSE ping.")
    max_body_bytes: int = Field(32 * 1024 * 1024, gt=0, description="Largest accepted request body (413 above).")
    connect_timeout: float = Field(10.0, gt=0, description="Upstream connect timeout, seconds.")
    read_timeout: float = Field(600.0, gt=0, description="Longest upstream silence for a non-streamed answer, seconds.")
    stream_idle_timeout: float = Field(
        120.0, gt=0, description="Longest upstream silence in a stream (headers, or between bytes; keep-alives count), seconds."
    )
    total_timeout: float = Field(3600.0, gt=0, description="Longest an upstream call may take in all, seconds.")
    max_connections: int = Field(512, ge=1, description="Size of the pooled upstream connection pool.")
    # Client connections (connection_limits.py).
    header_timeout: float = Field(10.0, gt=0, description="Seconds a client has to send a request's headers (408 after).")
    body_timeout: float = Field(30.0, gt=0, description="Longest pause while a client sends a request body, seconds (408 after).")
    max_header_bytes: int = Field(64 * 1024, ge=1024, description="Largest request line plus headers (431 above).")
    max_client_connections: int | None = Field(
        None, ge=1, description="Open client connections at most (529 above); default half the file-descriptor limit."
    )
    half_closed_clients: Literal["cancel", "answer"] = Field(
        "cancel",
        description="A client that closes its sending side mid-request: cancel (TCP cannot tell it from a client "
        "that left, so the upstream call is cancelled) or answer (keep the request; a client that really left is "
        "noticed only when a write fails).",
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="How much the gateway logs: debug, info, warning or error."
    )
    tokenizer_preload: bool = Field(
        True,
        description="Load the tokenizer just after start-up, so the first count is fast (costs ~4 MB RSS with "
        "the compiled o200k counter, ~45 MB where it was not built and tiktoken counts); false loads it at the "
        "first request that needs it (~15 ms once, ~0.3 s with tiktoken).",
    )
    input_prices: dict[str, float] = Field(
        default_factory=dict,
        description="USD per million input tokens by upstream model id (JSON object in the environment, "
        "[input_prices] table in TOML); count_tokens then reports the estimated cost in a header.",
    )
    threads: bool = Field(True, description="Hold conversations for the SDKs' message threads (`thread` field) in the store.")
    thread_ttl: float = Field(3600.0, gt=0, description="Seconds a thread position is kept after its answer.")
    thread_max_bytes: int = Field(
        16 * 1024 * 1024, gt=0, description="Largest conversation a thread keeps; a larger one is answered, not kept."
    )
    database_url: str | None = Field(
        None,
        description="The store (ledger, batches, keys, threads, catalogue): a SQLite path or sqlite:///PATH, "
        "':memory:'; or postgresql://USER@HOST/DB, shared by several replicas; "
        "default ~/.local/share/anthropic-gateway/gateway.db.",
    )
    database_pool_size: int = Field(10, ge=1, le=1000, description="PostgreSQL store: most connections this replica opens.")
    admin_keys: SecretStr | None = Field(
        None,
        description="Comma-separated keys for the admin routes (/health/detailed, /metrics, /v1/usage, ...). "
        "Needed wherever api_keys are set; an open gateway's admin routes are open too.",
    )
    log_format: Literal["json", "console"] = Field("json", description="Access log lines on stdout: json or console.")
    access_log: bool = Field(True, description="One line per request on stdout.")
    log_bodies: bool = Field(
        False, description="Also log request and response bodies (base64 data cut, secrets redacted)."
    )
    drain_timeout: float = Field(
        30.0, ge=0, description="On SIGTERM/SIGINT, seconds in-flight requests get to finish before streams are ended."
    )
    ledger_retention_days: float = Field(90.0, gt=0, description="Days the ledger keeps a request's row.")
    health_probe_interval: float = Field(
        30.0, ge=0, description="Seconds between background probes of each backend's /models (readiness and "
        "/health/detailed); 0 turns them off.",
    )
    prices: dict[str, ModelPrices] = Field(
        default_factory=dict,
        description="USD per million tokens by upstream model id: input, output, cache_read, cache_write "
        "([prices.\"MODEL\"] tables in TOML); they win over the model catalogue's prices when the upstream "
        "reports no cost.",
    )
    catalogue_refresh_hours: float = Field(
        24.0, ge=0, description="Hours between fetches of OpenRouter backends' GET /models (the model catalogue: "
        "prices, context and output limits, capabilities); 0: never fetch, use the stored copy."
    )
    # The response cache (cache/): exact-match answers, in memory.
    response_cache: bool = Field(False, description="Serve repeated identical requests from the response cache "
                                 "(per alias: [models.X] response_cache; per request: the x-gateway-cache header).")
    response_cache_ttl: float = Field(3600.0, gt=0, description="Seconds a cached answer is served.")
    response_cache_max_bytes: int = Field(64 * 1024 * 1024, ge=4096, description="Bytes the cached answers may hold "
                                          "(least recently used go first).")
    response_cache_shared: bool = Field(False, description="One cache for all callers instead of one per key label.")
    response_cache_nondeterministic: bool = Field(False, description="Also cache requests without temperature 0 or "
                                                  "a seed.")
    # Shared state for several replicas (shared/): Redis.
    redis_url: str | None = Field(None, description=(
        "redis://[:PASSWORD@]HOST:PORT/DB (rediss:// for TLS): the response cache, rate-limit and budget "
        "counters, cache-miss coalescing and remembered upstream refusals live in Redis, shared by every "
        "replica; unset: in this process's memory."))
    redis_prefix: str = Field("anthropic-gateway:", min_length=1, max_length=200,
                              description="Prefix of every Redis key the gateway writes (one per deployment).")
    redis_pool_size: int = Field(64, ge=1, le=10_000, description="Most Redis connections per replica.")
    redis_timeout: float = Field(1.0, gt=0, le=60, description="Seconds a Redis connection or command may take "
                                 "before Redis counts as down (then retried with back-off).")
    batch_concurrency: int = Field(8, ge=1, le=1024, description="Message Batches: concurrent requests per backend.")
    batch_max_body_bytes: int = Field(256 * 1024 * 1024, gt=0, description="Largest batch creation body (413 above).")
    batch_max_requests: int = Field(100_000, ge=1, description="Most requests in one batch.")
    batch_expiry_hours: float = Field(24.0, gt=0, description="Hours after creation when a batch's unfinished requests expire.")
    batch_retention_days: float = Field(29.0, gt=0, description="Days a batch and its results are kept after creation.")
    batch_cleanup_interval: float = Field(60.0, gt=0, description="Seconds between batch expiry and retention sweeps.")
    batch_lease_seconds: float = Field(
        30.0, gt=0, le=3600,
        description="PostgreSQL store: seconds a replica's claim on a batch request lasts unless renewed; a replica that "
        "dies leaves its requests to the others after this.",
    )
    batch_rate_limit_retries: int = Field(8, ge=0, le=100, description="Times a batch request rate-limited (429/529) is retried after back-off.")

    @field_validator("default_params")
    @classmethod
    def _params(cls, v: dict[str, Any]) -> dict[str, Any]:
        return validate_parameters(v)

    @field_validator("upstream_url")
    @classmethod
    def _check_url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return v.rstrip("/")

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return v

    @field_validator("log_level", "backend_kind", "system_messages", "log_format", mode="before")
    @classmethod
    def _lower(cls, v: Any) -> Any:
        return v.lower() if isinstance(v, str) else v

    keys: dict[str, KeyConfig] = Field(
        default_factory=dict,
        description="Labelled gateway keys ([keys.LABEL]: key_env, models, rate limits, budgets); see README.",
    )
    backends: dict[str, BackendConfig] = Field(
        default_factory=dict, description="Named upstreams besides the default one (see README)."
    )
    models: dict[str, ModelConfig] = Field(
        default_factory=dict, description="Model aliases (exact names or glob patterns) → backend and model."
    )
    default_backend: str = Field(
        "default", description="Backend for ids with '/' and the claude tiers ('default' is upstream_url)."
    )
    passthrough_models: bool = Field(
        False, description="Send unknown model names (no alias, no '/') to the default backend instead of a 404."
    )
    default_params: dict[str, Any] = Field(
        default_factory=dict, description="Upstream parameters applied to every request unless set by the client."
    )
    retries: int = Field(1, ge=0, le=5, description="Retries per backend on 429/5xx/timeouts before any byte is sent.")
    retry_max_wait: float = Field(10.0, ge=0, description="Cap on the total seconds spent waiting between retries.")
    web_search_url: str | None = Field(None, description=(
        "SearXNG-compatible JSON search URL (GET ?q=…&format=json) the gateway runs Anthropic's web search "
        "tool on for backends other than OpenRouter (whose web plugin runs it)."))
    negative_cache_ttl: float = Field(60.0, ge=0, le=3600, description=(
        "Seconds an upstream 4xx (not 401/402/403/408/409/429) is remembered: an identical translated "
        "request in that window gets the same error without an upstream call; 0 turns it off."))
    first_byte_timeout: float | None = Field(None, gt=0, description="Seconds until the upstream's response headers.")

    _backend_keys: dict[str, SecretStr | None] = PrivateAttr(default_factory=dict)
    _gateway_keys: dict[str, SecretStr | None] = PrivateAttr(default_factory=dict)
    _warnings: list[str] = PrivateAttr(default_factory=list)

    @model_validator(mode="after")
    def _strip_chat_paths(self) -> Settings:
        """A URL copied with its /chat/completions (claude-code-router's form) would 404 on every
        request once the gateway appends that path: cut it, and say so at start-up."""
        url, cut = strip_chat_path(self.upstream_url)
        if cut:
            self.upstream_url = url
            self._warnings.append(f"upstream_url ends with {cut}: using {url} (the gateway appends {cut} "
                                  "itself; set the URL without it)")  # fmt: skip
        for name, backend in self.backends.items():
            url, cut = strip_chat_path(backend.url)
            if cut:
                self.backends[name] = backend.model_copy(update={"url": url})
                self._warnings.append(f"backends.{name}.url ends with {cut}: using {url} (the gateway appends "
                                      f"{cut} itself; set the URL without it)")  # fmt: skip
        return self

    def warnings(self) -> list[str]:
        """Settings start-up rewrote (it logs each of these lines as a warning)."""
        return list(self._warnings)

    @model_validator(mode="after")
    def _cross_references(self) -> Settings:
        names = {"default", *self.backends}
        if self.default_backend not in names:
            raise ValueError(f"default_backend: '{self.default_backend}' is not a backend; define [backends.{self.default_backend}]")
        for alias, model in self.models.items():
            if model.backend is not None and model.backend not in names:
                raise ValueError(
                    f"models.{alias}.backend: '{model.backend}' is not a backend; define [backends.{model.backend}] "
                    f"or use one of {sorted(names)}"
                )
            for fb in model.fallbacks:
                if fb == alias or not self._routable(fb):
                    raise ValueError(
                        f"models.{alias}.fallbacks: '{fb}' is not another configured model alias or a provider/model id"
                    )
        return self

    def _routable(self, name: str) -> bool:
        """Whether the router would serve `name` (the same rules as routing.Router, without it)."""
        lowered = name.lower()
        return (
            name in self.models or "/" in name or lowered.startswith("claude") or self.passthrough_models
            or any(fnmatch.fnmatchcase(lowered, a.lower()) for a in self.models if any(c in a for c in "*?["))
        )  # fmt: skip

    def backend_key(self, name: str) -> SecretStr | None:
        if name == "default":
            return self.upstream_key
        return self._backend_keys.get(name)

    def client_keys(self) -> list[str]:
        return _split_keys(self.api_keys)

    def gateway_keys(self) -> list[tuple[str, str, KeyLimits]]:
        """(label, key, limits) of every [keys.LABEL] whose key_env variable is set."""
        out = []
        for label, cfg in self.keys.items():
            value = self._gateway_keys.get(label)
            if value is not None:
                limits = KeyLimits.model_validate(cfg.model_dump(exclude={"key_env"}))
                out.append((label, value.get_secret_value(), limits))
        return out

    def admin_key_list(self) -> list[str]:
        return _split_keys(self.admin_keys)

    def resolved_backend_kind(self) -> str:
        return self.backend_kind if self.backend_kind != "auto" else kind_for_url(self.upstream_url)

    def is_loopback_bind(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        environ, toml_path = _SOURCES.get()
        sources: list[PydanticBaseSettingsSource] = [init_settings]
        if environ is None:
            sources += [env_settings, _GatewayDotEnv(settings_cls, env_file=".env")]
        else:
            sources.append(_MappingEnvSource(settings_cls, environ))
        if toml_path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_path))
        return tuple(sources)


def _split_keys(value: SecretStr | None) -> list[str]:
    if value is None:
        return []
    return [k.strip() for k in value.get_secret_value().split(",") if k.strip()]


_SOURCES: contextvars.ContextVar[tuple[Mapping[str, str] | None, Path | None]] = contextvars.ContextVar(
    "_SOURCES", default=(None, None)
)


class _MappingEnvSource(EnvSettingsSource):
    """The environment source, reading an injected mapping instead of os.environ."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return {k.lower(): v for k, v in self._environ.items()}


def _valid_env_names() -> set[str]:
    return setting_names.env_names(Settings)


class _GatewayDotEnv(DotEnvSettingsSource):
    """`.env` is shared with other tools: only the gateway's own settings are read from it here (a
    backend's key_env is read as a key by load_settings; an unknown ANTHROPIC_GATEWAY_* name is
    reported by load_settings, naming .env, instead of as an extra field of "the config file")."""

    def _load_env_vars(self) -> Mapping[str, str | None]:
        valid = _valid_env_names()
        return {k: v for k, v in super()._load_env_vars().items() if setting_names.is_valid_env_name(k, valid)}


def _dotenv_values() -> dict[str, str]:
    path = Path(".env")
    if not path.is_file():
        return {}
    values = DotEnvSettingsSource(Settings, env_file=path)._load_env_vars()
    return {k: v for k, v in values.items() if v is not None}


class SettingsError(Exception):
    """Start-up configuration error; its message is one line naming the setting and the fix."""


@dataclass(frozen=True)
class _Origins:
    """Where each setting could have come from, to name the source in an error line."""

    environ: Mapping[str, str]  # upper-cased names
    dotenv: Mapping[str, str]
    dotenv_path: str
    config_path: Path | None
    flags: frozenset[str]

    def of(self, loc: tuple[int | str, ...]) -> str:
        top = str(loc[0])
        nested = ENV_PREFIX + "__".join(str(p) for p in loc).upper()
        whole = UPSTREAM_KEY_VARS if top == "upstream_key" else (ENV_PREFIX + top.upper(),)
        if top in self.flags:
            return f"the --{top.replace('_', '-')} flag"
        for values, name in ((self.environ, "the environment"), (self.dotenv, self.dotenv_path)):
            if nested in values:
                return f"{name} ({nested})"
            found = next((w for w in whole if w in values), None)
            if found is not None:
                return f"{name} ({found})"
        return f"the config file {self.config_path}" if self.config_path is not None else "the defaults"


def load_settings(
    environ: Mapping[str, str] | None = None,
    config_path: Path | None = None,
    **overrides: Any,
) -> Settings:
    if config_path is not None and not config_path.is_file():
        raise SettingsError(f"config file {config_path} not found: pass an existing TOML file to --config")
    dotenv = {k.upper(): v for k, v in _dotenv_values().items()} if environ is None else {}
    given = {k.upper(): v for k, v in (os.environ if environ is None else environ).items()}
    flags = {k: v for k, v in overrides.items() if v is not None}
    origins = _Origins(given, dotenv, str(Path(".env").resolve()), config_path, frozenset(flags))
    token = _SOURCES.set((environ, config_path))
    try:
        settings = Settings(**flags)
    except ValidationError as err:
        raise SettingsError(_describe(err, origins)) from None
    except tomllib.TOMLDecodeError as err:
        raise SettingsError(f"config file {config_path} is not valid TOML ({err}); fix its syntax") from None
    except PydanticSettingsError as err:  # a table in the environment that is not valid JSON
        m = re.search(r'field "([^"]+)"', str(err))
        name = ENV_PREFIX + m.group(1).upper() if m else "a table setting"
        raise SettingsError(
            f"invalid setting {name}: not valid JSON; environment tables are JSON objects, e.g. '{{\"key\": 1}}'"
        ) from None
    finally:
        _SOURCES.reset(token)
    key_envs = {b.key_env.upper() for b in settings.backends.values() if b.key_env}
    key_envs |= {k.key_env.upper() for k in settings.keys.values()}
    unknown = setting_names.first_unknown(
        [("the environment", given), (origins.dotenv_path, dotenv)], _valid_env_names(), exempt=key_envs
    )
    if unknown is not None:
        raise SettingsError(unknown)
    env = {**dotenv, **given}  # a backend's key may live in .env too
    for name, backend in settings.backends.items():
        value = env.get(backend.key_env.upper()) if backend.key_env else None
        settings._backend_keys[name] = SecretStr(value) if value else None
    for label, key_cfg in settings.keys.items():
        value = env.get(key_cfg.key_env.upper())
        settings._gateway_keys[label] = SecretStr(value) if value else None
    return settings


_SECRET_NAMES = ("key", "token", "secret", "password")
_TABLE_MODELS: dict[str, type[BaseModel]] = {"backends": BackendConfig, "models": ModelConfig}


def _describe(err: ValidationError, origins: _Origins) -> str:
    first = err.errors()[0]
    loc, msg = first["loc"], first["msg"].removeprefix("Value error, ")
    if not loc:  # a cross-reference check: its message names the key already
        return f"invalid configuration: {msg}"
    path = ".".join(str(p) for p in loc)
    last = str(loc[-1])
    if first["type"] == "extra_forbidden":
        table = _TABLE_MODELS.get(str(loc[0])) if len(loc) == 3 else None
        fields = table.model_fields if table is not None else Settings.model_fields if len(loc) == 1 else {}
        near = setting_names.closest(last, list(fields))
        if near is None and any(s in last.lower() for s in _SECRET_NAMES):
            return (f"{path}: keys never go in the config file; put the key in an environment variable and "
                    "name that variable with key_env")  # fmt: skip
        hint = f"did you mean '{near}'?" if near else "no setting has a similar name"
        return f"unknown setting '{path}' in {origins.of(loc)}: {hint} (rename or remove it; see README.md, Configuration)"
    shown = _shown(loc, first.get("input"))
    if len(loc) > 1 and loc[0] in ("backends", "models", "default_params"):
        return f"invalid setting {path} in {origins.of(loc)}: {msg}{shown}"
    name = str(loc[0])
    field = Settings.model_fields.get(name)
    env = UPSTREAM_KEY_VARS[1] if name == "upstream_key" else ENV_PREFIX + name.upper()
    what = f" ({name}: {field.description.rstrip('.')})" if field is not None and field.description else ""
    return f"invalid setting {env} in {origins.of(loc)}: {msg}{shown}{what}"


def _shown(loc: tuple[int | str, ...], value: Any) -> str:
    """The offending value for an error line, unless it may hold a secret (keys, headers, tables)."""
    if any(str(p) in ("api_keys", "admin_keys", "upstream_key", "headers") for p in loc) or isinstance(value, dict | list):
        return f", got a {type(value).__name__}"
    return f", got {value!r}"

