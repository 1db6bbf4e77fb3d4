"""The Redis side of a replica: started without Redis it serves (ready once Redis answers), it asks
nothing of Redis for requests that need neither a limit nor the cache, and a refusal remembered by one
replica spares the others the same upstream call."""

from __future__ import annotations

import time
from pathlib import Path

import anthropic
import pytest
import redis

from conftest import SpawnGateway, free_port
from fake_upstream import FakeUpstream, Reply, error_body, finish_chunk, text_chunk, usage_chunk
from redis_support import (
    REDIS_URL,
    TEAM_KEY,
    PrivateRedis,
    gateway_env,
    get_json,
    keyed_env,
    params,
    wait_for,
)

HELLO = [text_chunk("Hello"), finish_chunk("stop"), usage_chunk(10, 2)]
# Commands a replica sends whatever the traffic: its health pings, the connection's own handshake and
# the refusals subscription.
HOUSEKEEPING = {"ping", "client|setinfo", "client|setname", "hello", "subscribe", "info", "select"}


def _commands(r: redis.Redis) -> dict[str, int]:
    stats = r.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


def test_started_without_redis_it_serves_and_is_ready_once_redis_answers(
    spawn_gateway: SpawnGateway, upstream: FakeUpstream, tmp_path: Path
) -> None:
    server = PrivateRedis(free_port(), tmp_path)  # not started yet: nothing listens on its port
    prefix = "gwtest:late:"
    gw = spawn_gateway(keyed_env(server.url, prefix, requests_per_minute=1000))
    upstream.always(Reply.auto(HELLO))
    try:
        assert get_json(gw, "/health/ready") == (503, {"status": "redis unreachable"})
        detailed = get_json(gw, "/health/detailed")[1]["redis"]
        assert detailed["up"] is False and detailed["last_error"]
        with anthropic.Anthropic(base_url=gw.url, api_key=TEAM_KEY, max_retries=0) as c:
            raw = c.messages.with_raw_response.create(**params())  # the limit, from this replica's memory
        assert raw.headers["anthropic-ratelimit-requests-remaining"] == "999"
        server.start()
        assert wait_for(lambda: get_json(gw, "/health/ready")[0] == 200)
        with anthropic.Anthropic(base_url=gw.url, api_key=TEAM_KEY, max_retries=0) as c:
            raw = c.messages.with_raw_response.create(**params())
        assert raw.headers["anthropic-ratelimit-requests-remaining"] == "999"  # counted in Redis from 0
        with redis.Redis.from_url(server.url) as r:
            window = [n for n in r.keys(prefix + "rl:*") if b":w:" in n]
            assert len(window) == 1 and r.hget(window[0], "r") == b"1"
    finally:
        server.stop()
    assert "Traceback" not in gw.log_text()


def test_requests_needing_neither_a_limit_nor_the_cache_ask_nothing_of_redis(
    spawn_gateway: SpawnGateway, upstream: FakeUpstream, tmp_path: Path
) -> None:
    server = PrivateRedis(free_port(), tmp_path)
    server.start()
    try:
        gw = spawn_gateway(gateway_env(server.url, "gwtest:idle:"))
        upstream.always(Reply.auto(HELLO))
        with redis.Redis.from_url(server.url) as r:
            before = _commands(r)
            with gw.client() as c:
                for _ in range(5):
                    c.messages.create(**params())
            after = _commands(r)
        used = {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}
        assert set(used) <= HOUSEKEEPING | {"info"}, used
    finally:
        server.stop()


def test_a_refusal_remembered_by_one_replica_spares_the_other_the_call(
    spawn_gateway: SpawnGateway, upstream: FakeUpstream, redis_prefix: str
) -> None:
    env = {**gateway_env(REDIS_URL, redis_prefix), "ANTHROPIC_GATEWAY_NEGATIVE_CACHE_TTL": "60"}
    a, b = spawn_gateway(env), spawn_gateway(env)
    upstream.expect(Reply.json(error_body(400, "This model does not support tools"), status=400))
    upstream.always(Reply.auto(HELLO))
    with a.client() as ca, pytest.raises(anthropic.BadRequestError) as first:
        ca.messages.create(**params("refused"))
    time.sleep(0.3)  # the refusal travels to B over Redis pub/sub
    with b.client() as cb, pytest.raises(anthropic.BadRequestError) as second:
        cb.messages.create(**params("refused"))
    assert len(upstream.requests) == 1
    assert second.value.body["error"]["message"] == first.value.body["error"]["message"]  # type: ignore[index]
    with b.client() as cb:  # another request is sent as usual
        assert cb.messages.create(**params("accepted")).content[0].text == "Hello"  # type: ignore[union-attr]
    assert len(upstream.requests) == 2
