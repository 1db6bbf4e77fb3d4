"""Base64 payloads are validated and forwarded as the raw JSON the client sent, never decoded."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from anthropic_gateway.errors import InvalidRequestError
from anthropic_gateway.schemas import decode_messages_request
from unit.helpers import upstream_body

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40).decode()


def _image(data: Any) -> dict[str, Any]:
    return {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": data}}


def _body(block: dict[str, Any]) -> bytes:
    return json.dumps({"model": "a/b", "max_tokens": 5, "messages": [{"role": "user", "content": [block]}]}).encode()


def _url(block: dict[str, Any]) -> str:
    body, _ = upstream_body(model="a/b", messages=[{"role": "user", "content": [block]}])
    url: str = body["messages"][0]["content"][0]["image_url"]["url"]
    return url


def test_data_url_is_the_client_base64_unchanged() -> None:
    assert _url(_image(PNG)) == "data:image/png;base64," + PNG


def test_json_escaped_slashes_are_accepted_and_sent_unescaped() -> None:
    data = base64.b64encode(bytes(range(250, 256)) * 3).decode()
    assert "/" in data
    raw = _body(_image(data)).replace(data.encode(), data.replace("/", "\\/").encode())
    req = decode_messages_request(raw)
    assert bytes(req.messages[0].content[0].source.base64) == data.encode()  # type: ignore[union-attr]


def test_line_wrapped_base64_is_accepted_and_unwrapped() -> None:
    wrapped = "\n".join(PNG[i:i + 16] for i in range(0, len(PNG), 16))
    assert _url(_image(wrapped)) == "data:image/png;base64," + PNG


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("AAA=AAAA", "is not valid base64"),  # padding in the middle
        ("AAAAA", "is not valid base64"),  # not a multiple of 4
        ("AA!A", "is not valid base64"),
        ("é" * 4, "is not valid base64 (non-ASCII characters)"),
        (12, "Expected `str`"),
        (None, "Expected `str`"),
    ],
)
def test_invalid_base64_is_a_400_naming_the_field(data: Any, message: str) -> None:
    with pytest.raises(InvalidRequestError) as err:
        decode_messages_request(_body(_image(data)))
    assert err.value.message == f"messages.0.content.0.source.data: {message}"


def test_pdf_base64_goes_to_a_file_part_unchanged() -> None:
    pdf = base64.b64encode(b"%PDF-1.4\n").decode()
    block = {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": pdf}}
    body, _ = upstream_body(model="a/b", messages=[{"role": "user", "content": [block]}])
    part = body["messages"][0]["content"][0]
    assert part == {"type": "file", "file": {"filename": "document.pdf", "file_data": "data:application/pdf;base64," + pdf}}
