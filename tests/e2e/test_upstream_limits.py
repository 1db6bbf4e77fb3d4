"""A stalled, endless or max_tokens-ignoring upstream is bounded by default (issue 16 #7): an idle
timeout for streams, a total timeout that says so, and a stream cut at max_tokens output tokens."""

from __future__ import annotations

import time
from typing import Any

import anthropic
import pytest

from anthropic_gateway.settings import load_settings
from conftest import GATEWAY_ENV, SpawnGateway
from e2e import MODEL, USER_HELLO, check_well_formed, one, parse_sse, stream_raw
from fake_upstream import FakeUpstream, Pause, Reply, finish_chunk, text_chunk, usage_chunk

FAST = {**GATEWAY_ENV, "ANTHROPIC_GATEWAY_RETRIES": "0", "ANTHROPIC_GATEWAY_PING_INTERVAL": "0.3"}


def test_defaults_bound_streams_well_under_ten_minutes() -> None:
    s = load_settings(environ={})
    assert (s.stream_idle_timeout, s.total_timeout, s.read_timeout) == (120.0, 3600.0, 600.0)


def test_a_stalled_stream_ends_with_an_idle_timeout_error_despite_pings(
    spawn_gateway: SpawnGateway, upstream: FakeUpstream
) -> None:
    gw = spawn_gateway({**FAST, "ANTHROPIC_GATEWAY_STREAM_IDLE_TIMEOUT": "1"})
    upstream.expect(Reply.stream([text_chunk("Hel"), Pause(20), text_chunk("lo"), finish_chunk("stop")]))
    started = time.monotonic()
    with gw.client() as c:
        _, _, raw = stream_raw(c, model=MODEL, max_tokens=50, messages=USER_HELLO)
    assert time.monotonic() - started < 10
    events = parse_sse(raw)
    assert any(e.event == "ping" for e in events)  # pings flowed meanwhile, as before
    error = one(events, "error")["error"]
    assert error == {"type": "timeout_error", "message": "The upstream stopped sending data (idle timeout)"}


def test_an_endless_stream_ends_at_the_total_timeout_and_says_so(
    spawn_gateway: SpawnGateway, upstream: FakeUpstream
) -> None:
    gw = spawn_gateway({**FAST, "ANTHROPIC_GATEWAY_TOTAL_TIMEOUT": "2"})
    upstream.expect(Reply.stream([text_chunk("x") for _ in range(200)], delay=0.1))
    started = time.monotonic()
    with gw.client() as c:
        _, _, raw = stream_raw(c, model=MODEL, max_tokens=100_000, messages=USER_HELLO)
    assert time.monotonic() - started < 12
    error = one(parse_sse(raw), "error")["error"]
    assert error == {"type": "timeout_error", "message": "The upstream answer did not complete within the total timeout"}


def test_a_non_streamed_answer_past_the_total_timeout_is_a_504(
    spawn_gateway: SpawnGateway, upstream: FakeUpstream
) -> None:
    gw = spawn_gateway({**FAST, "ANTHROPIC_GATEWAY_TOTAL_TIMEOUT": "1"})
    upstream.expect(Reply.stream([Pause(5), text_chunk("x")]))  # the body never completes in time
    with gw.client() as c, pytest.raises(anthropic.APIStatusError) as info:
        c.messages.create(model=MODEL, max_tokens=10, messages=USER_HELLO)
    assert info.value.status_code == 504
    assert "total timeout" in info.value.message


def test_an_upstream_ignoring_max_tokens_is_cut_there(spawn_gateway: SpawnGateway, upstream: FakeUpstream) -> None:
    gw = spawn_gateway(FAST)
    upstream.expect(Reply.stream([text_chunk("word ") for _ in range(500)] + [finish_chunk("stop"), usage_chunk(9, 500)],
                                 delay=0.005))  # fmt: skip
    with gw.client() as c, c.messages.stream(model=MODEL, max_tokens=10, messages=USER_HELLO) as s:
        message: Any = s.get_final_message()
    assert message.stop_reason == "max_tokens"
    assert message.usage.output_tokens == 10
    assert 10 <= len(message.content[0].text.split()) < 40
    assert upstream.streams[0].disconnected.wait(10)  # the upstream call was closed: it stops generating
    upstream.expect(Reply.stream([text_chunk("word ") for _ in range(500)], delay=0.005))
    with gw.client() as c:
        _, _, raw = stream_raw(c, model=MODEL, max_tokens=10, messages=USER_HELLO)
    events = parse_sse(raw)
    check_well_formed(events)
    assert one(events, "message_delta")["delta"]["stop_reason"] == "max_tokens"
