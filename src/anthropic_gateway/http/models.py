"""GET /v1/models and /v1/models/{id}: the configured aliases in Anthropic's shape."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from anthropic_gateway.errors import NotFoundError, shown
from anthropic_gateway.http.body import JSONResponse, page_limit
from anthropic_gateway.http.gateway import gateway_of
from anthropic_gateway.routing import Route

_EPOCH = "1970-01-01T00:00:00Z"


def _model_info(alias: str, route: Route) -> dict[str, Any]:
    cfg = route.config
    info: dict[str, Any] = {
        "type": "model",
        "id": alias,
        "display_name": (cfg.display_name if cfg and cfg.display_name else f"{alias} ({route.upstream_model})"),
        "created_at": _EPOCH,
    }
    # The alias's own limits, else the model catalogue's (OpenRouter backends).
    if route.context_window is not None:
        info["max_input_tokens"] = route.context_window
    if route.max_output_tokens is not None:
        info["max_tokens"] = route.max_output_tokens
    return info


async def list_models(request: Request) -> Response:
    gw = gateway_of(request)
    gw.auth.check(request.headers)
    q = request.query_params
    limit = page_limit(q)
    items = [_model_info(alias, route) for alias, route in gw.router.aliases()]
    ids_ = [m["id"] for m in items]
    after, before = q.get("after_id"), q.get("before_id")
    if after is not None:
        items = items[ids_.index(after) + 1:] if after in ids_ else []
        page = items[:limit]
    elif before is not None:
        items = items[: ids_.index(before)] if before in ids_ else []
        page = items[-limit:]
    else:
        page = items[:limit]
    return JSONResponse({
        "data": page, "has_more": len(items) > limit,
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
