"""JSONResponse's own __init__ (the usual case written out) against Starlette's, header for header."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from starlette.background import BackgroundTask
from starlette.responses import Response

from anthropic_gateway.http.body import JSONResponse


class _Starlette(Response):
    """Starlette's own __init__ and init_headers, with JSONResponse's media type and render."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return content if isinstance(content, bytes) else orjson.dumps(content)


CASES = [
    ({"type": "message", "id": "msg_1"}, 200, None),
    ({"input_tokens": 12}, 200, {}),
    ({"a": 1}, 200, {"Anthropic-Gateway-Estimated-Input-Cost-USD": "0.000100", "x-cache": "hit"}),
    (b'{"raw":true}', 201, {"content-type": "application/vnd.custom+json"}),
    ({"error": 1}, 529, {"Content-Length": "11", "retry-after": "3"}),
    (None, 204, None),
    ({"a": 1}, 304, {"etag": "x"}),
    ({"a": 1}, 101, None),
]


@pytest.mark.parametrize(("content", "status", "headers"), CASES)
def test_the_same_response_as_starlettes_init(content: Any, status: int, headers: dict[str, str] | None) -> None:
    ours, theirs = JSONResponse(content, status, headers), _Starlette(content, status, headers)
    assert ours.raw_headers == theirs.raw_headers
    assert (ours.body, ours.status_code, ours.background) == (theirs.body, theirs.status_code, None)


def test_a_body_without_headers_gets_its_length_and_type_in_starlettes_order() -> None:
    assert JSONResponse({"a": 1}).raw_headers == [(b"content-length", b"7"), (b"content-type", b"application/json")]


def test_a_media_type_or_background_goes_through_starlettes_init() -> None:
    task = BackgroundTask(lambda: None)
    ours = JSONResponse({"a": 1}, 200, {"x": "1"}, media_type="text/plain", background=task)
    assert ours.raw_headers == [(b"x", b"1"), (b"content-length", b"7"), (b"content-type", b"text/plain; charset=utf-8")]
    assert ours.background is task
