"""Per-model policy around the translation (pure): capability checks, clamping of max_tokens to the
model's limits, parameters (client extras, configured defaults and forced values), and tool-schema
adjustments for the target family.

    body, ctx = prepare_request(req, route, stream=..., input_estimate=..., default_params=...)
"""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict
from typing import Any

import msgspec

from anthropic_gateway.errors import InvalidRequestError, shown
from anthropic_gateway.routing import Route
from anthropic_gateway.schemas import (
    EXTRA_PARAMETERS,
    Base64PDFSource,
    ContentSource,
    DocumentBlock,
    ImageBlock,
    MessagesRequest,
    ThinkingDisabled,
    ThinkingEnabled,
    ToolResultBlock,
    ToolUseBlock,
    URLPDFSource,
)
from anthropic_gateway.translate.prompt_cache import session_key
from anthropic_gateway.translate.request import RequestContext, to_openai_request

log = logging.getLogger(__name__)

MIN_THINKING_BUDGET = 1024


def prepare_request(
    req: MessagesRequest,
    route: Route,
    *,
    stream: bool,
    input_estimate: int = 0,
    default_params: dict[str, Any] | None = None,
    session: str | None = None,
) -> tuple[dict[str, Any], RequestContext]:
    """``session``: the client's conversation id (Claude Code's x-claude-code-session-id), if sent."""
    check_capabilities(req, route)
    req = clamp(req, route, input_estimate)
    body, ctx = to_openai_request(req, route, stream=stream)
    apply_parameters(body, req, route, default_params or {})
    sticky_session(body, req, route, session)
    family = schema_family(route)
    if family == "gemini" and "tools" in body:
        for tool in body["tools"]:
            fn = tool["function"]
            fn["parameters"] = gemini_schema(fn["parameters"])
    return body, ctx


# --- capabilities ------------------------------------------------------------------------------


def _uses(req: MessagesRequest) -> set[str]:
    used: set[str] = set()
    if req.tools:
        used.add("tools")
    for msg in req.messages:
        if isinstance(msg.content, str):
            continue
        for block in msg.content:
            if isinstance(block, ToolUseBlock | ToolResultBlock):
                used.add("tools")
            inner = (block.blocks or ()) if isinstance(block, ToolResultBlock) else (block,)
            for b in inner:
                if isinstance(b, ImageBlock):
                    used.add("vision")
                elif isinstance(b, DocumentBlock):
                    if isinstance(b.source, Base64PDFSource | URLPDFSource):
                        used.add("pdf")
                    elif isinstance(b.source, ContentSource) and not isinstance(b.source.content, str):
                        used.update("vision" for x in b.source.content if isinstance(x, ImageBlock))
    return used


_CAPABILITY_WORDS = {"tools": "tool use", "vision": "image input", "pdf": "PDF input"}


def check_capabilities(req: MessagesRequest, route: Route) -> None:
    caps = route.capabilities
    if len(caps) == 4:
        return
    missing = sorted(c for c in _uses(req) if c not in caps)
    if missing:
        what = " and ".join(_CAPABILITY_WORDS[c] for c in missing)
        raise InvalidRequestError(
            f"model: '{shown(req.model)}' ({route.upstream_model}) does not support {what}, which this request uses; "
            "choose another model or remove that content"
        )


# --- limits ------------------------------------------------------------------------------------


def clamp(req: MessagesRequest, route: Route, input_estimate: int) -> MessagesRequest:
    """Fit max_tokens to the model's output limit and to what its context window leaves; keep a
    thinking budget below the new max_tokens (at least 1,024) or drop thinking. Also drops thinking
    for models configured without the reasoning capability."""
    thinking = req.thinking
    if thinking is not None and "reasoning" not in route.capabilities:
        log.debug("model %s has no reasoning capability: thinking dropped", route.upstream_model)
        thinking = None
    max_tokens = req.max_tokens
    if route.max_output_tokens is not None and max_tokens > route.max_output_tokens:
        max_tokens = route.max_output_tokens
    window = route.context_window  # the alias's, else the model catalogue's
    if window is not None and max_tokens > window - input_estimate:
        max_tokens = max(window - input_estimate, 1)
    if max_tokens != req.max_tokens:
        log.info("max_tokens clamped from %d to %d for %s", req.max_tokens, max_tokens, route.upstream_model)
    if isinstance(thinking, ThinkingEnabled) and thinking.budget_tokens >= max_tokens:
        budget = max_tokens - 1
        if budget >= MIN_THINKING_BUDGET:
            thinking = msgspec.structs.replace(thinking, budget_tokens=budget)
        else:
            log.info("thinking dropped: max_tokens %d leaves no room for a %d-token budget", max_tokens, MIN_THINKING_BUDGET)
            thinking = None
    if max_tokens == req.max_tokens and thinking is req.thinking:
        return req
    return msgspec.structs.replace(req, max_tokens=max_tokens, thinking=thinking)


# --- parameters --------------------------------------------------------------------------------


def apply_parameters(body: dict[str, Any], req: MessagesRequest, route: Route, default_params: dict[str, Any]) -> None:
    """Client extras are forwarded where the backend kind takes them; configured defaults (the
    model's, then the global ones) fill what is still unset; the model's forced values win over all."""
    supported = route.backend.kind.extra_params
    for name in EXTRA_PARAMETERS:
        value = getattr(req, name)
        if value is None:
            continue
        if name not in supported:
            log.debug("parameter %s dropped: backend kind %s does not take it", name, route.backend.kind.name)
            continue
        if isinstance(value, msgspec.Struct):
            value = msgspec.to_builtins(value)
        if name == "transforms":
            body["plugins"] = [*body.get("plugins", []), *_plugins(value)]  # the legacy field, in its current form
        elif name == "reasoning":
            body["reasoning"] = {**body.get("reasoning", {}), **value}
        else:
            body[name] = value
    kind = route.backend.kind
    cfg = route.config
    thinking_off = req.thinking is None or isinstance(req.thinking, ThinkingDisabled)
    for source in ((cfg.defaults if cfg is not None else {}), default_params):
        for name, value in source.items():
            if name == "transforms":  # the legacy field, sent in its current form as for clients
                name, value = "plugins", _plugins(value)
            if name in ("reasoning", "reasoning_effort") and thinking_off:
                continue  # a default never turns on reasoning the client did not ask for
            if kind.takes(name):
                body.setdefault(name, value)
            else:
                log.debug("default %s not sent: backend kind %s does not take it", name, kind.name)
    if cfg is not None:
        for name, value in cfg.force.items():
            if kind.takes(name):
                body[name] = value
            else:
                log.debug("forced %s not sent: backend kind %s does not take it", name, kind.name)


def _plugins(transforms: list[str]) -> list[dict[str, Any]]:
    if "middle-out" in transforms:
        return [{"id": "context-compression"}]
    return [{"id": "context-compression", "enabled": False}]


def sticky_session(body: dict[str, Any], req: MessagesRequest, route: Route, session: str | None) -> None:
    """OpenRouter keeps a conversation on the provider holding its prompt cache when every turn
    carries the same `session_id`; not when the client or the config pinned `provider.order`."""
    if not route.backend.kind.openrouter_extensions or "session_id" in body:
        return
    provider = body.get("provider")
    if isinstance(provider, dict) and provider.get("order"):
        return
    body["session_id"] = session_key(req, session)


# --- tool schemas ------------------------------------------------------------------------------


def schema_family(route: Route) -> str:
    family = route.config.schema_family if route.config is not None else "auto"
    if family != "auto":
        return family
    model = route.upstream_model.lower()
    return "gemini" if "gemini" in model or model.startswith("google/") else "none"


# JSON-Schema keywords Gemini's function declarations reject.
_GEMINI_DROP = frozenset({
    "$schema", "$id", "$comment", "additionalProperties", "propertyNames", "uniqueItems", "exclusiveMinimum",
    "exclusiveMaximum", "patternProperties", "unevaluatedProperties", "dependentRequired", "dependentSchemas",
    "minContains", "maxContains", "contentEncoding", "contentMediaType", "examples", "default", "const",
    "if", "then", "else", "not",
})  # fmt: skip
_GEMINI_FORMATS = frozenset({"enum", "date-time"})
_schema_cache: OrderedDict[bytes, Any] = OrderedDict()


def gemini_schema(schema: Any) -> Any:
    """A copy of `schema` without the keywords Gemini rejects (the original is never modified)."""
    raw = bytes(schema) if isinstance(schema, msgspec.Raw) else msgspec.json.encode(schema)
    key = hashlib.blake2b(raw, digest_size=16).digest()
    cached = _schema_cache.get(key)
    if cached is None:
        try:
            cached = _gemini(msgspec.json.decode(raw))
        except RecursionError:
            raise InvalidRequestError("tools: an input_schema is nested too deeply") from None
        if len(raw) <= 65536:  # the cache keeps decoded copies: only ordinary-sized schemas
            _schema_cache[key] = cached
            if len(_schema_cache) > 1024:
                _schema_cache.popitem(last=False)
    return cached


def _gemini(node: Any) -> Any:
    if isinstance(node, list):
        return [_gemini(x) for x in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _GEMINI_DROP:
            if key == "const" and isinstance(value, str):
                out["enum"] = [value]
            continue
        if key == "format" and value not in _GEMINI_FORMATS:
            continue
        if key == "enum" and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            continue
        if key == "type" and isinstance(value, list):
            kinds = [t for t in value if t != "null"]
            out["type"] = kinds[0] if kinds else "string"
            if len(kinds) < len(value):
                out["nullable"] = True
            continue
        if key == "properties" and isinstance(value, dict):
            out[key] = {name: _gemini(sub) for name, sub in value.items()}
            continue
        if key == "allOf" and isinstance(value, list):
            continue  # merged below, once the node's own keywords are in
        out[key] = _gemini(value)
    if isinstance(node.get("allOf"), list):
        _merge_all_of(out, [_gemini(sub) for sub in node["allOf"]])
    if out.get("type") == "array" and "items" not in out:
        out["items"] = {"type": "string"}
    if out.get("type") == "object" and out.get("properties") == {}:
        del out["properties"]
    return out


def _merge_all_of(out: dict[str, Any], subs: list[Any]) -> None:
    """Gemini has no ``allOf``: its subschemas are folded into the node. Properties and required
    names are united; any other keyword keeps its first value (a second ``pattern`` is a constraint
    Gemini cannot express, and the client validates the tool input itself)."""
    for sub in subs:
        if not isinstance(sub, dict):
            continue
        for key, value in sub.items():
            if key == "properties" and isinstance(value, dict):
                props = out.setdefault("properties", {})
                props.update({k: v for k, v in value.items() if k not in props})
            elif key == "required" and isinstance(value, list):
                have = out.get("required", [])
                out["required"] = [*have, *(r for r in value if r not in have)]
            else:
                out.setdefault(key, value)
