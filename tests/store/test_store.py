"""What every store does, on SQLite and on PostgreSQL: migrations, transactions, paging, locks."""

from __future__ import annotations

import pytest

from anthropic_gateway.store import open_store
from anthropic_gateway.store.migrations import MIGRATIONS


async def test_open_applies_every_migration_once(store_url: str) -> None:
    store = open_store(store_url)
    await store.open()
    await store.close()
    again = open_store(store_url)
    await again.open()  # reopening applies nothing twice
    assert again.status()["schema_version"] == MIGRATIONS[-1].number
    applied = await again.fetchall("SELECT number, name FROM schema_migrations ORDER BY number")
    assert applied == [(m.number, m.name) for m in MIGRATIONS]
    await again.close()


async def test_a_failed_transaction_leaves_nothing_behind(store_url: str) -> None:
    store = open_store(store_url)
    await store.open()
    with pytest.raises(RuntimeError):
        async with store.transaction() as tx:
            await tx.execute("INSERT INTO kv (namespace, key, value, updated_at) VALUES ('t', 'a', ?, 0)", (b"\x01",))
            assert await tx.fetchone("SELECT COUNT(*) FROM kv") == (1,)
            raise RuntimeError("boom")
    assert await store.fetchall("SELECT key FROM kv") == []
    await store.close()


async def test_statements_round_trip_values_and_count_rows(store_url: str) -> None:
    store = open_store(store_url)
    await store.open()
    await store.executemany("INSERT INTO kv (namespace, key, value, updated_at) VALUES (?, ?, ?, ?)",
                            [("t", "a?", b"\x00\xff", 1.5), ("t", "b", b"", 2)])  # fmt: skip
    # A '?' inside a quoted string is text, not a placeholder.
    assert await store.fetchall("SELECT key, value, updated_at FROM kv WHERE key != 'x?' AND namespace = ? "
                                "ORDER BY key", ("t",)) == [("a?", b"\x00\xff", 1.5), ("b", b"", 2.0)]  # fmt: skip
    assert await store.execute("UPDATE kv SET updated_at = ? WHERE namespace = ?", (3.0, "t")) == 2
    assert await store.execute("DELETE FROM kv WHERE key = ?", ("nothing",)) == 0
    total = await store.fetchone("SELECT SUM(updated_at), COUNT(*), SUM(LENGTH(key)) FROM kv")
    assert total == (6.0, 2, 3) and all(type(v) in (int, float) for v in total)  # never a Decimal
    assert await store.fetchone("SELECT key FROM kv WHERE key = ?", ("nothing",)) is None
    await store.close()


async def test_stream_pages_through_rows_in_order(store_url: str) -> None:
    store = open_store(store_url)
    await store.open()
    await store.executemany("INSERT INTO kv (namespace, key, value, updated_at) VALUES ('t', ?, ?, 0)",
                            [(f"k{i:04d}", b"\x00") for i in range(1203)])  # fmt: skip
    keys = [r[0] async for r in store.stream("SELECT key FROM kv ORDER BY key", size=500)]
    assert keys == [f"k{i:04d}" for i in range(1203)]
    await store.close()


async def test_exclusive_work_runs_where_the_lock_is_held(store_url: str) -> None:
    first, second = open_store(store_url), open_store(store_url)
    await first.open()
    await second.open()
    async with first.exclusive("sweep") as mine:
        assert mine is True
        async with second.exclusive("sweep") as theirs:
            # PostgreSQL: another replica does not get it meanwhile. SQLite has one process per file.
            assert theirs is (store_url.startswith("postgresql") is False)
    async with second.exclusive("sweep") as theirs:
        assert theirs is True  # released
    await first.close()
    await second.close()
