"""When the response cache is used for a request, and which answers it keeps.

- Off by default; on for every request (``response_cache``), or per model alias
  (``[models."ALIAS"] response_cache = true / false``, which wins over the global setting).
- Per request, the ``x-gateway-cache`` header: ``on`` (use it), ``off`` (bypass it), ``refresh``
  (fetch a fresh answer and store it in place of the old one).
- Only deterministic requests (temperature 0, or a seed, from the client or the configured
  defaults / forced values) unless ``response_cache_nondeterministic`` widens it to all.
- Kept: complete answers only (end_turn, stop_sequence, tool_use), never errors, refusals,
  max_tokens-truncated or paused answers.
"""

from __future__ import annotations

from typing import Any, Literal

from anthropic_gateway.errors import InvalidRequestError, shown
from anthropic_gateway.routing import Route
from anthropic_gateway.schemas import MessagesRequest
from anthropic_gateway.settings import Settings

CACHE_HEADER = "x-gateway-cache"
Mode = Literal["disabled", "bypass", "on", "refresh"]
STORABLE_STOPS = frozenset({"end_turn", "stop_sequence", "tool_use"})


def request_mode(settings: Settings, route: Route, header: str | None) -> Mode:
    """``disabled``: the cache is off and nobody asked (no header, nothing recorded)."""
    if header is not None:
        value = header.strip().lower()
        if value == "off":
            return "bypass"
        if value in ("on", "refresh"):
            return "on" if value == "on" else "refresh"
        raise InvalidRequestError(f"{CACHE_HEADER}: '{shown(header)}' is not one of on, off, refresh")
    configured = route.config.response_cache if route.config is not None else None
    enabled = settings.response_cache if configured is None else configured
    return "on" if enabled else "disabled"


def _effective(name: str, req: MessagesRequest, route: Route, default_params: dict[str, Any]) -> Any:
    cfg = route.config
    if cfg is not None and name in cfg.force:
        return cfg.force[name]
    value = getattr(req, name)
    if value is None and cfg is not None:
        value = cfg.defaults.get(name)
    if value is None:
        value = default_params.get(name)
    return value


def deterministic(req: MessagesRequest, route: Route, default_params: dict[str, Any]) -> bool:
    if _effective("seed", req, route, default_params) is not None:
        return True
    return bool(_effective("temperature", req, route, default_params) == 0)


def storable(message: dict[str, Any]) -> bool:
    return message.get("stop_reason") in STORABLE_STOPS and bool(message.get("content"))
