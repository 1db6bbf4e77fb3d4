"""POST /v1/messages/count_tokens through the SDK: local, consistent with message_start, never upstream."""

from __future__ import annotations

import json
from typing import Any

import anthropic
import pytest
from anthropic.types import MessageTokensCount

from anthropic_gateway.schemas import decode_count_tokens_request
from anthropic_gateway.tokens import count_request_tokens
from conftest import GATEWAY_ENV, SONNET, SpawnGateway
from e2e import MODEL, WEATHER_TOOL, error_of, parse_sse, post_raw, stream_raw
from fake_upstream import FakeUpstream, Reply, finish_chunk, text_chunk
from paths import CLAUDE_CODE_FIXTURE

REQUEST: dict[str, Any] = {
    "model": MODEL,
    "system": "You are terse.",
    "messages": [{"role": "user", "content": "What is the weather in Paris?"}],
    "tools": [WEATHER_TOOL],
}


def _expected(body: dict[str, Any]) -> int:
    return count_request_tokens(decode_count_tokens_request(json.dumps(body).encode()), SONNET)


def test_sdk_count_tokens_returns_the_local_count(client: anthropic.Anthropic, upstream: FakeUpstream) -> None:
    result = client.messages.count_tokens(**REQUEST)
    assert isinstance(result, MessageTokensCount)
    assert result.input_tokens == _expected(REQUEST)
    assert result.input_tokens > 20
    assert upstream.requests == []  # never a billed upstream call


def test_beta_count_tokens_path(client: anthropic.Anthropic, upstream: FakeUpstream) -> None:
    result = client.beta.messages.count_tokens(**REQUEST, extra_query={"beta": "true"})
    assert result.input_tokens == _expected(REQUEST)
    assert upstream.requests == []


def test_claude_code_request_counts_and_max_tokens_is_not_required(client: anthropic.Anthropic) -> None:
    body = json.loads(CLAUDE_CODE_FIXTURE.read_text())["second_turn"]
    body = {k: v for k, v in body.items() if k not in ("max_tokens", "stream", "metadata", "context_management")}
    result = client.beta.messages.count_tokens(**body, extra_query={"beta": "true"})
    assert result.input_tokens == _expected(body)
    assert 15_000 < result.input_tokens < 40_000


def test_message_start_carries_the_same_estimate(client: anthropic.Anthropic, upstream: FakeUpstream) -> None:
    upstream.expect(Reply.stream([text_chunk("Sunny."), finish_chunk("stop")]))
    status, _, raw = stream_raw(client, max_tokens=50, **REQUEST)
    assert status == 200
    start = parse_sse(raw)[0]
    assert start.data["message"]["usage"]["input_tokens"] == _expected(REQUEST)


@pytest.mark.parametrize(
    ("block", "field"),
    [
        ({"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "not base64!"}},
         "messages.0.content.0.source.data"),
        ({"type": "image", "source": {"type": "base64", "media_type": "image/bmp", "data": "AAAA"}},
         "messages.0.content.0.source.media_type"),
    ],
)  # fmt: skip
def test_bad_blocks_are_400_naming_the_field(client: anthropic.Anthropic, block: dict[str, Any], field: str) -> None:
    with pytest.raises(anthropic.BadRequestError) as info:
        client.messages.count_tokens(model=MODEL, messages=[{"role": "user", "content": [block]}])
    err = error_of(info.value)
    assert err["type"] == "invalid_request_error"
    assert err["message"].startswith(field + ":"), err


def test_not_json_is_400(gateway: Any) -> None:
    resp = post_raw(gateway.url, "/v1/messages/count_tokens", b"{nope")
    assert resp.status_code == 400
    assert resp.json()["error"]["type"] == "invalid_request_error"


def test_known_price_gives_the_cost_header(spawn_gateway: SpawnGateway, upstream: FakeUpstream) -> None:
    gw = spawn_gateway({**GATEWAY_ENV, "ANTHROPIC_GATEWAY_INPUT_PRICES": json.dumps({SONNET: 3.0})})
    resp = post_raw(gw.url, "/v1/messages/count_tokens", REQUEST)
    assert resp.status_code == 200, resp.text
    tokens = resp.json()["input_tokens"]
    assert resp.json() == {"input_tokens": _expected(REQUEST)}
    assert resp.headers["anthropic-gateway-estimated-input-cost-usd"] == f"{tokens * 3.0 / 1_000_000:.6f}"
    upstream.always(Reply.auto([text_chunk("x"), finish_chunk("stop")]))


def test_unknown_price_sends_no_cost_header(gateway: Any) -> None:
    resp = post_raw(gateway.url, "/v1/messages/count_tokens", REQUEST)
    assert resp.status_code == 200
    assert "anthropic-gateway-estimated-input-cost-usd" not in resp.headers


def test_without_preload_the_first_count_loads_the_tokenizer(spawn_gateway: SpawnGateway) -> None:
    gw = spawn_gateway({**GATEWAY_ENV, "ANTHROPIC_GATEWAY_TOKENIZER_PRELOAD": "false"})
    with gw.client() as c:
        assert c.messages.count_tokens(**REQUEST).input_tokens == _expected(REQUEST)
