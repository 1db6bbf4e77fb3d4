"""The client's stop sequences: sent upstream as ``stop`` and matched locally, so the gateway knows
which one matched and never emits text past it."""

from __future__ import annotations

import anthropic
import pytest
from anthropic.types import Message

from e2e import MODEL, USER_HELLO, check_well_formed, one, parse_sse, reduce_blocks, stream_raw
from fake_upstream import FakeUpstream, Pause, Reply, StreamItem, finish_chunk, text_chunk, usage_chunk

# "STOP" is split across chunks: "...ST" | "OP..."
SPLIT_MATCH: list[StreamItem] = [
    text_chunk("Hello wor"),
    text_chunk("ld ST"),
    text_chunk("OP and more"),
    text_chunk(" text after"),
    finish_chunk("stop"),
    usage_chunk(10, 8),
]


def get(
    client: anthropic.Anthropic,
    upstream: FakeUpstream,
    items: list[StreamItem],
    stops: list[str],
    streaming: bool,
) -> Message:
    if streaming:
        upstream.expect(Reply.stream(items))
        with client.messages.stream(
            model=MODEL, max_tokens=100, messages=USER_HELLO, stop_sequences=stops
        ) as s:
            return s.get_final_message()
    upstream.expect(Reply.auto(items))
    return client.messages.create(model=MODEL, max_tokens=100, messages=USER_HELLO, stop_sequences=stops)


@pytest.mark.parametrize("streaming", [False, True])
def test_stop_sequence_split_across_chunks(
    client: anthropic.Anthropic, upstream: FakeUpstream, streaming: bool
) -> None:
    msg = get(client, upstream, SPLIT_MATCH, ["STOP", "###"], streaming)
    assert [b.model_dump(exclude_none=True) for b in msg.content] == [
        {"type": "text", "text": "Hello world "}
    ]
    assert msg.stop_reason == "stop_sequence"
    assert msg.stop_sequence == "STOP"
    assert upstream.requests[0].body["stop"] == ["STOP", "###"]


def test_stop_sequence_raw_events_carry_no_text_after_match(
    client: anthropic.Anthropic, upstream: FakeUpstream
) -> None:
    upstream.expect(Reply.stream(SPLIT_MATCH, delay=0.02))
    _, _, raw = stream_raw(client, model=MODEL, max_tokens=100, messages=USER_HELLO, stop_sequences=["STOP"])
    events = parse_sse(raw)
    check_well_formed(events)
    assert reduce_blocks(events) == [{"type": "text", "text": "Hello world "}]
    assert one(events, "message_delta")["delta"] == {"stop_reason": "stop_sequence", "stop_sequence": "STOP"}
    assert b"OP and" not in raw and b"after" not in raw


@pytest.mark.parametrize("streaming", [False, True])
def test_earliest_of_several_sequences_wins(
    client: anthropic.Anthropic, upstream: FakeUpstream, streaming: bool
) -> None:
    items: list[StreamItem] = [text_chunk("one two\n\nHuman: three END"), finish_chunk("stop")]
    msg = get(client, upstream, items, ["END", "\n\nHuman:"], streaming)
    assert [b.model_dump(exclude_none=True) for b in msg.content] == [{"type": "text", "text": "one two"}]
    assert msg.stop_sequence == "\n\nHuman:"
    assert msg.stop_reason == "stop_sequence"


@pytest.mark.parametrize("streaming", [False, True])
def test_partial_sequence_at_end_is_flushed(
    client: anthropic.Anthropic, upstream: FakeUpstream, streaming: bool
) -> None:
    """Held-back text that turns out not to be a match is still delivered."""
    items: list[StreamItem] = [text_chunk("almost ST"), text_chunk("O"), finish_chunk("stop")]
    msg = get(client, upstream, items, ["STOP"], streaming)
    assert [b.model_dump(exclude_none=True) for b in msg.content] == [{"type": "text", "text": "almost STO"}]
    assert msg.stop_reason == "end_turn"
    assert msg.stop_sequence is None


def test_more_sequences_than_the_backend_allows_are_matched_locally(
    client: anthropic.Anthropic, upstream: FakeUpstream
) -> None:
    stops = ["aa1", "bb2", "cc3", "dd4", "ee5", "ff6"]
    items: list[StreamItem] = [text_chunk("x ff"), Pause(0.02), text_chunk("6 y"), finish_chunk("stop")]
    msg = get(client, upstream, items, stops, streaming=True)
    assert [b.model_dump(exclude_none=True) for b in msg.content] == [{"type": "text", "text": "x "}]
    assert msg.stop_sequence == "ff6"
    sent = upstream.requests[0].body["stop"]
    assert isinstance(sent, list) and 1 <= len(sent) <= len(stops)
    assert sent == stops[: len(sent)]


def test_no_stop_field_without_stop_sequences(client: anthropic.Anthropic, upstream: FakeUpstream) -> None:
    upstream.expect(Reply.auto([text_chunk("hi"), finish_chunk("stop")]))
    client.messages.create(model=MODEL, max_tokens=10, messages=USER_HELLO)
    assert "stop" not in upstream.last_body
