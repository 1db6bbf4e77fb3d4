"""The cost ledger: one row per finished model request, queued and written to the store in batches.

Rows never wait on disk in the request's path: ``record()`` appends to a bounded queue; a writer task
inserts them per ``flush_rows`` rows or per ``flush_interval`` seconds. A full queue drops its oldest
rows, counted and warned about (once per burst), never the request.

A batch is one multi-row ``INSERT ... VALUES (...), (...)``: one statement is its own transaction, so
it costs one trip to the store's thread (SQLite) or one round trip (a server), where BEGIN,
executemany and COMMIT cost three; with the event loop and the store's thread sharing the GIL, each
trip showed as a stall of the loop under load.

The statements come in few sizes (up to ``EXACT_ROWS`` rows as they are, more in powers of two): the
store parses a statement once and keeps it prepared, but a batch of a size never seen before was
parsed again (SQLite: ~55k instructions per row of SQL, five times the rows' insert) and kept, and
under a steady load every batch has a slightly different size (300 rows ± the load's jitter at
c=1): up to 128 prepared statements of hundreds of rows each, ~40 MB, and the parse on most flushes.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections import deque
from typing import Any

from anthropic_gateway.ops.record import RequestRecord
from anthropic_gateway.store import Store, StoreError

log = logging.getLogger(__name__)

LEDGERED_ROUTES = frozenset({"/v1/messages", "/v1/messages/stream", "batch"})
_COLUMNS = ("ts", "request_id", "route", "key_label", "model", "backend", "upstream_model", "stream", "status",
            "error_type", "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "cost_usd",
            "latency_ms", "ttft_ms", "source")  # fmt: skip
_INSERT = f"INSERT INTO ledger ({', '.join(_COLUMNS)}) VALUES "
_ROW = f"({', '.join('?' * len(_COLUMNS))})"
MAX_ROWS_PER_STATEMENT = 1000  # 18,000 parameters: under SQLite's 32,766 and PostgreSQL's 65,535
EXACT_ROWS = 32  # a batch up to this many rows is one statement of its size; larger ones in powers of two
GROUPS = ("model", "key", "day", "backend", "status")
# The UTC day number of ``ts``: SQLite's CAST truncates (ts is never negative); PostgreSQL's CAST
# rounds, so it takes FLOOR first (a row at 18:00 stays on its own day).
_DAY = {"sqlite": "CAST(ts / 86400 AS INTEGER)", "postgresql": "CAST(FLOOR(ts / 86400) AS BIGINT)"}


def row_of(rec: RequestRecord) -> tuple[Any, ...]:
    # rec.duration and rec.ttft written out (a property call each per row)
    end = rec.finished
    first = rec.first_token_at
    return (
        rec.started_at, rec.request_id, rec.route, rec.key_label, rec.model, rec.backend, rec.upstream_model,
        int(rec.stream), rec.status, rec.error_type, rec.input_tokens, rec.output_tokens, rec.cache_read_tokens,
        rec.cache_write_tokens, rec.cost_usd, ((end if end is not None else time.perf_counter()) - rec.started) * 1000,
        None if first is None else (first - rec.started) * 1000, "batch" if rec.route == "batch" else "http",
    )  # fmt: skip


@functools.lru_cache(maxsize=64)
def insert_statement(n: int) -> str:
    """One INSERT of ``n`` rows."""
    return _INSERT + ", ".join([_ROW] * n)


def statement_rows(waiting: int) -> int:
    """How many of ``waiting`` rows the next INSERT takes: all of them up to EXACT_ROWS, else the
    largest power of two that fits, so at most EXACT_ROWS + 5 statement sizes are ever prepared
    (a batch of 300: 256, 32, 12)."""
    return waiting if waiting <= EXACT_ROWS else 1 << (waiting.bit_length() - 1)


class Ledger:
    def __init__(self, store: Store, *, max_queue: int = 50_000, flush_rows: int = 500,
                 flush_interval: float = 0.15, retention_days: float = 90.0) -> None:  # fmt: skip
        self.store = store
        self.queue: deque[tuple[Any, ...]] = deque()
        self.max_queue = max_queue
        self.flush_rows = flush_rows
        self.flush_interval = flush_interval
        self.retention_days = retention_days
        self.dropped = 0
        self.written = 0
        self.failed_writes = 0
        self._warned_at = 0.0
        self._write_warned_at = 0.0
        self._wake = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self._cleanup: asyncio.Task[None] | None = None

    # --- the sink -----------------------------------------------------------------------------

    def record(self, rec: RequestRecord) -> None:
        if rec.route not in LEDGERED_ROUTES or rec.model is None:
            return
        if len(self.queue) >= self.max_queue:
            self.queue.popleft()
            self.dropped += 1
            now = time.monotonic()
            if now - self._warned_at > 10:
                self._warned_at = now
                log.warning("ledger queue full (%d rows): dropping the oldest rows (%d so far)", self.max_queue,
                            self.dropped)  # fmt: skip
        self.queue.append(row_of(rec))
        if len(self.queue) >= self.flush_rows:
            self._wake.set()

    # --- the writer ---------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())
        self._cleanup = asyncio.create_task(self._clean_periodically())

    async def _run(self) -> None:
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.flush_interval):
                    await self._wake.wait()
            self._wake.clear()
            # The rows queued by now; those arriving while they are written wait for the next round.
            # Draining until empty made a steady load's writer a loop of tiny batches: at c=1 a
            # write (the hop to the store's thread, a transaction, its WAL pages) outlasts a request
            # or two, so each round found one or two new rows and wrote them at once - a statement,
            # its locks and page writes per request or two instead of one per ``flush_interval``.
            await self.flush(len(self.queue))

    async def flush(self, limit: int | None = None) -> None:
        """Write the queue out: all of it (``limit`` None: reports, close), or its first ``limit`` rows."""
        left = len(self.queue) if limit is None else limit
        while self.queue and left > 0:
            n = statement_rows(min(len(self.queue), left, self.flush_rows, MAX_ROWS_PER_STATEMENT))
            rows = [self.queue.popleft() for _ in range(n)]
            try:
                await self.store.execute(insert_statement(n), [v for row in rows for v in row])
            except (StoreError, OSError, Exception) as err:  # the store failing must not lose the queue at once
                self.failed_writes += 1
                self.queue.extendleft(reversed(rows))
                now = time.monotonic()
                if now - self._write_warned_at > 10:  # a store down for a while: one line per 10 s
                    self._write_warned_at = now
                    log.warning("ledger write failed (%d rows kept queued): %s", len(self.queue), err)
                return
            self.written += n
            if limit is not None:
                left -= n
            else:
                left = len(self.queue)

    async def close(self) -> None:
        # The writer is stopped between batches, never cancelled inside one: a write cancelled
        # mid-transaction would lose its rows (popped from the queue, rolled back).
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
        if self._cleanup is not None:
            self._cleanup.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._cleanup
        await self.flush()

    async def _clean_periodically(self) -> None:
        while True:
            await self.cleanup()
            await asyncio.sleep(3600)

    async def cleanup(self, now: float | None = None) -> int:
        cutoff = (now or time.time()) - self.retention_days * 86400
        try:
            return await self.store.execute("DELETE FROM ledger WHERE ts < ?", (cutoff,))
        except Exception as err:
            log.warning("ledger clean-up failed: %s", err)
            return 0

    # --- the reports --------------------------------------------------------------------------

    async def spend(self, key_label: str, start: float, end: float) -> float:
        """USD spent by one key over [start, end) (what budgets are checked against)."""
        await self.flush()
        row = await self.store.fetchone("SELECT SUM(COALESCE(cost_usd, 0)) FROM ledger WHERE key_label = ? AND ts >= ? "
                                        "AND ts < ?", (key_label, start, end))  # fmt: skip
        return float(row[0] or 0.0) if row else 0.0

    async def totals(self, start: float, end: float, group_by: str | None) -> list[dict[str, Any]]:
        """Sums over [start, end) grouped by model, key, day, backend or status (or one total)."""
        await self.flush()
        key = {
            None: "'all'", "model": "COALESCE(model, '')", "key": "COALESCE(key_label, '')",
            "backend": "COALESCE(backend, '')", "status": "status",
            "day": _DAY[self.store.dialect],
        }[group_by]  # fmt: skip
        rows = await self.store.fetchall(
            f"SELECT {key} AS g, COUNT(*), SUM(input_tokens), SUM(output_tokens), SUM(cache_read_tokens), "
            "SUM(cache_write_tokens), SUM(COALESCE(cost_usd, 0)), SUM(CASE WHEN status >= 400 THEN 1 ELSE 0 END), "
            "AVG(latency_ms) FROM ledger WHERE ts >= ? AND ts < ? GROUP BY g ORDER BY g",
            (start, end),
        )
        out = []
        for g, n, inp, outp, cr, cw, cost, errors, latency in rows:
            if group_by == "day":
                g = time.strftime("%Y-%m-%d", time.gmtime(int(g) * 86400))
            out.append({
                "group": g, "requests": n, "errors": errors or 0, "input_tokens": inp or 0, "output_tokens": outp or 0,
                "cache_read_input_tokens": cr or 0, "cache_creation_input_tokens": cw or 0,
                "cost_usd": round(cost or 0.0, 6), "mean_latency_ms": round(latency or 0.0, 1),
            })  # fmt: skip
        return out

    def status(self) -> dict[str, Any]:
        return {"queued": len(self.queue), "written": self.written, "dropped": self.dropped,
                "failed_writes": self.failed_writes, "retention_days": self.retention_days}  # fmt: skip
