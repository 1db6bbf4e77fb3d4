"""What a replica keeps in Redis (``redis_url``), built and started as one piece by the gateway."""

from __future__ import annotations

from dataclasses import dataclass

from anthropic_gateway.cache.redis_store import RedisStore
from anthropic_gateway.negative_cache import NegativeCache
from anthropic_gateway.quota.limits import MemoryLimiter, SpendSource
from anthropic_gateway.quota.redis_limits import RedisLimiter
from anthropic_gateway.settings import Settings
from anthropic_gateway.shared.redis_state import RedisState
from anthropic_gateway.shared.refusals import SharedRefusals


@dataclass(slots=True)
class SharedState:
    redis: RedisState
    limiter: RedisLimiter  # rate limits and budgets (fails open to this replica's memory)
    cache_store: RedisStore  # the response cache's entries and miss locks
    refusals: SharedRefusals  # remembered upstream 4xx, sent to every replica

    @classmethod
    def build(cls, settings: Settings, spend: SpendSource, refusals: NegativeCache) -> SharedState:
        redis = RedisState(settings)
        limiter = RedisLimiter(redis, spend, fallback=MemoryLimiter(spend))
        return cls(redis, limiter, RedisStore(redis, settings.response_cache_max_bytes),
                   SharedRefusals(redis, refusals))  # fmt: skip

    async def start(self) -> None:
        await self.redis.start()
        self.limiter.start()
        self.refusals.start()

    async def close(self) -> None:
        await self.refusals.close()
        await self.limiter.close()
        await self.redis.close()
