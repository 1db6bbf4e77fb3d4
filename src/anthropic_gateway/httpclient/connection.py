"""One upstream HTTP/1.1 connection (an asyncio.Protocol over httptools' response parser) and the
response being read on it.

Why by hand: the streamed answer is the gateway's hot path, and a general-purpose client pays per
chunk for what we do not need there (aiohttp: a future and a task wake-up per read, a timer re-armed
per ``data_received``). Here the parser's callbacks append the body to a list; a reader waits only
when that list is empty; the idle timeout is one timer that looks at a last-activity timestamp when
it fires (re-armed at most once per idle period, never per chunk).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

import httptools

from anthropic_gateway.httpclient.errors import Disconnected, HTTPClientError, IdleTimeout, TotalTimeout

if TYPE_CHECKING:
    from anthropic_gateway.httpclient._chunks import Reader
    from anthropic_gateway.httpclient.pool import Pool

# The optional C extension (_chunks.c); without it httptools cuts every chunk, as it always did. A
# build of another interface (a tree pulled and not rebuilt) is not used: the Python path is.
CHUNKS_INTERFACE = 2
ChunkReader: type[Reader] | None
try:
    from anthropic_gateway.httpclient._chunks import INTERFACE as _INTERFACE
    from anthropic_gateway.httpclient._chunks import Reader as _Reader
except ImportError:  # pragma: no cover - an install without a C compiler, or a build older than INTERFACE
    ChunkReader = None
else:
    ChunkReader = _Reader if _INTERFACE == CHUNKS_INTERFACE else None

# Past this many unread body bytes the socket is no longer read (the reader catches up first).
HIGH_WATER = 256 * 1024


class Connection(asyncio.Protocol):
    """A keep-alive connection to one (scheme, host, port); it reads one response at a time."""

    def __init__(self, pool: Pool, key: tuple[str, str, int]) -> None:
        self.pool = pool
        self.key = key
        self.transport: asyncio.Transport | None = None
        # The body as the parser cuts it (one piece per HTTP chunk): its callback is this list's own
        # append, a C call with no Python frame per chunk (an upstream's stream is one chunk per
        # event). The response being read owns the list; data_received hands each read over.
        self.parts: list[bytes] = []
        self.on_body: Callable[[bytes], object] = self.parts.append  # before the parser looks it up
        self.parser = httptools.HttpResponseParser(self)
        # The chunked body after the headers, when the C extension is built: one call per socket read
        # instead of httptools' callbacks per chunk (see _chunks.c). None before the headers, after
        # the reader stopped (the last chunk, anything unusual: httptools takes the rest), or without it.
        self.reader: Reader | None = None
        self.response: Response | None = None
        self.lost = False
        self.idle_since = 0.0

    # --- asyncio.Protocol ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        response = self.response
        if response is None or response.finished:  # bytes nobody asked for: the connection is not sane
            self.close()
            return
        response.last = response.loop.time()
        reader = self.reader
        if reader is None:
            if response.status or ChunkReader is None:
                self._parse(response, data)
                return
            # The headers are not complete yet: httptools takes them (up to their blank line, the
            # response's first CR LF CR LF: llhttp takes no other line end), and a chunked body after
            # them goes to the reader. The blank line may begin in an earlier read.
            seen = response.head_seen
            at = (seen + data).find(b"\r\n\r\n") if seen else data.find(b"\r\n\r\n")
            if at < 0:
                response.head_seen = (seen + data)[-3:]
                self._parse(response, data)
                return
            cut = at + 4 - len(seen)
            taken = self._parse(response, data[:cut])
            if taken <= 0:
                if not taken and cut < len(data):  # the rest as one feed of the whole read would go on
                    self._parse(response, data[cut:])
                return
            reader = self.reader = ChunkReader()
            pieces = reader.feed(data, cut)
        else:
            run, run_sink = response.run, response.run_sink
            if run is not None and run_sink is not None and response.sink is not None and not response._buf:
                # The streamed answer's usual read, its leading template events turned into their
                # text_deltas by the reader (no bytes per chunk); the rest of the read as pieces.
                ran = reader.run(data, 0, run)
                if ran is not None:
                    text, k, at = ran
                    pieces = reader.feed(data, at) if at < len(data) else []
                    tail = reader.tail
                    if tail is not None:
                        self.reader = None
                    run_sink(pieces, text, k)
                    if tail is not None:  # the last chunk, or anything unusual: httptools from there on
                        self._parse(response, tail)
                    return
            pieces = reader.feed(data)
        tail = reader.tail
        if tail is not None:  # stopped at the last chunk or at anything unusual: httptools from there on
            self.reader = None
            self.parts += pieces
            self._parse(response, tail)
        elif pieces:  # one delivery per socket read, however many HTTP chunks it held
            sink = response.sink
            if sink is not None and not response._buf:  # the streamed answer's usual read, inline
                sink(pieces)
            else:
                self.parts += pieces
                response.arrived()

    def _parse(self, response: Response, data: bytes) -> int:
        """``data`` through httptools, its body pieces delivered: -1 when the parser failed, 1 when
        these were the headers (and nothing after them) of a chunked body the reader can take, else 0."""
        parts = self.parts
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            response.arrived()
            response.fail(Disconnected("the upstream sent an invalid HTTP response"))
            return -1
        if parts:  # one delivery per socket read, however many HTTP chunks it held
            sink = response.sink
            if sink is not None and not response._buf:  # the streamed answer's usual read, inline
                pieces = parts.copy()  # the parser's list stays this connection's
                parts.clear()
                sink(pieces)
            else:
                response.arrived()
            return 0
        return 1 if response.status >= 200 and response.chunked and not response.finished else 0

    def eof_received(self) -> bool | None:
        return None  # the transport closes itself; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        response = self.response
        if response is not None:
            response.connection_lost(exc)
        self.pool.forget(self)

    def close(self) -> None:
        self.lost = True
        if self.transport is not None:
            self.transport.close()

    # --- httptools callbacks ---------------------------------------------------------------------

    def on_message_begin(self) -> None:
        response = self.response
        if response is not None:
            response.received = True

    def on_header(self, name: bytes, value: bytes) -> None:
        response = self.response
        if response is not None:
            key = name.decode("latin-1").lower()
            text = value.decode("latin-1")
            old = response.headers.get(key)
            response.headers[key] = text if old is None else f"{old}, {text}"

    def on_headers_complete(self) -> None:
        response = self.response
        if response is not None:
            response.headers_complete(self.parser.get_status_code())

    def on_message_complete(self) -> None:
        response = self.response
        if response is not None:
            response.complete(self.parser.should_keep_alive())


class Response:
    """An upstream response: ``status`` and ``headers`` once ``wait_headers()`` returned, then the body
    through ``readany()`` / ``read()``. The owner ends it with ``release()`` (back to the pool if the
    body ended cleanly, else closed) or ``close()`` (the connection is abandoned: the upstream sees
    the cancel)."""

    def __init__(self, conn: Connection, idle_timeout: float, deadline: float) -> None:
        loop = conn.pool.loop
        self.loop = loop
        self._conn = conn
        self.status = 0
        self.headers: dict[str, str] = {}
        self.finished = False  # the body ended (cleanly or not): no more bytes are expected
        self.last = loop.time()  # when the last byte arrived (the request was sent: the start)
        self.received = False  # any byte of this response arrived at all
        self._buf: list[bytes] = []  # body bytes not yet read
        self._size = 0
        self._paused = False
        self._eof = False  # the body ended cleanly
        self._keep = False  # ... and the upstream keeps the connection open
        self._until_close = False  # no length, not chunked: the body ends when the connection does
        self.chunked = False  # the body's framing is chunked and nothing else
        self.head_seen = b""  # the last bytes of the reads before the headers' end (see data_received)
        self.error: HTTPClientError | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._head: asyncio.Future[None] = loop.create_future()
        self._done = False  # released or closed by its owner
        # Set: the body goes to this callback as it arrives (once per socket read, from data_received,
        # as the parser cut it: one piece per HTTP chunk) instead of waiting in the buffer for readany().
        self.sink: Callable[[list[bytes]], None] | None = None
        # Set with the sink, when the body's reader is the C one: a read's leading run of the stream
        # translator's template events (see _chunks.c's Reader.run) goes to run_sink as its
        # text_deltas (the pieces after the run, the run's bytes, its event count), not as pieces.
        # The owner clears both with the sink: a sink is a closure that holds this response.
        self.run: tuple[bytes, bytes, bytes, bytes] | None = None
        self.run_sink: Callable[[list[bytes], bytes, int], None] | None = None
        self._idle = idle_timeout
        self._deadline = deadline
        # One timer for both limits, at whichever comes first (a timer armed and cancelled per
        # response is a few microseconds; a short answer never sees it fire).
        self._timer: asyncio.TimerHandle | None = loop.call_at(min(self.last + idle_timeout, deadline), self._check)

    # --- the owner's side ------------------------------------------------------------------------

    async def wait_headers(self) -> None:
        if not self._head.done():
            await self._head
        if not self.status:
            raise self.error or Disconnected("the upstream closed the connection before answering")

    async def readany(self) -> bytes:
        """The body bytes that arrived since the last call (waiting for some); b"" at its end."""
        while True:
            if self._buf:
                return self.take()
            if self.error is not None:
                raise self.error
            if self._eof:
                return b""
            waiter = self._waiter = self.loop.create_future()
            try:
                await waiter
            finally:
                self._waiter = None

    def take(self) -> bytes:
        """What the buffer holds now (b"" if nothing), without waiting."""
        buf = self._buf
        if not buf:
            return b""
        data = buf[0] if len(buf) == 1 else b"".join(buf)
        buf.clear()
        self._size = 0
        if self._paused:
            self._resume()
        return data

    def take_parts(self) -> list[bytes]:
        """What the buffer holds now as the parser cut it (one piece per HTTP chunk; [] if nothing),
        without waiting: what a sink set late gets first."""
        buf = self._buf
        if not buf:
            return []
        parts = buf.copy()
        buf.clear()
        self._size = 0
        if self._paused:
            self._resume()
        return parts

    async def wait(self) -> None:
        """Until ``wake()``, the body's end, or a failure (the sink's owner waits here)."""
        if self.finished:
            return
        waiter = self._waiter = self.loop.create_future()
        try:
            await waiter
        finally:
            self._waiter = None

    def wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def pause(self) -> None:
        """Stop reading the socket (the reader is behind): the upstream's sends block in its kernel."""
        if not self._paused:
            self._paused = True
            transport = self._conn.transport
            if transport is not None:
                transport.pause_reading()

    def resume(self) -> None:
        if self._paused:
            self._resume()

    @property
    def ended(self) -> bool:
        """The body ended cleanly (its bytes may still be buffered)."""
        return self._eof

    async def read(self) -> bytes:
        parts = []
        while chunk := await self.readany():
            parts.append(chunk)
        return b"".join(parts)

    async def json(self) -> object:
        import orjson

        return orjson.loads(await self.read())

    def at_eof(self) -> bool:
        return self._eof and not self._buf

    def release(self) -> None:
        """Done with the response: the connection goes back to the pool if the body was read to a
        clean end on a keep-alive connection, and is closed otherwise."""
        if self._done:
            return
        if self._eof and self._keep and not self._buf and not self._conn.lost:
            self._done = True
            self._stop_timers()
            self._conn.response = None
            self._conn.pool.put(self._conn)
        else:
            self.close()

    def close(self) -> None:
        """Abandon the response and its connection (the upstream sees the connection close)."""
        if self._done:
            return
        self._done = True
        self.finished = True
        self._stop_timers()
        self._buf.clear()
        self._conn.close()
        self._conn.pool.discard(self._conn)

    # --- the connection's side -------------------------------------------------------------------

    def headers_complete(self, status: int) -> None:
        self.status = status
        if status >= 200 and status not in (204, 304):
            headers = self.headers
            coding = headers.get("transfer-encoding", "").lower()
            self._until_close = "content-length" not in headers and "chunked" not in coding
            # exactly chunked (the reader's case): a body the parser frames as chunks, nothing else
            self.chunked = coding == "chunked" and "content-length" not in headers and status not in (204, 304)
        if not self._head.done():
            self._head.set_result(None)

    def arrived(self) -> None:
        """The body pieces the parser cut from the last socket read: to the sink if one is set, else
        into the buffer for readany() (waking it)."""
        parts = self._conn.parts
        sink = self.sink
        buf = self._buf
        if sink is not None:
            if buf:  # what arrived before the sink was set goes first
                parts[:0] = buf
                buf.clear()
                self._size = 0
            data = parts.copy()
            parts.clear()
            if data:  # (a parser error after a read's last piece: nothing more to deliver)
                sink(data)
            return
        buf += parts
        parts.clear()
        self._size = sum(map(len, buf))
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        if self._size > HIGH_WATER:
            self.pause()

    def complete(self, keep_alive: bool) -> None:
        if self.finished:
            return
        self._eof = True
        self._keep = keep_alive
        self._end()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.finished:
            return
        if self._until_close and self.status and exc is None:
            self._eof = True  # a body delimited by the connection's end
            self._end()
        elif self.status:
            self.fail(Disconnected("the upstream closed the connection before the answer ended"))
        else:
            self.fail(Disconnected("the upstream closed the connection before answering"))

    def fail(self, err: HTTPClientError) -> None:
        if self.finished:
            return
        self.error = err
        self._end()
        self._conn.close()

    # --- internals -------------------------------------------------------------------------------

    def _end(self) -> None:
        self.finished = True
        self._stop_timers()
        if not self._head.done():
            self._head.set_result(None)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _resume(self) -> None:
        self._paused = False
        transport = self._conn.transport
        if transport is not None and not self._conn.lost:
            transport.resume_reading()

    def _stop_timers(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _check(self) -> None:
        # One timer per response, looking at the last byte's time when it fires: re-armed at most once
        # per idle period, never per chunk, and never past the deadline. A pause of our own (the
        # reader is behind) is not silence.
        self._timer = None
        if self.finished:
            return
        now = self.loop.time()
        if now >= self._deadline:
            self.fail(TotalTimeout())
            return
        if self._paused:
            self.last = now
        due = self.last + self._idle
        if now < due:
            self._timer = self.loop.call_at(min(due, self._deadline), self._check)
        else:
            self.fail(IdleTimeout())

