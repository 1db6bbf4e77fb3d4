"""Threads kept in the gateway's store: one row per position (a response id), partitioned by caller.

    turn = await keeper.begin(req, client)    # the full request to answer, or a rejection the SDK recovers from
    await keeper.commit(turn, message)        # before the answer's last byte: the answer's id is the new position
    keeper.end(turn)                          # always: the position it continued from is free again

Each position holds the whole conversation up to it; continuing from it moves that state to the new
position (the old row keeps only the fact that it was continued, so a second continue from it gets
`thread_already_continued`). Rows expire after `thread_ttl` seconds; a conversation larger than
`thread_max_bytes` is answered but not kept. Thread contents never reach a log line.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import msgspec

from anthropic_gateway.auth import Client
from anthropic_gateway.settings import Settings
from anthropic_gateway.store import Store, StoreError
from anthropic_gateway.threads.accumulate import Accumulator
from anthropic_gateway.threads.protocol import (
    already_continued,
    check_continue_fields,
    continued,
    in_flight,
    not_found,
    parse_thread,
    state_after,
    threads_off,
)

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Turn:
    """One threaded request: the full request it stands for, and where it continues from."""

    request: Any
    partition: str
    previous: str | None
    ended: bool = False


class ThreadKeeper:
    def __init__(self, settings: Settings, store: Store | None) -> None:
        self.enabled = settings.threads and store is not None
        self.store = store
        self.ttl = settings.thread_ttl
        self.max_bytes = settings.thread_max_bytes
        self._in_flight: set[tuple[str, str]] = set()

    async def view(self, req: Any, client: Client) -> Any:
        """The full request a threaded count_tokens stands for (nothing is held or changed)."""
        thread = parse_thread(req.thread)
        if thread is None or thread.previous_message_id is None:
            return req
        self._check_on()
        check_continue_fields(req)
        return continued(req, await self._load(client.partition, thread.previous_message_id))

    async def begin(self, req: Any, client: Client) -> Turn | None:
        thread = parse_thread(req.thread)
        if thread is None:
            return None
        self._check_on()
        previous = thread.previous_message_id
        if previous is None:
            return Turn(req, client.partition, None)
        check_continue_fields(req)
        slot = (client.partition, previous)
        if slot in self._in_flight:
            raise in_flight(previous)
        stored = await self._load(client.partition, previous)
        self._in_flight.add(slot)
        return Turn(continued(req, stored), client.partition, previous)

    async def commit(self, turn: Turn, message: dict[str, Any]) -> None:
        """Keep the conversation under the answer's id. A failure to keep it is not the client's: the
        next continue then finds no thread, and the SDK replays the conversation."""
        try:
            state = state_after(turn.request, message)
        except msgspec.MsgspecError:  # an answer block the request schema does not take back
            log.warning("thread not kept: the answer holds a block a request cannot carry")
            return
        now = time.time()
        try:
            async with self._store().transaction() as tx:
                await tx.execute("DELETE FROM threads WHERE expires_at < ?", (now,))
                if turn.previous is not None:
                    n = await tx.execute("UPDATE threads SET continued = 1, state = ? WHERE partition = ? "
                                         "AND message_id = ? AND continued = 0", (b"", turn.partition, turn.previous))  # fmt: skip
                    if n == 0:  # continued meanwhile by another replica sharing the store: one branch only
                        log.info("thread not kept: its previous position was continued meanwhile")
                        return
                if len(state) > self.max_bytes:
                    log.info("thread not kept: %d bytes exceed thread_max_bytes", len(state))
                    return
                await tx.execute(
                    "INSERT INTO threads (partition, message_id, state, size, continued, created_at, expires_at) "
                    "VALUES (?, ?, ?, ?, 0, ?, ?)",
                    (turn.partition, message["id"], state, len(state), now, now + self.ttl),
                )
        except StoreError as err:
            log.warning("thread not kept: %s", err)

    def end(self, turn: Turn | None) -> None:
        if turn is not None and not turn.ended:
            turn.ended = True
            if turn.previous is not None:
                self._in_flight.discard((turn.partition, turn.previous))

    # --- internals --------------------------------------------------------------------------------

    def _check_on(self) -> None:
        if not self.enabled:
            raise threads_off()

    def _store(self) -> Store:
        assert self.store is not None
        return self.store

    async def _load(self, partition: str, previous: str) -> bytes:
        try:
            row = await self._store().fetchone(
                "SELECT state, continued, expires_at FROM threads WHERE partition = ? AND message_id = ?",
                (partition, previous),
            )
        except StoreError:
            raise threads_off() from None
        if row is None or row[2] < time.time():
            raise not_found(previous)  # unknown, expired, or another caller's: the same answer
        if row[1]:
            raise already_continued(previous)
        state: bytes = row[0]
        return state


class ThreadedStream:
    """A streamed answer on a thread: every frame written is also accumulated, and the conversation is
    kept under the answer's id before its closing events are written, so the client's next continue
    finds it. Everything else is the wrapped stream's."""

    def __init__(self, stream: Any, turn: Turn, keeper: ThreadKeeper) -> None:
        self._stream = stream
        self._turn = turn
        self._keeper = keeper
        self._acc = Accumulator()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)

    def start(self) -> bytes:
        head: bytes = self._stream.start()
        self._acc.feed(head)
        return head

    async def pump(self, write: Any, direct: Any = None) -> bytes:
        # Every frame is accumulated: through the awaited write, never the direct path.
        acc = self._acc

        async def tapped(data: bytes) -> None:
            acc.feed(data)
            await write(data)

        tail: bytes = await self._stream.pump(tapped)
        acc.feed(tail)
        if acc.stopped and not acc.failed and acc.message["id"]:
            await self._keeper.commit(self._turn, acc.message)
        self._keeper.end(self._turn)
        return tail

    async def close(self) -> None:
        self._keeper.end(self._turn)
        await self._stream.close()

    def abort(self) -> None:
        self._keeper.end(self._turn)
        self._stream.abort()
