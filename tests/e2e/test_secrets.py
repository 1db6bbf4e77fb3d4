"""Keys and auth: the upstream key never leaks, a missing key is a clear 500, gateway keys are checked,
and a run through every error path with recognisable keys leaves none in a log, a response or the store."""

from __future__ import annotations

import subprocess
import time

import anthropic
import httpx2
import pytest

from conftest import GATEWAY_ENV, UPSTREAM_KEY, GatewayProcess, SpawnGateway, stop_gateway
from e2e import MODEL, USER_HELLO, error_of, parse_sse, post_raw, stream_raw
from fake_upstream import FakeUpstream, Reply, error_body, error_chunk, finish_chunk, text_chunk

# A hosted kind needs a key (a loopback URL alone is a local server, which needs none: tests/test_keys.py).
NO_KEY_ENV = {**{k: v for k, v in GATEWAY_ENV.items() if k != "ANTHROPIC_GATEWAY_UPSTREAM_KEY"},
              "ANTHROPIC_GATEWAY_BACKEND_KIND": "openrouter"}  # fmt: skip
GOOD = {"model": MODEL, "max_tokens": 10, "messages": [{"role": "user", "content": "Hi"}]}


@pytest.mark.parametrize("streaming", [False, True])
def test_missing_upstream_key_is_500_naming_the_variable(
    spawn_gateway: SpawnGateway, upstream: FakeUpstream, streaming: bool
) -> None:
    gw = spawn_gateway(NO_KEY_ENV)
    with gw.client() as c, pytest.raises(anthropic.InternalServerError) as info:
        c.messages.create(model=MODEL, max_tokens=10, messages=USER_HELLO, stream=streaming)
    exc = info.value
    assert exc.status_code == 500
    err = error_of(exc)
    assert err["type"] == "api_error"
    assert "OPENROUTER_API_KEY" in err["message"] or "ANTHROPIC_GATEWAY_UPSTREAM_KEY" in err["message"], err
    assert exc.response.headers.get("x-should-retry") == "false"
    assert exc.request_id is not None
    assert upstream.requests == []


def test_gateway_keys_are_checked(spawn_gateway: SpawnGateway, upstream: FakeUpstream) -> None:
    gw = spawn_gateway({**GATEWAY_ENV, "ANTHROPIC_GATEWAY_API_KEYS": "gw-key-one,gw-key-two"})
    upstream.always(Reply.auto([text_chunk("ok"), finish_chunk("stop")]))

    bad = post_raw(gw.url, "/v1/messages", GOOD, headers={"x-api-key": "wrong"})
    assert bad.status_code == 401
    assert bad.json()["error"]["type"] == "authentication_error"
    assert bad.headers.get("x-should-retry") == "false"
    assert "gw-key" not in bad.text

    missing = httpx2.post(gw.url + "/v1/messages", json=GOOD, timeout=10)
    assert missing.status_code == 401
    assert upstream.requests == []

    by_header = post_raw(gw.url, "/v1/messages", GOOD, headers={"x-api-key": "gw-key-two"})
    assert by_header.status_code == 200, by_header.text
    by_bearer = httpx2.post(
        gw.url + "/v1/messages", json=GOOD, headers={"authorization": "Bearer gw-key-one"}, timeout=10
    )
    assert by_bearer.status_code == 200, by_bearer.text
    assert len(upstream.requests) == 2
    assert all(r.headers["authorization"] == f"Bearer {UPSTREAM_KEY}" for r in upstream.requests)

    # HEAD / stays open for Claude Code's pre-warm
    assert httpx2.head(gw.url + "/", timeout=10).status_code == 200
    log = gw.log_text()
    assert "gw-key-one" not in log and "gw-key-two" not in log and UPSTREAM_KEY not in log


def test_passthrough_uses_the_client_key_upstream(
    spawn_gateway: SpawnGateway, upstream: FakeUpstream
) -> None:
    gw = spawn_gateway({**NO_KEY_ENV, "ANTHROPIC_GATEWAY_PASSTHROUGH_AUTH": "true"})
    upstream.expect(Reply.auto([text_chunk("ok"), finish_chunk("stop")]))
    resp = httpx2.post(
        gw.url + "/v1/messages",
        json=GOOD,
        headers={"authorization": "Bearer sk-or-v1-client-own-key"},
        timeout=10,
    )
    assert resp.status_code == 200, resp.text
    assert upstream.requests[0].headers["authorization"] == "Bearer sk-or-v1-client-own-key"
    assert "sk-or-v1-client-own-key" not in gw.log_text()


def test_upstream_error_echoing_the_key_does_not_leak_it(
    client: anthropic.Anthropic, upstream: FakeUpstream
) -> None:
    echo = f"Incorrect API key provided: {UPSTREAM_KEY}. You can find your API key at https://example.test."
    upstream.always(Reply.json(error_body(400, echo, "invalid_request"), 400))
    with pytest.raises(anthropic.BadRequestError) as info:
        client.messages.create(model=MODEL, max_tokens=10, messages=USER_HELLO)
    assert UPSTREAM_KEY not in info.value.response.text
    assert UPSTREAM_KEY not in str(info.value)


def test_mid_stream_error_echoing_the_key_does_not_leak_it(
    client: anthropic.Anthropic, upstream: FakeUpstream
) -> None:
    upstream.expect(
        Reply.stream(
            [text_chunk("a"), error_chunk(502, f"upstream said key {UPSTREAM_KEY} is bad")], done=False
        )
    )
    _, _, raw = stream_raw(client, model=MODEL, max_tokens=10, messages=USER_HELLO)
    events = parse_sse(raw)
    assert events[-1].event == "error"
    assert UPSTREAM_KEY.encode() not in raw


def test_invalid_setting_stops_startup_with_one_line(spawn_gateway: SpawnGateway) -> None:
    gw = spawn_gateway({**GATEWAY_ENV, "ANTHROPIC_GATEWAY_PING_INTERVAL": "-5"}, wait=False)
    try:
        code = gw.proc.wait(20)
    except subprocess.TimeoutExpired:
        pytest.fail("the gateway started with an invalid ping interval")
    assert code != 0
    out = gw.log_text()
    assert "ping_interval" in out.lower(), out
    assert len([line for line in out.splitlines() if line.strip()]) == 1, out
    assert "Traceback" not in out
    assert UPSTREAM_KEY not in out


# Recognisable fake keys of every kind the gateway holds or is shown.
HELD = "sk-or-v1-HELD0upstream0key0000000000000000001"  # the gateway's own upstream key
CLIENT = "gw-client-LABELLED-key-0000000002"  # a labelled client key
ADMIN = "gw-admin-key-0000000000000000003"
PASSTHROUGH = "sk-or-v1-CLIENTS0own0key000000000000000004"  # a passthrough client's own key


def test_no_key_of_any_kind_reaches_a_log_a_response_or_the_store(
    spawn_gateway: SpawnGateway, upstream: FakeUpstream
) -> None:
    env = {**NO_KEY_ENV, "OPENROUTER_API_KEY": HELD, "ANTHROPIC_GATEWAY_ADMIN_KEYS": ADMIN, "T_KEY": CLIENT,
           "ANTHROPIC_GATEWAY_KEYS": '{"team": {"key_env": "T_KEY", "requests_per_minute": 1000}}',
           "ANTHROPIC_GATEWAY_RETRIES": "0", "ANTHROPIC_GATEWAY_LOG_BODIES": "true"}  # fmt: skip
    held = spawn_gateway(env)
    through = spawn_gateway({**NO_KEY_ENV, "ANTHROPIC_GATEWAY_PASSTHROUGH_AUTH": "true", "ANTHROPIC_GATEWAY_RETRIES": "0",
                             "ANTHROPIC_GATEWAY_LOG_BODIES": "true"})  # fmt: skip
    responses: list[str] = []

    def call(gw: GatewayProcess, key: str, body: dict[str, object] | bytes, path: str = "/v1/messages") -> int:
        r = post_raw(gw.url, path, body, headers={"x-api-key": key})
        responses.append(r.text + "".join(f"{k}: {v}" for k, v in r.headers.items()))
        return r.status_code

    echo = "key {} is not valid for this model"
    streamed = {**GOOD, "stream": True}
    for gw, key, upstream_key in ((held, CLIENT, HELD), (through, PASSTHROUGH, PASSTHROUGH)):
        upstream.reset()
        upstream.expect(
            Reply.auto([text_chunk("ok"), finish_chunk("stop")]),
            Reply.json(error_body(400, echo.format(upstream_key), "invalid_request"), 400),
            Reply.json(error_body(401, f"Bearer {upstream_key} rejected"), 401),
            Reply.json(error_body(402, f"no credits left on {upstream_key}"), 402),
            Reply.json(error_body(429, f"slow down {upstream_key}"), 429, headers={"Retry-After": "1"}),
            Reply.json(error_body(500, f"crashed handling {upstream_key}"), 500),
            Reply.stream([text_chunk("a"), error_chunk(502, f"lost {upstream_key}")], done=False),
        )
        statuses = [call(gw, key, GOOD) for _ in range(6)] + [call(gw, key, streamed)]
        assert statuses[0] == statuses[6] == 200 and all(400 <= st < 600 for st in statuses[1:6]), statuses
        assert call(gw, key, {**GOOD, "model": f"nothing-{key}"}) in (400, 404)  # a key-looking model name
        assert call(gw, key, b"{not json") == 400
        call(gw, key + "x", GOOD)  # a near miss (passthrough: used as the client's key)
    assert call(held, CLIENT, b"", "/v1/messages/count_tokens") == 400
    for path in ("/health/detailed", "/metrics", "/v1/usage", "/admin/keys"):
        r = httpx2.get(held.url + path, headers={"x-api-key": CLIENT}, timeout=10)
        responses.append(r.text)
        r = httpx2.get(held.url + path, headers={"x-api-key": ADMIN}, timeout=10)
        responses.append(r.text)
    time.sleep(0.5)  # the ledger's next flush
    stop_gateway(held)
    stop_gateway(through)
    places = {"responses": "\n".join(responses)}
    for gw in (held, through):
        places[str(gw.log_path)] = gw.log_text()
        for f in gw.log_path.parent.glob(gw.log_path.with_suffix(".db").name + "*"):  # the store, WAL included
            places[str(f)] = f.read_bytes().decode("latin-1")
    for name, text in places.items():
        for secret in (HELD, CLIENT, ADMIN, PASSTHROUGH):
            assert secret not in text, f"{secret} found in {name}"
    assert "[redacted]" in places["responses"]
