"""The one Redis connection pool of a replica, and whether Redis answers.

Every user of Redis (the rate limiter, the response cache, the refusal memory) goes through
``RedisState``: ``client`` is a ``redis.asyncio.Redis`` on a bounded pool (``redis_pool_size``
connections, each command and connection bounded by ``redis_timeout``). A command that fails with a
connection error or a timeout calls ``failed(err)``: Redis then counts as *down* and, until a
background ping succeeds again (retried with back-off: 0.1 s doubling to 5 s), callers do not wait on
Redis at all — each falls back to this replica's own memory (see each user for what that means).
``/health/ready`` answers 503 while Redis is down and ``/health/detailed`` has a ``redis`` section.
Nothing here raises out of a request: the gateway starts, serves and shuts down with Redis gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import socket
import time
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from anthropic_gateway.settings import Settings

log = logging.getLogger(__name__)

FIRST_BACKOFF = 0.1
MAX_BACKOFF = 5.0
POOL_EXHAUSTED = "No connection available."  # redis-py's BlockingConnectionPool after its timeout
PING_INTERVAL = 1.0  # while up: how soon a silent loss is noticed when no request uses Redis
_CREDENTIALS = re.compile(r"(?<=://)[^/@\s]+@")

# What says "Redis is not answering" (as opposed to a bad command, which is our bug and is raised).
UNAVAILABLE: tuple[type[BaseException], ...] = (RedisConnectionError, RedisTimeoutError, OSError,
                                                asyncio.TimeoutError)  # fmt: skip


# Anything Redis can answer or fail with: callers catch these and fall back (never a 500).
FAILURES: tuple[type[BaseException], ...] = (RedisError, OSError, asyncio.TimeoutError)


def masked(url: str) -> str:
    return _CREDENTIALS.sub("***@", url)


class RedisState:
    def __init__(self, settings: Settings) -> None:
        assert settings.redis_url is not None
        self.url = settings.redis_url
        self.prefix = settings.redis_prefix
        self.timeout = settings.redis_timeout
        self.pool_size = settings.redis_pool_size
        # A replica's name in Redis (lock owners, in-flight leases): host, pid and a random part.
        self.replica = f"{socket.gethostname()}:{os.getpid()}:{os.urandom(4).hex()}"
        self.pool = BlockingConnectionPool.from_url(
            self.url, max_connections=self.pool_size, timeout=self.timeout, socket_timeout=self.timeout,
            socket_connect_timeout=self.timeout, retry=Retry(NoBackoff(), 1),  # one retry: a stale pooled connection
            health_check_interval=0,
        )  # fmt: skip
        self.client: Redis = Redis(connection_pool=self.pool)
        self.up = False
        self.since = time.time()  # when `up` last changed
        self.last_error: str | None = None
        self.failures = 0  # times Redis was found down
        self.pool_waits = 0  # commands that found every pooled connection busy for redis_timeout
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    async def start(self) -> None:
        """Connect once (without failing start-up when Redis is down), then watch in the background."""
        await self._ping()
        if not self.up:
            log.error("Redis at %s is unreachable (%s): serving from this replica's memory until it answers",
                      masked(self.url), self.last_error)  # fmt: skip
        self._task = asyncio.create_task(self._watch())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(Exception):
            await self.client.aclose()
            await self.pool.disconnect()

    def failed(self, err: BaseException) -> None:
        """A command found Redis not answering: Redis is down until a ping succeeds. (Every pooled
        connection busy for ``redis_timeout`` is this replica's load, not Redis down: that request
        alone falls back.)"""
        if isinstance(err, RedisConnectionError) and str(err) == POOL_EXHAUSTED:
            self.pool_waits += 1
            return
        self.last_error = _describe(err)
        if self.up:
            self.up = False
            self.since = time.time()
            self.failures += 1
            log.warning("Redis at %s is down (%s): falling back to this replica's memory; retrying",
                        masked(self.url), self.last_error)  # fmt: skip
        self._wake.set()

    async def _ping(self) -> bool:
        try:
            await asyncio.wait_for(self.client.ping(), self.timeout * 2)
        except UNAVAILABLE as err:
            self.failed(err)
            return False
        except RedisError as err:  # e.g. a wrong password: down, and say why
            self.failed(err)
            return False
        if not self.up:
            self.up = True
            self.since = time.time()
            self.last_error = None
            log.info("Redis at %s is up", masked(self.url))
        return True

    async def _watch(self) -> None:
        backoff = FIRST_BACKOFF
        while True:
            if self.up:
                self._wake.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), PING_INTERVAL)
                if not self.up:  # a command failed: first retry at once (a restarted Redis, stale connections)
                    backoff = FIRST_BACKOFF
                    await self.pool.disconnect(inuse_connections=False)
                    await self._ping()
                    continue
                await self._ping()
            else:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
                with contextlib.suppress(Exception):
                    await self.pool.disconnect(inuse_connections=False)
                if await self._ping():
                    backoff = FIRST_BACKOFF

    def status(self) -> dict[str, Any]:
        return {
            "url": masked(self.url), "up": self.up, "prefix": self.prefix,
            "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.since)),
            "last_error": self.last_error, "times_down": self.failures, "pool_size": self.pool_size,
            "pool_exhausted": self.pool_waits,
        }  # fmt: skip


def _describe(err: BaseException) -> str:
    text = str(err) or type(err).__name__
    return masked(text)[:300]
