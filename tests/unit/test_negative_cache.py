"""negative_cache.py: which refusals are remembered, under which key, for how long."""

from __future__ import annotations

import time
from typing import Any

import msgspec
import pytest

from anthropic_gateway import negative_cache
from anthropic_gateway.negative_cache import NegativeCache, normal_length

ERROR = b'{"error": {"code": 400, "message": "bad"}}'


def body(**reasoning: Any) -> dict[str, Any]:
    b: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 10}
    if reasoning:
        b["reasoning"] = reasoning
    return b


def remember(cache: NegativeCache, b: dict[str, Any], status: int = 400, key: str = "k") -> None:
    cache.remember("or", key, b, msgspec.json.encode(b), status, ERROR, {})


def lookup(cache: NegativeCache, b: dict[str, Any], key: str = "k") -> negative_cache.Refusal | None:
    return cache.lookup("or", key, b, msgspec.json.encode(b))


def test_the_same_body_gets_the_refusal_and_another_does_not() -> None:
    cache = NegativeCache(60)
    remember(cache, body())
    hit = lookup(cache, body())
    assert hit is not None and (hit.status, hit.body) == (400, ERROR)
    assert lookup(cache, {**body(), "max_tokens": 11}) is None  # same length, other body
    assert lookup(cache, {**body(), "max_tokens": 100}) is None
    assert lookup(cache, body(), key="other-key") is None
    assert cache.lookup("other-backend", "k", body(), msgspec.json.encode(body())) is None


@pytest.mark.parametrize("first", [{"effort": "medium", "exclude": True}, {"exclude": True}])
def test_reasoning_exclude_is_not_part_of_the_key(first: dict[str, Any]) -> None:
    # 2.1.332's third retry drops thinking.display: on OpenRouter only reasoning.exclude changes.
    cache = NegativeCache(60)
    remember(cache, body(**first))
    rest = {k: v for k, v in first.items() if k != "exclude"}
    assert lookup(cache, body(**rest) if rest else {**body(), "reasoning": {}}) is not None
    assert lookup(cache, body(effort="high")) is None


@pytest.mark.parametrize("reasoning", [{}, {"effort": "low", "exclude": True}, {"exclude": False}, {"exclude": True}])
def test_normal_length_is_the_length_of_what_is_hashed(reasoning: dict[str, Any]) -> None:
    b = {**body(), "reasoning": reasoning}
    stripped = {**b, "reasoning": {k: v for k, v in reasoning.items() if k != "exclude"}}
    assert normal_length(b, msgspec.json.encode(b)) == len(msgspec.json.encode(stripped))


@pytest.mark.parametrize("status", [401, 402, 403, 408, 409, 429, 500, 503])
def test_key_account_retryable_and_server_errors_are_not_remembered(status: int) -> None:
    cache = NegativeCache(60)
    remember(cache, body(), status)
    assert lookup(cache, body()) is None


@pytest.mark.parametrize("status", [400, 404, 413, 422])
def test_request_errors_are_remembered(status: int) -> None:
    cache = NegativeCache(60)
    remember(cache, body(), status)
    assert lookup(cache, body()) is not None


def test_entries_expire_and_ttl_zero_remembers_nothing() -> None:
    cache = NegativeCache(0.05)
    remember(cache, body())
    time.sleep(0.06)
    assert lookup(cache, body()) is None
    off = NegativeCache(0)
    remember(off, body())
    assert lookup(off, body()) is None


def test_the_oldest_entry_goes_past_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(negative_cache, "MAX_ENTRIES", 2)
    cache = NegativeCache(60)
    for n in (1, 2, 3):
        remember(cache, {**body(), "max_tokens": n})
    assert lookup(cache, {**body(), "max_tokens": 1}) is None
    assert lookup(cache, {**body(), "max_tokens": 2}) is not None
    assert lookup(cache, {**body(), "max_tokens": 3}) is not None


def test_a_refusal_from_another_replica_is_adopted_for_the_time_it_has_left() -> None:
    told: list[tuple[bytes, negative_cache.Refusal]] = []
    here, there = NegativeCache(60), NegativeCache(60)
    here.listener = lambda key, refusal: told.append((key, refusal))
    remember(here, body())
    [(key, refusal)] = told
    assert key == negative_cache.make_key("or", "k", body(), msgspec.json.encode(body()))
    there.adopt(key, refusal.status, refusal.body, {}, ttl=0.05, length=refusal.length)
    hit = lookup(there, body())
    assert hit is not None and (hit.status, hit.body) == (400, ERROR)
    time.sleep(0.06)
    assert lookup(there, body()) is None
    there.adopt(key, 429, ERROR, {}, ttl=30, length=refusal.length)  # never a retryable status
    assert lookup(there, body()) is None
    off = NegativeCache(0)  # a replica with the memory off takes none
    off.adopt(key, 400, ERROR, {}, ttl=30, length=refusal.length)
    assert lookup(off, body()) is None
