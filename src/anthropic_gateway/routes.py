"""HTTP handlers. The request's path through the gateway, in order:

    read body → schemas (validate) → routing (model → backend) → translate.request (pure)
    → upstream (HTTP) → translate.response / translate.stream (pure) → JSON or SSE out

Only this module and server.py know about the web framework.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import msgspec
import orjson
from starlette.requests import Request
from starlette.responses import Response

from anthropic_gateway import __version__, ids
from anthropic_gateway.auth import Authenticator
from anthropic_gateway.errors import GatewayError, RequestTooLargeError
from anthropic_gateway.routing import Router
from anthropic_gateway.schemas import decode_count_tokens_request, decode_messages_request
from anthropic_gateway.settings import Settings
from anthropic_gateway.streaming import SSEResponse
from anthropic_gateway.tokens import count_request_tokens
from anthropic_gateway.translate.request import to_openai_request
from anthropic_gateway.translate.response import to_anthropic_message
from anthropic_gateway.translate.stream import StreamTranslator
from anthropic_gateway.upstream import UpstreamClient, connection_error
from anthropic_gateway.upstream_errors import CallInfo, from_response

log = logging.getLogger(__name__)

COST_HEADER = "anthropic-gateway-estimated-input-cost-usd"
_encode = msgspec.json.Encoder().encode  # the upstream body holds msgspec.Raw tool schemas


@dataclass(slots=True)
class Gateway:
    """Everything a handler needs, built once at start-up."""

    settings: Settings
    router: Router
    auth: Authenticator
    upstream: UpstreamClient


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
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestTooLargeError(f"Request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def root(request: Request) -> Response:
    body = {
        "name": "anthropic-gateway",
        "version": __version__,
        "endpoints": ["POST /v1/messages", "POST /v1/messages/stream", "POST /v1/messages/count_tokens",
                      "GET /openapi.json"],
    }  # fmt: skip
    return JSONResponse(body)


async def messages(request: Request) -> Response:
    return await _messages(request, force_stream=False)


async def messages_stream(request: Request) -> Response:
    return await _messages(request, force_stream=True)


async def _messages(request: Request, *, force_stream: bool) -> Response:
    gw = gateway_of(request)
    rid: str = request.state.request_id
    key, client_key_used = gw.auth.upstream_key_for(request.headers)
    req = decode_messages_request(await read_body(request, gw.settings.max_body_bytes))
    stream = force_stream or bool(req.stream)
    route = gw.router.resolve(req.model)
    body, ctx = to_openai_request(req, route, stream=stream)
    # The estimate fills message_start (the real figure follows in message_delta) and sizes
    # context-overflow errors whose upstream text gives no numbers.
    estimate = count_request_tokens(req, route.upstream_model)
    info = CallInfo(input_estimate=estimate, max_tokens=req.max_tokens, client_key_used=client_key_used)
    upstream = await gw.upstream.post(route.backend, _encode(body), key, stream=stream)
    if not 200 <= upstream.status < 300:
        try:
            raw = await upstream.read()
        finally:
            upstream.release()
        raise from_response(upstream.status, raw, upstream.headers, info)
    if not stream:
        try:
            raw = await upstream.read()
        except Exception as err:
            upstream.close()
            raise connection_error(err) from None
        upstream.release()
        try:
            completion = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise GatewayError("The upstream returned a body that is not JSON", status=502) from None
        message = to_anthropic_message(completion, ctx, ids.message_id(), info)
        return JSONResponse(message)
    translator = StreamTranslator(ctx, ids.message_id(), info.input_estimate)
    return SSEResponse(upstream, translator, gw.settings.ping_interval, rid)  # type: ignore[return-value]


async def count_tokens(request: Request) -> Response:
    gw = gateway_of(request)
    gw.auth.upstream_key_for(request.headers)
    req = decode_count_tokens_request(await read_body(request, gw.settings.max_body_bytes))
    route = gw.router.resolve(req.model)
    tokens = count_request_tokens(req, route.upstream_model)
    headers = {}
    price = gw.settings.input_prices.get(route.upstream_model)
    if price is not None:
        headers[COST_HEADER] = f"{tokens * price / 1_000_000:.6f}"
    return JSONResponse({"input_tokens": tokens}, headers=headers)
