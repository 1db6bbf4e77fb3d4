"""The access log, read from a real gateway's stdout after known traffic: one line per request, field
by field, upstream 4xx answers at warning with their (redacted) message, no key anywhere."""

from __future__ import annotations

import json
import sqlite3
import time
from typing import Any

import httpx2

from conftest import GATEWAY_ENV, UPSTREAM_KEY, GatewayProcess, SpawnGateway
from e2e import post_raw
from fake_upstream import FakeUpstream, Reply, error_body, finish_chunk, text_chunk, usage_chunk

CLIENT = "gw-client-key-4242"
ADMIN = "gw-admin-key-7777"
HELLO = {"max_tokens": 10, "messages": [{"role": "user", "content": "Hi"}]}


def access_lines(gw: GatewayProcess, n: int, timeout: float = 5.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        lines = [json.loads(line) for line in gw.log_text().splitlines() if line.startswith('{"time"')]
        lines = [x for x in lines if x["url.path"] != "/"]  # start-up's readiness polls
        if len(lines) >= n or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)


def test_one_line_per_request_field_by_field(spawn_gateway: SpawnGateway, upstream: FakeUpstream) -> None:
    env = {**GATEWAY_ENV, "ANTHROPIC_GATEWAY_API_KEYS": CLIENT, "ANTHROPIC_GATEWAY_ADMIN_KEYS": ADMIN,
           "ANTHROPIC_GATEWAY_RETRIES": "0"}  # fmt: skip
    gw = spawn_gateway(env)
    auth = {"x-api-key": CLIENT}
    upstream.expect(
        Reply.auto([text_chunk("Hello"), finish_chunk("stop"), usage_chunk(12, 3, cached=4)]),
        Reply.json(error_body(402, f"Insufficient credits for key {UPSTREAM_KEY}"), status=402),
        Reply.json(error_body(404, "No endpoints found for test/sonnet"), status=404),
    )
    ok = post_raw(gw.url, "/v1/messages", {"model": "claude-sonnet-5", **HELLO}, headers={**auth, "x-request-id": "trace-1.a"})
    broke = post_raw(gw.url, "/v1/messages", {"model": "claude-sonnet-5", **HELLO}, headers=auth)
    missing = post_raw(gw.url, "/v1/messages", {"model": "claude-sonnet-5", **HELLO}, headers=auth)
    bad_id = httpx2.get(gw.url + "/v1/models", headers={**auth, "x-request-id": "not valid!"})
    assert (ok.status_code, broke.status_code, missing.status_code) == (200, 402, 404)
    assert ok.headers["request-id"] == "trace-1.a"
    assert broke.headers["request-id"].startswith("req_") and bad_id.headers["request-id"].startswith("req_")

    lines = access_lines(gw, 4)
    assert [(x["url.path"], x["http.response.status_code"]) for x in lines] == [
        ("/v1/messages", 200), ("/v1/messages", 402), ("/v1/messages", 404), ("/v1/models", 200)]
    first = lines[0]
    assert first["request_id"] == "trace-1.a"
    assert first["key_label"].startswith("key-") and CLIENT not in json.dumps(first)
    assert {k: first[k] for k in (
        "http.request.method", "gen_ai.operation.name", "gen_ai.request.model", "gen_ai.response.model",
        "gen_ai.provider.name", "gateway.upstream_model", "gateway.stream", "gen_ai.usage.input_tokens",
        "gen_ai.usage.output_tokens", "gen_ai.usage.cache_read.input_tokens",
        "gen_ai.usage.cache_creation.input_tokens", "gen_ai.response.finish_reasons", "upstream_status")} == {
        "http.request.method": "POST", "gen_ai.operation.name": "chat", "gen_ai.request.model": "claude-sonnet-5",
        "gen_ai.response.model": "fake/upstream-model", "gen_ai.provider.name": "default",
        "gateway.upstream_model": "test/sonnet", "gateway.stream": False, "gen_ai.usage.input_tokens": 8,
        "gen_ai.usage.output_tokens": 3, "gen_ai.usage.cache_read.input_tokens": 4,
        "gen_ai.usage.cache_creation.input_tokens": 0, "gen_ai.response.finish_reasons": ["end_turn"],
        "upstream_status": 200}  # fmt: skip
    assert first["duration_ms"] >= first["upstream_ms"] >= 0 and first["overhead_ms"] >= 0
    assert (lines[1]["error.type"], lines[1]["upstream_status"]) == ("billing_error", 402)
    assert "Insufficient credits for key [redacted]" in lines[1]["error.message"]
    assert lines[2]["error.type"] == "not_found_error" and "No endpoints found" in lines[2]["error.message"]
    log = gw.log_text()
    for secret in (UPSTREAM_KEY, CLIENT, ADMIN):
        assert secret not in log

    # The same requests are in the ledger, in the gateway's own store file.
    time.sleep(0.5)
    with sqlite3.connect(gw.log_path.with_suffix(".db")) as db:
        rows = db.execute("SELECT request_id, status, input_tokens, output_tokens, cache_read_tokens FROM ledger "
                          "ORDER BY id").fetchall()  # fmt: skip
    assert rows[0] == ("trace-1.a", 200, 8, 3, 4)
    assert [r[1] for r in rows] == [200, 402, 404]


def test_console_format_and_bodies(spawn_gateway: SpawnGateway, upstream: FakeUpstream) -> None:
    gw = spawn_gateway({**GATEWAY_ENV, "ANTHROPIC_GATEWAY_LOG_FORMAT": "console", "ANTHROPIC_GATEWAY_LOG_BODIES": "true"})
    upstream.expect(Reply.auto([text_chunk("Hi there"), finish_chunk("stop"), usage_chunk(5, 2)]))
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "A" * 200}}
    body = {"model": "claude-sonnet-5", "max_tokens": 10,
            "messages": [{"role": "user", "content": [image, {"type": "text", "text": "what is it"}]}]}  # fmt: skip
    assert post_raw(gw.url, "/v1/messages", body).status_code == 200
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and " POST /v1/messages 200 " not in gw.log_text():
        time.sleep(0.05)
    line = next(x for x in gw.log_text().splitlines() if " POST /v1/messages 200 " in x)
    assert "claude-sonnet-5→test/sonnet in=5 out=2" in line
    assert "request_body" not in line  # console lines stay one short line
    assert "A" * 100 not in gw.log_text()


def test_a_short_placeholder_key_is_redacted_where_it_stands_alone_not_inside_field_names(
    spawn_gateway: SpawnGateway, upstream: FakeUpstream
) -> None:
    # A local backend's key is often a placeholder as short as a word; every "gen_ai." field name of
    # the log line contains it.
    gw = spawn_gateway({**GATEWAY_ENV, "ANTHROPIC_GATEWAY_UPSTREAM_KEY": "gen", "ANTHROPIC_GATEWAY_RETRIES": "0"})
    upstream.expect(
        Reply.auto([text_chunk("Hello"), finish_chunk("stop"), usage_chunk(12, 3)]),
        Reply.json(error_body(401, "Incorrect API key provided: gen."), status=401),
    )
    ok = post_raw(gw.url, "/v1/messages", {"model": "claude-sonnet-5", **HELLO})
    bad = post_raw(gw.url, "/v1/messages", {"model": "claude-sonnet-5", **HELLO})
    assert (ok.status_code, bad.status_code) == (200, 500)  # the gateway's own key was refused
    assert upstream.requests[0].headers["authorization"] == "Bearer gen"
    assert "(Incorrect API key provided: [redacted].)" in bad.json()["error"]["message"]
    lines = access_lines(gw, 2)
    assert [x["gen_ai.request.model"] for x in lines] == ["claude-sonnet-5", "claude-sonnet-5"]
    assert lines[0]["gen_ai.usage.output_tokens"] == 3
    assert "(Incorrect API key provided: [redacted].)" in lines[1]["error.message"]
