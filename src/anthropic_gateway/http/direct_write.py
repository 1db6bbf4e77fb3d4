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


class UvicornWrite:
    __slots__ = ("_cycle", "_first", "_flow", "_head", "_transport")

    def __init__(self, cycle: Any, head: bytes | None = None) -> None:
        self._cycle = cycle
        self._transport = cycle.transport
        self._flow = cycle.flow
        # start_chunked's status line and headers, not written yet, and body bytes held (hold()): they
        # go out with the next write (one system call, not three), or with flush() or end().
        self._head = head
        self._first = b""

    @property
    def paused(self) -> bool:
        # A client gone is never "paused": nothing will drain, the watcher cancels the stream instead.
        return bool(self._flow.write_paused) and not self._cycle.disconnected

    def write(self, data: bytes) -> None:
        if self._head is not None or self._first:
            self._write_held(data)
        elif data and not self._cycle.disconnected:  # a client gone: the front door's watcher ends the stream
            self._transport.write(b"%x\r\n%b\r\n" % (len(data), data))

    def hold(self, data: bytes) -> None:
        """Body bytes written with the next write, flush() or end(), in the same system call."""
        self._first += data

    def flush(self) -> None:
        """What is held (the head, body bytes), now."""
        if self._head is not None or self._first:
            self._write_held(b"")

    def _write_held(self, data: bytes) -> None:
        head, first = self._head or b"", self._first
        self._head, self._first = None, b""
        if not self._cycle.disconnected:
            data = first + data
            self._transport.write(b"%b%x\r\n%b\r\n" % (head, len(data), data) if data else head)

    def end(self, data: bytes) -> bool:
        """The body's last bytes and its end, written with what is held as uvicorn's ``send`` writes
        an ``http.response.body`` without ``more_body``, and the cycle left as it leaves it; False,
        with what is held flushed, wherever that ``send`` would wait or do nothing (the client's
        buffer is full, the client is gone): the caller then sends the end through it."""
        cycle = self._cycle
        if cycle.flow.write_paused or cycle.disconnected or cycle.response_complete:
            self.flush()
            return False
        head, first = self._head or b"", self._first
        self._head, self._first = None, b""
        transport = self._transport
        if first:  # the last read's events, maybe a whole answer's: not copied into one bytes again
            transport.writelines((head, b"%x\r\n" % (len(first) + len(data)), first, data, b"\r\n0\r\n\r\n"))
        elif data:
            transport.write(b"%b%x\r\n%b\r\n0\r\n\r\n" % (head, len(data), data))
        else:
            transport.write(head + b"0\r\n\r\n")
        cycle.response_complete = True
        cycle.message_event.set()
        if not cycle.keep_alive:
            transport.close()
        cycle.on_response()
        return True

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


def direct_write(send: Send) -> UvicornWrite | None:
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

            bad_value = _refused(impl.HEADER_VALUE_RE.search)  # (NUL among them)
            # ... and a table that turns each of those into a NUL: a value's check is one pass and a find
            nul = bytes(0 if b in bad_value else b for b in range(256))
            _SEND = (cls, cls.send, _refused(impl.HEADER_RE.search), bad_value, impl.STATUS_LINE, nul)  # fmt: skip
    return _SEND


# The header names of a response, as a tuple, to what uvicorn's send makes of them: the names
# lowercased with their separators, as a %-template of the values (``fields % values``: one format,
# not a join of the names and values interleaved; a name's % escaped), and the index of the
# content-length (-1 for a chunked start, which has none); or False where its send
# would do something else with them (refuse a name, act on transfer-encoding or connection, frame
# a whole answer without a length as chunks, or act on a chunked start's length). A response's
# names come from the gateway's code, so there are a few sets; the maps stop growing at
# _PLANS_CAP (the rest are worked out each time).
_Plan = tuple[bytes, int] | bool
_PLANS: dict[tuple[bytes, ...], _Plan] = {}
_CHUNKED_PLANS: dict[tuple[bytes, ...], _Plan] = {}
_PLANS_CAP = 256


def _plan(names: tuple[bytes, ...], bad_name: bytes, chunked: bool) -> _Plan:
    raw = b"".join(names)
    if len(raw.translate(None, bad_name)) != len(raw):
        return False
    lowered = [name.lower() for name in names]
    if b"transfer-encoding" in lowered or b"connection" in lowered or (b"content-length" in lowered) is chunked:
        return False
    fields = b"\r\n".join(name.replace(b"%", b"%%") + b": %b" for name in lowered)  # (% is a token character)
    return fields, -1 if chunked else lowered.index(b"content-length")


def _head(send: Send, status: int, headers: list[tuple[bytes, bytes]], chunked: bool) -> Any:
    """What uvicorn's ``send`` of ``http.response.start`` (status, these headers) would write, as
    (cycle, status line, header fields' template, content-length index, header values), when it would just
    write it; None wherever it would do anything else (wait for the client to drain, log the
    request, answer a HEAD or a bodiless status, refuse a header, act on a length, encoding or
    connection header): the caller then sends through it."""
    known = _SEND if _SEND is not None else _uvicorn_send()
    cycle = getattr(send, "__self__", None)
    if not known or cycle is None or type(cycle) is not known[0] or getattr(send, "__func__", None) is not known[1]:
        return None
    if cycle.response_started or cycle.disconnected or cycle.flow.write_paused or cycle.access_log:
        return None
    if cycle.scope["method"] == "HEAD" or status < 200 or status in (204, 304):
        return None
    if not headers:
        return None  # a whole answer with no content-length: uvicorn would send it chunked
    names, values = zip(*cycle.default_headers, *headers, strict=True)
    plans = _CHUNKED_PLANS if chunked else _PLANS
    plan = plans.get(names)
    if plan is None:
        plan = _plan(names, known[2], chunked)
        if len(plans) < _PLANS_CAP:
            plans[names] = plan
    if plan is False or plan is True:
        return None
    if b"".join(values).translate(known[5]).find(b"\0") >= 0:
        return None  # a value uvicorn's check refuses
    return cycle, known[4][status], plan[0], plan[1], values


def start_chunked(send: Send, status: int, headers: list[tuple[bytes, bytes]]) -> UvicornWrite | None:
    """A chunked response's start, as uvicorn's ``send`` of ``http.response.start`` writes it (status
    line, its default headers and these, ``transfer-encoding: chunked``) and with the cycle left as
    it leaves it, but held: the returned writer writes it with the body's first bytes (``hold``,
    ``write``), so that a streamed answer's head, message_start and first events are one write. None,
    with nothing done, wherever that ``send`` would do anything else (wait for the client to drain,
    refuse a header, act on a length, encoding or connection header, log the request, answer a
    HEAD): the caller then sends the start through it."""
    head = _head(send, status, headers, True)
    if head is None:
        return None
    cycle, status_line, fields, _, values = head
    cycle.response_started = True
    cycle.waiting_for_100_continue = False
    cycle.chunked_encoding = True
    cycle.expected_content_length = 0
    return UvicornWrite(cycle, b"".join((
        status_line, fields % values,
        b"\r\ntransfer-encoding: chunked\r\n\r\n" if cycle.keep_alive
        else b"\r\nconnection: close\r\ntransfer-encoding: chunked\r\n\r\n",
    )))  # fmt: skip


def write_whole(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> bool:
    """A whole response (status, headers with its content-length, body) in one write to the client's
    transport, byte for byte what uvicorn's ``send`` writes for ``http.response.start`` and then one
    ``http.response.body`` (two writes, two system calls, and two passes through its checks), with
    the cycle left as its ``send`` leaves it. False, with nothing written, wherever that ``send``
    would do anything else (wait for the client to drain, refuse a header, frame the body as chunks,
    act on a ``connection`` header, log the request, answer a HEAD): the caller then sends the two
    messages as usual, and uvicorn does what it does."""
    head = _head(send, status, headers, False)
    if head is None:
        return False
    cycle, status_line, fields, length_at, values = head
    if values[length_at] != b"%d" % len(body):
        return False  # uvicorn refuses it (or reads a length written otherwise): its own path says how
    keep_alive = cycle.keep_alive
    cycle.response_started = True
    cycle.waiting_for_100_continue = False
    cycle.chunked_encoding = False
    cycle.expected_content_length = 0
    cycle.transport.write(b"".join((
        status_line, fields % values,
        b"\r\n\r\n" if keep_alive else b"\r\nconnection: close\r\n\r\n", body,
    )))  # fmt: skip
    cycle.response_complete = True
    cycle.message_event.set()
    if not keep_alive:
        cycle.transport.close()
    cycle.on_response()
    return True
