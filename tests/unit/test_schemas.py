"""Tests."""

from __future__ import annotations

import json

import pytest

from anthropic_gateway.errors import InvalidRequestError
from anthropic_gateway.schemas import (
    SharedList,
    TextBlock,
    ToolResultBlock,
    decode_messages_request,
    system_cache,
    tools_cache,
)


def test_an_unhashable_inner_block_type_is_a_400_not_a_500() -> None:
    block = {"type": "tool_result", "tool_use_id": "t", "content": [{"type": ["a"]}]}
    body = {"model": "a/b", "max_tokens": 5, "messages": [{"role": "user", "content": [block, {"type": "zzz"}]}]}
    with pytest.raises(InvalidRequestError):
        decode_messages_request(json.dumps(body).encode())


def test_deeply_nested_json_is_a_400() -> None:
    body = '{"model":"a/b","max_tokens":5,"messages":[{"role":"assistant","content":[{"type":"tool_use","id":"t","name":"n","input":' + "{\"a\":" * 5000 + "1" + "}" * 5001 + "]}]}"
    with pytest.raises(InvalidRequestError, match="nested too deeply"):
        decode_messages_request(body.encode())


# --- tool results' content, kept as the client's raw JSON --------------------------------------------


def _result_body(content: str) -> bytes:
    """A body whose only tool result has ``content`` as the given JSON text (not re-encoded)."""
    return (
        b'{"model":"a/b","max_tokens":5,"messages":[{"role":"user","content":[{"type":"tool_result",'
        b'"tool_use_id":"t","content":' + content.encode() + b"}]}]}"
    )


def _error(body: bytes) -> str:
    with pytest.raises(InvalidRequestError) as err:
        decode_messages_request(body)
    return str(err.value)


def test_a_tool_result_string_is_kept_as_sent_and_decodes_to_its_text() -> None:
    block = decode_messages_request(_result_body(r'"caf\u00e9 \/ \"q\"\n" '.strip())).messages[0].content[0]
    assert isinstance(block, ToolResultBlock)
    assert bytes(block.content) == rb'"caf\u00e9 \/ \"q\"\n"'
    assert block.text == 'café / "q"\n' and block.value == block.text and block.blocks is None


def test_a_tool_result_array_decodes_to_blocks_and_absent_content_to_none() -> None:
    block = decode_messages_request(_result_body('[{"type":"text","text":"x"}]')).messages[0].content[0]
    assert isinstance(block, ToolResultBlock) and block.text is None
    assert block.value == [TextBlock(text="x")]
    absent = decode_messages_request(_result_body("null").replace(b',"content":null', b"")).messages[0].content[0]
    assert isinstance(absent, ToolResultBlock) and absent.value is None and bytes(absent.content) == b"null"


def test_invalid_utf8_in_a_tool_result_string_is_refused_like_in_any_other_string() -> None:
    # msgspec checks the UTF-8 of what it decodes to str, not of raw JSON: the block checks it.
    bad = _result_body('"ok"').replace(b'"ok"', b'"caf\xe9"')
    in_text = bad.replace(b'"type":"tool_result","tool_use_id":"t","content"', b'"type":"text","text"')
    assert _error(bad) == _error(in_text)
    assert _error(bad).startswith("Request body is not valid JSON")


@pytest.mark.parametrize(("content", "message"), [
    ("5", "messages.0.content.0.content: Expected `str | array | null`, got `int`"),
    ('{"a":1}', "messages.0.content.0.content: Expected `str | array | null`, got `object`"),
    ('[{"type":"text","text":5}]', "messages.0.content.0.content.0.text: Expected `str`, got `int`"),
    ('[{"type":"image","source":{"type":"base64","media_type":"image/png","data":"@@"}}]',
     "messages.0.content.0.content.0.source.data: is not valid base64"),
])  # fmt: skip
def test_a_bad_tool_result_content_is_named_as_by_the_typed_field(content: str, message: str) -> None:
    assert _error(_result_body(content)) == message


def test_the_first_error_in_the_body_is_the_one_reported() -> None:
    # A typed field stops at its bad content before it sees the missing id or a later bad field.
    body = _result_body("5").replace(b'"tool_use_id":"t",', b"")
    assert _error(body) == "messages.0.content.0.content: Expected `str | array | null`, got `int`"
    later = _result_body('"x"').replace(b'"content":"x"', b'"content":7,"is_error":"no"')
    assert _error(later) == "messages.0.content.0.content: Expected `str | array | null`, got `int`"


def test_unknown_blocks_inside_a_tool_result_are_dropped() -> None:
    body = _result_body('[{"type":"text","text":"kept"},{"type":"zzz"}]')
    block = decode_messages_request(body).messages[0].content[0]
    assert isinstance(block, ToolResultBlock) and block.value == [TextBlock(text="kept")]


# --- tools decoded once per distinct list (schemas.tools_cache) -------------------------------------


def _tools_body(tools: object, **extra: object) -> bytes:
    return json.dumps({"model": "a/b", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}],
                       "tools": tools, **extra}).encode()  # fmt: skip


def _tool(description: str) -> dict[str, object]:
    return {"name": "get_weather", "description": description, "input_schema": {"type": "object"}}


def test_the_same_tool_bytes_share_one_decoded_list_and_each_request_gets_its_own_list() -> None:
    body = _tools_body([_tool("Weather for a place: 🌦"), _tool("second")])
    first, second = decode_messages_request(body), decode_messages_request(body)
    assert isinstance(first.tools, SharedList) and isinstance(second.tools, SharedList)
    assert first.tools.entry is second.tools.entry
    assert first.tools is not second.tools  # a reader editing its request's list edits only that one
    assert [t.description for t in second.tools] == ["Weather for a place: 🌦", "second"]
    assert bytes(second.tools[0].input_schema) == b'{"type": "object"}'  # as sent


def test_a_changed_tool_of_the_same_length_is_decoded_again_not_served_from_the_cache() -> None:
    # The same length, the same middle and the same end: the cache's lookup key is equal, the bytes are not.
    a = _tools_body([_tool("alpha " + "x" * 200), _tool("y" * 300)])
    b = _tools_body([_tool("omega " + "x" * 200), _tool("y" * 300)])
    assert len(a) == len(b)
    assert decode_messages_request(a).tools[0].description.startswith("alpha")  # type: ignore[index, union-attr]
    assert decode_messages_request(b).tools[0].description.startswith("omega")  # type: ignore[index, union-attr]
    assert decode_messages_request(a).tools[0].description.startswith("alpha")  # type: ignore[index, union-attr]


def test_absent_and_null_tools_are_none() -> None:
    assert decode_messages_request(_tools_body(None)).tools is None
    body = json.dumps({"model": "a/b", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}).encode()
    assert decode_messages_request(body).tools is None


@pytest.mark.parametrize(
    ("tools", "message"),
    [
        ([{"name": 5, "input_schema": {}}], "tools.0.name: Expected `str`, got `int`"),
        ({"name": "x"}, "tools: Expected `array | null`, got `object`"),
        ([{"description": "d"}], "tools.0.name: Field required"),
    ],
)
def test_a_bad_tool_list_is_named_as_before(tools: object, message: str) -> None:
    assert _error(_tools_body(tools)) == message
    assert _error(_tools_body(tools)) == message  # a refused list is not cached


def test_invalid_utf8_in_a_tool_description_is_refused() -> None:
    body = _tools_body([_tool("DESC")]).replace(b"DESC", b"\xff")
    assert "invalid utf-8" in _error(body).lower()


def test_an_error_elsewhere_in_the_body_is_reported_with_cached_tools() -> None:
    tools = [_tool("cached")]
    decode_messages_request(_tools_body(tools))
    assert _error(_tools_body(tools, max_tokens=0)) == "max_tokens: Expected `int` >= 1"


def test_the_cache_is_bounded_in_entries_and_bytes() -> None:
    tools_cache.clear()
    for i in range(tools_cache.entries + 5):
        decode_messages_request(_tools_body([_tool(f"tool {i}")]))
    assert len(tools_cache) == tools_cache.entries
    tools_cache.clear()
    big = tools_cache.largest // 2  # the byte budget, not the count, bounds these
    for i in range(tools_cache.total // big + 3):
        decode_messages_request(_tools_body([_tool("x" * (big + i))]))  # lengths differ: no shared lookup key
    assert len(tools_cache) == tools_cache.total // (big + 100)
    tools_cache.clear()
    decode_messages_request(_tools_body([_tool("x" * tools_cache.largest)]))
    assert len(tools_cache) == 0  # too long to keep


def test_lists_sharing_a_lookup_key_replace_each_other() -> None:
    tools_cache.clear()
    a, b = _tools_body([_tool("a" + "x" * 100)]), _tools_body([_tool("b" + "x" * 100)])
    assert decode_messages_request(a).tools[0].description[0] == "a"  # type: ignore[index]
    assert decode_messages_request(b).tools[0].description[0] == "b"  # type: ignore[index]
    assert len(tools_cache) == 1
    assert decode_messages_request(a).tools[0].description[0] == "a"  # type: ignore[index]


def _system_body(system: object) -> bytes:
    return json.dumps({"model": "a/b", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}],
                       "system": system}).encode()  # fmt: skip


def test_a_system_prompt_is_decoded_once_per_distinct_prompt() -> None:
    blocks = [{"type": "text", "text": "You are terse — très."},
              {"type": "text", "text": "Cached.", "cache_control": {"type": "ephemeral"}}]  # fmt: skip
    first, second = decode_messages_request(_system_body(blocks)), decode_messages_request(_system_body(blocks))
    assert isinstance(first.system, SharedList) and isinstance(second.system, SharedList)
    assert first.system.entry is second.system.entry and first.system is not second.system
    assert [b.text for b in second.system] == ["You are terse — très.", "Cached."]
    assert second.system[1].cache_control == {"type": "ephemeral"}
    changed = [blocks[0], {**blocks[1], "text": "Cachez."}]  # the same length
    again = decode_messages_request(_system_body(changed)).system
    assert [b.text for b in again] == ["You are terse — très.", "Cachez."]  # type: ignore[union-attr]
    text = decode_messages_request(_system_body("plain")).system
    assert text == "plain" and decode_messages_request(_system_body("plain")).system is text
    assert decode_messages_request(_system_body(None)).system is None
    assert len(system_cache) >= 2


@pytest.mark.parametrize(
    ("system", "message"),
    [
        (5, "system: Expected `str | array | null`, got `int`"),
        ([{"type": "text"}], "system.0.text: Field required"),
    ],
)
def test_a_bad_system_prompt_is_named_as_before(system: object, message: str) -> None:
    assert _error(_system_body(system)) == message
    assert _error(_system_body(system)) == message


def test_a_hundred_mcp_sized_tools_are_cached() -> None:
    # bench/sweep.py's 100 tools are 263 KB of JSON; a list that size was decoded on every turn.
    tools_cache.clear()
    tools = [_tool(f"tool {i} — " + "d" * 2600) for i in range(100)]
    body = _tools_body(tools)
    assert len(body) > 256 << 10
    first, second = decode_messages_request(body), decode_messages_request(body)
    assert isinstance(second.tools, SharedList) and second.tools.entry is first.tools.entry  # type: ignore[union-attr]
    assert len(tools_cache) == 1
    tools_cache.clear()
