"""Where cached answers live: the ``CacheStore`` interface and the in-memory store.

Values are opaque bytes (the encoded entry) so a shared store (Redis, in the scale-out issue) can
implement the same interface: ``get``/``put``/``clear``/``cleanup``/``usage``, all async.

``MemoryStore``: a TTL per entry, LRU eviction under a bound on the bytes held (each entry counts its
value, its key and a fixed overhead for the bookkeeping objects). An entry bigger than the bound is
not stored. Expired entries are dropped when read, and all at once by ``cleanup()``.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

# Bookkeeping per entry besides its value and key characters: the _Entry object, the OrderedDict node,
# the key's and the value's object headers (bench/response_cache.py, tracemalloc, CPython 3.11: ~280).
ENTRY_OVERHEAD = 280


@dataclass(frozen=True, slots=True)
class StoreUsage:
    entries: int
    bytes: int
    max_bytes: int
    evictions: int
    expired: int


class CacheStore(Protocol):
    async def get(self, key: str) -> bytes | None: ...

    async def put(self, key: str, value: bytes, ttl: float) -> bool:
        """Store ``value`` for ``ttl`` seconds; False when it cannot be stored (too big)."""
        ...

    async def clear(self) -> int:
        """Remove every entry; returns how many there were."""
        ...

    async def cleanup(self) -> int:
        """Remove the expired entries; returns how many."""
        ...

    async def usage(self) -> StoreUsage: ...


@dataclass(slots=True)
class _Entry:
    value: bytes
    expires: float
    size: int


class MemoryStore:
    def __init__(self, max_bytes: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_bytes = max_bytes
        self.clock = clock
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._bytes = 0
        self.evictions = 0
        self.expired = 0

    async def get(self, key: str) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.expires <= self.clock():
            self._drop(key, entry)
            self.expired += 1
            return None
        self._entries.move_to_end(key)
        return entry.value

    async def put(self, key: str, value: bytes, ttl: float) -> bool:
        size = len(value) + len(key) + ENTRY_OVERHEAD
        old = self._entries.get(key)
        if old is not None:
            self._drop(key, old)
        if size > self.max_bytes or ttl <= 0:
            return False
        # A copy of exactly its size: orjson's output keeps its grown buffer (a 1.2 KB answer held 4 KB).
        self._entries[key] = _Entry(bytes(memoryview(value)), self.clock() + ttl, size)
        self._bytes += size
        while self._bytes > self.max_bytes:
            victim, entry = next(iter(self._entries.items()))
            self._drop(victim, entry)
            self.evictions += 1
        return True

    async def clear(self) -> int:
        n = len(self._entries)
        self._entries.clear()
        self._bytes = 0
        return n

    async def cleanup(self) -> int:
        now = self.clock()
        stale = [(k, e) for k, e in self._entries.items() if e.expires <= now]
        for key, entry in stale:
            self._drop(key, entry)
        self.expired += len(stale)
        return len(stale)

    async def usage(self) -> StoreUsage:
        return StoreUsage(len(self._entries), self._bytes, self.max_bytes, self.evictions, self.expired)

    def _drop(self, key: str, entry: _Entry) -> None:
        del self._entries[key]
        self._bytes -= entry.size
