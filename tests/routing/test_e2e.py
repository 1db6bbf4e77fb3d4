"""End to end: real gateway processes configured with several backends through
ANTHROPIC_GATEWAY_BACKENDS / ANTHROPIC_GATEWAY_MODELS JSON, two scripted fake upstreams on loopback
(``upstream`` is backends "alpha" and "default", ``upstream_b`` is backend "beta"), a server that
holds back its headers ("slow") and a closed port ("dead"). The official SDK is the client.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import pytest

from anthropic_gateway.schemas import decode_messages_request
from anthropic_gateway.tokens import count_request_tokens
from e2e import error_of, parse_sse, post_raw, stream_raw
from fake_upstream import (
    FakeUpstream,
    JsonReply,
    RecordedRequest,
    Reply,
    error_body,
    finish_chunk,
    text_chunk,
    usage_chunk,
)
from routing.conftest import ALPHA_KEY, BETA_KEY, DEFAULT_KEY, FIRST_BYTE_TIMEOUT, Gateways, SlowServer
from routing.helpers import claude_code_body, haiku_body
from routing.test_policy import (
    CLIENT_EXTRAS,
    IMAGE_MSG,
    OPENAI_ONES,
    OPENROUTER_ONLY,
    PDF_MSG,
    TOOL,
    violations,
)

HI: Any = [{"role": "user", "content": "Hi"}]
OK = Reply.auto([text_chunk("ok"), finish_chunk("stop"), usage_chunk(5, 1)])


def ok_text(text: str = "ok") -> Any:
    return Reply.auto([text_chunk(text), finish_chunk("stop"), usage_chunk(5, 1)])


def failing(status: int, headers: dict[str, str] | None = None) -> JsonReply:
    return Reply.json(error_body(status, f"upstream says {status}"), status, headers)


class Clock:
    """Records when each scripted reply was requested (the fake runs in this process)."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self._lock = threading.Lock()

    def reply(self, inner: Any) -> Any:
        def fn(_: RecordedRequest) -> Any:
            with self._lock:
                self.times.append(time.monotonic())
            return inner

        return Reply.dynamic(fn)


@pytest.fixture
def gws(routed_gateways: Gateways, upstream: FakeUpstream, upstream_b: FakeUpstream,
        slow_server: SlowServer) -> Gateways:  # fmt: skip
    return routed_gateways


@pytest.fixture
def client(gws: Gateways) -> Iterator[anthropic.Anthropic]:
    with gws.no_retry.client() as c:
        yield c


@pytest.fixture
def retry_client(gws: Gateways) -> Iterator[anthropic.Anthropic]:
    with gws.retry.client() as c:
        yield c


def send(c: anthropic.Anthropic, model: str, stream: bool = False, **kw: Any) -> tuple[str, str]:
    """(the model echoed, the text) of one request, streamed or not."""
    kw.setdefault("messages", HI)
    kw.setdefault("max_tokens", 100)
    if stream:
        status, _, raw = stream_raw(c, model=model, **kw)
        assert status == 200
        events = parse_sse(raw)
        start = next(e.data for e in events if e.event == "message_start")
        text = "".join(e.data["delta"].get("text", "") for e in events if e.event == "content_block_delta")
        assert events[-1].event == "message_stop", [e.event for e in events]
        return start["message"]["model"], text
    msg = c.messages.create(model=model, **kw)
    return msg.model, "".join(b.text for b in msg.content if b.type == "text")


# --- alias → backend -------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(
    ("model", "fake", "upstream_model", "key"),
    [
        ("fast", "a", "vendor/fast-model", ALPHA_KEY),
        ("smart", "b", "gpt-4o", BETA_KEY),
        ("claude-3-5-haiku-20241022", "a", "vendor/small-model", ALPHA_KEY),  # glob
        ("claude-haiku-4-5-20251001", "a", "vendor/small-model", ALPHA_KEY),  # glob
        ("claude-opus-4-8", "a", "tier/opus", DEFAULT_KEY),  # tier → default backend
        ("claude-sonnet-5", "a", "tier/sonnet", DEFAULT_KEY),
        ("some-vendor/some-model", "a", "some-vendor/some-model", DEFAULT_KEY),  # '/' → default backend
    ],
)
def test_alias_chooses_the_backend_and_echoes_the_clients_name(
    client: anthropic.Anthropic, upstream: FakeUpstream, upstream_b: FakeUpstream,
    model: str, fake: str, upstream_model: str, key: str, stream: bool,
) -> None:  # fmt: skip
    target, other = (upstream, upstream_b) if fake == "a" else (upstream_b, upstream)
    target.expect(ok_text("from " + fake))
    echoed, text = send(client, model, stream)
    assert (echoed, text) == (model, "from " + fake)
    assert len(target.requests) == 1 and other.requests == []
    req = target.requests[0]
    assert req.path == "/v1/chat/completions"
    assert req.body["model"] == upstream_model
    assert req.headers["authorization"] == f"Bearer {key}"


def test_backend_kind_and_headers_follow_the_backend(client: anthropic.Anthropic, upstream: FakeUpstream,
                                                     upstream_b: FakeUpstream) -> None:  # fmt: skip
    upstream.expect(OK)
    upstream_b.expect(OK)
    send(client, "fast", max_tokens=77)
    send(client, "smart", max_tokens=77)
    alpha, beta = upstream.requests[0], upstream_b.requests[0]
    assert alpha.headers["x-openrouter-title"] == "routing-tests"  # the backend's extra header
    assert alpha.body["max_tokens"] == 77 and "max_completion_tokens" not in alpha.body  # openrouter kind
    assert beta.body["max_completion_tokens"] == 77 and "max_tokens" not in beta.body  # openai kind
    assert "x-openrouter-title" not in beta.headers


def test_unknown_model_is_a_404_naming_the_aliases(client: anthropic.Anthropic, upstream: FakeUpstream,
                                                   upstream_b: FakeUpstream) -> None:  # fmt: skip
    with pytest.raises(anthropic.NotFoundError) as info:
        client.messages.create(model="gpt-99", max_tokens=10, messages=HI)
    err = error_of(info.value)
    assert err["type"] == "not_found_error"
    assert "gpt-99" in err["message"] and "'fast'" in err["message"] and "'claude-*haiku*'" in err["message"]
    assert upstream.requests == [] and upstream_b.requests == []


# --- parameters per backend kind ---------------------------------------------------------------------


def test_openrouter_backend_gets_the_openrouter_extensions(client: anthropic.Anthropic, upstream: FakeUpstream) -> None:
    upstream.expect(OK)
    msg = client.messages.create(model="fast", max_tokens=100, messages=HI, extra_body=CLIENT_EXTRAS)
    assert msg.model == "fast"
    body = upstream.last_body
    expected = {k: v for k, v in CLIENT_EXTRAS.items() if k != "transforms"}
    assert {k: body.get(k) for k in expected} == expected
    assert body["plugins"] == [{"id": "context-compression"}] and "transforms" not in body


def test_openai_backend_gets_only_the_openai_parameters(client: anthropic.Anthropic, upstream_b: FakeUpstream) -> None:
    upstream_b.expect(OK)
    client.messages.create(model="smart", max_tokens=100, messages=HI, extra_body={**CLIENT_EXTRAS, "top_k": 5})
    body = upstream_b.last_body
    assert {k: body.get(k) for k in OPENAI_ONES} == {k: CLIENT_EXTRAS[k] for k in OPENAI_ONES}
    assert OPENROUTER_ONLY & set(body) == set() and "top_k" not in body


@pytest.mark.parametrize(
    ("extra", "field"),
    [({"min_p": 3}, "min_p"), ({"frequency_penalty": -2.5}, "frequency_penalty"),
     ({"repetition_penalty": 0}, "repetition_penalty"), ({"provider": {"sort": "fastest"}}, "provider"),
     ({"provider": {"ordering": ["x"]}}, "provider")],
)  # fmt: skip
def test_bad_parameters_are_a_400_naming_the_field(client: anthropic.Anthropic, upstream: FakeUpstream,
                                                   extra: dict[str, Any], field: str) -> None:  # fmt: skip
    with pytest.raises(anthropic.BadRequestError) as info:
        client.messages.create(model="fast", max_tokens=100, messages=HI, extra_body=extra)
    err = error_of(info.value)
    assert err["type"] == "invalid_request_error" and err["message"].startswith(field), err
    if field == "provider" and "ordering" in extra["provider"]:
        assert "ordering" in err["message"]
    assert upstream.requests == []


def test_model_defaults_client_values_and_forced_values(client: anthropic.Anthropic, upstream: FakeUpstream) -> None:
    upstream.expect(OK, OK)
    client.messages.create(model="tuned", max_tokens=100, messages=HI)
    client.messages.create(model="tuned", max_tokens=100, messages=HI, extra_body={
        "temperature": 0.8, "seed": 5, "frequency_penalty": 1.9, "provider": {"order": ["mine"]}})
    first, second = upstream.bodies
    keys = ("temperature", "seed", "top_p", "frequency_penalty", "provider")
    assert {k: first.get(k) for k in keys} == {"temperature": 0.3, "seed": 7, "top_p": 0.9,
                                               "frequency_penalty": 0.5, "provider": {"order": ["forced-provider"]}}
    assert {k: second.get(k) for k in keys} == {"temperature": 0.8, "seed": 5, "top_p": 0.9,
                                                "frequency_penalty": 0.5, "provider": {"order": ["forced-provider"]}}


# --- clamping and capabilities ----------------------------------------------------------------------


def test_claude_code_haiku_request_is_clamped(gws: Gateways, upstream: FakeUpstream) -> None:
    upstream.expect(OK)
    resp = post_raw(gws.no_retry.url, "/v1/messages", haiku_body())
    assert resp.status_code == 200, resp.text
    assert resp.json()["model"] == "claude-haiku-4-5-20251001"
    body = upstream.last_body
    assert body["model"] == "vendor/small-model"
    assert body["max_tokens"] == 8192
    assert body["reasoning"] == {"max_tokens": 8191}


def test_haiku_shaped_request_to_a_1500_token_model_keeps_a_1499_budget(gws: Gateways, upstream: FakeUpstream) -> None:
    upstream.expect(OK)
    resp = post_raw(gws.no_retry.url, "/v1/messages", {**haiku_body(), "model": "tiny"})
    assert resp.status_code == 200, resp.text
    body = upstream.last_body
    assert body["max_tokens"] == 1500
    assert body["reasoning"] == {"max_tokens": 1499}


def test_context_window_clamp_uses_the_gateways_input_estimate(gws: Gateways, upstream: FakeUpstream) -> None:
    request = {"model": "ctx", "max_tokens": 32000, "messages": [{"role": "user", "content": "word " * 20000}]}
    estimate = count_request_tokens(decode_messages_request(json.dumps(request).encode()), "vendor/ctx-model")
    assert 15000 < estimate < 29000, estimate  # the window (30000) leaves less than max_tokens
    upstream.expect(OK)
    resp = post_raw(gws.no_retry.url, "/v1/messages", request)
    assert resp.status_code == 200, resp.text
    assert upstream.last_body["max_tokens"] == 30000 - estimate


@pytest.mark.parametrize(
    ("fields", "word"),
    [({"tools": [TOOL]}, "tool"), ({"messages": IMAGE_MSG}, "image"), ({"messages": PDF_MSG}, "PDF")],
    ids=["tools", "vision", "pdf"],
)
def test_capability_refusal_is_a_400_naming_the_model(
    gws: Gateways, upstream: FakeUpstream, upstream_b: FakeUpstream, fields: dict[str, Any], word: str
) -> None:
    body = {"model": "text-only", "max_tokens": 100, "messages": HI, **fields}
    resp = post_raw(gws.no_retry.url, "/v1/messages", body)
    assert resp.status_code == 400, resp.text
    err = resp.json()["error"]
    assert err["type"] == "invalid_request_error"
    assert "text-only" in err["message"] and word in err["message"]
    assert upstream.requests == [] and upstream_b.requests == []


def test_gemini_alias_gets_cleaned_tool_schemas(gws: Gateways, upstream: FakeUpstream) -> None:
    upstream.expect(OK)
    body = {**claude_code_body(), "model": "gem", "stream": False}
    resp = post_raw(gws.no_retry.url, "/v1/messages", body)
    assert resp.status_code == 200, resp.text
    sent = upstream.last_body
    assert sent["model"] == "google/gemini-2.5-flash"
    assert len(sent["tools"]) == 24
    assert [v for t in sent["tools"] for v in violations(t["function"]["parameters"], t["function"]["name"])] == []


# --- fallbacks ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_429_falls_back_to_the_next_backend(client: anthropic.Anthropic, upstream: FakeUpstream,
                                            upstream_b: FakeUpstream, stream: bool) -> None:  # fmt: skip
    upstream.expect(failing(429, {"Retry-After": "1"}))
    upstream_b.expect(ok_text("from b"))
    assert send(client, "busy", stream) == ("busy", "from b")
    assert (len(upstream.requests), len(upstream_b.requests)) == (1, 1)
    assert upstream.requests[0].body["model"] == "vendor/busy-model"
    assert upstream_b.requests[0].body["model"] == "gpt-4o"


def test_429_retry_after_is_honoured_before_the_retry_then_falls_back(
    retry_client: anthropic.Anthropic, upstream: FakeUpstream, upstream_b: FakeUpstream
) -> None:
    clock = Clock()
    upstream.expect(clock.reply(failing(429, {"Retry-After": "1"})), clock.reply(failing(429, {"Retry-After": "1"})))
    upstream_b.expect(ok_text("from b"))
    assert send(retry_client, "busy") == ("busy", "from b")
    assert (len(upstream.requests), len(upstream_b.requests)) == (2, 1)
    gap = clock.times[1] - clock.times[0]
    assert 0.95 <= gap < 1.6, gap


@pytest.mark.parametrize("stream", [False, True])
def test_503_falls_back_to_the_next_backend(client: anthropic.Anthropic, upstream: FakeUpstream,
                                            upstream_b: FakeUpstream, stream: bool) -> None:  # fmt: skip
    upstream.expect(failing(503))
    upstream_b.expect(ok_text("from b"))
    assert send(client, "busy", stream) == ("busy", "from b")
    assert (len(upstream.requests), len(upstream_b.requests)) == (1, 1)


def test_503_retried_once_with_backoff_then_falls_back(retry_client: anthropic.Anthropic, upstream: FakeUpstream,
                                                       upstream_b: FakeUpstream) -> None:  # fmt: skip
    clock = Clock()
    upstream.expect(clock.reply(failing(503)), clock.reply(failing(503)))
    upstream_b.expect(ok_text("from b"))
    assert send(retry_client, "busy") == ("busy", "from b")
    assert (len(upstream.requests), len(upstream_b.requests)) == (2, 1)
    gap = clock.times[1] - clock.times[0]
    assert 0.3 <= gap < 1.2, gap  # jittered backoff, 0.375-0.5 s for the first retry


@pytest.mark.parametrize("stream", [False, True])
def test_connection_refused_falls_back(client: anthropic.Anthropic, upstream: FakeUpstream,
                                       upstream_b: FakeUpstream, stream: bool) -> None:  # fmt: skip
    upstream_b.expect(ok_text("from b"))
    started = time.monotonic()
    assert send(client, "to-dead", stream) == ("to-dead", "from b")
    assert time.monotonic() - started < 2.0
    assert (len(upstream.requests), len(upstream_b.requests)) == (0, 1)


def test_connection_refused_without_fallback_is_an_error(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.APIStatusError) as info:
        client.messages.create(model="dead-alone", max_tokens=10, messages=HI)
    assert info.value.status_code in (502, 503), info.value.status_code
    assert error_of(info.value)["type"] in ("api_error", "overloaded_error")


@pytest.mark.parametrize("stream", [False, True])
def test_timeout_before_the_first_byte_falls_back(client: anthropic.Anthropic, upstream: FakeUpstream,
                                                  upstream_b: FakeUpstream, slow_server: SlowServer,
                                                  stream: bool) -> None:  # fmt: skip
    upstream_b.expect(ok_text("from b"))
    started = time.monotonic()
    assert send(client, "to-slow", stream) == ("to-slow", "from b")
    elapsed = time.monotonic() - started
    assert FIRST_BYTE_TIMEOUT * 0.9 <= elapsed < FIRST_BYTE_TIMEOUT + 1.5, elapsed
    assert (slow_server.count, len(upstream_b.requests), len(upstream.requests)) == (1, 1, 0)


def test_timeout_before_the_first_byte_is_retried(retry_client: anthropic.Anthropic, upstream_b: FakeUpstream,
                                                  slow_server: SlowServer) -> None:  # fmt: skip
    upstream_b.expect(ok_text("from b"))
    assert send(retry_client, "to-slow") == ("to-slow", "from b")
    assert (slow_server.count, len(upstream_b.requests)) == (2, 1)


def test_timeout_without_fallback_is_a_504(client: anthropic.Anthropic, slow_server: SlowServer) -> None:
    started = time.monotonic()
    with pytest.raises(anthropic.APIStatusError) as info:
        client.messages.create(model="slow-alone", max_tokens=10, messages=HI)
    assert time.monotonic() - started < FIRST_BYTE_TIMEOUT + 1.5
    assert info.value.status_code == 504
    assert error_of(info.value)["type"] == "timeout_error"
    assert slow_server.count == 1


def test_fallbacks_are_tried_in_order(client: anthropic.Anthropic, upstream: FakeUpstream,
                                      upstream_b: FakeUpstream) -> None:  # fmt: skip
    # chain (alpha, 503) → to-dead (connection refused) → fast (alpha, 200)
    upstream.expect(failing(503), ok_text("third"))
    assert send(client, "chain") == ("chain", "third")
    assert [r.body["model"] for r in upstream.requests] == ["vendor/chain-model", "vendor/fast-model"]
    assert upstream_b.requests == []


def test_a_fallback_that_cannot_serve_the_request_is_skipped(gws: Gateways, upstream: FakeUpstream,
                                                             upstream_b: FakeUpstream) -> None:  # fmt: skip
    # vision-first (alpha, 503) → text-only (no vision: skipped) → smart (beta)
    upstream.expect(failing(503))
    upstream_b.expect(ok_text("from b"))
    resp = post_raw(gws.no_retry.url, "/v1/messages", {"model": "vision-first", "max_tokens": 50, "messages": IMAGE_MSG})
    assert resp.status_code == 200, resp.text
    assert resp.json()["model"] == "vision-first"
    assert [r.body["model"] for r in upstream_b.requests] == ["gpt-4o"]
    assert len(upstream.requests) == 1


def test_when_every_candidate_fails_the_last_error_is_returned(client: anthropic.Anthropic, upstream: FakeUpstream,
                                                               upstream_b: FakeUpstream) -> None:  # fmt: skip
    upstream.expect(failing(503))
    upstream_b.expect(failing(429, {"Retry-After": "7"}))
    with pytest.raises(anthropic.RateLimitError) as info:
        client.messages.create(model="busy", max_tokens=10, messages=HI)
    assert info.value.response.headers.get("retry-after") == "7"
    assert (len(upstream.requests), len(upstream_b.requests)) == (1, 1)


def test_a_non_retryable_error_is_not_retried_nor_sent_to_a_fallback(
    retry_client: anthropic.Anthropic, upstream: FakeUpstream, upstream_b: FakeUpstream
) -> None:
    upstream.expect(failing(400))
    with pytest.raises(anthropic.BadRequestError):
        retry_client.messages.create(model="busy", max_tokens=10, messages=HI)
    assert (len(upstream.requests), len(upstream_b.requests)) == (1, 0)


# --- retries on one backend and the wait cap ------------------------------------------------------------


def test_retry_on_the_same_backend_succeeds(retry_client: anthropic.Anthropic, upstream: FakeUpstream,
                                            upstream_b: FakeUpstream) -> None:  # fmt: skip
    upstream.expect(failing(503), ok_text("second try"))
    assert send(retry_client, "busy-alone") == ("busy-alone", "second try")
    assert (len(upstream.requests), len(upstream_b.requests)) == (2, 0)


def test_no_retry_setting_means_one_call(client: anthropic.Anthropic, upstream: FakeUpstream) -> None:
    upstream.expect(failing(503), ok_text("never"))
    with pytest.raises(anthropic.APIStatusError) as info:
        client.messages.create(model="busy-alone", max_tokens=10, messages=HI)
    assert info.value.status_code == 503
    assert len(upstream.requests) == 1


def test_retry_after_beyond_the_wait_cap_returns_the_error_at_once(retry_client: anthropic.Anthropic,
                                                                   upstream: FakeUpstream) -> None:  # fmt: skip
    upstream.expect(failing(429, {"Retry-After": "5"}), ok_text("never"))
    started = time.monotonic()
    with pytest.raises(anthropic.RateLimitError) as info:
        retry_client.messages.create(model="busy-alone", max_tokens=10, messages=HI)
    assert time.monotonic() - started < 1.0
    assert info.value.status_code == 429
    assert info.value.response.headers.get("retry-after") == "5"
    assert error_of(info.value)["type"] == "rate_limit_error"
    assert len(upstream.requests) == 1


def test_retry_after_beyond_the_wait_cap_goes_to_the_fallback_at_once(
    retry_client: anthropic.Anthropic, upstream: FakeUpstream, upstream_b: FakeUpstream
) -> None:
    upstream.expect(failing(429, {"Retry-After": "5"}))
    upstream_b.expect(ok_text("from b"))
    started = time.monotonic()
    assert send(retry_client, "busy") == ("busy", "from b")
    assert time.monotonic() - started < 1.0
    assert (len(upstream.requests), len(upstream_b.requests)) == (1, 1)


def test_total_wait_is_capped_across_retries_and_fallbacks(
    retry_client: anthropic.Anthropic, upstream: FakeUpstream, upstream_b: FakeUpstream
) -> None:
    # busy: alpha 429, wait 1 s, 429 → smart: beta 429 asking for 2 s more: 1 + 2 > retry_max_wait (2) → no wait
    upstream.expect(failing(429, {"Retry-After": "1"}), failing(429, {"Retry-After": "1"}))
    upstream_b.expect(failing(429, {"Retry-After": "2"}), ok_text("never"))
    started = time.monotonic()
    with pytest.raises(anthropic.RateLimitError) as info:
        retry_client.messages.create(model="busy", max_tokens=10, messages=HI)
    elapsed = time.monotonic() - started
    assert 0.95 <= elapsed < 1.8, elapsed
    assert info.value.response.headers.get("retry-after") == "2"
    assert (len(upstream.requests), len(upstream_b.requests)) == (2, 1)
