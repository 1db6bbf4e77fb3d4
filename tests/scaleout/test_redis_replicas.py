"""Two gateway processes on different ports sharing one Redis (redis_url) act as one: a rate limit of
N per minute admits N across both, a miss on one is a hit on the other, identical misses on both make
one upstream call; and a Redis that goes away and comes back (a private redis-server: the shared one
is never stopped) loses no request, flips readiness to 503 and back, and is used again afterwards."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path
from typing import Any

import anthropic
import pytest
import redis

from conftest import CLIENT_KEY, GatewayProcess, SpawnGateway, free_port, stop_gateway
from fake_upstream import FakeUpstream, Reply, finish_chunk, text_chunk, usage_chunk
from redis_support import (
    REDIS_URL,
    TEAM_KEY,
    PrivateRedis,
    count_prefix,
    delete_prefix,
    gateway_env,
    get_json,
    keyed_env,
    params,
    wait_for,
)

HELLO = [text_chunk("Hello"), text_chunk(" there."), finish_chunk("stop"), usage_chunk(30, 4)]


def _slow_json(delay: float = 0.8) -> Any:
    """A JSON completion whose headers come after ``delay``: keeps a call open while others arrive."""
    body = {"id": "gen-1", "object": "chat.completion", "model": "test/sonnet",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello there."}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 30, "completion_tokens": 4}}  # fmt: skip
    return Reply.stream([json.dumps(body)], done=False, headers={"Content-Type": "application/json"},
                        headers_delay=delay)  # fmt: skip


def _fresh_minute() -> None:
    """Start well inside a UTC minute, so the requests below are counted in one window."""
    if time.gmtime().tm_sec >= 50:
        time.sleep(61 - time.gmtime().tm_sec)


async def _gather(calls: list[tuple[GatewayProcess, str, dict[str, Any]]]) -> list[Any]:
    clients = {gw.port: anthropic.AsyncAnthropic(base_url=gw.url, api_key=key, max_retries=0) for gw, key, _ in calls}
    try:
        return await asyncio.gather(*(clients[gw.port].messages.create(**p) for gw, _, p in calls),
                                    return_exceptions=True)  # fmt: skip
    finally:
        for c in clients.values():
            await c.close()


def test_a_rate_limit_of_n_per_minute_admits_n_across_two_replicas(
    spawn_gateway: SpawnGateway, upstream: FakeUpstream, redis_prefix: str
) -> None:
    env = keyed_env(REDIS_URL, redis_prefix, requests_per_minute=5)
    a, b = spawn_gateway(env), spawn_gateway(env)
    upstream.always(Reply.auto(HELLO))
    _fresh_minute()
    # 12 at once, 6 on each replica: the check and the count are one script in Redis, so exactly 5 pass.
    results = asyncio.run(_gather([(gw, TEAM_KEY, params()) for gw in (a, b) * 6]))
    ok = [r for r in results if isinstance(r, anthropic.types.Message)]
    refused = [r for r in results if isinstance(r, anthropic.RateLimitError)]
    assert (len(ok), len(refused)) == (5, 7), results
    assert len(upstream.requests) == 5
    assert {r.body["error"]["message"] for r in refused} == {  # type: ignore[index]
        "This key's limit of 5 requests per minute is reached"}
    assert all(r.response.headers["anthropic-ratelimit-requests-remaining"] == "0" for r in refused)
    with anthropic.Anthropic(base_url=b.url, api_key=TEAM_KEY, max_retries=0) as c, \
            pytest.raises(anthropic.RateLimitError):  # fmt: skip
        c.messages.create(**params())  # either replica: still full


def test_concurrency_limit_across_two_replicas(
    spawn_gateway: SpawnGateway, upstream: FakeUpstream, redis_prefix: str
) -> None:
    env = keyed_env(REDIS_URL, redis_prefix, max_concurrent=2)
    a, b = spawn_gateway(env), spawn_gateway(env)
    upstream.always(_slow_json(3.0))  # long enough for all four to arrive on a loaded machine
    results = asyncio.run(_gather([(gw, TEAM_KEY, params()) for gw in (a, b, a, b)]))
    ok = [r for r in results if isinstance(r, anthropic.types.Message)]
    refused = [r for r in results if isinstance(r, anthropic.RateLimitError)]
    assert (len(ok), len(refused)) == (2, 2), results
    assert "its limit of concurrent requests" in refused[0].body["error"]["message"]  # type: ignore[index]
    # Once they finished, their slots are free again on both replicas.
    upstream.always(Reply.auto(HELLO))
    assert wait_for(lambda: all(isinstance(r, anthropic.types.Message) for r in asyncio.run(
        _gather([(a, TEAM_KEY, params()), (b, TEAM_KEY, params())]))), timeout=5)  # fmt: skip


def test_a_miss_on_one_replica_is_a_hit_on_the_other(
    spawn_gateway: SpawnGateway, upstream: FakeUpstream, redis_prefix: str
) -> None:
    env = gateway_env(REDIS_URL, redis_prefix, ANTHROPIC_GATEWAY_RESPONSE_CACHE="true")
    a, b = spawn_gateway(env), spawn_gateway(env)
    upstream.always(Reply.auto(HELLO))
    with a.client() as ca, b.client() as cb:
        first = ca.messages.with_raw_response.create(**params())
        second = cb.messages.with_raw_response.create(**params())
        with cb.messages.stream(**params()) as s:  # the stored answer replayed as SSE on B
            streamed = s.get_final_message()
            assert s.response.headers["x-gateway-cache"] == "hit"
    assert (first.headers["x-gateway-cache"], second.headers["x-gateway-cache"]) == ("miss", "hit")
    assert len(upstream.requests) == 1
    one, two = first.parse(), second.parse()
    assert one.id != two.id and one.model_dump(exclude={"id"}) == two.model_dump(exclude={"id"})
    assert streamed.model_dump(exclude={"id"}) == one.model_dump(exclude={"id"})
    stats = get_json(b, "/v1/messages/cache/stats")[1]
    assert (stats["entries"], stats["hits"], stats["misses"]) == (1, 2, 0)


def test_identical_misses_on_both_replicas_make_one_upstream_call(
    spawn_gateway: SpawnGateway, upstream: FakeUpstream, redis_prefix: str
) -> None:
    env = gateway_env(REDIS_URL, redis_prefix, ANTHROPIC_GATEWAY_RESPONSE_CACHE="true")
    a, b = spawn_gateway(env), spawn_gateway(env)
    upstream.always(_slow_json())  # keeps the leader's call open meanwhile
    results = asyncio.run(_gather([(gw, CLIENT_KEY, params()) for gw in (a, b) * 3]))
    assert all(isinstance(r, anthropic.types.Message) for r in results), results
    assert len(upstream.requests) == 1
    assert {r.content[0].text for r in results} == {"Hello there."}
    assert len({r.id for r in results}) == 6
    sa, sb = get_json(a, "/v1/messages/cache/stats")[1], get_json(b, "/v1/messages/cache/stats")[1]
    assert sa["misses"] + sb["misses"] == 1
    assert sa["coalesced"] + sb["coalesced"] + sa["hits"] + sb["hits"] == 5


def test_redis_lost_and_back_while_traffic_runs(
    spawn_gateway: SpawnGateway, upstream: FakeUpstream, tmp_path: Path
) -> None:
    server = PrivateRedis(free_port(), tmp_path)
    server.start()
    prefix = "gwtest:lost:"
    try:
        env = keyed_env(server.url, prefix, requests_per_minute=100_000)
        env["ANTHROPIC_GATEWAY_RESPONSE_CACHE"] = "true"
        env["ANTHROPIC_GATEWAY_REDIS_TIMEOUT"] = "0.5"
        a, b = spawn_gateway(env), spawn_gateway(env)
        upstream.always(Reply.auto(HELLO))
        assert get_json(a, "/health/ready") == (200, {"status": "ready"})
        outcomes: list[str] = []
        stop = threading.Event()

        def traffic() -> None:  # a limited key, the cache on, on both replicas, until told to stop
            n = 0
            with anthropic.Anthropic(base_url=a.url, api_key=TEAM_KEY, max_retries=0) as ca, \
                    anthropic.Anthropic(base_url=b.url, api_key=TEAM_KEY, max_retries=0) as cb:  # fmt: skip
                while not stop.is_set():
                    n += 1
                    try:
                        (ca if n % 2 else cb).messages.create(**params(f"traffic {n}"))
                        outcomes.append("ok")
                    except anthropic.APIError as err:
                        outcomes.append(repr(err))

        runner = threading.Thread(target=traffic)
        runner.start()
        try:
            assert wait_for(lambda: len(outcomes) >= 5)
            server.stop()
            assert wait_for(lambda: get_json(a, "/health/ready")[0] == 503 and get_json(b, "/health/ready")[0] == 503)
            assert get_json(a, "/health/ready")[1] == {"status": "redis unreachable"}
            down = get_json(a, "/health/detailed")[1]["redis"]
            assert (down["up"], down["times_down"], down["url"]) == (False, 1, server.url)
            during = len(outcomes)
            assert wait_for(lambda: len(outcomes) >= during + 10)  # served while Redis is down
            server.start()
            assert wait_for(lambda: get_json(a, "/health/ready")[0] == 200 and get_json(b, "/health/ready")[0] == 200)
            after = len(outcomes)
            assert wait_for(lambda: len(outcomes) >= after + 5)
        finally:
            stop.set()
            runner.join(30)
        assert set(outcomes) == {"ok"}, [o for o in outcomes if o != "ok"][:3]
        # Redis is used again: the limiter counts there and a miss on A is a hit on B.
        with redis.Redis.from_url(server.url) as r:
            assert r.keys(prefix + "rl:*")
        with anthropic.Anthropic(base_url=a.url, api_key=TEAM_KEY, max_retries=0) as ca, \
                anthropic.Anthropic(base_url=b.url, api_key=TEAM_KEY, max_retries=0) as cb:  # fmt: skip
            first = ca.messages.with_raw_response.create(**params("after the outage"))
            second = cb.messages.with_raw_response.create(**params("after the outage"))
        assert (first.headers["x-gateway-cache"], second.headers["x-gateway-cache"]) == ("miss", "hit")
        assert get_json(b, "/health/detailed")[1]["redis"]["up"] is True
    finally:
        server.stop()


def test_keys_stay_under_the_prefix_and_go_with_it(
    spawn_gateway: SpawnGateway, upstream: FakeUpstream, redis_prefix: str
) -> None:
    env = keyed_env(REDIS_URL, redis_prefix, requests_per_minute=10, max_concurrent=3, daily_budget_usd=5.0)
    env["ANTHROPIC_GATEWAY_RESPONSE_CACHE"] = "true"
    gw = spawn_gateway(env)
    upstream.always(Reply.auto(HELLO))
    with anthropic.Anthropic(base_url=gw.url, api_key=TEAM_KEY, max_retries=0) as c:
        c.messages.create(**params())
    assert count_prefix(redis_prefix) >= 3  # the window, the day's spend, the cache entry
    with redis.Redis.from_url(REDIS_URL) as r:
        names = sorted(n.decode()[len(redis_prefix):] for n in r.scan_iter(match=redis_prefix + "*"))
    assert any(n.startswith("rl:{team}:w:") for n in names) and any(n.startswith("rc:") for n in names), names
    assert any(n.startswith("rl:{team}:d:") for n in names), names
    # Stopped first: a running gateway may still write after the answer (its concurrency lease, the
    # spend counted once the record is emitted), and a key written after the delete is not a leak.
    stop_gateway(gw)
    assert delete_prefix(redis_prefix) >= 3 and count_prefix(redis_prefix) == 0
