"""Each request's cost in USD, computed once, at the end of the answer, before the record is emitted.

First match wins:
1. the upstream's own figure: OpenRouter's ``usage.cost`` (credits, ≈ USD; it already prices 1-hour
   cache writes above 5-minute ones, and for a BYOK call ``cost_details.upstream_inference_cost`` —
   what the provider billed the user's own key — is added);
2. the configuration's ``[prices."MODEL"]`` (USD per million tokens);
3. the model catalogue's prices for the backend that answered (USD per token).
Cache reads and cache writes are priced separately, from the counts the upstream reported. The model
priced is the one the upstream says answered (``response_model``; OpenRouter's ``models`` fallbacks
bill that one) when it has a price, else the upstream model the gateway asked for. No price: no cost
(``cost_usd`` stays None), never a guess.

It runs in the service (not as a recorder sink) because the non-streamed answer carries the figure
in its ``anthropic-gateway-cost-usd`` header, which is sent before the record is emitted; batch
workers and the response cache call the same service and get the same figure.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from anthropic_gateway.catalogue import Catalogue, Prices
from anthropic_gateway.model_config import ModelPrices
from anthropic_gateway.ops.record import RequestRecord

COST_HEADER = "anthropic-gateway-cost-usd"
PER_MILLION = 1e-6


def upstream_cost(usage: Any) -> float | None:
    """The cost an OpenAI-style ``usage`` object reports (OpenRouter's ``cost``), or None."""
    if not isinstance(usage, dict):
        return None
    cost = usage.get("cost")
    if not isinstance(cost, int | float) or isinstance(cost, bool) or cost < 0:
        return None
    total = float(cost)
    details = usage.get("cost_details")
    if usage.get("is_byok") is True and isinstance(details, dict):
        extra = details.get("upstream_inference_cost")
        if isinstance(extra, int | float) and not isinstance(extra, bool) and extra > 0:
            total += float(extra)
    return total


def configured_prices(prices: Mapping[str, ModelPrices]) -> dict[str, Prices]:
    """``[prices]`` (USD per million tokens) as :class:`Prices` (USD per token)."""
    return {
        model: Prices(p.input * PER_MILLION, p.output * PER_MILLION,
                      None if p.cache_read is None else p.cache_read * PER_MILLION,
                      None if p.cache_write is None else p.cache_write * PER_MILLION)
        for model, p in prices.items()
    }  # fmt: skip


class Pricer:
    def __init__(self, prices: Mapping[str, ModelPrices], catalogue: Catalogue | None = None) -> None:
        self.configured = configured_prices(prices)
        self.catalogue = catalogue

    def prices_of(self, backend: str | None, model: str | None) -> Prices | None:
        if model is None:
            return None
        found = self.configured.get(model)
        if found is None and self.catalogue is not None:
            found = self.catalogue.prices(backend, model)
        return found

    def price(self, rec: RequestRecord) -> float | None:
        """Set ``rec.cost_usd`` from the upstream's figure or the prices (see the module's text)."""
        if rec.upstream_cost_usd is not None:
            rec.cost_usd = rec.upstream_cost_usd
            return rec.cost_usd
        prices = None
        if rec.response_model and rec.response_model != rec.upstream_model:
            prices = self.prices_of(rec.backend, rec.response_model)
        if prices is None:
            prices = self.prices_of(rec.backend, rec.upstream_model)
        cost = None if prices is None else prices.cost(rec.input_tokens, rec.output_tokens, rec.cache_read_tokens,
                                                      rec.cache_write_tokens)  # fmt: skip
        rec.cost_usd = None if cost is None else round(cost, 10)
        return rec.cost_usd


def cost_header(rec: RequestRecord) -> dict[str, str]:
    return {} if rec.cost_usd is None else {COST_HEADER: f"{rec.cost_usd:.8f}"}
