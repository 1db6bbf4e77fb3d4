"""GET /status/data on a real gateway after scripted traffic: exact counts, tokens and costs in the
buckets' ranges and the ledger's, in-flight streams, the admin key, the range parameter, and the
page's own routes (CSP, static files). Also `anthropic-gateway top --once` over the same data."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
import time
from typing import Any

import anthropic
import httpx2
import pytest

from anthropic_gateway.auth import key_label
from batches import item, script, wait_ended
from conftest import GATEWAY_ENV, GatewayProcess, SpawnGateway, _clean_environ
from e2e import post_raw
from fake_upstream import (
    FakeUpstream,
    Pause,
    Reply,
    completion,
    error_body,
    finish_chunk,
    text_chunk,
    usage,
    usage_chunk,
)

KEY_A, KEY_B, ADMIN = "status-key-a", "status-key-b", "status-admin-key"
PRICES = '{"test/sonnet": {"input": 3, "output": 15}, "test/haiku": {"input": 1, "output": 5}}'
SONNET_COST = round((950 + 300 + 50) * 3e-6 + 130 * 15e-6, 6)  # cache priced as input here
HAIKU_COST = round(500 * 1e-6 + 20 * 5e-6, 6)
ENV = {**GATEWAY_ENV, "ANTHROPIC_GATEWAY_API_KEYS": f"{KEY_A},{KEY_B}", "ANTHROPIC_GATEWAY_ADMIN_KEYS": ADMIN,
       "ANTHROPIC_GATEWAY_PRICES": PRICES}  # fmt: skip


def ask(gw: GatewayProcess, key: str, model: str, *, stream: bool = False, status: int = 200) -> None:
    body = {"model": model, "max_tokens": 10, "stream": stream, "messages": [{"role": "user", "content": "Hi"}]}
    assert post_raw(gw.url, "/v1/messages", body, headers={"x-api-key": key}).status_code == status


def data(gw: GatewayProcess, key: str | None = ADMIN, **params: str) -> httpx2.Response:
    return httpx2.get(gw.url + "/status/data", params=params, headers={"x-api-key": key} if key else {}, timeout=30)


def send_traffic(gw: GatewayProcess, upstream: FakeUpstream) -> None:
    """3 answered (2 sonnet by key A and B, 1 streamed haiku by key A), 1 upstream 400, 1 bad key (401)."""
    upstream.expect(
        Reply.json(completion("a", usage_=usage(1000, 100, cached=200, cache_write=50))),
        Reply.stream([text_chunk("b"), finish_chunk("stop"), usage_chunk(500, 20)]),
        Reply.json(completion("c", usage_=usage(300, 30, cached=100))),
        Reply.json(error_body(400, "Provider returned error"), status=400),
    )
    ask(gw, KEY_A, "claude-sonnet-5")
    ask(gw, KEY_A, "claude-haiku-4-5", stream=True)
    ask(gw, KEY_B, "claude-sonnet-5")
    ask(gw, KEY_B, "claude-sonnet-5", status=400)
    ask(gw, "not-a-key", "claude-sonnet-5", status=401)


def settled(gw: GatewayProcess, n: int, **params: str) -> dict[str, Any]:
    """The data once ``n`` requests are in (a record is emitted just after its last byte)."""
    deadline = time.monotonic() + 5
    while True:
        body: dict[str, Any] = data(gw, **params).json()
        if body["totals"]["requests"] >= n or time.monotonic() > deadline:
            return body
        time.sleep(0.05)


@pytest.fixture
def served(spawn_gateway: SpawnGateway, upstream: FakeUpstream) -> GatewayProcess:
    gw = spawn_gateway(ENV)
    send_traffic(gw, upstream)
    return gw


def test_the_last_15_minutes_after_known_traffic(served: GatewayProcess) -> None:
    body = settled(served, 5)
    tot = body["totals"]
    assert (body["range"], body["source"], body["step"], len(body["series"]["t"])) == ("15m", "buckets", 10, 90)
    assert tot["requests"] == 5 and tot["model_requests"] == 5 and tot["streams"] == 1
    assert tot["by_class"] == {"1xx": 0, "2xx": 3, "3xx": 0, "4xx": 2, "5xx": 0}
    assert (tot["errors"], tot["error_rate"]) == (2, 0.4)
    assert tot["tokens"] == {"input": 1450, "output": 150, "cache_read": 300, "cache_write": 50}
    assert tot["cache_read_share"] == round(300 / (1450 + 300 + 50), 4)
    assert tot["cost_usd"] == pytest.approx(SONNET_COST + HAIKU_COST)
    assert {r["name"]: r["cost_usd"] for r in tot["cost_by_model"]} == pytest.approx(
        {"claude-sonnet-5": SONNET_COST, "claude-haiku-4-5": HAIKU_COST})
    a, b = key_label("key", KEY_A), key_label("key", KEY_B)
    assert {r["name"] for r in tot["cost_by_key"]} == {a, b}
    assert all(tot["latency_ms"][p] is not None and tot["latency_ms"][p] > 0 for p in ("p50", "p95", "p99"))
    assert tot["ttft_ms"]["p50"] is not None and tot["overhead_ms"]["p50"] is not None
    s = body["series"]
    assert round(sum(s["requests"]) * 10) == 5 and round(sum(s["4xx"]) * 10) == 2
    assert round(sum(s["input"]) * 10) == 1450
    # The last requests, newest first: no bodies, no keys.
    recent = body["recent"]
    assert [(r["status"], r["key"], r["model"]) for r in recent] == [
        (401, None, None), (400, b, "claude-sonnet-5"), (200, b, "claude-sonnet-5"),
        (200, a, "claude-haiku-4-5"), (200, a, "claude-sonnet-5")]  # fmt: skip
    assert [(r["input_tokens"], r["output_tokens"], r["cache_read_tokens"]) for r in recent[2:]] == [
        (200, 30, 100), (500, 20, 0), (750, 100, 200)]  # fmt: skip
    # Today: this process's records (the ledger held nothing before it started).
    today = body["today"]
    assert today["requests"] == 4 and today["cost_usd"] == pytest.approx(SONNET_COST + HAIKU_COST)
    assert {r["name"]: r["requests"] for r in today["by_key"]} == {a: 2, b: 2}
    assert [b["name"] for b in body["backends"]] == ["default"]
    assert body["backends"][0]["requests"] == 4 and body["backends"][0]["errors"] == 1
    assert body["in_flight"] == {"requests": 0, "streams": 0}
    assert body["batches"] == []
    assert body["response_cache"]["enabled"] is False


def test_the_ledger_ranges_after_known_traffic(served: GatewayProcess) -> None:
    settled(served, 5)
    for rng, step, points in (("24h", 900, 96), ("7d", 3600, 168)):
        body = data(served, range=rng).json()
        tot = body["totals"]
        assert (body["source"], body["step"], len(body["series"]["t"])) == ("ledger", step, points)
        assert tot["requests"] == 4  # the ledger keeps model requests: not the 401, which named no model
        assert tot["by_class"] == {"1xx": 0, "2xx": 3, "3xx": 0, "4xx": 1, "5xx": 0}
        assert tot["tokens"] == {"input": 1450, "output": 150, "cache_read": 300, "cache_write": 50}
        assert tot["cost_usd"] == pytest.approx(SONNET_COST + HAIKU_COST)
        assert tot["latency_ms"]["p50"] is not None and tot["overhead_ms"]["p50"] is None
        assert round(sum(body["series"]["requests"]) * step) == 4


def test_a_gateway_restarted_keeps_todays_cost_from_the_ledger(spawn_gateway: SpawnGateway, upstream: FakeUpstream,
                                                              tmp_path: Any) -> None:  # fmt: skip
    env = {**ENV, "ANTHROPIC_GATEWAY_DATABASE_URL": str(tmp_path / "shared.db")}
    first = spawn_gateway(env)
    send_traffic(first, upstream)
    settled(first, 5)
    first.proc.terminate()
    first.proc.wait(10)
    second = spawn_gateway(env)
    body = data(second).json()
    assert body["totals"]["requests"] == 0  # the buckets are this process's
    assert body["today"]["requests"] == 4
    assert body["today"]["cost_usd"] == pytest.approx(SONNET_COST + HAIKU_COST)


def test_streams_in_flight(spawn_gateway: SpawnGateway, upstream: FakeUpstream) -> None:
    gw = spawn_gateway(ENV)
    upstream.expect(Reply.stream([text_chunk("slow"), Pause(2.0), finish_chunk("stop"), usage_chunk(5, 1)]))
    worker = threading.Thread(target=ask, args=(gw, KEY_A, "claude-sonnet-5"), kwargs={"stream": True})
    worker.start()
    try:
        deadline = time.monotonic() + 5
        seen = None
        while time.monotonic() < deadline:
            seen = data(gw).json()["in_flight"]
            if seen["streams"]:
                break
            time.sleep(0.05)
        assert seen == {"requests": 1, "streams": 1}
    finally:
        worker.join(10)
    assert settled(gw, 1)["in_flight"] == {"requests": 0, "streams": 0}


def test_the_admin_key_and_the_range_are_checked(served: GatewayProcess) -> None:
    assert data(served, key=None).status_code == 401
    denied = data(served, key=KEY_A)
    assert denied.status_code == 403 and denied.json()["error"]["type"] == "permission_error"
    bad = data(served, range="2h")
    assert bad.status_code == 400
    assert bad.json()["error"] == {"type": "invalid_request_error",
                                   "message": "range: expected one of 15m, 1h, 24h, 7d; got '2h'"}  # fmt: skip
    assert data(served).headers["cache-control"] == "no-store"


def test_the_page_and_its_files(served: GatewayProcess) -> None:
    page = httpx2.get(served.url + "/status")  # no key: the page holds no data
    assert page.status_code == 200 and page.headers["content-type"] == "text/html; charset=utf-8"
    csp = page.headers["content-security-policy"]
    assert "script-src 'self';" in csp and "default-src 'none'" in csp and "unsafe-inline" not in csp
    assert "<script>" not in page.text and 'src="/status/static/app.js"' in page.text
    for name, kind in (("app.js", "text/javascript"), ("app.css", "text/css"), ("icon.svg", "image/svg+xml")):
        resp = httpx2.get(served.url + "/status/static/" + name)
        assert resp.status_code == 200 and resp.headers["content-type"].startswith(kind), name
        again = httpx2.get(served.url + "/status/static/" + name, headers={"if-none-match": resp.headers["etag"]})
        assert again.status_code == 304
    script = httpx2.get(served.url + "/status/static/app.js").text
    assert re.search(r"\.(innerHTML|outerHTML|insertAdjacentHTML)\b|document\.write|eval\(", script) is None
    missing = httpx2.get(served.url + "/status/static/index.html")
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "not_found_error"
    # The page's own polling is not traffic.
    before = data(served).json()["totals"]["requests"]
    data(served)
    assert data(served).json()["totals"]["requests"] == before


def test_top_once_prints_the_same_figures(served: GatewayProcess) -> None:
    settled(served, 5)
    env = {**_clean_environ(), "COLUMNS": "200"}
    proc = subprocess.run([sys.executable, "-m", "anthropic_gateway", "top", "--once", "--url", served.url,
                           "--key", ADMIN], capture_output=True, text=True, timeout=30, env=env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "requests  " in out and "5 (" in out
    assert "2 / 0 (40.0%)" in out  # 4xx / 5xx (error rate)
    assert f"${SONNET_COST + HAIKU_COST:,.4f}, 4 requests" in out
    assert key_label("key", KEY_A) in out and "claude-haiku-4-5" in out
    refused = subprocess.run([sys.executable, "-m", "anthropic_gateway", "top", "--once", "--url", served.url,
                              "--key", KEY_A], capture_output=True, text=True, timeout=30, env=env)  # fmt: skip
    assert refused.returncode == 1 and "refused" in refused.stderr and KEY_A not in refused.stderr


def test_batches_in_progress_with_their_counts(spawn_gateway: SpawnGateway, upstream: FakeUpstream) -> None:
    script(upstream)
    gw = spawn_gateway({**ENV, "ANTHROPIC_GATEWAY_BATCH_CONCURRENCY": "1"})
    with anthropic.Anthropic(base_url=gw.url, api_key=ADMIN, max_retries=0) as client:
        batch = client.messages.batches.create(
            requests=[item("slow", "slow:2"), item("a", "ok:a"), item("b", "ok:b")])  # type: ignore[list-item]
        deadline = time.monotonic() + 5
        shown: list[dict[str, Any]] = []
        while time.monotonic() < deadline and not (shown and shown[0]["counts"]["running"]):
            shown = data(gw).json()["batches"]
            time.sleep(0.05)
        assert [(b["id"], b["status"], b["total"]) for b in shown] == [(batch.id, "in_progress", 3)]
        assert shown[0]["counts"] == {"pending": 2, "running": 1, "succeeded": 0, "errored": 0, "canceled": 0,
                                      "expired": 0}  # fmt: skip
        wait_ended(client, batch.id)
    assert data(gw).json()["batches"] == []


def test_backend_probes_and_response_cache_lookups(spawn_gateway: SpawnGateway, upstream: FakeUpstream) -> None:
    upstream.always(Reply.auto([text_chunk("Hello"), finish_chunk("stop"), usage_chunk(30, 4)]))
    gw = spawn_gateway({**ENV, "ANTHROPIC_GATEWAY_HEALTH_PROBE_INTERVAL": "1",
                        "ANTHROPIC_GATEWAY_RESPONSE_CACHE": "true"})  # fmt: skip
    body = {"model": "claude-sonnet-5", "max_tokens": 10, "temperature": 0,
            "messages": [{"role": "user", "content": "Hi"}]}  # fmt: skip
    for _ in range(3):
        assert post_raw(gw.url, "/v1/messages", body, headers={"x-api-key": KEY_A}).status_code == 200
    deadline = time.monotonic() + 10
    while True:
        got = settled(gw, 3)
        if got["backends"][0]["probe"] is not None or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    probe = got["backends"][0]["probe"]
    assert probe is not None and (probe["ok"], probe["status"], probe["detail"]) == (True, 200, "ok")
    assert got["response_cache"] == {"enabled": True, "hits": 2, "misses": 1, "coalesced": 0, "bypassed": 0,
                                     "hit_ratio": 0.6667}  # fmt: skip
    assert got["totals"]["response_cache"] == {"hits": 2, "misses": 1, "hit_ratio": 0.6667}
    metrics = httpx2.get(gw.url + "/metrics", headers={"x-api-key": ADMIN}).text
    for result, n in (("hit", 2), ("miss", 1), ("coalesced", 0), ("bypassed", 0)):
        assert f'gateway_response_cache_lookups_total{{result="{result}"}} {n}.0' in metrics
    assert "gateway_response_cache_tokens_saved_total 68.0" in metrics


def test_top_redraws_until_interrupted(served: GatewayProcess) -> None:
    settled(served, 5)
    before = served.log_text().count("/status/data")
    env = {**_clean_environ(), "COLUMNS": "200"}
    proc = subprocess.Popen([sys.executable, "-m", "anthropic_gateway", "top", "--url", served.url, "--key", ADMIN,
                             "--interval", "0.2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and served.log_text().count("/status/data") < before + 4:
            time.sleep(0.1)  # the access log shows each poll: the first draw and three redraws
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
    assert served.log_text().count("/status/data") >= before + 4
    assert proc.returncode == 0, err
    assert "claude-haiku-4-5" in out and err == ""


def test_without_its_store_the_page_still_answers_from_memory(spawn_gateway: SpawnGateway, upstream: FakeUpstream,
                                                             tmp_path: Any) -> None:  # fmt: skip
    blocker = tmp_path / "file"
    blocker.write_text("x")
    gw = spawn_gateway({**ENV, "ANTHROPIC_GATEWAY_DATABASE_URL": str(blocker / "sub" / "gw.db")})
    upstream.expect(Reply.json(completion("a", usage_=usage(10, 2))))
    ask(gw, KEY_A, "claude-sonnet-5")
    body = settled(gw, 1)
    assert body["totals"]["requests"] == 1 and body["today"]["requests"] == 1
    down = data(gw, range="24h")
    assert down.status_code == 503
    assert down.json()["error"]["type"] == "api_error"
    assert down.json()["error"]["message"].startswith("range: 24h is read from the ledger, which cannot be read now")
