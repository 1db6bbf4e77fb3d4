"""A scriptable fake OpenAI-compatible upstream, served over real HTTP on 127.0.0.1.

The server runs an aiohttp app on its own event loop in a background thread, so a gateway
subprocess can call it while synchronous SDK tests block on their own requests.

Usage::

    upstream.expect(
        Reply.stream([text_chunk("Hel"), text_chunk("lo"), finish_chunk("stop"), usage_chunk(10, 2)]),
        Reply.json(error_body(429, "slow down"), status=429, headers={"Retry-After": "1"}),
    )
    ...                                   # the gateway calls POST /v1/chat/completions twice
    upstream.requests[0].body["model"]    # every request is recorded: method, path, headers, JSON body
    upstream.streams[0].disconnected.wait(5)   # did the gateway close a streamed response early?

Replies are served in the order queued, whatever the path. ``Reply.auto(chunks)`` answers with
SSE when the request body says ``"stream": true`` and with the equivalent aggregated
``chat.completion`` JSON otherwise, so one script drives the streaming and the non-streaming path.
``upstream.always(reply)`` sets a reply used whenever the queue is empty (for gateways that
retry). With an empty queue and no ``always`` reply the fake answers 500 with a body that says so.
``upstream.on_path("/v1/models", reply)`` answers that one path (query string aside) with ``reply``
every time, outside the queue; those requests are recorded in ``upstream.path_requests``, not in
``requests`` (a gateway's background model-catalogue fetch then leaves the chat script alone).

Stream items: a ``dict`` is sent as ``data: {json}\\n\\n``; ``str``/``bytes`` are written as-is
(comments, split lines, split UTF-8, malformed JSON); ``Pause(seconds)`` sleeps. Options: ``done``
(send ``data: [DONE]``), ``delay`` (sleep before every item), ``drop`` (abort the TCP connection
after the items instead of ending the response), ``hold`` (keep the response open after the
items until the client goes away; bounded by ``hold_timeout``), ``headers_delay`` (wait that long
before the response headers, noting a client that leaves meanwhile).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from aiohttp import web

JSON: TypeAlias = Any
StreamItem: TypeAlias = "dict[str, Any] | str | bytes | Pause"

_CHUNK_ID = "chatcmpl-fake0001"
_UPSTREAM_MODEL = "fake/upstream-model"


# ----------------------------------------------------------------------------------------------
# Chunk and body builders
# ----------------------------------------------------------------------------------------------


def chunk(delta: dict[str, Any], finish_reason: str | None = None, **extra: Any) -> dict[str, Any]:
    """One ``chat.completion.chunk`` with a single choice."""
    body: dict[str, Any] = {
        "id": _CHUNK_ID,
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": _UPSTREAM_MODEL,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }
    body.update(extra)
    return body


def text_chunk(text: str) -> dict[str, Any]:
    return chunk({"content": text})


def reasoning_chunk(text: str | None = None, details: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A reasoning delta: ``reasoning`` string and/or ``reasoning_details`` entries."""
    delta: dict[str, Any] = {}
    if text is not None:
        delta["reasoning"] = text
    if details is not None:
        delta["reasoning_details"] = details
    return chunk(delta)


def tool_call_chunk(
    index: int, id: str | None = None, name: str | None = None, arguments: str | None = None
) -> dict[str, Any]:
    call: dict[str, Any] = {"index": index}
    if id is not None:
        call["id"] = id
        call["type"] = "function"
    function: dict[str, Any] = {}
    if name is not None:
        function["name"] = name
    if arguments is not None:
        function["arguments"] = arguments
    if function:
        call["function"] = function
    return chunk({"tool_calls": [call]})


def finish_chunk(reason: str) -> dict[str, Any]:
    return chunk({}, finish_reason=reason)


def usage(prompt: int, completion: int, cached: int = 0, cache_write: int = 0) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached, "cache_write_tokens": cache_write},
    }


def usage_chunk(prompt: int, completion: int, cached: int = 0, cache_write: int = 0) -> dict[str, Any]:
    """The trailing usage-only chunk (``choices: []``)."""
    return {
        "id": _CHUNK_ID,
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": _UPSTREAM_MODEL,
        "choices": [],
        "usage": usage(prompt, completion, cached, cache_write),
    }


def error_body(code: int, message: str, error_type: str | None = None, **metadata: Any) -> dict[str, Any]:
    """An OpenRouter-style error object, as sent in a non-2xx body."""
    meta: dict[str, Any] = dict(metadata)
    if error_type is not None:
        meta["error_type"] = error_type
    err: dict[str, Any] = {"code": code, "message": message}
    if meta:
        err["metadata"] = meta
    return {"error": err, "user_id": None}


def error_chunk(code: int, message: str, error_type: str | None = None) -> dict[str, Any]:
    """An OpenRouter mid-stream error: top-level ``error`` plus ``finish_reason: "error"``."""
    body = chunk({"content": ""}, finish_reason="error")
    body["error"] = error_body(code, message, error_type)["error"]
    return body


def completion(
    content: str | None = None,
    *,
    tool_calls: Sequence[dict[str, Any]] = (),
    reasoning: str | None = None,
    reasoning_details: list[dict[str, Any]] | None = None,
    finish_reason: str = "stop",
    usage_: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A non-streaming ``chat.completion`` body."""
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if reasoning is not None:
        message["reasoning"] = reasoning
    if reasoning_details is not None:
        message["reasoning_details"] = reasoning_details
    if tool_calls:
        message["tool_calls"] = list(tool_calls)
    body: dict[str, Any] = {
        "id": _CHUNK_ID,
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": _UPSTREAM_MODEL,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
    }
    if usage_ is not None:
        body["usage"] = usage_
    return body


def aggregate(chunks: Iterable[StreamItem]) -> dict[str, Any]:
    """Fold streamed chunks into the ``chat.completion`` a non-streaming call would return."""
    content: list[str] = []
    reasoning: list[str] = []
    details: list[dict[str, Any]] = []
    calls: dict[int, dict[str, Any]] = {}
    finish: str = "stop"
    usage_: dict[str, Any] | None = None
    for item in chunks:
        if not isinstance(item, dict):
            continue
        if item.get("usage") is not None:
            usage_ = item["usage"]
        for choice in item.get("choices", []):
            delta = choice.get("delta", {})
            content.append(delta.get("content") or "")
            reasoning.append(delta.get("reasoning") or "")
            details.extend(delta.get("reasoning_details") or [])
            for frag in delta.get("tool_calls") or []:
                call = calls.setdefault(
                    frag["index"], {"id": "", "type": "function", "function": {"name": "", "arguments": ""}}
                )
                call["id"] = frag.get("id") or call["id"]
                fn = frag.get("function") or {}
                call["function"]["name"] += fn.get("name") or ""
                call["function"]["arguments"] += fn.get("arguments") or ""
            if choice.get("finish_reason"):
                finish = choice["finish_reason"]
    return completion(
        "".join(content) or None,
        tool_calls=[calls[i] for i in sorted(calls)],
        reasoning="".join(reasoning) or None,
        reasoning_details=_merge_details(details) or None,
        finish_reason=finish,
        usage_=usage_,
    )


def _merge_details(details: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Consecutive ``reasoning.text`` entries with one index are one entry (text joined)."""
    merged: list[dict[str, Any]] = []
    for d in details:
        last = merged[-1] if merged else None
        if (
            last is not None
            and d.get("type") == "reasoning.text" == last.get("type")
            and d.get("index") == last.get("index")
        ):
            last["text"] = (last.get("text") or "") + (d.get("text") or "")
            if d.get("signature") and not last.get("signature"):
                last["signature"] = d["signature"]
        else:
            merged.append(dict(d))
    return merged


# ----------------------------------------------------------------------------------------------
# Replies
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pause:
    """A stream item that sleeps instead of writing."""

    seconds: float


@dataclass
class StreamHandle:
    """What happened to one streamed reply, readable from the test thread."""

    started: threading.Event = field(default_factory=threading.Event)
    finished: threading.Event = field(default_factory=threading.Event)
    disconnected: threading.Event = field(default_factory=threading.Event)


@dataclass(frozen=True)
class JsonReply:
    body: JSON
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)

    async def serve(self, request: web.Request, fake: FakeUpstream) -> web.StreamResponse:
        if isinstance(self.body, bytes):
            raw = self.body
        elif isinstance(self.body, str):
            raw = self.body.encode()
        else:
            raw = json.dumps(self.body).encode()
        headers = {"Content-Type": "application/json", **self.headers}
        return web.Response(body=raw, status=self.status, headers=headers)


@dataclass(frozen=True)
class StreamReply:
    items: tuple[StreamItem, ...]
    done: bool = True
    delay: float = 0.0
    drop: bool = False
    hold: bool = False
    hold_timeout: float = 30.0
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    headers_delay: float = 0.0  # seconds before the response headers (the gateway may leave meanwhile)

    async def serve(self, request: web.Request, fake: FakeUpstream) -> web.StreamResponse:
        handle = StreamHandle()
        fake._add_stream(handle)
        if self.headers_delay:
            await _wait_for_disconnect(request, handle, self.headers_delay)
            if handle.disconnected.is_set():
                return web.Response(status=499)
        resp = web.StreamResponse(
            status=self.status, headers={"Content-Type": "text/event-stream", **self.headers}
        )
        try:
            await resp.prepare(request)
            handle.started.set()
            for item in self.items:
                if self.delay:
                    await asyncio.sleep(self.delay)
                if isinstance(item, Pause):
                    await asyncio.sleep(item.seconds)
                    continue
                await resp.write(_encode(item))
            if self.done:
                await resp.write(b"data: [DONE]\n\n")
            if self.hold:
                await _wait_for_disconnect(request, handle, self.hold_timeout)
                return resp
            if self.drop:
                transport = request.transport
                if transport is not None:
                    transport.abort()
                handle.finished.set()
                return resp
            await resp.write_eof()
            handle.finished.set()
        except (ConnectionError, RuntimeError):
            # aiohttp raises ClientConnectionResetError (a ConnectionResetError) or a
            # RuntimeError when the peer has gone away.
            handle.disconnected.set()
        return resp


@dataclass(frozen=True)
class AutoReply:
    """SSE for streaming requests, the aggregated JSON completion otherwise."""

    items: tuple[StreamItem, ...]
    delay: float = 0.0

    def resolve(self, body: JSON) -> JsonReply | StreamReply:
        if isinstance(body, dict) and body.get("stream") is True:
            return StreamReply(self.items, delay=self.delay)
        return JsonReply(aggregate(self.items))


@dataclass(frozen=True)
class DynamicReply:
    """A reply computed from the recorded request (for concurrent requests)."""

    fn: Callable[[RecordedRequest], JsonReply | StreamReply | AutoReply]


AnyReply: TypeAlias = "JsonReply | StreamReply | AutoReply | DynamicReply"


class Reply:
    """Constructors for queued replies."""

    @staticmethod
    def json(body: JSON, status: int = 200, headers: dict[str, str] | None = None) -> JsonReply:
        return JsonReply(body, status, dict(headers or {}))

    @staticmethod
    def stream(
        items: Iterable[StreamItem],
        *,
        done: bool = True,
        delay: float = 0.0,
        drop: bool = False,
        hold: bool = False,
        hold_timeout: float = 30.0,
        status: int = 200,
        headers: dict[str, str] | None = None,
        headers_delay: float = 0.0,
    ) -> StreamReply:
        return StreamReply(tuple(items), done, delay, drop, hold, hold_timeout, status, dict(headers or {}),
                           headers_delay)  # fmt: skip

    @staticmethod
    def auto(items: Iterable[StreamItem], *, delay: float = 0.0) -> AutoReply:
        return AutoReply(tuple(items), delay)

    @staticmethod
    def dynamic(fn: Callable[[RecordedRequest], JsonReply | StreamReply | AutoReply]) -> DynamicReply:
        return DynamicReply(fn)


def _encode(item: dict[str, Any] | str | bytes) -> bytes:
    if isinstance(item, bytes):
        return item
    if isinstance(item, str):
        return item.encode()
    return b"data: " + json.dumps(item).encode() + b"\n\n"


async def _wait_for_disconnect(request: web.Request, handle: StreamHandle, timeout: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        transport = request.transport
        if transport is None or transport.is_closing():
            handle.disconnected.set()
            return
        await asyncio.sleep(0.01)


# ----------------------------------------------------------------------------------------------
# The server
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str  # path and query string, e.g. "/v1/chat/completions"
    headers: dict[str, str]  # lower-cased names
    body: JSON  # parsed JSON, or None when the body is empty or not JSON
    raw: bytes


class FakeUpstream:
    """The fake server. Start with :meth:`start`, stop with :meth:`stop`."""

    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self.streams: list[StreamHandle] = []
        self._queue: deque[AnyReply] = deque()
        self._fallback: AnyReply | None = None
        self._paths: dict[str, AnyReply] = {}
        self.path_requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self.port = 0

    # -- test API ------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def expect(self, *replies: AnyReply) -> None:
        with self._lock:
            self._queue.extend(replies)

    def always(self, reply: AnyReply | None) -> None:
        with self._lock:
            self._fallback = reply

    def on_path(self, path: str, reply: AnyReply | None) -> None:
        """Answer every request for ``path`` with ``reply`` (None: back to the queue)."""
        with self._lock:
            if reply is None:
                self._paths.pop(path, None)
            else:
                self._paths[path] = reply

    def reset(self) -> None:
        with self._lock:
            self._queue.clear()
            self._fallback = None
            self._paths.clear()
            self.path_requests.clear()
            self.requests.clear()
            self.streams.clear()

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._queue)

    @property
    def bodies(self) -> list[JSON]:
        with self._lock:
            return [r.body for r in self.requests]

    @property
    def last_body(self) -> dict[str, Any]:
        with self._lock:
            assert self.requests, "the fake upstream received no request"
            body = self.requests[-1].body
        assert isinstance(body, dict), f"upstream request body is not a JSON object: {body!r}"
        return body

    def wait_for_requests(self, n: int, timeout: float = 5.0) -> bool:
        done = threading.Event()
        for _ in range(int(timeout / 0.01)):
            with self._lock:
                if len(self.requests) >= n:
                    return True
            done.wait(0.01)
        return False

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self._thread = threading.Thread(target=self._run, args=(sock,), name="fake-upstream", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError("fake upstream did not start")
        if self._startup_error is not None:
            raise RuntimeError("fake upstream failed to start") from self._startup_error

    def stop(self, timeout: float = 10.0) -> None:
        loop = self._loop
        if loop is None or self._thread is None:
            return
        if self._runner is not None:
            fut = asyncio.run_coroutine_threadsafe(self._runner.cleanup(), loop)
            with contextlib.suppress(Exception):
                fut.result(timeout)
        loop.call_soon_threadsafe(loop.stop)
        self._thread.join(timeout)

    def _run(self, sock: socket.socket) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._serve(sock))
        except BaseException as exc:  # reported to start()
            self._startup_error = exc
            self._ready.set()
            sock.close()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _serve(self, sock: socket.socket) -> None:
        app = web.Application(client_max_size=256 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.SockSite(self._runner, sock)
        await site.start()

    def _add_stream(self, handle: StreamHandle) -> None:
        with self._lock:
            self.streams.append(handle)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        body: JSON = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
        record = RecordedRequest(
            method=request.method,
            path=request.path_qs,
            headers={k.lower(): v for k, v in request.headers.items()},
            body=body,
            raw=raw,
        )
        with self._lock:
            reply = self._paths.get(request.path)
            if reply is not None:
                self.path_requests.append(record)
            else:
                self.requests.append(record)
                reply = self._queue.popleft() if self._queue else self._fallback
        if reply is None:
            message = f"fake upstream: no reply queued for {request.method} {request.path_qs}"
            return web.json_response({"error": {"code": 500, "message": message}}, status=500)
        if isinstance(reply, DynamicReply):
            reply = reply.fn(record)
        if isinstance(reply, AutoReply):
            reply = reply.resolve(body)
        return await reply.serve(request, self)
