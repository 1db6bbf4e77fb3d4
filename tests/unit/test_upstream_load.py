"""The upstream client's lazy import of aiohttp (the health probes' client): a failed load (out of file
descriptors just after start-up) is a clear 503 for that probe and is retried by the next one, not
cached until a restart (issue 16 #3). The requests themselves do not need aiohttp at all."""

from __future__ import annotations

import errno
import importlib
from types import ModuleType

import orjson
import pytest

from anthropic_gateway.errors import APIError
from anthropic_gateway.routing import Router
from anthropic_gateway.settings import load_settings
from anthropic_gateway.upstream import UpstreamClient
from fake_upstream import FakeUpstream, Reply, finish_chunk, text_chunk


async def test_a_failed_load_is_retried_by_the_next_request(
    upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = importlib.import_module
    failures = [OSError(errno.EMFILE, "Too many open files")]

    def import_module(name: str, package: str | None = None) -> ModuleType:
        if name == "aiohttp" and failures:
            raise failures.pop()
        return real(name, package)

    monkeypatch.setattr(importlib, "import_module", import_module)
    settings = load_settings(environ={"ANTHROPIC_GATEWAY_UPSTREAM_KEY": "k"}, upstream_url=upstream.base_url)
    backend = Router(settings).default
    client = UpstreamClient(settings)
    await client.start()
    upstream.on_path("/v1/models", Reply.json({"object": "list", "data": []}))
    upstream.expect(Reply.auto([text_chunk("ok"), finish_chunk("stop")]))
    body = orjson.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    try:
        with pytest.raises(APIError) as info:
            await client.probe(backend, 5.0)
        assert info.value.http_status == 503
        assert "could not load its upstream client (OSError)" in info.value.message
        assert await client.probe(backend, 5.0) == 200
        response = await client.post(backend, body, "k", stream=False)
        assert response.status == 200
        assert (await response.json())["choices"][0]["message"]["content"] == "ok"
        response.release()
    finally:
        await client.close()
