"""The SSE response: pumps one upstream stream through a StreamTranslator to the client.

Built as a raw ASGI response because the hot path is here: every upstream network read becomes at
most one write to the client, a ping task covers upstream silence, and a watcher task notices a
client disconnect and closes the upstream connection at once (which stops generation, and billing,
on providers that support cancellation).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from starlette.types import Receive, Scope, Send

from anthropic_gateway import sse
from anthropic_gateway.errors import APIError
from anthropic_gateway.translate.stream import StreamTranslator
from anthropic_gateway.upstream import connection_error, stream_errors

if TYPE_CHECKING:
    import aiohttp

log = logging.getLogger(__name__)


class SSEResponse:
    def __init__(
        self,
        upstream: aiohttp.ClientResponse,
        translator: StreamTranslator,
        ping_interval: float,
        request_id: str,
        release_slot: Callable[[], None],
    ) -> None:
        self.release_slot = release_slot
        self.errors = stream_errors()
        self.upstream = upstream
        self.translator = translator
        self.headers = [
            (b"content-type", b"text/event-stream; charset=utf-8"),
            (b"cache-control", b"no-cache"),
            (b"request-id", request_id.encode()),
        ]
        self.ping_interval = ping_interval
        self.request_id = request_id
        self.writes = 0
        self.disconnected = False
        self.finished = False
        self._ping_seen = 0
        self._ping_timer: asyncio.TimerHandle | None = None
        self._ping_task: asyncio.Future[None] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        watcher = asyncio.create_task(self._watch(receive))
        loop = asyncio.get_running_loop()
        # A timer, not a task: re-armed once per interval, it costs nothing per chunk.
        self._ping_timer = loop.call_later(self.ping_interval, self._ping_due, send)
        reusable = False
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.headers})
            await send({"type": "http.response.body", "body": self.translator.start(), "more_body": True})
            tail = await self._pump(send)
            self.finished = True
            self._ping_timer.cancel()
            if self._ping_task is not None:
                await asyncio.wait([self._ping_task])  # a ping in flight goes out before the end
            if not self.disconnected:
                await send({"type": "http.response.body", "body": tail, "more_body": False})
            self.release_slot()  # the client has its answer; draining must not hold the slot
            reusable = await self._drain()
        finally:
            self.finished = True
            watcher.cancel()
            self._ping_timer.cancel()
            if self._ping_task is not None:
                self._ping_task.cancel()
            if reusable:
                self.upstream.release()
            else:
                self.upstream.close()  # abandons the connection: the upstream sees the cancel
            self.release_slot()

    async def _drain(self) -> bool:
        """After [DONE] the client has its answer; read the upstream body to its end so the
        connection can go back to the pool. Anything else (errors, early stops) closes it."""
        t = self.translator
        if self.disconnected or not t.saw_done or t.error is not None or t.stop_sequence is not None:
            return False
        content = self.upstream.content
        try:
            async with asyncio.timeout(2.0):
                while not content.at_eof():
                    if not await content.readany():
                        break
        except self.errors:
            return False
        return True

    async def _pump(self, send: Send) -> bytes:
        translator = self.translator
        content = self.upstream.content
        try:
            while True:
                chunk = await content.readany()
                if not chunk:
                    break
                out = translator.feed(chunk)
                if out:
                    self.writes += 1
                    await send({"type": "http.response.body", "body": out, "more_body": True})
                if translator.done:
                    break
        except self.errors as err:
            if self.disconnected:
                return b""
            log.warning("upstream stream failed (request %s): %r", self.request_id, err)
            return translator.fail(connection_error(err))
        except Exception:  # a translator bug must still end the stream with an error event
            log.exception("stream translation failed (request %s)", self.request_id)
            return translator.fail(APIError(f"Internal gateway error (request {self.request_id})"))
        if self.disconnected:
            log.info("client disconnected; upstream call closed (request %s)", self.request_id)
            return b""
        try:
            return translator.finish()
        except Exception:
            log.exception("stream translation failed (request %s)", self.request_id)
            return translator.fail(APIError(f"Internal gateway error (request {self.request_id})"))

    async def _watch(self, receive: Receive) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                if self.finished:
                    return
                self.disconnected = True
                self.upstream.close()
                return

    async def _send_ping(self, send: Send) -> None:
        if self.finished or self.disconnected:
            return
        try:
            await send({"type": "http.response.body", "body": sse.PING, "more_body": True})
        except Exception:  # the client went away: the watcher ends the stream
            log.debug("ping not sent (request %s)", self.request_id)

    def _ping_due(self, send: Send) -> None:
        # Upstream keep-alive comments are not content: only our own writes count as activity.
        if self.finished or self.disconnected:
            return
        if self.writes == self._ping_seen and (self._ping_task is None or self._ping_task.done()):
            self.writes += 1
            self._ping_task = asyncio.ensure_future(self._send_ping(send))
        self._ping_seen = self.writes
        self._ping_timer = asyncio.get_running_loop().call_later(self.ping_interval, self._ping_due, send)
