"""An upstream that ignores max_tokens (issue 16 #7): the stream translator counts output locally
and ends the answer at max_tokens with stop_reason max_tokens; an upstream that keeps to it is
never cut short."""

from __future__ import annotations

from typing import Any

from anthropic_gateway.translate.stream import MAX_CHARS_PER_TOKEN, StreamTranslator
from unit.helpers import (
    MESSAGE_ID,
    check_well_formed,
    ctx_for,
    finish,
    parse_events,
    reasoning,
    sse,
    text,
    tool,
    usage,
)


def run_reads(chunks: list[Any], max_tokens: int) -> tuple[StreamTranslator, list[Any], int]:
    """Feed each chunk as its own network read; returns the translator, the events and the number
    of reads consumed before it said done."""
    t = StreamTranslator(ctx_for(max_tokens=max_tokens), MESSAGE_ID, 7)
    out = [t.start()]
    consumed = 0
    for c in chunks:
        if t.done:
            break
        out.append(t.feed(sse([c], done=False)))
        consumed += 1
    out.append(t.finish())
    events = parse_events(b"".join(out))
    check_well_formed(events)
    return t, events, consumed


def delta_of(events: list[Any]) -> dict[str, Any]:
    found = [data for name, data in events if name == "message_delta"]
    assert len(found) == 1, events
    return found[0]


def test_a_stream_past_max_tokens_ends_there_with_max_tokens() -> None:
    t, events, consumed = run_reads([text("tok ") for _ in range(1000)] + [finish("stop")], max_tokens=5)
    assert consumed == 6  # the read that passed 5 deltas is the last one
    assert "".join(d["delta"]["text"] for n, d in events if n == "content_block_delta") == "tok " * 6
    md = delta_of(events)
    assert md["delta"] == {"stop_reason": "max_tokens", "stop_sequence": None}
    assert md["usage"]["output_tokens"] == 5
    assert t.final_usage()["output_tokens"] == 5
    assert events[-1][0] == "message_stop" and not t.saw_done


def test_few_huge_deltas_are_bounded_by_their_characters() -> None:
    big = "x" * (10 * MAX_CHARS_PER_TOKEN)
    _, events, consumed = run_reads([text(big) for _ in range(100)] + [finish("stop")], max_tokens=20)
    assert consumed == 3  # 30 tokens' worth of characters at most per token > 20 tokens
    assert delta_of(events)["delta"]["stop_reason"] == "max_tokens"


def test_thinking_and_tool_arguments_count_too() -> None:
    chunks = [reasoning("hm ") for _ in range(4)] + [tool(0, "call_1", "Read", '{"p": ')]
    chunks += [tool(0, None, None, '"a"') for _ in range(10)] + [finish("tool_calls")]
    _, events, consumed = run_reads(chunks, max_tokens=8)
    assert consumed == 9
    assert delta_of(events)["delta"]["stop_reason"] == "max_tokens"


def test_an_upstream_that_keeps_to_max_tokens_is_not_cut() -> None:
    chunks = [text("tok ") for _ in range(5)] + [finish("length"), usage(7, 5)]
    _, events, consumed = run_reads(chunks, max_tokens=5)
    assert consumed == len(chunks)
    md = delta_of(events)
    assert md["delta"]["stop_reason"] == "max_tokens" and md["usage"]["output_tokens"] == 5
    chunks = [text("tok ") for _ in range(5)] + [finish("stop"), usage(7, 5)]
    _, events, consumed = run_reads(chunks, max_tokens=5)
    assert consumed == len(chunks) and delta_of(events)["delta"]["stop_reason"] == "end_turn"
