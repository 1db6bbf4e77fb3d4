"""The route table: the one list from which the fast lane, the Starlette routes, /openapi.json and
the endpoint list of ``GET /`` are all derived."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from anthropic_gateway import __version__, compatibility
from anthropic_gateway.batches import routes as batches
from anthropic_gateway.cache import admin as cache_admin
from anthropic_gateway.http import messages, models, ops, usage
from anthropic_gateway.http.body import JSONResponse
from anthropic_gateway.quota import admin as keys_admin
from anthropic_gateway.status import routes as status

Handler = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class Endpoint:
    methods: tuple[str, ...]
    path: str  # Starlette's path, with converters ("/v1/models/{model_id:path}")
    handler: Handler
    summary: str
    fast: bool = False  # POST on the fast lane: straight to the handler, no framework middleware
    body: bool = False  # takes a JSON request body
    responses: dict[str, Any] = field(default_factory=dict)  # OpenAPI responses besides the errors
    listed: bool = True  # shown in GET /'s endpoint list

    @property
    def public_path(self) -> str:
        """The path as documented: converters removed ("/v1/models/{model_id}")."""
        return "/".join(p.split(":")[0] + "}" if p.startswith("{") and ":" in p else p for p in self.path.split("/"))


async def root(request: Request) -> Response:
    return JSONResponse({"name": "anthropic-gateway", "version": __version__, "endpoints": endpoint_list(),
                         "compatibility": compatibility.summary()})  # fmt: skip


async def openapi(request: Request) -> Response:
    from anthropic_gateway.openapi import build_spec

    return JSONResponse(build_spec(ENDPOINTS))


_MESSAGE = {
    "description": "A Message object, or an SSE stream of Anthropic events when stream is true",
    "content": {"application/json": {"schema": {"type": "object"}}, "text/event-stream": {"schema": {"type": "string"}}},
}
_COUNT = {"description": "token count", "content": {"application/json": {"schema": {
    "type": "object", "properties": {"input_tokens": {"type": "integer"}}, "required": ["input_tokens"]}}}}  # fmt: skip
_OK = {"description": "ok"}
_BATCH = {"description": "a message_batch object"}
_JSONL = {"description": "JSON Lines, one result per request", "content": {"application/x-jsonl": {"schema": {"type": "string"}}}}

ENDPOINTS: list[Endpoint] = [
    Endpoint(("GET", "HEAD"), "/", root, "Name, version and endpoints; 200 once requests can be served "
             "(HEAD: the liveness probe Claude Code pre-warms with)", responses={"200": _OK}),
    Endpoint(("GET", "HEAD"), "/api/hello", root, "The same as GET / (HEAD: the pre-warm probe some Claude Code "
             "versions send)", responses={"200": _OK}, listed=False),
    Endpoint(("GET",), "/openapi.json", openapi, "This document", responses={"200": _OK}),
    Endpoint(("POST",), "/v1/messages", messages.messages,
             "Create a message (Anthropic Messages API); any query string (?beta=true) is accepted",
             fast=True, body=True, responses={"200": _MESSAGE}),
    Endpoint(("POST",), "/v1/messages/stream", messages.messages_stream, "Create a message, always streamed",
             fast=True, body=True, responses={"200": _MESSAGE}),
    Endpoint(("POST",), "/v1/messages/count_tokens", messages.count_tokens, "Count input tokens locally",
             fast=True, body=True, responses={"200": _COUNT}),
    Endpoint(("GET",), "/v1/messages/cache/stats", cache_admin.stats,
             "Response cache figures: entries, bytes, hits, misses, hit ratio, evictions, expired, coalesced, "
             "estimated tokens and USD saved (admin)", responses={"200": _OK}),
    Endpoint(("DELETE",), "/v1/messages/cache/clear", cache_admin.clear,
             "Empty the response cache; returns how many entries it held (admin)", responses={"200": _OK}),
    Endpoint(("POST",), "/v1/messages/cache/cleanup", cache_admin.cleanup,
             "Remove expired response-cache entries; returns how many (admin)", responses={"200": _OK}),
    Endpoint(("GET",), "/v1/models", models.list_models,
             "Configured model aliases in Anthropic's shape (limit, after_id, before_id)",
             responses={"200": {"description": "a page of models"}}),
    Endpoint(("GET",), "/v1/models/{model_id:path}", models.get_model, "One model alias",
             responses={"200": {"description": "a model"}}),
    Endpoint(("GET",), "/health", ops.health, "Liveness: 200 while the process serves (no upstream call)",
             responses={"200": _OK}),
    Endpoint(("GET",), "/health/ready", ops.ready, "Readiness: 503 while starting, draining or when no "
             "backend answered its last probe", responses={"200": _OK, "503": {"description": "not ready"}}),
    Endpoint(("GET",), "/health/detailed", ops.detailed, "Admin: version, uptime, backend probes, requests in "
             "flight, store, ledger, configuration (secrets masked)", responses={"200": _OK}),
    Endpoint(("GET",), "/metrics", ops.metrics, "Admin: Prometheus metrics (text format)",
             responses={"200": {"description": "Prometheus text exposition",
                                "content": {"text/plain": {"schema": {"type": "string"}}}}}),
    Endpoint(("GET",), "/status", status.page, "The status page (HTML): traffic, latency, tokens, cost, backends, "
             "batches and the last requests, live; its data needs the admin key where keys are configured",
             responses={"200": {"description": "the page", "content": {"text/html": {"schema": {"type": "string"}}}}}),
    Endpoint(("GET",), "/status/static/{name}", status.static, "The status page's script and style sheet",
             responses={"200": {"description": "app.js, app.css or icon.svg"}}, listed=False),
    Endpoint(("GET",), "/status/data", status.data, "The status page's figures as JSON (admin): range 15m, 1h "
             "(10-second points from memory), 24h or 7d (from the ledger)", responses={"200": _OK}),
    Endpoint(("GET",), "/v1/usage", usage.usage, "Request, token and cost totals from the ledger (admin key "
             "where keys are configured): start, end, group_by", responses={"200": {"description": "totals"}}),
    Endpoint(("GET",), "/admin/keys", keys_admin.list_keys, "Stored gateway keys (admin): labels, prefixes, limits",
             responses={"200": {"description": "the keys, never their values"}}),
    Endpoint(("POST",), "/admin/keys", keys_admin.create_key,
             "Create a gateway key (admin): {label, models, requests_per_minute, tokens_per_minute, "
             "max_concurrent, daily_budget_usd, monthly_budget_usd}; the key is in this answer only",
             responses={"201": {"description": "the new key"}}),
    Endpoint(("POST",), "/admin/keys/{label}", keys_admin.set_key, "Replace a stored key's limits (admin)",
             responses={"200": {"description": "the key"}}),
    Endpoint(("DELETE",), "/admin/keys/{label}", keys_admin.revoke_key, "Revoke a stored key (admin)",
             responses={"200": {"description": "revoked"}}),
    Endpoint(("POST",), "/v1/messages/batches", batches.create_batch,
             "Create a Message Batch (Anthropic's Batches API; any model)", body=True, responses={"200": _BATCH}),
    Endpoint(("GET",), "/v1/messages/batches", batches.list_batches,
             "Message Batches, most recent first (limit, after_id, before_id)", responses={"200": _OK}),
    Endpoint(("GET",), "/v1/messages/batches/{batch_id}", batches.retrieve_batch, "One Message Batch",
             responses={"200": _BATCH}),
    Endpoint(("DELETE",), "/v1/messages/batches/{batch_id}", batches.delete_batch, "Delete an ended batch",
             responses={"200": _OK}),
    Endpoint(("POST",), "/v1/messages/batches/{batch_id}/cancel", batches.cancel_batch, "Cancel a batch",
             responses={"200": _BATCH}),
    Endpoint(("GET",), "/v1/messages/batches/{batch_id}/results", batches.batch_results,
             "An ended batch's results, JSON Lines", responses={"200": _JSONL}),
    Endpoint(("POST",), "/v1/messages/batch", batches.run_batch, "Run a batch and stream its results as "
             "JSON Lines as each request finishes (batch id in the anthropic-gateway-batch-id header)",
             body=True, responses={"200": _JSONL}),
    Endpoint(("GET",), "/v1/messages/batch/{batch_id}/status", batches.batch_status,
             "A batch and its live per-state progress", responses={"200": _BATCH}),
]  # fmt: skip


def endpoint_list() -> list[str]:
    return [f"{m} {e.public_path}" for e in ENDPOINTS if e.listed for m in e.methods if m != "HEAD"]


def fast_lane() -> dict[str, Handler]:
    return {e.path: e.handler for e in ENDPOINTS if e.fast}


def starlette_routes() -> list[Route]:
    return [Route(e.path, e.handler, methods=list(e.methods)) for e in ENDPOINTS]
