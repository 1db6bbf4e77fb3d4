"""Errors as HTTP responses: one renderer for both lanes, with secrets redacted and the record told."""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from anthropic_gateway.errors import (
    APIError,
    GatewayError,
    InvalidRequestError,
    NotFoundError,
    render_error,
    shown,
)
from anthropic_gateway.upstream_errors import redact

log = logging.getLogger("anthropic_gateway")


def _redact(request: Request, err: GatewayError) -> None:
    """No key may reach a client or a log line, whatever an upstream or the request itself echoed:
    not the keys the gateway holds or accepts, and not the key this request presented."""
    gw = getattr(request.app.state, "gateway", None)
    if gw is not None:
        err.message = gw.redact(err.message)
    record = request.scope.get("state", {}).get("record")
    if record is not None and record.secret:  # the key this request presented (set by the front door)
        err.message = redact(err.message, record.secret)


def error_response(request: Request, err: GatewayError) -> Response:
    _redact(request, err)
    state = request.scope.get("state", {})
    rid = state.get("request_id")
    record = state.get("record")
    if record is not None:
        record.set_error(err.http_status, err.error_type, err.message)
    if err.http_status >= 500:
        log.warning("request %s failed: %s %s", rid or "-", err.http_status, err.message)
    return Response(
        render_error(err, rid), status_code=err.http_status, headers=err.headers, media_type="application/json"
    )


async def on_gateway_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, GatewayError)
    return error_response(request, exc)


async def on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        return error_response(request, NotFoundError(f"Not found: {shown(request.method)} {shown(request.url.path)}"))
    if exc.status_code == 405:
        allow = ", ".join(sorted((exc.headers or {}).get("Allow", "").split(", ")))
        err = InvalidRequestError(f"{shown(request.method)} is not supported on {shown(request.url.path)}; use {allow}",
                                  status=405, headers={"Allow": allow})  # fmt: skip
        return error_response(request, err)
    return error_response(request, APIError(str(exc.detail), status=exc.status_code))


async def on_unexpected(request: Request, exc: Exception) -> Response:
    rid = getattr(request.state, "request_id", "-")  # the front door logs the traceback
    return error_response(request, APIError(f"Internal gateway error (request {rid})"))
