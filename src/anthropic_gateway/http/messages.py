"""The Messages handlers: read and validate the request, call the service, answer in JSON or SSE."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from anthropic_gateway.auth import Client
from anthropic_gateway.cache.policy import CACHE_HEADER
from anthropic_gateway.http.body import JSONResponse, read_body
from anthropic_gateway.http.gateway import Gateway, gateway_of, record_of
from anthropic_gateway.http.sse_response import SSEResponse
from anthropic_gateway.ops.cost import cost_header
from anthropic_gateway.ops.record import RequestRecord
from anthropic_gateway.quota.limits import QUOTA
from anthropic_gateway.schemas import decode_count_tokens_request, decode_messages_request
from anthropic_gateway.service import Completed

COST_HEADER = "anthropic-gateway-estimated-input-cost-usd"
SESSION_HEADER = "x-claude-code-session-id"  # Claude Code's conversation id: OpenRouter's sticky session


async def messages(request: Request) -> Response:
    return await _messages(request, force_stream=False)


async def messages_stream(request: Request) -> Response:
    return await _messages(request, force_stream=True)


async def _messages(request: Request, *, force_stream: bool) -> Response:
    gw = gateway_of(request)
    settings = gw.settings
    record = record_of(request)
    headers = request.headers  # (a property: asked once)
    client = gw.auth.check(headers)
    record.key_label = client.label
    body = await read_body(request, settings.max_body_bytes)
    if settings.log_bodies:
        record.extras["request_body"] = body
    req = decode_messages_request(body)
    quota_headers = await admit(gw, client, req.model, record) if client.limits is not None else {}
    answer = await gw.response_cache.answer(
        req, client=client, record=record, stream=force_stream or bool(req.stream), size=len(body),
        session=headers.get(SESSION_HEADER), header=headers.get(CACHE_HEADER),
    )
    if isinstance(answer, Completed):
        if settings.log_bodies:
            record.extras["response_body"] = answer.message
        extra = {**(cost_header(record) or {}), **quota_headers}
        if record.cache:
            extra[CACHE_HEADER] = record.cache
        return JSONResponse(answer.message, headers=extra or None)
    response = SSEResponse(answer, settings.ping_interval, record.request_id)
    response.headers += [(k.encode(), v.encode()) for k, v in quota_headers.items()]
    if record.cache:
        response.headers.append((CACHE_HEADER.encode(), record.cache.encode()))
    return response  # type: ignore[return-value]


async def admit(gw: Gateway, client: Client, model: str, record: RequestRecord) -> dict[str, str]:
    """A key with limits: count the request in (or refuse it); the rate-limit headers to send."""
    if client.limits is None:
        return {}
    headers = await gw.limiter.admit(client.label, client.limits, model)
    record.extras[QUOTA] = client.label
    return headers


async def count_tokens(request: Request) -> Response:
    gw = gateway_of(request)
    record = record_of(request)
    client = gw.auth.check(request.headers)
    record.key_label = client.label
    body = await read_body(request, gw.settings.max_body_bytes)
    req = await gw.service.threads.view(decode_count_tokens_request(body), client)
    route = gw.service.resolve(req.model, record)
    original = await gw.service.count(req, route.upstream_model, len(body))
    _, tokens, edits = await gw.service.edit_context(req, route, original, len(body))
    record.input_tokens = tokens
    headers = {}
    price = gw.settings.input_prices.get(route.upstream_model)
    if price is not None:
        headers[COST_HEADER] = f"{tokens * price / 1_000_000:.6f}"
    answer: dict[str, Any] = {"input_tokens": tokens}
    if edits is not None:  # as Anthropic counts it: after the edits, with the count before them
        answer["context_management"] = {"original_input_tokens": original}
    return JSONResponse(answer, headers=headers)
