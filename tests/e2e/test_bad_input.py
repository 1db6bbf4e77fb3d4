"""Malformed requests: 400 ``invalid_request_error`` naming the field, never reaching the upstream."""

from __future__ import annotations

import re
from typing import Any

import anthropic
import pytest

from conftest import GatewayProcess
from e2e import MODEL, post_raw
from fake_upstream import FakeUpstream, Reply, finish_chunk, text_chunk

GOOD: dict[str, Any] = {"model": MODEL, "max_tokens": 10, "messages": [{"role": "user", "content": "Hi"}]}
PNG_1PX = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="


def without(key: str) -> dict[str, Any]:
    return {k: v for k, v in GOOD.items() if k != key}


def image_message(data: str) -> list[dict[str, Any]]:
    return [
        {
            "role": "user",
            "content": [
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": data}},
                {"type": "text", "text": "What is this?"},
            ],
        }
    ]


def normalise_path(message: str) -> str:
    """``messages[0].content[1]`` and ``messages.0.content.1`` both read ``messages.0.content.1``."""
    return re.sub(r"\[(\d+)\]", r".\1", message)


CASES: dict[str, tuple[bytes | dict[str, Any], str]] = {
    "missing-model": (without("model"), "model"),
    "missing-messages": (without("messages"), "messages"),
    "missing-max_tokens": (without("max_tokens"), "max_tokens"),
    "max_tokens-string": ({**GOOD, "max_tokens": "many"}, "max_tokens"),
    "model-number": ({**GOOD, "model": 7}, "model"),
    "messages-string": ({**GOOD, "messages": "hi"}, "messages"),
    "messages-empty": ({**GOOD, "messages": []}, "messages"),
    "role-invalid": ({**GOOD, "messages": [{"role": "robot", "content": "hi"}]}, "messages.0.role"),
    "content-missing": ({**GOOD, "messages": [{"role": "user"}]}, "messages.0.content"),
    "text-block-without-text": (
        {**GOOD, "messages": [{"role": "user", "content": [{"type": "text"}]}]},
        "messages.0.content.0",
    ),
    "stream-not-bool": ({**GOOD, "stream": "yes please"}, "stream"),
    "invalid-base64-image": (
        {**GOOD, "messages": image_message("this is *not* base64!!")},
        "messages.0.content.0",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_400_naming_the_field(
    gateway: GatewayProcess, upstream: FakeUpstream, case: str
) -> None:
    body, field = CASES[case]
    resp = post_raw(gateway.url, "/v1/messages", body)
    assert resp.status_code == 400, resp.text
    payload = resp.json()
    assert payload["type"] == "error"
    assert payload["error"]["type"] == "invalid_request_error"
    assert field in normalise_path(payload["error"]["message"]), payload["error"]["message"]
    assert payload["request_id"] == resp.headers["request-id"]
    assert "Traceback" not in resp.text
    assert upstream.requests == []


@pytest.mark.parametrize("raw", [b"{not json", b"", b"[1, 2]", b'"just a string"', b"\xff\xfe"])
def test_body_that_is_not_a_json_object_is_400(
    gateway: GatewayProcess, upstream: FakeUpstream, raw: bytes
) -> None:
    resp = post_raw(gateway.url, "/v1/messages", raw)
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["type"] == "invalid_request_error"
    assert resp.headers.get("request-id")
    assert upstream.requests == []


def test_sdk_sees_bad_request_error(client: anthropic.Anthropic, upstream: FakeUpstream) -> None:
    with pytest.raises(anthropic.BadRequestError) as info:
        client.messages.create(model=MODEL, max_tokens=10, messages=[])
    assert info.value.status_code == 400
    assert info.value.type == "invalid_request_error"
    assert info.value.api_message is not None and "messages" in info.value.api_message
    assert info.value.request_id is not None
    assert upstream.requests == []


def test_valid_base64_image_is_sent_as_data_url(gateway: GatewayProcess, upstream: FakeUpstream) -> None:
    upstream.expect(Reply.auto([text_chunk("A pixel."), finish_chunk("stop")]))
    resp = post_raw(gateway.url, "/v1/messages", {**GOOD, "messages": image_message(PNG_1PX)})
    assert resp.status_code == 200, resp.text
    [user] = upstream.last_body["messages"]
    assert user["role"] == "user"
    assert user["content"] == [
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_1PX}"}},
        {"type": "text", "text": "What is this?"},
    ]


def test_body_over_32mb_is_413(gateway: GatewayProcess, upstream: FakeUpstream) -> None:
    big = b'{"model": "x", "max_tokens": 1, "messages": [{"role": "user", "content": "' + b"a" * (
        33 * 1024 * 1024
    )
    big += b'"}]}'
    resp = post_raw(gateway.url, "/v1/messages", big, timeout=60)
    assert resp.status_code == 413
    payload = resp.json()
    assert payload["error"]["type"] == "request_too_large"
    assert upstream.requests == []


def test_unknown_fields_and_blocks_are_accepted(gateway: GatewayProcess, upstream: FakeUpstream) -> None:
    """Unknown top-level fields and unknown history blocks are accepted, not rejected."""
    upstream.expect(Reply.auto([text_chunk("ok"), finish_chunk("stop")]))
    body = {
        **GOOD,
        "a_field_from_2030": {"nested": True},
        "messages": [
            {"role": "user", "content": "Hi"},
            {
                "role": "assistant",
                "content": [
                    {"type": "hologram_2030", "payload": "?"},
                    {"type": "text", "text": "Hello"},
                ],
            },
            {"role": "user", "content": "Again"},
        ],
    }
    resp = post_raw(gateway.url, "/v1/messages", body)
    assert resp.status_code == 200, resp.text
    sent = upstream.last_body
    assert "a_field_from_2030" not in sent
    assert [m["role"] for m in sent["messages"]] == ["user", "assistant", "user"]
    assert "hologram" not in str(sent["messages"])
