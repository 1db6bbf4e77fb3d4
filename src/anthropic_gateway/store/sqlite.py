"""The SQLite store: one aiosqlite connection (its own thread), WAL, migrations on open.

Every statement runs on aiosqlite's thread, never on the event loop; a lock keeps a transaction's
statements together on the one connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from anthropic_gateway.store.base import Row, StoreError, paged
from anthropic_gateway.store.migrations import MIGRATIONS

if TYPE_CHECKING:
    import aiosqlite

log = logging.getLogger(__name__)

# Python's sqlite3 binds int, float, str and bytearray as they are and sends every other value
# through its adapter lookup: for None (a ledger row has 3-6 NULLs) the lookup misses the registry,
# then raises and clears two formatted AttributeErrors (``__adapt__``, ``__conform__``) before
# binding NULL anyway: ~1.2k instructions per NULL. Registered, None is one dict probe and one C
# call returning None (an empty dict's ``get``), and binds NULL as before.
_NULL_ADAPTER: Any = {}.get


def register_null_adapter() -> None:
    import sqlite3

    sqlite3.register_adapter(type(None), _NULL_ADAPTER)


def _rowcount(conn: aiosqlite.Connection, sql: str, params: Sequence[Any]) -> int:
    """On the connection's thread: run one statement, its row count."""
    cur = conn._conn.execute(sql, params)
    try:
        return int(cur.rowcount)
    finally:
        cur.close()


class _Tx:
    def __init__(self, conn: aiosqlite.Connection) -> None:
        self.conn = conn

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        # One trip to the connection's thread (aiosqlite's execute + cursor close would be two):
        # every trip wakes that thread and hands the GIL back and forth with the event loop.
        return int(await self.conn._execute(_rowcount, self.conn, sql, params))  # type: ignore[no-untyped-call]

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        await self.conn.executemany(sql, rows)

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        async with self.conn.execute(sql, params) as cur:
            return [tuple(r) for r in await cur.fetchall()]

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        async with self.conn.execute(sql, params) as cur:
            row = await cur.fetchone()
            return tuple(row) if row is not None else None


class SQLiteStore:
    dialect = "sqlite"

    def __init__(self, path: str) -> None:
        self.path = path
        self._conn: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()
        self.error: str | None = None
        self.opened_at: float | None = None
        self.schema_version = 0

    async def open(self) -> None:
        import aiosqlite

        register_null_adapter()
        try:
            if self.path != ":memory:":
                await asyncio.to_thread(Path(self.path).expanduser().parent.mkdir, parents=True, exist_ok=True)
            conn = await aiosqlite.connect(str(Path(self.path).expanduser()) if self.path != ":memory:" else self.path,
                                           isolation_level=None)  # fmt: skip
            await conn.execute("PRAGMA journal_mode=WAL")
            await conn.execute("PRAGMA synchronous=NORMAL")
            await conn.execute("PRAGMA busy_timeout=5000")
            self._conn = conn
            await self._migrate()
        except (OSError, aiosqlite.Error) as err:
            if self._conn is not None:
                await self._conn.close()
                self._conn = None
            self.error = f"{type(err).__name__}: {err}"
            raise StoreError(f"cannot open the store at {self.path}: {err}") from None
        self.opened_at = time.time()
        self.error = None

    async def _migrate(self) -> None:
        async with self.transaction() as tx:
            await tx.execute("CREATE TABLE IF NOT EXISTS schema_migrations "
                             "(number INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)")  # fmt: skip
            done = {r[0] for r in await tx.fetchall("SELECT number FROM schema_migrations")}
            for m in sorted(MIGRATIONS, key=lambda m: m.number):
                if m.number in done:
                    continue
                for statement in m.statements(self.dialect):
                    await tx.execute(statement)
                await tx.execute("INSERT INTO schema_migrations (number, name, applied_at) VALUES (?, ?, ?)",
                                 (m.number, m.name, time.time()))  # fmt: skip
                log.info("store: applied migration %03d %s", m.number, m.name)
            self.schema_version = max([m.number for m in MIGRATIONS] + list(done))

    async def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            async with self._lock:
                await conn.close()

    def _connection(self) -> aiosqlite.Connection:
        if self._conn is None:
            raise StoreError("the store is not open")
        return self._conn

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[_Tx]:
        async with self._lock:
            conn = self._connection()
            await conn.execute("BEGIN IMMEDIATE")
            try:
                yield _Tx(conn)
            except BaseException:
                await conn.execute("ROLLBACK")
                raise
            await conn.execute("COMMIT")

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        async with self._lock:
            return await _Tx(self._connection()).execute(sql, params)

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        async with self.transaction() as tx:
            await tx.executemany(sql, rows)

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        async with self._lock:
            return await _Tx(self._connection()).fetchall(sql, params)

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        async with self._lock:
            return await _Tx(self._connection()).fetchone(sql, params)

    def stream(self, sql: str, params: Sequence[Any] = (), size: int = 500) -> AsyncIterator[Row]:
        """Rows in pages of ``size``, holding the lock only while a page is fetched: a large result
        (a batch's results) is never held in memory whole. ``sql`` must order by a unique key and
        end in ``LIMIT ? OFFSET ?``-free form; pages continue with OFFSET."""
        return paged(self, sql, params, size)

    @contextlib.asynccontextmanager
    async def exclusive(self, name: str) -> AsyncIterator[bool]:
        """One process owns a SQLite file: work meant for one replica at a time always runs here."""
        yield True

    def status(self) -> dict[str, Any]:
        return {"engine": "sqlite", "path": self.path, "open": self._conn is not None,
                "schema_version": self.schema_version, "error": self.error}  # fmt: skip
