"""Claude Code's recorded requests (CLI 2.1.197) through the beta path, as the CLI sends them."""

from __future__ import annotations

import json
from typing import Any

import pytest

from conftest import CLIENT_KEY, OPUS, GatewayProcess
from e2e import assert_stream_flags, check_well_formed, parse_sse, post_raw, reduce_blocks, text_of
from fake_upstream import FakeUpstream, Reply, finish_chunk, text_chunk, tool_call_chunk, usage_chunk
from paths import CLAUDE_CODE_FIXTURE

FIXTURE = CLAUDE_CODE_FIXTURE

pytestmark = pytest.mark.skipif(not FIXTURE.exists(), reason="Claude Code fixture not available")


def load() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(FIXTURE.read_text())
    return data


def cli_headers(data: dict[str, Any]) -> dict[str, str]:
    skip = {"host", "content-length", "connection", "accept-encoding", "x-api-key"}
    headers = {k: v for k, v in data["headers_first_turn"].items() if k not in skip}
    headers["x-api-key"] = CLIENT_KEY
    return headers


WRITE_CALL = [
    text_chunk("I'll create the file hello.txt."),
    tool_call_chunk(0, id="call_w1", name="Write", arguments=""),
    tool_call_chunk(0, arguments='{"file_path": "/home/user/project/hello.txt", '),
    tool_call_chunk(0, arguments='"content": "hi"}'),
    finish_chunk("tool_calls"),
    usage_chunk(21000, 40, cached=20000),
]


def test_first_turn(gateway: GatewayProcess, upstream: FakeUpstream) -> None:
    data = load()
    request = data["first_turn"]
    upstream.expect(Reply.stream(WRITE_CALL))
    resp = post_raw(gateway.url, "/v1/messages?beta=true", request, headers=cli_headers(data))
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/event-stream")
    events = parse_sse(resp.content)
    check_well_formed(events)
    assert reduce_blocks(events) == [
        {"type": "text", "text": "I'll create the file hello.txt."},
        {
            "type": "tool_use",
            "id": "call_w1",
            "name": "Write",
            "input": {"file_path": "/home/user/project/hello.txt", "content": "hi"},
        },
    ]
    assert events[0].data["message"]["model"] == "claude-opus-4-8"
    delta = next(e.data for e in events if e.event == "message_delta")
    assert delta["delta"]["stop_reason"] == "tool_use"
    assert delta["usage"]["input_tokens"] == 1000
    assert delta["usage"]["cache_read_input_tokens"] == 20000

    body = upstream.last_body
    assert body["model"] == OPUS
    assert body["stream"] is True
    assert_stream_flags(body)
    assert "context_management" not in body
    assert body["user"] == request["metadata"]["user_id"]
    assert [t["function"]["name"] for t in body["tools"]] == [t["name"] for t in request["tools"]]
    assert all(t["type"] == "function" for t in body["tools"])

    msgs = body["messages"]
    # the mid-conversation role:"system" message is hoisted into the one leading system message
    assert [m["role"] for m in msgs] == ["system", "user"]
    system = text_of(msgs[0]["content"])
    mid = next(m["content"] for m in request["messages"] if m["role"] == "system")
    prompt_blocks = [b["text"] for b in request["system"][1:]]
    positions = [system.find(t) for t in [*prompt_blocks, mid]]
    assert all(p >= 0 for p in positions), positions
    assert positions == sorted(positions)
    user_texts = [b["text"] for b in request["messages"][0]["content"]]
    assert msgs[1]["content"] == [{"type": "text", "text": t} for t in user_texts]


def test_second_turn_tool_result(gateway: GatewayProcess, upstream: FakeUpstream) -> None:
    data = load()
    request = data["second_turn"]
    upstream.expect(Reply.stream([text_chunk("Done."), finish_chunk("stop"), usage_chunk(21100, 3)]))
    resp = post_raw(gateway.url, "/v1/messages?beta=true", request, headers=cli_headers(data))
    assert resp.status_code == 200, resp.text
    events = parse_sse(resp.content)
    check_well_formed(events)
    assert reduce_blocks(events) == [{"type": "text", "text": "Done."}]

    msgs = upstream.last_body["messages"]
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "tool"]
    assistant, tool = msgs[2], msgs[3]
    [use] = [b for b in request["messages"][2]["content"] if b["type"] == "tool_use"]
    [result] = [b for b in request["messages"][3]["content"] if b["type"] == "tool_result"]
    assert text_of(assistant["content"]) == "I'll create the file hello.txt."
    [call] = assistant["tool_calls"]
    assert call["function"]["name"] == "Write"
    assert json.loads(call["function"]["arguments"]) == use["input"]
    assert tool["tool_call_id"] == call["id"]
    expected = result["content"] if isinstance(result["content"], str) else text_of(result["content"])
    assert text_of(tool["content"]) == expected
