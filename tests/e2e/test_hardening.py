"""Regressions for client input that broke the gateway under attack (issue 16): a 500 from a body,
a client's own key echoed back, unbounded echoes, unsupported methods. Real process, real sockets."""

from __future__ import annotations

import json
from typing import Any

import httpx2
import pytest

from conftest import GATEWAY_ENV, GatewayProcess, SpawnGateway
from e2e import MODEL, post_raw
from fake_upstream import FakeUpstream, Reply, error_body

GOOD: dict[str, Any] = {"model": MODEL, "max_tokens": 10, "messages": [{"role": "user", "content": "Hi"}]}
PATHS = ["/v1/messages", "/v1/messages/count_tokens"]


def assert_envelope(resp: httpx2.Response, status: int, error_type: str) -> str:
    assert resp.status_code == status, resp.text[:2000]
    body = resp.json()
    assert body["type"] == "error" and body["error"]["type"] == error_type, body
    assert body["request_id"] == resp.headers["request-id"]
    assert "Traceback" not in resp.text
    message: str = body["error"]["message"]
    return message


# --- 1. a 500 from client input ------------------------------------------------------------------


@pytest.mark.parametrize("path", PATHS)
def test_invalid_utf8_inside_a_tool_schema_is_400_naming_it(
    gateway: GatewayProcess, upstream: FakeUpstream, path: str
) -> None:
    tool = b'{"name": "t", "input_schema": {"type": "object", "description": "caf\xe9 \xff"}}'
    body = json.dumps({**GOOD, "tools": ["TOOL"]}).encode().replace(b'"TOOL"', tool)
    message = assert_envelope(post_raw(gateway.url, path, body), 400, "invalid_request_error")
    assert message.startswith("tools.0.input_schema: invalid UTF-8"), message
    assert upstream.requests == []


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("value", [5, True, 1.5])
def test_messages_that_is_not_a_list_is_400_naming_it(
    gateway: GatewayProcess, upstream: FakeUpstream, path: str, value: Any
) -> None:
    # With an unknown block type elsewhere the decoder takes its slow path, which once iterated it.
    body = {**GOOD, "messages": value, "system": [{"type": "future_block"}]}
    message = assert_envelope(post_raw(gateway.url, path, body), 400, "invalid_request_error")
    assert message.startswith("messages: Expected `array`") or message.startswith("system"), message
    plain = assert_envelope(post_raw(gateway.url, path, {**GOOD, "messages": value}), 400, "invalid_request_error")
    assert plain.startswith("messages: Expected `array`"), plain
    assert upstream.requests == []


# --- 5. passthrough: the client's own key never comes back ---------------------------------------

CLIENT_OWN_KEY = "sk-or-v1-client-own-key-0123456789"
NO_KEY_ENV = {k: v for k, v in GATEWAY_ENV.items() if k != "ANTHROPIC_GATEWAY_UPSTREAM_KEY"}


@pytest.mark.parametrize(("upstream_status", "status", "error_type"), [
    (400, 400, "invalid_request_error"), (401, 401, "authentication_error"),
    (429, 429, "rate_limit_error"), (502, 502, "api_error"), (500, 500, "api_error"),
])  # fmt: skip
def test_passthrough_key_quoted_by_the_upstream_is_redacted(
    spawn_gateway: SpawnGateway, upstream: FakeUpstream, upstream_status: int, status: int, error_type: str
) -> None:
    gw = spawn_gateway({**NO_KEY_ENV, "ANTHROPIC_GATEWAY_PASSTHROUGH_AUTH": "true", "ANTHROPIC_GATEWAY_RETRIES": "0"})
    echo = f"Invalid header Authorization: Bearer {CLIENT_OWN_KEY} (key {CLIENT_OWN_KEY} unknown)"
    upstream.always(Reply.json(error_body(upstream_status, echo), upstream_status))
    for streaming in (False, True):
        resp = post_raw(gw.url, "/v1/messages", {**GOOD, "stream": streaming}, headers={"x-api-key": CLIENT_OWN_KEY})
        message = assert_envelope(resp, status, error_type)
        assert CLIENT_OWN_KEY not in resp.text
        assert "[redacted]" in message, message
    assert upstream.requests[0].headers["authorization"] == f"Bearer {CLIENT_OWN_KEY}"
    assert CLIENT_OWN_KEY not in gw.log_text()


# --- 9. echoed client input is cut ------------------------------------------------------------------


def test_a_huge_model_name_is_not_echoed_whole(gateway: GatewayProcess, upstream: FakeUpstream) -> None:
    name = "m" * 10_000_000
    resp = post_raw(gateway.url, "/v1/messages", {**GOOD, "model": name}, timeout=60)
    message = assert_envelope(resp, 404, "not_found_error")
    assert len(resp.content) < 5000, len(resp.content)
    assert "(10000000 characters)" in message, message[:500]
    models = httpx2.get(gateway.url + "/v1/models/" + "n" * 20_000, timeout=30)
    assert len(assert_envelope(models, 404, "not_found_error")) < 5000


@pytest.mark.parametrize("body", [
    {**GOOD, "messages": [{"role": "r" * 2_000_000, "content": "hi"}]},
    {**GOOD, "thinking": {"type": "x" * 2_000_000}},
    {**GOOD, "tools": [{"name": "t", "type": "z" * 2_000_000}]},
])  # fmt: skip
def test_a_huge_field_value_is_not_echoed_whole(gateway: GatewayProcess, upstream: FakeUpstream, body: Any) -> None:
    resp = post_raw(gateway.url, "/v1/messages", body, timeout=60)
    assert_envelope(resp, 400, "invalid_request_error")
    assert len(resp.content) < 5000, len(resp.content)


def test_a_huge_upstream_error_message_is_cut(client: Any, gateway: GatewayProcess, upstream: FakeUpstream) -> None:
    upstream.always(Reply.json(error_body(400, "bad " * 200_000), 400))
    resp = post_raw(gateway.url, "/v1/messages", GOOD)
    message = assert_envelope(resp, 400, "invalid_request_error")
    assert message.startswith("Upstream error: bad bad") and "message cut at 4000" in message
    assert len(resp.content) < 5000


def test_a_long_unknown_path_is_not_echoed_whole(gateway: GatewayProcess) -> None:
    resp = httpx2.get(gateway.url + "/x" * 10_000, headers={"x-api-key": "k"}, timeout=30)
    assert len(assert_envelope(resp, 404, "not_found_error")) < 500
