"""The service's counts off the event loop: in the counter's own threads, not the default executor."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import orjson
import pytest

from anthropic_gateway import service
from anthropic_gateway.routing import Router
from anthropic_gateway.schemas import decode_count_tokens_request
from anthropic_gateway.service import COUNT_IN_THREAD_BYTES, MessagesService
from anthropic_gateway.settings import Settings
from anthropic_gateway.tokens import count_request_tokens
from anthropic_gateway.upstream import UpstreamClient

MODEL = "gpt-4o"  # o200k


def big_request() -> tuple[bytes, int]:
    body = orjson.dumps({"model": MODEL, "messages": [{"role": "user", "content": "word " * 80_000}]})
    assert len(body) > COUNT_IN_THREAD_BYTES
    return body, len(body)


@pytest.fixture
def messages_service() -> Iterator[MessagesService]:
    settings = Settings()
    yield MessagesService(settings, Router(settings), UpstreamClient(settings))


def test_large_counts_leave_the_default_executor_free(messages_service: MessagesService) -> None:
    # Every count thread busy (a hostile text holds one for seconds): the default executor, which
    # resolves upstream host names, still answers at once; and the other way round.
    body, size = big_request()
    req = decode_count_tokens_request(body)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        release = threading.Event()
        busy = [loop.run_in_executor(service.count_pool(), release.wait, 30) for _ in range(service.COUNT_THREADS)]
        try:
            assert await asyncio.wait_for(asyncio.to_thread(lambda: "free"), 5) == "free"
            counting = asyncio.ensure_future(messages_service.count(req, MODEL, size))
            await asyncio.sleep(0.2)
            assert not counting.done()  # queued behind the busy count threads
        finally:
            release.set()
            await asyncio.gather(*busy)
        assert await asyncio.wait_for(counting, 30) == count_request_tokens(req, MODEL)

        default_release = threading.Event()
        blocked = [asyncio.ensure_future(asyncio.to_thread(default_release.wait, 30)) for _ in range(64)]
        try:
            assert await asyncio.wait_for(messages_service.count(req, MODEL, size), 30) > 80_000
        finally:
            default_release.set()
            await asyncio.gather(*blocked)

    asyncio.run(main())
