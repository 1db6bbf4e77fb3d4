"""Parsing OpenRouter's GET /models answer: prices per token, limits, capabilities; nothing crashes."""

from __future__ import annotations

from typing import Any

import pytest

from anthropic_gateway.catalogue.facts import ModelFacts, Prices, lookup, parse_model, parse_models
from catalogue import DEEPSEEK, SONNET, models_answer


def test_the_documented_answer_becomes_facts_per_model() -> None:
    facts = parse_models(models_answer())
    assert sorted(facts) == [SONNET, DEEPSEEK, "openrouter/auto"]
    assert facts[SONNET] == ModelFacts(SONNET, Prices(0.000003, 0.000015, 0.0000003, 0.00000375), 1_000_000, 64_000,
                                       frozenset({"tools", "reasoning", "vision", "pdf"}))  # fmt: skip
    assert facts[DEEPSEEK] == ModelFacts(DEEPSEEK, Prices(0.0000003, 0.00000085), 32_768, 8_192,
                                         frozenset({"tools", "pdf"}))  # fmt: skip
    # "-1" is OpenRouter's "varies": unknown, not a negative price; no supported_parameters: not restricted.
    auto = facts["openrouter/auto"]
    assert auto.prices == Prices() and auto.max_completion_tokens is None
    assert auto.capabilities == frozenset({"tools", "reasoning", "vision", "pdf"})


@pytest.mark.parametrize("entry", [None, 3, {}, {"id": 7}, {"id": ""}])
def test_an_entry_without_an_id_is_skipped(entry: Any) -> None:
    assert parse_model(entry) is None


def test_fields_of_the_wrong_type_are_unknown_never_an_error() -> None:
    facts = parse_model({"id": "x/y", "pricing": {"prompt": "free", "completion": True, "input_cache_read": "nan"},
                         "context_length": "big", "top_provider": {"max_completion_tokens": -5, "context_length": 4096},
                         "architecture": "text", "supported_parameters": "tools"})  # fmt: skip
    assert facts == ModelFacts("x/y", Prices(), 4096, None, None)


@pytest.mark.parametrize("answer", [{}, {"data": {}}, [], {"data": []}, {"data": [{"name": "no id"}]}])
def test_an_answer_of_another_shape_is_refused(answer: Any) -> None:
    with pytest.raises(ValueError):
        parse_models(answer)


def test_a_variant_takes_its_base_models_entry() -> None:
    facts = parse_models(models_answer())
    assert lookup(facts, SONNET + ":nitro") is facts[SONNET]
    assert lookup(facts, "other/model:free") is None


def test_cost_prices_cache_reads_and_writes_separately() -> None:
    p = Prices(input=3e-6, output=15e-6, cache_read=0.3e-6, cache_write=3.75e-6)
    assert p.cost(750, 100, 200, 50) == pytest.approx(750 * 3e-6 + 100 * 15e-6 + 200 * 0.3e-6 + 50 * 3.75e-6)
    # Without cache prices, cache tokens cost what input does; without an output price, no cost at all.
    assert Prices(1e-6, 2e-6).cost(10, 10, 5, 5) == pytest.approx(20e-6 + 20e-6)
    assert Prices(input=1e-6).cost(10, 0, 0, 0) is None
