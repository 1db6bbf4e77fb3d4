"""Context editing applied by the gateway (issue 12 §4), on the configurations of Anthropic's context
editing guide: `clear_tool_uses_20250919` (defaults, the advanced example, `clear_at_least`,
`exclude_tools`, `clear_tool_inputs`, a tool-use trigger) and `clear_thinking_20251015`."""

from __future__ import annotations

from typing import Any

import msgspec
import orjson
import pytest

from anthropic_gateway.errors import InvalidRequestError
from anthropic_gateway.schemas import MessagesRequest, ThinkingBlock, ToolResultBlock, ToolUseBlock
from anthropic_gateway.tokens import count_request_tokens
from anthropic_gateway.translate.context_management import PLACEHOLDER, apply_edits, parse_context_management
from unit.helpers import request

MODEL = "anthropic/claude-sonnet-4.5"


def count(req: MessagesRequest) -> int:
    return count_request_tokens(req, MODEL)


def _result_text(i: int, tokens: int) -> str:
    return f"result {i}: " + " ".join(f"w{i}x{j}" for j in range(tokens // 2))


def conversation(tools: list[str], result_tokens: int = 2000, thinking: bool = False) -> list[dict[str, Any]]:
    """A user question, then one assistant tool call per name with its (large) result, then a last
    user question. Every assistant message carries a thinking block when `thinking`."""
    msgs: list[dict[str, Any]] = [{"role": "user", "content": "Look into the repository."}]
    for i, name in enumerate(tools):
        blocks: list[dict[str, Any]] = []
        if thinking:
            blocks.append({"type": "thinking", "thinking": f"step {i}", "signature": f"sig{i}"})
        blocks.append({"type": "tool_use", "id": f"toolu_{i}", "name": name, "input": {"path": f"f{i}.py"}})
        msgs.append({"role": "assistant", "content": blocks})
        msgs.append({"role": "user", "content": [{"type": "tool_result", "tool_use_id": f"toolu_{i}",
                                                  "content": _result_text(i, result_tokens)}]})  # fmt: skip
    msgs.append({"role": "assistant", "content": "Done looking."})
    msgs.append({"role": "user", "content": "Summarise."})
    return msgs


def edited(messages: list[dict[str, Any]], edits: list[dict[str, Any]], **fields: Any) -> tuple[Any, Any, int]:
    req = request(model="claude-sonnet-4-5", messages=messages, context_management={"edits": edits}, **fields)
    plan = parse_context_management(req.context_management)
    assert plan is not None
    before = count(req)
    return req, apply_edits(req, plan, tokens=before, count=count), before


def results(req: MessagesRequest) -> dict[str, Any]:
    return {b.tool_use_id: b.value for m in req.messages if not isinstance(m.content, str)
            for b in m.content if isinstance(b, ToolResultBlock)}  # fmt: skip


def inputs(req: MessagesRequest) -> dict[str, Any]:
    return {b.id: b.input for m in req.messages if not isinstance(m.content, str)
            for b in m.content if isinstance(b, ToolUseBlock)}  # fmt: skip


# --- clear_tool_uses_20250919 --------------------------------------------------------------------


def test_defaults_do_nothing_below_100k_input_tokens() -> None:
    req, out, before = edited(conversation(["read"] * 6), [{"type": "clear_tool_uses_20250919"}])
    assert before < 100_000
    assert out.request is req and out.tokens == before
    assert out.report() == {"applied_edits": []}


def test_defaults_past_100k_keep_the_last_three_tool_uses() -> None:
    req, out, before = edited(conversation(["read"] * 6, result_tokens=20_000), [{"type": "clear_tool_uses_20250919"}])
    assert before > 100_000
    got = results(out.request)
    assert [got[f"toolu_{i}"] == PLACEHOLDER for i in range(6)] == [True, True, True, False, False, False]
    assert inputs(out.request) == inputs(req)  # tool inputs stay by default
    assert out.tokens == count(out.request) < before
    assert out.report() == {"applied_edits": [
        {"type": "clear_tool_uses_20250919", "cleared_tool_uses": 3, "cleared_input_tokens": before - out.tokens}
    ]}  # fmt: skip
    assert before - out.tokens > 3 * 15_000
    assert results(req)["toolu_0"] != PLACEHOLDER  # the client's request is not changed


ADVANCED = {
    "type": "clear_tool_uses_20250919",
    "trigger": {"type": "input_tokens", "value": 30000},
    "keep": {"type": "tool_uses", "value": 3},
    "clear_at_least": {"type": "input_tokens", "value": 5000},
    "exclude_tools": ["web_search"],
}


def test_the_guides_advanced_example() -> None:
    names = ["read", "web_search", "read", "web_search", "read", "read", "read", "read"]
    _, out, before = edited(conversation(names, result_tokens=5000), [ADVANCED])
    assert before > 30_000
    cleared = [i for i, content in enumerate(results(out.request).values()) if content == PLACEHOLDER]
    assert cleared == [0, 2, 4]  # the older reads; web_search results are never cleared; the last 3 stay
    (entry,) = out.applied
    assert entry["cleared_tool_uses"] == 3 and entry["cleared_input_tokens"] >= 5000


def test_clear_at_least_not_reached_means_no_edit() -> None:
    edit = {**ADVANCED, "trigger": {"type": "input_tokens", "value": 1000}, "exclude_tools": None,
            "clear_at_least": {"type": "input_tokens", "value": 50_000}}  # fmt: skip
    req, out, _ = edited(conversation(["read"] * 5, result_tokens=2000), [edit])
    assert out.request is req and out.applied == []


def test_a_tool_use_trigger() -> None:
    edit = {"type": "clear_tool_uses_20250919", "trigger": {"type": "tool_uses", "value": 4},
            "keep": {"type": "tool_uses", "value": 1}}  # fmt: skip
    _, out, _ = edited(conversation(["read"] * 4, result_tokens=50), [edit])
    assert out.applied == []  # 4 tool uses do not exceed 4
    _, out, _ = edited(conversation(["read"] * 5, result_tokens=50), [edit])
    assert [e["cleared_tool_uses"] for e in out.applied] == [4]


@pytest.mark.parametrize(("clear_inputs", "emptied"), [(True, {0, 1}), (["write"], {1}), (False, set())])
def test_clear_tool_inputs(clear_inputs: Any, emptied: set[int]) -> None:
    edit = {"type": "clear_tool_uses_20250919", "trigger": {"type": "tool_uses", "value": 0},
            "keep": {"type": "tool_uses", "value": 1}, "clear_tool_inputs": clear_inputs}  # fmt: skip
    _, out, _ = edited(conversation(["read", "write", "read"], result_tokens=50), [edit])
    got = inputs(out.request)
    assert {i for i in range(3) if got[f"toolu_{i}"] == {}} == emptied
    assert out.applied[0]["cleared_tool_uses"] == 2


def test_results_already_cleared_are_not_counted_again() -> None:
    edit = {"type": "clear_tool_uses_20250919", "trigger": {"type": "tool_uses", "value": 0},
            "keep": {"type": "tool_uses", "value": 1}}  # fmt: skip
    _, first, _ = edited(conversation(["read"] * 3, result_tokens=50), [edit])
    history = orjson.loads(orjson.dumps([_builtin(m) for m in first.request.messages]))
    _, again, _ = edited(history, [edit])
    assert again.applied == []


def _builtin(msg: Any) -> Any:
    return msgspec.json.decode(msgspec.json.encode(msg))  # to_builtins cannot take the raw tool results


# --- clear_thinking_20251015 ---------------------------------------------------------------------


def turns_with_thinking(req: MessagesRequest) -> list[int]:
    """Indices of assistant messages that still carry a thinking block."""
    return [i for i, m in enumerate(req.messages) if m.role == "assistant" and not isinstance(m.content, str)
            and any(isinstance(b, ThinkingBlock) for b in m.content)]  # fmt: skip


def exchanges(n: int) -> list[dict[str, Any]]:
    """n question/answer exchanges, each answer a thinking block and text."""
    msgs: list[dict[str, Any]] = []
    for i in range(n):
        msgs.append({"role": "user", "content": f"question {i}"})
        msgs.append({"role": "assistant", "content": [
            {"type": "thinking", "thinking": "let me think " * 200, "signature": f"s{i}"},
            {"type": "text", "text": f"answer {i}"}]})  # fmt: skip
    msgs.append({"role": "user", "content": "last question"})
    return msgs


THINKING: dict[str, Any] = {"thinking": {"type": "enabled", "budget_tokens": 2000}, "max_tokens": 4000}


def test_clear_thinking_keeps_the_last_n_turns() -> None:
    edit = {"type": "clear_thinking_20251015", "keep": {"type": "thinking_turns", "value": 2}}
    _, out, before = edited(exchanges(4), [edit], **THINKING)
    assert turns_with_thinking(out.request) == [5, 7]
    assert out.report() == {"applied_edits": [
        {"type": "clear_thinking_20251015", "cleared_thinking_turns": 2, "cleared_input_tokens": before - out.tokens}
    ]}  # fmt: skip
    assert before - out.tokens > 2 * 300


def test_clear_thinking_default_keeps_one_turn() -> None:
    _, out, _ = edited(exchanges(3), [{"type": "clear_thinking_20251015"}], **THINKING)
    assert turns_with_thinking(out.request) == [5]
    assert out.applied[0]["cleared_thinking_turns"] == 2


@pytest.mark.parametrize("keep", ["all", {"type": "all"}])
def test_keep_all_keeps_every_thinking_block(keep: Any) -> None:
    """Claude Code's edit: nothing changes, nothing is reported."""
    req, out, _ = edited(exchanges(3), [{"type": "clear_thinking_20251015", "keep": keep}], **THINKING)
    assert out.request is req and out.applied == []


def test_a_tool_loop_is_one_turn() -> None:
    """The thinking of every step of the current tool loop stays with keep 1."""
    msgs = conversation(["read", "read", "read"], result_tokens=20, thinking=True)[:-2]  # ends on a tool result
    msgs = [{"role": "user", "content": "earlier"},
            {"role": "assistant", "content": [{"type": "thinking", "thinking": "old", "signature": "s"},
                                              {"type": "text", "text": "ok"}]}, *msgs]  # fmt: skip
    _, out, _ = edited(msgs, [{"type": "clear_thinking_20251015", "keep": {"type": "thinking_turns", "value": 1}}],
                       **THINKING)  # fmt: skip
    assert turns_with_thinking(out.request) == [3, 5, 7]
    assert out.applied[0]["cleared_thinking_turns"] == 1


def test_both_edits_thinking_first() -> None:
    msgs = exchanges(2)[:-1] + conversation(["read"] * 5, result_tokens=3000, thinking=True)
    edits = [{"type": "clear_thinking_20251015", "keep": {"type": "thinking_turns", "value": 1}},
             {"type": "clear_tool_uses_20250919", "trigger": {"type": "input_tokens", "value": 5000}}]  # fmt: skip
    _, out, before = edited(msgs, edits, **THINKING)
    assert [e["type"] for e in out.applied] == ["clear_thinking_20251015", "clear_tool_uses_20250919"]
    assert sum(e["cleared_input_tokens"] for e in out.applied) == before - out.tokens


# --- validation ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "message"), [
    ({"edits": [{"type": "clear_tool_uses_20250919"}, {"type": "clear_thinking_20251015"}]},
     "context_management.edits: clear_thinking_20251015 must be listed first"),
    ({"edits": [{"type": "compact_20260112"}]}, "context_management.edits.0.type: 'compact_20260112' is not supported"),
    ({"edits": [{"type": "clear_thinking_20251015", "keep": {"type": "thinking_turns", "value": 0}}]},
     "context_management.edits.0.keep.value: Expected `int` >= 1"),
    ({"edits": [{"type": "clear_tool_uses_20250919", "trigger": {"type": "tokens", "value": 5}}]},
     "context_management.edits.0.trigger"),
    ({"edits": [{"type": "clear_tool_uses_20250919", "keep": 3}]}, "context_management.edits.0.keep"),
    ({"edit": []}, "context_management: Object contains unknown field `edit`"),
])  # fmt: skip
def test_invalid_configurations_name_the_field(value: Any, message: str) -> None:
    with pytest.raises(InvalidRequestError) as err:
        parse_context_management(value)
    assert err.value.message.startswith(message), err.value.message
