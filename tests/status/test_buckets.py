"""The status page's ring buckets: exact counts per 10 seconds, the window over the last hour, slots
reused after an hour, histogram percentiles, today's cost, the last 50 requests, bounded names."""

from __future__ import annotations

import random
from typing import Any

import pytest

from anthropic_gateway.ops.record import RequestRecord
from anthropic_gateway.status.buckets import (
    MAX_NAMES,
    RATIO,
    RECENT,
    SLOTS,
    STEP,
    Histogram,
    StatusBuckets,
    bin_of,
    upper_edge,
)
from anthropic_gateway.status.data import RANGES, from_buckets

T0 = 1_796_000_000.0  # a multiple of 10: bucket edges fall on whole numbers


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def rec(status: int = 200, *, route: str = "/v1/messages", model: str | None = "claude-sonnet-5", key: str = "key-a",
        seconds: float = 0.5, ttft: float | None = None, upstream: float = 0.0, tokens: tuple[int, int, int, int] = (0, 0, 0, 0),
        cost: float | None = None, cache: str | None = None, backend: str | None = "default",
        started_at: float = T0) -> RequestRecord:  # fmt: skip
    r = RequestRecord("req_1", "POST", route, started=100.0, started_at=started_at, route=route, key_label=key,
                      model=model, status=status, backend=backend, cost_usd=cost, cache=cache,
                      upstream_seconds=upstream)  # fmt: skip
    r.finished = 100.0 + seconds
    if ttft is not None:
        r.first_token_at = 100.0 + ttft
    r.input_tokens, r.output_tokens, r.cache_read_tokens, r.cache_write_tokens = tokens
    return r


def test_counts_land_in_the_bucket_of_their_10_seconds() -> None:
    clock = Clock()
    b = StatusBuckets(clock)
    b.record(rec(200))
    b.record(rec(200))
    clock.now = T0 + 9.9
    b.record(rec(429))
    clock.now = T0 + 10
    b.record(rec(502))
    window = b.window(20, T0 + 10)
    assert [w.slot if w else None for w in window] == [int(T0 // STEP), int(T0 // STEP) + 1]
    first, second = window
    assert first is not None and second is not None
    assert (first.requests, first.classes, second.requests, second.classes) == (3, [0, 2, 0, 1, 0], 1, [0, 0, 0, 0, 1])


def test_operations_routes_are_not_traffic_and_non_model_routes_count_requests_only() -> None:
    b = StatusBuckets(Clock())
    for route in ("/status/data", "/health", "/metrics", "/v1/usage", "/"):
        b.record(rec(200, route=route))
    b.record(rec(200, route="/v1/messages/count_tokens", tokens=(50, 0, 0, 0)))
    b.record(rec(404, route="/v1/models/{model_id:path}", model=None))
    bucket = b.window(10, T0)[0]
    assert bucket is not None
    assert (bucket.requests, bucket.model_requests, bucket.tokens, bucket.latency.count) == (2, 0, [0, 0, 0, 0], 0)
    assert list(b.recent) == []


def test_window_skips_quiet_buckets_and_an_hour_later_the_slot_is_reused() -> None:
    clock = Clock()
    b = StatusBuckets(clock)
    b.record(rec(200))
    clock.now = T0 + 30
    b.record(rec(200))
    window = b.window(60, T0 + 30)
    assert [w is not None for w in window] == [False, False, True, False, False, True]
    clock.now = T0 + SLOTS * STEP  # the same slot of the ring, an hour on
    b.record(rec(500))
    window = b.window(3600, clock.now)
    assert len(window) == SLOTS
    live = [w for w in window if w is not None]
    assert [(w.requests, w.classes[4]) for w in live] == [(1, 0), (1, 1)]  # T0+30's bucket and the new one


def test_tokens_cost_cache_and_backends_are_summed() -> None:
    b = StatusBuckets(Clock())
    b.record(rec(200, tokens=(1000, 100, 200, 50), cost=0.01, cache="miss", upstream=0.4, key="key-a"))
    b.record(rec(200, tokens=(300, 30, 100, 0), cost=0.002, cache="hit", model="claude-haiku-4-5", key="key-b",
                 backend=None))  # fmt: skip
    failed = rec(502, backend="default", upstream=0.1)
    failed.error_type = "api_error"  # no upstream answer: the backend's error
    b.record(failed)
    bucket = b.window(10, T0)[0]
    assert bucket is not None
    assert bucket.tokens == [1300, 130, 300, 50]
    assert bucket.cost == pytest.approx(0.012)
    assert bucket.cost_by_model == pytest.approx({"claude-sonnet-5": 0.01, "claude-haiku-4-5": 0.002})
    assert bucket.cost_by_key == pytest.approx({"key-a": 0.01, "key-b": 0.002})
    assert (bucket.cache_hits, bucket.cache_misses) == (1, 1)
    assert bucket.backends["default"][:2] == [2, 1]
    assert bucket.backends["default"][2] == pytest.approx(0.5)


def test_histogram_percentiles_are_within_one_bin_and_capped_at_the_largest_value() -> None:
    h = Histogram()
    for ms in range(1, 101):  # 1 .. 100 ms
        h.observe(ms / 1000)
    p50, p95, p99, p100 = h.percentiles((0.5, 0.95, 0.99, 1.0))
    for got, want in ((p50, 0.050), (p95, 0.095), (p99, 0.099)):
        assert got is not None and want <= got < want * RATIO
    assert p100 == 0.1
    assert Histogram().percentiles((0.5,)) == [None]
    for seconds in (0.00001, 0.0001, 0.003, 1.0, 42.0, 1e6):
        b = bin_of(seconds)
        assert seconds <= upper_edge(b) or b == 130
        assert b == 0 or upper_edge(b - 1) < seconds


def test_latency_ttft_and_overhead() -> None:
    b = StatusBuckets(Clock())
    b.record(rec(200, seconds=0.2, ttft=0.05, upstream=0.19))
    b.record(rec(200, seconds=0.4, ttft=None, upstream=0.39))
    body = from_buckets(b, RANGES["15m"], T0)
    tot = body["totals"]
    assert tot["latency_ms"]["p50"] is not None and 200 <= tot["latency_ms"]["p50"] < 200 * RATIO
    assert tot["latency_ms"]["p99"] == 400.0
    assert tot["ttft_ms"] == {"p50": 50.0, "p95": 50.0, "p99": 50.0}
    assert tot["overhead_ms"]["p99"] is not None and 10 <= tot["overhead_ms"]["p99"] < 10 * RATIO


def test_the_last_50_requests_newest_last_without_bodies() -> None:
    clock = Clock()
    b = StatusBuckets(clock)
    for n in range(RECENT + 5):
        clock.now = T0 + n
        b.record(rec(200, tokens=(n, 1, 0, 0)))
    assert len(b.recent) == RECENT
    assert [r.input_tokens for r in b.recent] == list(range(5, RECENT + 5))
    assert set(b.recent[-1].as_json()) == {"at", "key", "model", "status", "latency_ms", "input_tokens",
                                          "output_tokens", "cache_read_tokens", "cache_write_tokens", "cost_usd",
                                          "stream"}  # fmt: skip


def test_today_counts_since_midnight_and_starts_again_the_next_day() -> None:
    b = StatusBuckets(Clock())
    midnight = (T0 // 86400 + 1) * 86400
    b.record(rec(200, cost=0.5, started_at=midnight - 1))
    b.record(rec(200, cost=0.25, started_at=midnight + 1, key="key-b"))
    assert (b.today.day, b.today.requests, b.today.cost) == (int(midnight // 86400), 1, 0.25)
    assert b.today.by_key == {"key-b": [1, 0.25]}


def test_client_chosen_names_are_bounded() -> None:
    b = StatusBuckets(Clock())
    for n in range(MAX_NAMES + 10):
        b.record(rec(200, model=f"vendor/model-{n}", cost=0.001))
    bucket = b.window(10, T0)[0]
    assert bucket is not None
    assert len(bucket.cost_by_model) == MAX_NAMES + 1
    assert bucket.cost_by_model["other"] == pytest.approx(0.01)
    assert len(b.today.by_model) == MAX_NAMES + 1 and b.today.by_model["other"][0] == 10


def test_from_buckets_series_and_totals_are_exact() -> None:
    clock = Clock()
    b = StatusBuckets(clock)
    for _ in range(4):
        b.record(rec(200, tokens=(100, 10, 300, 0), cost=0.003))
    b.record(rec(400))
    clock.now = T0 + 20
    b.record(rec(503, tokens=(0, 0, 0, 0)))
    body = from_buckets(b, RANGES["15m"], T0 + 20)
    s, tot = body["series"], body["totals"]
    assert len(s["t"]) == 90 and s["t"][-1] == T0 + 20 and body["end"] - body["start"] == 900
    assert s["requests"][-3:] == [0.5, 0, 0.1]
    assert (s["2xx"][-3], s["4xx"][-3], s["5xx"][-1]) == (0.4, 0.1, 0.1)
    assert s["p50"][-2] is None and s["input"][-3] == 40.0
    assert tot["requests"] == 6 and tot["by_class"] == {"1xx": 0, "2xx": 4, "3xx": 0, "4xx": 1, "5xx": 1}
    assert (tot["errors"], tot["error_rate"]) == (2, 0.3333)
    assert tot["tokens"] == {"input": 400, "output": 40, "cache_read": 1200, "cache_write": 0}
    assert tot["cache_read_share"] == 0.75
    assert tot["cost_usd"] == 0.012 and tot["cost_per_hour"] == 0.048
    assert tot["cost_by_model"] == [{"name": "claude-sonnet-5", "cost_usd": 0.012}]


def _rounded(x: Any) -> Any:
    if isinstance(x, float):
        return round(x, 4)
    if isinstance(x, dict):
        return {k: _rounded(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_rounded(v) for v in x]
    return x


def test_kept_sums_equal_sums_made_afresh_as_time_goes_by() -> None:
    """The sums and points kept for the buckets that are over give what summing every bucket again
    gives, at polls over 70 minutes of traffic (the ring wrapping included)."""
    rng = random.Random(3)
    clock = Clock()
    kept, fresh = StatusBuckets(clock), StatusBuckets(clock)
    models, keys = ["m-a", "m-b", "vendor/m-c"], ["key-a", "key-b", "admin"]
    for step in range(70 * 6):
        for _ in range(rng.randint(0, 4)):
            clock.now = T0 + step * STEP + rng.uniform(0, STEP - 0.01)
            r = rec(rng.choice((200, 200, 200, 429, 500)), model=rng.choice(models), key=rng.choice(keys),
                    seconds=rng.uniform(0.01, 3), ttft=rng.uniform(0.001, 0.01), upstream=0.005,
                    tokens=(rng.randint(0, 99), rng.randint(0, 9), rng.randint(0, 999), 0), cost=rng.uniform(0, 0.01),
                    cache=rng.choice(("hit", "miss", None)), backend=rng.choice(("default", "local")))  # fmt: skip
            kept.record(r)
            fresh.record(r)
        if step % 7 and step % 6:
            continue  # a poll every few buckets, and at each minute's start
        for name in ("15m", "1h"):
            now = T0 + step * STEP + rng.uniform(0, STEP - 0.01)
            fresh.sums.clear()
            for b in fresh.ring:
                b.point = None
            assert _rounded(from_buckets(kept, RANGES[name], now)) == _rounded(from_buckets(fresh, RANGES[name], now))
    assert set(kept.sums) == {900, 3600}


def test_records_in_the_same_ten_seconds_share_a_bucket_and_a_new_ten_seconds_resets_its_slot() -> None:
    clock = Clock()
    sb = StatusBuckets(clock)
    sb.record(rec())
    clock.now = T0 + STEP - 0.5
    sb.record(rec(500))
    b = sb.ring[int(T0 // STEP) % SLOTS]
    assert (b.slot, b.requests, b.classes, b.latency.count) == (int(T0 // STEP), 2, [0, 1, 0, 0, 1], 2)
    clock.now = T0 + SLOTS * STEP  # the same ring slot an hour later: reused, counted afresh
    sb.record(rec())
    assert (b.slot, b.requests, b.classes) == (int(T0 // STEP) + SLOTS, 1, [0, 1, 0, 0, 0])


def test_a_record_for_ten_seconds_already_summed_clears_the_sums_even_in_a_current_bucket() -> None:
    # The clock went back (data.py summed the buckets up to sums_slot): the same bucket as the last
    # record, but the page's sums must be made again.
    clock = Clock()
    sb = StatusBuckets(clock)
    sb.record(rec())
    slot = int(T0 // STEP)
    sb.sums, sb.sums_slot = {60: (slot + 1, object())}, slot + 1
    b = sb.ring[slot % SLOTS]
    b.point = ("figures",)
    sb.record(rec())
    assert (sb.sums, sb.sums_slot, b.point, b.requests) == ({}, 0, None, 2)
