"""Each request's cost: OpenRouter's usage.cost when the answer carries it (streamed or not), else
the configured prices with cache reads and writes priced apart; the non-streamed answer's header,
the access log and the ledger all carry the same figure."""

from __future__ import annotations

import json
import sqlite3
import time
from typing import Any

import pytest

from anthropic_gateway.catalogue import Prices
from anthropic_gateway.model_config import ModelPrices
from anthropic_gateway.ops.cost import Pricer, configured_prices, upstream_cost
from anthropic_gateway.ops.record import RequestRecord
from conftest import GATEWAY_ENV, GatewayProcess, SpawnGateway
from e2e import parse_sse, post_raw
from fake_upstream import FakeUpstream, Reply, completion, finish_chunk, text_chunk, usage, usage_chunk

PRICES = '{"test/sonnet": {"input": 3, "output": 15, "cache_read": 0.3, "cache_write": 3.75}}'
HELLO = {"model": "claude-sonnet-5", "max_tokens": 10, "messages": [{"role": "user", "content": "Hi"}]}
# 750 input + 100 output + 200 cache reads + 50 cache writes at $3 / $15 / $0.30 / $3.75 per million.
PRICED = (750 * 3 + 100 * 15 + 200 * 0.3 + 50 * 3.75) / 1e6


def with_cost(u: dict[str, Any], cost: float, **extra: Any) -> dict[str, Any]:
    return {**u, "cost": cost, "is_byok": False, "cost_details": {"upstream_inference_cost": None}, **extra}


def access_line(gw: GatewayProcess, request_id: str, timeout: float = 5.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        for line in gw.log_text().splitlines():
            if line.startswith('{"time"') and json.loads(line)["request_id"] == request_id:
                return dict(json.loads(line))
        assert time.monotonic() < deadline, f"no access line for {request_id}"
        time.sleep(0.05)


def ledger_costs(gw: GatewayProcess, timeout: float = 5.0) -> dict[str, float | None]:
    deadline = time.monotonic() + timeout
    while True:
        with sqlite3.connect(gw.log_path.with_suffix(".db")) as db:
            rows = dict(db.execute("SELECT request_id, cost_usd FROM ledger").fetchall())
        if len(rows) >= 4 or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)


def test_cost_from_usage_cost_or_the_configured_prices(spawn_gateway: SpawnGateway, upstream: FakeUpstream) -> None:
    gw = spawn_gateway({**GATEWAY_ENV, "ANTHROPIC_GATEWAY_BACKEND_KIND": "openrouter",
                        "ANTHROPIC_GATEWAY_PRICES": PRICES})  # fmt: skip
    base = usage(1000, 100, cached=200, cache_write=50)
    upstream.expect(
        Reply.json(completion("ok", usage_=with_cost(base, 0.0091845))),
        Reply.stream([text_chunk("ok"), finish_chunk("stop"), {**usage_chunk(1000, 100), "usage": with_cost(base, 0.0012)}]),
        Reply.json(completion("ok", usage_=base)),  # no cost reported: the configured prices
        Reply.stream([text_chunk("ok"), finish_chunk("stop"), usage_chunk(1000, 100, cached=200, cache_write=50)]),
    )  # fmt: skip
    reported = post_raw(gw.url, "/v1/messages", HELLO, headers={"x-request-id": "cost-1"})
    streamed = post_raw(gw.url, "/v1/messages", {**HELLO, "stream": True}, headers={"x-request-id": "cost-2"})
    priced = post_raw(gw.url, "/v1/messages", HELLO, headers={"x-request-id": "cost-3"})
    priced_stream = post_raw(gw.url, "/v1/messages", {**HELLO, "stream": True}, headers={"x-request-id": "cost-4"})
    assert [r.status_code for r in (reported, streamed, priced, priced_stream)] == [200] * 4
    assert reported.headers["anthropic-gateway-cost-usd"] == "0.00918450"
    assert priced.headers["anthropic-gateway-cost-usd"] == f"{PRICED:.8f}"
    assert "anthropic-gateway-cost-usd" not in streamed.headers  # headers go before the usage
    assert parse_sse(streamed.content)[-1].event == "message_stop"

    expected = {"cost-1": 0.0091845, "cost-2": 0.0012, "cost-3": PRICED, "cost-4": PRICED}
    assert {rid: access_line(gw, rid)["cost_usd"] for rid in expected} == pytest.approx(expected)
    assert ledger_costs(gw) == pytest.approx(expected)


def test_no_price_no_cost(spawn_gateway: SpawnGateway, upstream: FakeUpstream) -> None:
    gw = spawn_gateway(GATEWAY_ENV)
    upstream.expect(Reply.json(completion("ok", usage_=usage(10, 2))))
    resp = post_raw(gw.url, "/v1/messages", HELLO, headers={"x-request-id": "free-1"})
    assert resp.status_code == 200 and "anthropic-gateway-cost-usd" not in resp.headers
    assert "cost_usd" not in access_line(gw, "free-1")


def test_upstream_cost_reads_openrouter_usage() -> None:
    assert upstream_cost({"cost": 0.5}) == 0.5
    assert upstream_cost({"cost": 0}) == 0.0
    # BYOK: OpenRouter's fee plus what the provider billed the user's own key.
    assert upstream_cost({"cost": 0.01, "is_byok": True, "cost_details": {"upstream_inference_cost": 0.2}}) == pytest.approx(0.21)
    for bad in (None, [], {}, {"cost": "1"}, {"cost": True}, {"cost": -1}):
        assert upstream_cost(bad) is None


def _rec(**fields: Any) -> RequestRecord:
    rec = RequestRecord("r", "POST", "/v1/messages")
    rec.backend, rec.upstream_model = "default", "a/b"
    rec.set_usage({"input_tokens": 1000, "output_tokens": 1000, "cache_read_input_tokens": 1000,
                   "cache_creation_input_tokens": 1000})  # fmt: skip
    for name, value in fields.items():
        setattr(rec, name, value)
    return rec


def test_the_upstream_figure_wins_then_the_model_that_answered() -> None:
    pricer = Pricer({"a/b": ModelPrices(input=1, output=2), "a/fallback": ModelPrices(input=10, output=20, cache_read=1,
                                                                                        cache_write=5)})  # fmt: skip
    assert pricer.price(_rec(upstream_cost_usd=0.25)) == 0.25
    assert pricer.price(_rec()) == pytest.approx((1000 * 1 + 1000 * 2 + 1000 * 1 + 1000 * 1) / 1e6)
    # OpenRouter's `models` fallback answered: that model's prices.
    assert pricer.price(_rec(response_model="a/fallback")) == pytest.approx((10_000 + 20_000 + 1000 + 5000) / 1e6)
    assert pricer.price(_rec(upstream_model="c/d")) is None
    assert configured_prices({"m": ModelPrices(input=2, output=4, cache_read=0.5)}) == {
        "m": Prices(2e-6, 4e-6, 0.5e-6, None)}
