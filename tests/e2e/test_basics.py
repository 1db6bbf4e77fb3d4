"""Routes, model mapping, the beta path and the streaming alias."""

from __future__ import annotations

import re

import anthropic
import httpx2
import pytest

from conftest import HAIKU, OPUS, SONNET, UPSTREAM_KEY, GatewayProcess
from e2e import (
    MODEL,
    USER_HELLO,
    assert_stream_flags,
    check_well_formed,
    parse_sse,
    post_raw,
    reduce_blocks,
)
from fake_upstream import FakeUpstream, Reply, finish_chunk, text_chunk, usage_chunk

HELLO = [text_chunk("Hi there"), finish_chunk("stop"), usage_chunk(12, 3)]


def test_get_root_lists_name_version_and_endpoints(gateway: GatewayProcess) -> None:
    resp = httpx2.get(gateway.url + "/", timeout=10)
    assert resp.status_code == 200
    assert resp.headers.get("request-id")
    info = resp.json()
    assert info["name"] == "anthropic-gateway"
    assert info["version"] == "0.1.0"
    assert "/v1/messages" in str(info), info


def test_head_root_is_200(gateway: GatewayProcess) -> None:
    resp = httpx2.head(gateway.url + "/", timeout=10)
    assert resp.status_code == 200
    assert resp.content == b""


def test_openapi_describes_messages_routes(gateway: GatewayProcess) -> None:
    resp = httpx2.get(gateway.url + "/openapi.json", timeout=10)
    assert resp.status_code == 200
    paths = resp.json()["paths"]
    assert "/v1/messages" in paths and "post" in paths["/v1/messages"]
    assert "/v1/messages/stream" in paths and "post" in paths["/v1/messages/stream"]


@pytest.mark.parametrize(
    ("method", "path"), [("GET", "/v1/nope"), ("POST", "/v1/whatever"), ("GET", "/v2/messages")]
)
def test_unknown_path_is_404_not_found_error(
    gateway: GatewayProcess, upstream: FakeUpstream, method: str, path: str
) -> None:
    resp = httpx2.request(method, gateway.url + path, content=b"{}", timeout=10)
    assert resp.status_code == 404
    body = resp.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == "not_found_error"
    assert body["request_id"] == resp.headers["request-id"]
    assert upstream.requests == []


@pytest.mark.parametrize(
    ("requested", "sent"),
    [
        ("claude-opus-4-8", OPUS),
        ("claude-sonnet-5", SONNET),
        ("claude-haiku-4-5-20251001", HAIKU),
        ("claude-opus-9-7-20310101", OPUS),  # a name Claude Code will invent later
        ("claude-3-5-haiku-latest", HAIKU),
        ("openai/gpt-4o", "openai/gpt-4o"),
        ("meta-llama/llama-3.3-70b-instruct:free", "meta-llama/llama-3.3-70b-instruct:free"),
    ],
)
def test_model_mapping_and_echo(
    client: anthropic.Anthropic, upstream: FakeUpstream, requested: str, sent: str
) -> None:
    upstream.expect(Reply.auto(HELLO))
    msg = client.messages.create(model=requested, max_tokens=50, messages=USER_HELLO)
    assert upstream.last_body["model"] == sent
    assert msg.model == requested


def test_beta_path_create(client: anthropic.Anthropic, upstream: FakeUpstream) -> None:
    upstream.expect(Reply.auto(HELLO))
    # SDK 2.x's beta resource no longer adds ?beta=true itself; Claude Code and older SDKs do
    raw = client.beta.messages.with_raw_response.create(
        model=MODEL, max_tokens=50, messages=USER_HELLO, extra_query={"beta": "true"}
    )
    assert raw.http_request.url.path == "/v1/messages"
    assert raw.http_request.url.params.get("beta") == "true"
    assert raw.status_code == 200
    msg = raw.parse()
    assert [(b.type, getattr(b, "text", None)) for b in msg.content] == [("text", "Hi there")]
    assert msg.stop_reason == "end_turn"
    assert msg.model == MODEL
    assert upstream.last_body["model"] == SONNET
    assert len(upstream.requests) == 1


def test_beta_path_stream(client: anthropic.Anthropic, upstream: FakeUpstream) -> None:
    upstream.expect(Reply.stream(HELLO))
    with client.beta.messages.stream(
        model=MODEL, max_tokens=50, messages=USER_HELLO, extra_query={"beta": "true"}
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Hi there"
    assert [(b.type, getattr(b, "text", None)) for b in final.content] == [("text", "Hi there")]
    assert final.stop_reason == "end_turn"
    assert upstream.last_body["stream"] is True
    assert_stream_flags(upstream.last_body)


def test_messages_stream_alias_always_streams(gateway: GatewayProcess, upstream: FakeUpstream) -> None:
    upstream.expect(Reply.stream(HELLO))
    resp = post_raw(
        gateway.url,
        "/v1/messages/stream",
        {"model": MODEL, "max_tokens": 50, "messages": [{"role": "user", "content": "Hello"}]},
    )
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/event-stream")
    assert resp.headers.get("request-id")
    events = parse_sse(resp.content)
    check_well_formed(events)
    assert reduce_blocks(events) == [{"type": "text", "text": "Hi there"}]
    assert upstream.last_body["stream"] is True
    assert_stream_flags(upstream.last_body)


def test_upstream_gets_gateway_key_not_client_key(
    client: anthropic.Anthropic, upstream: FakeUpstream
) -> None:
    upstream.expect(Reply.auto(HELLO))
    client.messages.create(model=MODEL, max_tokens=50, messages=USER_HELLO)
    req = upstream.requests[0]
    assert req.method == "POST"
    assert req.path == "/v1/chat/completions"
    assert req.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert "test-key" not in str(req.headers)
    assert req.headers["content-type"].startswith("application/json")


def test_request_id_header_matches_pattern(client: anthropic.Anthropic, upstream: FakeUpstream) -> None:
    upstream.expect(Reply.auto(HELLO))
    raw = client.messages.with_raw_response.create(model=MODEL, max_tokens=50, messages=USER_HELLO)
    rid = raw.headers.get("request-id")
    assert rid is not None and re.fullmatch(r"req_[A-Za-z0-9_-]+", rid), rid
    assert raw.headers["content-type"].startswith("application/json")
