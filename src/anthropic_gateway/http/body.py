"""Reading a request body under a size limit, and the JSON response type."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response

from anthropic_gateway.errors import InvalidRequestError, RequestTooLargeError


class ClientDisconnected(Exception):
    """The client went away before its request was read or answered: nobody to answer."""


_CONTENT_TYPE = (b"content-type", b"application/json")


class JSONResponse(Response):
    media_type = "application/json"

    def __init__(self, content: Any = None, status_code: int = 200, headers: Mapping[str, str] | None = None,
                 media_type: str | None = None, background: BackgroundTask | None = None) -> None:  # fmt: skip
        if media_type is not None or background is not None or status_code < 200 or status_code in (204, 304):
            super().__init__(content, status_code, headers, media_type, background)
            return
        # Starlette's __init__ and init_headers, written out for the usual case (every answer and
        # error): the given headers, then content-length and content-type unless given.
        self.status_code = status_code
        self.background = None
        self.body = body = self.render(content)
        if headers is None:
            self.raw_headers = [(b"content-length", b"%d" % len(body)), _CONTENT_TYPE]
            return
        raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
        keys = [k for k, _ in raw]
        if b"content-length" not in keys:
            raw.append((b"content-length", b"%d" % len(body)))
        if b"content-type" not in keys:
            raw.append(_CONTENT_TYPE)
        self.raw_headers = raw

    def render(self, content: Any) -> bytes:
        return content if isinstance(content, bytes) else orjson.dumps(content)


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refusing one over `limit` before reading it all. A client that disconnects while
    sending it raises ClientDisconnected (an ordinary event, not an error)."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise RequestTooLargeError(f"Request body is {length} bytes; the limit is {limit} bytes")
    receive = request.receive
    message = await receive()
    if message["type"] == "http.disconnect":
        raise ClientDisconnected
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):  # the usual case: the server hands over the whole body in one message
        exchange = request.scope.get("state", {}).get("exchange")  # _watch, written out
        if exchange is not None:
            exchange.watch()
        return body
    parts = [body]
    size = len(body)
    while message.get("more_body", False):
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected
        part = message.get("body", b"")
        size += len(part)
        if size > limit:
            raise RequestTooLargeError(f"Request body exceeds the limit of {limit} bytes")
        parts.append(part)
    _watch(request)
    return b"".join(parts)


def _watch(request: Request) -> None:
    """From here on the request is read: its exchange watches for the client going away."""
    exchange = request.scope.get("state", {}).get("exchange")
    if exchange is not None:
        exchange.watch()


def page_limit(query: Mapping[str, str]) -> int:
    """The `limit` of a paginated list route (Anthropic's: 1 to 1000, default 20), or a 400 naming it."""
    try:
        limit = int(query.get("limit", "20"))
    except ValueError:
        raise InvalidRequestError("limit: Input should be a valid integer") from None
    if not 1 <= limit <= 1000:
        raise InvalidRequestError("limit: Input should be between 1 and 1000")
    return limit
