"""The OpenAPI description, derived from the route table (a test checks it against the app)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from anthropic_gateway import __version__

if TYPE_CHECKING:
    from anthropic_gateway.http.table import Endpoint

_ERROR = {"description": "Anthropic-format error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
_JSON_BODY = {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}}
_ERROR_SCHEMA = {
    "type": "object", "required": ["type", "error"],
    "properties": {"type": {"const": "error"}, "request_id": {"type": "string"}, "error": {
        "type": "object", "required": ["type", "message"],
        "properties": {"type": {"type": "string"}, "message": {"type": "string"}}}}}  # fmt: skip


def build_spec(endpoints: list[Endpoint]) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for e in endpoints:
        for method in e.methods:
            op: dict[str, Any] = {"summary": e.summary, "responses": {**e.responses, "4XX": _ERROR, "5XX": _ERROR}}
            if e.body:
                op["requestBody"] = _JSON_BODY
            paths.setdefault(e.public_path, {})[method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "anthropic-gateway", "version": __version__,
                 "description": "The Anthropic Messages API served from OpenRouter or any OpenAI-compatible backend."},
        "paths": paths,
        "components": {"schemas": {"Error": _ERROR_SCHEMA}},
    }  # fmt: skip
