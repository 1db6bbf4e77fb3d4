"""The model catalogue on a real gateway against a fake OpenRouter GET /models: fetched in the
background without a key, stored, used for the max_tokens clamp, capabilities and prices, and
used again by a restarted gateway whose fetch fails (offline)."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import httpx2

from catalogue import DEEPSEEK, SONNET, models_answer
from conftest import GATEWAY_ENV, UPSTREAM_KEY, GatewayProcess, SpawnGateway, stop_gateway
from e2e import post_raw
from fake_upstream import FakeUpstream, Reply, completion, error_body, usage

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 64).decode()


def wait_for_log(gw: GatewayProcess, text: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in gw.log_text():
        assert time.monotonic() < deadline, f"{text!r} not in the gateway's log:\n{gw.log_text()}"
        time.sleep(0.05)


def catalogue_env(db: Path) -> dict[str, str]:
    return {**GATEWAY_ENV, "ANTHROPIC_GATEWAY_BACKEND_KIND": "openrouter", "ANTHROPIC_GATEWAY_SONNET_MODEL": SONNET,
            "ANTHROPIC_GATEWAY_HAIKU_MODEL": DEEPSEEK, "ANTHROPIC_GATEWAY_CATALOGUE_REFRESH_HOURS": "24",
            "ANTHROPIC_GATEWAY_DATABASE_URL": str(db)}  # fmt: skip


def ask(gw: GatewayProcess, upstream: FakeUpstream, model: str, max_tokens: int = 128_000) -> tuple[int, dict[str, str]]:
    """One non-streamed request (Claude Code 2.1.332 asks for 128,000): the max_tokens sent upstream
    and the response headers."""
    upstream.expect(Reply.json(completion("ok", usage_=usage(1000, 100, cached=200, cache_write=50))))
    resp = post_raw(gw.url, "/v1/messages", {"model": model, "max_tokens": max_tokens,
                                             "messages": [{"role": "user", "content": "Hi"}]})  # fmt: skip
    assert resp.status_code == 200, resp.text
    return upstream.last_body["max_tokens"], dict(resp.headers)


# 750 input + 100 output + 200 cache reads + 50 cache writes at the catalogue's prices per token.
SONNET_COST = 750 * 0.000003 + 100 * 0.000015 + 200 * 0.0000003 + 50 * 0.00000375


def test_catalogue_clamps_prices_and_survives_a_restart_offline(
    spawn_gateway: SpawnGateway, upstream: FakeUpstream, tmp_path: Path
) -> None:
    db = tmp_path / "shared.db"
    upstream.on_path("/v1/models", Reply.json(models_answer()))
    gw = spawn_gateway(catalogue_env(db))
    wait_for_log(gw, "model catalogue: 3 models from")
    fetch = upstream.path_requests[0]
    assert (fetch.method, fetch.path) == ("GET", "/v1/models")
    assert "authorization" not in fetch.headers  # the list is public: no key leaves for it

    sent, headers = ask(gw, upstream, "claude-sonnet-4-5")
    assert sent == 64_000  # the top provider's max_completion_tokens
    assert headers["anthropic-gateway-cost-usd"] == f"{SONNET_COST:.8f}"
    info = httpx2.get(gw.url + "/v1/models/claude-sonnet-4-5", headers={"x-api-key": "k"}).json()
    assert (info["max_input_tokens"], info["max_tokens"]) == (1_000_000, 64_000)
    sent, _ = ask(gw, upstream, "claude-haiku-4-5", max_tokens=4000)
    assert sent == 4000  # under the limit: unchanged
    sent, _ = ask(gw, upstream, "claude-haiku-4-5", max_tokens=20_000)
    assert sent == 8192

    # deepseek-chat lists no image input: a clear 400 from the gateway, no upstream call.
    calls = len(upstream.requests)
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}
    resp = post_raw(gw.url, "/v1/messages", {"model": "claude-haiku-4-5", "max_tokens": 100, "messages": [
        {"role": "user", "content": [image, {"type": "text", "text": "What is this?"}]}]})  # fmt: skip
    assert resp.status_code == 400
    assert resp.json()["error"]["type"] == "invalid_request_error"
    assert "does not support image input" in resp.json()["error"]["message"]
    assert len(upstream.requests) == calls
    # ... and no reasoning: Claude Code's thinking request is not sent to it.
    upstream.expect(Reply.json(completion("ok", usage_=usage(10, 1))))
    resp = post_raw(gw.url, "/v1/messages", {"model": "claude-haiku-4-5", "max_tokens": 4000,
                                             "thinking": {"type": "enabled", "budget_tokens": 2000},
                                             "messages": [{"role": "user", "content": "Hi"}]})  # fmt: skip
    assert resp.status_code == 200 and "reasoning" not in upstream.last_body
    stop_gateway(gw)

    # Restarted without network to OpenRouter's /models: the stored copy serves at once.
    upstream.on_path("/v1/models", Reply.json(error_body(503, "unavailable"), status=503))
    again = spawn_gateway(catalogue_env(db))
    sent, headers = ask(again, upstream, "claude-sonnet-4-5")
    assert sent == 64_000
    assert headers["anthropic-gateway-cost-usd"] == f"{SONNET_COST:.8f}"
    wait_for_log(again, "fetching http://127.0.0.1:")
    assert "failed (ValueError: HTTP 503); keeping the copy in use" in again.log_text()
    assert UPSTREAM_KEY not in again.log_text() + gw.log_text()


def test_an_alias_s_own_limits_win_over_the_catalogue(spawn_gateway: SpawnGateway, upstream: FakeUpstream,
                                                      tmp_path: Path) -> None:  # fmt: skip
    upstream.on_path("/v1/models", Reply.json(models_answer()))
    models = json.dumps({"big": {"model": DEEPSEEK, "max_output_tokens": 100_000, "context_window": 300_000,
                                 "capabilities": ["tools", "vision"]}})  # fmt: skip
    gw = spawn_gateway({**catalogue_env(tmp_path / "gw.db"), "ANTHROPIC_GATEWAY_MODELS": models})
    wait_for_log(gw, "model catalogue: 3 models from")
    sent, _ = ask(gw, upstream, "big")
    assert sent == 100_000
    # The alias says it takes images: the catalogue's "text only" does not refuse them.
    upstream.expect(Reply.json(completion("a square", usage_=usage(10, 2))))
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}
    resp = post_raw(gw.url, "/v1/messages", {"model": "big", "max_tokens": 100, "messages": [
        {"role": "user", "content": [image, {"type": "text", "text": "What is this?"}]}]})  # fmt: skip
    assert resp.status_code == 200, resp.text
