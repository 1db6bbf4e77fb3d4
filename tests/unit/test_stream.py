"""Stream-only behaviour of the stream translator: SSE framing from the upstream, timing of
message_delta, and failures after the 200 (issue 2, "Response translation" / "Errors"; mapping §8.9, §8.11)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from anthropic_gateway.errors import APIError, GatewayError, GatewayTimeoutError
from anthropic_gateway.translate.response import to_anthropic_message
from anthropic_gateway.translate.stream import StreamTranslator
from unit.helpers import (
    MESSAGE_ID,
    SPLITS,
    Chunk,
    Event,
    Split,
    check_well_formed,
    claude_reasoning,
    completion_of,
    ctx_for,
    error_chunk,
    finish,
    parse_events,
    reduce_events,
    run_stream,
    sdk_accumulate,
    sse,
    stream_message,
    text,
    tool,
    usage,
)


def _frame(chunk: Chunk) -> bytes:
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


def _ok(wire: bytes, split: Split = "whole") -> tuple[bytes, list[Event]]:
    raw, events = run_stream(wire, ctx_for(), split)
    check_well_formed(events)
    assert events[-1][0] == "message_stop"
    return raw, events


def _failed(wire: bytes, split: Split = "whole") -> dict[str, str]:
    _raw, events = run_stream(wire, ctx_for(), split)
    check_well_formed(events)
    name, data = events[-1]
    assert name == "error", f"expected an error event, got {[n for n, _ in events]}"
    assert [n for n, _ in events].count("error") == 1
    err: dict[str, str] = data["error"]
    return err


def _texts(events: list[Event]) -> str:
    return "".join(d["delta"].get("text", "") for n, d in events if n == "content_block_delta")


# --- upstream SSE framing ------------------------------------------------------------------------


def test_message_start_and_ping_first_with_input_estimate() -> None:
    t = StreamTranslator(ctx_for(model="claude-opus-4-8"), MESSAGE_ID, 1234)
    events = parse_events(t.start())
    assert [n for n, _ in events] == ["message_start", "ping"]
    message = events[0][1]["message"]
    assert message["id"] == MESSAGE_ID and message["model"] == "claude-opus-4-8"
    assert message["usage"]["input_tokens"] == 1234 and message["usage"]["output_tokens"] == 0


def test_several_payloads_in_one_read() -> None:
    wire = sse([text("a"), text("b"), text("c"), finish("stop"), usage(10, 3)])
    t = StreamTranslator(ctx_for(), MESSAGE_ID)
    out = t.start() + t.feed(wire)
    assert _texts(parse_events(out)) == "abc", "all events of one read come back from that read"
    events = parse_events(out + t.finish())
    check_well_formed(events)
    assert reduce_events(events)["usage"]["output_tokens"] == 3


@pytest.mark.parametrize("char", ["é", "€", "😀", "中"])
def test_utf8_character_split_across_reads(char: str) -> None:
    wire = sse([text(f"a{char}b"), finish("stop")])
    encoded = char.encode()
    at = wire.index(encoded) + 1  # inside the multi-byte character
    t = StreamTranslator(ctx_for(), MESSAGE_ID)
    out = t.start() + t.feed(wire[:at]) + t.feed(wire[at:]) + t.finish()
    events = parse_events(out)
    check_well_formed(events)
    assert _texts(events) == f"a{char}b"


def test_raw_utf8_in_upstream_json_split_byte_by_byte() -> None:
    # orjson writes non-ASCII as raw UTF-8, so byte-wise splitting cuts characters
    _raw, events = _ok(sse([text("naïve – 日本語 🎉"), finish("stop")]), "bytes")
    assert _texts(events) == "naïve – 日本語 🎉"


def test_sse_line_variants_crlf_and_no_space() -> None:
    wire = (b'data:{"choices":[{"index":0,"delta":{"content":"one"}}]}\r\n\r\n'
            b'data: {"choices":[{"index":0,"delta":{"content":" two"}}]}\r\n\r\n'
            b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n')  # fmt: skip
    for split in SPLITS:
        _, events = _ok(wire, split)
        assert _texts(events) == "one two"


def test_keep_alive_comments_ignored() -> None:
    wire = sse([b": OPENROUTER PROCESSING\n\n", text("Hi"), b": OPENROUTER PROCESSING\n\n", finish("stop")])
    for split in SPLITS:
        raw, events = _ok(wire, split)
        assert b"OPENROUTER" not in raw
        assert _texts(events) == "Hi"


def test_done_never_forwarded_and_sets_done() -> None:
    t = StreamTranslator(ctx_for(), MESSAGE_ID)
    out = t.start() + t.feed(sse([text("x"), finish("stop")]))
    assert t.done
    out += t.finish()
    assert b"[DONE]" not in out
    check_well_formed(parse_events(out))


def test_usage_only_chunk_with_empty_choices() -> None:
    _, events = _ok(sse([text("x"), finish("stop"), usage(20, 5, cached=10)]))
    u = reduce_events(events)["usage"]
    assert (u["input_tokens"], u["cache_read_input_tokens"], u["output_tokens"]) == (10, 10, 5)


def test_message_delta_held_until_the_trailing_usage_chunk() -> None:
    t = StreamTranslator(ctx_for(), MESSAGE_ID)
    out = t.start() + t.feed(_frame(text("Hi")) + _frame(finish("stop")))
    assert b"message_delta" not in out and b"message_stop" not in out
    later = t.feed(_frame(usage(100, 9)))
    assert b"message_delta" not in later
    tail = t.feed(b"data: [DONE]\n\n") + t.finish()
    events = parse_events(out + later + tail)
    check_well_formed(events)
    md = next(d for n, d in events if n == "message_delta")
    assert md["usage"]["output_tokens"] == 9 and md["usage"]["input_tokens"] == 100
    assert md["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}


def test_eof_after_finish_without_done_completes() -> None:
    _, events = _ok(sse([text("x"), finish("length")], done=False))
    assert reduce_events(events)["stop_reason"] == "max_tokens"


def test_repeated_usage_keeps_the_last() -> None:
    _, events = _ok(sse([text("x"), usage(10, 1), finish("stop"), usage(10, 4)]))
    assert reduce_events(events)["usage"]["output_tokens"] == 4


# --- stop sequences ------------------------------------------------------------------------------


def test_no_text_past_a_stop_sequence_and_upstream_reading_stops() -> None:
    ctx = ctx_for(stop_sequences=["STOP"])
    t = StreamTranslator(ctx, MESSAGE_ID)
    out = t.start()
    for piece in (_frame(text("Hello ST")), _frame(text("OP secret tail")), _frame(text(" more")), _frame(finish("stop"))):
        out += t.feed(piece)
    assert t.done, "after a match the gateway stops reading the upstream"
    out += t.finish()
    assert b"secret" not in out and b"more" not in out and b"ST\"" not in out
    events = parse_events(out)
    check_well_formed(events)
    message = reduce_events(events)
    assert message["content"] == [{"type": "text", "text": "Hello "}]
    assert (message["stop_reason"], message["stop_sequence"]) == ("stop_sequence", "STOP")


def test_stop_sequence_drops_later_tool_calls() -> None:
    chunks = [text("x STOP y"), tool(0, "call_1", "f", "{}"), finish("tool_calls")]
    ctx = ctx_for(stop_sequences=["STOP"])
    _, events = run_stream(sse(chunks), ctx)
    check_well_formed(events)
    streamed = reduce_events(events)
    plain = to_anthropic_message(completion_of(chunks), ctx_for(stop_sequences=["STOP"]), MESSAGE_ID)
    for message in (streamed, plain):
        assert message["content"] == [{"type": "text", "text": "x "}]
        assert message["stop_reason"] == "stop_sequence"


# --- failures after the 200 ------------------------------------------------------------------------


@pytest.mark.parametrize(("chunk", "etype"), [
    (error_chunk("Rate limit exceeded", 429, "rate_limit_exceeded"), "rate_limit_error"),
    (error_chunk("Provider overloaded", 503, "provider_overloaded"), "overloaded_error"),
    (error_chunk("Upstream timed out", 504, "timeout"), "timeout_error"),
    (error_chunk("Internal", 500), "api_error"),
    ({"error": {"code": 429, "message": "slow down"}}, "rate_limit_error"),
    ({"error": {"code": "server_error", "message": "boom"}}, "api_error"),
])  # fmt: skip
@pytest.mark.parametrize("split", SPLITS)
def test_mid_stream_error_chunk_is_one_error_event(chunk: Chunk, etype: str, split: Split) -> None:
    wire = sse([text("partial"), chunk, text("never"), finish("stop")])
    err = _failed(wire, split)
    assert err["type"] == etype
    assert err["message"]


def test_finish_reason_error_is_one_error_event() -> None:
    err = _failed(sse([text("partial"), finish("error"), text("never")]))
    assert err["type"] == "api_error"


def test_nothing_after_an_error_event() -> None:
    t = StreamTranslator(ctx_for(), MESSAGE_ID)
    out = t.start() + t.feed(_frame(text("a")) + _frame(error_chunk("boom", 502)))
    assert t.done
    assert t.feed(_frame(text("late")) + b"data: [DONE]\n\n") == b""
    assert t.finish() == b""
    assert t.fail(GatewayTimeoutError("late timeout")) == b""
    events = parse_events(out)
    check_well_formed(events)
    assert events[-1][0] == "error"


def test_malformed_upstream_json_is_an_error_event() -> None:
    err = _failed(sse([text("a"), b'data: {"choices": [{"delta": {"content": "x"\n\n', text("b"), finish("stop")]))
    assert err["type"] == "api_error"


def test_eof_without_finish_is_an_error_event() -> None:
    raw, events = run_stream(sse([text("partial answer")], done=False), ctx_for())
    check_well_formed(events)
    assert events[-1][0] == "error" and events[-1][1]["error"]["type"] == "api_error"
    assert b"message_stop" not in raw


def test_eof_mid_line_without_finish_is_an_error_event() -> None:
    wire = sse([text("partial")], done=False) + b'data: {"choices":[{"index":0,"delta":{"cont'
    for split in SPLITS:
        _failed(wire, split)


def test_fail_from_outside_is_one_error_event() -> None:
    t = StreamTranslator(ctx_for(), MESSAGE_ID)
    out = t.start() + t.feed(_frame(text("a")))
    out += t.fail(GatewayTimeoutError("The upstream was silent for 600 s"))
    out += t.finish()
    events = parse_events(out)
    check_well_formed(events)
    assert events[-1][1]["error"] == {"type": "timeout_error", "message": "The upstream was silent for 600 s"}


@pytest.mark.parametrize("args", ["garbage", "[1, 2]", "42", "null"])
def test_hopeless_tool_args_error_event_and_nonstream_error(args: str) -> None:
    chunks = [text("calling"), tool(0, "call_1", "f", args), finish("tool_calls")]
    raw, events = run_stream(sse(chunks), ctx_for())
    check_well_formed(events)
    assert events[-1][0] == "error" and events[-1][1]["error"]["type"] == "api_error"
    assert "input_json_delta" not in raw.decode(), "no invalid tool JSON reaches the client"
    with pytest.raises(GatewayError) as exc:
        to_anthropic_message(completion_of(chunks), ctx_for(), MESSAGE_ID)
    assert exc.value.error_type == "api_error"


def test_sdk_accumulator_never_sees_invalid_partial_json() -> None:
    chunks = [tool(0, "call_1", "f", "{'a': "), tool(0, None, None, "'b',}"), finish("tool_calls")]
    _, events = run_stream(sse(chunks), ctx_for())
    check_well_formed(events)
    assert sdk_accumulate(events)["content"][0]["input"] == {"a": "b"}


# --- non-streamed errors inside a 200 -----------------------------------------------------------------


def test_nonstream_error_in_200_body_raises() -> None:
    body = {"error": {"code": 429, "message": "Rate limit exceeded", "metadata": {"error_type": "rate_limit_exceeded"}}}
    with pytest.raises(GatewayError) as exc:
        to_anthropic_message(body, ctx_for(), MESSAGE_ID)
    assert exc.value.error_type == "rate_limit_error"


def test_nonstream_finish_reason_error_raises() -> None:
    body = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "x"}, "finish_reason": "error"}]}
    with pytest.raises(GatewayError):
        to_anthropic_message(body, ctx_for(), MESSAGE_ID)


def test_nonstream_no_choices_raises_api_error() -> None:
    with pytest.raises(APIError):
        to_anthropic_message({"id": "gen-1", "choices": []}, ctx_for(), MESSAGE_ID)


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


@pytest.mark.parametrize(
    ("delta", "field"),
    [
        ({"content": 5}, "content"),
        ({"content": {"text": "x"}}, "content"),
        ({"content": ["x"]}, "content"),
        ({"refusal": 1}, "refusal"),
        ({"reasoning": {"a": 1}}, "reasoning"),
        ({"tool_calls": 5}, "tool_calls"),
        ({"tool_calls": {"index": 0}}, "tool_calls"),
        ({"reasoning_details": "x"}, "reasoning_details"),
    ],
)
@pytest.mark.parametrize("split", ["whole", "bytes"])
def test_a_delta_field_of_the_wrong_type_ends_in_one_error_event_naming_it(
    delta: dict[str, Any], field: str, split: Split
) -> None:
    # Before: a number as content raised TypeError inside the translator (the pump's catch-all
    # then sent "Internal gateway error"); an object as content went out as the text_delta's `text`.
    wire = sse([text("ok"), {"choices": [{"index": 0, "delta": delta}]}, text("late"), finish("stop")])  # type: ignore[list-item]
    raw, events = run_stream(wire, CTX, split)
    check_well_formed(events)
    assert events[-1][0] == "error"
    assert events[-1][1]["error"] == {
        "type": "api_error", "message": f"The upstream sent a malformed stream chunk (delta.{field})",
    }  # fmt: skip
    assert b"late" not in raw and b"message_stop" not in raw


def test_empty_or_null_delta_fields_mean_absent() -> None:
    chunk = {"choices": [{"index": 0, "delta": {"content": "b", "reasoning": None, "reasoning_details": [],
                                                "refusal": None, "tool_calls": None}}]}  # fmt: skip
    message = stream_message([text("a"), chunk, {"choices": [{"index": 0, "delta": {"content": 0}}]},  # type: ignore[list-item]
                              finish("stop")], CTX)  # fmt: skip
    assert _blocks(message) == [("text", "ab")]


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
