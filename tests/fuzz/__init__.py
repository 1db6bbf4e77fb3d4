"""Fuzzing the real gateway process over HTTP: hypothesis over the request schema and over mutations
of real Claude Code bodies (test_requests.py), schemathesis over /openapi.json for every operation
(test_openapi_fuzz.py). The properties: no 5xx, no traceback (in a response or the log), and every 4xx
an Anthropic error envelope; streamed answers are well-formed SSE with no internal error event.

Example counts are bounded for CI (about a minute for the whole folder); a longer run multiplies them:

    GATEWAY_FUZZ_SCALE=50 .venv/bin/pytest tests/fuzz -q      # ~50x the examples
"""

from __future__ import annotations

import json
import os
from typing import Any

import httpx2

SCALE = float(os.environ.get("GATEWAY_FUZZ_SCALE", "1"))


def examples(n: int) -> int:
    """`n` examples in CI, scaled by GATEWAY_FUZZ_SCALE for a long run."""
    return max(1, int(n * SCALE))


def check_response(status: int, headers: Any, content: bytes, what: str) -> None:
    """The properties every answer must have, whatever was sent."""
    shown = content[:600]
    assert status < 500, f"{what}: {status} {shown!r}"
    assert b"Traceback" not in content, f"{what}: traceback in the response"
    ctype = headers.get("content-type", "")
    if status >= 400:
        body = json.loads(content)
        assert body.get("type") == "error", f"{what}: {status} is not an error envelope: {shown!r}"
        err = body.get("error")
        assert isinstance(err, dict) and isinstance(err.get("type"), str) and isinstance(err.get("message"), str), shown
        assert body.get("request_id") == headers.get("request-id"), shown
    elif ctype.startswith("text/event-stream"):
        text = content.decode("utf-8")
        for frame in text.split("\n\n"):
            lines = [line for line in frame.split("\n") if line and not line.startswith(":")]
            if not lines:
                continue
            assert lines[0].startswith("event: ") and lines[1].startswith("data: "), f"{what}: bad frame {frame!r}"
            if lines[0] == "event: error":
                assert "Internal gateway error" not in lines[1], f"{what}: {lines[1]}"


def check(resp: httpx2.Response, what: str) -> None:
    check_response(resp.status_code, resp.headers, resp.content, what)


def check_log(log: str) -> None:
    assert "Traceback" not in log, log[log.index("Traceback") - 2000:][:6000]
    errors = [line for line in log.splitlines() if " ERROR " in line]
    assert errors == [], errors[:5]
