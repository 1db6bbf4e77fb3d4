"""Text answers through ``messages.create`` and ``messages.stream``: content, usage, SSE grammar."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import anthropic
import pytest
from anthropic.types import Message

from conftest import GATEWAY_ENV, SONNET, GatewayProcess, SpawnGateway
from e2e import (
    MODEL,
    USER_HELLO,
    assert_stream_flags,
    check_well_formed,
    names,
    one,
    parse_sse,
    reduce_blocks,
    stream_raw,
)
from fake_upstream import (
    FakeUpstream,
    JsonReply,
    Pause,
    RecordedRequest,
    Reply,
    StreamItem,
    StreamReply,
    chunk,
    finish_chunk,
    text_chunk,
    usage_chunk,
)

HELLO_WORLD = [
    text_chunk("Hello"),
    text_chunk(" world"),
    finish_chunk("stop"),
    usage_chunk(100, 20, cached=30, cache_write=10),
]
EXPECTED_USAGE = {
    "input_tokens": 60,
    "output_tokens": 20,
    "cache_read_input_tokens": 30,
    "cache_creation_input_tokens": 10,
}


def usage_dict(u: Any) -> dict[str, Any]:
    return {k: getattr(u, k) for k in EXPECTED_USAGE}


def test_create_text_exact_message_and_upstream_body(
    client: anthropic.Anthropic, upstream: FakeUpstream
) -> None:
    upstream.expect(Reply.auto(HELLO_WORLD))
    msg = client.messages.create(model=MODEL, max_tokens=100, system="Be brief.", messages=USER_HELLO)

    assert msg.id.startswith("msg_") and len(msg.id) >= 28, msg.id
    assert msg.type == "message"
    assert msg.role == "assistant"
    assert msg.model == MODEL
    assert [b.model_dump(exclude_none=True) for b in msg.content] == [{"type": "text", "text": "Hello world"}]
    assert msg.stop_reason == "end_turn"
    assert msg.stop_sequence is None
    assert usage_dict(msg.usage) == EXPECTED_USAGE

    assert len(upstream.requests) == 1
    body = upstream.last_body
    assert body["model"] == SONNET
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hello"},
    ]
    assert body["max_tokens"] == 100
    assert set(body) - {"stream", "stream_options"} == {"model", "messages", "max_tokens"}
    assert_stream_flags(body)


def test_create_forwards_only_fields_the_client_set(
    client: anthropic.Anthropic, upstream: FakeUpstream
) -> None:
    upstream.expect(Reply.auto(HELLO_WORLD))
    client.messages.create(
        model=MODEL,
        max_tokens=64,
        messages=USER_HELLO,
        metadata={"user_id": "user-42"},
        extra_body={
            "temperature": 0.2,
            "top_p": 0.9,
            "top_k": 40,
            "some_future_field": {"x": 1},
            "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        },
        extra_headers={"anthropic-beta": "made-up-beta-2099-01-01,context-1m-2025-08-07"},
    )
    body = upstream.last_body
    assert body["temperature"] == 0.2
    assert body["top_p"] == 0.9
    assert body["top_k"] == 40
    assert body["user"] == "user-42"
    assert set(body) - {"stream", "stream_options"} == {
        "model",
        "messages",
        "max_tokens",
        "temperature",
        "top_p",
        "top_k",
        "user",
    }


def test_system_blocks_join_into_one_leading_system_string(
    client: anthropic.Anthropic, upstream: FakeUpstream
) -> None:
    upstream.expect(Reply.auto(HELLO_WORLD))
    client.messages.create(
        model=MODEL,
        max_tokens=64,
        system=[
            {"type": "text", "text": "You are terse."},
            {"type": "text", "text": "Answer in English.", "cache_control": {"type": "ephemeral"}},
        ],
        messages=USER_HELLO,
    )
    assert upstream.last_body["messages"] == [
        {"role": "system", "content": "You are terse.\n\nAnswer in English."},
        {"role": "user", "content": "Hello"},
    ]


def test_stream_text_stream_and_final_message(client: anthropic.Anthropic, upstream: FakeUpstream) -> None:
    upstream.expect(Reply.stream(HELLO_WORLD))
    with client.messages.stream(model=MODEL, max_tokens=100, messages=USER_HELLO) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()

    assert "".join(pieces) == "Hello world"
    assert all(pieces), pieces
    assert final.id.startswith("msg_")
    assert final.model == MODEL
    assert [b.model_dump(exclude_none=True) for b in final.content] == [
        {"type": "text", "text": "".join(pieces)}
    ]
    assert final.stop_reason == "end_turn"
    assert final.stop_sequence is None
    assert usage_dict(final.usage) == EXPECTED_USAGE

    body = upstream.last_body
    assert body["stream"] is True
    assert body["model"] == SONNET
    assert body["messages"] == [{"role": "user", "content": "Hello"}]
    assert_stream_flags(body)


def test_raw_sse_event_sequence_for_text(client: anthropic.Anthropic, upstream: FakeUpstream) -> None:
    upstream.expect(Reply.stream(HELLO_WORLD))
    status, headers, raw = stream_raw(client, model=MODEL, max_tokens=100, messages=USER_HELLO)
    assert status == 200
    assert headers["content-type"].startswith("text/event-stream")
    assert headers.get("request-id", "").startswith("req_")
    assert b"[DONE]" not in raw

    events = parse_sse(raw)
    assert names(events) == [
        "message_start",
        "ping",
        "content_block_start",
        "content_block_delta+",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    start = one(events, "message_start")["message"]
    assert start["id"].startswith("msg_")
    assert {k: start[k] for k in ("type", "role", "model", "content", "stop_reason", "stop_sequence")} == {
        "type": "message",
        "role": "assistant",
        "model": MODEL,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
    }
    assert isinstance(start["usage"]["input_tokens"], int) and isinstance(
        start["usage"]["output_tokens"], int
    )
    assert one(events, "content_block_start") == {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "text", "text": ""},
    }
    deltas = [e.data for e in events if e.event == "content_block_delta"]
    assert all(d["index"] == 0 and d["delta"]["type"] == "text_delta" for d in deltas), deltas
    assert "".join(d["delta"]["text"] for d in deltas) == "Hello world"
    assert one(events, "content_block_stop") == {"type": "content_block_stop", "index": 0}
    delta = one(events, "message_delta")
    assert delta["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert {k: delta["usage"].get(k) for k in EXPECTED_USAGE} == EXPECTED_USAGE
    assert one(events, "message_stop") == {"type": "message_stop"}


async def test_async_client_stream(async_client: anthropic.AsyncAnthropic, upstream: FakeUpstream) -> None:
    upstream.expect(Reply.stream(HELLO_WORLD, delay=0.01))
    async with async_client.messages.stream(model=MODEL, max_tokens=100, messages=USER_HELLO) as stream:
        pieces = [t async for t in stream.text_stream]
        final = await stream.get_final_message()
    assert "".join(pieces) == "Hello world"
    assert final.content[0].type == "text" and final.content[0].text == "Hello world"
    assert usage_dict(final.usage) == EXPECTED_USAGE


async def test_async_client_create(async_client: anthropic.AsyncAnthropic, upstream: FakeUpstream) -> None:
    upstream.expect(Reply.auto(HELLO_WORLD))
    msg = await async_client.messages.create(model=MODEL, max_tokens=100, messages=USER_HELLO)
    assert [b.model_dump(exclude_none=True) for b in msg.content] == [{"type": "text", "text": "Hello world"}]
    assert usage_dict(msg.usage) == EXPECTED_USAGE


async def test_concurrent_streams_are_not_mixed(
    async_client: anthropic.AsyncAnthropic, upstream: FakeUpstream
) -> None:
    def echo(req: RecordedRequest) -> StreamReply:
        said = req.body["messages"][-1]["content"]
        return Reply.stream([text_chunk("echo: "), text_chunk(said), finish_chunk("stop")], delay=0.02)

    upstream.always(Reply.dynamic(echo))

    async def ask(i: int) -> str:
        async with async_client.messages.stream(
            model=MODEL, max_tokens=20, messages=[{"role": "user", "content": f"n{i}"}]
        ) as stream:
            return "".join([t async for t in stream.text_stream])

    answers = await asyncio.wait_for(asyncio.gather(*(ask(i) for i in range(6))), timeout=30)
    assert answers == [f"echo: n{i}" for i in range(6)]
    assert len(upstream.requests) == 6


@pytest.mark.parametrize("streaming", [False, True])
def test_empty_completion(client: anthropic.Anthropic, upstream: FakeUpstream, streaming: bool) -> None:
    items = [chunk({"role": "assistant", "content": ""}), finish_chunk("stop"), usage_chunk(5, 1)]
    if not streaming:
        upstream.expect(Reply.auto(items))
        msg = client.messages.create(model=MODEL, max_tokens=10, messages=USER_HELLO)
        assert msg.content == []
        assert msg.stop_reason == "end_turn"
        assert msg.usage.input_tokens == 5 and msg.usage.output_tokens == 1
        return
    upstream.expect(Reply.stream(items))
    _, _, raw = stream_raw(client, model=MODEL, max_tokens=10, messages=USER_HELLO)
    events = parse_sse(raw)
    assert names(events, pings=False) == ["message_start", "message_delta", "message_stop"]
    assert one(events, "message_delta")["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}


@pytest.mark.parametrize(("finish", "stop_reason"), [("length", "max_tokens"), ("content_filter", "refusal")])
@pytest.mark.parametrize("streaming", [False, True])
def test_finish_reason_mapping(
    client: anthropic.Anthropic, upstream: FakeUpstream, streaming: bool, finish: str, stop_reason: str
) -> None:
    items = [text_chunk("partial ans"), text_chunk("wer"), finish_chunk(finish), usage_chunk(7, 3)]
    if streaming:
        upstream.expect(Reply.stream(items))
        with client.messages.stream(model=MODEL, max_tokens=3, messages=USER_HELLO) as stream:
            msg: Message = stream.get_final_message()
    else:
        upstream.expect(Reply.auto(items))
        msg = client.messages.create(model=MODEL, max_tokens=3, messages=USER_HELLO)
    assert [b.model_dump(exclude_none=True) for b in msg.content] == [
        {"type": "text", "text": "partial answer"}
    ]
    assert msg.stop_reason == stop_reason
    assert msg.stop_sequence is None


def test_stream_ending_without_done_after_finish_is_complete(
    client: anthropic.Anthropic, upstream: FakeUpstream
) -> None:
    upstream.expect(Reply.stream(HELLO_WORLD, done=False))
    _, _, raw = stream_raw(client, model=MODEL, max_tokens=100, messages=USER_HELLO)
    events = parse_sse(raw)
    check_well_formed(events)
    assert reduce_blocks(events) == [{"type": "text", "text": "Hello world"}]
    assert one(events, "message_delta")["delta"]["stop_reason"] == "end_turn"


def test_done_without_finish_reason_is_end_turn(client: anthropic.Anthropic, upstream: FakeUpstream) -> None:
    upstream.expect(Reply.stream([text_chunk("Hi"), usage_chunk(4, 1)], done=True))
    _, _, raw = stream_raw(client, model=MODEL, max_tokens=100, messages=USER_HELLO)
    events = parse_sse(raw)
    check_well_formed(events)
    assert reduce_blocks(events) == [{"type": "text", "text": "Hi"}]
    assert one(events, "message_delta")["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}


def _frame(payload: dict[str, Any], sep: bytes = b" ", end: bytes = b"\n\n") -> bytes:
    return b"data:" + sep + json.dumps(payload, ensure_ascii=False).encode() + end


def test_upstream_framing_quirks(client: anthropic.Anthropic, upstream: FakeUpstream) -> None:
    """Keep-alive comments, a role-only chunk with empty content, a line split across reads, a UTF-8
    character split across reads, several payloads in one read, ``data:`` without a space, and a
    usage-only chunk with empty ``choices``."""
    split = _frame(text_chunk("café "))
    cut = split.index("é".encode()) + 1  # between the two bytes of "é"
    upstream.expect(
        Reply.stream(
            [
                ": OPENROUTER PROCESSING\n\n",
                chunk({"role": "assistant", "content": ""}),
                ": OPENROUTER PROCESSING\n\n",
                split[:cut],
                Pause(0.05),
                split[cut:],
                Pause(0.05),
                _frame(text_chunk("two ")) + _frame(text_chunk("payloads ")),
                _frame(text_chunk("no-space"), sep=b""),
                finish_chunk("stop"),
                usage_chunk(9, 4),
            ]
        )
    )
    _, _, raw = stream_raw(client, model=MODEL, max_tokens=100, messages=USER_HELLO)
    events = parse_sse(raw)
    check_well_formed(events)
    assert reduce_blocks(events) == [{"type": "text", "text": "café two payloads no-space"}]
    usage = one(events, "message_delta")["usage"]
    assert (usage["input_tokens"], usage["output_tokens"]) == (9, 4)


def test_upstream_crlf_framing(client: anthropic.Anthropic, upstream: FakeUpstream) -> None:
    upstream.expect(
        Reply.stream(
            [
                _frame(text_chunk("crlf "), end=b"\r\n\r\n"),
                _frame(text_chunk("lines"), end=b"\r\n\r\n"),
                _frame(finish_chunk("stop"), end=b"\r\n\r\n"),
            ],
            done=False,
        )
    )
    with client.messages.stream(model=MODEL, max_tokens=100, messages=USER_HELLO) as stream:
        final = stream.get_final_message()
    assert [b.model_dump(exclude_none=True) for b in final.content] == [
        {"type": "text", "text": "crlf lines"}
    ]
    assert final.stop_reason == "end_turn"


def test_message_start_sent_before_first_upstream_chunk(
    client: anthropic.Anthropic, upstream: FakeUpstream
) -> None:
    upstream.expect(Reply.stream([Pause(2.0), text_chunk("late"), finish_chunk("stop")]))
    t0 = time.monotonic()
    stream = client.messages.create(model=MODEL, max_tokens=10, messages=USER_HELLO, stream=True)
    with stream:
        first = next(iter(stream))
        waited = time.monotonic() - t0
        rest = list(stream)
    assert first.type == "message_start"
    assert waited < 1.5, f"message_start came after {waited:.2f}s; upstream was silent for 2s"
    assert [e.type for e in rest][-2:] == ["message_delta", "message_stop"]


def test_pings_cover_upstream_silence(spawn_gateway: SpawnGateway, upstream: FakeUpstream) -> None:
    gw: GatewayProcess = spawn_gateway({**GATEWAY_ENV, "ANTHROPIC_GATEWAY_PING_INTERVAL": "0.2"})
    keepalive: list[StreamItem] = [": OPENROUTER PROCESSING\n\n", Pause(0.15)] * 8  # 1.2 s of comments only
    upstream.expect(Reply.stream([*keepalive, text_chunk("done"), finish_chunk("stop")]))
    with gw.client() as c:
        _, _, raw = stream_raw(c, model=MODEL, max_tokens=10, messages=USER_HELLO)
    events = parse_sse(raw)
    check_well_formed(events)
    first_block = [e.event for e in events].index("content_block_start")
    pings = [e for e in events[:first_block] if e.event == "ping"]
    assert len(pings) >= 3, [e.event for e in events]
    assert reduce_blocks(events) == [{"type": "text", "text": "done"}]


def test_non_streaming_upstream_200_with_error_body_is_an_http_error(
    client: anthropic.Anthropic, upstream: FakeUpstream
) -> None:
    """OpenRouter can put an error inside an HTTP 200 body."""
    upstream.always(
        JsonReply(
            {
                "error": {
                    "code": 502,
                    "message": "Provider returned error",
                    "metadata": {"error_type": "provider_unavailable"},
                }
            }
        )
    )
    with pytest.raises(anthropic.APIStatusError) as info:
        client.messages.create(model=MODEL, max_tokens=10, messages=USER_HELLO)
    assert info.value.status_code in (500, 502)
    assert isinstance(info.value.body, dict)
    assert info.value.body["error"]["type"] == "api_error"


@pytest.mark.parametrize("streaming", [False, True])
def test_input_tokens_floor_at_zero(
    client: anthropic.Anthropic, upstream: FakeUpstream, streaming: bool
) -> None:
    """Backends disagree on whether cache writes are inside prompt_tokens; never report a negative."""
    items = [text_chunk("x"), finish_chunk("stop"), usage_chunk(10, 1, cached=8, cache_write=5)]
    if streaming:
        upstream.expect(Reply.stream(items))
        with client.messages.stream(model=MODEL, max_tokens=10, messages=USER_HELLO) as stream:
            msg: Message = stream.get_final_message()
    else:
        upstream.expect(Reply.auto(items))
        msg = client.messages.create(model=MODEL, max_tokens=10, messages=USER_HELLO)
    assert usage_dict(msg.usage) == {
        "input_tokens": 0,
        "output_tokens": 1,
        "cache_read_input_tokens": 8,
        "cache_creation_input_tokens": 5,
    }
