"""uvicorn serving an ASGI app on a loopback port inside the test's own event loop, for the tests
that pin what the gateway relies on from uvicorn's protocol (direct writes, the protocol's clocks)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import uvicorn


@contextlib.asynccontextmanager
async def serving(config: uvicorn.Config) -> AsyncIterator[tuple[uvicorn.Server, int]]:
    """The server started from ``config`` (host 127.0.0.1, port 0) and the port it listens on;
    stopped on exit."""
    server = uvicorn.Server(config)
    task = asyncio.ensure_future(server.serve())
    for _ in range(200):
        if server.started:
            break
        await asyncio.sleep(0.02)
    assert server.started
    try:
        yield server, server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
