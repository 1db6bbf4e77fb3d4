"""Anthropic request → OpenAI chat-completions body (issue 2, "Request translation"; mapping §8.1-§8.5)."""

from __future__ import annotations

import base64
import json
from typing import Any

import msgspec
import orjson
import pytest

from anthropic_gateway.errors import InvalidRequestError
from anthropic_gateway.schemas import decode_messages_request
from anthropic_gateway.translate import messages as translate_messages
from anthropic_gateway.translate import request as request_module
from anthropic_gateway.translate.request import to_openai_request
from anthropic_gateway.translate.response import to_anthropic_message
from paths import CLAUDE_CODE_FIXTURE
from unit.helpers import (
    CLAUDE_FORMAT,
    HAIKU,
    MESSAGE_ID,
    OPUS,
    SONNET,
    TOOL_NAME_RE,
    Kind,
    completion_of,
    ctx_for,
    request,
    route,
    tool,
    upstream_body,
)

FIXTURE = CLAUDE_CODE_FIXTURE
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\nfake-image").decode()
PDF = base64.b64encode(b"%PDF-1.4 fake").decode()
SCHEMA: dict[str, Any] = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
WEATHER: dict[str, Any] = {"name": "get_weather", "description": "Weather for a city.", "input_schema": SCHEMA}
KINDS: tuple[Kind, ...] = ("openrouter", "openai", "openai-compatible")
NON_CLAUDE = "deepseek/deepseek-v3"
GENUINE_SIG = "EqQBCkYIBxgCKkDgenuine-claude-signature=="


def user(content: Any) -> dict[str, Any]:
    return {"role": "user", "content": content}


def assistant(content: Any) -> dict[str, Any]:
    return {"role": "assistant", "content": content}


def tool_use(id: str, name: str = "get_weather", input: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"type": "tool_use", "id": id, "name": name, "input": input if input is not None else {"city": "Paris"}}


def tool_result(id: str, content: Any = "18C", **extra: Any) -> dict[str, Any]:
    return {"type": "tool_result", "tool_use_id": id, "content": content, **extra}


def msgs(**fields: Any) -> list[dict[str, Any]]:
    body, _ = upstream_body(**fields)
    result: list[dict[str, Any]] = body["messages"]
    return result


# --- system ----------------------------------------------------------------------------------------


def test_system_string_becomes_the_first_message() -> None:
    assert msgs(system="Be brief.") == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hello"},
    ]


def test_system_blocks_keep_cache_control_for_openrouter() -> None:
    system = [{"type": "text", "text": "A"}, {"type": "text", "text": "B", "cache_control": {"type": "ephemeral"}}]
    assert msgs(model="claude-opus-4", system=system, kind="openrouter")[0] == {
        "role": "system",
        "content": [{"type": "text", "text": "A"},
                    {"type": "text", "text": "B", "cache_control": {"type": "ephemeral"}}],
    }  # fmt: skip


@pytest.mark.parametrize("kind", ["openai", "openai-compatible"])
def test_system_blocks_joined_without_cache_control_elsewhere(kind: Kind) -> None:
    system = [{"type": "text", "text": "A"}, {"type": "text", "text": "B", "cache_control": {"type": "ephemeral"}}]
    body, _ = upstream_body(kind=kind, system=system)
    assert body["messages"][0] == {"role": "system", "content": "A\n\nB"}
    assert "cache_control" not in json.dumps(body)


def test_a_joined_system_prompt_is_the_same_text_on_every_turn_and_a_changed_one_is_joined_again() -> None:
    def system_text(*texts: str) -> Any:
        req = request(system=[{"type": "text", "text": t} for t in texts])
        body, _ = to_openai_request(req, route("claude-sonnet-5", "openai"), stream=False)
        return body["messages"][0]["content"]

    first = system_text("You are terse — très.", "Second.")
    assert first == "You are terse — très.\n\nSecond."
    assert system_text("You are terse — très.", "Second.") is first  # its UTF-8 made once, not per turn
    assert system_text("You are terse — très.", "Secund.") == "You are terse — très.\n\nSecund."
    for i in range(40):
        system_text("A", str(i))
    assert len(translate_messages._JOINED) <= translate_messages._JOINED_ENTRIES  # bounded
    long = "x" * translate_messages._JOINED_LONGEST
    assert system_text(long, "y") == long + "\n\ny"
    assert (long, "y") not in translate_messages._JOINED  # too long to keep


# --- Claude Code's first turn ----------------------------------------------------------------------


def _fixture() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(FIXTURE.read_text())
    return data


def _cc_body(kind: Kind, **env: str) -> tuple[dict[str, Any], dict[str, Any]]:
    first = _fixture()["first_turn"]
    fields = {k: v for k, v in first.items() if k not in ("model", "stream")}
    body, _ = upstream_body(model=first["model"], kind=kind, stream=bool(first["stream"]), env=env, **fields)
    return first, body


def test_claude_code_first_turn_exact_system_message_openrouter() -> None:
    first, body = _cc_body("openrouter")
    sys_blocks = first["system"]
    mid = next(m for m in first["messages"] if m["role"] == "system")
    turn = next(m for m in first["messages"] if m["role"] == "user")
    assert sys_blocks[0]["text"].startswith("x-anthropic-billing-header:")
    expected_system = [
        {"type": "text", "text": b["text"], **({"cache_control": b["cache_control"]} if "cache_control" in b else {})}
        for b in sys_blocks[1:]  # the attribution block is never forwarded
    ] + [{"type": "text", "text": mid["content"]}]
    expected_user = [
        {"type": "text", "text": b["text"], **({"cache_control": b["cache_control"]} if "cache_control" in b else {})}
        for b in turn["content"]
    ]
    assert body["messages"] == [
        {"role": "system", "content": expected_system},
        {"role": "user", "content": expected_user},
    ]


def test_claude_code_first_turn_exact_system_message_openai_compatible() -> None:
    first, body = _cc_body("openai-compatible")
    mid = next(m for m in first["messages"] if m["role"] == "system")
    turn = next(m for m in first["messages"] if m["role"] == "user")
    assert body["messages"] == [
        {"role": "system", "content": "\n\n".join([b["text"] for b in first["system"][1:]] + [mid["content"]])},
        {"role": "user", "content": [{"type": "text", "text": b["text"]} for b in turn["content"]]},
    ]


def test_claude_code_first_turn_system_kept_in_place_when_configured() -> None:
    first, body = _cc_body("openai-compatible", system_messages="keep")
    mid = next(m for m in first["messages"] if m["role"] == "system")
    turn = next(m for m in first["messages"] if m["role"] == "user")
    assert [m["role"] for m in first["messages"]] == ["user", "system"]
    assert body["messages"] == [
        {"role": "system", "content": "\n\n".join(b["text"] for b in first["system"][1:])},
        {"role": "user", "content": [{"type": "text", "text": b["text"]} for b in turn["content"]]},
        {"role": "system", "content": mid["content"]},
    ]


def test_claude_code_first_turn_other_fields() -> None:
    first, body = _cc_body("openrouter")
    assert body["model"] == OPUS  # claude-opus-4-8 → the opus tier
    assert body["max_tokens"] == first["max_tokens"] == 64000
    assert body["reasoning"] == {"effort": "high"}  # adaptive + output_config.effort
    assert [t["function"]["name"] for t in body["tools"]] == [t["name"] for t in first["tools"]]
    assert len(body["tools"]) == 24
    assert body["tools"][0]["function"]["parameters"] == first["tools"][0]["input_schema"]
    assert "context_management" not in body and "context_management" not in json.dumps(body)
    assert body["user"] == first["metadata"]["user_id"]
    assert body["stream"] is True
    assert set(body) == {"model", "messages", "max_tokens", "tools", "reasoning", "user", "stream"}


def test_claude_code_second_turn_tool_round_trip() -> None:
    second = _fixture()["second_turn"]
    fields = {k: v for k, v in second.items() if k not in ("model", "stream")}
    body, _ = upstream_body(model=second["model"], kind="openrouter", **fields)
    call = next(m for m in body["messages"] if m["role"] == "assistant")
    tu = second["messages"][-2]["content"][1]
    assert call["tool_calls"] == [{"id": tu["id"], "type": "function",
                                   "function": {"name": "Write", "arguments": call["tool_calls"][0]["function"]["arguments"]}}]  # fmt: skip
    assert json.loads(call["tool_calls"][0]["function"]["arguments"]) == tu["input"]
    result = second["messages"][-1]["content"][0]
    expected = {"role": "tool", "tool_call_id": tu["id"], "content": result["content"]}
    if "cache_control" in result:  # kept on the tool message for OpenRouter (mapping §8.2.10)
        expected["cache_control"] = result["cache_control"]
    assert body["messages"][-1] == expected


# --- user content --------------------------------------------------------------------------------


def test_image_base64_becomes_data_url_and_url_stays_url() -> None:
    content = [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
        {"type": "text", "text": "Compare."},
    ]
    assert msgs(messages=[user(content)])[0]["content"] == [
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
        {"type": "text", "text": "Compare."},
    ]


def test_pdf_base64_and_url_become_file_parts() -> None:
    content = [
        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": PDF}, "title": "r.pdf"},
        {"type": "document", "source": {"type": "url", "url": "https://example.com/a.pdf"}},
        {"type": "text", "text": "Summarise."},
    ]
    parts = msgs(messages=[user(content)])[0]["content"]
    assert parts[0] == {"type": "file", "file": {"filename": "r.pdf", "file_data": f"data:application/pdf;base64,{PDF}"}}
    assert parts[1]["type"] == "file" and parts[1]["file"]["file_data"] == "https://example.com/a.pdf"
    assert parts[2] == {"type": "text", "text": "Summarise."}


def test_plain_text_document_becomes_text() -> None:
    doc = {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "The body."}}
    out = msgs(messages=[user([doc, {"type": "text", "text": "What does it say?"}])])[0]["content"]
    assert out[0] == {"type": "text", "text": "The body."}
    titled = dict(doc, title="Notes")
    out = msgs(messages=[user([titled])])[0]["content"]
    text = out if isinstance(out, str) else out[0]["text"]
    assert "Notes" in text and "The body." in text


def test_empty_text_blocks_dropped() -> None:
    content = [{"type": "text", "text": ""}, {"type": "text", "text": "  \n"}, {"type": "text", "text": "Hi"}]
    out = msgs(messages=[user(content)])
    assert out == [{"role": "user", "content": "Hi"}] or out == [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]
    history = [user("q"), assistant([{"type": "text", "text": ""}, tool_use("toolu_1")]), user([tool_result("toolu_1")])]
    call = msgs(messages=history, tools=[WEATHER])[1]
    assert call["role"] == "assistant" and call["content"] in (None, "")


def test_unknown_future_block_type_is_dropped() -> None:
    content = [{"type": "hologram_2027", "payload": {"x": 1}}, {"type": "text", "text": "Hi"}]
    body, _ = upstream_body(messages=[user(content)])
    assert "hologram" not in json.dumps(body) and "payload" not in json.dumps(body)
    assert body["messages"][-1]["content"] in ("Hi", [{"type": "text", "text": "Hi"}])


def test_tool_reference_becomes_its_name() -> None:
    history = [
        user("find a tool"),
        assistant([tool_use("toolu_1", "ToolSearch", {"q": "weather"})]),
        user([tool_result("toolu_1", [{"type": "tool_reference", "tool_name": "get_weather"}])]),
    ]
    tool_msg = msgs(messages=history, tools=[WEATHER])[2]
    assert tool_msg == {"role": "tool", "tool_call_id": "toolu_1", "content": "get_weather"}


def test_server_tool_history_becomes_text() -> None:
    history = [
        user("news?"),
        assistant([
            {"type": "server_tool_use", "id": "srvtoolu_01", "name": "web_search", "input": {"query": "gateway news"}},
            {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_01", "content": [
                {"type": "web_search_result", "url": "https://news.example/a", "title": "Item A", "encrypted_content": "xyz"}]},
            {"type": "text", "text": "Here is the news."},
        ]),
        user("thanks"),
    ]  # fmt: skip
    out = msgs(messages=history)
    reply = out[1]
    assert reply["role"] == "assistant" and "tool_calls" not in reply
    assert "gateway news" in reply["content"] and "https://news.example/a" in reply["content"]
    assert "Here is the news." in reply["content"]
    assert "xyz" not in json.dumps(out)


# --- tool_use / tool_result --------------------------------------------------------------------------


def test_tool_use_becomes_tool_calls_with_json_string_arguments() -> None:
    history = [user("weather?"), assistant([{"type": "text", "text": "Checking."}, tool_use("toolu_A", input={"city": "Paris", "n": [1, 2]})]),
               user([tool_result("toolu_A")])]  # fmt: skip
    call = msgs(messages=history, tools=[WEATHER])[1]
    assert call["role"] == "assistant" and call["content"] == "Checking."
    assert len(call["tool_calls"]) == 1
    tc = call["tool_calls"][0]
    assert tc["id"] == "toolu_A" and tc["type"] == "function" and tc["function"]["name"] == "get_weather"
    assert isinstance(tc["function"]["arguments"], str)
    assert json.loads(tc["function"]["arguments"]) == {"city": "Paris", "n": [1, 2]}


def test_tool_use_with_empty_input_sends_empty_object_string() -> None:
    history = [user("x"), assistant([tool_use("toolu_A", input={})]), user([tool_result("toolu_A")])]
    tc = msgs(messages=history, tools=[WEATHER])[1]["tool_calls"][0]
    assert json.loads(tc["function"]["arguments"]) == {}


def test_tool_results_come_right_after_the_assistant_turn_and_before_user_text() -> None:
    history = [
        user("Weather in Paris and Rome?"),
        assistant([tool_use("toolu_A"), tool_use("toolu_B", input={"city": "Rome"})]),
        user([{"type": "text", "text": "(before)"}, tool_result("toolu_A", "18C"), tool_result("toolu_B", "21C"),
              {"type": "text", "text": "Which is warmer?"}]),
    ]  # fmt: skip
    out = msgs(messages=history, tools=[WEATHER])
    assert [m["role"] for m in out] == ["user", "assistant", "tool", "tool", "user"]
    assert out[2] == {"role": "tool", "tool_call_id": "toolu_A", "content": "18C"}
    assert out[3] == {"role": "tool", "tool_call_id": "toolu_B", "content": "21C"}
    texts = out[4]["content"] if isinstance(out[4]["content"], str) else " ".join(p["text"] for p in out[4]["content"])
    assert "(before)" in texts and "Which is warmer?" in texts


def test_tool_result_block_content_joined_and_string_kept() -> None:
    history = [user("q"), assistant([tool_use("toolu_A"), tool_use("toolu_B")]),
               user([tool_result("toolu_A", "plain string"),
                     tool_result("toolu_B", [{"type": "text", "text": "line 1"}, {"type": "text", "text": "line 2"}])])]  # fmt: skip
    out = msgs(messages=history, tools=[WEATHER])
    assert out[2]["content"] == "plain string"
    assert out[3]["content"] == "line 1\nline 2"


def test_a_tool_result_string_reaches_the_upstream_as_the_json_the_client_sent() -> None:
    # Kept raw from decode to the upstream body: the same literal, escapes and all, never re-encoded.
    literal = rb'"caf\u00e9 \/ \"quoted\"\n\ud83d\ude00 \u2028 end"'
    body = (b'{"model":"claude-sonnet-5","max_tokens":5,"tools":' + json.dumps([WEATHER]).encode()
            + b',"messages":[{"role":"user","content":"q"},{"role":"assistant","content":[{"type":"tool_use",'
            b'"id":"toolu_A","name":"get_weather","input":{}}]},{"role":"user","content":[{"type":"tool_result",'
            b'"tool_use_id":"toolu_A","content":' + literal + b"}]}]}")  # fmt: skip
    out, _ = to_openai_request(decode_messages_request(body), route(), stream=False)
    encoded = msgspec.json.encode(out)
    assert b'"role":"tool","tool_call_id":"toolu_A","content":' + literal in encoded
    assert json.loads(encoded)["messages"][2]["content"] == json.loads(literal)


@pytest.mark.parametrize(("content", "expected"), [("", "[empty result]"), ("late", "late")])
def test_a_tool_result_string_that_must_change_is_decoded(content: str, expected: str) -> None:
    history = [user("q"), assistant([tool_use("toolu_A")]), user([tool_result("toolu_A", content)])]
    assert msgs(messages=history, tools=[WEATHER])[2]["content"] == expected
    failed = [user("q"), assistant([tool_use("toolu_A")]), user([tool_result("toolu_A", content, is_error=True)])]
    assert msgs(messages=failed, tools=[WEATHER])[2]["content"] == "Error: " + expected
    orphan = [user("q"), assistant("a"), user([tool_result("toolu_Z", content)])]
    assert msgs(messages=orphan)[-1]["content"] == f"[result of tool call toolu_Z]\n{expected}"


def test_tool_result_missing_content_gets_a_placeholder() -> None:
    history = [user("q"), assistant([tool_use("toolu_A")]), user([{"type": "tool_result", "tool_use_id": "toolu_A"}])]
    out = msgs(messages=history, tools=[WEATHER])
    assert out[2]["role"] == "tool" and isinstance(out[2]["content"], str) and out[2]["content"].strip()


def test_tool_result_is_error_marked() -> None:
    history = [user("q"), assistant([tool_use("toolu_A")]), user([tool_result("toolu_A", "timeout", is_error=True)])]
    content = msgs(messages=history, tools=[WEATHER])[2]["content"]
    assert content.lower().startswith("error") and "timeout" in content


def test_images_inside_tool_result_move_to_a_following_user_message() -> None:
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}
    history = [
        user("radar?"),
        assistant([tool_use("toolu_A"), tool_use("toolu_B")]),
        user([tool_result("toolu_A", "18C"), tool_result("toolu_B", [{"type": "text", "text": "radar:"}, image]),
              {"type": "text", "text": "Which is warmer?"}]),
    ]  # fmt: skip
    out = msgs(messages=history, tools=[WEATHER])
    assert [m["role"] for m in out] == ["user", "assistant", "tool", "tool", "user"]
    assert isinstance(out[3]["content"], str) and "radar:" in out[3]["content"]
    assert PNG not in out[3]["content"]
    parts = out[4]["content"]
    urls = [p["image_url"]["url"] for p in parts if p["type"] == "image_url"]
    assert urls == [f"data:image/png;base64,{PNG}"]
    texts = [p["text"] for p in parts if p["type"] == "text"]
    assert any("toolu_B" in t for t in texts), "the moved image is attributed to its tool call"
    assert texts[-1] == "Which is warmer?"
    assert [p["type"] for p in parts].index("image_url") < len(parts) - 1


def test_tool_use_without_result_gets_a_placeholder_tool_message() -> None:
    history = [user("q"), assistant([tool_use("toolu_A"), tool_use("toolu_B")]),
               user([tool_result("toolu_A", "18C"), {"type": "text", "text": "never mind"}])]  # fmt: skip
    out = msgs(messages=history, tools=[WEATHER])
    assert [m["role"] for m in out] == ["user", "assistant", "tool", "tool", "user"]
    assert out[2] == {"role": "tool", "tool_call_id": "toolu_A", "content": "18C"}
    assert out[3]["tool_call_id"] == "toolu_B" and out[3]["content"].strip()


def test_tool_use_followed_by_plain_user_text_gets_placeholder() -> None:
    history = [user("q"), assistant([tool_use("toolu_A")]), user("interrupted; do something else")]
    out = msgs(messages=history, tools=[WEATHER])
    assert [m["role"] for m in out] == ["user", "assistant", "tool", "user"]
    assert out[2]["tool_call_id"] == "toolu_A" and out[2]["content"].strip()


def test_tool_result_for_unknown_id_becomes_user_text_naming_it() -> None:
    history = [user("q"), assistant("plain answer"), user([tool_result("toolu_ORPHAN", "late data")])]
    out = msgs(messages=history, tools=[WEATHER])
    assert all(m["role"] != "tool" for m in out)
    last = out[-1]
    assert last["role"] == "user"
    text = last["content"] if isinstance(last["content"], str) else " ".join(p.get("text", "") for p in last["content"])
    assert "toolu_ORPHAN" in text and "late data" in text


# --- thinking history ------------------------------------------------------------------------------


def _thinking_turn(signature: str, thinking: str = "I should look it up.") -> list[dict[str, Any]]:
    return [
        user("weather?"),
        assistant([{"type": "thinking", "thinking": thinking, "signature": signature}, tool_use("toolu_A")]),
        user([tool_result("toolu_A")]),
    ]


def test_genuine_claude_signature_replayed_as_reasoning_details_to_claude() -> None:
    body, _ = upstream_body(model="claude-opus-4-8", messages=_thinking_turn(GENUINE_SIG), tools=[WEATHER])
    call = body["messages"][1]
    assert call["reasoning_details"] == [{"type": "reasoning.text", "text": "I should look it up.",
                                          "signature": GENUINE_SIG, "format": CLAUDE_FORMAT, "index": 0}]  # fmt: skip


def _minted_thinking(completion_message: dict[str, Any], kind: Kind = "openrouter", model: str = NON_CLAUDE) -> dict[str, Any]:
    """A thinking block as the gateway returned it for a non-Claude upstream."""
    completion = {"choices": [{"index": 0, "message": completion_message, "finish_reason": "stop"}]}
    message = to_anthropic_message(completion, ctx_for(model=model, kind=kind), MESSAGE_ID)
    block: dict[str, Any] = message["content"][0]
    assert block["type"] == "thinking"
    return block


def test_gateway_envelope_never_sent_to_a_claude_target() -> None:
    block = _minted_thinking({"role": "assistant", "content": "42", "reasoning": "six times seven"})
    assert block["signature"].startswith("agw1.")
    history = [user("q"), assistant([block, tool_use("toolu_A")]), user([tool_result("toolu_A")])]
    body, _ = upstream_body(model="claude-opus-4-8", messages=history, tools=[WEATHER])
    assert "agw1." not in json.dumps(body)
    assert "reasoning_details" not in body["messages"][1]


def test_envelope_restores_reasoning_details_for_a_non_claude_target() -> None:
    gemini = [{"type": "reasoning.encrypted", "data": "thought-signature-bytes", "format": "google-gemini-v1", "index": 0}]
    block = _minted_thinking({"role": "assistant", "content": "ok", "reasoning_details": gemini})
    history = [user("q"), assistant([block, tool_use("toolu_A")]), user([tool_result("toolu_A")])]
    body, _ = upstream_body(model=NON_CLAUDE, messages=history, tools=[WEATHER])
    assert body["messages"][1]["reasoning_details"] == gemini
    assert "agw1." not in json.dumps(body)


def test_envelope_restores_reasoning_content_for_openai_compatible() -> None:
    block = _minted_thinking({"role": "assistant", "content": "ok", "reasoning_content": "chain of thought"},
                             kind="openai-compatible", model="deepseek/deepseek-r1")  # fmt: skip
    assert block["thinking"] == "chain of thought"
    history = [user("q"), assistant([block, tool_use("toolu_A")]), user([tool_result("toolu_A")])]
    body, _ = upstream_body(model="deepseek/deepseek-r1", kind="openai-compatible", messages=history, tools=[WEATHER])
    assert body["messages"][1]["reasoning_content"] == "chain of thought"
    assert "agw1." not in json.dumps(body)


def test_redacted_thinking_only_to_claude_targets() -> None:
    history = [user("q"), assistant([{"type": "redacted_thinking", "data": "REDACTED-BLOB"}, {"type": "text", "text": "hi"}]),
               user("again")]  # fmt: skip
    body, _ = upstream_body(model="claude-opus-4-8", messages=history)
    assert body["messages"][1]["reasoning_details"] == [
        {"type": "reasoning.encrypted", "data": "REDACTED-BLOB", "format": CLAUDE_FORMAT, "index": 0}]
    for kind in KINDS:
        body, _ = upstream_body(model=NON_CLAUDE, kind=kind, messages=history)
        assert "REDACTED-BLOB" not in json.dumps(body)


# --- thinking config ------------------------------------------------------------------------------


def test_thinking_enabled_budget_openrouter() -> None:
    body, _ = upstream_body(max_tokens=10000, thinking={"type": "enabled", "budget_tokens": 4000})
    assert body["reasoning"] == {"max_tokens": 4000}
    assert "reasoning_effort" not in body


@pytest.mark.parametrize("kind", ["openai", "openai-compatible"])
@pytest.mark.parametrize(("budget", "effort"), [(8000, "high"), (9999, "high"), (5000, "medium"), (2000, "low")])
def test_thinking_enabled_budget_openai_kinds(kind: Kind, budget: int, effort: str) -> None:
    body, _ = upstream_body(model="openai/o3", kind=kind, max_tokens=10000,
                            thinking={"type": "enabled", "budget_tokens": budget})  # fmt: skip
    assert body["reasoning_effort"] == effort
    assert "reasoning" not in body


def test_thinking_adaptive_with_effort_openrouter() -> None:
    body, _ = upstream_body(thinking={"type": "adaptive"}, output_config={"effort": "medium"})
    assert body["reasoning"] == {"effort": "medium"}


@pytest.mark.parametrize("kind", ["openai", "openai-compatible"])
def test_thinking_adaptive_with_effort_openai_kinds(kind: Kind) -> None:
    body, _ = upstream_body(model="openai/o3", kind=kind, thinking={"type": "adaptive"}, output_config={"effort": "low"})
    assert body["reasoning_effort"] == "low"


@pytest.mark.parametrize("model", ["openai/gpt-4o", "gpt-4.1"])
def test_openai_kind_sends_no_reasoning_effort_to_non_reasoning_models(model: str) -> None:
    # Claude Code always asks for adaptive thinking; OpenAI rejects reasoning_effort for gpt-4o.
    body, _ = upstream_body(model=model, kind="openai", env={"passthrough_models": "true"},
                            thinking={"type": "adaptive"}, output_config={"effort": "high"})  # fmt: skip
    assert "reasoning_effort" not in body and "reasoning" not in body
    assert "reasoning" not in body


@pytest.mark.parametrize("kind", KINDS)
def test_thinking_disabled_sends_no_reasoning_and_drops_effort(kind: Kind) -> None:
    body, _ = upstream_body(kind=kind, thinking={"type": "disabled"}, output_config={"effort": "high"})
    assert "reasoning" not in body and "reasoning_effort" not in body
    assert "effort" not in json.dumps(body)


@pytest.mark.parametrize("kind", KINDS)
def test_no_thinking_turns_nothing_on(kind: Kind) -> None:
    body, _ = upstream_body(kind=kind)
    assert "reasoning" not in body and "reasoning_effort" not in body


# --- tools ---------------------------------------------------------------------------------------


def test_a_tool_description_reaches_the_upstream_as_its_text_and_is_encoded_once() -> None:
    described = {**WEATHER, "description": 'Says "hi"\n\t— to 🤖 \\ </script> \u2028'}
    first, _ = to_openai_request(request(tools=[described]), route("claude-sonnet-5", "openai"), stream=False)
    again, _ = to_openai_request(request(tools=[described]), route("claude-sonnet-5", "openai"), stream=False)
    sent = orjson.loads(msgspec.json.encode(first))["tools"][0]["function"]["description"]
    assert sent == described["description"]
    assert again["tools"][0]["function"]["description"] is first["tools"][0]["function"]["description"]
    for i in range(request_module._DESCRIPTIONS + 10):
        request_module._description_json(f"tool {i}")
    assert len(request_module._DESCRIPTION_JSON) <= request_module._DESCRIPTIONS  # bounded


def test_tool_definition_shape() -> None:
    body, _ = upstream_body(tools=[WEATHER])
    assert body["tools"] == [{"type": "function", "function": {
        "name": "get_weather", "description": "Weather for a city.", "parameters": SCHEMA}}]  # fmt: skip


def test_tool_cache_control_only_for_openrouter() -> None:
    t = dict(WEATHER, cache_control={"type": "ephemeral"})
    body, _ = upstream_body(model="claude-opus-4", kind="openrouter", tools=[t])
    assert body["tools"][0]["cache_control"] == {"type": "ephemeral"}
    body, _ = upstream_body(model="claude-opus-4", kind="openai", tools=[t])
    assert "cache_control" not in body["tools"][0]


LONG_NAME = "mcp__some_very_long_server_name__and_an_even_longer_tool_name_exceeding_limits"
ODD_NAME = "mcp.server/tool:read"


def test_long_and_invalid_tool_names_mapped_reversibly() -> None:
    assert len(LONG_NAME) > 64
    long2 = LONG_NAME + "_v2"
    tools = [dict(WEATHER, name=n) for n in (LONG_NAME, long2, ODD_NAME, "fine_name")]
    body, ctx = upstream_body(tools=tools, tool_choice={"type": "tool", "name": LONG_NAME})
    names = [t["function"]["name"] for t in body["tools"]]
    assert all(TOOL_NAME_RE.match(n) for n in names), names
    assert len(set(names)) == 4 and names[3] == "fine_name"
    assert body["tool_choice"] == {"type": "function", "function": {"name": names[0]}}
    # the response maps the upstream names back to the client's
    completion = completion_of([tool(0, "call_1", names[0], '{"city": "x"}'), tool(1, "call_2", names[2], "{}"),
                                tool(2, "call_3", "fine_name", "{}")])  # fmt: skip
    message = to_anthropic_message(completion, ctx, MESSAGE_ID)
    assert [b["name"] for b in message["content"]] == [LONG_NAME, ODD_NAME, "fine_name"]


def test_long_tool_name_in_history_mapped_the_same_way() -> None:
    history = [user("q"), assistant([tool_use("toolu_A", LONG_NAME)]), user([tool_result("toolu_A")])]
    body, _ = upstream_body(messages=history, tools=[dict(WEATHER, name=LONG_NAME)])
    assert body["messages"][1]["tool_calls"][0]["function"]["name"] == body["tools"][0]["function"]["name"]


@pytest.mark.parametrize(("choice", "expected"), [
    ({"type": "auto"}, "auto"),
    ({"type": "any"}, "required"),
    ({"type": "tool", "name": "get_weather"}, {"type": "function", "function": {"name": "get_weather"}}),
    ({"type": "none"}, "none"),
])  # fmt: skip
def test_tool_choice_mapping(choice: dict[str, Any], expected: Any) -> None:
    body, _ = upstream_body(tools=[WEATHER], tool_choice=choice)
    assert body["tool_choice"] == expected
    assert len(body["tools"]) == 1  # `none` keeps the tools so the history stays valid
    assert "parallel_tool_calls" not in body


@pytest.mark.parametrize("choice_type", ["auto", "any"])
def test_disable_parallel_tool_use(choice_type: str) -> None:
    body, _ = upstream_body(tools=[WEATHER], tool_choice={"type": choice_type, "disable_parallel_tool_use": True})
    assert body["parallel_tool_calls"] is False


def test_disable_parallel_tool_use_without_tools_sends_nothing() -> None:
    body, _ = upstream_body(tool_choice={"type": "auto", "disable_parallel_tool_use": True})
    assert "parallel_tool_calls" not in body and "tool_choice" not in body and "tools" not in body


def test_server_tool_refused_naming_the_field() -> None:
    tools = [WEATHER, {"type": "web_fetch_20250910", "name": "web_fetch", "max_uses": 3}]
    with pytest.raises(InvalidRequestError) as err:
        upstream_body(tools=tools)
    assert "tools.1" in err.value.message and err.value.http_status == 400


def test_web_search_becomes_the_openrouter_web_plugin_and_is_refused_elsewhere() -> None:
    tools = [WEATHER, {"type": "web_search_20250305", "name": "web_search", "max_uses": 3}]
    body, ctx = upstream_body(tools=tools)
    assert body["plugins"] == [{"id": "web", "max_results": 3}]
    assert [t["function"]["name"] for t in body["tools"]] == ["get_weather"]
    assert ctx.web_search_query == "Hello"
    with pytest.raises(InvalidRequestError) as err:
        upstream_body(kind="openai-compatible", tools=tools)
    assert err.value.message.startswith("tools.1: 'web_search_20250305' (web search) runs on OpenRouter's web plugin")
    assert "ANTHROPIC_GATEWAY_WEB_SEARCH_URL" in err.value.message


def test_output_config_format_becomes_response_format() -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
    body, _ = upstream_body(output_config={"format": {"type": "json_schema", "schema": schema}})
    assert body["response_format"] == {"type": "json_schema",
                                       "json_schema": {"name": "output", "strict": True, "schema": schema}}  # fmt: skip


# --- sampling and other fields ---------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "field", "absent"), [
    ("openrouter", "max_tokens", "max_completion_tokens"),
    ("openai", "max_completion_tokens", "max_tokens"),
    ("openai-compatible", "max_tokens", "max_completion_tokens"),
])  # fmt: skip
def test_max_tokens_field_per_kind(kind: Kind, field: str, absent: str) -> None:
    body, _ = upstream_body(kind=kind, max_tokens=777)
    assert body[field] == 777 and absent not in body


@pytest.mark.parametrize(("kind", "forwarded"), [("openrouter", True), ("openai", False), ("openai-compatible", True)])
def test_top_k_per_kind(kind: Kind, forwarded: bool) -> None:
    body, _ = upstream_body(kind=kind, top_k=40)
    assert (body.get("top_k") == 40) is forwarded
    assert ("top_k" in body) is forwarded


SIX_STOPS = ["S1", "S2", "S3", "S4", "S5", "S6"]


@pytest.mark.parametrize("kind", ["openrouter", "openai", "openai-compatible"])
def test_no_stop_goes_to_a_backend_that_does_not_say_which_matched(kind: Kind) -> None:
    """It would cut the text at the string and not name it: the gateway matches them all itself."""
    body, ctx = upstream_body(kind=kind, stop_sequences=SIX_STOPS)
    assert "stop" not in body
    assert ctx.local_stops == SIX_STOPS and ctx.stop_sequences == SIX_STOPS


@pytest.mark.parametrize(("kind", "sent", "local"), [("openai", 4, SIX_STOPS), ("openai-compatible", 6, [])])
def test_a_backend_that_names_the_match_gets_stops_up_to_its_limit(kind: Kind, sent: int, local: list[str]) -> None:
    body, ctx = upstream_body(kind=kind, stop_sequences=SIX_STOPS, env={"reports_matched_stop": "true"})
    assert body["stop"] == SIX_STOPS[:sent]
    assert ctx.stop_sequences == SIX_STOPS
    assert ctx.local_stops == local  # the ones it was not given are matched locally


def test_sampling_fields_forwarded_only_when_set() -> None:
    body, _ = upstream_body()
    assert set(body) == {"model", "messages", "max_tokens"}
    body, _ = upstream_body(temperature=0.2, top_p=0.9, metadata={"user_id": "u-123"})
    assert body["temperature"] == 0.2 and body["top_p"] == 0.9 and body["user"] == "u-123"
    assert set(body) == {"model", "messages", "max_tokens", "temperature", "top_p", "user"}


def test_ignored_fields_not_forwarded() -> None:
    body, _ = upstream_body(service_tier="auto", context_management={"edits": []}, container="c1", speed="fast",
                            inference_geo="eu", unknown_future_field={"a": 1})  # fmt: skip
    assert set(body) == {"model", "messages", "max_tokens"}


@pytest.mark.parametrize(("kind", "options"), [("openrouter", False), ("openai", True), ("openai-compatible", True)])
def test_stream_options_only_for_non_openrouter(kind: Kind, options: bool) -> None:
    body, _ = upstream_body(kind=kind, stream=True)
    assert body["stream"] is True
    assert (body.get("stream_options") == {"include_usage": True}) is options
    assert ("stream_options" in body) is options
    body, _ = upstream_body(kind=kind, stream=False)
    assert "stream" not in body and "stream_options" not in body


# --- models ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("model", "upstream"), [
    ("claude-opus-4-8", OPUS),
    ("claude-sonnet-5", SONNET),
    ("claude-haiku-4-5-20251001", HAIKU),
    ("claude-3-7-sonnet-20250219", SONNET),
    ("claude-opus-9-20300101", OPUS),  # names Claude Code will invent later
    ("deepseek/deepseek-chat-v3.1", "deepseek/deepseek-chat-v3.1"),
    ("anthropic/claude-opus-4.5", "anthropic/claude-opus-4.5"),
])  # fmt: skip
def test_model_mapping(model: str, upstream: str) -> None:
    assert route(model).upstream_model == upstream
    body, ctx = upstream_body(model=model)
    assert body["model"] == upstream
    assert ctx.client_model == model


def test_response_echoes_the_client_model() -> None:
    ctx = ctx_for(model="claude-haiku-4-5-20251001")
    completion = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
                  "model": HAIKU}  # fmt: skip
    assert to_anthropic_message(completion, ctx, MESSAGE_ID)["model"] == "claude-haiku-4-5-20251001"


# --- tool-call ids toward restrictive backends ---------------------------------------------------------


LONG_ID = "toolu_" + "a1B2c3D4e5" * 6  # 66 characters


@pytest.mark.parametrize("kind", ["openai", "openai-compatible"])
def test_long_tool_call_ids_rewritten_consistently(kind: Kind) -> None:
    short = "toolu_01A"
    history = [user("q"), assistant([tool_use(LONG_ID), tool_use(short)]),
               user([tool_result(LONG_ID, "r1"), tool_result(short, "r2")])]  # fmt: skip
    out = msgs(kind=kind, messages=history, tools=[WEATHER])
    ids = [c["id"] for c in out[1]["tool_calls"]]
    assert len(ids[0]) <= 40 and ids[0] != LONG_ID
    assert ids[1] == short
    assert [(m["tool_call_id"], m["content"]) for m in out[2:4]] == [(ids[0], "r1"), (short, "r2")]


def test_long_tool_call_ids_kept_for_openrouter() -> None:
    history = [user("q"), assistant([tool_use(LONG_ID)]), user([tool_result(LONG_ID, "r1")])]
    out = msgs(messages=history, tools=[WEATHER])
    assert out[1]["tool_calls"][0]["id"] == LONG_ID and out[2]["tool_call_id"] == LONG_ID


# --- adjacent messages and mid-conversation system blocks ----------------------------------------------


def test_adjacent_user_messages_merged_only_where_the_backend_needs_it() -> None:
    history = [user("first"), user("second")]
    merged = msgs(kind="openai-compatible", messages=history)
    assert len(merged) == 1 and merged[0]["role"] == "user"
    assert "first" in str(merged[0]["content"]) and "second" in str(merged[0]["content"])
    assert msgs(kind="openrouter", messages=history) == [user("first"), user("second")]


def test_user_messages_never_merged_across_tool_messages() -> None:
    history = [user("q"), assistant([tool_use("toolu_A")]), user([tool_result("toolu_A"), {"type": "text", "text": "next"}])]
    out = msgs(kind="openai-compatible", messages=history, tools=[WEATHER])
    assert [m["role"] for m in out] == ["user", "assistant", "tool", "user"]


def test_mid_conv_system_block_hoisted_by_default_and_kept_when_configured() -> None:
    block = {"type": "mid_conv_system", "content": [{"type": "text", "text": "Reminder: be terse."}]}
    history = [user([block, {"type": "text", "text": "Hi"}])]
    out = msgs(kind="openai-compatible", system="Base.", messages=history)
    assert out == [{"role": "system", "content": "Base.\n\nReminder: be terse."}, {"role": "user", "content": "Hi"}]
    body, _ = upstream_body(kind="openai-compatible", env={"system_messages": "keep"}, system="Base.", messages=history)
    assert [m["role"] for m in body["messages"]] == ["system", "system", "user"]
    assert body["messages"][1]["content"] == "Reminder: be terse."


def test_unsigned_thinking_not_sent_to_claude() -> None:
    history = [user("q"), assistant([{"type": "thinking", "thinking": "unsigned", "signature": ""},
                                     {"type": "text", "text": "a"}]), user("b")]  # fmt: skip
    body, _ = upstream_body(model="claude-opus-4-8", messages=history)
    assert "reasoning_details" not in body["messages"][1] and "unsigned" not in json.dumps(body)


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
