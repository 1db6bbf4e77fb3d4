"""Extension parameters counted per backend kind: forwarded where the kind takes them, dropped where
not, as the upstream request shows."""

from __future__ import annotations

import json

from anthropic_gateway.backends import KINDS
from anthropic_gateway.ops.param_stats import ParamStats
from anthropic_gateway.schemas import decode_messages_request

BODY = {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "Hi"}]}


def _req(**extra: object) -> object:
    return decode_messages_request(json.dumps({**BODY, **extra}).encode())


def test_counts_per_kind_and_outcome() -> None:
    stats = ParamStats()
    assert stats.snapshot() == {}
    stats.count(_req(provider={"sort": "price"}, seed=7), KINDS["openrouter"])  # type: ignore[arg-type]
    stats.count(_req(provider={"sort": "price"}, min_p=0.1, seed=1), KINDS["openai"])  # type: ignore[arg-type]
    stats.count(_req(seed=2), KINDS["openai"])  # type: ignore[arg-type]
    stats.count(_req(), KINDS["openai-compatible"])  # type: ignore[arg-type]
    assert stats.snapshot() == {
        "openrouter": {"forwarded": {"provider": 1, "seed": 1}, "dropped": {}},
        "openai": {"forwarded": {"seed": 2}, "dropped": {"min_p": 1, "provider": 1}},
    }


def test_counts_are_a_prometheus_family() -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    stats = ParamStats()
    stats.count(_req(provider={"sort": "price"}, min_p=0.1), KINDS["openai"])  # type: ignore[arg-type]

    class _Collector:
        def collect(self):  # type: ignore[no-untyped-def]
            return stats.collect()

    registry = CollectorRegistry()
    registry.register(_Collector())  # type: ignore[arg-type]
    text = generate_latest(registry).decode()
    assert 'anthropic_gateway_extension_parameters_total{kind="openai",outcome="dropped",parameter="min_p"} 1.0' in text
    assert 'anthropic_gateway_extension_parameters_total{kind="openai",outcome="dropped",parameter="provider"} 1.0' in text
