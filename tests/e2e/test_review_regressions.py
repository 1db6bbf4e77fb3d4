"""End-to-end regressions for defects an independent review found (auth, logs, disconnects)."""

from __future__ import annotations

import contextlib
import json
import threading
import time

import httpx2

from conftest import GATEWAY_ENV, UPSTREAM_KEY, SpawnGateway
from e2e import post_raw
from fake_upstream import FakeUpstream, Reply, error_body, finish_chunk, text_chunk

HELLO = {"max_tokens": 10, "messages": [{"role": "user", "content": "Hi"}]}
OK = Reply.auto([text_chunk("ok"), finish_chunk("stop")])


def test_passthrough_clients_never_spend_a_backends_own_key(
    spawn_gateway: SpawnGateway, upstream: FakeUpstream, _upstream_server: FakeUpstream
) -> None:
    gw = spawn_gateway({
        **{k: v for k, v in GATEWAY_ENV.items() if k != "ANTHROPIC_GATEWAY_UPSTREAM_KEY"},
        "ANTHROPIC_GATEWAY_PASSTHROUGH_AUTH": "true",
        "ANTHROPIC_GATEWAY_API_KEYS": "gw-member-key",
        "ANTHROPIC_GATEWAY_BACKENDS": json.dumps({"own": {"url": _upstream_server.base_url, "key_env": "OWN_KEY"}}),
        "ANTHROPIC_GATEWAY_MODELS": json.dumps({"m": {"backend": "own", "model": "x/y"}}),
        "OWN_KEY": "sk-own-backend-secret",
    })  # fmt: skip
    upstream.always(OK)
    stranger = post_raw(gw.url, "/v1/messages", {"model": "m", **HELLO}, headers={"x-api-key": "sk-or-strangers-own"})
    member = post_raw(gw.url, "/v1/messages", {"model": "m", **HELLO}, headers={"x-api-key": "gw-member-key"})
    assert (stranger.status_code, member.status_code) == (200, 200)
    auth = [r.headers["authorization"] for r in upstream.requests]
    assert auth == ["Bearer sk-or-strangers-own", "Bearer sk-own-backend-secret"]


def test_an_upstream_error_echoing_the_key_is_redacted_in_the_log(
    spawn_gateway: SpawnGateway, upstream: FakeUpstream
) -> None:
    gw = spawn_gateway({**GATEWAY_ENV, "ANTHROPIC_GATEWAY_RETRIES": "0"})
    upstream.expect(Reply.json(error_body(500, f"internal failure handling key {UPSTREAM_KEY}", "server"), status=500))
    resp = post_raw(gw.url, "/v1/messages", {"model": "a/b", **HELLO})
    assert resp.status_code == 500
    assert UPSTREAM_KEY not in resp.text and "[redacted]" in resp.text
    time.sleep(0.2)  # let the log line reach the file
    log = gw.log_text()
    assert "internal failure handling key [redacted]" in log
    assert UPSTREAM_KEY not in log


def test_a_non_streaming_client_that_disconnects_closes_the_upstream_call(
    spawn_gateway: SpawnGateway, upstream: FakeUpstream
) -> None:
    gw = spawn_gateway(GATEWAY_ENV)
    # A first call loads the upstream client and the tokenizer, so the next reaches the upstream at once.
    upstream.expect(Reply.auto([text_chunk("warm"), finish_chunk("stop")]))
    assert post_raw(gw.url, "/v1/messages", {"model": "a/b", **HELLO}).status_code == 200
    upstream.reset()
    upstream.expect(Reply.stream([text_chunk("slow")], done=False, hold=True, hold_timeout=20))

    def client() -> None:
        with contextlib.suppress(httpx2.TimeoutException):  # the client gives up and closes its connection
            httpx2.post(gw.url + "/v1/messages", json={"model": "a/b", **HELLO},
                        headers={"x-api-key": "k"}, timeout=0.5)  # fmt: skip

    t = threading.Thread(target=client)
    t.start()
    t.join(5)
    deadline = time.monotonic() + 5
    while not upstream.streams and time.monotonic() < deadline:
        time.sleep(0.02)
    assert upstream.streams, "the upstream never saw the call"
    assert upstream.streams[0].disconnected.wait(5), "the gateway kept the upstream call open"
