"""Closed-loop load generator for the gateway (Anthropic format) and for the mock (OpenAI format, the floor).

Fixed concurrency: C workers, each on its own keep-alive connection, send the next request as soon as the
previous response is complete. Bounded by --duration seconds and --max-requests. Every response is
validated against what the mock sends (`mock_upstream.expected_answer`):

- Anthropic streams: exact event grammar (message_start first; content_block_start/delta/stop with
  contiguous indices and at most one open block; message_delta then message_stop; every event has an
  `event:` line equal to data.type), the concatenated text, the tool name and parsed input, stop_reason
  and usage.
- Anthropic non-streaming: the Message JSON.
- OpenAI streams / completions (floor): chunk grammar, content, finish_reason, usage, `[DONE]`.

Validation is exact but cheap: a streamed body is split into its first event (message_start, which carries
a per-response id and is validated every time) and the rest. When the rest is byte-identical to a rest
that already passed full validation, it is valid by construction; otherwise it is fully validated and
remembered (bounded cache). A deterministic gateway therefore costs one memcmp per response, and any
deviation (a ping, a random tool id, a bug) falls back to full validation.

The HTTP client is a bare asyncio Protocol over httptools' C parser; aiohttp/httpx cost several times
more CPU per response and would cap the figures.

Prints one JSON object (results) on stdout.

Example: python bench/loadgen.py --url http://127.0.0.1:8080 --target anthropic --body small \
         --stream --concurrency 32 --duration 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

import httptools
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mock_upstream import DEFAULT_CHUNKS, TOOL_NAME, ExpectedAnswer, expected_answer

FIXTURE = Path(os.environ.get("BENCH_FIXTURE", "/work/shared/fixtures/claude-code-2.1.197-requests.json"))
if not FIXTURE.exists():
    FIXTURE = Path(__file__).resolve().parents[2] / "shared/fixtures/claude-code-2.1.197-requests.json"

MAX_CACHED_TAILS = 32
MAX_ERROR_SAMPLES = 8
ALLOWED_HOSTS = ("127.0.0.1", "localhost", "::1")

TOOL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "location": {"type": "string"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        "days": {"type": "integer"},
        "words": {"type": "array", "items": {"type": "string"}},
        "nested": {"type": "object"},
    },
    "required": ["location"],
}


# ---------------------------------------------------------------------------------------------- requests


def model_for(body_kind: str, chunks: int) -> str:
    return f"bench/tool-{min(chunks, 5)}" if body_kind == "tool" else f"bench/text-{chunks}"


def anthropic_body(body_kind: str, stream: bool, model: str) -> dict[str, Any]:
    if body_kind == "cc":
        body: dict[str, Any] = json.loads(FIXTURE.read_text())["first_turn"]
        body["model"] = model
        body["stream"] = stream
        return body
    body = {
        "model": model,
        "max_tokens": 1024,
        "messages": [{"role": "user", "content": "Say hello in two hundred words."}],
        "stream": stream,
    }
    if body_kind == "tool":
        body["tools"] = [
            {"name": TOOL_NAME, "description": "Weather for a place.", "input_schema": TOOL_SCHEMA}
        ]
        body["messages"] = [{"role": "user", "content": "What is the weather in Zürich?"}]
    return body


def _text_of(content: Any) -> Any:
    if isinstance(content, str):
        return content
    parts: list[dict[str, Any]] = []
    for block in content:
        if block.get("type") == "text":
            parts.append({"type": "text", "text": block["text"]})
        else:
            # Floor only needs a body of similar size and shape; exact mapping is the gateway's job.
            parts.append({"type": "text", "text": json.dumps(block)})
    return parts


def openai_body(body_kind: str, stream: bool, model: str) -> dict[str, Any]:
    """The same request in OpenAI format, roughly as a translating gateway would send it upstream."""
    a = anthropic_body(body_kind, stream, model)
    messages: list[dict[str, Any]] = []
    system = a.get("system")
    if system:
        text = system if isinstance(system, str) else "\n\n".join(b["text"] for b in system)
        messages.append({"role": "system", "content": text})
    for m in a["messages"]:
        messages.append({"role": m["role"], "content": _text_of(m["content"])})
    out: dict[str, Any] = {
        "model": model,
        "messages": messages,
        "max_tokens": a["max_tokens"],
        "stream": stream,
    }
    if a.get("tools"):
        out["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": t["name"],
                    "description": t.get("description", ""),
                    "parameters": t["input_schema"],
                },
            }
            for t in a["tools"]
        ]
    if stream:
        out["stream_options"] = {"include_usage": True}
    return out


def http_request(host: str, port: int, path: str, body: bytes, headers: dict[str, str]) -> bytes:
    head = f"POST {path} HTTP/1.1\r\nhost: {host}:{port}\r\ncontent-type: application/json\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    head += f"content-length: {len(body)}\r\n\r\n"
    return head.encode() + body


# -------------------------------------------------------------------------------------------- validation


class Invalid(Exception):
    """A response that does not match the protocol or the mock's content."""


def split_sse(body: bytes) -> list[tuple[str | None, bytes, bytes]]:
    """SSE events as (event name, data, raw event bytes); comment-only events are dropped."""
    if b"\r" in body:
        body = body.replace(b"\r\n", b"\n")
    if body and not body.endswith(b"\n\n"):
        raise Invalid(f"stream does not end with a blank line: ...{body[-80:]!r}")
    out: list[tuple[str | None, bytes, bytes]] = []
    for raw in body.split(b"\n\n"):
        if not raw:
            continue
        name: str | None = None
        data: list[bytes] = []
        for line in raw.split(b"\n"):
            if not line or line.startswith(b":"):
                continue
            key, _, value = line.partition(b":")
            if value.startswith(b" "):
                value = value[1:]
            if key == b"event":
                if name is not None:
                    raise Invalid(f"two event: lines in one event: {raw[:200]!r}")
                name = value.decode()
            elif key == b"data":
                data.append(value)
        if name is None and not data:
            continue
        out.append((name, b"\n".join(data), raw))
    return out


def _loads(data: bytes, raw: bytes) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as e:
        raise Invalid(f"data is not JSON ({e}): {raw[:300]!r}") from None


def check_message_start(name: str | None, data: bytes, raw: bytes, model: str) -> None:
    if name != "message_start":
        raise Invalid(f"event #0: expected message_start, got {name!r}: {raw[:300]!r}")
    obj = _loads(data, raw)
    if not isinstance(obj, dict) or obj.get("type") != "message_start":
        raise Invalid(f"event #0: data.type != event name: {raw[:300]!r}")
    msg = obj.get("message")
    if not isinstance(msg, dict):
        raise Invalid(f"message_start without message object: {raw[:300]!r}")
    problems = []
    if not str(msg.get("id", "")).startswith("msg_"):
        problems.append(f"id {msg.get('id')!r} does not start with msg_")
    for k, v in (("type", "message"), ("role", "assistant"), ("content", []), ("model", model)):
        if msg.get(k) != v:
            problems.append(f"{k}={msg.get(k)!r}, expected {v!r}")
    for k in ("stop_reason", "stop_sequence"):
        if k not in msg or msg[k] is not None:
            problems.append(f"{k} must be present and null")
    usage = msg.get("usage")
    if (
        not isinstance(usage, dict)
        or not isinstance(usage.get("input_tokens"), int)
        or not isinstance(usage.get("output_tokens"), int)
    ):
        problems.append(f"usage {usage!r} lacks integer input_tokens/output_tokens")
    if problems:
        raise Invalid("message_start: " + "; ".join(problems) + f": {raw[:300]!r}")


def check_usage(usage: Any, ans: ExpectedAnswer, where: str) -> None:
    if not isinstance(usage, dict):
        raise Invalid(f"{where}: usage missing: {usage!r}")
    if usage.get("output_tokens") != ans.completion_tokens:
        raise Invalid(
            f"{where}: usage.output_tokens={usage.get('output_tokens')!r}, expected {ans.completion_tokens}"
        )
    if "input_tokens" in usage and usage["input_tokens"] != ans.prompt_tokens:
        raise Invalid(f"{where}: usage.input_tokens={usage['input_tokens']!r}, expected {ans.prompt_tokens}")


def expected_blocks(ans: ExpectedAnswer) -> list[tuple[str, Any]]:
    blocks: list[tuple[str, Any]] = []
    if ans.text:
        blocks.append(("text", ans.text))
    if ans.tool_name is not None:
        blocks.append(("tool_use", (ans.tool_name, ans.tool_input)))
    return blocks


def expected_stop_reason(ans: ExpectedAnswer) -> str:
    return "tool_use" if ans.tool_name is not None else "end_turn"


def _valid_tool_id(s: Any) -> bool:
    return isinstance(s, str) and bool(s) and all(c.isascii() and (c.isalnum() or c in "_-") for c in s)


def validate_anthropic_stream(body: bytes, ans: ExpectedAnswer, model: str) -> None:
    events = split_sse(body)
    if not events:
        raise Invalid("empty stream")
    name0, data0, raw0 = events[0]
    check_message_start(name0, data0, raw0, model)
    next_index = 0
    open_block: tuple[int, str] | None = None  # (index, type)
    blocks: list[tuple[str, Any]] = []
    text_buf: list[str] = []
    json_buf: list[str] = []
    tool_head: tuple[str, str] = ("", "")
    message_delta: dict[str, Any] | None = None
    stopped = False
    pings = 0
    for i, (name, data, raw) in enumerate(events[1:], start=1):
        where = f"event #{i} ({name})"
        if name is None:
            raise Invalid(f"{where}: no event: line: {raw[:300]!r}")
        obj = _loads(data, raw)
        if not isinstance(obj, dict) or obj.get("type") != name:
            raise Invalid(
                f"{where}: data.type {obj.get('type') if isinstance(obj, dict) else obj!r} != event name"
            )
        if stopped:
            raise Invalid(f"{where}: event after message_stop: {raw[:300]!r}")
        if name == "ping":
            pings += 1
            continue
        if name == "error":
            raise Invalid(f"{where}: error event: {raw[:500]!r}")
        if name == "message_start":
            raise Invalid(f"{where}: second message_start")
        if name in ("content_block_start", "content_block_delta", "content_block_stop"):
            if message_delta is not None:
                raise Invalid(f"{where}: content event after message_delta")
            idx = obj.get("index")
            if name == "content_block_start":
                if open_block is not None:
                    raise Invalid(f"{where}: block {idx} started while block {open_block[0]} is open")
                if idx != next_index:
                    raise Invalid(f"{where}: index {idx!r}, expected {next_index}")
                cb = obj.get("content_block")
                if not isinstance(cb, dict):
                    raise Invalid(f"{where}: no content_block: {raw[:300]!r}")
                ctype = cb.get("type")
                if ctype == "text":
                    if cb.get("text") != "":
                        raise Invalid(f"{where}: text block must start empty: {raw[:300]!r}")
                    text_buf = []
                elif ctype == "tool_use":
                    if not _valid_tool_id(cb.get("id")) or not isinstance(cb.get("name"), str):
                        raise Invalid(f"{where}: bad tool_use id/name: {raw[:300]!r}")
                    if cb.get("input") != {}:
                        raise Invalid(f"{where}: tool_use input must start as {{}}: {raw[:300]!r}")
                    tool_head = (cb["id"], cb["name"])
                    json_buf = []
                else:
                    raise Invalid(f"{where}: unexpected block type {ctype!r} (the mock sends only text/tool)")
                open_block = (idx, ctype)
                next_index += 1
            elif name == "content_block_delta":
                if open_block is None or idx != open_block[0]:
                    raise Invalid(f"{where}: delta for index {idx!r}, open block is {open_block}")
                delta = obj.get("delta")
                if not isinstance(delta, dict):
                    raise Invalid(f"{where}: no delta: {raw[:300]!r}")
                dtype = delta.get("type")
                if open_block[1] == "text" and dtype == "text_delta" and isinstance(delta.get("text"), str):
                    text_buf.append(delta["text"])
                elif (
                    open_block[1] == "tool_use"
                    and dtype == "input_json_delta"
                    and isinstance(delta.get("partial_json"), str)
                ):
                    json_buf.append(delta["partial_json"])
                else:
                    raise Invalid(
                        f"{where}: delta {dtype!r} does not fit a {open_block[1]} block: {raw[:300]!r}"
                    )
            else:
                if open_block is None or idx != open_block[0]:
                    raise Invalid(f"{where}: stop for index {idx!r}, open block is {open_block}")
                if open_block[1] == "text":
                    blocks.append(("text", "".join(text_buf)))
                else:
                    raw_json = "".join(json_buf)
                    try:
                        parsed = json.loads(raw_json) if raw_json else {}
                    except ValueError:
                        raise Invalid(f"{where}: tool input is not JSON: {raw_json[:300]!r}") from None
                    blocks.append(("tool_use", (tool_head[1], parsed)))
                open_block = None
        elif name == "message_delta":
            if open_block is not None:
                raise Invalid(f"{where}: message_delta while block {open_block[0]} is open")
            if message_delta is not None:
                raise Invalid(f"{where}: second message_delta")
            message_delta = obj
        elif name == "message_stop":
            if message_delta is None:
                raise Invalid(f"{where}: message_stop without message_delta")
            stopped = True
        else:
            raise Invalid(f"{where}: unknown event type: {raw[:300]!r}")
    if not stopped:
        raise Invalid(f"stream ended without message_stop (last event {events[-1][0]!r})")
    assert message_delta is not None
    want = expected_blocks(ans)
    if blocks != want:
        raise Invalid(f"content differs: got {_short(blocks)}, expected {_short(want)}")
    delta = message_delta.get("delta")
    if not isinstance(delta, dict) or delta.get("stop_reason") != expected_stop_reason(ans):
        raise Invalid(f"message_delta stop_reason: got {delta!r}, expected {expected_stop_reason(ans)!r}")
    if "stop_sequence" not in delta or delta["stop_sequence"] is not None:
        raise Invalid(f"message_delta.delta.stop_sequence must be present and null: {delta!r}")
    check_usage(message_delta.get("usage"), ans, "message_delta")


def _short(x: Any) -> str:
    s = repr(x)
    return s if len(s) < 400 else s[:200] + " ... " + s[-150:]


def validate_anthropic_message(body: bytes, ans: ExpectedAnswer, model: str) -> None:
    try:
        msg = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise Invalid(f"body is not JSON: {body[:300]!r}") from None
    if not isinstance(msg, dict):
        raise Invalid(f"body is not an object: {body[:300]!r}")
    problems = []
    if not str(msg.get("id", "")).startswith("msg_"):
        problems.append(f"id {msg.get('id')!r}")
    for k, v in (("type", "message"), ("role", "assistant"), ("model", model)):
        if msg.get(k) != v:
            problems.append(f"{k}={msg.get(k)!r}, expected {v!r}")
    if msg.get("stop_reason") != expected_stop_reason(ans):
        problems.append(f"stop_reason={msg.get('stop_reason')!r}, expected {expected_stop_reason(ans)!r}")
    if "stop_sequence" not in msg or msg["stop_sequence"] is not None:
        problems.append("stop_sequence must be present and null")
    blocks: list[tuple[str, Any]] = []
    for b in msg.get("content") or []:
        if b.get("type") == "text":
            blocks.append(("text", b.get("text")))
        elif b.get("type") == "tool_use":
            if not _valid_tool_id(b.get("id")):
                problems.append(f"bad tool_use id {b.get('id')!r}")
            blocks.append(("tool_use", (b.get("name"), b.get("input"))))
        else:
            blocks.append((str(b.get("type")), b))
    if blocks != expected_blocks(ans):
        problems.append(f"content differs: got {_short(blocks)}, expected {_short(expected_blocks(ans))}")
    if problems:
        raise Invalid("message: " + "; ".join(problems))
    check_usage(msg.get("usage"), ans, "message")


def validate_openai_stream(body: bytes, ans: ExpectedAnswer, model: str) -> None:
    events = split_sse(body)
    if not events or events[-1][1] != b"[DONE]":
        raise Invalid("stream does not end with data: [DONE]")
    text: list[str] = []
    tool_name: str | None = None
    args: list[str] = []
    finish: str | None = None
    usage: Any = None
    for i, (_name, data, raw) in enumerate(events[:-1]):
        obj = _loads(data, raw)
        if obj.get("object") != "chat.completion.chunk" or obj.get("model") != model:
            raise Invalid(f"chunk #{i}: bad object/model: {raw[:300]!r}")
        if usage is not None:
            raise Invalid(f"chunk #{i}: chunk after the usage chunk")
        if obj.get("usage") is not None:
            if obj.get("choices") != []:
                raise Invalid(f"chunk #{i}: usage chunk must have choices: []")
            usage = obj["usage"]
            continue
        for ch in obj.get("choices") or []:
            d = ch.get("delta") or {}
            if d.get("content"):
                text.append(d["content"])
            for tc in d.get("tool_calls") or []:
                fn = tc.get("function") or {}
                if fn.get("name"):
                    tool_name = fn["name"]
                if fn.get("arguments"):
                    args.append(fn["arguments"])
            if ch.get("finish_reason"):
                finish = ch["finish_reason"]
    if "".join(text) != ans.text:
        raise Invalid(f"text differs: {_short(''.join(text))}")
    if tool_name != ans.tool_name or (ans.tool_name and json.loads("".join(args)) != ans.tool_input):
        raise Invalid(f"tool call differs: {tool_name!r} {''.join(args)[:200]!r}")
    if finish != ans.finish_reason:
        raise Invalid(f"finish_reason {finish!r}, expected {ans.finish_reason!r}")
    if not isinstance(usage, dict) or usage.get("completion_tokens") != ans.completion_tokens:
        raise Invalid(f"usage {usage!r}")


def validate_openai_completion(body: bytes, ans: ExpectedAnswer, model: str) -> None:
    obj = orjson.loads(body)
    msg = obj["choices"][0]["message"]
    if obj.get("model") != model or msg.get("content") != ans.text:
        raise Invalid(f"completion differs: {body[:300]!r}")
    if obj["choices"][0].get("finish_reason") != ans.finish_reason:
        raise Invalid("finish_reason differs")
    if ans.tool_name is not None:
        tc = msg["tool_calls"][0]["function"]
        if tc["name"] != ans.tool_name or json.loads(tc["arguments"]) != ans.tool_input:
            raise Invalid("tool call differs")


@dataclass
class Validator:
    """Validates every response; identical stream tails are validated once (see module docstring)."""

    target: str
    stream: bool
    ans: ExpectedAnswer
    model: str
    tails: dict[int, list[bytes]] = field(default_factory=dict)
    n_tails: int = 0
    full: int = 0
    fast: int = 0
    _openai_head: bytes = b""

    def __call__(self, body: bytes) -> None:
        if not self.stream:
            self.full += 1
            if self.target == "anthropic":
                validate_anthropic_message(body, self.ans, self.model)
            else:
                validate_openai_completion(body, self.ans, self.model)
            return
        cut = body.find(b"\n\n") + 2
        head, tail = body[:cut], body[cut:]
        if cut > 1 and b"\r" not in head:
            known = self.tails.get(len(tail))
            if known is not None and tail in known:
                if self.target == "anthropic":
                    ev = split_sse(head)
                    if len(ev) == 1:
                        check_message_start(ev[0][0], ev[0][1], ev[0][2], self.model)
                        self.fast += 1
                        return
                elif head == self._openai_head:
                    self.fast += 1
                    return
        self.full += 1
        if self.target == "anthropic":
            validate_anthropic_stream(body, self.ans, self.model)
        else:
            validate_openai_stream(body, self.ans, self.model)
            self._openai_head = head
        if cut > 1 and self.n_tails < MAX_CACHED_TAILS:
            self.tails.setdefault(len(tail), []).append(tail)
            self.n_tails += 1


# ---------------------------------------------------------------------------------------------- client


class Conn(asyncio.Protocol):
    """One keep-alive HTTP/1.1 client connection; one request in flight at a time."""

    def __init__(self, marker: bytes) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.marker = marker
        self.transport: asyncio.Transport | None = None
        self.parts: list[bytes] = []
        self.first_t = 0.0
        self.ctype = b""
        self.done: asyncio.Future[None] | None = None
        self.closed = False
        self.keep_alive = True

    def reset(self, fut: asyncio.Future[None]) -> None:
        self.parts = []
        self.first_t = 0.0
        self.ctype = b""
        self.done = fut

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.done is not None and not self.done.done():
            self.done.set_exception(ConnectionError(f"connection lost: {exc}"))

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as e:
            if self.done is not None and not self.done.done():
                self.done.set_exception(ConnectionError(f"HTTP parse error: {e}"))
            if self.transport is not None:
                self.transport.abort()

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"content-type":
            self.ctype = value

    def on_body(self, body: bytes) -> None:
        self.parts.append(body)
        if not self.first_t and self.marker in body:
            self.first_t = time.perf_counter()

    def on_headers_complete(self) -> None:
        # Read here: llhttp resets its state once the message is complete, after which
        # should_keep_alive() always answers False.
        self.keep_alive = self.parser.should_keep_alive()

    def on_message_complete(self) -> None:
        if self.done is not None and not self.done.done():
            self.done.set_result(None)


@dataclass
class Run:
    req: bytes
    validate: Callable[[bytes], None]
    stream: bool
    marker: bytes
    host: str
    port: int
    deadline: float
    warm_until: float
    max_requests: int
    timeout: float
    started: int = 0
    completed: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    error_samples: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    ttfc: list[float] = field(default_factory=list)
    window_first: float = 0.0
    window_last: float = 0.0
    cpu_at_window: float = 0.0

    def error(self, kind: str, detail: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1
        if len(self.error_samples) < MAX_ERROR_SAMPLES:
            self.error_samples.append(f"[{kind}] {detail}")


async def worker(run: Run) -> None:
    loop = asyncio.get_running_loop()
    conn: Conn | None = None
    while True:
        if time.perf_counter() >= run.deadline or run.started >= run.max_requests:
            break
        if conn is None or conn.closed:
            try:
                _, conn = await loop.create_connection(lambda: Conn(run.marker), run.host, run.port)
            except OSError as e:
                run.error("connect", str(e))
                await asyncio.sleep(0.05)
                continue
        run.started += 1
        fut: asyncio.Future[None] = loop.create_future()
        conn.reset(fut)
        assert conn.transport is not None
        t0 = time.perf_counter()
        conn.transport.write(run.req)
        watchdog = loop.call_later(run.timeout, conn.transport.abort)
        try:
            await fut
        except ConnectionError as e:
            run.error("transport", str(e))
            conn = None
            # Back off so that a peer that resets every connection cannot turn this into a busy loop.
            await asyncio.sleep(0.01)
            continue
        finally:
            watchdog.cancel()
        t1 = time.perf_counter()
        status = conn.parser.get_status_code()
        body = b"".join(conn.parts)
        first_t = conn.first_t
        ok = True
        if status != 200:
            run.error(f"http {status}", body[:500].decode(errors="replace"))
            ok = False
        elif run.stream and not conn.ctype.startswith(b"text/event-stream"):
            run.error("content-type", f"{conn.ctype!r}: {body[:300]!r}")
            ok = False
        else:
            try:
                run.validate(body)
            except Invalid as e:
                run.error("validation", str(e))
                ok = False
            except Exception as e:  # a validator crash is a malformed response too
                run.error("validation", f"{type(e).__name__}: {e}; body {body[:300]!r}")
                ok = False
        if not conn.keep_alive:
            assert conn.transport is not None
            conn.transport.close()
            conn = None
        if t0 < run.warm_until:
            continue
        if not run.window_first:
            run.window_first = t0
            run.cpu_at_window = time.process_time()
        run.window_last = t1
        run.completed += 1
        if ok:
            run.latencies.append(t1 - t0)
            if run.stream and first_t:
                run.ttfc.append(first_t - t0)
    if conn is not None and conn.transport is not None:
        conn.transport.close()


def pct(xs: list[float], p: float) -> float | None:
    if not xs:
        return None
    s = sorted(xs)
    k = min(len(s) - 1, max(0, round(p / 100 * (len(s) - 1))))
    return round(s[k] * 1000, 3)


async def run_load(args: argparse.Namespace) -> dict[str, Any]:
    u = urlsplit(args.url)
    host, port = u.hostname or "127.0.0.1", u.port or 80
    if host not in ALLOWED_HOSTS:
        raise SystemExit("loadgen only targets loopback")
    model = model_for(args.body, args.chunks)
    ans = expected_answer(model, args.chunks)
    base = u.path.rstrip("/")
    if args.target == "anthropic":
        body = orjson.dumps(anthropic_body(args.body, args.stream, model))
        req = http_request(
            host,
            port,
            base + "/v1/messages",
            body,
            {"x-api-key": "anything", "anthropic-version": "2023-06-01"},
        )
        marker = b"content_block_delta"
    else:
        body = orjson.dumps(openai_body(args.body, args.stream, model))
        path = base + "/chat/completions" if base.endswith("/v1") else base + "/v1/chat/completions"
        req = http_request(host, port, path, body, {"authorization": "Bearer bench-key"})
        marker = b'"content":"w'
    validator = Validator(args.target, args.stream, ans, model)
    now = time.perf_counter()
    run = Run(
        req=req,
        validate=validator,
        stream=args.stream,
        marker=marker,
        host=host,
        port=port,
        deadline=now + args.warmup + args.duration,
        warm_until=now + args.warmup,
        max_requests=args.max_requests,
        timeout=args.timeout,
    )
    cpu0 = time.process_time()
    await asyncio.gather(*(worker(run) for _ in range(args.concurrency)))
    cpu1 = time.process_time()
    window = run.window_last - run.window_first if run.window_first else 0.0
    n_err = sum(run.errors.values())
    return {
        "target": args.target,
        "body": args.body,
        "stream": args.stream,
        "concurrency": args.concurrency,
        "model": model,
        "request_bytes": len(body),
        "requests": run.completed,
        "total_started": run.started,
        "errors": n_err,
        "error_kinds": run.errors,
        "error_samples": run.error_samples,
        "window_s": round(window, 4),
        "rps": round(run.completed / window, 2) if window > 0 else 0.0,
        "latency_ms": {p: pct(run.latencies, q) for p, q in (("p50", 50), ("p90", 90), ("p99", 99))},
        "ttfc_ms": {p: pct(run.ttfc, q) for p, q in (("p50", 50), ("p90", 90), ("p99", 99))},
        "loadgen_cpu_s_window": round(cpu1 - run.cpu_at_window, 4) if run.window_first else None,
        "loadgen_cpu_s_total": round(cpu1 - cpu0, 4),
        "validated_full": validator.full,
        "validated_fast": validator.fast,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", required=True, help="gateway base (http://127.0.0.1:P) or mock base (.../v1)")
    ap.add_argument("--target", choices=("anthropic", "openai"), required=True)
    ap.add_argument("--body", choices=("small", "cc", "tool"), default="small")
    ap.add_argument("--stream", action="store_true")
    ap.add_argument("--chunks", type=int, default=DEFAULT_CHUNKS)
    ap.add_argument("--concurrency", type=int, default=1)
    ap.add_argument("--duration", type=float, default=5.0, help="measured seconds (after warm-up)")
    ap.add_argument("--warmup", type=float, default=0.5)
    ap.add_argument("--max-requests", type=int, default=200_000)
    ap.add_argument("--timeout", type=float, default=30.0, help="per request")
    args = ap.parse_args(argv)
    args.duration = min(args.duration, 600.0)
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        result = runner.run(run_load(args))
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
