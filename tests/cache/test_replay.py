"""The SSE replay of a stored Message: the stream grammar, the official SDK's accumulator builds the
same Message, and assembling the gateway's own stream gives the Message back."""

from __future__ import annotations

from typing import Any

import pytest

from anthropic_gateway.cache.replay import assemble, replay_events
from unit.helpers import (
    MESSAGE_ID,
    check_well_formed,
    ctx_for,
    finish,
    parse_events,
    reasoning,
    run_stream,
    sdk_accumulate,
    sse,
    text,
    tool,
    usage,
)

USAGE = {"input_tokens": 12, "cache_creation_input_tokens": 3, "cache_read_input_tokens": 40, "output_tokens": 7}


def _message(content: list[dict[str, Any]], stop: str = "end_turn", seq: str | None = None) -> dict[str, Any]:
    return {"id": MESSAGE_ID, "type": "message", "role": "assistant", "model": "claude-opus-4", "content": content,
            "stop_reason": stop, "stop_sequence": seq, "usage": dict(USAGE)}  # fmt: skip


MESSAGES = {
    "text": _message([{"type": "text", "text": "Hello, \"world\" ✓\n"}]),
    "stop_sequence": _message([{"type": "text", "text": "one"}], "stop_sequence", "\n\n"),
    "thinking_text_tool": _message([
        {"type": "thinking", "thinking": "Let me think.", "signature": "agw1.abc"},
        {"type": "text", "text": "Calling."},
        {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Paris", "n": [1, 2]}},
    ], "tool_use"),
    "redacted_and_empty_input": _message([
        {"type": "redacted_thinking", "data": "opaque"},
        {"type": "tool_use", "id": "toolu_02", "name": "now", "input": {}},
    ], "tool_use"),
}  # fmt: skip


@pytest.mark.parametrize("name", list(MESSAGES))
def test_replay_is_a_well_formed_stream_the_sdk_folds_into_the_same_message(name: str) -> None:
    message = MESSAGES[name]
    events = parse_events(replay_events(message))
    check_well_formed(events)
    assert [n for n, _ in events][:2] == ["message_start", "ping"]
    sdk = sdk_accumulate(events)
    assert [{k: v for k, v in b.items() if v is not None} for b in sdk["content"]] == message["content"]
    assert (sdk["id"], sdk["stop_reason"], sdk["stop_sequence"]) == (message["id"], message["stop_reason"],
                                                                     message["stop_sequence"])  # fmt: skip
    assert {k: sdk["usage"][k] for k in USAGE} == USAGE


@pytest.mark.parametrize("name", list(MESSAGES))
def test_assemble_inverts_the_replay(name: str) -> None:
    assert assemble(replay_events(MESSAGES[name])) == MESSAGES[name]


def test_assemble_a_live_translated_stream() -> None:
    chunks = [reasoning("Hmm."), text("Hi "), text("there"), tool(0, "call_1", "get_weather", '{"city":'),
              tool(0, args='"Oslo"}'), finish("tool_calls"), usage(100, 9)]  # fmt: skip
    raw, events = run_stream(sse(chunks), ctx_for(stream=True))
    message = assemble(raw)
    assert message is not None
    sdk = sdk_accumulate(events)
    assert [b["type"] for b in message["content"]] == ["thinking", "text", "tool_use"]
    assert message["content"][1] == {"type": "text", "text": "Hi there"}
    assert message["content"][0]["thinking"] == sdk["content"][0]["thinking"] == "Hmm."
    assert message["content"][2]["id"] == sdk["content"][2]["id"]
    assert message["content"][2]["input"] == {"city": "Oslo"} and message["stop_reason"] == "tool_use"
    assert message["usage"]["output_tokens"] == 9


def test_assemble_refuses_an_unfinished_or_failed_stream() -> None:
    raw = replay_events(MESSAGES["text"])
    assert assemble(raw[: raw.index(b"event: message_stop")]) is None
    error = b'event: error\ndata: {"type":"error","error":{"type":"api_error","message":"x"}}\n\n'
    assert assemble(raw[: raw.index(b"event: message_delta")] + error) is None
