"""The in-memory store: a TTL per entry, LRU eviction under a byte bound, cleanup and clear."""

from __future__ import annotations

from anthropic_gateway.cache.store import ENTRY_OVERHEAD, MemoryStore


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _size(key: str, value: bytes) -> int:
    return len(key) + len(value) + ENTRY_OVERHEAD


async def test_entry_served_until_its_ttl_then_expired() -> None:
    clock = Clock()
    store = MemoryStore(10_000, clock)
    assert await store.put("a", b"x" * 10, ttl=5) is True
    clock.now += 4.9
    assert await store.get("a") == b"x" * 10
    clock.now += 0.2
    assert await store.get("a") is None
    usage = await store.usage()
    assert (usage.entries, usage.bytes, usage.expired, usage.evictions) == (0, 0, 1, 0)


async def test_each_entry_keeps_its_own_ttl() -> None:
    clock = Clock()
    store = MemoryStore(10_000, clock)
    await store.put("short", b"1", ttl=1)
    await store.put("long", b"2", ttl=10)
    clock.now += 2
    assert await store.get("short") is None and await store.get("long") == b"2"


async def test_least_recently_used_evicted_under_the_byte_bound() -> None:
    one = _size("k0", b"v" * 100)
    store = MemoryStore(3 * one, Clock())
    for i in range(3):
        await store.put(f"k{i}", b"v" * 100, ttl=60)
    assert await store.get("k0") is not None  # k0 is now the most recent; k1 the least
    await store.put("k3", b"v" * 100, ttl=60)
    assert [await store.get(k) is not None for k in ("k0", "k1", "k2", "k3")] == [True, False, True, True]
    usage = await store.usage()
    assert (usage.entries, usage.bytes, usage.evictions) == (3, 3 * one, 1)


async def test_a_big_entry_evicts_as_many_as_needed() -> None:
    small = _size("k0", b"v")
    store = MemoryStore(10 * small, Clock())
    for i in range(10):
        await store.put(f"k{i}", b"v", ttl=60)
    await store.put("big", b"v" * (5 * small), ttl=60)
    usage = await store.usage()
    assert usage.bytes <= usage.max_bytes and await store.get("big") is not None
    assert usage.evictions == 10 - (usage.entries - 1)


async def test_an_entry_larger_than_the_bound_is_not_stored() -> None:
    store = MemoryStore(1000, Clock())
    assert await store.put("a", b"x" * 1000, ttl=60) is False
    assert (await store.usage()).entries == 0


async def test_replacing_an_entry_counts_its_bytes_once() -> None:
    store = MemoryStore(10_000, Clock())
    await store.put("a", b"x" * 10, ttl=60)
    await store.put("a", b"y" * 20, ttl=60)
    usage = await store.usage()
    assert (usage.entries, usage.bytes) == (1, _size("a", b"y" * 20))
    assert await store.get("a") == b"y" * 20


async def test_cleanup_purges_only_expired_and_clear_everything() -> None:
    clock = Clock()
    store = MemoryStore(100_000, clock)
    for i in range(3):
        await store.put(f"old{i}", b"o", ttl=1)
    await store.put("new", b"n", ttl=100)
    clock.now += 5
    assert await store.cleanup() == 3
    assert (await store.usage()).entries == 1 and (await store.usage()).expired == 3
    assert await store.clear() == 1
    assert (await store.usage()).bytes == 0
