"""The gateway's protocol (connection_limits.GuardedHttpToolsProtocol) keeps one lazily armed timer
per connection for its three clocks - the headers' timeout, the body's, uvicorn's keep-alive - and
writes uvicorn's parser callbacks out. Pinned here with short limits, uvicorn serving a plain ASGI
app over real loopback sockets: the deadlines fall where they did, a long answer on a kept-alive
connection is not cut by the keep-alive clock, pipelined requests are answered in order, and a
request read in one piece arms no timer."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import uvicorn

from anthropic_gateway.connection_limits import ConnectionLimits, protocol_class
from http_api.serving import serving

HEADER, BODY, KEEP_ALIVE = 0.4, 0.4, 0.6


@contextlib.asynccontextmanager
async def serve(app: Any) -> AsyncIterator[tuple[uvicorn.Server, int]]:
    limits = ConnectionLimits(header_timeout=HEADER, body_timeout=BODY, max_header_bytes=65536, max_connections=64)
    config = uvicorn.Config(app, host="127.0.0.1", port=0, http=protocol_class(limits), lifespan="off",
                            log_level="warning", loop="asyncio", access_log=False, timeout_keep_alive=KEEP_ALIVE)  # fmt: skip
    async with serving(config) as running:
        yield running


async def app(scope: Any, receive: Any, send: Any) -> None:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    if scope["path"] == "/slow":
        await asyncio.sleep(1.0)
    answer = b"%s %s" % (scope["path"].encode(), body)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(answer))]})
    await send({"type": "http.response.body", "body": answer})


@contextlib.asynccontextmanager
async def connected(app: Any) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    """A connection to uvicorn serving ``app``, closed on exit."""
    async with serve(app) as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            yield reader, writer
        finally:
            writer.close()


def request(path: str, body: bytes = b"") -> bytes:
    return b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (path.encode(), len(body), body)


async def read_response(reader: asyncio.StreamReader) -> bytes:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    return await asyncio.wait_for(reader.readexactly(length), 5)


async def closed_by_keep_alive(reader: asyncio.StreamReader) -> None:
    """The server closes the connection once it has been idle for the keep-alive time."""
    started = time.monotonic()
    assert await asyncio.wait_for(reader.read(), 5) == b""
    waited = time.monotonic() - started
    assert KEEP_ALIVE * 0.8 < waited < KEEP_ALIVE + 1.0, waited


async def test_keep_alive_closes_after_the_last_response_not_the_first() -> None:
    async with connected(app) as (reader, writer):
        writer.write(request("/a", b"1"))
        assert await read_response(reader) == b"/a 1"
        await asyncio.sleep(KEEP_ALIVE * 0.6)
        writer.write(request("/b", b"2"))
        assert await read_response(reader) == b"/b 2"
        # The timer armed after /a fires first and re-arms for what is left of /b's idle time.
        await closed_by_keep_alive(reader)


async def test_a_long_answer_is_not_cut_by_the_previous_responses_keep_alive_clock() -> None:
    async with connected(app) as (reader, writer):
        writer.write(request("/a"))
        assert await read_response(reader) == b"/a "
        writer.write(request("/slow", b"x"))  # answered 1 s later: past /a's keep-alive deadline
        assert await read_response(reader) == b"/slow x"
        writer.write(request("/c"))
        assert await read_response(reader) == b"/c "


async def test_pipelined_requests_are_answered_in_order() -> None:
    async with connected(app) as (reader, writer):
        writer.write(request("/slow", b"1") + request("/b", b"2") + request("/c", b"3"))
        assert [await read_response(reader) for _ in range(3)] == [b"/slow 1", b"/b 2", b"/c 3"]
        await closed_by_keep_alive(reader)


async def test_headers_started_on_a_kept_alive_connection_have_the_header_timeout() -> None:
    async with connected(app) as (reader, writer):
        writer.write(request("/a"))
        assert await read_response(reader) == b"/a "
        writer.write(b"POST /b HTTP/1.1\r\nHost: x\r\n")  # and no more: 408 after the header timeout
        started = time.monotonic()
        raw = await asyncio.wait_for(reader.read(), 5)
        elapsed = time.monotonic() - started
        assert raw.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), raw
        assert b"The request headers did not arrive within 0.4 s" in raw
        assert HEADER * 0.8 < elapsed < KEEP_ALIVE, elapsed


async def test_a_body_that_stops_gets_408_after_the_body_timeout_from_its_last_read() -> None:
    async with connected(app) as (reader, writer):
        writer.write(b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n12")
        started = time.monotonic()
        for part in (b"34", b"56"):  # each read resets the body's clock
            await asyncio.sleep(BODY * 0.6)
            writer.write(part)
        raw = await asyncio.wait_for(reader.read(), 5)
        elapsed = time.monotonic() - started
        assert raw.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), raw
        assert b"The request body stopped arriving for 0.4 s" in raw
        assert 2 * BODY * 0.6 + BODY * 0.8 < elapsed < 2 * BODY * 0.6 + BODY + 1.0, elapsed


async def test_requests_read_in_one_piece_arm_no_timer_of_their_own() -> None:
    armed: list[float] = []
    loop = asyncio.get_running_loop()
    call_later = loop.call_later

    def counting(delay: float, callback: Any, *args: Any, **kwargs: Any) -> asyncio.TimerHandle:
        if getattr(callback, "__name__", "") == "_timed_out":
            armed.append(delay)
        return call_later(delay, callback, *args, **kwargs)

    async with serve(app) as (server, port):
        loop.call_later = counting  # type: ignore[method-assign]
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            for n in range(20):
                writer.write(request("/a", b"%d" % n))
                assert await read_response(reader) == b"/a %d" % n
            (protocol,) = server.server_state.connections
            assert protocol.timeout_keep_alive_task is None  # uvicorn's own keep-alive timer: never armed
            writer.close()
        finally:
            del loop.call_later
    # The connection's header clock, armed once; the keep-alive deadline keeps it (it fires first and
    # re-arms). Before: a header and a body timer per request, and uvicorn's keep-alive timer.
    assert len(armed) == 1, armed


async def test_the_written_out_callbacks_build_uvicorns_scope_and_answer_as_it_does() -> None:
    """What uvicorn's callbacks did, now the gateway protocol's own: 100-continue before the body is
    read, the path unquoted beside the raw one and the query string, headers lowercased with trailing
    whitespace cut, HTTP/1.0 answered and closed."""
    scopes: list[dict[str, Any]] = []

    async def recording(scope: Any, receive: Any, send: Any) -> None:
        scopes.append(scope)
        await app(scope, receive, send)

    async with serve(recording) as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /a%20b/c?x=1&y=%32 HTTP/1.1\r\nHost: x\r\nX-Trailing: v \t\r\nExpect: 100-continue\r\n"
                     b"Content-Length: 3\r\n\r\n")  # fmt: skip
        assert await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5) == b"HTTP/1.1 100 Continue\r\n\r\n"
        writer.write(b"abc")
        assert await read_response(reader) == b"/a b/c abc"
        writer.close()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /old HTTP/1.0\r\nHost: x\r\nContent-Length: 1\r\n\r\nz")
        raw = await asyncio.wait_for(reader.read(), 5)  # read to the end: the server closes it
        writer.close()
    assert raw.startswith(b"HTTP/1.1 200 OK\r\n") and b"\r\nconnection: close\r\n" in raw and raw.endswith(b"/old z")
    first, old = scopes
    assert (first["path"], first["raw_path"], first["query_string"]) == ("/a b/c", b"/a%20b/c", b"x=1&y=%32")
    assert first["headers"] == [(b"host", b"x"), (b"x-trailing", b"v"), (b"expect", b"100-continue"),
                                (b"content-length", b"3")]  # fmt: skip
    assert (first["method"], first["http_version"], first["type"], first["root_path"]) == ("POST", "1.1", "http", "")
    assert old["http_version"] == "1.0"
