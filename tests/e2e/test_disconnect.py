"""A client that goes away mid-stream makes the gateway close its upstream response at once."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time

import anthropic
import httpx2

from conftest import GATEWAY_ENV, SpawnGateway
from e2e import MODEL, USER_HELLO, post_raw
from fake_upstream import FakeUpstream, Reply, finish_chunk, text_chunk

CLOSE_WAIT = 5.0  # seconds the gateway gets to close the upstream connection


def test_sync_client_disconnect_closes_upstream(client: anthropic.Anthropic, upstream: FakeUpstream) -> None:
    upstream.expect(Reply.stream([text_chunk("partial "), text_chunk("answer")], done=False, hold=True))
    stream = client.messages.create(model=MODEL, max_tokens=500, messages=USER_HELLO, stream=True)
    seen: list[str] = []
    for event in stream:
        seen.append(event.type)
        if event.type == "content_block_delta":
            break
    stream.close()
    assert seen[0] == "message_start" and seen[-1] == "content_block_delta", seen
    assert upstream.wait_for_requests(1)
    handle = upstream.streams[0]
    assert handle.disconnected.wait(CLOSE_WAIT), (
        "the gateway kept the upstream stream open after the client left"
    )

    # the gateway is still healthy afterwards
    upstream.expect(Reply.auto([text_chunk("still here"), finish_chunk("stop")]))
    msg = client.messages.create(model=MODEL, max_tokens=10, messages=USER_HELLO)
    assert msg.content[0].type == "text" and msg.content[0].text == "still here"


async def test_async_client_cancel_closes_upstream(
    async_client: anthropic.AsyncAnthropic, upstream: FakeUpstream
) -> None:
    upstream.expect(Reply.stream([text_chunk("thinking about it")], done=False, hold=True))
    got_delta = asyncio.Event()

    async def consume() -> None:
        stream = await async_client.messages.create(
            model=MODEL, max_tokens=500, messages=USER_HELLO, stream=True
        )
        async with stream:
            async for event in stream:
                if event.type == "content_block_delta":
                    got_delta.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(got_delta.wait(), timeout=10)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    handle = upstream.streams[0]
    assert await asyncio.to_thread(handle.disconnected.wait, CLOSE_WAIT)


def test_disconnect_before_first_upstream_byte_closes_upstream(
    client: anthropic.Anthropic, upstream: FakeUpstream
) -> None:
    """The upstream answered 200 but is still silent (a reasoning model); the client gives up."""
    upstream.expect(Reply.stream([], done=False, hold=True))
    stream = client.messages.create(model=MODEL, max_tokens=500, messages=USER_HELLO, stream=True)
    first = next(iter(stream))
    stream.close()
    assert first.type == "message_start"
    assert upstream.wait_for_requests(1)
    assert upstream.streams[0].disconnected.wait(CLOSE_WAIT)


HELLO = {"max_tokens": 10, "messages": [{"role": "user", "content": "Hi"}]}


def test_a_non_streaming_client_that_disconnects_closes_the_upstream_call(
    spawn_gateway: SpawnGateway, upstream: FakeUpstream
) -> None:
    gw = spawn_gateway(GATEWAY_ENV)
    # A first call loads the upstream client and the tokenizer, so the next reaches the upstream at once.
    upstream.expect(Reply.auto([text_chunk("warm"), finish_chunk("stop")]))
    assert post_raw(gw.url, "/v1/messages", {"model": "a/b", **HELLO}).status_code == 200
    upstream.reset()
    upstream.expect(Reply.stream([text_chunk("slow")], done=False, hold=True, hold_timeout=20))

    def client() -> None:
        with contextlib.suppress(httpx2.TimeoutException):  # the client gives up and closes its connection
            httpx2.post(gw.url + "/v1/messages", json={"model": "a/b", **HELLO},
                        headers={"x-api-key": "k"}, timeout=0.5)  # fmt: skip

    t = threading.Thread(target=client)
    t.start()
    t.join(5)
    deadline = time.monotonic() + 5
    while not upstream.streams and time.monotonic() < deadline:
        time.sleep(0.02)
    assert upstream.streams, "the upstream never saw the call"
    assert upstream.streams[0].disconnected.wait(5), "the gateway kept the upstream call open"
