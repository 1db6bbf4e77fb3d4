"""Builders and checkers for the translation unit tests.

- chunk builders: one upstream chat-completion chunk each (text, reasoning, reasoning_details,
  tool-call fragment, finish, usage-only, error);
- ``sse(chunks)``: the upstream's wire bytes for those chunks (``data:`` lines and ``[DONE]``);
- ``completion_of(chunks)``: the same answer as one non-streamed completion, so every case runs
  through both response paths;
- ``parse_events``: the gateway's SSE output → (event name, data) pairs;
- ``check_well_formed``: the Anthropic stream grammar, strictly;
- ``reduce_events``: the events → the final Message, like the SDK accumulator;
- ``sdk_accumulate``: the official SDK's ``accumulate_event`` over the same events.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from typing import Any, Literal

import msgspec
import orjson
from anthropic.lib.streaming._messages import accumulate_event

from anthropic_gateway.routing import Route, Router
from anthropic_gateway.schemas import MessagesRequest, decode_messages_request
from anthropic_gateway.settings import load_settings
from anthropic_gateway.translate.request import RequestContext, to_openai_request
from anthropic_gateway.translate.response import to_anthropic_message
from anthropic_gateway.translate.stream import StreamTranslator

Chunk = dict[str, Any]
Event = tuple[str, dict[str, Any]]
Kind = Literal["openrouter", "openai", "openai-compatible"]

CLAUDE_FORMAT = "anthropic-claude-v1"
TOOL_ID_RE = re.compile(r"^[a-zA-Z0-9_-]+$")
TOOL_NAME_RE = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
MESSAGE_ID = "msg_0123456789abcdefghijklmn"
OPUS, SONNET, HAIKU = "anthropic/claude-opus-4.5", "test/sonnet-model", "test/haiku-model"
STOP_REASONS = {"end_turn", "max_tokens", "stop_sequence", "tool_use", "pause_turn", "refusal",
                "model_context_window_exceeded"}  # fmt: skip


# --- upstream chunks -----------------------------------------------------------------------------


def _delta(delta: dict[str, Any]) -> Chunk:
    return {"id": "gen-1", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta}]}


def text(s: str) -> Chunk:
    return _delta({"role": "assistant", "content": s})


def refusal(s: str) -> Chunk:
    return _delta({"role": "assistant", "content": None, "refusal": s})


def reasoning(s: str, field: str = "reasoning") -> Chunk:
    return _delta({"role": "assistant", "content": "", field: s})


def claude_detail(s: str | None = None, signature: str | None = None, index: int = 0) -> dict[str, Any]:
    d: dict[str, Any] = {"type": "reasoning.text", "format": CLAUDE_FORMAT, "index": index}
    if s is not None:
        d["text"] = s
    if signature is not None:
        d["signature"] = signature
    return d


def claude_reasoning(s: str | None = None, signature: str | None = None, index: int = 0) -> Chunk:
    """OpenRouter's reasoning_details fragment for a Claude model (text, or a signature-only delta)."""
    return _delta({"role": "assistant", "content": "", "reasoning": s,
                   "reasoning_details": [claude_detail(s, signature, index)]})  # fmt: skip


def details(*items: dict[str, Any]) -> Chunk:
    """reasoning_details of any format (OpenAI summary/encrypted, Gemini, ...)."""
    summary = "".join(str(d.get("summary") or d.get("text") or "") for d in items)
    return _delta({"role": "assistant", "content": "", "reasoning": summary or None, "reasoning_details": list(items)})


def tool(index: int, id: str | None = None, name: str | None = None, args: str | None = None) -> Chunk:
    fn: dict[str, Any] = {}
    if name is not None:
        fn["name"] = name
    if args is not None:
        fn["arguments"] = args
    frag: dict[str, Any] = {"index": index, "type": "function", "function": fn}
    if id is not None:
        frag["id"] = id
    return _delta({"role": "assistant", "tool_calls": [frag]})


def finish(reason: str | None, native: str | None = None) -> Chunk:
    choice: dict[str, Any] = {"index": 0, "delta": {}, "finish_reason": reason}
    if native is not None:
        choice["native_finish_reason"] = native
    return {"id": "gen-1", "object": "chat.completion.chunk", "choices": [choice]}


def usage(prompt: int, completion: int, cached: int = 0, written: int = 0) -> Chunk:
    """The trailing usage-only chunk: empty ``choices``."""
    u: dict[str, Any] = {"prompt_tokens": prompt, "completion_tokens": completion,
                         "total_tokens": prompt + completion}  # fmt: skip
    if cached or written:
        u["prompt_tokens_details"] = {"cached_tokens": cached, "cache_write_tokens": written}
    return {"id": "gen-1", "object": "chat.completion.chunk", "choices": [], "usage": u}


def error_chunk(message: str, code: int = 502, error_type: str | None = None) -> Chunk:
    err: dict[str, Any] = {"code": code, "message": message}
    if error_type is not None:
        err["metadata"] = {"error_type": error_type}
    return {"id": "gen-1", "object": "chat.completion.chunk", "error": err,
            "choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": "error"}]}  # fmt: skip


def sse(chunks: Iterable[Chunk | bytes], done: bool = True) -> bytes:
    """Upstream wire bytes. A ``bytes`` item is inserted verbatim (comments, broken JSON ...)."""
    out = b"".join(c if isinstance(c, bytes) else b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks)
    return out + (b"data: [DONE]\n\n" if done else b"")


def completion_of(chunks: Iterable[Chunk]) -> dict[str, Any]:
    """The non-streamed completion an upstream gives for the same answer as ``chunks``."""
    content: list[str] = []
    refusals: list[str] = []
    reasoning_text: list[str] = []
    reasoning_details: list[dict[str, Any]] = []
    calls: dict[int, dict[str, Any]] = {}
    finish_reason: str | None = None
    native: str | None = None
    usage_: dict[str, Any] | None = None
    for chunk in chunks:
        if chunk.get("usage"):
            usage_ = chunk["usage"]
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            if delta.get("content"):
                content.append(delta["content"])
            if delta.get("refusal"):
                refusals.append(delta["refusal"])
            if delta.get("reasoning"):
                reasoning_text.append(delta["reasoning"])
            if delta.get("reasoning_content"):
                reasoning_text.append(delta["reasoning_content"])
            reasoning_details.extend(delta.get("reasoning_details") or ())
            for frag in delta.get("tool_calls") or ():
                call = calls.setdefault(frag["index"], {"type": "function", "function": {"name": "", "arguments": ""}})
                if frag.get("id"):
                    call["id"] = frag["id"]
                fn = frag.get("function") or {}
                call["function"]["name"] += fn.get("name") or ""
                call["function"]["arguments"] += fn.get("arguments") or ""
            if choice.get("finish_reason"):
                finish_reason = choice["finish_reason"]
                native = choice.get("native_finish_reason")
    message: dict[str, Any] = {"role": "assistant", "content": "".join(content) or None}
    if refusals:
        message["refusal"] = "".join(refusals)
    if reasoning_text:
        message["reasoning"] = "".join(reasoning_text)
    if reasoning_details:
        message["reasoning_details"] = reasoning_details
    if calls:
        message["tool_calls"] = [calls[i] for i in sorted(calls)]
    choice_out: dict[str, Any] = {"index": 0, "message": message, "finish_reason": finish_reason}
    if native is not None:
        choice_out["native_finish_reason"] = native
    out: dict[str, Any] = {"id": "gen-1", "object": "chat.completion", "choices": [choice_out]}
    if usage_ is not None:
        out["usage"] = usage_
    return out


# --- requests and routes -------------------------------------------------------------------------


def router(kind: Kind = "openrouter", **env: str) -> Router:
    environ = {
        "ANTHROPIC_GATEWAY_BACKEND_KIND": kind,
        "ANTHROPIC_GATEWAY_OPUS_MODEL": OPUS,
        "ANTHROPIC_GATEWAY_SONNET_MODEL": SONNET,
        "ANTHROPIC_GATEWAY_HAIKU_MODEL": HAIKU,
    }
    environ.update({"ANTHROPIC_GATEWAY_" + k.upper(): v for k, v in env.items()})
    return Router(load_settings(environ=environ))


def route(model: str = "claude-sonnet-5", kind: Kind = "openrouter", **env: str) -> Route:
    return router(kind, **env).resolve(model)


def request(**fields: Any) -> MessagesRequest:
    """A request decoded the way the server decodes it (from JSON bytes)."""
    body: dict[str, Any] = {"model": "claude-sonnet-5", "max_tokens": 1024,
                            "messages": [{"role": "user", "content": "Hello"}]}  # fmt: skip
    body.update(fields)
    return decode_messages_request(msgspec.json.encode(body))  # msgspec: integers past 64 bits too


def upstream_body(
    model: str = "claude-sonnet-5", kind: Kind = "openrouter", stream: bool = False, env: dict[str, str] | None = None,
    **fields: Any,
) -> tuple[dict[str, Any], RequestContext]:
    """The upstream body as plain JSON (as the upstream receives it) and the request context."""
    req = request(model=model, **fields)
    body, ctx = to_openai_request(req, route(model, kind, **(env or {})), stream=stream)
    return orjson.loads(msgspec.json.encode(body)), ctx


def ctx_for(model: str = "claude-sonnet-5", kind: Kind = "openrouter", **fields: Any) -> RequestContext:
    return upstream_body(model, kind, **fields)[1]


# --- the gateway's output --------------------------------------------------------------------------


def parse_events(raw: bytes) -> list[Event]:
    """Gateway SSE bytes → (event name, data). Each frame is exactly one ``event:`` and one ``data:``."""
    assert b"[DONE]" not in raw, "the gateway forwarded [DONE]"
    text_ = raw.decode("utf-8")
    assert text_ == "" or text_.endswith("\n\n"), f"output does not end at a frame boundary: {text_[-80:]!r}"
    events: list[Event] = []
    for frame in text_.split("\n\n"):
        if not frame:
            continue
        lines = frame.split("\n")
        assert len(lines) == 2 and lines[0].startswith("event: ") and lines[1].startswith("data: "), (
            f"malformed frame {frame!r}"
        )
        data = json.loads(lines[1][len("data: "):])
        assert isinstance(data, dict)
        events.append((lines[0][len("event: "):], data))
    return events


_DELTAS_FOR = {
    "text": {"text_delta", "citations_delta"},
    "thinking": {"thinking_delta", "signature_delta"},
    "tool_use": {"input_json_delta"},
    "redacted_thinking": set(),
}


def check_well_formed(events: Sequence[Event]) -> None:
    """The Anthropic stream grammar: message_start first; blocks 0..n started, given deltas matching
    their type and stopped exactly once, at most one open; event name == data.type; then exactly one
    message_delta and message_stop last - or one error event that ends the stream."""
    assert events, "no events"
    for name, data in events:
        assert name == data.get("type"), f"event {name!r} carries data.type {data.get('type')!r}"
    names = [n for n, _ in events]
    assert names[0] == "message_start", f"first event is {names[0]}"
    assert names.count("message_start") == 1
    start = events[0][1]["message"]
    assert start["content"] == [] and start["stop_reason"] is None and start["stop_sequence"] is None
    assert start["type"] == "message" and start["role"] == "assistant" and start["id"].startswith("msg_")
    assert isinstance(start["usage"]["input_tokens"], int) and isinstance(start["usage"]["output_tokens"], int)
    errors = [i for i, n in enumerate(names) if n == "error"]
    if errors:
        assert errors == [len(names) - 1], f"an error event must be the single last event: {names}"
        err = events[-1][1]["error"]
        assert isinstance(err["type"], str) and err["type"] and isinstance(err["message"], str) and err["message"]
        body = events[1:-1]
        assert "message_delta" not in names and "message_stop" not in names
    else:
        assert names[-2:] == ["message_delta", "message_stop"], f"stream must end with message_delta, message_stop: {names}"
        assert names.count("message_delta") == 1 and names.count("message_stop") == 1
        body = events[1:-2]
    open_index: int | None = None
    open_type = ""
    next_index = 0
    deltas: list[dict[str, Any]] = []
    for name, data in body:
        if name == "ping":
            continue
        if name == "content_block_start":
            assert open_index is None, f"block {data['index']} started while block {open_index} is open"
            assert data["index"] == next_index, f"block index {data['index']}, expected {next_index}"
            block = data["content_block"]
            open_index, open_type, deltas = data["index"], block["type"], []
            assert open_type in _DELTAS_FOR, f"unexpected block type {open_type}"
            if open_type == "text":
                assert block == {"type": "text", "text": ""}
            elif open_type == "thinking":
                assert block == {"type": "thinking", "thinking": "", "signature": ""}
            elif open_type == "tool_use":
                assert block["input"] == {} and TOOL_ID_RE.match(block["id"]), block
                assert isinstance(block["name"], str) and block["name"]
            next_index += 1
        elif name == "content_block_delta":
            assert open_index is not None and data["index"] == open_index, f"delta for closed block {data['index']}"
            assert data["delta"]["type"] in _DELTAS_FOR[open_type], f"{data['delta']['type']} in a {open_type} block"
            if deltas and deltas[-1]["type"] == "signature_delta":
                raise AssertionError("signature_delta must be the last delta of its thinking block")
            deltas.append(data["delta"])
        elif name == "content_block_stop":
            assert open_index is not None and data["index"] == open_index, f"stop for block {data['index']} not open"
            _check_block_deltas(open_type, deltas)
            open_index = None
        else:
            raise AssertionError(f"unexpected event {name} inside the message")
    if not errors:
        assert open_index is None, f"block {open_index} never stopped"
        md = events[-2][1]
        assert set(md["delta"]) >= {"stop_reason", "stop_sequence"}
        assert md["delta"]["stop_reason"] in STOP_REASONS
        seq = md["delta"]["stop_sequence"]
        assert (seq is not None) == (md["delta"]["stop_reason"] == "stop_sequence")
        assert isinstance(md["usage"]["output_tokens"], int)


def _check_block_deltas(block_type: str, deltas: list[dict[str, Any]]) -> None:
    if block_type == "text":
        assert "".join(d.get("text", "") for d in deltas), "empty text block"
    elif block_type == "thinking":
        sigs = [d for d in deltas if d["type"] == "signature_delta"]
        assert len(sigs) == 1 and sigs[0]["signature"], "a thinking block needs exactly one non-empty signature_delta"
    elif block_type == "tool_use":
        raw = "".join(d["partial_json"] for d in deltas)
        parsed = json.loads(raw or "{}")
        assert isinstance(parsed, dict), f"tool input is not an object: {raw!r}"


def reduce_events(events: Sequence[Event]) -> dict[str, Any]:
    """The final Message the events describe (message_start + blocks + message_delta)."""
    message: dict[str, Any] = json.loads(json.dumps(events[0][1]["message"]))
    bufs: dict[int, str] = {}
    for name, data in events[1:]:
        if name == "content_block_start":
            message["content"].append(dict(data["content_block"]))
        elif name == "content_block_delta":
            block = message["content"][data["index"]]
            delta = data["delta"]
            if delta["type"] == "text_delta":
                block["text"] += delta["text"]
            elif delta["type"] == "thinking_delta":
                block["thinking"] += delta["thinking"]
            elif delta["type"] == "signature_delta":
                block["signature"] = delta["signature"]
            elif delta["type"] == "input_json_delta":
                bufs[data["index"]] = bufs.get(data["index"], "") + delta["partial_json"]
        elif name == "content_block_stop":
            if data["index"] in bufs:
                message["content"][data["index"]]["input"] = json.loads(bufs[data["index"]] or "{}")
        elif name == "message_delta":
            message["stop_reason"] = data["delta"]["stop_reason"]
            message["stop_sequence"] = data["delta"]["stop_sequence"]
            for key, value in data["usage"].items():
                if value is not None:
                    message["usage"][key] = value
    return message


def sdk_accumulate(events: Sequence[Event]) -> dict[str, Any]:
    """The official SDK accumulator (``anthropic.lib.streaming._messages.accumulate_event``)."""
    snapshot: Any = None
    bufs: dict[int, bytes] = {}
    for name, data in events:
        if name in ("ping", "error"):
            continue
        snapshot = accumulate_event(event=data, current_snapshot=snapshot, json_bufs=bufs)  # type: ignore[arg-type]
    assert snapshot is not None
    dumped: dict[str, Any] = snapshot.model_dump(mode="json", exclude_none=False)
    return dumped


def comparable(message: dict[str, Any]) -> dict[str, Any]:
    """The fields both accumulators and both response paths must agree on."""
    blocks: list[dict[str, Any]] = []
    for b in message["content"]:
        keep = {"text": ("type", "text"), "thinking": ("type", "thinking", "signature"),
                "redacted_thinking": ("type", "data"), "tool_use": ("type", "id", "name", "input")}[b["type"]]  # fmt: skip
        blocks.append({k: b.get(k) for k in keep})
    u = message["usage"]
    return {
        "id": message["id"], "model": message["model"], "role": message["role"], "type": message["type"],
        "content": blocks, "stop_reason": message["stop_reason"], "stop_sequence": message["stop_sequence"],
        "usage": {k: u.get(k) for k in ("input_tokens", "output_tokens", "cache_creation_input_tokens",
                                       "cache_read_input_tokens")},
    }  # fmt: skip


# --- running the translators ---------------------------------------------------------------------

Split = Literal["whole", "bytes", "sevens"]
SPLITS: tuple[Split, ...] = ("whole", "bytes", "sevens")


def reads(data: bytes, split: Split) -> list[bytes]:
    if split == "whole":
        return [data]
    size = 1 if split == "bytes" else 7
    return [data[i:i + size] for i in range(0, len(data), size)]


def run_stream(
    wire: bytes, ctx: RequestContext, split: Split = "whole", input_estimate: int = 0
) -> tuple[bytes, list[Event]]:
    """Everything the gateway writes for one upstream stream: start, every read, finish."""
    t = StreamTranslator(ctx, MESSAGE_ID, input_estimate)
    out = [t.start()]
    for piece in reads(wire, split):
        out.append(t.feed(piece))
    out.append(t.finish())
    raw = b"".join(out)
    return raw, parse_events(raw)


def stream_message(chunks: Sequence[Chunk | bytes], ctx: RequestContext, split: Split = "whole",
                   done: bool = True) -> dict[str, Any]:
    """Run a stream, check the grammar, reduce it, and cross-check the SDK's accumulator."""
    _, events = run_stream(sse(chunks, done), ctx, split)
    check_well_formed(events)
    assert events[-1][0] != "error", f"unexpected error event: {events[-1][1]}"
    mine = reduce_events(events)
    assert comparable(sdk_accumulate(events)) == comparable(mine), "the SDK accumulator disagrees with the reducer"
    return mine


def nonstream_message(chunks: Sequence[Chunk], ctx: RequestContext) -> dict[str, Any]:
    return to_anthropic_message(completion_of(chunks), ctx, MESSAGE_ID)
