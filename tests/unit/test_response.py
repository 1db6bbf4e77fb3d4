"""Upstream answer → Anthropic Message, every case through BOTH the non-streaming translator and the
stream translator (under several network-read splittings), which must agree (issue 2, "Response
translation"; mapping §8.5-§8.8, §8.10-§8.11)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from anthropic_gateway.translate.request import RequestContext
from unit.helpers import (
    MESSAGE_ID,
    SPLITS,
    TOOL_ID_RE,
    Chunk,
    Split,
    claude_detail,
    claude_reasoning,
    ctx_for,
    details,
    finish,
    nonstream_message,
    reasoning,
    refusal,
    stream_message,
    text,
    tool,
    usage,
)

GENUINE_SIG = "EqQBCkYIBxgCKkDgenuine-claude-signature=="
ZERO_USAGE = {"input_tokens": 0, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": 0}


@dataclass
class Case:
    chunks: list[Chunk]
    content: list[dict[str, Any]]
    stop_reason: str
    stop_sequence: str | None = None
    usage: dict[str, int] = field(default_factory=lambda: dict(ZERO_USAGE))
    ctx: dict[str, Any] = field(default_factory=dict)
    # checks on the content that exact comparison cannot express (generated ids, envelopes)
    check: Callable[[list[dict[str, Any]]], list[dict[str, Any]]] | None = None


def _envelope(block: dict[str, Any]) -> dict[str, Any]:
    assert block["signature"].startswith("agw1.") and len(block["signature"]) > len("agw1.")
    return {k: v for k, v in block.items() if k != "signature"}


def _generated_ids(content: list[dict[str, Any]]) -> list[dict[str, Any]]:
    ids = [b["id"] for b in content if b["type"] == "tool_use"]
    assert all(TOOL_ID_RE.match(i) for i in ids), ids
    assert len(set(ids)) == len(ids), f"tool_use ids not unique: {ids}"
    return [{k: v for k, v in b.items() if k != "id"} if b["type"] == "tool_use" else b for b in content]


def tu(id: str, name: str, input: dict[str, Any]) -> dict[str, Any]:
    return {"type": "tool_use", "id": id, "name": name, "input": input}


def txt(s: str) -> dict[str, Any]:
    return {"type": "text", "text": s}


CASES: dict[str, Case] = {
    "text": Case([text("Hello"), text(", world"), finish("stop")], [txt("Hello, world")], "end_turn"),
    "stop_is_end_turn_with_usage": Case(
        [text("Hi"), finish("stop"), usage(1000, 50)], [txt("Hi")], "end_turn",
        usage={"input_tokens": 1000, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": 50},
    ),
    "length_is_max_tokens": Case([text("Trunc"), finish("length")], [txt("Trunc")], "max_tokens"),
    "content_filter_is_refusal_keeping_text": Case([text("Partial"), finish("content_filter")], [txt("Partial")], "refusal"),
    # mapping §8.6: message.refusal → a text block with the refusal and stop_reason "refusal"
    "refusal_field": Case([refusal("I can't help with that."), finish("stop")], [txt("I can't help with that.")], "refusal"),
    "tool_call_with_finish_stop_is_tool_use": Case(
        [tool(0, "call_1", "get_weather", '{"city": "Paris"}'), finish("stop")],
        [tu("call_1", "get_weather", {"city": "Paris"})], "tool_use",
    ),
    "text_then_tool": Case(
        [text("Let me check."), tool(0, "call_1", "get_weather", ""), tool(0, None, None, '{"city":'),
         tool(0, None, None, ' "Paris"}'), finish("tool_calls")],
        [txt("Let me check."), tu("call_1", "get_weather", {"city": "Paris"})], "tool_use",
    ),
    "tool_args_split_across_chunks": Case(
        [tool(0, "call_1", "search", '{"q'), tool(0, None, None, 'uery": "caf'), tool(0, None, None, 'é", "n": [1,'),
         tool(0, None, None, " 2]}"), finish("tool_calls")],
        [tu("call_1", "search", {"query": "café", "n": [1, 2]})], "tool_use",
    ),
    "parallel_tool_calls_interleaved": Case(
        [tool(0, "call_a", "get_weather", '{"city": '), tool(1, "call_b", "get_time", '{"tz": '),
         tool(0, None, None, '"Paris"}'), tool(1, None, None, '"CET"}'), finish("tool_calls")],
        [tu("call_a", "get_weather", {"city": "Paris"}), tu("call_b", "get_time", {"tz": "CET"})], "tool_use",
    ),
    "tool_without_arguments": Case(
        [tool(0, "call_1", "list_files", None), finish("tool_calls")], [tu("call_1", "list_files", {})], "tool_use",
    ),
    "usage_mapping_with_cache": Case(
        [text("ok"), finish("stop"), usage(1000, 42, cached=600, written=300)], [txt("ok")], "end_turn",
        usage={"input_tokens": 100, "cache_creation_input_tokens": 300, "cache_read_input_tokens": 600, "output_tokens": 42},
    ),
    "usage_floor_at_zero": Case(
        [text("ok"), finish("stop"), usage(500, 7, cached=400, written=200)], [txt("ok")], "end_turn",
        usage={"input_tokens": 0, "cache_creation_input_tokens": 200, "cache_read_input_tokens": 400, "output_tokens": 7},
    ),
    "no_finish_reason_at_done_is_end_turn": Case([text("cut short")], [txt("cut short")], "end_turn"),
    "empty_completion": Case([finish("stop")], [], "end_turn"),
    "empty_content_strings_ignored": Case([text(""), text("x"), text(""), finish("stop")], [txt("x")], "end_turn"),
    "thinking_from_reasoning_string": Case(
        [reasoning("Six times "), reasoning("seven."), text("42"), finish("stop")],
        [{"type": "thinking", "thinking": "Six times seven."}, txt("42")], "end_turn",
    ),
    "thinking_from_reasoning_content": Case(
        [reasoning("deep ", "reasoning_content"), reasoning("thought", "reasoning_content"), text("A"), finish("stop")],
        [{"type": "thinking", "thinking": "deep thought"}, txt("A")], "end_turn",
    ),
    "thinking_then_tool": Case(
        [reasoning("need weather"), tool(0, "call_1", "get_weather", '{"city": "Rome"}'), finish("tool_calls")],
        [{"type": "thinking", "thinking": "need weather"}, tu("call_1", "get_weather", {"city": "Rome"})], "tool_use",
    ),
    "other_format_reasoning_details": Case(
        [details({"type": "reasoning.summary", "summary": "Plan: ", "format": "openai-responses-v1", "index": 0}),
         details({"type": "reasoning.summary", "summary": "answer.", "format": "openai-responses-v1", "index": 0},
                 {"type": "reasoning.encrypted", "data": "enc", "format": "openai-responses-v1", "index": 1}),
         text("Done"), finish("stop")],
        [{"type": "thinking", "thinking": "Plan: answer."}, txt("Done")], "end_turn",
    ),
    "claude_reasoning_details_signature_preserved": Case(
        [claude_reasoning("Let me "), claude_reasoning("think."), claude_reasoning(signature=GENUINE_SIG),
         text("Answer"), finish("stop")],
        [{"type": "thinking", "thinking": "Let me think.", "signature": GENUINE_SIG}, txt("Answer")], "end_turn",
    ),
    "claude_signature_after_text_started_not_lost": Case(
        [claude_reasoning("Let me think."), text("Ans"), text("wer"), claude_reasoning(signature=GENUINE_SIG),
         finish("stop")],
        [{"type": "thinking", "thinking": "Let me think.", "signature": GENUINE_SIG}, txt("Answer")], "end_turn",
    ),
    "claude_signature_after_tool_call_started_not_lost": Case(
        [claude_reasoning("Look up."), tool(0, "toolu_01", "get_weather", '{"city": "Oslo"}'),
         claude_reasoning(signature=GENUINE_SIG), finish("tool_calls")],
        [{"type": "thinking", "thinking": "Look up.", "signature": GENUINE_SIG},
         tu("toolu_01", "get_weather", {"city": "Oslo"})], "tool_use",
    ),
    "claude_redacted_thinking": Case(
        [{"id": "gen-1", "choices": [{"index": 0, "delta": {"reasoning_details": [
            {"type": "reasoning.encrypted", "data": "REDACTED", "format": "anthropic-claude-v1", "index": 0}]}}]},
         text("Hi"), finish("stop")],
        [{"type": "redacted_thinking", "data": "REDACTED"}, txt("Hi")], "end_turn",
    ),
    "tool_ids_sanitised": Case(
        [tool(0, "functions.Bash:0", "Bash", '{"command": "ls"}'), finish("tool_calls")],
        [{"type": "tool_use", "name": "Bash", "input": {"command": "ls"}}], "tool_use", check=_generated_ids,
    ),
    "duplicate_and_missing_tool_ids_made_unique": Case(
        [tool(0, "call_1", "a", "{}"), tool(1, "call_1", "b", "{}"), tool(2, None, "c", "{}"), finish("tool_calls")],
        [{"type": "tool_use", "name": n, "input": {}} for n in "abc"], "tool_use", check=_generated_ids,
    ),
    "malformed_args_trailing_comma_repaired": Case(
        [tool(0, "call_1", "f", '{"a": 1, "b": [1, 2,],}'), finish("tool_calls")], [tu("call_1", "f", {"a": 1, "b": [1, 2]})],
        "tool_use",
    ),
    "malformed_args_single_quotes_repaired": Case(
        [tool(0, "call_1", "f", "{'path': 'a.txt'}"), finish("tool_calls")], [tu("call_1", "f", {"path": "a.txt"})],
        "tool_use",
    ),
    "stop_sequence_matched_locally": Case(
        [text("Hello ST"), text("OP and more"), finish("stop")], [txt("Hello ")], "stop_sequence", "STOP",
        ctx={"stop_sequences": ["STOP"]},
    ),
    "stop_sequence_split_over_three_chunks": Case(
        [text("one END"), text("_OF"), text("_TEXT tail"), finish("stop")], [txt("one ")], "stop_sequence", "END_OF_TEXT",
        ctx={"stop_sequences": ["END_OF_TEXT"]},
    ),
    "stop_sequence_beyond_the_upstream_limit": Case(
        [text("a b c S6 d"), finish("stop")], [txt("a b c ")], "stop_sequence", "S6",
        ctx={"stop_sequences": ["S1", "S2", "S3", "S4", "S5", "S6"]},
    ),
    "earliest_stop_sequence_wins": Case(
        [text("xx BETA yy ALPHA"), finish("stop")], [txt("xx ")], "stop_sequence", "BETA",
        ctx={"stop_sequences": ["ALPHA", "BETA"]},
    ),
    "partial_stop_sequence_prefix_is_released": Case(
        [text("the ST"), text("ART of it"), finish("stop")], [txt("the START of it")], "end_turn",
        ctx={"stop_sequences": ["STOP"]},
    ),
    "stop_sequence_at_end_of_text": Case(
        [text("done."), text("STOP"), finish("stop")], [txt("done.")], "stop_sequence", "STOP",
        ctx={"stop_sequences": ["STOP"]},
    ),
    "tool_name_mapped_back": Case(
        [tool(0, "call_1", "__NAME__", "{}"), finish("tool_calls")], [], "tool_use",
        ctx={"tools": "long"},
    ),
}

LONG_NAME = "mcp__some_very_long_server_name__and_an_even_longer_tool_name_exceeding_limits"


def _ctx(case: Case) -> tuple[RequestContext, list[Chunk], list[dict[str, Any]]]:
    fields = dict(case.ctx)
    chunks, content = case.chunks, case.content
    if fields.pop("tools", None) == "long":
        schema = {"type": "object", "properties": {}}
        from unit.helpers import upstream_body

        body, ctx = upstream_body(tools=[{"name": LONG_NAME, "input_schema": schema}], **fields)
        upstream_name = body["tools"][0]["function"]["name"]
        chunks = [tool(0, "call_1", upstream_name, "{}"), finish("tool_calls")]
        content = [tu("call_1", LONG_NAME, {})]
        return ctx, chunks, content
    return ctx_for(**fields), chunks, content


def _expected(case: Case, content: list[dict[str, Any]]) -> dict[str, Any]:
    return {"id": MESSAGE_ID, "type": "message", "role": "assistant", "model": "claude-sonnet-5", "content": content,
            "stop_reason": case.stop_reason, "stop_sequence": case.stop_sequence, "usage": case.usage}  # fmt: skip


def _normalise(case: Case, message: dict[str, Any]) -> dict[str, Any]:
    """Envelope signatures (opaque, minted by the gateway) are checked for shape and then dropped;
    genuine signatures stay and are compared exactly."""
    out = dict(message)
    content = [_envelope(b) if b["type"] == "thinking" and b["signature"].startswith("agw1.") else b
               for b in message["content"]]  # fmt: skip
    if case.check is not None:
        content = case.check(content)
    out["content"] = content
    out["usage"] = {k: message["usage"].get(k) for k in ZERO_USAGE}
    return out


@pytest.mark.parametrize("name", list(CASES))
def test_nonstream(name: str) -> None:
    case = CASES[name]
    ctx, chunks, content = _ctx(case)
    message = nonstream_message(chunks, ctx)
    assert _normalise(case, message) == _expected(case, content)


@pytest.mark.parametrize("split", SPLITS)
@pytest.mark.parametrize("name", list(CASES))
def test_stream(name: str, split: Split) -> None:
    case = CASES[name]
    ctx, chunks, content = _ctx(case)
    message = stream_message(chunks, ctx, split)
    assert _normalise(case, message) == _expected(case, content)


@pytest.mark.parametrize("name", list(CASES))
def test_stream_and_nonstream_agree(name: str) -> None:
    case = CASES[name]
    ctx, chunks, _ = _ctx(case)
    a = nonstream_message(chunks, ctx)
    ctx2, _, _ = _ctx(case)
    b = stream_message(chunks, ctx2)
    if case.check is _generated_ids:
        a["content"], b["content"] = _generated_ids(a["content"]), _generated_ids(b["content"])
    a["usage"] = {k: a["usage"].get(k) for k in ZERO_USAGE}
    b["usage"] = {k: b["usage"].get(k) for k in ZERO_USAGE}
    assert a == b


def test_content_order_thinking_text_tool_use() -> None:
    chunks = [reasoning("hmm"), text("Checking."), tool(0, "call_1", "f", "{}"), finish("tool_calls")]
    for message in (nonstream_message(chunks, ctx_for()), stream_message(chunks, ctx_for())):
        assert [b["type"] for b in message["content"]] == ["thinking", "text", "tool_use"]


def test_thinking_signature_never_empty() -> None:
    for chunks in ([reasoning("r"), text("t"), finish("stop")], [claude_reasoning("unsigned"), text("t"), finish("stop")]):
        for message in (nonstream_message(chunks, ctx_for()), stream_message(chunks, ctx_for())):
            sig = message["content"][0]["signature"]
            assert isinstance(sig, str) and sig, "Claude Code drops thinking blocks without a signature"


def test_nonstream_claude_details_in_openrouter_merged_form() -> None:
    """OpenRouter's non-streamed form: one detail per block with the signature inline."""
    completion = {"choices": [{"index": 0, "finish_reason": "stop", "message": {
        "role": "assistant", "content": "Hi", "reasoning": "Let me think.",
        "reasoning_details": [claude_detail("Let me think.", GENUINE_SIG, 0)]}}]}  # fmt: skip
    from anthropic_gateway.translate.response import to_anthropic_message

    message = to_anthropic_message(completion, ctx_for(), MESSAGE_ID)
    assert message["content"] == [{"type": "thinking", "thinking": "Let me think.", "signature": GENUINE_SIG}, txt("Hi")]


def test_nonstream_message_has_msg_id_and_null_stop_sequence() -> None:
    message = nonstream_message([text("x"), finish("stop")], ctx_for())
    assert message["id"] == MESSAGE_ID and message["stop_sequence"] is None
    assert json.dumps(message)  # plain JSON


def _stream_only(chunks: Sequence[Chunk], ctx: RequestContext | None = None) -> dict[str, Any]:
    return stream_message(list(chunks), ctx or ctx_for())


def test_tool_use_stop_reason_survives_later_text_in_stream() -> None:
    message = _stream_only([tool(0, "call_1", "f", "{}"), text("after"), finish("stop")])
    assert message["stop_reason"] == "tool_use"
    assert [b["type"] for b in message["content"]] == ["tool_use", "text"]


# --- the usual answer's fast path (to_anthropic_message's _plain) ------------------------------

PLAIN = [
    {"choices": [{"message": {"role": "assistant", "content": "Hello"}, "finish_reason": "stop"}]},
    {"choices": [{"message": {"role": "assistant", "content": "Hel", "refusal": None, "annotations": [],
                              "reasoning": None, "tool_calls": []}, "finish_reason": "length"}],
     "usage": {"prompt_tokens": 12, "completion_tokens": 3, "prompt_tokens_details": {"cached_tokens": 4}}},
    {"choices": [{"message": {"role": "assistant", "content": None}, "finish_reason": "content_filter"}]},
    {"choices": [{"message": {"role": "assistant", "content": ""}, "finish_reason": None,
                  "native_finish_reason": "pause_turn"}], "usage": {}},
    {"choices": [{"message": {"content": "x", "reasoning_content": ""}, "finish_reason": "tool_calls"}],
     "model": "m", "usage": {"prompt_tokens": 5, "completion_tokens": 1, "cost": 0.1}},
    {"choices": [{"message": {"content": "x"}, "finish_reason": "stop", "native_finish_reason": "max_tokens"}]},
]


@pytest.mark.parametrize("completion", PLAIN)
def test_a_plain_answer_is_the_general_paths_message(completion: dict[str, Any]) -> None:
    from anthropic_gateway.translate.response import _plain, to_anthropic_message
    from anthropic_gateway.upstream_errors import CallInfo

    ctx, info = RequestContext(client_model="claude-x", target_is_claude=False), CallInfo(input_estimate=7)
    assert _plain(completion, ctx) is not None
    assert _plain({**completion, "error": None}, ctx) is None
    fast = to_anthropic_message(completion, ctx, MESSAGE_ID, info)
    # "error": null is no error to the general path, and keeps the answer off the fast one
    general = to_anthropic_message({**completion, "error": None}, ctx, MESSAGE_ID, info)
    assert json.dumps(fast) == json.dumps(general)  # the same message, key order included
