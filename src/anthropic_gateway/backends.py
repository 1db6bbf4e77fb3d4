"""Backend kinds: what each kind of upstream accepts, as data.

A new backend is a new row here, not a branch in the translator. The translator reads these fields;
nothing else in the code tests a backend's name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

ReasoningRequest = Literal["openrouter", "openai"]
ReasoningHistory = Literal["reasoning_details", "reasoning_content", "reasoning"] | None


@dataclass(frozen=True, slots=True)
class BackendKind:
    name: str
    # OpenAI-style servers only report streamed usage when asked; OpenRouter always does.
    include_usage_option: bool
    max_tokens_field: Literal["max_tokens", "max_completion_tokens"]
    supports_top_k: bool
    # How many stop strings the backend takes; the gateway scans for all of them locally anyway.
    max_stop_sequences: int | None
    # Tool-call ids sent upstream are rewritten (deterministically) past this length.
    tool_id_max_len: int | None
    # Whether the kind can carry Anthropic cache_control breakpoints at all (on content parts and
    # tools); which targets get them is the model family's prompt-cache style (prompt_cache_style).
    cache_control: bool
    # How a thinking config is expressed: OpenRouter's `reasoning` object or OpenAI's `reasoning_effort`.
    reasoning_request: ReasoningRequest
    # Field that carries earlier reasoning back on assistant messages (None: dropped).
    reasoning_history: ReasoningHistory
    # Whether consecutive user messages are merged (strict chat templates need alternation).
    merge_same_role: bool
    # Whether the request may carry OpenRouter-only top-level fields (cache_control, reasoning, ...).
    openrouter_extensions: bool
    # Client-supplied extra parameters this kind accepts; others are dropped (debug log).
    extra_params: frozenset[str]
    # Whether calls need an API key: hosted APIs do; local servers (Ollama, vLLM, llama.cpp) take none,
    # and a backend without a key sends no Authorization header.
    requires_key: bool = True
    # Whether the backend says which stop string ended the answer (vLLM: `stop_reason`, SGLang:
    # `matched_stop`). If not, no `stop` is sent upstream: the gateway matches the client's sequences
    # itself, ends the answer there and closes the upstream call.
    reports_matched_stop: bool = False
    # Whether tool-call argument fragments are forwarded as they arrive (as Anthropic streams them), or
    # buffered per call so malformed JSON can be repaired first (backends whose tool JSON breaks).
    stream_tool_input: bool = True
    # Whether `context_management` is sent upstream as it is, for Claude targets, instead of being
    # applied by the gateway (no documented OpenAI-style endpoint takes it, so off for every kind).
    native_context_management: bool = False
    # Models that take a reasoning setting (regex on the upstream id); None: all. OpenAI rejects
    # reasoning_effort for non-reasoning models such as gpt-4o, and Claude Code always asks for thinking.
    reasoning_models: str | None = None

    def takes(self, param: str) -> bool:
        """Whether a configured default / forced upstream parameter may be sent to this kind."""
        if param in COMMON_PARAMS or param in self.extra_params:
            return True
        if param == "top_k":
            return self.supports_top_k
        return self.openrouter_extensions and param in OPENROUTER_ONLY_PARAMS


def kind_for_url(url: str) -> str:
    """The kind `auto` stands for: the one place an upstream's URL chooses its quirks."""
    if "openrouter.ai" in url:
        return "openrouter"
    return "openai" if "api.openai.com" in url else "openai-compatible"


CHAT_PATH = "/chat/completions"


def strip_chat_path(url: str) -> tuple[str, str | None]:
    """(the base URL, the path cut from it): a URL given with its /chat/completions loses it."""
    base = url.rstrip("/")
    if base.lower().endswith(CHAT_PATH):
        return base[: -len(CHAT_PATH)].rstrip("/"), CHAT_PATH
    return url, None


# --- provider prompt caching ------------------------------------------------------------------

# How a target takes Anthropic's cache_control breakpoints: "ttl" keeps them whole (Anthropic: 5 m or
# 1 h), "breakpoints" keeps them without `ttl`, "off" strips them (the target caches automatically or
# would reject the field). "auto" picks from CACHE_FAMILIES on backends whose kind carries them.
PromptCache = Literal["auto", "ttl", "breakpoints", "off"]
CacheStyle = Literal["ttl", "breakpoints", "off"]
MAX_BREAKPOINTS = 4  # Anthropic rejects a request with more

# Upstream model ids (regex, case-insensitive) that honour explicit breakpoints through OpenRouter
# (openrouter-api-and-mapping.md §7); the rest (OpenAI, DeepSeek, Grok, ...) cache automatically.
CACHE_FAMILIES: tuple[tuple[str, CacheStyle], ...] = (
    (r"^anthropic/|claude", "ttl"),
    (r"^google/|gemini", "breakpoints"),  # only the last breakpoint is used; no ttl documented
    (r"^qwen/|qwen", "breakpoints"),
)
_CACHE_FAMILY_RES = tuple((re.compile(p, re.I), style) for p, style in CACHE_FAMILIES)


def prompt_cache_style(kind: BackendKind, upstream_model: str, configured: PromptCache = "auto") -> CacheStyle:
    """Whether (and how) this target gets cache_control: a model's configured `prompt_cache` wins;
    else the family table, on backend kinds that carry the field."""
    if configured != "auto":
        return configured
    if not kind.cache_control:
        return "off"
    for pattern, style in _CACHE_FAMILY_RES:
        if pattern.search(upstream_model):
            return style
    return "off"


_OPENAI_PARAMS = frozenset({"frequency_penalty", "presence_penalty", "seed", "user", "logit_bias", "response_format"})
_ALL_PARAMS = _OPENAI_PARAMS | {"provider", "models", "transforms", "min_p", "top_a", "repetition_penalty", "reasoning"}
# Parameters every backend kind takes (from configured defaults / force); the rest are per kind.
COMMON_PARAMS = _OPENAI_PARAMS | {"temperature", "top_p", "max_tokens", "max_completion_tokens", "stop",
                                  "parallel_tool_calls", "reasoning_effort", "service_tier"}  # fmt: skip
OPENROUTER_ONLY_PARAMS = frozenset({"plugins", "session_id", "cache_control", "verbosity"})


KINDS: dict[str, BackendKind] = {
    "openrouter": BackendKind(
        name="openrouter",
        include_usage_option=False,
        max_tokens_field="max_tokens",
        supports_top_k=True,
        max_stop_sequences=4,
        tool_id_max_len=None,
        cache_control=True,
        reasoning_request="openrouter",
        reasoning_history="reasoning_details",
        merge_same_role=False,
        openrouter_extensions=True,
        extra_params=_ALL_PARAMS,
    ),
    "openai": BackendKind(
        name="openai",
        include_usage_option=True,
        max_tokens_field="max_completion_tokens",
        supports_top_k=False,
        max_stop_sequences=4,
        tool_id_max_len=40,
        cache_control=False,
        reasoning_request="openai",
        reasoning_history=None,
        merge_same_role=False,
        openrouter_extensions=False,
        extra_params=_OPENAI_PARAMS,
        reasoning_models=r"^(?:openai/)?(?:o\d|gpt-5|gpt-oss)",
    ),
    "openai-compatible": BackendKind(
        name="openai-compatible",
        include_usage_option=True,
        max_tokens_field="max_tokens",
        supports_top_k=True,
        max_stop_sequences=None,
        tool_id_max_len=40,
        cache_control=False,
        reasoning_request="openai",
        reasoning_history="reasoning_content",
        merge_same_role=True,
        openrouter_extensions=False,
        # vLLM and llama.cpp servers take these sampling extensions; unknown ones are ignored there.
        extra_params=_OPENAI_PARAMS | {"min_p", "repetition_penalty"},
        requires_key=False,
        # Local servers' tool-call parsers (llama.cpp, Ollama, vLLM templates) are known to emit broken
        # JSON: their calls are validated and repaired before the client sees them.
        stream_tool_input=False,
    ),
}
