"""Configuration of backends (named upstreams) and models (aliases clients may send).

    [backends.local]                      # ANTHROPIC_GATEWAY_BACKENDS='{"local": {...}}' or
    url = "http://127.0.0.1:11434/v1"     # ANTHROPIC_GATEWAY_BACKENDS__LOCAL__URL=...
    kind = "openai-compatible"
    key_env = "LOCAL_KEY"

    [models."claude-*haiku*"]             # exact names or glob patterns
    backend = "local"
    model = "qwen2.5-coder:7b"
    max_output_tokens = 8192
    context_window = 32768
    capabilities = ["tools"]
    fallbacks = ["claude-sonnet-4-5"]

Validated once at start-up (cross-references included); an error names the key and the fix.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta
from pydantic import BaseModel, ConfigDict, Field, field_validator

from anthropic_gateway.backends import PromptCache, kind_for_url
from anthropic_gateway.schemas import Penalty, ProviderPreferences, ResponseFormat, UnitInterval

Capability = Literal["tools", "vision", "reasoning", "pdf"]
ALL_CAPABILITIES: frozenset[str] = frozenset({"tools", "vision", "reasoning", "pdf"})
SchemaFamily = Literal["auto", "none", "gemini"]

class UpstreamParams(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    """Upstream request fields that `default_params` and a model's `defaults` / `force` may set,
    with the ranges the upstreams accept. Validated (and coerced: environment values are strings)
    once at start-up, so a typo or an out-of-range value stops start-up instead of every request."""

    temperature: Annotated[float, Meta(ge=0.0, le=2.0)] | None = None
    top_p: UnitInterval | None = None
    top_k: Annotated[int, Meta(ge=0)] | None = None
    min_p: UnitInterval | None = None
    top_a: UnitInterval | None = None
    repetition_penalty: Annotated[float, Meta(gt=0.0, le=2.0)] | None = None
    frequency_penalty: Penalty | None = None
    presence_penalty: Penalty | None = None
    seed: int | None = None
    user: str | None = None
    logit_bias: dict[str, Annotated[float, Meta(ge=-100.0, le=100.0)]] | None = None
    response_format: ResponseFormat | None = None
    provider: ProviderPreferences | None = None
    models: list[str] | None = None
    transforms: list[str] | None = None
    plugins: list[dict[str, Any]] | None = None
    reasoning: dict[str, Any] | None = None
    reasoning_effort: Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"] | None = None
    max_tokens: Annotated[int, Meta(ge=1)] | None = None
    max_completion_tokens: Annotated[int, Meta(ge=1)] | None = None
    stop: str | list[str] | None = None
    parallel_tool_calls: bool | None = None
    verbosity: Literal["low", "medium", "high", "xhigh", "max"] | None = None
    service_tier: str | None = None
    session_id: str | None = None
    cache_control: dict[str, Any] | None = None


PARAMETER_NAMES: frozenset[str] = frozenset(f.name for f in msgspec.structs.fields(UpstreamParams))


def validate_parameters(value: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(value) - PARAMETER_NAMES)
    if unknown:
        raise ValueError(f"unknown parameter(s) {unknown}; allowed: {sorted(PARAMETER_NAMES)}")
    try:
        params = msgspec.convert(value, UpstreamParams, strict=False)
    except msgspec.ValidationError as err:
        raise ValueError(str(err).replace(" - at `$.", " at `")) from None
    out: dict[str, Any] = msgspec.to_builtins(params)
    return out


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BackendConfig(_Strict):
    url: str = Field(description="Base URL, the part before /chat/completions.")
    kind: Literal["auto", "openrouter", "openai", "openai-compatible"] = "auto"
    key_env: str | None = Field(None, description="Name of the environment variable holding the key.")
    headers: dict[str, str] = Field(default_factory=dict, description="Extra request headers.")
    connect_timeout: float | None = Field(None, gt=0)
    first_byte_timeout: float | None = Field(None, gt=0, description="Seconds until the response headers.")
    idle_timeout: float | None = Field(None, gt=0, description="Longest silence between chunks.")
    total_timeout: float | None = Field(None, gt=0)
    max_concurrency: int | None = Field(None, ge=1, description="Concurrent upstream calls at most.")
    tool_id_max_len: int | None = Field(None, ge=1, description="Override the kind's tool-call id limit.")
    reports_matched_stop: bool | None = Field(
        None, description="Override the kind: the backend names the stop string that matched (vLLM, SGLang)."
    )
    stream_tool_input: bool | None = Field(
        None, description="Override the kind: stream tool-call arguments as they arrive (false: buffer and repair)."
    )
    native_context_management: bool | None = Field(
        None, description="Send context_management as it is to Claude targets instead of applying it in the gateway."
    )
    system_messages: Literal["hoist", "keep"] | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return v.rstrip("/")

    def resolved_kind(self) -> str:
        return self.kind if self.kind != "auto" else kind_for_url(self.url)


class ModelPrices(_Strict):
    """A model's prices in USD per million tokens (``[prices."openai/gpt-4o"]``). Cache reads and
    writes without a price of their own cost what input does."""

    input: float = Field(ge=0)
    output: float = Field(ge=0)
    cache_read: float | None = Field(None, ge=0)
    cache_write: float | None = Field(None, ge=0)


class ModelConfig(_Strict):
    backend: str | None = Field(None, description="Backend name; the default backend when absent.")
    model: str | None = Field(None, description="Upstream model id; the alias itself when absent.")
    display_name: str | None = None
    max_output_tokens: int | None = Field(None, ge=1)
    context_window: int | None = Field(None, ge=1)
    capabilities: list[Capability] | None = Field(None, description="What the model can do; all when absent.")
    schema_family: SchemaFamily = "auto"
    prompt_cache: PromptCache = Field(
        "auto", description="cache_control breakpoints: ttl (kept whole), breakpoints (without ttl), off; "
        "auto: by model family (Claude: ttl; Gemini, Qwen: breakpoints; others off)."
    )
    response_cache: bool | None = Field(None, description="Response cache for this alias; the global setting when absent.")
    defaults: dict[str, Any] = Field(default_factory=dict, description="Parameters used unless the client sets them.")
    force: dict[str, Any] = Field(default_factory=dict, description="Parameters that override the client's.")
    fallbacks: list[str] = Field(default_factory=list, description="Aliases tried in order on 429/5xx/timeouts.")

    @field_validator("defaults", "force")
    @classmethod
    def _parameters(cls, v: dict[str, Any]) -> dict[str, Any]:
        return validate_parameters(v)

    def capability_set(self) -> frozenset[str]:
        return ALL_CAPABILITIES if self.capabilities is None else frozenset(self.capabilities)
