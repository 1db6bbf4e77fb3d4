"""The upstream HTTP/1.1 client over real loopback sockets: raw asyncio servers that write exactly the
bytes a test wants, count connections and bytes, and notice a client that goes away."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from anthropic_gateway.httpclient import (
    ConnectError,
    Disconnected,
    Endpoint,
    IdleTimeout,
    Pool,
    Response,
    TotalTimeout,
)
from anthropic_gateway.upstream import connection_error

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
REQUEST = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"


class Server:
    """A raw HTTP server on 127.0.0.1: ``handler(reader, writer)`` answers each connection."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.closed = asyncio.Event()  # a connection ended (the client closed it, or we did)
        self.server: asyncio.Server | None = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            self.closed.set()

    async def start(self, ssl_context: ssl.SSLContext | None = None) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=ssl_context)
        return int(self.server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()


@contextlib.asynccontextmanager
async def serving(handler: Handler, ssl_context: ssl.SSLContext | None = None) -> AsyncIterator[tuple[Server, Endpoint]]:
    server = Server(handler)
    port = await server.start(ssl_context)
    try:
        yield server, Endpoint("https" if ssl_context else "http", "127.0.0.1", port)
    finally:
        await server.stop()


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
    return head + await reader.readexactly(length)


async def post(pool: Pool, endpoint: Endpoint, *, idle: float = 5.0, total: float = 10.0) -> Response:
    return await pool.request(endpoint, REQUEST, connect_timeout=5.0, idle_timeout=idle, total_timeout=total)


def length_reply(body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


async def test_keep_alive_connections_are_reused() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            writer.write(length_reply(b'{"n": 1}'))
            await writer.drain()

    pool = Pool(8)
    async with serving(handler) as (server, endpoint):
        for _ in range(5):
            response = await post(pool, endpoint)
            assert response.status == 200
            assert response.headers["content-type"] == "application/json"
            assert await response.read() == b'{"n": 1}'
            response.release()
        # Two at once need two connections; both are kept, and reused afterwards.
        both = await asyncio.gather(post(pool, endpoint), post(pool, endpoint))
        for response in both:
            assert await response.read() == b'{"n": 1}'
            response.release()
        for _ in range(3):
            response = await post(pool, endpoint)
            await response.read()
            response.release()
        assert server.connections == 2
        assert pool.opened == 2
    await pool.close()


async def test_a_response_not_read_to_its_end_does_not_go_back_to_the_pool() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
            await writer.drain()
            await asyncio.sleep(0.05)
            writer.write(b"0\r\n\r\n")

    pool = Pool(8)
    async with serving(handler) as (server, endpoint):
        response = await post(pool, endpoint)
        assert await response.readany() == b"hello"
        response.release()  # the body has not ended: the connection cannot carry another request
        await asyncio.wait_for(server.closed.wait(), 5)
        response = await post(pool, endpoint)
        assert await response.read() == b"hello"
        response.release()
        assert server.connections == 2
    await pool.close()


async def test_a_chunked_stream_split_at_awkward_boundaries() -> None:
    events = [b'data: {"i": %d, "text": "\xc3\xa9t\xc3\xa9"}\n\n' % i for i in range(40)] + [b"data: [DONE]\n\n"]
    wire = b"".join(b"%x\r\n%s\r\n" % (len(e), e) for e in events) + b"0\r\n\r\n"
    splits = [1, 2, 3, 1, 7, 1, 1, 13, 2, 5]  # through chunk-size lines, CRLFs and multi-byte characters

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for _ in range(2):
            await read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r")
            await writer.drain()
            await asyncio.sleep(0.01)
            writer.write(b"\n")
            at, n = 0, 0
            while at < len(wire):
                size = splits[n % len(splits)]
                writer.write(wire[at : at + size])
                await writer.drain()
                await asyncio.sleep(0)
                at += size
                n += 1

    pool = Pool(8)
    async with serving(handler) as (server, endpoint):
        for _ in range(2):
            response = await post(pool, endpoint)
            assert response.headers["content-type"] == "text/event-stream"
            parts = []
            while chunk := await response.readany():
                parts.append(chunk)
            assert b"".join(parts) == b"".join(events)
            assert response.at_eof()
            response.release()
        assert server.connections == 1  # the chunked body ended cleanly: the connection was reused
    await pool.close()


async def test_a_sink_gets_the_body_as_the_parser_cut_it_one_piece_per_chunk() -> None:
    # The stream translator's template path slices each event from its own piece (feed_parts): what
    # arrived before the sink was set comes out of take_parts(), then each read goes to the sink.
    events = [b'data: {"i":%d}\n\n' % i for i in range(5)]
    more = asyncio.Event()

    def chunks(part: list[bytes]) -> bytes:
        return b"".join(b"%x\r\n%s\r\n" % (len(e), e) for e in part)

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks(events[:3]))
        await more.wait()
        writer.write(chunks(events[3:]) + b"0\r\n\r\n")
        await writer.drain()

    pool = Pool(8)
    async with serving(handler) as (_, endpoint):
        response = await post(pool, endpoint)
        await response.wait_headers()
        await asyncio.sleep(0.05)
        assert response.take_parts() == events[:3]
        assert response.take_parts() == []
        got: list[list[bytes]] = []
        response.sink = got.append
        more.set()
        while not response.ended:
            await response.wait()
        assert got == [events[3:]]
        assert response.at_eof()
        response.release()
    await pool.close()


async def test_a_connection_dropped_mid_body() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 40)
        await writer.drain()
        transport = writer.transport
        transport.abort()

    pool = Pool(8)
    async with serving(handler) as (_, endpoint):
        response = await post(pool, endpoint)
        got = b""
        with pytest.raises(Disconnected) as info:
            while chunk := await response.readany():
                got += chunk
        assert got == b"x" * 40
        response.close()
        assert connection_error(info.value).message == (
            "Upstream connection error: the upstream closed the connection before the answer ended"
        )
    await pool.close()


async def test_a_body_delimited_by_the_connection_end() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it")
        await writer.drain()

    pool = Pool(8)
    async with serving(handler) as (_, endpoint):
        response = await post(pool, endpoint)
        assert await response.read() == b"all of it"
        response.release()
    await pool.close()


async def test_an_upstream_that_closed_an_idle_connection_is_called_again_on_a_new_one() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(length_reply(b"one"))  # keep-alive by HTTP/1.1's default, then closed anyway
        await writer.drain()

    pool = Pool(8)
    async with serving(handler) as (server, endpoint):
        for n in range(3):
            response = await post(pool, endpoint)
            assert await response.read() == b"one"
            response.release()
            await asyncio.sleep(0.05 if n == 0 else 0)  # the server's close has arrived, or not yet
        assert server.connections == 3
    await pool.close()


async def test_the_idle_timeout_before_the_headers_and_within_the_body() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        if server.connections == 2:
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            for _ in range(6):  # bytes every 0.1 s keep a 0.3 s idle timeout from firing
                writer.write(b"1\r\nx\r\n")
                await writer.drain()
                await asyncio.sleep(0.1)
        await asyncio.sleep(10)

    pool = Pool(8)
    async with serving(handler) as (server, endpoint):
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(IdleTimeout) as info:
            await post(pool, endpoint, idle=0.3)
        assert 0.25 < loop.time() - started < 3
        assert connection_error(info.value).message == "The upstream stopped sending data (idle timeout)"
        response = await post(pool, endpoint, idle=0.3)
        got = b""
        with pytest.raises(IdleTimeout):
            while chunk := await response.readany():
                got += chunk
        assert got == b"x" * 6  # the trickle never tripped it; the silence after it did
        response.close()
    await pool.close()


async def test_the_total_timeout_ends_a_trickling_body() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(100):
            writer.write(b"1\r\nx\r\n")
            await writer.drain()
            await asyncio.sleep(0.05)

    pool = Pool(8)
    async with serving(handler) as (_, endpoint):
        response = await post(pool, endpoint, idle=1.0, total=0.5)
        with pytest.raises(TotalTimeout) as info:
            while await response.readany():
                pass
        response.close()
        assert connection_error(info.value).message == "The upstream answer did not complete within the total timeout"
    await pool.close()


async def test_a_refused_connection_names_host_and_port() -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = int(server.sockets[0].getsockname()[1])
    server.close()
    await server.wait_closed()
    pool = Pool(8)
    with pytest.raises(ConnectError) as info:
        await post(pool, Endpoint("http", "127.0.0.1", port))
    assert connection_error(info.value).message == f"Upstream connection error: cannot connect to 127.0.0.1:{port}"
    # Its slot came back: a pool of one still connects (to nobody, again).
    pool_of_one = Pool(1)
    for _ in range(3):
        with pytest.raises(ConnectError):
            await asyncio.wait_for(post(pool_of_one, Endpoint("http", "127.0.0.1", port)), 5)


async def test_max_connections_bounds_what_is_open_at_once() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            await asyncio.sleep(0.1)
            writer.write(length_reply(b"ok"))
            await writer.drain()

    pool = Pool(2)
    async with serving(handler) as (server, endpoint):

        async def one() -> bytes:
            response = await post(pool, endpoint)
            body = await response.read()
            response.release()
            return body

        assert await asyncio.gather(*(one() for _ in range(6))) == [b"ok"] * 6
        assert server.connections == 2
    await pool.close()


async def test_a_cancelled_caller_closes_the_connection_in_every_phase() -> None:
    phase = {"n": 0}

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        phase["n"] += 1
        if phase["n"] == 2:  # the body phase: a stream that never ends
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n")
            await writer.drain()
        assert await reader.read() == b""  # waits for the client to close

    pool = Pool(8)
    async with serving(handler) as (server, endpoint):
        # Waiting for the headers.
        task = asyncio.ensure_future(post(pool, endpoint))
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.wait_for(server.closed.wait(), 5)
        # Reading the body: the owner closes the response, as AnswerStream.abort() does.
        server.closed.clear()
        response = await post(pool, endpoint)
        assert await response.readany() == b"x"
        reading = asyncio.ensure_future(response.readany())
        await asyncio.sleep(0.1)
        reading.cancel()
        response.close()
        await asyncio.wait_for(server.closed.wait(), 5)
        assert server.connections == 2
    await pool.close()


async def test_an_unread_body_pauses_the_upstream_socket() -> None:
    sent = {"bytes": 0}
    total = 64 * 1024 * 1024
    piece = b"y" * 65536

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % total)
        while sent["bytes"] < total:
            writer.write(piece)
            await writer.drain()
            sent["bytes"] += len(piece)

    pool = Pool(8)
    async with serving(handler) as (_, endpoint):
        response = await post(pool, endpoint)
        await asyncio.sleep(0.5)  # nobody reads: the client buffers 256 KB, then the kernel's buffers fill
        stalled = sent["bytes"]
        await asyncio.sleep(0.3)
        assert sent["bytes"] == stalled
        assert stalled < 16 * 1024 * 1024
        got = 0
        while chunk := await response.readany():
            got += len(chunk)
        assert got == total
        response.release()
    await pool.close()


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.fail("the TLS test needs the openssl command to make its self-signed certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    return cert, key


async def test_tls_to_a_server_whose_certificate_the_client_trusts(tls_files: tuple[Path, Path]) -> None:
    cert, key = tls_files
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nsecret\r\n0\r\n\r\n")
            await writer.drain()

    trusting = Pool(8, ssl_context=ssl.create_default_context(cafile=str(cert)))
    async with serving(handler, server_ctx) as (server, endpoint):
        for _ in range(2):
            response = await post(trusting, endpoint)
            assert await response.read() == b"secret"
            response.release()
        assert server.connections == 1
        # The default context does not know the self-signed certificate: the handshake fails.
        with pytest.raises(ConnectError) as info:
            await post(Pool(8), endpoint)
        assert isinstance(info.value.cause, ssl.SSLCertVerificationError)
    await trusting.close()


async def test_on_sent_runs_once_per_request_right_after_its_write_and_its_error_closes_the_connection() -> None:
    received: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received.append(await read_request(reader))
        writer.write(length_reply(b"one"))  # then closed: the next request finds a dead idle connection
        await writer.drain()

    pool = Pool(8)
    calls: list[int] = []
    async with serving(handler) as (server, endpoint):
        for n in range(3):  # (a request that finds the server's close only after its write goes again)
            await asyncio.sleep(0.05 if n == 1 else 0)
            response = await pool.request(endpoint, REQUEST, connect_timeout=5.0, idle_timeout=5.0, total_timeout=10.0,
                                          on_sent=lambda: calls.append(len(received)))  # fmt: skip
            assert await response.read() == b"one"
            response.release()
            # called once per request, when the request was written but before the server could read it
            assert calls == list(range(n + 1))
        assert received == [REQUEST] * 3
        assert server.connections == 3

        def fails() -> None:
            raise RuntimeError("counting failed")

        with pytest.raises(RuntimeError, match="counting failed"):  # the caller's error, the connection closed
            await pool.request(endpoint, REQUEST, connect_timeout=5.0, idle_timeout=5.0, total_timeout=10.0, on_sent=fails)
        assert pool._busy == set() and pool._idle_count == 0
        assert pool._slots is not None and pool._slots._value == 8  # its slot back
    await pool.close()
