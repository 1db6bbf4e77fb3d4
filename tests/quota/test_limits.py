"""The limiters with a fake clock: windows, concurrency, tokens, budgets, allowed models — each test
once with the in-memory limiter and once with the Redis one (real Redis, a prefix of the test's own)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from anthropic_gateway.errors import BillingError, PermissionDeniedError, RateLimitError
from anthropic_gateway.quota.limits import Limiter, MemoryLimiter, SpendSource, day_start, month_start
from anthropic_gateway.quota.policy import KeyLimits
from anthropic_gateway.quota.redis_limits import RedisLimiter
from anthropic_gateway.settings import load_settings
from anthropic_gateway.shared.redis_state import RedisState
from redis_support import REDIS_URL

T0 = 1_764_547_200.0  # 2025-12-01T00:00:00Z


class Clock:
    def __init__(self) -> None:
        self.now = T0 + 30.0

    def __call__(self) -> float:
        return self.now


MakeLimiter = Callable[[SpendSource, Callable[[], float]], Any]


@pytest.fixture(params=["memory", "redis"])
async def make_limiter(request: pytest.FixtureRequest) -> AsyncIterator[MakeLimiter]:
    states: list[RedisState] = []
    prefix = request.getfixturevalue("redis_prefix") if request.param == "redis" else ""

    async def make(spend: SpendSource, clock: Callable[[], float]) -> Limiter:
        if request.param == "memory":
            return MemoryLimiter(spend, clock)
        settings = load_settings(environ={"ANTHROPIC_GATEWAY_REDIS_URL": REDIS_URL,
                                          "ANTHROPIC_GATEWAY_REDIS_PREFIX": prefix})  # fmt: skip
        state = RedisState(settings)
        await state.start()
        states.append(state)
        return RedisLimiter(state, spend, clock)

    yield make
    for state in states:
        await state.close()


def _limits(**kw: object) -> KeyLimits:
    return KeyLimits.model_validate(kw)


async def _no_spend(label: str, start: float, end: float) -> float:
    return 0.0


async def test_requests_per_minute_refuse_with_anthropic_headers_then_reset(make_limiter: MakeLimiter) -> None:
    clock = Clock()
    lim = await make_limiter(_no_spend, clock)
    limits = _limits(requests_per_minute=2)
    first = await lim.admit("team", limits, "m")
    assert first == {"anthropic-ratelimit-requests-limit": "2", "anthropic-ratelimit-requests-remaining": "1",
                     "anthropic-ratelimit-requests-reset": "2025-12-01T00:01:00Z"}  # fmt: skip
    await lim.admit("team", limits, "m")
    with pytest.raises(RateLimitError) as err:
        await lim.admit("team", limits, "m")
    assert err.value.headers["retry-after"] == "30"
    assert err.value.headers["anthropic-ratelimit-requests-remaining"] == "0"
    assert "limit of 2 requests per minute" in err.value.message
    await lim.admit("other", limits, "m")  # keys are counted apart
    clock.now += 30  # the next minute
    assert (await lim.admit("team", limits, "m"))["anthropic-ratelimit-requests-remaining"] == "1"


async def test_concurrency_counts_requests_in_flight(make_limiter: MakeLimiter) -> None:
    lim = await make_limiter(_no_spend, Clock())
    limits = _limits(max_concurrent=1)
    await lim.admit("k", limits, "m")
    with pytest.raises(RateLimitError, match="1 requests in flight"):
        await lim.admit("k", limits, "m")
    lim.finish("k", 0, 0.0)
    await lim.admit("k", limits, "m")


async def test_tokens_per_minute_count_finished_requests(make_limiter: MakeLimiter) -> None:
    clock = Clock()
    lim = await make_limiter(_no_spend, clock)
    limits = _limits(tokens_per_minute=100)
    await lim.admit("k", limits, "m")
    lim.finish("k", 60, 0.0)
    assert (await lim.admit("k", limits, "m"))["anthropic-ratelimit-tokens-remaining"] == "40"
    lim.finish("k", 60, 0.0)
    with pytest.raises(RateLimitError, match="100 tokens per minute"):
        await lim.admit("k", limits, "m")
    clock.now += 60
    await lim.admit("k", limits, "m")


async def test_budgets_start_from_the_ledger_and_grow_with_costs(make_limiter: MakeLimiter) -> None:
    asked: list[tuple[str, float, float]] = []

    async def spend(label: str, start: float, end: float) -> float:
        asked.append((label, start, end))
        return 0.75

    clock = Clock()
    lim = await make_limiter(spend, clock)
    limits = _limits(daily_budget_usd=1.0)
    await lim.admit("k", limits, "m")
    assert asked == [("k", T0, T0 + 86400)]  # today, UTC
    lim.finish("k", 10, 0.3)
    with pytest.raises(BillingError) as err:
        await lim.admit("k", limits, "m")
    assert err.value.http_status == 402 and err.value.error_type == "billing_error"
    assert "daily budget of $1 is spent ($1.0500 today, UTC); it renews at 2025-12-02T00:00:00Z" in err.value.message
    clock.now += 86400  # a new day asks the ledger again
    await lim.admit("k", limits, "m")
    assert len(asked) == 2
    monthly = _limits(monthly_budget_usd=0.5)
    with pytest.raises(BillingError, match=r"monthly budget of \$0\.5"):
        await lim.admit("j", monthly, "m")


async def test_a_key_may_be_kept_to_some_models(make_limiter: MakeLimiter) -> None:
    lim = await make_limiter(_no_spend, Clock())
    limits = _limits(models=("claude-*haiku*", "openai/gpt-4o-mini"))
    await lim.admit("k", limits, "claude-haiku-4-5")
    await lim.admit("k", limits, "OpenAI/GPT-4o-mini")
    with pytest.raises(PermissionDeniedError, match="may not use the model 'claude-opus-4-8'"):
        await lim.admit("k", limits, "claude-opus-4-8")


def test_period_starts() -> None:
    assert day_start(T0 + 3600) == T0
    assert month_start(T0 + 20 * 86400) == T0


async def test_a_budget_that_cannot_be_read_is_a_503_then_read_once_the_store_is_back() -> None:
    from anthropic_gateway.errors import APIError
    from anthropic_gateway.store import StoreError

    down = True

    async def spend(label: str, start: float, end: float) -> float:
        if down:
            raise StoreError("the store is unavailable (ConnectionRefusedError)")
        return 2.5

    lim = MemoryLimiter(spend, Clock())
    limits = _limits(daily_budget_usd=2.0)
    for _ in range(2):  # never read as zero meanwhile: every try asks the store again
        with pytest.raises(APIError) as err:
            await lim.admit("team", limits, "m")
        assert err.value.http_status == 503 and "budget cannot be checked now" in err.value.message
    down = False
    with pytest.raises(BillingError):
        await lim.admit("team", limits, "m")
