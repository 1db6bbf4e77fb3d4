"""End-to-end tests: the real gateway process, the fake upstream, the official SDK as the client.

Helpers shared by the e2e modules live here: an SSE frame parser that insists on the Anthropic
wire rules, a well-formed-stream checker, a per-block reducer and small request helpers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import anthropic
import httpx2

MODEL = "claude-sonnet-5"  # maps to the sonnet tier (test/sonnet)
USER_HELLO: Any = [{"role": "user", "content": "Hello"}]

WEATHER_TOOL: Any = {
    "name": "get_weather",
    "description": "Current weather for a city.",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}
WEATHER_FUNCTION: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city.",
        "parameters": WEATHER_TOOL["input_schema"],
    },
}


@dataclass(frozen=True)
class SSEEvent:
    event: str
    data: dict[str, Any]


def parse_sse(raw: bytes) -> list[SSEEvent]:
    """Parse an Anthropic SSE body strictly: every frame has one ``event:`` line and one JSON
    ``data:`` line whose ``type`` equals the event name; comment lines are allowed."""
    text = raw.decode("utf-8").replace("\r\n", "\n")
    assert "[DONE]" not in text, f"the gateway forwarded [DONE]:\n{text}"
    events: list[SSEEvent] = []
    for frame in text.split("\n\n"):
        lines = [line for line in frame.split("\n") if line and not line.startswith(":")]
        if not lines:
            continue
        names = [line.partition(":")[2].strip() for line in lines if line.startswith("event:")]
        datas = [line.partition(":")[2].lstrip() for line in lines if line.startswith("data:")]
        assert len(names) == 1 and len(datas) == 1 and len(lines) == 2, f"malformed SSE frame: {frame!r}"
        data = json.loads(datas[0])
        assert isinstance(data, dict) and data.get("type") == names[0], f"type mismatch in frame {frame!r}"
        events.append(SSEEvent(names[0], data))
    return events


def names(events: list[SSEEvent], *, pings: bool = True) -> list[str]:
    """Event names with runs of ``content_block_delta`` collapsed to one ``content_block_delta+``."""
    out: list[str] = []
    for e in events:
        if e.event == "ping" and not pings:
            continue
        name = "content_block_delta+" if e.event == "content_block_delta" else e.event
        if out and out[-1] == name == "content_block_delta+":
            continue
        out.append(name)
    return out


def check_well_formed(events: list[SSEEvent], *, complete: bool = True) -> None:
    """The Anthropic stream grammar: message_start first; blocks 0..n started, given deltas of
    their own kind and stopped once, never interleaved; then message_delta and message_stop."""
    real = [e for e in events if e.event != "ping"]
    assert real and real[0].event == "message_start", [e.event for e in events]
    open_index: int | None = None
    open_type = ""
    next_index = 0
    allowed = {
        "text": {"text_delta", "citations_delta"},
        "thinking": {"thinking_delta", "signature_delta"},
        "tool_use": {"input_json_delta"},
        "redacted_thinking": set(),
    }
    tail: list[str] = []
    for e in real[1:]:
        if tail:
            tail.append(e.event)
            continue
        if e.event == "content_block_start":
            assert open_index is None, f"block {e.data['index']} started while {open_index} is open"
            assert e.data["index"] == next_index, f"index {e.data['index']}, expected {next_index}"
            open_index, open_type = next_index, e.data["content_block"]["type"]
            next_index += 1
        elif e.event == "content_block_delta":
            assert e.data["index"] == open_index, f"delta for {e.data['index']}, open is {open_index}"
            assert e.data["delta"]["type"] in allowed[open_type], (open_type, e.data["delta"])
        elif e.event == "content_block_stop":
            assert e.data["index"] == open_index, f"stop for {e.data['index']}, open is {open_index}"
            open_index = None
        elif e.event in ("message_delta", "error"):
            tail.append(e.event)
        else:
            raise AssertionError(f"unexpected event {e.event} in {[x.event for x in events]}")
    if complete:
        assert open_index is None, "a block was never stopped"
        assert tail == ["message_delta", "message_stop"], tail


def reduce_blocks(events: list[SSEEvent]) -> list[dict[str, Any]]:
    """Summarise each content block: its start payload with the deltas applied."""
    blocks: list[dict[str, Any]] = []
    for e in events:
        if e.event == "content_block_start":
            block = dict(e.data["content_block"])
            if block["type"] == "tool_use":
                block["partial_json"] = ""
            blocks.append(block)
        elif e.event == "content_block_delta":
            block, delta = blocks[e.data["index"]], e.data["delta"]
            kind = delta["type"]
            if kind == "text_delta":
                block["text"] += delta["text"]
            elif kind == "thinking_delta":
                block["thinking"] += delta["thinking"]
            elif kind == "signature_delta":
                block["signature"] = delta["signature"]
            elif kind == "input_json_delta":
                block["partial_json"] += delta["partial_json"]
    for block in blocks:
        if block["type"] == "tool_use":
            block["input"] = json.loads(block.pop("partial_json") or "{}")
    return blocks


def one(events: list[SSEEvent], name: str) -> dict[str, Any]:
    found = [e.data for e in events if e.event == name]
    assert len(found) == 1, f"expected one {name}, got {len(found)}: {[e.event for e in events]}"
    return found[0]


def stream_raw(client: anthropic.Anthropic, **params: Any) -> tuple[int, dict[str, str], bytes]:
    """POST a streaming request through the SDK and return status, headers and the raw body."""
    with client.messages.with_streaming_response.create(stream=True, **params) as resp:
        return resp.status_code, dict(resp.headers), resp.read()


def post_raw(
    base_url: str,
    path: str,
    body: bytes | dict[str, Any],
    headers: dict[str, str] | None = None,
    timeout: float = 30.0,
) -> httpx2.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    hdrs = {"content-type": "application/json", "x-api-key": "test-key", "anthropic-version": "2023-06-01"}
    hdrs.update(headers or {})
    return httpx2.post(base_url + path, content=content, headers=hdrs, timeout=timeout)


def text_of(content: Any) -> str:
    """OpenAI message content (string, or a list of text parts) as one string."""
    if isinstance(content, str):
        return content
    assert isinstance(content, list), content
    assert all(p.get("type") == "text" for p in content), content
    return "".join(p["text"] for p in content)


def assert_stream_flags(body: dict[str, Any]) -> None:
    """An openai-compatible upstream gets ``stream_options.include_usage`` with every stream."""
    if body.get("stream") is True:
        assert body.get("stream_options") == {"include_usage": True}, body.get("stream_options")
    else:
        assert "stream_options" not in body, body.get("stream_options")


def error_of(exc: anthropic.APIStatusError) -> dict[str, Any]:
    """The Anthropic error envelope of an SDK exception, checked for shape."""
    body = exc.body
    assert isinstance(body, dict), f"error body is not JSON: {body!r}"
    assert body.get("type") == "error", body
    err = body["error"]
    assert isinstance(err, dict) and isinstance(err.get("type"), str) and isinstance(err.get("message"), str)
    return err
