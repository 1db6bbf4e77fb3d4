"""Tests."""

from __future__ import annotations

import json

import pytest

from anthropic_gateway.errors import InvalidRequestError
from anthropic_gateway.schemas import TextBlock, ToolResultBlock, decode_messages_request


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
