"""Provider prompt caching (issue 11 part 1): breakpoints carried or stripped per target family with
exact upstream bodies, hoisted system messages keeping their mark on the conversation, the
attribution block, the sticky session key, usage arithmetic in both response modes."""

from __future__ import annotations

import json
from typing import Any

import pytest

from anthropic_gateway.schemas import decode_messages_request
from anthropic_gateway.translate.common import anthropic_usage
from anthropic_gateway.translate.policy import prepare_request
from anthropic_gateway.translate.prompt_cache import session_key
from paths import CLAUDE_CODE_LATEST_FIXTURE
from unit.helpers import Kind, ctx_for, finish, nonstream_message, route, stream_message, text, upstream_body

CAPTURES = json.loads(CLAUDE_CODE_LATEST_FIXTURE.read_text())
EPH = {"type": "ephemeral"}
EPH_1H = {"type": "ephemeral", "ttl": "1h"}
ATTRIBUTION = "x-anthropic-billing-header: cc_version=2.1.332.934; cc_entrypoint=sdk-cli;"


def _fields(turn: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in turn.items() if k not in ("model", "stream")}


def _body(model: str, kind: Kind = "openrouter", env: dict[str, str] | None = None, **fields: Any) -> dict[str, Any]:
    env = {"haiku_model": "anthropic/claude-haiku-4.5", **(env or {})}  # every tier a Claude target here
    body, _ = upstream_body(model=model, kind=kind, env=env, **fields)
    return body


def _models_env(target: str, **cfg: Any) -> dict[str, str]:
    return {"models": json.dumps({"m": {"model": target, **cfg}})}


# --- carry / strip per target family ----------------------------------------------------------------

SYSTEM = [{"type": "text", "text": "Identity."}, {"type": "text", "text": "Rules.", "cache_control": EPH_1H}]
MESSAGES = [{"role": "user", "content": [{"type": "text", "text": "Q", "cache_control": EPH_1H}]}]
TOOL = {"name": "t", "description": "d", "input_schema": {"type": "object"}, "cache_control": EPH_1H}


def _family_body(target: str, kind: Kind = "openrouter", **cfg: Any) -> dict[str, Any]:
    return _body("m", kind, _models_env(target, **cfg), system=SYSTEM, messages=MESSAGES, tools=[TOOL],
                 cache_control=EPH)  # fmt: skip


def test_claude_target_keeps_breakpoints_with_ttl_exactly() -> None:
    body = _family_body("anthropic/claude-sonnet-4.5")
    assert body["messages"] == [
        {"role": "system", "content": [{"type": "text", "text": "Identity."},
                                       {"type": "text", "text": "Rules.", "cache_control": EPH_1H}]},
        {"role": "user", "content": [{"type": "text", "text": "Q", "cache_control": EPH_1H}]},
    ]  # fmt: skip
    assert body["tools"] == [{"type": "function", "cache_control": EPH_1H,
                              "function": {"name": "t", "description": "d", "parameters": {"type": "object"}}}]  # fmt: skip
    assert body["cache_control"] == EPH  # automatic mode: Anthropic-family providers


@pytest.mark.parametrize("target", ["google/gemini-2.5-pro", "qwen/qwen3-coder"])
def test_gemini_and_qwen_keep_breakpoints_without_ttl(target: str) -> None:
    body = _family_body(target)
    assert body["messages"] == [
        {"role": "system", "content": [{"type": "text", "text": "Identity."},
                                       {"type": "text", "text": "Rules.", "cache_control": EPH}]},
        {"role": "user", "content": [{"type": "text", "text": "Q", "cache_control": EPH}]},
    ]  # fmt: skip
    assert body["tools"][0]["cache_control"] == EPH
    assert "cache_control" not in body  # the top-level field is Anthropic's alone


@pytest.mark.parametrize(("target", "kind"), [("deepseek/deepseek-chat", "openrouter"), ("openai/gpt-5", "openrouter"),
                                              ("anthropic/claude-sonnet-4.5", "openai"),
                                              ("anthropic/claude-sonnet-4.5", "openai-compatible")])  # fmt: skip
def test_other_targets_get_no_breakpoints(target: str, kind: Kind) -> None:
    body = _family_body(target, kind)
    assert body["messages"] == [{"role": "system", "content": "Identity.\n\nRules."}, {"role": "user", "content": "Q"}]
    assert "cache_control" not in json.dumps(body)


def test_configured_style_overrides_the_family() -> None:
    off = _family_body("anthropic/claude-sonnet-4.5", prompt_cache="off")
    assert "cache_control" not in json.dumps(off)
    plain = _family_body("anthropic/claude-sonnet-4.5", prompt_cache="breakpoints")
    assert plain["messages"][1]["content"][0]["cache_control"] == EPH
    local = _family_body("claude-proxy", "openai-compatible", prompt_cache="ttl")  # e.g. a LiteLLM in front of Claude
    assert local["messages"][1]["content"][0]["cache_control"] == EPH_1H


def test_at_most_four_breakpoints_the_last_ones_kept() -> None:
    blocks = [{"type": "text", "text": f"b{i}", "cache_control": EPH} for i in range(6)]
    body = _body("claude-opus-4", messages=[{"role": "user", "content": blocks}], cache_control=EPH)
    parts = body["messages"][0]["content"]
    assert ["cache_control" in p for p in parts] == [False, False, False, True, True, True]


# --- hoisted system messages (Claude Code 2.1.332) -----------------------------------------------------


def _leading(body: dict[str, Any]) -> Any:
    assert body["messages"][0]["role"] == "system"
    return body["messages"][0]["content"]


def test_opus_first_turn_mark_of_the_trailing_system_message_stays_on_the_conversation() -> None:
    turn = CAPTURES["opus_first_turn"]
    body = _body(turn["model"], **_fields(turn))
    env_text = turn["messages"][1]["content"][0]["text"]
    user_blocks = turn["messages"][0]["content"]
    assert _leading(body) == [
        {"type": "text", "text": turn["system"][1]["text"], "cache_control": EPH},
        {"type": "text", "text": turn["system"][2]["text"], "cache_control": EPH},
        {"type": "text", "text": env_text},
    ]
    assert body["messages"][1:] == [{"role": "user", "content": [
        {"type": "text", "text": user_blocks[0]["text"]},
        {"type": "text", "text": user_blocks[1]["text"], "cache_control": EPH},  # the system message's mark
    ]}]  # fmt: skip


def test_haiku_second_turn_total_tokens_stays_in_the_conversation_after_the_marked_tool_result() -> None:
    first, second = CAPTURES["haiku_first_turn"], CAPTURES["haiku_second_turn"]
    b1 = _body(second["model"], **_fields(first))
    b2 = _body(second["model"], **_fields(second))
    assert _leading(b2) == _leading(b1)  # the prefix starts the same on every turn
    tool_use = second["messages"][2]["content"][1]
    result = second["messages"][3]["content"][0]
    assert b2["messages"][-2:] == [
        {"role": "tool", "tool_call_id": tool_use["id"], "content": result["content"], "cache_control": EPH},
        {"role": "user", "content": "<total_tokens>14997420 tokens left</total_tokens>"},
    ]
    marks = json.dumps(b2).count('"cache_control"')
    assert marks == 3  # system[1], system[2], the conversation's moving breakpoint


def test_per_turn_system_text_never_grows_the_leading_system_prompt() -> None:
    second = CAPTURES["haiku_second_turn"]
    messages = list(second["messages"])
    system_note = messages[-1]
    messages[-1] = {"role": "system", "content": "<total_tokens>14997420 tokens left</total_tokens>"}
    third = [
        *messages,
        {"role": "assistant", "content": [{"type": "text", "text": "Done."}]},
        {"role": "user", "content": [{"type": "text", "text": "Thanks"}]},
        {**system_note, "content": [{"type": "text", "text": "<total_tokens>14990000 tokens left</total_tokens>",
                                     "cache_control": EPH}]},
    ]  # fmt: skip
    b2 = _body(second["model"], **_fields(second))
    b3 = _body(second["model"], **{**_fields(second), "messages": third})
    assert _leading(b3) == _leading(b2)
    assert b3["messages"][: len(b2["messages"]) - 1] == [
        {k: v for k, v in m.items() if k != "cache_control"} if m["role"] == "tool" else m
        for m in b2["messages"][:-1]
    ]  # the conversation only grows at its end; the old mark moved on
    assert b3["messages"][-2:] == [
        {"role": "user", "content": [{"type": "text", "text": "Thanks", "cache_control": EPH}]},
        {"role": "user", "content": "<total_tokens>14990000 tokens left</total_tokens>"},
    ]


def test_system_message_kept_in_place_marks_the_message_before_it() -> None:
    second = CAPTURES["haiku_second_turn"]
    body = _body(second["model"], env={"system_messages": "keep"}, **_fields(second))
    assert body["messages"][-2]["role"] == "tool" and body["messages"][-2]["cache_control"] == EPH
    assert body["messages"][-1] == {"role": "system", "content": "<total_tokens>14997420 tokens left</total_tokens>"}


def test_leading_system_message_with_a_mark_marks_the_system_prompt() -> None:
    body = _body("claude-opus-4", messages=[
        {"role": "system", "content": [{"type": "text", "text": "S", "cache_control": EPH}]},
        {"role": "user", "content": "Hi"},
    ])  # fmt: skip
    assert body["messages"] == [{"role": "system", "content": [{"type": "text", "text": "S", "cache_control": EPH}]},
                                {"role": "user", "content": "Hi"}]  # fmt: skip


# --- the attribution block ------------------------------------------------------------------------------


@pytest.mark.parametrize("line", [ATTRIBUTION, ATTRIBUTION + " cch=7f3a9;", ATTRIBUTION + " cch=00000;"])
@pytest.mark.parametrize("kind", ["openrouter", "openai", "openai-compatible"])
def test_attribution_block_never_forwarded(line: str, kind: Kind) -> None:
    system = [{"type": "text", "text": line}, {"type": "text", "text": "You are Claude Code.", "cache_control": EPH}]
    body = _body("claude-opus-4", kind, system=system)
    assert "x-anthropic-billing-header" not in json.dumps(body)
    assert "cch=" not in json.dumps(body)
    expected = [{"type": "text", "text": "You are Claude Code.", "cache_control": EPH}] if kind == "openrouter" \
        else "You are Claude Code."  # fmt: skip
    assert body["messages"][0] == {"role": "system", "content": expected}


def test_attribution_line_cut_from_a_string_system_prompt() -> None:
    body = _body("claude-opus-4", system=ATTRIBUTION + " cch=1;\nYou are terse.")
    assert body["messages"][0] == {"role": "system", "content": "You are terse."}


def test_bodies_with_different_cch_values_are_identical() -> None:
    def with_cch(v: str) -> dict[str, Any]:
        turn = CAPTURES["opus_first_turn"]
        system = [{**turn["system"][0], "text": ATTRIBUTION + f" cch={v};"}, *turn["system"][1:]]
        return _body(turn["model"], **{**_fields(turn), "system": system})

    assert with_cch("a1b2c") == with_cch("99999")


# --- the sticky session key ------------------------------------------------------------------------------


def _prepared(turn: dict[str, Any], kind: Kind = "openrouter", session: str | None = None,
              **extra: Any) -> dict[str, Any]:  # fmt: skip
    req = decode_messages_request(json.dumps({**turn, **extra}).encode())
    body, _ = prepare_request(req, route(turn["model"], kind), stream=True, session=session)
    return body


def test_session_id_from_claude_codes_header() -> None:
    header = CAPTURES["headers_first_turn"]["x-claude-code-session-id"]
    body = _prepared(CAPTURES["opus_first_turn"], session=header)
    assert body["session_id"] == header == "9fd6ebc2-e86c-4dfc-9b44-cd0191f7521e"


def test_session_id_without_the_header_is_the_same_on_every_turn() -> None:
    first = _prepared(CAPTURES["opus_first_turn"])["session_id"]
    second = _prepared(CAPTURES["opus_second_turn"])["session_id"]
    other = _prepared(CAPTURES["haiku_first_turn"], messages=[{"role": "user", "content": "Another task"}])
    assert first == second and first.startswith("agw-") and len(first) == 44
    assert other["session_id"] != first


def test_session_id_ignores_the_attribution_block() -> None:
    turn = CAPTURES["opus_first_turn"]
    req = decode_messages_request(json.dumps(turn).encode())
    changed = {**turn, "system": [{"type": "text", "text": ATTRIBUTION + " cch=abc;"}, *turn["system"][1:]]}
    assert session_key(req, None) == session_key(decode_messages_request(json.dumps(changed).encode()), None)


def test_overlong_session_header_is_hashed() -> None:
    body = _prepared(CAPTURES["opus_first_turn"], session="x" * 500)
    assert len(body["session_id"]) == 64


def test_no_session_id_when_the_client_pinned_provider_order() -> None:
    body = _prepared(CAPTURES["opus_first_turn"], session="s1", provider={"order": ["anthropic"]})
    assert "session_id" not in body and body["provider"] == {"order": ["anthropic"]}
    unpinned = _prepared(CAPTURES["opus_first_turn"], session="s1", provider={"data_collection": "deny"})
    assert unpinned["session_id"] == "s1"


@pytest.mark.parametrize("kind", ["openai", "openai-compatible"])
def test_no_session_id_for_other_backend_kinds(kind: Kind) -> None:
    assert "session_id" not in _prepared(CAPTURES["opus_first_turn"], kind, session="s1")


# --- usage arithmetic, both response modes -----------------------------------------------------------------

USAGES = {
    "openrouter": ({"prompt_tokens": 1000, "completion_tokens": 5,
                    "prompt_tokens_details": {"cached_tokens": 700, "cache_write_tokens": 200}}, (100, 200, 700)),
    "openai": ({"prompt_tokens": 1000, "completion_tokens": 5, "prompt_tokens_details": {"cached_tokens": 640}},
               (360, 0, 640)),
    "deepseek": ({"prompt_tokens": 1000, "completion_tokens": 5, "prompt_cache_hit_tokens": 900,
                  "prompt_cache_miss_tokens": 100}, (100, 0, 900)),
    "never_negative": ({"prompt_tokens": 10, "completion_tokens": 5,
                        "prompt_tokens_details": {"cached_tokens": 8, "cache_write_tokens": 8}}, (0, 8, 8)),
    "null_details": ({"prompt_tokens": 10, "completion_tokens": 5, "prompt_tokens_details": None}, (10, 0, 0)),
}  # fmt: skip


@pytest.mark.parametrize("shape", list(USAGES))
def test_usage_arithmetic(shape: str) -> None:
    usage, (fresh, written, read) = USAGES[shape]
    assert anthropic_usage(usage) == {"input_tokens": fresh, "cache_creation_input_tokens": written,
                                      "cache_read_input_tokens": read, "output_tokens": 5}  # fmt: skip


@pytest.mark.parametrize("shape", list(USAGES))
def test_usage_in_both_response_modes(shape: str) -> None:
    usage, (fresh, written, read) = USAGES[shape]
    chunks = [text("ok"), finish("stop"), {"id": "gen-1", "object": "chat.completion.chunk", "choices": [],
                                           "usage": usage}]  # fmt: skip
    expected = {"input_tokens": fresh, "cache_creation_input_tokens": written, "cache_read_input_tokens": read,
                "output_tokens": 5}  # fmt: skip
    for message in (nonstream_message(chunks, ctx_for()), stream_message(chunks, ctx_for())):
        assert {k: message["usage"][k] for k in expected} == expected
