"""Claude Code 2.1.332's request shapes through the pure translation (tests/data fixtures).

Tool search (defer_loading), thinking.display, max_tokens 128000 for the claude-*-5-5 names, and the
JSON-Schema ``allOf`` of the SendMessage tool for the Gemini family.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec
import orjson
import pytest

from anthropic_gateway.schemas import decode_messages_request
from anthropic_gateway.translate.context import RequestContext
from anthropic_gateway.translate.policy import gemini_schema, prepare_request
from paths import CLAUDE_CODE_LATEST_CAPTURES, CLAUDE_CODE_LATEST_FIXTURE
from unit.helpers import (
    CLAUDE_FORMAT,
    claude_reasoning,
    finish,
    nonstream_message,
    route,
    stream_message,
    text,
)

FIXTURE: dict[str, Any] = json.loads(CLAUDE_CODE_LATEST_FIXTURE.read_text())
CAPTURES: dict[str, Any] = json.loads(CLAUDE_CODE_LATEST_CAPTURES.read_text())
ALWAYS_LOADED = ["Agent", "Bash", "Edit", "ListAgents", "Read", "ReportFindings", "ScheduleWakeup", "Skill",
                 "ToolSearch", "Workflow", "Write"]  # fmt: skip


def translate(body: dict[str, Any], kind: str = "openrouter", target: str = "test/opus-model",
              **env: str) -> dict[str, Any]:  # fmt: skip
    req = decode_messages_request(orjson.dumps(body))
    r = route(body["model"], kind, opus_model=target, haiku_model=target, **env)  # type: ignore[arg-type]
    out, _ = prepare_request(req, r, stream=True)
    result: dict[str, Any] = orjson.loads(msgspec.json.encode(out))
    return result


def names(body: dict[str, Any]) -> list[str]:
    return [t["function"]["name"] for t in body.get("tools", [])]


# --- tool search --------------------------------------------------------------------------------


@pytest.mark.parametrize("turn", ["opus_first_turn", "opus_second_turn", "haiku_first_turn"])
def test_deferred_placeholder_is_never_a_function(turn: str) -> None:
    sent = [t["name"] for t in FIXTURE[turn]["tools"]]
    assert "DeferredToolPlaceholder" in sent and len(sent) == 12
    assert names(translate(FIXTURE[turn])) == ALWAYS_LOADED


def test_tools_loaded_by_a_tool_reference_become_functions() -> None:
    body = FIXTURE["toolsearch_second_turn"]
    deferred = sorted(t["name"] for t in body["tools"] if t.get("defer_loading"))
    assert deferred == ["DeferredToolPlaceholder", "NotebookEdit", "WebFetch"]
    assert names(translate(body)) == sorted([*ALWAYS_LOADED, "NotebookEdit", "WebFetch"])
    tool_msg = next(m for m in translate(body)["messages"] if m["role"] == "tool")
    assert tool_msg["content"] == "WebFetch\nNotebookEdit"


def test_a_deferred_tool_called_by_name_stays_a_function_for_the_history() -> None:
    # 2.1.332 runs a deferred tool the model calls without loading it (WebSearch, captured).
    body = {**FIXTURE["opus_first_turn"]}
    web_search = {"name": "WebSearch", "description": "Search the web", "defer_loading": True,
                  "input_schema": {"type": "object", "properties": {"query": {"type": "string"}}}}  # fmt: skip
    body["tools"] = [*body["tools"], web_search]
    assert "WebSearch" not in names(translate(body))
    body["messages"] = [
        *body["messages"],
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "toolu_01", "name": "WebSearch", "input": {"query": "q"}}],
        },
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "toolu_01", "content": "Links: []"}],
        },
    ]
    assert names(translate(body)) == [*ALWAYS_LOADED, "WebSearch"]


def test_only_deferred_tools_means_no_tools_field() -> None:
    body = {**FIXTURE["opus_first_turn"], "tools": [t for t in FIXTURE["opus_first_turn"]["tools"]
                                                     if t.get("defer_loading")]}  # fmt: skip
    assert "tools" not in translate(body)


# --- thinking.display ---------------------------------------------------------------------------


def test_display_omitted_excludes_reasoning_for_a_non_claude_openrouter_target() -> None:
    body = FIXTURE["opus_first_turn"]
    assert body["thinking"] == {"type": "adaptive", "display": "omitted"}
    assert translate(body)["reasoning"] == {"effort": "medium", "exclude": True}


def test_display_omitted_keeps_claude_reasoning_for_replay() -> None:
    # OpenRouter's exclude drops reasoning_details too, and with them the signature the next turn's
    # thinking replay needs: a Claude target is asked for its reasoning as usual.
    out = translate(FIXTURE["opus_first_turn"], target="anthropic/claude-opus-4.5")
    assert out["reasoning"] == {"effort": "medium"}


def test_display_updates_from_stream_json_runs_asks_for_reasoning() -> None:
    assert CAPTURES["stream_json_thinking"] == {"type": "adaptive", "display": "updates"}
    assert "thinking-display-updates-2026-08-18" in CAPTURES["stream_json_betas"]
    body = {**FIXTURE["opus_first_turn"], "thinking": CAPTURES["stream_json_thinking"]}
    assert translate(body)["reasoning"] == {"effort": "medium"}
    assert translate(body, kind="openai-compatible")["reasoning_effort"] == "medium"


def test_display_omitted_on_enabled_thinking() -> None:
    body = {
        **FIXTURE["opus_first_turn"],
        "thinking": {"type": "enabled", "budget_tokens": 4096, "display": "omitted"},
    }
    assert translate(body)["reasoning"] == {"max_tokens": 4096, "exclude": True}
    assert translate(body, target="anthropic/claude-opus-4.5")["reasoning"] == {"max_tokens": 4096}


# --- max_tokens ---------------------------------------------------------------------------------


@pytest.mark.parametrize("turn", ["opus_first_turn", "haiku_first_turn"])
def test_max_tokens_128000_is_clamped_to_the_alias_limit(turn: str) -> None:
    body = FIXTURE[turn]
    assert body["model"].endswith("-5-5") and body["max_tokens"] == 128000
    models = {"claude-*": {"model": "test/model", "max_output_tokens": 32000}}
    out = translate(body, models=json.dumps(models))
    assert (out["model"], out["max_tokens"]) == ("test/model", 32000)


# --- allOf for the Gemini family ------------------------------------------------------------------


def test_send_message_all_of_is_merged_for_gemini() -> None:
    tool = CAPTURES["send_message_tool"]
    to = tool["input_schema"]["properties"]["to"]
    assert to["allOf"] == [{"pattern": "^[^\\n\\r]*$"}, {"pattern": "^[\\s\\S]{0,300}$"}]
    body = {**FIXTURE["opus_first_turn"], "tools": [tool]}
    (fn,) = [t["function"] for t in translate(body, target="google/gemini-3-pro")["tools"]]
    assert "allOf" not in json.dumps(fn["parameters"])
    assert fn["parameters"]["properties"]["to"] == {
        "description": to["description"], "type": "string", "pattern": "^[^\\n\\r]*$",
    }  # fmt: skip
    assert fn["parameters"]["required"] == ["to", "message"]


def test_all_of_objects_unite_properties_and_required() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"],
              "allOf": [{"properties": {"b": {"type": "integer", "$comment": "x"}}, "required": ["b"]},
                        {"properties": {"a": {"type": "number"}}, "required": ["a"]}]}  # fmt: skip
    assert gemini_schema(schema) == {
        "type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "integer"}}, "required": ["a", "b"],
    }  # fmt: skip


CLAUDE_TARGET = "anthropic/claude-opus-4.5"
SIG = "EqQBCkYIBxgCKkDgenuine-claude-signature=="
OMITTED_TURN = [claude_reasoning("Let me "), claude_reasoning("think."), claude_reasoning(signature=SIG),
                text("Answer"), finish("stop")]  # fmt: skip


def omitted_ctx() -> RequestContext:
    req = decode_messages_request(orjson.dumps(FIXTURE["opus_first_turn"]))
    r = route("claude-opus-5-5", "openrouter", opus_model=CLAUDE_TARGET)
    _, ctx = prepare_request(req, r, stream=True)
    assert ctx.omit_thinking
    return ctx


@pytest.mark.parametrize("streamed", [True, False])
def test_display_omitted_drops_claude_text_and_the_next_turn_replays_it(streamed: bool) -> None:
    ctx = omitted_ctx()
    message = stream_message(OMITTED_TURN, ctx) if streamed else nonstream_message(OMITTED_TURN, ctx)
    thinking, answer = message["content"]
    assert thinking["type"] == "thinking" and thinking["thinking"] == ""
    assert thinking["signature"] != SIG and answer == {"type": "text", "text": "Answer"}

    # The next turn replays the block as the client got it: Claude gets its text and signature back.
    second = {**FIXTURE["opus_first_turn"], "messages": [
        *FIXTURE["opus_first_turn"]["messages"],
        {"role": "assistant", "content": [thinking, answer]},
        {"role": "user", "content": "Thanks"},
    ]}  # fmt: skip
    out = translate(second, target=CLAUDE_TARGET)
    replayed = next(m for m in out["messages"] if m["role"] == "assistant")
    assert replayed["reasoning_details"] == [
        {"type": "reasoning.text", "text": "Let me think.", "signature": SIG, "format": CLAUDE_FORMAT, "index": 0}
    ]


def test_display_summarized_keeps_claude_text() -> None:
    req = decode_messages_request(orjson.dumps({**FIXTURE["opus_first_turn"], "thinking": {"type": "adaptive"}}))
    _, ctx = prepare_request(req, route("claude-opus-5-5", "openrouter", opus_model=CLAUDE_TARGET), stream=True)
    thinking = stream_message(OMITTED_TURN, ctx)["content"][0]
    assert thinking == {"type": "thinking", "thinking": "Let me think.", "signature": SIG}
