"""Per-key rate limits and budgets, behind the Limiter interface.

Windows are fixed UTC minutes (requests and input+output tokens counted in the minute a request
finished, as a shared counter in Redis would count them); concurrency is the number of requests in
flight; spend is the ledger's cost for the UTC day and month, read once per key and period and then
kept up to date from finished requests. A request is admitted when its key is under every limit
at that moment, so a limit holds to within the requests already in flight.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from anthropic_gateway.errors import APIError, BillingError, PermissionDeniedError, RateLimitError
from anthropic_gateway.ops.record import RequestRecord
from anthropic_gateway.quota.policy import KeyLimits
from anthropic_gateway.upstream_errors import NO_RETRY

SpendSource = Callable[[str, float, float], Awaitable[float]]  # (label, start, end) → USD spent


def _rfc3339(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def day_start(now: float) -> float:
    return float(int(now // 86400) * 86400)


def month_start(now: float) -> float:
    t = time.gmtime(now)
    return float(time.mktime((t.tm_year, t.tm_mon, 1, 0, 0, 0, 0, 0, 0)) - time.timezone)


class Limiter(Protocol):
    async def admit(self, label: str, limits: KeyLimits, model: str) -> dict[str, str]: ...
    def finish(self, label: str, tokens: int, cost: float) -> None: ...


@dataclass(slots=True)
class KeyState:
    window: int = -1  # the UTC minute counted
    requests: int = 0
    tokens: int = 0
    inflight: int = 0
    day: float = -1.0
    day_spend: float = 0.0
    month: float = -1.0
    month_spend: float = 0.0


class MemoryLimiter:
    def __init__(self, spend: SpendSource, clock: Callable[[], float] = time.time) -> None:
        self.spend = spend
        self.clock = clock
        self.keys: dict[str, KeyState] = {}

    def _state(self, label: str, now: float) -> KeyState:
        st = self.keys.get(label)
        if st is None:
            st = self.keys[label] = KeyState()
        window = int(now // 60)
        if st.window != window:
            st.window, st.requests, st.tokens = window, 0, 0
        return st

    async def _spent(self, label: str, start: float, end: float) -> float:
        try:
            return await self.spend(label, start, end)
        except Exception as err:
            raise APIError(f"This key's budget cannot be checked now (the store is unavailable: {type(err).__name__}); "
                           "retry shortly", status=503) from None

    async def _budgets(self, label: str, limits: KeyLimits, st: KeyState, now: float) -> None:
        # The period is taken only once its spend is read: a store that is down (PostgreSQL away) is a
        # 503 for a key with a budget, never a budget silently read as zero.
        if limits.daily_budget_usd is not None and st.day != day_start(now):
            st.day_spend = await self._spent(label, day_start(now), day_start(now) + 86400)
            st.day = day_start(now)
        if limits.monthly_budget_usd is not None and st.month != month_start(now):
            st.month_spend = await self._spent(label, month_start(now), now + 86400)
            st.month = month_start(now)
        check_budgets(limits, st)

    async def admit(self, label: str, limits: KeyLimits, model: str) -> dict[str, str]:
        """Count the request in, or raise the error Anthropic would send. Returns the rate-limit
        headers for the answer."""
        check_model(limits, model)
        now = self.clock()
        st = self._state(label, now)
        await self._budgets(label, limits, st, now)
        st = self._state(label, now)
        reset = (st.window + 1) * 60
        check_rates(limits, st, now)
        st.requests += 1
        st.inflight += 1
        return rate_headers(limits, st, reset)

    def finish(self, label: str, tokens: int, cost: float) -> None:
        now = self.clock()
        st = self._state(label, now)
        st.inflight = max(st.inflight - 1, 0)
        st.tokens += tokens
        st.day_spend += cost
        st.month_spend += cost


def check_model(limits: KeyLimits, model: str) -> None:
    if not limits.allows_model(model):
        shown = model if len(model) <= 200 else model[:200] + "…"
        raise PermissionDeniedError(f"This key may not use the model '{shown}'; it may use "
                                    f"{', '.join(limits.models)}", headers=NO_RETRY)  # fmt: skip


def check_budgets(limits: KeyLimits, st: KeyState) -> None:
    """The key's spend so far (``st.day``/``st.month``: the periods' starts) against its budgets."""
    if limits.daily_budget_usd is not None and st.day_spend >= limits.daily_budget_usd:
        raise BillingError(f"This key's daily budget of ${limits.daily_budget_usd:g} is spent "
                           f"(${st.day_spend:.4f} today, UTC); it renews at {_rfc3339(st.day + 86400)}",
                           headers=NO_RETRY)  # fmt: skip
    if limits.monthly_budget_usd is not None and st.month_spend >= limits.monthly_budget_usd:
        raise BillingError(f"This key's monthly budget of ${limits.monthly_budget_usd:g} is spent "
                           f"(${st.month_spend:.4f} this month, UTC)", headers=NO_RETRY)  # fmt: skip


def check_rates(limits: KeyLimits, st: KeyState, now: float) -> None:
    """The key's window (``st.window``: the UTC minute) and requests in flight against its limits."""
    reset = (st.window + 1) * 60
    headers = rate_headers(limits, st, reset)
    wait = str(max(1, math.ceil(reset - now)))
    if limits.max_concurrent is not None and st.inflight >= limits.max_concurrent:
        raise RateLimitError(f"This key has {st.inflight} requests in flight, its limit of concurrent requests",
                             headers={**headers, "retry-after": "1"})  # fmt: skip
    if limits.requests_per_minute is not None and st.requests >= limits.requests_per_minute:
        raise RateLimitError(f"This key's limit of {limits.requests_per_minute} requests per minute is reached",
                             headers={**headers, "retry-after": wait})  # fmt: skip
    if limits.tokens_per_minute is not None and st.tokens >= limits.tokens_per_minute:
        raise RateLimitError(f"This key's limit of {limits.tokens_per_minute} tokens per minute is reached",
                             headers={**headers, "retry-after": wait})  # fmt: skip


def rate_headers(limits: KeyLimits, st: KeyState, reset: float) -> dict[str, str]:
    out: dict[str, str] = {}
    if limits.requests_per_minute is not None:
        out["anthropic-ratelimit-requests-limit"] = str(limits.requests_per_minute)
        out["anthropic-ratelimit-requests-remaining"] = str(max(limits.requests_per_minute - st.requests, 0))
        out["anthropic-ratelimit-requests-reset"] = _rfc3339(reset)
    if limits.tokens_per_minute is not None:
        out["anthropic-ratelimit-tokens-limit"] = str(limits.tokens_per_minute)
        out["anthropic-ratelimit-tokens-remaining"] = str(max(limits.tokens_per_minute - st.tokens, 0))
        out["anthropic-ratelimit-tokens-reset"] = _rfc3339(reset)
    return out


QUOTA = "quota_label"  # the record's extras key: the label a request was admitted under


class QuotaSink:
    """When a request admitted under a key's limits finishes: it leaves the in-flight count, and its
    tokens and cost count against the key's window and budgets."""

    def __init__(self, limiter: Limiter) -> None:
        self.limiter = limiter

    def record(self, rec: RequestRecord) -> None:
        label = rec.extras.get(QUOTA)
        if label is not None:
            tokens = rec.input_tokens + rec.output_tokens + rec.cache_read_tokens + rec.cache_write_tokens
            self.limiter.finish(label, tokens, rec.cost_usd or 0.0)
