"""Health: liveness, readiness from the background probes (a dead backend, a live one, none probed
yet), the detailed report with secrets masked, and admin keys on the admin routes."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import httpx2
import pytest

from anthropic_gateway.http.gateway import Gateway
from anthropic_gateway.http.ops import detailed_report, readiness
from anthropic_gateway.ops.health import config_summary
from anthropic_gateway.settings import load_settings
from conftest import GATEWAY_ENV, UPSTREAM_KEY, GatewayProcess, SpawnGateway, free_port
from fake_upstream import FakeUpstream, Reply

CLIENT = "health-client-key-51"
ADMIN = "health-admin-key-52"
PROBING = {"ANTHROPIC_GATEWAY_HEALTH_PROBE_INTERVAL": "0.2"}
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def get(gw: GatewayProcess, path: str, key: str | None = None) -> httpx2.Response:
    return httpx2.get(gw.url + path, headers={"x-api-key": key} if key else {}, timeout=10)


def wait_for(gw: GatewayProcess, path: str, ok: Any, key: str | None = None, timeout: float = 15.0) -> httpx2.Response:
    deadline = time.monotonic() + timeout
    while True:
        resp = get(gw, path, key)
        if ok(resp) or time.monotonic() > deadline:
            return resp
        time.sleep(0.1)


def test_liveness_and_readiness_without_probes_make_no_upstream_call(gateway: GatewayProcess,
                                                                     upstream: FakeUpstream) -> None:  # fmt: skip
    live, ready = get(gateway, "/health"), get(gateway, "/health/ready")
    assert (live.status_code, live.json()) == (200, {"status": "ok"})
    assert (ready.status_code, ready.json()) == (200, {"status": "ready"})  # never probed: not blocking
    assert upstream.requests == []


def test_a_dead_backend_makes_the_gateway_unready(spawn_gateway: SpawnGateway) -> None:
    port = free_port()  # nothing listens there
    gw = spawn_gateway({**GATEWAY_ENV, **PROBING}, upstream_url=f"http://127.0.0.1:{port}/v1")
    ready = wait_for(gw, "/health/ready", lambda r: r.status_code == 503)
    assert (ready.status_code, ready.json()) == (503, {"status": "no backend reachable"})
    assert get(gw, "/health").status_code == 200  # still alive
    report = get(gw, "/health/detailed").json()  # an open gateway: its admin routes are open too
    assert (report["status"], report["ready"]) == ("no backend reachable", False)
    probe = report["backends"]["default"]["probe"]
    assert {k: probe[k] for k in ("reachable", "ok", "status", "detail")} == {
        "reachable": False, "ok": False, "status": None,
        "detail": f"Upstream connection error: cannot connect to 127.0.0.1:{port}"}  # fmt: skip
    assert probe["latency_ms"] >= 0 and ISO.match(probe["at"])


def test_one_reachable_backend_keeps_it_ready_and_probes_use_each_key(spawn_gateway: SpawnGateway,
                                                                      upstream: FakeUpstream) -> None:  # fmt: skip
    upstream.always(Reply.json({"data": [{"id": "test/sonnet"}]}))
    backends = {"dead": {"url": f"http://127.0.0.1:{free_port()}/v1", "kind": "openai-compatible"},
                "keyless": {"url": upstream.base_url.replace("/v1", "/v2"), "kind": "openai-compatible"}}  # fmt: skip
    gw = spawn_gateway({**GATEWAY_ENV, **PROBING, "ANTHROPIC_GATEWAY_BACKENDS": json.dumps(backends)})

    def probed(r: httpx2.Response) -> bool:
        return all(b["probe"] is not None for b in r.json()["backends"].values())

    report = wait_for(gw, "/health/detailed", probed).json()
    probes = {name: b["probe"] for name, b in report["backends"].items()}
    assert {n: (p["reachable"], p["ok"], p["status"], p["detail"]) for n, p in probes.items()} == {
        "default": (True, True, 200, "ok"),
        "dead": (False, False, None, probes["dead"]["detail"]),
        "keyless": (True, True, 200, "ok"),
    }
    assert probes["dead"]["detail"].startswith("Upstream connection error: cannot connect to 127.0.0.1:")
    assert (report["status"], report["ready"]) == ("ready", True)
    assert get(gw, "/health/ready").status_code == 200
    # Probes run on their interval (several by now), each a GET of /models with that backend's key.
    assert upstream.wait_for_requests(4)
    seen = {(r.method, r.path, r.headers.get("authorization")) for r in upstream.requests}
    assert seen == {("GET", "/v1/models", f"Bearer {UPSTREAM_KEY}"), ("GET", "/v2/models", None)}
    assert UPSTREAM_KEY not in json.dumps(report)


def test_admin_routes_need_an_admin_key_where_keys_are_configured(spawn_gateway: SpawnGateway) -> None:
    gw = spawn_gateway({**GATEWAY_ENV, "ANTHROPIC_GATEWAY_API_KEYS": CLIENT, "ANTHROPIC_GATEWAY_ADMIN_KEYS": ADMIN})
    for path in ("/health/detailed", "/metrics"):
        none, client, admin = get(gw, path), get(gw, path, CLIENT), get(gw, path, ADMIN)
        assert (none.status_code, none.json()["error"]["type"]) == (401, "authentication_error")
        assert (client.status_code, client.json()["error"]["type"]) == (403, "permission_error")
        assert admin.status_code == 200
        bearer = httpx2.get(gw.url + path, headers={"authorization": f"Bearer {ADMIN}"})
        assert bearer.status_code == 200
    for path in ("/health", "/health/ready"):  # what an orchestrator probes needs no key
        assert get(gw, path).status_code == 200


def test_the_detailed_report_masks_every_secret(spawn_gateway: SpawnGateway) -> None:
    backends = {"loc": {"url": "http://user:hunter2@127.0.0.1:9/v1", "kind": "openai-compatible",
                        "headers": {"X-Custom-Auth": "header-secret-77"}}}  # fmt: skip
    gw = spawn_gateway({**GATEWAY_ENV, "ANTHROPIC_GATEWAY_API_KEYS": CLIENT, "ANTHROPIC_GATEWAY_ADMIN_KEYS": ADMIN,
                        "ANTHROPIC_GATEWAY_BACKENDS": json.dumps(backends)})  # fmt: skip
    resp = get(gw, "/health/detailed", ADMIN)
    report = resp.json()
    for secret in (UPSTREAM_KEY, CLIENT, ADMIN, "hunter2", "header-secret-77"):
        assert secret not in resp.text
    assert (report["version"], report["status"], report["ready"]) == ("0.1.0", "ready", True)
    assert report["uptime_seconds"] >= 0 and ISO.match(report["started_at"])
    assert report["in_flight"] == {"requests": 1, "streams": 0}  # this request
    assert (report["store"]["open"], report["store"]["error"]) == (True, None)
    assert report["ledger"]["dropped"] == 0
    config = report["config"]
    assert (config["upstream_key"], config["api_keys"], config["admin_keys"]) == ("***", "***", "***")
    assert config["backends"]["loc"]["url"] == "http://***@127.0.0.1:9/v1"
    assert config["backends"]["loc"]["headers"] == {"X-Custom-Auth": "***"}
    assert config["sonnet_model"] == "test/sonnet" and config["health_probe_interval"] == 0
    assert report["backends"] == {"default": {"kind": "openai-compatible", "key": "set", "probe": None},
                                  "loc": {"kind": "openai-compatible", "key": "none", "probe": None}}  # fmt: skip


# --- in process: start-up and draining, and the sections other parts add --------------------------


@pytest.fixture
def gw() -> Gateway:
    return Gateway.build(load_settings(environ={"ANTHROPIC_GATEWAY_DATABASE_URL": ":memory:"}))


def test_readiness_follows_the_lifecycle(gw: Gateway) -> None:
    assert readiness(gw) == (False, "starting")
    gw.lifecycle.serving()
    assert readiness(gw) == (True, "ready")
    gw.lifecycle.state = "draining"
    assert readiness(gw) == (False, "draining")
    gw.lifecycle.serving()  # a drain is never undone
    assert readiness(gw) == (False, "draining")


def test_status_providers_add_sections_and_a_failing_one_says_so(gw: Gateway) -> None:
    def broken() -> dict[str, Any]:
        raise RuntimeError("no catalogue yet")

    gw.status_providers["catalogue"] = lambda: {"age_seconds": 12.5, "models": 300}
    gw.status_providers["broken"] = broken
    report = detailed_report(gw)
    assert report["catalogue"] == {"age_seconds": 12.5, "models": 300}
    assert report["broken"] == {"error": "RuntimeError"}
    assert list(report)[-1] == "config"


def test_config_summary_keeps_names_that_only_look_like_secrets() -> None:
    settings = load_settings(environ={"ANTHROPIC_GATEWAY_TOKENIZER_PRELOAD": "false",
                                      "ANTHROPIC_GATEWAY_DATABASE_URL": "postgresql://gw:pw-123@db/gw",
                                      "ANTHROPIC_GATEWAY_MODELS": json.dumps({"a": {"max_output_tokens": 9}})})  # fmt: skip
    summary = config_summary(settings)
    assert summary["tokenizer_preload"] is False and summary["models"]["a"]["max_output_tokens"] == 9
    assert summary["database_url"] == "postgresql://***@db/gw"
    assert summary["upstream_key"] is None and summary["api_keys"] is None  # unset: nothing to hide
