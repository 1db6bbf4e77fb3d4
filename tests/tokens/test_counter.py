"""count_request_tokens: exact counts on small requests, written out by hand from the documented rule
(tokenizer on the raw strings + per-message / per-tool overheads), and the Claude Code fixture against
the tokenized upstream body."""

from __future__ import annotations

import base64
import json
import struct
from typing import Any

import msgspec
import pytest

from anthropic_gateway.errors import InvalidRequestError
from anthropic_gateway.schemas import SharedList, decode_count_tokens_request, decode_messages_request
from anthropic_gateway.tokens import count_request_tokens, count_text_tokens, family_for_model
from anthropic_gateway.tokens import counter as counter_module
from anthropic_gateway.tokens.vocab import get_encoding
from paths import CLAUDE_CODE_FIXTURE

# shared/ sits beside the repository checkout (locally and in CI).
FIXTURE = CLAUDE_CODE_FIXTURE


def T(text: str) -> int:
    return len(get_encoding("o200k_base").encode_ordinary(text))


def req(**body: Any) -> bytes:
    body.setdefault("model", "claude-sonnet-4-5")
    return json.dumps(body).encode()


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    counter_module.clear_cache()


def test_single_user_message() -> None:
    r = decode_count_tokens_request(req(messages=[{"role": "user", "content": "Hello, world"}]))
    # reply priming 3 + message (3 + "user") + text
    assert count_request_tokens(r, "openai/gpt-4o") == 3 + 3 + T("user") + T("Hello, world")


WEATHER_SCHEMA = '{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}'
TOOL_CONVERSATION = {
    "system": [{"type": "text", "text": "You are terse."}, {"type": "text", "text": "Answer in French."}],
    "tools": [
        {"name": "get_weather", "description": "Get the weather.", "input_schema": json.loads(WEATHER_SCHEMA)}
    ],
    "messages": [
        {"role": "user", "content": "What's the weather in Paris?"},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Let me check."},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_1",
                    "content": [{"type": "text", "text": "18C, sunny"}],
                },
                {"type": "text", "text": "Thanks."},
            ],
        },
    ],
}
# The tool exactly as the model reads it: compact JSON of name, description and the schema as sent.
WEATHER_TOOL_JSON = (
    '{"name":"get_weather","description":"Get the weather.","parameters":' + WEATHER_SCHEMA + "}"
)


def _conversation_without_tools_preamble() -> int:
    return (
        3  # reply priming
        + 3 + T("system") + T("You are terse.\n\nAnswer in French.")
        + 3 + T("user") + T("What's the weather in Paris?")
        + 3 + T("assistant") + T("Let me check.") + 3 + T("get_weather") + T('{"city":"Paris"}')
        + 3 + T("tool") + T("18C, sunny")
        + 3 + T("user") + T("Thanks.")
        + 7 + T(WEATHER_TOOL_JSON)
    )  # fmt: skip


def test_tool_conversation_openai_family() -> None:
    body = req(**TOOL_CONVERSATION)
    body = body.replace(json.dumps(json.loads(WEATHER_SCHEMA)).encode(), WEATHER_SCHEMA.encode())
    r = decode_count_tokens_request(body)
    assert bytes(r.tools[0].input_schema) == WEATHER_SCHEMA.encode()  # type: ignore[index]
    assert count_request_tokens(r, "openai/gpt-4o") == _conversation_without_tools_preamble() + 12


@pytest.mark.parametrize(
    ("tool_choice", "extra"),
    [
        (None, 346),
        ({"type": "auto"}, 346),
        ({"type": "none"}, 346),
        ({"type": "any"}, 313),
        ({"type": "tool", "name": "get_weather"}, 313 + 3 + 2),  # + call overhead + "get_weather" (2 tokens)
    ],
)
def test_tool_conversation_claude_family(tool_choice: dict[str, Any] | None, extra: int) -> None:
    assert T("get_weather") == 2
    body = dict(TOOL_CONVERSATION, tool_choice=tool_choice) if tool_choice else TOOL_CONVERSATION
    raw = req(**body).replace(json.dumps(json.loads(WEATHER_SCHEMA)).encode(), WEATHER_SCHEMA.encode())
    r = decode_count_tokens_request(raw)
    assert (
        count_request_tokens(r, "anthropic/claude-sonnet-4.5")
        == _conversation_without_tools_preamble() + extra
    )


def _png(width: int, height: int) -> str:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return base64.b64encode(b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR" + ihdr + b"\x00" * 16).decode()


def test_blocks_of_every_kind() -> None:
    pdf = b"%PDF-1.4\n<< /Type /Page >>\n<< /Type /Page >>\n<< /Type /Pages /Count 2 >>"
    content = [
        {"type": "text", "text": "Look:"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": _png(150, 100)}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}},
        {"type": "document", "title": "Spec", "source": {"type": "base64", "media_type": "application/pdf",
                                                          "data": base64.b64encode(pdf).decode()}},
        {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "plain notes"}},
        {"type": "document", "source": {"type": "content", "content": [{"type": "text", "text": "inner"}]}},
        {"type": "search_result", "source": "https://s", "title": "Result", "content": [{"type": "text", "text": "snippet"}]},
    ]  # fmt: skip
    messages = [
        {"role": "user", "content": content},
        {
            "role": "assistant",
            "content": [{"type": "thinking", "thinking": "Hmm, a diagram.", "signature": "sig"}],
        },
    ]
    r = decode_count_tokens_request(req(messages=messages))
    expected = (
        3
        + 3 + T("user") + T("Look:")
        + 20  # 150 x 100 = 15,000 px / 750
        + 1600  # URL image: fixed estimate
        + T("Spec") + 2 * 3100  # two pages
        + T("plain notes") + T("inner")
        + T("https://s") + T("Result") + T("snippet")
        + 3 + T("assistant") + T("Hmm, a diagram.")
    )  # fmt: skip
    assert count_request_tokens(r, "llama3") == expected


def test_cl100k_for_gpt4() -> None:
    r = decode_count_tokens_request(req(messages=[{"role": "user", "content": "naïve café façade"}]))
    cl = get_encoding("cl100k_base")
    expected = 3 + 3 + len(cl.encode_ordinary("user")) + len(cl.encode_ordinary("naïve café façade"))
    assert count_request_tokens(r, "openai/gpt-4") == expected
    assert count_text_tokens("naïve café façade", "gpt-3.5-turbo") == len(
        cl.encode_ordinary("naïve café façade")
    )


@pytest.mark.parametrize(
    ("model", "family"),
    [
        ("anthropic/claude-sonnet-4.5", "claude"),
        ("claude-opus-4-8", "claude"),
        ("openai/gpt-4o", "openai-o200k"),
        ("openai/gpt-4.1-mini", "openai-o200k"),
        ("gpt-5", "openai-o200k"),
        ("openai/o3-mini", "openai-o200k"),
        ("openai/gpt-4", "openai-cl100k"),
        ("gpt-4-turbo", "openai-cl100k"),
        ("gpt-3.5-turbo", "openai-cl100k"),
        ("llama3", "default"),
        ("qwen/qwen3-coder", "default"),
    ],
)
def test_family_for_model(model: str, family: str) -> None:
    assert family_for_model(model).name == family


def test_system_and_tools_are_counted_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real_tools, real_system = counter_module._Counter.tools, counter_module._Counter.system

    def tools(self: Any, tools: Any) -> int:
        calls.append("tools")
        return real_tools(self, tools)

    def system(self: Any, system: Any) -> int:
        calls.append("system")
        return real_system(self, system)

    monkeypatch.setattr(counter_module._Counter, "tools", tools)
    monkeypatch.setattr(counter_module._Counter, "system", system)
    first = decode_count_tokens_request(req(**TOOL_CONVERSATION))
    # Same system and tools, other key order in the client's body: same cache key. (Whitespace inside
    # input_schema does change the key: the schema goes upstream byte for byte, so it counts as sent.)
    again = dict(TOOL_CONVERSATION, model="m", messages=[{"content": "New question", "role": "user"}])
    second = decode_count_tokens_request(json.dumps(dict(reversed(again.items()))).encode())
    a = count_request_tokens(first, "openai/gpt-4o")
    b = count_request_tokens(second, "openai/gpt-4o")
    assert count_request_tokens(first, "openai/gpt-4o") == a
    assert calls == ["system", "tools"]
    assert a > b > 0


def test_a_changed_earlier_message_is_counted_again(monkeypatch: pytest.MonkeyPatch) -> None:
    counted: list[Any] = []
    real = counter_module._Counter.message

    def message(self: Any, msg: Any) -> int:
        counted.append(msg.content)
        return real(self, msg)

    monkeypatch.setattr(counter_module._Counter, "message", message)
    history = [{"role": "user", "content": "alpha beta"}, {"role": "assistant", "content": "gamma"},
               {"role": "user", "content": "delta"}]  # fmt: skip
    base = count_request_tokens(decode_count_tokens_request(req(messages=history)), "openai/gpt-4o")
    assert counted == ["alpha beta", "gamma", "delta"]
    counted.clear()
    # The next turn: only the new messages are counted, the history comes from the cache.
    turn = [*history, {"role": "assistant", "content": "epsilon"}, {"role": "user", "content": "zeta"}]
    count_request_tokens(decode_count_tokens_request(req(messages=turn)), "openai/gpt-4o")
    assert counted == ["epsilon", "zeta"]
    counted.clear()
    # The first message changed to another text of the same length (and a tool block's input in
    # another): counted again, never served the old message's count.
    edited = [{"role": "user", "content": "alpha beta beta beta"}, *history[1:]]
    longer = count_request_tokens(decode_count_tokens_request(req(messages=edited)), "openai/gpt-4o")
    assert counted == ["alpha beta beta beta"]
    assert longer > base
    counted.clear()
    same_length = [{"role": "user", "content": "alpha bet4"}, *history[1:]]
    count_request_tokens(decode_count_tokens_request(req(messages=same_length)), "openai/gpt-4o")
    assert counted == ["alpha bet4"]


def test_cache_is_bounded() -> None:
    for i in range(counter_module.CACHE_SIZE + 50):
        r = decode_count_tokens_request(req(messages=[{"role": "user", "content": f"message {i}"}]))
        count_request_tokens(r, "openai/gpt-4o")
    assert len(counter_module._cache) == counter_module.CACHE_SIZE


@pytest.mark.parametrize("turn", ["first_turn", "second_turn"])
@pytest.mark.parametrize("model", ["anthropic/claude-sonnet-4.5", "openai/gpt-4o"])
def test_claude_code_fixture_within_3_percent_of_upstream_body(turn: str, model: str) -> None:
    from anthropic_gateway.backends import KINDS
    from anthropic_gateway.routing import Backend, Route
    from anthropic_gateway.translate.request import to_openai_request

    # Compact, as Claude Code (JSON.stringify) sends it: the schemas go upstream byte for byte.
    raw = json.dumps(json.loads(FIXTURE.read_bytes())[turn], separators=(",", ":")).encode()
    request = decode_messages_request(raw)
    for kind in KINDS.values():
        route = Route(
            "claude-opus-4-8", model, Backend("b", "http://u", "http://u/chat/completions", None, kind, False)
        )
        body, _ = to_openai_request(request, route, stream=False)
        # What the model is given: messages, tools and tool_choice; sampling knobs are not prompt text.
        upstream = {k: v for k, v in body.items() if k in ("messages", "tools", "tool_choice")}
        reference = len(get_encoding("o200k_base").encode_ordinary(msgspec.json.encode(upstream).decode()))
        counted = count_request_tokens(request, model)
        assert abs(counted - reference) / reference < 0.03, (kind.name, counted, reference)


@pytest.mark.parametrize(
    ("block", "field"),
    [
        ({"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "!!!!"}},
         "messages.0.content.0.source.data: is not valid base64"),
        ({"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "AA=A"}},
         "messages.0.content.0.source.data: is not valid base64"),
        ({"type": "image", "source": {"type": "base64", "media_type": "image/bmp", "data": "AAAA"}},
         "messages.0.content.0.source.media_type: Invalid enum value 'image/bmp'"),
    ],
)  # fmt: skip
def test_invalid_blocks_are_400s_naming_the_field(block: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        decode_count_tokens_request(req(messages=[{"role": "user", "content": [block]}]))
    assert info.value.http_status == 400
    assert info.value.message == field


def test_body_that_is_not_json_is_a_400() -> None:
    with pytest.raises(InvalidRequestError) as info:
        decode_count_tokens_request(b"not json")
    assert info.value.http_status == 400
    assert info.value.message.startswith("Request body is not valid JSON")


def test_a_million_spaces_are_counted_not_a_crash() -> None:
    assert 5_000 < count_text_tokens(" " * 1_000_000, "a/b") < 300_000


def test_long_text_counts_as_in_one_piece_within_a_token_or_two() -> None:
    text = "hello world, this is a sentence. " * 5_000
    whole = count_text_tokens(text[:30_000], "a/b") * 5 + count_text_tokens(text[150_000:], "a/b")
    assert abs(count_text_tokens(text, "a/b") - whole) <= 10


def test_tool_input_orjson_cannot_encode_is_still_counted() -> None:
    block = {"type": "tool_use", "id": "t1", "name": "n", "input": {"x": 10**22}}
    body = {"model": "a/b", "messages": [{"role": "assistant", "content": [block]}]}
    assert count_request_tokens(decode_count_tokens_request(json.dumps(body).encode()), "a/b") > 10


def test_a_tool_result_is_counted_by_its_text_however_its_json_escapes_it() -> None:
    # The result is kept as the client's JSON: two spellings of one text are two cache keys, one count.
    def body(literal: bytes) -> bytes:
        return (b'{"model":"m","messages":[{"role":"assistant","content":[{"type":"tool_use","id":"t1","name":"Read",'
                b'"input":{}}]},{"role":"user","content":[{"type":"tool_result","tool_use_id":"t1","content":'
                + literal + b"}]}]}")  # fmt: skip

    plain = count_request_tokens(decode_count_tokens_request(body('"caf\xc3\xa9 au lait, 42 \\u00e9"'.encode("latin-1"))), "openai/gpt-4o")
    escaped = count_request_tokens(decode_count_tokens_request(body(b'"caf\\u00e9 au lait, 42 \\u00e9"')), "openai/gpt-4o")
    empty = count_request_tokens(decode_count_tokens_request(body(b'""')), "openai/gpt-4o")
    assert plain == escaped > empty + 5


def test_a_history_longer_than_the_cache_is_counted_whole() -> None:
    n = counter_module.CACHE_SIZE + 10
    history = [{"role": "user" if i % 2 == 0 else "assistant", "content": f"turn {i}"} for i in range(n + 1)]
    r = decode_count_tokens_request(req(messages=history))
    first = count_request_tokens(r, "openai/gpt-4o")
    assert count_request_tokens(r, "openai/gpt-4o") == first  # the oldest evicted and counted again
    assert len(counter_module._cache) == counter_module.CACHE_SIZE


def test_tools_from_the_decoded_tools_cache_are_keyed_once_and_a_changed_list_is_counted_again() -> None:
    def body(description: str) -> bytes:
        tool = {"name": "get_weather", "description": description, "input_schema": json.loads(WEATHER_SCHEMA)}
        return req(messages=[{"role": "user", "content": "hi"}], tools=[tool])

    first = decode_count_tokens_request(body("Get the weather."))
    assert isinstance(first.tools, SharedList)
    n = count_request_tokens(first, "openai/gpt-4o")
    assert first.tools.entry.memo["tokens"] == counter_module._digest(first.tools)
    again = decode_count_tokens_request(body("Get the weather."))
    assert count_request_tokens(again, "openai/gpt-4o") == n
    longer = count_request_tokens(decode_count_tokens_request(body("Get the weather, in detail.")), "openai/gpt-4o")
    assert longer > n
    # A list edited in place no longer holds its entry's tools: keyed (and counted) as what it now is.
    edited = decode_count_tokens_request(body("Get the weather."))
    assert edited.tools is not None
    edited.tools.append(decode_count_tokens_request(body("Get the weather, in detail.")).tools[0])  # type: ignore[index]
    assert count_request_tokens(edited, "openai/gpt-4o") > longer
