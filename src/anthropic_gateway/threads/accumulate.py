"""The answer a streamed reply carried, rebuilt from the gateway's own SSE frames (threaded streams only).

The translator writes whole frames (`event: …\\ndata: {…}\\n\\n`), so each write is split at blank lines;
the content is assembled as the SDK's accumulator does it. Untouched by unthreaded streams.
"""

from __future__ import annotations

from typing import Any

import orjson


class Accumulator:
    def __init__(self) -> None:
        self.message: dict[str, Any] = {"id": None, "content": []}
        self._json: dict[int, list[str]] = {}
        self.stopped = False  # message_stop seen
        self.failed = False  # an error event

    def feed(self, data: bytes) -> None:
        for frame in data.split(b"\n\n"):
            at = frame.find(b"\ndata: ")
            if at != -1:
                self._event(orjson.loads(frame[at + 7:]))

    def _event(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        content: list[dict[str, Any]] = self.message["content"]
        if kind == "message_start":
            self.message["id"] = event["message"]["id"]
        elif kind == "content_block_start":
            content.append(dict(event["content_block"]))
        elif kind == "content_block_delta":
            block, delta = content[event["index"]], event["delta"]
            dtype = delta.get("type")
            if dtype == "text_delta":
                block["text"] = block.get("text", "") + delta["text"]
            elif dtype == "thinking_delta":
                block["thinking"] = block.get("thinking", "") + delta["thinking"]
            elif dtype == "signature_delta":
                block["signature"] = delta["signature"]
            elif dtype == "input_json_delta":
                self._json.setdefault(event["index"], []).append(delta["partial_json"])
        elif kind == "content_block_stop":
            parts = self._json.pop(event["index"], None)
            if parts:
                try:
                    content[event["index"]]["input"] = orjson.loads("".join(parts))
                except orjson.JSONDecodeError:
                    content[event["index"]]["input"] = {}
        elif kind == "message_stop":
            self.stopped = True
        elif kind == "error":
            self.failed = True
