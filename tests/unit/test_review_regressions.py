"""Regressions for defects an independent review found in the stream translator and message conversion."""

from __future__ import annotations

from typing import Any

import pytest

from unit.helpers import (
    check_well_formed,
    claude_reasoning,
    ctx_for,
    finish,
    run_stream,
    sse,
    stream_message,
    text,
    tool,
    upstream_body,
)

CTX = ctx_for("anthropic/claude-sonnet-4.5")


def _blocks(message: dict[str, Any]) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for b in message["content"]:
        out.append((b["type"], b.get("text") or b.get("thinking") or b.get("name")))
    return out


@pytest.mark.parametrize("split", ["whole", "bytes"])
def test_answer_held_for_a_signature_that_never_comes_is_still_sent(split: str) -> None:
    chunks = [claude_reasoning("thinking..."), text("Hello "), text("world"), finish("stop")]
    message = stream_message(chunks, CTX, split)  # type: ignore[arg-type]
    assert _blocks(message) == [("thinking", "thinking..."), ("text", "Hello world")]
    assert message["content"][0]["signature"].startswith("agw1.")
    assert message["stop_reason"] == "end_turn"


def test_interleaved_unsigned_thinking_and_tools_lose_nothing() -> None:
    chunks = [
        claude_reasoning("first"), tool(0, "call_a", "Read", '{"p": 1}'),
        claude_reasoning("second", index=1), tool(1, "call_b", "Write", '{"p": 2}'),
        finish("tool_calls"),
    ]  # fmt: skip
    message = stream_message(chunks, CTX)
    assert _blocks(message) == [("thinking", "first"), ("tool_use", "Read"), ("thinking", "second"), ("tool_use", "Write")]
    assert [b["input"] for b in message["content"] if b["type"] == "tool_use"] == [{"p": 1}, {"p": 2}]


def test_nothing_follows_an_error_from_a_tool_flush() -> None:
    _, events = run_stream(sse([tool(0, "call_a", None, "{}"), text("B"), finish("stop")]), CTX)
    check_well_formed(events)
    assert events[-1][0] == "error"
    assert "without a function name" in events[-1][1]["error"]["message"]


@pytest.mark.parametrize(
    "chunk",
    [
        {"choices": [None]},
        {"choices": [{"index": 0, "delta": "oops"}]},
        {"choices": {"0": {"delta": {"content": "x"}}}},
    ],
)
def test_malformed_chunk_shapes_end_in_one_error_event(chunk: dict[str, Any]) -> None:
    _, events = run_stream(sse([text("ok"), chunk, finish("stop")]), CTX)  # type: ignore[list-item]
    check_well_formed(events)
    assert events[-1][0] == "error"
    assert events[-1][1]["error"]["type"] == "api_error"


def test_usage_that_is_not_an_object_is_ignored() -> None:
    message = stream_message([text("ok"), finish("stop"), {"choices": [], "usage": [1, 2]}], CTX)  # type: ignore[list-item]
    assert message["usage"]["output_tokens"] == 0


def test_text_after_a_tool_call_is_a_new_block_after_it() -> None:
    message = stream_message([text("A"), tool(0, "call_a", "Read", "{}"), text("B"), finish("tool_calls")], CTX)
    assert _blocks(message) == [("text", "A"), ("tool_use", "Read"), ("text", "B")]


def test_stop_sequence_after_a_buffered_tool_call_drops_the_call_as_the_nonstream_path_does() -> None:
    ctx = ctx_for("anthropic/claude-sonnet-4.5", stop_sequences=["END"])
    message = stream_message([text("A"), tool(0, "call_a", "Read", "{}"), text("B END C"), finish("stop")], ctx)
    # The non-streamed path sees "A" + "B END C" as one text and no tool call; so does the stream.
    assert _blocks(message) == [("text", "AB ")]
    assert (message["stop_reason"], message["stop_sequence"]) == ("stop_sequence", "END")


def test_held_back_text_goes_out_before_a_later_thinking_block() -> None:
    ctx = ctx_for("anthropic/claude-sonnet-4.5", stop_sequences=["STOP"])
    message = stream_message([text("S"), claude_reasoning("hmm", signature="sig"), finish("stop")], ctx)
    assert _blocks(message) == [("text", "S"), ("thinking", "hmm")]


def test_kept_system_message_waits_for_the_tool_messages() -> None:
    messages = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "Read", "input": {}}]},
        {"role": "system", "content": "Mind the budget."},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "done"}]},
    ]
    tools = [{"name": "Read", "input_schema": {"type": "object"}}]
    body, _ = upstream_body(model="a/b", kind="openai-compatible", env={"system_messages": "keep"},
                            messages=messages, tools=tools)  # fmt: skip
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "tool", "system"]
    assert body["messages"][3]["content"] == "Mind the budget."


def test_an_event_that_never_ends_is_bounded() -> None:
    from anthropic_gateway.translate import stream as stream_module

    t = stream_module.StreamTranslator(CTX, "msg_x")
    t.start()
    piece = b"data: " + b"x" * (1 << 20)
    out = b""
    for _ in range(20):
        out += t.feed(piece)
        if t.done:
            break
    assert t.error is not None and "larger than 16 MB" in t.error.message
    assert out.startswith(b"event: error")
