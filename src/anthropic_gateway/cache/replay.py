"""A stored Message as a live stream, and a streamed answer back into a Message.

``replay_events(message)`` gives the Anthropic event grammar a live stream has, built with the
gateway's own SSE encoder (sse.py): message_start (content empty, stop_reason null), ping, then per
block content_block_start / its deltas / content_block_stop, then message_delta (stop_reason,
stop_sequence, usage) and message_stop. Text, thinking (thinking_delta then signature_delta) and
tool input (one input_json_delta) are each sent in one delta; blocks without deltas
(redacted_thinking, server tool results) are whole in their content_block_start.

``assemble(sse_bytes)`` is the inverse for the gateway's own output: the events of a finished
stream folded into the Message the client's SDK would build, or None when the stream did not end
with message_stop.
"""

from __future__ import annotations

from typing import Any

import orjson

from anthropic_gateway import sse

_INPUT_BLOCKS = frozenset({"tool_use", "server_tool_use", "mcp_tool_use"})


def replay_start(message: dict[str, Any]) -> bytes:
    usage = message.get("usage") or {}
    start = {**message, "content": [], "stop_reason": None, "stop_sequence": None,
             "usage": {**usage, "output_tokens": 0}}  # fmt: skip
    return sse.frame(b"message_start", {"type": "message_start", "message": start}) + sse.PING


def replay_blocks(message: dict[str, Any]) -> bytes:
    out: list[bytes] = []
    for i, block in enumerate(message.get("content") or ()):
        kind = block.get("type")
        if kind == "text":
            head = {"type": "text", "text": ""}
            if block.get("citations"):
                head["citations"] = block["citations"]
            out.append(sse.block_start(i, head) if len(head) > 2 else sse.text_start(i))
            if block.get("text"):
                out.append(sse.text_delta(i, block["text"]))
        elif kind == "thinking":
            out.append(sse.thinking_start(i))
            if block.get("thinking"):
                out.append(sse.thinking_delta(i, block["thinking"]))
            out.append(sse.block_delta(i, {"type": "signature_delta", "signature": block.get("signature", "")}))
        elif kind in _INPUT_BLOCKS:
            out.append(sse.block_start(i, {**block, "input": {}}))
            out.append(sse.input_json_delta(i, orjson.dumps(block.get("input", {})).decode()))
        else:
            out.append(sse.block_start(i, block))
        out.append(sse.block_stop(i))
    return b"".join(out)


def replay_end(message: dict[str, Any]) -> bytes:
    delta = {"type": "message_delta",
             "delta": {"stop_reason": message.get("stop_reason"), "stop_sequence": message.get("stop_sequence")},
             "usage": message.get("usage") or {}}  # fmt: skip
    return sse.frame(b"message_delta", delta) + sse.MESSAGE_STOP


def replay_events(message: dict[str, Any]) -> bytes:
    return replay_start(message) + replay_blocks(message) + replay_end(message)


# --- assembling a streamed answer --------------------------------------------------------------


def _events(raw: bytes) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for payload in sse.SSEDecoder().feed(raw):
        value = orjson.loads(payload)
        if isinstance(value, dict):
            events.append(value)
    return events


def assemble(raw: bytes) -> dict[str, Any] | None:
    """The Message a finished stream of the gateway's events describes (None if it did not finish)."""
    message: dict[str, Any] | None = None
    partial: dict[int, list[str]] = {}
    finished = False
    for event in _events(raw):
        kind = event.get("type")
        if kind == "message_start":
            message = dict(event["message"])
            message["content"] = []
        elif message is None:
            return None
        elif kind == "content_block_start":
            message["content"].append(dict(event["content_block"]))
        elif kind == "content_block_delta":
            _apply(message["content"][event["index"]], event["delta"], partial.setdefault(event["index"], []))
        elif kind == "content_block_stop":
            parts = partial.pop(event["index"], None)
            if parts:
                message["content"][event["index"]]["input"] = orjson.loads("".join(parts))
        elif kind == "message_delta":
            message.update(event.get("delta") or {})
            message["usage"] = {**message.get("usage", {}), **(event.get("usage") or {})}
        elif kind == "message_stop":
            finished = True
        elif kind == "error":
            return None
    return message if finished else None


def _apply(block: dict[str, Any], delta: dict[str, Any], parts: list[str]) -> None:
    kind = delta.get("type")
    if kind == "text_delta":
        block["text"] = block.get("text", "") + delta["text"]
    elif kind == "thinking_delta":
        block["thinking"] = block.get("thinking", "") + delta["thinking"]
    elif kind == "signature_delta":
        block["signature"] = delta["signature"]
    elif kind == "input_json_delta":
        parts.append(delta["partial_json"])
    elif kind == "citations_delta":
        block.setdefault("citations", []).append(delta["citation"])
