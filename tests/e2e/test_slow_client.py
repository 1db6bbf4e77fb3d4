"""A client that stops reading a stream makes the gateway stop reading its upstream: the upstream's
sends block (it is not buffered without bound in the gateway), and the stream goes on, complete and
in order, once the client reads again."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time

from conftest import CLIENT_KEY, GATEWAY_ENV, SpawnGateway
from e2e import MODEL
from fake_upstream import finish_chunk, text_chunk

PIECES = 120_000  # one-character deltas: each becomes one content_block_delta (under the 128k ceiling)


class CountingUpstream:
    """An SSE upstream on its own loop (thread) that counts the bytes its socket accepted."""

    def __init__(self) -> None:
        self.sent = 0
        self.total = 0
        self.finished = threading.Event()
        self.loop = asyncio.new_event_loop()
        self.server: asyncio.Server | None = None
        self.port = 0

        async def start() -> None:
            self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
            self.port = self.server.sockets[0].getsockname()[1]

        self.loop.run_until_complete(start())
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(int(v) for k, v in (line.split(b":", 1) for line in head.split(b"\r\n")[1:] if b":" in line)
                          if k.strip().lower() == b"content-length")  # fmt: skip
            await reader.readexactly(length)
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 32 * 1024)  # the kernel holds little of it
            events = [b"data: %s\n\n" % json.dumps(text_chunk("x")).encode()] * PIECES
            events += [b"data: %s\n\n" % json.dumps(finish_chunk("stop")).encode(), b"data: [DONE]\n\n"]
            wire = [b"%x\r\n%s\r\n" % (len(e), e) for e in events] + [b"0\r\n\r\n"]
            self.total = sum(map(len, wire))
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
            for at in range(0, len(wire), 64):
                batch = b"".join(wire[at : at + 64])
                writer.write(batch)
                await writer.drain()
                self.sent += len(batch)
            self.finished.set()
            await reader.read()  # until the gateway closes or reuses: either way, done
        finally:
            writer.close()

    def stop(self) -> None:
        async def close() -> None:
            assert self.server is not None
            self.server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def _request() -> bytes:
    body = json.dumps({"model": MODEL, "max_tokens": 128_000, "stream": True,
                       "messages": [{"role": "user", "content": "Hi"}]}).encode()  # fmt: skip
    return (b"POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"x-api-key: %s\r\nanthropic-version: 2023-06-01\r\nContent-Length: %d\r\n\r\n%s"
            % (CLIENT_KEY.encode(), len(body), body))  # fmt: skip


def _wait_for_stall(upstream: CountingUpstream, timeout: float) -> int:
    """The upstream's byte count once it stopped growing for a second (bounded by `timeout`)."""
    deadline = time.monotonic() + timeout
    last, since = -1, time.monotonic()
    while time.monotonic() < deadline and not upstream.finished.is_set():
        now = upstream.sent
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since > 1.0 and now > 0:
            return now
        time.sleep(0.05)
    return upstream.sent


def test_a_client_that_does_not_read_pauses_the_upstream(spawn_gateway: SpawnGateway) -> None:
    upstream = CountingUpstream()
    try:
        gw = spawn_gateway({**GATEWAY_ENV, "ANTHROPIC_GATEWAY_RETRIES": "0"},
                           upstream_url=f"http://127.0.0.1:{upstream.port}/v1")  # fmt: skip
        client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * 1024)
        client.settimeout(30)
        port = int(gw.url.rsplit(":", 1)[1].rstrip("/"))
        client.connect(("127.0.0.1", port))
        client.sendall(_request())
        stalled = _wait_for_stall(upstream, 60)
        assert not upstream.finished.is_set(), "the gateway read the whole upstream stream for a client that did not read"
        assert stalled < upstream.total / 2, (stalled, upstream.total)
        # Reading again: everything arrives, in order, and the upstream is read to its end.
        received = bytearray()
        while not received.endswith(b"0\r\n\r\n"):
            data = client.recv(1 << 20)
            assert data, "the gateway closed the stream early"
            received += data
        client.close()
        assert upstream.finished.wait(10)
        text = bytes(received).decode()
        assert text.count("event: content_block_delta") == PIECES
        assert '"stop_reason":"end_turn"' in text
        assert text.rstrip("\r\n0").endswith('data: {"type":"message_stop"}')
    finally:
        upstream.stop()

