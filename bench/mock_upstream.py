"""A fast, deterministic OpenAI-compatible mock upstream for the benchmark.

POST /v1/chat/completions answers from pre-encoded bytes so that the mock is never the bottleneck:
the request body is never JSON-parsed (a 76 KB body costs ~250 µs to parse on the bench machine), only
scanned for the `model` and `stream` values.

Behaviour is chosen by the model name, which the gateway forwards unchanged for names containing '/':

    bench/text-N   N one-word text chunks "w0 ", "w1 ", ... (N defaults to --chunks)
    bench/prose-N  the same with what real answers' texts hold: a line end every 4th chunk, a quoted
                   word every 10th, a non-ASCII one every 16th (JSON escapes and UTF-8 in the stream)
    bench/tool-K   K text chunks, then one tool call whose arguments arrive in several fragments
    anything else  like bench/text with the default N

Streaming answers: a role chunk, the content chunks (each one a separate transport write, optionally
--delay seconds apart, or --burst of them at a time), a chunk carrying finish_reason, a usage chunk with `choices: []`, `data: [DONE]`.
`--shape openrouter` sends OpenRouter's envelope around the same content (null reasoning fields etc.).

`expected_answer(model)` is the single source of truth for what the mock sends; the load generator
imports it to validate responses.

Run: python bench/mock_upstream.py --port 8081 [--chunks 200] [--delay 0.0] [--shape openrouter]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from dataclasses import dataclass
from typing import Any, cast

import httptools

PROMPT_TOKENS = 1000
TOOL_NAME = "get_weather"
# Quotes, a backslash and non-ASCII text make the fragment boundaries below fall inside escapes and
# multi-byte characters, which is where naive partial-JSON handling breaks.
TOOL_INPUT: dict[str, Any] = {
    "location": 'Zürich "Altstadt" \\ north',
    "unit": "celsius",
    "days": 3,
    "words": [f"w{i}" for i in range(10)],
    "nested": {"ok": True, "ratio": 0.5, "none": None},
}
TOOL_CALL_ID = "call_bench_0001"
CHUNK_ID = "chatcmpl-bench0001"
CREATED = 1_700_000_000
DEFAULT_CHUNKS = 200
MAX_CHUNKS = 100_000
# Bounds the per-model response cache so that arbitrary model names cannot grow memory without limit.
MAX_CACHED_MODELS = 64


@dataclass(frozen=True)
class ExpectedAnswer:
    """What the mock sends for one model name, in protocol-neutral terms."""

    text: str
    tool_name: str | None
    tool_arguments: str | None
    tool_fragments: tuple[str, ...]
    finish_reason: str
    completion_tokens: int
    prompt_tokens: int = PROMPT_TOKENS

    @property
    def tool_input(self) -> Any:
        return None if self.tool_arguments is None else json.loads(self.tool_arguments)


def parse_model(model: str, default_chunks: int = DEFAULT_CHUNKS) -> tuple[str, int]:
    """Map a model name to (mode, count); unknown names fall back to text with the default count."""
    name = model.rsplit("/", 1)[-1]
    mode, _, num = name.partition("-")
    if mode not in ("text", "tool", "prose"):
        return "text", default_chunks
    if num.isdigit():
        return mode, min(int(num), MAX_CHUNKS)
    return mode, default_chunks if mode != "tool" else 5


def text_piece(mode: str, i: int) -> str:
    """The i-th text chunk of an answer."""
    if mode == "prose":
        if i % 4 == 3:
            return f"w{i}\n"
        if i % 10 == 5:
            return f'"w{i}" '
        if i % 16 == 6:
            return f"w{i}\u00e9 "
    return f"w{i} "


def _split_fragments(s: str, parts: int) -> tuple[str, ...]:
    # Fixed, uneven cut points: deterministic, yet they land inside strings, escapes and numbers.
    n = len(s)
    cuts_set = {max(1, min(n - 1, (n * k * k) // (parts * parts))) for k in range(1, parts)}
    # One cut right after a backslash: the fragment then ends in the middle of an escape sequence.
    bs = s.find("\\")
    if 0 < bs < n - 1:
        cuts_set.add(bs + 1)
    cuts = sorted(cuts_set)
    out: list[str] = []
    prev = 0
    for c in cuts:
        out.append(s[prev:c])
        prev = c
    out.append(s[prev:])
    return tuple(x for x in out if x)


def expected_answer(model: str, default_chunks: int = DEFAULT_CHUNKS) -> ExpectedAnswer:
    mode, count = parse_model(model, default_chunks)
    text = "".join(text_piece(mode, i) for i in range(count))
    if mode == "tool":
        args = json.dumps(TOOL_INPUT, ensure_ascii=False)
        frags = _split_fragments(args, 8)
        # Completion tokens: one per text word, one per argument fragment; arbitrary but deterministic.
        return ExpectedAnswer(text, TOOL_NAME, args, frags, "tool_calls", count + len(frags))
    return ExpectedAnswer(text, None, None, (), "stop", count)


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def _http_chunk(payload: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(payload), payload)


def _sse(obj: Any) -> bytes:
    return b"data: " + _dumps(obj) + b"\n\n"


# The chunks' envelope: `plain` is the minimal OpenAI-compatible chunk; `openrouter` is OpenRouter's
# as it streams (every delta repeats the role and carries null reasoning, each choice null
# native_finish_reason and logprobs; the usage chunk has cost and token details).
SHAPES = ("plain", "openrouter")


def _chunk_obj(model: str, delta: dict[str, Any], finish: str | None, shape: str = "plain") -> dict[str, Any]:
    if shape == "openrouter":
        return {
            "id": "gen-1700000000-bench0001AbCdEfGhIjKl",
            "provider": "OpenAI",
            "model": model,
            "object": "chat.completion.chunk",
            "created": CREATED,
            "choices": [{
                "index": 0,
                "delta": {"role": "assistant", "content": None, **delta, "reasoning": None, "reasoning_details": []},
                "finish_reason": finish, "native_finish_reason": finish, "logprobs": None,
            }],
            "system_fingerprint": "fp_bench0001",
        }  # fmt: skip
    return {
        "id": CHUNK_ID,
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def _usage(ans: ExpectedAnswer, shape: str = "plain") -> dict[str, Any]:
    usage: dict[str, Any] = {
        "prompt_tokens": ans.prompt_tokens,
        "completion_tokens": ans.completion_tokens,
        "total_tokens": ans.prompt_tokens + ans.completion_tokens,
    }
    if shape == "openrouter":
        usage.update({
            "cost": 0.0004, "is_byok": False, "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "cost_details": {"upstream_inference_cost": None},
            "completion_tokens_details": {"reasoning_tokens": 0, "image_tokens": 0},
        })  # fmt: skip
    return usage


def build_stream(model: str, default_chunks: int, shape: str = "plain") -> list[bytes]:
    """The SSE events of a streamed answer, one bytes object per event (HTTP chunk framing not included)."""
    ans = expected_answer(model, default_chunks)
    mode, count = parse_model(model, default_chunks)
    events = [_sse(_chunk_obj(model, {"role": "assistant", "content": ""}, None, shape))]
    events += [_sse(_chunk_obj(model, {"content": text_piece(mode, i)}, None, shape)) for i in range(count)]
    if mode == "tool":
        first = {
            "index": 0,
            "id": TOOL_CALL_ID,
            "type": "function",
            "function": {"name": TOOL_NAME, "arguments": ""},
        }
        events.append(_sse(_chunk_obj(model, {"tool_calls": [first]}, None, shape)))
        for frag in ans.tool_fragments:
            delta = {"tool_calls": [{"index": 0, "function": {"arguments": frag}}]}
            events.append(_sse(_chunk_obj(model, delta, None, shape)))
    events.append(_sse(_chunk_obj(model, {"content": ""} if shape == "openrouter" else {}, ans.finish_reason, shape)))
    usage_chunk = _chunk_obj(model, {}, None, shape)
    usage_chunk["choices"] = []
    usage_chunk["usage"] = _usage(ans, shape)
    events.append(_sse(usage_chunk))
    events.append(b"data: [DONE]\n\n")
    return events


def build_completion(model: str, default_chunks: int) -> bytes:
    ans = expected_answer(model, default_chunks)
    message: dict[str, Any] = {"role": "assistant", "content": ans.text}
    if ans.tool_name is not None:
        message["tool_calls"] = [
            {
                "id": TOOL_CALL_ID,
                "type": "function",
                "function": {"name": ans.tool_name, "arguments": ans.tool_arguments},
            }
        ]
    return _dumps(
        {
            "id": CHUNK_ID,
            "object": "chat.completion",
            "created": CREATED,
            "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": ans.finish_reason}],
            "usage": _usage(ans),
        }
    )


_WS = b" \t\r\n"


def scan_string_value(body: bytes, key: bytes) -> str | None:
    """First string value of `"key"` in a JSON document, found by byte search instead of parsing.

    A key can only appear unescaped as a real key (inside JSON strings quotes are escaped), so the first
    occurrence followed by `: "` is a string-valued key. Nested keys of the same name with a non-string
    value (e.g. a tool schema property called "model") are skipped. Bounded to 64 occurrences.
    """
    pos = 0
    for _ in range(64):
        i = body.find(key, pos)
        if i < 0:
            return None
        j = i + len(key)
        while j < len(body) and body[j] in _WS:
            j += 1
        if j < len(body) and body[j] == 0x3A:  # ':'
            j += 1
            while j < len(body) and body[j] in _WS:
                j += 1
            if j < len(body) and body[j] == 0x22:  # '"'
                end = body.find(b'"', j + 1)
                if end > j and body.find(b"\\", j + 1, end) < 0:
                    return body[j + 1 : end].decode()
        pos = j
    return None


def scan_bool_value(body: bytes, key: bytes) -> bool:
    pos = 0
    for _ in range(64):
        i = body.find(key, pos)
        if i < 0:
            return False
        j = i + len(key)
        while j < len(body) and body[j] in _WS:
            j += 1
        if j < len(body) and body[j] == 0x3A:
            j += 1
            while j < len(body) and body[j] in _WS:
                j += 1
            return body.startswith(b"true", j)
        pos = j
    return False


_STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
    b"transfer-encoding: chunked\r\n\r\n"
)


def _json_response(status: bytes, body: bytes, keep_alive: bool) -> bytes:
    conn = b"keep-alive" if keep_alive else b"close"
    return (
        b"HTTP/1.1 %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\nconnection: %s\r\n\r\n%s"
        % (status, len(body), conn, body)
    )


class Responses:
    """Pre-encoded answers per model name (bounded cache)."""

    def __init__(self, default_chunks: int, shape: str = "plain") -> None:
        self.default_chunks = default_chunks
        self.shape = shape
        self._stream: dict[str, list[bytes]] = {}
        self._full: dict[str, bytes] = {}

    def stream(self, model: str) -> list[bytes]:
        got = self._stream.get(model)
        if got is None:
            events = build_stream(model, self.default_chunks, self.shape)
            got = [_STREAM_HEAD] + [_http_chunk(e) for e in events]
            # The terminating zero-length chunk rides with [DONE]: it is framing, not an event.
            got[-1] += b"0\r\n\r\n"
            if len(self._stream) >= MAX_CACHED_MODELS:
                self._stream.clear()
            self._stream[model] = got
        return got

    def full(self, model: str) -> bytes:
        got = self._full.get(model)
        if got is None:
            got = build_completion(model, self.default_chunks)
            if len(self._full) >= MAX_CACHED_MODELS:
                self._full.clear()
            self._full[model] = got
        return got


class Stats:
    def __init__(self) -> None:
        self.requests = 0
        self.streams = 0


class MockProtocol(asyncio.Protocol):
    """One HTTP/1.1 keep-alive connection. Requests are handled strictly one after another."""

    def __init__(self, responses: Responses, delay: float, stats: Stats, burst: int = 1) -> None:
        self.responses = responses
        self.delay = delay
        self.burst = max(1, burst)
        self.stats = stats
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.body: list[bytes] = []
        self.task: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.task is not None:
            self.task.cancel()
        self.transport = None

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self.transport is not None:
                self.transport.write(_json_response(b"400 Bad Request", b'{"error":"bad request"}', False))
                self.transport.close()

    # httptools callbacks
    def on_message_begin(self) -> None:
        self.url = b""
        self.body.clear()

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        t = self.transport
        if t is None:
            return
        self.stats.requests += 1
        keep_alive = self.parser.should_keep_alive()
        method = self.parser.get_method()
        path = self.url.split(b"?", 1)[0]
        if method == b"POST" and path.endswith(b"/chat/completions"):
            body = b"".join(self.body)
            model = scan_string_value(body, b'"model"') or "bench/model"
            if scan_bool_value(body, b'"stream"'):
                self.stats.streams += 1
                chunks = self.responses.stream(model)
                if self.delay > 0:
                    self.task = asyncio.get_running_loop().create_task(self._slow(chunks, keep_alive))
                    return
                # One write per event on purpose: the gateway must see a realistic sequence of reads.
                write = t.write
                for c in chunks:
                    write(c)
            else:
                t.write(_json_response(b"200 OK", self.responses.full(model), keep_alive))
        elif method == b"GET":
            t.write(_json_response(b"200 OK", b'{"ok":true}', keep_alive))
        else:
            t.write(_json_response(b"404 Not Found", b'{"error":"not found"}', keep_alive))
        if not keep_alive:
            t.close()

    async def _slow(self, chunks: list[bytes], keep_alive: bool) -> None:
        t = self.transport
        if t is None:
            return
        t.write(chunks[0])
        burst = self.burst
        for at in range(1, len(chunks), burst):
            await asyncio.sleep(self.delay)
            if t.is_closing():
                return
            for c in chunks[at : at + burst]:
                t.write(c)
        if not keep_alive:
            t.close()


async def serve(
    host: str, port: int, chunks: int, delay: float, ready_fd: int | None, shape: str = "plain", burst: int = 1
) -> None:
    loop = asyncio.get_running_loop()
    responses = Responses(chunks, shape)
    stats = Stats()
    server = await loop.create_server(
        lambda: MockProtocol(responses, delay, stats, burst), host, port, backlog=1024, reuse_address=True
    )
    actual_port = server.sockets[0].getsockname()[1]
    if ready_fd is not None:
        os.write(ready_fd, f"{actual_port}\n".encode())
        os.close(ready_fd)
    else:
        print(f"mock upstream listening on http://{host}:{actual_port}/v1", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8081, help="0 picks a free port")
    ap.add_argument("--chunks", type=int, default=DEFAULT_CHUNKS, help="default text chunks per answer")
    ap.add_argument("--delay", type=float, default=0.0, help="seconds between streamed chunks")
    ap.add_argument("--burst", type=int, default=1,
                    help="with --delay: chunks written together each step (reads of a given size)")
    ap.add_argument("--shape", choices=SHAPES, default="plain", help="the streamed chunks' envelope")
    ap.add_argument("--ready-fd", type=int, default=None, help="write the bound port to this fd when ready")
    args = ap.parse_args(argv)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print("refusing to bind anything but loopback", file=sys.stderr)
        return 2
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(serve(args.host, args.port, args.chunks, args.delay, args.ready_fd, args.shape, args.burst))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
