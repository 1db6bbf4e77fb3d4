"""The Redis cache store on a real Redis (a prefix of the test's own): TTL, the size bound, the miss
lock two replicas contend for, clear and usage — and a Redis that does not answer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from anthropic_gateway.cache.redis_store import RedisStore
from anthropic_gateway.settings import load_settings
from anthropic_gateway.shared.redis_state import RedisState
from conftest import free_port
from redis_support import REDIS_URL

MakeStore = Callable[..., Awaitable[RedisStore]]


@pytest.fixture
async def make_store(redis_prefix: str) -> AsyncIterator[MakeStore]:
    """``await make_store(max_bytes=…, url=…)``: a store as one replica has it (its own RedisState)."""
    states: list[RedisState] = []

    async def make(max_bytes: int = 10_000, url: str = REDIS_URL) -> RedisStore:
        settings = load_settings(environ={"ANTHROPIC_GATEWAY_REDIS_URL": url, "ANTHROPIC_GATEWAY_REDIS_PREFIX": redis_prefix,
                                          "ANTHROPIC_GATEWAY_REDIS_TIMEOUT": "0.3"})  # fmt: skip
        state = RedisState(settings)
        await state.start()
        states.append(state)
        return RedisStore(state, max_bytes)

    yield make
    for state in states:
        await state.close()


async def test_an_entry_is_served_until_its_ttl(make_store: MakeStore) -> None:
    store = await make_store()
    assert await store.put("a", b"x" * 10, ttl=0.3) is True
    assert await store.get("a") == b"x" * 10
    await asyncio.sleep(0.4)
    assert await store.get("a") is None
    assert await store.cleanup() == 0  # Redis expired it itself


async def test_an_entry_over_the_bound_is_not_stored(make_store: MakeStore) -> None:
    store = await make_store(max_bytes=100)
    assert await store.put("big", b"v" * 200, ttl=60) is False
    assert await store.get("big") is None
    assert await store.put("small", b"v" * 50, ttl=60) is True


async def test_two_replicas_one_leads_the_other_waits_for_its_entry(make_store: MakeStore) -> None:
    a = await make_store()
    b = await make_store()
    first = await a.claim("k", lookup=True)
    assert (first.entry, first.lead, first.locked) == (None, True, True)
    second = await b.claim("k", lookup=True)
    assert (second.entry, second.lead) == (None, False)
    assert await b.poll("k") == (None, True)
    assert await b.renew("k") is False and await a.renew("k") is True  # only the owner renews
    assert await a.put("k", b"answer", ttl=60) is True  # storing releases the lock
    assert await b.poll("k") == (b"answer", False)
    assert (await b.claim("k", lookup=True)).entry == b"answer"
    refresh = await b.claim("k", lookup=False)  # a refresh skips the entry and takes the lock
    assert (refresh.entry, refresh.lead, refresh.locked) == (None, True, True)


async def test_a_leader_that_fails_releases_the_key_to_the_next(make_store: MakeStore) -> None:
    a = await make_store()
    b = await make_store()
    assert (await a.claim("k", lookup=True)).locked
    await b.release("k")  # not b's lock: still held
    assert await b.poll("k") == (None, True)
    await a.release("k")
    assert await b.poll("k") == (None, False)
    assert (await b.claim("k", lookup=True)).locked


async def test_usage_and_clear_see_every_replicas_entries(make_store: MakeStore) -> None:
    a = await make_store()
    b = await make_store()
    await a.put("one", b"1" * 10, ttl=60)
    await b.put("two", b"2" * 20, ttl=60)
    usage = await a.usage()
    assert (usage.entries, usage.bytes) == (2, 30)
    assert await b.clear() == 2
    assert (await a.usage()).entries == 0 and await a.get("one") is None


async def test_a_redis_that_does_not_answer_is_a_miss_and_a_lead_without_lock(
    make_store: MakeStore,
) -> None:
    store = await make_store(url=f"redis://127.0.0.1:{free_port()}/0")
    assert store.redis.up is False and store.redis.last_error
    assert await store.get("k") is None
    assert await store.put("k", b"v", ttl=60) is False
    claim = await store.claim("k", lookup=True)
    assert (claim.entry, claim.lead, claim.locked) == (None, True, False)
    assert await store.poll("k") == (None, False)
    assert (await store.usage()).entries == 0
