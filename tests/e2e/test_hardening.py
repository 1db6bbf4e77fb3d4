"""Regressions for client input that broke the gateway under attack (issue 16): a 500 from a body,
a client's own key echoed back, unbounded echoes, unsupported methods. Real process, real sockets."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx2
import pytest

from conftest import GATEWAY_ENV, GatewayProcess, SpawnGateway
from e2e import MODEL, post_raw
from fake_upstream import FakeUpstream, Reply, error_body, finish_chunk, text_chunk

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


# --- 8. max_tokens is bounded ------------------------------------------------------------------------


@pytest.mark.parametrize("max_tokens", [128_001, 10**100])
def test_max_tokens_above_every_known_output_limit_is_anthropics_400(
    gateway: GatewayProcess, upstream: FakeUpstream, max_tokens: int
) -> None:
    for streaming in (False, True):
        resp = post_raw(gateway.url, "/v1/messages", {**GOOD, "max_tokens": max_tokens, "stream": streaming})
        message = assert_envelope(resp, 400, "invalid_request_error")
        assert message.startswith(f"max_tokens: {str(max_tokens)[:40]}") and message.endswith(
            " > 128000, which is the maximum allowed number of output tokens for claude-sonnet-5"), message
    assert upstream.requests == []


def test_max_tokens_is_clamped_to_the_targets_configured_limit(
    spawn_gateway: SpawnGateway, upstream: FakeUpstream
) -> None:
    models = {"small": {"model": "vendor/small", "max_output_tokens": 8192},
              "wide": {"model": "vendor/wide", "max_output_tokens": 200_000}}  # fmt: skip
    gw = spawn_gateway({**GATEWAY_ENV, "ANTHROPIC_GATEWAY_MODELS": json.dumps(models)})
    upstream.always(Reply.auto([text_chunk("ok"), finish_chunk("stop")]))
    for model, asked, sent in [("small", 128_000, 8192), ("wide", 150_000, 150_000), ("claude-haiku-4", 64_000, 64_000)]:
        resp = post_raw(gw.url, "/v1/messages", {**GOOD, "model": model, "max_tokens": asked})
        assert resp.status_code == 200, resp.text
        assert upstream.last_body["max_tokens"] == sent
    # A configured limit above Claude's raises the ceiling; nothing passes the largest one.
    resp = post_raw(gw.url, "/v1/messages", {**GOOD, "model": "wide", "max_tokens": 200_001})
    assert assert_envelope(resp, 400, "invalid_request_error").startswith("max_tokens: 200001 > 200000, ")


# --- 11. the OpenAPI document can drive a fuzzer; unsupported methods are 405 ----------------------


def test_openapi_declares_request_schemas_and_the_path_parameter(gateway: GatewayProcess) -> None:
    doc = httpx2.get(gateway.url + "/openapi.json", timeout=10).json()
    schemas = doc["components"]["schemas"]
    body = doc["paths"]["/v1/messages"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/MessagesRequest"}
    request = schemas["MessagesRequest"]
    assert set(request["required"]) == {"model", "messages", "max_tokens"}
    assert request["properties"]["max_tokens"] == {"type": "integer", "minimum": 1}
    assert request["properties"]["messages"]["items"] == {"$ref": "#/components/schemas/Message"}
    count = doc["paths"]["/v1/messages/count_tokens"]["post"]["requestBody"]["content"]["application/json"]
    assert set(schemas["CountTokensRequest"]["required"]) == {"model", "messages"} and count["schema"]["$ref"]
    assert "/v1/models/{model_id:path}" not in doc["paths"]
    model = doc["paths"]["/v1/models/{model_id}"]["get"]
    assert [(p["name"], p["in"], p["required"], p["schema"]) for p in model["parameters"]] == [
        ("model_id", "path", True, {"type": "string"})]
    refs = {m.group(1) for m in re.finditer(r'"#/components/schemas/(\w+)"', json.dumps(doc))}
    assert refs <= set(schemas), refs - set(schemas)


@pytest.mark.parametrize(("method", "path", "allow"), [
    ("GET", "/v1/messages", "POST"), ("PUT", "/v1/messages/count_tokens", "POST"),
    ("DELETE", "/v1/models", "GET, HEAD"), ("POST", "/v1/models/claude-x", "GET, HEAD"),
    ("POST", "/openapi.json", "GET, HEAD"), ("PATCH", "/", "GET, HEAD"),
])  # fmt: skip
def test_an_unsupported_method_is_405_with_allow(gateway: GatewayProcess, method: str, path: str, allow: str) -> None:
    resp = httpx2.request(method, gateway.url + path, content=b"{}", timeout=10)
    message = assert_envelope(resp, 405, "invalid_request_error")
    assert resp.headers["allow"] == allow
    assert message == f"{method} is not supported on {path}; use {allow}"
