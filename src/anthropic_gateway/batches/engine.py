"""The batch engine: feeds pending items to workers, writes results, ends, cancels and expires batches.

- **Feeding.** One task pages pending items out of the store (oldest batch first) into a small
  bounded queue; the items of a 100,000-request batch are never all in memory.
- **Workers.** ``batch_concurrency`` workers per backend, and at most that many requests in flight
  per backend (the item's route decides). A request rate-limited after dispatch's own retries (429 or
  529) pauses its backend for ``Retry-After`` (or an exponential wait) and is tried again, up to
  ``batch_rate_limit_retries`` times.
- **Writing.** Results are queued and written by one task, many per transaction; an item takes a
  result only while it is still pending (so a canceled or expired item keeps that state). A batch
  ends when it has no pending item left: final counts, ``ended_at`` and ``results_url`` together.
- **Durability.** An item is pending in the store until its result is committed. After a crash
  (``kill -9``) the engine starts again from the store: items that were in flight, or whose result
  was not yet written, run again; every item ends with exactly one result.
- **Clean-up.** Every ``batch_cleanup_interval`` seconds unfinished batches past ``expires_at`` get
  their pending items ``expired``, and ended batches older than ``batch_retention_days`` are deleted.
- **Several replicas** (a PostgreSQL store, ``shared``). Every replica runs workers. The feeder
  claims a few pending items at a time with a lease (``FOR UPDATE SKIP LOCKED``: no item is taken by
  two replicas), renewed every third of ``batch_lease_seconds`` while the replica holds it; the items
  of a replica that died are claimed by another once their lease expires. Each replica looks for
  batches created, canceled or ended elsewhere every ``REFRESH`` seconds. The clean-up sweep runs on
  one replica at a time (an advisory lock). The SQLite store's single process keeps the rest as it is.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from anthropic_gateway.batches import db
from anthropic_gateway.batches.envelope import Envelope
from anthropic_gateway.batches.objects import Batch, new_batch_id
from anthropic_gateway.batches.worker import Outcome, RateLimited, Work, attempt, invalid, validate
from anthropic_gateway.errors import GatewayError, InvalidRequestError

if TYPE_CHECKING:
    from anthropic_gateway.http.gateway import Gateway

log = logging.getLogger(__name__)

FEED_PAGE = 200
WRITE_ROWS = 1000
MAX_UNWRITTEN = 4 * WRITE_ROWS  # results in hand but not yet written: workers wait past this
MAX_BACKOFF = 60.0
REFRESH = 1.0  # shared store: seconds between looks for batches changed by other replicas


class BatchEngine:
    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self.settings = gw.settings
        self.store = gw.store
        self.running = False
        self._status: dict[str, str] = {}  # unfinished batch → in_progress, canceling, expiring
        self._owners: dict[str, str] = {}
        self._exhausted: set[str] = set()  # every pending item has been fed
        self._cursor: dict[str, int] = {}
        self._inflight: dict[str, set[int]] = {}  # taken by a worker, result not yet committed
        self._queue: asyncio.Queue[Work] | None = None
        self._writes: list[tuple[str, int, str, bytes | None]] = []
        self._write_ready = asyncio.Event()
        self._written = asyncio.Event()
        self._write_lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._seq = 0
        self._sems: dict[str, asyncio.Semaphore] = {}
        self._resume_at: dict[str, float] = {}  # backend → loop time its back-off ends
        self._watchers: dict[str, set[asyncio.Event]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        # Several replicas on one PostgreSQL store: claims (leases) instead of an in-memory cursor.
        self.shared = gw.store.dialect == "postgresql"
        self.replica = secrets.token_hex(6)
        self._claimed: dict[str, set[int]] = {}  # claimed by this replica, result not yet committed
        self._warned_at = 0.0

    # --- lifetime -----------------------------------------------------------------------------

    async def start(self) -> None:
        workers = self.settings.batch_concurrency * max(len(self.gw.router.backends), 1)
        if self.shared:  # nothing read here: a store that is down must not stop the start
            self._queue = asyncio.Queue(maxsize=workers * 2)
            self._tasks = [asyncio.create_task(self._feed_shared(), name="batch-feeder"),
                           asyncio.create_task(self._write_loop(), name="batch-writer"),
                           asyncio.create_task(self._sweep_loop(), name="batch-sweeper"),
                           asyncio.create_task(self._renew_loop(), name="batch-leases")]  # fmt: skip
            self._tasks += [asyncio.create_task(self._work(), name=f"batch-worker-{n}") for n in range(workers)]
            self.running = True
            return
        self._seq = await db.max_done_seq(self.store)
        for batch in await db.unfinished(self.store):
            self._status[batch.id] = "in_progress"
            self._owners[batch.id] = batch.owner
            if batch.status == "canceling":  # the crash came between the cancel's two writes
                await self._settle(batch.id, "canceled", "canceling")
            await self._maybe_finish(batch.id)
        await self.sweep()  # a batch that expired while the gateway was down
        self._queue = asyncio.Queue(maxsize=workers * 2)
        self._tasks = [asyncio.create_task(self._feed(), name="batch-feeder"),
                       asyncio.create_task(self._write_loop(), name="batch-writer"),
                       asyncio.create_task(self._sweep_loop(), name="batch-sweeper")]  # fmt: skip
        self._tasks += [asyncio.create_task(self._work(), name=f"batch-worker-{n}") for n in range(workers)]
        self.running = True
        if self._status:
            log.info("batches: resuming %d unfinished batch(es)", len(self._status))

    async def close(self) -> None:
        """Stop the workers (their items stay pending: they run again at the next start) and write the
        results already in hand."""
        if not self.running:
            return
        self.running = False
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        with contextlib.suppress(Exception):
            await self._commit()
        if self.shared:  # what this replica claimed but did not finish goes to the others at once
            for batch_id, idxs in list(self._claimed.items()):
                with contextlib.suppress(Exception):
                    await db.release(self.store, batch_id, sorted(idxs), self.replica)
            self._claimed.clear()

    # --- requests from the routes -------------------------------------------------------------

    async def create(self, owner: str, envelope: Envelope) -> Batch:
        now = time.time()
        batch = Batch(new_batch_id(), owner, "in_progress", envelope.count, now,
                      now + self.settings.batch_expiry_hours * 3600, None, None, 0, 0, 0, 0)  # fmt: skip
        await db.insert_batch(self.store, batch, envelope)
        self._status[batch.id] = "in_progress"
        self._owners[batch.id] = owner
        self._wake.set()
        return batch

    async def cancel(self, batch: Batch) -> Batch:
        if batch.status == "ended":
            raise InvalidRequestError(f"Batch {batch.id} has already ended; only an unfinished batch can be canceled")
        if batch.status == "in_progress":
            self._status[batch.id] = "canceling"
            await db.mark_canceling(self.store, batch.id, time.time())
            await self._settle(batch.id, "canceled", "canceling")
            await self._maybe_finish(batch.id)
        found = await db.get(self.store, batch.id)
        assert found is not None
        return found

    def watch(self, batch_id: str) -> contextlib.AbstractContextManager[asyncio.Event]:
        """An event set whenever results of the batch are committed (for the streamed endpoint)."""
        return _watch(self._watchers, batch_id)

    def unfinished(self) -> list[tuple[str, str]]:
        """(id, in_progress | canceling | expiring) of every batch not yet ended, oldest first."""
        return list(self._status.items())

    async def live_counts(self, batch_id: str) -> dict[str, int]:
        c = await db.counts(self.store, batch_id)
        inflight = len(self._inflight.get(batch_id, ()))
        if self.shared:  # running here, or claimed by another live replica
            inflight += await db.leased(self.store, batch_id, time.time(), self.replica)
        return {"pending": c.get("pending", 0) - inflight, "running": inflight,
                "succeeded": c.get("succeeded", 0), "errored": c.get("errored", 0),
                "canceled": c.get("canceled", 0), "expired": c.get("expired", 0)}  # fmt: skip

    # --- feeding and working ------------------------------------------------------------------

    async def _feed(self) -> None:
        assert self._queue is not None
        while True:
            self._wake.clear()
            fed = False
            for batch_id in list(self._status):
                if self._status.get(batch_id) != "in_progress" or batch_id in self._exhausted:
                    continue
                rows = await db.pending_items(self.store, batch_id, self._cursor.get(batch_id, -1), FEED_PAGE)
                if not rows:
                    self._exhausted.add(batch_id)
                    continue
                owner = self._owners[batch_id]
                for idx, custom_id, params in rows:
                    await self._queue.put(Work(batch_id, idx, custom_id, params, owner))
                    self._cursor[batch_id] = idx
                fed = True
                break  # the oldest batch first
            if not fed:
                await self._wake.wait()

    async def _feed_shared(self) -> None:
        """Claims a few pending items at a time (what the queue has room for), oldest batch first."""
        assert self._queue is not None
        lease = self.settings.batch_lease_seconds
        refreshed = float("-inf")
        while True:
            self._wake.clear()
            fed = False
            try:
                if time.monotonic() - refreshed >= REFRESH:
                    await self._refresh()
                    refreshed = time.monotonic()
                room = max(self._queue.maxsize - self._queue.qsize(), 1)
                for batch_id in list(self._status):
                    if self._status.get(batch_id) != "in_progress":
                        continue
                    now = time.time()
                    rows = await db.claim(self.store, batch_id, self.replica, now, now + lease, room)
                    if not rows:
                        continue
                    owner = self._owners[batch_id]
                    claimed = self._claimed.setdefault(batch_id, set())
                    for idx, custom_id, params in rows:
                        claimed.add(idx)
                        await self._queue.put(Work(batch_id, idx, custom_id, params, owner))
                    fed = True
                    break  # the oldest batch first
            except Exception as err:
                self._warn("feeding requests", err)
                await asyncio.sleep(REFRESH)
                continue
            if not fed:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(REFRESH):
                        await self._wake.wait()

    async def _refresh(self) -> None:
        """The unfinished batches as the store has them: those created here or elsewhere, canceled
        elsewhere (their pending items settled here too), or ended elsewhere (forgotten here)."""
        seen = set()
        for batch in await db.unfinished(self.store):
            seen.add(batch.id)
            if batch.id not in self._status:
                self._status[batch.id] = "in_progress"
                self._owners[batch.id] = batch.owner
            if batch.status == "canceling" and self._status[batch.id] == "in_progress":
                await self._settle(batch.id, "canceled", "canceling")
            await self._maybe_finish(batch.id)
        for batch_id in [b for b in self._status if b not in seen]:
            self._forget(batch_id)

    async def _renew_loop(self) -> None:
        lease = self.settings.batch_lease_seconds
        while True:
            await asyncio.sleep(lease / 3)
            until = time.time() + lease
            for batch_id, idxs in list(self._claimed.items()):
                if not idxs:
                    continue
                try:
                    await db.renew(self.store, batch_id, sorted(idxs), self.replica, until)
                except Exception as err:
                    self._warn("renewing claims", err)

    def _warn(self, doing: str, err: Exception) -> None:
        now = time.monotonic()
        if now - self._warned_at > 10:  # a store down for a while: one line per 10 s
            self._warned_at = now
            log.warning("batches: %s failed (%s: %s); retrying", doing, type(err).__name__, err)

    async def _work(self) -> None:
        assert self._queue is not None
        while True:
            work = await self._queue.get()
            if self._status.get(work.batch_id) != "in_progress":
                self._claimed.get(work.batch_id, set()).discard(work.idx)
                continue  # canceled or expired since it was fed: the store already says so
            inflight = self._inflight.setdefault(work.batch_id, set())
            inflight.add(work.idx)
            try:
                outcome = await self._run(work)
            except BaseException:
                inflight.discard(work.idx)  # stays pending in the store: runs again after a restart
                raise
            self._writes.append((work.batch_id, work.idx, outcome.state, outcome.result))
            self._write_ready.set()
            while len(self._writes) >= MAX_UNWRITTEN:  # the store is behind: results stay bounded
                self._written.clear()
                await self._written.wait()

    async def _run(self, work: Work) -> Outcome:
        try:
            req = validate(work)
            backend = self.gw.router.resolve(req.model).backend.name
        except GatewayError as err:
            return invalid(self.gw, work, err)
        sem = self._sems.setdefault(backend, asyncio.Semaphore(self.settings.batch_concurrency))
        loop = asyncio.get_running_loop()
        tries = 0
        while True:
            wait = self._resume_at.get(backend, 0.0) - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if self._status.get(work.batch_id) != "in_progress":
                state = "canceled" if self._status.get(work.batch_id) == "canceling" else "expired"
                return Outcome(state, b"")
            async with sem:
                try:
                    return await attempt(self.gw, work, req, last=tries >= self.settings.batch_rate_limit_retries)
                except RateLimited as limited:
                    tries += 1
                    delay = limited.retry_after
                    delay = min(2.0**tries, MAX_BACKOFF) if delay is None else min(delay, MAX_BACKOFF * 5)
                    self._resume_at[backend] = max(self._resume_at.get(backend, 0.0), loop.time() + delay)
                    log.info("batch %s: backend %s rate-limited; waiting %.1f s", work.batch_id, backend, delay)

    # --- writing ------------------------------------------------------------------------------

    async def _write_loop(self) -> None:
        while True:
            await self._write_ready.wait()
            self._write_ready.clear()
            try:
                await self._commit()
            except Exception:
                log.exception("batches: writing results failed; retrying")
                await asyncio.sleep(1.0)
                self._write_ready.set()

    async def _commit(self) -> None:
        while self._writes:
            rows, self._writes = self._writes[:WRITE_ROWS], self._writes[WRITE_ROWS:]
            async with self._write_lock:
                try:
                    if self.shared:
                        await db.write_results_shared(self.store, [(state, result or None, batch_id, idx)
                                                                   for batch_id, idx, state, result in rows])  # fmt: skip
                    else:
                        out = []
                        for batch_id, idx, state, result in rows:
                            self._seq += 1
                            out.append((state, result or None, self._seq, batch_id, idx))
                        await db.write_results(self.store, out)  # type: ignore[arg-type]
                except BaseException:
                    self._writes[:0] = rows
                    raise
            self._written.set()
            touched = set()
            for batch_id, idx, _, _ in rows:
                self._inflight.get(batch_id, set()).discard(idx)
                self._claimed.get(batch_id, set()).discard(idx)
                touched.add(batch_id)
            for batch_id in touched:
                await self._maybe_finish(batch_id)
                self._notify(batch_id)

    async def _settle(self, batch_id: str, state: str, status: str) -> None:
        """Every pending item not in flight becomes ``state`` (canceled, expired)."""
        self._status[batch_id] = status
        async with self._write_lock:
            keep = sorted(self._inflight.get(batch_id, ()))
            if self.shared:  # items in flight on other replicas end settled too; their results are then ignored
                await db.settle_pending_shared(self.store, batch_id, state, keep)
                self._claimed[batch_id] = self._claimed.get(batch_id, set()) & set(keep)
                self._notify(batch_id)
                return
            total = await self._total(batch_id)
            base = self._seq + 1
            self._seq += total + 1
            await db.settle_pending(self.store, batch_id, state, keep, base)
        self._notify(batch_id)

    async def _total(self, batch_id: str) -> int:
        batch = await db.get(self.store, batch_id)
        return batch.total if batch is not None else 0

    async def _maybe_finish(self, batch_id: str) -> None:
        if batch_id not in self._status or self._inflight.get(batch_id):
            return
        if await db.has_pending(self.store, batch_id):
            return
        await db.finish(self.store, batch_id, time.time())
        self._forget(batch_id)
        self._notify(batch_id)

    def _forget(self, batch_id: str) -> None:
        for table in (self._status, self._owners, self._cursor, self._inflight, self._claimed):
            table.pop(batch_id, None)  # type: ignore[attr-defined]
        self._exhausted.discard(batch_id)

    def _notify(self, batch_id: str) -> None:
        for event in self._watchers.get(batch_id, ()):
            event.set()

    # --- expiry and retention -----------------------------------------------------------------

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.batch_cleanup_interval)
            try:
                if self.shared:
                    async with self.store.exclusive("batches-sweep") as mine:
                        if mine:  # one replica at a time; the others skip this round
                            await self.sweep()
                else:
                    await self.sweep()
            except Exception as err:
                if self.shared:
                    self._warn("the clean-up", err)
                else:
                    log.exception("batches: clean-up failed")

    async def sweep(self) -> None:
        now = time.time()
        if self.shared:
            await self._refresh()  # batches created elsewhere expire here too
        for batch_id in await db.expired_unfinished(self.store, now):
            if batch_id in self._status:
                log.info("batch %s expired: its unfinished requests end as expired", batch_id)
                await self._settle(batch_id, "expired", "expiring")
                await self._maybe_finish(batch_id)
        cutoff = now - self.settings.batch_retention_days * 86400
        for batch_id in await db.ended_before(self.store, cutoff):
            await db.delete(self.store, batch_id)
            log.info("batch %s deleted: past the retention of %s days", batch_id, self.settings.batch_retention_days)


@contextlib.contextmanager
def _watch(watchers: dict[str, set[asyncio.Event]], batch_id: str) -> Iterator[asyncio.Event]:
    event = asyncio.Event()
    watchers.setdefault(batch_id, set()).add(event)
    try:
        yield event
    finally:
        group = watchers.get(batch_id)
        if group is not None:
            group.discard(event)
            if not group:
                del watchers[batch_id]
