"""The upstream client's background GETs (health probes, the catalogue's GET /models) go through the
gateway's own HTTP client on a pool of their own: a probe gets through while every connection of the
requests' pool is busy, a dead backend is a clear connection error, and a gateway that probes never
loads aiohttp (~8 MB of RSS a default gateway does not pay; docs/performance.md, Memory)."""

from __future__ import annotations

import time
from pathlib import Path

import httpx2
import orjson
import pytest

from anthropic_gateway.errors import APIError
from anthropic_gateway.routing import Router
from anthropic_gateway.settings import load_settings
from anthropic_gateway.upstream import UpstreamClient, get_request
from conftest import GATEWAY_ENV, SpawnGateway, free_port
from fake_upstream import FakeUpstream, Reply, text_chunk


async def test_a_probe_gets_through_while_the_requests_pool_is_full(upstream: FakeUpstream) -> None:
    settings = load_settings(environ={"ANTHROPIC_GATEWAY_UPSTREAM_KEY": "k", "ANTHROPIC_GATEWAY_MAX_CONNECTIONS": "1"},
                             upstream_url=upstream.base_url)  # fmt: skip
    backend = Router(settings).default
    client = UpstreamClient(settings)
    await client.start()
    upstream.on_path("/v1/models", Reply.json({"object": "list", "data": []}))
    upstream.expect(Reply.stream([text_chunk("held")], hold=True, hold_timeout=10))
    body = orjson.dumps({"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]})
    try:
        held = await client.post(backend, body, "k", stream=True)  # the requests' only connection
        assert held.status == 200
        assert await client.probe(backend, 5.0) == 200
        probe = upstream.path_requests[-1]
        assert (probe.method, probe.path) == ("GET", "/v1/models")
        assert probe.headers["authorization"] == "Bearer k"
        held.close()
    finally:
        await client.close()


async def test_a_dead_backend_is_a_connection_error() -> None:
    port = free_port()
    settings = load_settings(environ={"ANTHROPIC_GATEWAY_UPSTREAM_KEY": "k"}, upstream_url=f"http://127.0.0.1:{port}/v1")
    client = UpstreamClient(settings)
    try:
        with pytest.raises(APIError) as info:
            await client.probe(Router(settings).default, 5.0)
        assert info.value.message == f"Upstream connection error: cannot connect to 127.0.0.1:{port}"
    finally:
        await client.close()


def test_the_get_request_is_plain_http_1_1() -> None:
    endpoint, data = get_request("https://example.test:8443/api/v1/models?x=1", {"Accept": "application/json"})
    assert (endpoint.scheme, endpoint.host, endpoint.port) == ("https", "example.test", 8443)
    assert data == b"GET /api/v1/models?x=1 HTTP/1.1\r\nHost: example.test:8443\r\nAccept: application/json\r\n\r\n"
    with pytest.raises(APIError):
        get_request("http://example.test/", {"X-Bad": "a\r\nInjected: 1"})


def test_a_probing_gateway_never_loads_aiohttp(spawn_gateway: SpawnGateway, upstream: FakeUpstream) -> None:
    upstream.on_path("/v1/models", Reply.json({"object": "list", "data": []}))
    gw = spawn_gateway({**GATEWAY_ENV, "ANTHROPIC_GATEWAY_HEALTH_PROBE_INTERVAL": "0.2"})
    deadline = time.monotonic() + 15
    while len(upstream.path_requests) < 2:  # two probes done
        assert time.monotonic() < deadline, gw.log_text()
        time.sleep(0.05)
    report = httpx2.get(gw.url + "/health/detailed", timeout=10).json()
    assert report["backends"]["default"]["probe"]["detail"] == "ok"
    maps = Path(f"/proc/{gw.proc.pid}/maps").read_text()
    assert "/aiohttp/" not in maps and "/yarl/" not in maps and "/multidict/" not in maps
