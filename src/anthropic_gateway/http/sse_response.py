"""The SSE response: an AnswerStream's bytes to the client, with pings during upstream silence.

A raw ASGI response because the hot path is here: every upstream read becomes at most one write, and
a timer (not a task) covers upstream silence, re-armed once per interval, so it costs nothing per
chunk. The client going away is noticed by the front door's one watcher, which cancels the task this
runs in; closing the upstream connection then stops generation (and billing) where the provider
supports it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from starlette.types import Receive, Scope, Send

from anthropic_gateway import sse
from anthropic_gateway.errors import GatewayError
from anthropic_gateway.http.direct_write import direct_write, start_chunked
from anthropic_gateway.ops.lifecycle import drained_error
from anthropic_gateway.ops.record import RequestRecord
from anthropic_gateway.service import AnswerStream, DirectWrite, Write

log = logging.getLogger(__name__)


class Streamed(Protocol):
    """What the response sends: service.AnswerStream, or the response cache's replay / tee."""

    record: RequestRecord

    @property
    def writes(self) -> int: ...

    def start(self) -> bytes: ...

    async def pump(self, write: Write, direct: DirectWrite | None = None) -> bytes: ...

    def end(self, err: GatewayError) -> bytes: ...

    async def close(self) -> None: ...

    def abort(self) -> None: ...


class SSEResponse:
    def __init__(self, stream: Streamed, ping_interval: float, request_id: str) -> None:
        self.stream = stream
        self.headers = [
            (b"content-type", b"text/event-stream; charset=utf-8"),
            (b"cache-control", b"no-cache"),
            (b"request-id", request_id.encode()),
        ]
        self.ping_interval = ping_interval
        self.request_id = request_id
        self.finished = False
        self._ping_seen = 0
        self._pings = 0
        self._ping_timer: asyncio.TimerHandle | None = None
        self._ping_task: asyncio.Future[None] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        stream = self.stream
        exchange = scope.get("state", {}).get("exchange")
        loop = asyncio.get_running_loop()
        self._ping_timer = loop.call_later(self.ping_interval, self._ping_due, send)
        try:
            stream.record.status = 200
            # An answer's own pump flushes a held start before it first waits (service.AnswerStream):
            # the head, message_start and the first read's events then go out in one write.
            direct = start_chunked(send, 200, self.headers) if type(stream) is AnswerStream else None
            if direct is not None:
                direct.hold(stream.start())
            else:
                await send({"type": "http.response.start", "status": 200, "headers": self.headers})
                await send({"type": "http.response.body", "body": stream.start(), "more_body": True})
                direct = direct_write(send)

            async def write(data: bytes) -> None:
                await send({"type": "http.response.body", "body": data, "more_body": True})

            try:
                tail = await stream.pump(write, direct)
            except asyncio.CancelledError:
                if exchange is None or not exchange.drained:
                    raise
                task = asyncio.current_task()
                if task is not None:
                    task.uncancel()  # the drain timed out: the stream ends with an overloaded_error event
                tail = stream.end(drained_error())
            self.finished = True
            self._ping_timer.cancel()
            if self._ping_task is not None:
                await asyncio.wait([self._ping_task])  # a ping in flight goes out before the end
            if exchange is not None:
                exchange.responded = True
            if direct is None or not direct.end(tail):
                await send({"type": "http.response.body", "body": tail, "more_body": False})
            await stream.close()
        except BaseException:
            stream.abort()
            raise
        finally:
            self.finished = True
            self._ping_timer.cancel()
            if self._ping_task is not None:
                self._ping_task.cancel()

    async def _send_ping(self, send: Send) -> None:
        if self.finished:
            return
        try:
            await send({"type": "http.response.body", "body": sse.PING, "more_body": True})
        except Exception:  # the client went away: the watcher ends the stream
            log.debug("ping not sent (request %s)", self.request_id)

    def _ping_due(self, send: Send) -> None:
        # Upstream keep-alive comments are not content: only our own writes count as activity.
        if self.finished:
            return
        activity = self.stream.writes + self._pings
        if activity == self._ping_seen and (self._ping_task is None or self._ping_task.done()):
            self._pings += 1
            activity += 1
            self._ping_task = asyncio.ensure_future(self._send_ping(send))
        self._ping_seen = activity
        self._ping_timer = asyncio.get_running_loop().call_later(self.ping_interval, self._ping_due, send)
