"""The client's stop sequences. OpenAI-style upstreams cut the text at a stop string without saying which
one matched, so by default none is sent upstream: the gateway matches them locally, ends the answer at
the first match (``stop_reason: "stop_sequence"`` and the string) and closes the upstream call. A
backend that names the match (vLLM ``stop_reason``, SGLang ``matched_stop``; ``reports_matched_stop``)
gets them as ``stop`` and its report is used."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import anthropic
import pytest
from anthropic.types import Message

from conftest import GATEWAY_ENV, GatewayProcess, start_gateway, stop_gateway
from e2e import MODEL, USER_HELLO, check_well_formed, one, parse_sse, reduce_blocks, stream_raw
from fake_upstream import (
    AutoReply,
    FakeUpstream,
    JsonReply,
    Pause,
    RecordedRequest,
    Reply,
    StreamItem,
    StreamReply,
    chunk,
    completion,
    finish_chunk,
    text_chunk,
    usage,
    usage_chunk,
)

AnyReply = JsonReply | StreamReply | AutoReply

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
    assert "stop" not in upstream.requests[0].body  # it would cut the text and not say where


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


def test_any_number_of_sequences_is_matched_locally(client: anthropic.Anthropic, upstream: FakeUpstream) -> None:
    stops = ["aa1", "bb2", "cc3", "dd4", "ee5", "ff6"]
    items: list[StreamItem] = [text_chunk("x ff"), Pause(0.02), text_chunk("6 y"), finish_chunk("stop")]
    msg = get(client, upstream, items, stops, streaming=True)
    assert [b.model_dump(exclude_none=True) for b in msg.content] == [{"type": "text", "text": "x "}]
    assert msg.stop_sequence == "ff6"
    assert "stop" not in upstream.requests[0].body


def test_a_local_match_closes_the_upstream_call(client: anthropic.Anthropic, upstream: FakeUpstream) -> None:
    """Generation past the match is not wanted: the call is closed at once (and stops billing)."""
    upstream.expect(Reply.stream([text_chunk("keep this ### not this")], done=False, hold=True))
    with client.messages.stream(model=MODEL, max_tokens=100, messages=USER_HELLO, stop_sequences=["###"]) as s:
        msg = s.get_final_message()
    assert [b.model_dump(exclude_none=True) for b in msg.content] == [{"type": "text", "text": "keep this "}]
    assert (msg.stop_reason, msg.stop_sequence) == ("stop_sequence", "###")
    assert upstream.streams[0].disconnected.wait(5), "the gateway kept the upstream call open"


def test_no_stop_field_without_stop_sequences(client: anthropic.Anthropic, upstream: FakeUpstream) -> None:
    upstream.expect(Reply.auto([text_chunk("hi"), finish_chunk("stop")]))
    client.messages.create(model=MODEL, max_tokens=10, messages=USER_HELLO)
    assert "stop" not in upstream.last_body


# --- a backend that names the matched string (vLLM) -----------------------------------------------


def _vllm_like(text: str, field: str = "stop_reason") -> Callable[[RecordedRequest], AnyReply]:
    """Cuts `text` at the first of the request's `stop` strings, removes it, and names it as vLLM
    (`stop_reason`) or SGLang (`matched_stop`) do."""

    def reply(req: RecordedRequest) -> AnyReply:
        assert isinstance(req.body, dict)
        stops: list[str] = req.body.get("stop") or []
        hits = [(text.find(s), s) for s in stops if s in text]
        if not hits:
            return Reply.auto([text_chunk(text), finish_chunk("stop"), usage_chunk(5, 9)])
        at, matched = min(hits)
        if req.body.get("stream") is not True:
            body = completion(text[:at], usage_=usage(5, 4))
            body["choices"][0][field] = matched
            return Reply.json(body)
        finish = chunk({}, None)
        finish["choices"][0].update(finish_reason="stop", **{field: matched})
        return Reply.stream([text_chunk(text[:at]), finish, usage_chunk(5, 4)])

    return reply


@pytest.fixture(scope="module")
def vllm_gateway(
    _upstream_server: FakeUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    env = {**GATEWAY_ENV, "ANTHROPIC_GATEWAY_REPORTS_MATCHED_STOP": "true"}
    gw = start_gateway(tmp_path_factory.mktemp("vllm") / "gateway.log", upstream_url=_upstream_server.base_url,
                       env=env, cwd=tmp_path_factory.mktemp("vllm-cwd"))  # fmt: skip
    yield gw
    stop_gateway(gw)


@pytest.mark.parametrize("field", ["stop_reason", "matched_stop"])
@pytest.mark.parametrize("streaming", [False, True])
def test_the_match_a_backend_reports_is_used(
    vllm_gateway: GatewayProcess, upstream: FakeUpstream, streaming: bool, field: str
) -> None:
    upstream.expect(Reply.dynamic(_vllm_like("one two END three", field)))
    with vllm_gateway.client() as client:
        kwargs: dict[str, Any] = {"model": MODEL, "max_tokens": 100, "messages": USER_HELLO,
                                  "stop_sequences": ["###", "END"]}  # fmt: skip
        if streaming:
            with client.messages.stream(**kwargs) as s:
                msg = s.get_final_message()
        else:
            msg = client.messages.create(**kwargs)
    assert upstream.requests[0].body["stop"] == ["###", "END"]
    assert [b.model_dump(exclude_none=True) for b in msg.content] == [{"type": "text", "text": "one two "}]
    assert (msg.stop_reason, msg.stop_sequence) == ("stop_sequence", "END")
    assert msg.usage.output_tokens == 4


@pytest.mark.parametrize("streaming", [False, True])
def test_a_reporting_backend_that_stops_naturally_ends_the_turn(
    vllm_gateway: GatewayProcess, upstream: FakeUpstream, streaming: bool
) -> None:
    upstream.expect(Reply.dynamic(_vllm_like("no match here")))
    with vllm_gateway.client() as client:
        kwargs: dict[str, Any] = {"model": MODEL, "max_tokens": 100, "messages": USER_HELLO, "stop_sequences": ["###"]}
        if streaming:
            with client.messages.stream(**kwargs) as s:
                msg = s.get_final_message()
        else:
            msg = client.messages.create(**kwargs)
    assert [b.model_dump(exclude_none=True) for b in msg.content] == [{"type": "text", "text": "no match here"}]
    assert (msg.stop_reason, msg.stop_sequence) == ("end_turn", None)
