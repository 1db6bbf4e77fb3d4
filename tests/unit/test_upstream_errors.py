"""Upstream failures → Anthropic errors: the status table of mapping §8.9 and the context-length
phrases Claude Code parses (issue 2, "Errors"; claude-code.md "Error text it parses")."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from anthropic_gateway.upstream_errors import CallInfo, from_response, redact

GATEWAY_KEY = CallInfo(client_key_used=False)


def _or_body(code: int, message: str, error_type: str | None = None, **extra: Any) -> bytes:
    err: dict[str, Any] = {"code": code, "message": message, **extra}
    if error_type is not None:
        err["metadata"] = {"error_type": error_type}
    return orjson.dumps({"error": err, "user_id": None})


@pytest.mark.parametrize(("status", "error_type", "http", "etype"), [
    (400, "invalid_request", 400, "invalid_request_error"),
    (402, "payment_required", 402, "billing_error"),
    (403, "permission_denied", 403, "permission_error"),
    (404, "not_found", 404, "not_found_error"),
    (408, None, 504, "timeout_error"),
    (413, "payload_too_large", 413, "request_too_large"),
    (422, "unprocessable", 400, "invalid_request_error"),
    (429, "rate_limit_exceeded", 429, "rate_limit_error"),
    (500, "server", 500, "api_error"),
    (502, "provider_unavailable", 502, "api_error"),
    (503, "provider_overloaded", 529, "overloaded_error"),
    (504, "timeout", 504, "timeout_error"),
    (524, None, 504, "timeout_error"),
    (529, None, 529, "overloaded_error"),
])  # fmt: skip
def test_status_table(status: int, error_type: str | None, http: int, etype: str) -> None:
    err = from_response(status, _or_body(status, "Something happened", error_type), {}, GATEWAY_KEY)
    assert (err.http_status, err.error_type) == (http, etype)
    assert "Something happened" in err.message


def test_400_with_only_a_message() -> None:
    err = from_response(400, _or_body(400, "Invalid model specified"), {}, GATEWAY_KEY)
    assert (err.http_status, err.error_type) == (400, "invalid_request_error")


def test_401_for_the_gateway_key_is_500_without_retry() -> None:
    err = from_response(401, _or_body(401, "No auth credentials found", "authentication"), {}, GATEWAY_KEY)
    assert (err.http_status, err.error_type) == (500, "api_error")
    assert err.headers.get("x-should-retry") == "false"


def test_401_for_the_clients_key_is_401() -> None:
    err = from_response(401, _or_body(401, "User not found.", "authentication"), {}, CallInfo(client_key_used=True))
    assert (err.http_status, err.error_type) == (401, "authentication_error")


def test_402_sets_no_retry() -> None:
    err = from_response(402, _or_body(402, "Insufficient credits", "payment_required"), {}, GATEWAY_KEY)
    assert err.headers.get("x-should-retry") == "false"


def test_429_copies_retry_after() -> None:
    err = from_response(429, _or_body(429, "Rate limit exceeded"), {"retry-after": "7"}, GATEWAY_KEY)
    assert (err.http_status, err.error_type) == (429, "rate_limit_error")
    assert err.headers.get("retry-after") == "7"


def test_503_overloaded_copies_retry_after() -> None:
    err = from_response(503, _or_body(503, "Provider overloaded", "provider_overloaded"), {"retry-after": "3"}, GATEWAY_KEY)
    assert (err.http_status, err.error_type) == (529, "overloaded_error")
    assert err.headers.get("retry-after") == "3"


def test_503_without_overload_not_retryable() -> None:
    body = _or_body(503, "No endpoints found matching your data policy",
                    availability={"code": "no_endpoints", "retryable": False})  # fmt: skip
    err = from_response(503, body, {}, GATEWAY_KEY)
    assert (err.http_status, err.error_type) == (503, "api_error")
    assert err.headers.get("x-should-retry") == "false"


def test_503_without_overload_retryable_keeps_retry_after() -> None:
    err = from_response(503, _or_body(503, "No provider available"), {"retry-after": "2"}, GATEWAY_KEY)
    assert (err.http_status, err.error_type) == (503, "api_error")
    assert err.headers.get("x-should-retry") != "false"


def test_provider_raw_message_surfaced() -> None:
    body = orjson.dumps({"error": {"code": 400, "message": "Provider returned error",
                                   "metadata": {"raw": "model does not support tools", "provider_name": "Acme"}}})  # fmt: skip
    err = from_response(400, body, {}, GATEWAY_KEY)
    assert "model does not support tools" in err.message and "Acme" in err.message


def test_non_json_error_body() -> None:
    err = from_response(502, b"<html>Bad Gateway</html>", {}, GATEWAY_KEY)
    assert (err.http_status, err.error_type) == (502, "api_error") and "Bad Gateway" in err.message


# --- context length ---------------------------------------------------------------------------------

PROMPT_TOO_LONG = "prompt is too long: {} tokens > {} maximum"
EXCEEDS = "input length and `max_tokens` exceed context limit: {} + {} > {}"


@pytest.mark.parametrize(("body", "expected"), [
    pytest.param(
        _or_body(400, "This endpoint's maximum context length is 200000 tokens. However, you requested about 254000 "
                      "tokens (190000 of text input, 64000 in the output). Please reduce the length of either one, or "
                      'use the "middle-out" transform to compress your prompt automatically.'),
        EXCEEDS.format(190000, 64000, 200000), id="openrouter-input-plus-output"),
    pytest.param(
        _or_body(400, "This endpoint's maximum context length is 200000 tokens. However, you requested about 274000 "
                      "tokens (210000 of text input, 64000 in the output). Please reduce the length of either one, or "
                      'use the "middle-out" transform to compress your prompt automatically.'),
        PROMPT_TOO_LONG.format(210000, 200000), id="openrouter-prompt-alone-too-long"),
    pytest.param(
        orjson.dumps({"error": {"message": "This model's maximum context length is 128000 tokens. However, your messages "
                                           "resulted in 130521 tokens. Please reduce the length of the messages.",
                                "type": "invalid_request_error", "param": "messages", "code": "context_length_exceeded"}}),
        PROMPT_TOO_LONG.format(130521, 128000), id="openai-messages"),
    pytest.param(
        orjson.dumps({"error": {"message": "This model's maximum context length is 8192 tokens. However, you requested "
                                           "9000 tokens (5000 in the messages, 4000 in the completion). Please reduce the "
                                           "length of the messages or completion.",
                                "type": "invalid_request_error", "param": "messages", "code": "context_length_exceeded"}}),
        EXCEEDS.format(5000, 4000, 8192), id="openai-messages-and-completion"),
    pytest.param(
        orjson.dumps({"object": "error", "message": "This model's maximum context length is 32768 tokens. However, you "
                                                    "requested 40000 tokens (8000 in the messages, 32000 in the completion). "
                                                    "Please reduce the length of the messages or completion.",
                      "type": "BadRequestError", "param": None, "code": 400}),
        EXCEEDS.format(8000, 32000, 32768), id="vllm-old-wording"),
    pytest.param(
        orjson.dumps({"object": "error", "message": "This model's maximum context length is 1536 tokens. However, your "
                                                    "request has 4176 input tokens. Please reduce the length of the input "
                                                    "messages.",
                      "type": "BadRequestError", "param": None, "code": 400}),
        PROMPT_TOO_LONG.format(4176, 1536), id="vllm-old-wording-input-only"),
    pytest.param(
        orjson.dumps({"error": {"message": "'max_tokens' or 'max_completion_tokens' is too large: 8000. This model's "
                                           "maximum context length is 4096 tokens and your request has 2778 input "
                                           "tokens (8000 > 4096 - 2778). None",
                                "type": "BadRequestError", "param": None, "code": 400}}),
        EXCEEDS.format(2778, 8000, 4096), id="vllm-new-wording"),
    pytest.param(
        orjson.dumps({"error": {"code": 400, "message": "request (4476 tokens) exceeds the available context size "
                                                        "(4096 tokens), try increasing it",
                                "type": "exceed_context_size_error", "n_prompt_tokens": 4476, "n_ctx": 4096}}),
        PROMPT_TOO_LONG.format(4476, 4096), id="llama.cpp"),
    pytest.param(
        orjson.dumps({"error": {"code": 400, "message": "the request exceeds the available context size, try increasing it",
                                "type": "exceed_context_size_error", "n_prompt_tokens": 5000, "n_ctx": 4096}}),
        PROMPT_TOO_LONG.format(5000, 4096), id="llama.cpp-numbers-only-in-fields"),
])  # fmt: skip
def test_context_length_bodies(body: bytes, expected: str) -> None:
    err = from_response(400, body, {}, CallInfo(max_tokens=64000))
    assert (err.http_status, err.error_type) == (400, "invalid_request_error")
    assert err.message == expected


def test_ollama_context_error_falls_back_to_estimate_and_window() -> None:
    body = orjson.dumps({"error": {"message": "the input length exceeds the context length", "type": "api_error",
                                   "param": None, "code": None}})  # fmt: skip
    err = from_response(400, body, {}, CallInfo(input_estimate=5000, max_tokens=1000, context_window=4096))
    assert (err.http_status, err.error_type) == (400, "invalid_request_error")
    assert err.message == PROMPT_TOO_LONG.format(5000, 4096)
    err = from_response(400, body, {}, CallInfo(input_estimate=3000, max_tokens=2000, context_window=4096))
    assert err.message == EXCEEDS.format(3000, 2000, 4096)


def test_context_length_via_error_type_only() -> None:
    body = _or_body(400, "Input exceeds the limit.", "context_length_exceeded")
    err = from_response(400, body, {}, CallInfo(input_estimate=210000, max_tokens=64000, context_window=200000))
    assert err.message == PROMPT_TOO_LONG.format(210000, 200000)


def test_ordinary_400_is_not_a_context_error() -> None:
    err = from_response(400, _or_body(400, "temperature must be between 0 and 2"), {}, CallInfo(max_tokens=64000))
    assert "prompt is too long" not in err.message and "exceed context limit" not in err.message


@pytest.mark.parametrize(("text", "secret", "expected"), [
    # a long key goes wherever it stands, glued to other characters or not
    ("key gw-long-test-key-placeholder-0001 unknown", "gw-long-test-key-placeholder-0001", "key [redacted] unknown"),
    ("Bearergw-long-test-key-placeholder-0001x", "gw-long-test-key-placeholder-0001", "Bearer[redacted]x"),
    # a short one (a local backend's placeholder) only where it stands alone
    ("max_tokens too large for key x", "x", "max_tokens too large for key [redacted]"),
    ('{"gen_ai.request.model": "gen", "k": "Bearer gen"}', "gen", '{"gen_ai.request.model": "[redacted]", "k": "Bearer [redacted]"}'),
    ("key=sk-1234&sk-1234.", "sk-1234", "key=[redacted]&[redacted]."),
    ("EMPTYING EMPTY_SET EMPTY2", "EMPTY", "EMPTYING EMPTY_SET EMPTY2"),
    ("nothing here", "EMPTY", "nothing here"),
    ("no key at all", None, "no key at all"),
    ("no key at all", "", "no key at all"),
])  # fmt: skip
def test_redact_long_keys_everywhere_short_ones_where_they_stand_alone(
    text: str, secret: str | None, expected: str
) -> None:
    assert redact(text, secret) == expected
