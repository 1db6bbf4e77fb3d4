"""Remembered upstream refusals (negative_cache.py) shared by the replicas, at no cost per request.

A replica that remembers a refusal publishes it on ``{P}refusals`` (Redis pub/sub); every other
replica takes it into its own in-memory NegativeCache for the time it has left. Lookups stay in
memory (nothing is asked of Redis per request); only a refused request publishes. While Redis is
down, each replica remembers only its own refusals; the subscription comes back with Redis.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from typing import Any

import orjson
from multidict import CIMultiDict

from anthropic_gateway.negative_cache import NegativeCache, Refusal
from anthropic_gateway.shared.redis_state import FAILURES, UNAVAILABLE, RedisState

log = logging.getLogger(__name__)

RETRY = 1.0  # seconds before subscribing again after a lost connection


class SharedRefusals:
    def __init__(self, redis: RedisState, cache: NegativeCache) -> None:
        self.redis = redis
        self.cache = cache
        self.channel = redis.key("refusals")
        self.received = 0
        self._task: asyncio.Task[None] | None = None
        self._sends: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        if self.cache.ttl > 0:
            self.cache.listener = self._publish
            self._task = asyncio.create_task(self._listen())

    async def close(self) -> None:
        self.cache.listener = None
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for task in list(self._sends):
            with contextlib.suppress(Exception):
                await task

    def _publish(self, key: bytes, refusal: Refusal) -> None:
        if not self.redis.up:
            return
        try:
            headers = {str(k): str(v) for k, v in refusal.headers.items()} if refusal.headers is not None else {}
            message = orjson.dumps({
                "from": self.redis.replica, "k": key.hex(), "s": refusal.status, "l": refusal.length,
                "b": base64.b64encode(refusal.body).decode(), "t": self.cache.ttl, "h": headers,
            })  # fmt: skip
        except Exception:  # sharing a refusal never fails the request that got it
            log.exception("could not encode a refusal for the other replicas")
            return
        task = asyncio.ensure_future(self._send(message))
        self._sends.add(task)
        task.add_done_callback(self._sends.discard)

    async def _send(self, message: bytes) -> None:
        try:
            await self.redis.client.publish(self.channel, message)
        except FAILURES as err:
            if isinstance(err, UNAVAILABLE):
                self.redis.failed(err)

    def _adopt(self, data: bytes) -> None:
        msg: dict[str, Any] = orjson.loads(data)
        if msg.get("from") == self.redis.replica:
            return
        self.cache.adopt(bytes.fromhex(msg["k"]), int(msg["s"]), base64.b64decode(msg["b"]),
                         CIMultiDict(msg.get("h") or {}), float(msg["t"]), int(msg["l"]))  # fmt: skip
        self.received += 1

    async def _listen(self) -> None:
        while True:
            if not self.redis.up:
                await asyncio.sleep(RETRY)
                continue
            pubsub = self.redis.client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel)
                while True:
                    message = await pubsub.get_message(timeout=RETRY)
                    if message is not None and message.get("type") == "message":
                        try:
                            self._adopt(message["data"])
                        except (ValueError, KeyError, TypeError):
                            log.warning("ignored a malformed refusal on %s", self.channel)
                    elif not self.redis.up:
                        break
            except FAILURES as err:
                if isinstance(err, UNAVAILABLE):
                    self.redis.failed(err)
                await asyncio.sleep(RETRY)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
