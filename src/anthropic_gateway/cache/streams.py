"""The two streams the response cache hands to the SSE response, with AnswerStream's interface
(start / pump / close / abort, ``writes``, ``record``).

- ``ReplayStream``: a hit, replayed from the stored Message (replay.py).
- ``TeeStream``: a live miss whose bytes are also kept, so the Message can be assembled once the
  stream has ended cleanly. Only requests the cache is on for get one: a plain stream pays nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from anthropic_gateway.cache.replay import assemble, replay_blocks, replay_end, replay_start
from anthropic_gateway.errors import GatewayError, sse_error_frame
from anthropic_gateway.ops.record import RequestRecord
from anthropic_gateway.service import AnswerStream, DirectWrite, Write


class ReplayStream:
    def __init__(self, message: dict[str, Any], record: RequestRecord) -> None:
        self.message = message
        self.record = record
        self.writes = 0

    def start(self) -> bytes:
        return replay_start(self.message)

    async def pump(self, write: Write, direct: DirectWrite | None = None) -> bytes:
        body = replay_blocks(self.message)
        if body:
            self.writes += 1
            self.record.first_token_at = time.perf_counter()
            await write(body)
        return replay_end(self.message)

    def end(self, err: GatewayError) -> bytes:
        """The drain timed out mid-replay: an error event ends it, as it ends a live stream."""
        return sse_error_frame(err)

    async def close(self) -> None:
        return None

    def abort(self) -> None:
        return None


# How a finished live stream ends for the cache: the Message (clean end), the error it ended with,
# or None (the client went away, or the stream did not finish).
Settle = Callable[[dict[str, Any] | None, GatewayError | None], None]


class TeeStream:
    def __init__(self, inner: AnswerStream, settle: Settle) -> None:
        self.inner = inner
        self.record = inner.record
        self._settle = settle
        self._parts: list[bytes] = []
        self._ended = False
        self._settled = False

    @property
    def writes(self) -> int:
        return self.inner.writes

    def start(self) -> bytes:
        head = self.inner.start()
        self._parts.append(head)
        return head

    async def pump(self, write: Write, direct: DirectWrite | None = None) -> bytes:
        # The tee keeps every frame: through the awaited write, never the direct path.
        parts = self._parts

        async def tee(data: bytes) -> None:
            parts.append(data)
            await write(data)

        tail = await self.inner.pump(tee)
        parts.append(tail)
        self._ended = True
        return tail

    def end(self, err: GatewayError) -> bytes:
        return self.inner.end(err)  # the stream ends in an error: nothing is stored

    async def close(self) -> None:
        try:
            await self.inner.close()
        finally:
            self._finish(abandoned=False)

    def abort(self) -> None:
        try:
            self.inner.abort()
        finally:
            self._finish(abandoned=True)

    def _finish(self, *, abandoned: bool) -> None:
        if self._settled:
            return
        self._settled = True
        error = self.inner.translator.error
        if abandoned or not self._ended or self.record.client_disconnected:
            self._settle(None, None)
        elif error is not None:
            self._settle(None, error)
        else:
            self._settle(assemble(b"".join(self._parts)), None)
        self._parts.clear()
