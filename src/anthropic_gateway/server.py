"""The ASGI application: routes, error rendering, request ids, and the upstream client's lifetime."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from anthropic_gateway import ids, routes, tokens
from anthropic_gateway.auth import Authenticator
from anthropic_gateway.errors import APIError, GatewayError, NotFoundError, error_body, render_error, shown
from anthropic_gateway.openapi import SPEC
from anthropic_gateway.routing import Router
from anthropic_gateway.settings import Settings
from anthropic_gateway.upstream import UpstreamClient
from anthropic_gateway.upstream_errors import redact

log = logging.getLogger("anthropic_gateway")


class RequestIds:
    """Gives every request an id (request.state.request_id) and every response a request-id header,
    and turns an exception nothing else handled into a logged traceback plus an Anthropic 500."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = ids.request_id()
        scope.setdefault("state", {})["request_id"] = rid
        header = (b"request-id", rid.encode())
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            log.exception("unhandled error (request %s)", rid)
            if not started:
                body = orjson.dumps(error_body("api_error", f"Internal gateway error (request {rid})", rid))
                await send({"type": "http.response.start", "status": 500,
                            "headers": [(b"content-type", b"application/json"), header]})  # fmt: skip
                await send({"type": "http.response.body", "body": body})


class FastLane:
    """The front door. POSTs to the Messages routes go straight to their handler - the hot path, with
    no framework middleware wrapping each SSE write - and everything else goes through Starlette.
    Both lanes render errors with the same function and give every response a request-id."""

    def __init__(self, app: Starlette, slow: ASGIApp) -> None:
        self.app = app
        self.slow = slow
        self.handlers = {
            "/v1/messages": routes.messages,
            "/v1/messages/stream": routes.messages_stream,
            "/v1/messages/count_tokens": routes.count_tokens,
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = self.handlers.get(scope["path"]) if scope["type"] == "http" and scope["method"] == "POST" else None
        if handler is None:
            await self.slow(scope, receive, send)
            return
        rid = ids.request_id()
        scope["app"] = self.app
        scope.setdefault("state", {})["request_id"] = rid
        request = Request(scope, receive)
        response: Any
        try:
            response = await handler(request)
        except GatewayError as err:
            response = await _on_gateway_error(request, err)
        except Exception:
            log.exception("unhandled error (request %s)", rid)
            response = await _on_unexpected(request, RuntimeError())
        if isinstance(response, Response):
            response.raw_headers.append((b"request-id", rid.encode()))
        await response(scope, receive, send)


def _redact(request: Request, err: GatewayError) -> None:
    """No upstream key may reach a client or a log line, whatever an upstream echoed."""
    gw: routes.Gateway | None = getattr(request.app.state, "gateway", None)
    if gw is not None:
        for secret in gw.secrets():
            err.message = redact(err.message, secret)


def _error_response(request: Request, err: GatewayError) -> Response:
    rid = getattr(request.state, "request_id", None)
    _redact(request, err)
    return Response(
        render_error(err, rid), status_code=err.http_status, headers=err.headers, media_type="application/json"
    )


async def _on_gateway_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, GatewayError)
    _redact(request, exc)
    if exc.http_status >= 500:
        log.warning("request %s failed: %s %s", getattr(request.state, "request_id", "-"), exc.http_status, exc.message)
    return _error_response(request, exc)


async def _on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        return _error_response(request, NotFoundError(f"Not found: {shown(request.method)} {shown(request.url.path)}"))
    if exc.status_code == 405:
        return _error_response(request, NotFoundError(f"{request.method} is not supported on {request.url.path}"))
    return _error_response(request, APIError(str(exc.detail), status=exc.status_code))


async def _on_unexpected(request: Request, exc: Exception) -> Response:
    rid = getattr(request.state, "request_id", "-")
    return _error_response(request, APIError(f"Internal gateway error (request {rid})"))


async def _openapi(request: Request) -> Response:
    return routes.JSONResponse(SPEC)


def create_app(settings: Settings) -> ASGIApp:
    gateway = routes.Gateway(
        settings=settings, router=Router(settings), auth=Authenticator(settings), upstream=UpstreamClient(settings)
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await gateway.upstream.start()
        # Load the tokenizer (~0.25 s) in a thread once the server is up, so readiness is not delayed
        # by it; a count before then loads it on demand.
        loop = asyncio.get_running_loop()
        warm_up = loop.call_later(0.3, tokens.start_warm_up, settings.sonnet_model) if settings.tokenizer_preload else None
        try:
            yield
        finally:
            if warm_up is not None:
                warm_up.cancel()
            await gateway.upstream.close()

    app = Starlette(
        routes=[
            Route("/", routes.root, methods=["GET", "HEAD"]),
            Route("/openapi.json", _openapi, methods=["GET"]),
            Route("/v1/messages", routes.messages, methods=["POST"]),
            Route("/v1/messages/stream", routes.messages_stream, methods=["POST"]),
            Route("/v1/messages/count_tokens", routes.count_tokens, methods=["POST"]),
            Route("/v1/models", routes.list_models, methods=["GET"]),
            Route("/v1/models/{model_id:path}", routes.get_model, methods=["GET"]),
        ],
        exception_handlers={
            GatewayError: _on_gateway_error,
            HTTPException: _on_http_error,
            Exception: _on_unexpected,
        },
        lifespan=lifespan,
    )
    app.state.gateway = gateway
    return FastLane(app, RequestIds(app))


def app_routes(app: Any) -> set[str]:
    """Paths the application serves (for the OpenAPI consistency test)."""
    inner: Any = app.app if isinstance(app, RequestIds | FastLane) else app
    return {r.path for r in inner.routes}
