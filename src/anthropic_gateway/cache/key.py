"""The response cache's key: a contract, stable across processes and versions of this file.

    key = hex SHA-256 of the canonical JSON of
      {"v": 1,
       "partition": <the caller's key label, or "*" when the cache is shared>,
       "backend": <resolved backend name>, "upstream_model": <resolved upstream model id>,
       "request": <the Messages request fields that can change the answer>}

The request part holds ``system`` (without Claude Code's ``x-anthropic-billing-header`` attribution
block), ``messages``, ``tools``, ``tool_choice``, ``max_tokens``, ``temperature``, ``top_p``,
``top_k``, ``stop_sequences``, ``thinking``, ``output_config`` (effort and format),
``output_format`` and the extra sampling parameters (``seed``, penalties, ``min_p``, ``top_a``,
``repetition_penalty``, ``logit_bias``, ``response_format``, ``reasoning``, ``provider``, ``models``,
``transforms``). Left out, as they cannot change the answer: ``model`` (the resolved target stands
for it), ``stream`` (a hit is served in either mode), ``metadata``, ``service_tier``,
``context_management``, and every ``cache_control`` mark. Fields that are absent or null are
omitted.

Canonical JSON: UTF-8, object keys sorted, no insignificant whitespace, numbers in the type the
request schema decodes them to (``temperature: 0`` is ``0.0``), in orjson's shortest round-trip form
(integers past 64 bits, which orjson cannot write, exactly as given). Not Python's ``hash()``: that is keyed
per process.
"""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec
import orjson

from anthropic_gateway.routing import Route
from anthropic_gateway.schemas import MessagesRequest
from anthropic_gateway.translate.prompt_cache import system_without_attribution

KEY_VERSION = 1
KEY_FIELDS: tuple[str, ...] = (
    "system", "messages", "tools", "tool_choice", "max_tokens", "temperature", "top_p", "top_k",
    "stop_sequences", "thinking", "output_config", "output_format", "seed", "frequency_penalty",
    "presence_penalty", "min_p", "top_a", "repetition_penalty", "logit_bias", "response_format", "reasoning",
    "provider", "models", "transforms",
)  # fmt: skip
_encode = msgspec.json.Encoder().encode  # requests hold msgspec.Raw (tool schemas, base64 data)
_decode = msgspec.json.Decoder().decode  # integers past 64 bits stay integers (orjson makes them floats)


def _strip(value: Any) -> Any:
    """Nulls and cache_control marks removed, recursively."""
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if v is not None and k != "cache_control"}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def request_part(req: MessagesRequest) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for name in KEY_FIELDS:
        value = getattr(req, name)
        if name == "system":
            value = system_without_attribution(value)
        if value is not None:
            fields[name] = value
    plain = _decode(_encode(fields))
    out: dict[str, Any] = _strip(plain)
    return out


def canonical(req: MessagesRequest, route: Route, partition: str) -> bytes:
    doc = {
        "v": KEY_VERSION,
        "partition": partition,
        "backend": route.backend.name,
        "upstream_model": route.upstream_model,
        "request": request_part(req),
    }
    try:
        return orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:  # an integer past 64 bits: the same canonical form from msgspec
        return msgspec.json.encode(doc, order="sorted")


def cache_key(req: MessagesRequest, route: Route, partition: str) -> str:
    return hashlib.sha256(canonical(req, route, partition)).hexdigest()
