"""Context management through the official SDK's beta client (issue 12 §4): the gateway applies the
edits to what the upstream receives and answers `context_management.applied_edits` in the shapes of
BetaContextManagementResponse, streamed and not; count_tokens reports `original_input_tokens`."""

from __future__ import annotations

from typing import Any

import anthropic
import pytest

from conftest import GATEWAY_ENV, GatewayProcess
from e2e import MODEL
from fake_upstream import FakeUpstream, Reply, finish_chunk, text_chunk, usage_chunk

BETA = ["context-management-2025-06-27"]
PLACEHOLDER = "[Old tool result content cleared]"
READ_TOOL: Any = {"name": "read_file", "description": "Read a file",
                  "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}}}  # fmt: skip


def history(n: int, words: int = 3000) -> list[dict[str, Any]]:
    msgs: list[dict[str, Any]] = [{"role": "user", "content": "Read the files."}]
    for i in range(n):
        msgs.append({"role": "assistant", "content": [
            {"type": "tool_use", "id": f"toolu_{i}", "name": "read_file", "input": {"path": f"f{i}.py"}}]})  # fmt: skip
        msgs.append({"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": f"toolu_{i}", "content": f"file {i}: " + "x y " * words}]})  # fmt: skip
    return msgs


EDIT: Any = {"edits": [{"type": "clear_tool_uses_20250919", "trigger": {"type": "input_tokens", "value": 5000},
                        "keep": {"type": "tool_uses", "value": 2}}]}  # fmt: skip
ANSWER = [text_chunk("Summary."), finish_chunk("stop"), usage_chunk(900, 3)]


def tool_contents(body: dict[str, Any]) -> list[str]:
    return [m["content"] for m in body["messages"] if m["role"] == "tool"]


@pytest.mark.parametrize("streaming", [False, True])
def test_old_tool_results_are_cleared_before_the_upstream_sees_them(
    client: anthropic.Anthropic, upstream: FakeUpstream, streaming: bool
) -> None:
    upstream.expect(Reply.auto(ANSWER))
    params: dict[str, Any] = {"model": MODEL, "max_tokens": 100, "messages": history(5), "tools": [READ_TOOL],
                              "context_management": EDIT, "betas": BETA}  # fmt: skip
    if streaming:
        with client.beta.messages.stream(**params) as s:
            msg = s.get_final_message()
    else:
        msg = client.beta.messages.create(**params)
    sent = tool_contents(upstream.last_body)
    assert sent[:3] == [PLACEHOLDER] * 3
    assert all(c.startswith("file ") for c in sent[3:]) and len(sent) == 5
    assert "context_management" not in upstream.last_body
    assert msg.context_management is not None
    (edit,) = msg.context_management.applied_edits
    assert edit.type == "clear_tool_uses_20250919" and edit.cleared_tool_uses == 3
    assert edit.cleared_input_tokens > 3 * 5000  # each cleared result held ~6000 tokens
    assert msg.content[0].type == "text" and msg.stop_reason == "end_turn"


def test_the_streamed_report_is_on_the_final_message_delta(client: anthropic.Anthropic, upstream: FakeUpstream) -> None:
    upstream.expect(Reply.stream(ANSWER))
    with client.beta.messages.stream(model=MODEL, max_tokens=100, messages=history(4), context_management=EDIT,
                                     betas=BETA) as s:  # fmt: skip
        events = list(s)
    start = next(e for e in events if e.type == "message_start")
    delta = next(e for e in events if e.type == "message_delta")
    assert start.message.context_management is None
    assert delta.context_management is not None
    assert [e.cleared_tool_uses for e in delta.context_management.applied_edits] == [2]


def test_nothing_to_clear_reports_no_edit(client: anthropic.Anthropic, upstream: FakeUpstream) -> None:
    """Claude Code's own setting (keep all thinking) changes nothing: an empty list."""
    upstream.expect(Reply.auto(ANSWER))
    msg = client.beta.messages.create(
        model=MODEL, max_tokens=100, messages=history(1, words=10), betas=BETA,
        thinking={"type": "adaptive"}, context_management={"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
    )  # fmt: skip
    assert msg.context_management is not None and msg.context_management.applied_edits == []
    assert tool_contents(upstream.last_body) == ["file 0: " + "x y " * 10]


def test_without_context_management_the_response_has_none(client: anthropic.Anthropic, upstream: FakeUpstream) -> None:
    upstream.expect(Reply.auto(ANSWER))
    raw = client.beta.messages.with_raw_response.create(model=MODEL, max_tokens=100, messages=history(1, words=5))
    assert "context_management" not in raw.http_response.json()


def test_count_tokens_counts_after_the_edits(client: anthropic.Anthropic, upstream: FakeUpstream) -> None:
    plain = client.beta.messages.count_tokens(model=MODEL, messages=history(5), betas=BETA)
    counted = client.beta.messages.count_tokens(model=MODEL, messages=history(5), context_management=EDIT, betas=BETA)
    assert counted.context_management is not None
    assert counted.context_management.original_input_tokens == plain.input_tokens
    assert counted.input_tokens < plain.input_tokens - 3 * 5000
    assert upstream.requests == []  # counted locally


def test_a_bad_edit_is_a_400_naming_the_field(client: anthropic.Anthropic, upstream: FakeUpstream) -> None:
    with pytest.raises(anthropic.BadRequestError) as err:
        client.beta.messages.create(
            model=MODEL, max_tokens=100, messages=history(1, words=5), betas=BETA,
            context_management={"edits": [{"type": "clear_tool_uses_20250919", "keep": {"type": "tool_uses",
                                                                                      "value": -1}}]},
        )  # fmt: skip
    assert err.value.status_code == 400
    body: Any = err.value.body
    assert body["error"]["type"] == "invalid_request_error"
    assert body["error"]["message"].startswith("context_management.edits.0.keep.value:")
    assert upstream.requests == []


def test_a_native_target_gets_the_field_unchanged(spawn_gateway: Any, upstream: FakeUpstream) -> None:
    env = {**GATEWAY_ENV, "ANTHROPIC_GATEWAY_BACKEND_KIND": "openrouter",
           "ANTHROPIC_GATEWAY_NATIVE_CONTEXT_MANAGEMENT": "true", "ANTHROPIC_GATEWAY_SONNET_MODEL": "anthropic/claude-x"}
    gw: GatewayProcess = spawn_gateway(env)
    report = {"applied_edits": [{"type": "clear_tool_uses_20250919", "cleared_tool_uses": 3,
                                 "cleared_input_tokens": 17000}]}  # fmt: skip
    body = {"id": "gen-1", "object": "chat.completion", "model": "anthropic/claude-x", "context_management": report,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Summary."}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 900, "completion_tokens": 3}}  # fmt: skip
    upstream.expect(Reply.json(body))
    with gw.client() as c:
        msg = c.beta.messages.create(model=MODEL, max_tokens=100, messages=history(5), context_management=EDIT,
                                     betas=BETA)  # fmt: skip
    assert upstream.last_body["context_management"] == EDIT
    assert all(c.startswith("file ") for c in tool_contents(upstream.last_body))
    assert msg.context_management is not None
    assert msg.context_management.model_dump()["applied_edits"] == report["applied_edits"]

