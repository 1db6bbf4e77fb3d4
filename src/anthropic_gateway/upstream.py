"""The only module that talks to the upstream: one pooled aiohttp session for the app's lifetime.

aiohttp rather than httpx: measured here, a pooled aiohttp session costs less than half of httpx's CPU
per streamed response, and the upstream client dominates the gateway's own cost.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from anthropic_gateway import __version__
from anthropic_gateway.errors import APIError, GatewayError, GatewayTimeoutError
from anthropic_gateway.negative_cache import NegativeCache
from anthropic_gateway.routing import Backend
from anthropic_gateway.settings import Settings

if TYPE_CHECKING:
    import aiohttp

log = logging.getLogger(__name__)

USER_AGENT = f"anthropic-gateway/{__version__}"
LOAD_DELAY = 0.3


class UpstreamClient:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._session: aiohttp.ClientSession | None = None
        self._loading: asyncio.Future[Any] | None = None
        self._timer: asyncio.TimerHandle
        self._limits: dict[str, asyncio.Semaphore] = {}
        self._timeouts: dict[tuple[str, bool], aiohttp.ClientTimeout] = {}
        # Per (backend, streaming): the parsed URL and the headers that do not change per request.
        self._targets: dict[tuple[str, bool], tuple[Any, dict[str, str]]] = {}
        self.refusals = NegativeCache(settings.negative_cache_ttl)  # remembered upstream 4xx

    async def start(self) -> None:
        # aiohttp is the gateway's largest import (~130 ms, a quarter of start-up). It loads in a
        # thread shortly after the server is up - a thread started at once would compete for the GIL
        # with start-up itself - or at the first upstream call, whichever comes first.
        self._timer = asyncio.get_running_loop().call_later(LOAD_DELAY, self._load)

    def _load(self) -> asyncio.Future[Any]:
        if self._loading is None:
            self._timer.cancel()
            self._loading = asyncio.get_running_loop().run_in_executor(None, importlib.import_module, "aiohttp")
        return self._loading

    async def _open(self) -> aiohttp.ClientSession:
        loading = self._load()
        try:
            aiohttp = await loading
        except Exception as err:  # e.g. out of file descriptors: the next request tries again
            if self._loading is loading:
                self._loading = None
            log.warning("loading the upstream client failed: %r", err)
            raise APIError(f"The gateway could not load its upstream client ({type(err).__name__}); retry",
                           status=503) from None  # fmt: skip
        if self._session is not None:
            return self._session
        connector = aiohttp.TCPConnector(
            limit=self.settings.max_connections, ttl_dns_cache=300, keepalive_timeout=60
        )
        timeout = aiohttp.ClientTimeout(
            total=self.settings.total_timeout, connect=self.settings.connect_timeout, sock_read=self.settings.read_timeout
        )
        self._session = aiohttp.ClientSession(
            connector=connector, timeout=timeout, skip_auto_headers=("User-Agent",), raise_for_status=False
        )
        return self._session

    async def close(self) -> None:
        self._timer.cancel()
        if self._loading is not None:
            await asyncio.wait([self._loading])
        if self._session is not None:
            await self._session.close()

    async def acquire(self, backend: Backend) -> Callable[[], None]:
        """Wait for a slot under the backend's max_concurrency; returns the (idempotent) release."""
        if backend.max_concurrency is None:
            return _noop
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

    def _timeout(self, backend: Backend, stream: bool) -> aiohttp.ClientTimeout:
        """The backend's own timeouts, else the settings': a stream's silence is bounded by
        stream_idle_timeout (any byte counts, the upstream's keep-alive comments too), a whole
        answer's by read_timeout, and every call by total_timeout."""
        timeout = self._timeouts.get((backend.name, stream))
        if timeout is None:
            import aiohttp

            settings = self.settings
            timeout = self._timeouts[(backend.name, stream)] = aiohttp.ClientTimeout(
                total=backend.total_timeout or settings.total_timeout,
                connect=backend.connect_timeout or settings.connect_timeout,
                sock_read=backend.idle_timeout or (settings.stream_idle_timeout if stream else settings.read_timeout),
            )
        return timeout

    async def post(self, backend: Backend, body: bytes, key: str | None, *, stream: bool) -> aiohttp.ClientResponse:
        """Send a chat-completions request; returns once the status and headers arrived.
        The caller owns the response and must release() or close() it."""
        session = self._session or await self._open()
        import aiohttp  # loaded by _open(), off the event loop; from here on a dictionary lookup

        target = self._targets.get((backend.name, stream))
        if target is None:
            target = self._targets[(backend.name, stream)] = _target(backend, stream)
        url, static = target
        headers = {"Authorization": "Bearer " + key, **static} if key is not None else static
        timeout = self._timeout(backend, stream)
        first_byte = asyncio.timeout(backend.first_byte_timeout)  # None: no limit of its own
        try:
            async with first_byte:
                return await session.post(url, data=body, headers=headers, timeout=timeout)
        except (TimeoutError, aiohttp.ClientError) as err:
            if first_byte.expired():
                raise GatewayTimeoutError(
                    f"The upstream did not answer within {backend.first_byte_timeout:g} s (first byte timeout)"
                ) from None
            raise connection_error(err) from None

    async def ready(self) -> None:
        """Load the client and open the pool now (the probes start timing only after it)."""
        if self._session is None:
            await self._open()

    async def probe(self, backend: Backend, timeout: float) -> int:
        """``GET {backend url}/models`` with the backend's key: the HTTP status, once the headers
        arrived (the list itself is not read). Raises a GatewayError when the backend cannot be
        reached. Only the background health probes call it, never a request."""
        session = self._session or await self._open()
        import aiohttp

        headers = {"User-Agent": USER_AGENT, **dict(backend.headers)}
        if backend.key is not None:
            headers["Authorization"] = "Bearer " + backend.key.get_secret_value()
        try:
            async with session.get(backend.base_url + "/models", headers=headers,
                                   timeout=aiohttp.ClientTimeout(total=timeout)) as resp:  # fmt: skip
                return resp.status
        except (TimeoutError, aiohttp.ServerTimeoutError):
            raise GatewayTimeoutError(f"no answer within {timeout:g} s") from None
        except aiohttp.ClientError as err:
            raise connection_error(err) from None


def _target(backend: Backend, stream: bool) -> tuple[Any, dict[str, str]]:
    import yarl  # comes with aiohttp

    headers = {
        "Content-Type": "application/json",
        "Accept": "text/event-stream" if stream else "application/json",
        "User-Agent": USER_AGENT,
    }
    if backend.kind.openrouter_extensions:
        headers["HTTP-Referer"] = "https://github.com/anthropic-gateway/anthropic-gateway"
        headers["X-OpenRouter-Title"] = "anthropic-gateway"
    headers.update(backend.headers)
    return yarl.URL(backend.chat_url), headers


def _noop() -> None:
    return None


async def read_capped(response: aiohttp.ClientResponse, limit: int) -> tuple[bytes, bool]:
    """The body, read to its end or to `limit` bytes: (data, whether it was complete)."""
    parts: list[bytes] = []
    size = 0
    while chunk := await response.content.readany():
        parts.append(chunk)
        size += len(chunk)
        if size > limit:
            return b"".join(parts)[:limit], False
    return b"".join(parts), True


def stream_errors() -> tuple[type[BaseException], ...]:
    """What reading an upstream body may raise besides our own errors."""
    import aiohttp

    return (aiohttp.ClientError, TimeoutError)


def connection_error(err: BaseException) -> GatewayError:
    import aiohttp

    if isinstance(err, aiohttp.ConnectionTimeoutError):
        return GatewayTimeoutError("The upstream did not accept the connection in time (connect timeout)")
    if isinstance(err, aiohttp.ServerTimeoutError):
        return GatewayTimeoutError("The upstream stopped sending data (idle timeout)")
    if isinstance(err, asyncio.TimeoutError):  # aiohttp's ClientTimeout.total
        return GatewayTimeoutError("The upstream answer did not complete within the total timeout")
    detail: Any = type(err).__name__
    if isinstance(err, aiohttp.ClientConnectorError):
        detail = f"cannot connect to {err.host}:{err.port}"
    return APIError(f"Upstream connection error: {detail}", status=502)
