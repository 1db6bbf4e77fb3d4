"""Client connections are bounded (issue 16 #4): header and body timeouts, a header size limit, a cap
on open connections, one warning per burst. Raw sockets against the real gateway process."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator

import httpx2
import pytest

from conftest import GATEWAY_ENV, GatewayProcess, SpawnGateway, start_gateway, stop_gateway
from fake_upstream import FakeUpstream

LIMITS_ENV = {
    **GATEWAY_ENV,
    "ANTHROPIC_GATEWAY_HEADER_TIMEOUT": "1",
    "ANTHROPIC_GATEWAY_BODY_TIMEOUT": "1",
    "ANTHROPIC_GATEWAY_MAX_CLIENT_CONNECTIONS": "12",
}
REQUEST_HEAD = b"POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory, _upstream_server: FakeUpstream) -> Iterator[GatewayProcess]:
    workdir = tmp_path_factory.mktemp("limits")
    gw = start_gateway(workdir / "gateway.log", upstream_url=_upstream_server.base_url, env=LIMITS_ENV, cwd=workdir)
    yield gw
    stop_gateway(gw)


def connect(gw: GatewayProcess) -> socket.socket:
    return socket.create_connection(("127.0.0.1", gw.port), timeout=10)


def read_all(s: socket.socket, timeout: float = 10.0) -> bytes:
    """Everything the gateway sends until it closes the connection."""
    s.settimeout(timeout)
    parts = []
    try:
        while chunk := s.recv(65536):
            parts.append(chunk)
    except ConnectionResetError:
        pass
    return b"".join(parts)


def status_and_error(raw: bytes) -> tuple[int, dict[str, str]]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    envelope = json.loads(body)
    assert envelope["type"] == "error", envelope
    assert b"connection: close" in head.lower()
    return status, envelope["error"]


def warnings(gw: GatewayProcess, what: str) -> list[str]:
    return [line for line in gw.log_text().splitlines() if "WARNING" in line and what in line]


def wait_for_log(gw: GatewayProcess, what: str, timeout: float = 10.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = warnings(gw, what)
        if found:
            return found
        time.sleep(0.05)
    return []


def test_a_silent_connection_is_closed_after_the_header_timeout(limited: GatewayProcess) -> None:
    with connect(limited) as s:
        started = time.monotonic()
        assert read_all(s) == b""
        assert 0.8 < time.monotonic() - started < 6


def test_headers_dripped_slowly_get_408(limited: GatewayProcess) -> None:
    with connect(limited) as s:
        s.sendall(REQUEST_HEAD)
        stop = threading.Event()

        def drip() -> None:
            for n in range(40):
                if stop.wait(0.2):
                    return
                try:
                    s.sendall(b"X-Drip-%d: x\r\n" % n)
                except OSError:
                    return

        dripper = threading.Thread(target=drip)
        dripper.start()
        started = time.monotonic()
        raw = read_all(s)
        elapsed = time.monotonic() - started
        stop.set()
        dripper.join()
    status, error = status_and_error(raw)
    assert (status, error["type"]) == (408, "timeout_error")
    assert error["message"] == "The request headers did not arrive within 1 s"
    assert elapsed < 6


def test_a_body_that_stops_arriving_gets_408(limited: GatewayProcess) -> None:
    with connect(limited) as s:
        s.sendall(REQUEST_HEAD + b"Content-Length: 100\r\n\r\n" + b'{"model": ')
        raw = read_all(s)
    status, error = status_and_error(raw)
    assert (status, error["type"]) == (408, "timeout_error")
    assert error["message"] == "The request body stopped arriving for 1 s"


@pytest.mark.parametrize("size", [70_000, 1_000_000])
def test_headers_over_64_kb_get_431_in_one_read(limited: GatewayProcess, size: int) -> None:
    with connect(limited) as s:
        s.sendall(REQUEST_HEAD + b"X-Big: " + b"a" * size + b"\r\n\r\n")
        raw = read_all(s)
    status, error = status_and_error(raw)
    assert (status, error["type"]) == (431, "request_too_large")
    assert error["message"] == "Request headers exceed the limit of 65536 bytes"


def test_an_endless_header_is_refused_after_64_kb_not_buffered(limited: GatewayProcess) -> None:
    sent = 0
    with connect(limited) as s:
        s.sendall(REQUEST_HEAD + b"X-Endless: ")
        try:
            while sent < 64 * 1024 * 1024:
                s.sendall(b"b" * 16384)
                sent += 16384
        except OSError:  # the gateway closed the connection: what this test wants
            pass
        raw = read_all(s)
    assert sent < 8 * 1024 * 1024, sent
    if raw:  # the 431 may be lost to a reset when the gateway closes with unread data
        assert status_and_error(raw)[0] == 431


def test_keep_alive_between_requests_is_not_the_header_timeout(limited: GatewayProcess) -> None:
    with httpx2.Client(base_url=limited.url, timeout=10) as c:
        for _ in range(3):
            assert c.get("/").status_code == 200
            time.sleep(1.5)
        assert c.get("/").status_code == 200


def test_connections_over_the_cap_get_529_and_one_warning(spawn_gateway: SpawnGateway) -> None:
    gw = spawn_gateway({**LIMITS_ENV, "ANTHROPIC_GATEWAY_HEADER_TIMEOUT": "3", "ANTHROPIC_GATEWAY_MAX_CLIENT_CONNECTIONS": "5"})
    idle = [connect(gw) for _ in range(5)]
    time.sleep(0.3)
    extra = [connect(gw) for _ in range(8)]
    try:
        for s in extra:
            status, error = status_and_error(read_all(s))
            assert (status, error["type"]) == (529, "overloaded_error")
        assert len(wait_for_log(gw, "refusing client connections over the limit")) == 1
        # The idle ones time out and free their places: the gateway serves again.
        for s in idle:
            assert read_all(s) == b""
        assert httpx2.get(gw.url + "/", timeout=10).status_code == 200
        assert len(warnings(gw, "closing slow client connections")) == 1
    finally:
        for s in idle + extra:
            s.close()


def test_a_burst_of_timeouts_logs_one_warning(spawn_gateway: SpawnGateway) -> None:
    gw = spawn_gateway(LIMITS_ENV)
    sockets = [connect(gw) for _ in range(8)]
    try:
        for s in sockets:
            assert read_all(s) == b""
    finally:
        for s in sockets:
            s.close()
    found = wait_for_log(gw, "closing slow client connections")
    time.sleep(0.3)
    assert len(warnings(gw, "closing slow client connections")) == 1, found
    assert "Traceback" not in gw.log_text()
