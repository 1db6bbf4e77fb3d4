"""Tool input streams as it is generated (issue 12 §3), seen through the official SDK's stream helper:
on an OpenRouter-kind backend each argument fragment reaches the client while the upstream is still
generating; an OpenAI-compatible backend (tool JSON known to break) keeps validating and repairing."""

from __future__ import annotations

import threading
import time
from typing import Any

import anthropic
import pytest

from e2e import MODEL
from fake_upstream import FakeUpstream, Pause, Reply, StreamItem, finish_chunk, tool_call_chunk, usage_chunk

WRITE_TOOL: Any = {
    "name": "write_file",
    "description": "Write a file",
    "input_schema": {"type": "object", "properties": {"path": {"type": "string"}, "content": {"type": "string"}},
                     "required": ["path", "content"]},
}  # fmt: skip
ASK: Any = [{"role": "user", "content": "Write notes.txt"}]
LINES = [f"line {i}\\n" for i in range(20)]
FRAGMENTS = ['{"path": "notes.txt", "content": "', *LINES, '"}']
HOLD = 0.6  # the upstream pauses this long before the last fragment


def _items(fragments: list[str], finish: str = "tool_calls") -> list[StreamItem]:
    items: list[StreamItem] = [tool_call_chunk(0, id="call_w1", name="write_file", arguments="")]
    items += [tool_call_chunk(0, arguments=f) for f in fragments[:-1]]
    items += [Pause(HOLD), tool_call_chunk(0, arguments=fragments[-1]), finish_chunk(finish), usage_chunk(30, 40)]
    return items


def _stream(client: anthropic.Anthropic, max_tokens: int = 1000) -> tuple[list[tuple[float, Any]], Any]:
    seen: list[tuple[float, Any]] = []
    with client.messages.stream(model=MODEL, max_tokens=max_tokens, messages=ASK, tools=[WRITE_TOOL]) as s:
        for event in s:
            seen.append((time.monotonic(), event))
        return seen, s.get_final_message()


def test_fragments_reach_the_sdk_while_the_upstream_generates(
    openrouter_client: anthropic.Anthropic, upstream: FakeUpstream
) -> None:
    upstream.expect(Reply.stream(_items(FRAGMENTS)))
    seen, msg = _stream(openrouter_client)
    json_events = [(t, e) for t, e in seen if e.type == "input_json"]
    assert [e.partial_json for _, e in json_events] == FRAGMENTS
    # The SDK parses every prefix (its partial mode leaves out the string still open).
    assert all(e.snapshot == {"path": "notes.txt"} for _, e in json_events[:-1])
    # Everything but the last fragment arrived before the upstream's pause ended.
    assert json_events[-1][0] - json_events[-2][0] >= HOLD * 0.8
    assert [b.model_dump(exclude_none=True) for b in msg.content] == [{
        "type": "tool_use", "id": "call_w1", "name": "write_file",
        "input": {"path": "notes.txt", "content": "".join(LINES).replace("\\n", "\n")},
    }]  # fmt: skip
    assert msg.stop_reason == "tool_use"


def test_a_buffering_backend_sends_the_input_whole(client: anthropic.Anthropic, upstream: FakeUpstream) -> None:
    upstream.expect(Reply.stream(_items(FRAGMENTS)))
    seen, msg = _stream(client)
    json_events = [e for _, e in seen if e.type == "input_json"]
    assert len(json_events) == 1
    assert msg.content[0].input == {"path": "notes.txt", "content": "".join(LINES).replace("\\n", "\n")}


def test_input_cut_by_max_tokens_ends_as_anthropics_does(
    openrouter_client: anthropic.Anthropic, upstream: FakeUpstream
) -> None:
    """The block closes after what was generated, stop_reason max_tokens; the SDK keeps the whole fields."""
    upstream.expect(Reply.stream(_items(FRAGMENTS[:5], finish="length")))
    _, msg = _stream(openrouter_client, max_tokens=20)
    assert msg.stop_reason == "max_tokens"
    assert msg.content[0].type == "tool_use"
    assert msg.content[0].input == {"path": "notes.txt"}


def test_invalid_input_fails_in_the_sdk_as_with_anthropic(
    openrouter_client: anthropic.Anthropic, upstream: FakeUpstream
) -> None:
    upstream.expect(Reply.stream(_items(["{path: ", '"x"}'])))
    with pytest.raises(ValueError, match="Unable to parse tool parameter JSON from model"):
        _stream(openrouter_client)


@pytest.mark.asyncio
async def test_async_sdk_sees_the_first_fragment_before_the_call_ends(
    openrouter_gateway: Any, upstream: FakeUpstream
) -> None:
    upstream.expect(Reply.stream(_items(FRAGMENTS)))
    first = threading.Event()
    c = anthropic.AsyncAnthropic(base_url=openrouter_gateway.url, api_key="test-key", max_retries=0)
    async with c, c.messages.stream(model=MODEL, max_tokens=100, messages=ASK, tools=[WRITE_TOOL]) as s:
        async for event in s:
            if event.type == "input_json":
                first.set()
                assert not upstream.streams[0].finished.is_set(), "the input was buffered to the end"
                break
    assert first.is_set()
