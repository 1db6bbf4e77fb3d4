"""The response cache through the real gateway process, the official SDK and the fake upstream:
hit / miss / bypass / refresh in both modes, the SSE replay, what is never stored, coalescing
(asserted at the upstream), partitions, TTL, the admin routes and their auth."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import urllib.error
import urllib.request
from typing import Any

import anthropic
import pytest

from conftest import CLIENT_KEY, GATEWAY_ENV, GatewayProcess, SpawnGateway
from fake_upstream import (
    FakeUpstream,
    Reply,
    error_body,
    finish_chunk,
    text_chunk,
    tool_call_chunk,
    usage_chunk,
)

ON = {**GATEWAY_ENV, "ANTHROPIC_GATEWAY_RESPONSE_CACHE": "true"}
HELLO = [text_chunk("Hello"), text_chunk(" there."), finish_chunk("stop"), usage_chunk(30, 4)]
TOOL = [text_chunk("Checking."), tool_call_chunk(0, "call_1", "get_weather", '{"city":'),
        tool_call_chunk(0, arguments=' "Paris"}'), finish_chunk("tool_calls"), usage_chunk(50, 12, cached=20)]  # fmt: skip
WEATHER = {"name": "get_weather", "description": "Weather.", "input_schema": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}  # fmt: skip
CACHE = "x-gateway-cache"


def params(text: str = "Hi", temperature: float = 0, **extra: Any) -> dict[str, Any]:
    """Create arguments; temperature and seed go as extra body fields (this SDK's create() has no
    temperature argument)."""
    body = {"temperature": temperature, **extra.pop("extra_body", {})}
    return {"model": "claude-sonnet-5", "max_tokens": 64, "messages": [{"role": "user", "content": text}],
            "extra_body": body, **extra}  # fmt: skip


def create(client: anthropic.Anthropic, headers: dict[str, str] | None = None,
           **kw: Any) -> tuple[anthropic.types.Message, str | None]:  # fmt: skip
    raw = client.messages.with_raw_response.create(**_args(kw), extra_headers=headers or {})
    return raw.parse(), raw.headers.get(CACHE)


def stream(client: anthropic.Anthropic, headers: dict[str, str] | None = None,
           **kw: Any) -> tuple[anthropic.types.Message, str | None]:  # fmt: skip
    with client.messages.stream(**_args(kw), extra_headers=headers or {}) as s:
        message = s.get_final_message()
        return message, s.response.headers.get(CACHE)


def _args(kw: dict[str, Any]) -> dict[str, Any]:
    messages = kw.pop("messages", None)
    args = params(**{k: kw.pop(k) for k in ("temperature", "extra_body") if k in kw})
    if messages is not None:
        args["messages"] = messages
    return {**args, **kw}


def same(a: anthropic.types.Message, b: anthropic.types.Message) -> None:
    assert a.id != b.id
    assert a.model_dump(exclude={"id"}) == b.model_dump(exclude={"id"})


def admin(gw: GatewayProcess, method: str, path: str, key: str | None = None) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(gw.url + path, method=method, headers={"x-api-key": key} if key else {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


# --- hit / miss / bypass / refresh ---------------------------------------------------------------


def test_json_miss_then_hits_in_both_modes(spawn_gateway: SpawnGateway, upstream: FakeUpstream) -> None:
    gw = spawn_gateway(ON)
    upstream.always(Reply.auto(HELLO))
    with gw.client() as client:
        first, h1 = create(client)
        second, h2 = create(client)
        streamed, h3 = stream(client)
    assert (h1, h2, h3) == ("miss", "hit", "hit")
    assert len(upstream.requests) == 1
    same(first, second)
    same(first, streamed)  # the SSE replay, folded by the SDK, is the stored message
    assert first.content[0].text == "Hello there."  # type: ignore[union-attr]
    status, stats = admin(gw, "GET", "/v1/messages/cache/stats")
    assert status == 200
    assert {k: stats[k] for k in ("entries", "hits", "misses", "coalesced", "hit_ratio", "stored")} == {
        "entries": 1, "hits": 2, "misses": 1, "coalesced": 0, "hit_ratio": 0.6667, "stored": 1}
    assert stats["estimated_tokens_saved"] == 2 * 34 and stats["bytes"] > 0
    lines = [json.loads(ln) for ln in gw.log_text().splitlines() if ln.startswith("{") and '"cache"' in ln]
    assert [ln["cache"] for ln in lines] == ["miss", "hit", "hit"]


def test_streamed_miss_is_assembled_and_replayed_as_the_original(
    spawn_gateway: SpawnGateway, upstream: FakeUpstream
) -> None:
    gw = spawn_gateway(ON)
    upstream.always(Reply.auto(TOOL))
    with gw.client() as client:
        live, h1 = stream(client, tools=[WEATHER])
        replayed, h2 = stream(client, tools=[WEATHER])
        as_json, h3 = create(client, tools=[WEATHER])
    assert (h1, h2, h3) == ("miss", "hit", "hit")
    assert len(upstream.requests) == 1
    assert [b.type for b in live.content] == ["text", "tool_use"] and live.stop_reason == "tool_use"
    assert live.content[1].input == {"city": "Paris"}  # type: ignore[union-attr]
    assert live.usage.cache_read_input_tokens == 20
    same(live, replayed)
    same(live, as_json)


def test_non_deterministic_requests_and_header_off_bypass(spawn_gateway: SpawnGateway, upstream: FakeUpstream) -> None:
    gw = spawn_gateway(ON)
    upstream.always(Reply.auto(HELLO))
    with gw.client() as client:
        heads = [create(client, temperature=0.7)[1], create(client, temperature=0.7)[1],
                 create(client, headers={CACHE: "off"})[1], create(client, headers={CACHE: "off"})[1]]  # fmt: skip
        seeded = [create(client, temperature=0.7, extra_body={"seed": 3})[1] for _ in range(2)]
    assert heads == ["bypass"] * 4 and seeded == ["miss", "hit"]
    assert len(upstream.requests) == 5


def test_nondeterministic_setting_widens_the_cache(spawn_gateway: SpawnGateway, upstream: FakeUpstream) -> None:
    gw = spawn_gateway({**ON, "ANTHROPIC_GATEWAY_RESPONSE_CACHE_NONDETERMINISTIC": "true"})
    upstream.always(Reply.auto(HELLO))
    with gw.client() as client:
        assert [create(client, temperature=1.0)[1] for _ in range(2)] == ["miss", "hit"]
    assert len(upstream.requests) == 1


def test_refresh_fetches_and_replaces_the_entry(spawn_gateway: SpawnGateway, upstream: FakeUpstream) -> None:
    gw = spawn_gateway(ON)
    upstream.expect(Reply.auto(HELLO), Reply.auto([text_chunk("Fresh."), finish_chunk("stop"), usage_chunk(30, 2)]))
    with gw.client() as client:
        old, h1 = create(client)
        fresh, h2 = create(client, headers={CACHE: "refresh"})
        again, h3 = stream(client)
    assert (h1, h2, h3) == ("miss", "miss", "hit")
    assert len(upstream.requests) == 2
    assert old.content[0].text == "Hello there."  # type: ignore[union-attr]
    same(fresh, again)
    assert again.content[0].text == "Fresh."  # type: ignore[union-attr]


def test_off_by_default_on_per_alias_and_per_request(spawn_gateway: SpawnGateway, upstream: FakeUpstream) -> None:
    models = {"cached": {"model": "test/cached", "response_cache": True}}
    gw = spawn_gateway({**GATEWAY_ENV, "ANTHROPIC_GATEWAY_MODELS": json.dumps(models)})
    upstream.always(Reply.auto(HELLO))
    with gw.client() as client:
        assert [create(client)[1] for _ in range(2)] == [None, None]  # off: no header at all
        assert [create(client, model="cached")[1] for _ in range(2)] == ["miss", "hit"]
        assert [create(client, headers={CACHE: "on"}, messages=[{"role": "user", "content": "Yo"}])[1]
                for _ in range(2)] == ["miss", "hit"]  # fmt: skip
        with pytest.raises(anthropic.BadRequestError) as info:
            create(client, headers={CACHE: "sometimes"})
    assert info.value.body["error"]["message"] == "x-gateway-cache: 'sometimes' is not one of on, off, refresh"  # type: ignore[index]
    assert len(upstream.requests) == 4


# --- never stored ---------------------------------------------------------------------------------


@pytest.mark.parametrize("reply", [
    Reply.auto([text_chunk("Cut"), finish_chunk("length"), usage_chunk(30, 64)]),
    Reply.auto([text_chunk(""), finish_chunk("content_filter"), usage_chunk(30, 0)]),
    Reply.json(error_body(400, "Bad thing"), status=400),
], ids=["max_tokens", "refusal", "error"])  # fmt: skip
@pytest.mark.parametrize("streamed", [False, True], ids=["json", "sse"])
def test_truncated_refused_and_failed_answers_are_not_stored(
    spawn_gateway: SpawnGateway, upstream: FakeUpstream, reply: Any, streamed: bool
) -> None:
    gw = spawn_gateway(ON)
    upstream.always(reply)
    with gw.client() as client:
        for _ in range(2):
            with contextlib.suppress(anthropic.APIError):
                (stream if streamed else create)(client)
    assert len(upstream.requests) == 2
    assert admin(gw, "GET", "/v1/messages/cache/stats")[1]["entries"] == 0


def test_a_stream_the_client_abandoned_is_not_stored(spawn_gateway: SpawnGateway, upstream: FakeUpstream) -> None:
    gw = spawn_gateway(ON)
    upstream.expect(Reply.stream([text_chunk("Slow "), text_chunk("answer."), finish_chunk("stop")], delay=0.5))
    upstream.always(Reply.auto(HELLO))
    with gw.client() as client:
        with client.messages.stream(**params()) as s:
            next(iter(s))  # message_start, then the client goes away
        assert upstream.wait_for_requests(1)
        time.sleep(0.3)
        message, head = create(client)
    assert head == "miss" and message.content[0].text == "Hello there."  # type: ignore[union-attr]
    assert len(upstream.requests) == 2


# --- coalescing -------------------------------------------------------------------------------------


async def _concurrent(gw: GatewayProcess, n: int, streamed: bool) -> list[Any]:
    async with anthropic.AsyncAnthropic(base_url=gw.url, api_key=CLIENT_KEY, max_retries=0) as client:
        async def one() -> Any:
            if streamed:
                async with client.messages.stream(**params()) as s:
                    return await s.get_final_message()
            return await client.messages.create(**params())

        return await asyncio.gather(*(one() for _ in range(n)), return_exceptions=True)


@pytest.mark.parametrize("streamed", [False, True], ids=["json", "sse"])
def test_identical_concurrent_misses_make_one_upstream_call(
    spawn_gateway: SpawnGateway, upstream: FakeUpstream, streamed: bool
) -> None:
    gw = spawn_gateway(ON)
    # Slow headers keep the first call open while the others arrive.
    upstream.always(Reply.stream(HELLO, headers_delay=0.5) if streamed else _slow_json())
    results = asyncio.run(_concurrent(gw, 6, streamed))
    assert len(upstream.requests) == 1
    assert all(isinstance(r, anthropic.types.Message) for r in results), results
    assert {r.content[0].text for r in results} == {"Hello there."}
    assert len({r.id for r in results}) == 6
    stats = admin(gw, "GET", "/v1/messages/cache/stats")[1]
    assert (stats["misses"], stats["coalesced"], stats["hits"]) == (1, 5, 0)


def _slow_json() -> Any:
    return Reply.stream([json.dumps({"id": "gen-1", "object": "chat.completion", "model": "test/sonnet",
                                     "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello there."},
                                                  "finish_reason": "stop"}],
                                     "usage": {"prompt_tokens": 30, "completion_tokens": 4}})],
                        done=False, headers={"Content-Type": "application/json"}, headers_delay=0.5)  # fmt: skip


def test_coalesced_waiters_get_the_leaders_error(spawn_gateway: SpawnGateway, upstream: FakeUpstream) -> None:
    gw = spawn_gateway(ON)
    upstream.always(Reply.stream([json.dumps(error_body(400, "Refused upstream"))], done=False, status=400,
                                 headers={"Content-Type": "application/json"}, headers_delay=0.5))  # fmt: skip
    results = asyncio.run(_concurrent(gw, 5, False))
    assert len(upstream.requests) == 1
    assert all(isinstance(r, anthropic.BadRequestError) for r in results), results
    assert {r.body["error"]["message"] for r in results} == {"Upstream error: Refused upstream"}


# --- partitions, TTL, admin -------------------------------------------------------------------------


def test_partitioned_by_key_label_unless_shared(spawn_gateway: SpawnGateway, upstream: FakeUpstream) -> None:
    upstream.always(Reply.auto(HELLO))
    for shared, expected in (("false", ["miss", "miss", "hit"]), ("true", ["miss", "hit", "hit"])):
        gw = spawn_gateway({**ON, "ANTHROPIC_GATEWAY_API_KEYS": "k1,k2", "ANTHROPIC_GATEWAY_RESPONSE_CACHE_SHARED": shared})
        heads = []
        for key in ("k1", "k2", "k1"):
            with anthropic.Anthropic(base_url=gw.url, api_key=key, max_retries=0) as client:
                heads.append(create(client)[1])
        assert heads == expected


def test_entries_expire_and_cleanup_reports_them(spawn_gateway: SpawnGateway, upstream: FakeUpstream,
                                                 state_backend: dict[str, str]) -> None:  # fmt: skip
    gw = spawn_gateway({**ON, "ANTHROPIC_GATEWAY_RESPONSE_CACHE_TTL": "0.5"})
    upstream.always(Reply.auto(HELLO))
    with gw.client() as client:
        assert [create(client)[1], create(client)[1]] == ["miss", "hit"]
        create(client, messages=[{"role": "user", "content": "Other"}])
        time.sleep(0.7)
        assert admin(gw, "GET", "/v1/messages/cache/stats")[1]["entries"] == (2 if not state_backend else 0)
        # In memory the cleanup drops the two expired entries; Redis has already dropped them itself.
        expired = 0 if state_backend else 2
        assert admin(gw, "POST", "/v1/messages/cache/cleanup") == (200, {"expired": expired})
        assert create(client)[1] == "miss"
    assert admin(gw, "DELETE", "/v1/messages/cache/clear") == (200, {"cleared": 1})
    assert admin(gw, "GET", "/v1/messages/cache/stats")[1]["entries"] == 0


def test_admin_routes_need_an_admin_key_where_keys_are_configured(spawn_gateway: SpawnGateway) -> None:
    gw = spawn_gateway({**ON, "ANTHROPIC_GATEWAY_API_KEYS": "client-1", "ANTHROPIC_GATEWAY_ADMIN_KEYS": "admin-1"})
    for method, path in (("GET", "/v1/messages/cache/stats"), ("DELETE", "/v1/messages/cache/clear"),
                         ("POST", "/v1/messages/cache/cleanup")):  # fmt: skip
        assert admin(gw, method, path)[0] == 401
        status, body = admin(gw, method, path, "client-1")
        assert (status, body["error"]["type"]) == (403, "permission_error")
        assert admin(gw, method, path, "admin-1")[0] == 200
