"""What the direct stream path relies on from uvicorn (http/direct_write.py), pinned against the
installed uvicorn with the gateway's own protocol class over a real loopback socket: if uvicorn
renames or reshapes its cycle, these fail loudly instead of the gateway silently taking the slow path
(or writing a malformed body). And the fallbacks: anything that is not uvicorn's own ``send`` gets
no direct writer."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn

from anthropic_gateway.connection_limits import protocol_for
from anthropic_gateway.http.direct_write import direct_write, write_whole
from anthropic_gateway.httpclient import Endpoint, Pool
from anthropic_gateway.settings import load_settings
from http_api.serving import serving

REQUEST = b"POST /x HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\n\r\n{}"
START = {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]}


@contextlib.asynccontextmanager
async def serve(app: Any, access_log: bool = False) -> AsyncIterator[Endpoint]:
    # access_log off, as the gateway runs it (cli.py); uvicorn's own line is its send's to write
    config = uvicorn.Config(app, host="127.0.0.1", port=0, http=protocol_for(load_settings(environ={})),
                            lifespan="off", log_level="warning", loop="asyncio", access_log=access_log)  # fmt: skip
    async with serving(config) as (_, port):
        yield Endpoint("http", "127.0.0.1", port)


async def fetch(endpoint: Endpoint) -> tuple[int, dict[str, str], bytes]:
    pool = Pool(4)
    response = await pool.request(endpoint, REQUEST, connect_timeout=5, idle_timeout=5, total_timeout=10)
    body = await response.read()
    response.release()
    await pool.close()
    return response.status, response.headers, body


async def test_uvicorns_send_gets_a_direct_writer_that_frames_chunks_as_uvicorn_does() -> None:
    seen: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send(START)
        await send({"type": "http.response.body", "body": b"first ", "more_body": True})
        direct = direct_write(send)
        seen.append(direct)
        assert direct is not None
        assert direct.paused is False
        direct.write(b"second ")
        direct.write(b"")  # nothing: no empty chunk (it would end the body)
        direct.write(b"third \xc3\xa9" * 3)
        await direct.drain()
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async with serve(app) as endpoint:
        status, headers, body = await fetch(endpoint)
    assert seen and seen[0] is not None
    assert status == 200
    assert headers["transfer-encoding"] == "chunked"
    assert body == b"first second " + b"third \xc3\xa9" * 3


async def test_no_direct_writer_before_the_start_for_a_length_body_or_a_wrapped_send() -> None:
    seen: dict[str, Any] = {}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen["before start"] = direct_write(send)

        async def wrapped(message: Any) -> None:
            await send(message)

        await wrapped({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        seen["wrapped"] = direct_write(wrapped)
        seen["length body"] = direct_write(send)
        await send({"type": "http.response.body", "body": b"ok", "more_body": False})
        seen["complete"] = direct_write(send)

    async with serve(app) as endpoint:
        status, _, body = await fetch(endpoint)
    assert (status, body) == (200, b"ok")
    assert seen == {"before start": None, "wrapped": None, "length body": None, "complete": None}


def test_the_uvicorn_cycle_still_has_what_the_direct_writer_reads() -> None:
    from uvicorn.protocols.http.flow_control import FlowControl
    from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

    names = RequestResponseCycle.__init__.__code__.co_names
    for attribute in ("transport", "flow", "chunked_encoding", "response_started", "response_complete",
                      "disconnected", "scope", "default_headers", "keep_alive", "message_event", "on_response",
                      "waiting_for_100_continue", "expected_content_length", "access_log"):  # fmt: skip
        assert attribute in names, f"uvicorn's RequestResponseCycle no longer sets {attribute}"
    assert {"write_paused", "drain"} <= set(dir(FlowControl)) | set(FlowControl.__init__.__code__.co_names)
    assert issubclass(protocol_for(load_settings(environ={})), uvicorn.protocols.http.httptools_impl.HttpToolsProtocol)


@pytest.mark.parametrize("wrapper", ["lambda", "partial"])
def test_a_send_that_is_not_uvicorns_cycle_gets_none(wrapper: str) -> None:
    import functools

    async def send(message: Any) -> None:
        return None

    fake = send if wrapper == "lambda" else functools.partial(send)
    assert direct_write(fake) is None


# --- a whole response in one write (write_whole) ---------------------------------------------------

WHOLE_HEADERS = [(b"content-length", b"11"), (b"content-type", b"application/json"), (b"request-id", b"req_1"),
                 (b"X-Quota", b"5"), (b"X-Rate%", b"100%d %b")]  # fmt: skip  (the head is a %-template of the values)


async def raw_exchange(endpoint: Endpoint, requests: list[bytes]) -> bytes:
    """Each request on one connection, reading until the server closes it (or 1 s of silence)."""
    reader, writer = await asyncio.open_connection(endpoint.host, endpoint.port)
    got = b""
    for request in requests:
        writer.write(request)
        await writer.drain()
        await asyncio.sleep(0.05)
    try:
        while True:
            part = await asyncio.wait_for(reader.read(65536), 1.0)
            if not part:
                break
            got += part
    except TimeoutError:
        pass
    writer.close()
    return got


def _undated(raw: bytes) -> bytes:
    import re

    return re.sub(rb"date: [^\r]*\r\n", b"date: -\r\n", raw)


@pytest.mark.parametrize("close", [False, True], ids=["keep-alive", "connection-close"])
async def test_a_whole_response_is_written_byte_for_byte_as_uvicorns_send_writes_it(close: bool) -> None:
    """The same two responses through uvicorn's send (start + body) and through write_whole: the
    same bytes on the wire, and the connection goes on (keep-alive) or closes (the client's close)
    as uvicorn's own path does it."""
    used: list[bool] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        if scope["path"] == "/whole":
            used.append(write_whole(send, 201, list(WHOLE_HEADERS), b'{"ok":true}'))
        else:
            await send({"type": "http.response.start", "status": 201, "headers": list(WHOLE_HEADERS)})
            await send({"type": "http.response.body", "body": b'{"ok":true}'})

    head = b"Connection: close\r\n" if close else b""

    def request(path: bytes) -> bytes:
        return b"POST " + path + b" HTTP/1.1\r\nHost: x\r\n" + head + b"Content-Length: 2\r\n\r\n{}"

    async with serve(app) as endpoint:
        via_send = await raw_exchange(endpoint, [request(b"/send"), request(b"/send")])
        whole = await raw_exchange(endpoint, [request(b"/whole"), request(b"/whole")])
    one = (b"HTTP/1.1 201 Created\r\ndate: -\r\nserver: uvicorn\r\ncontent-length: 11\r\ncontent-type: application/json\r\n"
           b"request-id: req_1\r\nx-quota: 5\r\nx-rate%: 100%d %b\r\n" + (b"connection: close\r\n" if close else b"") + b'\r\n{"ok":true}')  # fmt: skip
    expected = one if close else one + one  # a closed connection answers its first request only
    assert _undated(via_send) == expected
    assert _undated(whole) == expected
    assert used == [True] if close else [True, True]


@pytest.mark.parametrize(
    ("case", "headers", "body"),
    [
        ("chunked", [(b"transfer-encoding", b"chunked")], b"ok"),
        ("no length", [(b"content-type", b"text/plain")], b"ok"),
        ("wrong length", [(b"content-length", b"3")], b"ok"),
        ("length as uvicorn reads it, not as written here", [(b"content-length", b" 2")], b"ok"),
        ("connection header", [(b"content-length", b"2"), (b"connection", b"keep-alive")], b"ok"),
        ("invalid name", [(b"content-length", b"2"), (b"bad name", b"x")], b"ok"),
        ("invalid value", [(b"content-length", b"2"), (b"x-bad", b"a\nb")], b"ok"),
    ],
)
async def test_write_whole_leaves_to_uvicorn_what_its_send_would_treat_otherwise(
    case: str, headers: list[tuple[bytes, bytes]], body: bytes
) -> None:
    outcome: dict[str, Any] = {}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        outcome["written"] = write_whole(send, 200, headers, body)
        try:
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": body})
        except RuntimeError as err:  # uvicorn refuses it: its own 500 follows
            outcome["refused"] = str(err)
            raise

    async with serve(app) as endpoint:
        await raw_exchange(endpoint, [b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"])
    assert outcome["written"] is False, case


async def test_write_whole_declines_where_uvicorn_logs_the_request_itself() -> None:
    seen: list[bool] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        seen.append(write_whole(send, 200, [(b"content-length", b"2")], b"ok"))
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    async with serve(app, access_log=True) as endpoint:
        got = await raw_exchange(endpoint, [b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"])
    assert got.endswith(b"\r\n\r\nok")
    assert seen == [False]


async def test_write_whole_declines_a_head_a_started_response_a_wrapped_send_and_a_204() -> None:
    seen: dict[str, bool] = {}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        if scope["method"] == "HEAD":
            seen["head"] = write_whole(send, 200, [(b"content-length", b"2")], b"ok")
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
            await send({"type": "http.response.body", "body": b""})
            return

        async def wrapped(message: Any) -> None:
            await send(message)

        seen["wrapped"] = write_whole(wrapped, 200, [(b"content-length", b"2")], b"ok")
        seen["204"] = write_whole(send, 204, [(b"content-length", b"0")], b"")
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        seen["started"] = write_whole(send, 200, [(b"content-length", b"2")], b"ok")
        await send({"type": "http.response.body", "body": b"ok"})

    async with serve(app) as endpoint:
        got = await raw_exchange(endpoint, [b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
                                            b"HEAD /x HTTP/1.1\r\nHost: x\r\n\r\n"])  # fmt: skip
    assert got.count(b"HTTP/1.1 200 OK") == 2
    assert seen == {"wrapped": False, "204": False, "started": False, "head": False}


def test_a_send_that_is_not_uvicorns_cycle_gets_no_whole_write() -> None:
    async def send(message: Any) -> None:
        return None

    assert write_whole(send, 200, [(b"content-length", b"2")], b"ok") is False


async def test_write_whole_checks_each_answers_values_under_names_it_has_seen() -> None:
    """The names' checks are kept per set of names; the values are checked on every answer: the same
    names with a value uvicorn refuses go to uvicorn's send (which refuses it), not to the wire."""
    seen: list[bool] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        value = b"a\x01b" if scope["path"] == "/bad" else b"ab"
        headers = [(b"content-length", b"2"), (b"X-Seen", value)]
        seen.append(write_whole(send, 200, headers, b"ok"))
        if not seen[-1]:
            with pytest.raises(RuntimeError, match="Invalid HTTP header value"):
                await send({"type": "http.response.start", "status": 200, "headers": headers})
            raise RuntimeError("refused")  # uvicorn closes the connection: its start was begun

    async with serve(app) as endpoint:
        good = await raw_exchange(endpoint, [b"POST /good HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"])
        bad = await raw_exchange(endpoint, [b"POST /bad HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"])
    assert seen == [True, False]
    assert _undated(good) == b"HTTP/1.1 200 OK\r\ndate: -\r\nserver: uvicorn\r\ncontent-length: 2\r\nx-seen: ab\r\n\r\nok"
    assert bad == b""  # nothing of the answer reached the wire
