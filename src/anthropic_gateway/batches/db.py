"""The batches' SQL over the gateway's store (tables from migration 30)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

from anthropic_gateway.batches.envelope import Envelope
from anthropic_gateway.batches.objects import BATCH_COLUMNS, PENDING, Batch
from anthropic_gateway.store import Store

INSERT_CHUNK = 1000
PAGE = 500


async def insert_batch(store: Store, batch: Batch, envelope: Envelope) -> None:
    """The batch and all its items in one transaction, written in chunks (never all rows at once)."""
    async with store.transaction() as tx:
        await tx.execute(
            f"INSERT INTO batches ({BATCH_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (batch.id, batch.owner, batch.status, batch.total, batch.created_at, batch.expires_at, batch.ended_at,
             batch.cancel_initiated_at, 0, 0, 0, 0),
        )  # fmt: skip
        chunk: list[tuple[Any, ...]] = []
        for item in envelope.items():
            chunk.append((batch.id, item.idx, item.custom_id, PENDING, item.params))
            if len(chunk) >= INSERT_CHUNK:
                await tx.executemany(_INSERT_ITEM, chunk)
                chunk = []
        if chunk:
            await tx.executemany(_INSERT_ITEM, chunk)


_INSERT_ITEM = "INSERT INTO batch_items (batch_id, idx, custom_id, state, params) VALUES (?, ?, ?, ?, ?)"


async def get(store: Store, batch_id: str) -> Batch | None:
    row = await store.fetchone(f"SELECT {BATCH_COLUMNS} FROM batches WHERE id = ?", (batch_id,))
    return Batch.from_row(row) if row is not None else None


async def page(store: Store, owner: str | None, limit: int, after_id: str | None,
               before_id: str | None) -> tuple[list[Batch], bool]:  # fmt: skip
    """Most recent first; ``limit + 1`` rows tell whether there is more."""
    where, params = [], []  # type: ignore[var-annotated]
    if owner is not None:
        where.append("owner = ?")
        params.append(owner)
    order = "DESC"
    if after_id is not None:
        where.append("seq < COALESCE((SELECT seq FROM batches WHERE id = ?), -1)")
        params.append(after_id)
    elif before_id is not None:
        where.append("seq > COALESCE((SELECT seq FROM batches WHERE id = ?), 9223372036854775807)")
        params.append(before_id)
        order = "ASC"
    sql = f"SELECT {BATCH_COLUMNS} FROM batches"
    if where:
        sql += " WHERE " + " AND ".join(where)
    rows = await store.fetchall(f"{sql} ORDER BY seq {order} LIMIT ?", (*params, limit + 1))
    more = len(rows) > limit
    rows = rows[:limit]
    if order == "ASC":
        rows.reverse()
    return [Batch.from_row(r) for r in rows], more


async def unfinished(store: Store) -> list[Batch]:
    rows = await store.fetchall(f"SELECT {BATCH_COLUMNS} FROM batches WHERE status != 'ended' ORDER BY seq")
    return [Batch.from_row(r) for r in rows]


async def pending_items(store: Store, batch_id: str, after_idx: int, n: int) -> list[tuple[int, str, bytes]]:
    rows = await store.fetchall(
        "SELECT idx, custom_id, params FROM batch_items WHERE batch_id = ? AND state = 'pending' AND idx > ? "
        "ORDER BY idx LIMIT ?", (batch_id, after_idx, n))  # fmt: skip
    return [(r[0], r[1], r[2]) for r in rows]


async def write_results(store: Store, rows: Sequence[tuple[str, bytes, int, str, int]]) -> None:
    """(state, result, done_seq, batch_id, idx): only an item still pending takes a result, so an item
    canceled or expired meanwhile keeps that state (exactly one result each)."""
    async with store.transaction() as tx:
        await tx.executemany(
            "UPDATE batch_items SET state = ?, result = ?, done_seq = ?, params = NULL "
            "WHERE batch_id = ? AND idx = ? AND state = 'pending'", rows)  # fmt: skip


async def settle_pending(store: Store, batch_id: str, state: str, keep: Sequence[int], base_seq: int) -> None:
    """Every pending item of the batch but those in ``keep`` (in flight) becomes ``state``."""
    marks = ",".join("?" * len(keep))
    extra = f" AND idx NOT IN ({marks})" if keep else ""
    await store.execute(
        f"UPDATE batch_items SET state = ?, done_seq = ? + idx, params = NULL "
        f"WHERE batch_id = ? AND state = 'pending'{extra}", (state, base_seq, batch_id, *keep))  # fmt: skip


async def counts(store: Store, batch_id: str) -> dict[str, int]:
    rows = await store.fetchall("SELECT state, COUNT(*) FROM batch_items WHERE batch_id = ? GROUP BY state",
                                (batch_id,))  # fmt: skip
    return {r[0]: int(r[1]) for r in rows}


async def has_pending(store: Store, batch_id: str) -> bool:
    row = await store.fetchone(
        "SELECT 1 FROM batch_items WHERE batch_id = ? AND state = 'pending' LIMIT 1", (batch_id,))  # fmt: skip
    return row is not None


async def finish(store: Store, batch_id: str, now: float) -> None:
    c = await counts(store, batch_id)
    await store.execute(
        "UPDATE batches SET status = 'ended', ended_at = ?, succeeded = ?, errored = ?, canceled = ?, expired = ? "
        "WHERE id = ? AND status != 'ended'",
        (now, c.get("succeeded", 0), c.get("errored", 0), c.get("canceled", 0), c.get("expired", 0), batch_id),
    )  # fmt: skip


async def mark_canceling(store: Store, batch_id: str, now: float) -> None:
    await store.execute("UPDATE batches SET status = 'canceling', cancel_initiated_at = ? WHERE id = ?",
                        (now, batch_id))  # fmt: skip


async def max_done_seq(store: Store) -> int:
    row = await store.fetchone("SELECT MAX(done_seq) FROM batch_items")
    return int(row[0]) if row is not None and row[0] is not None else 0


async def delete(store: Store, batch_id: str) -> None:
    async with store.transaction() as tx:
        await tx.execute("DELETE FROM batch_items WHERE batch_id = ?", (batch_id,))
        await tx.execute("DELETE FROM batches WHERE id = ?", (batch_id,))


async def ended_before(store: Store, cutoff: float) -> list[str]:
    """Ended batches created before ``cutoff``: past their retention."""
    rows = await store.fetchall("SELECT id FROM batches WHERE status = 'ended' AND created_at < ?", (cutoff,))
    return [r[0] for r in rows]


async def expired_unfinished(store: Store, now: float) -> list[str]:
    rows = await store.fetchall("SELECT id FROM batches WHERE status != 'ended' AND expires_at <= ?", (now,))
    return [r[0] for r in rows]


async def results(store: Store, batch_id: str) -> AsyncIterator[tuple[str, str, bytes | None]]:
    """(custom_id, state, result) in request order, one page at a time (keyset on idx)."""
    last = -1
    while True:
        rows = await store.fetchall(
            "SELECT idx, custom_id, state, result FROM batch_items WHERE batch_id = ? AND idx > ? "
            "ORDER BY idx LIMIT ?", (batch_id, last, PAGE))  # fmt: skip
        for r in rows:
            yield r[1], r[2], r[3]
        if len(rows) < PAGE:
            return
        last = rows[-1][0]


async def finished_since(store: Store, batch_id: str, after_seq: int) -> list[tuple[int, str, str, bytes | None]]:
    """(done_seq, custom_id, state, result) of items finished after ``after_seq``, in finishing order."""
    rows = await store.fetchall(
        "SELECT done_seq, custom_id, state, result FROM batch_items WHERE batch_id = ? AND done_seq > ? "
        "ORDER BY done_seq LIMIT ?", (batch_id, after_seq, PAGE))  # fmt: skip
    return [(r[0], r[1], r[2], r[3]) for r in rows]


# --- several replicas on one PostgreSQL store -----------------------------------------------------
# Items are claimed with a lease (lease_owner, lease_until) under FOR UPDATE SKIP LOCKED, so two
# replicas never take the same item; a lease is renewed while its item runs, and an item whose
# replica died is claimed again once the lease has expired. done_seq comes from a sequence, taken
# under the batch row's lock so each batch's results commit in done_seq order (the streamed endpoint
# reads them by done_seq).


async def claim(store: Store, batch_id: str, owner: str, now: float, until: float,
                n: int) -> list[tuple[int, str, bytes]]:  # fmt: skip
    rows = await store.fetchall(
        "UPDATE batch_items SET lease_owner = ?, lease_until = ? WHERE batch_id = ? AND idx IN ("
        "SELECT idx FROM batch_items WHERE batch_id = ? AND state = 'pending' "
        "AND (lease_until IS NULL OR lease_until < ?) ORDER BY idx LIMIT ? FOR UPDATE SKIP LOCKED) "
        "RETURNING idx, custom_id, params", (owner, until, batch_id, batch_id, now, n))  # fmt: skip
    return sorted((r[0], r[1], r[2]) for r in rows)


async def renew(store: Store, batch_id: str, idxs: Sequence[int], owner: str, until: float) -> None:
    await store.execute(
        "UPDATE batch_items SET lease_until = ? WHERE batch_id = ? AND idx = ANY(?) AND lease_owner = ? "
        "AND state = 'pending'", (until, batch_id, list(idxs), owner))  # fmt: skip


async def release(store: Store, batch_id: str, idxs: Sequence[int], owner: str) -> None:
    """Claims given back (a replica stopping): the others take them at once."""
    await store.execute(
        "UPDATE batch_items SET lease_owner = NULL, lease_until = NULL WHERE batch_id = ? AND idx = ANY(?) "
        "AND lease_owner = ? AND state = 'pending'", (batch_id, list(idxs), owner))  # fmt: skip


async def _lock_batches(tx: Any, batch_ids: Sequence[str]) -> None:
    await tx.fetchall("SELECT id FROM batches WHERE id = ANY(?) ORDER BY id FOR UPDATE", (sorted(set(batch_ids)),))


async def write_results_shared(store: Store, rows: Sequence[tuple[str, bytes | None, str, int]]) -> None:
    """(state, result, batch_id, idx): as write_results, with done_seq from the sequence."""
    async with store.transaction() as tx:
        await _lock_batches(tx, [r[2] for r in rows])
        await tx.executemany(
            "UPDATE batch_items SET state = ?, result = ?, done_seq = nextval('batch_done_seq'), params = NULL, "
            "lease_owner = NULL, lease_until = NULL WHERE batch_id = ? AND idx = ? AND state = 'pending'", rows)  # fmt: skip


async def settle_pending_shared(store: Store, batch_id: str, state: str, keep: Sequence[int]) -> None:
    async with store.transaction() as tx:
        await _lock_batches(tx, [batch_id])
        await tx.execute(
            "UPDATE batch_items SET state = ?, done_seq = nextval('batch_done_seq'), params = NULL, lease_owner = NULL, "
            "lease_until = NULL WHERE batch_id = ? AND state = 'pending' AND NOT (idx = ANY(?))",
            (state, batch_id, list(keep)))  # fmt: skip


async def leased(store: Store, batch_id: str, now: float, other_than: str) -> int:
    """Pending items another replica holds a live claim on (running there, or about to)."""
    row = await store.fetchone("SELECT COUNT(*) FROM batch_items WHERE batch_id = ? AND state = 'pending' "
                               "AND lease_until >= ? AND lease_owner != ?", (batch_id, now, other_than))  # fmt: skip
    return int(row[0]) if row is not None else 0
