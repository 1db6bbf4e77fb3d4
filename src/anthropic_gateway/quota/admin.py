"""Admin routes for the stored gateway keys: list, create (the key is shown once), set, revoke."""

from __future__ import annotations

import re
from typing import Any

import orjson
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response

from anthropic_gateway.errors import InvalidRequestError, NotFoundError
from anthropic_gateway.http.body import JSONResponse, read_body
from anthropic_gateway.http.gateway import require_admin
from anthropic_gateway.quota.keys import KeyError_
from anthropic_gateway.quota.policy import KeyLimits

LABEL = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
MAX_BODY = 64 * 1024


def check_label(label: Any) -> str:
    if not isinstance(label, str) or not LABEL.match(label):
        raise InvalidRequestError("label: 1 to 64 letters, digits, '.', '_' or '-'")
    return label


def parse_limits(data: Any) -> KeyLimits:
    if not isinstance(data, dict):
        raise InvalidRequestError("body: Input should be a JSON object")
    try:
        return KeyLimits.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise InvalidRequestError(f"{where}: {first['msg']}") from None


async def _json(request: Request) -> Any:
    try:
        return orjson.loads(await read_body(request, MAX_BODY) or b"{}")
    except orjson.JSONDecodeError:
        raise InvalidRequestError("body: not valid JSON") from None


async def list_keys(request: Request) -> Response:
    gw = require_admin(request)
    return JSONResponse({"data": [k.public() for k in await gw.keys.list()]})


async def create_key(request: Request) -> Response:
    gw = require_admin(request)
    data = await _json(request)
    label = check_label(data.pop("label", None) if isinstance(data, dict) else None)
    limits = parse_limits(data)
    try:
        key = await gw.keys.create(label, limits)
    except KeyError_ as err:
        raise InvalidRequestError(str(err)) from None
    stored = await gw.keys.get(label)
    assert stored is not None
    return JSONResponse({**stored.public(), "key": key}, status_code=201)


async def set_key(request: Request) -> Response:
    gw = require_admin(request)
    label = check_label(request.path_params["label"])
    limits = parse_limits(await _json(request))
    try:
        await gw.keys.update(label, limits)
    except KeyError_ as err:
        raise NotFoundError(str(err)) from None
    stored = await gw.keys.get(label)
    assert stored is not None
    return JSONResponse(stored.public())


async def revoke_key(request: Request) -> Response:
    gw = require_admin(request)
    label = check_label(request.path_params["label"])
    try:
        await gw.keys.revoke(label)
    except KeyError_ as err:
        raise NotFoundError(str(err)) from None
    return JSONResponse({"label": label, "revoked": True})
