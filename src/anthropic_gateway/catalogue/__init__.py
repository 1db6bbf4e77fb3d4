"""The model catalogue: what OpenRouter's GET /models says about prices, limits and capabilities."""

from anthropic_gateway.catalogue.facts import ModelFacts, Prices, parse_models
from anthropic_gateway.catalogue.service import Catalogue

__all__ = ["Catalogue", "ModelFacts", "Prices", "parse_models"]
