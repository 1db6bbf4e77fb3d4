"""The OpenAPI description of every route (a test checks its paths equal the app's routes)."""

from __future__ import annotations

from typing import Any

from anthropic_gateway import __version__

_ERROR = {"description": "Anthropic-format error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
_JSON_BODY = {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}}


def _post(summary: str, ok: dict[str, Any]) -> dict[str, Any]:
    return {"post": {"summary": summary, "requestBody": _JSON_BODY, "responses": {"200": ok, "4XX": _ERROR, "5XX": _ERROR}}}


_MESSAGE = {
    "description": "A Message object, or an SSE stream of Anthropic events when stream is true",
    "content": {"application/json": {"schema": {"type": "object"}}, "text/event-stream": {"schema": {"type": "string"}}},
}

SPEC: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "anthropic-gateway", "version": __version__,
             "description": "The Anthropic Messages API served from OpenRouter or any OpenAI-compatible backend."},
    "paths": {
        "/": {
            "get": {"summary": "Name, version and endpoints; 200 once requests can be served",
                    "responses": {"200": {"description": "ok"}}},
            "head": {"summary": "Liveness probe (Claude Code pre-warms with it)", "responses": {"200": {"description": "ok"}}},
        },
        "/openapi.json": {"get": {"summary": "This document", "responses": {"200": {"description": "ok"}}}},
        "/v1/messages": _post("Create a message (Anthropic Messages API); any query string (?beta=true) is accepted", _MESSAGE),
        "/v1/messages/stream": _post("Create a message, always streamed", _MESSAGE),
        "/v1/models": {"get": {"summary": "Configured model aliases in Anthropic's shape (limit, after_id, before_id)",
                               "responses": {"200": {"description": "a page of models"}, "4XX": _ERROR}}},
        "/v1/models/{model_id:path}": {"get": {"summary": "One model alias", "responses": {"200": {"description": "a model"}, "404": _ERROR}}},
        "/v1/messages/count_tokens": _post(
            "Count input tokens locally", {"description": "token count", "content": {"application/json": {"schema": {
                "type": "object", "properties": {"input_tokens": {"type": "integer"}}, "required": ["input_tokens"]}}}}),
    },
    "components": {"schemas": {"Error": {
        "type": "object", "required": ["type", "error"],
        "properties": {"type": {"const": "error"}, "request_id": {"type": "string"}, "error": {
            "type": "object", "required": ["type", "message"],
            "properties": {"type": {"type": "string"}, "message": {"type": "string"}}}}}}},
}  # fmt: skip
