"""A cached tool list found in a body is not scanned again (``schemas._decode_spliced``): the body is
decoded with those bytes replaced by a placeholder string, which must come back as the top-level
``tools`` value. Whatever the body, the decoded request (or the error) is the whole decode's."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from anthropic_gateway import schemas, shared_history
from anthropic_gateway.errors import InvalidRequestError
from anthropic_gateway.schemas import MessagesRequest, SharedList, decode_messages_request, tools_cache

_whole = msgspec.json.Decoder(MessagesRequest)


@pytest.fixture(autouse=True)
def _fresh() -> Any:
    tools_cache.clear()
    shared_history.histories.clear()
    yield
    tools_cache.clear()
    shared_history.histories.clear()


@pytest.fixture
def spliced(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Each placeholder decode's outcome: True if its request was used."""
    seen: list[bool] = []
    real = schemas._decode_spliced

    def spy(body: bytes, decoder: Any, splice: Any) -> Any:
        req = real(body, decoder, splice)
        seen.append(req is not None)
        return req

    monkeypatch.setattr(schemas, "_decode_spliced", spy)
    return seen


def _tools(n: int = 3) -> list[dict[str, Any]]:
    return [{"name": f"tool_{i}", "description": f"Tool {i} — does things → 🤖 " + "x" * 200,
             "input_schema": {"type": "object", "properties": {"a": {"type": "string"}}}} for i in range(n)]  # fmt: skip


def _body(messages: list[Any], tools: Any, tail: str = "") -> bytes:
    head = json.dumps({"model": "a/b", "max_tokens": 5, "messages": messages})[:-1]
    return (head + ', "tools": ' + json.dumps(tools) + tail + "}").encode()


def _same(req: Any, body: bytes) -> None:
    """``req`` is what a whole decode of ``body`` gives, and no placeholder is in it."""
    got = msgspec.json.encode(req)
    assert got == msgspec.json.encode(_whole.decode(body))
    assert schemas.TOOLS_NONCE.encode() not in got


def test_a_cached_list_at_the_same_place_is_decoded_with_a_placeholder_and_the_same_objects(spliced: list[bool]) -> None:
    tools = _tools()
    first = decode_messages_request(_body([{"role": "user", "content": "hi"}], tools))
    assert spliced == []  # nothing cached yet
    body = _body([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yes"},
                  {"role": "user", "content": "more"}], tools)  # fmt: skip
    second = decode_messages_request(body)
    assert spliced == [True]
    assert isinstance(first.tools, SharedList) and isinstance(second.tools, SharedList)
    assert second.tools.entry is first.tools.entry and second.tools is not first.tools
    assert all(a is b for a, b in zip(first.tools, second.tools, strict=True))
    _same(second, body)


def test_tools_before_the_messages_are_found_at_the_same_offset(spliced: list[bool]) -> None:
    tools = _tools()
    body = ('{"model": "a/b", "tools": ' + json.dumps(tools) + ', "max_tokens": 5, "messages": [{"role": "user", '
            '"content": "hi"}]}').encode()  # fmt: skip
    decode_messages_request(body)
    later = body.replace(b'"hi"}]}', b'"hi"}, {"role": "assistant", "content": "ok"}, {"role": "user", "content": "go"}]}')
    _same(decode_messages_request(later), later)
    assert spliced == [True]


def test_the_same_list_inside_a_message_is_not_taken_for_the_tools(spliced: list[bool]) -> None:
    tools = _tools()
    decode_messages_request(_body([{"role": "user", "content": "hi"}], tools, tail=', "stream": true'))
    # The list as a tool call's input, where the tools were (the same bytes after it); the tools
    # themselves earlier, and different.
    call = {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "n", "input": {"k": tools}}]}
    body = ('{"model": "a/b", "max_tokens": 5, "tools": ' + json.dumps(_tools(1)) + ', "messages": ['
            '{"role": "user", "content": "hi"}, ' + json.dumps(call)[: -len(']}]}')] + '}}]}], "top_k":5}').encode()  # fmt: skip
    assert body.endswith(json.dumps(tools).encode() + b'}}]}], "top_k":5}')
    assert len(b'}}]}], "top_k":5}') == len(b', "stream": true}')  # as many bytes after the list as before
    req = decode_messages_request(body)
    assert spliced == [False]
    _same(req, body)
    assert len(req.tools or []) == 1


def test_a_later_duplicate_tools_key_wins_as_in_a_whole_decode(spliced: list[bool]) -> None:
    tools = _tools()
    decode_messages_request(_body([{"role": "user", "content": "hi"}], tools, tail=', "stream": true'))
    body = _body([{"role": "user", "content": "hi"}], tools, tail=', "tools": []')
    body = body[:-1] + b', "stream": true}'  # the cached list where it was: the same bytes after it
    decode = decode_messages_request(body)
    assert spliced == [False]
    _same(decode, body)
    assert not decode.tools


def _error(body: bytes) -> str:
    with pytest.raises(InvalidRequestError) as err:
        decode_messages_request(body)
    return str(err.value)


@pytest.mark.parametrize(
    ("good", "bad", "message"),
    [(', "max_tokens": 7', ', "max_tokens": 0', "max_tokens: Expected `int` >= 1"),
     (', "stream": true', ', "stream": "yes"', "stream: Expected `bool | null`, got `str`")],
)  # fmt: skip
def test_an_error_elsewhere_is_the_whole_decodes(spliced: list[bool], good: str, bad: str, message: str) -> None:
    tools = _tools()
    decode_messages_request(_body([{"role": "user", "content": "hi"}], tools, tail=good))
    body = _body([{"role": "user", "content": "hi"}], tools, tail=bad)
    assert _error(body) == message
    assert spliced == [False]  # tried (the list is where it was), refused
    tools_cache.clear()
    assert _error(body) == message


def test_a_long_history_and_its_tools_are_both_cut_from_one_copy(spliced: list[bool]) -> None:
    tools = _tools(40)
    turns: list[Any] = [{"role": "user", "content": "start " + "y" * 400}]
    for i in range(300):
        turns.append({"role": "assistant", "content": f"answer {i} " + "z" * 300})
        turns.append({"role": "user", "content": f"question {i} é " + "w" * 200})
    first = _body(turns, tools, tail=', "stream": true')
    assert len(first) >= shared_history.SMALLEST
    decode_messages_request(first)
    turns += [{"role": "assistant", "content": "done"}, {"role": "user", "content": "next"}]
    body = _body(turns, tools, tail=', "stream": true')
    req = decode_messages_request(body)
    assert isinstance(req.messages, shared_history.SharedHistory) and req.messages.shared == len(turns)
    assert spliced == []  # the history's cut placed the tools' placeholder itself
    assert isinstance(req.tools, SharedList) and req.tools.entry is tools_cache.find_in(body)[0]  # type: ignore[index]
    _same(req, body)
