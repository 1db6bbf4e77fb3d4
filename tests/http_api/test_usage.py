"""GET /v1/usage on a real gateway: totals equal the scripted upstream's usage, grouped by model, key
and day; admin key required where keys are configured; parameters validated with Anthropic 400s."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import httpx2
import pytest

from anthropic_gateway.auth import key_label
from anthropic_gateway.errors import InvalidRequestError
from anthropic_gateway.http.usage import parse_time, query
from conftest import GATEWAY_ENV, GatewayProcess, SpawnGateway
from e2e import post_raw
from fake_upstream import FakeUpstream, Reply, completion, finish_chunk, text_chunk, usage, usage_chunk

KEY_A, KEY_B, ADMIN = "usage-key-a", "usage-key-b", "usage-admin-key"
PRICES = '{"test/sonnet": {"input": 3, "output": 15}, "test/haiku": {"input": 1, "output": 5}}'


def ask(gw: GatewayProcess, key: str, model: str, *, stream: bool = False) -> None:
    body = {"model": model, "max_tokens": 10, "stream": stream, "messages": [{"role": "user", "content": "Hi"}]}
    assert post_raw(gw.url, "/v1/messages", body, headers={"x-api-key": key}).status_code == 200


def get_usage(gw: GatewayProcess, key: str | None = ADMIN, **params: str) -> httpx2.Response:
    return httpx2.get(gw.url + "/v1/usage", params=params, headers={"x-api-key": key} if key else {})


def row(requests: int, inp: int, out: int, cr: int, cw: int, cost: float) -> dict[str, Any]:
    return {"requests": requests, "errors": 0, "input_tokens": inp, "output_tokens": out,
            "cache_read_input_tokens": cr, "cache_creation_input_tokens": cw, "cost_usd": cost}  # fmt: skip


def strip(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k != "mean_latency_ms"} for r in rows]


@pytest.fixture
def served(spawn_gateway: SpawnGateway, upstream: FakeUpstream) -> GatewayProcess:
    gw = spawn_gateway({**GATEWAY_ENV, "ANTHROPIC_GATEWAY_API_KEYS": f"{KEY_A},{KEY_B}",
                        "ANTHROPIC_GATEWAY_ADMIN_KEYS": ADMIN, "ANTHROPIC_GATEWAY_PRICES": PRICES})  # fmt: skip
    upstream.expect(
        Reply.json(completion("a", usage_=usage(1000, 100, cached=200, cache_write=50))),
        Reply.stream([text_chunk("b"), finish_chunk("stop"), usage_chunk(500, 20)]),
        Reply.json(completion("c", usage_=usage(300, 30, cached=100))),
    )
    ask(gw, KEY_A, "claude-sonnet-5")
    ask(gw, KEY_A, "claude-haiku-4-5", stream=True)
    ask(gw, KEY_B, "claude-sonnet-5")
    deadline = time.monotonic() + 5  # a record is emitted just after its last byte
    while get_usage(gw).json()["total"]["requests"] < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    return gw


def test_totals_equal_the_upstream_usage(served: GatewayProcess) -> None:
    sonnet_cost = round((950 + 300 + 50) * 3e-6 + 130 * 15e-6, 6)  # cache priced as input here
    haiku_cost = round(500 * 1e-6 + 20 * 5e-6, 6)
    resp = get_usage(served, group_by="model")
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["group_by"] == "model"
    assert strip(body["data"]) == [
        {"group": "claude-haiku-4-5", **row(1, 500, 20, 0, 0, haiku_cost)},
        {"group": "claude-sonnet-5", **row(2, 750 + 200, 130, 300, 50, sonnet_cost)},
    ]
    total = body["total"]
    names = ("requests", "input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens")
    assert [total[k] for k in names] == [3, 1450, 150, 300, 50]
    assert total["cost_usd"] == pytest.approx(sonnet_cost + haiku_cost)

    by_key = {r["group"]: r["requests"] for r in get_usage(served, group_by="key").json()["data"]}
    assert by_key == {key_label("key", KEY_A): 2, key_label("key", KEY_B): 1}
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    assert [(r["group"], r["requests"]) for r in get_usage(served, group_by="day").json()["data"]] == [(today, 3)]
    # The window: a start after the requests finds nothing; Unix seconds and ISO dates both work.
    later = get_usage(served, start=str(int(time.time()) + 60), end=str(int(time.time()) + 120)).json()
    assert later["data"] == [] and later["total"]["requests"] == 0
    assert get_usage(served, start=today).json()["total"]["requests"] == 3


def test_admin_key_and_parameters_are_checked(served: GatewayProcess) -> None:
    assert get_usage(served, key=None).status_code == 401
    denied = get_usage(served, key=KEY_A)
    assert denied.status_code == 403 and denied.json()["error"]["type"] == "permission_error"
    for params, field in [({"start": "yesterday"}, "start"), ({"end": "2026-13-01"}, "end"),
                          ({"group_by": "color"}, "group_by"), ({"start": "2026-12-02", "end": "2026-12-01"}, "start"),
                          ({"start": "99999999999999"}, "start")]:  # fmt: skip
        resp = get_usage(served, **params)
        assert resp.status_code == 400, params
        err = resp.json()
        assert err["type"] == "error" and err["error"]["type"] == "invalid_request_error"
        assert err["error"]["message"].startswith(f"{field}: "), err


def test_times_parse_as_iso_dates_times_or_unix_seconds() -> None:
    assert parse_time("start", "2026-12-01") == datetime(2026, 12, 1, tzinfo=UTC).timestamp()
    assert parse_time("start", "2026-12-01T09:30:00Z") == datetime(2026, 12, 1, 9, 30, tzinfo=UTC).timestamp()
    assert parse_time("start", "2026-12-01T09:30:00+01:00") == datetime(2026, 12, 1, 8, 30, tzinfo=UTC).timestamp()
    assert parse_time("start", "2026-12-01 09:30") == datetime(2026, 12, 1, 9, 30, tzinfo=UTC).timestamp()
    assert parse_time("start", "1764547200") == 1764547200.0
    assert parse_time("start", "1764547200.5") == 1764547200.5
    assert query({}, 1_000_000.0) == (1_000_000.0 - 7 * 86400, 1_000_000.0, None)
    with pytest.raises(InvalidRequestError, match=r"^end: expected an ISO 8601 date"):
        parse_time("end", "12/01/2026")
