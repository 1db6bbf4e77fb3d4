"""A long conversation's earlier messages decoded once (shared_history): a body that starts with the
bytes of a remembered one up to the end of a message decodes to exactly what decoding it whole gives,
with those messages the remembered objects; anything else is decoded whole."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest

from anthropic_gateway import shared_history
from anthropic_gateway.errors import InvalidRequestError
from anthropic_gateway.schemas import decode_count_tokens_request, decode_messages_request
from anthropic_gateway.shared_history import NONCE, HistoryCache, SharedHistory, common_prefix, histories
from anthropic_gateway.tokens import clear_cache, count_request_tokens
from anthropic_gateway.tokens.counter import _message_digests


@pytest.fixture(autouse=True)
def _fresh() -> Iterator[None]:
    histories.clear()
    yield
    histories.clear()


def _turns(n: int, size: int = 700) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Read my notes — all of them →"}]
    for i in range(n):
        tid = f"toolu_{i:024x}"
        messages.append({"role": "assistant", "content": [
            {"type": "text", "text": f"I'll read part {i}."},
            {"type": "tool_use", "id": tid, "name": "Read", "input": {"file_path": f"/notes/{i}.md"}},
        ]})  # fmt: skip
        messages.append({"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": tid, "content": f"part {i} 🤖 " + "x\\\"é" * size},
        ]})  # fmt: skip
    return messages


def _body(messages: list[dict[str, Any]], **extra: Any) -> bytes:
    return json.dumps({"model": "claude-sonnet-4-5", "messages": messages, "max_tokens": 1000,
                       "system": "You are terse.", **extra}).encode()  # fmt: skip


def _whole(body: bytes, monkeypatch: pytest.MonkeyPatch, count: bool = False) -> Any:
    with monkeypatch.context() as m:
        m.setattr(shared_history, "SMALLEST", 1 << 62)
        return (decode_count_tokens_request if count else decode_messages_request)(body)


def _same(a: Any, b: Any) -> bool:
    return bool(msgspec.json.encode(a) == msgspec.json.encode(b)) and type(a) is type(b)


def test_a_growing_conversation_decodes_as_whole_with_the_earlier_messages_shared(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    messages = _turns(60)
    first = decode_messages_request(_body(messages))
    assert len(_body(messages)) > shared_history.SMALLEST
    assert isinstance(first.messages, SharedHistory) and len(histories) == 1
    previous = first
    for turn in range(3):
        messages = [*messages, {"role": "assistant", "content": f"Done {turn}."},
                    {"role": "user", "content": [{"type": "text", "text": f"next {turn}",
                                                  "cache_control": {"type": "ephemeral"}}]}]  # fmt: skip
        body = _body(messages)
        req = decode_messages_request(body)
        assert _same(req, _whole(body, monkeypatch))
        assert len(req.messages) == len(messages)
        # Every message of the previous request but its last (whose bytes moved on) is the same object.
        assert all(a is b for a, b in zip(req.messages[:-2], previous.messages, strict=False))
        assert req.messages[-1] is not previous.messages[-1]
        assert len(histories) == 1  # the entry continued from was replaced
        previous = req


def test_a_changed_earlier_message_of_the_same_length_is_decoded_again(monkeypatch: pytest.MonkeyPatch) -> None:
    messages = _turns(60)
    first = decode_messages_request(_body(messages))
    changed = json.loads(json.dumps(messages))
    changed[4]["content"][0]["content"] = changed[4]["content"][0]["content"].replace("part 1 ", "part 7 ")
    body = _body(changed)
    assert len(body) == len(_body(messages))
    req = decode_messages_request(body)
    assert _same(req, _whole(body, monkeypatch))
    assert req.messages[3] is first.messages[3]  # before the change: shared
    assert req.messages[4] is not first.messages[4]
    assert req.messages[4].content[0].text == changed[4]["content"][0]["content"]


def test_a_later_duplicate_messages_key_wins_as_in_a_whole_decode(monkeypatch: pytest.MonkeyPatch) -> None:
    messages = _turns(60)
    decode_messages_request(_body(messages))
    # The same bytes up to the end of every message, then a second `messages` that JSON lets win.
    body = _body(messages)[:-1] + b', "messages": [{"role": "user", "content": "only this"}]}'
    req = decode_messages_request(body)
    assert [m.content for m in req.messages] == ["only this"]
    assert _same(req, _whole(body, monkeypatch))


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        ({"role": "user", "content": [{"type": "text"}]}, "messages.121.content.0.text: Field required"),
        ({"role": "robot", "content": "hi"}, "messages.121.role: Invalid enum value 'robot'"),
        ({"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": 5}]},
         "messages.121.content.0.content: Expected `str | array | null`, got `int`"),
    ],
)  # fmt: skip
def test_an_invalid_new_message_is_reported_as_by_a_whole_decode(
    bad: dict[str, Any], error: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    messages = _turns(60)
    decode_messages_request(_body(messages))
    body = _body([*messages, bad])
    with pytest.raises(InvalidRequestError) as shared:
        decode_messages_request(body)
    with pytest.raises(InvalidRequestError) as whole:
        _whole(body, monkeypatch)
    assert str(shared.value) == str(whole.value) == error


def test_the_placeholder_never_reaches_a_request() -> None:
    messages = _turns(60)
    decode_messages_request(_body(messages))
    for body in (_body([*messages, {"role": "user", "content": "more"}]), _body(messages[:5]), _body(messages)):
        req = decode_messages_request(body)
        assert all(m.content != NONCE for m in req.messages)


def test_count_tokens_bodies_share_their_own_entries(monkeypatch: pytest.MonkeyPatch) -> None:
    messages = _turns(60)
    decode_messages_request(_body(messages))
    body = _body([*messages, {"role": "user", "content": "more"}])
    req = decode_count_tokens_request(body)
    assert _same(req, _whole(body, monkeypatch, count=True))
    assert len(histories) == 2  # a Messages entry and a count_tokens entry: never each other's


def test_the_estimate_of_a_shared_history_is_that_of_a_whole_decode(monkeypatch: pytest.MonkeyPatch) -> None:
    messages = _turns(60)
    decode_messages_request(_body(messages))
    body = _body([*messages, {"role": "user", "content": "more"}])
    req = decode_messages_request(body)
    assert isinstance(req.messages, SharedHistory) and req.messages.entry.memo[0] is None
    clear_cache()
    shared = count_request_tokens(req, "gpt-4o")
    assert req.messages.entry.memo[0] is not None  # keys kept on the entry for the next turn
    clear_cache()
    assert shared == count_request_tokens(_whole(body, monkeypatch), "gpt-4o")
    # A list whose items were replaced is keyed from the items, not from the entry's memo.
    other = SharedHistory([*req.messages])
    other.entry, other.shared = req.messages.entry, len(other)
    other[0] = msgspec.structs.replace(other[0], content="changed")
    assert _message_digests(other)[0] != req.messages.entry.memo[0]


def test_a_chain_of_turns_keeps_at_most_twice_the_body(monkeypatch: pytest.MonkeyPatch) -> None:
    # Each turn's cut body (the new messages and a 300 KB system prompt after them) stays alive through
    # the new tool result's raw content, a view of it: the chain is decoded whole again before it
    # keeps more than twice the body.
    messages = _turns(40)
    system = "Be terse. " * 30_000
    whole_again = 0
    for turn in range(8):
        messages = [*messages, *_turns(2, size=2000)[1:]]
        body = _body(messages, system=system)
        req = decode_messages_request(body)
        assert _same(req, _whole(body, monkeypatch))
        entry = req.messages.entry
        assert entry.kept <= 2 * len(body), turn
        whole_again += turn > 0 and entry.kept == len(body)
    assert whole_again >= 2


def test_the_cache_is_bounded_in_entries_and_bytes() -> None:
    cache = HistoryCache(entries=2, total=3 * 200_000)
    decode = msgspec.json.Decoder(Any).decode
    for i in range(4):
        body = _body(_turns(30 + i))
        req = type("R", (), {"messages": [decode(b"{}")] * 3})()
        cache.remember(body, req, dict)
        assert len(cache) <= 2
    assert sum(e.size for e in cache._data) <= 3 * 200_000


def test_common_prefix() -> None:
    a = bytes(range(256)) * 1000
    for cut in (0, 1, 255, 65_535, 65_536, 65_537, 200_000, len(a) - 1):
        b = a[:cut] + b"\xff" + a[cut + 1 :] if a[cut] != 0xFF else a[:cut] + b"\x00" + a[cut + 1 :]
        assert common_prefix(a, b) == common_prefix(b, a) == cut
    assert common_prefix(a, a) == len(a)
    assert common_prefix(a, a[:1000]) == 1000
