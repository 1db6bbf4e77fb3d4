"""A streamed response's start held and written with its first body bytes, and its end written with
its last ones (http/direct_write.py's ``start_chunked``, ``UvicornWrite.hold`` / ``flush`` / ``end``):
the head is byte for byte what uvicorn's own ``send`` writes, the body the same bytes, the connection
kept or closed as uvicorn keeps or closes it - in fewer writes. Against the installed uvicorn, over a
real loopback socket."""

from __future__ import annotations

from typing import Any

import pytest

from anthropic_gateway.http.direct_write import start_chunked
from http_api.test_direct_write import _undated, raw_exchange, serve

HEADERS = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache"),
           (b"request-id", b"req_1"), (b"X-Rate%", b"100%d %b")]  # fmt: skip  (the head is a %-template of the values)


class Spy:
    """The cycle's transport, its writes counted."""

    def __init__(self, transport: Any) -> None:
        self.transport = transport
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(data)
        self.transport.write(data)

    def writelines(self, parts: Any) -> None:
        parts = list(parts)
        self.writes.append(b"".join(parts))
        self.transport.writelines(parts)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


def _request(path: bytes, close: bool) -> bytes:
    head = b"Connection: close\r\n" if close else b""
    return b"POST " + path + b" HTTP/1.1\r\nHost: x\r\n" + head + b"Content-Length: 2\r\n\r\n{}"


def _unchunked(raw: bytes) -> list[tuple[bytes, bytes]]:
    """Each response on the wire: its head and its body with the chunked framing taken off."""
    out = []
    while raw:
        head, _, rest = raw.partition(b"\r\n\r\n")
        body = b""
        while True:
            size, _, rest = rest.partition(b"\r\n")
            n = int(size, 16)
            body += rest[:n]
            assert rest[n : n + 2] == b"\r\n"
            rest = rest[n + 2 :]
            if n == 0:
                break
        out.append((head + b"\r\n\r\n", body))
        raw = rest
    return out


@pytest.mark.parametrize("close", [False, True], ids=["keep-alive", "connection-close"])
async def test_a_held_start_goes_out_with_the_first_bytes_as_uvicorns_send_writes_them(close: bool) -> None:
    spies: list[Spy] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        if scope["path"] == "/direct":
            cycle = send.__self__
            spy = cycle.transport = Spy(cycle.transport)
            spies.append(spy)
            direct = start_chunked(send, 200, list(HEADERS))
            assert direct is not None
            direct.hold(b"event: message_start\n\n")
            direct.write(b"data: 1\n\n")
            direct.write(b"data: 2\n\n")
            direct.hold(b"data: 3\n\n")
            assert direct.end(b"event: message_stop\n\n")
        else:
            await send({"type": "http.response.start", "status": 200, "headers": list(HEADERS)})
            for part in (b"event: message_start\n\n", b"data: 1\n\n", b"data: 2\n\n", b"data: 3\n\n"):
                await send({"type": "http.response.body", "body": part, "more_body": True})
            await send({"type": "http.response.body", "body": b"event: message_stop\n\n", "more_body": False})

    async with serve(app) as endpoint:
        via_send = await raw_exchange(endpoint, [_request(b"/send", close), _request(b"/send", close)])
        direct = await raw_exchange(endpoint, [_request(b"/direct", close), _request(b"/direct", close)])
    expected = _unchunked(_undated(via_send))
    assert len(expected) == (1 if close else 2)  # a closed connection answers its first request only
    assert expected[0][0].endswith(b"request-id: req_1\r\nx-rate%: 100%d %b\r\n" + (b"connection: close\r\n" if close else b"")
                                   + b"transfer-encoding: chunked\r\n\r\n")  # fmt: skip
    assert expected[0][1] == b"event: message_start\n\ndata: 1\n\ndata: 2\n\ndata: 3\n\nevent: message_stop\n\n"
    assert _unchunked(_undated(direct)) == expected
    # the head with message_start and the first events: one write; the last events with the end: one
    assert [len(spy.writes) for spy in spies] == [3] * len(expected)
    first, last = b"event: message_start\n\ndata: 1\n\n", b"data: 3\n\nevent: message_stop\n\n"
    for spy in spies:
        assert _undated(spy.writes[0]) == expected[0][0] + b"%x\r\n%b\r\n" % (len(first), first)
        assert spy.writes[1] == b"9\r\ndata: 2\n\n\r\n"
        assert spy.writes[2] == b"%x\r\n%b\r\n0\r\n\r\n" % (len(last), last)


async def test_a_held_start_alone_is_flushed_and_the_end_follows_alone() -> None:
    writes: list[list[bytes]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        cycle = send.__self__
        spy = cycle.transport = Spy(cycle.transport)
        direct = start_chunked(send, 200, list(HEADERS))
        assert direct is not None
        direct.flush()  # nothing held with it: the head alone
        direct.flush()  # nothing more: no write
        assert direct.end(b"")
        writes.append(spy.writes)

    async with serve(app) as endpoint:
        got = await raw_exchange(endpoint, [_request(b"/x", False)])
    assert _unchunked(got)[0][1] == b""
    assert len(writes[0]) == 2
    assert writes[0][0].startswith(b"HTTP/1.1 200 OK\r\n") and writes[0][0].endswith(b"transfer-encoding: chunked\r\n\r\n")
    assert writes[0][1] == b"0\r\n\r\n"


@pytest.mark.parametrize(
    ("case", "headers"),
    [
        ("length", [(b"content-length", b"2")]),
        ("encoding", [(b"transfer-encoding", b"chunked")]),
        ("connection header", [(b"connection", b"keep-alive")]),
        ("invalid name", [(b"bad name", b"x")]),
        ("invalid value", [(b"x-bad", b"a\nb")]),
    ],
)
async def test_start_chunked_leaves_to_uvicorn_what_its_send_would_treat_otherwise(
    case: str, headers: list[tuple[bytes, bytes]]
) -> None:
    outcome: dict[str, Any] = {}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        outcome["direct"] = start_chunked(send, 200, headers)
        outcome["started"] = send.__self__.response_started
        await send({"type": "http.response.start", "status": 200, "headers": headers})  # uvicorn may refuse it
        await send({"type": "http.response.body", "body": b"ok"})

    async with serve(app) as endpoint:
        await raw_exchange(endpoint, [_request(b"/x", False)])
    assert outcome == {"direct": None, "started": False}, case


async def test_start_chunked_declines_a_head_a_started_response_a_wrapped_send_and_a_logged_one() -> None:
    seen: dict[str, Any] = {}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        if scope["method"] == "HEAD":
            seen["head"] = start_chunked(send, 200, list(HEADERS))
            await send({"type": "http.response.start", "status": 200, "headers": list(HEADERS)})
            await send({"type": "http.response.body", "body": b""})
            return

        async def wrapped(message: Any) -> None:
            await send(message)

        seen["wrapped"] = start_chunked(wrapped, 200, list(HEADERS))
        seen["204"] = start_chunked(send, 204, list(HEADERS))
        await send({"type": "http.response.start", "status": 200, "headers": list(HEADERS)})
        seen["started"] = start_chunked(send, 200, list(HEADERS))
        await send({"type": "http.response.body", "body": b"ok"})

    async with serve(app) as endpoint:
        got = await raw_exchange(endpoint, [_request(b"/x", False), b"HEAD /x HTTP/1.1\r\nHost: x\r\n\r\n"])
    assert got.count(b"HTTP/1.1 200 OK") == 2
    assert seen == {"wrapped": None, "204": None, "started": None, "head": None}

    logged: list[Any] = []

    async def logged_app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        logged.append(start_chunked(send, 200, list(HEADERS)))
        await send({"type": "http.response.start", "status": 200, "headers": list(HEADERS)})
        await send({"type": "http.response.body", "body": b"ok"})

    async with serve(logged_app, access_log=True) as endpoint:
        await raw_exchange(endpoint, [_request(b"/x", False)])
    assert logged == [None]  # uvicorn's send writes its access line: its own path


async def test_start_chunked_checks_each_answers_values_under_names_it_has_seen() -> None:
    # The names' checks are kept per set of names, the values checked on every answer: the same names
    # with a value uvicorn refuses are left to uvicorn's send (which refuses it).
    seen: list[bool] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        headers = [*HEADERS, (b"x-seen", b"a\x01b" if scope["path"] == "/bad" else b"ab")]
        direct = start_chunked(send, 200, headers)
        seen.append(direct is not None)
        if direct is None:
            with pytest.raises(RuntimeError, match="Invalid HTTP header value"):
                await send({"type": "http.response.start", "status": 200, "headers": headers})
            raise RuntimeError("refused")  # uvicorn closes the connection: its start was begun
        assert direct.end(b"ok")

    async with serve(app) as endpoint:
        good = await raw_exchange(endpoint, [_request(b"/good", False)])
        bad = await raw_exchange(endpoint, [_request(b"/bad", False)])
    assert seen == [True, False]
    assert _unchunked(_undated(good))[0][0].endswith(b"x-seen: ab\r\ntransfer-encoding: chunked\r\n\r\n")
    assert bad == b""  # nothing of the answer reached the wire
