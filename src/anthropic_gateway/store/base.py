"""The store interface and how a ``database_url`` picks its implementation."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any, Protocol

Row = tuple[Any, ...]


class StoreError(Exception):
    """The store cannot be opened or used; the message says why, without secrets."""


class Cursorless(Protocol):
    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int: ...
    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...
    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]: ...
    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None: ...


class Store(Cursorless, Protocol):
    dialect: str  # "sqlite" or "postgresql"

    async def open(self) -> None: ...
    async def close(self) -> None: ...
    def transaction(self) -> AbstractAsyncContextManager[Cursorless]: ...
    def stream(self, sql: str, params: Sequence[Any] = (), size: int = 500) -> AsyncIterator[Row]: ...
    def exclusive(self, name: str) -> AbstractAsyncContextManager[bool]: ...
    def status(self) -> dict[str, Any]: ...


async def paged(store: Cursorless, sql: str, params: Sequence[Any], size: int) -> AsyncIterator[Row]:
    """``sql``'s rows fetched ``size`` at a time with LIMIT/OFFSET (``sql`` must order by a unique
    key): a large result (a batch's results) is never held in memory whole. Both stores' ``stream``."""
    offset = 0
    while True:
        rows = await store.fetchall(f"{sql} LIMIT ? OFFSET ?", (*params, size, offset))
        for row in rows:
            yield row
        if len(rows) < size:
            return
        offset += size


def default_database_path() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "anthropic-gateway" / "gateway.db"


def open_store(url: str | None, pool_size: int = 10) -> Store:
    """``sqlite:///PATH``, a plain path, ``:memory:``, or none (the user's data directory);
    ``postgresql://…`` (or ``postgres://…``) for PostgreSQL, shared by several replicas."""
    from anthropic_gateway.store.sqlite import SQLiteStore

    if not url:
        return SQLiteStore(str(default_database_path()))
    if url in (":memory:", "sqlite://", "sqlite:///:memory:"):
        return SQLiteStore(":memory:")
    if url.startswith("sqlite:///"):
        return SQLiteStore(url.removeprefix("sqlite:///") or ":memory:")
    if url.startswith(("postgresql://", "postgres://")):
        from anthropic_gateway.store.postgres import PostgresStore

        return PostgresStore(url, pool_size=pool_size)
    if "://" in url:
        raise StoreError(f"database_url: unsupported scheme in '{url.split('://')[0]}://…'; use sqlite:///PATH or a path")
    return SQLiteStore(url)
