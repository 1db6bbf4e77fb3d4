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
from anthropic_gateway.http.direct_write import direct_write
from anthropic_gateway.httpclient import Endpoint, Pool
from anthropic_gateway.settings import load_settings

REQUEST = b"POST /x HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\n\r\n{}"
START = {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]}


@contextlib.asynccontextmanager
async def serve(app: Any) -> AsyncIterator[Endpoint]:
    config = uvicorn.Config(app, host="127.0.0.1", port=0, http=protocol_for(load_settings(environ={})),
                            lifespan="off", log_level="warning", loop="asyncio")  # fmt: skip
    server = uvicorn.Server(config)
    task = asyncio.ensure_future(server.serve())
    for _ in range(200):
        if server.started:
            break
        await asyncio.sleep(0.02)
    assert server.started
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield Endpoint("http", "127.0.0.1", port)
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


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
                      "disconnected", "scope"):  # fmt: skip
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
