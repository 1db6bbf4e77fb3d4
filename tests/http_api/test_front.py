"""The front door: request ids, and the one disconnect watcher that cancels the upstream call in
every phase (here: while the upstream has not even sent its headers)."""

from __future__ import annotations

import contextlib
import threading
import time

import httpx2

from conftest import GATEWAY_ENV, SpawnGateway
from e2e import post_raw
from fake_upstream import FakeUpstream, Reply, finish_chunk, text_chunk

HELLO = {"max_tokens": 10, "messages": [{"role": "user", "content": "Hi"}]}


def _leave_after(url: str, body: dict[str, object], seconds: float) -> None:
    with contextlib.suppress(httpx2.TimeoutException):  # the client gives up and closes its connection
        httpx2.post(url + "/v1/messages", json=body, headers={"x-api-key": "k"}, timeout=seconds)


def test_a_client_leaving_before_the_upstream_headers_cancels_the_call(
    spawn_gateway: SpawnGateway, upstream: FakeUpstream
) -> None:
    gw = spawn_gateway({**GATEWAY_ENV, "ANTHROPIC_GATEWAY_RETRIES": "0"})
    upstream.expect(Reply.auto([text_chunk("warm"), finish_chunk("stop")]))
    assert post_raw(gw.url, "/v1/messages", {"model": "a/b", **HELLO}).status_code == 200
    upstream.reset()
    for stream in (False, True):
        upstream.reset()
        upstream.expect(Reply.stream([text_chunk("late"), finish_chunk("stop")], headers_delay=20))
        t = threading.Thread(target=_leave_after, args=(gw.url, {"model": "a/b", "stream": stream, **HELLO}, 1.0))
        t.start()
        assert upstream.wait_for_requests(1, timeout=10)
        left = time.monotonic()
        t.join(10)
        assert upstream.streams[0].disconnected.wait(5), f"stream={stream}: the upstream call was kept open"
        # within 100 ms of the client leaving, give or take the fake's 10 ms poll and a loaded machine
        assert time.monotonic() - left < 3.0
    deadline = time.monotonic() + 5
    while gw.log_text().count("client disconnected; request abandoned") < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert gw.log_text().count("client disconnected; request abandoned") == 2
    assert "Traceback" not in gw.log_text()


def test_a_client_dropping_its_chunked_body_midway_is_an_info_line_not_a_traceback(
    spawn_gateway: SpawnGateway, upstream: FakeUpstream
) -> None:
    import socket

    gw = spawn_gateway(GATEWAY_ENV)
    with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as s:
        s.sendall(b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n10\r\n{\"model\": \"a/b\",\r\n")  # fmt: skip
        time.sleep(0.3)
    deadline = time.monotonic() + 5
    while "client disconnected; request abandoned" not in gw.log_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    log = gw.log_text()
    assert "INFO anthropic_gateway: client disconnected; request abandoned" in log
    assert "Traceback" not in log and " ERROR " not in log
    assert upstream.requests == []


def _half_closed_request(port: int) -> bytes:
    """A whole request, then shutdown(SHUT_WR) - as `nc -N` does - and whatever comes back."""
    import socket

    body = b'{"model": "a/b", "max_tokens": 10, "stream": true, "messages": [{"role": "user", "content": "Hi"}]}'
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\n\r\n%s" % (len(body), body))  # fmt: skip
        s.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_a_half_closed_client_is_cancelled_by_default_and_answered_when_configured(
    spawn_gateway: SpawnGateway, upstream: FakeUpstream
) -> None:
    # The upstream answers only after the EOF has surely been seen.
    slow = Reply.stream([text_chunk("late answer"), finish_chunk("stop")], headers_delay=1.0)
    cancel = spawn_gateway({**GATEWAY_ENV, "ANTHROPIC_GATEWAY_RETRIES": "0"})
    answer = spawn_gateway({**GATEWAY_ENV, "ANTHROPIC_GATEWAY_HALF_CLOSED_CLIENTS": "answer"})
    for gw in (cancel, answer):  # warm both up, so the calls below reach the upstream at once
        upstream.expect(Reply.auto([text_chunk("warm"), finish_chunk("stop")]))
        assert post_raw(gw.url, "/v1/messages", {"model": "a/b", **HELLO}).status_code == 200
    upstream.expect(slow)
    assert _half_closed_request(cancel.port) == b""  # taken for a client that left
    upstream.expect(slow)
    raw = _half_closed_request(answer.port)
    assert raw.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b'"text":"late answer"' in raw and b"event: message_stop" in raw


def test_the_fast_lanes_headers_answer_as_starlettes() -> None:
    # The fast lane looks a request's headers up in a dict; Starlette's Headers scan the list: the
    # same answers, a repeated name giving its first value, names in any case.
    from starlette.datastructures import Headers

    from anthropic_gateway.http.front import _Headers

    raw = [(b"x-api-key", b"first"), (b"content-length", b"12"), (b"x-api-key", b"second"),
           (b"x-gateway-cache", b"no-store"), (b"x-caf\xe9", b"\xe9t\xe9")]  # fmt: skip
    ours, theirs = _Headers(list(raw)), Headers(raw=list(raw))
    for name in ("x-api-key", "X-Api-Key", "content-length", "x-gateway-cache", "x-caf\xe9", "authorization", ""):
        assert ours.get(name) == theirs.get(name), name
        assert ours.get(name, "absent") == theirs.get(name, "absent"), name
        assert (name in ours) == (name in theirs), name
        if name in theirs:
            assert ours[name] == theirs[name]
    assert 3 not in ours
    assert ours.getlist("x-api-key") == ["first", "second"]
    assert ours.raw == raw


async def test_the_exchange_watches_the_task_asyncio_says_is_running() -> None:
    # Exchange.watch takes the running task from the accelerator's dict on 3.11 (asyncio.current_task's
    # own lookup, without its Python call): the task a disconnect cancels must be the request's own.
    import asyncio

    from anthropic_gateway.http.front import Exchange
    from anthropic_gateway.ops.record import RequestRecord

    async def receive() -> None:  # the watcher task (no server notice) waits on it until stopped
        await asyncio.sleep(10)

    async def request() -> tuple[object, object]:
        exchange = Exchange(receive, RequestRecord("req_1", "POST", "/v1/messages"))  # type: ignore[arg-type]
        exchange.watch()
        exchange.stop()
        return exchange.task, asyncio.current_task()

    watched, running = await asyncio.create_task(request())
    assert watched is running and running is not None
