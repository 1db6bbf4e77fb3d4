"""The SQLite store on a real file: migrations, WAL, transactions, paging."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from anthropic_gateway.store import StoreError, open_store
from anthropic_gateway.store.base import default_database_path
from anthropic_gateway.store.migrations import MIGRATIONS


async def test_open_applies_every_migration_once_and_records_it(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "gw.db"
    store = open_store(str(path))
    await store.open()
    await store.close()
    again = open_store(f"sqlite:///{path}")
    await again.open()  # reopening applies nothing twice
    assert again.status()["schema_version"] == MIGRATIONS[-1].number
    await again.close()
    with sqlite3.connect(path) as conn:
        applied = conn.execute("SELECT number, name FROM schema_migrations ORDER BY number").fetchall()
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
    assert applied == [(m.number, m.name) for m in MIGRATIONS]
    assert mode == "wal"


def test_urls_choose_the_store_or_say_what_is_wrong(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert default_database_path() == tmp_path / "anthropic-gateway" / "gateway.db"
    assert open_store(None).status()["path"] == str(tmp_path / "anthropic-gateway" / "gateway.db")
    assert open_store("sqlite:///:memory:").status()["path"] == ":memory:"
    with pytest.raises(StoreError, match="unsupported scheme in 'mysql://"):
        open_store("mysql://u:secret@host/db")


async def test_an_unwritable_path_is_a_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    store = open_store(str(blocker / "sub" / "gw.db"))
    with pytest.raises(StoreError, match="cannot open the store"):
        await store.open()
    assert store.status()["error"]


async def test_none_binds_null_through_the_registered_adapter_not_sqlites_failed_lookups(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "gw.db"))
    await store.open()
    # Opened, the store has None adapted in one C call: the lookup no longer misses (and raises twice).
    assert sqlite3.adapters[(type(None), sqlite3.PrepareProtocol)](None) is None
    async with store.transaction() as tx:
        await tx.execute("CREATE TABLE t (a INTEGER, b TEXT, c REAL)")
        await tx.execute("INSERT INTO t (a, b, c) VALUES (?, ?, ?), (?, ?, ?)", (None, "x", None, 1, None, 2.5))
        rows = await tx.fetchall("SELECT a, b, c, typeof(a), typeof(c) FROM t ORDER BY rowid")
    await store.close()
    assert rows == [(None, "x", None, "null", "null"), (1, None, 2.5, "integer", "real")]
