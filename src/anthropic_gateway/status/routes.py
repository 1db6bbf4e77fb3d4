"""The status page's routes.

- ``GET /status``: the page (no key needed to load it; it holds no data). Its figures come from
  ``GET /status/data``, which needs the admin key where keys are configured: the page asks for it in
  a form and keeps it in the tab's ``sessionStorage``, sending it as ``x-api-key`` (never in a URL,
  never in a cookie).
- ``GET /status/static/{name}``: the page's script and style sheet, from the package (no CDN).
- ``GET /status/data?range=15m|1h|24h|7d``: the figures (status/data.py).

Every answer carries a Content-Security-Policy that allows scripts and styles from the gateway only
(no inline script), and the page writes every value with ``textContent``: a client-chosen string (a
model name, a key label) is text, never markup.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.resources
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response

from anthropic_gateway.errors import NotFoundError, shown
from anthropic_gateway.http.body import JSONResponse
from anthropic_gateway.http.gateway import require_admin
from anthropic_gateway.status.data import StatusData, range_of

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "form-action 'none'; base-uri 'none'; frame-ancestors 'none'")  # fmt: skip
SECURITY_HEADERS = {"content-security-policy": CSP, "x-content-type-options": "nosniff",
                    "referrer-policy": "no-referrer", "x-frame-options": "DENY"}  # fmt: skip
FILES = {"index.html": "text/html; charset=utf-8", "app.js": "text/javascript; charset=utf-8",
         "app.css": "text/css; charset=utf-8", "icon.svg": "image/svg+xml"}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    gzipped: bytes
    etag: str
    media_type: str


_assets: dict[str, Asset] = {}


def asset(name: str) -> Asset:
    found = _assets.get(name)
    if found is None:
        body = importlib.resources.files("anthropic_gateway.status").joinpath("static", name).read_bytes()
        found = _assets[name] = Asset(body, gzip.compress(body, 9, mtime=0),
                                      '"' + hashlib.sha256(body).hexdigest()[:16] + '"', FILES[name])  # fmt: skip
    return found


def _serve(request: Request, name: str) -> Response:
    a = asset(name)
    headers = {**SECURITY_HEADERS, "etag": a.etag, "cache-control": "no-cache", "vary": "accept-encoding"}
    if request.headers.get("if-none-match") == a.etag:
        return Response(status_code=304, headers=headers)
    if "gzip" in request.headers.get("accept-encoding", ""):
        return Response(a.gzipped, media_type=a.media_type, headers={**headers, "content-encoding": "gzip"})
    return Response(a.body, media_type=a.media_type, headers=headers)


async def page(request: Request) -> Response:
    return _serve(request, "index.html")


async def static(request: Request) -> Response:
    name = request.path_params["name"]
    if name not in FILES or name == "index.html":
        raise NotFoundError(f"name: the status page has no file '{shown(name, 60)}' (it has app.js, app.css and icon.svg)")
    return _serve(request, name)


async def data(request: Request) -> Response:
    gw = require_admin(request)
    rng = range_of(request.query_params.get("range"))
    builder: StatusData | None = getattr(request.app.state, "status_data", None)
    if builder is None:
        builder = request.app.state.status_data = StatusData(gw)
    body = await builder.build(rng)
    return JSONResponse(body, headers={**SECURITY_HEADERS, "cache-control": "no-store"})
