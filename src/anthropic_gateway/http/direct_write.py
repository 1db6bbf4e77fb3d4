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

from itertools import chain
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


_SEND: Any = None  # uvicorn's RequestResponseCycle.send, its status lines, and the bytes its header checks refuse


def _refused(search: Any) -> bytes:
    """The bytes one of uvicorn's header regular expressions (a character class) finds: deleted with
    ``bytes.translate`` they say in one C pass what the expression's search says byte by byte."""
    return bytes(b for b in range(256) if search(bytes((b,))))


def _uvicorn_send() -> Any:
    global _SEND
    if _SEND is None:
        cls = _cycle_class()
        if not cls:
            _SEND = False
        else:
            from uvicorn.protocols.http import httptools_impl as impl

            _SEND = (cls, cls.send, _refused(impl.HEADER_RE.search), _refused(impl.HEADER_VALUE_RE.search),
                     impl.STATUS_LINE)  # fmt: skip
    return _SEND


# The header names of a whole answer, as a tuple, to what uvicorn's send makes of them: each name
# lowercased with its separators around it (the first without the line end before it), and the
# index of the content-length; or False where its send would do something else with them (refuse
# a name, act on transfer-encoding or connection, frame a body without a length as chunks). An
# answer's names come from the gateway's code, so there are a few sets; the map stops growing at
# _PLANS_CAP (the rest are worked out each time).
_PLANS: dict[tuple[bytes, ...], tuple[tuple[bytes, ...], int] | bool] = {}
_PLANS_CAP = 256


def _plan(names: tuple[bytes, ...], bad_name: bytes) -> tuple[tuple[bytes, ...], int] | bool:
    raw = b"".join(names)
    if len(raw.translate(None, bad_name)) != len(raw):
        return False
    lowered = [name.lower() for name in names]
    if b"transfer-encoding" in lowered or b"connection" in lowered or b"content-length" not in lowered:
        return False
    prefixes = (lowered[0] + b": ", *(b"\r\n" + name + b": " for name in lowered[1:]))
    return prefixes, lowered.index(b"content-length")


def write_whole(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> bool:
    """A whole response (status, headers with its content-length, body) in one write to the client's
    transport, byte for byte what uvicorn's ``send`` writes for ``http.response.start`` and then one
    ``http.response.body`` (two writes, two system calls, and two passes through its checks), with
    the cycle left as its ``send`` leaves it. False, with nothing written, wherever that ``send``
    would do anything else (wait for the client to drain, refuse a header, frame the body as chunks,
    act on a ``connection`` header, log the request, answer a HEAD): the caller then sends the two
    messages as usual, and uvicorn does what it does."""
    known = _SEND if _SEND is not None else _uvicorn_send()
    cycle = getattr(send, "__self__", None)
    if not known or cycle is None or type(cycle) is not known[0] or getattr(send, "__func__", None) is not known[1]:
        return False
    if cycle.response_started or cycle.disconnected or cycle.flow.write_paused or cycle.access_log:
        return False
    if cycle.scope["method"] == "HEAD" or (status < 200 or status in (204, 304)):
        return False
    if not headers:
        return False  # no content-length: uvicorn would send it chunked
    names, values = zip(*cycle.default_headers, *headers, strict=True)
    plan = _PLANS.get(names)
    if plan is None:
        plan = _plan(names, known[2])
        if len(_PLANS) < _PLANS_CAP:
            _PLANS[names] = plan
    if plan is False or plan is True:
        return False
    prefixes, length_at = plan
    joined = b"".join(values)
    if len(joined.translate(None, known[3])) != len(joined):
        return False  # a value uvicorn's check refuses
    if values[length_at] != b"%d" % len(body):
        return False  # uvicorn refuses it (or reads a length written otherwise): its own path says how
    keep_alive = cycle.keep_alive
    cycle.response_started = True
    cycle.waiting_for_100_continue = False
    cycle.chunked_encoding = False
    cycle.expected_content_length = 0
    cycle.transport.write(b"".join((
        known[4][status], b"".join(chain.from_iterable(zip(prefixes, values, strict=True))),
        b"\r\n\r\n" if keep_alive else b"\r\nconnection: close\r\n\r\n", body,
    )))  # fmt: skip
    cycle.response_complete = True
    cycle.message_event.set()
    if not keep_alive:
        cycle.transport.close()
    cycle.on_response()
    return True
