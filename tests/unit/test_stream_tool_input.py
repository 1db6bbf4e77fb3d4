"""Tool input streamed as it is generated (issue 12 §3): each upstream argument fragment goes out as an
input_json_delta when it arrives, for backend kinds that stream tool input; the others keep buffering
and repairing. Checked against the official SDK accumulator."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from anthropic_gateway.translate.context import RequestContext
from anthropic_gateway.translate.stream import StreamTranslator
from unit.helpers import (
    MESSAGE_ID,
    SPLITS,
    Chunk,
    Event,
    Kind,
    Split,
    comparable,
    ctx_for,
    finish,
    nonstream_message,
    parse_events,
    run_stream,
    sdk_accumulate,
    sse,
    stream_message,
    text,
    tool,
    upstream_body,
    usage,
)


def streaming_ctx(kind: Kind = "openrouter", **fields: Any) -> RequestContext:
    ctx = upstream_body(kind=kind, stream=True, **fields)[1]
    assert ctx.stream_tool_input
    return ctx


def _frame(chunk: Chunk) -> bytes:
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


def _json_deltas(events: list[Event]) -> list[tuple[int, str]]:
    return [(d["index"], d["delta"]["partial_json"]) for n, d in events
            if n == "content_block_delta" and d["delta"]["type"] == "input_json_delta"]  # fmt: skip


@pytest.mark.parametrize(("kind", "streams"), [("openrouter", True), ("openai", True), ("openai-compatible", False)])
def test_the_backend_kind_decides(kind: Kind, streams: bool) -> None:
    assert upstream_body(kind=kind, stream=True)[1].stream_tool_input is streams
    assert upstream_body(kind=kind, stream=False)[1].stream_tool_input is False  # a JSON answer is whole anyway
    env = {"stream_tool_input": "false" if streams else "true"}
    assert upstream_body(kind=kind, stream=True, env=env)[1].stream_tool_input is not streams


def test_each_fragment_goes_out_when_it_arrives() -> None:
    t = StreamTranslator(streaming_ctx(), MESSAGE_ID)
    t.start()
    out = parse_events(t.feed(_frame(tool(0, "call_1", "write_file", ""))))
    assert [(n, d["content_block"]) for n, d in out] == [
        ("content_block_start", {"type": "tool_use", "id": "call_1", "name": "write_file", "input": {}})
    ]
    for piece in ['{"path": "a.txt", ', '"content": "line 1\\n', 'line 2"}']:
        out = parse_events(t.feed(_frame(tool(0, None, None, piece))))
        assert out == [("content_block_delta", {"type": "content_block_delta", "index": 0,
                                                "delta": {"type": "input_json_delta", "partial_json": piece}})]  # fmt: skip
    out = parse_events(t.feed(_frame(finish("tool_calls")) + _frame(usage(10, 20)) + b"data: [DONE]\n\n"))
    out += parse_events(t.finish())
    assert [n for n, _ in out] == ["content_block_stop", "message_delta", "message_stop"]
    assert out[1][1]["delta"] == {"stop_reason": "tool_use", "stop_sequence": None}


SCRIPTS: dict[str, list[Chunk]] = {
    "one call": [tool(0, "call_1", "f", ""), tool(0, None, None, '{"a": '), tool(0, None, None, "1}"),
                 finish("tool_calls")],
    "arguments in the opening chunk": [tool(0, "call_1", "f", '{"a": 1'), tool(0, None, None, "}"), finish("tool_calls")],
    "sequential calls": [tool(0, "call_1", "f", '{"a": 1}'), tool(1, "call_2", "g", ""), tool(1, None, None, '{"b": 2}'),
                         finish("tool_calls")],
    "interleaved calls": [tool(0, "call_a", "f", ""), tool(1, "call_b", "f", ""), tool(0, None, None, '{"city": "Os'),
                          tool(1, None, None, '{"city": "Lima"}'), tool(0, None, None, 'lo"}'), finish("tool_calls")],
    "text then a call": [text("Let me look."), tool(0, "call_1", "f", '{"q": "x"}'), finish("tool_calls")],
    "a call then text": [tool(0, "call_1", "f", '{"q": "x"}'), text("Done."), finish("stop")],
    "name after the arguments": [tool(0, "call_1", None, '{"a":'), tool(0, None, "f", ""), tool(0, None, None, " 1}"),
                                 finish("tool_calls")],
    "no arguments": [tool(0, "call_1", "f", ""), finish("tool_calls")],
    "empty object": [tool(0, "call_1", "f", "{}"), finish("tool_calls")],
    "no index, no id on fragments": [
        {"choices": [{"index": 0, "delta": {"tool_calls": [{"id": "c1", "function": {"name": "f", "arguments": ""}}]},
                      "finish_reason": None}]},
        {"choices": [{"index": 0, "delta": {"tool_calls": [{"function": {"arguments": '{"a": 1}'}}]},
                      "finish_reason": None}]},
        finish("tool_calls"),
    ],
}


SAME_AS_JSON = set(SCRIPTS) - {"a call then text", "no index, no id on fragments"}


@pytest.mark.parametrize("split", SPLITS)
@pytest.mark.parametrize("name", list(SCRIPTS))
def test_streaming_gives_the_same_message_as_buffering_and_json(name: str, split: Split) -> None:
    chunks = SCRIPTS[name]
    streamed = stream_message(chunks, streaming_ctx(), split)  # grammar + SDK accumulator cross-checked
    buffered = stream_message(chunks, ctx_for(), split)
    assert comparable(streamed) == comparable(buffered)
    if name in SAME_AS_JSON:  # (a JSON answer has one text, then the calls; the fake has no index-less form)
        assert comparable(streamed)["content"] == comparable(nonstream_message(chunks, ctx_for()))["content"]


def test_interleaved_call_waits_for_the_streaming_one_then_goes_out_whole() -> None:
    _, events = run_stream(sse(SCRIPTS["interleaved calls"]), streaming_ctx())
    assert _json_deltas(events) == [(0, '{"city": "Os'), (0, 'lo"}'), (1, '{"city":"Lima"}')]


def test_arguments_before_the_name_wait_for_it() -> None:
    _, events = run_stream(sse(SCRIPTS["name after the arguments"]), streaming_ctx())
    assert _json_deltas(events) == [(0, '{"a":'), (0, " 1}")]


def test_truncated_input_ends_as_anthropic_truncates_it() -> None:
    """Cut by max_tokens mid-string: the block closes after what was sent and the message says
    max_tokens; the SDK's partial-JSON parser keeps the complete fields, as with Anthropic."""
    chunks = [tool(0, "call_1", "write_file", '{"path": "a.txt", "content": "hel'), finish("length")]
    _, events = run_stream(sse(chunks), streaming_ctx())
    assert [n for n, _ in events] == ["message_start", "ping", "content_block_start", "content_block_delta",
                                      "content_block_stop", "message_delta", "message_stop"]  # fmt: skip
    assert events[-2][1]["delta"]["stop_reason"] == "max_tokens"
    message = sdk_accumulate(events)
    assert message["content"][0]["input"] == {"path": "a.txt"}
    assert message["stop_reason"] == "max_tokens"


def test_invalid_input_reaches_the_sdk_as_anthropics_unbuffered_stream_does() -> None:
    """Not JSON at all: the block still ends normally; the SDK accumulator raises its own error."""
    chunks = [tool(0, "call_1", "f", "{a: 1}"), finish("tool_calls")]
    _, events = run_stream(sse(chunks), streaming_ctx())
    assert [n for n, _ in events][-4:] == ["content_block_delta", "content_block_stop", "message_delta",
                                           "message_stop"]  # fmt: skip
    with pytest.raises(ValueError, match="Unable to parse tool parameter JSON from model"):
        sdk_accumulate(events)


def test_buffering_kinds_still_repair() -> None:
    chunks = [tool(0, "call_1", "f", "{'a': 1,}"), finish("tool_calls")]
    message = stream_message(chunks, upstream_body(kind="openai-compatible", stream=True)[1])
    assert message["content"][0]["input"] == {"a": 1}


def test_a_stop_sequence_in_later_text_keeps_a_call_already_sent() -> None:
    chunks = [tool(0, "call_1", "f", '{"a": 1}'), text("x STOP y"), finish("stop")]
    message = stream_message(chunks, streaming_ctx(stop_sequences=["STOP"]))
    assert [b["type"] for b in message["content"]] == ["tool_use", "text"]
    assert message["content"][1]["text"] == "x "
    assert (message["stop_reason"], message["stop_sequence"]) == ("stop_sequence", "STOP")


def test_renamed_tool_gets_the_clients_name_back() -> None:
    long_name = "t" * 80  # longer than upstreams accept: sent under a shortened name
    ctx = streaming_ctx(tools=[{"name": long_name, "input_schema": {"type": "object"}}])
    upstream_name = next(iter(ctx.tool_names))
    message = stream_message([tool(0, "call_1", upstream_name, '{"x": 1}'), finish("tool_calls")], ctx)
    assert message["content"][0]["name"] == long_name
