"""The gateway's errors, each carrying its HTTP status and Anthropic ``error.type``.

    GatewayError
     ├── InvalidRequestError      400 invalid_request_error
     ├── AuthenticationError      401 authentication_error
     ├── BillingError             402 billing_error
     ├── PermissionDeniedError    403 permission_error
     ├── NotFoundError            404 not_found_error
     ├── RequestTooLargeError     413 request_too_large
     ├── RateLimitError           429 rate_limit_error
     ├── APIError                 500 api_error  (status may be 502/503 for upstream failures)
     ├── GatewayTimeoutError      504 timeout_error
     └── OverloadedError          529 overloaded_error

Everything the client sees as an error goes through :func:`render_error` (JSON body) or
:func:`sse_error_frame` (an ``event: error`` frame once a stream has started).
"""

from __future__ import annotations

from typing import ClassVar

import orjson


class GatewayError(Exception):
    status: ClassVar[int] = 500
    error_type: ClassVar[str] = "api_error"
    details: dict[str, object] | None = None  # `error.details` (its `error_code` picks the SDK's error class)

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.http_status = status if status is not None else self.status
        self.headers = headers or {}


class InvalidRequestError(GatewayError):
    status = 400
    error_type = "invalid_request_error"


class AuthenticationError(GatewayError):
    status = 401
    error_type = "authentication_error"


class BillingError(GatewayError):
    status = 402
    error_type = "billing_error"


class PermissionDeniedError(GatewayError):
    status = 403
    error_type = "permission_error"


class NotFoundError(GatewayError):
    status = 404
    error_type = "not_found_error"


class RequestTooLargeError(GatewayError):
    status = 413
    error_type = "request_too_large"


class RateLimitError(GatewayError):
    status = 429
    error_type = "rate_limit_error"


class APIError(GatewayError):
    status = 500
    error_type = "api_error"


class GatewayTimeoutError(GatewayError):
    status = 504
    error_type = "timeout_error"


class OverloadedError(GatewayError):
    status = 529
    error_type = "overloaded_error"


# Messages quote client input (a model name, a path, a field value) and upstream text: a client that
# sends 10 MB must not get 10 MB back. shown() cuts one echoed value; the cap bounds the whole message.
SHOWN_CHARS = 200
MAX_MESSAGE_CHARS = 4000


def shown(value: str, limit: int = SHOWN_CHARS) -> str:
    """A client-supplied value as an error message quotes it: at most `limit` characters."""
    if len(value) <= limit:
        return value
    return f"{value[:limit]}... ({len(value)} characters)"


def _bounded(message: str) -> str:
    if len(message) <= MAX_MESSAGE_CHARS:
        return message
    return f"{message[:MAX_MESSAGE_CHARS]}... (message cut at {MAX_MESSAGE_CHARS} of {len(message)} characters)"


def error_body(
    error_type: str, message: str, request_id: str | None = None, details: dict[str, object] | None = None
) -> dict[str, object]:
    error: dict[str, object] = {"type": error_type, "message": _bounded(message)}
    if details is not None:
        error["details"] = details
    body: dict[str, object] = {"type": "error", "error": error}
    if request_id is not None:
        body["request_id"] = request_id
    return body


def render_error(err: GatewayError, request_id: str | None) -> bytes:
    return orjson.dumps(error_body(err.error_type, err.message, request_id, err.details))


def sse_error_frame(err: GatewayError) -> bytes:
    return b"event: error\ndata: " + orjson.dumps(error_body(err.error_type, err.message)) + b"\n\n"
