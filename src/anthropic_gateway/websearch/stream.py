"""A whole Anthropic message as the event sequence Anthropic streams for it.

A search answer is read whole (its results arrive with the end of the upstream's answer), so a
client that asked for a stream gets these events at once: message_start, each block (text with
citations_delta then text_delta, server_tool_use with its input as input_json_delta, the search
result whole, thinking with its signature_delta), message_delta with the usage, message_stop.
"""

from __future__ import annotations

from typing import Any

import orjson

from anthropic_gateway import sse
from anthropic_gateway.ops.record import RequestRecord
from anthropic_gateway.service import AnswerStream, DirectWrite, Write


def _block(index: int, block: dict[str, Any]) -> list[bytes]:
    kind = block["type"]
    if kind == "text":
        out = [sse.block_start(index, {"type": "text", "text": ""})]
        out += [sse.block_delta(index, {"type": "citations_delta", "citation": c}) for c in block.get("citations") or ()]
        out.append(sse.block_delta(index, {"type": "text_delta", "text": block["text"]}))
    elif kind in ("tool_use", "server_tool_use"):
        out = [sse.block_start(index, {**block, "input": {}}),
               sse.block_delta(index, {"type": "input_json_delta", "partial_json": orjson.dumps(block["input"]).decode()})]  # fmt: skip
    elif kind == "thinking":
        out = [sse.block_start(index, {"type": "thinking", "thinking": "", "signature": ""})]
        if block["thinking"]:
            out.append(sse.block_delta(index, {"type": "thinking_delta", "thinking": block["thinking"]}))
        out.append(sse.block_delta(index, {"type": "signature_delta", "signature": block["signature"]}))
    else:  # web_search_tool_result, redacted_thinking: whole in their start event
        out = [sse.block_start(index, block)]
    out.append(sse.block_stop(index))
    return out


def message_events(message: dict[str, Any]) -> tuple[bytes, bytes]:
    """(message_start, everything after it)."""
    usage = message["usage"]
    start_usage = {k: usage[k] for k in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
                   if k in usage} | {"output_tokens": 0}  # fmt: skip
    start = {**message, "content": [], "stop_reason": None, "stop_sequence": None, "usage": start_usage}
    head = sse.frame(b"message_start", {"type": "message_start", "message": start})
    body = [frame for i, block in enumerate(message["content"]) for frame in _block(i, block)]
    body.append(sse.frame(b"message_delta", {"type": "message_delta", "usage": usage, "delta": {
        "stop_reason": message["stop_reason"], "stop_sequence": message["stop_sequence"]}}))  # fmt: skip
    body.append(sse.MESSAGE_STOP)
    return head, b"".join(body)


class MessageStream(AnswerStream):
    """An AnswerStream over a message already complete: no upstream connection to pump or release."""

    def __init__(self, message: dict[str, Any], record: RequestRecord) -> None:
        self.record = record
        self.writes = 0
        self._head, self._tail = message_events(message)

    def start(self) -> bytes:
        return self._head

    async def pump(self, write: Write, direct: DirectWrite | None = None) -> bytes:
        return self._tail

    async def close(self) -> None:
        return None

    def abort(self) -> None:
        return None
