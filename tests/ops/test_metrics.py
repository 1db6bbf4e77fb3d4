"""Prometheus metrics: the sink fed from request records (in process), then a real gateway's /metrics
scraped and parsed after known traffic, with exact counts and bounded label values."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx2
from prometheus_client.parser import text_string_to_metric_families

from anthropic_gateway.ops.metrics import LATENCY_BUCKETS, Metrics, key_label
from anthropic_gateway.ops.record import RequestRecord
from conftest import GATEWAY_ENV, GatewayProcess, SpawnGateway
from e2e import post_raw
from fake_upstream import FakeUpstream, Reply, error_body, error_chunk, finish_chunk, text_chunk, usage_chunk

CLIENT = "metrics-client-key-31"
ADMIN = "metrics-admin-key-32"
HELLO = {"max_tokens": 10, "messages": [{"role": "user", "content": "Hi"}]}

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(text: str) -> Samples:
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(got: Samples, name: str, **labels: str) -> float | None:
    return got.get((name, tuple(sorted(labels.items()))))


def series(got: Samples, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {labels: v for (n, labels), v in got.items() if n == name}


def record(route: str | None = "/v1/messages", **fields: Any) -> RequestRecord:
    rec = RequestRecord("req_x", "POST", route or "/x")
    rec.route = route
    for k, v in fields.items():
        setattr(rec, k, v)
    rec.finished = rec.started + fields.pop("duration", 0.2)
    return rec


# --- the sink, in process ------------------------------------------------------------------------


def test_records_become_counters_and_histograms_with_bounded_labels() -> None:
    m = Metrics(["fast", "gpt-*"], ["default", "local"], lambda: (3, 1))
    m.record(record(model="claude-sonnet-4-5", backend="default", status=200, input_tokens=10, output_tokens=2,
                    cache_read_tokens=4, upstream_seconds=0.15, cost_usd=0.5, key_label="key-1234abcd"))  # fmt: skip
    m.record(record(model="fast", alias="fast", backend="local", status=200, output_tokens=7, retries=2,
                    fallbacks=["claude-haiku-4"], upstream_seconds=0.1, cost_usd=0.25,
                    key_label="passthrough-99999999"))  # fmt: skip
    m.record(record(model="gpt-4o", alias="gpt-*", backend="local", status=429, error_type="rate_limit_error",
                    upstream_status=429, upstream_seconds=0.01))  # fmt: skip
    m.record(record(model="some/raw-id-from-a-client", backend="default", status=502, error_type="api_error",
                    upstream_seconds=0.01))  # fmt: skip
    m.record(record(model="Claude-OPUS-x", backend="default", status=200, stream=True, error_type="overloaded_error",
                    upstream_status=200, upstream_seconds=0.01))  # fmt: skip
    m.record(record(route=None, status=404))  # an unknown path: no route template
    m.record(record(route="/v1/messages/count_tokens", model="claude-haiku-4", status=200, input_tokens=99))
    m.load()
    body, content_type = m.render()
    assert content_type.startswith("text/plain")
    got = samples(body.decode())

    assert series(got, "gateway_requests_total") == {
        (("model", "sonnet"), ("route", "/v1/messages"), ("status", "200")): 1.0,
        (("model", "fast"), ("route", "/v1/messages"), ("status", "200")): 1.0,
        (("model", "gpt-*"), ("route", "/v1/messages"), ("status", "429")): 1.0,
        (("model", "other"), ("route", "/v1/messages"), ("status", "502")): 1.0,
        (("model", "opus"), ("route", "/v1/messages"), ("status", "200")): 1.0,
        (("model", ""), ("route", "other"), ("status", "404")): 1.0,
        (("model", "haiku"), ("route", "/v1/messages/count_tokens"), ("status", "200")): 1.0,
    }
    assert series(got, "gateway_tokens_total") == {  # count_tokens ran no model: not counted
        (("kind", "input"), ("model", "sonnet")): 10.0, (("kind", "output"), ("model", "sonnet")): 2.0,
        (("kind", "cache_read"), ("model", "sonnet")): 4.0, (("kind", "output"), ("model", "fast")): 7.0,
    }  # fmt: skip
    assert series(got, "gateway_cost_usd_total") == {
        (("key", "key-1234abcd"), ("model", "sonnet")): 0.5, (("key", "passthrough"), ("model", "fast")): 0.25}
    assert series(got, "gateway_upstream_errors_total") == {
        (("backend", "local"), ("type", "rate_limit_error")): 1.0,
        (("backend", "default"), ("type", "api_error")): 1.0,  # no answer at all (502)
        (("backend", "default"), ("type", "overloaded_error")): 1.0,  # an error event inside a stream
    }
    assert series(got, "gateway_retries_total") == {(("backend", "local"),): 2.0}
    assert series(got, "gateway_fallbacks_total") == {(("model", "fast"),): 1.0}
    assert series(got, "gateway_in_flight") == {(("kind", "requests"),): 3.0, (("kind", "streams"),): 1.0}
    # Histograms: cumulative "less than or equal" buckets, a count and a sum per label set.
    assert value(got, "gateway_upstream_duration_seconds_count", backend="default") == 3.0
    assert value(got, "gateway_upstream_duration_seconds_bucket", backend="default", le="0.01") == 2.0
    assert value(got, "gateway_upstream_duration_seconds_bucket", backend="default", le="0.25") == 3.0
    assert value(got, "gateway_upstream_duration_seconds_sum", backend="default") == 0.17
    assert value(got, "gateway_request_duration_seconds_count", route="/v1/messages", model="sonnet") == 1.0
    assert value(got, "gateway_request_duration_seconds_bucket", route="/v1/messages", model="sonnet", le="+Inf") == 1.0
    assert value(got, "gateway_overhead_seconds_count", route="/v1/messages") == 5.0
    assert series(got, "gateway_time_to_first_token_seconds_count") == {}
    assert len(series(got, "gateway_request_duration_seconds_bucket")) == 7 * (len(LATENCY_BUCKETS) + 1)
    assert value(got, "gateway_build_info", version="0.1.0") == 1.0
    # Never a client's raw string in a label.
    assert "raw-id-from-a-client" not in body.decode() and "OPUS" not in body.decode()


def test_two_gateways_keep_separate_registries() -> None:
    a, b = Metrics([], ["default"], lambda: (0, 0)), Metrics([], ["default"], lambda: (0, 0))
    a.record(record(model="claude-haiku-4", backend="default", status=200))
    a.load()
    b.load()
    assert value(samples(a.render()[0].decode()), "gateway_requests_total", route="/v1/messages", model="haiku",
                 status="200") == 1.0  # fmt: skip
    assert series(samples(b.render()[0].decode()), "gateway_requests_total") == {}


def test_key_labels_are_configured_keys_or_a_collapsed_passthrough() -> None:
    assert [key_label(x) for x in ("open", "admin", "key-0a1b2c3d", "passthrough-0a1b2c3d", "sk-raw", None)] == [
        "open", "admin", "key-0a1b2c3d", "passthrough", "other", ""]  # fmt: skip


def test_other_sections_add_their_own_families() -> None:
    from prometheus_client.core import CounterMetricFamily

    m = Metrics([], [], lambda: (0, 0))

    def params() -> Any:
        fam = CounterMetricFamily("gateway_parameters", "Extension parameters", labels=["kind", "action"])
        fam.add_metric(["openrouter", "forwarded"], 4)
        yield fam

    m.add_collector(params)
    m.load()
    assert value(samples(m.render()[0].decode()), "gateway_parameters_total", kind="openrouter",
                 action="forwarded") == 4.0  # fmt: skip


# --- a real gateway ------------------------------------------------------------------------------


def scrape(gw: GatewayProcess, until: float, timeout: float = 10.0) -> Samples:
    """/metrics once the records of `until` Messages requests are in (each is counted after its last byte)."""
    deadline = time.monotonic() + timeout
    while True:
        resp = httpx2.get(gw.url + "/metrics", headers={"x-api-key": ADMIN})
        assert resp.status_code == 200, resp.text
        got = samples(resp.text)
        done = sum(v for (name, labels), v in got.items()
                   if name == "gateway_requests_total" and ("route", "/v1/messages") in labels)  # fmt: skip
        if done >= until or time.monotonic() > deadline:
            return got
        time.sleep(0.05)


def test_metrics_after_known_traffic(spawn_gateway: SpawnGateway, upstream: FakeUpstream) -> None:
    models = {"fast": {"model": "test/fast", "fallbacks": ["claude-haiku-4"]}}
    gw = spawn_gateway({**GATEWAY_ENV, "ANTHROPIC_GATEWAY_API_KEYS": CLIENT, "ANTHROPIC_GATEWAY_ADMIN_KEYS": ADMIN,
                        "ANTHROPIC_GATEWAY_RETRIES": "1", "ANTHROPIC_GATEWAY_MODELS": json.dumps(models)})  # fmt: skip
    auth = {"x-api-key": CLIENT, "x-request-id": "trace-metrics-1"}

    def send(model: str, *replies: Any, stream: bool = False) -> httpx2.Response:
        upstream.expect(*replies)
        return post_raw(gw.url, "/v1/messages", {"model": model, **HELLO, "stream": stream}, headers=auth)

    ok = [text_chunk("Hello"), finish_chunk("stop"), usage_chunk(12, 3)]
    assert send("claude-sonnet-5", Reply.auto(ok), stream=True).status_code == 200
    assert send("claude-sonnet-5", Reply.auto([text_chunk("Hi"), finish_chunk("stop"), usage_chunk(10, 2, cached=4)])
                ).status_code == 200  # fmt: skip
    down = Reply.json(error_body(503, "busy"), status=503)
    assert send("fast", down, down, Reply.auto([text_chunk("ok"), finish_chunk("stop"), usage_chunk(5, 1)])
                ).status_code == 200  # two attempts on test/fast, then the haiku fallback  # fmt: skip
    assert send("vendor/raw-model-xyz", Reply.json(error_body(400, "bad input"), status=400)).status_code == 400
    assert send("gpt-unknown-name").status_code == 404  # no alias: never reaches the upstream
    broken = Reply.stream([text_chunk("par"), error_chunk(502, "provider died")])
    assert send("claude-opus-4", broken, stream=True).status_code == 200
    assert httpx2.get(gw.url + "/v1/models", headers=auth).status_code == 200
    assert httpx2.get(gw.url + "/no/such/path", headers=auth).status_code == 404

    got = scrape(gw, until=6)
    requests = {labels: v for labels, v in series(got, "gateway_requests_total").items()
                if ("route", "/") not in labels and ("route", "/metrics") not in labels}  # start-up polls, scrapes
    assert requests == {
        (("model", "sonnet"), ("route", "/v1/messages"), ("status", "200")): 2.0,
        (("model", "fast"), ("route", "/v1/messages"), ("status", "200")): 1.0,
        (("model", "other"), ("route", "/v1/messages"), ("status", "400")): 1.0,
        (("model", ""), ("route", "/v1/messages"), ("status", "404")): 1.0,
        (("model", "opus"), ("route", "/v1/messages"), ("status", "200")): 1.0,
        (("model", ""), ("route", "/v1/models"), ("status", "200")): 1.0,
        (("model", ""), ("route", "other"), ("status", "404")): 1.0,
    }
    tokens = series(got, "gateway_tokens_total")
    assert {k: v for k, v in tokens.items() if ("model", "opus") not in k} == {
        (("kind", "input"), ("model", "sonnet")): 18.0, (("kind", "output"), ("model", "sonnet")): 5.0,
        (("kind", "cache_read"), ("model", "sonnet")): 4.0,
        (("kind", "input"), ("model", "fast")): 5.0, (("kind", "output"), ("model", "fast")): 1.0,
    }  # fmt: skip
    assert series(got, "gateway_upstream_errors_total") == {
        (("backend", "default"), ("type", "invalid_request_error")): 1.0,
        (("backend", "default"), ("type", "api_error")): 1.0,  # the error event inside the opus stream
    }
    assert series(got, "gateway_retries_total") == {(("backend", "default"),): 1.0}
    assert series(got, "gateway_fallbacks_total") == {(("model", "fast"),): 1.0}
    assert value(got, "gateway_time_to_first_token_seconds_count", model="sonnet") == 1.0
    assert value(got, "gateway_time_to_first_token_seconds_count", model="opus") == 1.0
    assert value(got, "gateway_upstream_duration_seconds_count", backend="default") == 5.0
    assert value(got, "gateway_overhead_seconds_count", route="/v1/messages") == 5.0
    assert value(got, "gateway_request_duration_seconds_count", route="/v1/messages", model="sonnet") == 2.0
    assert value(got, "gateway_in_flight", kind="requests") == 1.0  # the scrape itself
    assert value(got, "gateway_in_flight", kind="streams") == 0.0
    text = httpx2.get(gw.url + "/metrics", headers={"x-api-key": ADMIN}).text
    for raw in ("raw-model-xyz", "gpt-unknown-name", "claude-sonnet-5", "trace-metrics-1", "no/such", "req_", CLIENT):
        assert raw not in text
