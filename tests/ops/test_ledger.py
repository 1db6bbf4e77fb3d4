"""The ledger on a real store (a SQLite file, a PostgreSQL database): batched writes, a bounded queue,
totals, retention."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import pytest

from anthropic_gateway.ops.ledger import EXACT_ROWS, Ledger
from anthropic_gateway.ops.record import RequestRecord
from anthropic_gateway.store import open_store

DAY = 86400.0


def _rec(n: int, *, model: str = "claude-sonnet-5", key: str = "key-a", status: int = 200, ts: float = 10 * DAY,
         cost: float | None = 0.5, route: str = "/v1/messages") -> RequestRecord:  # fmt: skip
    rec = RequestRecord(f"req_{n}", "POST", route, started=0.0, started_at=ts)
    rec.route, rec.model, rec.key_label, rec.status, rec.cost_usd = route, model, key, status, cost
    rec.upstream_model, rec.backend = "test/sonnet", "default"
    rec.set_usage({"input_tokens": 10, "output_tokens": 5, "cache_read_input_tokens": 3, "cache_creation_input_tokens": 1})
    rec.finished = 0.2
    return rec


async def test_rows_are_written_in_batches_and_summed(store_url: str) -> None:
    store = open_store(store_url)
    await store.open()
    ledger = Ledger(store, flush_rows=2)
    for n in range(3):
        ledger.record(_rec(n))
    # 18:00 UTC: its day is the 12th on every store (PostgreSQL's CAST rounds, SQLite's truncates).
    ledger.record(_rec(3, model="claude-haiku-4-5", key="key-b", status=429, cost=None, ts=11.75 * DAY))
    ledger.record(_rec(4, route="/v1/models"))  # not a model call: not in the ledger
    await ledger.flush()
    assert ledger.written == 4
    by_model = await ledger.totals(0, 20 * DAY, "model")
    assert by_model == [
        {"group": "claude-haiku-4-5", "requests": 1, "errors": 1, "input_tokens": 10, "output_tokens": 5,
         "cache_read_input_tokens": 3, "cache_creation_input_tokens": 1, "cost_usd": 0.0, "mean_latency_ms": 200.0},
        {"group": "claude-sonnet-5", "requests": 3, "errors": 0, "input_tokens": 30, "output_tokens": 15,
         "cache_read_input_tokens": 9, "cache_creation_input_tokens": 3, "cost_usd": 1.5, "mean_latency_ms": 200.0},
    ]  # fmt: skip
    by_day = await ledger.totals(0, 20 * DAY, "day")
    assert [(d["group"], d["requests"]) for d in by_day] == [("1970-01-11", 3), ("1970-01-12", 1)]
    assert [(k["group"], k["requests"]) for k in await ledger.totals(0, 20 * DAY, "key")] == [("key-a", 3), ("key-b", 1)]
    assert (await ledger.totals(11 * DAY, 20 * DAY, None))[0]["requests"] == 1
    await ledger.close()
    await store.close()


async def test_batches_of_any_size_use_a_few_statement_sizes(store_url: str) -> None:
    # Every batch size prepared anew was parsed again and kept (SQLite: ~40 MB of statements under
    # a steady load): the rows go in statements of EXACT_ROWS + 5 sizes at most, all of them written.
    store = open_store(store_url)
    await store.open()
    sizes: list[int] = []
    execute = store.execute

    async def counting(sql: str, params: Sequence[Any] = ()) -> int:
        if sql.startswith("INSERT INTO ledger"):
            sizes.append(sql.count("(?"))
        return await execute(sql, params)

    store.execute = counting  # type: ignore[method-assign]
    ledger = Ledger(store, flush_rows=500)
    n = 0
    for batch in (300, 299, 301, 7, 500, 263):
        for _ in range(batch):
            ledger.record(_rec(n))
            n += 1
        await ledger.flush()
    assert ledger.written == n == sum(sizes)
    assert all(size <= EXACT_ROWS or size & (size - 1) == 0 for size in sizes), sizes
    assert sizes[:3] == [256, 32, 12]  # the first batch of 300
    rows = await store.fetchall("SELECT request_id FROM ledger ORDER BY id")
    assert [r[0] for r in rows] == [f"req_{i}" for i in range(n)]
    await store.close()


async def test_a_full_queue_drops_the_oldest_rows_with_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    store = open_store(":memory:")
    await store.open()
    ledger = Ledger(store, max_queue=3, flush_rows=100)
    with caplog.at_level(logging.WARNING):
        for n in range(6):
            ledger.record(_rec(n))
    assert ledger.dropped == 3
    assert [row[1] for row in ledger.queue] == ["req_3", "req_4", "req_5"]
    assert caplog.text.count("ledger queue full") == 1
    await store.close()


async def test_retention_deletes_old_rows(store_url: str) -> None:
    store = open_store(store_url)
    await store.open()
    ledger = Ledger(store, retention_days=5)
    ledger.record(_rec(1, ts=1 * DAY))
    ledger.record(_rec(2, ts=9 * DAY))
    await ledger.flush()
    assert await ledger.cleanup(now=10 * DAY) == 1
    assert [r["requests"] for r in await ledger.totals(0, 20 * DAY, None)] == [1]
    await store.close()


async def test_the_writer_takes_the_rows_queued_when_it_wakes_and_leaves_later_ones_for_the_next_round(
    tmp_path: Any,
) -> None:
    # A write outlasting a request or two used to drain the queue as rows kept coming: under a
    # steady load the writer wrote one or two rows per statement, back to back, instead of one batch
    # per flush_interval.
    import asyncio

    store = open_store(str(tmp_path / "gw.db"))
    await store.open()
    writes: list[tuple[float, int, bool]] = []  # (when, rows, during close)
    closing = False
    execute = store.execute
    loop = asyncio.get_running_loop()

    async def slow(sql: str, params: Sequence[Any] = ()) -> int:
        if sql.startswith("INSERT INTO ledger"):
            writes.append((loop.time(), sql.count("(?"), closing))
            await asyncio.sleep(0.05)  # a slow disk: rows arrive while this batch is written
        return await execute(sql, params)

    store.execute = slow  # type: ignore[method-assign]
    ledger = Ledger(store, flush_interval=0.3)
    started = loop.time()
    ledger.start()
    n = 0
    while loop.time() - started < 1.0:  # a steady trickle: a row every 10 ms
        ledger.record(_rec(n))
        n += 1
        await asyncio.sleep(0.01)
    closing = True
    await ledger.close()
    rows = await store.fetchall("SELECT request_id FROM ledger ORDER BY id")
    await store.close()
    assert [r[0] for r in rows] == [f"req_{i}" for i in range(n)]  # every row, in order
    sizes = [size for _, size, by_close in writes if not by_close]  # the writer's own statements
    # Rounds at 0.3 s, 0.65 s (0.3 s after the first write's end), ...: a statement or two each (a
    # batch of 34 is 32 + 2). Before: a statement per 50 ms write after the first, of ~5 rows each.
    assert 2 <= len(sizes) <= 6, writes
    assert sum(sizes) / len(sizes) >= 10, writes
