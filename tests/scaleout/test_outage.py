"""PostgreSQL unreachable and back while traffic runs (a TCP proxy between the gateway and the shared
server is cut, then restored): requests that need no store keep working, readiness says 503 then 200,
and no ledger row is lost."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import httpx2

from conftest import SpawnGateway
from e2e import MODEL
from fake_upstream import FakeUpstream, Reply, finish_chunk, text_chunk, usage_chunk
from scaleout import replica_env, until, usage_total
from tcp_proxy import TcpProxy

ANSWER = [text_chunk("ok"), finish_chunk("stop"), usage_chunk(60, 7)]
HEADERS = {"x-api-key": "test-key", "anthropic-version": "2023-06-01"}
BODY: Any = {"model": MODEL, "max_tokens": 20, "messages": [{"role": "user", "content": "hello"}]}


def test_the_store_going_away_and_back_loses_nothing(
    spawn_gateway: SpawnGateway, upstream: FakeUpstream, postgres_url: str
) -> None:
    upstream.always(Reply.auto(ANSWER))
    parts = urlsplit(postgres_url)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    proxy.start()
    try:
        via_proxy = parts._replace(netloc=f"{parts.username}@127.0.0.1:{proxy.port}").geturl()
        gw = spawn_gateway(replica_env(via_proxy, "a"))
        sent = 0

        def traffic(n: int = 2) -> None:
            nonlocal sent
            for i in range(n):
                r = httpx2.post(gw.url + "/v1/messages", json={**BODY, "stream": bool(i % 2)}, headers=HEADERS,
                                timeout=30)  # fmt: skip
                assert r.status_code == 200, r.text
                sent += 1

        def ready() -> int:
            return httpx2.get(gw.url + "/health/ready", timeout=10).status_code

        traffic(4)
        assert ready() == 200
        proxy.cut()
        until(lambda: (traffic(), ready())[1] == 503, what="readiness 503 with the store gone")
        assert httpx2.get(gw.url + "/health/ready", timeout=10).json() == {"status": "store unavailable"}
        store = httpx2.get(gw.url + "/health/detailed", timeout=10).json()["store"]
        assert store["available"] is False and store["error"] and store["engine"] == "postgresql"
        traffic(6)  # messages and token counts need no store
        counted = httpx2.post(gw.url + "/v1/messages/count_tokens", json={k: BODY[k] for k in ("model", "messages")},
                              headers=HEADERS, timeout=10)  # fmt: skip
        assert counted.status_code == 200 and counted.json()["input_tokens"] > 0
        usage = httpx2.get(gw.url + "/v1/usage", timeout=10)  # needs the store: a clean 503, not a 500
        assert usage.status_code == 503 and usage.json()["error"]["type"] == "api_error"

        proxy.restore()
        until(lambda: (traffic(1), ready())[1] == 200, what="readiness 200 with the store back")
        traffic(2)
        # Every request's ledger row, those answered while the store was away included.
        until(lambda: usage_total(gw)["requests"] == sent, what="the queued ledger rows written")
        assert usage_total(gw)["input_tokens"] == 60 * sent and len(upstream.requests) == sent
        assert httpx2.get(gw.url + "/health/detailed", timeout=10).json()["store"]["outages"] == 1
        assert "Traceback" not in gw.log_text()
    finally:
        proxy.stop()
