"""The response cache in front of MessagesService.answer.

    ResponseCache.answer(req, client=, record=, stream=, size=, session=, header=)
        → Completed | AnswerStream (the cache is off or bypassed: the service's own answer)
        | Completed / ReplayStream (a hit, in the mode asked for) | TeeStream (a streamed miss)

A miss becomes the leader of its key: identical requests arriving meanwhile wait for its answer
instead of calling the upstream themselves (and get its error if it fails); if its client goes away
before the answer is complete, one of them becomes the next leader. ``record.cache`` says what
happened: ``hit``, ``miss`` or ``bypass`` (a waiter served by a leader counts as a hit there and as
``coalesced`` in the stats).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from anthropic_gateway import ids
from anthropic_gateway.auth import Client
from anthropic_gateway.cache.key import cache_key
from anthropic_gateway.cache.policy import Mode, deterministic, request_mode, storable
from anthropic_gateway.cache.store import CacheStore, MemoryStore
from anthropic_gateway.cache.streams import ReplayStream, TeeStream
from anthropic_gateway.errors import GatewayError
from anthropic_gateway.ops.record import RequestRecord
from anthropic_gateway.routing import Route
from anthropic_gateway.schemas import MessagesRequest
from anthropic_gateway.service import AnswerStream, Completed, MessagesService
from anthropic_gateway.settings import Settings

if TYPE_CHECKING:
    # Imports redis (~5 MB, ~80 ms at start-up): loaded only by a gateway whose store is shared.
    from anthropic_gateway.cache.redis_store import RedisStore

log = logging.getLogger(__name__)

Answer = Completed | AnswerStream | ReplayStream | TeeStream


class _Abandoned(Exception):
    """The leader's client went away before its answer was complete: a waiter leads next."""


@dataclass(slots=True)
class CacheStats:
    hits: int = 0
    misses: int = 0
    bypassed: int = 0
    coalesced: int = 0
    stored: int = 0
    tokens_saved: int = 0
    usd_saved: float = 0.0


class ResponseCache:
    def __init__(self, settings: Settings, service: MessagesService, store: CacheStore | None = None) -> None:
        self.settings = settings
        self.service = service
        self.store: CacheStore = store or MemoryStore(settings.response_cache_max_bytes)
        self.stats = CacheStats()
        self._inflight: dict[str, asyncio.Future[dict[str, Any]]] = {}
        # A store shared by several replicas (RedisStore): misses are coalesced across them too.
        self.shared: RedisStore | None = None
        if not isinstance(self.store, MemoryStore):
            from anthropic_gateway.cache.redis_store import RedisStore

            self.shared = self.store if isinstance(self.store, RedisStore) else None
        self._locks: dict[str, asyncio.Future[None]] = {}  # keys whose shared lock this replica holds
        self._releases: set[asyncio.Future[None]] = set()
        # Whether any request can use the cache without asking: if not, answer() is one call.
        self._anywhere = settings.response_cache or any(m.response_cache for m in settings.models.values())

    def answer(
        self, req: MessagesRequest, *, client: Client, record: RequestRecord, stream: bool, size: int,
        session: str | None = None, header: str | None = None,
    ) -> Coroutine[Any, Any, Answer]:  # fmt: skip
        # A threaded request (threads/) stands for a history held in the store: its body is no key.
        if (header is None and not self._anywhere) or req.thread is not None:
            # The service's own coroutine: none of this layer's around it when the cache has no say.
            return self.service.answer(req, client=client, record=record, stream=stream, size=size,
                                       session=session)  # fmt: skip
        return self._answer(req, client=client, record=record, stream=stream, size=size, session=session,
                            header=header)  # fmt: skip

    async def _answer(
        self, req: MessagesRequest, *, client: Client, record: RequestRecord, stream: bool, size: int,
        session: str | None, header: str | None,
    ) -> Answer:  # fmt: skip
        settings = self.settings
        route = self.service.resolve(req.model, record)
        mode = request_mode(settings, route, header)
        if mode in ("on", "refresh") and not (
            settings.response_cache_nondeterministic or deterministic(req, route, settings.default_params)
        ):
            mode = "bypass"
        if mode in ("disabled", "bypass"):
            if mode == "bypass":
                record.cache = "bypass"
                self.stats.bypassed += 1
            return await self.service.answer(req, client=client, record=record, stream=stream, size=size,
                                             session=session)  # fmt: skip
        partition = "*" if settings.response_cache_shared else (client.label or "-")
        key = cache_key(req, route, partition)
        if self.shared is not None:
            return await self._answer_shared(self.shared, key, mode, req, route, client=client, record=record,
                                             stream=stream, size=size, session=session)  # fmt: skip
        while True:
            if mode == "on":
                raw = await self.store.get(key)
                if raw is not None:
                    return self._hit(raw, req, record, stream)
            waiting = self._inflight.get(key)
            if waiting is None:
                return await self._lead(key, req, route, client=client, record=record, stream=stream, size=size,
                                        session=session)  # fmt: skip
            try:
                message = await asyncio.shield(waiting)
            except _Abandoned:
                continue
            return self._serve_coalesced(message, req, record, stream)

    async def _answer_shared(
        self, shared: RedisStore, key: str, mode: Mode, req: MessagesRequest, route: Route, *, client: Client,
        record: RequestRecord, stream: bool, size: int, session: str | None,
    ) -> Answer:  # fmt: skip
        """The store is shared by several replicas (Redis): one round trip looks the entry up and, on a
        miss, takes the key's lock; a replica that finds another holding it waits for that answer."""
        while True:
            waiting = self._inflight.get(key)
            if waiting is not None:  # this replica already leads or follows the key: wait on it here
                try:
                    message = await asyncio.shield(waiting)
                except _Abandoned:
                    continue
                return self._serve_coalesced(message, req, record, stream)
            # Registered before the round trip, so requests for the key arriving meanwhile wait here.
            future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
            future.add_done_callback(_retrieve)
            self._inflight[key] = future
            try:
                claim = await shared.claim(key, lookup=mode == "on")
            except BaseException:
                self._settle(key, future, None, None)
                raise
            if claim.entry is not None:
                answer = self._hit(claim.entry, req, record, stream)
                self._settle(key, future, orjson.loads(claim.entry)["m"], None)
                return answer
            if claim.lead:
                return await self._lead(key, req, route, client=client, record=record, stream=stream, size=size,
                                        session=session, locked=claim.locked, future=future)  # fmt: skip
            raw = await self._follow(shared, key, future)
            if raw is not None:
                entry = orjson.loads(raw)
                self.stats.coalesced += 1
                record.cache = "hit"
                record.stop_reason = entry["m"].get("stop_reason")
                return self._serve(entry["m"], req, record, stream)

    async def _follow(self, shared: RedisStore, key: str, future: asyncio.Future[dict[str, Any]]) -> bytes | None:
        """Another replica answers this miss: wait (polling) for its entry; None when its lock goes
        without one (the caller claims again). Requests here for the same key wait on ``future``."""
        from anthropic_gateway.cache.redis_store import POLL

        raw: bytes | None = None
        try:
            while True:
                await asyncio.sleep(POLL)
                raw, locked = await shared.poll(key)
                if raw is not None or not locked:
                    break
        finally:
            self._settle(key, future, orjson.loads(raw)["m"] if raw is not None else None, None)
        return raw

    # --- a hit --------------------------------------------------------------------------------------

    def _hit(self, raw: bytes, req: MessagesRequest, record: RequestRecord, stream: bool) -> Answer:
        entry = orjson.loads(raw)
        message: dict[str, Any] = entry["m"]
        self.stats.hits += 1
        self.stats.tokens_saved += _tokens(message)
        self.stats.usd_saved += entry.get("usd") or 0.0
        record.cache = "hit"
        record.stop_reason = message.get("stop_reason")
        record.extras["cache_saved_tokens"] = _tokens(message)
        return self._serve(message, req, record, stream)

    def _serve_coalesced(self, message: dict[str, Any], req: MessagesRequest, record: RequestRecord,
                         stream: bool) -> Answer:  # fmt: skip
        """The answer another request for the same key led: a hit for this one."""
        self.stats.coalesced += 1
        record.cache = "hit"
        record.stop_reason = message.get("stop_reason")
        return self._serve(message, req, record, stream)

    def _serve(self, message: dict[str, Any], req: MessagesRequest, record: RequestRecord, stream: bool) -> Answer:
        served = {**message, "id": ids.message_id(), "model": req.model}
        if stream:
            return ReplayStream(served, record)
        return Completed(served)

    # --- a miss: the leader -------------------------------------------------------------------------

    async def _lead(
        self, key: str, req: MessagesRequest, route: Route, *, client: Client, record: RequestRecord,
        stream: bool, size: int, session: str | None, locked: bool = False,
        future: asyncio.Future[dict[str, Any]] | None = None,
    ) -> Answer:  # fmt: skip
        if future is None:
            future = asyncio.get_running_loop().create_future()
            future.add_done_callback(_retrieve)
            self._inflight[key] = future
        if locked:  # the shared lock: kept alive while the answer runs, released once it is settled
            self._locks[key] = asyncio.ensure_future(self._hold(key))
        record.cache = "miss"
        self.stats.misses += 1
        try:
            answer = await self.service.answer(req, client=client, record=record, stream=stream, size=size,
                                               session=session)  # fmt: skip
        except GatewayError as err:
            self._settle(key, future, None, err)
            raise
        except BaseException:
            self._settle(key, future, None, None)
            raise
        if isinstance(answer, Completed):
            await self._keep(key, answer.message, record)
            self._settle(key, future, answer.message, None)
            return answer

        def settle(message: dict[str, Any] | None, error: GatewayError | None) -> None:
            if message is not None and storable(message):
                task = asyncio.ensure_future(self._keep(key, message, record))
                task.add_done_callback(lambda t: self._settle(key, future, message, None))
            else:
                self._settle(key, future, message, error)

        return TeeStream(answer, settle)

    async def _hold(self, key: str) -> None:
        """Renew this replica's lock on a miss while it answers (cancelled once it is settled)."""
        from anthropic_gateway.cache.redis_store import LOCK_MS

        assert self.shared is not None
        while True:
            await asyncio.sleep(LOCK_MS / 3000)
            if not await self.shared.renew(key):
                return

    def _settle(self, key: str, future: asyncio.Future[dict[str, Any]], message: dict[str, Any] | None,
                error: GatewayError | None) -> None:  # fmt: skip
        if self._inflight.get(key) is future:
            del self._inflight[key]
        lock = self._locks.pop(key, None)
        if lock is not None:
            lock.cancel()
            if (message is None or not storable(message)) and self.shared is not None:
                # No entry will release the lock (storing one does): release it, so that another
                # replica's waiters claim the key at once instead of when the lock expires.
                task = asyncio.ensure_future(self.shared.release(key))
                self._releases.add(task)
                task.add_done_callback(self._releases.discard)
        if future.done():
            return
        if message is not None:
            future.set_result(message)
        else:
            future.set_exception(error if error is not None else _Abandoned())

    async def _keep(self, key: str, message: dict[str, Any], record: RequestRecord) -> None:
        if not storable(message):
            return
        entry = {"m": message, "usd": self._usd(message, record)}
        try:
            if await self.store.put(key, orjson.dumps(entry), self.settings.response_cache_ttl):
                self.stats.stored += 1
        except Exception:  # a failing store never fails the answer
            log.exception("response cache store failed (request %s)", record.request_id)

    def _usd(self, message: dict[str, Any], record: RequestRecord) -> float | None:
        for value in (record.upstream_cost_usd, record.cost_usd):
            if value is not None:
                return value
        price = self.settings.input_prices.get(record.upstream_model or "")
        if price is None:
            return None
        usage = message.get("usage") or {}
        tokens = sum(int(usage.get(k) or 0) for k in ("input_tokens", "cache_read_input_tokens",
                                                      "cache_creation_input_tokens"))  # fmt: skip
        return tokens * price / 1_000_000

    # --- admin ------------------------------------------------------------------------------------

    def collect(self) -> Iterator[Any]:
        """The /metrics families: lookups by result, and what the cache saved."""
        from prometheus_client.core import CounterMetricFamily

        s = self.stats
        lookups = CounterMetricFamily("gateway_response_cache_lookups", "Response cache lookups by result (hit, "
                                      "miss, coalesced: served by a request already running, bypassed)",
                                      labels=["result"])  # fmt: skip
        for result, n in (("hit", s.hits), ("miss", s.misses), ("coalesced", s.coalesced), ("bypassed", s.bypassed)):
            lookups.add_metric([result], n)
        yield lookups
        yield CounterMetricFamily("gateway_response_cache_tokens_saved", "Tokens the response cache answered "
                                  "without the upstream (estimated)", value=s.tokens_saved)  # fmt: skip
        yield CounterMetricFamily("gateway_response_cache_usd_saved", "US dollars the response cache saved "
                                  "(estimated)", value=s.usd_saved)  # fmt: skip

    async def report(self) -> dict[str, Any]:
        usage = await self.store.usage()
        s = self.stats
        served = s.hits + s.coalesced
        lookups = served + s.misses
        return {
            "enabled": self.settings.response_cache,
            "entries": usage.entries, "bytes": usage.bytes, "max_bytes": usage.max_bytes,
            "hits": s.hits, "misses": s.misses, "coalesced": s.coalesced, "bypassed": s.bypassed,
            "hit_ratio": round(served / lookups, 4) if lookups else 0.0,
            "stored": s.stored, "evictions": usage.evictions, "expired": usage.expired,
            "estimated_tokens_saved": s.tokens_saved, "estimated_usd_saved": round(s.usd_saved, 6),
            "ttl_seconds": self.settings.response_cache_ttl, "shared": self.settings.response_cache_shared,
        }  # fmt: skip


def _tokens(message: dict[str, Any]) -> int:
    usage = message.get("usage") or {}
    keys = ("input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens", "output_tokens")
    return sum(int(usage.get(k) or 0) for k in keys)


def _retrieve(future: asyncio.Future[dict[str, Any]]) -> None:
    """Nobody may be waiting: the exception counts as seen (no 'never retrieved' warning)."""
    if not future.cancelled():
        future.exception()
