"""The only module that talks to the upstream.

Everything goes through the gateway's own pooled HTTP/1.1 client (httpclient/): the chat-completions
POSTs (every request's path: streamed, whole, batches, cache, web search) on the requests' pool, and
the background GETs (the health probes, the catalogue's GET /models) on a small pool of their own,
so that a busy upstream pool never delays a probe into a false "unreachable". The upstream client
dominates the gateway's own CPU per streamed token, and ours costs a fraction of aiohttp's per chunk;
the GETs need nothing more, and without aiohttp a default gateway is ~8 MB smaller (its import:
aiohttp, yarl, multidict, attrs and their libraries; docs/performance.md, Memory).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import msgspec

from anthropic_gateway import __version__
from anthropic_gateway.errors import APIError, GatewayError, GatewayTimeoutError
from anthropic_gateway.httpclient import (
    ConnectTimeout,
    Endpoint,
    HTTPClientError,
    IdleTimeout,
    Pool,
    Response,
    TotalTimeout,
)
from anthropic_gateway.negative_cache import NegativeCache
from anthropic_gateway.routing import Backend
from anthropic_gateway.settings import Settings

log = logging.getLogger(__name__)

USER_AGENT = f"anthropic-gateway/{__version__}"
# The background GETs' own pool: a probe per backend every interval, the catalogue once a day.
SIDE_CONNECTIONS = 8


# Room kept free in front of a large upstream body for the request line and headers: the head is
# written there and the request goes to the socket as one buffer. A 1 MB body was copied about 3.7
# times on its way out: msgspec's output growing 1.5x at a time (2.7 MB of copies), then head + body.
HEAD_ROOM = 2048
_encoder = msgspec.json.Encoder()  # bodies hold msgspec.Raw tool schemas and results


class Payload:
    """An upstream body encoded into one buffer sized from a hint (the client's body length), after
    ``HEAD_ROOM`` free bytes; ``json`` is the body alone (what the refusal cache hashes). A hint too
    small only costs the encoder's regrowth."""

    __slots__ = ("_buffer", "json")

    def __init__(self, value: Any, size_hint: int) -> None:
        buffer = bytearray(HEAD_ROOM + size_hint)
        _encoder.encode_into(value, buffer, HEAD_ROOM)
        self._buffer = buffer
        self.json = memoryview(buffer)[HEAD_ROOM:]

    def __len__(self) -> int:
        return len(self.json)

    def with_head(self, head: bytes) -> memoryview | bytes:
        """The whole request: ``head`` written just before the body (the same room each time: a
        retry writes the same head again), or joined to a copy if it does not fit."""
        start = HEAD_ROOM - len(head)
        if start < 0:
            return head + self.json.tobytes()
        self._buffer[start:HEAD_ROOM] = head
        return memoryview(self._buffer)[start:]


def encode_body(value: Any, size_hint: int) -> bytes | Payload:
    """The upstream body of ``value``: into a ``Payload`` when a size hint is known (large bodies),
    else msgspec's bytes."""
    return Payload(value, size_hint) if size_hint > 0 else _encoder.encode(value)


class UpstreamClient:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._limits: dict[str, asyncio.Semaphore] = {}
        self._pool = Pool(settings.max_connections, keepalive=60.0, dns_ttl=300.0)
        self._side = Pool(SIDE_CONNECTIONS, keepalive=60.0, dns_ttl=300.0)
        # Per (backend, streaming): where to, the request head that does not change, the timeouts.
        self._targets: dict[tuple[str, bool], Target] = {}
        self.refusals = NegativeCache(settings.negative_cache_ttl)  # remembered upstream 4xx

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        await self._pool.close()
        await self._side.close()

    async def acquire(self, backend: Backend) -> Callable[[], None]:
        """Wait for a slot under the backend's max_concurrency; returns the (idempotent) release."""
        if backend.max_concurrency is None:
            return no_slot
        sem = self._limits.get(backend.name)
        if sem is None:
            sem = self._limits[backend.name] = asyncio.Semaphore(backend.max_concurrency)
        await sem.acquire()
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                sem.release()

        return release

    def _target(self, backend: Backend, stream: bool) -> Target:
        """The backend's own timeouts, else the settings': a stream's silence is bounded by
        stream_idle_timeout (any byte counts, the upstream's keep-alive comments too), a whole
        answer's by read_timeout, and every call by total_timeout."""
        target = self._targets.get((backend.name, stream))
        if target is None:
            settings = self.settings
            target = self._targets[(backend.name, stream)] = _target(
                backend, stream,
                connect=backend.connect_timeout or settings.connect_timeout,
                idle=backend.idle_timeout or (settings.stream_idle_timeout if stream else settings.read_timeout),
                total=backend.total_timeout or settings.total_timeout,
            )  # fmt: skip
        return target

    async def post(self, backend: Backend, body: bytes | Payload, key: str | None, *, stream: bool,
                   on_sent: Callable[[], object] | None = None) -> Response:  # fmt: skip
        """Send a chat-completions request; returns once the status and headers arrived.
        ``on_sent`` runs once the request is written (``Pool.request``). The caller owns the
        response and must release() or close() it."""
        target = self._targets.get((backend.name, stream)) or self._target(backend, stream)
        data = target.request(body, key)
        if backend.first_byte_timeout is None:  # no limit of its own: no timeout context to enter
            try:
                return await self._pool.request(target.endpoint, data, connect_timeout=target.connect,
                                                idle_timeout=target.idle, total_timeout=target.total,
                                                on_sent=on_sent)  # fmt: skip
            except (TimeoutError, HTTPClientError) as err:
                raise connection_error(err) from None
        first_byte = asyncio.timeout(backend.first_byte_timeout)
        try:
            async with first_byte:
                return await self._pool.request(target.endpoint, data, connect_timeout=target.connect,
                                                idle_timeout=target.idle, total_timeout=target.total,
                                                on_sent=on_sent)  # fmt: skip
        except (TimeoutError, HTTPClientError) as err:
            if first_byte.expired():
                raise GatewayTimeoutError(
                    f"The upstream did not answer within {backend.first_byte_timeout:g} s (first byte timeout)"
                ) from None
            raise connection_error(err) from None

    async def get(self, url: str, headers: Mapping[str, str], *, timeout: float) -> Response:
        """``GET url`` on the background pool; returns once the status and headers arrived, the whole
        exchange bounded by ``timeout``. The caller owns the response (release() or close())."""
        endpoint, data = get_request(url, {"User-Agent": USER_AGENT, **headers})
        try:
            return await self._side.request(endpoint, data, connect_timeout=timeout, idle_timeout=timeout,
                                            total_timeout=timeout)  # fmt: skip
        except HTTPClientError as err:
            raise connection_error(err) from None

    async def probe(self, backend: Backend, timeout: float) -> int:
        """``GET {backend url}/models`` with the backend's key: the HTTP status, once the headers
        arrived (the list itself is not read: the connection is closed). Raises a GatewayError when
        the backend cannot be reached. Only the background health probes call it, never a request."""
        headers = dict(backend.headers)
        if backend.key is not None:
            headers["Authorization"] = "Bearer " + backend.key.get_secret_value()
        try:
            response = await self.get(backend.base_url + "/models", headers, timeout=timeout)
        except GatewayTimeoutError:
            raise GatewayTimeoutError(f"no answer within {timeout:g} s") from None
        response.close()
        return response.status


@dataclass(frozen=True, slots=True)
class Target:
    endpoint: Endpoint
    head: bytes  # the request line and the headers that do not change, CRLF-terminated
    connect: float
    idle: float
    total: float

    def request(self, body: bytes | Payload, key: str | None) -> bytes | memoryview:
        head = self.head
        if key is not None:
            if "\r" in key or "\n" in key or not key.isascii():
                raise APIError("The upstream API key contains characters an HTTP header cannot carry", status=502)
            head += b"Authorization: Bearer " + key.encode() + b"\r\n"
        if isinstance(body, Payload):
            return body.with_head(b"%sContent-Length: %d\r\n\r\n" % (head, len(body)))
        return b"%sContent-Length: %d\r\n\r\n%s" % (head, len(body), body)


def _target(backend: Backend, stream: bool, *, connect: float, idle: float, total: float) -> Target:
    url = urlsplit(backend.chat_url)
    scheme = url.scheme.lower()
    if scheme not in ("http", "https") or not url.hostname:
        raise APIError(f"The backend {backend.name!r} has a URL the gateway cannot call", status=502)
    port = url.port or (443 if scheme == "https" else 80)
    host_header = url.netloc.rpartition("@")[2]
    headers = {
        "Host": host_header,
        "Content-Type": "application/json",
        "Accept": "text/event-stream" if stream else "application/json",
        "User-Agent": USER_AGENT,
    }
    if backend.kind.openrouter_extensions:
        headers["HTTP-Referer"] = "https://github.com/anthropic-gateway/anthropic-gateway"
        headers["X-OpenRouter-Title"] = "anthropic-gateway"
    headers.update(backend.headers)
    lines = [f"POST {url.path or '/'}{'?' + url.query if url.query else ''} HTTP/1.1\r\n"]
    for name, value in headers.items():
        if any(c in name + value for c in "\r\n\0") or ":" in name:
            raise APIError(f"The backend {backend.name!r} has a header the gateway cannot send ({name})", status=502)
        lines.append(f"{name}: {value}\r\n")
    try:
        head = "".join(lines).encode("latin-1")
    except UnicodeEncodeError:
        raise APIError(f"The backend {backend.name!r} has a header the gateway cannot send", status=502) from None
    return Target(Endpoint(scheme, url.hostname, port), head, connect, idle, total)


def get_request(url: str, headers: Mapping[str, str]) -> tuple[Endpoint, bytes]:
    """Where to and the bytes of ``GET url`` with ``headers`` (and Host)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise APIError(f"The gateway cannot fetch {url!r}", status=502)
    port = parts.port or (443 if scheme == "https" else 80)
    lines = [f"GET {parts.path or '/'}{'?' + parts.query if parts.query else ''} HTTP/1.1\r\n",
             f"Host: {parts.netloc.rpartition('@')[2]}\r\n"]  # fmt: skip
    for name, value in headers.items():
        if any(c in name + value for c in "\r\n\0") or ":" in name:
            raise APIError(f"The gateway cannot send the header {name!r}", status=502)
        lines.append(f"{name}: {value}\r\n")
    try:
        data = ("".join(lines) + "\r\n").encode("latin-1")
    except UnicodeEncodeError:
        raise APIError("The gateway cannot send a header that is not Latin-1", status=502) from None
    return Endpoint(scheme, parts.hostname, port), data


def no_slot() -> None:
    return None


async def read_capped(response: Response, limit: int) -> tuple[bytes, bool]:
    """The body, read to its end or to `limit` bytes: (data, whether it was complete)."""
    parts: list[bytes] = []
    size = 0
    while chunk := await response.readany():
        parts.append(chunk)
        size += len(chunk)
        if size > limit:
            return b"".join(parts)[:limit], False
    return b"".join(parts), True


def connection_error(err: BaseException) -> GatewayError:
    """An upstream exchange's failure → the gateway error."""
    if isinstance(err, ConnectTimeout):
        return GatewayTimeoutError("The upstream did not accept the connection in time (connect timeout)")
    if isinstance(err, IdleTimeout):
        return GatewayTimeoutError("The upstream stopped sending data (idle timeout)")
    if isinstance(err, TotalTimeout | TimeoutError):
        return GatewayTimeoutError("The upstream answer did not complete within the total timeout")
    if isinstance(err, HTTPClientError):  # ConnectError: "cannot connect to HOST:PORT"; else what happened
        return APIError(f"Upstream connection error: {err}", status=502)
    return APIError(f"Upstream connection error: {type(err).__name__}", status=502)
