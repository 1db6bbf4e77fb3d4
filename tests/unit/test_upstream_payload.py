"""A large upstream body is encoded into one buffer with room for the request's head in front
(upstream.Payload): the request that reaches the socket is byte for byte the one built by joining
head and body, for every key and hint, and a retry sends it again unchanged."""

from __future__ import annotations

import msgspec
import orjson
import pytest

from anthropic_gateway.routing import Router
from anthropic_gateway.settings import load_settings
from anthropic_gateway.upstream import HEAD_ROOM, Payload, Target, UpstreamClient, encode_body
from fake_upstream import FakeUpstream, Reply, text_chunk

BODY = {"model": "m", "stream": True, "messages": [{"role": "tool", "tool_call_id": "c", "content": msgspec.Raw(b'"r\\u00e9sultat \xc3\xa9"')},
                                                    {"role": "user", "content": "é" * 5000}]}  # fmt: skip


def _target(head: bytes = b"POST /v1/chat/completions HTTP/1.1\r\nHost: up\r\n") -> Target:
    from anthropic_gateway.httpclient import Endpoint

    return Target(Endpoint("http", "up", 80), head, 1.0, 1.0, 1.0)


@pytest.mark.parametrize("hint", [1, 100, 20_000, 1 << 20])
@pytest.mark.parametrize("key", [None, "sk-or-v1-abc"])
def test_the_request_is_the_joined_head_and_body(hint: int, key: str | None) -> None:
    plain = msgspec.json.encode(BODY)
    payload = encode_body(BODY, hint)
    assert isinstance(payload, Payload) and bytes(payload.json) == plain and len(payload) == len(plain)
    target = _target()
    expected = target.request(plain, key)
    assert bytes(target.request(payload, key)) == expected
    assert bytes(target.request(payload, key)) == expected  # a retry: the same bytes again
    assert expected.endswith(b"Content-Length: %d\r\n\r\n" % len(plain) + plain)


def test_a_head_longer_than_the_room_is_joined_to_a_copy() -> None:
    target = _target(b"POST / HTTP/1.1\r\nX-Long: " + b"a" * HEAD_ROOM + b"\r\n")
    plain = msgspec.json.encode(BODY)
    assert bytes(target.request(encode_body(BODY, 10), "k")) == target.request(plain, "k")


def test_without_a_hint_the_body_is_bytes() -> None:
    assert encode_body(BODY, 0) == msgspec.json.encode(BODY)


async def test_the_upstream_receives_the_payload_as_sent(upstream: FakeUpstream) -> None:
    settings = load_settings(environ={"ANTHROPIC_GATEWAY_UPSTREAM_KEY": "k"}, upstream_url=upstream.base_url)
    backend = Router(settings).default
    client = UpstreamClient(settings)
    await client.start()
    upstream.expect(Reply.stream([text_chunk("ok")]))
    try:
        response = await client.post(backend, encode_body(BODY, 64), "k", stream=True)
        assert response.status == 200
        response.close()
    finally:
        await client.close()
    got = upstream.requests[-1]
    assert got.headers["authorization"] == "Bearer k"
    assert got.body == orjson.loads(msgspec.json.encode(BODY))
