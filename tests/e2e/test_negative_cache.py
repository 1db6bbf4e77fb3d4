"""Remembered upstream refusals (negative_cache.py), through the real gateway process and the SDK."""

from __future__ import annotations

import time

import anthropic
import pytest

from conftest import GATEWAY_ENV, SpawnGateway
from fake_upstream import FakeUpstream, Reply, error_body, finish_chunk, text_chunk, usage_chunk

HELLO = [text_chunk("Hello."), finish_chunk("stop"), usage_chunk(10, 2)]


def ask(client: anthropic.Anthropic, text: str = "Hi", **extra: object) -> anthropic.types.Message:
    return client.messages.create(model="claude-sonnet-5", max_tokens=64,
                                  messages=[{"role": "user", "content": text}], **extra)  # type: ignore[arg-type]  # fmt: skip


def test_an_identical_request_gets_the_remembered_400_without_an_upstream_call(
    spawn_gateway: SpawnGateway, upstream: FakeUpstream
) -> None:
    gw = spawn_gateway({**GATEWAY_ENV, "ANTHROPIC_GATEWAY_NEGATIVE_CACHE_TTL": "60"})
    upstream.always(Reply.json(error_body(400, "Invalid value for temperature"), status=400))
    with gw.client() as client:
        errors = []
        for _ in range(3):
            with pytest.raises(anthropic.BadRequestError) as info:
                ask(client)
            errors.append(info.value)
        assert len(upstream.requests) == 1
        assert [e.status_code for e in errors] == [400, 400, 400]
        assert {e.body["error"]["message"] for e in errors} == {"Upstream error: Invalid value for temperature"}  # type: ignore[index]
        assert {e.body["error"]["type"] for e in errors} == {"invalid_request_error"}  # type: ignore[index]
        # Another body is another request: it goes upstream.
        upstream.always(Reply.auto(HELLO))
        assert ask(client, "Hello there").content[0].text == "Hello."  # type: ignore[union-attr]
        assert len(upstream.requests) == 2
    assert "refused this same request within 60 s" in gw.log_text()


def test_the_memory_expires(spawn_gateway: SpawnGateway, upstream: FakeUpstream) -> None:
    gw = spawn_gateway({**GATEWAY_ENV, "ANTHROPIC_GATEWAY_NEGATIVE_CACHE_TTL": "0.5"})
    upstream.expect(Reply.json(error_body(400, "Bad request"), status=400))
    upstream.always(Reply.auto(HELLO))
    with gw.client() as client:
        with pytest.raises(anthropic.BadRequestError):
            ask(client)
        time.sleep(0.7)
        assert ask(client).content[0].text == "Hello."  # type: ignore[union-attr]
    assert len(upstream.requests) == 2


# (An upstream 401 means the gateway's own key was refused: the client gets a 500 naming the setting.)
@pytest.mark.parametrize(("status", "sdk_error"), [
    (401, anthropic.InternalServerError), (402, anthropic.APIStatusError), (403, anthropic.PermissionDeniedError),
    (429, anthropic.RateLimitError),
])  # fmt: skip
def test_key_account_and_rate_limit_errors_are_not_remembered(
    status: int, sdk_error: type[Exception], spawn_gateway: SpawnGateway, upstream: FakeUpstream
) -> None:
    gw = spawn_gateway({**GATEWAY_ENV, "ANTHROPIC_GATEWAY_NEGATIVE_CACHE_TTL": "60", "ANTHROPIC_GATEWAY_RETRIES": "0"})
    upstream.expect(Reply.json(error_body(status, "no"), status=status))
    upstream.always(Reply.auto(HELLO))
    with gw.client() as client:
        with pytest.raises(sdk_error):
            ask(client)
        assert ask(client).content[0].text == "Hello."  # type: ignore[union-attr]
    assert len(upstream.requests) == 2
