"""Graceful shutdown, with a real gateway process and a slow scripted upstream: on SIGTERM / SIGINT new
connections are refused, what is in flight finishes within drain_timeout, what is still running then
ends with overloaded_error (an SSE error event, or a 529), and the ledger's queued rows are flushed."""

from __future__ import annotations

import json
import signal
import socket
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx2
import pytest

from conftest import GATEWAY_ENV, GatewayProcess, SpawnGateway
from e2e import check_well_formed, names, parse_sse
from fake_upstream import FakeUpstream, Pause, Reply, finish_chunk, text_chunk, usage_chunk

HELLO = {"model": "claude-sonnet-5", "max_tokens": 10, "messages": [{"role": "user", "content": "Hi"}]}
HEADERS = {"x-api-key": "test-key", "anthropic-version": "2023-06-01"}


@dataclass
class Call:
    """One request on its own thread: its status and body, and when its first bytes of content came."""

    stream: bool
    status: int = 0
    body: bytes = b""
    first_content: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    ended_at: float = 0.0

    def run(self, url: str) -> None:
        try:
            with httpx2.stream("POST", url + "/v1/messages", json={**HELLO, "stream": self.stream}, headers=HEADERS,
                               timeout=60) as resp:  # fmt: skip
                self.status = resp.status_code
                for part in resp.iter_bytes():
                    self.body += part
                    if b"content_block_delta" in self.body:
                        self.first_content.set()
        finally:
            self.ended_at = time.monotonic()
            self.done.set()


def start(gw: GatewayProcess, *, stream: bool) -> Call:
    call = Call(stream)
    threading.Thread(target=call.run, args=(gw.url,), daemon=True).start()
    return call


def refused(port: int, timeout: float = 5.0) -> bool:
    """Whether new connections are refused within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except ConnectionRefusedError:
            return True
        time.sleep(0.05)
    return False


def ledger(gw: GatewayProcess) -> list[tuple[Any, ...]]:
    with sqlite3.connect(gw.log_path.with_suffix(".db")) as db:
        return db.execute("SELECT route, status, error_type, output_tokens FROM ledger ORDER BY id").fetchall()


def exited(gw: GatewayProcess, timeout: float) -> int:
    return gw.proc.wait(timeout)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_stream_in_flight_finishes_and_its_row_is_written(spawn_gateway: SpawnGateway, upstream: FakeUpstream,
                                                            sig: signal.Signals) -> None:  # fmt: skip
    gw = spawn_gateway({**GATEWAY_ENV, "ANTHROPIC_GATEWAY_DRAIN_TIMEOUT": "30"})
    upstream.expect(Reply.stream([text_chunk("one "), Pause(1.5), text_chunk("two"), finish_chunk("stop"),
                                  usage_chunk(5, 2)]))  # fmt: skip
    call = start(gw, stream=True)
    assert call.first_content.wait(15)
    signalled = time.monotonic()
    gw.proc.send_signal(sig)
    assert refused(gw.port)  # while the stream still runs
    assert not call.done.is_set()
    assert call.done.wait(15)
    events = parse_sse(call.body)
    check_well_formed(events)
    assert names(events, pings=False)[-1] == "message_stop"
    assert "".join(e.data["delta"].get("text", "") for e in events if e.event == "content_block_delta") == "one two"
    assert exited(gw, 15) == (130 if sig == signal.SIGINT else -sig)  # as a shell reports an interrupted command
    assert time.monotonic() - signalled < 15  # long before drain_timeout: nothing was left to wait for
    assert ledger(gw) == [("/v1/messages", 200, None, 2)]
    assert "Traceback" not in gw.log_text()


def test_what_outlives_the_drain_timeout_ends_with_overloaded_error(spawn_gateway: SpawnGateway,
                                                                    upstream: FakeUpstream) -> None:  # fmt: skip
    gw = spawn_gateway({**GATEWAY_ENV, "ANTHROPIC_GATEWAY_DRAIN_TIMEOUT": "1.5"})
    upstream.expect(Reply.stream([text_chunk("partial")], done=False, hold=True, hold_timeout=25))  # open until the gateway leaves
    stream = start(gw, stream=True)
    assert stream.first_content.wait(15)
    upstream.expect(Reply.stream([], headers_delay=25))  # a non-streamed request still waiting for the upstream
    waiting = start(gw, stream=False)
    assert upstream.wait_for_requests(2, timeout=15)
    signalled = time.monotonic()
    gw.proc.send_signal(signal.SIGTERM)
    assert refused(gw.port)
    assert stream.done.wait(15) and waiting.done.wait(15)
    assert stream.ended_at - signalled >= 1.4 and waiting.ended_at - signalled >= 1.4  # not before drain_timeout

    events = parse_sse(stream.body)
    check_well_formed(events, complete=False)
    assert names(events, pings=False) == ["message_start", "content_block_start", "content_block_delta+", "error"]
    assert events[-1].data == {"type": "error", "error": {"type": "overloaded_error", "message": (
        "The gateway is shutting down and ended this request; retry it")}}  # fmt: skip
    assert waiting.status == 529
    body = json.loads(waiting.body)
    assert (body["type"], body["error"]["type"]) == ("error", "overloaded_error")
    assert body["error"]["message"] == "The gateway is shutting down and ended this request; retry it"

    assert exited(gw, 15) == -signal.SIGTERM
    assert sorted(ledger(gw)) == [("/v1/messages", 200, "overloaded_error", 0), ("/v1/messages", 529, "overloaded_error", 0)]
    log = gw.log_text()
    assert "drain timeout: ending 2 unfinished request(s) with overloaded_error" in log
    assert "Traceback" not in log and "Cancel " not in log  # uvicorn's own limit was never reached
    assert all(s.disconnected.wait(5) for s in upstream.streams)  # both upstream calls closed, not left running
