"""What OpenRouter's ``GET /models`` says about each model, parsed once (pure: no I/O).

One entry of the answer (``{"data": [Model, ...]}``, openrouter-api-and-mapping.md §6.1) becomes a
:class:`ModelFacts`: prices in USD per token (``pricing`` holds decimal strings), the context length,
the top provider's ``max_completion_tokens`` and the capabilities the gateway checks (tools and
reasoning from ``supported_parameters``, image input from ``architecture.input_modalities``). A field
that is missing or of the wrong type is unknown (None), never an error: the catalogue is advice.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Prices:
    """USD per token: input (prompt), output (completion), cache reads and cache writes."""

    input: float | None = None
    output: float | None = None
    cache_read: float | None = None
    cache_write: float | None = None

    def cost(self, input_tokens: int, output_tokens: int, cache_read: int, cache_write: int) -> float | None:
        """The cost of these tokens, or None when a price the usage needs is unknown. Cache reads
        and writes without their own price are charged as input, as providers without caching do."""
        if self.input is None or self.output is None:
            return None
        read = self.cache_read if self.cache_read is not None else self.input
        write = self.cache_write if self.cache_write is not None else self.input
        return input_tokens * self.input + output_tokens * self.output + cache_read * read + cache_write * write


@dataclass(frozen=True, slots=True)
class ModelFacts:
    id: str
    prices: Prices
    context_length: int | None = None
    max_completion_tokens: int | None = None
    capabilities: frozenset[str] | None = None  # of the gateway's names: tools, vision, reasoning, pdf


def _price(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        price = float(value)
    except (TypeError, ValueError):
        return None
    # OpenRouter uses "-1" for "varies by route" (openrouter/auto): unknown, not negative money.
    return price if math.isfinite(price) and price >= 0 else None


def _positive_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _capabilities(entry: Mapping[str, Any]) -> frozenset[str] | None:
    params = entry.get("supported_parameters")
    arch = entry.get("architecture")
    modalities = arch.get("input_modalities") if isinstance(arch, dict) else None
    if not isinstance(params, list) and not isinstance(modalities, list):
        return None
    caps = {"pdf"}  # OpenRouter parses PDFs for every model (its file-parser plugin)
    if isinstance(params, list):
        if "tools" in params:
            caps.add("tools")
        if "reasoning" in params or "include_reasoning" in params:
            caps.add("reasoning")
    else:
        caps |= {"tools", "reasoning"}
    if not isinstance(modalities, list) or "image" in modalities:
        caps.add("vision")
    return frozenset(caps)


def parse_model(entry: Any) -> ModelFacts | None:
    if not isinstance(entry, dict) or not isinstance(entry.get("id"), str) or not entry["id"]:
        return None
    pricing = entry.get("pricing")
    p = pricing if isinstance(pricing, dict) else {}
    prices = Prices(_price(p.get("prompt")), _price(p.get("completion")), _price(p.get("input_cache_read")),
                    _price(p.get("input_cache_write")))  # fmt: skip
    top = entry.get("top_provider")
    top = top if isinstance(top, dict) else {}
    context = _positive_int(entry.get("context_length")) or _positive_int(top.get("context_length"))
    return ModelFacts(entry["id"], prices, context, _positive_int(top.get("max_completion_tokens")),
                      _capabilities(entry))  # fmt: skip


def parse_models(answer: Any) -> dict[str, ModelFacts]:
    """``{"data": [...]}`` → facts by model id; an answer of another shape is an error (ValueError)."""
    data = answer.get("data") if isinstance(answer, dict) else None
    if not isinstance(data, list):
        raise ValueError("the answer has no 'data' list of models")
    out: dict[str, ModelFacts] = {}
    for entry in data:
        facts = parse_model(entry)
        if facts is not None:
            out[facts.id] = facts
    if not out:
        raise ValueError("the answer lists no models")
    return out


def lookup(facts: Mapping[str, ModelFacts], model: str) -> ModelFacts | None:
    """The entry for an upstream model id; a variant (``:nitro``, ``:floor``, ``:online``) that is not
    listed itself takes its base model's entry."""
    found = facts.get(model)
    if found is None and ":" in model:
        found = facts.get(model.rsplit(":", 1)[0])
    return found
