"""Small builders shared by the routing unit tests."""

from __future__ import annotations

import copy
import json
from functools import cache
from typing import Any

from anthropic_gateway.routing import Route, Router
from anthropic_gateway.schemas import MessagesRequest, decode_messages_request
from anthropic_gateway.settings import Settings, load_settings
from paths import CLAUDE_CODE_FIXTURE

DEFAULT_URL = "http://127.0.0.1:9/v1"


def settings_of(
    models: dict[str, Any] | None = None, backends: dict[str, Any] | None = None, **env: str
) -> Settings:
    """Settings from an injected environment: models/backends as JSON values, other settings by name."""
    environ = {
        "ANTHROPIC_GATEWAY_UPSTREAM_URL": DEFAULT_URL,
        "ANTHROPIC_GATEWAY_BACKEND_KIND": "openrouter",
        "ANTHROPIC_GATEWAY_OPUS_MODEL": "tier/opus",
        "ANTHROPIC_GATEWAY_SONNET_MODEL": "tier/sonnet",
        "ANTHROPIC_GATEWAY_HAIKU_MODEL": "tier/haiku",
    }
    if models is not None:
        environ["ANTHROPIC_GATEWAY_MODELS"] = json.dumps(models)
    if backends is not None:
        environ["ANTHROPIC_GATEWAY_BACKENDS"] = json.dumps(backends)
    environ.update({"ANTHROPIC_GATEWAY_" + k.upper(): v for k, v in env.items()})
    return load_settings(environ=environ)


def router_of(models: dict[str, Any] | None = None, backends: dict[str, Any] | None = None, **env: str) -> Router:
    return Router(settings_of(models, backends, **env))


def route_of(alias: str, config: dict[str, Any] | None = None, kind: str = "openrouter", **backend: Any) -> Route:
    """The route of one alias configured as ``config`` on a backend named ``b`` of ``kind``."""
    backends = {"b": {"url": "http://127.0.0.1:10/v1", "kind": kind, **backend}}
    return router_of({alias: {"backend": "b", **(config or {})}}, backends).resolve(alias)


@cache
def _fixture_text() -> str:
    return CLAUDE_CODE_FIXTURE.read_text()


def claude_code_body(turn: str = "first_turn") -> dict[str, Any]:
    """A fresh copy of one of Claude Code's real request bodies."""
    return copy.deepcopy(json.loads(_fixture_text())[turn])


def haiku_body() -> dict[str, Any]:
    """Claude Code's background (haiku) request shape: max_tokens 32000 with a 31999-token thinking budget,
    on its real system prompt, tools and messages."""
    body = claude_code_body()
    body.update(
        model="claude-haiku-4-5-20251001",
        max_tokens=32000,
        thinking={"type": "enabled", "budget_tokens": 31999},
        stream=False,
    )
    body.pop("output_config", None)
    return body


def request_of(body: dict[str, Any]) -> MessagesRequest:
    return decode_messages_request(json.dumps(body).encode())


def simple(model: str = "m", **fields: Any) -> MessagesRequest:
    body: dict[str, Any] = {"model": model, "max_tokens": 1000, "messages": [{"role": "user", "content": "Hi"}]}
    body.update(fields)
    return request_of(body)
