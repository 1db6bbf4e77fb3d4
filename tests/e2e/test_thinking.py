"""Reasoning: upstream ``reasoning`` / ``reasoning_details`` → thinking blocks with a signature, and
the thinking block replayed on the next turn restores the reasoning upstream."""

from __future__ import annotations

from typing import Any

import anthropic
import pytest
from anthropic.types import Message

from e2e import MODEL, WEATHER_TOOL, check_well_formed, names, parse_sse, reduce_blocks, stream_raw, text_of
from fake_upstream import (
    FakeUpstream,
    Reply,
    StreamItem,
    finish_chunk,
    reasoning_chunk,
    text_chunk,
    tool_call_chunk,
    usage_chunk,
)

QUESTION: list[Any] = [{"role": "user", "content": "What is 6 x 7?"}]

PLAIN_REASONING: list[StreamItem] = [
    reasoning_chunk("Six times seven "),
    reasoning_chunk("is 42."),
    text_chunk("42"),
    finish_chunk("stop"),
    usage_chunk(20, 15),
]

GEMINI_DETAILS: list[StreamItem] = [
    reasoning_chunk(
        "Step one. ",
        [{"type": "reasoning.text", "text": "Step one. ", "format": "google-gemini-v1", "index": 0}],
    ),
    reasoning_chunk(
        "Step two.",
        [{"type": "reasoning.text", "text": "Step two.", "format": "google-gemini-v1", "index": 0}],
    ),
    reasoning_chunk(
        None,
        [
            {
                "type": "reasoning.encrypted",
                "data": "CiQBopaqueThoughtSignature==",
                "format": "google-gemini-v1",
                "index": 1,
            }
        ],
    ),
    tool_call_chunk(0, id="call_g1", name="get_weather", arguments='{"city": "Oslo"}'),
    finish_chunk("tool_calls"),
    usage_chunk(30, 25),
]


def get(
    client: anthropic.Anthropic, upstream: FakeUpstream, items: list[StreamItem], streaming: bool, **kw: Any
) -> Message:
    if streaming:
        upstream.expect(Reply.stream(items))
        with client.messages.stream(model=MODEL, max_tokens=300, messages=QUESTION, **kw) as stream:
            return stream.get_final_message()
    upstream.expect(Reply.auto(items))
    msg: Message = client.messages.create(model=MODEL, max_tokens=300, messages=QUESTION, **kw)
    return msg


@pytest.mark.parametrize("streaming", [False, True])
def test_plain_reasoning_becomes_thinking_and_round_trips(
    client: anthropic.Anthropic, upstream: FakeUpstream, streaming: bool
) -> None:
    msg = get(client, upstream, PLAIN_REASONING, streaming)
    assert [b.type for b in msg.content] == ["thinking", "text"]
    thinking = msg.content[0]
    assert thinking.type == "thinking"
    assert thinking.thinking == "Six times seven is 42."
    assert isinstance(thinking.signature, str) and thinking.signature.strip() != ""
    assert msg.content[1].type == "text" and msg.content[1].text == "42"
    assert msg.stop_reason == "end_turn"

    upstream.expect(Reply.auto([text_chunk("Yes."), finish_chunk("stop")]))
    client.messages.create(
        model=MODEL,
        max_tokens=300,
        messages=[
            *QUESTION,
            {"role": "assistant", "content": msg.content},
            {"role": "user", "content": "Sure?"},
        ],
    )
    msgs = upstream.last_body["messages"]
    assert [m["role"] for m in msgs] == ["user", "assistant", "user"]
    assistant = msgs[1]
    assert text_of(assistant["content"]) == "42"
    restored = assistant.get("reasoning", assistant.get("reasoning_content"))
    assert restored == "Six times seven is 42.", assistant


def test_thinking_raw_events(client: anthropic.Anthropic, upstream: FakeUpstream) -> None:
    upstream.expect(Reply.stream(PLAIN_REASONING))
    _, _, raw = stream_raw(client, model=MODEL, max_tokens=300, messages=QUESTION)
    events = parse_sse(raw)
    check_well_formed(events)
    assert names(events, pings=False) == [
        "message_start",
        "content_block_start",
        "content_block_delta+",
        "content_block_stop",
        "content_block_start",
        "content_block_delta+",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    starts = [e.data["content_block"] for e in events if e.event == "content_block_start"]
    assert starts == [{"type": "thinking", "thinking": "", "signature": ""}, {"type": "text", "text": ""}]
    thinking_deltas = [
        e.data["delta"] for e in events if e.event == "content_block_delta" and e.data["index"] == 0
    ]
    kinds = [d["type"] for d in thinking_deltas]
    # thinking_delta(s), then exactly one signature_delta just before the block stops
    assert kinds[-1] == "signature_delta" and kinds.count("signature_delta") == 1, kinds
    assert set(kinds[:-1]) == {"thinking_delta"}
    blocks = reduce_blocks(events)
    assert blocks[0]["thinking"] == "Six times seven is 42."
    assert blocks[0]["signature"]
    assert blocks[1] == {"type": "text", "text": "42"}


@pytest.mark.parametrize("streaming", [False, True])
@pytest.mark.parametrize("kind", ["openai-compatible", "openrouter"])
def test_reasoning_details_are_restored_on_the_next_turn(
    request: pytest.FixtureRequest, upstream: FakeUpstream, streaming: bool, kind: str
) -> None:
    """Gemini-style details (text plus an encrypted thought signature) survive the round trip
    through the thinking block's signature. OpenRouter must get the details back unchanged; a
    generic backend must at least get the reasoning text back."""
    client: anthropic.Anthropic = request.getfixturevalue(
        "client" if kind == "openai-compatible" else "openrouter_client"
    )
    msg = get(client, upstream, GEMINI_DETAILS, streaming, tools=[WEATHER_TOOL])
    assert [b.type for b in msg.content] == ["thinking", "tool_use"]
    thinking = msg.content[0]
    assert thinking.type == "thinking"
    assert thinking.thinking == "Step one. Step two."  # the text once, not twice
    assert thinking.signature.strip() != ""
    assert "CiQBopaqueThoughtSignature==" not in thinking.thinking
    tool_use = msg.content[1]
    assert tool_use.type == "tool_use" and tool_use.input == {"city": "Oslo"}

    upstream.expect(Reply.auto([text_chunk("Cold."), finish_chunk("stop")]))
    client.messages.create(
        model=MODEL,
        max_tokens=300,
        tools=[WEATHER_TOOL],
        messages=[
            *QUESTION,
            {"role": "assistant", "content": msg.content},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": tool_use.id, "content": "-3C"}],
            },
        ],
    )
    msgs = upstream.last_body["messages"]
    assert [m["role"] for m in msgs] == ["user", "assistant", "tool"]
    assistant = msgs[1]
    details = assistant.get("reasoning_details")
    if kind == "openai-compatible" and details is None:
        assert assistant.get("reasoning", assistant.get("reasoning_content")) == "Step one. Step two.", (
            assistant
        )
        return
    assert isinstance(details, list), assistant
    encrypted = [d for d in details if d.get("type") == "reasoning.encrypted"]
    assert encrypted == [
        {
            "type": "reasoning.encrypted",
            "data": "CiQBopaqueThoughtSignature==",
            "format": "google-gemini-v1",
            "index": 1,
        }
    ]
    texts = "".join(d.get("text") or "" for d in details if d.get("type") == "reasoning.text")
    assert texts == "Step one. Step two."
    assert all(d.get("format") == "google-gemini-v1" for d in details), details


def test_signature_arriving_after_text_is_not_lost(
    client: anthropic.Anthropic, upstream: FakeUpstream
) -> None:
    """OpenRouter's Claude stream may send the signature-only detail after text has started."""
    claude = "anthropic-claude-v1"
    items: list[StreamItem] = [
        reasoning_chunk("Hmm.", [{"type": "reasoning.text", "text": "Hmm.", "format": claude, "index": 0}]),
        text_chunk("Answer"),
        reasoning_chunk(
            None, [{"type": "reasoning.text", "signature": "EqQBsigFromClaude", "format": claude, "index": 0}]
        ),
        text_chunk(" here."),
        finish_chunk("stop"),
    ]
    msg = get(client, upstream, items, streaming=True)
    thinking = [b for b in msg.content if b.type == "thinking"]
    assert len(thinking) == 1 and thinking[0].thinking == "Hmm."
    text = "".join(b.text for b in msg.content if b.type == "text")
    assert text == "Answer here."
    # the signature is delivered: either verbatim, or inside an envelope that restores it upstream
    upstream.expect(Reply.auto([text_chunk("ok"), finish_chunk("stop")]))
    client.messages.create(
        model=MODEL,
        max_tokens=300,
        messages=[
            *QUESTION,
            {"role": "assistant", "content": msg.content},
            {"role": "user", "content": "And?"},
        ],
    )
    assistant = upstream.last_body["messages"][1]
    assert "EqQBsigFromClaude" in thinking[0].signature or "EqQBsigFromClaude" in str(
        assistant.get("reasoning_details")
    ), (thinking[0].signature, assistant)
