"""The PostgreSQL store: an asyncpg pool shared by every replica of the gateway.

- **SQL.** Callers write ``?`` placeholders (the SQLite spelling); each SQL string is translated to
  ``$1, $2, …`` once and cached. Results come back as tuples, like SQLite's (a ``numeric`` sum as an
  int or a float).
- **Migrations.** The same numbered migrations (their PostgreSQL statements), applied in one
  transaction under an advisory lock: replicas that start together apply each once, the others wait.
- **Outages.** A lost connection never crashes the gateway: the statement fails fast with
  :class:`StoreError`, the store is marked unavailable (``status()``, ``/health/ready`` 503) and a
  background task reconnects with back-off (and applies the migrations if it never could). Callers
  that can wait keep their work: the ledger keeps its queued rows and writes them once it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import decimal
import functools
import logging
import time
import zlib
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from anthropic_gateway.store.base import Row, StoreError, paged
from anthropic_gateway.store.migrations import MIGRATIONS

if TYPE_CHECKING:
    import asyncpg

log = logging.getLogger(__name__)

MIGRATION_LOCK = 0x6167_7700  # "agw\0": pg_advisory_xact_lock key of the migrations
CONNECT_TIMEOUT = 5.0
COMMAND_TIMEOUT = 60.0
PING_INTERVAL = 2.0  # while up: how often an idle store checks that its server still answers
BACKOFF_FIRST, BACKOFF_MAX = 0.25, 5.0


@functools.lru_cache(maxsize=1024)
def translate(sql: str) -> str:
    """``?`` placeholders as ``$n``, outside quoted strings and identifiers."""
    out, n, quote = [], 0, ""
    for ch in sql:
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch == "?":
            n += 1
            out.append(f"${n}")
            continue
        out.append(ch)
    return "".join(out)


def lock_key(name: str) -> int:
    """A stable 32-bit advisory-lock key for a name (the same in every replica)."""
    return zlib.crc32(name.encode()) & 0x7FFF_FFFF


def safe_url(url: str) -> str:
    """The URL without its password (for status and logs)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def _plain(value: Any) -> Any:
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


def _row(record: Any) -> Row:
    values = tuple(record)
    if any(isinstance(v, decimal.Decimal) for v in values):
        return tuple(_plain(v) for v in values)
    return values


def _count(status: str) -> int:
    """Rows touched, from a command tag such as ``UPDATE 3`` or ``INSERT 0 1``."""
    tail = status.rsplit(" ", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def _lost(err: BaseException) -> bool:
    """Whether ``err`` means the server cannot be reached (rather than a bad statement)."""
    import asyncpg

    return isinstance(err, OSError | TimeoutError | asyncpg.InterfaceError | asyncpg.PostgresConnectionError
                      | asyncpg.CannotConnectNowError | asyncpg.AdminShutdownError
                      | asyncpg.ConnectionDoesNotExistError)  # fmt: skip


class _Tx:
    __slots__ = ("conn",)

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        return _count(await self.conn.execute(translate(sql), *params))

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            await self.conn.executemany(translate(sql), rows)

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return [_row(r) for r in await self.conn.fetch(translate(sql), *params)]

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        r = await self.conn.fetchrow(translate(sql), *params)
        return _row(r) if r is not None else None


class PostgresStore:
    dialect = "postgresql"

    def __init__(self, url: str, pool_size: int = 10) -> None:
        self.url = url
        self.pool_size = pool_size
        self._pool: asyncpg.Pool | None = None
        self.available = False
        self.error: str | None = None
        self.opened_at: float | None = None
        self.down_since: float | None = None
        self.outages = 0
        self.schema_version = 0
        self._monitor: asyncio.Task[None] | None = None
        self._closing = False
        self._recovered = asyncio.Event()

    # --- lifetime -----------------------------------------------------------------------------

    async def open(self) -> None:
        """Connect and migrate; a server that cannot be reached now is retried in the background
        (the store reports itself unavailable meanwhile). A URL that cannot work is a StoreError."""
        try:
            await self._connect()
        except StoreError:
            raise
        except Exception as err:
            if not _lost(err):
                self.error = f"{type(err).__name__}: {err}"
                raise StoreError(f"cannot open the store at {safe_url(self.url)}: {self.error}") from None
            self._mark_down(err)
            log.error("store: PostgreSQL at %s cannot be reached (%s); retrying in the background",
                      safe_url(self.url), self.error)  # fmt: skip
        self._monitor = asyncio.create_task(self._watch(), name="store-monitor")

    async def _connect(self) -> None:
        import asyncpg

        if self._pool is None:  # min_size 0: connections are opened on demand (this store reconnects, not the pool)
            self._pool = await asyncpg.create_pool(self.url, min_size=0, max_size=self.pool_size,
                                                   timeout=CONNECT_TIMEOUT, command_timeout=COMMAND_TIMEOUT)  # fmt: skip
        async with asyncio.timeout(CONNECT_TIMEOUT):
            await self._pool.fetchval("SELECT 1")
        if self.schema_version == 0:
            await self._migrate()
        if not self.available:
            if self.down_since is not None:
                log.warning("store: PostgreSQL is back after %.1f s", time.time() - self.down_since)
            self.available, self.error, self.down_since = True, None, None
            self.opened_at = self.opened_at or time.time()
            self._recovered.set()

    async def _migrate(self) -> None:
        assert self._pool is not None
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
            await conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations "
                               "(number BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at DOUBLE PRECISION NOT NULL)")  # fmt: skip
            done = {r[0] for r in await conn.fetch("SELECT number FROM schema_migrations")}
            for m in sorted(MIGRATIONS, key=lambda m: m.number):
                if m.number in done:
                    continue
                for statement in m.statements(self.dialect):
                    await conn.execute(statement)
                await conn.execute("INSERT INTO schema_migrations (number, name, applied_at) VALUES ($1, $2, $3)",
                                   m.number, m.name, time.time())  # fmt: skip
                log.info("store: applied migration %03d %s", m.number, m.name)
        self.schema_version = max([m.number for m in MIGRATIONS] + list(done))

    async def _watch(self) -> None:
        """While up, a ping every PING_INTERVAL; while down, reconnects with back-off."""
        wait = BACKOFF_FIRST
        while not self._closing:
            if self.available:
                await asyncio.sleep(PING_INTERVAL)
                try:
                    assert self._pool is not None
                    async with asyncio.timeout(CONNECT_TIMEOUT):
                        await self._pool.fetchval("SELECT 1")
                except Exception as err:
                    self._mark_down(err)
                continue
            try:
                await self._connect()
                wait = BACKOFF_FIRST
            except Exception as err:
                self.error = f"{type(err).__name__}: {err}"[:300]
                await asyncio.sleep(wait)
                wait = min(wait * 2, BACKOFF_MAX)

    def _mark_down(self, err: BaseException) -> None:
        self.error = f"{type(err).__name__}: {err}"[:300]
        if self.available or self.down_since is None:
            self.outages += int(self.available)
            self.down_since = time.time()
            if self.available:
                log.error("store: lost PostgreSQL (%s); reconnecting in the background", self.error)
        self.available = False
        self._recovered.clear()

    async def close(self) -> None:
        self._closing = True
        if self._monitor is not None:
            self._monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._monitor
        if self._pool is not None:
            pool, self._pool = self._pool, None
            try:
                async with asyncio.timeout(5.0):
                    await pool.close()
            except Exception:
                pool.terminate()
        self.available = False

    async def wait_available(self, timeout: float | None = None) -> bool:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._recovered.wait()
        return self.available

    # --- statements ---------------------------------------------------------------------------

    def _ready_pool(self) -> asyncpg.Pool:
        if self._pool is None or not self.available:
            raise StoreError(f"the store is unavailable ({self.error or 'not open'})")
        return self._pool

    @contextlib.asynccontextmanager
    async def _conn(self) -> AsyncIterator[asyncpg.Connection]:
        pool = self._ready_pool()
        try:
            async with pool.acquire(timeout=CONNECT_TIMEOUT) as conn:
                yield conn
        except Exception as err:
            if _lost(err):
                self._mark_down(err)
                raise StoreError(f"the store is unavailable ({self.error})") from None
            raise

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[_Tx]:
        async with self._conn() as conn, conn.transaction():
            yield _Tx(conn)

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        async with self._conn() as conn:
            return await _Tx(conn).execute(sql, params)

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        async with self.transaction() as tx:
            await tx.executemany(sql, rows)

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        async with self._conn() as conn:
            return await _Tx(conn).fetchall(sql, params)

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        async with self._conn() as conn:
            return await _Tx(conn).fetchone(sql, params)

    def stream(self, sql: str, params: Sequence[Any] = (), size: int = 500) -> AsyncIterator[Row]:
        """Rows in pages of ``size`` (the SQLite store's contract: ``sql`` orders by a unique key)."""
        return paged(self, sql, params, size)

    @contextlib.asynccontextmanager
    async def exclusive(self, name: str) -> AsyncIterator[bool]:
        """True to the one replica that holds the advisory lock ``name`` (others get False at once):
        for work that must run on one replica at a time (batch expiry, clean-ups)."""
        async with self._conn() as conn:
            key = lock_key(name)
            got = bool(await conn.fetchval("SELECT pg_try_advisory_lock($1)", key))
            try:
                yield got
            finally:
                if got:
                    with contextlib.suppress(Exception):
                        await conn.fetchval("SELECT pg_advisory_unlock($1)", key)

    def status(self) -> dict[str, Any]:
        pool = self._pool
        return {"engine": "postgresql", "url": safe_url(self.url), "open": pool is not None,
                "available": self.available, "schema_version": self.schema_version, "error": self.error,
                "down_since": self.down_since, "outages": self.outages,
                "pool": {"size": pool.get_size() if pool else 0, "idle": pool.get_idle_size() if pool else 0,
                         "max": self.pool_size}}  # fmt: skip

