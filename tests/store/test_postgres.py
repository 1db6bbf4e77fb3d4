"""The PostgreSQL store on a real server: migrations under a lock, outages without a crash."""

from __future__ import annotations

import asyncio
import time
from urllib.parse import urlsplit

import pytest

from anthropic_gateway.store import StoreError, open_store
from anthropic_gateway.store.migrations import MIGRATIONS
from anthropic_gateway.store.postgres import PostgresStore, safe_url, translate
from engines import with_database
from tcp_proxy import TcpProxy


def test_placeholders_become_numbered_outside_quotes() -> None:
    assert translate("SELECT a FROM t WHERE b = ? AND c = '?' AND \"d?\" IN (?, ?)") == (
        "SELECT a FROM t WHERE b = $1 AND c = '?' AND \"d?\" IN ($2, $3)"
    )
    assert translate("SELECT 1") == "SELECT 1"


def test_a_password_never_reaches_the_status() -> None:
    store = open_store("postgresql://gw:s3cret-pw@db.internal:6543/gateway")
    assert isinstance(store, PostgresStore)
    assert store.status()["url"] == "postgresql://gw:***@db.internal:6543/gateway"
    assert "s3cret" not in str(store.status())
    assert safe_url("postgres://gw@db/x") == "postgres://gw@db/x"


async def test_replicas_starting_together_apply_each_migration_once(postgres_url: str) -> None:
    stores = [open_store(postgres_url) for _ in range(4)]
    await asyncio.gather(*(s.open() for s in stores))
    applied = await stores[0].fetchall("SELECT number FROM schema_migrations ORDER BY number")
    assert applied == [(m.number,) for m in MIGRATIONS]
    assert {s.status()["schema_version"] for s in stores} == {MIGRATIONS[-1].number}
    await asyncio.gather(*(s.close() for s in stores))


async def test_an_unknown_database_is_a_store_error_naming_it(postgres_url: str) -> None:
    store = open_store(with_database(postgres_url, "gw_test_no_such_database"))
    with pytest.raises(StoreError, match="gw_test_no_such_database"):
        await store.open()


async def _until(check: object, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def test_a_lost_server_fails_fast_then_comes_back_by_itself(postgres_url: str) -> None:
    parts = urlsplit(postgres_url)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    proxy.start()
    store = open_store(parts._replace(netloc=f"{parts.username}@127.0.0.1:{proxy.port}").geturl())
    assert isinstance(store, PostgresStore)
    try:
        await store.open()
        await store.execute("INSERT INTO kv (namespace, key, value, updated_at) VALUES ('t', 'a', ?, 0)", (b"1",))
        proxy.cut()
        with pytest.raises(StoreError, match="unavailable"):
            await store.fetchall("SELECT key FROM kv")
        assert store.status()["available"] is False and store.status()["error"]
        started = time.monotonic()
        with pytest.raises(StoreError, match="unavailable"):  # no wait on a connect timeout meanwhile
            await store.execute("DELETE FROM kv")
        assert time.monotonic() - started < 0.5
        proxy.restore()
        await _until(lambda: store.available)
        assert await store.fetchall("SELECT key FROM kv") == [("a",)]
        assert store.status()["outages"] == 1 and store.status()["error"] is None
    finally:
        await store.close()
        proxy.stop()


async def test_a_server_down_at_start_is_retried_and_migrated_once_up(postgres_url: str) -> None:
    parts = urlsplit(postgres_url)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    proxy.start()
    proxy.cut()
    store = open_store(parts._replace(netloc=f"{parts.username}@127.0.0.1:{proxy.port}").geturl())
    assert isinstance(store, PostgresStore)
    try:
        await store.open()  # does not raise: the gateway starts and serves without its store
        assert store.status()["available"] is False
        proxy.restore()
        await _until(lambda: store.available)
        assert store.status()["schema_version"] == MIGRATIONS[-1].number
        assert await store.fetchall("SELECT key FROM kv") == []
    finally:
        await store.close()
        proxy.stop()
