"""GET /v1/usage (admin): request, token and cost totals from the ledger over [start, end).

    GET /v1/usage?start=2026-11-24&end=2026-12-01T12:00:00Z&group_by=model

``start`` and ``end`` take an ISO 8601 date (midnight UTC), an ISO 8601 date and time (UTC when it
names no offset) or Unix seconds; ``end`` defaults to now, ``start`` to seven days before ``end``.
``group_by`` is ``model`` (as clients asked), ``key`` (key label), ``day`` (UTC), ``backend`` or
``status``; without it, one total. A parameter that does not parse is a 400 naming it.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from anthropic_gateway.errors import APIError, InvalidRequestError, shown
from anthropic_gateway.http.body import JSONResponse
from anthropic_gateway.http.gateway import require_admin
from anthropic_gateway.ops.ledger import GROUPS

DEFAULT_SPAN = 7 * 86400
MAX_TIME = 253402300799  # 9999-12-31T23:59:59Z
_NUMBER = re.compile(r"^-?\d{1,12}(\.\d{1,9})?$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_HINT = "an ISO 8601 date (2026-12-01), date and time (2026-12-01T09:30:00Z) or Unix seconds"


def parse_time(field: str, value: str) -> float:
    """Unix seconds from an ISO 8601 date, date and time, or a number of seconds."""
    text = value.strip()
    if _NUMBER.match(text):
        ts = float(text)
        if not 0 <= ts <= MAX_TIME:
            raise InvalidRequestError(f"{field}: Unix seconds must be between 0 and {MAX_TIME}; got {shown(value, 40)}")
        return ts
    try:
        if _DATE.match(text):
            parsed = datetime.strptime(text, "%Y-%m-%d")
        elif "T" in text or " " in text:
            parsed = datetime.fromisoformat(text)
        else:
            raise ValueError(text)
    except ValueError:
        raise InvalidRequestError(f"{field}: expected {_HINT}; got '{shown(value, 60)}'") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return min(max(parsed.timestamp(), 0.0), float(MAX_TIME))


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def query(params: dict[str, str], now: float) -> tuple[float, float, str | None]:
    end = parse_time("end", params["end"]) if params.get("end") else now
    start = parse_time("start", params["start"]) if params.get("start") else end - DEFAULT_SPAN
    if start >= end:
        raise InvalidRequestError(f"start: must be before end ({iso(start)} is not before {iso(end)})")
    group_by = params.get("group_by") or None
    if group_by is not None and group_by not in GROUPS:
        raise InvalidRequestError(f"group_by: expected one of {', '.join(GROUPS)}; got '{shown(group_by, 40)}'")
    return start, end, group_by


def total_of(rows: list[dict[str, Any]]) -> dict[str, Any]:
    total: dict[str, Any] = {"requests": 0, "errors": 0, "input_tokens": 0, "output_tokens": 0,
                             "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0, "cost_usd": 0.0}  # fmt: skip
    weighted = 0.0
    for row in rows:
        for name in total:
            total[name] += row[name]
        weighted += row["mean_latency_ms"] * row["requests"]
    total["cost_usd"] = round(total["cost_usd"], 6)
    total["mean_latency_ms"] = round(weighted / total["requests"], 1) if total["requests"] else 0.0
    return total


async def usage(request: Request) -> Response:
    gw = require_admin(request)
    start, end, group_by = query(dict(request.query_params), time.time())
    try:
        rows = await gw.ledger.totals(start, end, group_by)
    except Exception as err:  # the store is down or was never opened
        raise APIError(f"The ledger cannot be read now ({type(err).__name__}); retry later", status=503) from None
    return JSONResponse({"start": iso(start), "end": iso(end), "group_by": group_by, "data": rows,
                         "total": total_of(rows)})  # fmt: skip
