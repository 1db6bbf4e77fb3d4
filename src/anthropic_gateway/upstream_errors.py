"""Upstream failures → gateway errors: the one boundary where OpenAI/OpenRouter errors become Anthropic
ones (status, type and headers per the mapping table in openrouter-api-and-mapping.md §8.9).

Context-length overflows get the exact phrases Claude Code parses to shrink max_tokens or compact:
"prompt is too long: N tokens > M maximum" and
"input length and `max_tokens` exceed context limit: A + B > C".
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any

import orjson

from anthropic_gateway.errors import (
    APIError,
    AuthenticationError,
    BillingError,
    GatewayError,
    GatewayTimeoutError,
    InvalidRequestError,
    NotFoundError,
    OverloadedError,
    PermissionDeniedError,
    RateLimitError,
    RequestTooLargeError,
)

NO_RETRY = {"x-should-retry": "false"}


@dataclass(frozen=True, slots=True)
class CallInfo:
    """What the error mapping may need to know about the request that failed."""

    input_estimate: int = 0
    max_tokens: int = 0
    context_window: int | None = None
    client_key_used: bool = False
    key_sent: bool = True  # False: a backend that takes no key, called without one
    key_hint: str = "OPENROUTER_API_KEY / ANTHROPIC_GATEWAY_UPSTREAM_KEY"  # where this backend's key is set


def _message_of(body: bytes) -> tuple[str, dict[str, Any]]:
    """(human message, error object) from any of the error bodies OpenAI-compatible servers send."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        text = body.decode("utf-8", "replace").strip()
        return (text[:2000] or "no error details"), {}
    err: Any = data.get("error", data) if isinstance(data, dict) else data
    if isinstance(err, str):
        return err, {}
    if not isinstance(err, dict):
        return str(err)[:2000], {}
    message = err.get("message") or err.get("detail") or (data.get("detail") if isinstance(data, dict) else None)
    if not isinstance(message, str):
        message = orjson.dumps(message or err).decode()
    meta = _dict(err.get("metadata"))
    raw = meta.get("raw")
    if isinstance(raw, str | dict) and message in ("Provider returned error", ""):
        # OpenRouter hides the provider's real message in metadata.raw.
        inner = raw if isinstance(raw, str) else orjson.dumps(raw).decode()
        message = f"{message}: {inner[:1000]}" if message else inner[:1000]
    reasons = meta.get("reasons")
    if isinstance(reasons, list) and reasons:
        message = f"{message} (flagged: {', '.join(str(r) for r in reasons)})"
    if meta.get("provider_name"):
        message = f"{message} (provider: {meta['provider_name']})"
    return message, err


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _error_type(err: dict[str, Any]) -> str:
    meta = _dict(err.get("metadata"))
    for value in (meta.get("error_type"), err.get("error_type"), err.get("type"), err.get("code")):
        if isinstance(value, str):
            return value
    return ""


# --- context length ----------------------------------------------------------------------------

_CONTEXT_HINTS = re.compile(
    r"context[ _-]?(length|window|size|limit)|prompt is too long|too many tokens|maximum context|"
    r"input length exceeds|exceeds the available context",
    re.I,
)
_LIMIT_RES = [
    re.compile(r"maximum context length is (\d+)", re.I),
    re.compile(r"context size \((\d+) tokens\)", re.I),
    re.compile(r"context (?:length|window|limit|size)(?: of| is|:)? (\d+)", re.I),
    re.compile(r"> (\d+) maximum", re.I),
]
_INPUT_RES = [
    re.compile(r"(\d+) (?:tokens )?of text input", re.I),
    re.compile(r"request \((\d+) tokens\)", re.I),
    re.compile(r"(\d+) (?:tokens )?in the messages", re.I),
    re.compile(r"your request has (\d+) input tokens", re.I),
    re.compile(r"messages resulted in (\d+) tokens", re.I),
    re.compile(r"prompt (?:contains|has|is) (?:at least )?(\d+) tokens", re.I),
    re.compile(r"prompt is too long: (\d+)", re.I),
]
_OUTPUT_RES = [
    re.compile(r"(\d+) (?:tokens )?in the (?:output|completion)", re.I),
    re.compile(r"max_(?:completion_)?tokens'? (?:or '?max_completion_tokens'? )?is too large: (\d+)", re.I),
]


def _first_int(patterns: list[re.Pattern[str]], text: str) -> int | None:
    text = re.sub(r"\d{13,}", "", text[:4096])  # bounded work on text an upstream may echo from the client
    for pattern in patterns:
        m = pattern.search(text)
        if m:
            return int(m.group(1))
    return None


def is_context_overflow(message: str, error_type: str) -> bool:
    return error_type == "context_length_exceeded" or bool(_CONTEXT_HINTS.search(message[:4096]))


def _int_field(err: dict[str, Any], *names: str) -> int | None:
    for name in names:
        value = err.get(name)
        if isinstance(value, int) and value > 0:
            return value
    return None


def context_overflow_error(message: str, info: CallInfo, err: dict[str, Any] | None = None) -> InvalidRequestError:
    # llama.cpp's server puts the numbers in fields rather than in the text.
    fields = err or {}
    limit = _first_int(_LIMIT_RES, message) or _int_field(fields, "n_ctx") or info.context_window
    prompt = _first_int(_INPUT_RES, message) or _int_field(fields, "n_prompt_tokens") or info.input_estimate or None
    output = _first_int(_OUTPUT_RES, message) or info.max_tokens or None
    if limit and prompt and prompt >= limit:
        return InvalidRequestError(f"prompt is too long: {prompt} tokens > {limit} maximum")
    if limit and prompt and output:
        return InvalidRequestError(
            f"input length and `max_tokens` exceed context limit: {prompt} + {output} > {limit}"
        )
    return InvalidRequestError(f"prompt is too long: {message}")


# --- status mapping ----------------------------------------------------------------------------


def _retry_after(headers: Any) -> dict[str, str]:
    value = headers.get("retry-after") if headers is not None else None
    return {"retry-after": value} if value else {}


def from_response(status: int, body: bytes, headers: Any, info: CallInfo) -> GatewayError:
    """An upstream non-2xx answer (or a 200 carrying an error object) → a gateway error."""
    message, err = _message_of(body)
    return from_error(status, message, err, headers, info)


def from_error(status: int, message: str, err: dict[str, Any], headers: Any, info: CallInfo) -> GatewayError:
    etype = _error_type(err)
    if status in (400, 413, 422) and is_context_overflow(message, etype):
        return context_overflow_error(message, info, err)
    text = f"Upstream error: {message}"
    if status == 401:
        if info.client_key_used:
            return AuthenticationError(text)
        if not info.key_sent:
            return APIError(f"The upstream asks for an API key and the gateway sent none ({message}); "
                            f"set {info.key_hint}", headers=NO_RETRY)  # fmt: skip
        return APIError(f"The upstream rejected the gateway's API key ({message}); check {info.key_hint}",
                        headers=NO_RETRY)  # fmt: skip
    if status == 402:
        return BillingError(text, headers=NO_RETRY)
    if status == 403:
        return PermissionDeniedError(text)
    if status == 404:
        return NotFoundError(text)
    if status == 408:
        return GatewayTimeoutError(text)
    if status == 413:
        return RequestTooLargeError(text)
    if status == 429:
        return RateLimitError(text, headers=_retry_after(headers))
    if status == 503:
        if etype == "provider_overloaded" or "overload" in message.lower():
            return OverloadedError(text, headers=_retry_after(headers))
        availability = _dict(err.get("availability"))
        extra = NO_RETRY if availability.get("retryable") is False else _retry_after(headers)
        return APIError(text, status=503, headers=extra)
    if status in (504, 524):
        return GatewayTimeoutError(text)
    if status == 529:
        return OverloadedError(text, headers=_retry_after(headers))
    if status == 502:
        return APIError(text, status=502)
    if 400 <= status < 500:
        return InvalidRequestError(text)
    return APIError(text)


_STREAM_TYPES: dict[str, type[GatewayError]] = {
    "rate_limit_exceeded": RateLimitError,
    "provider_overloaded": OverloadedError,
    "timeout": GatewayTimeoutError,
    "context_length_exceeded": InvalidRequestError,
    "invalid_request": InvalidRequestError,
    "authentication": AuthenticationError,
    "permission_denied": PermissionDeniedError,
    "payment_required": BillingError,
    "not_found": NotFoundError,
}
_STATUS_TYPES: dict[int, type[GatewayError]] = {
    400: InvalidRequestError, 401: AuthenticationError, 402: BillingError, 403: PermissionDeniedError,
    404: NotFoundError, 408: GatewayTimeoutError, 429: RateLimitError, 503: OverloadedError,
    504: GatewayTimeoutError, 529: OverloadedError,
}  # fmt: skip


def from_stream_error(err: Any) -> GatewayError:
    """An error object inside an upstream stream (after our 200 was sent) → the error event's type."""
    if not isinstance(err, dict):
        return APIError(f"Upstream error: {err}")
    message, _ = _message_of(orjson.dumps({"error": err}))
    cls = _STREAM_TYPES.get(_error_type(err))
    code = err.get("code")
    if cls is None and isinstance(code, int):
        cls = _STATUS_TYPES.get(code)
    return (cls or APIError)(f"Upstream error: {message}")


# A key this long is replaced wherever it stands. A shorter one (a local backend's placeholder: "x",
# "EMPTY", "ollama", "sk-1234") only where it stands alone, with no letter, digit or underscore on
# either side: a key "x" must not turn every "max_tokens" of a log line into "ma[redacted]_tokens",
# and a short key glued to a longer word is not the key.
WHOLE_KEY = 24


def redact(text: str, secret: str | None) -> str:
    """``text`` with ``secret`` replaced by "[redacted]" (see WHOLE_KEY)."""
    if not secret or secret not in text:
        return text
    if len(secret) >= WHOLE_KEY:
        return text.replace(secret, "[redacted]")
    return _standalone(secret).sub("[redacted]", text)


@functools.lru_cache(maxsize=64)
def _standalone(secret: str) -> re.Pattern[str]:
    return re.compile(rf"(?<![A-Za-z0-9_]){re.escape(secret)}(?![A-Za-z0-9_])")
