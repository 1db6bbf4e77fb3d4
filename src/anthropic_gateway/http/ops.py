"""The operations routes: liveness, readiness, the detailed health report and the Prometheus metrics."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from anthropic_gateway import __version__
from anthropic_gateway.http.body import JSONResponse
from anthropic_gateway.http.gateway import Gateway, gateway_of, require_admin
from anthropic_gateway.ops.health import config_summary, iso_time

_OK = orjson.dumps({"status": "ok"})


async def health(request: Request) -> Response:
    """Liveness: the process serves. No upstream call, no key."""
    return JSONResponse(_OK)


def readiness(gw: Gateway) -> tuple[bool, str]:
    state = gw.lifecycle.state
    if state != "serving":
        return False, state
    if not gw.prober.any_reachable():
        return False, "no backend reachable"
    if gw.shared is not None and not gw.shared.redis.up:
        return False, "redis unreachable"
    if getattr(gw.store, "available", True) is False:  # a shared (PostgreSQL) store that is unreachable
        return False, "store unavailable"
    return True, "ready"


async def ready(request: Request) -> Response:
    """Readiness: 503 while starting, draining, when every backend's last probe failed, while the
    configured Redis (redis_url) does not answer, or while a PostgreSQL store cannot be reached
    (requests that need neither are still answered)."""
    ok, status = readiness(gateway_of(request))
    return JSONResponse({"status": status}, status_code=200 if ok else 503)


async def detailed(request: Request) -> Response:
    gw = require_admin(request)
    return JSONResponse(orjson.loads(gw.redact(orjson.dumps(detailed_report(gw)).decode())))


def detailed_report(gw: Gateway) -> dict[str, Any]:
    ok, status = readiness(gw)
    life = gw.lifecycle
    report: dict[str, Any] = {
        "status": status,
        "ready": ok,
        "version": __version__,
        "started_at": iso_time(life.started_at),
        "uptime_seconds": round(life.uptime, 1),
        "in_flight": {"requests": life.requests, "streams": life.streams},
        "backends": _backends(gw),
        "store": _section(gw.store.status),
        "ledger": _section(gw.ledger.status),
    }
    for name, provide in gw.status_providers.items():
        report[name] = _section(provide)
    report["config"] = config_summary(gw.settings)
    return report


def _backends(gw: Gateway) -> dict[str, Any]:
    out = {}
    for name, backend in gw.router.backends.items():
        probe = gw.prober.results.get(name)
        out[name] = {
            "kind": backend.kind.name,
            "key": "set" if backend.key is not None else "none",
            "probe": probe.as_json() if probe is not None else None,
        }
    return out


def _section(provide: Any) -> Any:
    """A status section; one that fails says so instead of failing the report."""
    try:
        return provide()
    except Exception as err:
        return {"error": type(err).__name__}


async def metrics(request: Request) -> Response:
    gw = require_admin(request)
    if not gw.metrics.loaded:
        await asyncio.to_thread(gw.metrics.load)
    body, content_type = gw.metrics.render()
    return Response(body, media_type=content_type)
