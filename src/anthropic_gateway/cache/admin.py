"""The response cache's admin routes (an admin key where keys are configured)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from anthropic_gateway.http.body import JSONResponse
from anthropic_gateway.http.gateway import require_admin


async def stats(request: Request) -> Response:
    gw = require_admin(request)
    return JSONResponse(await gw.response_cache.report())


async def clear(request: Request) -> Response:
    gw = require_admin(request)
    return JSONResponse({"cleared": await gw.response_cache.store.clear()})


async def cleanup(request: Request) -> Response:
    gw = require_admin(request)
    return JSONResponse({"expired": await gw.response_cache.store.cleanup()})
