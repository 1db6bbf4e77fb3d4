"""HTTP handlers. The request's path through the gateway, in order:

    read body → schemas (validate) → routing (model → backend) → translate.request (pure)
    → upstream (HTTP) → translate.response / translate.stream (pure) → JSON or SSE out

Only this module and server.py know about the web framework.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from anthropic_gateway import __version__, dispatch, ids
from anthropic_gateway.auth import Authenticator
from anthropic_gateway.errors import (
    APIError,
    GatewayError,
    InvalidRequestError,
    NotFoundError,
    RequestTooLargeError,
    shown,
)
from anthropic_gateway.routing import Route, Router
from anthropic_gateway.schemas import CountTokensRequest, decode_count_tokens_request, decode_messages_request
from anthropic_gateway.settings import Settings
from anthropic_gateway.streaming import SSEResponse
from anthropic_gateway.tokens import count_request_tokens, is_ready, warm_up
from anthropic_gateway.translate.response import to_anthropic_message
from anthropic_gateway.translate.stream import StreamTranslator
from anthropic_gateway.upstream import UpstreamClient, connection_error, read_capped

log = logging.getLogger(__name__)

COST_HEADER = "anthropic-gateway-estimated-input-cost-usd"


@dataclass(slots=True)
class Gateway:
    """Everything a handler needs, built once at start-up."""

    settings: Settings
    router: Router
    auth: Authenticator
    upstream: UpstreamClient

    def secrets(self) -> list[str]:
        """Every upstream key the gateway holds: none may ever reach a client or a log."""
        return [b.key.get_secret_value() for b in self.router.backends.values() if b.key is not None]



class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return content if isinstance(content, bytes) else orjson.dumps(content)


def gateway_of(request: Request) -> Gateway:
    gw: Gateway = request.app.state.gateway
    return gw


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refusing one over `limit` before reading it all."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise RequestTooLargeError(f"Request body is {length} bytes; the limit is {limit} bytes")
    if length is not None:
        # The usual case: the server hands over the whole body in one message.
        message = await request.receive()
        body: bytes = message.get("body", b"")
        if not message.get("more_body", False):
            return body
        parts = [body]
        size = len(body)
        while message.get("more_body", False):
            message = await request.receive()
            part = message.get("body", b"")
            size += len(part)
            if size > limit:
                raise RequestTooLargeError(f"Request body exceeds the limit of {limit} bytes")
            parts.append(part)
        return b"".join(parts)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestTooLargeError(f"Request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


# Counting is ~0.2 ms for Claude Code's 78 KB body, but grows with the text (a 2.6 MB prompt takes
# ~0.3 s): past this size it runs in a thread so other streams and their pings keep flowing.
COUNT_IN_THREAD_BYTES = 256 * 1024


async def _count(req: CountTokensRequest, model: str, size: int) -> int:
    if not is_ready(model):
        # The first count may have to build the tokenizer (~0.3 s): off the event loop.
        await asyncio.to_thread(warm_up, model)
    if size > COUNT_IN_THREAD_BYTES:
        return await asyncio.to_thread(count_request_tokens, req, model)
    return count_request_tokens(req, model)


async def root(request: Request) -> Response:
    body = {
        "name": "anthropic-gateway",
        "version": __version__,
        "endpoints": ["POST /v1/messages", "POST /v1/messages/stream", "POST /v1/messages/count_tokens",
                      "GET /v1/models", "GET /v1/models/{model_id}", "GET /openapi.json"],
    }  # fmt: skip
    return JSONResponse(body)


async def messages(request: Request) -> Response:
    return await _messages(request, force_stream=False)


async def messages_stream(request: Request) -> Response:
    return await _messages(request, force_stream=True)


async def _messages(request: Request, *, force_stream: bool) -> Response:
    gw = gateway_of(request)
    client = gw.auth.check(request.headers)
    body = await read_body(request, gw.settings.max_body_bytes)
    req = decode_messages_request(body)
    stream = force_stream or bool(req.stream)
    route = gw.router.resolve(req.model)
    # The estimate fills message_start (the real figure follows in message_delta), sizes the
    # context-window clamp, and numbers context-overflow errors whose upstream text has none.
    estimate = await _count(req, route.upstream_model, len(body))
    answer = await dispatch.send(
        req, route, stream=stream, estimate=estimate, client=client,
        router=gw.router, upstream=gw.upstream, settings=gw.settings,
    )  # fmt: skip
    upstream = answer.response
    if stream:
        translator = StreamTranslator(answer.ctx, ids.message_id(), estimate, secret=answer.key)
        sse = SSEResponse(upstream, translator, gw.settings.ping_interval, request.state.request_id, answer.release_slot)
        return sse  # type: ignore[return-value]  # a raw ASGI response
    raw = await _read_completion(request, answer)
    try:
        completion = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise APIError("The upstream returned a body that is not JSON", status=502) from None
    try:
        message = to_anthropic_message(completion, answer.ctx, ids.message_id(), answer.info)
    except (AttributeError, TypeError, KeyError, ValueError):  # fields of the wrong JSON type
        log.warning("malformed upstream completion (request %s)", request.state.request_id, exc_info=True)
        raise APIError("The upstream returned a malformed completion", status=502) from None
    return JSONResponse(message)


MAX_COMPLETION_BYTES = 64 * 1024 * 1024


async def _read_completion(request: Request, answer: dispatch.Answer) -> bytes:
    """The non-streamed answer; a client that disconnects meanwhile closes the upstream call at once
    (it stops generating, and billing, on providers that support cancellation)."""
    upstream = answer.response

    async def watch() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass
        upstream.close()

    watcher = asyncio.create_task(watch())
    try:
        raw, complete = await read_capped(upstream, MAX_COMPLETION_BYTES)
        if not complete:
            raise APIError("The upstream answer exceeds 64 MB", status=502)
    except GatewayError:
        upstream.close()
        raise
    except Exception as err:
        upstream.close()
        raise connection_error(err) from None
    finally:
        watcher.cancel()
        answer.release_slot()
    upstream.release()
    return raw


async def count_tokens(request: Request) -> Response:
    gw = gateway_of(request)
    gw.auth.check(request.headers)
    body = await read_body(request, gw.settings.max_body_bytes)
    req = decode_count_tokens_request(body)
    route = gw.router.resolve(req.model)
    tokens = await _count(req, route.upstream_model, len(body))
    headers = {}
    price = gw.settings.input_prices.get(route.upstream_model)
    if price is not None:
        headers[COST_HEADER] = f"{tokens * price / 1_000_000:.6f}"
    return JSONResponse({"input_tokens": tokens}, headers=headers)


# --- models ------------------------------------------------------------------------------------

_EPOCH = "1970-01-01T00:00:00Z"


def _model_info(alias: str, route: Route) -> dict[str, Any]:
    cfg = route.config
    info: dict[str, Any] = {
        "type": "model",
        "id": alias,
        "display_name": (cfg.display_name if cfg and cfg.display_name else f"{alias} ({route.upstream_model})"),
        "created_at": _EPOCH,
    }
    if cfg is not None and cfg.context_window is not None:
        info["max_input_tokens"] = cfg.context_window
    if cfg is not None and cfg.max_output_tokens is not None:
        info["max_tokens"] = cfg.max_output_tokens
    return info


async def list_models(request: Request) -> Response:
    gw = gateway_of(request)
    gw.auth.check(request.headers)
    q = request.query_params
    try:
        limit = int(q.get("limit", "20"))
    except ValueError:
        raise InvalidRequestError("limit: Input should be a valid integer") from None
    if not 1 <= limit <= 1000:
        raise InvalidRequestError("limit: Input should be between 1 and 1000")
    items = [_model_info(alias, route) for alias, route in gw.router.aliases()]
    ids_ = [m["id"] for m in items]
    after, before = q.get("after_id"), q.get("before_id")
    if after is not None:
        items = items[ids_.index(after) + 1:] if after in ids_ else []
        page = items[:limit]
        has_more = len(items) > limit
    elif before is not None:
        items = items[: ids_.index(before)] if before in ids_ else []
        page = items[-limit:]
        has_more = len(items) > limit
    else:
        page = items[:limit]
        has_more = len(items) > limit
    return JSONResponse({
        "data": page, "has_more": has_more,
        "first_id": page[0]["id"] if page else None, "last_id": page[-1]["id"] if page else None,
    })  # fmt: skip


async def get_model(request: Request) -> Response:
    gw = gateway_of(request)
    gw.auth.check(request.headers)
    model_id = request.path_params["model_id"]
    try:
        route = gw.router.resolve(model_id)
    except NotFoundError:
        raise NotFoundError(f"model: '{shown(model_id)}' not found; this gateway serves {gw.router.describe_aliases()}") from None
    return JSONResponse(_model_info(model_id, route))
