"""The response cache in Redis (``redis_url``): one store for every replica, and one upstream call
per identical miss across them.

- ``{P}rc:KEY``: the encoded entry, with the TTL as Redis's own expiry (``SET … PX``). An entry bigger
  than ``response_cache_max_bytes`` is not stored. The total is bounded by Redis itself: give it a
  ``maxmemory`` and ``maxmemory-policy allkeys-lru`` (or ``volatile-lru`` when the same Redis holds
  keys that must not be evicted; every cache entry has a TTL), see docs/deployment.md.
- ``{P}rcl:KEY``: the lock of a miss being answered, ``SET NX PX`` owned by one replica and renewed by
  it while its upstream call runs (``LOCK_MS``). ``claim`` is one round trip: the entry if there is one,
  else the lock if nobody holds it, else "someone else leads". A follower polls (``POLL``) until the
  entry appears (a hit) or the lock goes without one (the leader failed, or its answer is not
  storable): then it claims again and may lead itself.

While Redis is down: every lookup misses, nothing is stored, and misses are coalesced only within a
replica (``claim`` answers "lead, without a lock"). Requests keep being answered.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from anthropic_gateway.cache.store import StoreUsage
from anthropic_gateway.shared.redis_state import FAILURES, UNAVAILABLE, RedisState

log = logging.getLogger(__name__)

LOCK_MS = 15_000  # a lock lives this long unless its leader renews it (every LOCK_MS / 3)
POLL = 0.025  # seconds between a follower's looks at the entry and the lock

# KEYS: entry, lock. ARGV: look up ('1' / '0'), owner, lock ms. Returns {1, entry} | {2} (lead) | {3} (wait).
CLAIM = """
if ARGV[1] == '1' then
  local v = redis.call('GET', KEYS[1])
  if v then return {1, v} end
end
if redis.call('SET', KEYS[2], ARGV[2], 'NX', 'PX', tonumber(ARGV[3])) then return {2} end
return {3}
"""

# KEYS: entry, lock. ARGV: entry, ttl ms, owner. Stores the entry and releases the owner's lock.
STORE = """
redis.call('SET', KEYS[1], ARGV[1], 'PX', tonumber(ARGV[2]))
if redis.call('GET', KEYS[2]) == ARGV[3] then redis.call('DEL', KEYS[2]) end
return 1
"""

# KEYS: lock. ARGV: owner, ms ('0': release). Renews or releases the lock if the owner still holds it.
LOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  if ARGV[2] == '0' then return redis.call('DEL', KEYS[1]) end
  return redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
end
return 0
"""


@dataclass(frozen=True, slots=True)
class Claim:
    entry: bytes | None = None  # a hit
    lead: bool = False  # this replica answers the miss (locked: it holds the shared lock)
    locked: bool = False


class RedisStore:
    shared = True  # ResponseCache coalesces misses across replicas through claim/poll/release

    def __init__(self, redis: RedisState, max_bytes: int) -> None:
        self.redis = redis
        self.max_bytes = max_bytes
        self._claim = redis.client.register_script(CLAIM)
        self._store = redis.client.register_script(STORE)
        self._lock = redis.client.register_script(LOCK)

    def _entry(self, key: str) -> str:
        return self.redis.key("rc", key)

    def _lock_key(self, key: str) -> str:
        return self.redis.key("rcl", key)

    def _failed(self, err: BaseException, what: str) -> None:
        if isinstance(err, UNAVAILABLE):
            self.redis.failed(err)
        else:
            log.warning("Redis refused the response cache's %s (%s)", what, err)

    # --- the CacheStore interface -------------------------------------------------------------------

    async def get(self, key: str) -> bytes | None:
        if not self.redis.up:
            return None
        try:
            value = await self.redis.client.get(self._entry(key))
        except FAILURES as err:
            self._failed(err, "lookup")
            return None
        return value if isinstance(value, bytes) else None

    async def put(self, key: str, value: bytes, ttl: float) -> bool:
        """Store the entry (and release this replica's lock on the key, if it holds it)."""
        size = len(value) + len(key)
        if size > self.max_bytes or ttl <= 0 or not self.redis.up:
            await self.release(key)
            return False
        try:
            await self._store(keys=[self._entry(key), self._lock_key(key)],
                              args=[value, max(1, int(ttl * 1000)), self.redis.replica])  # fmt: skip
        except FAILURES as err:
            self._failed(err, "store")
            return False
        return True

    async def clear(self) -> int:
        n = 0
        try:
            batch: list[Any] = []
            async for name in self.redis.client.scan_iter(match=self._entry("*"), count=1000):
                batch.append(name)
                if len(batch) >= 1000:
                    n += await self.redis.client.unlink(*batch)
                    batch = []
            if batch:
                n += await self.redis.client.unlink(*batch)
        except FAILURES as err:
            self._failed(err, "clear")
        return n

    async def cleanup(self) -> int:
        return 0  # Redis drops expired entries itself

    async def usage(self) -> StoreUsage:
        """Entries and bytes of every replica's entries (a SCAN: for the admin route, not per request)."""
        entries = size = 0
        try:
            names = [name async for name in self.redis.client.scan_iter(match=self._entry("*"), count=1000)]
            for i in range(0, len(names), 1000):
                pipe = self.redis.client.pipeline(transaction=False)
                for name in names[i : i + 1000]:
                    pipe.strlen(name)
                lengths = await pipe.execute()
                entries += sum(1 for n in lengths if n)
                size += sum(lengths)
        except FAILURES as err:
            self._failed(err, "usage report")
        return StoreUsage(entries, size, self.max_bytes, 0, 0)

    # --- coalescing misses across replicas ----------------------------------------------------------

    async def claim(self, key: str, lookup: bool) -> Claim:
        if not self.redis.up:
            return Claim(lead=True)
        try:
            result = await self._claim(keys=[self._entry(key), self._lock_key(key)],
                                       args=["1" if lookup else "0", self.redis.replica, LOCK_MS])  # fmt: skip
        except FAILURES as err:
            self._failed(err, "lookup")
            return Claim(lead=True)
        if result[0] == 1:
            return Claim(entry=result[1])
        return Claim(lead=result[0] == 2, locked=result[0] == 2)

    async def poll(self, key: str) -> tuple[bytes | None, bool]:
        """The entry, and whether a leader still holds the key's lock. Redis down: (None, False)."""
        if not self.redis.up:
            return None, False
        try:
            entry, lock = await self.redis.client.mget([self._entry(key), self._lock_key(key)])
        except FAILURES as err:
            self._failed(err, "lookup")
            return None, False
        return (entry if isinstance(entry, bytes) else None), lock is not None

    async def renew(self, key: str) -> bool:
        if not self.redis.up:
            return False
        try:
            return bool(await self._lock(keys=[self._lock_key(key)], args=[self.redis.replica, LOCK_MS]))
        except FAILURES as err:
            self._failed(err, "lock")
            return False

    async def release(self, key: str) -> None:
        if not self.redis.up:
            return
        try:
            await self._lock(keys=[self._lock_key(key)], args=[self.redis.replica, 0])
        except FAILURES as err:
            self._failed(err, "lock")
