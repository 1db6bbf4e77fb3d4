"""Tool use: upstream tool_calls → tool_use blocks, and the client's tool_result back upstream."""

from __future__ import annotations

import json
import re
from typing import Any

import anthropic
import pytest
from anthropic.types import Message

from e2e import (
    MODEL,
    WEATHER_FUNCTION,
    WEATHER_TOOL,
    check_well_formed,
    names,
    one,
    parse_sse,
    stream_raw,
    text_of,
)
from fake_upstream import (
    FakeUpstream,
    Reply,
    StreamItem,
    finish_chunk,
    text_chunk,
    tool_call_chunk,
    usage_chunk,
)

QUESTION: list[Any] = [{"role": "user", "content": "Weather in Paris?"}]

ONE_CALL: list[StreamItem] = [
    text_chunk("Let me check."),
    tool_call_chunk(0, id="call_abc123", name="get_weather", arguments=""),
    tool_call_chunk(0, arguments='{"city": '),
    tool_call_chunk(0, arguments='"Paris"}'),
    finish_chunk("tool_calls"),
    usage_chunk(50, 12),
]

TWO_CALLS: list[StreamItem] = [
    tool_call_chunk(0, id="call_p", name="get_weather", arguments='{"city"'),
    tool_call_chunk(0, arguments=': "Paris"}'),
    tool_call_chunk(1, id="call_r", name="get_weather", arguments='{"city": "Rome"}'),
    finish_chunk("tool_calls"),
    usage_chunk(60, 20),
]


def get(
    client: anthropic.Anthropic, upstream: FakeUpstream, items: list[StreamItem], streaming: bool
) -> Message:
    if streaming:
        upstream.expect(Reply.stream(items))
        with client.messages.stream(
            model=MODEL,
            max_tokens=200,
            messages=QUESTION,
            tools=[WEATHER_TOOL],
        ) as stream:
            return stream.get_final_message()
    upstream.expect(Reply.auto(items))
    return client.messages.create(model=MODEL, max_tokens=200, messages=QUESTION, tools=[WEATHER_TOOL])


def tool_use_id(msg: Message) -> str:
    [block] = [b for b in msg.content if b.type == "tool_use"]
    assert block.type == "tool_use"
    return block.id


def blocks(msg: Message) -> list[dict[str, Any]]:
    return [b.model_dump(exclude_none=True) for b in msg.content]


@pytest.mark.parametrize("streaming", [False, True])
def test_tool_round_trip(client: anthropic.Anthropic, upstream: FakeUpstream, streaming: bool) -> None:
    msg = get(client, upstream, ONE_CALL, streaming)
    assert blocks(msg) == [
        {"type": "text", "text": "Let me check."},
        {"type": "tool_use", "id": "call_abc123", "name": "get_weather", "input": {"city": "Paris"}},
    ]
    assert msg.stop_reason == "tool_use"
    assert (msg.usage.input_tokens, msg.usage.output_tokens) == (50, 12)
    first = upstream.last_body
    assert first["tools"] == [WEATHER_FUNCTION]
    assert "tool_choice" not in first and "parallel_tool_calls" not in first

    upstream.expect(Reply.auto([text_chunk("It is 18C."), finish_chunk("stop"), usage_chunk(80, 5)]))
    history: list[Any] = [
        *QUESTION,
        {"role": "assistant", "content": msg.content},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": tool_use_id(msg), "content": "18C, sunny"}],
        },
    ]
    answer = client.messages.create(model=MODEL, max_tokens=200, messages=history, tools=[WEATHER_TOOL])
    assert blocks(answer) == [{"type": "text", "text": "It is 18C."}]
    assert answer.stop_reason == "end_turn"

    body = upstream.last_body
    assert body["tools"] == [WEATHER_FUNCTION]
    msgs = body["messages"]
    assert [m["role"] for m in msgs] == ["user", "assistant", "tool"]
    assert msgs[0] == {"role": "user", "content": "Weather in Paris?"}
    assistant, tool = msgs[1], msgs[2]
    assert text_of(assistant["content"]) == "Let me check."
    [call] = assistant["tool_calls"]
    assert call["type"] == "function"
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "Paris"}
    assert tool["tool_call_id"] == call["id"]
    assert text_of(tool["content"]) == "18C, sunny"


def test_tool_use_raw_events(client: anthropic.Anthropic, upstream: FakeUpstream) -> None:
    upstream.expect(Reply.stream(ONE_CALL))
    _, _, raw = stream_raw(client, model=MODEL, max_tokens=200, messages=QUESTION, tools=[WEATHER_TOOL])
    events = parse_sse(raw)
    check_well_formed(events)
    assert names(events, pings=False) == [
        "message_start",
        "content_block_start",
        "content_block_delta+",
        "content_block_stop",
        "content_block_start",
        "content_block_delta+",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    starts = [e.data for e in events if e.event == "content_block_start"]
    assert starts[1] == {
        "type": "content_block_start",
        "index": 1,
        "content_block": {"type": "tool_use", "id": "call_abc123", "name": "get_weather", "input": {}},
    }
    # every prefix of the concatenated partial_json is valid and the whole is the input
    partials = [
        e.data["delta"]["partial_json"]
        for e in events
        if e.event == "content_block_delta" and e.data["index"] == 1
    ]
    assert json.loads("".join(partials)) == {"city": "Paris"}
    assert one(events, "message_delta")["delta"] == {"stop_reason": "tool_use", "stop_sequence": None}


@pytest.mark.parametrize("streaming", [False, True])
def test_parallel_tool_calls(client: anthropic.Anthropic, upstream: FakeUpstream, streaming: bool) -> None:
    msg = get(client, upstream, TWO_CALLS, streaming)
    assert blocks(msg) == [
        {"type": "tool_use", "id": "call_p", "name": "get_weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "call_r", "name": "get_weather", "input": {"city": "Rome"}},
    ]
    assert msg.stop_reason == "tool_use"

    upstream.expect(Reply.auto([text_chunk("Rome."), finish_chunk("stop")]))
    history: list[Any] = [
        *QUESTION,
        {"role": "assistant", "content": msg.content},
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "call_p", "content": "18C"},
                {
                    "type": "tool_result",
                    "tool_use_id": "call_r",
                    "content": [{"type": "text", "text": "24C"}],
                },
                {"type": "text", "text": "Which is warmer?"},
            ],
        },
    ]
    client.messages.create(model=MODEL, max_tokens=200, messages=history, tools=[WEATHER_TOOL])
    msgs = upstream.last_body["messages"]
    assert [m["role"] for m in msgs] == ["user", "assistant", "tool", "tool", "user"]
    calls = msgs[1]["tool_calls"]
    assert [json.loads(c["function"]["arguments"]) for c in calls] == [{"city": "Paris"}, {"city": "Rome"}]
    assert msgs[1].get("content") in (None, "")
    assert [m["tool_call_id"] for m in msgs[2:4]] == [c["id"] for c in calls]
    assert [text_of(m["content"]) for m in msgs[2:4]] == ["18C", "24C"]
    assert text_of(msgs[4]["content"]) == "Which is warmer?"


def test_interleaved_parallel_fragments(client: anthropic.Anthropic, upstream: FakeUpstream) -> None:
    """Fragments of two calls arrive interleaved by index; each call keeps its own arguments."""
    items: list[StreamItem] = [
        tool_call_chunk(0, id="call_a", name="get_weather", arguments=""),
        tool_call_chunk(1, id="call_b", name="get_weather", arguments=""),
        tool_call_chunk(0, arguments='{"city": "Os'),
        tool_call_chunk(1, arguments='{"city": "Lima"}'),
        tool_call_chunk(0, arguments='lo"}'),
        finish_chunk("tool_calls"),
    ]
    msg = get(client, upstream, items, streaming=True)
    assert blocks(msg) == [
        {"type": "tool_use", "id": "call_a", "name": "get_weather", "input": {"city": "Oslo"}},
        {"type": "tool_use", "id": "call_b", "name": "get_weather", "input": {"city": "Lima"}},
    ]


@pytest.mark.parametrize("streaming", [False, True])
def test_tool_calls_with_finish_stop_is_tool_use(
    client: anthropic.Anthropic, upstream: FakeUpstream, streaming: bool
) -> None:
    items: list[StreamItem] = [
        tool_call_chunk(0, id="call_x", name="get_weather", arguments='{"city": "Nice"}'),
        finish_chunk("stop"),
    ]
    msg = get(client, upstream, items, streaming)
    assert blocks(msg) == [
        {"type": "tool_use", "id": "call_x", "name": "get_weather", "input": {"city": "Nice"}}
    ]
    assert msg.stop_reason == "tool_use"


@pytest.mark.parametrize("streaming", [False, True])
def test_invalid_upstream_tool_ids_are_sanitised(
    client: anthropic.Anthropic, upstream: FakeUpstream, streaming: bool
) -> None:
    items: list[StreamItem] = [
        tool_call_chunk(0, id="functions.get_weather:0", name="get_weather", arguments='{"city": "Bern"}'),
        tool_call_chunk(1, name="get_weather", arguments='{"city": "Graz"}'),  # no id at all
        finish_chunk("tool_calls"),
    ]
    msg = get(client, upstream, items, streaming)
    ids = [b.id for b in msg.content if b.type == "tool_use"]
    assert len(ids) == 2 and len(set(ids)) == 2, ids
    assert all(re.fullmatch(r"[a-zA-Z0-9_-]+", i) for i in ids), ids
    assert [b.input for b in msg.content if b.type == "tool_use"] == [{"city": "Bern"}, {"city": "Graz"}]


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ({"type": "auto"}, "auto"),
        ({"type": "any"}, "required"),
        ({"type": "none"}, "none"),
        ({"type": "tool", "name": "get_weather"}, {"type": "function", "function": {"name": "get_weather"}}),
    ],
)
def test_tool_choice_mapping(
    client: anthropic.Anthropic, upstream: FakeUpstream, choice: Any, expected: Any
) -> None:
    upstream.expect(Reply.auto([text_chunk("ok"), finish_chunk("stop")]))
    client.messages.create(
        model=MODEL,
        max_tokens=20,
        messages=QUESTION,
        tools=[WEATHER_TOOL],
        tool_choice=choice,
    )
    body = upstream.last_body
    assert body["tool_choice"] == expected
    assert body["tools"] == [WEATHER_FUNCTION]
    assert "parallel_tool_calls" not in body


def test_disable_parallel_tool_use(client: anthropic.Anthropic, upstream: FakeUpstream) -> None:
    upstream.expect(Reply.auto([text_chunk("ok"), finish_chunk("stop")]))
    client.messages.create(
        model=MODEL,
        max_tokens=20,
        messages=QUESTION,
        tools=[WEATHER_TOOL],
        tool_choice={"type": "auto", "disable_parallel_tool_use": True},
    )
    body = upstream.last_body
    assert body["parallel_tool_calls"] is False
    assert body["tool_choice"] == "auto"


@pytest.mark.parametrize("streaming", [False, True])
def test_invalid_tool_arguments_are_repaired(
    client: anthropic.Anthropic, upstream: FakeUpstream, streaming: bool
) -> None:
    """A weak model's single-quoted arguments never reach the client as invalid JSON."""
    items: list[StreamItem] = [
        tool_call_chunk(0, id="call_q", name="get_weather", arguments="{'city': "),
        tool_call_chunk(0, arguments="'Paris'}"),
        finish_chunk("tool_calls"),
    ]
    msg = get(client, upstream, items, streaming)
    assert blocks(msg) == [
        {"type": "tool_use", "id": "call_q", "name": "get_weather", "input": {"city": "Paris"}}
    ]
    assert msg.stop_reason == "tool_use"


PNG_1PX = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="


def test_image_in_tool_result_moves_to_a_following_user_message(
    client: anthropic.Anthropic, upstream: FakeUpstream
) -> None:
    upstream.expect(Reply.auto([text_chunk("A radar map."), finish_chunk("stop")]))
    client.messages.create(
        model=MODEL,
        max_tokens=50,
        tools=[WEATHER_TOOL],
        messages=[
            *QUESTION,
            {
                "role": "assistant",
                "content": [
                    {"type": "tool_use", "id": "toolu_01R", "name": "get_weather", "input": {"city": "Paris"}}
                ],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_01R",
                        "content": [
                            {"type": "text", "text": "radar:"},
                            {
                                "type": "image",
                                "source": {"type": "base64", "media_type": "image/png", "data": PNG_1PX},
                            },
                        ],
                    },
                    {"type": "text", "text": "What does it show?"},
                ],
            },
        ],
    )
    msgs = upstream.last_body["messages"]
    assert [m["role"] for m in msgs] == ["user", "assistant", "tool", "user"]
    assert msgs[2]["tool_call_id"] == msgs[1]["tool_calls"][0]["id"]
    assert "radar:" in text_of(msgs[2]["content"])
    assert PNG_1PX not in json.dumps(msgs[2])
    parts = msgs[3]["content"]
    assert isinstance(parts, list)
    assert {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_1PX}"}} in parts
    texts = [p["text"] for p in parts if p["type"] == "text"]
    assert texts[-1] == "What does it show?"


def test_tool_use_without_result_gets_a_placeholder(
    client: anthropic.Anthropic, upstream: FakeUpstream
) -> None:
    upstream.expect(Reply.auto([text_chunk("ok"), finish_chunk("stop")]))
    client.messages.create(
        model=MODEL,
        max_tokens=50,
        tools=[WEATHER_TOOL],
        messages=[
            *QUESTION,
            {
                "role": "assistant",
                "content": [
                    {"type": "tool_use", "id": "toolu_01L", "name": "get_weather", "input": {"city": "Lyon"}}
                ],
            },
            {"role": "user", "content": "Never mind, just say hi."},
        ],
    )
    msgs = upstream.last_body["messages"]
    assert [m["role"] for m in msgs] == ["user", "assistant", "tool", "user"]
    assert msgs[2]["tool_call_id"] == msgs[1]["tool_calls"][0]["id"]
    assert text_of(msgs[2]["content"]).strip() != ""
    assert text_of(msgs[3]["content"]) == "Never mind, just say hi."


def test_tool_result_for_unknown_id_becomes_user_text(
    client: anthropic.Anthropic, upstream: FakeUpstream
) -> None:
    upstream.expect(Reply.auto([text_chunk("ok"), finish_chunk("stop")]))
    client.messages.create(
        model=MODEL,
        max_tokens=50,
        tools=[WEATHER_TOOL],
        messages=[
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello."},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "toolu_orphan9", "content": "42 degrees"}],
            },
        ],
    )
    msgs = upstream.last_body["messages"]
    assert [m["role"] for m in msgs] == ["user", "assistant", "user"]
    text = text_of(msgs[2]["content"])
    assert "toolu_orphan9" in text and "42 degrees" in text


BIG = 2**70 + 1  # JSON has no integer limit; orjson stops at 64 bits


@pytest.mark.parametrize("streaming", [False, True])
def test_an_integer_past_64_bits_in_a_tool_input_goes_upstream_exact(
    client: anthropic.Anthropic, upstream: FakeUpstream, streaming: bool
) -> None:
    history: list[Any] = [
        *QUESTION,
        {"role": "assistant", "content": [
            {"type": "tool_use", "id": "toolu_big", "name": "get_weather", "input": {"city": "Paris", "n": BIG}},
        ]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_big", "content": "Sunny"}]},
    ]  # fmt: skip
    items: list[StreamItem] = [text_chunk("Sunny in Paris."), finish_chunk("stop"), usage_chunk(40, 5)]
    if streaming:
        upstream.expect(Reply.stream(items))
        with client.messages.stream(model=MODEL, max_tokens=50, messages=history, tools=[WEATHER_TOOL]) as stream:
            msg = stream.get_final_message()
    else:
        upstream.expect(Reply.auto(items))
        msg = client.messages.create(model=MODEL, max_tokens=50, messages=history, tools=[WEATHER_TOOL])
    assert msg.content[0].type == "text" and msg.content[0].text == "Sunny in Paris."
    [call] = upstream.requests[0].body["messages"][1]["tool_calls"]
    assert json.loads(call["function"]["arguments"]) == {"city": "Paris", "n": BIG}
    counted = client.messages.count_tokens(model=MODEL, messages=history, tools=[WEATHER_TOOL])
    assert counted.input_tokens > 0
