"""Per-key limits counted in Redis, so a limit holds across every replica (``redis_url``).

The same semantics, errors and headers as ``MemoryLimiter`` (limits.py), counted in Redis instead:

- ``{P}rl:{LABEL}:w:MINUTE``: a hash of the UTC minute's ``r`` (requests admitted) and ``t`` (input +
  output tokens of requests finished in that minute); it expires two minutes after it starts.
- ``{P}rl:{LABEL}:inflight``: the requests in flight (only for keys with ``max_concurrent``), a sorted
  set of leases scored by their expiry: each replica renews its own leases every 30 s, so the slots of
  a replica that died free themselves within two minutes.
- ``{P}rl:{LABEL}:d:DAYSTART`` / ``…:m:MONTHSTART``: the key's spend (USD) in the UTC day / month. The
  first replica that needs one seeds it from the ledger (``SET NX``); from then on every finished
  request adds its cost, so the budget is the shared ledger's spend plus what Redis counted since.

Admitting is one Lua script, so a check and its increment are atomic: a limit of N holds across the
replicas to within the requests each replica has in flight and not yet counted (tokens are counted
when a request finishes). Finished requests are counted in a second script that rides in the same
pipeline as the next admission (one round trip per request on the hot path), or 20 ms later when no
admission comes. Keys of one label share a hash tag (``{LABEL}``), so this also works on Redis Cluster.

While Redis is down each replica **fails open to its own memory**: ``MemoryLimiter`` enforces every
limit per replica (so N replicas admit up to N times a key's rate), budgets start again from the
ledger; counts made then are not carried to Redis when it returns, and finished requests whose counts
were not yet sent are not counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from redis.exceptions import RedisError

from anthropic_gateway.quota.limits import (
    KeyState,
    MemoryLimiter,
    SpendSource,
    check_budgets,
    check_model,
    check_rates,
    day_start,
    month_start,
    rate_headers,
)
from anthropic_gateway.quota.policy import KeyLimits
from anthropic_gateway.shared.redis_state import UNAVAILABLE, RedisState

log = logging.getLogger(__name__)

LEASE = 120.0  # seconds an in-flight lease lives unless its replica renews it
RENEW_EVERY = 30.0
FLUSH_DELAY = 0.02  # finished requests wait at most this long for an admission to ride with
WINDOW_TTL = 120  # seconds a minute's counters are kept

# KEYS: window, inflight, day, month. ARGV: now, rpm, tpm, max_concurrent, daily?, monthly?, member,
# lease expiry, window ttl, daily budget, monthly budget, then the key's finished requests not yet
# counted (their number, then tokens, cost, member of each: counted first, as FINISH does). Returns {status, requests, tokens, inflight, day spend, month spend};
# status: ok | seed-day | seed-month | full (a limit is reached: the caller raises the right error).
ADMIT = """
local nf = tonumber(ARGV[12] or '0')
for i = 0, nf - 1 do
  local tokens, cost, member = tonumber(ARGV[13 + 3 * i]), tonumber(ARGV[14 + 3 * i]), ARGV[15 + 3 * i]
  if tokens > 0 then
    redis.call('HINCRBY', KEYS[1], 't', tokens)
    redis.call('EXPIRE', KEYS[1], tonumber(ARGV[9]))
  end
  if member ~= '' then redis.call('ZREM', KEYS[2], member) end
  if cost > 0 then
    if redis.call('EXISTS', KEYS[3]) == 1 then redis.call('INCRBYFLOAT', KEYS[3], ARGV[14 + 3 * i]) end
    if redis.call('EXISTS', KEYS[4]) == 1 then redis.call('INCRBYFLOAT', KEYS[4], ARGV[14 + 3 * i]) end
  end
end
local now = tonumber(ARGV[1])
local rpm, tpm, maxc = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local day, month = '0', '0'
if ARGV[5] == '1' then
  day = redis.call('GET', KEYS[3])
  if not day then return {'seed-day'} end
end
if ARGV[6] == '1' then
  month = redis.call('GET', KEYS[4])
  if not month then return {'seed-month'} end
end
local counts = redis.call('HMGET', KEYS[1], 'r', 't')
local r, t = tonumber(counts[1] or '0'), tonumber(counts[2] or '0')
local inflight = 0
if maxc > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  inflight = redis.call('ZCARD', KEYS[2])
end
local status = 'ok'
if (ARGV[5] == '1' and tonumber(ARGV[10]) <= tonumber(day)) or (ARGV[6] == '1' and tonumber(ARGV[11]) <= tonumber(month))
   or (maxc > 0 and inflight >= maxc) or (rpm > 0 and r >= rpm) or (tpm > 0 and t >= tpm) then
  status = 'full'
else
  r = redis.call('HINCRBY', KEYS[1], 'r', 1)
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[9]))
  if maxc > 0 then
    redis.call('ZADD', KEYS[2], tonumber(ARGV[8]), ARGV[7])
    redis.call('EXPIRE', KEYS[2], 600)
    inflight = inflight + 1
  end
end
return {status, r, t, inflight, day, month}
"""

# KEYS: window, inflight, day, month. ARGV: tokens, cost, member ('' for none), window ttl.
# A spend counter is only added to when it exists: a missing one is seeded from the ledger later.
FINISH = """
if tonumber(ARGV[1]) > 0 then
  redis.call('HINCRBY', KEYS[1], 't', tonumber(ARGV[1]))
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[4]))
end
if ARGV[3] ~= '' then redis.call('ZREM', KEYS[2], ARGV[3]) end
if tonumber(ARGV[2]) > 0 then
  if redis.call('EXISTS', KEYS[3]) == 1 then redis.call('INCRBYFLOAT', KEYS[3], ARGV[2]) end
  if redis.call('EXISTS', KEYS[4]) == 1 then redis.call('INCRBYFLOAT', KEYS[4], ARGV[2]) end
end
return 1
"""

_LOCAL = "local"  # an admission made by the in-memory fallback


class RedisLimiter:
    def __init__(self, redis: RedisState, spend: SpendSource, clock: Callable[[], float] = time.time,
                 fallback: MemoryLimiter | None = None) -> None:  # fmt: skip
        self.redis = redis
        self.spend = spend
        self.clock = clock
        self.local = fallback or MemoryLimiter(spend, clock)
        self._admit = redis.client.register_script(ADMIT)
        self._finish = redis.client.register_script(FINISH)
        self._slots: dict[str, deque[str]] = {}  # label → this replica's admissions in flight (lease ids)
        self._pending: list[tuple[str, int, float, str]] = []  # finished, not yet counted in Redis
        self._seq = 0
        self._flusher: asyncio.TimerHandle | None = None
        self._renewer: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def _keys(self, label: str, now: float) -> list[str]:
        tag = "{" + label.replace("{", "(").replace("}", ")") + "}"
        return [self.redis.key("rl", tag, "w", str(int(now // 60))), self.redis.key("rl", tag, "inflight"),
                self.redis.key("rl", tag, "d", str(int(day_start(now)))),
                self.redis.key("rl", tag, "m", str(int(month_start(now))))]  # fmt: skip

    async def admit(self, label: str, limits: KeyLimits, model: str) -> dict[str, str]:
        check_model(limits, model)
        if not self.redis.up:
            return await self._admit_locally(label, limits, model)
        now = self.clock()
        keys = self._keys(label, now)
        self._seq += 1
        member = f"{self.redis.replica}:{self._seq}" if limits.max_concurrent is not None else ""
        daily, monthly = limits.daily_budget_usd, limits.monthly_budget_usd
        args = [repr(now), limits.requests_per_minute or 0, limits.tokens_per_minute or 0,
                limits.max_concurrent or 0, int(daily is not None), int(monthly is not None), member,
                repr(now + LEASE), WINDOW_TTL, repr(daily or 0.0), repr(monthly or 0.0)]  # fmt: skip
        try:
            for _ in range(3):  # at most one seed per period
                result = await self._run_admit(label, keys, args)
                status = _text(result[0])
                if status == "seed-day":
                    await self._seed(label, keys[2], day_start(now), day_start(now) + 86400, 86400 * 2)
                elif status == "seed-month":
                    await self._seed(label, keys[3], month_start(now), now + 86400, 86400 * 33)
                else:
                    break
            else:  # pragma: no cover - a seed that does not stick (evicted at once)
                return await self._admit_locally(label, limits, model)
        except UNAVAILABLE as err:
            self.redis.failed(err)
            return await self._admit_locally(label, limits, model)
        except RedisError as err:  # e.g. Redis out of memory under `noeviction`: this admission is local
            log.warning("Redis refused the rate-limit script (%s): admitted by this replica's memory", err)
            return await self._admit_locally(label, limits, model)
        st = KeyState(window=int(now // 60), requests=int(result[1]), tokens=int(result[2]),
                      inflight=int(result[3]), day=day_start(now), day_spend=float(_text(result[4])),
                      month=month_start(now), month_spend=float(_text(result[5])))  # fmt: skip
        reset = (st.window + 1) * 60
        if status == "full":
            check_budgets(limits, st)
            check_rates(limits, st, now)
        self._slots.setdefault(label, deque()).append(member)
        return rate_headers(limits, st, reset)

    async def _run_admit(self, label: str, keys: list[str], args: list[Any]) -> list[Any]:
        """The admission, with the finished requests not yet counted ahead of it in one round trip:
        the key's own in the script's arguments, other keys' in a pipeline around it."""
        pending, self._pending = self._pending, []
        mine = [p for p in pending if p[0] == label]
        others = [p for p in pending if p[0] != label] if len(mine) < len(pending) else []
        if mine:
            args = [*args, len(mine)]
            for _, tokens, cost, member in mine:
                args += [tokens, repr(cost), member]
        if not others:
            result: list[Any] = await self._admit(keys=keys, args=args)
            return result
        pipe = self.redis.client.pipeline(transaction=False)
        await self._queue_finishes(pipe, others)
        await self._admit(keys=keys, args=args, client=pipe)
        results = await pipe.execute()
        out: list[Any] = results[-1]
        return out

    async def _seed(self, label: str, key: str, start: float, end: float, ttl: int) -> None:
        spent = await self.spend(label, start, end)
        await self.redis.client.set(key, repr(spent), nx=True, ex=ttl)

    async def _admit_locally(self, label: str, limits: KeyLimits, model: str) -> dict[str, str]:
        headers = await self.local.admit(label, limits, model)
        self._slots.setdefault(label, deque()).append(_LOCAL)
        return headers

    def finish(self, label: str, tokens: int, cost: float) -> None:
        slots = self._slots.get(label)
        member = slots.popleft() if slots else ""
        if slots is not None and not slots:
            del self._slots[label]
        if member == _LOCAL:
            self.local.finish(label, tokens, cost)
            return
        self._pending.append((label, tokens, cost, member))
        if self._flusher is None:
            with contextlib.suppress(RuntimeError):  # no loop: the next admission carries it
                self._flusher = asyncio.get_running_loop().call_later(FLUSH_DELAY, self._flush_soon)

    async def _queue_finishes(self, pipe: Any, pending: list[tuple[str, int, float, str]]) -> None:
        now = self.clock()
        for label, tokens, cost, member in pending:
            await self._finish(keys=self._keys(label, now), args=[tokens, repr(cost), member, WINDOW_TTL], client=pipe)

    def _flush_soon(self) -> None:
        self._flusher = None
        if self._pending:
            task = asyncio.ensure_future(self.flush())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def flush(self) -> None:
        """Count the finished requests not yet counted (a lost Redis loses them: see the module doc)."""
        pending, self._pending = self._pending, []
        if not pending or not self.redis.up:
            return
        pipe = self.redis.client.pipeline(transaction=False)
        await self._queue_finishes(pipe, pending)
        try:
            await pipe.execute()
        except UNAVAILABLE as err:
            self.redis.failed(err)
        except RedisError as err:
            log.warning("Redis refused counting finished requests (%s)", err)

    def start(self) -> None:
        self._renewer = asyncio.create_task(self._renew())

    async def close(self) -> None:
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
        if self._flusher is not None:
            self._flusher.cancel()
            self._flusher = None
        with contextlib.suppress(Exception):
            await self.flush()
        for task in list(self._tasks):
            with contextlib.suppress(Exception):
                await task

    async def _renew(self) -> None:
        """Keep this replica's in-flight leases alive while their requests run."""
        while True:
            await asyncio.sleep(RENEW_EVERY)
            if not self.redis.up:
                continue
            pipe = self.redis.client.pipeline(transaction=False)
            expiry = self.clock() + LEASE
            n = 0
            for label, slots in list(self._slots.items()):
                members = {m: expiry for m in slots if m and m != _LOCAL}
                if members:
                    _ = pipe.zadd(self._keys(label, 0)[1], members, xx=True)  # type: ignore[arg-type]
                    n += 1
            if n:
                try:
                    await pipe.execute()
                except UNAVAILABLE as err:
                    self.redis.failed(err)
                except Exception:
                    log.exception("renewing the in-flight leases failed")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
