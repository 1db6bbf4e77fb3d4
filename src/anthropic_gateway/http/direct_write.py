"""A streamed response's body written straight to the client's transport, from a callback.

Under uvicorn's httptools protocol the ASGI ``send`` the front door's fast lane receives is the bound
method ``RequestResponseCycle.send``; once the response has started with chunked encoding, a body
chunk is ``b"%x\\r\\n" % len(data) + data + b"\\r\\n"`` on ``cycle.transport``, which is what that
method writes after its checks. Writing it ourselves lets the upstream's ``data_received`` translate
and forward a chunk with no coroutine, future or task wake-up in between (service.AnswerStream's
direct pump). What it relies on from uvicorn (pinned by tests/http_api/test_direct_write.py):
``cycle.transport``, ``cycle.flow`` (``write_paused``, ``drain()``), ``cycle.chunked_encoding``,
``cycle.response_started`` / ``response_complete`` and ``cycle.disconnected``.

Anything else - another ASGI server, uvicorn's h11 protocol (its state machine frames the body), the
test client, a wrapped ``send`` - gets ``None`` and the stream goes through the awaited ``send``.
"""

from __future__ import annotations

from typing import Any

from starlette.types import Send

from anthropic_gateway.service import DirectWrite


class UvicornWrite:
    __slots__ = ("_cycle", "_flow", "_transport")

    def __init__(self, cycle: Any) -> None:
        self._cycle = cycle
        self._transport = cycle.transport
        self._flow = cycle.flow

    @property
    def paused(self) -> bool:
        # A client gone is never "paused": nothing will drain, the watcher cancels the stream instead.
        return bool(self._flow.write_paused) and not self._cycle.disconnected

    def write(self, data: bytes) -> None:
        if data and not self._cycle.disconnected:  # a client gone: the front door's watcher ends the stream
            self._transport.write(b"%x\r\n%b\r\n" % (len(data), data))

    async def drain(self) -> None:
        if self._flow.write_paused and not self._cycle.disconnected:
            await self._flow.drain()


_CYCLE: Any = None


def _cycle_class() -> Any:
    global _CYCLE
    if _CYCLE is None:
        try:
            from uvicorn.protocols.http.httptools_impl import RequestResponseCycle
        except ImportError:  # uvicorn without httptools: never direct
            _CYCLE = False
        else:
            _CYCLE = RequestResponseCycle
    return _CYCLE


def direct_write(send: Send) -> DirectWrite | None:
    """The direct writer for this response (called after ``http.response.start`` was sent), or None
    when ``send`` is not uvicorn's httptools cycle sending a chunked body."""
    cycle = getattr(send, "__self__", None)
    cls = _cycle_class()
    if cycle is None or not cls or type(cycle) is not cls or getattr(send, "__func__", None) is not cls.send:
        return None
    if not cycle.response_started or cycle.response_complete or cycle.chunked_encoding is not True:
        return None
    if cycle.scope.get("method") == "HEAD":
        return None
    return UvicornWrite(cycle)
