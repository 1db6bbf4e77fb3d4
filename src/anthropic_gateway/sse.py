"""Server-sent events: an incremental decoder for the upstream's stream and the encoder for ours.

The decoder works on bytes and splits only at line ends, so a UTF-8 character split across two reads
is reassembled before anything decodes it. The encoder pre-builds the frequent frames as byte
templates: a text delta costs one JSON string encode and one bytes format.
"""

from __future__ import annotations

from typing import Any

import orjson


class SSEDecoder:
    """feed(bytes) → list of complete `data` payloads (bytes). Comments and other fields are skipped.

    Splits on blank lines first: the usual upstream event is one `data: {...}` line, which then costs
    one slice instead of a line-by-line walk. A read without any line end cannot complete an event,
    so it is only kept (a list of pieces, joined when a line end arrives): a large event arriving in
    many reads costs linear time, not a re-join and re-scan of everything pending per read.
    """

    __slots__ = ("_parts", "_pending")

    def __init__(self) -> None:
        self._parts: list[bytes] = []  # the incomplete event's pieces
        self._pending = 0

    def feed(self, chunk: bytes) -> list[bytes]:
        # bytes.find, not `in`: `b"x" in data` first tries its operand as an int, and the TypeError
        # that raises and clears costs ~1,800 instructions, more than all the rest of this test.
        if (
            not self._parts and chunk.startswith(b"data: ") and chunk.find(b"\n") == len(chunk) - 2
            and chunk.endswith(b"\n\n") and chunk.find(b"\r") < 0
        ):  # fmt: skip
            return [chunk[6:-2]]  # the usual read: exactly one one-line event
        if chunk.find(b"\n") < 0 and chunk.find(b"\r") < 0:
            if chunk:
                self._parts.append(chunk)
                self._pending += len(chunk)
            return []
        if self._parts:
            self._parts.append(chunk)
            chunk = b"".join(self._parts)
            self._parts = []
        held = b""
        if chunk.find(b"\r") >= 0:
            if chunk.endswith(b"\r"):  # its LF may be in the next read: decided then
                chunk, held = chunk[:-1], b"\r"
            # CRLF or CR line ends: normalised to LF.
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        blocks = chunk.split(b"\n\n")
        tail = blocks.pop() + held
        if tail:
            self._parts.append(tail)
        self._pending = len(tail)
        out: list[bytes] = []
        for block in blocks:
            if block.startswith(b"data: ") and block.find(b"\n") < 0:
                out.append(block[6:])
            elif block:
                self._block(block, out)
        return out

    @property
    def pending(self) -> int:
        """Bytes of an event still waiting for its end."""
        return self._pending

    def _block(self, block: bytes, out: list[bytes]) -> None:
        data: list[bytes] = []
        for line in block.split(b"\n"):
            # Other fields and `:` comments (upstream keep-alives) carry nothing to translate.
            if line.startswith(b"data:"):
                value = line[5:]
                data.append(value[1:] if value.startswith(b" ") else value)
        if data:
            out.append(data[0] if len(data) == 1 else b"\n".join(data))

    def close(self) -> list[bytes]:
        """End of stream: an unterminated last event still counts."""
        if not self._parts:  # (the usual end: nothing pending)
            self._pending = 0
            return []
        tail = b"".join(self._parts).replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        self._parts, self._pending = [], 0
        out: list[bytes] = []
        if tail.strip():
            self._block(tail.strip(b"\n"), out)
        return out


def frame(event: bytes, data: dict[str, Any]) -> bytes:
    return b"event: " + event + b"\ndata: " + orjson.dumps(data) + b"\n\n"


PING = b'event: ping\ndata: {"type":"ping"}\n\n'
MESSAGE_STOP = b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
_TEXT_DELTA = (
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":%d,'
    b'"delta":{"type":"text_delta","text":%b}}\n\n'
)
_THINKING_DELTA = (
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":%d,'
    b'"delta":{"type":"thinking_delta","thinking":%b}}\n\n'
)
_JSON_DELTA = (
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":%d,'
    b'"delta":{"type":"input_json_delta","partial_json":%b}}\n\n'
)
_BLOCK_STOP = b'event: content_block_stop\ndata: {"type":"content_block_stop","index":%d}\n\n'
_TEXT_START = (
    b'event: content_block_start\ndata: {"type":"content_block_start","index":%d,'
    b'"content_block":{"type":"text","text":""}}\n\n'
)
_THINKING_START = (
    b'event: content_block_start\ndata: {"type":"content_block_start","index":%d,'
    b'"content_block":{"type":"thinking","thinking":"","signature":""}}\n\n'
)


# A text_delta frame around the JSON string's body: _TEXT_DELTA_HEAD % index + body + TEXT_DELTA_TAIL.
_TEXT_DELTA_HEAD = (
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":%d,'
    b'"delta":{"type":"text_delta","text":"'
)
TEXT_DELTA_TAIL = b'"}}\n\n'


def text_delta(index: int, text: str) -> bytes:
    return _TEXT_DELTA % (index, orjson.dumps(text))


def text_delta_head(index: int) -> bytes:
    """The text_delta frame up to its text's first byte (the opening quote included)."""
    return _TEXT_DELTA_HEAD % index


def thinking_delta(index: int, text: str) -> bytes:
    return _THINKING_DELTA % (index, orjson.dumps(text))


def input_json_delta(index: int, partial: str) -> bytes:
    return _JSON_DELTA % (index, orjson.dumps(partial))


def text_start(index: int) -> bytes:
    return _TEXT_START % index


def thinking_start(index: int) -> bytes:
    return _THINKING_START % index


def block_stop(index: int) -> bytes:
    return _BLOCK_STOP % index


def block_start(index: int, block: dict[str, Any]) -> bytes:
    return frame(b"content_block_start", {"type": "content_block_start", "index": index, "content_block": block})


def block_delta(index: int, delta: dict[str, Any]) -> bytes:
    return frame(b"content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})
