"""Upstream failures: before the stream (HTTP errors per the §8.9 table), context-length errors,
and after the stream started (one ``event: error`` frame, then the stream ends)."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import anthropic
import pytest

from conftest import GATEWAY_ENV, UPSTREAM_KEY, SpawnGateway, free_port
from e2e import MODEL, USER_HELLO, check_well_formed, error_of, parse_sse, post_raw, reduce_blocks, stream_raw
from fake_upstream import (
    FakeUpstream,
    Reply,
    StreamItem,
    chunk,
    error_body,
    error_chunk,
    finish_chunk,
    text_chunk,
)

# upstream status, upstream body, upstream headers → SDK class, status, error.type, headers expected
ErrorCase = tuple[
    int, dict[str, Any], dict[str, str], type[anthropic.APIStatusError], int, str, dict[str, str]
]

PRE_STREAM: dict[str, ErrorCase] = {
    "400": (
        400,
        error_body(400, "Invalid model specified", "invalid_request"),
        {},
        anthropic.BadRequestError,
        400,
        "invalid_request_error",
        {},
    ),
    "402": (
        402,
        error_body(402, "Insufficient credits", "payment_required"),
        {},
        anthropic.PaymentRequiredError,
        402,
        "billing_error",
        {"x-should-retry": "false"},
    ),
    "403": (
        403,
        error_body(403, "Input was flagged", "permission_denied", reasons=["violence"], flagged_input="..."),
        {},
        anthropic.PermissionDeniedError,
        403,
        "permission_error",
        {},
    ),
    "404": (
        404,
        error_body(404, "No endpoints found for test/sonnet.", "not_found"),
        {},
        anthropic.NotFoundError,
        404,
        "not_found_error",
        {},
    ),
    "408": (
        408,
        error_body(408, "Request timed out", "timeout"),
        {},
        anthropic.GatewayTimeoutError,
        504,
        "timeout_error",
        {},
    ),
    "413": (
        413,
        error_body(413, "Payload too large", "payload_too_large"),
        {},
        anthropic.ContentTooLargeError,
        413,
        "request_too_large",
        {},
    ),
    "422": (
        422,
        error_body(422, "Unprocessable", "unprocessable"),
        {},
        anthropic.BadRequestError,
        400,
        "invalid_request_error",
        {},
    ),
    "429": (
        429,
        error_body(429, "Rate limit exceeded", "rate_limit_exceeded"),
        {"Retry-After": "1"},
        anthropic.RateLimitError,
        429,
        "rate_limit_error",
        {"retry-after": "1"},
    ),
    "500": (
        500,
        error_body(500, "Internal Server Error", "server"),
        {},
        anthropic.InternalServerError,
        500,
        "api_error",
        {},
    ),
    "503-overloaded": (
        503,
        error_body(503, "Provider overloaded", "provider_overloaded"),
        {"Retry-After": "2"},
        anthropic.OverloadedError,
        529,
        "overloaded_error",
        {"retry-after": "2"},
    ),
    "504": (
        504,
        error_body(504, "Gateway timeout", "timeout"),
        {},
        anthropic.GatewayTimeoutError,
        504,
        "timeout_error",
        {},
    ),
    "524": (
        524,
        error_body(524, "Edge timeout"),
        {},
        anthropic.GatewayTimeoutError,
        504,
        "timeout_error",
        {},
    ),
    "529": (
        529,
        error_body(529, "Provider overloaded"),
        {},
        anthropic.OverloadedError,
        529,
        "overloaded_error",
        {},
    ),
}


@pytest.mark.parametrize("streaming", [False, True], ids=["create", "stream"])
@pytest.mark.parametrize("case", list(PRE_STREAM), ids=list(PRE_STREAM))
def test_pre_stream_upstream_errors(
    client: anthropic.Anthropic, upstream: FakeUpstream, case: str, streaming: bool
) -> None:
    up_status, up_body, up_headers, sdk_class, status, err_type, headers = PRE_STREAM[case]
    upstream.always(Reply.json(up_body, status=up_status, headers=up_headers))
    with pytest.raises(anthropic.APIStatusError) as info:
        client.messages.create(model=MODEL, max_tokens=10, messages=USER_HELLO, stream=streaming)
    exc = info.value
    assert type(exc) is sdk_class, f"{type(exc).__name__}: {exc}"
    assert exc.status_code == status
    assert exc.response.headers["content-type"].startswith("application/json")
    err = error_of(exc)
    assert err["type"] == err_type
    assert err["message"].strip() != ""
    assert exc.request_id is not None and exc.request_id.startswith("req_")
    assert isinstance(exc.body, dict) and exc.body.get("request_id") == exc.request_id
    for name, value in headers.items():
        assert exc.response.headers.get(name) == value, (name, dict(exc.response.headers))
    assert UPSTREAM_KEY not in exc.response.text
    assert "Traceback" not in exc.response.text
    assert len(upstream.requests) >= 1


def test_moderation_reasons_are_in_the_403_message(
    client: anthropic.Anthropic, upstream: FakeUpstream
) -> None:
    upstream.always(
        Reply.json(
            error_body(403, "Input was flagged", "permission_denied", reasons=["violence", "hate"]), 403
        )
    )
    with pytest.raises(anthropic.PermissionDeniedError) as info:
        client.messages.create(model=MODEL, max_tokens=10, messages=USER_HELLO)
    message = error_of(info.value)["message"]
    assert "violence" in message and "hate" in message, message


def test_upstream_401_with_the_gateway_key(client: anthropic.Anthropic, upstream: FakeUpstream) -> None:
    """The failing key is the gateway's own: 401 authentication_error or 500 api_error (§8.9)."""
    upstream.always(Reply.json(error_body(401, "User not found.", "authentication"), 401))
    with pytest.raises(anthropic.APIStatusError) as info:
        client.messages.create(model=MODEL, max_tokens=10, messages=USER_HELLO)
    exc = info.value
    pair = (type(exc), exc.status_code, error_of(exc)["type"])
    assert pair in [
        (anthropic.AuthenticationError, 401, "authentication_error"),
        (anthropic.InternalServerError, 500, "api_error"),
    ], pair
    assert exc.request_id is not None


def test_upstream_502_is_api_error(client: anthropic.Anthropic, upstream: FakeUpstream) -> None:
    upstream.always(Reply.json(error_body(502, "Provider returned error", "provider_unavailable"), 502))
    with pytest.raises(anthropic.InternalServerError) as info:
        client.messages.create(model=MODEL, max_tokens=10, messages=USER_HELLO)
    assert info.value.status_code in (500, 502)
    assert error_of(info.value)["type"] == "api_error"


def test_upstream_503_without_overload_is_503_api_error(
    client: anthropic.Anthropic, upstream: FakeUpstream
) -> None:
    body = error_body(503, "No endpoints available matching your routing requirements")
    body["error"]["availability"] = {"code": "no_endpoints", "retryable": False}
    upstream.always(Reply.json(body, 503))
    with pytest.raises(anthropic.ServiceUnavailableError) as info:
        client.messages.create(model=MODEL, max_tokens=10, messages=USER_HELLO)
    assert error_of(info.value)["type"] == "api_error"
    assert info.value.response.headers.get("x-should-retry") == "false"


def test_upstream_non_json_error_body(client: anthropic.Anthropic, upstream: FakeUpstream) -> None:
    upstream.always(Reply.json("<html>Bad gateway</html>", 500, {"Content-Type": "text/html"}))
    with pytest.raises(anthropic.InternalServerError) as info:
        client.messages.create(model=MODEL, max_tokens=10, messages=USER_HELLO)
    assert info.value.status_code == 500
    assert error_of(info.value)["type"] == "api_error"


def test_upstream_unreachable_is_502_or_529(spawn_gateway: SpawnGateway, upstream: FakeUpstream) -> None:
    dead = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    gw = spawn_gateway(dict(GATEWAY_ENV), upstream_url=dead)
    with gw.client() as c, pytest.raises(anthropic.APIStatusError) as info:
        c.messages.create(model=MODEL, max_tokens=10, messages=USER_HELLO)
    assert (info.value.status_code, error_of(info.value)["type"]) in [
        (502, "api_error"),
        (529, "overloaded_error"),
    ]
    assert info.value.request_id is not None


# -- context length -----------------------------------------------------------------------------

PROMPT_TOO_LONG = re.compile(r"prompt is too long: (\d+) tokens > (\d+) maximum")
INPUT_PLUS_MAX = re.compile(r"input length and `max_tokens` exceed context limit: (\d+) \+ (\d+) > (\d+)")

CONTEXT_BODIES: dict[str, tuple[dict[str, Any], re.Pattern[str], tuple[str, ...]]] = {
    "openai": (
        {
            "error": {
                "message": "This model's maximum context length is 128000 tokens. However, your messages "
                "resulted in 130000 tokens. Please reduce the length of the messages.",
                "type": "invalid_request_error",
                "param": "messages",
                "code": "context_length_exceeded",
            }
        },
        PROMPT_TOO_LONG,
        ("130000", "128000"),
    ),
    "openrouter": (
        error_body(
            400,
            "This endpoint's maximum context length is 200000 tokens. However, you requested about 215000 "
            "tokens (211000 of text input, 4000 in the output). Please reduce the length of either one, or "
            'use the "middle-out" transform to compress your prompt automatically.',
            "context_length_exceeded",
        ),
        PROMPT_TOO_LONG,
        ("211000", "200000"),
    ),
    "vllm-input-plus-max-tokens": (
        {
            "object": "error",
            "message": "This model's maximum context length is 200000 tokens. However, you requested 254000 "
            "tokens (190000 in the messages, 64000 in the completion). Please reduce the length of the "
            "messages or completion.",
            "type": "BadRequestError",
            "param": None,
            "code": 400,
        },
        INPUT_PLUS_MAX,
        ("190000", "64000", "200000"),
    ),
}


@pytest.mark.parametrize("case", list(CONTEXT_BODIES))
def test_context_length_errors_use_claude_code_phrases(
    client: anthropic.Anthropic, upstream: FakeUpstream, case: str
) -> None:
    body, pattern, numbers = CONTEXT_BODIES[case]
    upstream.always(Reply.json(body, 400))
    with pytest.raises(anthropic.BadRequestError) as info:
        client.messages.create(model=MODEL, max_tokens=64000, messages=USER_HELLO, stream=True)
    err = error_of(info.value)
    assert err["type"] == "invalid_request_error"
    match = pattern.search(err["message"])
    assert match is not None, err["message"]
    assert match.groups() == numbers


# -- mid-stream ---------------------------------------------------------------------------------

MID_STREAM: dict[str, tuple[list[StreamItem], dict[str, Any], str]] = {
    "error-chunk": (
        [text_chunk("Hel"), error_chunk(503, "Provider overloaded", "provider_overloaded")],
        {"done": False},
        "overloaded_error",
    ),
    "error-chunk-rate-limit": (
        [text_chunk("Hel"), error_chunk(429, "Rate limit exceeded", "rate_limit_exceeded")],
        {"done": False},
        "rate_limit_error",
    ),
    "finish-reason-error": (
        [text_chunk("Hel"), chunk({}, finish_reason="error")],
        {"done": True},
        "api_error",
    ),
    "malformed-json": (
        [text_chunk("Hel"), 'data: {"choices": [{"index": 0, "delta": {"content": "lo"\n\n'],
        {"done": True},
        "api_error",
    ),
    "content-not-a-string": (
        [text_chunk("Hel"), 'data: {"choices": [{"index": 0, "delta": {"content": 5}}]}\n\n', text_chunk("lo")],
        {"done": True},
        "api_error",
    ),
    "connection-dropped": (
        [text_chunk("Hel"), text_chunk("lo")],
        {"done": False, "drop": True},
        "api_error",
    ),
    "eof-without-finish": (
        [text_chunk("Hel"), text_chunk("lo")],
        {"done": False},
        "api_error",
    ),
}


@pytest.mark.parametrize("case", list(MID_STREAM))
def test_mid_stream_failure_is_one_error_event(
    client: anthropic.Anthropic, upstream: FakeUpstream, case: str
) -> None:
    items, options, err_type = MID_STREAM[case]
    upstream.expect(Reply.stream(items, **options))
    status, _, raw = stream_raw(client, model=MODEL, max_tokens=50, messages=USER_HELLO)
    assert status == 200
    events = parse_sse(raw)
    check_well_formed(events, complete=False)
    assert events[-1].event == "error", [e.event for e in events]
    assert events[-1].data["error"]["type"] == err_type
    assert events[-1].data["error"]["message"].strip() != ""
    assert [e.event for e in events].count("error") == 1
    assert "message_stop" not in [e.event for e in events]
    assert "message_delta" not in [e.event for e in events]
    blocks = reduce_blocks(events)
    assert [b.get("text") for b in blocks] in ([], ["Hel"], ["Hello"]), blocks
    assert UPSTREAM_KEY.encode() not in raw


@pytest.mark.parametrize("case", ["error-chunk", "malformed-json", "content-not-a-string", "connection-dropped"])
def test_sdk_raises_during_iteration_on_mid_stream_failure(
    client: anthropic.Anthropic, upstream: FakeUpstream, case: str
) -> None:
    items, options, err_type = MID_STREAM[case]
    upstream.expect(Reply.stream(items, **options))
    seen: list[str] = []
    with (
        pytest.raises(anthropic.APIStatusError) as info,
        client.messages.stream(model=MODEL, max_tokens=50, messages=USER_HELLO) as stream,
    ):
        for event in stream:
            seen.append(event.type)
    assert seen[0] == "message_start"
    assert info.value.type == err_type
    assert isinstance(info.value.body, dict) and info.value.body["error"]["type"] == err_type


def test_finish_then_eof_without_done_or_usage_is_not_an_error(
    client: anthropic.Anthropic, upstream: FakeUpstream
) -> None:
    upstream.expect(Reply.stream([text_chunk("fine"), finish_chunk("stop")], done=False))
    with client.messages.stream(model=MODEL, max_tokens=50, messages=USER_HELLO) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "end_turn"
    assert [b.model_dump(exclude_none=True) for b in final.content] == [{"type": "text", "text": "fine"}]


HELLO = {"max_tokens": 10, "messages": [{"role": "user", "content": "Hi"}]}


OK = Reply.auto([text_chunk("ok"), finish_chunk("stop")])


def test_passthrough_clients_never_spend_a_backends_own_key(
    spawn_gateway: SpawnGateway, upstream: FakeUpstream, _upstream_server: FakeUpstream
) -> None:
    gw = spawn_gateway({
        **{k: v for k, v in GATEWAY_ENV.items() if k != "ANTHROPIC_GATEWAY_UPSTREAM_KEY"},
        "ANTHROPIC_GATEWAY_PASSTHROUGH_AUTH": "true",
        "ANTHROPIC_GATEWAY_API_KEYS": "gw-member-key",
        "ANTHROPIC_GATEWAY_BACKENDS": json.dumps({"own": {"url": _upstream_server.base_url, "key_env": "OWN_KEY"}}),
        "ANTHROPIC_GATEWAY_MODELS": json.dumps({"m": {"backend": "own", "model": "x/y"}}),
        "OWN_KEY": "sk-own-backend-secret",
    })  # fmt: skip
    upstream.always(OK)
    stranger = post_raw(gw.url, "/v1/messages", {"model": "m", **HELLO}, headers={"x-api-key": "sk-or-strangers-own"})
    member = post_raw(gw.url, "/v1/messages", {"model": "m", **HELLO}, headers={"x-api-key": "gw-member-key"})
    assert (stranger.status_code, member.status_code) == (200, 200)
    auth = [r.headers["authorization"] for r in upstream.requests]
    assert auth == ["Bearer sk-or-strangers-own", "Bearer sk-own-backend-secret"]


def test_an_upstream_error_echoing_the_key_is_redacted_in_the_log(
    spawn_gateway: SpawnGateway, upstream: FakeUpstream
) -> None:
    gw = spawn_gateway({**GATEWAY_ENV, "ANTHROPIC_GATEWAY_RETRIES": "0"})
    upstream.expect(Reply.json(error_body(500, f"internal failure handling key {UPSTREAM_KEY}", "server"), status=500))
    resp = post_raw(gw.url, "/v1/messages", {"model": "a/b", **HELLO})
    assert resp.status_code == 500
    assert UPSTREAM_KEY not in resp.text and "[redacted]" in resp.text
    time.sleep(0.2)  # let the log line reach the file
    log = gw.log_text()
    assert "internal failure handling key [redacted]" in log
    assert UPSTREAM_KEY not in log
