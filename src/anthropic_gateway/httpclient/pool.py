"""The keep-alive connection pool: connections per (scheme, host, port), at most ``max_connections``
open in all, idle ones kept ``keepalive`` seconds, names resolved once per ``dns_ttl``."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from anthropic_gateway.httpclient.connection import Connection, Response
from anthropic_gateway.httpclient.errors import ConnectError, ConnectTimeout, Disconnected, TotalTimeout

Key = tuple[str, str, int]

_default_context: ssl.SSLContext | None = None


def default_context() -> ssl.SSLContext:
    """The verifying TLS context every pool without its own uses: made on the first https connection
    (loading the system's CA certificates costs ~1 MB and a few ms), then shared."""
    global _default_context
    if _default_context is None:
        _default_context = ssl.create_default_context()
    return _default_context


@dataclass(frozen=True, slots=True)
class Endpoint:
    scheme: str  # "http" or "https"
    host: str
    port: int

    @property
    def key(self) -> Key:
        return (self.scheme, self.host, self.port)


class Pool:
    def __init__(self, max_connections: int, *, keepalive: float = 60.0, dns_ttl: float = 300.0,
                 ssl_context: ssl.SSLContext | None = None) -> None:  # fmt: skip
        self.max_connections = max_connections
        self.keepalive = keepalive
        self.dns_ttl = dns_ttl
        self._ssl = ssl_context
        self._idle: dict[Key, deque[Connection]] = {}
        self._idle_count = 0
        self._busy: set[Connection] = set()
        self._slots: asyncio.Semaphore | None = None
        self._dns: dict[tuple[str, int], tuple[float, list[tuple[int, str]]]] = {}
        self._sweeper: asyncio.TimerHandle | None = None
        self.loop: asyncio.AbstractEventLoop
        self.opened = 0  # connections opened so far (tests and diagnostics)

    async def request(self, endpoint: Endpoint, data: bytes | memoryview, *, connect_timeout: float, idle_timeout: float,
                      total_timeout: float, on_sent: Callable[[], object] | None = None) -> Response:  # fmt: skip
        """Send ``data`` (a whole HTTP/1.1 request) and return once the response's headers arrived.
        ``on_sent`` is called once, right after the request's first write: work the caller needs
        before the answer but not before the upstream has the request runs while the upstream
        works on it (a request sent again on a fresh connection does not call it again). Cancelling
        the caller closes the connection, whatever the phase."""
        loop = self.loop = asyncio.get_running_loop()
        deadline = loop.time() + total_timeout
        slots = self._slots
        if slots is None:
            slots = self._slots = asyncio.Semaphore(self.max_connections)
        if slots.locked():  # every connection busy: wait for one, within the total timeout
            try:
                async with asyncio.timeout_at(deadline):
                    await slots.acquire()
            except TimeoutError:
                raise TotalTimeout() from None
        else:  # a free slot is taken at once: no timer to arm and cancel
            await slots.acquire()
        conn: Connection | None = None
        try:
            while True:
                conn = self._take_idle(endpoint.key)
                reused = conn is not None
                if conn is None:
                    conn = await self._connect(endpoint, connect_timeout, deadline)
                self._busy.add(conn)
                conn.reader = None  # (a reader stops, or its connection closes, before the body's end)
                assert conn.transport is not None
                conn.transport.write(data)
                # The response (and its clock's timer) once the request is on its way: no byte of the
                # answer can arrive before the loop runs again, and the upstream works meanwhile.
                response = conn.response = Response(conn, idle_timeout, deadline)
                if on_sent is not None:
                    on_sent()
                    on_sent = None
                try:
                    await response.wait_headers()
                except Disconnected:
                    if not reused or response.received:
                        raise
                    # The upstream had closed this idle connection meanwhile (not a byte came back):
                    # the request goes again on a new connection, in the same slot.
                    conn.close()
                    self._busy.discard(conn)
                    self.forget(conn)
                    conn = None
                    continue
                return response
        except BaseException:
            if conn is not None:
                conn.close()
                self.discard(conn)
            else:
                slots.release()
            raise

    # --- the responses' side ---------------------------------------------------------------------

    def put(self, conn: Connection) -> None:
        """A response ended cleanly on a keep-alive connection: keep it for the next request."""
        if conn in self._busy:
            self._busy.discard(conn)
            self._release_slot()
        if conn.lost:
            return
        conn.idle_since = self.loop.time()
        self._idle.setdefault(conn.key, deque()).append(conn)
        self._idle_count += 1
        if self._sweeper is None:
            self._sweeper = self.loop.call_later(self.keepalive, self._sweep)

    def discard(self, conn: Connection) -> None:
        """A connection closed by its response: its slot is free."""
        if conn in self._busy:
            self._busy.discard(conn)
            self._release_slot()
        self.forget(conn)

    def forget(self, conn: Connection) -> None:
        """The connection is gone (closed by either side): not kept any more."""
        idle = self._idle.get(conn.key)
        if idle is not None and conn in idle:
            idle.remove(conn)
            self._idle_count -= 1

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()
        self._idle_count = 0
        for conn in list(self._busy):
            conn.close()

    # --- internals -------------------------------------------------------------------------------

    def _release_slot(self) -> None:
        if self._slots is not None:
            self._slots.release()

    def _take_idle(self, key: Key) -> Connection | None:
        idle = self._idle.get(key)
        now = self.loop.time()
        while idle:
            conn = idle.pop()  # the most recently used: the least likely to have been closed upstream
            self._idle_count -= 1
            if not conn.lost and now - conn.idle_since < self.keepalive:
                return conn
            conn.close()
        return None

    def _evict_one(self) -> None:
        """Room for a new connection: the longest idle one (any endpoint) is closed."""
        oldest: Connection | None = None
        for idle in self._idle.values():
            if idle and (oldest is None or idle[0].idle_since < oldest.idle_since):
                oldest = idle[0]
        if oldest is not None:
            self._idle[oldest.key].popleft()
            self._idle_count -= 1
            oldest.close()

    def _sweep(self) -> None:
        self._sweeper = None
        now = self.loop.time()
        for idle in self._idle.values():
            while idle and now - idle[0].idle_since >= self.keepalive:
                idle.popleft().close()
                self._idle_count -= 1
        if self._idle_count:
            self._sweeper = self.loop.call_later(self.keepalive, self._sweep)

    async def _connect(self, endpoint: Endpoint, connect_timeout: float, deadline: float) -> Connection:
        if len(self._busy) + self._idle_count >= self.max_connections:
            self._evict_one()
        loop = self.loop
        limit = min(loop.time() + connect_timeout, deadline)
        context = None
        if endpoint.scheme == "https":
            context = self._ssl = self._ssl or default_context()
        try:
            async with asyncio.timeout_at(limit):
                addresses = await self._resolve(endpoint.host, endpoint.port)
                last: BaseException | None = None
                for family, address in addresses:
                    try:
                        _, protocol = await loop.create_connection(
                            lambda: Connection(self, endpoint.key), address, endpoint.port, family=family,
                            ssl=context, server_hostname=endpoint.host if context is not None else None,
                        )  # fmt: skip
                    except OSError as err:  # refused, unreachable, TLS (ssl.SSLError is an OSError)
                        last = err
                        continue
                    self.opened += 1
                    return protocol
                raise ConnectError(endpoint.host, endpoint.port, last)
        except TimeoutError:
            if loop.time() >= deadline:
                raise TotalTimeout() from None
            raise ConnectTimeout() from None

    async def _resolve(self, host: str, port: int) -> list[tuple[int, str]]:
        try:
            ip = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            pass
        else:
            return [(socket.AF_INET6 if ip.version == 6 else socket.AF_INET, str(ip))]
        now = self.loop.time()
        cached = self._dns.get((host, port))
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            infos = await self.loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as err:  # socket.gaierror: no such name
            raise ConnectError(host, port, err) from None
        addresses: list[tuple[int, str]] = list(dict.fromkeys((int(family), str(sockaddr[0])) for family, _, _, _, sockaddr in infos))
        self._dns[(host, port)] = (now + self.dns_ttl, addresses)
        return addresses
