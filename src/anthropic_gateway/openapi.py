"""The OpenAPI description, derived from the route table (a test checks it against the app), complete
enough to drive a fuzzer (schemathesis): request bodies are the JSON schemas of the msgspec types the
gateway validates with (schemas.py), built once on the first GET /openapi.json (~10 ms, kept off
start-up); path and query parameters are declared."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import msgspec

from anthropic_gateway import __version__
from anthropic_gateway.schemas import CountTokensRequest, MessagesRequest

if TYPE_CHECKING:
    from anthropic_gateway.http.table import Endpoint

_REF = "#/components/schemas/{name}"
_ERROR = {"description": "Anthropic-format error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
_ERROR_SCHEMA = {
    "type": "object", "required": ["type", "error"],
    "properties": {"type": {"const": "error"}, "request_id": {"type": "string"}, "error": {
        "type": "object", "required": ["type", "message"],
        "properties": {"type": {"type": "string"}, "message": {"type": "string"}}}}}  # fmt: skip
# Open gateways need no key; others take x-api-key or a Bearer token.
_SECURITY: list[dict[str, list[str]]] = [{}, {"ApiKey": []}, {"Bearer": []}]
_SECURITY_SCHEMES = {"ApiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
                     "Bearer": {"type": "http", "scheme": "bearer"}}  # fmt: skip

# The request body type of each endpoint that takes one (a KeyError here is a missing entry).
BODIES = {
    "/v1/messages": "MessagesRequest",
    "/v1/messages/stream": "MessagesRequest",
    "/v1/messages/count_tokens": "CountTokensRequest",
    "/v1/messages/batches": "MessageBatchCreate",
    "/v1/messages/batch": "MessageBatchCreate",
}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


_BATCH_ID = {"name": "batch_id", "in": "path", "required": True, "schema": {"type": "string"},
             "description": "A msgbatch_ id"}  # fmt: skip
# Message Batches (anthropic_gateway.batches): each item's params are validated when it runs.
_BATCH_CREATE = {"type": "object", "required": ["requests"], "additionalProperties": False, "properties": {
    "requests": {"type": "array", "minItems": 1, "items": {
        "type": "object", "required": ["custom_id", "params"], "additionalProperties": False, "properties": {
            "custom_id": {"type": "string", "pattern": "^[a-zA-Z0-9_-]{1,64}$"},
            "params": {"$ref": _REF.format(name="MessagesRequest")}}}}}}  # fmt: skip

PARAMETERS: dict[str, list[dict[str, Any]]] = {
    "/v1/models": [
        _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 20}, "Page size"),
        _query("after_id", {"type": "string"}, "The page after this model id"),
        _query("before_id", {"type": "string"}, "The page before this model id"),
    ],
    "/v1/usage": [
        _query("start", {"type": "string"}, "ISO 8601 date or date-time, or Unix seconds (default: 7 days before end)"),
        _query("end", {"type": "string"}, "ISO 8601 date or date-time, or Unix seconds; exclusive (default: now)"),
        _query("group_by", {"type": "string", "enum": ["model", "key", "day", "backend", "status"]},
               "Totals per requested model, key label, UTC day, backend or status (default: one total)"),
    ],
    "/status/data": [
        _query("range", {"type": "string", "enum": ["15m", "1h", "24h", "7d"], "default": "15m"},
               "The last 15 minutes or hour (10-second points), 24 hours (15-minute points) or 7 days (hourly)"),
    ],
    "/status/static/{name}": [
        {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}, "description": "app.js, app.css or icon.svg"},
    ],
    "/admin/keys/{label}": [
        {"name": "label", "in": "path", "required": True, "schema": {"type": "string"}, "description": "The key's label"},
    ],
    "/v1/models/{model_id}": [
        {"name": "model_id", "in": "path", "required": True, "schema": {"type": "string"},
         "description": "A model alias or upstream id (may contain '/')"},
    ],
    "/v1/messages/batches": [
        _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 20}, "Page size"),
        _query("after_id", {"type": "string"}, "The page after this batch id (older batches)"),
        _query("before_id", {"type": "string"}, "The page before this batch id (newer batches)"),
    ],
    **{path: [_BATCH_ID] for path in ("/v1/messages/batches/{batch_id}", "/v1/messages/batches/{batch_id}/cancel",
                                      "/v1/messages/batches/{batch_id}/results", "/v1/messages/batch/{batch_id}/status")},
}  # fmt: skip


@functools.cache
def request_schemas() -> dict[str, Any]:
    _, components = msgspec.json.schema_components([MessagesRequest, CountTokensRequest], ref_template=_REF)
    # Fields kept as raw JSON have the empty schema; say what they hold.
    components["Tool"]["properties"]["input_schema"] = {"type": "object", "description": "JSON Schema of the input"}
    for name in ("Base64ImageSource", "Base64PDFSource"):
        components[name]["properties"]["data"] = {"type": "string", "contentEncoding": "base64"}
    components["MessageBatchCreate"] = _BATCH_CREATE
    out: dict[str, Any] = components
    return out


def build_spec(endpoints: list[Endpoint]) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for e in endpoints:
        for method in e.methods:
            op: dict[str, Any] = {"summary": e.summary, "responses": {**e.responses, "4XX": _ERROR, "5XX": _ERROR}}
            if e.body:
                schema = {"$ref": _REF.format(name=BODIES[e.public_path])}
                op["requestBody"] = {"required": True, "content": {"application/json": {"schema": schema}}}
            if e.public_path in PARAMETERS:
                op["parameters"] = PARAMETERS[e.public_path]
            if e.public_path.startswith(("/v1/", "/admin/")):
                op["security"] = _SECURITY
            paths.setdefault(e.public_path, {})[method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "anthropic-gateway", "version": __version__,
                 "description": "The Anthropic Messages API served from OpenRouter or any OpenAI-compatible backend."},
        "paths": paths,
        "components": {"schemas": {"Error": _ERROR_SCHEMA, **request_schemas()}, "securitySchemes": _SECURITY_SCHEMES},
    }  # fmt: skip
